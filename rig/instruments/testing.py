"""Protocol tests for drivers without sockets: a scripted transport and `expected_protocol`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from .scpi import ScpiInstrument

#: What the instrument sends back for one written line: None (nothing: the driver will time
#: out), a str (one line; the `\n` is added), bytes (sent verbatim, e.g. a REAL block with its
#: `\n`), or a list of these, sent in order.
Reply = str | bytes | Sequence[str | bytes] | None

InstrumentT = TypeVar("InstrumentT", bound=ScpiInstrument)


def _wire(reply: Reply) -> bytes:
    if reply is None:
        return b""
    if isinstance(reply, str):
        return reply.encode("ascii") + b"\n"
    if isinstance(reply, bytes | bytearray):
        return bytes(reply)
    return b"".join(_wire(r) for r in reply)


class ProtocolTransport:
    """An in-memory transport that asserts each written line and plays back scripted replies.

    Reading more than has been scripted raises TimeoutError, as a silent instrument would.
    """

    def __init__(self, pairs: Sequence[tuple[str, Reply]]) -> None:
        self.pairs = list(pairs)
        self.used = 0
        self.buffer = bytearray()
        self.opened = self.closed = False
        self.opens = 0

    def open(self) -> None:
        """Nothing to connect; counts connections (a reconnect after a timeout is a second)."""
        self.opened = True
        self.opens += 1

    def close(self) -> None:
        """Disconnect: unread reply bytes go with the connection, as on a real socket."""
        self.closed = True
        self.buffer.clear()

    def write(self, line: str) -> None:
        """Check `line` against the next pair and queue its reply."""
        if self.used >= len(self.pairs):
            raise AssertionError(f"unexpected write {line!r}: all {len(self.pairs)} pairs used")
        if self.buffer:
            raise AssertionError(f"write {line!r} with reply bytes unread: {bytes(self.buffer)!r}")
        expected, reply = self.pairs[self.used]
        if line != expected:
            raise AssertionError(f"pair {self.used}: expected write {expected!r}, got {line!r}")
        self.used += 1
        self.buffer.extend(_wire(reply))

    def read_line(self) -> bytes:
        """Up to the next newline, as the wire would deliver it."""
        i = self.buffer.find(b"\n")
        if i < 0:
            raise TimeoutError(f"no complete line to read (have {bytes(self.buffer)!r})")
        line = bytes(self.buffer[:i])
        del self.buffer[: i + 1]
        return line

    def read_exact(self, count: int) -> bytes:
        """Exactly `count` bytes."""
        if len(self.buffer) < count:
            raise TimeoutError(f"wanted {count} bytes, have {len(self.buffer)}")
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def assert_done(self) -> None:
        """Fail if a pair was not used or a reply was not read."""
        if self.used != len(self.pairs):
            left = self.pairs[self.used :]
            raise AssertionError(f"{len(left)} pair(s) unused, first {left[0]!r}")
        if self.buffer:
            raise AssertionError(f"reply bytes left unread: {bytes(self.buffer)!r}")


@contextmanager
def expected_protocol(
    cls: type[InstrumentT],
    pairs: Sequence[tuple[str, Reply]],
    *,
    address: str = "TCPIP0::fake::5025::SOCKET",
    **kwargs: Any,
) -> Iterator[InstrumentT]:
    """An open `cls` whose I/O must be exactly `pairs`; every pair must be used by the end.

    Example::

        with expected_protocol(LC2000, [("ACQ:RATE 500\nSYST:ERR?", '0,"No error"')]) as lc:
            lc.rate = 500
    """
    transport = ProtocolTransport(pairs)
    instrument = cls(address, transport=transport, **kwargs)
    instrument.open()
    yield instrument
    # Only reached when the body succeeded: an exception inside it is the failure to report.
    transport.assert_done()
    instrument.close()
