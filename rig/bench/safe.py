"""The make-safe escalation ladder: STOP, software ESTOP, ACT e-stop relay, ACT mains off."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import DeviceError, ModbusExceptionError, PlcNotResponding, RigError
from ..plc import Plc
from ..profiles import Profile, SafeLimit
from ..wait import WaitTimeout

__all__ = [
    "INTERRUPT_BUDGET_S",
    "STEPS",
    "SafeLadder",
    "SafeStateReport",
    "StepResult",
]

#: The steps, in order. "none needed": the table was already safe when make-safe began;
#: "watchdog": the PLC was silent, the heartbeat stopped and no relay answered, yet the
#: reference instrument shows the table safe (its own watchdog stopped it).
STEPS = ("STOP", "ESTOP", "ACT ESTOP relay", "ACT POWER off")

#: Wall seconds the interrupt path (SIGINT/SIGTERM) should give `Table.make_safe(budget_s=...)`
#: so that the process can end within 5 s of the signal.
INTERRUPT_BUDGET_S = 3.0

RUNNING_STATES = ("RUNNING", "STOPPING")

# A make-safe probe must know quickly that the PLC is silent: 0.5 s per request bounds one call
# to call_bound(0.5) = 3 s, about 1 s for a silent peer (two attempts). A healthy PLC answers in
# milliseconds at any time scale; the margin keeps a loaded host from making it look silent.
SAFE_LINK_TIMEOUT_S = 0.5
# Least wall time given to a step's verification, whatever the device-time estimate says.
MIN_STEP_WALL_S = 0.4
# Wall time kept back for each later step while a step waits, when a budget is set.
RESERVE_PER_STEP_S = 0.6
STILL_DEVICE_S = 0.2  # "still": two readings this many device seconds apart agree


@dataclass(frozen=True)
class StepResult:
    """One rung of the ladder: what was sent, whether it was verified, how long it took."""

    step: str
    sent: bool
    verified: bool
    wall_s: float
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """For the run record."""
        return {
            "step": self.step,
            "sent": self.sent,
            "verified": self.verified,
            "wall_s": round(self.wall_s, 3),
            "note": self.note,
        }


@dataclass(frozen=True)
class SafeStateReport:
    """What make-safe did and what it read back.

    `step` names the rung that made the table safe ("none needed" if it already was);
    `condition` is "safe", or "held" when a limit with `held_by` is past (an inverted frame on
    its brake, which could not be returned upright); `verified_by` says which sources agreed.
    """

    state: str | None
    fault: str | None
    motor_enabled: bool | None
    reference: float | None
    actions: tuple[str, ...]
    step: str = "none needed"
    condition: str = "safe"
    verified_by: str = "PLC + reference"
    readings: Mapping[str, float | None] = field(default_factory=dict)
    steps: tuple[StepResult, ...] = ()
    wall_s: float = 0.0
    plc_answered: bool = True
    note: str = ""

    @property
    def safe(self) -> bool:
        """True only for "safe": a held table is stopped but not in its safe position."""
        return self.condition == "safe"

    def as_dict(self) -> dict[str, Any]:
        """For the run record."""
        return {
            "state": self.state,
            "fault": self.fault,
            "motor_enabled": self.motor_enabled,
            "reference": self.reference,
            "actions": list(self.actions),
            "step": self.step,
            "condition": self.condition,
            "verified_by": self.verified_by,
            "readings": dict(self.readings),
            "steps": [s.as_dict() for s in self.steps],
            "wall_s": round(self.wall_s, 3),
            "plc_answered": self.plc_answered,
            "note": self.note,
        }


@dataclass
class _Look:
    """One observation of the table from every source that answered."""

    plc: bool
    state: str | None = None
    fault: str | None = None
    motor: bool | None = None
    bits: dict[str, bool] = field(default_factory=dict)
    reference: float | None = None
    readings: dict[str, float | None] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)

    @property
    def stopped(self) -> bool:
        """Nothing in the way of "safe" but limits that are held."""
        return not self.problems

    @property
    def safe(self) -> bool:
        return not self.problems and not self.held


_READ_ERRORS = (RigError, OSError, ValueError)


class SafeLadder:
    """One make-safe attempt over a table's PLC, reference instrument and actuator box.

    The PLC is reached over its own short-timeout connection (`safe_plc`), so a call the main
    thread was interrupted in cannot hold make-safe, and a silent PLC is known within 1.5 s.
    """

    def __init__(
        self,
        profile: Profile,
        safe_plc: Plc,
        *,
        meter: Callable[[str], float] | None,
        actuators: Any,
        heartbeat_stop: Callable[[], None],
        rate: float,
        budget_s: float | None,
        upright: Callable[[SafeLadder, float], str] | None = None,
    ) -> None:
        self.profile = profile
        self.spec = profile.safe_state
        self.plc = safe_plc
        self.meter = meter
        self.actuators = actuators
        self.heartbeat_stop = heartbeat_stop
        self.rate = rate if rate > 0 and math.isfinite(rate) else 1.0
        self.t0 = time.monotonic()
        self.deadline = None if budget_s is None else self.t0 + budget_s
        self.upright = upright
        self.actions: list[str] = []
        self.steps: list[StepResult] = []
        self.plc_ok = True
        self.heartbeat_stopped = False
        self.notes: list[str] = []
        self.last: _Look | None = None

    # -- time ----------------------------------------------------------------------------------
    def wall_for(self, device_s: float, later_steps: int = 0) -> float:
        """Wall seconds to give something that takes `device_s` of device time, within budget."""
        want = max(device_s / self.rate * 1.5 + 0.2, MIN_STEP_WALL_S)
        if self.deadline is None:
            return want
        left = self.deadline - time.monotonic() - later_steps * RESERVE_PER_STEP_S
        return max(min(want, left), 0.05)

    def remaining(self) -> float:
        """Wall seconds left in the budget (infinite without one)."""
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def sleep_device(self, device_s: float) -> None:
        time.sleep(min(max(device_s / self.rate, 0.005), 0.5))

    # -- reading -------------------------------------------------------------------------------
    def _plc_call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (PlcNotResponding, WaitTimeout, OSError) as e:
            self._plc_silent(str(e))
            return None

    def _plc_silent(self, why: str) -> None:
        if self.plc_ok:
            self.plc_ok = False
            self.notes.append(f"PLC does not answer ({why})")
            self.stop_heartbeat()

    def stop_heartbeat(self) -> None:
        """Stop the rig's heartbeat so the table's own watchdog acts too. In a thread of its
        own: a beat stuck on the silent PLC would hold the caller up to 13 s."""
        if self.heartbeat_stopped:
            return
        self.heartbeat_stopped = True
        threading.Thread(target=self._stop_hb, name="make-safe-heartbeat-stop", daemon=True).start()

    def _stop_hb(self) -> None:
        try:
            self.heartbeat_stop()
        except Exception:  # a heartbeat that cannot be stopped is stopping anyway
            pass

    def _reading(self, limit: SafeLimit) -> tuple[float | None, str | None]:
        if self.meter is not None:
            try:
                value = float(self.meter(limit.channel))
                if math.isfinite(value):
                    return value, "reference"
            except _READ_ERRORS:
                pass
        if self.plc_ok:
            value = self._plc_call(lambda: self.plc.read(limit.register))
            if value is not None:
                return float(value), "PLC register"
        return None, None

    def _primary(self) -> float | None:
        if self.meter is None:
            return None
        try:
            value = float(self.meter(self.profile.model.reference_channel))
        except _READ_ERRORS:
            return None
        return value if math.isfinite(value) else None

    def look(self, *, still: bool = False, plc_only: bool = False) -> _Look:
        """Read the table from the PLC (if it answers) and the reference instrument."""
        look = _Look(plc=self.plc_ok)
        if self.plc_ok:
            values = self._plc_call(lambda: self.plc.read_many(("STATE", "FAULT", "STATUS")))
            if values is not None:
                state_reg, fault_reg = (self.profile.register(n) for n in ("STATE", "FAULT"))
                look.state = state_reg.enum_name(int(values["STATE"]))
                look.fault = fault_reg.enum_name(int(values["FAULT"]))
                look.bits = self.profile.register("STATUS").bit_dict(int(values["STATUS"]))
                look.motor = bool(look.bits.get("motor_enabled"))
                look.sources.add("PLC")
                if look.state not in self.spec.states:
                    look.problems.append(f"STATE {look.state} not in {list(self.spec.states)}")
                if self.spec.motor_disabled and look.motor:
                    look.problems.append("motor still enabled")
        look.plc = self.plc_ok
        if plc_only:
            self.last = look
            return look
        look.reference = self._primary()
        unit = self.profile.model.primary_unit
        if self.spec.reference_max is not None:
            if look.reference is None:
                look.problems.append("no reference reading to confirm")
            elif abs(look.reference) > self.spec.reference_max:
                look.problems.append(
                    f"reference reads {look.reference:.2f} {unit} > {self.spec.reference_max}"
                )
            else:
                look.sources.add("reference")
        for limit in self.spec.limits:
            value, source = self._reading(limit)
            look.readings[limit.name] = value
            if value is None:
                look.problems.append(f"no reading of {limit.name}")
                continue
            assert source is not None
            look.sources.add(source)
            if abs(value) <= limit.max:
                continue
            text = f"{limit.name} {value:.2f} beyond {limit.max}"
            brake = limit.held_by is not None and (
                look.bits.get(limit.held_by) if look.plc else self._relay_braked()
            )
            if brake and (not self.spec.motor_disabled or look.motor is not True):
                look.held.append(f"{text}, held by {limit.held_by}")
            else:
                look.problems.append(text)
        if not look.plc and not look.sources:
            look.problems.append("nothing answers to confirm (PLC silent, no reference reading)")
        if still and not look.problems and self.spec.reference_still is not None:
            first = look.reference
            self.sleep_device(STILL_DEVICE_S)
            second = self._primary()
            if first is None or second is None:
                look.problems.append("no reference reading to confirm it is still")
            elif abs(second - first) > self.spec.reference_still:
                look.problems.append(
                    f"reference moved {abs(second - first):.3f} {unit} in {STILL_DEVICE_S} s "
                    f"(still means <= {self.spec.reference_still})"
                )
            else:
                look.sources.add("reference")
        self.last = look
        return look

    def _relay_braked(self) -> bool:
        # Only asked when the PLC is silent, so the brake bit cannot be read: the ICD's brake
        # holds from the first instant of an emergency stop and whenever mains is off.
        return any(a.startswith("ACT ") for a in self.actions)

    def settle(self, wall_s: float) -> _Look:
        """Poll until the table reads stopped (safe or held) and still, or `wall_s` passes."""
        end = time.monotonic() + wall_s
        while True:
            expired = time.monotonic() >= end
            look = self.look()
            if look.stopped:
                look = self.look(still=True)
                if look.stopped:
                    return look
            if expired:
                return look
            time.sleep(0.01)

    # -- the ladder ----------------------------------------------------------------------------
    def run(self) -> SafeStateReport:
        """Climb the ladder until a step is verified; SafeStateError if none is."""
        return self._climb()

    def _climb(self) -> SafeStateReport:
        # The PLC alone first: a running table gets its STOP before any instrument is asked
        # anything (finding 2: a dead instrument link once held STOP back with 890 N on).
        state = self.look(plc_only=True).state
        if self.plc_ok and state not in RUNNING_STATES:
            first = self.look()
            if first.stopped:
                look = self.look(still=True)
                if look.stopped:
                    return self._finish(look, "none needed")
        if self.plc_ok:
            # a table already in its own stop (a watchdog or patient stop) is given the time of
            # a controlled stop to finish it before anything is escalated
            name = "STOP" if state in RUNNING_STATES or state is None else "own stop"
            look = self._step(
                name, lambda: self._command("STOP", only_if_running=True), self.spec.stop_s, 3
            )
            if look is not None:
                return self._finish(look, name)
        if self.plc_ok:
            look = self._step("ESTOP", lambda: self._command("ESTOP"), self.spec.estop_s, 2)
            if look is not None:
                return self._finish(look, "ESTOP")
        if not self.plc_ok:
            self.stop_heartbeat()
        look = self._step(
            "ACT ESTOP relay", lambda: self._relay("estop", True), self.spec.estop_s, 1
        )
        if look is not None:
            return self._finish(look, "ACT ESTOP relay")
        look = self._step(
            "ACT POWER off", lambda: self._relay("power", False), self.spec.estop_s, 0
        )
        if look is not None:
            return self._finish(look, "ACT POWER off")
        if not self.plc_ok and self.last is not None and self.last.stopped:
            return self._finish(self.last, "watchdog")
        return self._fail()

    def _step(
        self, name: str, send: Callable[[], str], device_s: float, later: int
    ) -> _Look | None:
        t = time.monotonic()
        try:
            note = send()
            sent = True
        except _READ_ERRORS as e:
            note, sent = f"not sent: {e}", False
        look = self.settle(self.wall_for(device_s, later)) if sent or not self.plc_ok else None
        if look is None or not look.stopped:
            # an unsent step leaves the table as it was: still worth a look when the PLC is
            # silent (its watchdog may have acted), not otherwise
            look = self.last if look is None else look
        verified = bool(sent and look is not None and look.stopped)
        self.steps.append(StepResult(name, sent, verified, time.monotonic() - t, note))
        return look if verified else None

    def _command(self, name: str, *, only_if_running: bool = False) -> str:
        if only_if_running:
            state = self.last.state if self.last is not None else None
            if state is not None and state not in RUNNING_STATES:
                return f"not needed: STATE {state} (waiting for its stop to finish)"
        try:
            self.plc.command(name)
        except (PlcNotResponding, OSError) as e:
            self._plc_silent(str(e))
            raise
        except (ModbusExceptionError, DeviceError) as e:
            raise DeviceError(f"{name} refused: {e}") from e
        self.actions.append(name if name == "STOP" else "ESTOP (STOP did not take)")
        return f"{name} sent"

    def _relay(self, relay: str, on: bool) -> str:
        if self.actuators is None:
            raise DeviceError("no actuator box")
        setattr(self.actuators, relay, on)
        self.actions.append(f"ACT {relay.upper()} {'ON' if on else 'OFF'}")
        return f"ACT {relay} {'ON' if on else 'OFF'}"

    def _finish(self, look: _Look, step: str) -> SafeStateReport:
        condition = "safe"
        if look.held and self.upright is not None and self.plc_ok:
            upright, self.upright = self.upright, None  # one attempt per make-safe
            self.notes.append(upright(self, self.remaining()))
            again = self.settle(self.wall_for(self.spec.estop_s))
            if not again.stopped:
                # e.g. a table that restarts on RESET: it is moving, so climb again
                self.notes.append("moving after the return attempt: the ladder climbs again")
                return self._climb()
            if not again.held:
                step = f"{step}, then returned"
            look = again
        if look.held:
            condition = "held"
            self.notes.append("; ".join(look.held) + " (could not return to its safe position)")
        note = "; ".join(self.notes)
        return SafeStateReport(
            state=look.state,
            fault=look.fault,
            motor_enabled=look.motor,
            reference=look.reference,
            actions=tuple(self.actions),
            step=step,
            condition=condition,
            verified_by=" + ".join(sorted(look.sources)) or "nothing",
            readings=dict(look.readings),
            steps=tuple(self.steps),
            wall_s=time.monotonic() - self.t0,
            plc_answered=self.plc_ok,
            note=note,
        )

    def _fail(self) -> Any:
        from ..errors import SafeStateError

        tried = ", ".join(
            f"{s.step} ({'sent' if s.sent else 'not sent'}, {s.wall_s:.2f} s: {s.note})"
            for s in self.steps
        )
        last = self.last
        readings = "none"
        if last is not None:
            readings = (
                f"STATE {last.state}, FAULT {last.fault}, motor {last.motor}, "
                f"reference {last.reference}, {dict(last.readings)}; "
                + "; ".join(last.problems + last.held)
            )
        silent = "PLC does not answer; " if not self.plc_ok else ""
        raise SafeStateError(
            f"table not confirmed safe: {silent}tried {tried or 'nothing'}; last readings: "
            f"{readings}" + (f" ({'; '.join(self.notes)})" if self.notes else "")
        )


def return_upright(ladder: SafeLadder, budget_s: float) -> str:
    """Return a stopped, braked frame to its safe position the way the ICD tells an operator
    (IT-90: RESET, ANGLE_SET 0 and START; then STOP at 0 deg). Bounded by `budget_s` and the
    profile's stop_s; a return that does not finish is ended by ESTOP, so the brake holds.
    """
    limits = [x for x in ladder.spec.limits if x.held_by is not None]
    if not limits or "ANGLE_SET" not in ladder.profile.registers:
        return "no return procedure for this kind"
    if budget_s < 1.0:
        return f"no time to return ({budget_s:.2f} s of make-safe budget left)"
    plc = ladder.plc
    try:
        state = plc.state()
        if state in ("ESTOP", "FAULT"):
            plc.command("RESET")
            ladder.actions.append("RESET (return)")
            end = time.monotonic() + ladder.wall_for(1.0)
            while (state := plc.state()) in ("ESTOP", "FAULT") and time.monotonic() < end:
                time.sleep(0.01)
        if state in RUNNING_STATES:
            # restarted on RESET (a defect): a controlled stop of an inversion table is the
            # return to 0 deg, so STOP is the way back
            plc.command("STOP")
            ladder.actions.append("STOP (restarted on RESET)")
            return "restarted on RESET; STOP sent (its controlled stop returns it to 0 deg)"
        if state != "IDLE":
            return f"cannot return: STATE {state} after RESET (e-stop circuit or patient switch?)"
        if "SERVICE_KEY" in ladder.profile.registers and plc.status().get("service_mode"):
            # a SENSOR_OFFSET left by a test would make the PLC's "0 deg" somewhere else;
            # leaving service mode clears it (ICD)
            plc.write("SERVICE_KEY", 0)
            ladder.actions.append("SERVICE_KEY 0 (leave service mode)")
        plc.write("ANGLE_SET", 0.0)
        plc.write("HOLD_S", 0)
        plc.command("START")
        ladder.actions.append("START (return to 0)")
        end = time.monotonic() + ladder.wall_for(ladder.spec.stop_s)
        if ladder.deadline is not None:
            end = min(end, ladder.deadline - RESERVE_PER_STEP_S)
        while True:
            values = [ladder._reading(x)[0] for x in limits]
            if all(v is not None and abs(v) <= x.max for v, x in zip(values, limits, strict=True)):
                break
            if time.monotonic() >= end:
                plc.command("ESTOP")
                ladder.actions.append("ESTOP (return did not finish)")
                return f"return did not finish in time (at {values}); ESTOP, brake holds"
            time.sleep(0.01)
        plc.command("STOP")
        ladder.actions.append("STOP")
        end = time.monotonic() + ladder.wall_for(ladder.spec.estop_s)
        while plc.state() != "IDLE" and time.monotonic() < end:
            time.sleep(0.01)
        return "returned to its safe position"
    except _READ_ERRORS as e:
        return f"return failed: {e}"
