"""Live progress of `rig certify` in the terminal: a rich Live view following the run's events.

It shows requirement n of N, its current step, its device time so far against what the last
run of the model took, and prints each requirement's verdict the moment it is reached (those
lines stay; the live part is transient, so the console's final table follows them). The device
time is an estimate for people (wall time times the PLC clock rate the table measured); no
verdict uses it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from ..evidence.format import Outcome
from ..plugin.events import (
    Event,
    MeasurementJudged,
    RequirementConcluded,
    RequirementStarted,
    RunEnded,
    RunPlanned,
    RunStarted,
    SafeStateChecked,
    StepStarted,
)
from .console import verdict_colour


def live_wanted(console: Any, *, no_live: bool = False, quiet: bool = False) -> bool:
    """Live progress only on a terminal, and not with --no-live or -q."""
    return bool(getattr(console, "is_terminal", False)) and not no_live and not quiet


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.0f} s"


class LiveProgress:
    """The live view; a pytest plugin object (it subscribes to the event channel)."""

    def __init__(self, console: Any, *, refresh_per_second: float = 4.0) -> None:
        self.console = console
        self.refresh_per_second = refresh_per_second
        self._lock = threading.Lock()
        self._live: Any = None
        self.total = 0
        self.done = 0
        self.index = -1
        self.requirement = ""
        self.attempt = 1
        self.step = ""
        self.expected: dict[str, float] = {}
        self.device_at_step: float | None = None  # device s of the requirement at its last step
        self.step_wall = 0.0
        self.rate: float | None = None
        self.counts: dict[str, int] = {}
        self.verdicts: list[tuple[str, str]] = []
        self.measured = 0
        self.failed = 0

    # -- pytest wiring -------------------------------------------------------------------------
    def pytest_rig_subscribe(self, config: pytest.Config, events: Any) -> None:
        """Follow the run's events."""
        events.subscribe(self.on_event)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Whatever happened, give the terminal back."""
        self.stop()

    # -- events --------------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """Update the view; print a verdict line when a requirement concludes. Printing and
        starting or stopping the live region happen outside the view's lock: the live region's
        refresh thread takes the console's lock, then the view's (in `render`)."""
        with self._lock:
            lines = self._update(event)
        if isinstance(event, RunStarted):
            self.start()
        for line in lines:
            self.console.print(line)
        if isinstance(event, RunEnded):
            self.stop()

    def _update(self, event: Event) -> list[str]:
        if isinstance(event, RunStarted):
            self.total = len(event.tests)
        elif isinstance(event, RunPlanned):
            self.expected = dict(event.expected_s)
        elif isinstance(event, RequirementStarted):
            self.index, self.requirement = event.index, event.requirement or event.test
            self.attempt = event.attempt
            self.step, self.device_at_step, self.step_wall = "starting", 0.0, time.monotonic()
            self.measured = self.failed = 0
        elif isinstance(event, StepStarted):
            self.step = event.step
            self.device_at_step = event.device_s
            self.rate = event.clock_rate or self.rate
            self.step_wall = time.monotonic()
        elif isinstance(event, MeasurementJudged):
            self.measured += 1
            self.failed += event.verdict != Outcome.PASS
            repeat = "" if event.repeat is None else f" (repeat {event.repeat + 1})"
            self.step = f"measured {event.name} = {event.value_text}{repeat}: {event.verdict}"
        elif isinstance(event, SafeStateChecked) and not event.confirmed:
            return [f"[bold red]table NOT confirmed safe:[/bold red] {event.error}"]
        elif isinstance(event, RequirementConcluded):
            return [self._concluded(event)]
        return []

    def _concluded(self, event: RequirementConcluded) -> str:
        verdict = event.verdict
        colour = verdict_colour(verdict)
        took = self.device_s()
        shown = "ERROR - retest" if verdict == Outcome.ERROR else verdict
        text = (
            f"[bold]{event.requirement or event.test}[/bold] "
            f"[{colour}]{shown}[/{colour}] "
            f"({self.measured} measurements, ~{_seconds(took)} device time)"
        )
        if event.attempt > 1:
            text += f" attempt {event.attempt}"
        if event.retesting:
            text += f"; retesting: {event.note or 'the test could not judge the unit'}"
        elif event.note and verdict != Outcome.PASS:
            text += f": {event.note}"
        if not event.retesting:
            self.done += 1
            self.counts[verdict] = self.counts.get(verdict, 0) + 1
        self.step = "concluded"
        return text

    # -- the view ------------------------------------------------------------------------------
    def device_s(self) -> float | None:
        """The current requirement's device time so far (estimate)."""
        if self.device_at_step is None or self.rate is None:
            return self.device_at_step
        return self.device_at_step + (time.monotonic() - self.step_wall) * self.rate

    def render(self) -> Any:
        """What the live region shows now."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.text import Text

        with self._lock:
            n = self.index + 1
            expected = self.expected.get(self.requirement)
            elapsed = self.device_s()
            head = Text.assemble(
                ("requirement ", "dim"),
                (f"{max(n, 0)} of {self.total}", "bold"),
                ("  ", ""),
                (self.requirement or "-", "bold cyan"),
                (f"  attempt {self.attempt}" if self.attempt > 1 else "", "yellow"),
            )
            time_text = f"device time {_seconds(elapsed)}"
            time_text += (
                f" of ~{_seconds(expected)} expected" if expected else " (no expectation yet)"
            )
            line2 = Text.assemble(("  step: ", "dim"), (self.step or "-", ""))
            line3 = Text.assemble(("  ", ""), (time_text, "dim"))
            tally = "  ".join(f"{v}: {c}" for v, c in sorted(self.counts.items()))
            bar = ProgressBar(total=max(self.total, 1), completed=self.done, width=40)
            line4 = Text.assemble(("  ", ""), (f"{self.done}/{self.total} concluded  ", ""))
            line4.append(tally, style="dim")
            return Group(head, line2, line3, bar, line4)

    def start(self) -> None:
        """Start the live region (once)."""
        if self._live is not None:
            return
        from rich.live import Live

        self._live = Live(
            get_renderable=self.render,
            console=self.console,
            refresh_per_second=self.refresh_per_second,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    def stop(self) -> None:
        """Stop the live region (the verdict lines printed stay)."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()
