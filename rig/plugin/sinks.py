"""Outputs of an ended run: the sink protocol, and handing the run to each sink in turn.

The sinks themselves are listed in one place, rig/outputs/sinks.py (a higher layer), which
answers the `pytest_rig_sinks` hook; the plugin only knows this protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class EndedRun:
    """One ended run as the sinks see it: its record directory and the session's facts."""

    record_dir: Path | None  # None when nothing was recorded (nothing ran)
    verdict: str | None  # the overall verdict written in the record's end line
    complete: bool
    model: str | None
    serial: str
    station_id: str
    reports: Path
    exitstatus: int
    unsafe: str | None = None
    not_run: tuple[str, ...] = ()
    profile: Any = None  # the model's validated profile, when it was loaded


class Sink(Protocol):
    """Takes one ended run. `failure` begins the line that reports it failed."""

    name: str
    failure: str

    def __call__(self, run: EndedRun) -> None:
        """Write this output of the run."""
        ...


def deliver(run: EndedRun, sinks: Iterable[Sink], report: Callable[[str], None]) -> list[str]:
    """Hand the run to every sink in turn; a sink's failure is reported (and returned), never
    raised: the record is the evidence, and its verdict is already written."""
    failed = []
    for sink in sinks:
        try:
            sink(run)
        except Exception as e:
            text = f"{sink.failure}: {e}"
            failed.append(text)
            report(text)
    return failed
