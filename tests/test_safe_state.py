"""Make-safe escalation ladder, safe per kind, conditions restored (issue 8 findings 2/4/5/8/11).

Every test runs an emulated bench in this process and judges "safe" from the emulator's own
table object (its state, motor and true signals), never from what the rig says.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from rig.bench.provision import open_instrument
from rig.bench.safe import INTERRUPT_BUDGET_S, SafeStateReport
from rig.bench.table import Table
from rig.emulators.bench import EmulatedBench
from rig.emulators.table import PlcSilent
from rig.errors import SafeStateError
from rig.plc import Plc
from rig.procedures import procedure_for
from rig.profiles import load_profile

SCALE = 10.0
START, STOP, RESET, ESTOP = 1, 2, 3, 4
SIGNAL = {"TT-890": "force", "RT-600": "lift", "IT-90": "angle"}


@dataclass
class Rig:
    """One emulated bench with the rig's drivers and table over it."""

    bench: EmulatedBench
    plc: Plc
    table: Table
    drivers: dict[str, Any]

    @property
    def emu(self) -> Any:
        return self.bench.table

    def truth(self) -> dict[str, Any]:
        """The emulator's own view: state, motor, brake and the kind's signals now."""
        emu, world = self.emu, self.bench.world
        with world.lock:
            emu._now()
            t = world.clock.now()
            out: dict[str, Any] = {
                "state": emu._state.name,
                "motor": bool(emu._motor),
                "brake": bool(emu._brake_engaged(t)),
                "t": t,
            }
            for name in ("force", "lift", "angle", "position"):
                try:
                    out[name] = float(world.sample(name, np.array([t]))[0])
                except (KeyError, ValueError):
                    pass
        return out

    def ignore_commands(self, *codes: int) -> None:
        """Seed the emulated PLC to ignore COMMAND writes of these codes (a defective PLC)."""
        emu = self.emu
        original = emu._command

        def command(t: float, value: int) -> None:
            if value not in codes:
                original(t, value)

        emu._command = command

    def silence_plc(self) -> None:
        """The PLC stops answering Modbus (its process hung); the table itself runs on."""

        def silent(*_: Any) -> Any:
            raise PlcSilent("seeded: PLC silent")

        self.emu.read = silent
        self.emu.write = silent

    def drop_instrument(self, role: str) -> None:
        """Drop the link to one instrument: its server stops listening and the rig's socket is
        shut, as when its cable is pulled."""
        index = 1 + list(self.bench.kind.instruments).index(role)
        server = self.bench._servers[index]
        loop = self.bench._loop
        assert loop is not None
        loop.call_soon_threadsafe(server.close)
        time.sleep(0.05)
        sock = self.drivers[role]._transport._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _start_rig(model: str, stack: list[Any], defects: tuple[str, ...] = ()) -> Rig:
    profile = load_profile(model)
    bench = EmulatedBench(model, scale=SCALE, defects=defects)
    stack.append(bench.stop)
    station = bench.start()
    plc = Plc(profile, station.plc_host, station.plc_port)
    plc.connect()
    stack.append(plc.close)
    drivers: dict[str, Any] = {}
    meter = open_instrument(station, profile.model.reference_role, drivers)
    act = open_instrument(station, "actuators", drivers)
    for d in drivers.values():
        stack.append(d.close)
    channel = profile.model.reference_channel
    table = Table(
        plc,
        profile,
        actuators=act,
        reference=lambda: meter.measure(channel),
        meter=meter.measure,
        home=procedure_for(profile).home,
    )
    # the longest watchdog the ICD allows: the heartbeat thread shares this loaded interpreter
    # with the bench, and these tests are about make-safe, not about the heartbeat's timing
    plc.write("WATCHDOG_MS", 5000)
    plc.heartbeat.start()
    table.ready()
    return Rig(bench, plc, table, drivers)


@pytest.fixture
def rig_for() -> Iterator[Any]:
    stack: list[Any] = []

    def make(model: str, defects: tuple[str, ...] = ()) -> Rig:
        return _start_rig(model, stack, defects)

    yield make
    for close in reversed(stack):
        try:
            close()
        except Exception:
            pass


def _traction_hold(r: Rig, force: float = 300.0) -> None:
    r.table.configure({"MODE": 0, "HARNESS": 0, "FORCE_SET": force, "RAMP_RATE": 100.0})
    r.table.command("START")
    r.table.wait_status("at_setpoint")
    assert r.truth()["force"] > force * 0.9


def _safe_traction(truth: dict[str, Any]) -> bool:
    return (
        truth["state"] not in ("RUNNING", "STOPPING")
        and not truth["motor"]
        and (truth["force"] <= 15.0)
    )


def _timed(fn: Any) -> tuple[Any, float]:
    t = time.monotonic()
    out = fn()
    return out, time.monotonic() - t


def _step_walls(report: SafeStateReport) -> str:
    return ", ".join(f"{s.step} {s.wall_s:.2f} s" for s in report.steps)


# == each ladder step reached =================================================================
def test_stop_makes_safe_and_the_record_names_it(rig_for):
    r = rig_for("TT-890")
    _traction_hold(r)
    report, wall = _timed(r.table.make_safe)
    print(f"STOP: {wall:.2f} s wall ({_step_walls(report)})")
    assert report.step == "STOP" and report.actions == ("STOP",)
    assert report.as_dict()["step"] == "STOP"
    assert _safe_traction(r.truth())
    assert r.truth()["state"] == "IDLE"


def test_stop_ignored_escalates_to_software_estop(rig_for):
    r = rig_for("TT-890")
    _traction_hold(r)
    r.ignore_commands(STOP)
    report, wall = _timed(lambda: r.table.make_safe(budget_s=INTERRUPT_BUDGET_S))
    print(f"ESTOP: {wall:.2f} s wall ({_step_walls(report)})")
    assert report.step == "ESTOP"
    assert [s.step for s in report.steps] == ["STOP", "ESTOP"]
    assert not report.steps[0].verified and report.steps[1].verified
    truth = r.truth()
    assert truth["state"] == "ESTOP" and _safe_traction(truth)
    assert wall < INTERRUPT_BUDGET_S + 1.0


def test_estop_command_ignored_escalates_to_the_relay(rig_for):
    r = rig_for("TT-890")
    _traction_hold(r)
    r.ignore_commands(STOP, ESTOP)
    report, wall = _timed(lambda: r.table.make_safe(budget_s=INTERRUPT_BUDGET_S))
    print(f"ACT ESTOP relay: {wall:.2f} s wall ({_step_walls(report)})")
    assert report.step == "ACT ESTOP relay"
    assert r.bench.world.relays["estop"] is True
    assert _safe_traction(r.truth())
    assert wall < INTERRUPT_BUDGET_S + 1.0


def test_relay_ignored_escalates_to_mains_off(rig_for):
    r = rig_for("TT-890")
    _traction_hold(r)
    r.ignore_commands(STOP, ESTOP)
    emu = r.emu
    original = emu.on_relay

    def on_relay(name: str, on: bool, t: float) -> None:
        if name != "estop":  # a welded e-stop contact: the table never sees it open
            original(name, on, t)

    emu.on_relay = on_relay
    report, wall = _timed(lambda: r.table.make_safe(budget_s=INTERRUPT_BUDGET_S))
    print(f"ACT POWER off: {wall:.2f} s wall ({_step_walls(report)})")
    assert report.step == "ACT POWER off", report
    assert r.bench.world.relays["power"] is False
    assert r.truth()["force"] <= 15.0
    assert wall < INTERRUPT_BUDGET_S + 1.5


def test_silent_plc_goes_straight_to_the_relays_and_stops_the_heartbeat(rig_for):
    # finding 4: a silent PLC used to raise SafeStateError at once, heartbeat running on
    r = rig_for("TT-890")
    _traction_hold(r)
    r.silence_plc()
    report, wall = _timed(lambda: r.table.make_safe(budget_s=INTERRUPT_BUDGET_S))
    print(f"PLC silent -> relays: {wall:.2f} s wall ({_step_walls(report)})")
    assert report.step == "ACT ESTOP relay"
    assert [s.step for s in report.steps] == ["ACT ESTOP relay"]  # no STOP, no ESTOP tried
    assert not report.plc_answered and report.verified_by == "reference"
    assert _safe_traction(r.truth())
    time.sleep(0.5)
    assert not r.plc.heartbeat.running
    assert r.table.heartbeat_stopped_by_safe
    assert wall < INTERRUPT_BUDGET_S + 1.0


def test_nothing_answers_raises_naming_what_was_tried(rig_for):
    r = rig_for("TT-890")
    _traction_hold(r)
    r.ignore_commands(STOP, ESTOP, RESET)
    r.silence_plc()
    r.drop_instrument("actuators")
    r.drop_instrument("force_meter")
    with pytest.raises(SafeStateError) as err:
        r.table.make_safe(budget_s=INTERRUPT_BUDGET_S)
    text = str(err.value)
    assert "PLC does not answer" in text
    assert "ACT ESTOP relay (not sent" in text and "ACT POWER off (not sent" in text
    assert "last readings" in text


# == safe per kind ============================================================================
def _lift_stuck_on_estop(r: Rig) -> None:
    """Seed the emulated RT-600: an emergency stop brakes the carriage and disables the motor
    but leaves the lift up (a lift valve that does not open)."""
    from rig.emulators.roller import Phase

    emu = r.emu

    def estop(t: float) -> None:
        emu._cancel("phase", "motion")
        emu._phase = Phase.STOP
        emu._drive = False
        emu._park_from = None
        t_stop, _ = emu._pos.brake(t, emu._brake_decel())
        emu._lift.hold(t)
        emu._schedule("motion", t_stop, emu._stop_done)

    emu._emergency_stop = estop


def test_roller_with_the_lift_up_is_not_safe(rig_for):
    # finding 11: an RT-600 stopped with its lift up passed as safe ("still" was all it meant)
    r = rig_for("RT-600")
    _lift_stuck_on_estop(r)
    r.table.configure({"INTENSITY": 10})
    r.table.command("START")
    r.table.wait_device(4.0)  # the lift is at 30 mm
    r.table.command("ESTOP")
    r.table.wait_state("ESTOP")
    r.table.wait_status("motor_enabled", value=False)
    r.table.wait_device(0.5)
    truth = r.truth()
    assert truth["state"] == "ESTOP" and not truth["motor"] and truth["lift"] > 20.0
    with pytest.raises(SafeStateError, match="lift"):
        r.table.verify_safe()
    # the ladder does not stop at "still": mains off lowers the lift (ICD, power lost)
    report, wall = _timed(lambda: r.table.make_safe(budget_s=INTERRUPT_BUDGET_S))
    print(f"RT-600 lift stuck up -> {report.step}: {wall:.2f} s wall ({_step_walls(report)})")
    assert report.step == "ACT POWER off"
    time.sleep(0.3)
    assert r.truth()["lift"] <= 0.5


def test_roller_with_the_lift_up_and_no_relays_raises(rig_for):
    r = rig_for("RT-600")
    _lift_stuck_on_estop(r)
    r.table.configure({"INTENSITY": 10})
    r.table.command("START")
    r.table.wait_device(4.0)
    r.table.command("ESTOP")
    r.table.wait_state("ESTOP")
    r.drop_instrument("actuators")
    with pytest.raises(SafeStateError, match="lift"):
        r.table.make_safe(budget_s=INTERRUPT_BUDGET_S)
    assert r.truth()["lift"] > 20.0  # and indeed it is not safe


def test_roller_safe_means_carriage_still_and_lift_down(rig_for):
    r = rig_for("RT-600")
    r.table.configure({"INTENSITY": 10})
    r.table.command("START")
    r.table.wait_device(4.0)
    report = r.table.make_safe()
    truth = r.truth()
    assert report.safe and report.readings["lift"] <= 0.5
    assert truth["lift"] <= 0.5 and not truth["motor"]
    assert truth["state"] in ("IDLE", "ESTOP", "FAULT")


def _invert(r: Rig, angle: float = 40.0) -> None:
    r.table.configure({"ANGLE_LIMIT": 60.0, "ANGLE_SET": angle, "HOLD_S": 0, "RATE": 6.0})
    r.table.command("START")
    r.table.wait_status("at_setpoint", device_s=60.0)
    r.table.command("ESTOP")  # the brake holds the frame inverted
    r.table.wait_state("ESTOP")
    r.table.wait_device(0.5)
    assert r.truth()["angle"] > 30.0


def test_inversion_left_inverted_is_not_reported_safe(rig_for):
    # finding 11: an IT-90 stopped inverted was "safe" because it was still
    r = rig_for("IT-90")
    _invert(r)
    r.ignore_commands(RESET)  # it cannot be returned
    report = r.table.make_safe()
    assert report.condition == "held" and not report.safe
    assert "held by brake_engaged" in report.note
    truth = r.truth()
    assert truth["brake"] and truth["angle"] > 30.0  # honest: it is inverted, on its brake


def test_inversion_is_returned_upright_when_it_can_be(rig_for):
    r = rig_for("IT-90")
    _invert(r)
    report, wall = _timed(r.table.make_safe)
    print(f"IT-90 returned upright: {wall:.2f} s wall ({report.actions})")
    assert report.condition == "safe" and "returned" in report.note
    truth = r.truth()
    assert abs(truth["angle"]) <= 0.5 and truth["state"] == "IDLE" and not truth["motor"]


def test_inversion_return_bounded_by_the_interrupt_budget(rig_for):
    r = rig_for("IT-90")
    _invert(r, 60.0)
    report, wall = _timed(lambda: r.table.make_safe(budget_s=1.0))
    assert wall < 2.5
    truth = r.truth()
    if report.condition == "held":
        assert truth["brake"] and truth["state"] != "RUNNING"
    else:
        assert abs(truth["angle"]) <= 0.5


# == finding 2: ACT link dropped while the table holds a load ==================================
def test_act_link_dropped_mid_hold_stop_goes_first(rig_for):
    # finding 2: teardown stuck in the actuator query that ran before STOP, table at 890 N
    r = rig_for("TT-890")
    _traction_hold(r, 890.0)
    r.drop_instrument("actuators")
    report, wall = _timed(r.table.make_safe)  # the fixture's teardown call
    print(f"ACT dropped at 890 N: {wall:.2f} s wall ({_step_walls(report)})")
    assert report.step == "STOP" and report.actions == ("STOP",)
    truth = r.truth()
    assert truth["state"] == "IDLE" and not truth["motor"] and truth["force"] <= 15.0
    assert wall < 5.0


class _Watched:
    """An actuator box that notes the emulated table's state at each query made of it."""

    def __init__(self, rig: Rig) -> None:
        object.__setattr__(self, "_rig", rig)
        object.__setattr__(self, "calls", [])

    def __getattr__(self, name: str) -> Any:
        self.calls.append((name, self._rig.truth()["state"]))
        raise AssertionError(f"the actuator box was queried ({name}) during make-safe")

    def __setattr__(self, name: str, value: Any) -> None:
        self.calls.append((name, self._rig.truth()["state"]))
        raise AssertionError(f"the actuator box was set ({name}) during make-safe")


def test_make_safe_asks_nothing_of_the_actuator_box_when_stop_does_it(rig_for):
    # finding 2: the old make-safe asked ACT POWER? before STOP, and a dead ACT link held STOP
    r = rig_for("TT-890")
    _traction_hold(r, 890.0)
    watched = _Watched(r)
    r.table.actuators = watched
    meter, seen = r.table.meter, []

    def first_reading(channel: str) -> float:
        seen.append(r.truth()["state"])
        return meter(channel)

    r.table.meter = first_reading
    report = r.table.make_safe()
    assert watched.calls == [] and report.step == "STOP"
    assert seen[0] == "STOPPING"  # STOP was sent before the load cell was asked anything
    assert r.truth()["state"] == "IDLE"


def test_act_link_dropped_mid_hold_within_the_interrupt_budget(rig_for):
    r = rig_for("TT-890")
    _traction_hold(r, 890.0)
    r.drop_instrument("actuators")
    report, wall = _timed(lambda: r.table.make_safe(budget_s=INTERRUPT_BUDGET_S))
    print(f"ACT dropped at 890 N, budget: {wall:.2f} s wall ({_step_walls(report)})")
    truth = r.truth()
    assert truth["state"] in ("IDLE", "ESTOP") and truth["force"] <= 15.0
    assert wall < INTERRUPT_BUDGET_S + 1.0


def test_inversion_restarting_on_reset_is_stopped_not_reported_held(rig_for):
    # the return RESETs a table that restarts on RESET (seeded defect): it must end stopped
    r = rig_for("IT-90", ("restart-after-reset",))
    _invert(r)
    report, wall = _timed(r.table.make_safe)
    print(f"IT-90 restart-after-reset: {wall:.2f} s wall ({report.actions}, {report.step})")
    truth = r.truth()
    assert truth["state"] not in ("RUNNING", "STOPPING") and not truth["motor"]
    assert abs(truth["angle"]) <= 0.5 and report.safe


# == findings 5 and 8: through the table fixture ===============================================
class _Record:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def event(self, what: str, **details: Any) -> None:
        self.events.append((what, details))


class _RigSession:
    """The part of RigSession the table fixture uses."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.unsafe: str | None = None
        self.record = _Record()
        self.checks: list[Any] = []

    def safe_state(self, report: Any = None, *, error: str | None = None) -> None:
        self.checks.append(report if error is None else error)


def _table_fixture(session: _RigSession, r: Rig) -> Iterator[Table]:
    from rig.fixtures.table import table as fixture

    fn = getattr(fixture, "__wrapped__", None) or fixture.__pytest_wrapped__.obj
    return fn(session, r.plc, r.table.profile, r.table.actuators, None)


def test_fixture_makes_safe_when_ready_fails_after_starting_motion(rig_for):
    # finding 5: ready() ran before the fixture's try; IT/RT home() starts motion there
    r = rig_for("IT-90")
    r.table.configure({"ANGLE_LIMIT": 60.0, "ANGLE_SET": 40.0, "HOLD_S": 0})

    def home(table: Table) -> None:
        table.command("START")
        table.wait_device(1.0)
        raise RuntimeError("seeded: home() fails with the frame moving")

    r.table.home = home
    session = _RigSession(r.table)
    gen = _table_fixture(session, r)
    with pytest.raises(RuntimeError, match="seeded"):
        next(gen)
    truth = r.truth()
    assert truth["state"] == "IDLE" and not truth["motor"] and abs(truth["angle"]) <= 0.5
    (report,) = session.checks
    assert report.step == "STOP" and report.safe


def test_fixture_restores_the_settings_a_test_changed(rig_for):
    # finding 8: WATCHDOG_MS 500 (SAF-05) and SESSION_S 60 (PERF-07) leaked into later tests
    r = rig_for("TT-890")
    session = _RigSession(r.table)
    before = (r.emu.setting(2), r.emu.setting(3))
    gen = _table_fixture(session, r)
    tbl = next(gen)
    tbl.write("WATCHDOG_MS", 500)
    tbl.write("SESSION_S", 60)
    with pytest.raises(StopIteration):
        next(gen)
    assert (r.emu.setting(2), r.emu.setting(3)) == before  # the emulator's own registers
    (restored,) = [d for what, d in session.record.events if what == "conditions restored"]
    assert sorted((x["register"], x["from"], x["to"]) for x in restored["registers"]) == [
        ("SESSION_S", 60, before[1]),
        ("WATCHDOG_MS", 500, before[0]),
    ]


def test_nothing_restored_when_nothing_changed(rig_for):
    r = rig_for("TT-890")
    session = _RigSession(r.table)
    gen = _table_fixture(session, r)
    next(gen)
    with pytest.raises(StopIteration):
        next(gen)
    assert not [e for e in session.record.events if e[0] == "conditions restored"]


# == finding 8: conditions restored ===========================================================
def test_restore_settings_writes_back_what_a_test_changed(rig_for):
    r = rig_for("TT-890")
    before = r.table.settings_snapshot()
    r.table.write("WATCHDOG_MS", 500)
    r.table.write("SESSION_S", 60)
    restored = r.table.restore_settings(before)
    names = {x["register"]: (x["from"], x["to"]) for x in restored}
    assert names == {
        "WATCHDOG_MS": (500, before["WATCHDOG_MS"]),
        "SESSION_S": (60, before["SESSION_S"]),
    }
    assert r.emu.setting(2) == before["WATCHDOG_MS"]  # the emulator's own holding register
    assert r.emu.setting(3) == before["SESSION_S"]


def test_inversion_return_leaves_service_mode_first(rig_for):
    # seen in a certification: a SENSOR_OFFSET left in service mode (IT-PERF-05) moved the PLC's
    # "0 deg", so the return stopped 5 deg short and the frame was left held
    r = rig_for("IT-90")
    r.table.write("SERVICE_KEY", "ENTER")
    r.table.write("SENSOR_OFFSET", -5.0)
    _invert(r)
    report = r.table.make_safe()
    assert report.safe and "SERVICE_KEY 0 (leave service mode)" in report.actions
    assert abs(r.truth()["angle"]) <= 0.5


# == [safe_state] is profile data, validated at load ==========================================
def test_safe_state_limits_per_kind_are_profile_data():
    limits = {
        m: [
            (x.name, x.channel, x.register, x.max, x.held_by)
            for x in load_profile(m).safe_state.limits
        ]
        for m in SIGNAL
    }
    assert limits == {
        "TT-890": [("force", "FORC", "FORCE", 15.0, None)],
        "RT-600": [("lift", "LIFT", "LIFT", 0.5, None)],
        "IT-90": [("angle", "ANGL", "ANGLE", 0.5, "brake_engaged")],
    }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ('register = "FORCE"', 'register = "FORCE_SET"'),
        ("\nmax = 15.0\n", "\nmax = -1\n"),
        ('register = "FORCE"\nmax', 'register = "FORCE"\nheld_by = "no_such_bit"\nmax'),
        ("estop_s = 2.0", "estop_s = 0"),
    ],
)
def test_bad_safe_state_limit_is_refused_at_load(tmp_path, edit, message):
    import shutil

    from rig.errors import ProfileError

    src = load_profile("TT-890").path
    src = src if src.is_dir() else src.parent
    shutil.copytree(src, tmp_path / "TT-890")
    toml = tmp_path / "TT-890" / "profile.toml"
    text = toml.read_text()
    assert edit in text
    toml.write_text(text.replace(edit, message, 1))
    with pytest.raises(ProfileError, match=r"safe_state\.(limit\[0\]|estop_s)"):
        load_profile(tmp_path / "TT-890")


def test_settings_left_by_a_silent_make_safe_are_written_back_before_the_next_test(rig_for):
    # finding 8 with finding 4: the PLC was silent at make-safe, so nothing could be written
    # back then; the next test's setup does it before the test starts from the leaked values
    r = rig_for("TT-890")
    session = _RigSession(r.table)
    before = r.emu.setting(3)
    gen = _table_fixture(session, r)
    tbl = next(gen)
    tbl.write("SESSION_S", 60)
    r.silence_plc()
    with pytest.raises(StopIteration):
        next(gen)
    assert ("conditions NOT restored") in [e[0] for e in session.record.events]
    del r.emu.read, r.emu.write  # the PLC answers again
    gen = _table_fixture(session, r)
    next(gen)
    assert r.emu.setting(3) == before
    late = [d for what, d in session.record.events if "left by an earlier test" in what]
    assert late and late[0]["registers"] == [{"register": "SESSION_S", "from": 60, "to": before}]
    with pytest.raises(StopIteration):
        next(gen)
    assert r.table.settings_pending is None
