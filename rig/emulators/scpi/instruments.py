"""The emulated instrument models (LC-2000, ENC-600, INC-360, ACT-3) as a table of specs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..world import World
from .device import Identity
from .devices import ActuatorDevice, ChannelSpec, MeasuringDevice


@dataclass(frozen=True)
class InstrumentSpec:
    """One instrument model: identity defaults and measured channels (with the signals they read).

    A model without channels is an actuator box. Calling the spec builds one emulated device;
    `serial`, `firmware`, the calibration dates and the wiring (`signal_map`, channel -> world
    signal) may be overridden per device.
    """

    model: str
    serial: str
    firmware: str
    channels: tuple[ChannelSpec, ...] = ()

    @property
    def signal_map(self) -> dict[str, str]:
        """The default wiring: channel name -> the world signal it reads."""
        return {c.name: c.signal for c in self.channels}

    def __call__(
        self,
        world: World,
        *,
        serial: str | None = None,
        firmware: str | None = None,
        cal_date: dt.date | str | None = None,
        cal_due: dt.date | str | None = None,
        signal_map: dict[str, str] | None = None,
    ) -> MeasuringDevice | ActuatorDevice:
        """An emulated device of this model living in `world`."""
        identity = Identity(
            self.model,
            self.serial if serial is None else serial,
            self.firmware if firmware is None else firmware,
            cal_date,
            cal_due,
        )
        if not self.channels:
            if signal_map is not None:
                raise TypeError(f"{self.model} has no channels to wire to world signals")
            return ActuatorDevice(world, identity)
        return MeasuringDevice(
            world, identity, channels=self.channels, signal_map=signal_map or self.signal_map
        )


#: Every instrument model the emulated bench can build, by model name.
INSTRUMENTS: dict[str, InstrumentSpec] = {
    spec.model: spec
    for spec in (
        InstrumentSpec(
            "LC-2000",
            serial="LC0142",
            firmware="1.4",
            channels=(ChannelSpec("FORC", "N", -2000.0, 2000.0, signal="force"),),
        ),
        InstrumentSpec(
            "ENC-600",
            serial="ENC0311",
            firmware="1.2",
            channels=(
                ChannelSpec("POS", "mm", 0.0, 650.0, signal="position"),
                ChannelSpec("LIFT", "mm", 0.0, 60.0, signal="lift"),
            ),
        ),
        InstrumentSpec(
            "INC-360",
            serial="INC0205",
            firmware="1.1",
            channels=(ChannelSpec("ANGL", "deg", -180.0, 180.0, signal="angle"),),
        ),
        InstrumentSpec("ACT-3", serial="ACT0007", firmware="2.0"),
    )
}

# The models by their function names, as tests and scripts build them: `lc2000(world, ...)`.
lc2000 = INSTRUMENTS["LC-2000"]
enc600 = INSTRUMENTS["ENC-600"]
inc360 = INSTRUMENTS["INC-360"]
act3 = INSTRUMENTS["ACT-3"]
