"""`rig report`: a single-file HTML from allure results; a clear message without Node."""

import json
import shutil

import pytest

from rig.errors import ConfigError
from rig.outputs.report import HOW_TO_GET_NODE, build_report


def _results(tmp_path):
    results = tmp_path / "allure-results"
    results.mkdir()
    (results / "0001-result.json").write_text(
        json.dumps(
            {
                "uuid": "0001",
                "name": "TT-SAF-01: e-stop reaction and release",
                "status": "passed",
                "stage": "finished",
                "start": 1,
                "stop": 2,
                "fullName": "suites.safety.test_stops",
                "labels": [{"name": "requirement", "value": "TT-SAF-01"}],
            }
        )
    )
    return results


def test_without_node_the_message_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError) as e:
        build_report(_results(tmp_path), tmp_path / "r.html")
    assert str(e.value) == HOW_TO_GET_NODE and "apt-get install nodejs npm" in str(e.value)


def test_no_results_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="holds no allure results"):
        build_report(tmp_path, tmp_path / "r.html")


@pytest.mark.skipif(shutil.which("npm") is None, reason="Node.js/npm not installed")
def test_single_file_report_is_built(tmp_path, monkeypatch):
    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    out = build_report(_results(tmp_path), tmp_path / "report.html", name="TT-890 certification")
    html = out.read_text()
    assert out.stat().st_size > 100_000 and "<html" in html.lower()
    assert not list(out.parent.glob("*.js"))  # one file: everything inlined
