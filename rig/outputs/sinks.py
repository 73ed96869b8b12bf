"""The outputs of an ended run, in one place: each sink takes one ended run, in this order.

Registered with pytest by entry point (`rig-outputs`); the plugin asks for the list through its
`pytest_rig_sinks` hook and reports a sink's failure without changing the verdict. JUnit XML and
Allure results are written by their pytest plugins while the run goes on; their sinks here say
which pytest arguments turn them on (`rig certify` asks `certify_args`).
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..plugin.sinks import EndedRun, Sink
from .console import CONSOLE_KEY, CertifyConsole


@dataclass(frozen=True)
class StationSignature:
    """The station signs the ended record (Ed25519, its own key, created on first use)."""

    name: str = "station signature"
    failure: str = "record NOT signed by the station"

    def __call__(self, run: EndedRun) -> None:
        """Sign the record as recorded by this station."""
        if run.record_dir is None:
            return
        from ..evidence.signing import sign_run, station_key

        sign_run(
            run.record_dir, station_key(), name=run.station_id, meaning="recorded", role="station"
        )


@dataclass(frozen=True)
class ResultsDatabase:
    """The run goes into the results database (`--db`, $RIG_DB_URL, or next to the records),
    which anchors its chain head and the station's signature."""

    db: str | None = None
    name: str = "results database"
    failure: str = "results database not updated"

    def __call__(self, run: EndedRun) -> None:
        """Ingest the run."""
        if run.record_dir is None:
            return
        from .results import open_results

        with open_results(self.db, run.reports) as db:
            db.ingest(run.record_dir)


@dataclass(frozen=True)
class JUnitXml:
    """JUnit XML for CI systems: pytest's junitxml plugin writes it during the run."""

    name: str = "JUnit XML"
    failure: str = "JUnit XML not written"

    def __call__(self, run: EndedRun) -> None:
        """Nothing left to do at the end: pytest wrote it."""

    @staticmethod
    def certify_args(args: argparse.Namespace) -> list[str]:
        """`rig certify --junit PATH`."""
        return ["--junitxml", args.junit] if getattr(args, "junit", None) else []


#: Where `rig certify` has allure-pytest write while a run goes on (one folder per process);
#: the run's results are moved into its run directory when it ends.
ALLURE_STAGING = ".allure-staging"
ALLURE_DIR = "allure-results"  # in each run directory


@dataclass(frozen=True)
class AllureResults:
    """Allure results (steps, traces as attachments), one folder per run: allure-pytest writes
    them during the run into a staging folder of this process, and the end of the run moves
    them into the run directory (`RUN/allure-results`), so runs are never mixed."""

    alluredir: str | None = None  # allure-pytest's --alluredir in this session
    name: str = "Allure results"
    failure: str = "Allure results not moved into the run directory"

    def __call__(self, run: EndedRun) -> None:
        """Move this process's staged results into the run directory."""
        staged = Path(self.alluredir) if self.alluredir else None
        if staged is None or staged.parent.name != ALLURE_STAGING or not staged.is_dir():
            return  # a plain pytest run names its own --alluredir: leave it where it asked
        if run.record_dir is not None:
            target = Path(run.record_dir) / ALLURE_DIR
            target.mkdir(exist_ok=True)
            for f in staged.iterdir():
                shutil.move(str(f), target / f.name)
        shutil.rmtree(staged, ignore_errors=True)

    @staticmethod
    def certify_args(args: argparse.Namespace) -> list[str]:
        """Unless `rig certify --no-allure`: a staging folder of this process."""
        if getattr(args, "no_allure", False):
            return []
        staging = Path(args.reports) / ALLURE_STAGING / str(os.getpid())
        shutil.rmtree(staging, ignore_errors=True)  # left by a killed run of an earlier pid
        return ["--alluredir", str(staging), "--clean-alluredir"]


@dataclass(frozen=True)
class ConsoleSummary:
    """The requirement table and the overall verdict on the `rig certify` console."""

    console: CertifyConsole
    name: str = "console summary"
    failure: str = "console summary not printed"

    def __call__(self, run: EndedRun) -> None:
        """Print it."""
        self.console.summary(run)


@dataclass(frozen=True)
class Certificate:
    """The certificate (HTML and PDF) in the run directory, for runs of `rig certify`."""

    console: CertifyConsole
    name: str = "certificate"
    failure: str = "certificate not written"

    def __call__(self, run: EndedRun) -> None:
        """Write it and say where."""
        self.console.certificate(run)


def sinks(
    console: CertifyConsole | None = None,
    alluredir: str | None = None,
    *,
    db: str | None = None,
) -> list[Sink]:
    """Every output of an ended run, in the order they are written. With a console (a run of
    `rig certify`), also its summary and the certificate. `db`: the results database (`--db`)."""
    out: list[Any] = [
        StationSignature(),
        ResultsDatabase(db),
        JUnitXml(),
        AllureResults(alluredir),
    ]
    if console is not None:
        out += [ConsoleSummary(console), Certificate(console)]
    return out


def certify_args(args: argparse.Namespace) -> list[str]:
    """The pytest arguments the sinks written during the run need (`rig certify`)."""
    found: list[str] = []
    for sink in sinks():
        more = getattr(sink, "certify_args", None)
        if more is not None:
            found += more(args)
    return found


@pytest.hookimpl
def pytest_rig_sinks(config: pytest.Config) -> list[Sink]:
    """The rig plugin's hook: the sinks of this session."""
    from ..plugin.options import from_pytest

    alluredir = getattr(config.option, "allure_report_dir", None)
    return sinks(config.stash.get(CONSOLE_KEY, None), alluredir, db=results_db(from_pytest(config)))


def results_db(options: dict[str, Any]) -> str | None:
    """The results database of a run: `--db`, else the station file's [results] db (else the
    sink's default: $RIG_DB_URL, then REPORTS/results.sqlite)."""
    if options.get("db"):
        return str(options["db"])
    if options.get("station"):
        from ..station import load_station

        return load_station(options["station"]).results_db
    return None
