"""The live event channel of a run: plain-data events, delivered in order to any subscribers.

Events carry plain data (str, numbers, tuples, dicts), never pytest objects, so a subscriber
may be the console, a browser page or a log. Delivery is synchronous and in the order events
are published, the same order for every subscriber; a subscriber's exception is reported and
never reaches the run.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

log = logging.getLogger("rig.events")


@dataclass(frozen=True)
class Event:
    """Base of every event; `kind` names it in `as_dict()`."""

    kind: ClassVar[str] = "event"

    def as_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data, with its kind."""
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class Problem:
    """An error outside any measurement: a test's setup or teardown, or collection."""

    where: str  # node id, or "collection"
    text: str


@dataclass(frozen=True)
class RunStarted(Event):
    """The tests are collected and about to run."""

    kind: ClassVar[str] = "run_started"
    model: str | None
    serial: str
    station: str | None  # station file, or None for an emulated bench
    tests: tuple[str, ...]  # node ids, in the order they run
    requirements: tuple[str, ...]  # the requirement each test verifies ("" for none)
    problems: tuple[Problem, ...] = ()  # collection errors


@dataclass(frozen=True)
class RequirementStarted(Event):
    """One test (verifying one requirement) starts."""

    kind: ClassVar[str] = "requirement_started"
    test: str
    requirement: str  # "" for a test that verifies no requirement
    index: int  # 0-based position in RunStarted.tests
    total: int
    attempt: int = 1  # > 1: a retest after an ERROR (--retest)


@dataclass(frozen=True)
class MeasurementJudged(Event):
    """A measurement was judged against its limit and recorded."""

    kind: ClassVar[str] = "measurement_judged"
    requirement: str
    name: str
    value: float | None
    unit: str
    value_text: str
    limit_text: str
    verdict: str
    repeat: int | None = None
    bindings: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    trace: str | None = None
    attempt: int = 1


@dataclass(frozen=True)
class TraceStored(Event):
    """A trace file was stored in the run directory (and chained in the record)."""

    kind: ClassVar[str] = "trace_stored"
    path: str  # relative to the run directory
    sha256: str
    run_dir: str


@dataclass(frozen=True)
class RequirementConcluded(Event):
    """A test ended, its teardown (safe state) done; its requirement's verdict is recorded."""

    kind: ClassVar[str] = "requirement_concluded"
    test: str
    requirement: str
    verdict: str  # as recorded; NOT RUN when the test concluded nothing
    note: str = ""
    problems: tuple[Problem, ...] = ()  # setup / teardown errors
    attempt: int = 1
    retesting: bool = False  # this attempt ended ERROR and the requirement runs again


@dataclass(frozen=True)
class SafeStateChecked(Event):
    """The table's safe state was checked (after a test, or finally at the end of the run)."""

    kind: ClassVar[str] = "safe_state_checked"
    confirmed: bool
    final: bool
    details: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class RunPlanned(Event):
    """What the run expects, for a view's progress: each requirement's device time as the last
    run of this model on this reports directory took it (none the first time)."""

    kind: ClassVar[str] = "run_planned"
    model: str | None
    expected_s: dict[str, float] = field(default_factory=dict)  # requirement -> device s
    source: str = ""  # where the expectations come from


@dataclass(frozen=True)
class StepStarted(Event):
    """A requirement's current step (making ready, measuring, making safe ...), for a view.

    `device_s` is the requirement's device time so far: wall time since it started times the
    PLC clock rate the table measured (`clock_rate`, device s per wall s; None until the table
    has measured it). An estimate for progress only; no verdict uses it."""

    kind: ClassVar[str] = "step_started"
    requirement: str
    test: str
    step: str
    attempt: int = 1
    device_s: float | None = None
    clock_rate: float | None = None


@dataclass(frozen=True)
class RunEnded(Event):
    """The run ended; the record (if any was written) is closed with its overall verdict."""

    kind: ClassVar[str] = "run_ended"
    verdict: str | None  # None when no record was written (nothing ran)
    record: str | None  # the run directory
    complete: bool
    not_run: tuple[str, ...] = ()
    unsafe: str | None = None
    interrupted: str | None = None  # the signal that stopped the run (SIGINT, SIGTERM)


Subscriber = Callable[[Event], object]


class EventBus:
    """Publish / subscribe, synchronous and thread-safe."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        # one delivery at a time: every subscriber sees the events in the same order;
        # re-entrant so that a subscriber may publish
        self._deliver = threading.RLock()
        # the latest failures, for whoever asks; bounded: a view broken for good fails on every
        # event of a long run
        self.failures: deque[tuple[Subscriber, Event, BaseException]] = deque(maxlen=100)
        self._reported: set[int] = set()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Follow every event from now on; returns a function that unsubscribes."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Hand `event` to every subscriber, in the order they subscribed."""
        with self._lock:
            subscribers = list(self._subscribers)
        with self._deliver:
            for sub in subscribers:
                try:
                    sub(event)
                except Exception as e:  # a broken view must not break the run
                    self.failures.append((sub, event, e))
                    if id(sub) not in self._reported:  # once per subscriber, with the traceback
                        self._reported.add(id(sub))
                        log.warning(
                            "event subscriber %r failed on %s (later failures not logged)",
                            sub,
                            event.kind,
                            exc_info=e,
                        )
