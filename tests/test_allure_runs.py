"""Allure results per run, labelled by model, kind, suite and requirement, with the unit's serial
and the station as parameters; `rig report RUN` / `--since DATE` pick the runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rig.errors import ConfigError
from rig.outputs import report
from rig.outputs.sinks import ALLURE_DIR, ALLURE_STAGING


def _certify(reports: Path, serial: str) -> Path:
    cmd = [sys.executable, "-m", "rig.cli", "certify", "TT-890", "--serial", serial]
    cmd += ["--requirement", "TT-SAF-02", "--scale", "20", "--reports", str(reports)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    runs = sorted(reports.glob(f"TT-890-{serial}-*"))
    assert runs, proc.stdout + proc.stderr
    return runs[-1]


def _results(run: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (run / ALLURE_DIR).glob("*-result.json")]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    return reports, _certify(reports, "ALR1"), _certify(reports, "ALR2")


def test_each_run_keeps_its_own_labelled_allure_results(two_runs):
    reports, first, second = two_runs
    assert not any((reports / ALLURE_STAGING).glob("*"))  # nothing left staged
    assert not (reports / "allure-results").exists()  # no shared folder
    (a,) = _results(first)
    (b,) = _results(second)
    labels = {x["name"]: x["value"] for x in a["labels"]}
    assert labels["epic"] == "TT-890"
    assert labels["feature"] == "traction safety"
    assert labels["story"] == "TT-SAF-02"
    assert labels["parentSuite"] == "TT-890" and labels["suite"] == "safety"
    params = {p["name"]: p["value"] for p in a["parameters"]}
    assert params["serial"] == "'ALR1'" and params["station"]
    # two units: two tests in a merged report, never one test with a "retry"
    assert a["historyId"] != b["historyId"]


def test_runs_since_picks_runs_by_their_recorded_start(two_runs):
    reports, first, second = two_runs
    assert report.runs_since(reports, "2000-01-01") == [first, second]
    assert report.runs_since(reports, "2999-01-01") == []
    with pytest.raises(ConfigError, match="--since 'yesterday': expected an ISO date"):
        report.runs_since(reports, "yesterday")


def test_report_runs_merges_the_runs_results(two_runs, tmp_path, monkeypatch):
    _, first, second = two_runs
    seen = {}

    def fake_build(results, output, *, name):
        seen["files"] = sorted(p.name for p in Path(results).glob("*-result.json"))
        return output

    monkeypatch.setattr(report, "build_report", fake_build)
    report.report_runs([first, second], tmp_path / "r.html", name="line")
    assert len(seen["files"]) == 2


def test_a_run_without_allure_results_is_a_clear_error(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(ConfigError, match="no Allure results"):
        report.report_runs([tmp_path / "run"], tmp_path / "r.html", name="x")
