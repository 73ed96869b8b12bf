"""Static force steps measured once per session and judged by several requirements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rig.kinds import arm
from rig.trace import Trace

STEP_RATE_HZ = 200.0
PAIRED_READINGS = 5


@dataclass(frozen=True)
class Step:
    """One step from 0 N to FORCE_SET under `settings`, with PLC/LC readings while holding."""

    settings: tuple[tuple[str, float], ...]
    trace: Trace
    plc_force: float
    lc_force: float

    @property
    def set(self) -> float:
        """The step's FORCE_SET."""
        return dict(self.settings)["FORCE_SET"]


class Steps:
    """Runs each distinct step once and keeps it for every requirement that judges it."""

    def __init__(self) -> None:
        self._done: dict[tuple[tuple[str, float], ...], Step] = {}

    def get(self, table: Any, meter: Any, settings: dict[str, float]) -> Step:
        """The step under these settings, measured now if not yet measured."""
        key = tuple(sorted(settings.items()))
        if key not in self._done:
            self._done[key] = self._run(table, meter, settings, key)
        return self._done[key]

    def _run(
        self, table: Any, meter: Any, settings: dict[str, float], key: tuple[tuple[str, float], ...]
    ) -> Step:
        table.ready()
        table.configure(settings)
        # Long enough for a ramp 25 % slower than set, a table that settles slowly, and the
        # 2 s + 2 s settle window.
        duration = settings["FORCE_SET"] / settings["RAMP_RATE"] / 0.75 + 8.0
        acq = arm(meter, duration_s=duration, rate_hz=STEP_RATE_HZ, pretrigger_s=0.1, table=table)
        meter.trigger()
        table.command("START")
        trace = acq.fetch(table)
        plc, lc = [], []
        for _ in range(PAIRED_READINGS):
            plc.append(table.plc.read("FORCE"))
            lc.append(meter.measure())
        table.command("STOP")
        table.wait_state("IDLE", "FAULT", "ESTOP", device_s=duration * 3 + 30)
        return Step(key, trace, float(np.mean(plc)), float(np.mean(lc)))


def steps_of(requirement: Any) -> list[dict[str, float]]:
    """The step settings a step-type requirement defines (settled-force or ramp-rate kind)."""
    base = dict(requirement.settings)
    p = requirement.params
    if "setpoints" in p:
        return [{**base, "FORCE_SET": float(s)} for s in p["setpoints"]]
    if "rates" in p:
        return [{**base, "RAMP_RATE": float(r), "FORCE_SET": float(p["step"])} for r in p["rates"]]
    raise ValueError(f"{requirement.id} defines no steps (needs params setpoints or rates)")
