"""Emulated instrument logic: a measuring instrument, and the actuator box that drives the relays.

`MeasuringDevice` samples world signals on its channels (MEAS?, acquisitions, FETC?);
`ActuatorDevice` switches the world's relays, each change an edge on the trigger bus. Which
models exist, with which channels, is data: `instruments.py`.

Acquisitions are computed lazily: arming, triggering and finishing are instants of device time,
and the samples are drawn from the world's closed-form signal histories only when they are
fetched. So no loop races the clock, and the result is the same at any time scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...errors import ConfigError
from ..world import RELAY_DEFAULTS, World
from .device import Identity, ScpiDevice
from .protocol import (
    Reply,
    ScpiError,
    definite_block,
    format_number,
    format_samples,
    parse_boolean,
    parse_choice,
    parse_integer,
    parse_number,
)

IDLE, ARMED, RUN, DONE = "IDLE", "ARMED", "RUN", "DONE"

# A device samples on its own clock; this absorbs float rounding when a sample instant coincides
# with the arming instant, so that sample counts as recorded.
_TIME_EPS = 1e-9

# -- measuring instruments -----------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelSpec:
    """One measured channel: its name on the wire, unit, range and resolution (decimals).

    `signal` is the world signal the channel reads on an emulated bench unless a device is wired
    otherwise (`signal_map`).
    """

    name: str
    unit: str
    low: float
    high: float
    decimals: int = 2
    signal: str = ""


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
        identity: Identity,
        *,
        channels: tuple[ChannelSpec, ...],
        signal_map: dict[str, str],
    ) -> None:
        super().__init__(world, identity)
        self.channels = {c.name: c for c in channels}
        unknown = set(signal_map) - set(self.channels)
        if unknown or not signal_map:
            raise ConfigError(
                f"{self.model} signal_map {signal_map!r}: "
                f"keys must be channels of {list(self.channels)}"
            )
        self.signal_map = dict(signal_map)
        # One seed per instrument, drawn from the world's: the whole bench replays identically.
        self._seed = int(world.rng.integers(2**63))
        self._meas_rng = np.random.default_rng([self._seed, 0])
        self._acq_count = 0
        self.rate: float
        self.points: int
        self.pretrigger: int
        self.source: str
        self.format: str
        self.acquisition: Acquisition | None
        self.reset()  # power-up settings are the *RST ones
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
        x = parse_number(p[0])
        self._check_settable()
        if not 10 <= x <= 10000:
            raise ScpiError(-222)
        self.rate = x

    def _set_points(self, p: list[str]) -> None:
        n = parse_integer(p[0])
        self._check_settable()
        if not 1 <= n <= 200000:
            raise ScpiError(-222)
        self.points = n
        self.pretrigger = min(self.pretrigger, n - 1)

    def _set_pretrigger(self, p: list[str]) -> None:
        n = parse_integer(p[0])
        self._check_settable()
        if not 0 <= n <= self.points - 1:
            raise ScpiError(-222)
        self.pretrigger = n

    def _set_source(self, p: list[str]) -> None:
        s = parse_choice(p[0], _SOURCES)
        self._check_settable()
        self.source = s

    def _set_format(self, p: list[str]) -> None:
        # The output format does not change the acquisition, so it may change while armed.
        self.format = parse_choice(p[0], _FORMATS)

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


# -- the actuator box ----------------------------------------------------------------------------


class ActuatorDevice(ScpiDevice):
    """The ACT-3 actuator box: three relays on the world, each change an edge on the trigger bus."""

    RELAY_COMMANDS: ClassVar[dict[str, str]] = {
        "estop": "OUTPut:ESTop",
        "patient": "OUTPut:PATient",
        "power": "OUTPut:POWer",
    }

    def __init__(self, world: World, identity: Identity) -> None:
        super().__init__(world, identity)
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
            self.world.set_relay(relay, parse_boolean(p[0]))

        return handler

    def _getter(self, relay: str) -> Callable[[list[str]], str]:
        return lambda p: "1" if self.world.relays[relay] else "0"

    def reset(self) -> None:
        """Relays to their defaults with one trigger edge if any changes."""
        self.world.set_relays(dict(RELAY_DEFAULTS))
