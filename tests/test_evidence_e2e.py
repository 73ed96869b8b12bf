"""Evidence end to end: a certification killed with SIGKILL halfway keeps every completed
measurement and verifies INCOMPLETE, not TAMPERED."""

import os
import signal
import subprocess
import sys
import time

from rig.evidence.reader import read_run
from rig.evidence.verify import INCOMPLETE, verify_run


def _measurements(record):
    if not record.exists():
        return []
    return read_run(record).measurements  # a partial last line is not yet written: left out


def test_sigkill_halfway_keeps_measurements_and_verifies_incomplete(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "rig.cli",
        "certify",
        "TT-890",
        "--serial",
        "KILLED",
        "--scale",
        "20",
        "--reports",
        str(tmp_path),
        "--no-allure",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )  # its emulator child is in the group too
    try:
        deadline = time.monotonic() + 120
        record = None
        while time.monotonic() < deadline:
            found = list(tmp_path.glob("*/record.jsonl"))
            if found and len(_measurements(found[0])) >= 6:
                record = found[0]
                break
            time.sleep(0.05)  # paces the polling of a file; decides nothing about the table
        assert record is not None, "no measurements were recorded within 120 s"
        seen = len(_measurements(record))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    kept = _measurements(record)
    assert len(kept) >= seen  # nothing that was recorded is lost
    report = verify_run(record.parent)
    assert report.status == INCOMPLETE, report.as_text()
    assert not report.problems, report.as_text()
