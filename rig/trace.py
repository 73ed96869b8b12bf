"""One instrument acquisition: samples per channel, in device time relative to the trigger."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Trace:
    """Samples of every channel of one acquisition.

    `t[i] = (i - pretrigger) / rate` seconds of device time after the trigger instant, as the
    instrument defines it; missing samples are NaN.
    """

    t: np.ndarray
    channels: dict[str, np.ndarray]
    units: dict[str, str]
    rate: float
    pretrigger: int
    source: str = ""
    meta: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_samples(
        cls,
        channels: dict[str, np.ndarray],
        *,
        rate: float,
        pretrigger: int,
        units: dict[str, str],
        source: str = "",
    ) -> Trace:
        """Build the device-time axis from the instrument's sample-time definition."""
        n = len(next(iter(channels.values())))
        for name, x in channels.items():
            if len(x) != n:
                raise ValueError(f"channel {name} has {len(x)} samples, expected {n}")
        t = (np.arange(n, dtype=float) - pretrigger) / float(rate)
        return cls(
            t=t, channels=channels, units=units, rate=rate, pretrigger=pretrigger, source=source
        )

    def __getitem__(self, channel: str) -> np.ndarray:
        return self.channels[channel]

    @property
    def duration(self) -> float:
        """Seconds of device time after the trigger covered by the trace."""
        return float(self.t[-1]) if len(self.t) else 0.0

    def to_csv(self) -> str:
        """The trace as CSV: t_s then one column per channel with its unit."""
        names = list(self.channels)
        buf = io.StringIO()
        buf.write(",".join(["t_s"] + [f"{n}_{self.units.get(n, '')}" for n in names]) + "\n")
        data = np.column_stack([self.t] + [self.channels[n] for n in names])
        np.savetxt(buf, data, delimiter=",", fmt="%.6g")
        return buf.getvalue()
