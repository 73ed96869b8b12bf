"""The `rig certify` console: a subscriber to the run's events, and the summary sink."""

import io
from pathlib import Path

from rich.console import Console

from rig.outputs.console import CertifyConsole
from rig.plugin.events import (
    Problem,
    RequirementConcluded,
    RequirementStarted,
    RunEnded,
    RunStarted,
)
from rig.plugin.sinks import EndedRun
from rig.profiles import load_profile

RUN = Path(__file__).resolve().parent / "data" / "results" / "IT-90-emulated"


def _console():
    out = io.StringIO()
    return CertifyConsole(Console(file=out, width=140, force_terminal=False)), out


def _ended(record_dir, profile, **kw):
    return EndedRun(
        record_dir=record_dir,
        verdict=kw.pop("verdict", None),
        complete=True,
        model="IT-90",
        serial="1",
        station_id="station",
        reports=RUN.parent,
        exitstatus=0,
        profile=profile,
        **kw,
    )


def test_progress_follows_the_events_and_keeps_the_errors():
    view, _ = _console()
    tests = ("suites/a.py::t[IT-SAF-01]", "suites/a.py::t[IT-SAF-02]")
    view.on_event(
        RunStarted(
            model="IT-90",
            serial="1",
            station=None,
            tests=tests,
            requirements=("IT-SAF-01", "IT-SAF-02"),
            problems=(Problem("collection", "boom"),),
        )
    )
    view.on_event(RequirementStarted(test=tests[0], requirement="IT-SAF-01", index=0, total=2))
    assert view.progress.tasks[0].description == "IT-SAF-01"
    view.on_event(
        RequirementConcluded(
            test=tests[0],
            requirement="IT-SAF-01",
            verdict="ERROR",
            problems=(Problem(tests[0], "setup failed"),),
        )
    )
    assert view.progress.tasks[0].completed == 1 and view.progress.tasks[0].total == 2
    view.on_event(RunEnded(verdict="FAIL", record=None, complete=True))
    assert [p.text for p in view.problems] == ["boom", "setup failed"]


def test_the_summary_prints_the_table_and_the_verdict_from_the_record():
    view, out = _console()
    view.summary(_ended(RUN, load_profile("IT-90"), verdict="PASS"))
    text = out.getvalue()
    assert "IT-90 certification" in text and "IT-SAF-01" in text
    assert "overall: PASS" in text and str(RUN / "record.jsonl") in text
    assert view.exit_code(0) == 0
    assert view.exit_code(1) == 1  # pytest itself failed (e.g. the table not confirmed safe)


def test_nothing_ran_is_exit_code_2_with_the_errors():
    view, out = _console()
    view.on_event(
        RunStarted(
            model="IT-90",
            serial="1",
            station=None,
            tests=(),
            requirements=(),
            problems=(Problem("suites/x.py", "SyntaxError"),),
        )
    )
    assert view.exit_code(2) == 2  # pytest stopped before the run ended: no summary yet
    text = out.getvalue()
    assert "ERROR suites/x.py" in text and "no requirement was run" in text
