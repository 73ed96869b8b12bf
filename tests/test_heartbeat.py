"""The heartbeat as a dead man's switch, its accounting in device time, and pausing it (issue 8)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from rig.bench.table import Table
from rig.emulators.bench import EmulatedBench
from rig.errors import PlcNotResponding
from rig.plc import Beat, Heartbeat, HeartbeatLate, Plc, UnitTrippedCommLoss
from rig.profiles import load_profile
from rig.wait import progress, wait_until

# WATCHDOG_MS 1000 is 500 ms of wall time: far above this host's worst beat gap under load, so
# only the switch (not a loaded host) can let the watchdog fire here
SCALE = 2.0


@pytest.fixture(scope="module")
def bench():
    b = EmulatedBench("TT-890", scale=SCALE, seed=1)
    station = b.start()
    yield station
    b.stop()


@pytest.fixture
def table(bench):
    profile = load_profile("TT-890")
    plc = Plc(profile, bench.plc_host, bench.plc_port)
    plc.connect()
    plc.heartbeat = Heartbeat(plc, stall_budget_s=0.5)
    tbl = Table(plc, profile)
    tbl.ready()
    yield tbl
    plc.heartbeat.stop()
    try:
        if plc.state() in ("RUNNING", "STOPPING"):
            plc.command("STOP")
    finally:
        plc.close()


def _run(tbl: Table) -> None:
    tbl.configure({"FORCE_SET": 100.0})
    tbl.command("START")
    tbl.wait_state("RUNNING")


# -- the dead man's switch (issue 8: a heartbeat that dies with the rig) --
def test_a_progressing_rig_keeps_the_table_running(table):
    hb = table.plc.heartbeat
    hb.start()
    _run(table)
    # busy for 20 watchdog periods, but every poll is progress
    end = time.monotonic() + 2.0
    wait_until(lambda: time.monotonic() > end, 5.0, interval=0.05, what="2 s of polling")
    assert table.state() == "RUNNING"
    assert hb.withheld == 0
    assert table.unintended_comm_loss() is None


def test_a_stalled_rig_lets_the_watchdog_stop_the_table(table):
    """Finding 2: a blocked main thread must not keep a running table alive."""
    hb = table.plc.heartbeat
    hb.start()
    _run(table)
    stalled_at = table.uptime_ms()
    time.sleep(hb.stall_budget_s + 1.0 / SCALE + 0.5)  # a blocked call: no progress at all
    values = table.read_many(["STATE", "FAULT", "FAULT_UPTIME_MS"])
    assert table.profile.register("FAULT").enum_name(int(values["FAULT"])) == "COMM_LOSS"
    assert hb.withheld > 0
    # the table's own watchdog stopped it within budget + WATCHDOG_MS (device time) of the stall
    limit_ms = hb.stall_budget_s * SCALE * 1000 * 1.5 + 1000
    assert 0 < values["FAULT_UPTIME_MS"] - stalled_at <= limit_ms
    # and the accounting says it was the rig's heartbeat, with the gap
    cause = table.unintended_comm_loss()
    assert isinstance(cause, HeartbeatLate)
    assert cause.gap_ms is not None and cause.gap_ms >= 999
    with pytest.raises(HeartbeatLate, match="rig's heartbeat was late"):
        table.stop_and_wait()


def test_a_comm_loss_a_repeat_resets_is_still_classified(table):
    """TT-SAF-02 repeats call ready(), whose RESET hid a COMM_LOSS: FAIL fault=6 on the unit."""
    hb = table.plc.heartbeat
    table.begin_test()
    hb.start()
    _run(table)
    time.sleep(hb.stall_budget_s + 1.0 / SCALE + 0.5)  # stalled: the table faults COMM_LOSS
    table.ready()  # the next repeat: RESET clears the latched fault
    assert table.plc.fault() == "NONE"
    assert isinstance(table.unintended_comm_loss(), HeartbeatLate)
    table.begin_test()  # the next test does not inherit it
    assert table.unintended_comm_loss() is None


def test_the_heartbeat_process_stops_at_once_when_the_rig_dies(bench):
    """Parent death: the heartbeat process ends with it, whatever the stall budget."""
    script = textwrap.dedent(
        f"""
        import os, sys
        from rig.plc import Heartbeat, Plc
        from rig.profiles import load_profile
        plc = Plc(load_profile("TT-890"), {bench.plc_host!r}, {bench.plc_port})
        plc.connect()
        plc.heartbeat = Heartbeat(plc, stall_budget_s=600)
        plc.heartbeat.start()
        print(plc.heartbeat._process.pid, flush=True)
        sys.stdin.readline()
        os._exit(9)  # dies without stopping anything
        """
    )
    rig = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        child = int(rig.stdout.readline())
        profile = load_profile("TT-890")
        with Plc(profile, bench.plc_host, bench.plc_port) as watcher:
            first = watcher.read_raw("HEARTBEAT")
            wait_until(lambda: watcher.read_raw("HEARTBEAT") != first, 5.0, what="beats")
            rig.stdin.write("\n")
            rig.stdin.flush()
            rig.wait(10)
            died = time.monotonic()
            wait_until(lambda: not _alive(child), 5.0, interval=0.01, what="heartbeat gone")
            assert time.monotonic() - died < 1.0
            last = watcher.read_raw("HEARTBEAT")
            time.sleep(0.3)
            assert watcher.read_raw("HEARTBEAT") == last
    finally:
        rig.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_progress_feeds_only_while_started(bench):
    plc = Plc(load_profile("TT-890"), bench.plc_host, bench.plc_port)
    plc.heartbeat = Heartbeat(plc, backend="thread", stall_budget_s=5.0)
    with plc:
        plc.heartbeat.start()
        fed = plc.heartbeat._shared.fed.value
        time.sleep(0.01)
        progress()
        assert plc.heartbeat._shared.fed.value > fed
        plc.heartbeat.stop()
        assert not plc.heartbeat.running


# -- accounting (issue 8 finding 6: know your own faults) --
def _hb(beats: list[tuple[int, int]], watchdog_ms: float = 1000.0) -> Heartbeat:
    hb = Heartbeat.__new__(Heartbeat)
    Heartbeat.__init__(hb, _NoPlc())  # type: ignore[arg-type]
    hb.watchdog_ms = watchdog_ms
    hb._last_beats = [Beat(float(i), up, v) for i, (up, v) in enumerate(beats)]
    return hb


class _NoPlc:
    timeout = 1.0
    call_bound_s = 6.0


def test_comm_loss_with_every_beat_on_time_is_the_units():
    hb = _hb([(0, 1), (250, 2), (500, 3), (750, 4), (1000, 5)])
    cause = hb.comm_loss_cause(760)  # beat 4 landed by 1000 at the latest, maybe after
    assert isinstance(cause, UnitTrippedCommLoss)
    assert cause.gap_ms == 260  # from beat 3's read: the last certainly landed before 760
    assert cause.max_gap_ms == 250 and cause.measurement == "unintended_comm_loss"


def test_comm_loss_after_a_late_beat_is_the_rigs():
    hb = _hb([(0, 1), (250, 2), (1400, 3)])
    cause = hb.comm_loss_cause(1250)
    assert isinstance(cause, HeartbeatLate)
    # beat 2 may have landed as late as beat 3's read: the gap is at most 1250 ms
    assert cause.gap_ms == 1250 and cause.max_gap_ms == 1150 and "late" in str(cause)


def test_comm_loss_with_no_beat_known_is_the_rigs():
    assert isinstance(_hb([]).comm_loss_cause(500), HeartbeatLate)
    assert isinstance(_hb([(0, 1)]).comm_loss_cause(500), HeartbeatLate)


# -- pausing (issue 8 finding 3) --
class _Hb:
    def __init__(self, fail: bool) -> None:
        self.running, self.fail, self.starts = True, fail, 0

    def stop(self) -> None:
        self.running = False

    def start(self) -> None:
        self.starts += 1
        if self.fail:
            raise PlcNotResponding("PLC unpowered: WATCHDOG_MS not read")
        self.running = True


class _PlcStub:
    def __init__(self, fail: bool) -> None:
        self.heartbeat = _Hb(fail)


def _table(fail: bool) -> Table:
    return Table(_PlcStub(fail), load_profile("TT-890"))  # type: ignore[arg-type]


def test_ctrl_c_in_a_pause_is_not_replaced_and_does_not_restart():
    tbl = _table(fail=True)
    with pytest.raises(KeyboardInterrupt):
        with tbl.heartbeat_paused():
            raise KeyboardInterrupt
    assert tbl.plc.heartbeat.starts == 0


def test_a_failed_restart_never_replaces_the_blocks_error():
    tbl = _table(fail=True)
    with pytest.raises(ValueError) as info:
        with tbl.heartbeat_paused():
            raise ValueError("the block's own error")
    assert tbl.plc.heartbeat.starts == 1
    assert any("heartbeat not restarted" in n for n in info.value.__notes__)


def test_a_pause_restarts_the_heartbeat_after_a_clean_block():
    tbl = _table(fail=False)
    with tbl.heartbeat_paused():
        assert tbl.comm_loss_intended
    assert tbl.plc.heartbeat.running and tbl.plc.heartbeat.starts == 1


# -- a scale the heartbeat cannot hold is refused (issue 8) --
def test_max_holdable_scale_formula():
    from rig.bench.heartbeat import max_holdable_scale, strictest_watchdog_ms

    assert strictest_watchdog_ms("TT-890") == 500  # SAF-05 runs the table under 500 ms
    # a beat of 1 ms must fit 3 times into the 375 ms the period leaves of 500 ms
    assert max_holdable_scale(500, 1.0) == pytest.approx(125)


def test_scale_1000_is_refused_naming_the_highest_that_holds(capsys):
    from rig.bench.provision import check_request
    from rig.cli import main
    from rig.errors import ConfigError

    with pytest.raises(ConfigError, match=r"max scale here: \d+$"):
        check_request({"model": "TT-890", "scale": 1000})
    assert check_request({"model": "TT-890", "scale": 20}).scale == 20  # the default holds
    assert check_request({"model": "TT-890", "scale": 1000, "station": "s.toml"}).scale == 1000
    assert main(["certify", "TT-890", "--serial", "1", "--scale", "1000"]) == 2
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "--scale 1000" in x)
    assert "heartbeat cannot be held here" in line and "max scale here: " in line
    assert "Traceback" not in out


# -- an unintended fault ends a procedure's wait at once, classified (finding 6, IT-SAF-07) --
class _FaultedTable:
    def __init__(self, cause):
        self.cause = cause
        self.plc = self

    def read(self, name):
        return 30.0

    def configure(self, settings):
        pass

    def command(self, name):
        pass

    def status(self):
        return {"at_setpoint": False}

    def state(self):
        return "FAULT"

    def fault(self):
        return "COMM_LOSS"

    def wall_timeout(self, device_s):
        return 30.0

    def unintended_comm_loss(self):
        return self.cause


def test_home_does_not_wait_out_its_timeout_for_a_faulted_table():
    from rig.procedures import InversionProcedure

    late = HeartbeatLate("late", gap_ms=1200.0, watchdog_ms=1000.0, max_gap_ms=1200.0)
    start = time.monotonic()
    with pytest.raises(HeartbeatLate):
        InversionProcedure(load_profile("IT-90")).home(_FaultedTable(late))
    assert time.monotonic() - start < 1.0


# -- the record says which, with the gap --
def test_a_unit_trip_is_a_fail_measurement_with_the_gap():
    from rig.evidence.format import Outcome
    from rig.procedures.check import RequirementCheck

    req = load_profile("TT-890").requirements[0]
    chk = RequirementCheck(req, None)
    trip = UnitTrippedCommLoss("on time", gap_ms=260.0, watchdog_ms=1000.0, max_gap_ms=250.0)
    m = chk.unit_fault(trip)
    assert (m.name, m.value, m.unit, m.low, m.verdict) == (
        "unintended_comm_loss",
        260.0,
        "ms",
        1000.0,
        Outcome.FAIL,
    )
    assert chk.verdict() == Outcome.FAIL and "unintended_comm_loss" in chk.failure_text()
