"""The run record: every measurement with its limit, verdict, requirement and clause, as evidence.

One JSON object per line, append-only, each line carrying the SHA-256 of the line before (a hash
chain), flushed and fsynced as written so that a crash loses no completed measurement. A run that
does not reach its `end` line is incomplete, never PASS.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

PASS, FAIL, ERROR = "PASS", "FAIL", "ERROR"
GENESIS = "0" * 64


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
        u = f" {self.unit}" if self.unit else ""
        if self.equals is not None:
            return f"= {_fmt(self.equals)}{u}"
        if self.low is not None and self.high is not None:
            return f"{_fmt(self.low)} .. {_fmt(self.high)}{u}"
        if self.high is not None:
            return f"<= {_fmt(self.high)}{u}"
        return f">= {_fmt(self.low)}{u}"

    def value_text(self) -> str:
        """The value as a person reads it."""
        if self.value is None:
            return "not measured"
        if math.isinf(self.value):
            return "never"
        return f"{_fmt(self.value)}{' ' + self.unit if self.unit else ''}"


def _fmt(x: float) -> str:
    if float(x).is_integer() and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.4g}"


def judge(value: float | None, low: float | None, high: float | None, equals: float | None) -> str:
    """The verdict of a value against its limit. Missing or NaN values fail; inf is compared."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return FAIL
    if equals is not None:
        return PASS if value == equals else FAIL
    if low is not None and not value >= low:
        return FAIL
    if high is not None and not value <= high:
        return FAIL
    return PASS


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


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        if math.isnan(obj):
            return "NaN"
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return _jsonable(obj.item())
    return obj


def canonical(obj: dict[str, Any]) -> bytes:
    """The bytes a record line is hashed over."""
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":")).encode()


def now_iso() -> str:
    """UTC timestamp for the record (host wall time: for people, never for verdicts)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class RunRecord:
    """Append-only hash-chained JSON-lines record of one certification run."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "traces").mkdir(exist_ok=True)
        self.path = self.directory / "record.jsonl"
        self._lock = threading.Lock()
        self._prev = GENESIS
        self._seq = 0
        self.measurements: list[Measurement] = []
        self.requirement_verdicts: dict[str, str] = {}
        self.header: dict[str, Any] = {}
        self.ended = False

    def _append(self, kind: str, body: dict[str, Any]) -> None:
        with self._lock:
            line = {"seq": self._seq, "kind": kind, "time": now_iso(), **body, "prev": self._prev}
            data = canonical(line)
            digest = hashlib.sha256(data).hexdigest()
            with open(self.path, "ab") as f:
                f.write(data + b"\n")
                f.flush()
                os.fsync(f.fileno())
            self._prev = digest
            self._seq += 1

    def start(self, header: dict[str, Any]) -> None:
        """Write the header: who, what, with what."""
        self.header = header
        self._append("header", header)

    def add_trace(self, name: str, csv_text: str) -> tuple[str, str]:
        """Store a trace file; return (relative path, sha256)."""
        rel = f"traces/{name}.csv"
        data = csv_text.encode()
        path = self.directory / rel
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return rel, hashlib.sha256(data).hexdigest()

    def add(self, m: Measurement) -> None:
        """Record one judged measurement."""
        self.measurements.append(m)
        self._append("measurement", asdict(m))

    def conclude_requirement(
        self, requirement: str, verdict: str, note: str = "", test: str = ""
    ) -> None:
        """Record a requirement's verdict (the worst of its measurements, or ERROR) and the test
        that verified it."""
        self.requirement_verdicts[requirement] = verdict
        self._append(
            "requirement",
            {"requirement": requirement, "verdict": verdict, "note": note, "test": test},
        )

    def event(self, what: str, **details: Any) -> None:
        """Record a notable event (safe-state checks, interruptions)."""
        self._append("event", {"event": what, **details})

    def end(self, verdict: str, **details: Any) -> None:
        """Close the run with its overall verdict."""
        self._append("end", {"verdict": verdict, **details})
        self.ended = True


def read_record(path: Path) -> list[dict[str, Any]]:
    """Lines of a record file as dicts."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def verify_chain(path: Path) -> list[str]:
    """Problems found in a record's hash chain (empty if intact)."""
    problems: list[str] = []
    prev = GENESIS
    for i, raw in enumerate(Path(path).read_bytes().splitlines()):
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            problems.append(f"line {i + 1}: not JSON")
            break
        if line.get("prev") != prev:
            problems.append(f"line {i + 1} (seq {line.get('seq')}): chain broken")
        if canonical(line) != raw:
            problems.append(f"line {i + 1} (seq {line.get('seq')}): not in canonical form")
        prev = hashlib.sha256(raw).hexdigest()
    return problems
