"""The one host-side polling helper: wait until the bench reports something, bounded in time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from rig.errors import RigError

__all__ = ["WaitTimeout", "wait_until"]

T = TypeVar("T")


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
