"""The SCPI socket server: one emulated device behind a raw TCP socket, as the ICD describes."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from ...errors import ConfigError
from .device import ScpiDevice
from .protocol import Reply, wire


async def serve_scpi(
    device: ScpiDevice, host: str = "127.0.0.1", port: int = 0
) -> asyncio.base_events.Server:
    """Serve `device` on a raw TCP socket on the running loop; returns the listening server.

    One connection at a time: a second one is accepted by TCP and served once the first closes.
    Every call into the device holds `world.lock`, which the bench's other servers share.
    """
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise ConfigError(f"SCPI emulator host {host!r}: emulators bind loopback only")
    one_at_a_time = asyncio.Lock()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Without it a reply written right after another waits ~40 ms on Nagle + delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            async with one_at_a_time:
                await _serve_connection(device, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    return await asyncio.start_server(serve, host, port, limit=1 << 20)


async def _serve_connection(
    device: ScpiDevice, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while True:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            raw = e.partial  # a last line without terminator still counts; then the peer is gone
            if raw:
                _handle(device, raw)
            return
        except asyncio.LimitOverrunError:
            await _discard_line(reader)
            with device.world.lock:
                device.push_error(-102)
            continue
        replies = _handle(device, raw)
        if replies:
            writer.write(b"".join(wire(r) for r in replies))
            await writer.drain()


async def _discard_line(reader: asyncio.StreamReader) -> None:
    """Skip the rest of an over-long line, up to and including its terminator."""
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as e:
            await reader.readexactly(e.consumed)


def _handle(device: ScpiDevice, raw: bytes) -> list[Reply]:
    with device.world.lock:
        # Non-ASCII bytes cannot be part of any header or parameter: they make a syntax error.
        return device.handle_line(raw.decode("ascii", errors="replace"))
