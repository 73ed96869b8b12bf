"""The SCPI socket server: one emulated device behind a raw TCP socket, as the ICD describes."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from ...errors import ConfigError
from ..faults import LinkFault
from .device import ScpiDevice
from .protocol import Reply, wire

# what an instrument answering garbage sends instead of a reply: no SCPI reply looks like it
GARBAGE = b"\xff\xfe#9?!garbled\x00\r"


async def serve_scpi(
    device: ScpiDevice, host: str = "127.0.0.1", port: int = 0, *, fault: LinkFault | None = None
) -> asyncio.base_events.Server:
    """Serve `device` on a raw TCP socket on the running loop; returns the listening server.

    One connection at a time: a second one is accepted by TCP and served once the first closes.
    Every call into the device holds `world.lock`, which the bench's other servers share.
    `fault`: the link's injected fault (rig.emulators.faults), consulted on every line.
    """
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise ConfigError(f"SCPI emulator host {host!r}: emulators bind loopback only")
    one_at_a_time = asyncio.Lock()
    link = fault if fault is not None else LinkFault()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if link.mode == "drop":  # the link is down: whatever connects is cut at once
            writer.transport.abort()
            return
        link.writers.add(writer)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Without it a reply written right after another waits ~40 ms on Nagle + delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            async with one_at_a_time:
                await _serve_connection(device, reader, writer, link)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            link.writers.discard(writer)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    return await asyncio.start_server(serve, host, port, limit=1 << 20)


async def _serve_connection(
    device: ScpiDevice,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    link: LinkFault,
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
        if link.mode == "drop":
            writer.transport.abort()
            return
        if link.mode == "silent":
            continue  # a hung instrument: reads the line, does nothing, answers nothing
        replies = _handle(device, raw)
        if replies:
            if link.mode == "garbage":
                writer.write(GARBAGE * len(replies) + b"\n")
            else:
                if link.mode == "delay":
                    await asyncio.sleep(link.delay_s)
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
