"""Driver for the LC-2000 load cell indicator: reference force in the traction cord."""

from __future__ import annotations

from typing import ClassVar

from .scpi import AcquiringInstrument


class LC2000(AcquiringInstrument):
    """LC-2000: channel FORC in N (tension positive), -2000 to 2000 N, 0.01 N resolution."""

    MODEL: ClassVar[str] = "LC-2000"
    CHANNELS: ClassVar[dict[str, str]] = {"FORC": "N"}
