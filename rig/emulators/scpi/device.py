"""The SCPI device framework: a command tree, the error queue, identity and calibration dates.

A device is pure logic: `handle_line(line)` parses one received line and returns the reply
messages it produces, with no sockets involved (the server puts it on the wire).
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import ConfigError
from ..world import World
from .protocol import ERROR_MESSAGES, QUEUE_SIZE, Reply, ScpiError, keyword_forms, parse_segment

MAKER = "BENCHWORKS"


@dataclass(frozen=True)
class Command:
    """One header of a device's command tree, as a set command or as a query."""

    path: tuple[tuple[str, str], ...]
    query: bool
    handler: Callable[[list[str]], Reply | None]
    min_params: int
    max_params: int

    def matches(self, mnemonics: list[str], query: bool) -> bool:
        """True if the received upper-case `mnemonics` name this command."""
        if query != self.query or len(mnemonics) != len(self.path):
            return False
        return all(m in forms for m, forms in zip(mnemonics, self.path, strict=True))


@dataclass(frozen=True)
class Identity:
    """Who a device says it is: the `*IDN?` fields and its calibration dates (None: current)."""

    model: str
    serial: str
    firmware: str
    cal_date: dt.date | str | None = None
    cal_due: dt.date | str | None = None


class ScpiDevice:
    """A SCPI instrument: command tree, error queue, identity and calibration dates.

    Subclasses register their commands in `__init__` with `self.command(...)`.
    """

    def __init__(self, world: World, identity: Identity) -> None:
        self.world = world
        self.model, self.serial, self.firmware = identity.model, identity.serial, identity.firmware
        # Relative defaults keep an emulated bench in calibration whatever day it runs on.
        today = dt.date.today()
        self.cal_date = _as_date(identity.cal_date, today - dt.timedelta(days=90), "cal_date")
        self.cal_due = _as_date(identity.cal_due, today + dt.timedelta(days=275), "cal_due")
        self.errors: deque[int] = deque()
        self._commands: list[Command] = []
        self.command("*IDN", query=True, handler=lambda p: self.idn)
        self.command("*RST", handler=lambda p: self.reset())
        self.command("*CLS", handler=lambda p: self.errors.clear())
        self.command("*OPC", query=True, handler=lambda p: "1")
        self.command("SYSTem:ERRor", query=True, handler=lambda p: self._pop_error())
        self.command("CALibration:DATE", query=True, handler=lambda p: self.cal_date.isoformat())
        self.command("CALibration:DUE", query=True, handler=lambda p: self.cal_due.isoformat())

    @property
    def idn(self) -> str:
        """The `*IDN?` reply."""
        return f"{MAKER},{self.model},{self.serial},{self.firmware}"

    def command(
        self,
        spelling: str,
        *,
        handler: Callable[[list[str]], Reply | None],
        query: bool = False,
        params: int | tuple[int, int] = 0,
    ) -> None:
        """Register `spelling` (ICD case: upper = short form) with `params` = n or (min, max)."""
        lo, hi = (params, params) if isinstance(params, int) else params
        path = tuple(keyword_forms(k) for k in spelling.split(":"))
        self._commands.append(Command(path, query, handler, lo, hi))

    def push_error(self, code: int) -> None:
        """Queue an error; a full queue keeps 16 entries and its last becomes -350."""
        if len(self.errors) < QUEUE_SIZE:
            self.errors.append(code)
        else:
            self.errors[-1] = -350

    def _pop_error(self) -> str:
        code = self.errors.popleft() if self.errors else 0
        return f'{code},"{ERROR_MESSAGES[code]}"'

    def reset(self) -> None:
        """`*RST`: default settings. The error queue is left alone (that is `*CLS`)."""

    def handle_line(self, line: str) -> list[Reply]:
        """Execute one received line (without its terminator); return the reply messages.

        A reply is a `str` line, or `bytes` for a FETC? REAL definite-length block
        (`#<n><len><data>`); either goes on the wire followed by one `\n`.

        Commands run in order; one that fails queues its error and the rest of the line still
        runs, so a trailing `SYST:ERR?` always answers.
        """
        line = line.rstrip("\r\n")
        if not line.strip():
            return []
        replies: list[Reply] = []
        with self.world.lock:
            for segment in line.split(";"):
                try:
                    reply = self._execute(segment)
                except ScpiError as e:
                    self.push_error(e.code)
                    continue
                if reply is not None:
                    replies.append(reply)
        return replies

    def _execute(self, segment: str) -> Reply | None:
        mnemonics, query, params = parse_segment(segment)
        for cmd in self._commands:
            if cmd.matches(mnemonics, query):
                break
        else:
            raise ScpiError(-113)
        if len(params) > cmd.max_params:
            raise ScpiError(-108)
        if len(params) < cmd.min_params:
            raise ScpiError(-109)
        reply = cmd.handler(params)
        if query and reply is None:  # a handler bug must not silently desynchronise a client
            raise AssertionError(f"query {segment!r} produced no reply")
        return reply if query else None


def _as_date(value: dt.date | str | None, default: dt.date, name: str) -> dt.date:
    if value is None:
        return default
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError as e:
        raise ConfigError(f"{name} = {value!r}: expected a date YYYY-MM-DD") from e
