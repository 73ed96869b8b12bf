"""Progress of a run for live views: step events, expected device times, the events file.

A plugin module (listed in rig.plugin's `pytest_plugins`): it publishes on the session's event
channel what a person following the run needs beyond the verdicts (the requirement's current
step, its device time so far, what the last run of this model took), writes the events file
(`--events FILE`, one JSON object a line, flushed as written) and checks `--confirm` against
the profile's operator steps before anything runs.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import pytest

from ..errors import ConfigError
from ..evidence.format import now_iso
from ..line import operator_steps
from .events import (
    Event,
    EventBus,
    RequirementConcluded,
    RequirementStarted,
    RunEnded,
    RunPlanned,
    StepStarted,
)
from .session import SESSION_KEY

#: Device seconds each requirement took on the last run of a model, per reports directory.
DEVICE_TIMES_FILE = "device-times.json"
_TRACKER = pytest.StashKey["Tracker"]()


class EventLog:
    """An event subscriber appending each event to a file as one JSON line, flushed as written:
    a follower (the operator station) sees every event the moment it happened. Not fsynced:
    the record is the evidence (and is); this file is a view, and a sync per event would slow
    a run that judges hundreds of measurements."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        """Write one event (with the wall time it was published, for people, not verdicts)."""
        line = json.dumps({**event.as_dict(), "at": now_iso()}, default=str, allow_nan=False)
        with self._lock:
            if self._file is None:
                return
            self._file.write(line + "\n")
            self._file.flush()
            if isinstance(event, RunEnded):
                self.close()

    def close(self) -> None:
        """Close the file (after the run ended)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete event line of an events file (a line being written is left out)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # still being written
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def follow_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete event lines of `path` from byte `offset`, and the offset after them."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for raw in data[:end].splitlines():
        try:
            events.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return events, offset + end


# -- expected device times --------------------------------------------------------------------
def load_device_times(reports: Path, model: str) -> dict[str, float]:
    """The device seconds each requirement of `model` took on the last run recorded in
    `reports` (empty when none was, or the file is unreadable: it is a progress aid only)."""
    try:
        data = json.loads((reports / DEVICE_TIMES_FILE).read_text(encoding="utf-8"))
        times = data.get(model, {})
        return {str(k): float(v) for k, v in times.items() if isinstance(v, int | float)}
    except (OSError, ValueError, AttributeError):
        return {}


def save_device_times(reports: Path, model: str, took: Mapping[str, float]) -> None:
    """Remember what each requirement took (merged over the model's earlier entries; written
    whole, at once, so a reader never sees half a file)."""
    path = reports / DEVICE_TIMES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    entry = dict(data.get(model, {}) or {})
    entry.update({k: round(v, 3) for k, v in took.items()})
    data[model] = entry
    reports.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{DEVICE_TIMES_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


# -- the plugin --------------------------------------------------------------------------------
class Tracker:
    """Follows the requirements' wall time to publish their steps with a device-time estimate,
    and keeps what each took for the next run's expectations."""

    def __init__(self, config: pytest.Config, events: EventBus) -> None:
        self.config = config
        self.events = events
        self.current: tuple[str, str, int] | None = None  # requirement, test, attempt
        self.started = 0.0
        self.took: dict[str, float] = {}

    def session(self) -> Any:
        return self.config.stash.get(SESSION_KEY, None)

    def rate(self) -> float | None:
        """The table's measured clock rate, without I/O: only once the table measured it."""
        rs = self.session()
        table = getattr(rs, "table", None)
        if table is None:
            return None
        rate = getattr(table, "_rate", None)  # set by Table.wall_timeout from the PLC clock
        return float(rate) if rate else None

    def on_event(self, event: Event) -> None:
        """Start the requirement's clock; keep what a concluded one took."""
        if isinstance(event, RequirementStarted) and event.requirement:
            self.current = (event.requirement, event.test, event.attempt)
            self.started = time.monotonic()
        elif isinstance(event, RequirementConcluded) and self.current is not None:
            device = self.device_s()
            if device is not None and event.requirement and not event.retesting:
                self.took[event.requirement] = device
            self.current = None

    def device_s(self) -> float | None:
        rate = self.rate()
        if self.current is None or rate is None:
            return None
        return (time.monotonic() - self.started) * rate

    def step(self, text: str) -> None:
        """Announce the current requirement's step."""
        if self.current is None:
            return
        req, test, attempt = self.current
        self.events.publish(
            StepStarted(
                requirement=req,
                test=test,
                step=text,
                attempt=attempt,
                device_s=self.device_s(),
                clock_rate=self.rate(),
            )
        )


@pytest.hookimpl
def pytest_rig_subscribe(config: pytest.Config, events: EventBus) -> None:
    """Follow the run for step events; write the events file when asked for."""
    tracker = Tracker(config, events)
    config.stash[_TRACKER] = tracker
    events.subscribe(tracker.on_event)
    path = config.getoption("rig_events", None) or config.getini("rig_events")
    if path:
        log = EventLog(Path(path))
        events.subscribe(log)
        config.add_cleanup(log.close)


@pytest.hookimpl(tryfirst=True)  # before the rig's own: refused before a bench starts
def pytest_sessionstart(session: pytest.Session) -> None:
    """`--confirm` names operator steps the profile declares, by an operator (before anything
    runs: a mistake is a usage error)."""
    rs = session.config.stash.get(SESSION_KEY, None)
    if rs is None or not rs.options.get("confirm"):
        return
    try:
        operator_steps(rs.get_profile(), rs.options["confirm"], rs.options["operator"] or "")
    except ConfigError as e:
        raise pytest.UsageError(str(e)) from None


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """After the run is announced: what each requirement took last time on this model."""
    tracker = session.config.stash.get(_TRACKER, None)
    rs = session.config.stash.get(SESSION_KEY, None)
    if tracker is None or rs is None or not rs.options.get("model"):
        return
    model = str(rs.profile.model.name if rs.profile is not None else rs.options["model"])
    reports = rs.reports()
    tracker.events.publish(
        RunPlanned(
            model=model,
            expected_s=load_device_times(reports, model),
            source=str(reports / DEVICE_TIMES_FILE),
        )
    )


def _step(item: pytest.Item, text: str) -> None:
    tracker = item.config.stash.get(_TRACKER, None)
    if tracker is not None:
        tracker.step(text)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    """Step: making the table ready (fixtures: the bench, the table IDLE, settings)."""
    _step(item, "making the table ready")
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Step: measuring (the requirement's body)."""
    _step(item, "measuring")
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Step: making the table safe (the safe-state ladder, settings written back)."""
    _step(item, "making the table safe")
    return (yield)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Keep what each concluded requirement took, for the next run's expectations."""
    tracker = session.config.stash.get(_TRACKER, None)
    rs = session.config.stash.get(SESSION_KEY, None)
    if tracker is None or rs is None or not tracker.took or rs.profile is None:
        return
    try:
        save_device_times(rs.reports(), rs.profile.model.name, tracker.took)
    except OSError:
        pass  # expectations are a progress aid; the run's evidence is the record
