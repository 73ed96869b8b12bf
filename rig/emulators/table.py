"""Kind-agnostic table PLC model: the ICD's common registers, state machine, interlocks and power.

`TableBase` implements everything plc-modbus.md says of every kind; a kind subclass (traction now,
roller and inversion later) declares its register rows and implements the physics through a
small set of hooks (see "Kind hooks" below). The model is event driven and lazy: `advance_to(t)`
processes, in time order and at its exact device instant, every event due up to `t` (kind phase
timers, session end, watchdog deadline, closed-form monitor trips, boot end, stop motion
finished); there is no fixed-step loop, so the CPU cost per device second does not depend on the
time scale.

Register access (`read` / `write`) is what the Modbus server and socket-free tests call: each call
takes `world.lock`, brings the world to the present device instant and acts there. A result that
is an int is a Modbus exception code; a PLC without mains power, or still booting, raises
`PlcSilent` (the server then sends nothing at all).

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

Readings of the ICD (where plc-modbus.md leaves room, this is what the emulator does):

1. A table built on a powered world has already booted (UPTIME_MS reads 2000 at construction);
   `cold_start=True` makes construction the mains power-on instead. Boot takes 2.0 s device
   time, during which the PLC does not answer; restore therefore answers well within 5 s.
2. The first power-on of a new table ends IDLE with FAULT 0 even with the e-stop circuit open
   (an open circuit at power-on is not an "opening" event; the interlock still refuses START).
   Every later power-on ends FAULT 8, with the e-stop circuit open or not; FAULT_UPTIME_MS is the
   UPTIME_MS of the boot end.
3. Relay changes while the PLC is unpowered or booting are not events (nothing can be latched by
   a dead PLC and nothing moves); once it answers, STATUS bits 0/1 show the contacts as they are.
4. Holding registers keep their values across a power cycle, SERVICE_KEY included (it reads back
   the last value written even though service mode itself is lost); SENSOR_OFFSET is cleared.
   SESSION_ELAPSED and CYCLES are input registers, not retained: they read 0 after a power-on.
5. The watchdog counts from the later of the last HEARTBEAT change and the START; writing the
   value HEARTBEAT already has is not a change.
6. "Settings" (06 while RUNNING/STOPPING) are WATCHDOG_MS, SESSION_S and every kind holding
   register. COMMAND and HEARTBEAT are always writable; SERVICE_KEY and SENSOR_OFFSET follow
   their own rows. COMMAND 0 is accepted and does nothing; only START is ever refused (06).
7. A write is judged as a whole: 02 if any address is unlisted; else 06 if any register's state
   rule is broken (state taken before the write); else 03 if any value is out of range or the
   register image the write would leave breaks a row rule (so HARNESS and FORCE_SET written
   together are checked together, and SERVICE_KEY 0xA5A5 with SENSOR_OFFSET in one write enters
   service mode and sets the offset). Accepted values are stored in address order and COMMAND is
   acted on last, so a START in the same write runs with the new settings.
8. ESTOP while already in ESTOP changes nothing (FAULT_UPTIME_MS keeps the first instant). ESTOP,
   and a protective trip during a FAULT-state stop motion, replace the latched cause (the rows
   name FAULT 1 / 3 / 4 / 5 as their effect); a patient stop or watchdog in FAULT does not apply
   (those rows are for RUNNING only).
9. "Cause still present" for RESET means the e-stop circuit open or the patient switch pressed,
   whatever the latched FAULT.
10. The motor is enabled (STATUS bit 3) from START until the stop motion has finished; a RESET
    during a stop motion lets it finish (then the motor is disabled) in IDLE.
11. SESSION_ELAPSED counts whole seconds (floored) and freezes at the instant RUNNING ends.
12. The protective monitor is active in RUNNING, STOPPING, and in FAULT while a controlled or
    patient stop motion is under way; not during an emergency stop or after a RESET to IDLE.
13. Modbus framing: a request of function 03/04/06/16 that is malformed (quantity outside
    1-125 / 1-123, byte count not matching) answers 03 as the Modbus application protocol says;
    a FC06 reply echoes the request (also for COMMAND, which reads 0 afterwards).
14. A rebooted PLC has forgotten every TCP connection opened before: the server resets such a
    connection (RST) on its first request once the PLC answers again; while the PLC is silent
    the server still accepts connections but never answers on them.
15. The hardwired e-stop circuit, when acted on late (defect estop-slow), is acted on even if it
    closes again within the delay; STATUS bit 0 always shows the contact at once.

TT-890 (traction.py) readings:

16. Every release (controlled, emergency, patient, power loss) goes to 0 N of true tension, not
    to 0 N of the offset control channel: a release lets the cord go slack.
17. Emergency and patient stops: the drive stops at once and the release starts after a 10 ms
    reaction latency (the tension holds meanwhile, it never rises after the event).
18. PHASE is RELEASE (5) during any release, IDLE (0) once it has finished, and IDLE in ESTOP and
    FAULT afterwards. STATUS bit 2 (at setpoint) is PHASE HOLD or REST, so RUNNING only.
19. START ramps from the present tension: if it is above the new level (a release still under
    way after RESET), the ramp goes down at RAMP_RATE, PHASE still RAMP_UP.
20. The overforce limit uses FORCE_SET as set; levels that the controller aims at (hold, rest)
    are control-channel levels, so the true force is level - SENSOR_OFFSET / 10, never below 0.
21. Defect overshoot: PHASE turns HOLD when the overshoot has settled back to the level.
    Defect restart-after-reset: the RESET starts a new session, like START.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

import numpy as np

from .defects import check_defects
from .track import Track
from .world import World

ICD_VERSION = 100
UNIT_ID = 1
BOOT_S = 2.0  # device seconds from mains power-on until the PLC answers
HISTORY_S = 660.0  # device seconds of motion history kept for instruments sampling the past
SERVICE_KEY_ENTER = 0xA5A5

# Modbus exception codes
ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
DEVICE_BUSY = 6

READ_FUNCTIONS = (3, 4)
WRITE_FUNCTIONS = (6, 16)
MAX_READ_COUNT = 125
MAX_WRITE_COUNT = 123

_MAX_EVENTS_PER_ADVANCE = 1_000_000


class State(IntEnum):
    """STATE input register."""

    IDLE = 0
    RUNNING = 1
    STOPPING = 2
    ESTOP = 3
    FAULT = 4


class Fault(IntEnum):
    """FAULT input register (latched cause)."""

    NONE = 0
    ESTOP = 1
    PATIENT_STOP = 2
    OVERFORCE = 3
    OVERTRAVEL = 4
    OVERSPEED = 5
    COMM_LOSS = 6
    RESERVED = 7
    POWER_RESTORED = 8


class Command(IntEnum):
    """Values of the COMMAND holding register."""

    NONE = 0
    START = 1
    STOP = 2
    RESET = 3
    ESTOP = 4


class Status(IntEnum):
    """Bits of the STATUS input register."""

    ESTOP_OPEN = 1 << 0
    PATIENT_PRESSED = 1 << 1
    AT_SETPOINT = 1 << 2
    MOTOR_ENABLED = 1 << 3
    BRAKE_ENGAGED = 1 << 4
    SERVICE_MODE = 1 << 5


class StopKind(IntEnum):
    """Which stop motion is under way."""

    CONTROLLED = 1
    PATIENT = 2
    EMERGENCY = 3
    POWER_LOSS = 4


class PlcSilent(Exception):
    """The PLC does not answer at all: no mains power, or still booting."""


@dataclass(frozen=True)
class HoldingRegister:
    """One holding register row of the ICD (range in raw register units, e.g. x10)."""

    addr: int
    name: str
    lo: int
    hi: int
    default: int
    signed: bool = False
    setting: bool = True  # refused with 06 while RUNNING or STOPPING

    def decode(self, raw: int) -> int:
        """Engineering integer of a raw u16 (two's complement for s16)."""
        return raw - 0x10000 if self.signed and raw >= 0x8000 else raw

    def encode(self, value: int) -> int:
        """Raw u16 of an engineering integer."""
        return value & 0xFFFF

    def accepts(self, raw: int) -> bool:
        """True if a raw value is inside the row's range."""
        return self.lo <= self.decode(raw) <= self.hi


# Common holding registers (every kind)
COMMAND = 0
HEARTBEAT = 1
WATCHDOG_MS = 2
SESSION_S = 3
SERVICE_KEY = 900
SENSOR_OFFSET = 901

COMMON_HOLDING: tuple[HoldingRegister, ...] = (
    HoldingRegister(COMMAND, "COMMAND", 0, 4, 0, setting=False),
    HoldingRegister(HEARTBEAT, "HEARTBEAT", 0, 0xFFFF, 0, setting=False),
    HoldingRegister(WATCHDOG_MS, "WATCHDOG_MS", 100, 5000, 1000),
    HoldingRegister(SESSION_S, "SESSION_S", 60, 5940, 900),
    HoldingRegister(SERVICE_KEY, "SERVICE_KEY", 0, 0xFFFF, 0, setting=False),
    HoldingRegister(SENSOR_OFFSET, "SENSOR_OFFSET", -32768, 32767, 0, signed=True, setting=False),
)

# Common input registers (every kind): address -> name; u32 values take two addresses
COMMON_INPUTS: dict[int, str] = {
    0: "KIND",
    1: "ICD_VERSION",
    2: "SERIAL_HI",
    3: "SERIAL_LO",
    4: "FIRMWARE",
    5: "STATE",
    6: "STATUS",
    7: "FAULT",
    8: "SESSION_ELAPSED",
    9: "CYCLES",
    10: "UPTIME_MS_HI",
    11: "UPTIME_MS_LO",
    12: "FAULT_UPTIME_MS_HI",
    13: "FAULT_UPTIME_MS_LO",
}


def first_excursion(
    track: Track, t_from: float, level: float, persist: float, *, above: bool = True
) -> float:
    """Earliest instant at which `track` has been beyond `level` continuously for `persist` s.

    Closed form over the planned pieces (no sampling); inf if the plan never does it.
    """
    t = t_from
    for _ in range(10_000):
        t_in = track.first_time(t, level, above=above)
        if math.isinf(t_in):
            return math.inf
        t_out = track.first_time(t_in, level, above=not above)
        if t_out >= t_in + persist:
            return t_in + persist
        t = max(t_out, t + 1e-9)
    return math.inf


def s16_x10(value: float) -> int:
    """Raw u16 of an s16 x10 reading: rounded to 0.1, clipped to the s16 range."""
    return max(-0x8000, min(0x7FFF, round(value * 10.0))) & 0xFFFF


def _floor_ms(seconds: float) -> int:
    # the epsilon absorbs float error so that an instant exactly N ms later reads N
    return math.floor(seconds * 1000.0 + 1e-6)


class TableBase:
    """The PLC of one table: registers, state machine, interlocks, watchdog, power; physics by kind.

    Implements the world's `Model` protocol (`advance_to`, `on_relay`).
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
                pass  # a dead or booting PLC latches nothing (reading 3)
            elif name == "estop" and on:
                if self.has("estop-slow"):
                    if "estop_circuit" not in self._timers:
                        self._schedule("estop_circuit", t + 0.150, self._estop)
                else:
                    self._estop(t)
            elif name == "patient" and on and self._state == State.RUNNING:
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
                self._end_running(t)
                self._state = State.STOPPING
                self._stop = StopKind.CONTROLLED
                self._controlled_stop(t)
        elif value == Command.RESET:
            self._reset(t)
        elif value == Command.ESTOP:
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
        self._fault_to(t, Fault.COMM_LOSS, StopKind.CONTROLLED)
        self._controlled_stop(t)

    def _on_trip(self, t: float, code: int) -> None:
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
