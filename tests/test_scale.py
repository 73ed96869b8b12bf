"""Verdicts do not depend on the emulator's time scale: timing-critical requirements measured
at two scales give the same verdicts and the same device-time figures."""

from rig.evidence.reader import read_run
from rig.matrix import certify_emulated

TIMED = ("TT-SAF-05", "TT-SAF-06", "TT-SAF-08")


def _values(out):
    return {(m.requirement, m.name): m.value for m in read_run(out.record).measurements}


def test_same_verdicts_and_device_times_at_scale_2_and_20(tmp_path):
    slow = certify_emulated("TT-890", scale=2, requirements=TIMED, reports=tmp_path / "s2")
    fast = certify_emulated("TT-890", scale=20, requirements=TIMED, reports=tmp_path / "s20")
    assert slow.verdicts == fast.verdicts == {r: "PASS" for r in TIMED}, slow.output + fast.output
    a, b = _values(slow), _values(fast)
    assert a.keys() == b.keys()
    # fault time from the PLC's own clock, against the last heartbeat sent in one segment with
    # its UPTIME_MS reads: within 5 device ms at either scale (the figure)
    key = ("TT-SAF-05", "fault_time")
    assert abs(a[key] - b[key]) <= 0.005, (a[key], b[key])
    # the answer time is an upper bound that includes one host poll: within 0.1 device s
    key = ("TT-SAF-06", "answer_time")
    assert abs(a[key] - b[key]) < 0.1, (a[key], b[key])
