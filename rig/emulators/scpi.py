"""Emulated SCPI instruments (LC-2000, ENC-600, INC-360, ACT-3) and the socket server for them.

The device logic is pure: `device.handle_line(line)` parses one received line and returns the
reply messages it produces, with no sockets involved. `serve_scpi` puts a device behind a raw TCP
socket exactly as the ICD (`instruments-scpi.md`) describes the real instruments.

Acquisitions are computed lazily: arming, triggering and finishing are instants of device time,
and the samples are drawn from the world's closed-form signal histories only when they are
fetched. So no loop races the clock, and the result is the same at any time scale.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import re
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import ConfigError
from .world import RELAY_DEFAULTS, World

MAKER = "BENCHWORKS"

#: Every error the ICD names, with its exact message text.
ERROR_MESSAGES: dict[int, str] = {
    0: "No error",
    -102: "Syntax error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -213: "Init ignored",
    -221: "Settings conflict",
    -222: "Data out of range",
    -224: "Illegal parameter value",
    -230: "Data corrupt or stale",
    -350: "Queue overflow",
}
QUEUE_SIZE = 16

#: A reply message: a text line, or a complete IEEE 488.2 definite-length block. The transport
#: appends the `\n` terminator to either.
Reply = str | bytes

IDLE, ARMED, RUN, DONE = "IDLE", "ARMED", "RUN", "DONE"

# A device samples on its own clock; this absorbs float rounding when a sample instant coincides
# with the arming instant, so that sample counts as recorded.
_TIME_EPS = 1e-9

_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_SEGMENT = re.compile(
    r"^\s*:?(?P<header>\*[A-Za-z]+|[A-Za-z][A-Za-z0-9]*(?::[A-Za-z][A-Za-z0-9]*)*)"
    r"(?P<query>\?)?(?:\s+(?P<params>\S.*?))?\s*$"
)
_PARAM = re.compile(r"^[A-Za-z0-9.+\-_]+$")


class ScpiError(Exception):
    """A command failed; the code goes onto the error queue (never onto the wire)."""

    def __init__(self, code: int) -> None:
        super().__init__(code, ERROR_MESSAGES[code])
        self.code = code


# -- parameter parsing ---------------------------------------------------------------------------


def _keyword(spelling: str) -> tuple[str, str]:
    """(short, long) forms of one ICD keyword spelling such as 'ACQuire'."""
    short = "".join(c for c in spelling if c.isupper() or c.isdigit() or c == "*")
    return short, spelling.upper()


def _match_choice(param: str, spellings: tuple[str, ...]) -> str:
    """The short form of the ICD spelling `param` names (exactly its short or long form)."""
    p = param.upper()
    for s in spellings:
        short, long = _keyword(s)
        if p in (short, long):
            return short
    raise ScpiError(-224)


def _number(param: str) -> float:
    if not _NUMBER.match(param):
        raise ScpiError(-224)
    return float(param)


def _integer(param: str) -> int:
    x = _number(param)
    # Counts are whole numbers; a fraction is not a value the instrument can take.
    if not x.is_integer():
        raise ScpiError(-224)
    return int(x)


def _boolean(param: str) -> bool:
    p = param.upper()
    if p in ("ON", "1"):
        return True
    if p in ("OFF", "0"):
        return False
    raise ScpiError(-224)


def format_number(x: float) -> str:
    """A reply number: plain decimal (integers without a point) or exponent form; NaN as `NaN`."""
    x = float(x)
    if x != x:
        return "NaN"
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x + 0.0).upper()


def format_samples(values: np.ndarray) -> str:
    """Comma-separated plain decimals; `repr` keeps 200000 samples fast and round-trip exact."""
    # `+ 0.0` turns -0.0 into 0.0; the only alphabetic repr left is 'nan'.
    text = ",".join(map(repr, (np.asarray(values, dtype=float) + 0.0).tolist()))
    return text.replace("nan", "NaN")


def definite_block(payload: bytes) -> bytes:
    """An IEEE 488.2 definite-length block: `#`, one digit n, n digits of length, the bytes."""
    length = str(len(payload))
    return b"#" + str(len(length)).encode() + length.encode() + payload


# -- the device framework ------------------------------------------------------------------------


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


class ScpiDevice:
    """A SCPI instrument: command tree, error queue, identity and calibration dates.

    Subclasses register their commands in `__init__` with `self.command(...)`.
    """

    def __init__(
        self,
        world: World,
        *,
        model: str,
        serial: str,
        firmware: str,
        cal_date: dt.date | str | None = None,
        cal_due: dt.date | str | None = None,
    ) -> None:
        self.world = world
        self.model, self.serial, self.firmware = model, serial, firmware
        # Relative defaults keep an emulated bench in calibration whatever day it runs on.
        today = dt.date.today()
        self.cal_date = _as_date(cal_date, today - dt.timedelta(days=90), "cal_date")
        self.cal_due = _as_date(cal_due, today + dt.timedelta(days=275), "cal_due")
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
        path = tuple(_keyword(k) for k in spelling.split(":"))
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
        m = _SEGMENT.match(segment)
        if m is None:
            raise ScpiError(-102)
        params: list[str] = []
        if m["params"] is not None:
            params = [p.strip() for p in m["params"].split(",")]
            if not all(_PARAM.match(p) for p in params):
                raise ScpiError(-102)
        mnemonics = m["header"].upper().split(":")
        query = m["query"] is not None
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


# -- measuring instruments -----------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelSpec:
    """One measured channel: its name on the wire, unit, range and resolution (decimals)."""

    name: str
    unit: str
    low: float
    high: float
    decimals: int = 2


@dataclass
class Acquisition:
    """One INIT: settings frozen at arming, the arm and trigger instants, and its noise seed."""

    rate: float
    points: int
    pretrigger: int
    source: str
    t_arm: float
    seed: tuple[int, int]
    t_trig: float | None = None
    data: dict[str, np.ndarray] | None = None

    def sample_times(self) -> np.ndarray:
        """Device time of every sample (needs the trigger instant)."""
        assert self.t_trig is not None
        return self.t_trig + (np.arange(self.points, dtype=float) - self.pretrigger) / self.rate

    def t_last(self) -> float:
        """Device time of the last sample."""
        assert self.t_trig is not None
        return self.t_trig + (self.points - 1 - self.pretrigger) / self.rate


DEFAULTS = {"rate": 1000.0, "points": 1000, "pretrigger": 0, "source": "IMM", "format": "ASC"}
_SOURCES = ("IMMediate", "EXTernal", "BUS")
_FORMATS = ("ASCii", "REAL")


class MeasuringDevice(ScpiDevice):
    """A reference instrument: channels sampled from world signals, MEAS?, acquisitions, FETC?."""

    def __init__(
        self,
        world: World,
        *,
        model: str,
        serial: str,
        firmware: str,
        channels: tuple[ChannelSpec, ...],
        signal_map: dict[str, str],
        cal_date: dt.date | str | None = None,
        cal_due: dt.date | str | None = None,
    ) -> None:
        super().__init__(
            world, model=model, serial=serial, firmware=firmware, cal_date=cal_date, cal_due=cal_due
        )
        self.channels = {c.name: c for c in channels}
        unknown = set(signal_map) - set(self.channels)
        if unknown or not signal_map:
            raise ConfigError(
                f"{model} signal_map {signal_map!r}: keys must be channels of {list(self.channels)}"
            )
        self.signal_map = dict(signal_map)
        # One seed per instrument, drawn from the world's: the whole bench replays identically.
        self._seed = int(world.rng.integers(2**63))
        self._meas_rng = np.random.default_rng([self._seed, 0])
        self._acq_count = 0
        self.rate = DEFAULTS["rate"]
        self.points = DEFAULTS["points"]
        self.pretrigger = DEFAULTS["pretrigger"]
        self.source = DEFAULTS["source"]
        self.format = DEFAULTS["format"]
        self.acquisition: Acquisition | None = None
        world.on_trigger(self._on_edge)

        ch = (0, 1) if len(self.channels) == 1 else 1
        self.command("MEASure", query=True, params=ch, handler=self._measure)
        self.command("FETCh", query=True, params=ch, handler=self._fetch)
        self.command("ACQuire:RATE", params=1, handler=self._set_rate)
        self.command("ACQuire:RATE", query=True, handler=lambda p: format_number(self.rate))
        self.command("ACQuire:POINts", params=1, handler=self._set_points)
        self.command("ACQuire:POINts", query=True, handler=lambda p: str(self.points))
        self.command("ACQuire:PRETrigger", params=1, handler=self._set_pretrigger)
        self.command("ACQuire:PRETrigger", query=True, handler=lambda p: str(self.pretrigger))
        self.command("ACQuire:STATe", query=True, handler=lambda p: self.state())
        self.command("TRIGger:SOURce", params=1, handler=self._set_source)
        self.command("TRIGger:SOURce", query=True, handler=lambda p: self.source)
        self.command("FORMat:DATA", params=1, handler=self._set_format)
        self.command("FORMat:DATA", query=True, handler=lambda p: self.format)
        self.command("INITiate", handler=self._init)
        self.command("ABORt", handler=lambda p: self._abort())
        self.command("*TRG", handler=lambda p: self._bus_trigger())

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> str:
        """IDLE, ARMED, RUN or DONE at the present device time."""
        acq = self.acquisition
        if acq is None:
            return IDLE
        if acq.t_trig is None:
            return ARMED
        # The last sample is taken at t_last: at that instant the acquisition is complete.
        return DONE if self.world.clock.now() >= acq.t_last() else RUN

    def reset(self) -> None:
        """Defaults, acquisition aborted and its data discarded."""
        self.rate = DEFAULTS["rate"]
        self.points = DEFAULTS["points"]
        self.pretrigger = DEFAULTS["pretrigger"]
        self.source = DEFAULTS["source"]
        self.format = DEFAULTS["format"]
        self.acquisition = None

    def _abort(self) -> None:
        self.acquisition = None

    def _check_settable(self) -> None:
        if self.state() in (ARMED, RUN):
            raise ScpiError(-221)

    def _set_rate(self, p: list[str]) -> None:
        x = _number(p[0])
        self._check_settable()
        if not 10 <= x <= 10000:
            raise ScpiError(-222)
        self.rate = x

    def _set_points(self, p: list[str]) -> None:
        n = _integer(p[0])
        self._check_settable()
        if not 1 <= n <= 200000:
            raise ScpiError(-222)
        self.points = n
        self.pretrigger = min(self.pretrigger, n - 1)

    def _set_pretrigger(self, p: list[str]) -> None:
        n = _integer(p[0])
        self._check_settable()
        if not 0 <= n <= self.points - 1:
            raise ScpiError(-222)
        self.pretrigger = n

    def _set_source(self, p: list[str]) -> None:
        s = _match_choice(p[0], _SOURCES)
        self._check_settable()
        self.source = s

    def _set_format(self, p: list[str]) -> None:
        # The output format does not change the acquisition, so it may change while armed.
        self.format = _match_choice(p[0], _FORMATS)

    def _init(self, p: list[str]) -> None:
        if self.state() in (ARMED, RUN):
            raise ScpiError(-213)
        t = self.world.advance()
        self._acq_count += 1
        acq = Acquisition(
            rate=self.rate,
            points=self.points,
            pretrigger=self.pretrigger,
            source=self.source,
            t_arm=t,
            seed=(self._seed, self._acq_count),
        )
        if acq.source == "IMM":
            acq.t_trig = t
        self.acquisition = acq

    def _on_edge(self, t: float) -> None:
        acq = self.acquisition
        if acq is not None and acq.source == "EXT" and acq.t_trig is None:
            acq.t_trig = t

    def _bus_trigger(self) -> None:
        acq = self.acquisition
        if acq is not None and acq.source == "BUS" and acq.t_trig is None:
            acq.t_trig = self.world.advance()

    # -- readings ------------------------------------------------------------------------------
    def _channel(self, p: list[str]) -> ChannelSpec:
        if not p:
            return next(iter(self.channels.values()))
        spec = self.channels.get(p[0].upper())
        if spec is None:
            raise ScpiError(-224)
        return spec

    def _true_values(self, spec: ChannelSpec, times: np.ndarray) -> np.ndarray:
        signal = self.signal_map.get(spec.name)
        if signal is None or signal not in self.world.signals:
            # Nothing is connected to this channel on this bench: no reading to give.
            return np.full(len(times), np.nan)
        return np.asarray(self.world.sample(signal, times), dtype=float)

    def _reading(self, spec: ChannelSpec, true: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        step = 10.0**-spec.decimals
        noisy = true + rng.normal(0.0, step, size=true.shape)
        # `+ 0.0` turns a rounded -0.0 into 0.0, so REAL and ASC carry the same value.
        return np.clip(np.round(noisy, spec.decimals), spec.low, spec.high) + 0.0

    def _measure(self, p: list[str]) -> str:
        spec = self._channel(p)
        t = self.world.advance()
        value = self._reading(spec, self._true_values(spec, np.array([t])), self._meas_rng)
        return format_number(float(value[0]))

    def acquisition_data(self) -> dict[str, np.ndarray]:
        """Samples of every channel of the completed acquisition (computed once, then kept)."""
        acq = self.acquisition
        if acq is None or self.state() != DONE:
            raise ScpiError(-230)
        if acq.data is None:
            times = acq.sample_times()
            recorded = times >= acq.t_arm - _TIME_EPS
            acq.data = {}
            for k, spec in enumerate(self.channels.values()):
                values = np.full(acq.points, np.nan)
                true = self._true_values(spec, times[recorded])
                # Per-channel stream: the noise does not depend on the order channels are fetched.
                rng = np.random.default_rng([*acq.seed, k])
                values[recorded] = self._reading(spec, true, rng)
                acq.data[spec.name] = values
        return acq.data

    def _fetch(self, p: list[str]) -> Reply:
        spec = self._channel(p)
        values = self.acquisition_data()[spec.name]
        if self.format == "REAL":
            return definite_block(values.astype("<f4").tobytes())
        return format_samples(values)


LC2000_CHANNELS = (ChannelSpec("FORC", "N", -2000.0, 2000.0),)
ENC600_CHANNELS = (ChannelSpec("POS", "mm", 0.0, 650.0), ChannelSpec("LIFT", "mm", 0.0, 60.0))
INC360_CHANNELS = (ChannelSpec("ANGL", "deg", -180.0, 180.0),)


def lc2000(
    world: World,
    *,
    serial: str = "LC0142",
    firmware: str = "1.4",
    cal_date: dt.date | str | None = None,
    cal_due: dt.date | str | None = None,
    signal_map: dict[str, str] | None = None,
) -> MeasuringDevice:
    """An emulated LC-2000 load cell indicator reading world signal 'force' on FORC."""
    return MeasuringDevice(
        world,
        model="LC-2000",
        serial=serial,
        firmware=firmware,
        channels=LC2000_CHANNELS,
        signal_map=signal_map or {"FORC": "force"},
        cal_date=cal_date,
        cal_due=cal_due,
    )


def enc600(
    world: World,
    *,
    serial: str = "ENC0311",
    firmware: str = "1.2",
    cal_date: dt.date | str | None = None,
    cal_due: dt.date | str | None = None,
    signal_map: dict[str, str] | None = None,
) -> MeasuringDevice:
    """An emulated ENC-600 encoder counter reading 'position' on POS and 'lift' on LIFT."""
    return MeasuringDevice(
        world,
        model="ENC-600",
        serial=serial,
        firmware=firmware,
        channels=ENC600_CHANNELS,
        signal_map=signal_map or {"POS": "position", "LIFT": "lift"},
        cal_date=cal_date,
        cal_due=cal_due,
    )


def inc360(
    world: World,
    *,
    serial: str = "INC0205",
    firmware: str = "1.1",
    cal_date: dt.date | str | None = None,
    cal_due: dt.date | str | None = None,
    signal_map: dict[str, str] | None = None,
) -> MeasuringDevice:
    """An emulated INC-360 inclinometer reading world signal 'angle' on ANGL."""
    return MeasuringDevice(
        world,
        model="INC-360",
        serial=serial,
        firmware=firmware,
        channels=INC360_CHANNELS,
        signal_map=signal_map or {"ANGL": "angle"},
        cal_date=cal_date,
        cal_due=cal_due,
    )


# -- the actuator box ----------------------------------------------------------------------------


def set_relays(world: World, changes: dict[str, bool]) -> bool:
    """Switch several ACT relays at one instant with ONE trigger-bus edge; True if any changed.

    `World.set_relay` issues an edge per relay; `*RST` must issue one edge in all. Until the
    world offers this itself (`World.set_relays`), it is done here under the world's lock with
    exactly the steps `set_relay` takes, in the same order.
    """
    native = getattr(world, "set_relays", None)
    if native is not None:
        return bool(native(changes))
    with world.lock:
        t = world.advance()
        changed = {n: on for n, on in changes.items() if world.relays[n] != on}
        if not changed:
            return False
        world.relays.update(changed)
        world.trigger_edges.append(t)
        for listener in world._edge_listeners:
            listener(t)
        for m in world.models:
            for name, on in changed.items():
                m.on_relay(name, on, t)
        return True


class ActuatorDevice(ScpiDevice):
    """The ACT-3 actuator box: three relays on the world, each change an edge on the trigger bus."""

    RELAY_COMMANDS: ClassVar[dict[str, str]] = {
        "estop": "OUTPut:ESTop",
        "patient": "OUTPut:PATient",
        "power": "OUTPut:POWer",
    }

    def __init__(
        self,
        world: World,
        *,
        model: str = "ACT-3",
        serial: str = "ACT0007",
        firmware: str = "2.0",
        cal_date: dt.date | str | None = None,
        cal_due: dt.date | str | None = None,
    ) -> None:
        super().__init__(
            world, model=model, serial=serial, firmware=firmware, cal_date=cal_date, cal_due=cal_due
        )
        # "Since power-up": the box powers up when the emulated bench creates it.
        self._edges_at_power_up = len(world.trigger_edges)
        for relay, spelling in self.RELAY_COMMANDS.items():
            self.command(spelling, params=1, handler=self._setter(relay))
            self.command(spelling, query=True, handler=self._getter(relay))
        self.command("TRIGger:COUNt", query=True, handler=lambda p: str(self.trigger_count))

    @property
    def trigger_count(self) -> int:
        """Trigger-bus edges issued since power-up."""
        return len(self.world.trigger_edges) - self._edges_at_power_up

    def _setter(self, relay: str) -> Callable[[list[str]], None]:
        def handler(p: list[str]) -> None:
            self.world.set_relay(relay, _boolean(p[0]))

        return handler

    def _getter(self, relay: str) -> Callable[[list[str]], str]:
        return lambda p: "1" if self.world.relays[relay] else "0"

    def reset(self) -> None:
        """Relays to their defaults with one trigger edge if any changes."""
        set_relays(self.world, dict(RELAY_DEFAULTS))


def act3(
    world: World,
    *,
    serial: str = "ACT0007",
    firmware: str = "2.0",
    cal_date: dt.date | str | None = None,
    cal_due: dt.date | str | None = None,
) -> ActuatorDevice:
    """An emulated ACT-3 actuator box switching the world's relays."""
    return ActuatorDevice(
        world, serial=serial, firmware=firmware, cal_date=cal_date, cal_due=cal_due
    )


# -- the socket server ---------------------------------------------------------------------------


def _wire(reply: Reply) -> bytes:
    return (reply.encode("ascii") if isinstance(reply, str) else reply) + b"\n"


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
            writer.write(b"".join(_wire(r) for r in replies))
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
