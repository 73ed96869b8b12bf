"""Modbus TCP conformance of the emulated TT-890 PLC over real sockets (ICD plc-modbus.md)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest
from emulator_support import Plc, connect, mbap, raw_exchange, serve_table, stop_server
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from rig.emulators.clock import DeviceClock, ManualClock
from rig.emulators.modbus import serve_plc
from rig.emulators.traction import TractionTable
from rig.emulators.world import World

SERIAL = 890123


@pytest.fixture
def make_plc(serve) -> Callable[..., Plc]:
    def make(clock=None, defects: tuple[str, ...] = ()) -> Plc:
        world = World(clock or ManualClock(), seed=3)
        return serve(TractionTable(world, serial=SERIAL, defects=frozenset(defects)))

    return make


@pytest.fixture
def plc(make_plc) -> Plc:
    return make_plc()


# == registers: types, scaling, defaults ======================================================
INPUT_DEFAULTS = {
    0: 1,  # KIND traction
    1: 100,  # ICD_VERSION
    2: SERIAL >> 16,  # SERIAL u32 high word first
    3: SERIAL & 0xFFFF,
    4: 210,  # FIRMWARE 2.10
    5: 0,  # STATE IDLE
    6: 0,  # STATUS
    7: 0,  # FAULT
    8: 0,  # SESSION_ELAPSED
    9: 0,  # CYCLES
    10: 0,  # UPTIME_MS high word
    11: 2000,  # UPTIME_MS low word: booted before the bench looked
    12: 0,  # FAULT_UPTIME_MS
    13: 0,
    101: 0,  # PHASE IDLE
}
HOLDING_DEFAULTS = {0: 0, 1: 0, 2: 1000, 3: 900, 100: 0, 101: 0, 102: 1000, 103: 200}
HOLDING_DEFAULTS |= {104: 30, 105: 10, 106: 50, 900: 0, 901: 0}


def test_every_input_register_reads_its_default(plc):
    for addr, value in INPUT_DEFAULTS.items():
        assert plc.ir(addr) == [value], addr
    assert plc.ir(0, 14) == [INPUT_DEFAULTS[a] for a in range(14)]
    force = plc.ir(100)[0]
    assert force <= 3 or force >= 0x10000 - 3  # s16 x10: 0 N with ~0.1 N noise


def test_every_holding_register_reads_its_default(plc):
    for addr, value in HOLDING_DEFAULTS.items():
        assert plc.hr(addr) == [value], addr
    assert plc.hr(100, 7) == [HOLDING_DEFAULTS[a] for a in range(100, 107)]
    assert plc.hr(900, 2) == [0, 0]


def test_u32_and_s16_encodings(plc):
    plc.world.clock.set(70_000.0)  # uptime past 2^16 ms
    hi, lo = plc.ir(10, 2)
    assert hi << 16 | lo == 70_002_000
    assert plc.w(900, 0xA5A5) is None
    assert plc.w(901, (-600) & 0xFFFF) is None
    assert plc.hr(901) == [0xFDA8]  # s16 two's complement
    plc.w(2, 5000)
    plc.w(0, 1)
    plc.world.clock.set(70_004.0)
    raw = plc.ir(100)[0]
    assert raw == pytest.approx(800 - 600, abs=5)  # x10: true 80 N read through a -60 N offset


def test_force_reads_negative_as_s16(plc):
    plc.w(900, 0xA5A5)
    plc.w(901, (-150) & 0xFFFF)
    raw = plc.ir(100)[0]
    assert raw >= 0x8000 and raw - 0x10000 == pytest.approx(-150, abs=5)


# == range edges ==============================================================================
EDGES = [  # (address, accepted values, refused values)
    (0, [0], [5, 0xFFFF]),
    (1, [0, 0xFFFF, 1], []),
    (2, [100, 5000], [99, 5001]),
    (3, [60, 5940], [59, 5941]),
    (100, [0, 1], [2]),
    (101, [0], [2]),
    (102, [10, 8900], [9, 8901]),
    (103, [10, 1000], [9, 1001]),
    (104, [1, 99], [0, 100]),
    (105, [1, 99], [0, 100]),
    (106, [0, 90], [91, 0xFFFF]),
    (900, [0, 0xFFFF, 1234], []),
]


@pytest.mark.parametrize(("addr", "good", "bad"), EDGES, ids=[str(e[0]) for e in EDGES])
def test_range_edges(plc, addr, good, bad):
    for v in good:
        assert plc.w(addr, v) is None, v
        assert plc.hr(addr) == [0 if addr == 0 else v]
    kept = plc.hr(addr)
    for v in bad:
        assert plc.w(addr, v) == 3, v
        assert plc.hr(addr) == kept
        assert plc.exc(plc.client.write_registers(addr, [v])) == 3
        assert plc.hr(addr) == kept


def test_command_edges(plc):
    assert plc.w(0, 5) == 3 and plc.ir(5) == [0]
    assert plc.w(0, 4) is None  # top of the range: software ESTOP
    assert plc.ir(5, 3) == [3, 0, 1] and plc.hr(0) == [0]


def test_harness_and_force_set_rule(plc):
    assert plc.w(101, 1) is None  # 100.0 N fits the cervical harness
    assert plc.w(102, 2220) is None
    assert plc.w(102, 2221) == 3 and plc.hr(102) == [2220]
    assert plc.w(101, 0) is None
    assert plc.w(102, 8900) is None
    assert plc.w(101, 1) == 3 and plc.hr(101) == [0]  # FORCE_SET above the new harness maximum
    assert plc.exc(plc.client.write_registers(101, [1, 2000])) is None  # judged together
    assert plc.hr(101, 2) == [1, 2000]
    assert plc.exc(plc.client.write_registers(101, [0, 8901])) == 3
    assert plc.hr(101, 2) == [1, 2000]


def test_service_key_and_sensor_offset_rules(plc):
    assert plc.w(901, 5) == 6  # not in service mode
    assert plc.w(900, 1234) is None and plc.hr(900) == [1234]
    assert not plc.ir(6)[0] & 0x20
    assert plc.w(900, 0xA5A5) is None and plc.ir(6)[0] & 0x20
    assert plc.w(901, 0x8000) is None and plc.hr(901) == [0x8000]  # -32768
    assert plc.w(901, 0x7FFF) is None and plc.hr(901) == [0x7FFF]
    assert plc.w(900, 0) is None  # leaving service mode clears the offset
    assert plc.hr(900, 2) == [0, 0] and not plc.ir(6)[0] & 0x20
    assert plc.exc(plc.client.write_registers(900, [0xA5A5, 77])) is None
    assert plc.hr(900, 2) == [0xA5A5, 77]
    plc.w(0, 1)  # START in service mode
    assert plc.ir(5) == [1]
    assert plc.w(901, 1) == 6 and plc.w(900, 0) == 6
    assert plc.hr(900, 2) == [0xA5A5, 77]


# == exceptions ===============================================================================
def test_exception_01_for_every_other_function_code(plc):
    c = plc.client
    calls = {
        1: lambda: c.read_coils(0),
        2: lambda: c.read_discrete_inputs(0),
        5: lambda: c.write_coil(0, True),
        7: lambda: c.read_exception_status(),
        8: lambda: c.diag_query_data(b"\x12\x34"),
        11: lambda: c.diag_get_comm_event_counter(),
        12: lambda: c.diag_get_comm_event_log(),
        15: lambda: c.write_coils(0, [True, False]),
        17: lambda: c.report_device_id(),
        22: lambda: c.mask_write_register(address=100),
        23: lambda: c.readwrite_registers(
            read_address=100, read_count=1, write_address=100, values=[1]
        ),
        24: lambda: c.read_fifo_queue(address=0),
        43: lambda: c.read_device_information(),
    }
    for fc, call in calls.items():
        r = call()
        assert r.isError() and r.function_code == fc | 0x80 and r.exception_code == 1, fc
    assert plc.hr(100) == [0]  # FC22/23 wrote nothing


def test_exception_02_for_unlisted_addresses(plc):
    c = plc.client
    # (address, count): gaps, reads spanning a gap, roller (200+) and inversion (300+) rows
    holding = [(4, 1), (0, 5), (99, 1), (107, 1), (106, 2), (200, 1), (300, 1), (902, 1)]
    holding += [(899, 2), (14, 1)]
    inputs = [(14, 1), (0, 15), (13, 2), (99, 2), (102, 1), (200, 3), (300, 2), (900, 1)]
    for addr, count in holding:
        assert plc.exc(c.read_holding_registers(addr, count=count)) == 2, (addr, count)
    for addr, count in inputs:
        assert plc.exc(c.read_input_registers(addr, count=count)) == 2, (addr, count)
    for addr in (4, 5, 99, 107, 200, 201, 202, 203, 300, 303, 902):
        assert plc.w(addr, 1) == 2, addr
    assert plc.exc(c.write_registers(3, [60, 0])) == 2  # spans the gap after SESSION_S
    assert plc.hr(3) == [900]  # nothing written


def test_exception_06_while_running_and_start_refused(plc):
    assert plc.w(0, 1) is None and plc.ir(5) == [1]
    for addr in (2, 3, 100, 101, 102, 103, 104, 105, 106):
        kept = plc.hr(addr)
        assert plc.w(addr, kept[0]) == 6 and plc.hr(addr) == kept
    assert plc.w(0, 1) == 6  # START while RUNNING
    assert plc.w(1, 42) is None  # HEARTBEAT always writable
    assert plc.w(0, 2) is None and plc.ir(5) == [0]  # STOP at 0 N: IDLE at once
    plc.world.set_relay("patient", True)
    assert plc.w(0, 1) == 6 and plc.ir(5) == [0]


def test_precedence_02_over_06_over_03(plc):
    plc.w(0, 1)
    c = plc.client
    assert plc.exc(c.write_registers(106, [50, 0])) == 2  # unlisted 107 beats busy
    assert plc.exc(c.write_registers(102, [99999 & 0xFFFF, 5])) == 6  # busy beats out of range
    assert plc.w(2, 1) == 6
    assert plc.exc(c.write_registers(0, [9, 1])) == 3  # COMMAND 9: not a setting, out of range
    plc.w(0, 2)
    plc.world.set_relay("estop", True)
    assert plc.exc(c.write_registers(0, [1, 1, 99])) == 6  # START refused beats WATCHDOG_MS 99


def test_fc16_is_all_or_nothing(plc):
    c = plc.client
    assert plc.exc(c.write_registers(102, [2000, 5])) == 3  # RAMP_RATE 0.5 N/s refused
    assert plc.hr(102, 2) == [1000, 200]
    assert plc.exc(c.write_registers(100, [1, 0, 3000, 500, 5, 5, 50])) is None
    assert plc.hr(100, 7) == [1, 0, 3000, 500, 5, 5, 50]
    assert plc.exc(c.write_registers(0, [1, 7, 500, 60])) is None  # settings first, then START
    assert plc.ir(5) == [1] and plc.hr(0, 4) == [0, 7, 500, 60]


def test_fc06_echoes_the_request_and_command_reads_zero(plc):
    r = plc.client.write_register(0, 2)
    assert not r.isError() and r.address == 0 and r.registers == [2]
    assert plc.hr(0) == [0]
    r = plc.client.write_register(103, 300)
    assert r.registers == [300]


def test_no_reply_for_other_unit_ids(plc):
    c = connect(plc.server.port, timeout=0.3)
    try:
        with pytest.raises(ModbusIOException):
            c.read_input_registers(0, count=1, device_id=2)
        with pytest.raises(ModbusIOException):
            c.write_register(0, 1, device_id=0)
    finally:
        c.close()
    assert plc.ir(5) == [0]  # the unit-0 START did nothing
    frame = mbap(1, 2, b"\x08\x00\x00\x12\x34")
    assert raw_exchange(plc.server.port, frame, expect=False, timeout=0.3) == b""


# == wire bytes ===============================================================================
def test_exact_exception_response_bytes(plc):
    port = plc.server.port
    assert raw_exchange(port, mbap(0x1234, 1, b"\x03\x00\x04\x00\x01")) == bytes.fromhex(
        "1234 0000 0003 01 83 02"
    )
    assert raw_exchange(port, mbap(7, 1, b"\x41\x00")) == bytes.fromhex("0007 0000 0003 01 c1 01")
    assert raw_exchange(port, mbap(8, 1, b"\x08\x00\x00\xab\xcd")) == bytes.fromhex(
        "0008 0000 0003 01 88 01"
    )
    assert raw_exchange(port, mbap(9, 1, b"\x04\x00\x00\x00\x00")) == bytes.fromhex(
        "0009 0000 0003 01 84 03"  # quantity 0
    )
    assert raw_exchange(port, mbap(10, 1, b"\x03\x00\x00\x00\x7e")) == bytes.fromhex(
        "000a 0000 0003 01 83 03"  # quantity 126
    )
    assert raw_exchange(port, mbap(11, 1, b"\x06\x00\x02\x00\x63")) == bytes.fromhex(
        "000b 0000 0003 01 86 03"  # WATCHDOG_MS 99
    )
    assert raw_exchange(port, mbap(12, 1, b"\x04\x00\x00\x00\x02")) == bytes.fromhex(
        "000c 0000 0007 01 04 04 0001 0064"
    )
    assert raw_exchange(port, mbap(13, 1, b"\x06\x00\x67\x01\x2c")) == bytes.fromhex(
        "000d 0000 0006 01 06 0067 012c"
    )


def test_requests_in_one_segment_are_each_answered(plc):
    frames = mbap(1, 1, b"\x04\x00\x00\x00\x01") + mbap(2, 1, b"\x01\x00\x00\x00\x01")
    with socket.create_connection(("127.0.0.1", plc.server.port), timeout=2) as s:
        s.sendall(frames)
        data = b""
        while len(data) < 11 + 9:
            data += s.recv(1024)
    assert data == bytes.fromhex("0001 0000 0005 01 04 02 0001") + bytes.fromhex(
        "0002 0000 0003 01 81 01"
    )


def test_accepted_sockets_have_tcp_nodelay(plc):
    plc.ir(0)
    conns = list(plc.server._server.active_connections.values())
    assert conns
    for conn in conns:
        sock = conn.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_serve_plc_binds_loopback_only(loop):
    world = World(ManualClock())
    table = TractionTable(world, serial=1)
    wildcard = ".".join(["0"] * 4)  # every interface: must be refused
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run_coroutine_threadsafe(serve_plc(table, wildcard), loop).result(5)
    server = serve_table(loop, table)
    assert server.host == "127.0.0.1" and server.sockets[0].getsockname()[0] == "127.0.0.1"
    stop_server(loop, server)
    stop_server(loop, server)  # idempotent


# == power ====================================================================================
def _poll(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"


def test_no_reply_without_power_then_fault_8_after_boot_manual_clock(make_plc):
    plc = make_plc()
    clock = plc.world.clock
    plc.w(102, 3000)
    plc.world.set_relay("power", False)
    quiet = connect(plc.server.port, timeout=0.2)
    try:
        with pytest.raises(ModbusIOException):
            quiet.read_input_registers(5, count=1)
        with pytest.raises(ModbusIOException):
            quiet.read_coils(0)  # not even exception 01
        clock.set(5.0)
        plc.world.set_relay("power", True)
        clock.set(5.0 + 1.999)
        with pytest.raises(ModbusIOException):
            quiet.read_input_registers(5, count=1)
    finally:
        quiet.close()
    clock.set(7.0)
    fresh = connect(plc.server.port)
    try:
        r = fresh.read_input_registers(5, count=9)
        assert r.registers[:3] == [4, 0, 8]  # STATE FAULT, STATUS 0, FAULT 8
        r = fresh.read_input_registers(10, count=4)
        assert r.registers == [0, 2000, 0, 2000]
        assert fresh.read_holding_registers(102).registers == [3000]
        assert fresh.write_register(0, 1).exception_code == 6
    finally:
        fresh.close()


def test_power_cycle_at_time_scale_50(make_plc):
    plc = make_plc(DeviceClock(scale=50.0))
    plc.world.set_relay("power", False)
    quiet = connect(plc.server.port, timeout=0.02)
    try:
        with pytest.raises(ModbusIOException):
            quiet.read_input_registers(5, count=1)
    finally:
        quiet.close()
    plc.world.set_relay("power", True)
    t_on = plc.world.clock.now()
    answer: list[int] = []

    def answers() -> bool:
        c = ModbusTcpClient("127.0.0.1", port=plc.server.port, timeout=0.02, retries=0)
        try:
            if not c.connect():
                return False
            r = c.read_input_registers(5, count=9)
            answer.extend(r.registers + c.read_input_registers(10, count=4).registers)
            return True
        except ModbusIOException:
            return False
        finally:
            c.close()

    _poll(answers)
    up = answer[9] << 16 | answer[10]
    assert up >= 2000 and plc.world.clock.now() - t_on < 5.0 + 1.0
    assert answer[0] == 4 and answer[2] == 8
    assert answer[11] << 16 | answer[12] == 2000  # FAULT_UPTIME_MS: when the boot finished


def test_connection_from_before_a_power_cycle_is_reset(make_plc):
    plc = make_plc()
    old = socket.create_connection(("127.0.0.1", plc.server.port), timeout=1.0)
    try:
        old.sendall(mbap(1, 1, b"\x04\x00\x05\x00\x01"))
        assert old.recv(64) == bytes.fromhex("0001 0000 0005 01 04 02 0000")
        plc.world.set_relay("power", False)
        plc.world.set_relay("power", True)
        plc.world.clock.set(2.0)  # booted again
        old.sendall(mbap(2, 1, b"\x04\x00\x05\x00\x01"))
        with pytest.raises(ConnectionResetError):
            old.recv(64)
    finally:
        old.close()
    fresh = connect(plc.server.port)
    try:
        assert fresh.read_input_registers(7, count=1).registers == [8]
    finally:
        fresh.close()


def test_one_segment_is_one_comm_slot_so_the_heartbeat_bracket_is_zero_at_any_scale(make_plc):
    """The requests of one segment are served at one device instant (World.instant): the rig's
    last heartbeat (UPTIME_MS, HEARTBEAT, UPTIME_MS in one segment) lands exactly at the
    UPTIME_MS read before it, at scale 500 as at scale 1, so the watchdog's fault time does not
    grow with the scale. One request after the other, the same reads spread by the host."""
    from rig.plc import Plc as Driver
    from rig.profiles import load_profile

    served = make_plc(DeviceClock(scale=500.0))
    driver = Driver(load_profile("TT-890"), "127.0.0.1", served.server.port, timeout=2.0)
    driver.connect()
    try:
        stamps = [driver.last_heartbeat() for _ in range(50)]
        assert driver.pipelining
        assert {s.bracket_ms for s in stamps} == {0}
        spread = []
        for k in range(50):
            before = driver.uptime_ms()
            driver.write("HEARTBEAT", k)
            spread.append(driver.uptime_ms() - before)
        assert max(spread) > 0  # the host's round trip, times 500, between separate requests
    finally:
        driver.close()
