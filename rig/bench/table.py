"""The table under test: one object owns its state and brings it to a verified safe one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from ..errors import (
    DeviceError,
    IllegalValue,
    SafeStateError,
    WriteRefused,
)
from ..plc import HeartbeatLate, HeartbeatStamp, Number, Plc, UnitTrippedCommLoss
from ..profiles import Profile
from ..wait import wait_until
from .safe import SAFE_LINK_TIMEOUT_S, SafeLadder, SafeStateReport, return_upright

RUNNING_STATES = ("RUNNING", "STOPPING")


# The report make_safe returns (kept under its old name too, for callers of issue 7's API).
SafeReport = SafeStateReport


class Table:
    """A table role: commands, settings and the safe-state strategy over the PLC driver.

    `reference` reads the bench's reference instrument now (e.g. the load cell's force); it is
    how the safe state is confirmed independently of the table's own sensors. `meter` reads
    any channel of it (the roller's LIFT as well as POS); without it, the safe-state limits on
    other channels fall back to the PLC's registers.
    """

    def __init__(
        self,
        plc: Plc,
        profile: Profile,
        *,
        reference: Callable[[], float] | None = None,
        actuators: Any = None,
        home: Callable[[Table], None] | None = None,
        timeout: float = 30.0,
        meter: Callable[[str], float] | None = None,
    ) -> None:
        self.plc = plc
        self.profile = profile
        self.reference = reference
        self.meter = meter
        self.actuators = actuators
        self.home = home
        self.timeout = timeout
        self.restarted_on_reset = 0
        self._safe_plc: Plc | None = None
        self._rate: float | None = None
        #: make_safe stopped the heartbeat (the PLC was silent); ready() starts it again
        self.heartbeat_stopped_by_safe = False
        #: the settings as ready() found them, before anything of the test changed them
        self.settings_before: dict[str, Number] | None = None
        #: settings make-safe could not write back (PLC silent); the next test's ready() does
        self.settings_pending: dict[str, Number] | None = None
        # True once the heartbeat was paused on purpose in the present test: a COMM_LOSS then is
        # what the test provoked, not one to classify (`begin_test()` clears it).
        self.comm_loss_intended = False
        # Unintended COMM_LOSS faults a `ready()` inside the test reset, classified first.
        self.unnoticed: list[HeartbeatLate | UnitTrippedCommLoss] = []

    # -- device time ---------------------------------------------------------------------------
    def uptime(self) -> float:
        """PLC device clock in seconds."""
        return self.plc.uptime_ms() / 1000.0

    def uptime_ms(self) -> int:
        """PLC UPTIME_MS: the device clock the PLC stamps FAULT_UPTIME_MS with."""
        return self.plc.uptime_ms()

    def clock_rate(self) -> float:
        """Device seconds per wall second (the emulator's time scale; 1 on a real table)."""
        return self.plc.clock_rate()

    def wall_timeout(self, device_seconds: float, *, margin: float = 10.0) -> float:
        """A generous wall-clock bound for waiting `device_seconds` of device time."""
        rate = max(self.plc.clock_rate(), 1e-3)
        self._rate = rate
        return device_seconds / rate * 3.0 + margin

    def wait_device(self, seconds: float) -> None:
        """Wait until the PLC clock has advanced `seconds` (device time, not a host sleep)."""
        end = self.plc.uptime_ms() + seconds * 1000.0
        wait_until(
            lambda: self.plc.uptime_ms() >= end,
            self.wall_timeout(seconds),
            interval=0.005,
            what=f"{seconds} s of PLC device time",
        )

    # -- named registers -----------------------------------------------------------------------
    def read(self, name: str) -> Number:
        """Engineering value of the register `name` (profile map)."""
        return self.plc.read(name)

    def read_raw(self, name: str) -> int:
        """Raw integer of the register `name` (e.g. FAULT and STATE codes as judged)."""
        return self.plc.read_raw(name)

    def read_many(self, names: Iterable[str]) -> dict[str, Number]:
        """Engineering values of several registers read together."""
        return self.plc.read_many(names)

    def write(self, name: str, value: Number | str) -> None:
        """Write an engineering value, refused before sending if the profile does not allow it."""
        self.plc.write(name, value)

    def write_raw(self, name: str, raw: int) -> None:
        """Write a raw register value, checked by the write guard like every write (the
        setting-limit tests send their out-of-range probes inside `unguarded`)."""
        self.plc.write_raw(name, raw)

    def unguarded(self, reason: str) -> AbstractContextManager[None]:
        """The one named escape from the write guard, for deliberate out-of-range probes; every
        write it lets through is kept with the reason (Plc.unguarded_writes)."""
        return self.plc.unguarded(reason)

    def status(self) -> dict[str, bool]:
        """STATUS bits by name."""
        return self.plc.status()

    def wait_responding(
        self, timeout: float, *, request_timeout: float = 0.25, interval: float | None = None
    ) -> str:
        """Poll (fresh connections, short timeouts) until the PLC answers after a power-on."""
        return self.plc.wait_responding(timeout, request_timeout=request_timeout, interval=interval)

    def answered_uptime_ms(self) -> int | None:
        """UPTIME_MS in the first answer of the last `wait_responding` (the PLC's own clock)."""
        return self.plc.answered_uptime_ms

    def last_heartbeat(self) -> HeartbeatStamp:
        """Write HEARTBEAT once; the UPTIME_MS read just before (the watchdog's t 0) and just
        after it (`rig.plc.HeartbeatStamp`)."""
        return self.plc.last_heartbeat()

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> str:
        """STATE by name."""
        return self.plc.state()

    def wait_state(self, *states: str, device_s: float = 30.0) -> str:
        """Poll until STATE is one of `states`; returns it."""
        return wait_until(
            lambda: (s := self.plc.state()) in states and s,
            self.wall_timeout(device_s),
            what=f"PLC STATE in {states}",
        )

    def wait_status(self, bit: str, *, device_s: float = 30.0, value: bool = True) -> None:
        """Poll until STATUS bit `bit` reads `value`."""
        wait_until(
            lambda: self.plc.status().get(bit) is value,
            self.wall_timeout(device_s),
            what=f"STATUS {bit} = {value}",
        )

    def configure(self, settings: dict[str, float]) -> None:
        """Write settings (engineering units), refusing out-of-range values before sending.

        Settings bound by a rule (FORCE_SET by HARNESS, the travel span, ANGLE_SET under
        ANGLE_LIMIT) may only be accepted in one order from the present values: a write the
        rule refuses is deferred and retried after the others; one that no order allows
        raises.
        """
        pending = list(settings.items())
        while pending:
            deferred: list[tuple[str, float]] = []
            last: Exception | None = None
            for name, value in pending:
                try:
                    self.plc.write(name, value)
                except (WriteRefused, IllegalValue) as e:
                    deferred.append((name, value))
                    last = e
            if len(deferred) == len(pending):
                if self._lower_capped(dict(deferred)):
                    pending = deferred
                    continue
                assert last is not None
                raise last
            pending = deferred

    def _lower_capped(self, wanted: dict[str, float]) -> bool:
        """Lower a register whose maximum depends on another (FORCE_SET before a HARNESS
        change) so the deferred writes can go through; True if something was changed."""
        changed = False
        for rule in self.profile.rules:
            if rule.kind == "max_by" and rule.by in wanted:
                cap = rule.max[str(int(wanted[rule.by]))]
                if self.plc.read(rule.register) > cap:
                    self.plc.write(rule.register, min(cap, wanted.get(rule.register, cap)))
                    changed = True
        return changed

    def command(self, name: str) -> None:
        """Write COMMAND by name; Modbus exceptions propagate typed."""
        self.plc.command(name)

    def ready(self) -> None:
        """Bring the table to IDLE with FAULT 0 and relays at their defaults, before a test."""
        if self.actuators is not None:
            self.actuators.patient = False
            self.actuators.estop = False
            if not self.actuators.power:
                self.actuators.power = True
        self.plc.wait_responding(self.wall_timeout(10.0))
        self.settings_before = self.settings_snapshot()
        if self.heartbeat_stopped_by_safe:
            # make_safe stopped it while the PLC was silent; the PLC answers again
            self.plc.heartbeat.stop()
            self.plc.heartbeat.start()
            self.heartbeat_stopped_by_safe = False
        state = self.plc.state()
        if state in RUNNING_STATES:
            self.plc.command("STOP")
            state = self.wait_state("IDLE", "FAULT", "ESTOP", device_s=60.0)
        if state != "IDLE" or self.plc.fault() != "NONE":
            # a COMM_LOSS a test's repeat left is classified before RESET clears it
            missed = self._comm_loss_now()
            if missed is not None:
                self.unnoticed.append(missed)
            self.plc.command("RESET")
        state = wait_until(
            lambda: (s := self.plc.state()) in ("IDLE", *RUNNING_STATES) and s,
            self.wall_timeout(10.0),
            what="PLC IDLE after RESET",
        )
        if state in RUNNING_STATES:
            # a table that starts moving on RESET is defective (no-restart requirements judge
            # it); here it only has to be stopped so the next test starts from rest
            self.restarted_on_reset += 1
            self.stop_and_wait()
        if self.plc.fault() != "NONE":
            raise DeviceError(f"table still reports FAULT {self.plc.fault()} after RESET")
        self._wait_motion_finished()
        if self.profile.registers.get("SERVICE_KEY") is not None:
            if self.plc.status().get("service_mode"):
                self.plc.write("SERVICE_KEY", 0)
        if self.home is not None:
            self.home(self)

    def stop_and_wait(self, *, device_s: float = 120.0) -> None:
        """STOP and wait for the controlled stop to end in IDLE; a stop that ends in a fault
        (e.g. the watchdog) raises at once, naming it."""
        self.plc.command("STOP")
        state = self.wait_state("IDLE", "FAULT", "ESTOP", device_s=device_s)
        if state != "IDLE":
            error = DeviceError(
                f"the table went to {state} (FAULT {self.plc.fault()}) while stopping, not IDLE"
            )
            cause = self.unintended_comm_loss()
            if cause is not None:  # whose fault: the rig's late heartbeat, or the unit's trip
                raise cause from error
            raise error
        self._wait_motion_finished(device_s)

    def _wait_motion_finished(self, device_s: float = 60.0) -> None:
        wait_until(
            lambda: not self.plc.status().get("motor_enabled"),
            self.wall_timeout(device_s),
            what="motor disabled (stop motion finished)",
        )

    @contextmanager
    def heartbeat_paused(self) -> Iterator[int | None]:
        """Stop the heartbeat for the block (watchdog and power-loss tests); the COMM_LOSS that
        follows is intended. Yields the UPTIME_MS read before the writer's last beat (None if
        not known): the watchdog may fire on it before the test's own last beat lands. It runs
        again after the block if it ran before, except after
        KeyboardInterrupt or SystemExit (the run is ending: make-safe follows, and the PLC
        may be off). After another exception a failed restart is noted on that exception and
        never replaces it."""
        hb = self.plc.heartbeat
        was_running = hb.running
        self.comm_loss_intended = True
        last = hb.stop()
        try:
            yield None if last is None else last[0]
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            if was_running:
                try:
                    hb.start()
                except Exception as restart:  # e.g. the PLC still off: the block's error stands
                    exc.add_note(f"heartbeat not restarted: {type(restart).__name__}: {restart}")
            raise
        else:
            if was_running:
                hb.start()

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Keep the heartbeat going for the duration of the block."""
        hb = self.plc.heartbeat
        started = not hb.running
        if started:
            hb.start()
        try:
            yield
        finally:
            if started:
                hb.stop()

    # -- unintended faults ---------------------------------------------------------------------
    def begin_test(self) -> None:
        """A test body starts: what went before it is not its to classify."""
        self.comm_loss_intended = False
        self.unnoticed.clear()

    def unintended_comm_loss(self) -> HeartbeatLate | UnitTrippedCommLoss | None:
        """If the table latched a COMM_LOSS this test did not provoke (now, or before a
        `ready()` inside the test reset it), whose fault it was (the heartbeat's accounting
        in device time, `Heartbeat.comm_loss_cause`); else None.

        Never raises: a PLC that cannot be read gives None (the caller's own error stands).
        """
        if self.unnoticed:
            return self.unnoticed[0]
        return self._comm_loss_now()

    def _comm_loss_now(self) -> HeartbeatLate | UnitTrippedCommLoss | None:
        if self.comm_loss_intended:
            return None
        try:
            values = self.plc.read_many(["FAULT", "FAULT_UPTIME_MS"])
            fault = self.profile.register("FAULT").enum_name(int(values["FAULT"]))
        except Exception:
            return None
        if fault != "COMM_LOSS":
            return None
        cause = self.plc.heartbeat.comm_loss_cause(int(values["FAULT_UPTIME_MS"]))
        try:
            self.plc.heartbeat.check()
        except Exception as e:  # a failing heartbeat is the rig's or the bench's, never the unit's
            if isinstance(cause, UnitTrippedCommLoss):
                cause = HeartbeatLate(
                    f"{cause}; but heartbeat writes failed: {e}",
                    gap_ms=cause.gap_ms,
                    watchdog_ms=cause.watchdog_ms,
                    max_gap_ms=cause.max_gap_ms,
                )
            else:
                cause.add_note(f"heartbeat write failed: {e}")
        return cause

    # -- safe state ----------------------------------------------------------------------------
    def settings_snapshot(self) -> dict[str, Number]:
        """The writable settings (holding registers that survive power cycles), now."""
        return dict(self.plc.read_many(self.profile.settings()))

    def restore_settings(self, before: dict[str, Number]) -> list[dict[str, Any]]:
        """Write back every setting that differs from `before`, through the guarded write path
        (in an order the profile's rules allow); return what was restored (register, from, to).
        """
        now = self.settings_snapshot()
        changed = {n: v for n, v in before.items() if n in now and now[n] != v}
        if changed:
            self.configure(dict(changed))
        return [{"register": n, "from": now[n], "to": v} for n, v in changed.items()]

    def _reference_meter(self) -> Callable[[str], float] | None:
        if self.meter is not None:
            return self.meter
        reference, primary = self.reference, self.profile.model.reference_channel
        if reference is None:
            return None

        def meter(channel: str) -> float:
            if channel != primary:
                raise DeviceError(f"no reading of channel {channel} without the meter")
            return reference()

        return meter

    def _ladder_plc(self) -> Plc:
        # Its own connection with a short timeout: make-safe may run from a signal handler
        # while the main connection is mid-call, and must know quickly that the PLC is silent.
        if self._safe_plc is None:
            plc = self.plc
            self._safe_plc = Plc(
                self.profile, plc.host, plc.port, unit=plc.unit, timeout=SAFE_LINK_TIMEOUT_S
            )
        return self._safe_plc

    def _known_rate(self) -> float:
        if self._rate is not None:
            return self._rate
        clock = getattr(self.plc, "_clock", None)  # the driver's estimate, if it has one yet
        rate = getattr(clock, "rate", None)
        return float(rate) if rate else 1.0

    def make_safe(self, *, budget_s: float | None = None) -> SafeStateReport:
        """Make the table safe by the escalation ladder, verify it, and say which step did it.

        STOP and wait; then the software ESTOP; then the ACT e-stop relay; then ACT mains off.
        Each is verified from the PLC's read-back and the reference instrument (the reference
        alone when the PLC is silent; a silent PLC goes straight to the relays, after stopping
        the heartbeat so the table's own watchdog acts too). STOP goes first, never behind an
        actuator-box query. Every call is bounded; `budget_s` (wall seconds) bounds the whole
        ladder, e.g. `INTERRUPT_BUDGET_S` on the interrupt path. A frame held by its brake
        away from its safe position is returned if the budget allows, else reported "held".

        Raises SafeStateError naming what was tried and the last readings if no step did it.
        """
        ladder = SafeLadder(
            self.profile,
            self._ladder_plc(),
            meter=self._reference_meter(),
            actuators=self.actuators,
            heartbeat_stop=self._stop_heartbeat_for_safe,
            rate=self._known_rate(),
            budget_s=budget_s,
            upright=return_upright,
        )
        try:
            return ladder.run()
        finally:
            try:
                self._safe_plc.close() if self._safe_plc is not None else None
            except DeviceError:
                pass

    def _stop_heartbeat_for_safe(self) -> None:
        self.heartbeat_stopped_by_safe = True
        self.plc.heartbeat.stop()

    def verify_safe(self, actions: tuple[str, ...] = ()) -> SafeStateReport:
        """Read back the PLC and the reference instrument; raise SafeStateError if not safe."""
        ladder = SafeLadder(
            self.profile,
            self._ladder_plc(),
            meter=self._reference_meter(),
            actuators=None,
            heartbeat_stop=lambda: None,
            rate=self._known_rate(),
            budget_s=None,
        )
        ladder.actions = list(actions)
        look = ladder.look(still=True)
        if not look.safe:
            raise SafeStateError(
                "table NOT in a safe state: " + "; ".join(look.problems + look.held)
            )
        return ladder._finish(look, "none needed")
