"""Honest verdicts: every TT-890 requirement passes on the healthy emulated bench and fails on
the seeded defect that breaks it, and each defect fails exactly the requirements it breaks."""

import pytest

from rig.emulators.defects import defects_for
from rig.matrix import certify_emulated
from rig.profiles import load_profile

MODEL = "TT-890"
PROFILE = load_profile(MODEL)
DEFECTS = defects_for(MODEL)


def _explain(out):
    return f"verdicts {out.verdicts}\n--- output ---\n{out.output[-4000:]}"


def test_healthy_bench_passes_every_requirement(tmp_path):
    out = certify_emulated(MODEL, reports=tmp_path)
    assert set(out.verdicts) == {r.id for r in PROFILE.requirements}, _explain(out)
    assert out.failing() == set(), _explain(out)
    assert out.overall == "PASS" and out.returncode == 0, _explain(out)


def test_every_requirement_has_a_defect_that_breaks_it():
    broken = {req for d in DEFECTS.values() for req in d.breaks}
    assert broken == {r.id for r in PROFILE.requirements}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_defect_fails_exactly_its_requirements(defect, tmp_path):
    out = certify_emulated(MODEL, defects=(defect,), reports=tmp_path)
    assert set(out.verdicts) == {r.id for r in PROFILE.requirements}, _explain(out)
    assert out.failing() == set(DEFECTS[defect].breaks), _explain(out)
    for req in DEFECTS[defect].breaks:
        assert out.verdicts[req] == "FAIL", _explain(out)  # judged FAIL, not an ERROR
    assert out.overall == "FAIL" and out.returncode == 1, _explain(out)
