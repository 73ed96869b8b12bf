"""The emulated bench's fault switches, control channel and observer (the campaign's tools)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest
from emulator_support import connect

from rig.emulators.bench import BENCHES, EmulatedBench
from rig.emulators.clock import ManualClock
from rig.emulators.faults import Control, ControlClient, Observer, observe, serve_control
from rig.emulators.registers import Command
from rig.emulators.table import TableBase
from rig.emulators.world import World


@pytest.fixture(scope="module")
def bench() -> Iterator[tuple[EmulatedBench, ControlClient]]:
    b = EmulatedBench("TT-890", scale=10)
    b.start()
    server = b.run_on_loop(serve_control(Control(b)))
    b.add_server(server)
    client = ControlClient(server.sockets[0].getsockname()[1])
    yield b, client
    client.close()
    b.stop()


@pytest.fixture(autouse=True)
def _clear(bench: tuple[EmulatedBench, ControlClient]) -> Iterator[None]:
    yield
    bench[1].request(op="clear")


def _port(resource: str) -> int:
    return int(resource.split("::")[2])


def _scpi(b: EmulatedBench, role: str, line: str, timeout: float = 1.0) -> bytes:
    assert b.station is not None
    with socket.create_connection(
        ("127.0.0.1", _port(b.station.instruments[role].resource)), timeout=timeout
    ) as s:
        s.sendall(line.encode() + b"\n")
        return s.recv(4096)


def test_healthy_bench_answers(bench: tuple[EmulatedBench, ControlClient]) -> None:
    b, _ = bench
    assert _scpi(b, "force_meter", "*IDN?").startswith(b"BENCHWORKS,LC-2000")
    assert b.station is not None
    c = connect(b.station.plc_port)
    try:
        assert not c.read_input_registers(0, count=1, device_id=1).isError()
    finally:
        c.close()


def test_plc_silent_and_modbus_exception(bench: tuple[EmulatedBench, ControlClient]) -> None:
    b, ctl = bench
    assert b.station is not None
    assert ctl.request(op="inject", fault="modbus-exception")["ok"]
    c = connect(b.station.plc_port, timeout=0.5)
    try:
        r = c.read_input_registers(0, count=1, device_id=1)
        assert r.isError() and r.exception_code == 4
        ctl.request(op="clear")
        assert ctl.request(op="inject", fault="plc-silent")["ok"]
        with pytest.raises(Exception):  # noqa: B017 - pymodbus raises its own on no reply
            r = c.read_input_registers(0, count=1, device_id=1)
            if r.isError():
                raise RuntimeError(r)
    finally:
        c.close()


@pytest.mark.parametrize("mode", ["silent", "drop"])
def test_link_silent_or_dropped(bench: tuple[EmulatedBench, ControlClient], mode: str) -> None:
    b, ctl = bench
    assert ctl.request(op="inject", fault=f"instrument-{mode}", role="force_meter")["ok"]
    if mode == "silent":
        with pytest.raises(TimeoutError):
            _scpi(b, "force_meter", "*IDN?", timeout=0.3)
    else:
        with pytest.raises((ConnectionError, OSError)) as e:
            got = _scpi(b, "force_meter", "*IDN?", timeout=1.0)
            if got == b"":
                raise ConnectionResetError("closed")
        assert not isinstance(e.value, TimeoutError)
    # the other instrument is untouched
    assert _scpi(b, "actuators", "*IDN?").startswith(b"BENCHWORKS,ACT-3")


def test_link_garbage_and_delay(bench: tuple[EmulatedBench, ControlClient]) -> None:
    b, ctl = bench
    ctl.request(op="inject", fault="instrument-garbage", role="actuators")
    reply = _scpi(b, "actuators", "*IDN?")
    assert reply.endswith(b"\n") and b"BENCHWORKS" not in reply
    ctl.request(op="clear")
    ctl.request(op="inject", fault="instrument-delay", role="actuators", delay_s=0.3)
    t0 = time.monotonic()
    assert _scpi(b, "actuators", "*IDN?").startswith(b"BENCHWORKS")
    assert time.monotonic() - t0 >= 0.3


def test_fault_clears_after_its_duration(bench: tuple[EmulatedBench, ControlClient]) -> None:
    b, ctl = bench
    reply = ctl.request(op="inject", fault="power-loss", duration_s=1.0)  # 0.1 s wall
    assert reply["ok"]
    assert ctl.request(op="observe")["state"] == "UNPOWERED"
    time.sleep(0.3)
    assert b.world is not None and b.world.relays["power"]


def test_unknown_fault_or_role_is_refused(bench: tuple[EmulatedBench, ControlClient]) -> None:
    _, ctl = bench
    assert not ctl.request(op="inject", fault="meteor")["ok"]
    assert not ctl.request(op="inject", fault="instrument-drop", role="nope")["ok"]


def _table(model: str) -> tuple[ManualClock, TableBase]:
    clock = ManualClock(0.0)
    return clock, BENCHES[model].table(World(clock), serial=1)


@pytest.mark.parametrize("model", ["TT-890", "RT-600", "IT-90"])
def test_observer_judges_a_running_table_unsafe_until_its_watchdog_stops_it(model: str) -> None:
    clock, table = _table(model)
    assert observe(table, 0.0)["safe"]
    assert table.write(6, 0, [int(Command.START)]) is None
    for step in range(1, 160):  # 8 device s of heartbeats: the table is under way
        clock.set(step * 0.05)
        table.write(6, 1, [step & 0xFFFF])
    t = clock.now()
    with table.world.lock:
        table.world.advance()
        snap = observe(table, t)
    assert snap["state"] == "RUNNING" and not snap["safe"] and snap["why"], snap
    # no more heartbeats: the table's own watchdog stops it; then it is safe
    clock.set(t + 1.0 + 20.0)
    with table.world.lock:
        table.world.advance()
        late = observe(table, clock.now())
    assert late["safe"] and late["fault"] == 6, late


def test_observer_log_survives_as_json_lines(tmp_path: object) -> None:
    b = EmulatedBench("IT-90", scale=10)
    b.start()
    try:
        path = tmp_path / "obs.jsonl"  # type: ignore[operator]
        obs = Observer(b, path, period_s=0.01)
        obs.start()
        time.sleep(0.15)
        obs.stop()
    finally:
        b.stop()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines and lines[-1]["last"] and all(x["safe"] for x in lines)
    assert {"t", "state", "angle_deg", "brake"} <= set(lines[0])
    assert np.all(np.diff([x["t"] for x in lines]) >= 0)
