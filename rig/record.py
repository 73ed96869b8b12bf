"""The run record: every measurement with its limit, verdict, requirement and clause, as evidence.

One JSON object per line, append-only, each line carrying the SHA-256 of the line before (a hash
chain), flushed and fsynced as written so that a crash loses no completed measurement. A run that
does not reach its `end` line is incomplete, never PASS.

Every line also carries `fields`: the SHA-256 of the canonical JSON of each of its other fields,
so that a verifier can name the field that was changed, not only the line (rig/verify.py). The
chain still decides whether a line is intact; the digests only locate the change.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from .errors import RigError

try:  # POSIX: serialise appends of several processes (the run, then reviewers signing)
    import fcntl
except ImportError:  # pragma: no cover - Windows: one writer at a time is then on the user
    fcntl = None  # type: ignore[assignment]

PASS, FAIL, ERROR = "PASS", "FAIL", "ERROR"
GENESIS = "0" * 64
RECORD_NAME = "record.jsonl"
FIELDS = "fields"
# written by the record itself; a body that carried them would overwrite the chain's own
RESERVED = frozenset({"seq", "kind", "prev", FIELDS})


class RecordError(RigError):
    """The record cannot be appended to as asked (changed on disk, partial last line, ...)."""


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
    return canonical_value(obj)


def canonical_value(value: Any) -> bytes:
    """Canonical JSON of any value (sorted keys, compact, non-finite floats as strings)."""
    return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":")).encode()


def field_digests(line: dict[str, Any]) -> dict[str, str]:
    """SHA-256 of each field's canonical value, every field but the digest map itself.

    Computed over the value as it will read back (NaN and inf become strings first), so that
    a verifier recomputing it from the parsed line gets the same digest."""
    return {
        k: hashlib.sha256(canonical_value(v)).hexdigest() for k, v in line.items() if k != FIELDS
    }


def line_hash(raw: bytes) -> str:
    """The SHA-256 of one line's bytes (without its newline): the next line's `prev`."""
    return hashlib.sha256(raw).hexdigest()


def _fsync_dir(path: Path) -> None:
    # a new file's name is durable only once its directory is synced
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def now_iso() -> str:
    """UTC timestamp for the record (host wall time: for people, never for verdicts)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class RunRecord:
    """Append-only hash-chained JSON-lines record of one certification run."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "traces").mkdir(exist_ok=True)
        self.path = self.directory / RECORD_NAME
        self._lock = threading.Lock()
        self._prev = GENESIS
        self._seq = 0
        self._size = 0  # bytes of the file this object has accounted for
        self.measurements: list[Measurement] = []
        self.requirement_verdicts: dict[str, str] = {}
        self.requirement_tests: dict[str, str] = {}
        self.header: dict[str, Any] = {}
        self.ended = False

    @classmethod
    def open(cls, directory: Path) -> RunRecord:
        """An existing record, to append to its chain (signatures after the run).

        Refuses a record whose last line is partial (a write cut short): a line appended
        after it would be glued to the fragment."""
        rec = cls.__new__(cls)
        rec.directory = Path(directory)
        rec.path = rec.directory / RECORD_NAME
        rec._lock = threading.Lock()
        rec.measurements, rec.requirement_verdicts, rec.header = [], {}, {}
        rec.ended = False
        try:
            data = rec.path.read_bytes()
        except FileNotFoundError:
            raise RecordError(f"{rec.path}: no such record") from None
        if data and not data.endswith(b"\n"):
            raise RecordError(
                f"{rec.path}: the last line is partial (a write was cut short); "
                "the record cannot be appended to"
            )
        raws = data.split(b"\n")[:-1] if data else []
        rec._size = len(data)
        rec._prev = line_hash(raws[-1]) if raws else GENESIS
        rec._seq = 0
        names = {f.name for f in fields(Measurement)}
        for raw in raws:
            try:
                line = json.loads(raw)
            except ValueError:
                raise RecordError(f"{rec.path}: a line is not JSON; verify the record") from None
            kind = line.get("kind")
            rec._seq = int(line.get("seq", rec._seq)) + 1
            if kind == "header":
                rec.header = _body(line)
            elif kind == "measurement":
                rec.measurements.append(
                    Measurement(**{k: v for k, v in line.items() if k in names})
                )
            elif kind == "requirement":
                rec.requirement_verdicts[line.get("requirement")] = line.get("verdict")
            elif kind == "end":
                rec.ended = True
        return rec

    def _append(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.append_at_head(kind, lambda head, seq, time: body)

    def append_at_head(
        self, kind: str, make_body: Callable[[str, int, str], dict[str, Any]]
    ) -> dict[str, Any]:
        """Append a line whose body depends on the chain head it follows: `make_body(head, seq,
        time)` is called under the lock with the hash of the last line, this line's seq and its
        time, so that a signature over the head is over the line it is chained to. Returns the
        line as written."""
        with self._lock:
            time = now_iso()
            body = make_body(self._prev, self._seq, time)
            reserved = RESERVED & body.keys()
            if reserved:
                raise ValueError(f"record line fields {sorted(reserved)} are the record's own")
            line = {"seq": self._seq, "kind": kind, "time": time, **body, "prev": self._prev}
            line[FIELDS] = field_digests(line)
            data = canonical(line)
            self._write(data + b"\n")
            self._prev = line_hash(data)
            self._seq += 1
            return json.loads(data)

    def _write(self, data: bytes) -> None:
        created = self._size == 0
        with open(self.path, "ab") as f:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file is closed
            size = os.fstat(f.fileno()).st_size
            if size != self._size:
                # someone else appended (or truncated): a line written now would break the chain
                raise RecordError(
                    f"{self.path} is {size} bytes, {self._size} expected: it changed on disk "
                    "since it was opened (another writer?); not appending"
                    + ("; reopen it with RunRecord.open()" if created else "")
                )
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self._size += len(data)
        if created:  # the new file's name, and the new run directory's
            _fsync_dir(self.directory)
            _fsync_dir(self.directory.parent)

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
        _fsync_dir(path.parent)
        digest = hashlib.sha256(data).hexdigest()
        # chained at once, so a trace no measurement names later is evidence too
        self._append("trace", {"trace": rel, "trace_sha256": digest})
        return rel, digest

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
        self.requirement_tests[requirement] = test
        self._append(
            "requirement",
            {"requirement": requirement, "verdict": verdict, "note": note, "test": test},
        )

    def traceability(self, requirements: list[Any]) -> list[dict[str, Any]]:
        """Record the traceability matrix: for every requirement of the model, its clause, the
        test that verified it, its measurements and verdict (NOT RUN when it has none)."""
        rows = []
        for req in requirements:
            names = sorted({m.name for m in self.measurements if m.requirement == req.id})
            rows.append(
                {
                    "requirement": req.id,
                    "quantity": req.quantity,
                    "clause": req.clause,
                    "test": self.requirement_tests.get(req.id, ""),
                    "measurements": names,
                    "verdict": self.requirement_verdicts.get(req.id, "NOT RUN"),
                }
            )
        self._append("traceability", {"matrix": rows})
        return rows

    def event(self, what: str, **details: Any) -> None:
        """Record a notable event (safe-state checks, interruptions)."""
        self._append("event", {"event": what, **details})

    def end(self, verdict: str, **details: Any) -> None:
        """Close the run with its overall verdict."""
        self._append("end", {"verdict": verdict, **details})
        self.ended = True


def _body(line: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in line.items() if k not in RESERVED and k != "time"}


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
