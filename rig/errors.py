"""Typed errors of the rig: every device error and user mistake becomes one of these."""

from __future__ import annotations

from typing import ClassVar


class RigError(Exception):
    """Base of every error the rig raises on purpose."""


class ConfigError(RigError):
    """A user's input (profile, station file, option) is wrong; the message names where and why."""


class ProfileError(ConfigError):
    """A model profile is malformed or inconsistent."""

    def __init__(self, path: str, key: str, value: object, expected: str) -> None:
        self.path, self.key, self.value, self.expected = path, key, value, expected
        super().__init__(f"{path}: {key} = {value!r}: expected {expected}")


class StationError(ConfigError):
    """A station file is malformed."""


class DeviceError(RigError):
    """A device answered with an error or did not answer."""


class ModbusExceptionError(DeviceError):
    """The PLC answered a request with a Modbus exception response."""

    NAMES: ClassVar[dict[int, str]] = {
        1: "illegal function",
        2: "illegal data address",
        3: "illegal data value",
        4: "server device failure",
        6: "server device busy",
    }

    def __init__(self, code: int, request: str) -> None:
        self.code = code
        self.request = request
        name = self.NAMES.get(code, "unknown")
        super().__init__(f"Modbus exception {code:02d} ({name}) for {request}")


class IllegalFunction(ModbusExceptionError):
    """Exception 01."""


class IllegalAddress(ModbusExceptionError):
    """Exception 02."""


class IllegalValue(ModbusExceptionError):
    """Exception 03."""


class DeviceBusy(ModbusExceptionError):
    """Exception 06."""


MODBUS_EXCEPTIONS: dict[int, type[ModbusExceptionError]] = {
    1: IllegalFunction,
    2: IllegalAddress,
    3: IllegalValue,
    6: DeviceBusy,
}


def modbus_exception(code: int, request: str) -> ModbusExceptionError:
    """The typed exception for a Modbus exception code."""
    return MODBUS_EXCEPTIONS.get(code, ModbusExceptionError)(code, request)


class PlcNotResponding(DeviceError):
    """The PLC did not answer (powered off, booting, cable pulled).

    `partial`: several requests were sent in one segment and only some were answered."""

    partial: bool = False


class WriteRefused(RigError):
    """The driver refused to send a write the profile does not allow."""


class InstrumentError(DeviceError):
    """An instrument reported an error on its SCPI error queue."""

    def __init__(self, instrument: str, code: int, message: str, command: str = "") -> None:
        self.instrument, self.code, self.message, self.command = instrument, code, message, command
        after = f" after {command!r}" if command else ""
        super().__init__(f'{instrument}: SCPI error {code},"{message}"{after}')


class InstrumentTimeout(DeviceError):
    """An instrument did not answer a query in time."""


class SafeStateError(RigError):
    """The rig could not bring the table to a verified safe (stopped) state."""
