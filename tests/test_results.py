"""Tests of the results database and the cross-unit statistics, on synthesized run records."""

import hashlib
import math
import shutil
import sqlite3
import statistics
import threading
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rig.errors import ConfigError
from rig.evidence.format import Outcome, canonical
from rig.evidence.measurement import Measurement, judge
from rig.evidence.reader import read_record
from rig.evidence.writer import RunRecord
from rig.outputs.results import FLAG_INF, FLAG_MISSING, ResultsDB, ResultsError, ingest_run
from rig.outputs.stats import (
    QuantityStats,
    capability,
    control_chart,
    format_stats,
    requirement_stats,
    stats_command,
)

DATA = Path(__file__).parent / "data" / "results"
MODEL = "TT-890"

PASS, FAIL = Outcome.PASS, Outcome.FAIL
# Six units. Limits are what the profile would evaluate; verdicts come from judge().
SETTLED_300 = [300.2, 299.8, 301.0, 300.5, 299.6, 300.9]  # TT-PERF-01 at set=300, 291 .. 309 N
SETTLED_600 = [600.0, 601.0, 599.0, 600.5, 599.5, 600.0]  # TT-PERF-01 at set=600, 582 .. 618 N
PEAK_300 = [310.0, 312.0, 309.0, 311.0, 316.0, 308.0]  # TT-PERF-04 at set=300, <= 315 N
RAMP_10 = [12.0, 14.0, 13.0, 15.0, 11.0, 13.0]  # TT-PERF-03 at rate=10, >= 10 N/s (one-sided low)
FAULT = [2.0] * 6  # TT-SAF-02 fault code, = 2


def quantities(i, settled_300=None):
    """The measurements of unit i: (requirement, name, bindings, value, low, high, equals, unit)."""
    return [
        (
            "TT-PERF-01",
            "settled_force",
            {"set": 300.0},
            SETTLED_300[i] if settled_300 is None else settled_300,
            291.0,
            309.0,
            None,
            "N",
        ),
        ("TT-PERF-01", "settled_force", {"set": 600.0}, SETTLED_600[i], 582.0, 618.0, None, "N"),
        ("TT-PERF-03", "ramp_rate", {"rate": 10.0}, RAMP_10[i], 10.0, None, None, "N/s"),
        ("TT-PERF-04", "peak_force", {"set": 300.0}, PEAK_300[i], None, 315.0, None, "N"),
        ("TT-SAF-02", "fault", {}, FAULT[i], None, None, 2.0, ""),
    ]


def write_run(
    root,
    serial,
    rows,
    *,
    day=1,
    end=True,
    complete=True,
    verdict=None,
    model=MODEL,
    emulated=False,
):
    """A run record as the rig writes it: header, measurements, requirement verdicts, end."""
    rec = RunRecord(Path(root) / f"{model}-{serial}")
    rec.start(
        {
            "model": model,
            "serial": serial,
            "operator": "tester",
            "rig_version": "0.1.0",
            "source_revision": "abc123",
            "requirements_sha256": "f" * 64,
            "started": f"2026-01-{day:02d}T08:00:00.000+00:00",
            "station": {"id": "BENCH-1", "emulated": emulated, "source": "test"},
            "instruments": {},
        }
    )
    worst: dict[str, str] = {}
    for req, name, bindings, value, low, high, equals, unit in rows:
        v = judge(value, low, high, equals)
        rec.add(
            Measurement(
                requirement=req,
                clause="IEC 60601-1",
                name=name,
                value=value,
                unit=unit,
                low=low,
                high=high,
                equals=equals,
                verdict=v,
                bindings=bindings,
            )
        )
        worst[req] = FAIL if FAIL in (v, worst.get(req)) else PASS
    for req, v in worst.items():
        rec.conclude_requirement(req, v, test="tests/x.py::t")
    if end:
        overall = verdict or (PASS if all(v == PASS for v in worst.values()) else FAIL)
        if not complete:
            overall = verdict or "INCOMPLETE"
        rec.end(overall, complete=complete, not_run=[], unsafe=None, rig_version="0.1.0")
    return rec.directory


@pytest.fixture
def six(tmp_path):
    """Six complete units plus three incomplete runs with wild values, all ingested."""
    reports = tmp_path / "reports"
    dirs = [write_run(reports, f"U{i + 1}", quantities(i), day=i + 1) for i in range(6)]
    # incomplete runs carry values that would wreck the statistics were they counted
    dirs.append(write_run(reports, "CRASHED", quantities(0, 350.0), day=7, end=False))
    dirs.append(
        write_run(reports, "STOPPED", quantities(0, 250.0), day=8, complete=False, verdict=None)
    )
    # an end line that claims PASS but says the run was interrupted is still not a pass
    dirs.append(
        write_run(reports, "CLAIMS", quantities(0, 330.0), day=9, complete=False, verdict=PASS)
    )
    db = ResultsDB(tmp_path / "results.sqlite")
    ids = [db.ingest(d) for d in dirs]
    yield db, dirs, ids
    db.close()


def row(rows, requirement, name, **bindings) -> QuantityStats:
    [r] = [r for r in rows if (r.requirement, r.name, r.bindings) == (requirement, name, bindings)]
    return r


# --- the database ------------------------------------------------------------------------------


def test_runs_are_stored_and_incomplete_runs_flagged(six):
    db, _, ids = six
    runs = db.runs(MODEL)
    assert [r.id for r in runs] == ids  # run order = start time
    assert [r.serial for r in runs] == [
        *(f"U{i}" for i in range(1, 7)),
        "CRASHED",
        "STOPPED",
        "CLAIMS",
    ]
    assert [r.verdict for r in runs[:6]] == [PASS, PASS, PASS, PASS, FAIL, PASS]  # U5 peak 316
    assert all(r.complete and r.chain_intact for r in runs[:6])
    for r in runs[6:]:
        assert not r.complete
        assert r.verdict == "INCOMPLETE"
    assert runs[6].ended is None
    u1 = runs[0]
    assert (u1.model, u1.station, u1.operator, u1.emulated) == (MODEL, "BENCH-1", "tester", False)
    assert (u1.rig_version, u1.source_revision, u1.requirements_sha256) == (
        "0.1.0",
        "abc123",
        "f" * 64,
    )
    assert db.runs("tt-890") == runs  # model names match case-insensitively
    assert db.runs("RT-600") == []


def test_measurements_and_requirement_verdicts_stored(six):
    db, _, ids = six
    ms = db.measurements(MODEL, "TT-PERF-01", "settled_force")
    assert len(ms) == 2 * 9
    first = ms[0]
    assert (first.run_id, first.value, first.low, first.high, first.unit) == (
        ids[0],
        300.2,
        291.0,
        309.0,
        "N",
    )
    assert first.bindings == {"set": 300.0}
    assert len(db.measurements(MODEL, "TT-PERF-01", only_complete=True)) == 2 * 6
    verdicts = db.execute(
        "SELECT requirement, verdict FROM requirement_verdicts WHERE run_id = ? ORDER BY seq",
        ids[4],
    )
    assert [tuple(v) for v in verdicts] == [
        ("TT-PERF-01", PASS),
        ("TT-PERF-03", PASS),
        ("TT-PERF-04", FAIL),
        ("TT-SAF-02", PASS),
    ]


def test_ingest_is_idempotent(six, tmp_path):
    db, dirs, ids = six
    counts = [
        db.execute(f"SELECT count(*) FROM {t}")[0][0]
        for t in ("runs", "measurements", "requirement_verdicts")
    ]
    assert [db.ingest(d) for d in dirs] == ids
    assert db.ingest(dirs[0] / "record.jsonl") == ids[0]  # the record file names the same run
    copy = shutil.copytree(dirs[0], tmp_path / "elsewhere" / "copy")
    assert db.ingest(copy) == ids[0]  # keyed by the header hash, not the directory
    with ResultsDB(db.path) as again:  # a second connection (the next certification)
        assert again.ingest(dirs[1]) == ids[1]
    assert [
        db.execute(f"SELECT count(*) FROM {t}")[0][0]
        for t in ("runs", "measurements", "requirement_verdicts")
    ] == counts


def test_reingest_after_the_run_ends_updates_the_same_run(tmp_path):
    rec = RunRecord(tmp_path / "run")
    rec.start({"model": MODEL, "serial": "S1", "started": "2026-01-01T08:00:00.000+00:00"})
    rec.add(Measurement("TT-PERF-01", "c", "settled_force", 300.0, "N", 291.0, 309.0, None, PASS))
    db = ResultsDB(tmp_path / "r.sqlite")
    run_id = db.ingest(rec.directory)  # ingested mid-run (e.g. a backfill while certifying)
    snapshot = (rec.directory / "record.jsonl").read_bytes()
    assert not db.runs()[0].complete
    rec.add(Measurement("TT-PERF-01", "c", "settled_force", 600.0, "N", 582.0, 618.0, None, PASS))
    rec.conclude_requirement("TT-PERF-01", PASS)
    rec.end(PASS, complete=True, not_run=[])
    assert db.ingest(rec.directory) == run_id
    [run] = db.runs()
    assert (run.complete, run.verdict, run.ended is not None) == (True, PASS, True)
    assert len(db.measurements(MODEL)) == 2
    # the mid-run snapshot, found later in a backup, does not undo the complete run
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "record.jsonl").write_bytes(snapshot)
    assert db.ingest(tmp_path / "backup") == run_id
    assert db.runs()[0].complete


def test_non_finite_values_do_not_poison_sql_aggregates(tmp_path):
    rows = [("TT-SAF-01", "release_time", {}, v, None, 3.0, None, "s") for v in (1.0, 2.0)]
    d1 = write_run(tmp_path, "A", rows[:1], day=1)
    d2 = write_run(
        tmp_path, "B", [("TT-SAF-01", "release_time", {}, math.inf, None, 3.0, None, "s")]
    )
    d3 = write_run(tmp_path, "C", [("TT-SAF-01", "release_time", {}, None, None, 3.0, None, "s")])
    d4 = write_run(tmp_path, "D", rows[1:], day=4)
    assert '"value":"inf"' in (d2 / "record.jsonl").read_text()  # what the record writes
    with ResultsDB(tmp_path / "r.sqlite") as db:
        for d in (d1, d2, d3, d4):
            db.ingest(d)
        [(avg, flags)] = db.execute("SELECT avg(value), group_concat(value_flag) FROM measurements")
        assert avg == 1.5
        assert sorted(flags.split(",")) == sorted([FLAG_INF, FLAG_MISSING])
        values = [m.value for m in db.measurements(MODEL)]
        assert values[0] == 1.0 and values[1] == math.inf and values[2] is None
        [r] = requirement_stats(db, MODEL)
    assert (r.count, r.passes, r.mean) == (4, 2, 1.5)  # inf fails <= 3 s; None fails
    assert r.cpk is None
    assert "not finite" in r.cpk_reason


def test_unknown_kinds_are_ignored_and_do_not_break_the_chain(tmp_path):
    d = write_run(tmp_path, "S", quantities(0))
    rec_path = d / "record.jsonl"
    last = rec_path.read_bytes().splitlines()[-1]
    # a signature chained like any line, then one appended outside the chain: both after `end`
    chained = {"kind": "signature", "seq": len(read_record(rec_path)), "sig": "ab"}
    chained["prev"] = hashlib.sha256(last).hexdigest()
    with open(rec_path, "ab") as f:
        f.write(canonical(chained) + b"\n")
        f.write(b'{"kind":"signature","key":"lab-2","sig":"cd"}\n')
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.ingest(d)
        [run] = db.runs()
        assert run.complete and run.chain_intact
        assert len(db.measurements(MODEL)) == 5


def test_an_altered_record_is_stored_but_not_used(tmp_path):
    good = [write_run(tmp_path, f"U{i}", quantities(i), day=i + 1) for i in range(3)]
    bad = write_run(tmp_path, "EDITED", quantities(3), day=5)
    path = bad / "record.jsonl"
    path.write_text(path.read_text().replace('"value":300.5', '"value":300.0'))
    with ResultsDB(tmp_path / "r.sqlite") as db:
        for d in [*good, bad]:
            db.ingest(d)
        assert [r.chain_intact for r in db.runs()] == [True, True, True, False]
        r = row(requirement_stats(db, MODEL), "TT-PERF-01", "settled_force", set=300.0)
        assert r.count == 3


def test_a_torn_last_line_is_an_incomplete_run(tmp_path):
    d = write_run(tmp_path, "S", quantities(0), end=False)
    with open(d / "record.jsonl", "ab") as f:
        f.write(b'{"kind":"measurement","val')  # the crash came mid-write
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.ingest(d)
        [run] = db.runs()
        assert (run.complete, run.chain_intact, run.verdict) == (False, True, "INCOMPLETE")


def test_not_a_record(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "record.jsonl").write_text('{"kind":"event"}\n')
    with ResultsDB(tmp_path / "r.sqlite") as db, pytest.raises(ResultsError, match="no header"):
        db.ingest(tmp_path / "x")


def test_parallel_certifications_share_the_database(tmp_path):
    dirs = [write_run(tmp_path / "rep", f"P{i}", quantities(i), day=i + 1) for i in range(6)]
    errors = []

    def one(d):
        try:
            ingest_run(tmp_path / "shared.sqlite", d)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(d,)) for d in dirs + dirs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with ResultsDB(tmp_path / "shared.sqlite") as db:
        assert len(db.runs()) == 6


def test_a_newer_schema_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "r.sqlite")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ResultsError, match="schema version 99"):
        ResultsDB(tmp_path / "r.sqlite")


def test_a_real_record_ingests(tmp_path):
    """A record written by an emulated IT-90 certification (repeats, equals limits, bindings)."""
    src = DATA / "IT-90-emulated"
    with ResultsDB(tmp_path / "r.sqlite") as db:
        run_id = db.ingest(src)
        [run] = db.runs("IT-90")
        assert (run.id, run.verdict, run.complete, run.chain_intact, run.emulated) == (
            run_id,
            PASS,
            True,
            True,
            True,
        )
        lines = read_record(src / "record.jsonl")
        assert len(db.measurements("IT-90")) == sum(ln["kind"] == "measurement" for ln in lines)
        rows = requirement_stats(db, "IT-90")
        assert sum(r.count for r in rows) == len(db.measurements("IT-90"))
        assert all(r.pass_yield == 1.0 for r in rows)
        assert requirement_stats(db, "IT-90", emulated=False) == []


# --- statistics --------------------------------------------------------------------------------


def test_two_sided_cpk_equals_the_hand_calculation(six):
    db, _, _ = six
    r = row(requirement_stats(db, MODEL), "TT-PERF-01", "settled_force", set=300.0)
    # values 300.2, 299.8, 301.0, 300.5, 299.6, 300.9 (the incomplete runs' 350/250/330 are out)
    # sum = 1802.0, so mean = 1802.0 / 6 = 300.3333...
    # 3 * (value - mean) = 900.6-901, 899.4-901, 903-901, 901.5-901, 898.8-901, 902.7-901
    #                    = -0.4, -1.6, 2.0, 0.5, -2.2, 1.7
    # sum of squares of those = 0.16 + 2.56 + 4.0 + 0.25 + 4.84 + 2.89 = 14.7
    # sum of squared deviations = 14.7 / 9; variance (ddof=1) = 14.7 / 9 / 5 = 49/150
    # sigma = 7 / sqrt(150) = 0.571548
    # USL - mean = 309 - 300.3333 = 26/3; mean - LSL = 300.3333 - 291 = 28/3; nearer: USL
    # Cpk = (26/3) / (3 * 7 / sqrt(150)) = 26 * sqrt(150) / 63 = 5.05450
    assert (r.runs, r.units, r.count, r.passes, r.pass_yield) == (6, 6, 6, 6, 1.0)
    assert r.mean == pytest.approx(1802.0 / 6, rel=1e-12)
    assert r.std == pytest.approx(7 / math.sqrt(150), rel=1e-12)
    assert r.std == pytest.approx(statistics.stdev(SETTLED_300), rel=1e-12)  # ddof=1
    assert r.cpk == pytest.approx(26 * math.sqrt(150) / 63, rel=1e-12)
    assert r.cpk == pytest.approx(5.05450, abs=5e-6)
    assert (r.cpk_kind, r.cpk_reason) == ("Cpk", "")
    assert (r.low, r.high, r.unit) == (291.0, 309.0, "N")


def test_rows_are_per_binding_set_with_their_own_limits(six):
    db, _, _ = six
    rows = requirement_stats(db, MODEL)
    assert [(r.requirement, r.name, r.binding_text()) for r in rows] == [
        ("TT-PERF-01", "settled_force", "set=300"),
        ("TT-PERF-01", "settled_force", "set=600"),
        ("TT-PERF-03", "ramp_rate", "rate=10"),
        ("TT-PERF-04", "peak_force", "set=300"),
        ("TT-SAF-02", "fault", "-"),
    ]
    r600 = row(rows, "TT-PERF-01", "settled_force", set=600.0)
    # mean = 3600/6 = 600; squared deviations 0 + 1 + 1 + 0.25 + 0.25 + 0 = 2.5; var = 2.5/5
    # Cpk = min(618 - 600, 600 - 582) / (3 * sqrt(0.5)) = 18 / 2.12132 = 8.48528
    assert (r600.low, r600.high, r600.count) == (582.0, 618.0, 6)
    assert r600.cpk == pytest.approx(18 / (3 * math.sqrt(0.5)), rel=1e-12)
    assert requirement_stats(db, MODEL, requirement="TT-PERF-04") == [
        row(rows, "TT-PERF-04", "peak_force", set=300.0)
    ]


def test_one_sided_upper_cpu(six):
    db, _, _ = six
    r = row(requirement_stats(db, MODEL), "TT-PERF-04", "peak_force", set=300.0)
    # values 310, 312, 309, 311, 316, 308 against <= 315: U5's 316 fails, yield 5/6
    # mean = 1866 / 6 = 311; deviations -1, 1, -2, 0, 5, -3; squares sum 1+1+4+0+25+9 = 40
    # variance = 40 / 5 = 8, sigma = 2 sqrt 2
    # Cpu = (USL - mean) / (3 sigma) = (315 - 311) / (6 sqrt 2) = sqrt(2) / 3 = 0.471405
    assert (r.count, r.passes) == (6, 5)
    assert r.pass_yield == pytest.approx(5 / 6)
    assert (r.mean, r.std) == (pytest.approx(311.0), pytest.approx(2 * math.sqrt(2)))
    assert r.cpk == pytest.approx(math.sqrt(2) / 3, rel=1e-12)
    assert r.cpk_kind == "Cpu"


def test_one_sided_lower_cpl(six):
    db, _, _ = six
    r = row(requirement_stats(db, MODEL), "TT-PERF-03", "ramp_rate", rate=10.0)
    # values 12, 14, 13, 15, 11, 13 against >= 10: mean = 78 / 6 = 13
    # deviations -1, 1, 0, 2, -2, 0; squares sum 10; variance 10 / 5 = 2; sigma = sqrt 2
    # Cpl = (mean - LSL) / (3 sigma) = 3 / (3 sqrt 2) = 1 / sqrt 2 = 0.707107
    assert r.cpk == pytest.approx(1 / math.sqrt(2), rel=1e-12)
    assert r.cpk_kind == "Cpl"


def test_equals_limits_have_no_cpk(six):
    db, _, _ = six
    r = row(requirement_stats(db, MODEL), "TT-SAF-02", "fault")
    assert (r.count, r.pass_yield, r.mean, r.equals) == (6, 1.0, 2.0, 2.0)
    assert r.cpk is None and r.cpk_kind is None
    assert "equals" in r.cpk_reason


def test_incomplete_runs_are_not_samples(six):
    db, _, _ = six
    rows = requirement_stats(db, MODEL)
    assert all(r.runs == 6 for r in rows)
    assert {m.serial for m in db.measurements(MODEL, only_complete=True)} == {
        f"U{i}" for i in range(1, 7)
    }


@pytest.mark.parametrize(
    ("values", "low", "high", "reason"),
    [
        ([300.0], 291.0, 309.0, "fewer than 2 values"),
        ([], 291.0, 309.0, "fewer than 2 values"),
        ([300.1, 300.1, 300.1], 291.0, 309.0, "zero spread"),
        ([0.1 + 0.2, 0.3 + 0.0, 0.1 * 3], 0.0, 1.0, None),  # distinct floats: std > 0, defined
        ([1.0, 2.0], None, None, "no limit"),
        ([1.0, 2.0, None], 0.0, 3.0, "not finite"),
        ([1.0, 2.0, math.nan], 0.0, 3.0, "not finite"),
    ],
)
def test_capability_undefined_cases(values, low, high, reason):
    cap = capability(values, low, high)
    if reason is None:
        assert cap.index is not None
    else:
        assert cap.index is None
        assert reason in cap.reason


def test_capability_of_all_equal_values_that_round_differently():
    # 0.1 * 3 != 0.3 but three copies of one float: the mean may not equal it exactly, the std
    # may then be a tiny residue; the index must still be "zero spread", not a huge number
    cap = capability([0.1 * 3] * 7, 0.0, 1.0)
    assert cap.index is None and "zero spread" in cap.reason


finite_values = st.lists(st.integers(-100_000, 100_000), min_size=2, max_size=30).map(
    lambda xs: [x / 100 for x in xs]
)
limit = st.one_of(st.none(), st.integers(-200_000, 200_000).map(lambda x: x / 100))


@settings(max_examples=200, deadline=None)
@given(
    values=finite_values,
    low=limit,
    high=limit,
    shift=st.integers(-100_000, 100_000).map(lambda x: x / 100),
    scale=st.floats(0.01, 100.0),
)
def test_cpk_is_invariant_under_shift_and_scale(values, low, high, shift, scale):
    assume(len(set(values)) > 1)
    assume(low is not None or high is not None)
    base = capability(values, low, high)

    def moved(x):
        return None if x is None else (x + shift) * scale

    other = capability([moved(v) for v in values], moved(low), moved(high))
    assert (other.kind, other.reason) == (base.kind, base.reason)
    assert other.index == pytest.approx(base.index, rel=1e-7, abs=1e-7)


@settings(max_examples=200, deadline=None)
@given(values=finite_values, low=limit, high=limit, k=st.floats(0.05, 20.0))
def test_cpk_scales_inversely_with_spread(values, low, high, k):
    assume(len(set(values)) > 1)
    assume(low is not None or high is not None)
    base = capability(values, low, high)
    assert base.mean is not None and base.std is not None and base.index is not None
    # spreading the values about their mean by k keeps the mean and multiplies sigma by k
    spread = capability([base.mean + k * (v - base.mean) for v in values], low, high)
    assert spread.std == pytest.approx(k * base.std, rel=1e-9)
    assert spread.index == pytest.approx(base.index / k, rel=1e-7, abs=1e-7)


# --- output ------------------------------------------------------------------------------------


def test_control_chart_png(six, tmp_path):
    db, _, _ = six
    out = control_chart(
        db, MODEL, "TT-PERF-04", "peak_force", {"set": 300.0}, path=tmp_path / "c" / "peak.png"
    )
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    # one binding set: it may be left out; several: it must be chosen
    assert control_chart(db, MODEL, "TT-SAF-02", "fault", path=tmp_path / "f.png").stat().st_size
    with pytest.raises(ValueError, match="several binding sets"):
        control_chart(db, MODEL, "TT-PERF-01", "settled_force", path=tmp_path / "x.png")
    with pytest.raises(ValueError, match="no values"):
        control_chart(db, MODEL, "TT-PERF-01", "nothing", path=tmp_path / "y.png")


def test_format_stats_table(six):
    db, _, _ = six
    text = format_stats(requirement_stats(db, MODEL))
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["requirement", "quantity", "at", "limit"]
    assert len(lines) == 2 + 5
    line = next(ln for ln in lines if "peak_force" in ln)
    assert "83.3%" in line and "0.47 (Cpu)" in line and "<= 315" in line
    assert "equals limit" in next(ln for ln in lines if "fault" in ln)


def test_stats_command(six, tmp_path):
    db, _, _ = six
    text = stats_command(db.path, MODEL, chart_dir=tmp_path / "charts", requirement="TT-PERF-01")
    assert "6 complete run(s) of 9 (6 unit(s)); 3 incomplete or altered run(s) left out" in text
    assert "ddof=1" in text
    assert "5.05" in text
    charts = sorted(p.name for p in (tmp_path / "charts").iterdir())
    assert charts == [
        "TT-890_TT-PERF-01_settled_force_set=300.png",
        "TT-890_TT-PERF-01_settled_force_set=600.png",
    ]
    assert "no measurements" in stats_command(db.path, "RT-600")
    with pytest.raises(ConfigError, match="no results database"):
        stats_command(tmp_path / "missing.sqlite", MODEL)
    assert not (tmp_path / "missing.sqlite").exists()
