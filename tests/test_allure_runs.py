"""Allure results per run, labelled by model, kind, suite and requirement, with the unit's serial
and the station as parameters; `rig report RUN` / `--since DATE` pick the runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rig.errors import ConfigError
from rig.outputs import report
from rig.outputs.sinks import ALLURE_DIR, ALLURE_STAGING

REQUIREMENTS = ("TT-SAF-02", "TT-SAF-03")


def _certify(reports: Path, serial: str) -> Path:
    cmd = [sys.executable, "-m", "rig.cli", "certify", "TT-890", "--serial", serial]
    for r in REQUIREMENTS:
        cmd += ["--requirement", r]
    cmd += ["--scale", "20", "--reports", str(reports), "--no-live"]
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
    results = {r["name"].split(":")[0]: r for r in _results(first)}
    assert sorted(results) == list(REQUIREMENTS)
    a = results["TT-SAF-02"]
    (b,) = [r for r in _results(second) if r["name"].startswith("TT-SAF-02")]
    labels = {x["name"]: x["value"] for x in a["labels"]}
    assert labels["epic"] == "TT-890"
    assert labels["feature"] == "traction safety"
    assert labels["story"] == "TT-SAF-02"
    assert labels["parentSuite"] == "TT-890" and labels["suite"] == "safety"
    params = {p["name"]: p["value"] for p in a["parameters"]}
    assert params["serial"] == "'ALR1'" and params["station"]
    assert params["requirement"] == "'TT-SAF-02'"
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
    assert len(seen["files"]) == 2 * len(REQUIREMENTS)


def test_a_run_without_allure_results_is_a_clear_error(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(ConfigError, match="no Allure results"):
        report.report_runs([tmp_path / "run"], tmp_path / "r.html", name="x")


NPM = shutil.which("npm")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(
    not (NPM and CHROMIUM and DRIVER) and not os.environ.get("CI"),
    reason="Node.js/npm or chromium/chromedriver not installed",
)
def test_the_single_file_report_shows_the_runs_requirements_in_a_browser(two_runs, tmp_path):
    """`rig report RUN` builds one HTML file; Debian's chromium opens it from disk and shows the
    run's requirement count, its tests under the model (not under a 'suites' module node)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, first, _ = two_runs
    out = tmp_path / "report.html"
    proc = subprocess.run(
        [sys.executable, "-m", "rig.cli", "report", str(first), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    opts = webdriver.ChromeOptions()
    for flag in BROWSER_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    opts.binary_location = str(CHROMIUM)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=opts)
    try:
        driver.get(out.as_uri())
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: "Total" in d.find_element(By.TAG_NAME, "body").text)
        lines = driver.find_element(By.TAG_NAME, "body").text.splitlines()
        assert lines[lines.index("Total") + 1] == str(len(REQUIREMENTS))
        assert "TT-890" in lines and "suites" not in lines
    finally:
        driver.quit()


BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
