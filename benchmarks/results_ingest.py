"""Print what several stations ingesting at once into one results database cost and lose.

P processes (stations) each ingest R runs of their own (five measurements, four verdicts each,
as tests/test_results.py writes them) into one database, each run in its own connection as a
certification's sink does, all released at once. Prints per database: wall time (under load:
the machine is shared), runs per second, and what was lost or duplicated (must be 0).

    python benchmarks/results_ingest.py [--processes 4] [--runs 25] [--pg URL]
(--pg, or $RIG_TEST_PG_URL: a PostgreSQL server, e.g. from `source .ci/postgres.sh; pg_start`.)
"""

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_results import MODEL, quantities, write_run

from rig.outputs.results import ResultsDB


def _station(where, dirs, go, out):
    while not Path(go).exists():
        time.sleep(0.005)
    t0 = time.perf_counter()
    for d in dirs:
        with ResultsDB(where) as db:
            db.ingest(Path(d))
    Path(out).write_text(f"{time.perf_counter() - t0:.3f}")


def run(where, label, processes, runs, tmp):
    rep = tmp / f"rep-{label}"
    own = [
        [
            str(write_run(rep, f"{label}P{p}U{i}", quantities(i % 6), day=1 + i % 28))
            for i in range(runs)
        ]
        for p in range(processes)
    ]
    with ResultsDB(where):
        pass  # the schema made first: the figure is of ingesting, not of migrating
    go = tmp / f"go-{label}"
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_station, args=(where, own[p], str(go), str(tmp / f"out-{label}{p}")))
        for p in range(processes)
    ]
    for p in procs:
        p.start()
    time.sleep(2.0)
    t0 = time.perf_counter()
    go.touch()
    for p in procs:
        p.join(600)
    wall = time.perf_counter() - t0
    with ResultsDB(where) as db:
        stored = db.runs(MODEL)
        n_meas = len(db.measurements(MODEL))
    want = processes * runs
    lost = want - len({r.serial for r in stored})
    dup = len(stored) - len({r.serial for r in stored})
    print(
        f"{label:<10} {processes} x {runs} runs  wall {wall:6.2f} s  {want / wall:6.1f} runs/s  "
        f"lost {lost}  duplicated {dup}  measurements {n_meas}/{want * 5}"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--pg", default=os.environ.get("RIG_TEST_PG_URL"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        run(str(tmp / "results.sqlite"), "sqlite", a.processes, a.runs, tmp)
        if a.pg:
            import sqlalchemy as sa

            name = f"rig_bench_{os.getpid()}"
            admin = sa.create_engine(sa.make_url(a.pg), isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.exec_driver_sql(f'CREATE DATABASE "{name}"')
            try:
                url = sa.make_url(a.pg).set(database=name).render_as_string(hide_password=False)
                run(url, "postgresql", a.processes, a.runs, tmp)
            finally:
                with admin.connect() as c:
                    c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print("postgresql: skipped (no --pg and no RIG_TEST_PG_URL)")


if __name__ == "__main__":
    main()
