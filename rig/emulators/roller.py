"""RT-600 roller table (KIND 2): carriage and roller-lift physics behind the common PLC model.

Two true physical quantities are closed-form tracks registered with the world: "position" (the
carriage, mm, sampled by the ENC-600 POS channel) and "lift" (the roller lift, mm, ENC-600
LIFT). Instruments add their own noise. The PLC's control channel reads the true position +
SENSOR_OFFSET / 10 mm; the controller positions on that channel, so with an offset the real
reversal and park points move by -SENSOR_OFFSET / 10 mm. The protective monitors watch the true
position and speed (the independent second channel).

Nothing is stepped on a tick: a cycle is planned as events, each move or dwell end scheduling the
next (4 events per cycle), and the monitors' trips are solved in closed form on the planned
track, so the CPU cost per device second does not depend on the time scale.

Dynamics chosen within the ICD: every carriage move is trapezoidal at 200 mm/s2 with top speed
SPEED; dwells 0.5 s; the lift moves linearly at 10 mm/s in every case (rise, controlled lowering,
lowering after an emergency stop and after a power loss); the carriage brake decelerates at
2000 mm/s2 (ICD: no less than 1000 mm/s2), at most 0.9 mm and 30 ms from 60 mm/s. A new table
stands parked at 50 mm (the default TRAVEL_START) with the lift down.

Readings of the ICD for the RT-600 (the common ones: docs/icd-readings.md, section 1):

R1. SENSOR_OFFSET shifts the carriage position's control channel only (the kind's primary
    quantity, the one RT-SAF-04 drives past its limit); the LIFT reading has no offset. POSITION
    and LIFT carry a small reading noise (0.03 mm rms) before quantisation to 0.1 mm; a
    reading below 0 mm reads 0 (u16). VELOCITY is the carriage velocity, rounded, unclipped.
R2. START plans, at once, the lift to 3.0 mm x INTENSITY from its present height, and a
    trapezoidal move from the present carriage state to the park position TRAVEL_START (none if
    it is there); the first cycle leaves park as soon as it is reached, with no dwell.
R3. CYCLES counts a round trip at the instant the carriage arrives back at TRAVEL_START (not at
    the end of the following dwell), only while RUNNING, so it agrees with the round trips a
    position trace shows before the session ended.
R4. The controlled stop (STOP, session end, watchdog, and the patient stop) is one trapezoidal
    move from the present carriage state to TRAVEL_START at SPEED: a carriage moving away from
    TRAVEL_START first decelerates at 200 mm/s2; one already heading there carries on (no
    needless stop on the way). The lift lowers from the same instant. The motion has finished
    (motor disabled; IDLE after STOPPING) when both are done.
R5. Emergency stop (and a monitor trip): the carriage brake acts at once; the lift drive holds
    the lift from the same instant and lowers it to 0 from the instant the carriage has stopped
    ("the lift then lowers"). The carriage stays where it stopped.
R6. Power lost: the brake stops the carriage as in an emergency stop; the de-energised lift
    lowers from the same instant at the same 10 mm/s.
R7. STATUS bit 4 (brake engaged) reports the carriage's holding brake: engaged whenever the
    carriage drive is not in control of it, i.e. from power-on, in IDLE at rest, from the instant
    of an emergency stop, monitor trip or power loss, and once a stop motion has finished;
    released from START until the controlled or patient stop motion has finished. The patient
    stop of defect patient-no-park brakes, so it engages the brake.
R8. STATUS bit 2 (at setpoint) is RUNNING with the lift at its level (from the instant the lift
    reaches 3.0 mm x INTENSITY; at once for INTENSITY 0 with the lift down).
R9. Overtravel: the monitor trips at the first instant the true position is outside
    [TRAVEL_START - 5, TRAVEL_END + 5] mm and moving further out. While the carriage moves to
    the park position after START (also when a stop interrupts that move), the window is
    [min(TRAVEL_START, x0) - 5, max(TRAVEL_END, x0) + 5] mm, x0 the true position at START. The
    window uses the settings as they are now (a write moves it; the search restarts at the
    write).
R10. Overspeed: |true velocity| > 1.2 x SPEED continuously for 50 ms, with SPEED as set now. A
    move under way keeps the speed it was planned with, so lowering SPEED during a FAULT-state
    return (settings are writable in FAULT) makes the monitor trip: the only way to drive the
    real speed past the limit on a healthy unit.
R11. The far reversal is TRAVEL_END and the near one TRAVEL_START as set at the instant each
    move starts (settings cannot change while RUNNING anyway); VELOCITY is positive toward larger
    positions, which is toward TRAVEL_END under the span rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import IntEnum
from typing import ClassVar

import numpy as np

from .registers import Fault, HoldingRegister, State, s16_x10
from .table import TableBase
from .track import Track, first_excursion

# Holding registers
SPEED = 200
INTENSITY = 201
TRAVEL_START = 202
TRAVEL_END = 203

# Input registers
POSITION = 200
VELOCITY = 201
LIFT = 202
CYCLES_INPUT = 9  # common input register CYCLES (display of the cycle-counter defect)

MIN_SPAN_MM = 100
ACCEL_MM_S2 = 200.0
DWELL_S = 0.5
LIFT_MM_PER_LEVEL = 3.0
LIFT_RATE_MM_S = 10.0
BRAKE_MM_S2 = 2000.0
OVERTRAVEL_MARGIN_MM = 5.0
OVERSPEED_FACTOR = 1.2
MONITOR_PERSIST_S = 0.050
READING_NOISE_MM = 0.03
DELIVERY_POSITION_MM = 50.0  # a new table stands parked at the default TRAVEL_START

# Seeded defects (numbers checked against every RT requirement in defects_rt600.py)
SLOW_BRAKE_MM_S2 = 350.0
SPEED_HIGH_FACTOR = 1.06
PERIOD_LONG_FRACTION = 0.03
JITTER_S = 0.2
REVERSAL_OVERSHOOT_MM = 2.5
FAR_CLIPPED_OVERSHOOT_MM = 3.5
CREEP_AFTER_S = 1.0
CREEP_MM_S = 4.0
CREEP_MAX_MM = 50.0
LIFT_LOW_MM = 1.5
PLC_POSITION_OFFSET_MM = 1.5


def move_time(distance: float, top_speed: float, accel: float = ACCEL_MM_S2) -> float:
    """Duration of a trapezoidal move from rest to rest (a triangle if too short for top speed)."""
    d = abs(distance)
    if d * accel >= top_speed * top_speed:
        return d / top_speed + top_speed / accel
    return 2.0 * math.sqrt(d / accel)


def nominal_period(span: float, speed: float) -> float:
    """The ICD's nominal cycle period T = 2 (d/v + v/a) + 1.0 s (two moves, two 0.5 s dwells)."""
    return 2.0 * (span / speed + speed / ACCEL_MM_S2) + 2.0 * DWELL_S


class CarriageTrack(Track):
    """The carriage position track; also gives its velocity as a track, for the monitors."""

    def velocity_track(self, t_from: float) -> Track:
        """dx/dt from the piece holding `t_from` on, as a (piecewise-linear) Track."""
        k = self._index(t_from)
        vel = Track(self._t[k], self._v[k])
        for j in range(k, len(self._t)):
            vel.append(self._t[j], self._v[j], self._a[j], 0.0)
        return vel


def first_outward(pos: Track, vel: Track, t_from: float, level: float, *, above: bool) -> float:
    """Earliest t >= t_from with `pos` beyond `level` and moving further out; inf if never.

    Beyond means x > level (above) or x < level; further out means v > 0 or v < 0 likewise.
    Closed form on the planned pieces: the ICD's position monitors ignore a carriage that stands
    outside its window or moves back into it.
    """
    t = t_from
    for _ in range(10_000):
        t_out = pos.first_time(t, level, above=above)
        if math.isinf(t_out):
            return math.inf
        t_move = vel.first_time(t_out, 0.0, above=above)
        if math.isinf(t_move):
            return math.inf
        t_in = pos.first_time(t_out, level, above=not above)
        if t_move < t_in:
            return t_move
        t = max(t_in, t + 1e-9)
    return math.inf


class Phase(IntEnum):
    """Where the carriage program is (internal: the RT-600 has no PHASE register)."""

    IDLE = 0
    PARK = 1
    OUT = 2
    DWELL_FAR = 3
    BACK = 4
    DWELL_NEAR = 5
    STOP = 6


class RollerTable(TableBase):
    """RT-600 intersegmental roller table PLC, carriage and roller-lift physics."""

    KIND = 2
    MODEL = "RT-600"
    KIND_HOLDING = (
        HoldingRegister(SPEED, "SPEED", 100, 600, 400),
        HoldingRegister(INTENSITY, "INTENSITY", 0, 10, 5),
        # the span rule between these two is checked in _kind_rules_ok
        HoldingRegister(TRAVEL_START, "TRAVEL_START", 0, 600, 50),
        HoldingRegister(TRAVEL_END, "TRAVEL_END", 0, 600, 550),
    )
    KIND_INPUTS: ClassVar[dict[int, str]] = {
        POSITION: "POSITION",
        VELOCITY: "VELOCITY",
        LIFT: "LIFT",
    }

    def _init_kind(self, t0: float) -> None:
        self._pos = CarriageTrack(t0, DELIVERY_POSITION_MM)
        self._lift = Track(t0, 0.0)
        self._phase = Phase.IDLE
        self._drive = False  # the carriage drive is in control (holding brake released)
        self._lift_ready = math.inf
        self._cycle_no = -1
        self._park_from: float | None = None  # true position at START while moving to park
        self._window_from = t0
        self._creeping = False  # defect brake-creep: the braked carriage is slipping

    def _signals(self) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        return {"position": self.sample_position, "lift": self.sample_lift}

    # == public ===============================================================================
    def sample_position(self, times: np.ndarray) -> np.ndarray:
        """True carriage position (mm) at device `times`, as the encoder sees it."""
        return self._pos.sample(times)

    def sample_lift(self, times: np.ndarray) -> np.ndarray:
        """True roller lift (mm) at device `times`, as the encoder sees it."""
        return self._lift.sample(times)

    # == settings in engineering units ========================================================
    def _speed(self) -> float:
        return self.setting(SPEED) / 10.0

    def _top_speed(self) -> float:
        return self._speed() * (SPEED_HIGH_FACTOR if self.has("speed-high") else 1.0)

    def _start_mm(self) -> float:
        return float(self.setting(TRAVEL_START))

    def _end_mm(self) -> float:
        return float(self.setting(TRAVEL_END))

    def _true(self, control_mm: float) -> float:
        """True position at which the control channel reads `control_mm`."""
        return control_mm - self.sensor_offset / 10.0

    def _lift_target(self) -> float:
        level = LIFT_MM_PER_LEVEL * self.setting(INTENSITY)
        if level > 0.0 and self.has("lift-low"):
            level -= LIFT_LOW_MM
        return max(level, 0.0)

    def _brake_decel(self) -> float:
        return SLOW_BRAKE_MM_S2 if self.has("brake-slow") else BRAKE_MM_S2

    def _dwell_s(self) -> float:
        dwell = DWELL_S
        span = abs(self._end_mm() - self._start_mm())
        v = self._speed()
        if self.has("period-long"):
            # two dwells per cycle carry the whole 3 % of the nominal period
            dwell += PERIOD_LONG_FRACTION * nominal_period(span, v) / 2.0
        if self.has("cycle-jitter"):
            dwell += JITTER_S if self._cycle_no % 2 == 0 else -JITTER_S
        if self.has("speed-high"):
            # the faster moves' saved time is spent standing, so the period stays nominal
            dwell += move_time(span, v) - move_time(span, self._top_speed())
        return dwell

    # == hooks: registers =====================================================================
    def _kind_rules_ok(self, image: dict[int, int], written: frozenset[int]) -> bool:
        if not written & {TRAVEL_START, TRAVEL_END} or self.has("no-span-check"):
            return True
        return image[TRAVEL_END] - image[TRAVEL_START] >= MIN_SPAN_MM

    def _on_settings_written(self, t: float, written: frozenset[int]) -> None:
        super()._on_settings_written(t, written)
        if written & {TRAVEL_START, TRAVEL_END}:
            # the overtravel window moved: judge the carriage against it from now on only
            self._window_from = t

    def _kind_input(self, addr: int, t: float) -> int:
        if addr == VELOCITY:
            return s16_x10(self._pos.velocity(t))
        noise = self._rng.normal(0.0, READING_NOISE_MM)
        if addr == POSITION:
            reading = self._pos.value(t) + self.sensor_offset / 10.0 + noise
            if self.has("plc-position-offset"):
                reading += PLC_POSITION_OFFSET_MM
            if self.has("far-reversal-clipped"):
                reading = min(reading, self._end_mm())
        else:
            reading = self._lift.value(t) + noise
        return max(0, min(0xFFFF, round(reading * 10.0)))

    def _input(self, addr: int, t: float) -> int:
        value = super()._input(addr, t)
        if addr == CYCLES_INPUT and value > 0 and self.has("cycles-off-by-one"):
            return min(value + 1, 0xFFFF)
        return value

    # == hooks: program =======================================================================
    def _start_motion(self, t: float) -> None:
        self._cancel("phase", "motion", "creep")
        self._creeping = False
        self._drive = True
        self._cycle_no = -1
        self._lift_ready = self._lift.linear_to(t, self._lift_target(), LIFT_RATE_MM_S)
        self._park_from = self._pos.value(t)
        self._window_from = t
        self._phase = Phase.PARK
        t_park = self._pos.trapezoid_to(
            t, self._true(self._start_mm()), self._top_speed(), ACCEL_MM_S2
        )
        self._schedule("phase", t_park, self._parked)

    def _parked(self, t: float) -> None:
        self._park_from = None
        self._window_from = t
        self._go_out(t)

    def _go_out(self, t: float) -> None:
        self._cycle_no += 1
        self._phase = Phase.OUT
        far = self._end_mm() + (REVERSAL_OVERSHOOT_MM if self.has("reversal-overshoot") else 0.0)
        if self.has("far-reversal-clipped"):
            far += FAR_CLIPPED_OVERSHOOT_MM
        t_end = self._pos.trapezoid_to(t, self._true(far), self._top_speed(), ACCEL_MM_S2)
        self._schedule("phase", t_end, self._at_far)

    def _at_far(self, t: float) -> None:
        self._phase = Phase.DWELL_FAR
        self._schedule("phase", t + self._dwell_s(), self._go_back)

    def _go_back(self, t: float) -> None:
        self._phase = Phase.BACK
        t_end = self._pos.trapezoid_to(
            t, self._true(self._start_mm()), self._top_speed(), ACCEL_MM_S2
        )
        self._schedule("phase", t_end, self._at_near)

    def _at_near(self, t: float) -> None:
        self._count_cycle()  # phase events only run while RUNNING: a stop cancels them
        self._phase = Phase.DWELL_NEAR
        self._schedule("phase", t + self._dwell_s(), self._go_out)

    # == hooks: stops =========================================================================
    def _controlled_stop(self, t: float) -> None:
        self._cancel("phase", "motion")
        self._phase = Phase.STOP
        t_lift = self._lift.linear_to(t, 0.0, LIFT_RATE_MM_S)
        t_park = self._pos.trapezoid_to(
            t, self._true(self._start_mm()), self._top_speed(), ACCEL_MM_S2
        )
        self._truth_motion(t, t_park, t_lift_down=t_lift)
        self._schedule("motion", max(t_lift, t_park), self._stop_done)

    def _patient_stop(self, t: float) -> None:
        if not self.has("patient-no-park"):
            self._controlled_stop(t)
            return
        self._cancel("phase", "motion")
        self._phase = Phase.STOP
        self._drive = False
        self._park_from = None
        t_stop, _ = self._pos.brake(t, self._brake_decel())
        t_lift = self._lift.linear_to(t, 0.0, LIFT_RATE_MM_S)
        self._truth_motion(t, t_stop, t_lift_down=t_lift)
        self._schedule("motion", max(t_stop, t_lift), self._stop_done)

    def _emergency_stop(self, t: float) -> None:
        self._cancel("phase", "motion")
        self._phase = Phase.STOP
        self._drive = False
        self._park_from = None
        t_stop, _ = self._pos.brake(t, self._brake_decel())
        self._lift.hold(t)
        t_lift = self._lift.linear_to(t_stop, 0.0, LIFT_RATE_MM_S)
        self._truth_motion(t, t_stop, t_lift_down=t_lift)
        self._schedule("motion", t_lift, self._stop_done)

    def on_relay(self, name: str, on: bool, t: float) -> None:
        """An ACT relay changed; defect brake-creep: the brake of a hardwired e-stop slips."""
        super().on_relay(name, on, t)
        if name != "estop" or not self.has("brake-creep"):
            return
        with self.world.lock:
            now = self._t
            if not on:
                # the circuit closed: the brake holds again
                self._cancel("creep")
                if self._creeping:
                    self._pos.hold(now)
                    self._creeping = False
                return
            v0 = self._pos.velocity(now)  # the brake piece starts at the speed it stopped
            if self._state == State.ESTOP and v0 != 0.0 and "creep" not in self._timers:
                direction = math.copysign(1.0, v0)
                self._schedule("creep", now + CREEP_AFTER_S, lambda te: self._creep(te, direction))

    def _creep(self, t: float, direction: float) -> None:
        x, _ = self._pos.cut(t)
        self._pos.append(t, x, direction * CREEP_MM_S, 0.0)
        self._pos.append(t + CREEP_MAX_MM / CREEP_MM_S, x + direction * CREEP_MAX_MM, 0.0, 0.0)
        self._creeping = True

    def _stop_done(self, t: float) -> None:
        self._phase = Phase.IDLE
        self._drive = False
        self._park_from = None
        self._motion_finished(t)

    def _power_loss_motion(self, t: float) -> None:
        self._phase = Phase.IDLE
        self._drive = False
        self._park_from = None
        t_stop, _ = self._pos.brake(t, self._brake_decel())
        t_lift = self._lift.linear_to(t, 0.0, LIFT_RATE_MM_S)
        self._truth_motion(t, t_stop, t_lift_down=t_lift)

    # == hooks: monitors and status ===========================================================
    def _overtravel_window(self) -> tuple[float, float]:
        lo, hi = self._start_mm(), self._end_mm()
        if self._park_from is not None:
            lo, hi = min(lo, self._park_from), max(hi, self._park_from)
        return lo - OVERTRAVEL_MARGIN_MM, hi + OVERTRAVEL_MARGIN_MM

    def _overspeed_limit(self) -> float:
        return OVERSPEED_FACTOR * self._speed()

    def _monitor_next(self, t_from: float) -> tuple[float, int]:
        vel = self._pos.velocity_track(t_from)
        limit = self._overspeed_limit()
        t_speed = min(
            first_excursion(vel, t_from, limit, MONITOR_PERSIST_S, above=True),
            first_excursion(vel, t_from, -limit, MONITOR_PERSIST_S, above=False),
        )
        t_travel = math.inf
        if not self.has("no-overtravel-monitor"):
            lo, hi = self._overtravel_window()
            t0 = max(t_from, self._window_from)
            t_travel = min(
                first_outward(self._pos, vel, t0, hi, above=True),
                first_outward(self._pos, vel, t0, lo, above=False),
            )
        if t_travel <= t_speed:
            return t_travel, Fault.OVERTRAVEL
        return t_speed, Fault.OVERSPEED

    def _monitor_settled(self, t: float) -> bool:
        return abs(self._pos.velocity(t)) <= self._overspeed_limit()

    def _at_setpoint(self, t: float) -> bool:
        return self._state == State.RUNNING and t >= self._lift_ready

    def _brake_engaged(self, t: float) -> bool:
        return not self._drive

    def _on_boot(self, t: float) -> None:
        self._phase = Phase.IDLE
        self._drive = False
        self._park_from = None
        self._creeping = False

    def _prune_history(self, before: float) -> None:
        self._pos.prune(before)
        self._lift.prune(before)

    def _tracks(self) -> dict[str, Track]:
        return {"position": self._pos, "lift": self._lift}
