"""The line's results database: migrations, SQLite and PostgreSQL alike, several processes
ingesting at once, stations and shifts, --retest ERROR attempts left out of statistics."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest
from db_support import fresh_pg
from test_results import MODEL, quantities, write_run

from rig.cli import main
from rig.evidence.format import Outcome
from rig.evidence.measurement import Measurement
from rig.outputs.db import HEAD, MIGRATIONS, ResultsError, database_url
from rig.outputs.db.shifts import DEFAULT_SHIFTS, shift_table
from rig.outputs.results import ResultsDB
from rig.outputs.stats import requirement_stats, run_yields, stats_command
from rig.plugin.events import EventBus
from rig.plugin.session import LiveRecord

LEGACY = Path(__file__).parent / "data" / "results" / "legacy-schema-v1.sql"


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path):
    """A fresh results database of each kind: a SQLite path or a PostgreSQL URL."""
    if request.param == "sqlite":
        yield str(tmp_path / "results.sqlite")
    else:
        with fresh_pg() as url:
            yield url


# --- migrations ----------------------------------------------------------------------------


def test_head_is_the_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD


def test_a_database_of_the_hand_written_schema_is_upgraded_in_place(tmp_path):
    """A reports/results.sqlite written before the migrations keeps its runs."""
    path = tmp_path / "results.sqlite"
    d = write_run(tmp_path / "rep", "OLD1", quantities(0))
    conn = sqlite3.connect(path)
    conn.executescript(LEGACY.read_text())
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO runs (header_sha256, record_sha256, record_bytes, run_dir, model, serial,"
        " verdict, complete, chain_intact, not_run, ingested) VALUES"
        " ('h', 'r', 1, 'x', 'TT-890', 'OLD0', 'PASS', 1, 1, '[]', 'now')"
    )
    conn.commit()
    conn.close()
    with ResultsDB(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version") == [(HEAD,)]
        assert [r.serial for r in db.runs()] == ["OLD0"]
        db.ingest(d)
        assert [r.serial for r in db.runs()] == ["OLD0", "OLD1"]
        assert db.runs()[1].shift == "early"  # 08:00 UTC


def test_a_bad_database_url_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ResultsError, match=r"'mysql://u@h/db': unsupported database 'mysql'"):
        database_url("mysql://u@h/db")
    with pytest.raises(ResultsError, match="no database name"):
        database_url("postgresql://rig@127.0.0.1:5432")
    assert main(["stats", MODEL, "--db", "oracle://x/y"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unsupported database 'oracle'" in err
    # a server that is not there: one line, bounded, no traceback
    code = main(["stats", MODEL, "--db", "postgresql://rig@127.0.0.1:9/none"])
    assert code == 2
    assert "cannot open the results database" in capsys.readouterr().err


def test_certify_refuses_a_bad_db_url_before_anything_runs(tmp_path, capsys):
    code = main(
        ["certify", MODEL, "--serial", "890001", "--db", "ftp://x/y", "--reports", str(tmp_path)]
    )
    assert code == 2
    assert "unsupported database 'ftp'" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())


# --- the same behaviour on both --------------------------------------------------------------


def test_runs_measurements_and_stats_on_both_databases(where, tmp_path):
    dirs = [write_run(tmp_path / "rep", f"U{i}", quantities(i), day=i + 1) for i in range(6)]
    with ResultsDB(where) as db:
        ids = [db.ingest(d) for d in dirs]
        assert [db.ingest(d) for d in dirs] == ids  # idempotent
        assert [r.serial for r in db.runs(MODEL)] == [f"U{i}" for i in range(6)]
        assert len(db.measurements(MODEL)) == 6 * 5
        rows = requirement_stats(db, MODEL)
        peak = next(r for r in rows if r.name == "peak_force")
        assert (peak.count, peak.passes) == (6, 5)
        assert peak.cpk == pytest.approx((315 - 311) / (3 * math.sqrt(8)))  # by hand: Cpu
        assert db.execute("SELECT count(*) FROM anchors") == [(6,)]  # each run's end line


# --- several processes at once ---------------------------------------------------------------


def _ingest_many(where: str, dirs: list[str], go: str, out: str) -> None:
    # each run in its own connection, as each certification's sink does
    deadline = time.monotonic() + 60
    while not Path(go).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    errors = []
    for d in dirs:
        try:
            with ResultsDB(where) as db:
                db.ingest(Path(d))
        except Exception as e:  # reported to the test
            errors.append(f"{d}: {e!r}")
    Path(out).write_text("\n".join(errors))


@pytest.mark.parametrize("processes", [4])
def test_several_stations_ingesting_at_once_lose_nothing(where, tmp_path, processes):
    """Four processes (four stations) ingest at once into one new database: six runs of their
    own each, and the same three runs all of them (a shared backfill): every run once."""
    rep = tmp_path / "rep"
    shared = [str(write_run(rep, f"SHARED{i}", quantities(i), day=i + 1)) for i in range(3)]
    own = [
        [str(write_run(rep, f"P{p}U{i}", quantities(i), day=i + 1)) for i in range(6)]
        for p in range(processes)
    ]
    go = tmp_path / "go"
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(
            target=_ingest_many,
            args=(where, own[p] + shared, str(go), str(tmp_path / f"out{p}")),
        )
        for p in range(processes)
    ]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let every child import and wait at the line, then release them at once
    go.touch()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    errors = [(tmp_path / f"out{p}").read_text() for p in range(processes)]
    assert errors == [""] * processes
    with ResultsDB(where) as db:
        runs = db.runs(MODEL)
        assert len(runs) == processes * 6 + 3
        assert len({r.serial for r in runs}) == len(runs)
        assert len(db.measurements(MODEL)) == len(runs) * 5
        assert db.execute("SELECT count(*) FROM requirement_verdicts") == [(len(runs) * 4,)]
        assert db.execute("SELECT count(*) FROM anchors") == [(len(runs),)]


# --- stations, shifts, --retest ---------------------------------------------------------------


def test_stats_by_station_and_shift(where, tmp_path):
    rep = tmp_path / "rep"
    with ResultsDB(where) as db:
        for i, (station, hour) in enumerate(
            [("B1", 7), ("B1", 9), ("B1", 15), ("B2", 23), ("B2", 2), ("B2", 16)]
        ):
            d = _write_at(rep, f"S{i}", station, hour, 300.0 + i, fail=i == 5)
            db.ingest(d)
        assert [(r.station, r.shift) for r in db.runs(MODEL)][:3] == [
            ("B2", "night"),  # 02:00
            ("B1", "early"),
            ("B1", "early"),
        ]
        by_station = requirement_stats(db, MODEL, by="station")
        settled = [r for r in by_station if r.name == "settled_force"]
        assert sorted((r.group, r.count) for r in settled) == [("B1", 3), ("B2", 3)]
        ys = {y.group: (y.passed, y.judged) for y in run_yields(db, MODEL, "station")}
        assert ys == {"B1": (3, 3), "B2": (2, 3)}
        ys = {y.group: (y.passed, y.judged) for y in run_yields(db, MODEL, "shift")}
        assert ys == {"early": (2, 2), "late": (1, 2), "night": (2, 2)}
    text = stats_command(where, MODEL, by="station", chart_dir=tmp_path / "charts")
    assert "run yield by station: B1 3/3 PASS (100.0%); B2 2/3 PASS (66.7%)" in text
    assert text.splitlines()[3].split()[:2] == ["station", "requirement"]
    assert sorted(p.name for p in (tmp_path / "charts").iterdir()) == ["B1", "B2"]
    assert (tmp_path / "charts" / "B1" / "TT-890_TT-PERF-01_settled_force_set=300.png").is_file()
    only = stats_command(where, MODEL, station="B2")
    assert "3 complete run(s) of 3" in only


def _write_at(root, serial, station, hour, value, *, fail=False):
    from rig.evidence.measurement import judge
    from rig.evidence.writer import RunRecord

    rec = RunRecord(Path(root) / serial)
    rec.start(
        {
            "model": MODEL,
            "serial": serial,
            "started": f"2026-01-05T{hour:02d}:30:00.000+00:00",
            "station": {"id": station, "emulated": False},
        }
    )
    peak = 320.0 if fail else 310.0
    for name, v, low, high, b in (
        ("settled_force", value, 291.0, 309.0, {"set": 300.0}),
        ("peak_force", peak, None, 315.0, {"set": 300.0}),
    ):
        rec.add(
            Measurement(
                "TT-PERF-01",
                "c",
                name,
                v,
                "N",
                low,
                high,
                None,
                judge(v, low, high, None),
                bindings=b,
            )
        )
    verdict = Outcome.FAIL if fail else Outcome.PASS
    rec.conclude_requirement("TT-PERF-01", verdict)
    rec.end(verdict, complete=True, not_run=[])
    return rec.directory


def test_measurements_of_an_error_attempt_are_kept_but_not_statistics(where, tmp_path):
    rec = LiveRecord(tmp_path / "run", EventBus())
    rec.start({"model": MODEL, "serial": "R1", "started": "2026-01-01T08:00:00.000+00:00"})
    # attempt 1 measured a wild value, then the bench faulted: ERROR, retested
    rec.add(Measurement("TT-PERF-01", "c", "settled_force", 250.0, "N", 291.0, 309.0, None, "FAIL"))
    rec.conclude_requirement("TT-PERF-01", Outcome.ERROR, note="bench fault")
    rec.attempt = 2
    rec.add(Measurement("TT-PERF-01", "c", "settled_force", 300.0, "N", 291.0, 309.0, None, "PASS"))
    rec.conclude_requirement("TT-PERF-01", Outcome.PASS)
    rec.end(Outcome.PASS, complete=True, not_run=[])
    with ResultsDB(where) as db:
        db.ingest(rec.directory)
        kept = db.measurements(MODEL)
        assert [(m.value, m.attempt, m.error_attempt) for m in kept] == [
            (250.0, 1, True),
            (300.0, 2, False),
        ]
        assert [m.value for m in db.measurements(MODEL, unit_data=True)] == [300.0]
        [row] = requirement_stats(db, MODEL)
        assert (row.count, row.passes, row.mean) == (1, 1, 300.0)


# --- shifts ---------------------------------------------------------------------------------


def test_default_shifts_and_a_line_shift_table():
    assert [
        DEFAULT_SHIFTS.shift_of(f"2026-01-01T{h:02d}:00:00+00:00") for h in (0, 5, 6, 13, 14, 22)
    ] == ["night", "night", "early", "early", "late", "night"]
    assert DEFAULT_SHIFTS.shift_of("2026-01-01T07:00:00+02:00") == "night"  # 05:00 UTC
    assert DEFAULT_SHIFTS.shift_of(None) is None
    table = shift_table(
        {
            "timezone": "Europe/Berlin",
            "shift": [{"name": "day", "start": "07:00"}, {"name": "eve", "start": "19:00"}],
        },
        "line.toml: shifts",
    )
    assert table.shift_of("2026-01-01T06:30:00+00:00") == "day"  # 07:30 in Berlin
    with pytest.raises(
        Exception, match=r"line.toml: shifts.shift\[0\].start = '7h': expected HH:MM"
    ):
        shift_table({"shift": [{"name": "a", "start": "7h"}]}, "line.toml: shifts")
    with pytest.raises(Exception, match="expected an IANA zone"):
        shift_table({"timezone": "Mars/Base", "shift": [{"name": "a", "start": "07:00"}]}, "x")


def test_the_station_file_names_the_line_database(tmp_path, capsys):
    from rig.errors import StationError
    from rig.outputs.sinks import results_db
    from rig.station import load_station

    station = tmp_path / "line2.toml"
    base = '[station]\nid = "B1"\n[plc]\nhost = "127.0.0.1"\nport = 9\n'
    station.write_text(base + '[results]\ndb = "postgresql://rig@db.line2:5432/results"\n')
    assert load_station(station).results_db == "postgresql://rig@db.line2:5432/results"
    assert results_db({"station": str(station)}) == "postgresql://rig@db.line2:5432/results"
    assert results_db({"station": str(station), "db": "x.sqlite"}) == "x.sqlite"  # --db wins
    station.write_text(base + '[results]\nurl = "postgresql://x/y"\n')
    with pytest.raises(StationError, match=r"\[results\] expected one key, db"):
        load_station(station)
    station.write_text(base + '[results]\ndb = "mongodb://x/y"\n')
    code = main(["certify", MODEL, "--serial", "890001", "--station", str(station)])
    assert code == 2  # refused before connecting to anything
    assert "unsupported database 'mongodb'" in capsys.readouterr().out
