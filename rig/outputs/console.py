"""The console of `rig certify`: live progress (an event subscriber), the final table (a sink)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..errors import RigError
from ..evidence.format import Outcome, is_unit_failure
from ..plugin.events import (
    Event,
    Problem,
    RequirementConcluded,
    RequirementStarted,
    RunEnded,
    RunStarted,
)
from ..plugin.sinks import EndedRun

CONSOLE_KEY = pytest.StashKey["CertifyConsole"]()

# the exit code of `rig certify` per overall verdict (a verdict not listed: 1)
EXIT_CODES: dict[str, int] = {
    Outcome.PASS: 0,
    Outcome.FAIL: 1,
    Outcome.RETEST: 3,
    Outcome.PARTIAL: 4,
    Outcome.INTERRUPTED: 5,
    Outcome.INCOMPLETE: 5,
}

# what a verdict that is not about the unit tells the operator to do
_ADVICE = {
    Outcome.RETEST: "a requirement could not be judged (a rig or bench fault, not the unit): "
    "the unit is not certified; run the certification again",
    Outcome.PARTIAL: "only some requirements were run: the unit is not certified",
    Outcome.INTERRUPTED: "the run was interrupted: the unit is not certified",
    Outcome.INCOMPLETE: "the run did not end: the unit is not certified",
}


def verdict_colour(verdict: str) -> str:
    """Green PASS, red for the unit failing, yellow for what is not about the unit (ERROR,
    not certified, not run)."""
    if verdict == Outcome.PASS:
        return "green"
    return "red" if is_unit_failure(verdict) else "yellow"


class CertifyConsole:
    """Follows the run's events with a rich progress bar, then prints the requirement table.

    Passed to pytest as a plugin object: it subscribes to the event channel, and marks the
    session as one with a console (rig.outputs.sinks then adds the console summary and the
    certificate to the run's sinks)."""

    def __init__(self, console: Any, *, progress: bool = True) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console
        self.show_progress = progress  # off: a live view (rig.outputs.live) or -q instead
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task: Any = None
        self.problems: list[Problem] = []
        self.ended: RunEnded | None = None
        self.verdict: str | None = None  # the overall verdict, once summarised
        self.summarised = False

    # -- pytest wiring -------------------------------------------------------------------------
    def pytest_configure(self, config: pytest.Config) -> None:
        """This session has a console."""
        config.stash[CONSOLE_KEY] = self

    def pytest_rig_subscribe(self, config: pytest.Config, events: Any) -> None:
        """Follow the run's events."""
        events.subscribe(self.on_event)

    # -- live ----------------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """Drive the progress bar; keep errors for the summary."""
        if isinstance(event, RunStarted):
            self.problems += event.problems
            self.task = self.progress.add_task("certifying", total=len(event.tests))
            if self.show_progress:
                self.progress.start()
        elif isinstance(event, RequirementStarted):
            if self.task is not None:
                self.progress.update(self.task, description=event.requirement or event.test)
        elif isinstance(event, RequirementConcluded):
            self.problems += event.problems
            if event.retesting:
                self.console.print(
                    f"[yellow]{event.requirement} attempt {event.attempt}: ERROR[/yellow] "
                    f"({event.note or 'the test could not judge the unit'}); retesting"
                )
            elif self.task is not None:
                self.progress.advance(self.task)
        elif isinstance(event, RunEnded):
            self.progress.stop()
            self.ended = event

    # -- at the end ----------------------------------------------------------------------------
    def summary(self, run: EndedRun) -> None:
        """Print the errors, the requirement table and the overall verdict (a sink)."""
        self.progress.stop()
        self.summarised = True
        for p in self.problems:
            self.console.print(f"[red]ERROR[/red] {p.where}\n{p.text}")
        if run.record_dir is None or run.profile is None:
            self.console.print("[red]no requirement was run[/red] (see the errors above)")
            return
        from rich.table import Table

        from ..evidence.reader import read_run
        from ..procedures.check import worst

        record = read_run(run.record_dir)  # the record as written, through the one reader
        profile = run.profile
        table = Table(title=f"{profile.model.name} certification", show_lines=False)
        for col in ("requirement", "quantity", "measured (worst)", "limit", "verdict"):
            table.add_column(col)
        by_req: dict[str, list[Any]] = {}
        for m in record.measurements:
            by_req.setdefault(m.requirement, []).append(m)
        attempts: dict[str, list[Any]] = {}
        for c in record.conclusions:
            attempts.setdefault(c.requirement, []).append(c)
        for req in profile.requirements:
            verdict = record.verdicts.get(req.id, Outcome.NOT_RUN)
            colour = verdict_colour(verdict)
            shown = _verdict_text(verdict, attempts.get(req.id, []))
            rows = list(worst(by_req.get(req.id, [])).values())
            if not rows:
                table.add_row(req.id, req.quantity, "-", req.limit, f"[{colour}]{shown}[/{colour}]")
            for i, m in enumerate(rows):
                table.add_row(
                    req.id if i == 0 else "",
                    req.quantity if i == 0 else "",
                    f"{m.name} = {m.value_text()}",
                    m.limit_text(),
                    f"[{colour}]{shown}[/{colour}]"
                    if i == 0
                    else ("" if m.verdict == Outcome.PASS else "[red]FAIL[/red]"),
                )
        self.console.print(table)
        overall = record.verdict
        self.verdict = overall
        colour = verdict_colour(overall)
        header = record.header or {}
        if header.get("not_valid_for_release"):
            reason = header.get("calibration_override", {}).get("reason", "")
            self.console.print(
                "[bold red]NOT VALID FOR PRODUCT RELEASE[/bold red] (calibration override: "
                f"{reason})"
            )
        if run.unsafe:
            self.console.print(f"[bold red]TABLE NOT CONFIRMED SAFE: {run.unsafe}[/bold red]")
        self.console.print(
            f"overall: [bold {colour}]{overall}[/bold {colour}]   record: {record.path}"
        )
        if overall in _ADVICE:
            self.console.print(f"[{colour}]{_ADVICE[overall]}[/{colour}]")

    def certificate(self, run: EndedRun) -> None:
        """Write the certificate (HTML and PDF) of the run and say where (a sink)."""
        if run.record_dir is None or run.profile is None:
            return
        from .certificate import write_certificate

        try:
            html, pdf = write_certificate(run.record_dir, profile=run.profile)
            self.console.print(f"certificate: {pdf} (and {html.name})")
        except RigError as e:  # the record is the evidence; a certificate can be made again later
            self.console.print(
                f"[yellow]certificate not written:[/yellow] {e} (run `rig certificate`)"
            )

    def exit_code(self, pytest_code: int) -> int:
        """The exit code of `rig certify` (EXIT_CODES; rig.cli.CERTIFY_EXIT_CODES says it)."""
        if not self.summarised:  # pytest stopped before the session (a usage error)
            self.summary(
                EndedRun(
                    record_dir=None,
                    verdict=None,
                    complete=False,
                    model=None,
                    serial="",
                    station_id="",
                    reports=Path("."),
                    exitstatus=pytest_code,
                )
            )
        if self.verdict is None:
            return 2
        if self.verdict == Outcome.PASS and pytest_code != 0:
            return 1  # a passing record but pytest failed something: not a pass
        return EXIT_CODES.get(self.verdict, 1)


def _verdict_text(verdict: str, conclusions: list[Any]) -> str:
    """The verdict as the table shows it: ERROR as a retest (never as the unit failing), and
    the attempts when --retest ran the requirement more than once."""
    text = "ERROR - retest" if verdict == Outcome.ERROR else str(verdict)
    if len(conclusions) > 1:
        earlier = ", ".join(f"{c.attempt}: {c.verdict}" for c in conclusions[:-1])
        text += f" (attempt {conclusions[-1].attempt}; earlier {earlier})"
    return text
