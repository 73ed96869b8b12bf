"""Driver for the ENC-600 linear encoder counter: roller carriage position and roller lift."""

from __future__ import annotations

from typing import ClassVar

from .scpi import AcquiringInstrument


class ENC600(AcquiringInstrument):
    """ENC-600: POS carriage position (0-650 mm) and LIFT roller lift (0-60 mm), 0.01 mm."""

    MODEL: ClassVar[str] = "ENC-600"
    CHANNELS: ClassVar[dict[str, str]] = {"POS": "mm", "LIFT": "mm"}
