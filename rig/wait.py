"""The one host-side polling helper: wait until the bench reports something, bounded in time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from rig.errors import RigError

__all__ = ["WaitTimeout", "on_progress", "progress", "wait_until"]

T = TypeVar("T")

# Who is told that the run made progress (the heartbeat's dead man's switch, see rig.plc). A
# tuple swapped under a lock, so `progress()` (called on every poll and exchange) takes no lock.
_feeders: tuple[Callable[[], None], ...] = ()
_feeders_lock = threading.Lock()


def on_progress(feed: Callable[[], None]) -> Callable[[], None]:
    """Call `feed()` at every `progress()` from now on; returns the function that stops it."""
    global _feeders
    with _feeders_lock:
        _feeders = (*_feeders, feed)

    def cancel() -> None:
        global _feeders
        with _feeders_lock:
            _feeders = tuple(f for f in _feeders if f is not feed)

    return cancel


def progress() -> None:
    """The run made progress: a PLC or instrument exchange completed, or a wait polled.

    This is the one feed of the heartbeat's dead man's switch (CONVENTIONS, "When things go
    wrong"): it is called by `wait_until` at every poll, by the PLC driver after every completed
    request on its main connection, and by the instrument transport after every exchange.
    When nothing calls it for the heartbeat's stall budget, the heartbeat stops writing and the
    table's own watchdog stops the table. Only the run's own thread may call it: a helper thread
    that calls it whatever the run does would keep a stalled run's table alive.
    """
    for feed in _feeders:
        feed()


class WaitTimeout(RigError):
    """A polled condition did not come true within the wall-clock bound."""

    def __init__(self, what: str, timeout: float, last: object, polls: int) -> None:
        self.what, self.timeout, self.last, self.polls = what, timeout, last, polls
        super().__init__(
            f"timed out after {timeout:g} s (wall) waiting for {what}; "
            f"last value seen: {last!r} ({polls} polls)"
        )


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.005,
    what: str,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll `predicate` until it returns a truthy value, and return that value.

    `timeout` is wall-clock seconds and only bounds the wait: it is a guard against a hung
    bench, never a verdict (verdicts come from device time). The predicate is always called at
    least once, and once more after the deadline, so a slow host cannot time out a condition
    that has come true. Exceptions from the predicate propagate, except those in `ignore`,
    which count as "not yet" (the last one is reported on timeout).
    """
    deadline = time.monotonic() + timeout
    last: object = None
    polls = 0
    while True:
        expired = time.monotonic() >= deadline
        polls += 1
        progress()
        try:
            value = predicate()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if expired:
            raise WaitTimeout(what, timeout, last, polls)
        # Sleeping only paces the polling; it never stands in for a device duration.
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
