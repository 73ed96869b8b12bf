"""The record format's helpers: outcomes, the overall verdict, canonical JSON, paths, text."""

import json
import math

import pytest

from rig.errors import ConfigError
from rig.evidence.format import (
    NoRecordError,
    Outcome,
    canonical_text,
    canonical_value,
    limit_text,
    number_text,
    overall_verdict,
    resolve_run,
    run_paths,
    severity,
    slug,
)


def test_outcome_words_are_the_words_records_hold():
    # records written before must read the same: these strings are part of the format
    assert [str(o) for o in Outcome] == [
        "PASS",
        "FAIL",
        "ERROR",
        "INCOMPLETE",
        "NOT RUN",
        "NOT CONCLUDED",
        "INVALID",
        # issue 8: run-level words, after the words records held before
        "NOT CERTIFIED - retest",
        "NOT CERTIFIED - partial",
        "INTERRUPTED",
    ]
    assert json.dumps({"verdict": Outcome.NOT_RUN}) == '{"verdict": "NOT RUN"}'
    assert Outcome.PASS == "PASS" and f"{Outcome.FAIL}" == "FAIL"


def test_severity_orders_outcomes_and_unknown_words_count_as_fail():
    assert severity("PASS") < severity("NOT RUN") < severity("FAIL") < severity("ERROR")
    assert severity("SOMETHING ELSE") == severity("FAIL")


def test_overall_verdict():
    ok = {"A": Outcome.PASS, "B": "PASS"}
    assert overall_verdict(ok, required=["A", "B"]) == Outcome.PASS
    # issue 8: a requirement that could not be judged is not the unit failing
    assert overall_verdict(ok, required=["A", "B", "C"]) == Outcome.RETEST  # C never concluded
    assert overall_verdict({**ok, "B": "ERROR"}) == Outcome.RETEST
    assert overall_verdict({"A": "FAIL", "B": "ERROR"}) == Outcome.FAIL  # the unit failed A
    # a partial run (C not selected) is not certified, neither pass nor fail
    assert overall_verdict(ok, required=["A", "B", "C"], selected=["A", "B"]) == Outcome.PARTIAL
    assert (
        overall_verdict({"A": "PASS", "B": "ERROR"}, required=["A", "B", "C"], selected=["A", "B"])
        == Outcome.RETEST
    )
    assert overall_verdict(ok, interrupted=True, complete=False) == Outcome.INTERRUPTED
    assert overall_verdict(ok, unsafe="STATE 3 after STOP") == Outcome.FAIL
    assert overall_verdict(ok, complete=False) == Outcome.INCOMPLETE
    assert overall_verdict({"A": "FAIL"}, complete=False) == Outcome.INCOMPLETE
    assert overall_verdict(ok, intact=False) == Outcome.INVALID
    assert overall_verdict({}) == Outcome.PASS  # nothing required, nothing failed


def test_canonical_json():
    assert canonical_value({"b": 1, "a": [math.inf, -math.inf]}) == b'{"a":["inf","-inf"],"b":1}'
    assert canonical_value({"x": math.nan}) == b'{"x":"NaN"}'
    assert canonical_value("é") == b'"\\u00e9"'
    assert canonical_value("é", ascii_only=False) == '"é"'.encode()
    assert canonical_text({"set": 300.0}) == '{"set":300.0}'
    # the profile digests' form: non-finite floats are refused, not written as strings
    with pytest.raises(ValueError):
        canonical_value({"x": math.inf}, allow_nan=False)


def test_run_paths_and_resolve_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert run_paths(run) == (run, run / "record.jsonl")
    assert run_paths(run / "record.jsonl") == (run, run / "record.jsonl")
    with pytest.raises(NoRecordError, match=r"record\.jsonl not found") as e:
        resolve_run(run)
    assert isinstance(e.value, ConfigError)  # a usage error: `rig` exits 2 with one line
    (run / "record.jsonl").write_text("")
    assert resolve_run(str(run)) == resolve_run(run / "record.jsonl") == (run, run / "record.jsonl")


def test_slug():
    assert slug("TT-SAF-01-run 1/ä") == "TT-SAF-01-run_1"
    assert slug("  S/N 12 ", strip=False) == "_S_N_12_"
    assert slug("a=1, b=2", keep="_.=-") == "a=1_b=2"
    assert slug(" J. Doe ", keep="", fill="-", lower=True) == "j-doe"


@pytest.mark.parametrize(
    ("x", "kwargs", "text"),
    [
        (300.0, {}, "300"),
        (0.12345, {}, "0.1235"),
        (2e6, {}, "2e+06"),
        (math.inf, {}, "inf"),
        (300.33333, {"digits": 6, "exact_below": 1e9}, "300.333"),
        (2e6, {"digits": 6, "exact_below": 1e9}, "2000000"),
        ("x", {}, "x"),
    ],
)
def test_number_text(x, kwargs, text):
    assert number_text(x, **kwargs) == text


def test_limit_text():
    assert limit_text(None, None, 2.0, "mm") == "= 2 mm"
    assert limit_text(1.0, 2.5, None, "s") == "1 .. 2.5 s"
    assert limit_text(None, 0.5, None) == "<= 0.5"
    assert limit_text(10.0, None, None, "N") == ">= 10 N"
    assert limit_text(None, None, None) == "-"
