"""One judged measurement as the record holds it, and the one rule that judges a value."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from .format import Outcome, limit_text, number_text, record_number


class LimitSpec(Protocol):
    """What the record needs of a profile's measurement spec."""

    name: str
    unit: str
    equals: float | None

    def limits(self, env: dict[str, float]) -> tuple[float | None, float | None]:
        """(low, high) evaluated in env."""
        ...


@dataclass(frozen=True)
class Measurement:
    """One judged quantity."""

    requirement: str
    clause: str
    name: str
    value: float | None
    unit: str
    low: float | None
    high: float | None
    equals: float | None
    verdict: str
    bindings: dict[str, Any] = field(default_factory=dict)
    repeat: int | None = None
    note: str = ""
    trace: str | None = None
    trace_sha256: str | None = None

    def limit_text(self) -> str:
        """The limit as a person reads it."""
        return limit_text(self.low, self.high, self.equals, self.unit)

    def value_text(self) -> str:
        """The value as a person reads it."""
        if self.value is None:
            return "not measured"
        if math.isinf(self.value):
            return "never"
        return f"{number_text(self.value)}{' ' + self.unit if self.unit else ''}"

    @classmethod
    def from_line(cls, line: dict[str, Any]) -> Measurement:
        """The measurement of a record line (as parsed): numbers the record wrote as strings
        (inf, NaN) become floats again; a field missing from the line gets a neutral value and
        a missing verdict is FAIL (never a pass by default)."""
        body = {k: v for k, v in line.items() if k in _NAMES}
        for k in ("value", "low", "high", "equals"):
            body[k] = record_number(body.get(k))
        body.setdefault("requirement", "")
        body.setdefault("clause", "")
        body.setdefault("name", "?")
        body.setdefault("unit", "")
        body.setdefault("verdict", Outcome.FAIL)
        return cls(**body)


_NAMES = frozenset(f.name for f in fields(Measurement))


def judge(
    value: float | None, low: float | None, high: float | None, equals: float | None
) -> Outcome:
    """The verdict of a value against its limit. Missing or NaN values fail; inf is compared."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Outcome.FAIL
    if equals is not None:
        return Outcome.PASS if value == equals else Outcome.FAIL
    if low is not None and not value >= low:
        return Outcome.FAIL
    if high is not None and not value <= high:
        return Outcome.FAIL
    return Outcome.PASS


def evaluate(
    spec: LimitSpec,
    requirement: str,
    clause: str,
    value: float | None,
    env: dict[str, float],
    **extra: Any,
) -> Measurement:
    """Evaluate a spec's limit in `env` and judge `value` against it."""
    low, high = (None, None) if spec.equals is not None else spec.limits(env)
    v = None if value is None else float(value)
    return Measurement(
        requirement=requirement,
        clause=clause,
        name=spec.name,
        value=v,
        unit=spec.unit,
        low=low,
        high=high,
        equals=spec.equals,
        verdict=judge(v, low, high, spec.equals),
        **extra,
    )
