"""Kind-agnostic table PLC model: the ICD's common state machine, interlocks, watchdog and power.

Where plc-modbus.md leaves room, what this model does is written in docs/icd-readings.md, section 1.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from enum import IntEnum
from typing import Any, ClassVar

import numpy as np

from .defects import check_defects
from .registers import (
    COMMAND,
    COMMON_HOLDING,
    COMMON_INPUTS,
    DEVICE_BUSY,
    HEARTBEAT,
    ICD_VERSION,
    ILLEGAL_ADDRESS,
    ILLEGAL_FUNCTION,
    ILLEGAL_VALUE,
    MAX_READ_COUNT,
    MAX_WRITE_COUNT,
    READ_FUNCTIONS,
    SENSOR_OFFSET,
    SERVICE_KEY,
    SERVICE_KEY_ENTER,
    SESSION_S,
    WATCHDOG_MS,
    WRITE_FUNCTIONS,
    Command,
    Fault,
    HoldingRegister,
    State,
    Status,
)
from .world import World

BOOT_S = 2.0  # device seconds from mains power-on until the PLC answers
HISTORY_S = 660.0  # device seconds of motion history kept for instruments sampling the past
TRUTH_KEPT = 256  # stop events kept as ground truth (truth())
_MAX_EVENTS_PER_ADVANCE = 1_000_000


class StopKind(IntEnum):
    """Which stop motion is under way."""

    CONTROLLED = 1
    PATIENT = 2
    EMERGENCY = 3
    POWER_LOSS = 4


class PlcSilent(Exception):
    """The PLC does not answer at all: no mains power, or still booting."""


def _floor_ms(seconds: float) -> int:
    # the epsilon absorbs float error so that an instant exactly N ms later reads N
    return math.floor(seconds * 1000.0 + 1e-6)


class TableBase:
    """The PLC of one table: registers, state machine, interlocks, watchdog, power; physics by kind.

    Implements the world's `Model` protocol (`advance_to`, `on_relay`), and everything
    plc-modbus.md says of every kind; a kind subclass declares its register rows and implements
    the physics through the hooks below. The model is event driven and lazy: `advance_to(t)`
    processes, in time order and at its exact device instant, every event due up to `t` (kind
    phase timers, session end, watchdog deadline, closed-form monitor trips, boot end, stop motion
    finished); there is no fixed-step loop, so the CPU cost per device second does not depend on
    the time scale.

    A table built on a powered world has already booted; `cold_start=True` makes construction the
    mains power-on instead.

    Register access (`read` / `write`) is what the Modbus server and socket-free tests call: each
    call takes `world.lock`, brings the world to the present device instant and acts there. A
    result that is an int is a Modbus exception code; a PLC without mains power, or still booting,
    raises `PlcSilent` (the server then sends nothing at all).

    Kind hooks (override in a subclass; the base calls them with the device time of the event):

    - class attributes `KIND`, `MODEL`, `KIND_HOLDING` (register rows with range and default),
      `KIND_INPUTS` (address -> name);
    - `_init_kind(t0)`: the kind's physics at construction; `_signals()`: the world signals it
      registers (name -> sampler);
    - `_kind_rules_ok(image, written)`: cross-register rules of the proposed holding image (03);
    - `_kind_input(addr, t)`: the raw u16 of a kind input register;
    - `_start_motion(t)`, `_controlled_stop(t)`, `_emergency_stop(t)`, `_patient_stop(t)`,
      `_power_loss_motion(t)`: plan the motion; a stop motion ends by calling
      `_motion_finished(t)` (typically through `_schedule("motion", t_end, ...)`); a program that
      ends by itself while RUNNING (an inversion's automatic return) calls `_program_finished(t)`;
    - `_monitor_next(t_from)` -> (trip time, FAULT code) computed in closed form, and
      `_monitor_settled(t)` (no excursion under way at t, so the search may restart there);
    - `_at_setpoint(t)`, `_brake_engaged(t)`, `_on_boot(t)`, `_prune_history(before)`.

    Kinds own the timer names "phase" and "motion"; the base owns "boot", "session" and
    "estop_circuit".
    """

    KIND: ClassVar[int] = 0
    MODEL: ClassVar[str] = ""
    KIND_HOLDING: ClassVar[tuple[HoldingRegister, ...]] = ()
    KIND_INPUTS: ClassVar[dict[int, str]] = {}

    def __init__(
        self,
        world: World,
        *,
        serial: int,
        firmware: int = 210,
        defects: frozenset[str] = frozenset(),
        cold_start: bool = False,
    ) -> None:
        self._init_kind(world.clock.now())
        if not 0 <= serial <= 0xFFFFFFFF:
            raise ValueError(f"serial {serial} does not fit a u32")
        if not 0 <= firmware <= 0xFFFF:
            raise ValueError(f"firmware {firmware} does not fit a u16")
        self.world = world
        self.serial = serial
        self.firmware = firmware
        self.defects = check_defects(self.MODEL, defects)
        self._rows: dict[int, HoldingRegister] = {
            r.addr: r for r in (*COMMON_HOLDING, *self.KIND_HOLDING)
        }
        self._input_addrs = frozenset(COMMON_INPUTS) | frozenset(self.KIND_INPUTS)
        self._holding: dict[int, int] = {a: r.encode(r.default) for a, r in self._rows.items()}
        self._rng = np.random.default_rng(int(world.rng.integers(2**63)))
        with world.lock:
            t0 = world.clock.now()
            self._t = t0
            self._timers: dict[str, tuple[float, int, Callable[[float], None]]] = {}
            self._seq = 0
            self._state = State.IDLE
            self._fault = Fault.NONE
            self._fault_uptime_ms = 0
            self._service = False
            self._motor = False
            self._stop: StopKind | None = None
            self._session_start: float | None = None
            self._elapsed_frozen = 0
            self._cycles = 0
            self._run_start = -math.inf
            self._hb_change = -math.inf
            self._mon_from = t0
            # ground truth of every stop, for the rig's own tests and benchmarks (truth())
            self._truth: deque[dict[str, float | str]] = deque(maxlen=TRUTH_KEPT)
            self._powered = bool(world.relays["power"])
            self._booted = False
            self._ever_booted = False
            self._boots = 0
            self._power_on_t = t0
            if self._powered:
                if cold_start:
                    self._power_on(t0)
                else:
                    self._power_on_t = t0 - BOOT_S
                    self._booted = True
                    self._ever_booted = True
                    self._boots = 1
            world.add_model(self)
        for name, sample in self._signals().items():
            world.add_signal(name, sample)

    # == public API ===========================================================================
    def has(self, defect: str) -> bool:
        """True if this table was built with the named seeded defect."""
        return defect in self.defects

    def answers(self) -> bool:
        """True if the PLC answers Modbus requests now (mains power on and booted)."""
        with self.world.lock:
            self._now()
            return self._answering()

    def truth(self) -> list[dict[str, float | str]]:
        """The stops as they truly happened, oldest first; for tests and benchmarks only (the
        fault channel's `truth` op), never served to the rig.

        One entry per stop cause the PLC acted on: `cause` (estop, estop-command, patient,
        stop, watchdog, trip, power), `t_edge` (device s the cause reached the PLC: the relay
        edge, the command, the watchdog deadline, the trip), `t_react` (the drive began the stop
        motion) and `t_stopped` (the stop motion ended: the reference quantity at rest), both
        absent until known. Device seconds on the world's clock, as instrument triggers are.
        """
        with self.world.lock:
            self._now()
            return [dict(e) for e in self._truth]

    def truth_tracks(self) -> dict[str, Any]:
        """The kind's closed-form motion tracks by world signal name (tests and benchmarks)."""
        return self._tracks()

    def boot_count(self) -> int:
        """How many times the PLC has finished booting (a TCP peer from before is forgotten)."""
        with self.world.lock:
            self._now()
            return self._boots

    def read(self, function_code: int, address: int, count: int) -> list[int] | int:
        """Registers for a read request (03 holding, 04 input), or a Modbus exception code.

        Raises PlcSilent when the PLC does not answer at all.
        """
        with self.world.lock:
            t = self._now()
            if not self._answering():
                raise PlcSilent(f"{self.MODEL} PLC has no power or is booting")
            if function_code not in READ_FUNCTIONS:
                return ILLEGAL_FUNCTION
            if not 1 <= count <= MAX_READ_COUNT:
                return ILLEGAL_VALUE
            addrs = range(address, address + count)
            if function_code == 3:
                if any(a not in self._rows for a in addrs):
                    return ILLEGAL_ADDRESS
                return [0 if a == COMMAND else self._holding[a] for a in addrs]
            if any(a not in self._input_addrs for a in addrs):
                return ILLEGAL_ADDRESS
            return [self._input(a, t) for a in addrs]

    def write(self, function_code: int, address: int, values: list[int]) -> int | None:
        """Apply a write request (06 single, 16 multiple): None if accepted, else the exception.

        All or nothing; precedence 02 > 06 > 03. Raises PlcSilent when the PLC does not answer.
        """
        with self.world.lock:
            t = self._now()
            if not self._answering():
                raise PlcSilent(f"{self.MODEL} PLC has no power or is booting")
            if function_code not in WRITE_FUNCTIONS:
                return ILLEGAL_FUNCTION
            n = len(values)
            if (function_code == 6 and n != 1) or not 1 <= n <= MAX_WRITE_COUNT:
                return ILLEGAL_VALUE
            addrs = list(range(address, address + n))
            if any(a not in self._rows for a in addrs):
                return ILLEGAL_ADDRESS
            proposed = dict(self._holding)
            proposed.update(zip(addrs, values, strict=True))
            written = frozenset(addrs)
            busy = False
            bad = any(not 0 <= v <= 0xFFFF for v in values)
            moving_state = self._state in (State.RUNNING, State.STOPPING)
            service_after = self._service
            if SERVICE_KEY in written:
                service_after = proposed[SERVICE_KEY] == SERVICE_KEY_ENTER
            for a, v in zip(addrs, values, strict=True):
                row = self._rows[a]
                if row.setting and moving_state:
                    busy = True
                if a == COMMAND and v == Command.START and not self._start_allowed():
                    busy = True
                elif a == SERVICE_KEY and self._state != State.IDLE:
                    busy = True
                elif a == SENSOR_OFFSET and (moving_state or not service_after):
                    busy = True
                if not bad and not row.accepts(v):
                    bad = True
            if not bad and not self._kind_rules_ok(proposed, written):
                bad = True
            if busy:
                return DEVICE_BUSY
            if bad:
                return ILLEGAL_VALUE
            for a in addrs:
                if a == COMMAND:
                    continue
                old, new = self._holding[a], proposed[a]
                self._holding[a] = new
                if a == HEARTBEAT and new != old:
                    self._hb_change = t
                elif a == SERVICE_KEY:
                    self._service = new == SERVICE_KEY_ENTER
                    if not self._service:
                        self._holding[SENSOR_OFFSET] = 0
            self._on_settings_written(t, written - {COMMAND})
            if COMMAND in written:
                self._command(t, proposed[COMMAND])
            self._run_until(t)
            return None

    def setting(self, addr: int) -> int:
        """Engineering integer of a holding register (raw register units, e.g. x10)."""
        return self._rows[addr].decode(self._holding[addr])

    @property
    def sensor_offset(self) -> int:
        """SENSOR_OFFSET, in the kind's primary unit x10."""
        return self.setting(SENSOR_OFFSET)

    # == Model protocol =======================================================================
    def advance_to(self, t: float) -> None:
        """Process every event due up to device time t, each at its own instant."""
        with self.world.lock:
            self._run_until(max(t, self._t))

    def on_relay(self, name: str, on: bool, t: float) -> None:
        """An ACT relay changed at device time t."""
        with self.world.lock:
            self._run_until(max(t, self._t))
            t = self._t
            if name == "power":
                if on and not self._powered:
                    self._power_on(t)
                elif not on and self._powered:
                    self._power_off(t)
            elif not self._answering():
                pass  # a dead or booting PLC latches nothing (docs/icd-readings.md M12)
            elif name == "estop" and on:
                if self._state != State.ESTOP:
                    self._truth_begin("estop", t)
                if self.has("estop-slow"):
                    if "estop_circuit" not in self._timers:
                        self._schedule("estop_circuit", t + 0.150, self._estop)
                else:
                    self._estop(t)
            elif name == "patient" and on and self._state == State.RUNNING:
                self._truth_begin("patient", t)
                self._fault_to(t, Fault.PATIENT_STOP, StopKind.PATIENT)
                self._patient_stop(t)
            self._run_until(t)

    # == event machinery ======================================================================
    def _now(self) -> float:
        self.world.advance()  # brings this model (registered in __init__) to the present
        return self._t

    def _schedule(self, name: str, t: float, fn: Callable[[float], None]) -> None:
        self._seq += 1
        self._timers[name] = (t, self._seq, fn)

    def _cancel(self, *names: str) -> None:
        for name in names:
            self._timers.pop(name, None)

    def _next_event(self) -> tuple[float, int, Callable[[float], None]] | None:
        best: tuple[float, int, Callable[[float], None]] | None = None
        for name, (te, seq, fn) in self._timers.items():
            if best is None or (te, seq) < best[:2]:
                best = (te, seq, self._timer_fn(name, fn))
        if self._answering():
            if self._state == State.RUNNING:
                factor = 2.0 if self.has("watchdog-slow") else 1.0
                deadline = max(self._hb_change, self._run_start) + factor * (
                    self.setting(WATCHDOG_MS) / 1000.0
                )
                if best is None or (deadline, -2) < best[:2]:
                    best = (deadline, -2, self._on_watchdog)
            if self._monitored():
                t_trip, code = self._monitor_next(self._mon_from)
                if not math.isinf(t_trip) and (best is None or (t_trip, -1) < best[:2]):
                    best = (t_trip, -1, lambda te: self._on_trip(te, code))
        return best

    def _timer_fn(self, name: str, fn: Callable[[float], None]) -> Callable[[float], None]:
        def fire(te: float) -> None:
            self._timers.pop(name, None)
            fn(te)

        return fire

    def _run_until(self, t: float) -> None:
        for _ in range(_MAX_EVENTS_PER_ADVANCE):
            ev = self._next_event()
            if ev is None or ev[0] > t:
                break
            self._t = max(ev[0], self._t)
            ev[2](self._t)
        else:  # pragma: no cover - a model bug, not a device behaviour
            raise RuntimeError(f"{self.MODEL}: event storm before t={t}")
        self._t = t
        if not self._monitored() or self._monitor_settled(t):
            self._mon_from = t
        self._prune_history(min(t - HISTORY_S, self._mon_from))

    # == state machine ========================================================================
    def _answering(self) -> bool:
        return self._powered and self._booted

    def _monitored(self) -> bool:
        if not self._answering():
            return False
        if self._state in (State.RUNNING, State.STOPPING):
            return True
        return self._state == State.FAULT and self._stop in (
            StopKind.CONTROLLED,
            StopKind.PATIENT,
        )

    def _start_allowed(self) -> bool:
        if self._state != State.IDLE or self._fault != Fault.NONE:
            return False
        if self.world.relays["estop"]:
            return False
        return not self.world.relays["patient"] or self.has("patient-interlock-bypass")

    def _uptime_ms(self, t: float) -> int:
        return _floor_ms(t - self._power_on_t) & 0xFFFFFFFF

    def _raise_fault(self, t: float, code: Fault) -> None:
        self._fault = code
        self._fault_uptime_ms = self._uptime_ms(t)

    def _end_running(self, t: float) -> None:
        if self._state == State.RUNNING and self._session_start is not None:
            self._elapsed_frozen = min(_floor_ms(t - self._session_start) // 1000, 0xFFFF)
            self._session_start = None
        self._cancel("session")

    def _begin_running(self, t: float) -> None:
        self._state = State.RUNNING
        self._session_start = t
        self._elapsed_frozen = 0
        self._cycles = 0
        self._run_start = t
        self._motor = True
        self._stop = None
        self._mon_from = t
        length = self.setting(SESSION_S) + (2.0 if self.has("session-long") else 0.0)
        self._schedule("session", t + length, self._on_session_end)
        self._start_motion(t)

    def _fault_to(self, t: float, code: Fault, stop: StopKind) -> None:
        self._end_running(t)
        self._state = State.FAULT
        self._raise_fault(t, code)
        self._stop = stop

    def _command(self, t: float, value: int) -> None:
        if value == Command.START:
            self._begin_running(t)  # allowed: checked before the write was accepted
        elif value == Command.STOP:
            if self._state == State.RUNNING:
                self._truth_begin("stop", t)
                self._end_running(t)
                self._state = State.STOPPING
                self._stop = StopKind.CONTROLLED
                self._controlled_stop(t)
        elif value == Command.RESET:
            self._reset(t)
        elif value == Command.ESTOP:
            if self._answering() and self._state != State.ESTOP:
                self._truth_begin("estop-command", t)
            self._estop(t)

    def _reset(self, t: float) -> None:
        if self._state not in (State.ESTOP, State.FAULT):
            return
        if self.world.relays["estop"] or self.world.relays["patient"]:
            return
        if (
            self.has("restart-after-reset")
            and self._state == State.ESTOP
            and self._fault == Fault.ESTOP
        ):
            self._fault, self._fault_uptime_ms = Fault.NONE, 0
            self._begin_running(t)
            return
        self._state = State.IDLE
        self._fault, self._fault_uptime_ms = Fault.NONE, 0

    def _estop(self, t: float) -> None:
        if not self._answering() or self._state == State.ESTOP:
            return
        self._end_running(t)
        self._state = State.ESTOP
        self._raise_fault(t, Fault.ESTOP)
        self._stop = StopKind.EMERGENCY
        self._emergency_stop(t)

    def _on_session_end(self, t: float) -> None:
        if self._state == State.RUNNING:
            self._command(t, Command.STOP)

    def _on_watchdog(self, t: float) -> None:
        self._truth_begin("watchdog", t)
        self._fault_to(t, Fault.COMM_LOSS, StopKind.CONTROLLED)
        self._controlled_stop(t)

    def _on_trip(self, t: float, code: int) -> None:
        self._truth_begin("trip", t)
        self._fault_to(t, Fault(code), StopKind.EMERGENCY)
        self._emergency_stop(t)

    def _motion_finished(self, t: float) -> None:
        """Called by the kind when its stop motion has come to its end."""
        if not self._answering() or self._stop is None:
            return
        self._motor = False
        self._stop = None
        if self._state == State.STOPPING:
            self._state = State.IDLE

    def _program_finished(self, t: float) -> None:
        """Called by a kind whose program ends by itself: RUNNING -> IDLE, motor disabled."""
        if self._state == State.RUNNING:
            self._end_running(t)
            self._state = State.IDLE
            self._motor = False
            self._stop = None

    def _truth_begin(self, cause: str, t: float) -> None:
        self._truth.append({"cause": cause, "t_edge": t})

    def _truth_motion(self, t_react: float, t_stopped: float, **more: float) -> None:
        """The kind planned the stop motion of the latest cause: when the drive acts and when
        the reference quantity comes to rest (`more`: other instants the kind knows)."""
        if self._truth and "t_react" not in self._truth[-1]:
            self._truth[-1].update(t_react=t_react, t_stopped=t_stopped, **more)

    def _count_cycle(self) -> None:
        self._cycles = min(self._cycles + 1, 0xFFFF)

    # == power ================================================================================
    def _power_on(self, t: float) -> None:
        self._powered = True
        self._booted = False
        self._power_on_t = t
        self._service = False
        self._holding[SENSOR_OFFSET] = 0
        self._schedule("boot", t + BOOT_S, self._boot_done)

    def _boot_done(self, t: float) -> None:
        self._booted = True
        self._boots += 1
        self._motor = False
        self._stop = None
        self._session_start = None
        self._elapsed_frozen = 0
        self._cycles = 0
        if not self._ever_booted or self.has("power-restore-no-fault"):
            self._state = State.IDLE
            self._fault, self._fault_uptime_ms = Fault.NONE, 0
        else:
            self._state = State.FAULT
            self._raise_fault(t, Fault.POWER_RESTORED)
        self._ever_booted = True
        self._on_boot(t)

    def _power_off(self, t: float) -> None:
        self._truth_begin("power", t)
        self._end_running(t)
        self._powered = False
        self._booted = False
        self._timers.clear()
        self._motor = False
        self._stop = StopKind.POWER_LOSS
        self._service = False
        self._power_loss_motion(t)

    # == registers ============================================================================
    def _status(self, t: float) -> int:
        bits = 0
        if self.world.relays["estop"]:
            bits |= Status.ESTOP_OPEN
        if self.world.relays["patient"]:
            bits |= Status.PATIENT_PRESSED
        if self._at_setpoint(t):
            bits |= Status.AT_SETPOINT
        if self._motor:
            bits |= Status.MOTOR_ENABLED
        if self._brake_engaged(t):
            bits |= Status.BRAKE_ENGAGED
        if self._service:
            bits |= Status.SERVICE_MODE
        return bits

    def _session_elapsed(self, t: float) -> int:
        if self._state == State.RUNNING and self._session_start is not None:
            return min(_floor_ms(t - self._session_start) // 1000, 0xFFFF)
        return self._elapsed_frozen

    def _input(self, addr: int, t: float) -> int:
        if addr in self.KIND_INPUTS:
            return self._kind_input(addr, t) & 0xFFFF
        uptime = self._uptime_ms(t)
        values = {
            0: self.KIND,
            1: ICD_VERSION,
            2: self.serial >> 16,
            3: self.serial & 0xFFFF,
            4: self.firmware,
            5: int(self._state),
            6: self._status(t),
            7: int(self._fault),
            8: self._session_elapsed(t),
            9: self._cycles,
            10: uptime >> 16,
            11: uptime & 0xFFFF,
            12: self._fault_uptime_ms >> 16,
            13: self._fault_uptime_ms & 0xFFFF,
        }
        return values[addr]

    # == kind hooks (defaults) ================================================================
    def _init_kind(self, t0: float) -> None:
        """Set up the kind's physics at device time t0 (before the PLC state, which may use it)."""

    def _signals(self) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        """The world signals (true physical quantities) the kind registers, by name."""
        return {}

    def _kind_rules_ok(self, image: dict[int, int], written: frozenset[int]) -> bool:
        """Cross-register rules of the holding image a write would leave (False: 03)."""
        return True

    def _on_settings_written(self, t: float, written: frozenset[int]) -> None:
        """Settings were stored at t (before any COMMAND of the same write is acted on)."""
        if written & self._rows.keys() - {COMMAND, HEARTBEAT, SERVICE_KEY}:
            # a changed limit restarts the persistence count of the protective monitor
            self._mon_from = t

    def _kind_input(self, addr: int, t: float) -> int:
        raise NotImplementedError

    def _start_motion(self, t: float) -> None:
        raise NotImplementedError

    def _controlled_stop(self, t: float) -> None:
        raise NotImplementedError

    def _emergency_stop(self, t: float) -> None:
        raise NotImplementedError

    def _patient_stop(self, t: float) -> None:
        raise NotImplementedError

    def _power_loss_motion(self, t: float) -> None:
        raise NotImplementedError

    def _monitor_next(self, t_from: float) -> tuple[float, int]:
        return math.inf, Fault.NONE

    def _monitor_settled(self, t: float) -> bool:
        return True

    def _at_setpoint(self, t: float) -> bool:
        return False

    def _brake_engaged(self, t: float) -> bool:
        return False

    def _on_boot(self, t: float) -> None:
        """The PLC finished booting at t (kinds reset their program state here)."""

    def _prune_history(self, before: float) -> None:
        """Forget motion history older than `before`."""

    def _tracks(self) -> dict[str, Any]:
        """The kind's motion tracks (rig.emulators.track.Track) by world signal name."""
        return {}
