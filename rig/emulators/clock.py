"""Device time for the emulated bench: a clock that may run faster than the wall clock."""

from __future__ import annotations

import threading
import time


class DeviceClock:
    """Device seconds since the bench started, running `scale` times faster than the wall clock.

    Everything an emulated device does is a function of this clock, so verdicts computed from
    device timestamps are the same at any scale.
    """

    def __init__(self, scale: float = 1.0) -> None:
        if not scale > 0:
            raise ValueError(f"time scale must be > 0, got {scale!r}")
        self.scale = float(scale)
        self._t0 = time.monotonic()

    def now(self) -> float:
        """Device time in seconds."""
        return (time.monotonic() - self._t0) * self.scale

    def wall_seconds(self, device_seconds: float) -> float:
        """Wall-clock seconds that `device_seconds` of device time take."""
        return device_seconds / self.scale


class ManualClock(DeviceClock):
    """A clock the test moves by hand: deterministic emulator tests with no waiting."""

    def __init__(self, start: float = 0.0) -> None:
        self.scale = 1.0
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        """Device time in seconds."""
        with self._lock:
            return self._now

    def set(self, t: float) -> None:
        """Move to device time `t` (never backwards)."""
        with self._lock:
            if t < self._now:
                raise ValueError(f"device time cannot go back from {self._now} to {t}")
            self._now = float(t)

    def advance(self, dt: float) -> None:
        """Move forward by `dt` device seconds."""
        self.set(self.now() + dt)
