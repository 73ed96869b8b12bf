"""TT-890 emulator physics and PLC state machine, driven through read/write with a manual clock."""

from __future__ import annotations

import math

import numpy as np
import pytest
from emulator_support import (
    BIT_ESTOP,
    BIT_MOTOR,
    BIT_PATIENT,
    BIT_SERVICE,
    BIT_SETPOINT,
    ESTOP,
    ESTOP_STATE,
    FAULT,
    IDLE,
    RESET,
    RUNNING,
    START,
    STOP,
    STOPPING,
    TableMachine,
    build_table,
    machine_settings,
    s16,
    slope,
)
from emulator_support import Bench as BenchBase
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from rig.emulators.defects import DEFECTS, check_defects, defects_for
from rig.emulators.registers import (
    COMMAND,
    HEARTBEAT,
    SENSOR_OFFSET,
    SERVICE_KEY,
    SESSION_S,
    WATCHDOG_MS,
)
from rig.emulators.table import BOOT_S, PlcSilent
from rig.emulators.track import Track, first_excursion
from rig.emulators.traction import (
    FORCE,
    FORCE_SET,
    HARNESS,
    HOLD_S,
    MODE,
    PHASE,
    RAMP_RATE,
    REST_PCT,
    REST_S,
    TractionTable,
)
from rig.errors import ConfigError

P_IDLE, P_RAMP_UP, P_HOLD, P_RAMP_DOWN, P_REST, P_RELEASE = range(6)


def make_table(defects: tuple[str, ...] = (), **kw):
    """Factory of a fresh emulated traction table on a manual clock at device time 0."""
    return build_table(TractionTable, 890001, defects, seed=7, **kw)


class Bench(BenchBase):
    """Register-level helpers over one traction table."""

    SIGNAL = "force"
    make_table = staticmethod(make_table)

    def force(self, t: float | None = None) -> float:
        return self.sample("force", t)

    @property
    def phase(self) -> int:
        return self.ir(PHASE)

    @property
    def plc_force(self) -> float:
        return s16(self.ir(FORCE)) / 10.0


def crossings(times: np.ndarray, force: np.ndarray, level: float) -> tuple[list, list]:
    above = force > level
    idx = np.flatnonzero(above[1:] != above[:-1]) + 1
    rising = [times[i] for i in idx if above[i]]
    falling = [times[i] for i in idx if not above[i]]
    return rising, falling


def running_static(b: Bench, force_x10: int, rate_x10: int, **extra: int) -> None:
    b.ok(FORCE_SET, force_x10)
    b.ok(RAMP_RATE, rate_x10)
    for addr, v in extra.items():
        b.ok({"mode": MODE, "harness": HARNESS, "wd": WATCHDOG_MS}[addr], v)
    assert b.cmd(START) is None


# == identity and defaults ====================================================================
def test_common_inputs_and_defaults_after_construction():
    b = Bench()
    assert b.ir(0, 14) == [1, 100, 890001 >> 16, 890001 & 0xFFFF, 210, 0, 0, 0, 0, 0, 0, 2000, 0, 0]
    defaults = {0: 0, 1: 0, 2: 1000, 3: 900, 100: 0, 101: 0, 102: 1000, 103: 200}
    defaults |= {104: 30, 105: 10, 106: 50, 900: 0, 901: 0}
    assert {a: b.hr(a) for a in defaults} == defaults
    assert b.phase == P_IDLE and b.force() == 0.0


# == program physics ==========================================================================
def test_static_ramp_rate_level_and_hold():
    b = Bench()
    running_static(b, 3000, 500)
    assert b.state == RUNNING and b.status & BIT_MOTOR and b.phase == P_RAMP_UP
    b.at(3.0)
    assert b.force() == pytest.approx(150.0) and not b.status & BIT_SETPOINT
    b.at(5.999)
    assert b.phase == P_RAMP_UP
    b.at(6.0)
    assert b.phase == P_HOLD and b.status & BIT_SETPOINT
    b.at(30.0)
    times, f = b.trace(0.0, 30.0)
    assert slope(times, f, 30, 270) == pytest.approx(50.0, rel=1e-6)
    assert f.max() == pytest.approx(300.0) and b.force() == pytest.approx(300.0)
    assert b.plc_force == pytest.approx(300.0, abs=0.6)
    assert b.phase == P_HOLD and b.state == RUNNING


def test_intermittent_cycle_timing_cycles_and_widths():
    b = Bench()
    b.ok(MODE, 1)
    b.ok(HOLD_S, 5)
    b.ok(REST_S, 5)
    b.ok(REST_PCT, 50)
    running_static(b, 3000, 500)
    # (device time, PHASE, CYCLES): ramp 6 s, hold 5 s, ramp down 3 s, rest 5 s, ramp up 3 s
    expect = "5.99 1 0, 6 2 0, 10.99 2 0, 11 3 0, 13.99 3 0, 14 4 0, 18.99 4 0, 19 1 1, 22 2 1"
    expect += ", 27 3 1, 30 4 1, 35 1 2"
    for item in expect.split(","):
        t, phase, cycles = float(item.split()[0]), *map(int, item.split()[1:])
        b.at(t)
        assert (b.phase, b.ir(9)) == (phase, cycles), t
        assert bool(b.status & BIT_SETPOINT) == (phase in (P_HOLD, P_REST))
    assert b.force(16.0) == pytest.approx(150.0)
    b.at(60.0)
    times, f = b.trace(0.0, 60.0)
    rising, falling = crossings(times, f, 225.0)
    holds = [fa - r for r, fa in zip(rising, falling, strict=False)][1:]  # first hold not judged
    rests = [r - fa for fa, r in zip(falling, rising[1:], strict=False)]
    assert holds and rests
    assert all(w == pytest.approx(8.0, abs=0.002) for w in holds + rests)
    down = (times > 27) & (times < 30)
    assert slope(times[down], f[down], 160, 290) == pytest.approx(-50.0, rel=1e-3)


def test_session_end_is_a_controlled_stop_and_elapsed_freezes():
    b = Bench()
    b.ok(SESSION_S, 60)
    running_static(b, 2000, 200)
    b.at(59.999)
    assert b.state == RUNNING and b.ir(8) == 59
    b.at(60.0)
    assert b.state == STOPPING and b.ir(8) == 60 and b.phase == P_RELEASE
    b.at(69.999)
    assert b.state == STOPPING and b.status & BIT_MOTOR
    b.at(70.0)
    assert b.state == IDLE and not b.status & BIT_MOTOR and b.phase == P_IDLE
    b.at(100.0)
    assert b.ir(8) == 60 and b.force() == 0.0
    times, f = b.trace(0.0, 80.0)
    rising, falling = crossings(times, f, 100.0)
    assert falling[0] - rising[0] == pytest.approx(60.0, abs=0.002)


def test_controlled_stop_releases_at_ramp_rate_then_idle():
    b = Bench()
    running_static(b, 3000, 500)
    b.at(10.0)
    assert b.cmd(STOP) is None
    assert b.state == STOPPING and b.phase == P_RELEASE and b.status & BIT_MOTOR
    assert b.ir(8) == 10
    b.at(15.999)
    assert b.state == STOPPING and b.force() == pytest.approx(0.05, abs=1e-6)
    b.at(16.0)
    assert b.state == IDLE and not b.status & BIT_MOTOR and b.force() == 0.0
    times, f = b.trace(10.0, 16.0)
    assert slope(times, f, 30, 270) == pytest.approx(-50.0, rel=1e-6)
    assert b.cmd(STOP) is None and b.state == IDLE  # STOP in IDLE: accepted, no effect


# == safety stops =============================================================================
@pytest.mark.parametrize("how", ["relay", "command"])
def test_estop_reaction_release_and_motor_disable(how):
    b = Bench()
    running_static(b, 8900, 1000)
    b.at(10.0)
    up = b.uptime
    if how == "relay":
        b.world.set_relay("estop", True)
    else:
        assert b.cmd(ESTOP) is None
    assert (b.state, b.fault, b.fault_uptime) == (ESTOP_STATE, 1, up)
    assert b.phase == P_RELEASE and b.status & BIT_MOTOR
    assert b.force(10.0099) == pytest.approx(890.0)  # reaction latency, the drive holds
    b.at(10.11, heartbeat=False)
    assert b.force() == pytest.approx(690.0)
    b.at(10.454, heartbeat=False)
    assert b.status & BIT_MOTOR
    b.at(10.455, heartbeat=False)
    assert not b.status & BIT_MOTOR and b.force() == 0.0 and b.phase == P_IDLE
    times, f = b.trace(9.9, 15.0)
    reaction = times[(times >= 10.0) & (f < 890.0 - 17.8)][0] - 10.0
    assert reaction <= 0.1
    assert slope(times, f, 50, 850) == pytest.approx(-2000.0, rel=1e-6)
    assert b.cmd(START) == 6
    if how == "relay":
        assert b.cmd(RESET) is None and b.state == ESTOP_STATE  # cause still present
        b.world.set_relay("estop", False)
    assert b.cmd(ESTOP) is None and b.fault_uptime == up  # already latched: no change
    assert b.cmd(RESET) is None
    assert (b.state, b.fault, b.fault_uptime) == (IDLE, 0, 0)
    b.at(20.0, heartbeat=False)
    assert b.force() == 0.0 and b.state == IDLE


def test_patient_stop_faults_at_once_and_releases():
    b = Bench()
    running_static(b, 6000, 1000)
    b.at(7.0)
    b.world.set_relay("patient", True)
    assert (b.state, b.fault, b.fault_uptime) == (FAULT, 2, 9000)
    assert b.status & BIT_PATIENT and b.status & BIT_MOTOR
    b.at(10.0, heartbeat=False)
    times, f = b.trace(6.9, 10.0)
    assert times[(times >= 7.0) & (f < 588.0)][0] - 7.0 <= 0.1
    assert slope(times, f, 50, 550) == pytest.approx(-2000.0, rel=1e-6)
    assert times[f > 15.0][-1] - 7.0 < 0.4
    assert not b.status & BIT_MOTOR and b.state == FAULT and b.fault == 2
    assert b.cmd(RESET) is None and b.fault == 2  # switch still pressed
    b.world.set_relay("patient", False)
    assert b.cmd(RESET) is None and (b.state, b.fault) == (IDLE, 0)


def test_patient_switch_outside_running_is_not_a_fault():
    b = Bench()
    b.world.set_relay("patient", True)
    assert (b.state, b.fault) == (IDLE, 0) and b.status & BIT_PATIENT
    assert b.cmd(START) == 6


def test_reset_during_a_stop_motion_lets_it_finish():
    b = Bench()
    running_static(b, 8900, 1000)
    b.at(10.0)
    assert b.cmd(ESTOP) is None
    b.at(10.1, heartbeat=False)
    assert b.cmd(RESET) is None
    assert (b.state, b.fault) == (IDLE, 0) and b.status & BIT_MOTOR and b.force() > 600
    b.at(10.455, heartbeat=False)
    assert not b.status & BIT_MOTOR and b.force() == 0.0 and b.state == IDLE


def test_reset_and_stop_have_no_effect_where_the_icd_says_so():
    b = Bench()
    assert b.cmd(RESET) is None and b.state == IDLE
    running_static(b, 3000, 1000)
    b.at(1.0)
    assert b.cmd(RESET) is None and b.state == RUNNING
    assert b.cmd(0) is None and b.state == RUNNING
    b.world.set_relay("patient", True)
    assert b.cmd(STOP) is None and b.state == FAULT


def test_start_refusals_move_nothing():
    b = Bench()
    running_static(b, 3000, 1000)
    assert b.cmd(START) == 6  # already RUNNING
    assert b.cmd(STOP) is None
    b.at(10.0)
    assert b.state == IDLE
    b.world.set_relay("estop", True)
    assert b.cmd(START) == 6 and b.state == ESTOP_STATE
    b.world.set_relay("estop", False)
    assert b.cmd(START) == 6  # ESTOP latched
    assert b.cmd(RESET) is None and b.state == IDLE
    b.world.set_relay("patient", True)
    assert b.cmd(START) == 6
    b.at(12.0, heartbeat=False)
    assert b.force() == 0.0 and b.state == IDLE


def test_settings_refused_while_running_and_stopping():
    b = Bench()
    running_static(b, 3000, 1000)
    for addr in (WATCHDOG_MS, SESSION_S, MODE, HARNESS, FORCE_SET, RAMP_RATE, HOLD_S, REST_S):
        old = b.hr(addr)
        assert b.w(addr, old) == 6 and b.hr(addr) == old
    assert b.w(SERVICE_KEY, 0xA5A5) == 6 and b.w(SENSOR_OFFSET, 1) == 6
    b.beat()  # HEARTBEAT is always writable
    b.at(1.0)
    assert b.cmd(STOP) is None and b.state == STOPPING
    assert b.w(REST_PCT, 40) == 6
    b.at(10.0)
    assert b.state == IDLE and b.w(REST_PCT, 40) is None


# == watchdog =================================================================================
def test_watchdog_fault_time_is_exactly_watchdog_ms_after_last_heartbeat():
    b = Bench()
    running_static(b, 3000, 1000, wd=500)
    for k in range(1, 51):
        b.clock.set(k * 0.1)
        up = b.uptime  # read just before the heartbeat write, as the rig does
        b.beat()
    b.at(5.499, heartbeat=False)
    assert b.state == RUNNING
    b.at(5.5, heartbeat=False)
    assert (b.state, b.fault, b.fault_uptime) == (FAULT, 6, up + 500)
    assert b.phase == P_RELEASE and b.status & BIT_MOTOR
    b.at(8.499, heartbeat=False)
    assert b.state == FAULT and b.force() == pytest.approx(0.1, abs=1e-6)
    b.at(8.5, heartbeat=False)
    assert (b.state, b.fault) == (FAULT, 6) and not b.status & BIT_MOTOR and b.force() == 0.0
    times, f = b.trace(5.5, 8.5)
    assert slope(times, f, 30, 270) == pytest.approx(-100.0, rel=1e-6)


def test_watchdog_counts_from_start_and_ignores_unchanged_heartbeat():
    b = Bench()
    b.ok(WATCHDOG_MS, 500)
    b.clock.set(100.0)
    b.ok(FORCE_SET, 3000)
    assert b.cmd(START) is None
    b.clock.set(0.3 + 100.0)
    b.ok(HEARTBEAT, b.hr(HEARTBEAT))  # same value: not a change
    b.clock.set(100.499)
    assert b.state == RUNNING
    b.clock.set(100.5)
    assert (b.state, b.fault, b.fault_uptime) == (FAULT, 6, 102500)


def test_watchdog_is_not_armed_outside_running():
    b = Bench()
    b.ok(WATCHDOG_MS, 100)
    b.clock.set(50.0)
    assert (b.state, b.fault) == (IDLE, 0)


# == overforce monitor ========================================================================
def test_overforce_monitor_trips_on_true_force_with_sensor_offset():
    b = Bench()
    b.service_offset(-600)
    running_static(b, 4000, 200, wd=5000)
    b.at(10.0)
    assert b.force() == pytest.approx(200.0)
    assert b.plc_force == pytest.approx(140.0, abs=0.6)  # control channel = true + offset
    b.at(22.0499)
    assert b.state == RUNNING
    b.at(22.0501)
    assert (b.state, b.fault) == (FAULT, 3)
    assert b.fault_uptime == 24050
    b.at(26.0, heartbeat=False)
    times, f = b.trace(0.0, 26.0)
    assert f.max() == pytest.approx(441.0, abs=1e-3) and f.max() <= 400 + 40 + 15
    assert times[f > 15.0][-1] - 22.05 <= 3.0
    assert not b.status & BIT_MOTOR and b.status & BIT_SERVICE


def test_overforce_monitor_quiet_at_a_normal_setpoint():
    b = Bench()
    b.ok(WATCHDOG_MS, 5000)
    running_static(b, 8900, 1000)
    b.at(120.0)
    assert (b.state, b.fault) == (RUNNING, 0)


@pytest.mark.parametrize(("offset_x10", "trips"), [(-80, False), (-200, True)])
def test_overforce_needs_50_ms_of_excursion(offset_x10, trips):
    # the overshoot defect gives short excursions: peak 1.08 x level for a fraction of a second
    b = Bench(("overshoot",))
    b.service_offset(offset_x10)
    running_static(b, 4000, 1000, wd=5000)
    b.at(10.0)
    level = 400 - offset_x10 / 10
    _, f = b.trace(0.0, 10.0)
    assert f.max() == pytest.approx(level * 1.08, rel=1e-3) or trips
    if trips:
        t_cross = level / 100.0 + (440.0 - level) / (0.08 * level / 0.2)
        assert b.fault == 3
        assert b.fault_uptime == math.floor((BOOT_S + t_cross + 0.05) * 1000 + 1e-6)
    else:
        assert (b.state, b.fault) == (RUNNING, 0)


def test_first_excursion_closed_form():
    tr = Track(0.0, 0.0)
    tr.append(1.0, 0.0, 0.0, 0.0)
    tr.append(1.0, 20.0, 0.0, 0.0)  # step up for 30 ms
    tr.append(1.03, 0.0, 0.0, 0.0)
    tr.append(2.0, 20.0, 0.0, 0.0)  # and for 60 ms
    tr.append(2.06, 0.0, 0.0, 0.0)
    assert first_excursion(tr, 0.0, 10.0, 0.05) == pytest.approx(2.05)  # 30 ms is too short
    assert first_excursion(tr, 2.0, 10.0, 0.05) == pytest.approx(2.05)
    assert first_excursion(tr, 2.02, 10.0, 0.05) == math.inf  # persistence counts from t_from
    assert first_excursion(tr, 0.0, 30.0, 0.05) == math.inf


def test_track_pieces_from_clips_the_first_piece_and_skips_ended_ones():
    tr = Track(0.0, 0.0)
    tr.append(1.0, 0.0, 2.0, 4.0)  # from 1 s: v 2, a 4
    tr.append(3.0, 5.0, 0.0, 0.0)
    pieces = list(tr.pieces_from(2.0))
    # state at 2 s on the accelerating piece: x = 2*1 + 4*1/2, v = 2 + 4*1
    assert pieces == [(2.0, 3.0, 4.0, 6.0, 4.0), (3.0, math.inf, 5.0, 0.0, 0.0)]
    assert [p[0] for p in tr.pieces_from(0.0)] == [0.0, 1.0, 3.0]


# == power ====================================================================================
def test_power_loss_release_silence_boot_and_fault_8():
    b = Bench()
    running_static(b, 3000, 1000)
    b.at(10.0)
    b.world.set_relay("power", False)
    with pytest.raises(PlcSilent):
        b.table.read(4, 0, 1)
    with pytest.raises(PlcSilent):
        b.table.write(6, COMMAND, [RESET])
    b.clock.set(10.19)
    assert b.force() == pytest.approx(15.0)
    b.clock.set(11.0)
    assert b.force() == 0.0
    b.clock.set(12.0)
    b.world.set_relay("power", True)
    b.clock.set(12.0 + BOOT_S - 0.001)
    assert not b.table.answers()
    with pytest.raises(PlcSilent):
        b.table.read(3, 0, 1)
    b.clock.set(12.0 + BOOT_S)
    assert b.table.answers()
    assert (b.state, b.fault, b.fault_uptime, b.uptime) == (FAULT, 8, 2000, 2000)
    assert b.status == 0 and b.phase == P_IDLE and b.ir(8) == 0
    assert b.cmd(START) == 6
    b.at(19.0, heartbeat=False)
    assert b.force() == 0.0 and b.state == FAULT
    assert b.cmd(RESET) is None and (b.state, b.fault, b.fault_uptime) == (IDLE, 0, 0)
    assert b.cmd(START) is None and b.state == RUNNING


def test_holding_registers_persist_but_service_mode_and_offset_do_not():
    b = Bench()
    b.service_offset(100)
    for addr, v in ((FORCE_SET, 2500), (WATCHDOG_MS, 700), (HEARTBEAT, 77), (HOLD_S, 9)):
        b.ok(addr, v)
    b.world.set_relay("power", False)
    b.clock.set(1.0)
    b.world.set_relay("power", True)
    b.clock.set(3.0)
    kept = {FORCE_SET: 2500, WATCHDOG_MS: 700, HEARTBEAT: 77, HOLD_S: 9, SERVICE_KEY: 0xA5A5}
    assert {a: b.hr(a) for a in kept} == kept
    assert b.hr(SENSOR_OFFSET) == 0 and not b.status & BIT_SERVICE
    assert b.w(SENSOR_OFFSET, 5) == 6
    assert b.fault == 8


def test_first_power_on_is_idle_fault_0_later_ones_fault_8_even_with_estop_open():
    b = Bench(powered=False)
    b.clock.set(1.0)
    assert not b.table.answers()
    b.world.set_relay("estop", True)
    b.world.set_relay("power", True)
    b.clock.set(3.0)
    assert (b.state, b.fault, b.uptime) == (IDLE, 0, 2000)
    assert b.status & BIT_ESTOP and b.cmd(START) == 6
    b.world.set_relay("power", False)
    b.world.set_relay("power", True)
    b.clock.set(5.0)
    assert (b.state, b.fault, b.fault_uptime) == (FAULT, 8, 2000)


def test_cold_start_boots_before_answering():
    b = Bench(cold_start=True)
    b.clock.set(1.999)
    assert not b.table.answers()
    b.clock.set(2.0)
    assert (b.state, b.fault, b.uptime) == (IDLE, 0, 2000)


def test_power_cut_during_boot_and_relays_while_dead_latch_nothing():
    b = Bench()
    b.world.set_relay("power", False)
    b.world.set_relay("estop", True)
    b.world.set_relay("estop", False)
    b.world.set_relay("power", True)
    b.clock.set(1.0)
    b.world.set_relay("power", False)
    b.world.set_relay("power", True)
    b.clock.set(2.9)
    assert not b.table.answers()
    b.clock.set(3.0)
    assert (b.state, b.fault, b.fault_uptime) == (FAULT, 8, 2000)


def test_uptime_counts_from_power_on_and_history_can_be_sampled():
    b = Bench()
    running_static(b, 3000, 1000)
    b.at(40.0)
    assert b.uptime == 42000
    assert b.force(1.5) == pytest.approx(150.0)


def test_long_intermittent_session_keeps_history_bounded():
    b = Bench()
    b.ok(MODE, 1)
    b.ok(HOLD_S, 1)
    b.ok(REST_S, 1)
    b.ok(WATCHDOG_MS, 5000)
    b.ok(SESSION_S, 3000)
    running_static(b, 1000, 1000)
    b.at(2000.0)
    assert b.state == RUNNING and b.ir(9) > 400
    kept = b.table._force._t
    assert 2000.0 - 700.0 < kept[0] < 2000.0 - 600.0  # history pruned to the last ~660 s
    assert b.force(1400.0) >= 0.0


# == defects ==================================================================================
def test_defect_registry_and_validation():
    tt = defects_for("TT-890")
    assert len(tt) == 16 and all(DEFECTS[("TT-890", n)] is d for n, d in tt.items())
    for d in tt.values():
        assert d.model == "TT-890" and len(d.breaks) == 1 and d.description
    assert check_defects("TT-890", ["overshoot"]) == frozenset({"overshoot"})
    with pytest.raises(ConfigError, match=r"'bogus'.*overshoot"):
        check_defects("TT-890", ["bogus"])
    with pytest.raises(ConfigError, match="TT-890"):
        check_defects("RT-600", ["overshoot"])
    with pytest.raises(ConfigError, match="bogus"):
        make_table(("bogus",))


def settle(b: Bench, force_x10: int, *, harness: int = 0, mode: int = 0) -> float:
    b.ok(WATCHDOG_MS, 5000)
    b.ok(MODE, mode)
    if harness:
        b.ok(FORCE_SET, 100)
        b.ok(HARNESS, harness)
    running_static(b, force_x10, 1000)
    b.at(b.t + force_x10 / 1000 + 5.0)
    return b.force()


def test_defect_lumbar_force_high():
    b = Bench(("lumbar-force-high",))
    assert settle(b, 3000) == pytest.approx(312.0)
    assert b.plc_force == pytest.approx(312.0, abs=0.6)  # the reading still agrees with the LC
    assert settle(Bench(("lumbar-force-high",)), 1500, harness=1) == pytest.approx(150.0)
    assert settle(Bench(("lumbar-force-high",)), 3000, mode=1) == pytest.approx(300.0)


def test_defect_cervical_force_low():
    assert settle(Bench(("cervical-force-low",)), 1500, harness=1) == pytest.approx(142.5)
    assert settle(Bench(("cervical-force-low",)), 1500) == pytest.approx(150.0)


def test_defect_ramp_up_slow():
    b = Bench(("ramp-up-slow",))
    b.ok(MODE, 1)
    b.ok(HOLD_S, 2)
    running_static(b, 3000, 500)
    b.at(20.0)
    times, f = b.trace(0.0, 20.0)
    up = times < 300 / 44.0
    assert slope(times[up], f[up], 30, 270) == pytest.approx(44.0, rel=1e-6)
    down = (times > 300 / 44.0 + 2) & (times < 300 / 44.0 + 5)
    assert slope(times[down], f[down], 160, 290) == pytest.approx(-50.0, rel=1e-3)
    assert b.cmd(STOP) is None
    b.at(30.0)
    times, f = b.trace(20.0, 30.0)
    assert slope(times, f, 10, 200) == pytest.approx(-50.0, rel=1e-3)


def test_defect_overshoot():
    b = Bench(("overshoot",))
    running_static(b, 3000, 500)
    b.at(6.599)
    assert b.phase == P_RAMP_UP
    b.at(6.6)
    assert b.phase == P_HOLD
    assert b.force(6.2) == pytest.approx(324.0) and b.force(6.6) == pytest.approx(300.0)
    b.at(10.0)
    assert b.trace(0, 10)[1].max() == pytest.approx(324.0, abs=1e-6)
    c = Bench(("overshoot",))
    c.ok(MODE, 1)
    running_static(c, 3000, 500)
    c.at(10.0)
    assert c.trace(0, 10)[1].max() == pytest.approx(300.0)  # INTERMITTENT: no overshoot


def test_defect_hold_long():
    b = Bench(("hold-long",))
    b.ok(MODE, 1)
    b.ok(HOLD_S, 5)
    running_static(b, 3000, 500)
    b.at(11.999)
    assert b.phase == P_HOLD
    b.at(12.0)
    assert b.phase == P_RAMP_DOWN


def test_defect_plc_force_high():
    b = Bench(("plc-force-high",))
    assert settle(b, 3000) == pytest.approx(300.0)
    assert b.plc_force == pytest.approx(309.0, abs=0.6)


def test_defect_session_long():
    b = Bench(("session-long",))
    b.ok(SESSION_S, 60)
    running_static(b, 2000, 1000)
    b.at(61.999)
    assert b.state == RUNNING
    b.at(62.0)
    assert b.state == STOPPING and b.ir(8) == 62


def test_defect_estop_slow_delays_only_the_hardwired_circuit():
    b = Bench(("estop-slow",))
    running_static(b, 8900, 1000)
    b.at(10.0)
    b.world.set_relay("estop", True)
    assert b.state == RUNNING and b.status & BIT_ESTOP
    b.clock.set(10.149)
    assert b.state == RUNNING
    b.clock.set(10.15)
    assert (b.state, b.fault, b.fault_uptime) == (ESTOP_STATE, 1, 12150)
    c = Bench(("estop-slow",))
    running_static(c, 8900, 1000)
    c.at(10.0)
    assert c.cmd(ESTOP) is None and c.state == ESTOP_STATE


def test_defect_patient_release_slow():
    b = Bench(("patient-release-slow",))
    running_static(b, 6000, 1000)
    b.at(7.0)
    b.world.set_relay("patient", True)
    assert b.fault == 2
    b.at(12.0, heartbeat=False)
    times, f = b.trace(7.0, 12.0)
    assert slope(times, f, 50, 550) == pytest.approx(-150.0, rel=1e-6)
    assert times[(f < 588.0)][0] - 7.0 <= 0.1


def test_defect_no_force_limit():
    b = Bench(("no-force-limit",))
    b.ok(HARNESS, 1)
    assert b.w(FORCE_SET, 10000) is None
    assert b.w(FORCE_SET, 10001) == 3 and b.hr(FORCE_SET) == 10000
    b.ok(HARNESS, 0)
    b.ok(HARNESS, 1)
    c = Bench()
    assert c.w(FORCE_SET, 8901) == 3


def test_defect_no_overforce_monitor():
    b = Bench(("no-overforce-monitor",))
    b.service_offset(-600)
    running_static(b, 4000, 1000, wd=5000)
    b.at(30.0)
    assert (b.state, b.fault) == (RUNNING, 0) and b.force() == pytest.approx(460.0)


def test_defect_watchdog_slow():
    b = Bench(("watchdog-slow",))
    running_static(b, 3000, 1000, wd=500)
    b.at(1.0)
    up = b.uptime
    b.beat()
    b.clock.set(1.999)
    assert b.state == RUNNING
    b.clock.set(2.0)
    assert (b.fault, b.fault_uptime) == (6, up + 1000)


def test_defect_power_restore_no_fault():
    b = Bench(("power-restore-no-fault",))
    b.world.set_relay("power", False)
    b.world.set_relay("power", True)
    b.clock.set(2.0)
    assert (b.state, b.fault) == (IDLE, 0)
    assert b.cmd(START) is None


def test_defect_restart_after_reset():
    b = Bench(("restart-after-reset",))
    running_static(b, 3000, 1000)
    b.at(5.0)
    b.world.set_relay("estop", True)
    b.at(6.0, heartbeat=False)
    assert b.force() == 0.0
    b.world.set_relay("estop", False)
    assert b.cmd(RESET) is None
    assert (b.state, b.fault) == (RUNNING, 0)
    b.at(10.0)
    assert b.force() == pytest.approx(300.0)
    b.world.set_relay("patient", True)
    b.world.set_relay("patient", False)
    assert b.fault == 2 and b.cmd(RESET) is None and b.state == IDLE  # from FAULT: normal


def test_defect_patient_interlock_bypass():
    b = Bench(("patient-interlock-bypass",))
    b.world.set_relay("patient", True)
    running_static(b, 3000, 1000)
    b.at(5.0)
    assert b.state == RUNNING and b.force() == pytest.approx(300.0)
    c = Bench(("patient-interlock-bypass",))
    c.world.set_relay("estop", True)
    c.world.set_relay("estop", False)
    c.cmd(RESET)
    c.world.set_relay("estop", True)
    assert c.cmd(START) == 6


# == state machine property ===================================================================
SETTING_CASES = [  # (address, range, values to try)
    (WATCHDOG_MS, (100, 5000), (99, 100, 1000, 5000, 5001)),
    (SESSION_S, (60, 5940), (59, 60, 900, 5940, 5941)),
    (MODE, (0, 1), (0, 1, 2)),
    (HARNESS, (0, 1), (0, 1, 2)),
    (FORCE_SET, (10, 8900), (9, 10, 1000, 2220, 2221, 8900, 8901)),
    (RAMP_RATE, (10, 1000), (9, 10, 1000, 1001)),
    (HOLD_S, (1, 99), (0, 1, 99, 100)),
    (REST_S, (1, 99), (0, 1, 99, 100)),
    (REST_PCT, (0, 90), (0, 90, 91, 0xFFFF)),
]


class TractionMachine(TableMachine):
    """Random commands, relays, settings and time against the ICD's invariants."""

    @initialize()
    def fresh_table(self):
        self.clock, self.world, self.table = make_table()
        self.hb = 0
        self.last_state: int | None = IDLE
        self.last_fault = 0
        self.last_t = 0.0
        self.reset_may_clear = False
        self.estopped = False

    def on_start(self) -> None:
        self.estopped = False

    def on_estop(self, state, after, *, command):
        self.estopped = True

    def force_at(self, t: float) -> float:
        return float(self.world.sample("force", np.array([t]))[0])

    @rule(dt=st.sampled_from([0.001, 0.005, 0.02, 0.05, 0.2, 1.0, 3.0, 20.0]))
    def wait(self, dt):
        t0 = self.clock.now()
        self.clock.set(t0 + dt)
        if self.last_state != RUNNING:
            # outside RUNNING nothing drives the force up: it never rises
            times = np.linspace(t0, t0 + dt, 64)
            f = self.world.sample("force", times)
            assert np.all(np.diff(f) <= 1e-9), (t0, dt)

    @rule(case=st.sampled_from(SETTING_CASES), data=st.data())
    def setting(self, case, data):
        addr, (lo, hi), values = case
        value = data.draw(st.sampled_from(values))
        before = self.regs()
        if before is None:
            return
        old = self.table.read(3, addr, 1)
        r = self.table.write(6, addr, [value])
        if before[0] in (RUNNING, STOPPING):
            assert r == 6
        elif addr not in (HARNESS, FORCE_SET):
            assert (r is None) == (lo <= value <= hi)
        if r is not None:
            assert self.table.read(3, addr, 1) == old
        else:
            assert self.table.read(3, addr, 1) == [value]

    @rule(key=st.sampled_from([0xA5A5, 0]), offset=st.sampled_from([-600, 0, 300]))
    def service(self, key, offset):
        if self.check_service(key, offset):
            assert self.table.read(3, SENSOR_OFFSET, 1) == [offset & 0xFFFF]

    @invariant()
    def icd_invariants(self):
        if not hasattr(self, "table"):
            return
        regs = self.regs()
        t = self.clock.now()
        if regs is None:
            self.last_state = None
            return
        state, fault, status = regs
        assert state in (IDLE, RUNNING, STOPPING, ESTOP_STATE, FAULT)
        assert (state in (ESTOP_STATE, FAULT)) == (fault != 0)
        if self.last_fault and not fault:
            assert self.reset_may_clear, "FAULT cleared without RESET"
        if self.estopped:
            assert state != RUNNING
        phase = self.table.read(4, PHASE, 1)[0]
        assert 0 <= phase <= 5
        if status & BIT_SETPOINT:
            assert state == RUNNING
        f = self.force_at(t)
        if state not in (RUNNING, STOPPING) and status & BIT_MOTOR:
            assert f > 0.0  # only a stop motion still under way keeps the motor enabled
        if state != RUNNING and f == 0.0:
            assert not status & BIT_MOTOR
        self.reset_may_clear = False
        self.last_state, self.last_fault, self.last_t = state, fault, t


TractionMachine.TestCase.settings = machine_settings(max_examples=60, steps=30)
test_traction_state_machine = TractionMachine.TestCase
