"""The live event channel: order, several subscribers, a failing subscriber never breaks a run."""

import json
import threading
from pathlib import Path

from emulator_support import inprocess_bench

from rig.plugin.events import (
    EventBus,
    MeasurementJudged,
    RequirementStarted,
    RunEnded,
    RunStarted,
)

pytest_plugins = ["pytester"]

SUITES = Path(__file__).resolve().parent.parent / "suites"


def _started(i):
    return RequirementStarted(test=f"t{i}", requirement=f"R-{i}", index=i, total=100)


def test_every_subscriber_gets_every_event_in_order():
    bus = EventBus()
    seen_a, seen_b = [], []
    bus.subscribe(seen_a.append)
    bus.subscribe(seen_b.append)
    events = [_started(i) for i in range(20)]
    for e in events:
        bus.publish(e)
    assert seen_a == events and seen_b == events


def test_a_failing_subscriber_is_reported_and_the_others_still_get_the_event():
    bus = EventBus()
    seen = []

    def broken(event):
        raise RuntimeError("view crashed")

    bus.subscribe(broken)
    bus.subscribe(seen.append)
    bus.publish(_started(0))  # does not raise
    bus.publish(_started(1))
    assert [e.requirement for e in seen] == ["R-0", "R-1"]
    assert len(bus.failures) == 2 and isinstance(bus.failures[0][2], RuntimeError)


def test_unsubscribe_stops_delivery():
    bus = EventBus()
    seen = []
    stop = bus.subscribe(seen.append)
    bus.publish(_started(0))
    stop()
    bus.publish(_started(1))
    assert len(seen) == 1


def test_publishing_from_threads_gives_every_subscriber_the_same_order():
    bus = EventBus()
    seen_a, seen_b = [], []
    bus.subscribe(seen_a.append)
    bus.subscribe(seen_b.append)

    def publish(base):
        for i in range(200):
            bus.publish(_started(base + i))

    threads = [threading.Thread(target=publish, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen_a) == 800 and seen_a == seen_b


def test_events_are_plain_data():
    e = MeasurementJudged(
        requirement="TT-SAF-01",
        name="reaction_time",
        value=0.02,
        unit="s",
        value_text="0.02 s",
        limit_text="<= 0.1 s",
        verdict="PASS",
    )
    d = e.as_dict()
    assert d["kind"] == "measurement_judged" and d["verdict"] == "PASS"
    json.dumps(d)  # a browser page can be sent it as it is
    assert RunEnded(verdict="PASS", record=None, complete=True).as_dict()["kind"] == "run_ended"
    assert RunStarted(model="TT-890", serial="1", station=None, tests=(), requirements=()).kind


SUBSCRIBERS = """
import json
import pytest

EVENTS = []
OUT = "@OUT@"

def pytest_rig_subscribe(config, events):
    def broken(event):
        raise RuntimeError("a broken live view")

    events.subscribe(broken)
    events.subscribe(lambda e: EVENTS.append(e.as_dict()))

def pytest_unconfigure(config):
    with open(OUT, "w") as f:
        json.dump(EVENTS, f)
"""


def test_a_run_announces_its_course_and_survives_a_broken_subscriber(pytester, tmp_path):
    # a plugin module, not a conftest: the suites are not under the pytester directory
    out = tmp_path / "events.json"
    pytester.makepyfile(evsub=SUBSCRIBERS.replace("@OUT@", str(out)))
    pytester.syspathinsert()
    result = pytester.runpytest(
        str(SUITES),
        "-p",
        "evsub",
        *inprocess_bench("EV-1"),
        "--reports",
        str(tmp_path / "reports"),
        "-k",
        "SAF-08",
    )
    result.assert_outcomes(passed=1)
    events = json.loads(out.read_text())
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_ended"
    assert events[0]["requirements"] == ["TT-SAF-08"]
    start = kinds.index("requirement_started")
    concluded = kinds.index("requirement_concluded")
    assert start < kinds.index("measurement_judged") < concluded
    assert "trace_stored" in kinds[start:concluded]
    # the requirement is concluded once its teardown confirmed the table safe
    checks = [e for e in events if e["kind"] == "safe_state_checked"]
    assert [c["final"] for c in checks] == [False, True] and all(c["confirmed"] for c in checks)
    assert kinds.index("safe_state_checked") < concluded
    measured = {e["name"]: e["verdict"] for e in events if e["kind"] == "measurement_judged"}
    assert measured == {"exception_code": "PASS", "motion": "PASS"}
    assert events[concluded]["verdict"] == "PASS"
    assert events[-1]["record"] and events[-1]["complete"] is True
