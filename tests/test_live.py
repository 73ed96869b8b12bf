"""Live progress: the terminal view (rig.outputs.live) and the events file (rig.plugin.progress)."""

from __future__ import annotations

import io
import json
import re

from rich.console import Console

from rig.outputs.live import LiveProgress, live_wanted
from rig.plugin.events import (
    EventBus,
    MeasurementJudged,
    RequirementConcluded,
    RequirementStarted,
    RunEnded,
    RunPlanned,
    RunStarted,
    StepStarted,
)
from rig.plugin.progress import EventLog, follow_events, load_device_times, save_device_times


def _run(bus: EventBus) -> None:
    tests = ("t::a[TT-SAF-02]", "t::b[TT-SAF-03]")
    bus.publish(RunStarted("TT-890", "S1", None, tests, ("TT-SAF-02", "TT-SAF-03")))
    bus.publish(RunPlanned("TT-890", {"TT-SAF-02": 200.0}))
    bus.publish(RequirementStarted(tests[0], "TT-SAF-02", 0, 2))
    bus.publish(StepStarted("TT-SAF-02", tests[0], "measuring", device_s=12.0, clock_rate=20.0))


def test_live_view_shows_requirement_step_and_device_time_then_each_verdict():
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True)
    view = LiveProgress(console, refresh_per_second=50)
    bus = EventBus()
    bus.subscribe(view.on_event)
    _run(bus)
    shown = io.StringIO()
    Console(file=shown, width=120).print(view.render())
    text = shown.getvalue()
    assert "requirement 1 of 2" in text and "TT-SAF-02" in text
    assert "step: measuring" in text
    assert "device time" in text and "of ~3.3 min expected" in text
    bus.publish(
        MeasurementJudged("TT-SAF-02", "reaction_time", 0.2, "s", "0.2 s", "<= 0.1 s", "FAIL")
    )
    assert "measured reaction_time = 0.2 s: FAIL" in view.step
    bus.publish(RequirementConcluded("t::a[TT-SAF-02]", "TT-SAF-02", "FAIL", note="too slow"))
    bus.publish(RunEnded("NOT CERTIFIED - partial", None, True))
    assert view._live is None  # the live region is gone; the verdict line stays
    printed = out.getvalue()
    assert "TT-SAF-02" in printed and "FAIL" in printed and "too slow" in printed
    assert not bus.failures


def test_live_is_off_without_a_terminal_or_when_asked():
    assert not live_wanted(Console(file=io.StringIO(), force_terminal=False))
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert live_wanted(terminal)
    assert not live_wanted(terminal, no_live=True)
    assert not live_wanted(terminal, quiet=True)


def test_events_file_has_one_json_line_per_event_flushed_as_written(tmp_path):
    path = tmp_path / "run" / "events.jsonl"
    log = EventLog(path)
    bus = EventBus()
    bus.subscribe(log)
    _run(bus)
    # a follower sees them before the run ends (flushed as written)
    seen, offset = follow_events(path)
    assert [e["kind"] for e in seen] == [
        "run_started",
        "run_planned",
        "requirement_started",
        "step_started",
    ]
    assert seen[3]["step"] == "measuring" and seen[3]["device_s"] == 12.0
    bus.publish(RequirementConcluded("t::a[TT-SAF-02]", "TT-SAF-02", "PASS"))
    bus.publish(RunEnded("PASS", str(tmp_path), True))
    more, offset2 = follow_events(path, offset)
    assert [e["kind"] for e in more] == ["requirement_concluded", "run_ended"]
    assert offset2 == path.stat().st_size
    for line in path.read_text().splitlines():
        assert "at" in json.loads(line)
    # after the run ended the file is closed: later events are not written
    bus.publish(RunEnded("PASS", None, True))
    assert follow_events(path, offset2)[0] == []


def test_follow_events_leaves_a_line_being_written_for_later(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"kind": "run_started"}\n{"kind": "requ')
    events, offset = follow_events(path)
    assert [e["kind"] for e in events] == ["run_started"]
    with open(path, "a") as f:
        f.write('irement_started"}\n')
    events, _ = follow_events(path, offset)
    assert [e["kind"] for e in events] == ["requirement_started"]


def test_device_times_remembered_per_model(tmp_path):
    assert load_device_times(tmp_path, "TT-890") == {}
    save_device_times(tmp_path, "TT-890", {"TT-SAF-02": 211.4})
    save_device_times(tmp_path, "RT-600", {"RT-SAF-01": 10.0})
    save_device_times(tmp_path, "TT-890", {"TT-SAF-03": 28.0})
    assert load_device_times(tmp_path, "TT-890") == {"TT-SAF-02": 211.4, "TT-SAF-03": 28.0}
    (tmp_path / "device-times.json").write_text("not json")
    assert load_device_times(tmp_path, "TT-890") == {}


def _certify_on_a_terminal(tmp_path, *extra):  # about 10-30 s of wall time
    """`rig certify` of one short requirement with its output on a pseudo-terminal."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    cmd = [sys.executable, "-m", "rig.cli", "certify", "TT-890", "--serial", "890001"]
    cmd += ["--requirement", "TT-SAF-03", "--scale", "20", "--no-allure"]
    cmd += ["--reports", str(tmp_path), *extra]
    env = {**os.environ, "COLUMNS": "140", "TERM": "xterm"}
    proc = subprocess.Popen(cmd, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=120)
    os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace"))  # no colours
    return proc.returncode, text


def test_rig_certify_on_a_terminal_shows_live_progress_then_the_table(tmp_path):
    code, out = _certify_on_a_terminal(tmp_path)
    assert code == 4  # one requirement: NOT CERTIFIED - partial
    assert "requirement 1 of 1" in out and "TT-SAF-03" in out  # the live region
    assert "step:" in out
    assert re.search(r"TT-SAF-03 PASS \(\d+ measurements", out)  # the verdict, as reached
    assert "TT-890 certification" in out  # the final table stays
