"""IT-90 powered inversion table (KIND 3): rotation physics behind the common PLC model.

The true table angle (deg; 0 upright, positive head-down) is a closed-form `Track` (world signal
"angle", sampled by the INC-360 emulator). The control channel reads true angle +
SENSOR_OFFSET / 10 deg; the controller positions on that channel, so every target it rotates to
(ANGLE_SET, and 0 for a return) is a control-channel angle and the true angle settles at
target - SENSOR_OFFSET / 10. The over-angle monitor watches the true angle (the independent
second channel). Nothing steps on a tick: moves are planned as trapezoids, stops as brakes, and
the monitor trip is found in closed form.

Dynamics chosen within the ICD: every drive move (to ANGLE_SET, the automatic return, the
controlled and patient stop returns) is trapezoidal at ACCEL_DEG_S2 = 10 deg/s2 with top speed
RATE; the emergency brake decelerates at BRAKE_DEG_S2 = 120 deg/s2 (ICD: no less than 60), so
from the top speed 6 deg/s it stops in 50 ms and 0.15 deg; mains power loss applies the same
brake. The PLC's ANGLE reading has 0.02 deg of Gaussian noise, quantised to 0.1 deg.

Readings of the ICD for the IT-90 (the common ones: docs/icd-readings.md, section 1):

I1. Targets are control-channel angles: START rotates to ANGLE_SET, and every return (automatic,
    controlled stop, patient stop, watchdog) rotates to 0 deg, both on the control channel; with
    a SENSOR_OFFSET the true angle ends at target - offset (no mechanical clamp at 0).
I2. The hold (STATUS bit 2, at setpoint) starts when the rotation to ANGLE_SET arrives; HOLD_S
    counts from that arrival; then the automatic return. HOLD_S 0 holds until STOP or session
    end. A START when the table already stands at ANGLE_SET holds at once.
I3. CYCLES counts a return to 0 when it completes in RUNNING (the automatic return) or STOPPING
    (STOP, session end) and the table was not already at 0 when the return began. A return run
    in FAULT state (patient stop, watchdog) is not counted.
I4. Brake (STATUS bit 4): a spring-applied holding brake, released only while the drive
    positions the table. It is engaged whenever the motor is disabled (IDLE at rest, ESTOP,
    FAULT after a stop, after a power-on) and from the first instant of an emergency stop (the
    motor bit, M8 in docs/icd-readings.md, stays set until the brake has brought the table to rest).
I5. Emergency stop (ESTOP, e-stop circuit, monitor trip) and power loss: the drive lets go and
    the brake decelerates the rotation at once (no reaction latency) and then holds the angle.
    RESET leaves the table where it stands; a brake still under way finishes.
I6. The over-angle monitor trips (FAULT 4, emergency stop) at the first instant at which the true
    angle is above ANGLE_LIMIT + 2.0 deg while its velocity is head-down (> 0), with no
    persistence time (the ICD names none). A table above the window that stands still or rotates
    head-up does not trip. ANGLE_LIMIT as it is at each instant applies.
I7. ANGLE_SET's range is 0 to ANGLE_LIMIT: the row range is 0-900 (ANGLE_LIMIT's own maximum)
    and the rule ANGLE_SET <= ANGLE_LIMIT is judged on the holding image the write leaves, for
    any write touching either register (so FC16 can raise both together).
I8. ANGULAR_RATE is the drive's velocity (d angle / dt of both channels, no noise) rounded to
    0.1 deg/s.

Seeded defects (defects_it90.py): see each `has(...)` below; the only ones that need more than
a constant are: `overshoot` (after arriving at ANGLE_SET the table goes on 1.5 deg past it in
0.2 s and comes back in 0.4 s; the hold and STATUS bit 2 start once back, HOLD_S still counts
from the first arrival), `hold-drift` (while holding under the motor the angle creeps head-down
at 0.04 deg/s, up to 0.5 deg past the hold angle, where the position loop's error limit catches
it; the cap keeps a long HOLD_S 0 hold from reaching IT-PERF-03's 1.0 deg or the monitor) and
`brake-drift` (once an emergency brake or a power loss has brought the table to rest, the brake
slips: the angle creeps head-up toward 0 at 0.06 deg/s for as long as what cut the drive still
cuts it: the open e-stop circuit until it closes, the missing mains until it returns (or, if
the circuit is open by then, until that closes), a latched ESTOP command or monitor trip until
RESET; a START ends it too. Tying the end to the cause keeps verdicts independent of host
timing: IT-SAF-07 closes the circuit before its quiet window, so no slip is left in it however
late the RESET arrives).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import IntEnum
from typing import ClassVar

import numpy as np

from .registers import Fault, HoldingRegister, State, s16_x10
from .table import StopKind, TableBase
from .track import Track

# Holding registers
ANGLE_SET = 300
RATE = 301
HOLD_S = 302
ANGLE_LIMIT = 303

# Input registers
ANGLE = 300
ANGULAR_RATE = 301

ANGLE_MAX_X10 = 900  # ANGLE_LIMIT's maximum, hence also ANGLE_SET's

ACCEL_DEG_S2 = 10.0  # ICD: trapezoidal moves with 10 deg/s2
BRAKE_DEG_S2 = 120.0  # ICD: no less than 60 deg/s2
MONITOR_MARGIN_DEG = 2.0  # ICD: trips above ANGLE_LIMIT + 2.0 deg moving head-down
ANGLE_NOISE_DEG = 0.02
AT_ZERO_DEG = 1e-6  # a return that starts this close to 0 (control channel) is no cycle

# seeded defects
GAIN_HIGH = 1.01
SLOW_RATE_LIMIT_X10 = 20  # RATE below 2.0 deg/s
SLOW_RATE_FACTOR = 0.85
OVERSHOOT_DEG = 1.5
OVERSHOOT_RISE_S = 0.2
OVERSHOOT_FALL_S = 0.4
HOLD_CREEP_DEG_S = 0.04
HOLD_CREEP_MAX_DEG = 0.5
PLC_ANGLE_OFFSET_DEG = 0.4
SLOW_BRAKE_DEG_S2 = 20.0
BRAKE_CREEP_DEG_S = 0.06
PATIENT_RETURN_FACTOR = 1.3
SLOW_PATIENT_RETURN_FACTOR = 0.7


class Phase(IntEnum):
    """Where the program is (internal: the IT-90 has no PHASE register)."""

    IDLE = 0
    ROTATE = 1  # to ANGLE_SET
    SETTLE = 2  # arrived; the overshoot defect's excursion under way
    HOLD = 3  # at ANGLE_SET
    RETURN = 4  # automatic return to 0 (RUNNING)
    STOP_RETURN = 5  # controlled or patient stop motion
    BRAKE = 6  # emergency brake under way


class Creep(IntEnum):
    """Why the brake slips under the brake-drift defect (NONE: it does not)."""

    NONE = 0
    CIRCUIT = 1  # the e-stop circuit is open: ends when it closes
    POWER = 2  # mains lost: ends when mains returns
    LATCH = 3  # ESTOP command or monitor trip: ends on RESET


class AngleTrack(Track):
    """A `Track` that can also find, in closed form, when it moves further out past a limit."""

    def first_moving_above(self, t_from: float, level: float) -> float:
        """Earliest t >= t_from with x > level and dx/dt > 0; inf if the plan never does it."""
        for t0, t1, x0, v0, a in self.pieces_from(t_from):
            # x - level and v change sign only at these instants, so the condition is constant
            # between consecutive ones: a probe inside each interval decides it (a probe at the
            # instant itself would miss a table leaving the level from rest, x - level ~ s^2).
            span = t1 - t0
            cuts = [0.0, -v0 / a] if a != 0.0 else [0.0]
            cuts += _roots(0.5 * a, v0, x0 - level)
            edges = sorted({c for c in cuts if 0.0 <= c < span})
            for lo, hi in zip(edges, [*edges[1:], span], strict=True):
                probe = lo + (min(hi, lo + 2.0) - lo) / 2.0
                x = x0 + v0 * probe + 0.5 * a * probe * probe
                if x > level and v0 + a * probe > 0.0:
                    return t0 + lo
        return math.inf


def _roots(q: float, b: float, c: float) -> list[float]:
    """Real roots of q s^2 + b s + c = 0 (a linear or constant equation when q is 0)."""
    if q == 0.0:
        return [-c / b] if b != 0.0 else []
    disc = b * b - 4.0 * q * c
    if disc < 0.0:
        return []
    r = math.sqrt(disc)
    return [(-b - r) / (2.0 * q), (-b + r) / (2.0 * q)]


class InversionTable(TableBase):
    """IT-90 powered inversion table PLC and rotation physics."""

    KIND = 3
    MODEL = "IT-90"
    KIND_HOLDING = (
        # the upper bound is ANGLE_LIMIT: checked in _kind_rules_ok
        HoldingRegister(ANGLE_SET, "ANGLE_SET", 0, ANGLE_MAX_X10, 300, signed=True),
        HoldingRegister(RATE, "RATE", 10, 60, 30),
        HoldingRegister(HOLD_S, "HOLD_S", 0, 600, 60),
        HoldingRegister(ANGLE_LIMIT, "ANGLE_LIMIT", 0, ANGLE_MAX_X10, 600, signed=True),
    )
    KIND_INPUTS: ClassVar[dict[int, str]] = {ANGLE: "ANGLE", ANGULAR_RATE: "ANGULAR_RATE"}

    def _init_kind(self, t0: float) -> None:
        self._angle = AngleTrack(t0, 0.0)
        self._phase = Phase.IDLE
        self._arrived = -math.inf  # when the rotation to ANGLE_SET arrived
        self._return_counts = False  # the return under way began away from 0
        self._brake_cause = Creep.LATCH  # what cut the drive for the last emergency brake
        self._creep = Creep.NONE  # brake-drift: why the brake slips now, if it does
        self._creep_from = -math.inf  # when the slip starts (the end of the brake)

    def _signals(self) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        return {"angle": self.sample_angle}

    # == public ===============================================================================
    def sample_angle(self, times: np.ndarray) -> np.ndarray:
        """True table angle (deg, positive head-down) at device `times`, as the INC sees it."""
        return self._angle.sample(times)

    # == settings in engineering units ========================================================
    def _angle_set(self) -> float:
        return self.setting(ANGLE_SET) / 10.0

    def _angle_limit(self) -> float:
        return self.setting(ANGLE_LIMIT) / 10.0

    def _offset(self) -> float:
        return self.sensor_offset / 10.0

    def _rate(self) -> float:
        raw = self.setting(RATE)
        factor = 1.0
        if raw < SLOW_RATE_LIMIT_X10 and self.has("rate-low-at-slow-speed"):
            factor = SLOW_RATE_FACTOR
        return raw / 10.0 * factor

    def _brake_decel(self) -> float:
        return SLOW_BRAKE_DEG_S2 if self.has("brake-slow") else BRAKE_DEG_S2

    def _true_target(self, control_target: float) -> float:
        """True angle at which the control channel reads `control_target`."""
        return control_target - self._offset()

    # == hooks: registers =====================================================================
    def _kind_rules_ok(self, image: dict[int, int], written: frozenset[int]) -> bool:
        if not written & {ANGLE_SET, ANGLE_LIMIT} or self.has("no-limit-check"):
            return True
        angle_set = self._rows[ANGLE_SET].decode(image[ANGLE_SET])
        return angle_set <= self._rows[ANGLE_LIMIT].decode(image[ANGLE_LIMIT])

    def _kind_input(self, addr: int, t: float) -> int:
        if addr == ANGULAR_RATE:
            reading = self._angle.velocity(t)
        else:
            reading = self._angle.value(t) + self._offset() + self._rng.normal(0.0, ANGLE_NOISE_DEG)
            if self.has("plc-angle-offset"):
                reading += PLC_ANGLE_OFFSET_DEG
        return s16_x10(reading)

    # == hooks: program =======================================================================
    def _start_motion(self, t: float) -> None:
        self._cancel("phase", "motion")
        self._creep = Creep.NONE  # the drive takes the table: the move below re-plans the track
        self._phase = Phase.ROTATE
        control = self._angle_set() * (GAIN_HIGH if self.has("angle-gain-high") else 1.0)
        target = self._true_target(control)
        x = self._angle.value(t)
        t_arrive = self._angle.trapezoid_to(t, target, self._rate(), ACCEL_DEG_S2)
        if self.has("overshoot") and abs(target - x) > 1e-9:
            peak = target + math.copysign(OVERSHOOT_DEG, target - x)
            self._angle.append(t_arrive, target, (peak - target) / OVERSHOOT_RISE_S, 0.0)
            self._angle.append(
                t_arrive + OVERSHOOT_RISE_S, peak, (target - peak) / OVERSHOOT_FALL_S, 0.0
            )
            t_back = t_arrive + OVERSHOOT_RISE_S + OVERSHOOT_FALL_S
            self._angle.append(t_back, target, 0.0, 0.0)
            self._schedule("phase", t_arrive, lambda te: self._arrive(te, t_back))
        else:
            self._schedule("phase", t_arrive, lambda te: self._arrive(te, te))

    def _arrive(self, t: float, t_settled: float) -> None:
        self._arrived = t
        if t_settled > t:
            self._phase = Phase.SETTLE
            self._schedule("phase", t_settled, self._hold)
        else:
            self._hold(t)

    def _hold(self, t: float) -> None:
        self._phase = Phase.HOLD
        if self.has("hold-drift"):
            x = self._angle.value(t)
            self._angle.linear_to(t, x + HOLD_CREEP_MAX_DEG, HOLD_CREEP_DEG_S)
        hold_s = self.setting(HOLD_S)
        if hold_s > 0:
            self._schedule("phase", max(self._arrived + hold_s, t), self._auto_return)

    def _auto_return(self, t: float) -> None:
        self._phase = Phase.RETURN
        t_end = self._return_to_zero(t, self._rate())
        self._schedule("phase", t_end, self._auto_returned)

    def _auto_returned(self, t: float) -> None:
        self._phase = Phase.IDLE
        if self._return_counts:
            self._count_cycle()
        self._program_finished(t)

    def _return_to_zero(self, t: float, rate: float) -> float:
        """Plan the trapezoidal rotation to control-channel 0 deg; returns the arrival."""
        target = self._true_target(0.0)
        self._return_counts = abs(self._angle.value(t) - target) > AT_ZERO_DEG
        return self._angle.trapezoid_to(t, target, rate, ACCEL_DEG_S2)

    # == hooks: stops =========================================================================
    def _controlled_stop(self, t: float) -> None:
        self._stop_return(t, self._rate())

    def _patient_stop(self, t: float) -> None:
        factor = PATIENT_RETURN_FACTOR if self.has("patient-return-fast") else 1.0
        if self.has("patient-return-slow"):
            factor = SLOW_PATIENT_RETURN_FACTOR
        self._stop_return(t, self._rate() * factor)

    def _stop_return(self, t: float, rate: float) -> None:
        self._cancel("phase", "motion")
        self._phase = Phase.STOP_RETURN
        t_end = self._return_to_zero(t, rate)
        self._truth_motion(t, t_end)
        self._schedule("motion", t_end, self._stop_returned)

    def _stop_returned(self, t: float) -> None:
        self._phase = Phase.IDLE
        if self._return_counts and self._state in (State.RUNNING, State.STOPPING):
            self._count_cycle()
        self._motion_finished(t)

    def _emergency_stop(self, t: float) -> None:
        self._cancel("phase", "motion")
        self._phase = Phase.BRAKE
        # what cut the drive decides when a brake-drift slip ends (see _start_creep)
        self._brake_cause = Creep.CIRCUIT if self.world.relays["estop"] else Creep.LATCH
        t_stop, _ = self._angle.brake(t, self._brake_decel())
        self._truth_motion(t, t_stop)
        self._schedule("motion", t_stop, self._braked)

    def _braked(self, t: float) -> None:
        self._phase = Phase.IDLE
        self._motion_finished(t)
        if self._brake_cause == Creep.CIRCUIT and self.world.relays["estop"]:
            self._start_creep(t, Creep.CIRCUIT)
        elif self._brake_cause == Creep.LATCH and self._state in (State.ESTOP, State.FAULT):
            self._start_creep(t, Creep.LATCH)

    def _power_loss_motion(self, t: float) -> None:
        # the base has cleared every timer: the dead PLC plans nothing more, the brake acts
        self._phase = Phase.IDLE
        t_stop, _ = self._angle.brake(t, self._brake_decel())
        self._truth_motion(t, t_stop)
        self._start_creep(t_stop, Creep.POWER)

    def _start_creep(self, t: float, cause: Creep) -> None:
        """brake-drift: from `t` the brake alone holds, and slips head-up toward 0 deg.

        The slip lasts while what cut the drive still cuts it: the open e-stop circuit, the
        missing mains, or (ESTOP command, monitor trip) the latched stop until RESET.
        """
        if not self.has("brake-drift"):
            return
        self._creep = cause
        self._creep_from = t
        if self._angle.value(t) > 0.0:
            self._angle.linear_to(t, 0.0, BRAKE_CREEP_DEG_S)

    def _end_creep(self, t: float) -> None:
        """The drive holds again at `t`: a slip stops there (a brake still under way finishes)."""
        if self._creep == Creep.NONE:
            return
        self._creep = Creep.NONE
        if t < self._creep_from:
            self._angle.brake(t, self._brake_decel())
        else:
            self._angle.hold(t)

    def _reset(self, t: float) -> None:
        # RESET has no kind hook in the base; it ends a slip that the latched stop caused
        super()._reset(t)
        if self._state not in (State.ESTOP, State.FAULT):
            self._end_creep(t)

    def on_relay(self, name: str, on: bool, t: float) -> None:
        """An ACT relay changed at device time t (base behaviour; it may end a brake slip)."""
        with self.world.lock:
            super().on_relay(name, on, t)
            if name == "estop" and not on and self._creep == Creep.CIRCUIT:
                self._end_creep(self._t)
            elif name == "power" and on and self._creep == Creep.POWER:
                if self.world.relays["estop"]:
                    self._creep = Creep.CIRCUIT  # mains is back, the circuit still cuts
                else:
                    self._end_creep(self._t)

    # == hooks: monitor and status ============================================================
    def _monitor_next(self, t_from: float) -> tuple[float, int]:
        if self.has("no-over-angle-monitor"):
            return math.inf, Fault.NONE
        level = self._angle_limit() + MONITOR_MARGIN_DEG
        return self._angle.first_moving_above(t_from, level), Fault.OVERTRAVEL

    def _monitor_settled(self, t: float) -> bool:
        return True  # no persistence time: the search may always restart at the present

    def _at_setpoint(self, t: float) -> bool:
        return self._state == State.RUNNING and self._phase == Phase.HOLD

    def _brake_engaged(self, t: float) -> bool:
        return not self._motor or self._stop in (StopKind.EMERGENCY, StopKind.POWER_LOSS)

    def _on_boot(self, t: float) -> None:
        self._phase = Phase.IDLE

    def _prune_history(self, before: float) -> None:
        self._angle.prune(before)

    def _tracks(self) -> dict[str, Track]:
        return {"angle": self._angle}
