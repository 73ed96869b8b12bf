"""CI sample of the fault campaign: a few faults through the same runner as the benchmark.

Each case certifies one requirement on its own emulated bench, injects one fault once the table
runs, and asserts every check of the campaign (tests/fault_support.py): the table ends safe by
the emulator's observer, no process outlives its bound, the record verifies, no unit FAIL.
The full campaign (>= 60 runs, random) is `python benchmarks/fault_campaign.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fault_support import HEADER, Plan, format_row, run_one

SCALE = 10.0
RIG_BOUND_S = 90.0  # a single requirement takes well under a minute at scale 10

CASES = [
    pytest.param(
        Plan(1, "TT-890", "TT-SAF-01", "plc-killed", after_start_s=1.0),
        id="plc-killed",
    ),
    pytest.param(
        Plan(2, "TT-890", "TT-SAF-01", "link-drop", role="actuators", after_start_s=1.0),
        # issue 8 findings 6, 7: the ACT-3 link lost during 'OUTP:EST ON' concluded TT-SAF-01
        # FAIL before the honest-outcome rule (InstrumentUnreachable in the body is ERROR)
        id="link-drop-actuators",
    ),
    pytest.param(Plan(3, "RT-600", "RT-SAF-01", "rig-sigterm", after_start_s=1.0), id="sigterm"),
    pytest.param(Plan(4, "IT-90", "IT-SAF-01", "rig-sigkill", after_start_s=1.0), id="sigkill"),
    pytest.param(Plan(5, "TT-890", "TT-SAF-01", "plc-silent", after_start_s=1.0), id="plc-silent"),
]


@pytest.mark.parametrize("plan", CASES)
def test_fault_ends_safe_bounded_and_honest(plan: Plan, tmp_path: Path) -> None:
    result = run_one(plan, scale=SCALE, rig_bound_s=RIG_BOUND_S, workdir=tmp_path, keep=True)
    assert result.injected_at is not None, f"the fault was never injected: {result.note}"
    assert result.ok, f"checks failed: {result.failed_checks()}\n{HEADER}\n{format_row(result)}"
