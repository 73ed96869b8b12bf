"""Model profiles as data: register map, rules, safe state and requirements, validated on load."""

from __future__ import annotations

import difflib
import hashlib
import math
import re
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from rig.errors import ConfigError, ProfileError
from rig.evidence.format import canonical_value

from .expr import Expr, ExprError, compile_expr

__all__ = [
    "PROFILES_DIR",
    "Expr",
    "ExprError",
    "MaxByRule",
    "MeasurementSpec",
    "MinSpanRule",
    "ModelInfo",
    "NotAboveRule",
    "Profile",
    "Register",
    "Requirement",
    "Rule",
    "SafeState",
    "available_profiles",
    "compile_expr",
    "load_profile",
]

PROFILES_DIR = Path(__file__).resolve().parent
PROFILE_FILE = "profile.toml"
REQUIREMENTS_FILE = "requirements.toml"

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

_REGISTER_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_REQUIREMENT_ID = re.compile(r"^[A-Z]{2}-(PERF|SAF)-[0-9]{2}$")
_TOML_POSITION = re.compile(r"at line (\d+), column (\d+)")

Number = int | float


# --------------------------------------------------------------------------- data classes


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


@dataclass(frozen=True, slots=True)
class SafeState:
    """What "stopped and safe" means for this model; checked after every test."""

    states: tuple[str, ...]
    motor_disabled: bool
    reference_max: float | None = None
    reference_still: float | None = None


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


# --------------------------------------------------------------------------- loading


def available_profiles() -> list[str]:
    """The model names packaged with the rig."""
    return sorted(
        p.name for p in PROFILES_DIR.iterdir() if p.is_dir() and (p / PROFILE_FILE).is_file()
    )


def load_profile(name_or_path: str | Path) -> Profile:
    """Load and validate a packaged model (`"TT-890"`, any case) or a profile directory."""
    directory = _resolve(name_or_path)
    profile_file = directory / PROFILE_FILE
    req_file = directory / REQUIREMENTS_FILE
    for file in (profile_file, req_file):
        if not file.is_file():
            raise ProfileError(str(file), "(file)", "missing", f"a {file.name} in {directory}")
    raw_profile = _read_toml(profile_file)
    raw_reqs = _read_toml(req_file)
    loader = _ProfileLoader(str(profile_file))
    model, registers, rules, safe_state = loader.load(raw_profile)
    requirements = _RequirementLoader(str(req_file), model.name, registers, rules).load(raw_reqs)
    req_hash = hashlib.sha256(
        canonical_value(raw_reqs, ascii_only=False, allow_nan=False)
    ).hexdigest()
    whole = hashlib.sha256(
        canonical_value(
            {"profile": raw_profile, "requirements": raw_reqs}, ascii_only=False, allow_nan=False
        )
    ).hexdigest()
    return Profile(
        path=directory,
        model=model,
        registers=MappingProxyType(registers),
        rules=rules,
        safe_state=safe_state,
        requirements=requirements,
        sha256=whole,
        requirements_sha256=req_hash,
    )


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or "/" in text or "\\" in text
    if not looks_like_path:
        for name in available_profiles():
            if name.lower() == text.lower():
                return PROFILES_DIR / name
        candidate = Path(text)
        if not (candidate.is_dir() and (candidate / PROFILE_FILE).is_file()):
            raise ConfigError(
                f"unknown table model {text!r}; available: {', '.join(available_profiles())}"
            )
        return candidate
    path = Path(name_or_path)
    if path.is_file() and path.name == PROFILE_FILE:
        path = path.parent
    if not path.is_dir():
        raise ConfigError(
            f"no profile directory at {path}; packaged models: {', '.join(available_profiles())}"
        )
    return path


def _read_toml(file: Path) -> dict[str, Any]:
    text = file.read_bytes()
    try:
        return tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProfileError(str(file), "(file)", f"byte {exc.start}", "UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = _TOML_POSITION.search(message)
        if where is None:
            raise ProfileError(str(file), "(toml)", "", f"valid TOML: {message}") from None
        line = int(where.group(1))
        lines = text.decode("utf-8").splitlines()
        source = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        raise ProfileError(str(file), f"line {line}", source, f"valid TOML: {message}") from None


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


class _Checker:
    """Shared helpers: every failure names the file, the key path, the value and what was wanted."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, value: object, expected: str) -> ProfileError:
        return ProfileError(self.file, key, value, expected)

    def table(
        self,
        data: object,
        key: str,
        known: Collection[str],
        required: Collection[str] = (),
    ) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(key, data, "a table")
        for name in data:
            if name not in known:
                close = difflib.get_close_matches(name, list(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.fail(
                    f"{key}.{name}" if key else name,
                    data[name],
                    f"no such key (known keys: {', '.join(known)}){hint}",
                )
        for name in required:
            if name not in data:
                raise self.fail(f"{key}.{name}" if key else name, None, "a value (required key)")
        return data

    def array_of_tables(self, data: dict[str, Any], name: str) -> list[dict[str, Any]]:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(name, value, f"an array of tables ([[{name}]])")
        return value

    def get(
        self,
        data: Mapping[str, Any],
        key: str,
        name: str,
        test: Callable[[Any], bool],
        expected: str,
        default: Any = None,
    ) -> Any:
        if name not in data:
            return default
        value = data[name]
        if not test(value):
            raise self.fail(f"{key}.{name}", value, expected)
        return value


def _is_str(v: object) -> bool:
    return isinstance(v, str)


def _is_text(v: object) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _is_identifier(v: object) -> bool:
    return isinstance(v, str) and v.isidentifier()


class _ProfileLoader(_Checker):
    MODEL_KEYS = (
        "name",
        "kind",
        "kind_name",
        "description",
        "icd_version",
        "reference_role",
        "reference_model",
        "reference_channel",
        "primary_unit",
    )
    REGISTER_KEYS = (
        "name",
        "space",
        "address",
        "type",
        "scale",
        "unit",
        "min",
        "max",
        "default",
        "access",
        "group",
        "enum",
        "bits",
        "doc",
    )
    SAFE_KEYS = ("states", "motor_disabled", "reference_max", "reference_still")

    def load(
        self, data: dict[str, Any]
    ) -> tuple[ModelInfo, dict[str, Register], tuple[Rule, ...], SafeState]:
        self.table(data, "", ("model", "safe_state", "register", "rule"), ("model", "safe_state"))
        registers = self.registers(self.array_of_tables(data, "register"))
        self.required_registers(registers)
        model = self.model(data["model"], registers)
        rules = tuple(
            self.rule(i, r, registers) for i, r in enumerate(self.array_of_tables(data, "rule"))
        )
        safe_state = self.safe_state(data["safe_state"], registers)
        return model, registers, rules, safe_state

    def model(self, data: object, registers: Mapping[str, Register]) -> ModelInfo:
        m = self.table(
            data, "model", self.MODEL_KEYS, [k for k in self.MODEL_KEYS if k != "description"]
        )
        text = "a non-empty string"
        kind = self.get(m, "model", "kind", lambda v: _is_int(v) and v >= 1, "an integer >= 1")
        kind_enum = registers["KIND"].enum
        if kind_enum and kind not in kind_enum.values():
            raise self.fail("model.kind", kind, f"one of the KIND register's values {kind_enum}")
        kind_name = self.get(
            m, "model", "kind_name", lambda v: v in KIND_NAMES, f"one of {', '.join(KIND_NAMES)}"
        )
        return ModelInfo(
            name=self.get(m, "model", "name", _is_text, text),
            kind=kind,
            kind_name=kind_name,
            description=self.get(m, "model", "description", _is_str, "a string", ""),
            icd_version=self.get(
                m, "model", "icd_version", lambda v: _is_int(v) and v > 0, "a positive integer"
            ),
            reference_role=self.get(m, "model", "reference_role", _is_identifier, "an identifier"),
            reference_model=self.get(m, "model", "reference_model", _is_text, text),
            reference_channel=self.get(m, "model", "reference_channel", _is_text, text),
            primary_unit=self.get(m, "model", "primary_unit", _is_text, text),
        )

    def registers(self, entries: list[dict[str, Any]]) -> dict[str, Register]:
        registers: dict[str, Register] = {}
        # space -> address -> name of the register holding it
        taken: dict[str, dict[int, str]] = {space: {} for space in SPACES}
        for i, entry in enumerate(entries):
            try:
                reg = self.register(i, entry)
            except ProfileError as exc:
                # An index alone is hard to find in a long file: name the register too.
                name = entry.get("name")
                if not isinstance(name, str) or exc.key.endswith(".name"):
                    raise
                raise self.fail(exc.key, exc.value, f"{exc.expected} (register {name})") from None
            if reg.name in registers:
                other = list(registers).index(reg.name)
                raise self.fail(
                    f"register[{i}].name", reg.name, f"a unique name (register[{other}] has it)"
                )
            for address in range(reg.address, reg.end):
                if address in taken[reg.space]:
                    owner = registers[taken[reg.space][address]]
                    raise self.fail(
                        f"register[{i}].address",
                        reg.address,
                        f"a free {reg.space} address: {reg.name} ({reg.type}) takes "
                        f"{reg.address}..{reg.end - 1}, but {owner.name} ({owner.type}) takes "
                        f"{owner.address}..{owner.end - 1}",
                    )
                taken[reg.space][address] = reg.name
            registers[reg.name] = reg
        return registers

    def register(self, i: int, entry: dict[str, Any]) -> Register:
        key = f"register[{i}]"
        r = self.table(
            entry, key, self.REGISTER_KEYS, ("name", "space", "address", "type", "group")
        )
        name = self.get(
            r,
            key,
            "name",
            lambda v: isinstance(v, str) and bool(_REGISTER_NAME.match(v)),
            "an upper-case register name like FORCE_SET",
        )
        space = self.get(r, key, "space", lambda v: v in SPACES, f"one of {', '.join(SPACES)}")
        rtype = self.get(
            r,
            key,
            "type",
            lambda v: isinstance(v, str) and v in TYPES,
            f"one of {', '.join(TYPES)}",
        )
        count = TYPES[rtype][2]
        address = self.get(
            r,
            key,
            "address",
            lambda v: _is_int(v) and 0 <= v <= 0xFFFF - (count - 1),
            f"an integer 0..{0xFFFF - (count - 1)} ({rtype} takes {count} register(s))",
        )
        scale = self.get(r, key, "scale", lambda v: _is_num(v) and v > 0, "a number > 0", 1)
        access = self.get(r, key, "access", lambda v: v in ACCESS, "r or rw", "r")
        if space == "input" and access != "r":
            raise self.fail(f"{key}.access", access, "r: input registers cannot be written")
        group = self.get(r, key, "group", lambda v: v in GROUPS, f"one of {', '.join(GROUPS)}")
        enum = self.enum(key, r.get("enum"), rtype, scale)
        bits = self.bits(key, r.get("bits"), count, scale)
        if enum and bits:
            raise self.fail(f"{key}.bits", r["bits"], "no bits on a register that has an enum")
        probe = Register(name, space, address, rtype, scale)
        bounds: dict[str, Number | None] = {}
        for bound in ("min", "max", "default"):
            value = self.get(r, key, bound, _is_num, "a finite number")
            if value is not None:
                try:
                    probe.raw_int(value)
                except ValueError as exc:
                    raise self.fail(
                        f"{key}.{bound}", value, f"a value {rtype} can hold: {exc}"
                    ) from None
            bounds[bound] = value
        low, high, default = bounds["min"], bounds["max"], bounds["default"]
        if access == "rw" and (low is None or high is None):
            missing = "min" if low is None else "max"
            raise self.fail(f"{key}.{missing}", None, f"a {missing}: {name} is writable (rw)")
        if low is not None and high is not None and low > high:
            raise self.fail(f"{key}.min", low, f"min <= max ({high})")
        if default is not None:
            if (low is not None and default < low) or (high is not None and default > high):
                raise self.fail(f"{key}.default", default, f"a default within {low}..{high}")
        return Register(
            name=name,
            space=space,
            address=address,
            type=rtype,
            scale=scale,
            unit=self.get(r, key, "unit", _is_str, "a string", ""),
            min=low,
            max=high,
            default=default,
            access=access,
            group=group,
            enum=MappingProxyType(enum),
            bits=MappingProxyType(bits),
            doc=self.get(r, key, "doc", _is_str, "a string", ""),
        )

    def enum(self, key: str, data: object, rtype: str, scale: Number) -> dict[str, int]:
        if data is None:
            return {}
        if not isinstance(data, dict) or not data:
            raise self.fail(f"{key}.enum", data, "a non-empty table of NAME = integer")
        if scale != 1:
            raise self.fail(f"{key}.enum", data, "no enum on a scaled register (scale 1)")
        low, high, _ = TYPES[rtype]
        seen: dict[int, str] = {}
        for name, value in data.items():
            if not _REGISTER_NAME.match(name):
                raise self.fail(f"{key}.enum.{name}", value, "an upper-case name like STATIC")
            if not _is_int(value) or not low <= value <= high:
                raise self.fail(f"{key}.enum.{name}", value, f"an integer {low}..{high} ({rtype})")
            if value in seen:
                raise self.fail(
                    f"{key}.enum.{name}", value, f"a value not already named ({seen[value]})"
                )
            seen[value] = name
        return dict(data)

    def bits(self, key: str, data: object, count: int, scale: Number) -> dict[str, int]:
        if data is None:
            return {}
        if not isinstance(data, dict) or not data:
            raise self.fail(f"{key}.bits", data, "a non-empty table of name = bit index")
        if scale != 1:
            raise self.fail(f"{key}.bits", data, "no bits on a scaled register (scale 1)")
        top = 16 * count - 1
        seen: dict[int, str] = {}
        for name, index in data.items():
            if not name.isidentifier():
                raise self.fail(f"{key}.bits.{name}", index, "an identifier like motor_enabled")
            if not _is_int(index) or not 0 <= index <= top:
                raise self.fail(f"{key}.bits.{name}", index, f"a bit index 0..{top}")
            if index in seen:
                raise self.fail(
                    f"{key}.bits.{name}", index, f"a bit not already named ({seen[index]})"
                )
            seen[index] = name
        return dict(data)

    def required_registers(self, registers: Mapping[str, Register]) -> None:
        for name, space in REQUIRED_REGISTERS.items():
            if name not in registers:
                raise self.fail(
                    "register", name, f"a register {name} ({space}): the rig relies on it"
                )
            reg = registers[name]
            index = list(registers).index(name)
            if reg.space != space:
                raise self.fail(f"register[{index}].space", reg.space, f"{space} for {name}")
        kind = registers["KIND"]
        index = list(registers).index("KIND")
        if kind.address != 0 or kind.type != "u16":
            raise self.fail(
                f"register[{index}].address", kind.address, "KIND as input register 0, u16"
            )
        for name, need in (("STATE", "enum"), ("FAULT", "enum"), ("STATUS", "bits")):
            if not getattr(registers[name], need):
                index = list(registers).index(name)
                raise self.fail(f"register[{index}].{need}", None, f"{need} for {name}")
        for name in ("COMMAND", "HEARTBEAT", "WATCHDOG_MS"):
            if not registers[name].writable:
                index = list(registers).index(name)
                raise self.fail(
                    f"register[{index}].access", registers[name].access, f"rw for {name}"
                )
        missing = [c for c in REQUIRED_COMMANDS if c not in registers["COMMAND"].enum]
        if missing:
            index = list(registers).index("COMMAND")
            raise self.fail(
                f"register[{index}].enum",
                dict(registers["COMMAND"].enum),
                f"names for the commands {', '.join(REQUIRED_COMMANDS)} (missing "
                f"{', '.join(missing)})",
            )

    def rule(self, i: int, data: dict[str, Any], registers: Mapping[str, Register]) -> Rule:
        key = f"rule[{i}]"
        kinds = ("max_by", "min_span", "not_above")
        kind = self.get(data, key, "kind", lambda v: v in kinds, f"one of {', '.join(kinds)}")
        known = ", ".join(registers)

        def reg_name(name: str, writable: bool = False) -> str:
            value = data[name]
            if not isinstance(value, str) or value not in registers:
                raise self.fail(f"{key}.{name}", value, f"a register of this profile ({known})")
            if writable and not registers[value].writable:
                raise self.fail(f"{key}.{name}", value, "a writable (rw) register")
            return value

        if kind == "max_by":
            self.table(
                data, key, ("kind", "register", "by", "max", "doc"), ("register", "by", "max")
            )
            target = registers[reg_name("register", writable=True)]
            by = registers[reg_name("by")]
            table = data["max"]
            if not isinstance(table, dict) or not table:
                raise self.fail(f"{key}.max", table, f"a table of {by.name} value = maximum")
            limits: dict[str, float] = {}
            for raw_key, limit in table.items():
                where = f"{key}.max.{raw_key}"
                if raw_key in by.enum:
                    by_value = by.enum[raw_key]
                elif re.fullmatch(r"-?[0-9]+", raw_key):
                    by_value = int(raw_key)
                else:
                    raise self.fail(where, limit, f"a key that is a value of {by.name}")
                valid = (
                    by_value in by.enum.values()
                    if by.enum
                    else by.range_problem(by.value_of(by_value)) is None
                )
                if not valid:
                    raise self.fail(
                        where,
                        raw_key,
                        f"a value {by.name} can take ({dict(by.enum) or by.range_text()})",
                    )
                if not _is_num(limit) or target.range_problem(limit) is not None:
                    raise self.fail(
                        where, limit, f"a maximum within {target.name}'s {target.range_text()}"
                    )
                if str(by_value) in limits:
                    raise self.fail(where, limit, f"one maximum per {by.name} value ({by_value})")
                limits[str(by_value)] = float(limit)
            return MaxByRule(target.name, by.name, MappingProxyType(limits))
        if kind == "min_span":
            self.table(data, key, ("kind", "registers", "min", "doc"), ("registers", "min"))
            pair = data["registers"]
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or any(
                    not isinstance(p, str) or p not in registers or not registers[p].writable
                    for p in pair
                )
                or pair[0] == pair[1]
            ):
                raise self.fail(
                    f"{key}.registers", pair, f"two different writable registers of ({known})"
                )
            span = self.get(data, key, "min", lambda v: _is_num(v) and v >= 0, "a number >= 0")
            return MinSpanRule((pair[0], pair[1]), float(span))
        self.table(data, key, ("kind", "register", "limit", "doc"), ("register", "limit"))
        target = reg_name("register", writable=True)
        limit = reg_name("limit")
        if target == limit:
            raise self.fail(f"{key}.limit", limit, "a register other than the limited one")
        return NotAboveRule(target, limit)

    def safe_state(self, data: object, registers: Mapping[str, Register]) -> SafeState:
        s = self.table(data, "safe_state", self.SAFE_KEYS, ("states",))
        names = registers["STATE"].enum
        states = s["states"]
        if not isinstance(states, list) or not states:
            raise self.fail("safe_state.states", states, "a non-empty list of STATE names")
        for j, state in enumerate(states):
            if not isinstance(state, str) or state not in names:
                raise self.fail(
                    f"safe_state.states[{j}]", state, f"a STATE name ({', '.join(names)})"
                )
        motor = self.get(
            s, "safe_state", "motor_disabled", lambda v: isinstance(v, bool), "true or false", False
        )
        if motor and "motor_enabled" not in registers["STATUS"].bits:
            raise self.fail(
                "safe_state.motor_disabled", motor, "a STATUS bit named motor_enabled to check"
            )
        ref_max = self.get(
            s, "safe_state", "reference_max", lambda v: _is_num(v) and v >= 0, "a number >= 0"
        )
        still = self.get(
            s, "safe_state", "reference_still", lambda v: _is_num(v) and v > 0, "a number > 0"
        )
        return SafeState(
            states=tuple(states),
            motor_disabled=motor,
            reference_max=None if ref_max is None else float(ref_max),
            reference_still=None if still is None else float(still),
        )


class _RequirementLoader(_Checker):
    KEYS = (
        "id",
        "quantity",
        "condition",
        "limit",
        "clause",
        "test",
        "repeat",
        "settings",
        "params",
        "measurement",
    )
    REQUIRED = ("id", "quantity", "condition", "limit", "clause", "test", "measurement")
    MEASUREMENT_KEYS = ("name", "unit", "variables", "low", "high", "equals", "description")

    def __init__(
        self, file: str, model: str, registers: Mapping[str, Register], rules: tuple[Rule, ...]
    ) -> None:
        super().__init__(file)
        self.model = model
        self.registers = registers
        self.rules = rules

    def load(self, data: dict[str, Any]) -> tuple[Requirement, ...]:
        self.table(data, "", ("requirement",), ("requirement",))
        entries = self.array_of_tables(data, "requirement")
        if not entries:
            raise self.fail("requirement", [], "at least one [[requirement]]")
        seen: dict[str, int] = {}
        out = []
        for i, entry in enumerate(entries):
            req = self.requirement(i, entry)
            if req.id in seen:
                raise self.fail(
                    f"requirement[{i}].id", req.id, f"a unique ID (requirement[{seen[req.id]}])"
                )
            seen[req.id] = i
            out.append(req)
        return tuple(out)

    def requirement(self, i: int, entry: dict[str, Any]) -> Requirement:
        key = f"requirement[{i}]"
        r = self.table(entry, key, self.KEYS, self.REQUIRED)
        rid = self.get(
            r,
            key,
            "id",
            lambda v: isinstance(v, str) and bool(_REQUIREMENT_ID.match(v)),
            "an ID like TT-PERF-01 (^[A-Z]{2}-(PERF|SAF)-[0-9]{2}$)",
        )
        key = f"requirement[{rid}]"
        text = "a non-empty string"
        settings = self.settings(key, r.get("settings", {}))
        params = self.params(key, r.get("params", {}), settings)
        constants: dict[str, float] = {n: float(v) for n, v in settings.items()}
        constants.update({n: float(v) for n, v in params.items() if _is_num(v)})
        entries = r["measurement"]
        if (
            not isinstance(entries, list)
            or not entries
            or not all(isinstance(m, dict) for m in entries)
        ):
            raise self.fail(
                f"{key}.measurement", entries, "one or more [[requirement.measurement]]"
            )
        measurements: list[MeasurementSpec] = []
        for j, m in enumerate(entries):
            spec = self.measurement(f"{key}.measurement[{j}]", m, constants, settings, params)
            if any(spec.name == other.name for other in measurements):
                raise self.fail(f"{key}.measurement[{j}].name", spec.name, "a unique name")
            measurements.append(spec)
        return Requirement(
            id=rid,
            quantity=self.get(r, key, "quantity", _is_text, text),
            condition=self.get(r, key, "condition", _is_text, text),
            limit=self.get(r, key, "limit", _is_text, text),
            clause=self.get(r, key, "clause", _is_text, text),
            test=self.get(r, key, "test", _is_identifier, "an identifier (the suite body)"),
            repeat=self.get(
                r, key, "repeat", lambda v: _is_int(v) and v >= 1, "an integer >= 1", 1
            ),
            settings=MappingProxyType(settings),
            params=MappingProxyType(params),
            measurements=tuple(measurements),
        )

    def settings(self, key: str, data: object) -> dict[str, Number]:
        if not isinstance(data, dict):
            raise self.fail(f"{key}.settings", data, "a table of register = value")
        writable = [r.name for r in self.registers.values() if r.group == "setting" and r.writable]
        out: dict[str, Number] = {}
        for name, value in data.items():
            where = f"{key}.settings.{name}"
            reg = self.registers.get(name)
            if reg is None or reg.name not in writable:
                raise self.fail(
                    where,
                    value,
                    f"a writable setting register of {self.model} ({', '.join(writable)})",
                )
            if isinstance(value, str):
                if value not in reg.enum:
                    raise self.fail(
                        where, value, f"a number or one of {', '.join(reg.enum) or '-'}"
                    )
                value = reg.enum[value]
            if not _is_num(value):
                raise self.fail(where, value, "a number")
            why = reg.range_problem(value)
            if why:
                raise self.fail(where, value, f"a value within {reg.range_text()} ({why})")
            out[name] = value
        for rule in self.rules:
            why = rule.violation(out)
            if why:
                name = rule.involves[0]
                raise self.fail(f"{key}.settings.{name}", out[name], f"settings that keep {why}")
        return out

    def params(self, key: str, data: object, settings: Mapping[str, Number]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(f"{key}.params", data, "a table of name = value")
        out: dict[str, Any] = {}
        for name, value in data.items():
            where = f"{key}.params.{name}"
            if not name.isidentifier():
                raise self.fail(where, value, "a parameter name that is an identifier")
            if name in settings:
                raise self.fail(where, value, f"a name that is not also a setting ({name})")
            if isinstance(value, list):
                kinds = {
                    bool if isinstance(v, bool) else str if isinstance(v, str) else float
                    for v in value
                }
                ok = len(kinds) <= 1 and all(_is_num(v) or isinstance(v, str | bool) for v in value)
                if not ok:
                    raise self.fail(where, value, "a list of numbers (or of strings, or booleans)")
                value = tuple(value)
            elif not (_is_num(value) or isinstance(value, str | bool)):
                raise self.fail(where, value, "a number, string, boolean or list of numbers")
            out[name] = value
        return out

    def measurement(
        self,
        key: str,
        data: dict[str, Any],
        constants: Mapping[str, float],
        settings: Mapping[str, Number],
        params: Mapping[str, Any],
    ) -> MeasurementSpec:
        m = self.table(data, key, self.MEASUREMENT_KEYS, ("name",))
        name = self.get(m, key, "name", _is_identifier, "an identifier")
        variables = self.get(
            m,
            key,
            "variables",
            lambda v: (
                isinstance(v, list) and all(_is_identifier(x) for x in v) and len(set(v)) == len(v)
            ),
            "a list of distinct identifiers",
            [],
        )
        for var in variables:
            if var in settings or var in params:
                raise self.fail(
                    f"{key}.variables", variables, f"names not taken by a setting or param ({var})"
                )
        allowed = set(constants) | set(variables)
        equals = self.get(m, key, "equals", _is_num, "a number")
        exprs: dict[str, Expr | None] = {}
        for bound in ("low", "high"):
            if bound in m:
                if equals is not None:
                    raise self.fail(f"{key}.{bound}", m[bound], "no low/high with equals")
                exprs[bound] = compile_expr(m[bound], allowed, f"{key}.{bound}", path=self.file)
            else:
                exprs[bound] = None
        low, high = exprs["low"], exprs["high"]
        if equals is None and low is None and high is None:
            raise self.fail(key, sorted(m), "equals, or at least one of low/high")
        if low is not None and high is not None and not (low.names | high.names) - set(constants):
            try:
                lo, hi = low.evaluate(constants), high.evaluate(constants)
            except ExprError as exc:
                raise self.fail(f"{key}.low", str(low), f"limits that evaluate ({exc})") from None
            if lo > hi:
                raise self.fail(f"{key}.low", str(low), f"low <= high ({lo} > {hi})")
        return MeasurementSpec(
            name=name,
            unit=self.get(m, key, "unit", _is_str, "a string", ""),
            variables=tuple(variables),
            low=low,
            high=high,
            equals=None if equals is None else float(equals),
            description=self.get(m, key, "description", _is_str, "a string", ""),
            constants=MappingProxyType(dict(constants)),
        )
