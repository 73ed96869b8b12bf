"""Moves to a setpoint measured once per session and judged by several requirements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rig.procedures import arm
from rig.trace import Trace

STEP_RATE_HZ = 200.0
PAIRED_READINGS = 5


@dataclass(frozen=True)
class Step:
    """One move from rest to its setpoint under `settings`, with paired PLC / reference
    readings taken while it holds there."""

    settings: tuple[tuple[str, float], ...]
    trace: Trace
    plc_reading: float
    reference_reading: float

    def setting(self, name: str) -> float:
        """One of the step's settings."""
        return dict(self.settings)[name]


class Steps:
    """Runs each distinct step once and keeps it for every requirement that judges it."""

    def __init__(self) -> None:
        self._done: dict[tuple[tuple[str, float], ...], Step] = {}

    def get(
        self, table: Any, meter: Any, kind: Any, settings: dict[str, float], *, plc_register: str
    ) -> Step:
        """The step under these settings, measured now if not yet measured."""
        key = tuple(sorted(settings.items()))
        if key not in self._done:
            self._done[key] = self._run(table, meter, kind, settings, key, plc_register)
        return self._done[key]

    def _run(
        self,
        table: Any,
        meter: Any,
        kind: Any,
        settings: dict[str, float],
        key: tuple[tuple[str, float], ...],
        plc_register: str,
    ) -> Step:
        table.ready()
        table.configure(settings)
        # Long enough for a move 25 % slower than set, a table that settles slowly, and the
        # 2 s + 2 s settle window.
        duration = kind.expected_s(table, settings) / 0.75 + 8.0
        acq = arm(meter, duration_s=duration, rate_hz=STEP_RATE_HZ, pretrigger_s=0.1, table=table)
        meter.trigger()
        table.command("START")
        trace = acq.fetch(table)
        plc, ref = [], []
        for _ in range(PAIRED_READINGS):
            plc.append(table.read(plc_register))
            ref.append(meter.measure(kind.channel))
        table.stop_and_wait()
        return Step(key, trace, float(np.mean(plc)), float(np.mean(ref)))


def steps_of(requirement: Any, target: str) -> list[dict[str, float]]:
    """The step settings a step-type requirement defines: one per setpoint of `target`
    (params setpoints), or one per ramp rate (params rates, step)."""
    base = dict(requirement.settings)
    p = requirement.params
    if "setpoints" in p:
        return [{**base, target: float(s)} for s in p["setpoints"]]
    if "rates" in p:
        return [{**base, "RAMP_RATE": float(r), target: float(p["step"])} for r in p["rates"]]
    raise ValueError(f"{requirement.id} defines no steps (needs params setpoints or rates)")
