"""The operator station without a browser: the line file, operator steps, the run summary, the
app's refusals (Starlette's test client)."""

from __future__ import annotations

import shutil
import socket
from types import SimpleNamespace

import pytest
from starlette.testclient import TestClient

from rig.cli import main
from rig.errors import ConfigError, ProfileError
from rig.line import Line, load_line, operator_steps
from rig.operator.app import OperatorStation, create_app
from rig.operator.benches import RunSummary
from rig.profiles import load_profile
from rig.profiles.loading import PROFILES_DIR

LINE = """
[station]
name = "LINE2"
host = "127.0.0.1"
port = 8899

[[person]]
name = "J. Doe"
badge = "B-1001"
role = "operator"

[[person]]
name = "Q. Able"
badge = "B-2002"
role = "QA"

[[bench]]
id = "BENCH1"
emulated = "TT-890"
scale = 10
"""


def test_line_file_read(tmp_path):
    f = tmp_path / "line.toml"
    f.write_text(LINE)
    line = load_line(f)
    assert (line.name, line.host, line.port) == ("LINE2", "127.0.0.1", 8899)
    assert line.person("B-1001").name == "J. Doe"
    assert line.person("q. able").role == "QA"  # a typed name, any case
    assert line.person("B-9999") is None
    assert line.benches[0].emulated == "TT-890" and line.benches[0].scale == 10
    assert line.benches[0].defects == ()
    f.write_text(LINE.replace("scale = 10", 'scale = 10\ndefects = ["estop-slow"]'))
    assert load_line(f).benches[0].defects == ("estop-slow",)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (('role = "operator"', 'role = "boss"'), "person[0].role = 'boss': expected one of"),
        (('badge = "B-2002"', 'badge = "B-1001"'), "person[1].badge = 'B-1001'"),
        (('host = "127.0.0.1"', 'host = "the-floor"'), "station.host = 'the-floor'"),
        (("port = 8899", "port = 0"), "station.port = 0: expected an integer 1-65535"),
        (('emulated = "TT-890"', 'station = "missing.toml"'), "bench[0].station = 'missing.toml'"),
        (('id = "BENCH1"', 'id = "BENCH 1"'), "bench[0].id = 'BENCH 1'"),
        (('name = "LINE2"', 'nmae = "LINE2"'), "station.nmae"),
        (("scale = 10", 'scale = "fast"'), "bench[0].scale = 'fast': expected a number > 0"),
        (("scale = 10", "defects = 3"), "bench[0].defects = 3: expected a list of defect names"),
    ],
)
def test_line_file_mistakes_name_file_key_and_value(tmp_path, change, named):
    f = tmp_path / "line.toml"
    f.write_text(LINE.replace(*change))
    with pytest.raises(ConfigError) as e:
        load_line(f)
    assert str(f) in str(e.value) and named in str(e.value)


def test_line_file_bench_needs_one_of_station_or_emulated(tmp_path):
    f = tmp_path / "line.toml"
    f.write_text(LINE.replace('emulated = "TT-890"', 'emulated = "TT-890"\nstation = "b.toml"'))
    with pytest.raises(ConfigError, match=r"bench\[0\].*one of station"):
        load_line(f)


def test_operator_steps_in_the_profile_and_the_record_header():
    profile = load_profile("TT-890")
    assert [s.id for s in profile.operator_steps] == ["harness"]
    steps = operator_steps(profile, ["harness"], "J. Doe")
    assert steps == [{"id": "harness", "text": steps[0]["text"], "confirmed_by": "J. Doe"}]
    assert operator_steps(profile, [], "")[0]["confirmed_by"] is None
    with pytest.raises(ConfigError, match="no such operator step"):
        operator_steps(profile, ["lumbar"], "J. Doe")
    with pytest.raises(ConfigError, match="needs --operator"):
        operator_steps(profile, ["harness"], "")


def test_profile_operator_step_validated(tmp_path):
    copy = tmp_path / "TT-890"
    shutil.copytree(PROFILES_DIR / "TT-890", copy)
    text = (copy / "profile.toml").read_text()
    (copy / "profile.toml").write_text(
        text.replace('id = "harness"', 'id = "harness"\nwho = "anyone"')
    )
    with pytest.raises(ProfileError, match=r"operator_step\[0\]\.who"):
        load_profile(copy)
    (copy / "profile.toml").write_text(text + '\n[[operator_step]]\nid = "harness"\ntext = "x"\n')
    with pytest.raises(ProfileError, match=r"operator_step\[1\]\.id = 'harness'"):
        load_profile(copy)


def test_certify_refuses_an_unknown_confirmed_step_before_anything_runs(tmp_path, capsys):
    code = main(
        [
            *("certify", "TT-890", "--serial", "890001", "--confirm", "nope", "--operator", "X"),
            *("--reports", str(tmp_path), "--no-allure"),
        ]
    )
    assert code == 2
    assert "no such operator step" in capsys.readouterr().err
    assert not list(tmp_path.glob("*/record.jsonl"))


def test_run_summary_from_events():
    s = RunSummary()
    tests = ("t::a[TT-SAF-02]", "t::b[TT-SAF-03]")
    for e in [
        {"kind": "run_started", "tests": tests, "requirements": ["TT-SAF-02", "TT-SAF-03"]},
        {"kind": "run_planned", "expected_s": {"TT-SAF-02": 200.0}},
        {"kind": "requirement_started", "test": tests[0], "requirement": "TT-SAF-02"},
        {"kind": "step_started", "requirement": "TT-SAF-02", "step": "measuring", "device_s": 3},
        {"kind": "trace_stored", "path": "traces/TT-SAF-02-run1.csv", "run_dir": "/r"},
        {
            "kind": "measurement_judged",
            "requirement": "TT-SAF-02",
            "name": "reaction_time",
            "value_text": "0.2 s",
            "limit_text": "<= 0.1 s",
            "verdict": "FAIL",
            "repeat": 0,
        },
        {"kind": "requirement_concluded", "requirement": "TT-SAF-02", "verdict": "FAIL"},
        {"kind": "requirement_started", "test": tests[1], "requirement": "TT-SAF-03"},
        {"kind": "safe_state_checked", "confirmed": True, "final": True, "details": {}},
        {"kind": "run_ended", "verdict": "INTERRUPTED", "record": "/r", "interrupted": "SIGINT"},
    ]:
        s.apply(e)
    first, second = s.requirements
    assert first["state"] == "FAIL" and first["expected_s"] == 200.0 and first["n"] == 1
    assert first["why"] == ["reaction_time = 0.2 s (repeat 1) (limit <= 0.1 s)"]
    # what an abort cut short is NOT RUN, as the record says, with why
    assert second["state"] == "NOT RUN" and second["note"] == "interrupted (SIGINT)"
    assert s.traces == ["traces/TT-SAF-02-run1.png"]
    assert s.verdict == "INTERRUPTED" and s.safe["confirmed"] and s.ended


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def client(tmp_path):
    """A station with one real-bench entry whose PLC address answers nothing."""
    bench = tmp_path / "bench.toml"
    bench.write_text(f'[station]\nid = "DEAD"\n[plc]\nhost = "127.0.0.1"\nport = {_dead_port()}\n')
    f = tmp_path / "line.toml"
    f.write_text(LINE.replace('emulated = "TT-890"', f'station = "{bench}"'))
    station = OperatorStation(load_line(f), reports=tmp_path / "reports", work=tmp_path / "w")
    with TestClient(create_app(station)) as c:
        yield c, station


def test_page_and_refusals(client):
    c, _ = client
    page = c.get("/")
    assert page.status_code == 200 and 'id="bench-BENCH1"' in page.text
    r = c.post("/api/login", json={"scan": "B-9999"})
    assert r.status_code == 403 and "not enrolled on LINE2" in r.json()["error"]
    assert c.post("/api/login", json={"scan": "B-1001"}).json() == {
        "name": "J. Doe",
        "role": "operator",
    }
    r = c.post("/api/bench/NOPE/identify", json={"serial": "890001"})
    assert r.status_code == 404 and "benches: BENCH1" in r.json()["error"]
    r = c.post("/api/bench/BENCH1/identify", json={"serial": "890001"})
    assert r.status_code == 400 and "no PLC answers at 127.0.0.1:" in r.json()["error"]
    r = c.post("/api/bench/BENCH1/abort", json={"operator": "B-1001"})
    assert r.status_code == 409 and "nothing is running on bench BENCH1" in r.json()["error"]
    r = c.post("/api/bench/BENCH1/start", content="serial=1")
    assert r.status_code == 400 and "not JSON" in r.json()["error"]


def test_a_second_start_on_a_busy_bench_is_refused(client):
    c, station = client
    bench = station.benches["BENCH1"]
    bench.run = SimpleNamespace(
        running=True, model="TT-890", serial="890001", operator="J. Doe", started=0.0, state=dict
    )
    r = c.post(
        "/api/bench/BENCH1/start",
        json={"serial": "890002", "operator": "B-2002", "confirmed": ["harness"]},
    )
    assert r.status_code == 409
    assert "already certifying TT-890 serial 890001" in r.json()["error"]
    assert "one run per bench at a time" in r.json()["error"]
    # not even the PLC is asked while a run owns it
    r = c.post("/api/bench/BENCH1/identify", json={"serial": "890002"})
    assert r.status_code == 409
    bench.run = None


def test_station_needs_a_bench():
    with pytest.raises(ConfigError, match="no bench"):
        OperatorStation(Line(path=None), reports=None)  # type: ignore[arg-type]


def test_station_command_line_mistakes_are_one_line_errors(tmp_path, capsys):
    assert main(["station", "serve", "--station", str(tmp_path / "none.toml")]) == 2
    assert "no such station file" in capsys.readouterr().err
    assert main(["station", "serve", "--emulated", "XX-1"]) == 2
    assert "unknown table model 'XX-1'" in capsys.readouterr().err
    assert main(["station", "serve", "--line", str(tmp_path / "line.toml")]) == 2
    assert "line file" in capsys.readouterr().err
    assert main(["station", "serve", "--emulated", "RT-600", "--defect", "estop-slow"]) == 2
    assert "--defect 'estop-slow': no emulated bench's model has it" in capsys.readouterr().err
