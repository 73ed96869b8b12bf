"""TT-890 traction table (KIND 1): cord tension physics behind the common PLC model.

The true cord tension is a closed-form `Track` (world signal "force", sampled by the load cell
emulator). The control channel reads true force + SENSOR_OFFSET / 10 N; the controller drives
that channel to its setpoint, so with an offset the true force goes to setpoint - offset. The
overforce monitor watches the true force (the independent second channel).

Dynamics chosen within the ICD: ramps, holds, rests and the controlled release exactly at
RAMP_RATE; emergency and patient stops hold the tension for a 10 ms reaction latency, then release
linearly at 2000 N/s to 0 N (ICD: >= 1000 N/s to <= 15 N); mains power loss releases linearly at
1500 N/s (0 N well within 1 s from any settable force). Every release goes to 0 N true tension
(the cord goes slack), whatever the control channel's offset. The readings of the ICD behind
these choices are T1-T5 in docs/icd-readings.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import IntEnum
from typing import ClassVar

import numpy as np

from .registers import ILLEGAL_VALUE, Fault, HoldingRegister, State, s16_x10
from .table import TableBase
from .track import Track, first_excursion

# Holding registers
MODE = 100
HARNESS = 101
FORCE_SET = 102
RAMP_RATE = 103
HOLD_S = 104
REST_S = 105
REST_PCT = 106

# Input registers
FORCE = 100
PHASE = 101

STATIC, INTERMITTENT = 0, 1
LUMBAR, CERVICAL = 0, 1
HARNESS_MAX_X10 = {LUMBAR: 8900, CERVICAL: 2220}
NO_LIMIT_MAX_X10 = 10000  # the no-force-limit defect's ceiling, 1000.0 N

STOP_LATENCY_S = 0.010
EMERGENCY_RELEASE_N_S = 2000.0
SLOW_PATIENT_RELEASE_N_S = 150.0
POWER_LOSS_RELEASE_N_S = 1500.0
MONITOR_PERSIST_S = 0.050
FORCE_NOISE_N = 0.1

# defect refused-write-jerk: a refused RAMP_RATE write tensions the cord to this and lets go
JERK_N = 60.0
JERK_RISE_S = 0.1
JERK_RELEASE_N_S = 600.0

OVERSHOOT = 0.08
OVERSHOOT_RISE_S = 0.2
OVERSHOOT_FALL_S = 0.4


class Phase(IntEnum):
    """PHASE input register."""

    IDLE = 0
    RAMP_UP = 1
    HOLD = 2
    RAMP_DOWN = 3
    REST = 4
    RELEASE = 5


class TractionTable(TableBase):
    """TT-890 motorised traction table PLC and cord physics."""

    KIND = 1
    MODEL = "TT-890"
    KIND_HOLDING = (
        HoldingRegister(MODE, "MODE", 0, 1, 0),
        HoldingRegister(HARNESS, "HARNESS", 0, 1, 0),
        # the upper bound depends on HARNESS: checked in _kind_rules_ok
        HoldingRegister(FORCE_SET, "FORCE_SET", 10, 0xFFFF, 1000),
        HoldingRegister(RAMP_RATE, "RAMP_RATE", 10, 1000, 200),
        HoldingRegister(HOLD_S, "HOLD_S", 1, 99, 30),
        HoldingRegister(REST_S, "REST_S", 1, 99, 10),
        HoldingRegister(REST_PCT, "REST_PCT", 0, 90, 50),
    )
    KIND_INPUTS: ClassVar[dict[int, str]] = {FORCE: "FORCE", PHASE: "PHASE"}

    def _init_kind(self, t0: float) -> None:
        self._force = Track(t0, 0.0)
        self._phase = Phase.IDLE

    def _signals(self) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        return {"force": self.sample_force}

    # == public ===============================================================================
    def sample_force(self, times: np.ndarray) -> np.ndarray:
        """True cord tension (N) at device `times`, as the load cell sees it."""
        return self._force.sample(times)

    def write(self, function_code: int, address: int, values: list[int]) -> int | None:
        """A write request; defect refused-write-jerk: a RAMP_RATE write refused as out of range
        briefly runs the drive (the controller acts on the value before its range check)."""
        result = super().write(function_code, address, values)
        if (
            result == ILLEGAL_VALUE
            and self.has("refused-write-jerk")
            and address <= RAMP_RATE < address + len(values)
        ):
            with self.world.lock:
                t = self._t
                if self._state == State.IDLE and self._force.value(t) <= 0.0:
                    self._force.linear_to(t, JERK_N, JERK_N / JERK_RISE_S)
                    t_peak = t + JERK_RISE_S
                    self._force.append(t_peak, JERK_N, -JERK_RELEASE_N_S, 0.0)
                    self._force.append(t_peak + JERK_N / JERK_RELEASE_N_S, 0.0, 0.0, 0.0)
        return result

    # == settings in engineering units ========================================================
    def _force_set_n(self) -> float:
        return self.setting(FORCE_SET) / 10.0

    def _rate(self) -> float:
        return self.setting(RAMP_RATE) / 10.0

    def _offset_n(self) -> float:
        return self.sensor_offset / 10.0

    def _hold_target(self) -> float:
        """True force the controller settles at in HOLD."""
        scale = 1.0
        if self.setting(MODE) == STATIC:
            if self.setting(HARNESS) == LUMBAR and self.has("lumbar-force-high"):
                scale = 1.04
            elif self.setting(HARNESS) == CERVICAL and self.has("cervical-force-low"):
                scale = 0.95
        return max(self._force_set_n() * scale - self._offset_n(), 0.0)

    def _rest_target(self) -> float:
        return max(self._force_set_n() * self.setting(REST_PCT) / 100.0 - self._offset_n(), 0.0)

    def _overforce_limit(self) -> float:
        fs = self._force_set_n()
        return fs + max(0.10 * fs, 20.0)

    # == hooks: registers =====================================================================
    def _kind_rules_ok(self, image: dict[int, int], written: frozenset[int]) -> bool:
        if not written & {HARNESS, FORCE_SET}:
            return True
        if self.has("no-force-limit"):
            return image[FORCE_SET] <= NO_LIMIT_MAX_X10
        return image[FORCE_SET] <= HARNESS_MAX_X10.get(image[HARNESS], -1)

    def _kind_input(self, addr: int, t: float) -> int:
        if addr == PHASE:
            return int(self._phase)
        reading = self._force.value(t) + self._offset_n() + self._rng.normal(0.0, FORCE_NOISE_N)
        if self.has("plc-force-high"):
            reading *= 1.03
        return s16_x10(reading)

    # == hooks: program =======================================================================
    def _start_motion(self, t: float) -> None:
        self._cancel("phase", "motion")
        self._ramp_up(t)

    def _ramp_up(self, t: float) -> None:
        self._phase = Phase.RAMP_UP
        target = self._hold_target()
        x = self._force.value(t)
        rising = target > x
        rate = self._rate() * (0.88 if rising and self.has("ramp-up-slow") else 1.0)
        t_level = self._force.linear_to(t, target, rate)
        if rising and self.setting(MODE) == STATIC and self.has("overshoot"):
            peak = target * (1.0 + OVERSHOOT)
            self._force.append(t_level, target, (peak - target) / OVERSHOOT_RISE_S, 0.0)
            t_peak = t_level + OVERSHOOT_RISE_S
            self._force.append(t_peak, peak, -(peak - target) / OVERSHOOT_FALL_S, 0.0)
            t_level += OVERSHOOT_RISE_S + OVERSHOOT_FALL_S
            self._force.append(t_level, target, 0.0, 0.0)
        self._schedule("phase", t_level, self._reached_hold)

    def _reached_hold(self, t: float) -> None:
        self._phase = Phase.HOLD
        if self.setting(MODE) == INTERMITTENT:
            hold = self.setting(HOLD_S) + (1.0 if self.has("hold-long") else 0.0)
            self._schedule("phase", t + hold, self._ramp_down)

    def _ramp_down(self, t: float) -> None:
        self._phase = Phase.RAMP_DOWN
        t_level = self._force.linear_to(t, self._rest_target(), self._rate())
        self._schedule("phase", t_level, self._reached_rest)

    def _reached_rest(self, t: float) -> None:
        self._phase = Phase.REST
        self._schedule("phase", t + self.setting(REST_S), self._rest_done)

    def _rest_done(self, t: float) -> None:
        self._count_cycle()
        self._ramp_up(t)

    # == hooks: stops =========================================================================
    def _controlled_stop(self, t: float) -> None:
        self._cancel("phase")
        self._phase = Phase.RELEASE
        t_end = self._force.linear_to(t, 0.0, self._rate())
        self._truth_motion(t, t_end)
        self._schedule("motion", t_end, self._released)

    def _emergency_stop(self, t: float) -> None:
        self._fast_release(t, EMERGENCY_RELEASE_N_S)

    def _patient_stop(self, t: float) -> None:
        slow = self.has("patient-release-slow")
        self._fast_release(t, SLOW_PATIENT_RELEASE_N_S if slow else EMERGENCY_RELEASE_N_S)

    def _fast_release(self, t: float, rate: float) -> None:
        self._cancel("phase")
        self._phase = Phase.RELEASE
        # the drive stops at once; the release starts after the reaction latency
        x = self._force.hold(t)
        t_end = t if x <= 0.0 else self._force.linear_to(t + STOP_LATENCY_S, 0.0, rate)
        self._truth_motion(t + STOP_LATENCY_S if x > 0.0 else t, t_end)
        self._schedule("motion", t_end, self._released)

    def _released(self, t: float) -> None:
        self._phase = Phase.IDLE
        self._motion_finished(t)

    def _power_loss_motion(self, t: float) -> None:
        self._phase = Phase.IDLE
        self._truth_motion(t, self._force.linear_to(t, 0.0, POWER_LOSS_RELEASE_N_S))

    # == hooks: monitor and status ============================================================
    def _monitor_next(self, t_from: float) -> tuple[float, int]:
        if self.has("no-overforce-monitor"):
            return math.inf, Fault.NONE
        t_trip = first_excursion(
            self._force, t_from, self._overforce_limit(), MONITOR_PERSIST_S, above=True
        )
        return t_trip, Fault.OVERFORCE

    def _monitor_settled(self, t: float) -> bool:
        return self._force.value(t) <= self._overforce_limit()

    def _at_setpoint(self, t: float) -> bool:
        return self._phase in (Phase.HOLD, Phase.REST)

    def _on_boot(self, t: float) -> None:
        self._phase = Phase.IDLE

    def _prune_history(self, before: float) -> None:
        self._force.prune(before)

    def _tracks(self) -> dict[str, Track]:
        return {"force": self._force}
