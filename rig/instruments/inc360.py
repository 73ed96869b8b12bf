"""Driver for the INC-360 inclinometer: reference inversion angle."""

from __future__ import annotations

from typing import ClassVar

from .scpi import AcquiringInstrument


class INC360(AcquiringInstrument):
    """INC-360: channel ANGL in deg, -180 to 180 deg, 0.01 deg resolution."""

    MODEL: ClassVar[str] = "INC-360"
    CHANNELS: ClassVar[dict[str, str]] = {"ANGL": "deg"}
