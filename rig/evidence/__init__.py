"""The evidence: the run record's format, its writer, the one reader, signatures, verification.

Depends only on rig.errors, the standard library and cryptography (never on pytest, profiles or
outputs). The names most code needs are here; signing and verification are imported from their
modules (rig.evidence.signing, rig.evidence.verify).
"""

from .format import (
    GENESIS,
    RECORD_NAME,
    Kind,
    NoRecordError,
    Outcome,
    RecordError,
    canonical,
    canonical_text,
    canonical_value,
    limit_text,
    number_text,
    overall_verdict,
    resolve_run,
    run_paths,
    slug,
)
from .measurement import LimitSpec, Measurement, evaluate, judge
from .reader import Conclusion, RunView, read_run
from .writer import RunRecord

__all__ = [
    "GENESIS",
    "RECORD_NAME",
    "Conclusion",
    "Kind",
    "LimitSpec",
    "Measurement",
    "NoRecordError",
    "Outcome",
    "RecordError",
    "RunRecord",
    "RunView",
    "canonical",
    "canonical_text",
    "canonical_value",
    "evaluate",
    "judge",
    "limit_text",
    "number_text",
    "overall_verdict",
    "read_run",
    "resolve_run",
    "run_paths",
    "slug",
]
