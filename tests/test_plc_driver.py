"""PLC driver against a tiny in-test Modbus server: conversions, grouping, guards, heartbeat."""

from __future__ import annotations

import asyncio
import itertools
import socket
import statistics
import threading
import time
from pathlib import Path

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer

from rig.errors import (
    DeviceBusy,
    IllegalAddress,
    IllegalFunction,
    IllegalValue,
    ModbusExceptionError,
    PlcNotResponding,
    WriteRefused,
)
from rig.plc import Plc
from rig.profiles import PROFILES_DIR, load_profile
from rig.wait import WaitTimeout, wait_until

DATA = Path(__file__).parent / "data" / "profiles"


def _tt890(tmp_path_factory):
    import shutil

    if (PROFILES_DIR / "TT-890" / "requirements.toml").is_file():
        return load_profile("TT-890")
    d = tmp_path_factory.mktemp("tt890")
    shutil.copy(PROFILES_DIR / "TT-890" / "profile.toml", d / "profile.toml")
    shutil.copy(DATA / "requirements-small.toml", d / "requirements.toml")
    return load_profile(d)


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    return _tt890(tmp_path_factory)


class FakePlc(ModbusServerContext):
    """Just enough of a table PLC: listed addresses only, range checks, busy while RUNNING.

    Records every request as (fc, address, count or written words) and the wall time of every
    write, and can be told to answer chosen exception codes or not to answer at all.
    """

    def __init__(self, profile):
        # The base class wants device contexts; this one answers every request itself.
        self.old_simulator = True
        self.simdevices = []
        self.profile = profile
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.mem = {}
            for reg in self.profile.registers.values():
                default = reg.default if reg.default is not None else 0
                for i, w in enumerate(reg.to_raw(default)):
                    self.mem[(reg.space, reg.address + i)] = w
            self.mem[("input", 0)] = 1
            self.mem[("input", 1)] = 100
            self.log = []
            self.write_times = []
            self.fail = {}
            self.missing = set()
            self.hang = False
            self.rate = 1.0
            self.t0 = time.monotonic()

    def set(self, name, value):
        reg = self.profile.register(name)
        with self.lock:
            for i, w in enumerate(reg.to_raw(value)):
                self.mem[(reg.space, reg.address + i)] = w

    def get(self, name):
        reg = self.profile.register(name)
        with self.lock:
            return reg.from_raw([self.mem[(reg.space, reg.address + i)] for i in range(reg.count)])

    def requests(self, fc=None):
        with self.lock:
            return [r for r in self.log if fc is None or r[0] == fc]

    def _uptime(self):
        ms = int((time.monotonic() - self.t0) * self.rate * 1000)
        self.mem[("input", 10)], self.mem[("input", 11)] = ms >> 16, ms & 0xFFFF

    def _valid(self, space, address, count):
        return all(
            (space, a) in self.mem and (space, a) not in self.missing
            for a in range(address, address + count)
        )

    async def _gate(self, device_id):
        """Stay silent for another unit id, and for a request that arrives while hung."""
        if device_id != 1:
            raise NoSuchIdException(f"unit {device_id}")  # the server then sends nothing
        if self.hang:
            while self.hang:
                await asyncio.sleep(0.01)
            raise NoSuchIdException("arrived while powered off")

    async def async_getValues(self, device_id, func_code, address, count=1):
        if func_code in (6, 16):  # pymodbus reads back after a write: not a request
            with self.lock:
                return [self.mem[("holding", address + i)] for i in range(count)]
        with self.lock:
            self.log.append((func_code, address, count))
        await self._gate(device_id)
        with self.lock:
            if (func_code, address) in self.fail:
                return self.fail[(func_code, address)]
            if func_code not in (3, 4):
                return ExcCodes.ILLEGAL_FUNCTION
            space = "holding" if func_code == 3 else "input"
            if not self._valid(space, address, count):
                return ExcCodes.ILLEGAL_ADDRESS
            self._uptime()
            return [self.mem[(space, a)] for a in range(address, address + count)]

    async def async_setValues(self, device_id, func_code, address, values):
        with self.lock:
            self.log.append((func_code, address, list(values)))
        await self._gate(device_id)
        with self.lock:
            self.write_times.append((time.monotonic(), address, list(values)))
            if (func_code, address) in self.fail:
                return self.fail[(func_code, address)]
            if not self._valid("holding", address, len(values)):
                return ExcCodes.ILLEGAL_ADDRESS
            running = self.mem[("input", 5)] in (1, 2)
            by_address = {
                r.address: r for r in self.profile.registers.values() if r.space == "holding"
            }
            i = 0
            while i < len(values):
                reg = by_address[address + i]
                if running and reg.group == "setting":
                    return ExcCodes.DEVICE_BUSY
                value = reg.from_raw(values[i : i + reg.count])
                if reg.range_problem(value):
                    return ExcCodes.ILLEGAL_VALUE
                i += reg.count
            for i, w in enumerate(values):
                self.mem[("holding", address + i)] = w
            return None

    def device_ids(self):
        return [1]


class Server:
    def __init__(self, ctx, port):
        self.ctx, self.port = ctx, port


@pytest.fixture(scope="module")
def server(profile):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    ctx = FakePlc(profile)

    async def start():
        srv = ModbusTcpServer(ctx, address=("127.0.0.1", 0), ignore_missing_devices=True)
        await srv.serve_forever(background=True)
        return srv

    srv = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    port = srv.transport.sockets[0].getsockname()[1]
    yield Server(ctx, port)
    ctx.hang = False
    asyncio.run_coroutine_threadsafe(srv.shutdown(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture
def fake(server):
    server.ctx.reset()
    yield server.ctx
    server.ctx.hang = False


@pytest.fixture
def plc(profile, server, fake):
    p = Plc(profile, "127.0.0.1", server.port, timeout=1.0)
    p.connect()
    yield p
    p.close()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- connection


def test_constructor_does_no_io_and_connect_fails_typed(profile):
    port = _free_port()
    p = Plc(profile, "127.0.0.1", port, timeout=0.2)  # nothing listens there
    with pytest.raises(PlcNotResponding, match=f"127.0.0.1:{port}"):
        p.connect()
    with pytest.raises(PlcNotResponding):
        p.read("STATE")


def test_context_manager_and_nodelay(profile, server, fake):
    with Plc(profile, "127.0.0.1", server.port) as p:
        sock = p._link.client.socket
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert p.state() == "IDLE"
    assert p._link.client.socket is None


# --------------------------------------------------------------------------- reading


def test_reads_scale_sign_and_u32(plc, fake):
    fake.set("FORCE_SET", 222.5)
    fake.set("FORCE", -123.4)
    fake.set("SERIAL", 0x12345678)
    fake.set("SENSOR_OFFSET", -0.1)
    assert plc.read("FORCE_SET") == 222.5
    assert plc.read("FORCE") == -123.4
    assert fake.mem[("input", 100)] == 0x10000 - 1234
    assert plc.read("SERIAL") == 0x12345678
    assert (fake.mem[("input", 2)], fake.mem[("input", 3)]) == (0x1234, 0x5678)
    assert plc.read("SENSOR_OFFSET") == -0.1
    assert plc.read_raw("SENSOR_OFFSET") == -1
    assert plc.read_raw("FORCE_SET") == 2225
    kind = plc.read("KIND")
    assert kind == 1 and isinstance(kind, int)
    assert isinstance(plc.read("MODE"), int)


def test_named_views(plc, fake):
    fake.set("STATE", 1)
    fake.set("FAULT", 6)
    fake.set("STATUS", 0b101000)
    assert plc.state() == "RUNNING"
    assert plc.fault() == "COMM_LOSS"
    status = plc.status()
    assert status["motor_enabled"] and status["service_mode"] and not status["estop_open"]
    fake.set("STATE", 9)
    assert plc.state() == "UNKNOWN(9)"


def test_read_many_groups_contiguous_listed_addresses(plc, fake):
    fake.set("FORCE", 12.5)
    fake.set("FORCE_SET", 300.0)
    names = ["PHASE", "STATE", "FAULT", "FORCE_SET", "MODE", "FORCE", "KIND", "FAULT_UPTIME_MS"]
    values = plc.read_many(names)
    assert list(values) == names
    assert values["FORCE"] == 12.5 and values["FORCE_SET"] == 300.0 and values["KIND"] == 1
    # input 0..13 is all listed (one request across registers not asked for), 100..101 is
    # another; holding 100..102 is one
    assert sorted(fake.requests()) == [(3, 100, 3), (4, 0, 14), (4, 100, 2)]


def test_read_many_never_spans_an_unlisted_address(plc, fake):
    plc.read_many(["FORCE_SET", "SENSOR_OFFSET", "SESSION_S"])
    assert sorted(fake.requests()) == [(3, 3, 1), (3, 102, 1), (3, 901, 1)]
    fake.log.clear()
    plc.read_many(["STATE", "FAULT"])  # STATUS between them is listed: one request
    assert fake.requests() == [(4, 5, 3)]


def test_read_plan_limits_requests_to_125_and_keeps_u32_whole(tmp_path):
    extra = []
    for a in range(1000, 1130):
        if a == 1125:
            continue  # taken by the u32 at 1124
        rtype = "u32" if a == 1124 else "u16"
        extra.append(
            f'[[register]]\nname = "R{a}"\nspace = "input"\naddress = {a}\n'
            f'type = "{rtype}"\ngroup = "status"\n'
        )
    text = (DATA / "mini" / "profile.toml").read_text()
    (tmp_path / "profile.toml").write_text(text + "\n" + "\n".join(extra))
    (tmp_path / "requirements.toml").write_text((DATA / "mini" / "requirements.toml").read_text())
    profile = load_profile(tmp_path)
    plc = Plc(profile, "127.0.0.1", 1)  # planning only: no I/O
    wanted = [r for r in profile.registers.values() if r.name.startswith("R")]
    blocks = plc._plan_reads(wanted)
    assert [(b.start, b.count) for b in blocks] == [(1000, 124), (1124, 6)]
    assert sum(len(b.registers) for b in blocks) == len(wanted)
    blocks = plc._plan_reads([profile.register(n) for n in ("STATE", "UPTIME_MS", "KIND")])
    assert [(b.start, b.count) for b in blocks] == [(0, 1), (20, 1), (30, 2)]


def test_snapshot_in_two_requests(plc, fake):
    fake.set("STATE", 4)
    fake.set("FAULT", 8)
    fake.set("FORCE", 3.5)
    fake.set("PHASE", 2)
    snap = plc.snapshot()
    assert len(fake.requests()) == 2
    assert snap["STATE"] == "FAULT" and snap["FAULT"] == "POWER_RESTORED"
    assert snap["PHASE"] == "HOLD" and snap["FORCE"] == 3.5
    assert snap["STATUS"]["motor_enabled"] is False
    assert isinstance(snap["UPTIME_MS"], int)


# --------------------------------------------------------------------------- writing


def test_write_converts_and_sends_fc06(plc, fake):
    plc.write("FORCE_SET", 300.0)
    plc.write("MODE", "INTERMITTENT")
    plc.write("SENSOR_OFFSET", -15.0)
    writes = fake.requests(6)
    assert writes == [(6, 102, [3000]), (6, 100, [1]), (6, 901, [0x10000 - 150])]
    assert fake.get("SENSOR_OFFSET") == -15.0


@pytest.mark.parametrize("name", ["STATE", "FORCE", "KIND", "UPTIME_MS"])
def test_read_only_register_refused_before_any_request(plc, fake, name):
    with pytest.raises(WriteRefused, match=f"{name}.*read-only"):
        plc.write(name, 1)
    with pytest.raises(WriteRefused), plc.unguarded("the escape lifts the value guard only"):
        plc.write(name, 1)
    with pytest.raises(WriteRefused):
        plc.write_raw(name, 1)
    with pytest.raises(WriteRefused), plc.unguarded("the escape lifts the value guard only"):
        plc.write_raw(name, 1)
    with pytest.raises(WriteRefused):
        plc.write_many({"MODE": 0, name: 1})
    assert fake.requests() == []


def test_range_guard_with_check(plc, fake):
    with pytest.raises(WriteRefused) as info:
        plc.write("FORCE_SET", 890.1)
    assert "FORCE_SET" in str(info.value) and "890.1" in str(info.value)
    assert "1.0..890.0 N" in str(info.value)
    with pytest.raises(WriteRefused, match="WATCHDOG_MS"):
        plc.write("WATCHDOG_MS", 99)
    with pytest.raises(WriteRefused, match="none of"):
        plc.write("SERVICE_KEY", 1)
    with pytest.raises(WriteRefused, match="raw 70000"), plc.unguarded("type test"):
        plc.write("FORCE_SET", 7000.0)  # the type cannot carry it at all
    assert fake.requests() == []
    assert plc.unguarded_writes == []


def test_unguarded_sends_out_of_range_and_the_plc_answers_03(plc, fake):
    with pytest.raises(IllegalValue) as info, plc.unguarded("type test of the range check"):
        plc.write("FORCE_SET", 890.1)
    assert info.value.code == 3
    assert "FC06 FORCE_SET@102 = 890.1 N (raw 8901)" in str(info.value)
    assert fake.requests(6) == [(6, 102, [8901])]
    assert fake.get("FORCE_SET") == 100.0
    (entry,) = plc.unguarded_writes
    assert (entry.register, entry.words, entry.value) == ("FORCE_SET", (8901,), 890.1)
    assert entry.reason == "type test of the range check" and "above" in entry.problem


def test_rule_guard_reads_the_partner_and_refuses(plc, fake):
    fake.set("HARNESS", 1)
    with pytest.raises(WriteRefused, match=r"above 222.0.*HARNESS = 1"):
        plc.write("FORCE_SET", 300.0)
    assert fake.requests() == [(3, 101, 2)]  # HARNESS and FORCE_SET read, nothing written
    plc.write("FORCE_SET", 222.0)
    fake.set("HARNESS", 0)
    fake.set("FORCE_SET", 300.0)
    with pytest.raises(WriteRefused, match="rule max_by"):
        plc.write("HARNESS", "CERVICAL")
    assert fake.get("HARNESS") == 0


def test_write_many_uses_fc16_for_adjacent_registers_and_checks_in_order(plc, fake):
    fake.set("FORCE_SET", 600.0)
    # lumbar 600 N to cervical 200 N in one atomic FC16: fine as a whole
    plc.write_many({"HOLD_S": 5, "FORCE_SET": 200.0, "HARNESS": 1, "MODE": 1})
    writes = [r for r in fake.requests() if r[0] in (6, 16)]
    assert writes == [(16, 100, [1, 1, 2000]), (6, 104, [5])]
    assert fake.get("HARNESS") == 1
    fake.log.clear()
    with pytest.raises(WriteRefused, match="REST_PCT"):
        plc.write_many({"MODE": 0, "REST_PCT": 95})
    assert fake.requests() == []


def test_write_raw(plc, fake):
    # guarded by default, like every write path (issue 8, finding 10)
    with pytest.raises(WriteRefused, match=r"FORCE_SET.*unguarded"):
        plc.write_raw("FORCE_SET", 8901)
    assert fake.requests() == []
    # a type test's raw value goes through the named escape, which records it
    with pytest.raises(IllegalValue), plc.unguarded("SAF-03 out-of-range probe") as escaped:
        plc.write_raw("FORCE_SET", 8901)
    assert fake.requests(6) == [(6, 102, [8901])]
    assert [(e.register, e.words, e.reason) for e in escaped] == [
        ("FORCE_SET", (8901,), "SAF-03 out-of-range probe")
    ]
    fake.log.clear()
    plc.write_raw("SENSOR_OFFSET", -1)
    plc.write_raw("SENSOR_OFFSET", [0xFFFE])
    assert fake.requests(6) == [(6, 901, [0xFFFF]), (6, 901, [0xFFFE])]
    assert len(plc.unguarded_writes) == 1  # in-range writes are not escapes
    with pytest.raises(WriteRefused):  # the escape ended with its block
        plc.write_raw("FORCE_SET", 8901)


def test_unguarded_needs_a_reason_and_records_rule_breaks(plc, fake):
    with pytest.raises(ValueError, match="reason"), plc.unguarded("  "):
        pass
    fake.set("HARNESS", 1)  # cervical: FORCE_SET at most 222.0 N
    with pytest.raises(WriteRefused, match=r"above 222\.0"):
        plc.write_raw("FORCE_SET", 2230)
    with plc.unguarded("SAF-03 probe of the cervical cap"):
        plc.write_raw("FORCE_SET", 2230)  # this fake PLC checks ranges only: it takes it
    (entry,) = plc.unguarded_writes
    assert entry.register == "FORCE_SET" and entry.words == (2230,)
    assert "222.0" in entry.problem and entry.reason == "SAF-03 probe of the cervical cap"
    assert fake.get("FORCE_SET") == 223.0
    with plc.unguarded("outer"):
        with plc.unguarded("inner"), pytest.raises(IllegalValue):
            plc.write_many({"HOLD_S": 5, "FORCE_SET": 890.1})
        plc.write("HOLD_S", 6)  # in range: sent, not recorded
    assert [(e.register, e.reason) for e in plc.unguarded_writes][1:] == [("FORCE_SET", "inner")]
    with pytest.raises(WriteRefused):  # both blocks ended
        plc.write("FORCE_SET", 890.1)


def test_command_by_name(plc, fake):
    plc.command("START")
    plc.command("ESTOP")
    assert fake.requests(6) == [(6, 0, [1]), (6, 0, [4])]
    with pytest.raises(WriteRefused, match="JUMP"):
        plc.command("JUMP")
    assert len(fake.requests()) == 2


# --------------------------------------------------------------------------- device errors


def test_exception_01_illegal_function(plc, fake):
    fake.fail[(4, 5)] = ExcCodes.ILLEGAL_FUNCTION
    with pytest.raises(IllegalFunction) as info:
        plc.state()
    assert info.value.code == 1 and "FC04 STATE@5" in str(info.value)


def test_exception_02_illegal_address(plc, fake):
    fake.missing.add(("input", 101))
    with pytest.raises(IllegalAddress) as info:
        plc.read("PHASE")
    assert info.value.code == 2 and "FC04 PHASE@101" in str(info.value)
    with pytest.raises(IllegalAddress, match=r"FORCE@100\.\.PHASE@101"):
        plc.read_many(["FORCE", "PHASE"])


def test_exception_06_busy_while_running(plc, fake):
    fake.set("STATE", 1)
    with pytest.raises(DeviceBusy) as info:
        plc.write("RAMP_RATE", 50.0)
    assert info.value.code == 6 and "RAMP_RATE@103" in str(info.value)
    assert isinstance(info.value, ModbusExceptionError)


def test_other_exception_code_is_still_typed(plc, fake):
    fake.fail[(3, 1)] = ExcCodes.DEVICE_FAILURE
    with pytest.raises(ModbusExceptionError) as info:
        plc.read("HEARTBEAT")
    assert info.value.code == 4


def test_no_answer_is_plc_not_responding_after_one_retry(profile, server, fake):
    p = Plc(profile, "127.0.0.1", server.port, timeout=0.2)
    p.connect()
    fake.hang = True
    t0 = time.monotonic()
    with pytest.raises(PlcNotResponding, match=r"FC04 STATE@5.*2 attempt"):
        p.state()
    assert time.monotonic() - t0 < 2.0
    assert fake.requests() == [(4, 5, 1), (4, 5, 1)]
    fake.log.clear()
    # a command is not resent once it may have arrived: a second START would read as refused
    with pytest.raises(PlcNotResponding, match="1 attempt"):
        p.command("START")
    assert fake.requests() == [(6, 0, [1])]
    fake.hang = False
    assert p.state() == "IDLE"  # fresh connection; no late answer mistaken for this one
    p.close()


def test_wrong_unit_gets_no_reply(profile, server, fake):
    p = Plc(profile, "127.0.0.1", server.port, unit=2, timeout=0.2)
    with pytest.raises(PlcNotResponding):
        p.read("KIND")
    p.close()


def test_wait_responding_polls_fresh_connections(profile, server, fake):
    p = Plc(profile, "127.0.0.1", server.port, timeout=1.0)
    fake.hang = True
    with pytest.raises(PlcNotResponding, match="did not answer within"):
        p.wait_responding(0.3, request_timeout=0.05)
    timer = threading.Timer(0.3, lambda: setattr(fake, "hang", False))
    timer.start()
    t0 = time.monotonic()
    assert p.wait_responding(5.0, request_timeout=0.05) == "IDLE"
    assert 0.25 < time.monotonic() - t0 < 2.0
    p.close()


# --------------------------------------------------------------------------- clock and heartbeat


def test_clock_rate_and_uptime(plc, fake):
    fake.rate = 10.0
    rate = plc.clock_rate()
    assert rate == pytest.approx(10.0, rel=0.05)
    first = plc.uptime_ms()
    assert plc.uptime_ms() >= first


def test_heartbeat_period_follows_watchdog_and_clock_rate(plc, fake):
    fake.rate = 10.0  # device time 10x wall: WATCHDOG_MS 1000 -> 250 ms device -> 25 ms wall
    hb = plc.heartbeat
    hb.start()
    assert hb.running
    assert hb.period == pytest.approx(0.025, rel=0.06)
    assert hb._link is not plc._link  # its own connection
    main_requests = plc.requests
    wait_until(lambda: hb.writes >= 20, 5.0, what="20 heartbeat writes")
    assert plc.requests == main_requests  # nothing on the main connection
    last = hb.stop()
    assert not hb.running
    beats = [(t, v[0]) for t, a, v in fake.write_times if a == 1]
    intervals = [b[0] - a[0] for a, b in itertools.pairwise(beats)]
    assert statistics.median(intervals) == pytest.approx(0.025, rel=0.2)
    assert all(b[1] == (a[1] + 1) & 0xFFFF for a, b in itertools.pairwise(beats))
    assert last is not None and last[1] == beats[-1][1] == fake.get("HEARTBEAT")
    assert last[0] is not None and last[0] > 0
    count = len(beats)
    time.sleep(0.1)
    assert len([1 for _, a, _ in fake.write_times if a == 1]) == count  # stopped cleanly
    hb.check()  # no errors


def test_heartbeat_shortens_its_period_with_watchdog(plc, fake):
    fake.rate = 10.0
    hb = plc.heartbeat
    hb.start(period_fraction=0.25)
    plc.write("WATCHDOG_MS", 500)
    assert hb.period == pytest.approx(0.0125, rel=0.06)
    hb.stop()


def test_heartbeat_keeps_trying_and_reports_errors(plc, fake):
    fake.rate = 20.0
    hb = plc.heartbeat
    hb.start()
    fake.fail[(6, 1)] = ExcCodes.DEVICE_BUSY
    wait_until(lambda: hb.error_count >= 3, 5.0, what="heartbeat errors")
    with pytest.raises(DeviceBusy):
        hb.check()
    del fake.fail[(6, 1)]
    before = hb.writes
    wait_until(lambda: hb.writes > before + 2, 5.0, what="heartbeat writes again")
    assert hb.running
    hb.stop()


def test_last_heartbeat_brackets_the_write_with_uptime_reads(plc, fake):
    """pymodbus' own server takes one request of a segment and drops the rest: the driver
    falls back to one request after the other, with a new value, and stays there."""
    fake.set("HEARTBEAT", 41)
    plc.clock_rate()  # the probe, once before the heartbeat starts
    assert not plc.pipelining
    stamp = plc.last_heartbeat()
    # the read before, the write and the read after, acted on in this order
    assert fake.requests()[-3:] == [(4, 10, 2), (6, 1, [42]), (4, 10, 2)]
    assert 0 <= stamp.before <= stamp.after <= fake.get("UPTIME_MS") + 1
    assert stamp.bracket_ms == stamp.after - stamp.before
    plc.last_heartbeat(7)
    assert fake.get("HEARTBEAT") == 7


def test_wait_until_returns_value_and_times_out_with_last_value():
    values = iter([0, 0, 5])
    assert wait_until(lambda: next(values), 1.0, interval=0.001, what="five") == 5
    with pytest.raises(WaitTimeout, match=r"waiting for never; last value seen: 0"):
        wait_until(lambda: 0, 0.05, interval=0.01, what="never")


def test_wait_until_exceptions_propagate_unless_ignored():
    def boom():
        raise PlcNotResponding("off")

    with pytest.raises(PlcNotResponding):
        wait_until(boom, 1.0, what="x")
    with pytest.raises(WaitTimeout, match="off") as info:
        wait_until(boom, 0.05, what="x", ignore=(PlcNotResponding,))
    assert isinstance(info.value.last, PlcNotResponding)
