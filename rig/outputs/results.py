"""Results database: run records in SQLite or PostgreSQL, so measurements can be compared across
units, stations and shifts; each run's chain head and signatures anchored as it is ingested."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from ..evidence.format import Kind, Outcome, canonical_text, now_iso, record_number
from ..evidence.reader import RunView, read_run
from ..evidence.verify import AnchoredLine, Anchoring
from .db import ResultsError, create_engine, database_url, describe, is_url, migrate
from .db.schema import (
    ANCHOR_END,
    ANCHOR_SIGNATURE,
    FLAG_INF,
    FLAG_MISSING,
    FLAG_NAN,
    FLAG_NEG_INF,
    anchors,
    measurements,
    requirement_verdicts,
    runs,
)
from .db.shifts import DEFAULT_SHIFTS, ShiftTable

__all__ = [
    "FLAG_INF",
    "FLAG_MISSING",
    "FLAG_NAN",
    "FLAG_NEG_INF",
    "Anchor",
    "ResultsDB",
    "ResultsError",
    "Run",
    "StoredMeasurement",
    "bindings_key",
    "ingest_run",
]


@dataclass(frozen=True)
class Run:
    """One ingested run. `complete`: it reached its end line uninterrupted; `chain_intact`: the
    hash chain up to the end line verifies. Only runs with both feed statistics."""

    id: int
    run_dir: str
    model: str
    serial: str
    station: str | None
    operator: str | None
    started: str | None
    ended: str | None
    verdict: str
    complete: bool
    chain_intact: bool
    emulated: bool | None
    rig_version: str | None
    source_revision: str | None
    requirements_sha256: str | None
    not_run: tuple[str, ...]
    shift: str | None = None


@dataclass(frozen=True)
class StoredMeasurement:
    """One measurement line of an ingested run, with the run it belongs to.

    `value` is as recorded: a float (possibly inf or NaN) or None for not measured.
    `error_attempt`: the --retest attempt it was made in was concluded ERROR: kept, but it says
    nothing about the unit, so statistics leave it out."""

    run_id: int
    serial: str
    started: str | None
    seq: int
    requirement: str
    clause: str
    name: str
    value: float | None
    value_flag: str | None
    unit: str
    low: float | None
    high: float | None
    equals: float | None
    verdict: str
    repeat: int | None
    bindings: dict[str, Any]
    note: str
    trace: str | None
    station: str | None = None
    shift: str | None = None
    attempt: int | None = None
    error_attempt: bool = False


@dataclass(frozen=True)
class Anchor:
    """One anchored line of a run: the end line or a signature line, with its SHA-256 as it was
    when the run was ingested (or the signature added)."""

    run_id: int
    header_sha256: str
    seq: int
    kind: str
    line_sha256: str
    name: str | None
    role: str | None
    meaning: str | None
    signed_at: str | None
    fingerprint: str | None
    anchored: str


def bindings_key(bindings: dict[str, Any] | None) -> str:
    """The canonical text of a binding set: the same bindings always give the same key."""
    return canonical_text(bindings or {})


_num = record_number  # JSON numbers, or the strings the record writes for non-finite floats


def _limit(x: Any) -> float | None:
    v = _num(x)
    return None if v is None or math.isnan(v) else v


def _split_value(x: Any) -> tuple[float | None, str | None]:
    v = _num(x)
    if v is None:
        return None, FLAG_MISSING
    if math.isnan(v):
        return None, FLAG_NAN
    if math.isinf(v):
        return None, FLAG_INF if v > 0 else FLAG_NEG_INF
    return v, None


def _join_value(value: float | None, flag: str | None) -> float | None:
    return {
        FLAG_INF: math.inf,
        FLAG_NEG_INF: -math.inf,
        FLAG_NAN: math.nan,
        FLAG_MISSING: None,
    }.get(flag or "", value)


def _attempt(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) and x >= 1 else None


class ResultsDB:
    """The results database: a SQLite file (a path) or a PostgreSQL database (a URL), brought to
    the newest schema revision on first use.

    Safe to share between processes and stations: a run is keyed by the hash of its header line
    and ingested in one transaction that holds a lock on that key (SQLite: the database write
    lock; PostgreSQL: an advisory lock on the key), so concurrent ingests lose nothing and never
    store a run twice. Every call waits at most `timeout` seconds."""

    def __init__(
        self,
        where: str | Path,
        *,
        timeout: float = 30.0,
        shifts: ShiftTable = DEFAULT_SHIFTS,
    ) -> None:
        self.url = database_url(where)
        self.path: Path | str = where if is_url(where) else Path(where)
        self.where = describe(self.url) if is_url(where) else str(self.path)
        self.shifts = shifts
        self.engine = _engine(self.url, timeout, self.where)

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    def close(self) -> None:
        """Done with the database. The engine stays for the next ResultsDB of this process (its
        compiled statements are cached per engine: a new engine per run compiled every insert
        anew); SQLite holds no connection between calls, PostgreSQL's pool closes with the
        process."""

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, sql: str, *params: Any) -> list[sa.Row]:
        """Run one SQL statement (the driver's parameter style) and return its rows: for tests
        and ad-hoc queries."""
        with self.engine.begin() as conn:
            result = conn.exec_driver_sql(sql, tuple(params))
            return list(result) if result.returns_rows else []

    # -- ingest ---------------------------------------------------------------------------------
    def ingest(self, run_dir: Path) -> int:
        """Store one run (a run directory or its record.jsonl); return its run id.

        Idempotent: a run is keyed by the SHA-256 of its header line, so ingesting it again (or a
        copy of it elsewhere) does not duplicate it. If the record has grown since (ingested before
        its end line, or signed after), the stored run is replaced under the same id; an older,
        shorter copy never replaces a newer one.
        Incomplete runs are stored with complete = 0 and verdict INCOMPLETE, whatever they say.

        Anchors: the hash of the end line and of each signature line are kept (append-only). A
        record that contradicts what was anchored (a line at an anchored seq with another hash,
        or an anchored line missing from a copy that would replace the stored one) is refused
        with a ResultsError naming the line: it was rewritten or a signature deleted."""
        # one read: hashing what was parsed, so a line appended meanwhile is not marked as seen
        view = read_run(run_dir)
        path, data, h, end = view.path, view.data, view.header, view.end
        if h is None or view.header_raw is None:
            raise ResultsError(f"{path}: not a run record (no header line)")
        record_sha = hashlib.sha256(data).hexdigest()
        header_sha = hashlib.sha256(view.header_raw).hexdigest()
        station = h.get("station") if isinstance(h.get("station"), dict) else {}
        emulated = station.get("emulated")
        started = h.get("started") or h.get("time")
        run_row = {
            "header_sha256": header_sha,
            "record_sha256": record_sha,
            "record_bytes": len(data),
            "run_dir": str(path.parent.resolve()),
            "model": str(h.get("model", "")),
            "serial": str(h.get("serial", "")),
            "station": station.get("id"),
            "operator": h.get("operator"),
            "started": started,
            "ended": end.get("time") if end else None,
            "verdict": str(view.verdict),
            "complete": int(view.complete),
            # up to the end line only: lines appended after it (signatures) are another
            # author's business and must not disqualify the run
            "chain_intact": int(view.chain_intact(to_end=True)),
            "emulated": None if emulated is None else int(bool(emulated)),
            "rig_version": h.get("rig_version"),
            "source_revision": h.get("source_revision"),
            "requirements_sha256": h.get("requirements_sha256"),
            "not_run": json.dumps(list(end.get("not_run") or []) if end else []),
            "ingested": now_iso(),
            "shift": self.shifts.shift_of(started if isinstance(started, str) else None),
            "record_lines": len(view.raws),
        }
        try:
            with self.engine.begin() as conn:
                self._lock(conn, header_sha)
                return self._ingest(conn, view, run_row)
        except (OperationalError, IntegrityError) as e:
            raise ResultsError(f"{self.where}: ingest of {path} failed: {_first(e)}") from None

    def _lock(self, conn: sa.Connection, header_sha: str) -> None:
        # SQLite: BEGIN IMMEDIATE holds the database's write lock already
        if self.dialect == "postgresql":
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(header_sha[:15], 16)}
            )

    def _ingest(self, conn: sa.Connection, view: RunView, run_row: dict[str, Any]) -> int:
        header_sha = run_row["header_sha256"]
        row = conn.execute(
            sa.select(runs.c.id, runs.c.record_bytes).where(runs.c.header_sha256 == header_sha)
        ).first()
        seq_hash = _line_hashes(view)
        anchored = self._anchors(conn, header_sha)
        differ = [a for a in anchored if a.seq in seq_hash and seq_hash[a.seq] != a.line_sha256]
        # records are append-only: only a longer one is newer; a shorter or equal one is the
        # same run or an older snapshot of it (a stale copy), which must not replace it
        stale = row is not None and run_row["record_bytes"] <= row.record_bytes
        missing = [] if stale else [a for a in anchored if a.seq not in seq_hash]
        if differ or missing:
            raise ResultsError(
                f"{view.path}: contradicts the anchors in {self.where}: "
                + "; ".join(_anchor_text(a, "differs") for a in differ)
                + ("; " if differ and missing else "")
                + "; ".join(_anchor_text(a, "is missing") for a in missing)
                + ": the record was rewritten or a signature deleted; not ingested"
            )
        if stale:
            assert row is not None
            return int(row.id)
        if row is None:
            run_id = int(conn.execute(sa.insert(runs).values(run_row)).inserted_primary_key[0])
        else:
            run_id = int(row.id)
            conn.execute(sa.update(runs).where(runs.c.id == run_id).values(run_row))
            conn.execute(sa.delete(measurements).where(measurements.c.run_id == run_id))
            conn.execute(
                sa.delete(requirement_verdicts).where(requirement_verdicts.c.run_id == run_id)
            )
        # the lines up to the first unreadable one (a torn last line is what a crash
        # mid-write leaves; the run then has no end line)
        self._insert_lines(conn, run_id, view.entries)
        self._anchor(conn, run_id, header_sha, view, {a.seq for a in anchored})
        return run_id

    def _insert_lines(self, conn: sa.Connection, run_id: int, lines: list[dict[str, Any]]) -> None:
        ms: list[dict[str, Any]] = []
        rs: list[dict[str, Any]] = []
        pending: dict[str, list[dict[str, Any]]] = {}  # requirement -> measurements not concluded
        for i, line in enumerate(lines):
            kind = line.get("kind")
            seq = line.get("seq", i)
            if kind == Kind.MEASUREMENT:
                value, flag = _split_value(line.get("value"))
                m = {
                    "run_id": run_id,
                    "seq": seq,
                    "requirement": str(line.get("requirement", "")),
                    "clause": line.get("clause"),
                    "name": str(line.get("name", "")),
                    "value": value,
                    "value_flag": flag,
                    "unit": line.get("unit"),
                    "low": _limit(line.get("low")),
                    "high": _limit(line.get("high")),
                    "equals": _limit(line.get("equals")),
                    "verdict": str(line.get("verdict", "")),
                    "repeat": line.get("repeat"),
                    "bindings": bindings_key(line.get("bindings")),
                    "note": line.get("note"),
                    "trace": line.get("trace"),
                    "attempt": _attempt(line.get("attempt")),
                    "error_attempt": 0,
                }
                ms.append(m)
                pending.setdefault(m["requirement"], []).append(m)
            elif kind == Kind.REQUIREMENT:
                req = str(line.get("requirement", ""))
                verdict = str(line.get("verdict", ""))
                attempt = _attempt(line.get("attempt")) or 1
                rs.append(
                    {
                        "run_id": run_id,
                        "seq": seq,
                        "requirement": req,
                        "verdict": verdict,
                        "note": line.get("note"),
                        "test": line.get("test"),
                        "attempt": attempt,
                    }
                )
                # the measurements since the requirement's last conclusion belong to this
                # attempt (--retest: each attempt measures, then concludes)
                for m in pending.pop(req, []):
                    if m["attempt"] is None:
                        m["attempt"] = attempt
                    if m["attempt"] == attempt and verdict == Outcome.ERROR:
                        m["error_attempt"] = 1
            # other kinds (header, event, end, signature, ...) carry no results to tabulate
        if ms:
            conn.execute(sa.insert(measurements), ms)
        if rs:
            conn.execute(sa.insert(requirement_verdicts), rs)

    def _anchor(
        self, conn: sa.Connection, run_id: int, header_sha: str, view: RunView, have: set[int]
    ) -> None:
        # only lines the chain vouches for: up to the first altered, unreadable or broken line
        bad = [*view.breaks, *view.noncanonical, *view.unreadable]
        first_bad = min(bad, default=len(view.lines))
        rows = []
        now = now_iso()
        for i, obj in enumerate(view.lines[:first_bad]):
            if obj is None or obj.get("kind") not in (ANCHOR_END, ANCHOR_SIGNATURE):
                continue
            seq = obj.get("seq")
            if not isinstance(seq, int) or seq in have:
                continue
            sig = obj.get("kind") == ANCHOR_SIGNATURE
            rows.append(
                {
                    "run_id": run_id,
                    "header_sha256": header_sha,
                    "seq": seq,
                    "kind": obj["kind"],
                    "line_sha256": view.hashes[i],
                    **{
                        k: (str(obj[k]) if sig and obj.get(k) is not None else None)
                        for k in (
                            "name",
                            "role",
                            "meaning",
                            "signed_at",
                            "fingerprint",
                            "public_key",
                            "signature",
                        )
                    },
                    "anchored": now,
                }
            )
        if rows:
            conn.execute(sa.insert(anchors), rows)

    def _anchors(self, conn: sa.Connection, header_sha: str) -> list[Anchor]:
        q = sa.select(anchors).where(anchors.c.header_sha256 == header_sha)
        return [_anchor_of(r) for r in conn.execute(q.order_by(anchors.c.seq))]

    def ingest_all(self, reports: Path, *, refused: list[str] | None = None) -> list[int]:
        """Ingest every run directory under `reports` (backfill); run ids in directory order.

        With `refused`, a run that cannot be ingested (not a record, or contradicting its
        anchors) is named there and the others still go in; without it, the first one raises."""
        ids = []
        for p in sorted(Path(reports).glob("*/record.jsonl")):
            try:
                ids.append(self.ingest(p.parent))
            except ResultsError as e:
                if refused is None:
                    raise
                refused.append(str(e))
        return ids

    # -- anchors --------------------------------------------------------------------------------
    def anchors_of(self, header_sha256: str) -> list[Anchor]:
        """What was anchored for the run with this header hash, in seq order."""
        with self.engine.begin() as conn:
            return self._anchors(conn, header_sha256)

    def runs_like(self, model: str, serial: str, started: str | None) -> list[Run]:
        """Stored runs of the same unit that started at the same time (a rewritten header keeps
        them, and is then found by them rather than by its hash)."""
        q = sa.select(runs).where(runs.c.model == model, runs.c.serial == serial)
        q = q.where(runs.c.started == started if started is not None else runs.c.started.is_(None))
        with self.engine.begin() as conn:
            return [_run_of(r) for r in conn.execute(q.order_by(runs.c.id))]

    # -- queries --------------------------------------------------------------------------------
    def runs(self, model: str | None = None) -> list[Run]:
        """Ingested runs (of one model, case-insensitive), in run order (start time)."""
        q = sa.select(runs)
        if model is not None:
            q = q.where(sa.func.upper(runs.c.model) == model.upper())
        with self.engine.begin() as conn:
            return [_run_of(r) for r in conn.execute(q.order_by(runs.c.started, runs.c.id))]

    def measurements(
        self,
        model: str,
        requirement: str | None = None,
        name: str | None = None,
        *,
        only_complete: bool = False,
        emulated: bool | None = None,
        unit_data: bool = False,
        station: str | None = None,
        shift: str | None = None,
    ) -> list[StoredMeasurement]:
        """Measurements of a model in run order. `only_complete`: only runs that are complete
        with an intact chain; `unit_data`: that, and not of an attempt concluded ERROR (what
        statistics use); `emulated`: True/False to keep only emulated or only real benches, None
        for both; `station`, `shift`: only runs of that station or shift."""
        m, r = measurements, runs
        q = (
            sa.select(m, r.c.serial, r.c.started, r.c.station, r.c.shift)
            .join(r, r.c.id == m.c.run_id)
            .where(sa.func.upper(r.c.model) == model.upper())
        )
        if requirement is not None:
            q = q.where(m.c.requirement == requirement)
        if name is not None:
            q = q.where(m.c.name == name)
        if only_complete or unit_data:
            q = q.where(r.c.complete == 1, r.c.chain_intact == 1)
        if unit_data:
            q = q.where(m.c.error_attempt == 0)
        if emulated is not None:
            q = q.where(r.c.emulated == int(emulated))
        if station is not None:
            q = q.where(r.c.station == station)
        if shift is not None:
            q = q.where(r.c.shift == shift)
        q = q.order_by(r.c.started, r.c.id, m.c.seq)
        with self.engine.begin() as conn:
            rows = list(conn.execute(q))
        return [
            StoredMeasurement(
                run_id=x.run_id,
                serial=x.serial,
                started=x.started,
                seq=x.seq,
                requirement=x.requirement,
                clause=x.clause or "",
                name=x.name,
                value=_join_value(x.value, x.value_flag),
                value_flag=x.value_flag,
                unit=x.unit or "",
                low=x.low,
                high=x.high,
                equals=x.equals,
                verdict=x.verdict,
                repeat=x.repeat,
                bindings=json.loads(x.bindings),
                note=x.note or "",
                trace=x.trace,
                station=x.station,
                shift=x.shift,
                attempt=x.attempt,
                error_attempt=bool(x.error_attempt),
            )
            for x in rows
        ]


_ENGINES: dict[tuple[str, float, int], Engine] = {}


def _engine(url: sa.URL, timeout: float, where: str) -> Engine:
    # one engine per database, timeout and process (a forked child must not share a pool)
    key = (url.render_as_string(hide_password=False), timeout, os.getpid())
    if url.get_backend_name() == "sqlite" and not Path(str(url.database)).exists():
        _ENGINES.pop(key, None)  # the file was removed since: make (and migrate) it again
    engine = _ENGINES.get(key)
    if engine is None:
        engine = create_engine(url, timeout=timeout)
        try:
            migrate(engine, where)
        except BaseException:
            engine.dispose()
            raise
        _ENGINES[key] = engine
    return engine


def _run_of(r: sa.Row) -> Run:
    return Run(
        id=r.id,
        run_dir=r.run_dir,
        model=r.model,
        serial=r.serial,
        station=r.station,
        operator=r.operator,
        started=r.started,
        ended=r.ended,
        verdict=r.verdict,
        complete=bool(r.complete),
        chain_intact=bool(r.chain_intact),
        emulated=None if r.emulated is None else bool(r.emulated),
        rig_version=r.rig_version,
        source_revision=r.source_revision,
        requirements_sha256=r.requirements_sha256,
        not_run=tuple(json.loads(r.not_run)),
        shift=r.shift,
    )


def _anchor_of(r: sa.Row) -> Anchor:
    return Anchor(
        run_id=r.run_id,
        header_sha256=r.header_sha256,
        seq=r.seq,
        kind=r.kind,
        line_sha256=r.line_sha256,
        name=r.name,
        role=r.role,
        meaning=r.meaning,
        signed_at=r.signed_at,
        fingerprint=r.fingerprint,
        anchored=r.anchored,
    )


def _line_hashes(view: RunView) -> dict[int, str]:
    out = {}
    for i, obj in enumerate(view.lines):
        seq = obj.get("seq") if obj is not None else None
        if isinstance(seq, int) and not isinstance(seq, bool):
            out.setdefault(seq, view.hashes[i])
    return out


def _anchor_text(a: Anchor, what: str) -> str:
    if a.kind == ANCHOR_SIGNATURE:
        return f"seq {a.seq} (signature by {a.name!r}, {a.meaning}) {what}"
    return f"seq {a.seq} (the end line) {what}"


def _first(e: Exception) -> str:
    orig = getattr(e, "orig", None) or e
    return " ".join(str(orig).split())[:300]


def ingest_run(db: str | Path, run_dir: Path) -> int:
    """Open the database, ingest one run, close: what a certification calls when it ends."""
    with ResultsDB(db) as d:
        return d.ingest(run_dir)


def open_results(where: str | Path | None, reports: Path) -> ResultsDB:
    """The database named by `--db` (a path or URL), else $RIG_DB_URL, else
    REPORTS/results.sqlite."""
    from .db import default_url

    return ResultsDB(where or default_url() or Path(reports) / "results.sqlite")


def anchoring_for(db: str | Path, run: Path | str) -> Anchoring:
    """What the line's database anchored for the run at `run` (for `rig verify --db`).

    A SQLite path that does not exist is a ResultsError (rather than an empty database made
    here, which would make every record look unanchored)."""
    if not is_url(db) and not Path(db).is_file():
        raise ResultsError(f"{db}: no results database")
    view = read_run(run)
    if view.header_raw is None:
        raise ResultsError(f"{view.path}: not a run record (no header line)")
    header_sha = hashlib.sha256(view.header_raw).hexdigest()
    h = view.header or {}
    with ResultsDB(db) as d:
        lines = d.anchors_of(header_sha)
        same = []
        if not lines:
            started = h.get("started") or h.get("time")
            same = d.runs_like(str(h.get("model", "")), str(h.get("serial", "")), started)
        return Anchoring(
            where=d.where,
            lines=tuple(
                AnchoredLine(a.seq, a.kind, a.line_sha256, a.name, a.meaning, a.anchored)
                for a in lines
            ),
            same_unit=len(same),
        )
