"""The rig session: options, profile, bench, drivers, table and record of one pytest session."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from .. import __version__
from ..bench.provision import (
    NO_MODEL,
    Bench,
    BenchRequest,
    check_request,
    check_serial,
    check_station,
    open_instrument,
    provision,
    scale_of,
)
from ..errors import ConfigError
from ..evidence.format import Kind, now_iso, slug
from ..evidence.measurement import Measurement
from ..evidence.writer import RunRecord
from ..line import operator_steps
from ..station import Station
from .events import EventBus, MeasurementJudged, SafeStateChecked, TraceStored
from .options import from_pytest

SESSION_KEY = pytest.StashKey["RigSession"]()
CHECK_KEY = pytest.StashKey[Any]()


class LiveRecord(RunRecord):
    """The run record, announcing each measurement and trace on the event channel as written."""

    def __init__(self, directory: Path, events: EventBus) -> None:
        super().__init__(directory)
        self.events = events
        self.attempt = 1  # the attempt of the requirement running (--retest), set by the plugin

    def add(self, m: Measurement) -> None:
        """Record one judged measurement with its attempt, then announce it."""
        self.measurements.append(m)
        self._append(Kind.MEASUREMENT, {**asdict(m), "attempt": self.attempt})
        self.events.publish(
            MeasurementJudged(
                requirement=m.requirement,
                name=m.name,
                value=m.value,
                unit=m.unit,
                value_text=m.value_text(),
                limit_text=m.limit_text(),
                verdict=m.verdict,
                repeat=m.repeat,
                bindings=dict(m.bindings),
                note=m.note,
                trace=m.trace,
                attempt=self.attempt,
            )
        )

    def conclude_requirement(
        self, requirement: str, verdict: str, note: str = "", test: str = ""
    ) -> None:
        """Record a requirement's verdict of this attempt (the last attempt's counts)."""
        self.requirement_verdicts[requirement] = verdict
        self.requirement_tests[requirement] = test
        self._append(
            Kind.REQUIREMENT,
            {
                "requirement": requirement,
                "verdict": verdict,
                "note": note,
                "test": test,
                "attempt": self.attempt,
            },
        )

    def add_trace(self, name: str, csv_text: str) -> tuple[str, str]:
        """Store a trace file, then announce it."""
        rel, digest = super().add_trace(name, csv_text)
        self.events.publish(TraceStored(path=rel, sha256=digest, run_dir=str(self.directory)))
        return rel, digest


class RigSession:
    """Session state of the rig: profile, station, bench, drivers, record (made on demand)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.options: dict[str, Any] = from_pytest(config)
        self.events = EventBus()
        self.profile: Any = None
        self.bench: Bench | None = None
        self.station: Station | None = None
        self.record: RunRecord | None = None
        self.drivers: dict[str, Any] = {}
        self.table: Any = None
        self.interrupted = False
        self.interrupt_signal = "SIGINT"  # which signal, once interrupted
        self._attempt = 1
        self.unsafe: str | None = None
        self.calibration_override: dict[str, Any] | None = None

    # -- configuration -------------------------------------------------------------------------
    def model(self) -> str:
        """The model named by option (or ini)."""
        model = self.options["model"]
        if not model:
            raise ConfigError(NO_MODEL)
        return str(model)

    def get_profile(self) -> Any:
        """The model's profile, loaded and validated once."""
        if self.profile is None:
            from ..profiles import load_profile

            self.profile = load_profile(self.model())
        return self.profile

    def defects(self) -> list[str]:
        """Seeded defects asked for (emulated bench only)."""
        return list(self.options["defect"])

    def scale(self) -> float:
        """Time scale of an emulated bench."""
        return scale_of(self.options["scale"])

    def bench_request(self, *, defects: bool = False) -> BenchRequest:
        """The bench the options ask for, validated (rig.bench.provision judges the options);
        with `defects`, the defect names are checked against the model too."""
        return check_request(self.options, defects=defects)

    @property
    def attempt(self) -> int:
        """The attempt of the requirement running (1, then 2 ... when --retest reruns it)."""
        return self._attempt

    @attempt.setter
    def attempt(self, value: int) -> None:
        self._attempt = value
        if isinstance(self.record, LiveRecord):
            self.record.attempt = value

    def check_serial(self) -> str:
        """The scanned serial, checked against the profile's pattern (a ConfigError if it is
        empty or does not match): refused before anything moves."""
        return check_serial(self.options["serial"], self.get_profile())

    def check_bench(self) -> None:
        """A station file's bench: every address answers, with the identity and KIND the
        station file and profile say (a ConfigError naming file, key and address otherwise)."""
        if self.options["station"]:
            check_station(self.get_station(), self.get_profile(), self.drivers)

    # -- the bench -----------------------------------------------------------------------------
    def get_station(self) -> Station:
        """The station file's bench, or an emulated bench started now."""
        if self.station is None:
            self.bench = provision(self.bench_request())
            self.station = self.bench.station
        return self.station

    @property
    def _bench(self) -> Any:
        # the in-process emulated bench (tests pull its cables)
        return self.bench.emulator if self.bench is not None else None

    def shutdown(self) -> None:
        """Close drivers and stop the emulated bench."""
        for d in self.drivers.values():
            try:
                d.close()
            except Exception:
                pass
        self.drivers.clear()
        if self.bench is not None:
            self.bench.stop()

    def instrument(self, role: str) -> Any:
        """The driver of the instrument filling `role` (opened once per session)."""
        return open_instrument(self.get_station(), role, self.drivers)

    # -- calibration ---------------------------------------------------------------------------
    def calibration_gate(self) -> None:
        """Refuse to start when an instrument's calibration is past due, unless overridden."""
        prof = self.get_profile()
        today = date.today()
        expired = []
        for role in (prof.model.reference_role, "actuators"):
            drv = self.instrument(role)
            due = drv.calibration_due
            if due < today:
                expired.append(
                    f"{role} {drv.idn.model} {drv.idn.serial} calibration due {due.isoformat()}"
                )
        reason = self.options["calibration_override"]
        if expired and not reason:
            raise ConfigError(
                "calibration expired: " + "; ".join(expired) + ". Recalibrate, or run with "
                "--calibration-override REASON (the evidence is then NOT VALID FOR PRODUCT "
                "RELEASE)"
            )
        if reason:
            self.calibration_override = {"reason": str(reason), "expired": expired}

    # -- the record ----------------------------------------------------------------------------
    def get_record(self) -> RunRecord:
        """The run record of this session, with its header written on first use."""
        if self.record is None:
            serial = self.options["serial"] or "UNKNOWN"
            stamp = time.strftime("%Y%m%dT%H%M%S")
            # a slug: no serial can name a path outside the reports directory
            name = f"{slug(self.model())}-{slug(str(serial), strip=False)}-{stamp}-{os.getpid()}"
            self.record = LiveRecord(self.reports() / name, self.events)
            self.record.attempt = self._attempt
            self.record.start(self.record_header())
        return self.record

    def reports(self) -> Path:
        """Where run records (and the results database) go."""
        return Path(self.options["reports"] or "reports")

    def record_header(self) -> dict[str, Any]:
        """Who, what and with what: written first in the record."""
        profile = self.get_profile()
        header: dict[str, Any] = {
            "model": profile.model.name,
            "serial": self.options["serial"] or "UNKNOWN",
            "operator": self.options["operator"] or "",
            "rig_version": __version__,
            "source_revision": source_revision(),
            "requirements_sha256": profile.requirements_sha256,
            "profile_sha256": profile.sha256,
            "started": now_iso(),
        }
        if profile.operator_steps:  # who confirmed each step a person does on the bench
            header["operator_steps"] = operator_steps(
                profile, self.options["confirm"], self.options["operator"] or ""
            )
        if self.calibration_override:
            header["calibration_override"] = self.calibration_override
            header["not_valid_for_release"] = (
                "NOT VALID FOR PRODUCT RELEASE: run under a calibration override"
            )
        station = self.station
        if station is not None:
            header["station"] = {
                "id": station.id,
                "emulated": station.emulated,
                "source": station.source,
            }
            if station.emulated:
                header["emulator"] = {"scale": self.scale(), "defects": self.defects()}
        instruments = {}
        for role, drv in self.drivers.items():
            try:
                instruments[role] = {
                    "idn": drv.idn_string if hasattr(drv, "idn_string") else str(drv.idn),
                    "calibration_date": str(drv.calibration_date),
                    "calibration_due": str(drv.calibration_due),
                }
            except Exception as e:
                instruments[role] = {"error": str(e)}
        header["instruments"] = instruments
        if self.table is not None:
            plc = self.table.plc
            try:
                header["table"] = {
                    "serial": plc.read("SERIAL"),
                    "firmware": plc.read("FIRMWARE"),
                    "icd_version": plc.read("ICD_VERSION"),
                    "kind": plc.read("KIND"),
                }
            except Exception as e:
                header["table"] = {"error": str(e)}
        return header

    # -- safe state ----------------------------------------------------------------------------
    def safe_state(
        self, report: Any = None, *, error: str | None = None, final: bool = False
    ) -> None:
        """Record and announce a safe-state check: `report` (SafeReport) when confirmed, or
        the `error` that kept it from being confirmed."""
        prefix = "final safe state" if final else "safe state"
        if error is None:
            details = report.as_dict() if report is not None else {}
            if self.record is not None:
                self.record.event(f"{prefix} confirmed", **details)
            self.events.publish(SafeStateChecked(confirmed=True, final=final, details=details))
        else:
            if self.record is not None:
                self.record.event(f"{prefix} NOT confirmed", error=error)
            self.events.publish(SafeStateChecked(confirmed=False, final=final, error=error))


def source_revision() -> str:
    """The rig's git revision (with -dirty), or 'unknown' outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
