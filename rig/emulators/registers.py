"""The ICD's common PLC interface as data: register rows and addresses, codes and value enums."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

ICD_VERSION = 100
UNIT_ID = 1
SERVICE_KEY_ENTER = 0xA5A5

# Modbus exception codes
ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
DEVICE_BUSY = 6

READ_FUNCTIONS = (3, 4)
WRITE_FUNCTIONS = (6, 16)
MAX_READ_COUNT = 125
MAX_WRITE_COUNT = 123


class State(IntEnum):
    """STATE input register."""

    IDLE = 0
    RUNNING = 1
    STOPPING = 2
    ESTOP = 3
    FAULT = 4


class Fault(IntEnum):
    """FAULT input register (latched cause)."""

    NONE = 0
    ESTOP = 1
    PATIENT_STOP = 2
    OVERFORCE = 3
    OVERTRAVEL = 4
    OVERSPEED = 5
    COMM_LOSS = 6
    RESERVED = 7
    POWER_RESTORED = 8


class Command(IntEnum):
    """Values of the COMMAND holding register."""

    NONE = 0
    START = 1
    STOP = 2
    RESET = 3
    ESTOP = 4


class Status(IntEnum):
    """Bits of the STATUS input register."""

    ESTOP_OPEN = 1 << 0
    PATIENT_PRESSED = 1 << 1
    AT_SETPOINT = 1 << 2
    MOTOR_ENABLED = 1 << 3
    BRAKE_ENGAGED = 1 << 4
    SERVICE_MODE = 1 << 5


@dataclass(frozen=True)
class HoldingRegister:
    """One holding register row of the ICD (range in raw register units, e.g. x10)."""

    addr: int
    name: str
    lo: int
    hi: int
    default: int
    signed: bool = False
    setting: bool = True  # refused with 06 while RUNNING or STOPPING

    def decode(self, raw: int) -> int:
        """Engineering integer of a raw u16 (two's complement for s16)."""
        return raw - 0x10000 if self.signed and raw >= 0x8000 else raw

    def encode(self, value: int) -> int:
        """Raw u16 of an engineering integer."""
        return value & 0xFFFF

    def accepts(self, raw: int) -> bool:
        """True if a raw value is inside the row's range."""
        return self.lo <= self.decode(raw) <= self.hi


# Common holding registers (every kind)
COMMAND = 0
HEARTBEAT = 1
WATCHDOG_MS = 2
SESSION_S = 3
SERVICE_KEY = 900
SENSOR_OFFSET = 901

COMMON_HOLDING: tuple[HoldingRegister, ...] = (
    HoldingRegister(COMMAND, "COMMAND", 0, 4, 0, setting=False),
    HoldingRegister(HEARTBEAT, "HEARTBEAT", 0, 0xFFFF, 0, setting=False),
    HoldingRegister(WATCHDOG_MS, "WATCHDOG_MS", 100, 5000, 1000),
    HoldingRegister(SESSION_S, "SESSION_S", 60, 5940, 900),
    HoldingRegister(SERVICE_KEY, "SERVICE_KEY", 0, 0xFFFF, 0, setting=False),
    HoldingRegister(SENSOR_OFFSET, "SENSOR_OFFSET", -32768, 32767, 0, signed=True, setting=False),
)

# Common input registers (every kind): address -> name; u32 values take two addresses
COMMON_INPUTS: dict[int, str] = {
    0: "KIND",
    1: "ICD_VERSION",
    2: "SERIAL_HI",
    3: "SERIAL_LO",
    4: "FIRMWARE",
    5: "STATE",
    6: "STATUS",
    7: "FAULT",
    8: "SESSION_ELAPSED",
    9: "CYCLES",
    10: "UPTIME_MS_HI",
    11: "UPTIME_MS_LO",
    12: "FAULT_UPTIME_MS_HI",
    13: "FAULT_UPTIME_MS_LO",
}


def s16_x10(value: float) -> int:
    """Raw u16 of an s16 x10 reading: rounded to 0.1, clipped to the s16 range."""
    return max(-0x8000, min(0x7FFF, round(value * 10.0))) & 0xFFFF
