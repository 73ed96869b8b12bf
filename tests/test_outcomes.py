"""Honest outcomes (issue 8, findings 3, 6 and 7): FAIL only from the judge, ERROR for the test,
run outcomes for retest / partial / interrupted, and --retest keeping every attempt."""

import json
from pathlib import Path

import pytest
from emulator_support import inprocess_bench

from rig.evidence.verify import VALID, verify_run

pytest_plugins = ["pytester"]

BENCH = inprocess_bench()

# a body of the settled_force requirements (TT-PERF-01 and -02): one passing setpoint, then
# `{action}`; only TT-PERF-01 is selected, so the run is partial at best
BODY = """
import pytest
from rig.errors import PlcNotResponding
from rig.plc import HeartbeatLate
from rig.wait import WaitTimeout

@pytest.mark.verifies("settled_force")
def test_body(requirement, check, table, tmp_path_factory):
    {before}
    check.measure("settled_force", {value}, set=300.0)
    {action}
"""


def _lines(reports: Path) -> list[dict]:
    (path,) = list(reports.glob("*/record.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines()]


def _kind(reports: Path, kind: str) -> list[dict]:
    return [x for x in _lines(reports) if x["kind"] == kind]


def _run(pytester, tmp_path, *, value="300.0", action="pass", before="pass", args=()):
    pytester.makepyfile(BODY.format(value=value, action=action, before=before))
    return pytester.runpytest(*BENCH, "--reports", str(tmp_path), "-k", "TT-PERF-01", *args)


def test_a_bare_assertion_after_a_passing_measurement_is_error_not_pass(pytester, tmp_path):
    # finding 7: pytest said FAILED, the record concluded PASS
    result = _run(
        pytester, tmp_path, action='assert False, "not the judge"', args=["--retest", "0"]
    )
    result.assert_outcomes(failed=1)
    (concl,) = _kind(tmp_path, "requirement")
    assert concl["verdict"] == "ERROR"
    assert "AssertionError" in concl["note"] and "not the judge" in concl["note"]
    (end,) = _kind(tmp_path, "end")
    assert end["verdict"] == "NOT CERTIFIED - retest"


def test_a_wait_that_timed_out_before_measuring_is_error(pytester, tmp_path):
    # finding 6: a requirement with no measurement was recorded FAIL (the unit blamed)
    result = _run(
        pytester,
        tmp_path,
        before='raise WaitTimeout("RUNNING", 1.0, "IDLE", 3)',
        args=["--retest", "0"],
    )
    result.assert_outcomes(failed=1)
    (concl,) = _kind(tmp_path, "requirement")
    assert concl["verdict"] == "ERROR" and "WaitTimeout" in concl["note"]
    assert _kind(tmp_path, "end")[0]["verdict"] == "NOT CERTIFIED - retest"


def test_only_the_judge_fails_the_unit(pytester, tmp_path):
    result = _run(pytester, tmp_path, value="250.0")
    result.assert_outcomes(failed=1)
    (concl,) = _kind(tmp_path, "requirement")  # a FAIL is not retested
    assert concl["verdict"] == "FAIL" and concl["attempt"] == 1
    assert _kind(tmp_path, "end")[0]["verdict"] == "FAIL"


def test_a_late_heartbeat_after_a_judged_fail_is_error_not_fail(pytester, tmp_path):
    # finding 6: the rig's own late heartbeat faulted the table (COMM_LOSS) and cut the body
    # short; the value the judge failed around it says nothing about the unit
    result = _run(
        pytester,
        tmp_path,
        value="250.0",
        action='raise HeartbeatLate("gap 612", gap_ms=612, watchdog_ms=500, max_gap_ms=612)',
        args=["--retest", "0"],
    )
    result.assert_outcomes(failed=1)
    (concl,) = _kind(tmp_path, "requirement")
    assert concl["verdict"] == "ERROR" and "HeartbeatLate" in concl["note"]
    assert _kind(tmp_path, "end")[0]["verdict"] == "NOT CERTIFIED - retest"


def test_a_partial_run_is_not_certified_partial(pytester, tmp_path):
    # finding 9: a partial run said overall FAIL
    result = _run(pytester, tmp_path)
    result.assert_outcomes(passed=1)
    (end,) = _kind(tmp_path, "end")
    assert end["verdict"] == "NOT CERTIFIED - partial"
    assert "TT-PERF-02" in end["not_run"]


def test_retest_reruns_an_error_and_keeps_every_attempt(pytester, tmp_path):
    # the first attempt meets a bench fault after a passing setpoint; the second passes
    action = (
        'flag = tmp_path_factory.getbasetemp() / "faulted"\n'
        "    if not flag.exists():\n"
        "        flag.touch()\n"
        '        raise PlcNotResponding("bench fault")'
    )
    # allure (on by default under `rig certify`) sees both attempts
    result = _run(pytester, tmp_path, action=action, args=["--alluredir", str(tmp_path / "al")])
    result.assert_outcomes(passed=1)
    assert list((tmp_path / "al").glob("*-result.json"))
    result.stdout.fnmatch_lines(["*1 passed*1 rerun*"])
    concl = _kind(tmp_path, "requirement")
    assert [(c["attempt"], c["verdict"]) for c in concl] == [(1, "ERROR"), (2, "PASS")]
    assert "PlcNotResponding: bench fault" in concl[0]["note"]
    ms = _kind(tmp_path, "measurement")
    assert [m["attempt"] for m in ms] == [1, 2]
    (end,) = _kind(tmp_path, "end")
    assert end["verdict"] == "NOT CERTIFIED - partial"  # the last attempt counts: no ERROR left
    (matrix,) = [x["matrix"] for x in _kind(tmp_path, "traceability")]
    assert {r["requirement"]: r["verdict"] for r in matrix}["TT-PERF-01"] == "PASS"

    from rig.outputs.certificate import build_certificate

    cert = build_certificate(next(tmp_path.glob("TT-890-*")))
    (entry,) = [e for e in cert.requirements if e.id == "TT-PERF-01"]
    assert entry.verdict == "PASS"
    assert "attempt 1: ERROR" in entry.note and "attempt 2: PASS" in entry.note
    # the last attempt's measurement only (not "worst of 2" across the attempts)
    assert [(r.value_text, r.detail) for r in entry.rows] == [("300 N", "set = 300")]
    assert cert.verdict == "NOT CERTIFIED - partial"


def test_retest_gives_up_after_n_attempts(pytester, tmp_path):
    result = _run(
        pytester, tmp_path, action='raise PlcNotResponding("gone")', args=["--retest", "2"]
    )
    result.assert_outcomes(failed=1)
    concl = _kind(tmp_path, "requirement")
    assert [(c["attempt"], c["verdict"]) for c in concl] == [
        (1, "ERROR"),
        (2, "ERROR"),
        (3, "ERROR"),
    ]
    assert _kind(tmp_path, "end")[0]["verdict"] == "NOT CERTIFIED - retest"


def test_a_bad_retest_count_is_a_usage_error(pytester):
    result = pytester.runpytest("--model", "TT-890", "--retest", "many")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--retest 'many': expected an integer 0-10*"])


# finding 3: Ctrl-C (or SIGTERM) in a power-off window; the `finally` then raises against the
# unpowered PLC, replacing the KeyboardInterrupt
INTERRUPTED = """
import os
import signal
import pytest
from rig.errors import PlcNotResponding

@pytest.mark.verifies("settled_force")
def test_body(requirement, check, table):
    check.measure("settled_force", 300.0, set=300.0)
    try:
        os.kill(os.getpid(), signal.{sig})
        for _ in range(1000):
            pass
    finally:
        raise PlcNotResponding("the PLC does not answer (powered off)")
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_interrupt_replaced_by_a_later_exception_still_ends_the_run_interrupted(
    pytester, tmp_path, sig
):
    pytester.makepyfile(INTERRUPTED.format(sig=sig))
    # both requirements selected: TT-PERF-02 must not run after the interrupt
    result = pytester.runpytest_subprocess(*BENCH, "--reports", str(tmp_path), "-k", "PERF-0")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    concl = _kind(tmp_path, "requirement")
    assert [c["requirement"] for c in concl] == ["TT-PERF-01"]  # no retest, no later test
    assert concl[0]["verdict"] == "ERROR" and f"interrupted ({sig})" in concl[0]["note"]
    events = [e["event"] for e in _kind(tmp_path, "event")]
    assert any(e.startswith("interrupted") for e in events), events
    (end,) = _kind(tmp_path, "end")
    assert end["verdict"] == "INTERRUPTED" and end["interrupted"] == sig
    assert end["complete"] is False
    report = verify_run(next(tmp_path.glob("TT-890-*")))
    assert report.status == VALID, report.as_text()
    assert report.verdict == "INTERRUPTED"
    from rig.outputs.certificate import build_certificate

    cert = build_certificate(next(tmp_path.glob("TT-890-*")))
    assert cert.verdict == "INTERRUPTED" and sig in cert.verdict_detail


def test_exit_codes_of_rig_certify():
    from rig.cli import CERTIFY_EXIT_CODES
    from rig.outputs.console import EXIT_CODES

    for verdict, code in EXIT_CODES.items():
        if verdict != "INCOMPLETE":
            assert f"{code}  {verdict}" in CERTIFY_EXIT_CODES
    assert EXIT_CODES == {
        "PASS": 0,
        "FAIL": 1,
        "NOT CERTIFIED - retest": 3,
        "NOT CERTIFIED - partial": 4,
        "INTERRUPTED": 5,
        "INCOMPLETE": 5,
    }


def test_error_is_never_shown_as_the_unit_failing():
    from rig.outputs.certificate.data import verdict_colour
    from rig.outputs.console import verdict_colour as console_colour

    for word in ("ERROR", "NOT CERTIFIED - retest", "NOT CERTIFIED - partial", "INTERRUPTED"):
        assert console_colour(word) == "yellow"
        assert verdict_colour(word) != verdict_colour("FAIL")
    assert console_colour("FAIL") == "red"


def test_the_console_shows_attempts_and_error_as_a_retest():
    from rig.evidence.reader import Conclusion
    from rig.outputs.console import _verdict_text

    tries = [Conclusion(5, "A", "ERROR", "bench", "t", 1), Conclusion(9, "A", "PASS", "", "t", 2)]
    assert _verdict_text("PASS", tries) == "PASS (attempt 2; earlier 1: ERROR)"
    assert _verdict_text("ERROR", tries[:1]) == "ERROR - retest"
    assert _verdict_text("FAIL", []) == "FAIL"
