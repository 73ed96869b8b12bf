"""Emulated SCPI instruments (LC-2000, ENC-600, INC-360, ACT-3) and the socket server for them.

Split by seam: `protocol` (parsing and reply text), `device` (command tree, error queue),
`devices` (measuring instrument, actuator box), `instruments` (the models as a table of specs),
`server` (a device behind a raw TCP socket, as the ICD's `instruments-scpi.md` describes).
"""

from .device import MAKER, Identity, ScpiDevice
from .devices import Acquisition, ActuatorDevice, ChannelSpec, MeasuringDevice
from .instruments import INSTRUMENTS, InstrumentSpec, act3, enc600, inc360, lc2000
from .protocol import (
    ERROR_MESSAGES,
    Reply,
    ScpiError,
    definite_block,
    format_number,
    format_samples,
)
from .server import serve_scpi

__all__ = [
    "ERROR_MESSAGES",
    "INSTRUMENTS",
    "MAKER",
    "Acquisition",
    "ActuatorDevice",
    "ChannelSpec",
    "Identity",
    "InstrumentSpec",
    "MeasuringDevice",
    "Reply",
    "ScpiDevice",
    "ScpiError",
    "act3",
    "definite_block",
    "enc600",
    "format_number",
    "format_samples",
    "inc360",
    "lc2000",
    "serve_scpi",
]
