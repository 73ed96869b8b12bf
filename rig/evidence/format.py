"""The run record's format: line kinds, outcomes, canonical JSON, run paths and display text.

A record is one JSON object per line (`record.jsonl` in a run directory), each line chained to
the one before by the SHA-256 of its bytes (`prev`) and carrying the digest of each of its
fields (`fields`). Everything here is pure: no file is written or read.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RigError

GENESIS = "0" * 64
RECORD_NAME = "record.jsonl"
TRACES_DIR = "traces"
FIELDS = "fields"
# written by the record itself; a body that carried them would overwrite the chain's own
RESERVED = frozenset({"seq", "kind", "prev", FIELDS})


class Kind(StrEnum):
    """The kinds of record line (the `kind` field)."""

    HEADER = "header"  # who, what, with what: always the first line
    MEASUREMENT = "measurement"  # one judged quantity
    TRACE = "trace"  # a trace file stored with the run, by path and SHA-256
    REQUIREMENT = "requirement"  # a requirement's concluded verdict
    TRACEABILITY = "traceability"  # the matrix of every requirement of the model
    EVENT = "event"  # safe-state checks, interruptions
    END = "end"  # the run's overall verdict; only signatures may follow it
    SIGNATURE = "signature"  # an Ed25519 signature over the chain so far


class Outcome(StrEnum):
    """The one outcome type of measurements, requirements and runs.

    FAIL is about the unit (a value outside its limit), ERROR about the test (it could not
    judge). The words are what the record files hold: they must never change, or records
    written before would no longer read the same."""

    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"  # the test could not judge the unit (setup, teardown or an exception)
    INCOMPLETE = "INCOMPLETE"  # the run stopped before its end (interrupted, killed)
    NOT_RUN = "NOT RUN"  # a requirement of the model with no conclusion in the run
    NOT_CONCLUDED = "NOT CONCLUDED"  # measured, but its test was cut short before concluding
    INVALID = "INVALID"  # the record was altered after it was written: its verdicts are void
    # run-level words: the unit is neither passed nor failed
    RETEST = "NOT CERTIFIED - retest"  # a requirement could not be judged (ERROR): run again
    PARTIAL = "NOT CERTIFIED - partial"  # only some requirements were selected to run
    INTERRUPTED = "INTERRUPTED"  # Ctrl-C or SIGTERM: the run was stopped, its record ended

    @property
    def severity(self) -> int:
        """Order of badness, for the worst of several conclusions of one requirement."""
        return _SEVERITY[self]


_SEVERITY = {
    Outcome.PASS: 0,
    Outcome.NOT_RUN: 1,
    Outcome.NOT_CONCLUDED: 2,
    Outcome.INCOMPLETE: 2,
    Outcome.FAIL: 3,
    Outcome.ERROR: 4,
    Outcome.INVALID: 5,
    Outcome.PARTIAL: 1,
    Outcome.INTERRUPTED: 2,
    Outcome.RETEST: 2,
}

# statements about the test, not the unit: shown as "not certified", never as the unit failing
NOT_ABOUT_THE_UNIT = frozenset(
    {Outcome.ERROR, Outcome.RETEST, Outcome.PARTIAL, Outcome.INTERRUPTED, Outcome.INCOMPLETE}
)


def is_unit_failure(verdict: str) -> bool:
    """True when the verdict says the unit failed (FAIL, or a word the rig does not know);
    ERROR, retest, partial and interrupted say the test could not judge it."""
    return verdict not in NOT_ABOUT_THE_UNIT | {
        Outcome.PASS,
        Outcome.NOT_RUN,
        Outcome.NOT_CONCLUDED,
        Outcome.INVALID,
    }


def severity(verdict: str) -> int:
    """The badness of a verdict as recorded; a word the rig does not know counts as FAIL."""
    try:
        return Outcome(verdict).severity
    except ValueError:
        return Outcome.FAIL.severity


def overall_verdict(
    verdicts: Mapping[str, str],
    *,
    required: Iterable[str] = (),
    complete: bool = True,
    unsafe: str | None = None,
    intact: bool = True,
    interrupted: bool = False,
    selected: Iterable[str] | None = None,
) -> Outcome:
    """A run's overall verdict: the one rule, for the run's end line and for whoever re-judges it.

    `verdicts`: each concluded requirement's verdict; `required`: the requirements the model
    has; `complete`: the run reached its end without interruption (else INCOMPLETE, whatever
    the verdicts); `interrupted`: Ctrl-C or SIGTERM stopped it (INTERRUPTED); `unsafe`: why the
    table was not confirmed safe (fails the run); `intact`: the record verifies (else INVALID);
    `selected`: the requirements the run set out to run (None: all it requires).

    In order: a unit FAIL (or an unconfirmed safe state) is FAIL; a requirement that could not
    be judged (ERROR, or selected but never concluded) is NOT CERTIFIED - retest; a required
    requirement not selected is NOT CERTIFIED - partial; else PASS. FAIL is about the unit,
    never about the test: ERROR alone never makes a run FAIL."""
    if interrupted:
        return Outcome.INTERRUPTED
    if not complete:
        return Outcome.INCOMPLETE
    if not intact:
        return Outcome.INVALID
    required = list(required)
    chosen = set(required if selected is None else selected)
    if unsafe or any(v == Outcome.FAIL for v in verdicts.values()):
        return Outcome.FAIL
    if any(v != Outcome.PASS for v in verdicts.values()) or any(
        r not in verdicts for r in required if r in chosen
    ):
        return Outcome.RETEST
    if any(r not in verdicts for r in required):
        return Outcome.PARTIAL
    return Outcome.PASS


# --------------------------------------------------------------------------- canonical JSON


def jsonable(obj: Any) -> Any:
    """`obj` as the record writes it: non-finite floats as strings, numpy scalars as numbers."""
    if isinstance(obj, float):
        if math.isnan(obj):
            return "NaN"
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return jsonable(obj.item())
    return obj


def canonical_value(value: Any, *, ascii_only: bool = True, allow_nan: bool = True) -> bytes:
    """Canonical JSON of any value: sorted keys, compact, non-finite floats as strings.

    The profile digests were defined otherwise, and keep their bytes with `ascii_only=False`
    (non-ASCII characters as UTF-8 rather than \\u escapes) and `allow_nan=False` (a
    non-finite float raises ValueError rather than being written as a string). Record lines
    always use the defaults."""
    return json.dumps(
        jsonable(value) if allow_nan else value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=ascii_only,
        allow_nan=allow_nan,
    ).encode()


def canonical(obj: dict[str, Any]) -> bytes:
    """The bytes a record line is written as and hashed over."""
    return canonical_value(obj)


def canonical_text(value: Any) -> str:
    """Canonical JSON as text, e.g. a key for a set of bindings: equal values, equal keys."""
    return canonical_value(value).decode()


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


def now_iso() -> str:
    """UTC timestamp for the record (host wall time: for people, never for verdicts)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def record_number(x: Any) -> float | None:
    """A number as the record holds it: JSON numbers, or the strings written for non-finite
    floats ("NaN", "inf", "-inf"); None for anything else (not measured, no limit)."""
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------- run directories


class RecordError(RigError):
    """The record cannot be read or appended to as asked (changed on disk, partial last line,
    not found ...)."""


class NoRecordError(RecordError, ConfigError):
    """No record where one was named: a usage error (exit code 2), not damaged evidence."""


def run_paths(run: Path | str) -> tuple[Path, Path]:
    """(run directory, record file) of a run directory or of its record file. Nothing is
    checked: see `resolve_run`."""
    path = Path(run)
    if path.is_dir():
        return path, path / RECORD_NAME
    return path.parent, path


def resolve_run(run: Path | str) -> tuple[Path, Path]:
    """(run directory, record file) of a run directory or of its record file.

    Raises NoRecordError if there is no record there."""
    directory, record = run_paths(run)
    if not record.is_file():
        raise NoRecordError(f"{run}: not a run directory or record ({RECORD_NAME} not found)")
    return directory, record


# --------------------------------------------------------------------------- text


def slug(
    text: str, *, keep: str = "_.-", fill: str = "_", strip: bool = True, lower: bool = False
) -> str:
    """`text` as a file-name part: each run of characters other than ASCII letters, digits and
    `keep` becomes `fill`, then `fill` is stripped from both ends (unless `strip` is False)."""
    if lower:
        text = text.strip().lower()
    out = re.sub(f"[^A-Za-z0-9{re.escape(keep)}]+", fill, text)
    return out.strip(fill) if strip else out


def number_text(x: Any, *, digits: int = 4, exact_below: float = 1e6) -> str:
    """A number as a person reads it: whole numbers below `exact_below` without a decimal
    point, others to `digits` significant digits; anything not a number as str()."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    if math.isfinite(x) and float(x).is_integer() and abs(x) < exact_below:
        return str(int(x))
    return f"{x:.{digits}g}"


def limit_text(
    low: float | None,
    high: float | None,
    equals: float | None,
    unit: str = "",
    *,
    digits: int = 4,
    exact_below: float = 1e6,
) -> str:
    """A limit as a person reads it: "= 5 mm", "1 .. 2 s", "<= 0.5 s", ">= 10 N"; "-" if none."""

    def n(x: float) -> str:
        return number_text(x, digits=digits, exact_below=exact_below)

    u = f" {unit}" if unit else ""
    if equals is not None:
        return f"= {n(equals)}{u}"
    if low is not None and high is not None:
        return f"{n(low)} .. {n(high)}{u}"
    if high is not None:
        return f"<= {n(high)}{u}"
    if low is not None:
        return f">= {n(low)}{u}"
    return "-"
