"""Validation of parsed profile and requirement TOML: every failure names file, key and value."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from rig.errors import ProfileError

from .expr import Expr, ExprError, compile_expr
from .model import (
    ACCESS,
    DEFAULT_SERIAL_PATTERN,
    GROUPS,
    KIND_NAMES,
    REQUIRED_COMMANDS,
    REQUIRED_REGISTERS,
    SPACES,
    TYPES,
    MaxByRule,
    MeasurementSpec,
    MinSpanRule,
    ModelInfo,
    NotAboveRule,
    Number,
    OperatorStep,
    Register,
    Requirement,
    Rule,
    SafeLimit,
    SafeState,
)
from .needs import BODY_ENUMS, HOME, Need, needs_of

_REGISTER_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_REQUIREMENT_ID = re.compile(r"^[A-Z]{2}-(PERF|SAF)-[0-9]{2}$")


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


def _fits(need: Need, value: object) -> bool:
    """True when `value` is what `need` asks for (lists arrive as tuples)."""
    if need.what == "number":
        return _is_num(value)
    if need.what == "integer":
        return _is_int(value) and value >= 1  # type: ignore[operator]
    if need.what == "text" or need.what == "requirement":
        return isinstance(value, str) and (not need.choices or value in need.choices)
    if not isinstance(value, tuple) or not value:
        return False
    if need.what == "numbers":
        return all(_is_num(v) for v in value)
    return all(isinstance(v, str) and (not need.choices or v in need.choices) for v in value)


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
        "serial_pattern",
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
    SAFE_KEYS = (
        "states",
        "motor_disabled",
        "reference_max",
        "reference_still",
        "stop_s",
        "estop_s",
        "limit",
    )
    SAFE_LIMIT_KEYS = ("name", "channel", "register", "max", "held_by", "doc")

    def load(
        self, data: dict[str, Any]
    ) -> tuple[ModelInfo, dict[str, Register], tuple[Rule, ...], SafeState]:
        self.table(
            data,
            "",
            ("model", "safe_state", "home", "register", "rule", "operator_step"),
            ("model", "safe_state"),
        )
        registers = self.registers(self.array_of_tables(data, "register"))
        self.required_registers(registers)
        model = self.model(data["model"], registers)
        rules = tuple(
            self.rule(i, r, registers) for i, r in enumerate(self.array_of_tables(data, "rule"))
        )
        safe_state = self.safe_state(data["safe_state"], registers)
        return model, registers, rules, safe_state

    def operator_steps(self, data: dict[str, Any]) -> tuple[OperatorStep, ...]:
        """[[operator_step]]: what a person does on the bench before a run (id, text); the
        operator station asks for each to be confirmed and the record says who did."""
        steps: list[OperatorStep] = []
        for i, entry in enumerate(self.array_of_tables(data, "operator_step")):
            key = f"operator_step[{i}]"
            e = self.table(entry, key, ("id", "text"), ("id", "text"))
            sid = self.get(e, key, "id", _is_identifier, "an identifier (letters, digits, _)")
            text = self.get(e, key, "text", _is_text, "a non-empty text")
            if any(s.id == sid for s in steps):
                raise self.fail(f"{key}.id", sid, "an id not used by another operator_step")
            steps.append(OperatorStep(id=sid, text=text))
        return tuple(steps)

    def home(self, data: object, kind: str) -> dict[str, float]:
        """The [home] table: the numbers the kind's procedure uses to bring the table to rest
        between tests (rig/profiles/needs.py HOME); every one required, no other key."""
        needs = HOME[kind]
        if data is None:
            data = {}
        names = [n.name for n in needs]
        h = self.table(data, "home", names)
        out: dict[str, float] = {}
        for need in needs:
            if need.name not in h:
                raise self.fail(
                    f"home.{need.name}",
                    None,
                    f"{need.expected()} (the {kind} procedure brings the table to rest with it)",
                )
            out[need.name] = float(
                self.get(h, "home", need.name, lambda v, n=need: _fits(n, v), need.expected())
            )
        return out

    def model(self, data: object, registers: Mapping[str, Register]) -> ModelInfo:
        m = self.table(
            data,
            "model",
            self.MODEL_KEYS,
            [k for k in self.MODEL_KEYS if k not in ("description", "serial_pattern")],
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
            serial_pattern=self.get(
                m,
                "model",
                "serial_pattern",
                _is_serial_pattern,
                "a regular expression that matches no empty serial and no path",
                DEFAULT_SERIAL_PATTERN,
            ),
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
        stop_s = self.get(
            s, "safe_state", "stop_s", lambda v: _is_num(v) and v > 0, "a number > 0", 60.0
        )
        estop_s = self.get(
            s, "safe_state", "estop_s", lambda v: _is_num(v) and v > 0, "a number > 0", 5.0
        )
        limits = s.get("limit", [])
        if not isinstance(limits, list):
            raise self.fail("safe_state.limit", limits, "an array of tables ([[safe_state.limit]])")
        return SafeState(
            states=tuple(states),
            motor_disabled=motor,
            reference_max=None if ref_max is None else float(ref_max),
            reference_still=None if still is None else float(still),
            limits=tuple(self.safe_limit(i, x, registers) for i, x in enumerate(limits)),
            stop_s=float(stop_s),
            estop_s=float(estop_s),
        )

    def safe_limit(self, i: int, data: object, registers: Mapping[str, Register]) -> SafeLimit:
        key = f"safe_state.limit[{i}]"
        d = self.table(data, key, self.SAFE_LIMIT_KEYS, ("name", "channel", "register", "max"))
        name = self.get(d, key, "name", lambda v: isinstance(v, str) and v, "a non-empty string")
        channel = self.get(
            d, key, "channel", lambda v: isinstance(v, str) and v, "a reference instrument channel"
        )
        register = self.get(
            d,
            key,
            "register",
            lambda v: isinstance(v, str) and v in registers and registers[v].space == "input",
            "an input register of this profile (read when the instrument does not answer)",
        )
        limit = self.get(d, key, "max", lambda v: _is_num(v) and v >= 0, "a number >= 0")
        bits = registers["STATUS"].bits
        held_by = self.get(
            d, key, "held_by", lambda v: isinstance(v, str) and v in bits, "a STATUS bit name"
        )
        return SafeLimit(name, channel, register, float(limit), held_by)


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
        self,
        file: str,
        model: str,
        registers: Mapping[str, Register],
        rules: tuple[Rule, ...],
        kind: str,
    ) -> None:
        super().__init__(file)
        self.model = model
        self.registers = registers
        self.rules = rules
        self.kind = kind

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
        for req in out:
            self.references(req, out)
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
        req = Requirement(
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
        self.needs(key, req)
        return req

    def needs(self, key: str, req: Requirement) -> None:
        """The params the requirement's procedure reads (rig/profiles/needs.py) are all there, of
        the right type: a missing one fails here, never as a default at run time."""
        for register, name in BODY_ENUMS.get(req.test, ()):
            reg = self.registers.get(register)
            if reg is None or name not in reg.enum:
                raise self.fail(
                    f"{key}.test",
                    req.test,
                    f"a body this model can run: it writes {register} = {name}, which the "
                    "profile's register map does not name",
                )
        for need in needs_of(req.test, self.kind):
            if need.when is not None and req.params.get(need.when[0]) != need.when[1]:
                continue
            where = f"{key}.params.{need.name}"
            if need.name not in req.params:
                if need.optional:
                    continue
                raise self.fail(
                    where,
                    None,
                    f"{need.expected()} (the {req.test} procedure of a {self.kind} table reads it)",
                )
            if not _fits(need, req.params[need.name]):
                raise self.fail(where, req.params[need.name], need.expected())

    def references(self, req: Requirement, requirements: Sequence[Requirement]) -> None:
        """Params naming other requirements (steps_of, runs_of, moves_of) name ones that exist
        and whose procedure makes what this one judges."""
        bodies = {r.id: r.test for r in requirements}
        for need in needs_of(req.test, self.kind):
            if need.what not in ("requirement", "requirements") or need.name not in req.params:
                continue
            value = req.params[need.name]
            for rid in (value,) if need.what == "requirement" else value:
                if bodies.get(rid) not in need.body:
                    raise self.fail(
                        f"requirement[{req.id}].params.{need.name}", value, need.expected()
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


def _is_serial_pattern(v: object) -> bool:
    # a pattern that accepted "" or a path separator would let a bad scan through
    if not isinstance(v, str) or not v:
        return False
    try:
        rx = re.compile(v)
    except re.error:
        return False
    return not any(rx.fullmatch(bad) for bad in ("", " ", "..", "../x", "/etc/x", "a/b", "a\\b"))
