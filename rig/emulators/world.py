"""The simulated world one emulated bench shares: device clock, ACT relays, trigger bus, signals."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import numpy as np

from .clock import DeviceClock

RELAYS = ("estop", "patient", "power")
RELAY_DEFAULTS = {"estop": False, "patient": False, "power": True}

Signal = Callable[[np.ndarray], np.ndarray]


class Model(Protocol):
    """A simulated device that lives in the world (a table)."""

    def advance_to(self, t: float) -> None:
        """Process every event up to device time t (closed form, no fixed step)."""

    def on_relay(self, name: str, on: bool, t: float) -> None:
        """An ACT relay changed at device time t (the table sees the contact at that instant)."""


class World:
    """State shared by every device of one bench.

    Every access from a server goes through `lock` and first calls `advance()`, which brings the
    models up to the present device time; so the world is exact at whatever instant it is seen,
    with no background loop.
    """

    def __init__(self, clock: DeviceClock, *, seed: int = 0) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.rng = np.random.default_rng(seed)
        self.relays: dict[str, bool] = dict(RELAY_DEFAULTS)
        self.trigger_edges: list[float] = []
        self.models: list[Model] = []
        self.signals: dict[str, Signal] = {}
        self._edge_listeners: list[Callable[[float], None]] = []
        self._instant: float | None = None  # inside `instant()`: the slot's device time

    @contextmanager
    def instant(self) -> Iterator[float]:
        """One communication slot of the PLC: every access in the block happens at one device
        instant, as a PLC serves the requests it has received in one scan's comm window. The
        Modbus server serves the requests of one TCP segment in one slot, so the emulator's own
        CPU time, multiplied by the time scale, does not spread them apart (on a real table
        the spread is the PLC's scan, the same at any scale). Holds `lock` throughout."""
        with self.lock:
            t = self.advance()
            outer, self._instant = self._instant, t
            try:
                yield t
            finally:
                self._instant = outer

    def add_model(self, model: Model) -> None:
        """Register a model to advance and to tell about relay changes."""
        self.models.append(model)

    def add_signal(self, name: str, signal: Signal) -> None:
        """Register a true physical quantity instruments can sample, e.g. 'force'."""
        self.signals[name] = signal

    def on_trigger(self, listener: Callable[[float], None]) -> None:
        """Call `listener(t)` on every trigger-bus edge."""
        self._edge_listeners.append(listener)

    def advance(self) -> float:
        """Bring every model to the present device time (the slot's instant inside
        `instant()`); return that time."""
        with self.lock:
            t = self.clock.now() if self._instant is None else self._instant
            for m in self.models:
                m.advance_to(t)
            return t

    def set_relay(self, name: str, on: bool) -> bool:
        """Switch an ACT relay now. Returns True if it changed (and so issued a trigger edge)."""
        return self.set_relays({name: on})

    def set_relays(self, changes: dict[str, bool]) -> bool:
        """Switch several relays at one instant: one trigger edge if any of them changed."""
        for name in changes:
            if name not in RELAYS:
                raise KeyError(name)
        with self.lock:
            t = self.advance()
            changed = {n: v for n, v in changes.items() if self.relays[n] != v}
            if not changed:
                return False
            self.relays.update(changed)
            self.trigger_edges.append(t)
            for listener in self._edge_listeners:
                listener(t)
            for name, on in changed.items():
                for m in self.models:
                    m.on_relay(name, on, t)
            return True

    def sample(self, signal: str, times: np.ndarray) -> np.ndarray:
        """True values of `signal` at device `times` (which must not be in the future)."""
        with self.lock:
            self.advance()
            return self.signals[signal](np.asarray(times, dtype=float))
