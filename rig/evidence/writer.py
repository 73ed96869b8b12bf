"""The run record's writer: every measurement with its limit, verdict, requirement and clause.

One JSON object per line, append-only, each line carrying the SHA-256 of the line before (a hash
chain), flushed and fsynced as written so that a crash loses no completed measurement. A run that
does not reach its `end` line is incomplete, never PASS.

Every line also carries `fields`: the SHA-256 of the canonical JSON of each of its other fields,
so that a verifier can name the field that was changed, not only the line (rig.evidence.verify).
The chain still decides whether a line is intact; the digests only locate the change.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .format import (
    FIELDS,
    GENESIS,
    RECORD_NAME,
    RESERVED,
    TRACES_DIR,
    Kind,
    Outcome,
    RecordError,
    canonical,
    field_digests,
    line_hash,
    now_iso,
)
from .measurement import Measurement
from .reader import RunView, parse_run, require_appendable

try:  # POSIX: serialise appends of several processes (the run, then reviewers signing)
    import fcntl
except ImportError:  # pragma: no cover - Windows: one writer at a time is then on the user
    fcntl = None  # type: ignore[assignment]


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


class RunRecord:
    """Append-only hash-chained JSON-lines record of one certification run."""

    def __init__(self, directory: Path) -> None:
        self._setup(Path(directory))
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / TRACES_DIR).mkdir(exist_ok=True)

    def _setup(self, directory: Path) -> None:
        # the state of an empty record; `open` fills it from the file
        self.directory = directory
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
    def open(cls, directory: Path, *, view: RunView | None = None) -> RunRecord:
        """An existing record, to append to its chain (signatures after the run).

        `view`: the record as already read (rig.evidence.reader), so that what was checked is
        what is appended to: should the file have changed since, the append is refused.
        Refuses a record whose last line is partial (a write cut short): a line appended
        after it would be glued to the fragment."""
        rec = cls.__new__(cls)
        rec._setup(Path(directory))
        if view is None:
            try:
                data = rec.path.read_bytes()
            except FileNotFoundError:
                raise RecordError(f"{rec.path}: no such record") from None
            view = parse_run(rec.directory, rec.path, data)
        rec.path = view.path  # the file that was read, whatever its name
        require_appendable(view)
        rec._size = len(view.data)
        rec._prev = view.hashes[-1] if view.hashes else GENESIS
        rec._seq = view.next_seq
        if view.header is not None:
            rec.header = _body(view.header)
        rec.measurements = list(view.measurements)
        rec.requirement_verdicts = view.verdicts
        rec.requirement_tests = view.tests
        rec.ended = view.ended
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
        self._append(Kind.HEADER, header)

    def add_trace(self, name: str, csv_text: str) -> tuple[str, str]:
        """Store a trace file; return (relative path, sha256)."""
        rel = f"{TRACES_DIR}/{name}.csv"
        data = csv_text.encode()
        path = self.directory / rel
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(path.parent)
        digest = hashlib.sha256(data).hexdigest()
        # chained at once, so a trace no measurement names later is evidence too
        self._append(Kind.TRACE, {"trace": rel, "trace_sha256": digest})
        return rel, digest

    def add(self, m: Measurement) -> None:
        """Record one judged measurement."""
        self.measurements.append(m)
        self._append(Kind.MEASUREMENT, asdict(m))

    def conclude_requirement(
        self, requirement: str, verdict: str, note: str = "", test: str = ""
    ) -> None:
        """Record a requirement's verdict (the worst of its measurements, or ERROR) and the test
        that verified it."""
        self.requirement_verdicts[requirement] = verdict
        self.requirement_tests[requirement] = test
        self._append(
            Kind.REQUIREMENT,
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
                    "verdict": self.requirement_verdicts.get(req.id, Outcome.NOT_RUN),
                }
            )
        self._append(Kind.TRACEABILITY, {"matrix": rows})
        return rows

    def event(self, what: str, **details: Any) -> None:
        """Record a notable event (safe-state checks, interruptions)."""
        self._append(Kind.EVENT, {"event": what, **details})

    def end(self, verdict: str, **details: Any) -> None:
        """Close the run with its overall verdict."""
        self._append(Kind.END, {"verdict": verdict, **details})
        self.ended = True


def _body(line: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in line.items() if k not in RESERVED and k != "time"}
