"""Results database: run records in SQLite, so measurements can be compared across units."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..evidence.format import Kind, canonical_text, now_iso, record_number
from ..evidence.reader import read_run

SCHEMA_VERSION = 1

# value_flag says why `value` is NULL: SQL aggregates (AVG, MIN, ...) then see only finite numbers,
# and "never happened" (inf) stays distinguishable from "not measured" (None in the record).
FLAG_INF, FLAG_NEG_INF, FLAG_NAN, FLAG_MISSING = "inf", "-inf", "nan", "not measured"

_SCHEMA = f"""
CREATE TABLE runs (
    id                  INTEGER PRIMARY KEY,
    header_sha256       TEXT NOT NULL UNIQUE,
    record_sha256       TEXT NOT NULL,
    record_bytes        INTEGER NOT NULL,
    run_dir             TEXT NOT NULL,
    model               TEXT NOT NULL,
    serial              TEXT NOT NULL,
    station             TEXT,
    operator            TEXT,
    started             TEXT,
    ended               TEXT,
    verdict             TEXT NOT NULL,
    complete            INTEGER NOT NULL,
    chain_intact        INTEGER NOT NULL,
    emulated            INTEGER,
    rig_version         TEXT,
    source_revision     TEXT,
    requirements_sha256 TEXT,
    not_run             TEXT NOT NULL,
    ingested            TEXT NOT NULL
);
CREATE INDEX runs_model ON runs (model, started);
CREATE TABLE measurements (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    requirement TEXT NOT NULL,
    clause      TEXT,
    name        TEXT NOT NULL,
    value       REAL,
    value_flag  TEXT CHECK (value_flag IN
                ('{FLAG_INF}', '{FLAG_NEG_INF}', '{FLAG_NAN}', '{FLAG_MISSING}')),
    unit        TEXT,
    low         REAL,
    high        REAL,
    equals      REAL,
    verdict     TEXT NOT NULL,
    repeat      INTEGER,
    bindings    TEXT NOT NULL,
    note        TEXT,
    trace       TEXT
);
CREATE INDEX measurements_run ON measurements (run_id);
CREATE INDEX measurements_quantity ON measurements (requirement, name);
CREATE TABLE requirement_verdicts (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    requirement TEXT NOT NULL,
    verdict     TEXT NOT NULL,
    note        TEXT,
    test        TEXT
);
CREATE INDEX requirement_verdicts_run ON requirement_verdicts (run_id);
"""


class ResultsError(ConfigError):
    """The database or a record cannot be read as results (`rig` prints it as a one-line error)."""


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


@dataclass(frozen=True)
class StoredMeasurement:
    """One measurement line of an ingested run, with the run it belongs to.

    `value` is as recorded: a float (possibly inf or NaN) or None for not measured."""

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


class ResultsDB:
    """The results database (SQLite file, schema created on first use).

    Safe to share between processes (certify-all runs models in parallel): writes take the
    database lock up front and wait up to `timeout` seconds for it."""

    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE below
        self.conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA foreign_keys = ON")
        with self._write():
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                # statement by statement: executescript() would commit the open transaction
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise ResultsError(
                    f"{self.path}: results schema version {version}, this rig reads "
                    f"{SCHEMA_VERSION}"
                )

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock before reading, so two processes ingesting the same run
        # cannot both decide it is new
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- ingest ---------------------------------------------------------------------------------
    def ingest(self, run_dir: Path) -> int:
        """Store one run (a run directory or its record.jsonl); return its run id.

        Idempotent: a run is keyed by the SHA-256 of its header line, so ingesting it again (or a
        copy of it elsewhere) does not duplicate it. If the record has grown since (ingested before
        its end line, or signed after), the stored run is replaced under the same id; an older,
        shorter copy never replaces a newer one.
        Incomplete runs are stored with complete = 0 and verdict INCOMPLETE, whatever they say."""
        # one read: hashing what was parsed, so a line appended meanwhile is not marked as seen
        view = read_run(run_dir)
        path, data, h, end = view.path, view.data, view.header, view.end
        if h is None or view.header_raw is None:
            raise ResultsError(f"{path}: not a run record (no header line)")
        record_sha = hashlib.sha256(data).hexdigest()
        header_sha = hashlib.sha256(view.header_raw).hexdigest()
        station = h.get("station") if isinstance(h.get("station"), dict) else {}
        emulated = station.get("emulated")
        run_row = {
            "header_sha256": header_sha,
            "record_sha256": record_sha,
            "record_bytes": len(data),
            "run_dir": str(path.parent.resolve()),
            "model": str(h.get("model", "")),
            "serial": str(h.get("serial", "")),
            "station": station.get("id"),
            "operator": h.get("operator"),
            "started": h.get("started") or h.get("time"),
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
        }
        with self._write():
            row = self.conn.execute(
                "SELECT id, record_bytes FROM runs WHERE header_sha256 = ?", (header_sha,)
            ).fetchone()
            # records are append-only: only a longer one is newer; a shorter or equal one is the
            # same run or an older snapshot of it (a stale copy), which must not replace it
            if row is not None and len(data) <= row["record_bytes"]:
                return int(row["id"])
            if row is None:
                cols = ", ".join(run_row)
                marks = ", ".join(f":{k}" for k in run_row)
                cur = self.conn.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", run_row)
                run_id = int(cur.lastrowid or 0)
            else:
                run_id = int(row["id"])
                sets = ", ".join(f"{k} = :{k}" for k in run_row)
                self.conn.execute(
                    f"UPDATE runs SET {sets} WHERE id = :id", {**run_row, "id": run_id}
                )
                self.conn.execute("DELETE FROM measurements WHERE run_id = ?", (run_id,))
                self.conn.execute("DELETE FROM requirement_verdicts WHERE run_id = ?", (run_id,))
            # the lines up to the first unreadable one (a torn last line is what a crash
            # mid-write leaves; the run then has no end line)
            self._insert_lines(run_id, view.entries)
        return run_id

    def _insert_lines(self, run_id: int, lines: list[dict[str, Any]]) -> None:
        ms, rs = [], []
        for i, line in enumerate(lines):
            kind = line.get("kind")
            seq = line.get("seq", i)
            if kind == Kind.MEASUREMENT:
                value, flag = _split_value(line.get("value"))
                ms.append(
                    (
                        run_id,
                        seq,
                        str(line.get("requirement", "")),
                        line.get("clause"),
                        str(line.get("name", "")),
                        value,
                        flag,
                        line.get("unit"),
                        _limit(line.get("low")),
                        _limit(line.get("high")),
                        _limit(line.get("equals")),
                        str(line.get("verdict", "")),
                        line.get("repeat"),
                        bindings_key(line.get("bindings")),
                        line.get("note"),
                        line.get("trace"),
                    )
                )
            elif kind == Kind.REQUIREMENT:
                rs.append(
                    (
                        run_id,
                        seq,
                        str(line.get("requirement", "")),
                        str(line.get("verdict", "")),
                        line.get("note"),
                        line.get("test"),
                    )
                )
            # other kinds (header, event, end, signature, ...) carry no results to tabulate
        self.conn.executemany(
            "INSERT INTO measurements (run_id, seq, requirement, clause, name, value, value_flag,"
            " unit, low, high, equals, verdict, repeat, bindings, note, trace)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ms,
        )
        self.conn.executemany(
            "INSERT INTO requirement_verdicts (run_id, seq, requirement, verdict, note, test)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rs,
        )

    def ingest_all(self, reports: Path) -> list[int]:
        """Ingest every run directory under `reports` (backfill); run ids in directory order."""
        return [self.ingest(p.parent) for p in sorted(Path(reports).glob("*/record.jsonl"))]

    # -- queries --------------------------------------------------------------------------------
    def runs(self, model: str | None = None) -> list[Run]:
        """Ingested runs (of one model, case-insensitive), in run order (start time)."""
        sql = "SELECT * FROM runs"
        args: tuple[Any, ...] = ()
        if model is not None:
            sql += " WHERE upper(model) = upper(?)"
            args = (model,)
        rows = self.conn.execute(sql + " ORDER BY started, id", args).fetchall()
        return [
            Run(
                id=r["id"],
                run_dir=r["run_dir"],
                model=r["model"],
                serial=r["serial"],
                station=r["station"],
                operator=r["operator"],
                started=r["started"],
                ended=r["ended"],
                verdict=r["verdict"],
                complete=bool(r["complete"]),
                chain_intact=bool(r["chain_intact"]),
                emulated=None if r["emulated"] is None else bool(r["emulated"]),
                rig_version=r["rig_version"],
                source_revision=r["source_revision"],
                requirements_sha256=r["requirements_sha256"],
                not_run=tuple(json.loads(r["not_run"])),
            )
            for r in rows
        ]

    def measurements(
        self,
        model: str,
        requirement: str | None = None,
        name: str | None = None,
        *,
        only_complete: bool = False,
        emulated: bool | None = None,
    ) -> list[StoredMeasurement]:
        """Measurements of a model in run order. `only_complete`: only runs that are complete
        with an intact chain (what statistics use); `emulated`: True/False to keep only emulated
        or only real benches, None for both."""
        sql = (
            "SELECT m.*, r.serial, r.started FROM measurements m JOIN runs r ON r.id = m.run_id"
            " WHERE upper(r.model) = upper(?)"
        )
        args: list[Any] = [model]
        if requirement is not None:
            sql += " AND m.requirement = ?"
            args.append(requirement)
        if name is not None:
            sql += " AND m.name = ?"
            args.append(name)
        if only_complete:
            sql += " AND r.complete = 1 AND r.chain_intact = 1"
        if emulated is not None:
            sql += " AND r.emulated = ?"
            args.append(int(emulated))
        sql += " ORDER BY r.started, r.id, m.seq"
        return [
            StoredMeasurement(
                run_id=r["run_id"],
                serial=r["serial"],
                started=r["started"],
                seq=r["seq"],
                requirement=r["requirement"],
                clause=r["clause"] or "",
                name=r["name"],
                value=_join_value(r["value"], r["value_flag"]),
                value_flag=r["value_flag"],
                unit=r["unit"] or "",
                low=r["low"],
                high=r["high"],
                equals=r["equals"],
                verdict=r["verdict"],
                repeat=r["repeat"],
                bindings=json.loads(r["bindings"]),
                note=r["note"] or "",
                trace=r["trace"],
            )
            for r in self.conn.execute(sql, args).fetchall()
        ]


def ingest_run(db_path: Path, run_dir: Path) -> int:
    """Open the database, ingest one run, close: what a certification calls when it ends."""
    with ResultsDB(db_path) as db:
        return db.ingest(run_dir)
