"""The pytest plugin, tested with pytester: options, markers, parametrisation, safe state."""

import json
from pathlib import Path

import pytest
from emulator_support import inprocess_bench

pytest_plugins = ["pytester"]

SUITES = Path(__file__).resolve().parent.parent / "suites"
BENCH = inprocess_bench()


def _record(reports: Path) -> list[dict]:
    (path,) = list(reports.glob("*/record.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_markers_are_registered(pytester):
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["*verifies(test)*", "*safety*", "*performance*"])


def test_every_option_has_an_ini_twin(pytester):
    pytester.makeini("[pytest]\nrig_model = TT-890\nrig_serial = INI-1\nrig_scale = 7\n")
    pytester.makepyfile(
        """
        def test_opts(rig):
            assert rig.model() == "TT-890"
            assert rig.scale() == 7.0
        """
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)
    # the command line wins over the ini file
    pytester.makepyfile(
        """
        def test_opts(rig):
            assert rig.scale() == 3.0
        """
    )
    pytester.runpytest("--scale", "3", "-p", "no:randomly").assert_outcomes(passed=1)


def test_suites_are_parametrised_by_the_profile(pytester):
    result = pytester.runpytest(str(SUITES), "--model", "TT-890", "--collect-only", "-q")
    ids = [line for line in result.stdout.lines if "::" in line]
    from rig.profiles import load_profile

    expected = {r.id for r in load_profile("TT-890").requirements}
    assert {line.split("[")[-1].rstrip("]") for line in ids} == expected
    assert len(ids) == len(expected)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "TT-999"], "unknown table model 'TT-999'"),
        (["--model", "TT-890", "--defect", "nope"], "unknown defect 'nope'"),
        (["--model", "TT-890", "--scale", "-1"], "--scale '-1': expected a number > 0"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(pytester, args, message):
    result = pytester.runpytest(str(SUITES), *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_bad_station_file_names_file_and_key(pytester):
    station = pytester.makefile(".toml", station='[plc]\nhost = "127.0.0.1"\nport = "x"\n')
    result = pytester.runpytest(str(SUITES), "--model", "TT-890", "--station", str(station))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*station.toml: plc.port = 'x': expected an integer 1-65535*"])


BODY = """
import pytest

def _run(table):
    table.configure({{"MODE": 0, "HARNESS": 0, "FORCE_SET": 300.0, "RAMP_RATE": 100.0}})
    table.command("START")
    table.wait_status("motor_enabled")

def test_body(table, record):
    _run(table)
    assert table.state() == "RUNNING"
    {action}
"""


def _end(reports):
    return [line for line in _record(reports) if line["kind"] == "end"][-1]


def _safe_events(reports):
    return [e for e in _record(reports) if e["kind"] == "event"]


def test_safe_state_after_an_exception(pytester, tmp_path):
    pytester.makepyfile(BODY.format(action='raise RuntimeError("boom")'))
    result = pytester.runpytest(*BENCH, "--reports", str(tmp_path))
    result.assert_outcomes(failed=1)
    (event,) = _safe_events(tmp_path)[:1]
    assert event["event"] == "safe state confirmed"
    assert event["actions"] == ["STOP"]
    assert event["state"] == "IDLE" and event["motor_enabled"] is False
    assert abs(event["reference"]) <= 15.0


def test_safe_state_after_ctrl_c_and_record_incomplete(pytester, tmp_path):
    pytester.makepyfile(BODY.format(action="raise KeyboardInterrupt"))
    result = pytester.runpytest_subprocess(*BENCH, "--reports", str(tmp_path))
    assert result.ret == pytest.ExitCode.INTERRUPTED
    lines = _record(tmp_path)
    events = [e for e in lines if e["kind"] == "event"]
    assert events[0]["event"] == "interrupted: STOP sent"
    assert events[1]["event"] == "safe state confirmed"
    # stopped by the rig's STOP (a controlled stop to IDLE), not by the PLC's watchdog
    assert events[1]["state"] == "IDLE" and events[1]["fault"] == "NONE"
    assert events[1]["motor_enabled"] is False
    # issue 8: an interrupted run ends INTERRUPTED (was INCOMPLETE), still not complete
    assert _end(tmp_path)["verdict"] == "INTERRUPTED"
    assert _end(tmp_path)["complete"] is False
    assert lines[-1]["kind"] == "signature"  # the station signed what it recorded


PULL = """
import asyncio
import socket
import pytest

@pytest.fixture
def pull_cable(rig):
    def pull(*roles):
        bench = rig._bench
        fut = asyncio.run_coroutine_threadsafe(bench._servers[0].shutdown(), bench._loop)
        fut.result(timeout=10)
        for role in roles:  # the instrument's server stops listening, its live link is cut
            server = bench._servers[1 + list(bench.kind.instruments).index(role)]
            bench._loop.call_soon_threadsafe(server.close)
            sock = rig.drivers[role]._transport._sock
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
    return pull
"""


def test_unconfirmable_safe_state_errors_loudly(pytester, tmp_path):
    # the PLC and every instrument disappear mid-test (cables pulled): nothing can confirm the
    # table safe, and the rig must not pretend it is
    pytester.makeconftest(PULL)
    pytester.makepyfile(
        BODY.replace(
            "def test_body(table, record):", "def test_body(table, record, pull_cable):"
        ).format(action='pull_cable("actuators", "force_meter")')
    )
    result = pytester.runpytest(*BENCH, "--reports", str(tmp_path))
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*table not confirmed safe*PLC does not answer*"])
    result.stdout.fnmatch_lines(["*TABLE NOT CONFIRMED SAFE*"])
    events = [e["event"] for e in _safe_events(tmp_path)]
    assert "safe state NOT confirmed" in events
    assert _end(tmp_path)["verdict"] != "PASS"


def test_plc_gone_make_safe_falls_back_to_the_relays(pytester, tmp_path):
    # issue 8 finding 4: with only the PLC gone, make-safe opens the ACT e-stop relay and
    # confirms the table safe by the load cell; the record names the step
    pytester.makeconftest(PULL)
    pytester.makepyfile(
        BODY.replace(
            "def test_body(table, record):", "def test_body(table, record, pull_cable):"
        ).format(action="pull_cable()")
    )
    pytester.runpytest(*BENCH, "--reports", str(tmp_path))
    events = _safe_events(tmp_path)
    (first,) = [e for e in events if e["event"] == "safe state confirmed"][:1]
    assert first["step"] == "ACT ESTOP relay" and first["plc_answered"] is False
    assert first["verified_by"] == "reference" and abs(first["reference"]) <= 15.0
    assert "conditions NOT restored" in [e["event"] for e in events]
    assert _end(tmp_path)["verdict"] != "PASS"


def test_expired_calibration_stops_certification(pytester, tmp_path):
    result = pytester.runpytest(
        str(SUITES),
        *BENCH,
        "--bench-cal-due",
        "2020-01-31",
        "--reports",
        str(tmp_path),
        "-k",
        "SAF-08",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*calibration expired: force_meter LC-2000 LC0142 calibration due 2020-01-31*"
            "--calibration-override*"
        ]
    )
    assert not list(tmp_path.glob("*/record.jsonl"))  # nothing ran, nothing moved


def test_calibration_override_marks_evidence_not_valid(pytester, tmp_path):
    result = pytester.runpytest(
        str(SUITES),
        *BENCH,
        "--bench-cal-due",
        "2020-01-31",
        "--calibration-override",
        "LC out for repair, line trial",
        "--reports",
        str(tmp_path),
        "-k",
        "SAF-08",
    )
    result.assert_outcomes(passed=1)
    header = _record(tmp_path)[0]
    assert header["calibration_override"]["reason"] == "LC out for repair, line trial"
    assert "NOT VALID FOR PRODUCT RELEASE" in header["not_valid_for_release"]
    assert _end(tmp_path)["verdict"] != "PASS"  # a partial run is not a pass either
    (matrix,) = [x["matrix"] for x in _record(tmp_path) if x["kind"] == "traceability"]
    rows = {row["requirement"]: row for row in matrix}
    assert len(rows) == 15 and rows["TT-SAF-08"]["verdict"] == "PASS"
    assert rows["TT-SAF-08"]["clause"] == "IEC 60601-1 cl. 9.2.4"
    assert rows["TT-SAF-08"]["test"].endswith("test_interlocks[TT-SAF-08]")
    assert rows["TT-SAF-08"]["measurements"] == ["exception_code", "motion"]
    assert rows["TT-SAF-01"]["verdict"] == "NOT RUN"


def test_an_unguarded_write_is_shown_in_the_record(pytester, tmp_path):
    # issue 8: the write guard's one named escape (the SAF-03 probes) is evidence the record shows
    pytester.makepyfile(
        """
        import pytest
        from rig.errors import ModbusExceptionError

        def test_body(table, record):
            with table.unguarded("out-of-range probe of the test"):
                with pytest.raises(ModbusExceptionError):
                    table.write_raw("FORCE_SET", 9999)
            with pytest.raises(Exception, match="refused"):
                table.write_raw("FORCE_SET", 9999)  # outside the escape: the guard refuses
        """
    )
    pytester.runpytest(*BENCH, "--reports", str(tmp_path)).assert_outcomes(passed=1)
    (shown,) = [e for e in _safe_events(tmp_path) if e["event"] == "unguarded write"]
    assert shown["register"] == "FORCE_SET" and shown["words"] == [9999]
    assert shown["reason"] == "out-of-range probe of the test" and shown["problem"]
