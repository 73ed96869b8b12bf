"""The profile's data model: model info, registers, rules, safe state, requirements."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from rig.errors import ConfigError

from .expr import Expr

SPACES = ("holding", "input")
# type -> (lowest raw value, highest raw value, registers taken)
TYPES: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {"u16": (0, 0xFFFF, 1), "s16": (-0x8000, 0x7FFF, 1), "u32": (0, 0xFFFF_FFFF, 2)}
)
ACCESS = ("r", "rw")
GROUPS = ("setting", "command", "heartbeat", "service", "identity", "status", "measurement")
KIND_NAMES = ("traction", "roller", "inversion")

# The driver and the safe-state guard address these by name on every model.
REQUIRED_REGISTERS: Mapping[str, str] = MappingProxyType(
    {
        "KIND": "input",
        "STATE": "input",
        "STATUS": "input",
        "FAULT": "input",
        "UPTIME_MS": "input",
        "FAULT_UPTIME_MS": "input",
        "COMMAND": "holding",
        "HEARTBEAT": "holding",
        "WATCHDOG_MS": "holding",
    }
)
REQUIRED_COMMANDS = ("START", "STOP", "RESET", "ESTOP")

Number = int | float


# letters first: bench, demo and emulated units (T1, DEMO-TT-890, MATRIX); upper case, digits, -
DEFAULT_SERIAL_PATTERN = r"[A-Z][A-Z0-9-]{0,31}"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """The `[model]` table: what the table is and which reference instrument judges it."""

    name: str
    kind: int
    kind_name: str
    description: str
    icd_version: int
    reference_role: str
    reference_model: str
    reference_channel: str
    primary_unit: str
    # a scanned serial must match this whole (re.fullmatch); checked before anything moves
    serial_pattern: str = DEFAULT_SERIAL_PATTERN


@dataclass(frozen=True, slots=True)
class OperatorStep:
    """A step a person does on a real bench before a run (`[[operator_step]]`), e.g. fitting a
    harness; confirmed on the operator station and recorded with who confirmed it."""

    id: str
    text: str


@dataclass(frozen=True, slots=True)
class SafeLimit:
    """One quantity that must be within `max` (absolute) for the table to be safe.

    Read from the reference instrument's `channel` (the second source), or from the PLC's
    `register` when the instrument does not answer. `held_by`, a STATUS bit: a value past the
    limit while that bit is set is "held" (e.g. an inverted frame on its brake), reported as
    such rather than as safe.
    """

    name: str
    channel: str
    register: str
    max: float
    held_by: str | None = None


@dataclass(frozen=True, slots=True)
class SafeState:
    """What "stopped and safe" means for this model; checked after every test.

    `stop_s` and `estop_s` are the device seconds the make-safe ladder gives a controlled stop
    and an emergency stop (software or relay) to show their effect before escalating.
    """

    states: tuple[str, ...]
    motor_disabled: bool
    reference_max: float | None = None
    reference_still: float | None = None
    limits: tuple[SafeLimit, ...] = ()
    stop_s: float = 60.0
    estop_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Register:
    """One PLC register: where it is, how raw words map to engineering units, and its limits."""

    name: str
    space: str
    address: int
    type: str
    scale: Number = 1
    unit: str = ""
    min: Number | None = None
    max: Number | None = None
    default: Number | None = None
    access: str = "r"
    group: str = "status"
    enum: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    bits: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    doc: str = ""

    @property
    def count(self) -> int:
        """Registers taken (2 for u32)."""
        return TYPES[self.type][2]

    @property
    def end(self) -> int:
        """One past the last address taken."""
        return self.address + self.count

    @property
    def writable(self) -> bool:
        """True when the profile allows the host to write it."""
        return self.access == "rw"

    @property
    def scaled(self) -> bool:
        """True when the raw value is not the engineering value."""
        return self.scale != 1

    def raw_int(self, value: Number | str) -> int:
        """The raw integer (signed for s16) for an engineering value or an enum name."""
        if isinstance(value, str):
            return self.enum_value(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{self.name}: {value!r} is not a number")
        if not math.isfinite(value):
            raise ValueError(f"{self.name}: {value!r} is not finite")
        scaled = value * self.scale
        if not math.isfinite(scaled):
            raise ValueError(f"{self.name}: {value!r} x{self.scale} is not finite")
        raw = round(scaled)
        low, high, _ = TYPES[self.type]
        if not low <= raw <= high:
            raise ValueError(
                f"{self.name}: {value!r} is raw {raw}, outside {self.type} {low}..{high}"
                + (f" (x{self.scale})" if self.scaled else "")
            )
        return raw

    def to_raw(self, value: Number | str) -> list[int]:
        """Register words for an engineering value; ValueError if the type cannot hold it."""
        return self.words(self.raw_int(value))

    def words(self, raw: int) -> list[int]:
        """Register words for a raw integer of this type (s16 two's complement, u32 high first)."""
        low, high, _ = TYPES[self.type]
        if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
            raise ValueError(f"{self.name}: raw {raw!r} outside {self.type} {low}..{high}")
        if self.type == "u32":
            return [raw >> 16, raw & 0xFFFF]
        return [raw & 0xFFFF]

    def raw_from_words(self, words: Sequence[int]) -> int:
        """The raw integer (signed for s16) that register words hold."""
        if len(words) != self.count or any(not 0 <= w <= 0xFFFF for w in words):
            raise ValueError(f"{self.name}: {list(words)!r} is not {self.count} register word(s)")
        if self.type == "u32":
            return (words[0] << 16) | words[1]
        if self.type == "s16" and words[0] & 0x8000:
            return words[0] - 0x10000
        return words[0]

    def value_of(self, raw: int) -> Number:
        """The engineering value of a raw integer: int when unscaled, else float."""
        return raw if not self.scaled else raw / self.scale

    def from_raw(self, words: Sequence[int]) -> Number:
        """The engineering value register words hold."""
        return self.value_of(self.raw_from_words(words))

    def enum_value(self, name: str) -> int:
        """The raw value of an enum name (ValueError naming the known ones)."""
        try:
            return self.enum[name]
        except KeyError:
            known = ", ".join(self.enum) or "none"
            raise ValueError(f"{self.name} has no value named {name!r} (known: {known})") from None

    def enum_name(self, raw: int) -> str:
        """The name of a raw value; `UNKNOWN(<raw>)` for one the profile does not name.

        A string rather than an exception, so that an unexpected state fails a safe-state check
        with the value in the message instead of crashing the check.
        """
        for name, value in self.enum.items():
            if value == raw:
                return name
        return f"UNKNOWN({raw})"

    def bit(self, raw: int, name: str) -> bool:
        """The named bit of a raw value."""
        try:
            index = self.bits[name]
        except KeyError:
            known = ", ".join(self.bits) or "none"
            raise ConfigError(f"{self.name} has no bit named {name!r} (known: {known})") from None
        return bool((raw >> index) & 1)

    def bit_dict(self, raw: int) -> dict[str, bool]:
        """Every named bit of a raw value."""
        return {name: bool((raw >> index) & 1) for name, index in self.bits.items()}

    def format(self, value: Number | str) -> str:
        """A value with its unit, for messages."""
        return f"{value} {self.unit}" if self.unit and not isinstance(value, str) else f"{value}"

    def range_text(self) -> str:
        """The allowed range, for messages."""
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.min}..{self.max}{unit}"

    def range_problem(self, value: Number | str) -> str | None:
        """Why `value` is outside this register's own range, or None.

        Compared in raw units, which is what the PLC will see.
        """
        try:
            raw = self.raw_int(value)
        except ValueError as exc:
            return str(exc)
        if self.min is not None and raw < self.raw_int(self.min):
            return f"{self.name} = {self.format(value)} is below {self.range_text()}"
        if self.max is not None and raw > self.raw_int(self.max):
            return f"{self.name} = {self.format(value)} is above {self.range_text()}"
        if self.enum and raw not in self.enum.values():
            return f"{self.name} = {value!r} is none of {dict(self.enum)}"
        return None


@dataclass(frozen=True, slots=True)
class MaxByRule:
    """`register`'s maximum depends on the value of `by` (FORCE_SET by HARNESS).

    `max` is keyed as in the TOML schema, by the raw value of `by` as a string (`"1"`), even
    where the file used an enum name (`CERVICAL`).
    """

    kind: ClassVar[str] = "max_by"
    register: str
    by: str
    max: Mapping[str, float]

    @property
    def involves(self) -> tuple[str, ...]:
        """The registers whose values the rule reads."""
        return (self.register, self.by)

    def limit_for(self, by_value: Number) -> float | None:
        """The maximum of `register` when `by` holds `by_value` (None: the rule sets none)."""
        return self.max.get(str(int(by_value)))

    def violation(self, values: Mapping[str, Number]) -> str | None:
        """Why `values` break the rule, or None (also when a value it needs is missing)."""
        if self.register not in values or self.by not in values:
            return None
        limit = self.limit_for(values[self.by])
        if limit is None or values[self.register] <= limit + _eps(limit):
            return None
        return (
            f"{self.register} = {values[self.register]} is above {limit}, "
            f"the maximum with {self.by} = {values[self.by]}"
        )


@dataclass(frozen=True, slots=True)
class MinSpanRule:
    """`registers[1] - registers[0]` must be at least `min` (roller travel)."""

    kind: ClassVar[str] = "min_span"
    registers: tuple[str, str]
    min: float

    @property
    def involves(self) -> tuple[str, ...]:
        """The registers whose values the rule reads."""
        return self.registers

    def violation(self, values: Mapping[str, Number]) -> str | None:
        """Why `values` break the rule, or None (also when a value it needs is missing)."""
        first, second = self.registers
        if first not in values or second not in values:
            return None
        span = values[second] - values[first]
        if span + _eps(self.min) >= self.min:
            return None
        return (
            f"{second} - {first} = {values[second]} - {values[first]} = {span} "
            f"is below the minimum span {self.min}"
        )


@dataclass(frozen=True, slots=True)
class NotAboveRule:
    """`register` may not exceed the value of register `limit` (ANGLE_SET by ANGLE_LIMIT)."""

    kind: ClassVar[str] = "not_above"
    register: str
    limit: str

    @property
    def involves(self) -> tuple[str, ...]:
        """The registers whose values the rule reads."""
        return (self.register, self.limit)

    def violation(self, values: Mapping[str, Number]) -> str | None:
        """Why `values` break the rule, or None (also when a value it needs is missing)."""
        if self.register not in values or self.limit not in values:
            return None
        if values[self.register] <= values[self.limit] + _eps(values[self.limit]):
            return None
        return (
            f"{self.register} = {values[self.register]} is above "
            f"{self.limit} = {values[self.limit]}"
        )


Rule = MaxByRule | MinSpanRule | NotAboveRule


def _eps(x: float) -> float:
    # Values come from scaled integers; this only absorbs float noise, never a real excess.
    return 1e-9 * max(1.0, abs(x))


@dataclass(frozen=True, slots=True)
class MeasurementSpec:
    """One quantity a requirement judges, with its limits as expressions."""

    name: str
    unit: str
    variables: tuple[str, ...]
    low: Expr | None
    high: Expr | None
    equals: float | None
    description: str
    constants: Mapping[str, float] = field(repr=False)

    def limits(self, env: Mapping[str, float] | None = None) -> tuple[float | None, float | None]:
        """(low, high) with the requirement's settings and params and `env`'s variables bound.

        For an `equals` measurement both are the expected value, so that a judge that only
        knows about limits still demands exactly that value.
        """
        if self.equals is not None:
            return (self.equals, self.equals)
        given = env or {}
        bound = dict(self.constants)
        bound.update({name: given[name] for name in self.variables if name in given})
        low = self.low.evaluate(bound) if self.low is not None else None
        high = self.high.evaluate(bound) if self.high is not None else None
        return (low, high)


@dataclass(frozen=True, slots=True)
class Requirement:
    """One certification requirement: what is measured, under which settings, against what."""

    id: str
    quantity: str
    condition: str
    limit: str
    clause: str
    test: str
    repeat: int
    settings: Mapping[str, Number]
    params: Mapping[str, Any]
    measurements: tuple[MeasurementSpec, ...]

    def measurement(self, name: str) -> MeasurementSpec:
        """The measurement named `name` (ConfigError naming the known ones)."""
        for spec in self.measurements:
            if spec.name == name:
                return spec
        known = ", ".join(m.name for m in self.measurements)
        raise ConfigError(f"requirement {self.id} has no measurement {name!r} (known: {known})")


@dataclass(frozen=True, slots=True)
class Profile:
    """A table model: register map, rules, safe state and requirements, all validated."""

    path: Path
    model: ModelInfo
    registers: Mapping[str, Register]
    rules: tuple[Rule, ...]
    safe_state: SafeState
    requirements: tuple[Requirement, ...]
    sha256: str
    requirements_sha256: str
    # profile.toml [home]: how the kind's procedure brings the table to rest between tests
    home: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    operator_steps: tuple[OperatorStep, ...] = ()

    @property
    def name(self) -> str:
        """The model name (`TT-890`)."""
        return self.model.name

    def register(self, name: str) -> Register:
        """The register called `name` (ConfigError naming it and the model if unknown)."""
        try:
            return self.registers[name]
        except KeyError:
            raise ConfigError(
                f"model {self.model.name} has no register {name!r} "
                f"(known: {', '.join(self.registers)})"
            ) from None

    def requirement(self, id: str) -> Requirement:
        """The requirement with this ID (ConfigError naming the known ones)."""
        for req in self.requirements:
            if req.id == id:
                return req
        known = ", ".join(r.id for r in self.requirements) or "none"
        raise ConfigError(f"model {self.model.name} has no requirement {id!r} (known: {known})")

    def settings(self) -> dict[str, Register]:
        """The writable registers of group "setting", by address."""
        regs = [r for r in self.registers.values() if r.group == "setting" and r.writable]
        return {r.name: r for r in sorted(regs, key=lambda r: (r.space, r.address))}

    def rule_partners(self, names: Collection[str]) -> set[str]:
        """The registers not in `names` whose values the rules on `names` need."""
        wanted: set[str] = set()
        for rule in self.rules:
            if any(n in names for n in rule.involves):
                wanted.update(rule.involves)
        return wanted - set(names)

    def rule_problems(self, values: Mapping[str, Number], changed: Collection[str]) -> list[str]:
        """Why `values` break the rules touching any `changed` register (rules it can decide)."""
        problems = []
        for rule in self.rules:
            if any(n in changed for n in rule.involves):
                why = rule.violation(values)
                if why:
                    problems.append(f"{why} (rule {rule.kind})")
        return problems
