"""Bad input (issue 8, finding 9): an unreachable or wrong bench and a bad serial are one clear
line and exit code 2 before anything moves; no serial can name a path outside the reports."""

import dataclasses
import socket
from pathlib import Path

import pytest

from rig.cli import main
from rig.station import station_toml

pytest_plugins = ["pytester"]

SUITES = Path(__file__).resolve().parent.parent / "suites"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dead_station(tmp_path: Path) -> Path:
    port = _free_port()
    path = tmp_path / "dead.toml"
    path.write_text(
        f'[plc]\nhost = "127.0.0.1"\nport = {port}\n\n'
        "[instruments.force_meter]\n"
        f'model = "LC-2000"\nresource = "TCPIP0::127.0.0.1::{port}::SOCKET"\n\n'
        "[instruments.actuators]\n"
        f'model = "ACT-3"\nresource = "TCPIP0::127.0.0.1::{port}::SOCKET"\n'
    )
    return path


def _one_clean_line(out: str) -> None:
    assert "Traceback" not in out and "INTERNALERROR" not in out, out


def test_a_station_with_nothing_listening_is_one_line_exit_2(pytester, tmp_path):
    station = _dead_station(tmp_path)
    result = pytester.runpytest(
        str(SUITES), "--model", "TT-890", "--serial", "890001", "--station", str(station)
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    port = station.read_text().split("port = ")[1].split()[0]
    result.stderr.fnmatch_lines([f"*{station}: plc (host, port) = 127.0.0.1:{port}: no PLC*"])
    _one_clean_line(result.stdout.str() + result.stderr.str())


def test_rig_certify_on_a_dead_station_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    station = _dead_station(tmp_path)
    code = main(["certify", "TT-890", "--serial", "890001", "--station", str(station)])
    out = capsys.readouterr()
    assert code == 2
    assert f"{station}: plc (host, port) = 127.0.0.1:" in out.out + out.err
    _one_clean_line(out.out + out.err)
    assert not list(tmp_path.glob("reports/*/record.jsonl"))  # nothing ran


@pytest.fixture(scope="module")
def roller_bench():
    from rig.emulators.bench import EmulatedBench

    bench = EmulatedBench("RT-600", scale=5.0)
    station = bench.start()
    yield station
    bench.stop()


def test_a_station_of_another_kind_is_one_line_exit_2(pytester, tmp_path, roller_bench):
    # an RT-600 bench named in a TT-890 certification: the PLC's KIND says so
    station = tmp_path / "roller.toml"
    station.write_text(station_toml(roller_bench))
    result = pytester.runpytest(
        str(SUITES), "--model", "TT-890", "--serial", "890001", "--station", str(station)
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*{station}: plc (host, port) = *: the PLC reports KIND 2, but TT-890 is KIND 1*"]
    )
    _one_clean_line(result.stdout.str() + result.stderr.str())


def test_a_wrong_instrument_at_an_address_is_one_line_exit_2(pytester, tmp_path, roller_bench):
    # the position meter's key points at the actuator box: its *IDN? is not an ENC-600
    acts = roller_bench.instruments["actuators"].resource
    wrong = dict(roller_bench.instruments)
    wrong["position_meter"] = dataclasses.replace(wrong["position_meter"], resource=acts)
    station = tmp_path / "wrong.toml"
    station.write_text(station_toml(dataclasses.replace(roller_bench, instruments=wrong)))
    result = pytester.runpytest(
        str(SUITES), "--model", "RT-600", "--serial", "600001", "--station", str(station)
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*{station}: instruments.position_meter.resource = {acts}: *expected a*ENC-600*"]
    )
    _one_clean_line(result.stdout.str() + result.stderr.str())


@pytest.mark.parametrize("serial", ["", "   ", "../../x", "/etc/x", "600123", "t 1"])
def test_a_bad_serial_is_refused_before_anything_moves(tmp_path, capsys, serial, monkeypatch):
    # finding 9: --serial "" certified a unit as UNKNOWN and issued a PASS certificate
    monkeypatch.chdir(tmp_path)
    code = main(["certify", "TT-890", "--serial", serial, "--reports", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 2
    text = out.out + out.err
    assert f"--serial {serial!r}" in text and "890\\d{3,6}" in text
    _one_clean_line(text)
    assert not list(tmp_path.rglob("record.jsonl"))


def test_the_plugin_refuses_an_empty_serial_too(pytester, tmp_path):
    result = pytester.runpytest(
        str(SUITES),
        "--model",
        "TT-890",
        "--serial",
        "",
        "--emulator",
        "inprocess",
        "--reports",
        str(tmp_path),
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--serial '': no serial number given*"])
    assert not list(tmp_path.rglob("record.jsonl"))


@pytest.mark.parametrize("serial", ["890001", "T1", "MATRIX", "DEMO-TT-890", "EV-1"])
def test_real_and_bench_serials_are_accepted(serial):
    from rig.bench.provision import check_serial
    from rig.profiles import load_profile

    assert check_serial(serial, load_profile("TT-890")) == serial


def test_a_profile_pattern_that_accepts_a_path_is_refused():
    from rig.errors import ProfileError
    from rig.profiles.validation import _is_serial_pattern

    assert _is_serial_pattern(r"890\d{3}")
    assert not _is_serial_pattern(r".*")  # matches "" and "../x"
    assert not _is_serial_pattern(r"[A-Z/.]+")  # a path
    assert not _is_serial_pattern("(")  # not a regular expression
    assert issubclass(ProfileError, Exception)


@pytest.mark.parametrize("serial", ["../../x", "/etc/x", "..", "a/../../b"])
def test_no_serial_makes_a_path_outside_the_reports(pytester, tmp_path, serial):
    # whatever gets past the pattern (a loose profile), the run directory is a slug
    pytester.makepyfile(
        f"""
        from pathlib import Path

        def test_path(rig):
            rig.options["serial"] = {serial!r}
            rec = rig.get_record()
            reports = Path({str(tmp_path)!r}).resolve()
            assert rec.directory.resolve().parent == reports
            assert "/" not in rec.directory.name
        """
    )
    result = pytester.runpytest(
        "--model", "TT-890", "--serial", "T1", "--reports", str(tmp_path), "-p", "no:randomly"
    )
    result.assert_outcomes(passed=1)
