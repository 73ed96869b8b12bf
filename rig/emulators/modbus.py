"""Modbus TCP server of an emulated table PLC: pymodbus 3.16.1 on the wire, the model behind it.

Start it on a running asyncio loop::

    server = await serve_plc(table)          # binds 127.0.0.1, port chosen by the OS
    server.port                              # the bound port
    await server.shutdown()                  # stop listening and drop every connection

How the ICD's wire behaviour is obtained from pymodbus (3.16.1):

- Registers: `_TableContext`, a `ModbusServerContext` whose `__init__` is bypassed
  (`old_simulator = True`, `simdevices = []`, so `ModbusBaseServer` uses it as it is), forwards
  pymodbus' `async_getValues` / `async_setValues` to `TableBase.read` / `write`; an int result
  becomes an exception response. A silent PLC (no power, booting) and unit ids other than 1 raise
  `NoSuchIdException`, which `ignore_missing_devices=True` turns into no reply at all.
- Function codes: pymodbus would answer 07/08/11/12/17/20-24/43 by itself, and answers an
  undecodable frame with a malformed `80 01`. `_PlcConnection.callback_data` therefore frames the
  MBAP itself: requests for other unit ids are dropped, any function code other than
  03/04/06/16 answers exception 01 (`fc | 0x80, 01`), a malformed 03/04/06/16 PDU answers 03, and
  only well-formed 03/04/06/16 requests reach pymodbus' PDU classes and the context. Several
  requests in one TCP segment are each answered, in order.
- TCP_NODELAY: set on every accepted socket in `_PlcConnection.callback_connected`, the hook
  pymodbus' transport calls from `connection_made` (the asyncio transport's "socket" extra).
- Power cycles: a connection remembers the PLC boot it was opened in; once a rebooted PLC
  answers again, a request on an older connection gets a TCP RST (SO_LINGER 0 + abort), as a
  real PLC whose stack has forgotten the connection would; until then it gets nothing.
- `send` is overridden because pymodbus' base `send` clears the receive buffer, which would drop
  a request that arrives while a reply is being written.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Sequence
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler

from .faults import BenchFaults
from .registers import ILLEGAL_VALUE, UNIT_ID
from .table import PlcSilent, TableBase

SUPPORTED_FUNCTIONS = (3, 4, 6, 16)
_MBAP = struct.Struct(">HHHB")
_MAX_MBAP_LENGTH = 254  # unit id + a PDU of at most 253 bytes
SERVER_DEVICE_FAILURE = 4  # the exception an injected read fault answers


class _DropDeprecation(logging.Filter):
    """Drops pymodbus' 'ModbusServerContext is deprecated' log warnings (used knowingly here)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is deprecated" not in record.getMessage()


_deprecation_filter = _DropDeprecation()
logging.getLogger("pymodbus.logging").addFilter(_deprecation_filter)


class _TableContext(ModbusServerContext):
    """The table's registers as pymodbus' datastore."""

    def __init__(self, table: TableBase) -> None:
        # ModbusServerContext.__init__ would build (and warn about) pymodbus' own datastore
        self.old_simulator = True
        self.simdevices = []
        self._devices = {}
        self._table = table
        self._echo: list[int] = []

    def _check_unit(self, device_id: int) -> None:
        if device_id != UNIT_ID:
            raise NoSuchIdException(f"unit id {device_id}")

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | ExcCodes:
        """Registers for FC03/FC04 (and the echo of a FC06 that was just accepted)."""
        self._check_unit(device_id)
        if func_code == 6:
            return list(self._echo)
        try:
            result = self._table.read(func_code, address, count)
        except PlcSilent:
            raise NoSuchIdException("PLC silent") from None
        return ExcCodes(result) if isinstance(result, int) else result

    async def async_setValues(
        self,
        device_id: int,
        func_code: int,
        address: int,
        values: Sequence[int] | Sequence[bool],
    ) -> ExcCodes | None:
        """Apply FC06/FC16."""
        self._check_unit(device_id)
        regs = [int(v) for v in values]
        try:
            result = self._table.write(func_code, address, regs)
        except PlcSilent:
            raise NoSuchIdException("PLC silent") from None
        if result is not None:
            return ExcCodes(result)
        self._echo = regs
        return None

    def device_ids(self) -> list[int]:
        """The one unit id the PLC answers."""
        return [UNIT_ID]


class _PlcConnection(ServerRequestHandler):
    """One client connection: MBAP framing, unit and function checks, then pymodbus' PDUs."""

    def __init__(self, owner: _PlcServer) -> None:
        super().__init__(owner, owner.trace_packet, owner.trace_pdu, owner.trace_connect)
        self._table = owner.table
        self._tasks: set[asyncio.Task[None]] = set()
        self._order = asyncio.Lock()
        self._boot = -1

    def callback_connected(self) -> None:
        """New connection: no Nagle delay on replies; remember which boot of the PLC it met."""
        super().callback_connected()
        self._boot = self._table.boot_count()
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _reset_connection(self) -> None:
        """Abort with a TCP RST, as a rebooted PLC answers a segment of a connection it forgot."""
        if not self.transport or self.transport.is_closing():
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()  # type: ignore[attr-defined]

    def send(self, data: bytes, addr: tuple | None = None) -> None:
        """Write a reply without touching the receive buffer."""
        if self.transport:
            self.transport.write(data)  # type: ignore[attr-defined]

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        """Consume every complete MBAP frame in `data`; return the bytes used."""
        used, segment = 0, []
        while len(data) - used >= _MBAP.size:
            tid, pid, length, unit = _MBAP.unpack_from(data, used)
            if not 2 <= length <= _MAX_MBAP_LENGTH:
                # the byte stream cannot be re-synchronised: drop the connection like a PLC
                self.close()
                return len(data)
            size = 6 + length
            if len(data) - used < size:
                break
            frame = data[used : used + size]
            used += size
            if pid == 0 and unit == UNIT_ID:
                segment.append((tid, frame[7:]))
        if segment:
            self._request(segment, addr)
        return used

    def _request(self, segment: list[tuple[int, bytes]], addr: tuple | None) -> None:
        task = asyncio.ensure_future(self._execute(segment, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, segment: list[tuple[int, bytes]], addr: tuple | None) -> None:
        # The lock is FIFO: replies leave in the order the requests came in. The requests of
        # one segment are served in one comm slot of the PLC, at one device instant
        # (`World.instant`); nothing in `_respond` waits on I/O, so the slot is not held open.
        async with self._order:
            with self._table.world.instant():
                for tid, pdu_bytes in segment:
                    response = await self._respond(pdu_bytes)
                    if response is not None:
                        self._reply(response, tid, addr)

    async def _respond(self, pdu_bytes: bytes) -> ModbusPDU | None:
        """The reply to one request PDU, or None for no reply at all."""
        faults = self.server.faults
        faults.plc_requests += 1
        if faults.plc_silent:
            return None  # injected: the stack reads the request and never answers
        if faults.modbus_exception and pdu_bytes[:1] in (b"\x03", b"\x04"):
            return ExceptionResponse(pdu_bytes[0], SERVER_DEVICE_FAILURE)
        if self._table.boot_count() != self._boot:
            if self._table.answers():
                self._reset_connection()
            return None
        fc = pdu_bytes[0]
        if fc not in SUPPORTED_FUNCTIONS:
            try:
                code = self._table.read(fc, 0, 1)  # 01 for any function the PLC lacks
            except PlcSilent:
                return None
            return ExceptionResponse(fc, int(code))
        pdu = self.framer.decoder.decode(pdu_bytes)
        if pdu is None:
            return ExceptionResponse(fc, ILLEGAL_VALUE) if self._table.answers() else None
        pdu.dev_id = UNIT_ID
        try:
            return await pdu.datastore_update(self.server.context, UNIT_ID)
        except NoSuchIdException:
            return None  # silent PLC: the client times out as with a real one

    def _reply(self, response: ModbusPDU, tid: int, addr: tuple | None) -> None:
        response.transaction_id = tid
        response.dev_id = UNIT_ID
        self.server_send(response, addr)


class _PlcServer(ModbusTcpServer):
    """pymodbus' TCP server with the table's connection handler."""

    def __init__(
        self, table: TableBase, host: str, port: int, faults: BenchFaults | None = None
    ) -> None:
        self.table = table
        self.faults = faults if faults is not None else BenchFaults()
        super().__init__(_TableContext(table), address=(host, port), ignore_missing_devices=True)

    def callback_new_connection(self) -> _PlcConnection:
        """A client connected."""
        return _PlcConnection(self)


class PlcServer:
    """A running PLC server: `host`, `port`; `await shutdown()` (or `close()`) to stop it."""

    def __init__(self, server: _PlcServer, host: str, port: int) -> None:
        self._server = server
        self.host = host
        self.port = port
        self.table = server.table

    @property
    def sockets(self) -> list[Any]:
        """The listening sockets (asyncio `Server.sockets`)."""
        transport = self._server.transport
        return list(transport.sockets) if transport is not None else []  # type: ignore[attr-defined]

    def close(self) -> None:
        """Stop listening and close every client connection (idempotent)."""
        self._server.close()

    async def shutdown(self) -> None:
        """Stop the server (idempotent)."""
        await self._server.shutdown()


async def serve_plc(
    table: TableBase, host: str = "127.0.0.1", port: int = 0, *, faults: BenchFaults | None = None
) -> PlcServer:
    """Serve `table` on Modbus TCP at host:port (port 0: the OS picks one; read `.port`).

    Must be awaited on the asyncio loop that will run the server. Only loopback addresses are
    accepted: an emulator never listens on a network. `faults`: switches a fault campaign sets
    (rig.emulators.faults); off by default.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"an emulated PLC binds to loopback only, not {host!r}")
    server = _PlcServer(table, host, port, faults)
    await server.serve_forever(background=True)
    bound = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return PlcServer(server, host, int(bound))
