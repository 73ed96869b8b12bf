"""Outputs as sinks: listed in one place, each failure reported, the verdict never changed; the
emulated bench in a child process."""

import json
import os
import re
from pathlib import Path

from rig.emulators.spawn import spawn_bench
from rig.outputs import sinks
from rig.outputs.console import CertifyConsole
from rig.plugin.sinks import EndedRun, deliver

pytest_plugins = ["pytester"]

BENCH = ["--model", "TT-890", "--serial", "S1", "--scale", "5", "--emulator", "inprocess"]


def _run(tmp_path, **kw):
    facts = dict(
        record_dir=None,
        verdict=None,
        complete=True,
        model="TT-890",
        serial="1",
        station_id="station",
        reports=tmp_path,
        exitstatus=0,
    )
    facts.update(kw)
    return EndedRun(**facts)


def test_the_sinks_are_listed_in_one_place():
    names = [s.name for s in sinks.sinks()]
    assert names == ["station signature", "results database", "JUnit XML", "Allure results"]
    with_console = [s.name for s in sinks.sinks(CertifyConsole(console=None))]
    assert with_console[-2:] == ["console summary", "certificate"]


def test_a_failing_sink_is_reported_and_the_next_still_runs(tmp_path):
    class Broken:
        name, failure = "broken", "broken output not written"

        def __call__(self, run):
            raise OSError("disk full")

    seen, said = [], []

    class Seen:
        name, failure = "seen", "never"

        def __call__(self, run):
            seen.append(run)

    failed = deliver(_run(tmp_path), [Broken(), Seen()], said.append)
    assert failed == said == ["broken output not written: disk full"]
    assert len(seen) == 1


def test_certify_turns_the_outputs_on_with_pytest_arguments():
    from rig.cli import build_parser

    args = build_parser().parse_args(
        ["certify", "TT-890", "--serial", "1", "--junit", "j.xml", "--reports", "r"]
    )
    staging = f"r/.allure-staging/{os.getpid()}"
    assert sinks.certify_args(args) == [
        "--junitxml",
        "j.xml",
        "--alluredir",
        staging,
        "--clean-alluredir",
    ]
    args.no_allure = True
    assert sinks.certify_args(args) == ["--junitxml", "j.xml"]


CONFTEST = """
import json

class Broken:
    name, failure = "broken", "broken output not written"

    def __call__(self, run):
        raise RuntimeError("disk full")

def pytest_rig_sinks(config):
    return [Broken()]
"""


def test_a_sink_failure_never_changes_the_run(pytester, tmp_path):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile("def test_body(record):\n    pass\n")
    result = pytester.runpytest(*BENCH, "--reports", str(tmp_path))
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*broken output not written: disk full*"])
    (path,) = tmp_path.glob("*/record.jsonl")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    # nothing verified: no requirement was selected, so not certified (issue 8: was FAIL)
    assert [x["verdict"] for x in lines if x["kind"] == "end"] == ["NOT CERTIFIED - partial"]
    assert lines[-1]["kind"] == "signature"  # the station still signed
    assert (tmp_path / "results.sqlite").exists()  # and the database still has it


def test_a_bench_in_a_child_process(tmp_path):
    bench = spawn_bench("TT-890", scale=1.0, serial=890123, cal_due="2031-01-31")
    try:
        assert bench.station.emulated and bench.station.id == "EMULATED-TT-890"
        assert set(bench.station.instruments) == {"force_meter", "actuators"}
        assert bench.process.poll() is None
    finally:
        bench.stop()
    assert bench.process.poll() is not None


def test_a_bench_that_cannot_start_says_why():
    import pytest

    from rig.errors import ConfigError

    with pytest.raises(ConfigError, match="emulated bench did not start"):
        spawn_bench("TT-890", defects=("no-such-defect",))


def test_plugin_does_not_know_the_emulators_command_line():
    plugin = Path(__file__).resolve().parent.parent / "rig" / "plugin"
    for f in plugin.glob("*.py"):
        text = f.read_text()
        assert '"emulate"' not in text and "--station-out" not in text, f
        # layer 4 never imports layer 5: the sinks find the plugin, not the other way round
        assert not re.search(r"^\s*(from|import)\s+(rig\.outputs|\.\.outputs)", text, re.M), f
