"""Honest verdicts: every requirement of every model passes on the healthy emulated bench and
fails (judged FAIL, not an error) on each seeded defect that breaks it.

CI certifies each model once healthy (all requirements) and runs each defect against the
requirements it breaks. That each defect breaks ONLY those is checked by the full matrix
(every defect against every requirement): `benchmarks/defect_matrix.py`, or here with
RIG_FULL_MATRIX=1.
"""

import os

import pytest

from rig.emulators.bench import emulated_models
from rig.emulators.defects import defects_for
from rig.matrix import certify_emulated
from rig.profiles import load_profile

MODELS = emulated_models()
# CI runs two certifications at once on 2 cores, each with its emulator: scale 10 leaves the
# host 100 ms of wall time per second of watchdog (scale 20 halves that and can starve the
# heartbeat under such load). Verdicts do not depend on the scale (tests/test_scale.py).
SCALE = 10.0
FULL = os.environ.get("RIG_FULL_MATRIX") == "1"
# A defect that breaks nothing (a deviation no requirement row judges, e.g. IT-90's
# patient-return-slow) must pass instead: tests/test_definitions.py certifies it.
CASES = [(m, d) for m in MODELS for d in sorted(defects_for(m)) if defects_for(m)[d].breaks]
BENIGN = [(m, d) for m in MODELS for d in sorted(defects_for(m)) if not defects_for(m)[d].breaks]


def _explain(out):
    return f"verdicts {out.verdicts}\n--- output ---\n{out.output[-4000:]}"


@pytest.mark.parametrize("model", MODELS)
def test_healthy_bench_passes_every_requirement(model, tmp_path):
    out = certify_emulated(model, reports=tmp_path, scale=SCALE)
    assert set(out.verdicts) == {r.id for r in load_profile(model).requirements}, _explain(out)
    assert out.failing() == set(), _explain(out)
    assert out.overall == "PASS" and out.returncode == 0, _explain(out)


@pytest.mark.parametrize("model", MODELS)
def test_every_requirement_has_a_defect_that_breaks_it(model):
    broken = {req for d in defects_for(model).values() for req in d.breaks}
    assert broken == {r.id for r in load_profile(model).requirements}


@pytest.mark.parametrize(("model", "defect"), CASES, ids=[f"{m}:{d}" for m, d in CASES])
def test_defect_fails_its_requirements(model, defect, tmp_path):
    breaks = defects_for(model)[defect].breaks
    out = certify_emulated(
        model, defects=(defect,), reports=tmp_path, scale=SCALE, requirements=() if FULL else breaks
    )
    for req in breaks:
        assert out.verdicts.get(req) == "FAIL", _explain(out)  # judged FAIL, not an ERROR
    if FULL:
        assert out.failing() == set(breaks), _explain(out)
    assert out.overall == "FAIL" and out.returncode == 1, _explain(out)


def test_a_defect_that_breaks_nothing_says_why():
    for model, defect in BENIGN:
        assert "no requirement" in defects_for(model)[defect].description, (model, defect)
