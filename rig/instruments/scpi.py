"""Base of the SCPI instrument drivers: transport, error-queue checking, declarative controls.

A driver class declares each instrument parameter as a class attribute (`control`,
`measurement`) with a strict validator, as PyMeasure does. Every exchange checks the
instrument's error queue: `SYST:ERR?` goes as a second line in the same write as the command
(not joined by `;`, whose path rules the ICD leaves open), so a device error always raises a
typed exception, costs no extra round trip, and a failing query costs no timeout.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self

import numpy as np

from ..errors import ConfigError, DeviceError, InstrumentError, InstrumentTimeout
from ..trace import Trace
from ..wait import progress

# -- errors --------------------------------------------------------------------------------------


class ValidationError(ConfigError, ValueError):
    """A value given to a driver is outside what the instrument accepts; nothing was sent."""


class ProtocolError(DeviceError):
    """An instrument's reply does not follow the ICD (wrong form, lost synchronisation)."""


class WrongInstrument(ConfigError):
    """The instrument at an address is not the model the station file says."""

    def __init__(self, address: str, expected: str, found: str) -> None:
        self.address, self.expected, self.found = address, expected, found
        super().__init__(f"{address}: expected a {expected}, found {found!r}")


class InstrumentUnreachable(InstrumentTimeout):
    """No connection to the instrument (refused, reset); a kind of not answering."""


# -- transports ----------------------------------------------------------------------------------


class Transport(Protocol):
    """The byte stream a driver talks over; a real socket or a scripted fake.

    Every call returns or raises within the transport's timeout: reads raise `TimeoutError`
    when nothing (or not enough) arrives in time and `ConnectionError` when the link is gone.
    After either, the driver closes and reopens the transport (a fresh connection) rather than
    trying to empty a link it no longer trusts.
    """

    def open(self) -> None:
        """Connect (a fresh connection, with nothing left over from an earlier one)."""

    def close(self) -> None:
        """Disconnect (idempotent); unread input is dropped."""

    def write(self, line: str) -> None:
        """Send one message; the transport adds the `\\n` terminator."""

    def read_line(self) -> bytes:
        """Bytes up to the next `\\n`, without it."""

    def read_exact(self, count: int) -> bytes:
        """Exactly `count` bytes, terminators included (binary data)."""


class SocketTransport:
    """A VISA `TCPIP[board]::host::port::SOCKET` resource on a plain TCP socket, every call bounded.

    pyvisa parses the resource name, so station files keep VISA names, but pyvisa-py's socket
    session is not used for I/O, because none of its loops is bounded on a misbehaving peer:
    its `clear()` spins for ever on a closed peer (recv keeps returning b''; finding 2 of
    issue 8, teardown stuck in the actuator query), its read checks the timeout only when a
    recv returns nothing (so a peer that streams or drips bytes without a `\\n` holds it for
    ever) and spins at full CPU on a closed peer until the timeout, and its write waits in
    select() with no timeout. Here each call has a deadline `timeout_s` after it starts
    (connect, send, and each read), a closed peer is a ConnectionError at once, and a line
    longer than `max_line` bytes is a ProtocolError; the caller reconnects after any of them.
    """

    #: Longest line accepted: an ASCII fetch of 200000 samples is about 3 MB.
    max_line = 16 * 1024 * 1024

    def __init__(self, address: str, timeout_s: float) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._buffer = bytearray()

    def _endpoint(self) -> tuple[str, int]:
        from pyvisa import rname  # kept local: the fake transport and validators need no VISA

        try:
            parsed = rname.parse_resource_name(self.address)
        except ValueError as e:
            raise ConfigError(f"{self.address}: not a VISA resource name: {e}") from None
        if not isinstance(parsed, rname.TCPIPSocket):
            raise ConfigError(
                f"{self.address}: the instruments are raw TCP sockets "
                "(TCPIP0::<host>::<port>::SOCKET)"
            )
        return parsed.host_address, int(parsed.port)

    def open(self) -> None:
        """Connect within `timeout_s`, with TCP_NODELAY (a write after a write would wait on
        Nagle plus delayed ACK otherwise)."""
        self.close()
        host, port = self._endpoint()
        try:
            sock = socket.create_connection((host, port), timeout=self.timeout_s)
        except TimeoutError as e:
            raise TimeoutError(f"cannot connect to {self.address} within {self.timeout_s} s") from e
        except OSError as e:
            raise ConnectionError(f"cannot connect to {self.address}: {e}") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock

    def _socket(self) -> socket.socket | None:
        return self._sock

    def close(self) -> None:
        """Close the socket; whatever arrived and was not read goes with it."""
        sock, self._sock = self._sock, None
        self._buffer.clear()
        if sock is not None:
            try:
                sock.close()
            except OSError:  # closing a dead link must not hide why it died
                pass

    def _need(self) -> socket.socket:
        if self._sock is None:
            raise ConnectionError(f"{self.address} is not open")
        return self._sock

    def write(self, line: str) -> None:
        """Send `line` + `\\n` within `timeout_s` (a peer that stops reading cannot hold us)."""
        sock = self._need()
        sock.settimeout(self.timeout_s)  # since 3.5 the bound of the whole sendall
        try:
            sock.sendall(line.encode("ascii") + b"\n")
        except TimeoutError as e:
            raise TimeoutError(f"{self.address} took nothing for {self.timeout_s} s") from e
        except OSError as e:
            self.close()
            raise ConnectionError(f"{self.address}: {e}") from e

    def _fill(self, deadline: float, wanted: str) -> None:
        sock = self._need()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{self.address}: {wanted} not complete within {self.timeout_s} s")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError as e:
            raise TimeoutError(f"{self.address}: no {wanted} within {self.timeout_s} s") from e
        except OSError as e:
            self.close()
            raise ConnectionError(f"{self.address}: {e}") from e
        if not chunk:
            self.close()
            raise ConnectionError(f"{self.address}: connection closed by the instrument")
        self._buffer += chunk

    def read_line(self) -> bytes:
        """One message up to `\\n`, within `timeout_s` however the bytes trickle in."""
        deadline = time.monotonic() + self.timeout_s
        searched = 0
        while (end := self._buffer.find(b"\n", searched)) < 0:
            searched = len(self._buffer)
            if searched > self.max_line:
                raise ProtocolError(f"{self.address}: no line end in {searched} bytes")
            self._fill(deadline, "line")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    def read_exact(self, count: int) -> bytes:
        """`count` raw bytes within `timeout_s`; a `\\n` inside binary data does not end it."""
        deadline = time.monotonic() + self.timeout_s
        while len(self._buffer) < count:
            self._fill(deadline, f"{count} bytes")
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data


# -- validators and reply parsers ----------------------------------------------------------------

Validator = Callable[[Any, Any], Any]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def strict_range(value: Any, values: tuple[float, float]) -> float:
    """A real number within [min, max]; anything else raises (never clipped)."""
    lo, hi = values
    if not _is_number(value) or not math.isfinite(float(value)):
        raise ValidationError(f"{value!r} is not a number")
    if not lo <= value <= hi:
        raise ValidationError(f"{value!r} is outside [{lo}, {hi}]")
    return float(value)


def strict_integer_range(value: Any, values: tuple[int, int]) -> int:
    """An integer within [min, max]; floats (even 3.0) and bools raise."""
    lo, hi = values
    if not isinstance(value, int | np.integer) or isinstance(value, bool | np.bool_):
        raise ValidationError(f"{value!r} is not an integer")
    if not lo <= value <= hi:
        raise ValidationError(f"{value!r} is outside [{lo}, {hi}]")
    return int(value)


def strict_discrete_set(value: Any, values: Any) -> Any:
    """One of `values` exactly (same type: True is not 1)."""
    for allowed in values:
        if value == allowed and type(value) is type(allowed):
            return allowed
    raise ValidationError(f"{value!r} is not one of {list(values)!r}")


def strict_bool(value: Any, values: Any = None) -> bool:
    """True or False, nothing else (not 1, not 'ON')."""
    if not isinstance(value, bool | np.bool_):
        raise ValidationError(f"{value!r} is not a bool")
    return bool(value)


def bool_reply(reply: str) -> bool:
    """`1`/`0` as the ICD's relay queries answer."""
    if reply not in ("0", "1"):
        raise ValueError(f"expected 1 or 0, got {reply!r}")
    return reply == "1"


def int_reply(reply: str) -> int:
    """An integer reply (tolerating a decimal or exponent spelling of a whole number)."""
    x = float(reply)
    if not x.is_integer():
        raise ValueError(f"expected an integer, got {reply!r}")
    return int(x)


def choice_reply(*spellings: str) -> Callable[[str], str]:
    """Parse a reply naming one of `spellings` (ICD case) in short or long form; give the short."""

    def parse(reply: str) -> str:
        r = reply.strip().upper()
        for s in spellings:
            short = "".join(c for c in s if c.isupper())
            if r in (short, s.upper()):
                return short
        raise ValueError(f"expected one of {spellings}, got {reply!r}")

    return parse


def _scpi_value(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | np.integer):
        return str(int(value))
    x = float(value)  # type: ignore[arg-type]
    return str(int(x)) if x.is_integer() else repr(x)


# -- declarative controls ------------------------------------------------------------------------


class Control:
    """A property that queries `get` and writes `set` with `{}` replaced by the value.

    `validator(value, values)` runs before any I/O and raises on a bad value. With `map_values`,
    `values` is a dict {python value: wire token}; a reply is mapped back only when there is no
    `get_process` (which otherwise parses the reply itself).
    """

    def __init__(
        self,
        get: str | None,
        set: str | None,
        doc: str,
        *,
        validator: Validator | None = None,
        values: Any = None,
        map_values: bool = False,
        get_process: Callable[[str], Any] | None = None,
    ) -> None:
        self.get, self.set = get, set
        self.__doc__ = doc
        self.validator, self.values, self.map_values = validator, values, map_values
        self.get_process = get_process
        self.name = "?"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: ScpiInstrument | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        if self.get is None:
            raise AttributeError(f"{self.name} is write-only")
        reply = obj.ask(self.get)
        try:
            if self.get_process is not None:
                return self.get_process(reply)
            if self.map_values:
                return next(k for k, v in self.values.items() if v == reply)
            return reply
        except (ValueError, StopIteration) as e:
            raise ProtocolError(f"{obj.name}: reply {reply!r} to {self.get!r}: {e}") from e

    def __set__(self, obj: ScpiInstrument, value: Any) -> None:
        if self.set is None:
            raise AttributeError(f"{self.name} is read-only")
        obj.write(self.set.format(_scpi_value(self.encode(value))))

    def encode(self, value: Any) -> Any:
        """Validate `value` and map it to its wire form; raises ValidationError, no I/O."""
        try:
            if self.validator is not None:
                value = self.validator(value, self.values)
        except ValidationError as e:
            raise ValidationError(f"{self.name}: {e}") from None
        return self.values[value] if self.map_values else value


def control(
    get: str | None,
    set: str | None,
    doc: str,
    *,
    validator: Validator | None = None,
    values: Any = None,
    map_values: bool = False,
    get_process: Callable[[str], Any] | None = None,
) -> Any:
    """Declare a read/write instrument parameter (see `Control`)."""
    return Control(
        get,
        set,
        doc,
        validator=validator,
        values=values,
        map_values=map_values,
        get_process=get_process,
    )


def measurement(
    get: str,
    doc: str,
    *,
    values: Any = None,
    map_values: bool = False,
    get_process: Callable[[str], Any] | None = None,
) -> Any:
    """Declare a read-only instrument quantity (see `Control`)."""
    return Control(get, None, doc, values=values, map_values=map_values, get_process=get_process)


# -- the base driver -----------------------------------------------------------------------------

_ERROR_LINE = re.compile(r'^([+-]?\d+),"(.*)"$')
_QUEUE_DEPTH = 16  # entries an instrument's error queue holds (ICD)


@dataclass(frozen=True)
class Identity:
    """A parsed `*IDN?` reply."""

    maker: str
    model: str
    serial: str
    firmware: str

    def __str__(self) -> str:
        return f"{self.maker},{self.model},{self.serial},{self.firmware}"


class ScpiInstrument:
    """An instrument of the ICD: identity, calibration dates, error-checked exchanges.

    No I/O happens until `open()` (or `with`). `address` is a VISA resource name such as
    `TCPIP0::127.0.0.1::5025::SOCKET`.

    `timeout_s` (wall seconds) bounds the connect, the send and each read. What a read waits
    for is the instrument's answer to one line: milliseconds for a setting or a reading, and
    for the longest, a `FETC?` of a full 200000-sample acquisition (800 kB REAL, about 3 MB
    ASCII), well under a second on a bench LAN; the default 3 s covers that with margin on a
    loaded host. So no call waits for ever: a silent peer raises InstrumentTimeout after one
    `timeout_s`, a closed or refusing one InstrumentUnreachable at once. An exchange is a send
    and a few reads (a line reply: 3, a block: 6), so a peer that feeds each part just in time
    can stretch it to (reads + 1) x `timeout_s` at most; the error-queue drain after a device
    error starts no new read after one more `timeout_s`. After a timeout, a lost link or a
    garbled reply, the next exchange first reconnects (a fresh connection, so a late reply to
    the old query can never be read as the new one's) and sends `*CLS`.
    """

    MAKER: ClassVar[str] = "BENCHWORKS"
    MODEL: ClassVar[str] = ""

    def __init__(
        self,
        address: str,
        *,
        name: str | None = None,
        timeout_s: float = 3.0,
        transport: Transport | None = None,
    ) -> None:
        if not timeout_s > 0:
            raise ValidationError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.address = address
        self.timeout_s = timeout_s
        self._name = name
        self._transport = transport
        self._own_transport = transport is None
        self._open = False
        self._lock = threading.RLock()
        # After a timeout a late reply may still arrive, and after a link error or a garbled
        # reply the stream is not to be trusted: the next exchange reconnects first.
        self._stale_input = False
        self._identity: Identity | None = None

    @property
    def name(self) -> str:
        """How errors name this instrument: the given name, else model and address."""
        return self._name or f"{self.MODEL or type(self).__name__} at {self.address}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address}>"

    # -- connection ----------------------------------------------------------------------------
    def open(self) -> Self:
        """Connect (idempotent)."""
        with self._lock:
            if self._open:
                return self
            if self._transport is None:
                self._transport = SocketTransport(self.address, self.timeout_s)
            try:
                self._transport.open()
            except TimeoutError as e:
                raise InstrumentUnreachable(f"{self.name}: cannot connect: {e}") from e
            except ConnectionError as e:
                raise InstrumentUnreachable(f"{self.name}: {e}") from e
            self._open = True
            return self

    def close(self) -> None:
        """Disconnect (idempotent); the instrument's next client is served after this."""
        with self._lock:
            if self._transport is not None and self._open:
                self._transport.close()
            if self._own_transport:
                self._transport = None
            self._open = False
            self._identity = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- exchanges -----------------------------------------------------------------------------
    def write(self, command: str) -> None:
        """Send a command and check the error queue on the same line; raise on any error."""
        if "?" in command:
            raise ValidationError(f"{command!r} is a query: use ask()")
        self._exchange(command, query=False)

    def ask(self, query: str) -> str:
        """Send a query and return its reply line; raise on any error (without a timeout)."""
        reply = self._query(query)
        if isinstance(reply, bytes):
            raise ProtocolError(f"{self.name}: {query!r} answered a binary block")
        return reply

    def ask_block_or_line(self, query: str) -> bytes | str:
        """Send a query whose reply may be a definite-length block (bytes) or a line (str)."""
        return self._query(query)

    def _query(self, query: str) -> bytes | str:
        if not query.rstrip().split(" ")[0].endswith("?"):
            raise ValidationError(f"{query!r} is not a query: use write()")
        if _is_error_query(query):
            raise ValidationError("read the error queue with next_error()")
        reply = self._exchange(query, query=True)
        assert reply is not None
        return reply

    def next_error(self) -> tuple[int, str]:
        """Pop the oldest entry of the error queue: (code, message); (0, 'No error') if empty."""
        with self._lock:
            transport = self._ready()
            try:
                transport.write("SYST:ERR?")
                return self._parse_error(self._read_line(transport), "SYST:ERR?")
            except (TimeoutError, ConnectionError) as e:
                raise self._link_error(e, "SYST:ERR?") from e
            except ProtocolError:
                self._stale_input = True
                raise

    def _ready(self) -> Transport:
        if not self._open or self._transport is None:
            raise InstrumentUnreachable(f"{self.name} is not open")
        if self._stale_input:
            self.reconnect()
        return self._transport

    def reconnect(self) -> None:
        """Close the link, open a fresh one and `*CLS` (InstrumentUnreachable if that fails).

        Used instead of emptying the old link (pyvisa-py's `clear()` loops for ever on a closed
        peer). The error queue is the device's, not the connection's: an entry left by the
        exchange that failed (or a drain cut short) would otherwise be blamed on the next
        command. The identity is asked again on the new connection if wanted.
        """
        with self._lock:
            if not self._open or self._transport is None:
                raise InstrumentUnreachable(f"{self.name} is not open")
            self._stale_input = True  # until the new connection is up and in step
            self._identity = None
            self._transport.close()
            try:
                self._transport.open()
            except (TimeoutError, ConnectionError) as e:
                raise InstrumentUnreachable(f"{self.name}: cannot reconnect: {e}") from e
            self._stale_input = False
            self.clear()

    def _exchange(self, command: str, *, query: bool) -> bytes | str | None:
        with self._lock:
            transport = self._ready()
            reply: bytes | str | None = None
            try:
                # Two lines, not `;`: valid whether an instrument takes a `;` command as a full
                # path (the ICD's wording) or relative to the previous header (IEEE 488.2).
                transport.write(f"{command}\nSYST:ERR?")
                first = self._read_message(transport, command)
                if query and not (isinstance(first, str) and _ERROR_LINE.match(first)):
                    reply = first
                    error_line = self._read_line(transport)
                elif isinstance(first, str):
                    error_line = first  # a failed query sends no reply: this is the error line
                else:
                    raise ProtocolError(f"{self.name}: {command!r} answered a binary block")
            except (TimeoutError, ConnectionError) as e:
                raise self._link_error(e, command) from e
            except ProtocolError:
                self._stale_input = True
                raise
            progress()  # an answered exchange is run progress (the heartbeat's switch)
            code, message = self._parse_error(error_line, command)
            if code != 0:
                raise self._device_error(code, message, command)
            if query and reply is None:
                self._stale_input = True
                raise ProtocolError(f"{self.name}: {command!r} gave no reply and no error")
            return reply

    def _link_error(self, e: Exception, command: str) -> InstrumentTimeout:
        self._stale_input = True
        if isinstance(e, TimeoutError):
            return InstrumentTimeout(
                f"{self.name}: no reply to {command!r} within {self.timeout_s} s"
            )
        return InstrumentUnreachable(f"{self.name}: link lost during {command!r}: {e}")

    def _device_error(self, code: int, message: str, command: str) -> InstrumentError:
        """The typed error, after draining the queue; no entry is asked for after `timeout_s`.

        Whatever else was queued is kept on the exception (an older entry may be the one that
        explains this one). The drain stops at the ICD's queue depth, at its deadline, or at a
        link or protocol error (kept as `drain_error`; the next exchange reconnects): the
        device error is what the caller must see, not a failure to tidy up after it.
        """
        queued: list[tuple[int, str]] = []
        drain_error: DeviceError | None = None
        deadline = time.monotonic() + self.timeout_s
        for _ in range(_QUEUE_DEPTH + 1):
            if time.monotonic() >= deadline:
                self._stale_input = True  # entries may be left: start the next one afresh
                drain_error = InstrumentTimeout(
                    f"{self.name}: error queue not drained within {self.timeout_s} s"
                )
                break
            try:
                later = self.next_error()
            except (InstrumentTimeout, ProtocolError) as e:
                drain_error = e
                break
            if later[0] == 0:
                break
            queued.append(later)
        err = InstrumentError(self.name, code, message, command)
        err.queued = queued  # type: ignore[attr-defined]
        err.drain_error = drain_error  # type: ignore[attr-defined]
        return err

    def _parse_error(self, line: str, command: str) -> tuple[int, str]:
        m = _ERROR_LINE.match(line)
        if m is None:
            self._stale_input = True
            raise ProtocolError(
                f"{self.name}: expected an error-queue entry after {command!r}, got {line[:80]!r}"
            )
        return int(m[1]), m[2]

    def _read_line(self, transport: Transport) -> str:
        return transport.read_line().decode("ascii", errors="replace")

    def _read_message(self, transport: Transport, command: str) -> bytes | str:
        """One reply: the payload of a definite-length block (bytes), else a text line (str)."""
        first = transport.read_exact(1)
        if first == b"\n":
            return ""
        if first != b"#":
            return (first + transport.read_line()).decode("ascii", errors="replace")
        digits = transport.read_exact(1)
        if not digits.isdigit() or digits == b"0":
            self._stale_input = True
            raise ProtocolError(f"{self.name}: bad block header #{digits!r} after {command!r}")
        length = transport.read_exact(int(digits))
        if not length.isdigit():
            self._stale_input = True
            raise ProtocolError(f"{self.name}: bad block length {length!r} after {command!r}")
        payload = transport.read_exact(int(length)) if int(length) else b""
        if transport.read_line() != b"":
            self._stale_input = True
            raise ProtocolError(f"{self.name}: block after {command!r} not ended by a newline")
        return payload

    # -- common commands -----------------------------------------------------------------------
    calibration_date = measurement(
        "CAL:DATE?", "Date of the last calibration.", get_process=dt.date.fromisoformat
    )
    calibration_due = measurement(
        "CAL:DUE?", "Date the calibration is due.", get_process=dt.date.fromisoformat
    )

    @property
    def idn(self) -> Identity:
        """Maker, model, serial and firmware from `*IDN?` (asked once per connection)."""
        if self._identity is None:
            reply = self.ask("*IDN?")
            parts = [p.strip() for p in reply.split(",")]
            if len(parts) != 4:
                raise ProtocolError(f"{self.name}: *IDN? reply {reply!r} is not 4 fields")
            self._identity = Identity(*parts)
        return self._identity

    def check_identity(self) -> Identity:
        """The identity, if it is this class's maker and model; else raise WrongInstrument."""
        found = self.idn
        if (found.maker, found.model) != (self.MAKER, self.MODEL):
            raise WrongInstrument(self.address, f"{self.MAKER} {self.MODEL}", str(found))
        return found

    def reset(self) -> None:
        """`*RST`: default settings (acquisition aborted; ACT relays to defaults)."""
        self.write("*RST")

    def clear(self) -> None:
        """`*CLS`: empty the error queue."""
        self.write("*CLS")

    def opc(self) -> bool:
        """`*OPC?`: True once every earlier command has been executed (orders SCPI sequences)."""
        reply = self.ask("*OPC?")
        if reply != "1":
            raise ProtocolError(f"{self.name}: *OPC? answered {reply!r}")
        return True


def _is_error_query(query: str) -> bool:
    header = query.strip().lstrip(":").split(" ")[0].upper()
    return header in ("SYST:ERR?", "SYSTEM:ERROR?", "SYST:ERROR?", "SYSTEM:ERR?")


# -- measuring instruments -----------------------------------------------------------------------

STATES = ("IDLE", "ARMED", "RUN", "DONE")


@dataclass(frozen=True)
class AcquisitionSettings:
    """What `configure` set: sample i is at (i - pretrigger) / rate s after the trigger."""

    rate: float
    points: int
    pretrigger: int
    source: str
    data_format: str


class AcquiringInstrument(ScpiInstrument):
    """A reference instrument of the ICD: readings, triggered acquisitions, fetch as a Trace."""

    #: Channel name on the wire -> unit, in the instrument's order.
    CHANNELS: ClassVar[Mapping[str, str]] = {}

    rate = control(
        "ACQ:RATE?",
        "ACQ:RATE {}",
        "Sample rate in Hz, 10 to 10000.",
        validator=strict_range,
        values=(10, 10000),
        get_process=float,
    )
    points = control(
        "ACQ:POIN?",
        "ACQ:POIN {}",
        "Samples per channel in one acquisition, 1 to 200000.",
        validator=strict_integer_range,
        values=(1, 200000),
        get_process=int_reply,
    )
    pretrigger = control(
        "ACQ:PRET?",
        "ACQ:PRET {}",
        "Samples kept from before the trigger, 0 to points - 1 (the instrument checks the upper "
        "bound against its points).",
        validator=strict_integer_range,
        values=(0, 199999),
        get_process=int_reply,
    )
    trigger_source = control(
        "TRIG:SOUR?",
        "TRIG:SOUR {}",
        "'IMM' (at INIT), 'EXT' (next trigger-bus edge) or 'BUS' (*TRG).",
        validator=strict_discrete_set,
        values=("IMM", "EXT", "BUS"),
        get_process=choice_reply("IMMediate", "EXTernal", "BUS"),
    )
    data_format = control(
        "FORM:DATA?",
        "FORM:DATA {}",
        "'REAL' (binary float32 block, fast) or 'ASC' (text) for fetch; fetch reads either.",
        validator=strict_discrete_set,
        values=("ASC", "REAL"),
        get_process=choice_reply("ASCii", "REAL"),
    )
    state = measurement(
        "ACQ:STAT?",
        "Acquisition state: 'IDLE', 'ARMED', 'RUN' or 'DONE'.",
        get_process=choice_reply(*STATES),
    )

    @property
    def channels(self) -> list[str]:
        """The instrument's channels, in order."""
        return list(self.CHANNELS)

    def _channel(self, channel: str | None) -> str:
        if channel is None:
            if len(self.CHANNELS) != 1:
                raise ValidationError(f"{self.name}: name a channel, one of {self.channels}")
            return next(iter(self.CHANNELS))
        if channel not in self.CHANNELS:
            raise ValidationError(f"{self.name}: no channel {channel!r}; has {self.channels}")
        return channel

    def configure(
        self,
        rate: float,
        duration_s: float,
        pretrigger_s: float = 0.0,
        source: str = "EXT",
        data_format: str = "REAL",
    ) -> AcquisitionSettings:
        """Set up one acquisition covering `pretrigger_s` before to `duration_s` after the trigger.

        pretrigger = round(pretrigger_s * rate) and points = pretrigger + round(duration_s * rate)
        + 1, so the last sample is at duration_s (to the sample). Everything is validated before
        the first write. An acquisition left ARMED or RUN (say by a test that failed) is aborted
        first, since its settings could not change otherwise (-221); earlier data is discarded.
        """
        rate = strict_range(rate, (10, 10000))
        for label, x in (("duration_s", duration_s), ("pretrigger_s", pretrigger_s)):
            if not _is_number(x) or not math.isfinite(x) or x < 0:
                raise ValidationError(f"{self.name}: {label} = {x!r}: expected a number >= 0")
        pre = round(pretrigger_s * rate)
        points = pre + round(duration_s * rate) + 1
        if points > 200000:
            raise ValidationError(
                f"{self.name}: {duration_s} s + {pretrigger_s} s at {rate} Hz is {points} "
                f"samples; the instrument holds 200000"
            )
        settings = AcquisitionSettings(
            rate=rate,
            points=points,
            pretrigger=pre,
            source=strict_discrete_set(source, ("IMM", "EXT", "BUS")),
            data_format=strict_discrete_set(data_format, ("ASC", "REAL")),
        )
        self.abort()
        self.rate = settings.rate
        # POINts before PRETrigger: the new pretrigger may not fit the old points.
        self.points = settings.points
        self.pretrigger = settings.pretrigger
        self.trigger_source = settings.source
        self.data_format = settings.data_format
        return settings

    def arm(self) -> None:
        """INIT: IMM triggers at once, EXT waits for a trigger-bus edge, BUS for `trigger()`."""
        self.write("INIT")

    def trigger(self) -> None:
        """`*TRG`: the bus trigger (ignored unless armed with source BUS)."""
        self.write("*TRG")

    def abort(self) -> None:
        """ABOR: stop; state IDLE; data discarded."""
        self.write("ABOR")

    def wait_done(self, timeout_s: float, poll_s: float = 0.005) -> None:
        """Poll the state until DONE; InstrumentTimeout naming the last state after `timeout_s`.

        `timeout_s` is the host's wall-clock patience; the sleep only paces the polling.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            seen = self.state
            if seen == "DONE":
                return
            if time.monotonic() >= deadline:
                raise InstrumentTimeout(
                    f"{self.name}: acquisition not DONE within {timeout_s} s (state {seen})"
                )
            time.sleep(poll_s)

    def fetch(self, channel: str | None = None) -> np.ndarray:
        """The completed acquisition's samples of `channel` (float64; missing samples NaN)."""
        ch = self._channel(channel)
        query = f"FETC? {ch}"
        reply = self.ask_block_or_line(query)
        if isinstance(reply, bytes):
            if len(reply) % 4:
                raise ProtocolError(f"{self.name}: {query!r} block of {len(reply)} bytes")
            return np.frombuffer(reply, dtype="<f4").astype(np.float64)
        try:
            return np.array(reply.split(","), dtype=np.float64)
        except ValueError as e:
            raise ProtocolError(f"{self.name}: {query!r} reply is not numbers: {e}") from e

    def fetch_trace(self) -> Trace:
        """Every channel of the completed acquisition, on the instrument's device-time axis.

        Rate and pretrigger are read back from the instrument, so change no setting between the
        acquisition and this call.
        """
        rate, pretrigger = self.rate, self.pretrigger
        channels = {ch: self.fetch(ch) for ch in self.CHANNELS}
        return Trace.from_samples(
            channels,
            rate=rate,
            pretrigger=pretrigger,
            units=dict(self.CHANNELS),
            source=str(self.idn),
        )

    def measure(self, channel: str | None = None) -> float:
        """One reading now, in the channel's unit (NaN if the instrument has none)."""
        query = f"MEAS? {self._channel(channel)}"
        reply = self.ask(query)
        try:
            return float(reply)
        except ValueError as e:
            raise ProtocolError(f"{self.name}: {query!r} answered {reply!r}") from e
