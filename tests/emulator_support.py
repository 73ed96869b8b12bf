"""Scaffolding shared by the table emulator tests (traction, roller, inversion, PLC over Modbus).

- `build_table`: a fresh emulated table of any kind on a manual clock at device time 0;
- `Bench`: register-level helpers over one table, driven through `read`/`write` (no sockets);
- `Plc`, `serve_table`, `stop_server`, `connect`, `raw_exchange`, `mbap`: the emulated PLC
  served over real sockets (the `loop` and `serve` fixtures in conftest.py build on these);
- `TableMachine`: the ICD rules that every kind's state machine property shares.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule
from pymodbus.client import ModbusTcpClient

from rig.emulators.clock import ManualClock
from rig.emulators.modbus import PlcServer, serve_plc
from rig.emulators.registers import COMMAND, HEARTBEAT, SENSOR_OFFSET, SERVICE_KEY, WATCHDOG_MS
from rig.emulators.table import PlcSilent, TableBase
from rig.emulators.world import World

START, STOP, RESET, ESTOP = 1, 2, 3, 4
IDLE, RUNNING, STOPPING, ESTOP_STATE, FAULT = 0, 1, 2, 3, 4
BIT_ESTOP, BIT_PATIENT, BIT_SETPOINT, BIT_MOTOR, BIT_BRAKE, BIT_SERVICE = (1 << i for i in range(6))


def s16(raw: int) -> int:
    """Signed value of a raw u16 register (two's complement)."""
    return raw - 0x10000 if raw >= 0x8000 else raw


def build_table(
    cls: type[TableBase],
    serial: int,
    defects: tuple[str, ...] = (),
    *,
    seed: int,
    powered: bool = True,
    **kw,
):
    """A fresh emulated table of class `cls` on a manual clock at device time 0."""
    clock = ManualClock()
    world = World(clock, seed=seed)
    if not powered:
        world.set_relay("power", False)
    table = cls(world, serial=serial, defects=frozenset(defects), **kw)
    return clock, world, table


# == direct register access ===================================================================
class Bench:
    """Register-level helpers over one table (a kind subclass names its table and signal)."""

    SIGNAL: ClassVar[str] = ""  # the world signal `trace` samples
    WRAP: ClassVar[bool] = False  # write values & 0xFFFF (negative engineering values)

    def __init__(self, defects: tuple[str, ...] = (), **kw) -> None:
        self.clock, self.world, self.table = self.make_table(defects, **kw)
        self.hb = 0

    @staticmethod
    def make_table(defects: tuple[str, ...], **kw):
        raise NotImplementedError

    @property
    def t(self) -> float:
        return self.clock.now()

    def ir(self, addr: int, count: int = 1):
        r = self.table.read(4, addr, count)
        assert isinstance(r, list), f"read input {addr}: exception {r}"
        return r if count > 1 else r[0]

    def hr(self, addr: int) -> int:
        r = self.table.read(3, addr, 1)
        assert isinstance(r, list), f"read holding {addr}: exception {r}"
        return r[0]

    def w(self, addr: int, *values: int):
        raw = [v & 0xFFFF for v in values] if self.WRAP else list(values)
        return self.table.write(16 if len(values) > 1 else 6, addr, raw)

    def ok(self, addr: int, *values: int) -> None:
        assert self.w(addr, *values) is None, (addr, values)

    def cmd(self, c: int):
        return self.w(COMMAND, c)

    def beat(self) -> None:
        self.hb = (self.hb + 1) & 0xFFFF
        self.ok(HEARTBEAT, self.hb)

    def at(self, target: float, *, heartbeat: bool = True) -> None:
        """Move device time to `target`, changing HEARTBEAT often enough on the way."""
        step = self.table.setting(WATCHDOG_MS) / 4000.0
        start = self.t
        n = max(math.ceil((target - start) / step), 1)
        for i in range(1, n + 1):
            if heartbeat and self.table.answers():
                self.beat()
            self.clock.set(target if i == n else start + i * step)

    def sample(self, signal: str, t: float | None = None) -> float:
        """The true value of a world signal now (or at device time t)."""
        return float(self.world.sample(signal, np.array([self.t if t is None else t]))[0])

    def series(self, signal: str, t0: float, t1: float, dt: float = 0.001):
        times = np.arange(t0, t1, dt)
        return times, self.world.sample(signal, times)

    def trace(self, t0: float, t1: float, dt: float = 0.001) -> tuple[np.ndarray, np.ndarray]:
        return self.series(self.SIGNAL, t0, t1, dt)

    def service_offset(self, offset_x10: int) -> None:
        """Enter service mode (refused before it) and write SENSOR_OFFSET."""
        assert self.w(SENSOR_OFFSET, 5) == 6  # not in service mode
        self.ok(SERVICE_KEY, 0xA5A5)
        assert self.status & BIT_SERVICE
        self.ok(SENSOR_OFFSET, offset_x10 & 0xFFFF)

    @property
    def state(self) -> int:
        return self.ir(5)

    @property
    def fault(self) -> int:
        return self.ir(7)

    @property
    def status(self) -> int:
        return self.ir(6)

    @property
    def cycles(self) -> int:
        return self.ir(9)

    @property
    def uptime(self) -> int:
        hi, lo = self.ir(10, 2)
        return hi << 16 | lo

    @property
    def fault_uptime(self) -> int:
        hi, lo = self.ir(12, 2)
        return hi << 16 | lo


def slope(times: np.ndarray, x: np.ndarray, lo: float, hi: float) -> float:
    """Least-squares slope of the samples whose value lies in [lo, hi]."""
    sel = (x >= lo) & (x <= hi)
    return float(np.polyfit(times[sel], x[sel], 1)[0])


# == Modbus over real sockets =================================================================
@dataclass
class Plc:
    """One emulated table served over Modbus TCP, with a client connected to it."""

    world: World
    table: TableBase
    server: PlcServer
    client: ModbusTcpClient
    wrap: bool = False  # write values & 0xFFFF (negative engineering values)

    @staticmethod
    def exc(response) -> int | None:
        """Exception code of a response, None for a normal one."""
        return response.exception_code if response.isError() else None

    def ir(self, addr: int, count: int = 1) -> list[int]:
        r = self.client.read_input_registers(addr, count=count)
        assert not r.isError(), r
        return r.registers

    def hr(self, addr: int, count: int = 1) -> list[int]:
        r = self.client.read_holding_registers(addr, count=count)
        assert not r.isError(), r
        return r.registers

    def w(self, addr: int, *values: int) -> int | None:
        raw = [v & 0xFFFF for v in values] if self.wrap else list(values)
        if len(raw) == 1:
            return self.exc(self.client.write_register(addr, raw[0]))
        return self.exc(self.client.write_registers(addr, raw))


def serve_table(loop: asyncio.AbstractEventLoop, table: TableBase) -> PlcServer:
    return asyncio.run_coroutine_threadsafe(serve_plc(table), loop).result(timeout=10)


def stop_server(loop: asyncio.AbstractEventLoop, server: PlcServer) -> None:
    asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(timeout=10)


def connect(port: int, timeout: float = 2.0) -> ModbusTcpClient:
    c = ModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0)
    assert c.connect()
    return c


def raw_exchange(port: int, frame: bytes, *, expect: bool = True, timeout: float = 1.0) -> bytes:
    """Send raw bytes; return everything answered (b'' if nothing came before the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(frame)
        try:
            data = s.recv(1024)
        except TimeoutError:
            data = b""
        if expect:
            while len(data) < 6 or len(data) < 6 + struct.unpack(">H", data[4:6])[0]:
                more = s.recv(1024)
                if not more:
                    break
                data += more
        return data


def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


# == state machine property ===================================================================
def machine_settings(max_examples: int, steps: int) -> settings:
    return settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


class TableMachine(RuleBasedStateMachine):
    """The command, relay, power and heartbeat rules every kind shares (ICD state machine).

    A kind subclass builds `clock`, `world`, `table`, `hb`, `reset_may_clear` in its
    `@initialize` rule and reacts to a START or an e-stop through the hooks below.
    """

    def regs(self) -> tuple[int, int, int] | None:
        """(STATE, FAULT, STATUS) now, or None while the PLC is silent."""
        if not self.table.answers():
            return None
        state, status, fault = self.table.read(4, 5, 3)
        return state, fault, status

    # -- hooks ---------------------------------------------------------------------------------
    def on_start(self) -> None:
        """A START was accepted."""

    def on_estop(self, state: int, after: tuple[int, int, int], *, command: bool) -> None:
        """The table latched ESTOP from `state` (by the COMMAND, or else the e-stop circuit)."""

    def on_power(self, on: bool) -> None:
        """Mains power changed."""

    # -- rules ---------------------------------------------------------------------------------
    @rule(c=st.integers(0, 5))
    def command(self, c):
        before = self.regs()
        if before is None:
            with pytest.raises(PlcSilent):
                self.table.write(6, COMMAND, [c])
            return
        state, fault, status = before
        r = self.table.write(6, COMMAND, [c])
        if c == 5:
            assert r == 3
            return
        allowed = state == IDLE and fault == 0 and not status & (BIT_ESTOP | BIT_PATIENT)
        if c == START:
            assert (r is None) == allowed
            if allowed:
                self.on_start()
                assert self.regs()[0] == RUNNING
            return
        assert r is None
        after = self.regs()
        if c == RESET:
            if state in (ESTOP_STATE, FAULT) and not status & (BIT_ESTOP | BIT_PATIENT):
                assert after[:2] == (IDLE, 0)
                self.reset_may_clear = True
            else:
                assert after[1] == fault
        elif c == ESTOP:
            assert after[:2] == (ESTOP_STATE, 1)
            self.on_estop(state, after, command=True)
        elif c == STOP and state != RUNNING:
            assert after[:2] == (state, fault)

    @rule(name=st.sampled_from(["estop", "patient"]), on=st.booleans())
    def relay(self, name, on):
        before = self.regs()
        changed = self.world.set_relay(name, on)
        after = self.regs()
        if before is None or not changed or not on:
            return
        if name == "estop":
            assert after[:2] == (ESTOP_STATE, 1)
            self.on_estop(before[0], after, command=False)
        elif before[0] == RUNNING:
            assert after[:2] == (FAULT, 2)

    @rule(on=st.booleans())
    def power(self, on):
        if self.world.set_relay("power", on):
            self.reset_may_clear = True  # a power-on ends in a fresh FAULT 8
            self.on_power(on)

    @rule()
    def heartbeat(self):
        if self.table.answers():
            self.hb += 1
            assert self.table.write(6, HEARTBEAT, [self.hb & 0xFFFF]) is None

    def check_service(self, key: int, offset: int) -> bool:
        """One FC16 write of SERVICE_KEY and SENSOR_OFFSET; True if it was accepted."""
        before = self.regs()
        if before is None:
            return False
        r = self.table.write(16, SERVICE_KEY, [key, offset & 0xFFFF])
        if before[0] != IDLE or key != 0xA5A5:
            assert r == 6  # SENSOR_OFFSET only in service mode (the one this write leaves)
            return False
        assert r is None
        return True


def inprocess_bench(serial: str = "T1") -> list[str]:
    """pytest arguments for a TT-890 emulated in this process, for the plugin tests.

    The in-process bench shares the interpreter with the rig: a gentle scale keeps the watchdog
    window wide on a loaded CI machine (these tests need no speed)."""
    return [
        "--model",
        "TT-890",
        "--serial",
        serial,
        "--scale",
        "5",
        "--emulator",
        "inprocess",
        "-p",
        "no:randomly",
    ]
