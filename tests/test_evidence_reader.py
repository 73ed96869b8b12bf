"""The one reader: a run record as a RunView, its chain checked once; and reopening a record."""

import json

from rig.evidence.format import Outcome, canonical
from rig.evidence.measurement import Measurement
from rig.evidence.reader import Tail, Unreadable, read_run
from rig.evidence.writer import RunRecord


class Req:
    def __init__(self, rid):
        self.id, self.quantity, self.clause = rid, "q", "cl. 1"


def write(directory, *, end=True):
    rec = RunRecord(directory)
    rec.start({"model": "TT-890", "serial": "S1"})
    rel, sha = rec.add_trace("A-1", "t,f\n0,1\n")
    rec.add(
        Measurement(
            "A",
            "cl. 1",
            "f",
            float("inf"),
            "N",
            0.0,
            5.0,
            None,
            Outcome.FAIL,
            trace=rel,
            trace_sha256=sha,
        )
    )
    rec.conclude_requirement("A", Outcome.FAIL, test="suites/x.py::t[A]")
    rec.conclude_requirement("B", Outcome.PASS, test="suites/x.py::t[B]")
    if end:
        rec.end(Outcome.FAIL, complete=True, not_run=[])
    return rec


def test_a_run_as_read(tmp_path):
    write(tmp_path)
    run = read_run(tmp_path / "record.jsonl")
    assert run.directory == tmp_path and run.model == "TT-890" and run.serial == "S1"
    assert run.header["kind"] == "header" and run.header_raw == run.raws[0]
    [m] = run.measurements
    assert m.value == float("inf") and m.value_text() == "never" and m.limit_text() == "0 .. 5 N"
    assert run.verdicts == {"A": "FAIL", "B": "PASS"}
    assert run.tests == {"A": "suites/x.py::t[A]", "B": "suites/x.py::t[B]"}
    assert run.ended and run.complete and run.verdict == "FAIL"
    assert [t.path for t in run.traces] == ["traces/A-1.csv", "traces/A-1.csv"]
    assert run.tail == Tail.NONE and not run.torn
    assert run.breaks == () and run.noncanonical == () and run.chain_intact()


def test_a_run_that_did_not_end_is_incomplete_and_a_torn_tail_is_not_a_line(tmp_path):
    write(tmp_path, end=False)
    with open(tmp_path / "record.jsonl", "ab") as f:
        f.write(b'{"kind":"measurement","na')
    run = read_run(tmp_path)
    assert run.tail == Tail.TORN and run.torn and run.tail_bytes == b'{"kind":"measurement","na'
    assert not run.ended and run.verdict == Outcome.INCOMPLETE
    assert len(run.entries) == len(run.raws) == 5 and run.chain_intact()


def test_the_chain_is_checked_once_at_reading(tmp_path):
    write(tmp_path)
    path = tmp_path / "record.jsonl"
    raws = path.read_bytes().split(b"\n")[:-1]
    line = json.loads(raws[2])
    line["value"] = 1.0  # in range now: a forged pass
    raws[2] = canonical(line)
    raws.insert(4, b"")
    path.write_bytes(b"".join(r + b"\n" for r in raws))
    run = read_run(tmp_path)
    # the line after the edited one no longer chains to it, nor the line after the inserted one
    assert run.breaks == (3, 5)
    assert run.unreadable == {4: Unreadable.EMPTY}
    assert not run.chain_intact() and len(run.entries) == 4  # read up to the empty line


def test_a_reopened_record_knows_its_requirement_tests(tmp_path):
    """RunRecord.open used to bypass __init__: a reopened record had no requirement_tests, so
    its traceability matrix could not be written."""
    write(tmp_path, end=False)
    rec = RunRecord.open(tmp_path)
    assert rec.requirement_tests == {"A": "suites/x.py::t[A]", "B": "suites/x.py::t[B]"}
    assert rec.requirement_verdicts == {"A": "FAIL", "B": "PASS"}
    rows = rec.traceability([Req("A"), Req("B"), Req("C")])
    assert [(r["test"], r["verdict"]) for r in rows] == [
        ("suites/x.py::t[A]", "FAIL"),
        ("suites/x.py::t[B]", "PASS"),
        ("", "NOT RUN"),
    ]
    rec.end(Outcome.FAIL)
    run = read_run(tmp_path)
    assert run.chain_intact(to_end=False) and run.verdict == "FAIL"


def test_a_second_end_line_chained_on_later_is_not_the_runs_word(tmp_path):
    """Anyone can chain a line to a record (the chain has no key): an "end PASS" appended after
    the run's own "end FAIL" must not turn the run into a pass for any reader."""
    from rig.evidence.verify import TAMPERED, verify_run
    from rig.outputs.results import ResultsDB

    write(tmp_path / "run")
    RunRecord.open(tmp_path / "run").end(Outcome.PASS, complete=True, not_run=[])
    run = read_run(tmp_path / "run")
    assert run.verdict == "FAIL" and run.chain_intact(to_end=False)
    assert verify_run(tmp_path / "run").status == TAMPERED
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.ingest(tmp_path / "run")
        assert [r.verdict for r in db.runs()] == ["FAIL"]
