"""`rig report`: an offline single-file HTML report from allure results, with Allure 3 (npm)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import ConfigError

ALLURE_VERSION = "3.18.0"  # pinned like every other dependency
HOW_TO_GET_NODE = (
    "Node.js (20 or newer) with npm is needed to build the report: on Debian/Ubuntu "
    "`apt-get install nodejs npm`, elsewhere https://nodejs.org; then run `rig report` again "
    f"(it installs the Allure 3 package, npm `allure@{ALLURE_VERSION}`, once into "
    "~/.cache/spinal-rig). The allure results themselves are complete without it."
)


def cache_dir() -> Path:
    """Where the Allure package is installed (RIG_CACHE_DIR overrides)."""
    base = os.environ.get("RIG_CACHE_DIR") or Path.home() / ".cache" / "spinal-rig"
    return Path(base) / f"allure-{ALLURE_VERSION}"


def allure_cli(*, install: bool = True) -> Path:
    """The Allure 3 command line, installed from the npm registry on first use."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise ConfigError(HOW_TO_GET_NODE)
    home = cache_dir()
    cli = home / "node_modules" / ".bin" / "allure"
    if cli.exists():
        return cli
    if not install:
        raise ConfigError(f"Allure {ALLURE_VERSION} is not installed in {home}")
    home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            "npm",
            "install",
            "--prefix",
            str(home),
            "--no-audit",
            "--no-fund",
            f"allure@{ALLURE_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0 or not cli.exists():
        raise ConfigError(
            f"could not install npm allure@{ALLURE_VERSION} into {home}: "
            f"{(proc.stderr or proc.stdout).strip()[-800:]}"
        )
    return cli


def build_report(results: Path, output: Path, *, name: str = "Certification") -> Path:
    """Write one self-contained HTML file from an allure-results directory."""
    results = Path(results)
    if not results.is_dir() or not any(results.glob("*-result.json")):
        raise ConfigError(
            f"{results} holds no allure results (*-result.json); run `rig certify` first"
        )
    cli = allure_cli()
    with tempfile.TemporaryDirectory(prefix="rig-allure-") as tmp:
        out = Path(tmp) / "report"
        config = Path(tmp) / "allurerc.json"
        config.write_text(
            json.dumps(
                {
                    "name": name,
                    "output": str(out),
                    "plugins": {"awesome": {"options": {"singleFile": True, "reportName": name}}},
                }
            )
        )
        proc = subprocess.run(
            [str(cli), "generate", "--config", str(config), str(results)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        page = out / "index.html"
        if proc.returncode != 0 or not page.exists():
            raise ConfigError(
                f"allure generate failed: {(proc.stderr or proc.stdout).strip()[-800:]}"
            )
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(page, output)
    return output


def runs_since(reports: Path, since: str) -> list[Path]:
    """Run directories under `reports` whose record says the run started on or after `since`
    (an ISO date or date-time, e.g. 2026-12-03 or 2026-12-03T08:00), oldest first."""
    from datetime import datetime

    from ..evidence.format import RECORD_NAME
    from ..evidence.reader import read_run

    try:
        start = datetime.fromisoformat(since)
    except ValueError:
        raise ConfigError(
            f"--since {since!r}: expected an ISO date or date-time, e.g. 2026-12-03 or "
            "2026-12-03T08:00"
        ) from None
    found: list[tuple[str, Path]] = []
    for record in sorted(Path(reports).glob(f"*/{RECORD_NAME}")):
        header = read_run(record.parent).header or {}
        started = str(header.get("started") or header.get("time") or "")
        try:
            when = datetime.fromisoformat(started)
        except ValueError:
            continue  # a record without a readable start is not "since" anything
        if when.tzinfo is not None and start.tzinfo is None:
            when = when.replace(tzinfo=None)
        if when >= start:
            found.append((started, record.parent))
    return [run for _, run in sorted(found)]


def report_runs(runs: list[Path], output: Path, *, name: str) -> Path:
    """One single-file HTML report of the Allure results of these runs (`RUN/allure-results`)."""
    from .sinks import ALLURE_DIR

    if not runs:
        raise ConfigError("no runs to report on")
    missing = [str(r) for r in runs if not any((Path(r) / ALLURE_DIR).glob("*-result.json"))]
    if len(missing) == len(runs):
        raise ConfigError(
            f"no Allure results in {', '.join(missing)} ({ALLURE_DIR}/); certify without "
            "--no-allure"
        )
    with tempfile.TemporaryDirectory(prefix="rig-allure-runs-") as tmp:
        merged = Path(tmp)
        for run in runs:
            for f in (Path(run) / ALLURE_DIR).glob("*"):
                shutil.copyfile(f, merged / f.name)  # allure names files by uuid: no clashes
        return build_report(merged, output, name=name)
