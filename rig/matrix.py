"""Certify an emulated bench in a child process and read the verdicts back from its record."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .evidence.format import RECORD_NAME, Outcome
from .evidence.reader import read_run


@dataclass(frozen=True)
class CertifyOutcome:
    """Verdicts of one certification run."""

    defects: tuple[str, ...]
    verdicts: dict[str, str]
    overall: str
    wall_s: float
    record: Path | None
    output: str
    returncode: int = 0

    def failing(self) -> set[str]:
        """Requirements that did not pass."""
        return {r for r, v in self.verdicts.items() if v != Outcome.PASS}


def certify_emulated(
    model: str,
    *,
    defects: tuple[str, ...] = (),
    scale: float = 20.0,
    reports: Path,
    requirements: tuple[str, ...] = (),
    timeout: float = 900.0,
    serial: str = "MATRIX",
) -> CertifyOutcome:
    """Run `rig certify` on an emulated bench in a child process; verdicts from the record."""
    reports = Path(reports)
    reports.mkdir(parents=True, exist_ok=True)
    before = set(reports.glob(f"*/{RECORD_NAME}"))
    cmd = [
        sys.executable,
        "-m",
        "rig.cli",
        "certify",
        model,
        "--serial",
        serial,
        "--scale",
        str(scale),
        "--reports",
        str(reports),
        "--no-allure",
    ]
    for d in defects:
        cmd += ["--defect", d]
    for r in requirements:
        cmd += ["--requirement", r]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    # runs may share the reports directory: only this model and serial's new record is ours
    prefix = f"{model.upper()}-{serial}-"
    new = sorted(
        p
        for p in set(reports.glob(f"*/{RECORD_NAME}")) - before
        if p.parent.name.startswith(prefix)
    )
    if not new:
        return CertifyOutcome(
            defects, {}, "NO RECORD", wall, None, proc.stdout + proc.stderr, proc.returncode
        )
    run = read_run(new[-1])
    output = proc.stdout + proc.stderr
    return CertifyOutcome(
        defects, run.verdicts, run.verdict, wall, new[-1], output, proc.returncode
    )
