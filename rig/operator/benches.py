"""The benches of an operator station: identify the table, run `rig certify`, follow, abort.

Each run is `rig certify` in a child process of its own (its own heartbeat, its own record),
with `--events FILE`; the station follows that file and summarises it for the page. One run
per bench at a time. An emulated bench (`--emulated MODEL`) is served by a child process of
its own for as long as the station runs, so the table is identified from its PLC exactly as a
real one is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bench.provision import check_serial
from ..emulators.spawn import bench_command
from ..errors import ConfigError
from ..evidence.format import Outcome
from ..line import BenchSpec, operator_steps
from ..plc import Plc
from ..plugin.progress import follow_events
from ..profiles import available_profiles, load_profile
from ..station import Station, load_station


class Refused(Exception):
    """A request the station refuses, with the sentence the operator reads and an HTTP code."""

    def __init__(self, text: str, status: int = 400) -> None:
        super().__init__(text)
        self.text, self.status = text, status


@dataclass(frozen=True)
class Identity:
    """What the table's PLC says it is."""

    model: str
    kind: int
    kind_name: str
    icd_version: int
    plc_serial: int
    steps: tuple[dict[str, str], ...]


def identify(station: Station, timeout: float = 1.0) -> Identity:
    """Read KIND, ICD_VERSION and SERIAL from the bench's PLC and find the model profile of that
    KIND (the common input registers sit at the same addresses on every model, ICD). Bounded by
    the driver's call bound; a ConfigError names the address when nothing answers."""
    profiles = [load_profile(name) for name in available_profiles()]
    common = profiles[0]
    address = f"{station.plc_host}:{station.plc_port}"
    plc = Plc(common, station.plc_host, station.plc_port, unit=station.plc_unit, timeout=timeout)
    try:
        plc.connect()
        kind = int(plc.read("KIND"))
        icd = int(plc.read("ICD_VERSION"))
        serial = int(plc.read("SERIAL"))
    except Exception as e:  # refused, silent, garbage: the operator needs the address
        raise ConfigError(f"no PLC answers at {address} ({type(e).__name__}: {e})") from None
    finally:
        plc.close()
    matching = [p for p in profiles if p.model.kind == kind]
    if not matching:
        raise ConfigError(f"the PLC at {address} reports KIND {kind}: no profile of that kind")
    profile = matching[0]
    if icd != profile.model.icd_version:
        raise ConfigError(
            f"the PLC at {address} reports ICD_VERSION {icd}; this rig implements "
            f"{profile.model.icd_version}"
        )
    return Identity(
        model=profile.model.name,
        kind=kind,
        kind_name=profile.model.kind_name,
        icd_version=icd,
        plc_serial=serial,
        steps=tuple({"id": s.id, "text": s.text} for s in profile.operator_steps),
    )


# -- a run's events, summarised for the page -----------------------------------------------------
@dataclass
class RunSummary:
    """What the page shows of a run, built from its events (and, once it ended, its record)."""

    requirements: list[dict[str, Any]] = field(default_factory=list)
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    traces: list[str] = field(default_factory=list)
    current: str = ""
    verdict: str | None = None
    record_dir: str | None = None
    interrupted: str | None = None
    unsafe: str | None = None
    safe: dict[str, Any] | None = None  # the last safe-state check
    ended: bool = False
    started_any: bool = False  # a requirement test started: the table may have been moved
    problems: list[str] = field(default_factory=list)

    def apply(self, e: dict[str, Any]) -> None:
        """Take one event."""
        kind = e.get("kind")
        if kind == "run_started":
            for test, req in zip(e.get("tests", []), e.get("requirements", []), strict=False):
                row = {"id": req or test, "state": "waiting", "step": "", "note": "", "n": 0}
                self.requirements.append(row)
                self.by_id[row["id"]] = row
            self.problems += [p.get("text", "")[-300:] for p in e.get("problems", [])]
        elif kind == "run_planned":
            for req, s in (e.get("expected_s") or {}).items():
                if req in self.by_id:
                    self.by_id[req]["expected_s"] = s
        elif kind == "requirement_started":
            row = self._row(e)
            row.update(state="running", step="starting", attempt=e.get("attempt", 1))
            self.current = row["id"]
            self.started_any = True
        elif kind == "step_started":
            row = self._row(e)
            row["step"] = e.get("step", "")
            if e.get("device_s") is not None:
                row["device_s"] = e["device_s"]
        elif kind == "measurement_judged":
            row = self._row(e)
            row["n"] = row.get("n", 0) + 1
            rep = "" if e.get("repeat") is None else f" (repeat {e['repeat'] + 1})"
            text = f"{e.get('name')} = {e.get('value_text')}{rep} (limit {e.get('limit_text')})"
            row["step"] = f"measured {text}: {e.get('verdict')}"
            if e.get("verdict") != Outcome.PASS:
                row.setdefault("why", []).append(text)
        elif kind == "trace_stored":
            path = str(e.get("path", ""))
            self.record_dir = e.get("run_dir") or self.record_dir
            png = path.rsplit(".", 1)[0] + ".png"
            if png not in self.traces:
                self.traces.append(png)
        elif kind == "requirement_concluded":
            row = self._row(e)
            row["step"] = ""
            row["note"] = e.get("note", "")
            row["state"] = "retesting" if e.get("retesting") else e.get("verdict", "")
        elif kind == "safe_state_checked":
            self.safe = {
                "confirmed": bool(e.get("confirmed")),
                "final": bool(e.get("final")),
                "details": e.get("details") or {},
                "error": e.get("error", ""),
            }
        elif kind == "run_ended":
            # what did not conclude (an abort mid-requirement) is NOT RUN, as the record says
            for row in self.requirements:
                if row["state"] in ("waiting", "running", "retesting"):
                    was = row["state"]
                    row["state"] = Outcome.NOT_RUN
                    row["step"] = ""
                    if was == "running" and e.get("interrupted"):
                        row["note"] = f"interrupted ({e['interrupted']})"
            self.ended = True
            self.verdict = e.get("verdict")
            self.record_dir = e.get("record") or self.record_dir
            self.interrupted = e.get("interrupted")
            self.unsafe = e.get("unsafe")

    def _row(self, e: dict[str, Any]) -> dict[str, Any]:
        rid = e.get("requirement") or e.get("test") or "?"
        if rid not in self.by_id:
            row = {"id": rid, "state": "waiting", "step": "", "note": "", "n": 0}
            self.requirements.append(row)
            self.by_id[rid] = row
        return self.by_id[rid]


class Run:
    """One `rig certify` child process and the events file it writes."""

    def __init__(
        self,
        run_id: str,
        bench_id: str,
        work: Path,
        *,
        model: str,
        serial: str,
        operator: str,
        command: list[str],
    ) -> None:
        self.id, self.bench_id, self.work = run_id, bench_id, work
        self.model, self.serial, self.operator = model, serial, operator
        self.events_path = work / "events.jsonl"
        self.log_path = work / "output.log"
        self.started = time.time()
        self.aborted_by: str | None = None
        self.summary = RunSummary()
        self._offset = 0
        self._lock = threading.Lock()
        work.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:  # the child keeps its own handle
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                # the station aborts it (SIGINT) when asked or when it shuts down, and only then
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        """The child has not exited."""
        return self.process.poll() is None

    def abort(self, by: str) -> None:
        """SIGINT, as Ctrl-C at its terminal: the rig makes the table safe and ends the record
        INTERRUPTED (a second abort is not sent: it would only repeat the same)."""
        if not self.running:
            raise Refused(f"the run of {self.serial} has already ended", 409)
        if self.aborted_by is None:
            self.aborted_by = by
            self.process.send_signal(signal.SIGINT)

    def refresh(self) -> None:
        """Read the events written since the last look."""
        with self._lock:
            running = self.running  # before reading: an exit seen now has all its lines
            events, self._offset = follow_events(self.events_path, self._offset)
            for e in events:
                self.summary.apply(e)
            if not running and not hasattr(self, "_final"):
                self._final = self._record_facts()

    def _record_facts(self) -> dict[str, Any]:
        """Once the child exited: its exit code, and from the record the final safe-state event
        and the certificate (written after the record ended)."""
        facts: dict[str, Any] = {"exit_code": self.process.returncode}
        rd = self.summary.record_dir
        if rd:
            from ..evidence.reader import read_run

            try:
                run = read_run(Path(rd))
                finals = [e for e in run.events if str(e.get("event", "")).startswith("final safe")]
                if finals:
                    facts["record_safe_state"] = {
                        k: v for k, v in finals[-1].items() if k not in ("fields", "seq", "prev")
                    }
                facts["record_verdict"] = run.verdict
            except Exception as e:  # the page still shows the events; say why the record did not
                facts["record_error"] = f"{type(e).__name__}: {e}"
            cert = Path(rd) / "certificate.html"
            facts["certificate"] = cert.is_file()
        if not self.summary.ended:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
            facts["output"] = "\n".join(tail)
        return facts

    def state(self) -> dict[str, Any]:
        """The run as the page shows it."""
        self.refresh()
        s = self.summary
        failing = [
            {"id": r["id"], "verdict": r["state"], "why": "; ".join(r.get("why", [])) or r["note"]}
            for r in s.requirements
            if r["state"] not in ("PASS", "waiting", "running", "retesting", "NOT RUN")
        ]
        return {
            "id": self.id,
            "model": self.model,
            "serial": self.serial,
            "operator": self.operator,
            "started": time.strftime("%H:%M:%S", time.localtime(self.started)),
            "running": self.running,
            "aborted_by": self.aborted_by,
            "requirements": s.requirements,
            "current": s.current,
            "traces": s.traces,
            "verdict": s.verdict,
            "ended": s.ended,
            "interrupted": s.interrupted,
            "unsafe": s.unsafe,
            "safe": s.safe,
            "started_any": s.started_any,
            "failing": failing,
            "problems": s.problems,
            **getattr(self, "_final", {}),
        }

    def file(self, rel: str) -> Path | None:
        """A file of the run's record directory (traces, certificate), never one outside it."""
        rd = self.summary.record_dir
        if not rd:
            return None
        root = Path(rd).resolve()
        path = (root / rel).resolve()
        return path if path.is_relative_to(root) and path.is_file() else None


class EmulatedBench:
    """An emulated bench served by a child process in a session of its own: a Ctrl-C at the
    station's terminal reaches the station (which aborts its runs, lets each make its table
    safe, then stops this), never the bench under a run that is still making safe."""

    def __init__(
        self,
        model: str,
        scale: float,
        work: Path,
        *,
        defects: tuple[str, ...] = (),
        timeout: float = 60.0,
    ) -> None:
        out, log_path = work / "station.toml", work / "emulator.log"
        out.unlink(missing_ok=True)
        cmd = bench_command(model, station_out=out, scale=scale, defects=defects)
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not out.exists():
            if self.process.poll() is not None:
                raise ConfigError(f"emulated {model} bench did not start:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"emulated {model} bench did not start within {timeout:g} s")
            time.sleep(0.05)  # paces the look for the file it writes once it serves
        self.station_file = out
        self.station = load_station(out)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class BenchRuntime:
    """One bench of the station: its station (file or emulated), its current and last runs."""

    def __init__(self, spec: BenchSpec, work: Path, reports: Path) -> None:
        self.spec = spec
        self.work = work / spec.id
        self.reports = reports
        self.spawned: EmulatedBench | None = None
        self.station_file: Path | None = spec.station
        self.station: Station | None = None
        self.run: Run | None = None
        self.runs = 0
        self.error: str | None = None
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        """The bench's id on the line."""
        return self.spec.id

    def start(self) -> None:
        """Bring the bench up: serve an emulated one, or read the station file."""
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            if self.spec.emulated:
                self.spawned = EmulatedBench(
                    self.spec.emulated.upper(),
                    self.spec.scale,
                    self.work,
                    defects=self.spec.defects,
                )
                self.station = self.spawned.station
                self.station_file = self.spawned.station_file
            else:
                assert self.station_file is not None
                self.station = load_station(self.station_file)
        except ConfigError as e:
            self.error = str(e)

    def stop(self) -> None:
        """Abort a run still going (its table is made safe), then stop an emulated bench."""
        run = self.run
        if run is not None and run.running:
            run.abort("the station shutting down")
            try:
                run.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                run.process.kill()
        if self.spawned is not None:
            self.spawned.stop()
            self.spawned = None

    def _need_station(self) -> Station:
        if self.station is None:
            raise Refused(f"bench {self.id} is not available: {self.error or 'not started'}", 503)
        return self.station

    def identify(self, serial: str) -> dict[str, Any]:
        """The table on the bench (from its PLC's KIND) and the scanned serial checked against
        that model's pattern. Not while a run is going: that run owns the PLC."""
        station = self._need_station()
        if self.run is not None and self.run.running:
            raise Refused(self._busy_text(), 409)
        try:
            who = identify(station)
            check_serial(serial, load_profile(who.model))
        except ConfigError as e:  # the page has no --serial option: say "serial"
            raise Refused(str(e).replace("--serial ", "serial ", 1)) from None
        return {
            "bench": self.id,
            "serial": serial,
            "model": who.model,
            "kind": who.kind,
            "kind_name": who.kind_name,
            "icd_version": who.icd_version,
            "plc_serial": who.plc_serial,
            "steps": list(who.steps),
        }

    def _busy_text(self) -> str:
        run = self.run
        assert run is not None
        return (
            f"bench {self.id} is already certifying {run.model} serial {run.serial} (started "
            f"{time.strftime('%H:%M:%S', time.localtime(run.started))} by {run.operator}): one "
            "run per bench at a time; wait for it to end or abort it"
        )

    def start_run(
        self,
        *,
        serial: str,
        operator: str,
        confirmed: list[str],
        requirements: list[str] | None = None,
        extra: list[str] | None = None,
    ) -> Run:
        """Start `rig certify` on this bench: the model confirmed from the PLC's KIND, every
        operator step of the profile confirmed by `operator`. Refused while a run is going."""
        with self._lock:
            if self.run is not None and self.run.running:
                raise Refused(self._busy_text(), 409)
            who = self.identify(serial)
            profile = load_profile(who["model"])
            try:
                steps = operator_steps(profile, confirmed, operator)
            except ConfigError as e:
                raise Refused(str(e)) from None
            missing = [s["text"] for s in steps if s["confirmed_by"] is None]
            if missing:
                raise Refused(f"confirm first: {missing[0]}")
            # the station's requirement list may name several models' (benches side by side):
            # this bench runs those of its model
            known = {r.id for r in profile.requirements}
            chosen = [r for r in requirements or [] if r in known]
            if requirements and not chosen:
                raise Refused(
                    f"the station runs only {', '.join(requirements)}; none is a {who['model']} "
                    f"requirement (known: {', '.join(sorted(known))})"
                )
            self.runs += 1
            run_id = f"{self.id}-{time.strftime('%Y%m%dT%H%M%S')}-{self.runs}"
            assert self.station_file is not None
            cmd = [
                sys.executable,
                "-m",
                "rig.cli",
                "certify",
                who["model"],
                "--serial",
                serial,
                "--station",
                str(self.station_file),
                "--operator",
                operator,
                "--reports",
                str(self.reports),
                "--events",
                str(self.work / run_id / "events.jsonl"),
                "--no-live",
            ]
            for c in confirmed:
                cmd += ["--confirm", c]
            for r in chosen:
                cmd += ["--requirement", r]
            cmd += list(extra or [])
            self.run = Run(
                run_id,
                self.id,
                self.work / run_id,
                model=who["model"],
                serial=serial,
                operator=operator,
                command=cmd,
            )
            return self.run

    def state(self) -> dict[str, Any]:
        """The bench as the page shows it."""
        station = self.station
        return {
            "id": self.id,
            "emulated": self.spec.emulated,
            "scale": self.spec.scale if self.spec.emulated else None,
            "defects": list(self.spec.defects),
            "address": f"{station.plc_host}:{station.plc_port}" if station else None,
            "error": self.error,
            "busy": self.run is not None and self.run.running,
            "run": self.run.state() if self.run is not None else None,
        }
