"""An emulated bench: one world, the PLC on Modbus TCP, the instruments on SCPI sockets."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..station import InstrumentAddress, Station
from .clock import DeviceClock
from .defects import check_defects
from .faults import BenchFaults
from .modbus import serve_plc
from .scpi import INSTRUMENTS, serve_scpi
from .table import TableBase
from .traction import TractionTable
from .world import World

HOST = "127.0.0.1"


@dataclass(frozen=True)
class BenchKind:
    """How to build the emulated world of one table model."""

    table: Callable[..., TableBase]
    instruments: dict[str, str]  # role -> instrument model (a key of scpi.INSTRUMENTS)
    serial: int


def _roller(*args: Any, **kwargs: Any) -> TableBase:
    from .roller import RollerTable

    return RollerTable(*args, **kwargs)


def _inversion(*args: Any, **kwargs: Any) -> TableBase:
    from .inversion import InversionTable

    return InversionTable(*args, **kwargs)


BENCHES: dict[str, BenchKind] = {
    "TT-890": BenchKind(
        table=TractionTable,
        instruments={"force_meter": "LC-2000", "actuators": "ACT-3"},
        serial=890001,
    ),
    "RT-600": BenchKind(
        table=_roller,
        instruments={"position_meter": "ENC-600", "actuators": "ACT-3"},
        serial=600001,
    ),
    "IT-90": BenchKind(
        table=_inversion,
        instruments={"inclinometer": "INC-360", "actuators": "ACT-3"},
        serial=90001,
    ),
}


def emulated_models() -> list[str]:
    """Models the emulator can build a bench for."""
    return sorted(BENCHES)


class EmulatedBench:
    """Start with `with EmulatedBench("TT-890", scale=20) as bench:`; `bench.station` has the
    loopback addresses. Servers run on one asyncio loop in a background thread of this process.
    """

    def __init__(
        self,
        model: str = "TT-890",
        *,
        scale: float = 1.0,
        defects: tuple[str, ...] | frozenset[str] = (),
        seed: int = 0,
        serial: int | None = None,
        instrument_kwargs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        key = model.upper()
        if key not in BENCHES:
            raise ConfigError(
                f"no emulated bench for model {model!r}; available: {', '.join(emulated_models())}"
            )
        self.model = key
        self.kind = BENCHES[key]
        self.defects = frozenset(defects)
        check_defects(key, self.defects)
        self.scale = scale
        self.seed = seed
        self.serial = serial if serial is not None else self.kind.serial
        self.instrument_kwargs = instrument_kwargs or {}
        self.world: World | None = None
        self.table: TableBase | None = None
        self.instruments: dict[str, Any] = {}
        self.station: Station | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[Any] = []
        # fault switches, all off unless a fault campaign sets them (rig.emulators.faults)
        self.faults = BenchFaults()

    def start(self) -> Station:
        """Start the world and every server; return the station describing them."""
        self._loop = asyncio.new_event_loop()
        ready: Future[None] = Future()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.call_soon(lambda: ready.set_result(None))
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"bench-{self.model}", daemon=True)
        self._thread.start()
        ready.result(timeout=10)
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.station = fut.result(timeout=30)
        return self.station

    async def _start(self) -> Station:
        self.world = World(DeviceClock(self.scale), seed=self.seed)
        self.table = self.kind.table(self.world, serial=self.serial, defects=self.defects)
        plc_server = await serve_plc(self.table, HOST, 0, faults=self.faults)
        self._servers.append(plc_server)
        addresses: dict[str, InstrumentAddress] = {}
        for role, model in self.kind.instruments.items():
            device = INSTRUMENTS[model](self.world, **self.instrument_kwargs.get(role, {}))
            self.instruments[role] = device
            server = await serve_scpi(device, HOST, 0, fault=self.faults.link(role))
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
            addresses[role] = InstrumentAddress(role, model, f"TCPIP0::{HOST}::{port}::SOCKET")
        return Station(
            id=f"EMULATED-{self.model}",
            plc_host=HOST,
            plc_port=_port_of(plc_server),
            instruments=addresses,
            emulated=True,
            source="emulated bench",
        )

    def run_on_loop(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the bench's loop (e.g. a control server); return its result."""
        assert self._loop is not None, "the bench is not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout)

    def add_server(self, server: Any) -> None:
        """Close this server with the bench's own."""
        self._servers.append(server)

    def stop(self) -> None:
        """Shut every server down and stop the loop."""
        if self._loop is None:
            return

        async def close() -> None:
            for s in self._servers:
                r = s.close() if hasattr(s, "close") else None
                if asyncio.iscoroutine(r):
                    await r
                if hasattr(s, "shutdown"):
                    r = s.shutdown()
                    if asyncio.iscoroutine(r):
                        await r

        try:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = None

    def __enter__(self) -> EmulatedBench:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_of(server: Any) -> int:
    if hasattr(server, "port"):
        return int(server.port)
    return int(server.sockets[0].getsockname()[1])
