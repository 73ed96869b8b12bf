"""The pytest plugin: options, markers, the bench for the session, requirement tests, safe state."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from . import __version__
from .errors import ConfigError, RigError, SafeStateError
from .evidence.format import Outcome, overall_verdict, slug
from .evidence.writer import RunRecord
from .station import ROLE_MODELS, Station, load_station

RIG_KEY = pytest.StashKey["RigSession"]()
CHECK_KEY = pytest.StashKey[Any]()

OPTIONS: list[tuple[str, str, str, Any]] = [
    # (option, ini name, help, default)
    (
        "--station",
        "rig_station",
        "station file (TOML) of a real bench; none: an emulated bench",
        None,
    ),
    ("--model", "rig_model", "table model to certify, e.g. TT-890", None),
    ("--serial", "rig_serial", "serial number of the unit under test (as scanned)", None),
    ("--operator", "rig_operator", "name of the operator", None),
    ("--reports", "rig_reports", "directory for run records", "reports"),
    ("--scale", "rig_scale", "time scale of the emulated bench", "20"),
    ("--defect", "rig_defects", "seed a named defect in the emulated bench (repeatable)", None),
    (
        "--emulator",
        "rig_emulator",
        "run the emulated bench in a 'subprocess' or 'inprocess'",
        "subprocess",
    ),
    (
        "--calibration-override",
        "rig_calibration_override",
        "engineering override: run although an instrument's calibration has expired (give the "
        "reason); the evidence is then marked NOT VALID FOR PRODUCT RELEASE",
        None,
    ),
    (
        "--bench-cal-due",
        "rig_bench_cal_due",
        "emulated bench only: the calibration due date (YYYY-MM-DD) its instruments report",
        None,
    ),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Every option has an ini twin."""
    group = parser.getgroup("rig", "spinal table certification rig")
    for opt, ini, help_, default in OPTIONS:
        if opt == "--defect":
            group.addoption(opt, action="append", dest=ini, default=None, help=help_)
            parser.addini(ini, help_, type="args", default=[])
        else:
            group.addoption(opt, dest=ini, default=None, help=f"{help_} (ini: {ini})")
            parser.addini(ini, help_, default=default)


def _opt(config: pytest.Config, ini: str) -> Any:
    value = config.getoption(ini)
    if value is None:
        value = config.getini(ini)
    return value


def pytest_configure(config: pytest.Config) -> None:
    """Register markers and create the rig session object (lazy: no I/O here)."""
    config.addinivalue_line(
        "markers", "verifies(test): the test body verifies every requirement whose `test` is this"
    )
    config.addinivalue_line("markers", "safety: a safety requirement test")
    config.addinivalue_line("markers", "performance: a performance requirement test")
    config.stash[RIG_KEY] = RigSession(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop an emulated bench we started."""
    rs = config.stash.get(RIG_KEY, None)
    if rs is not None:
        rs.shutdown()


@dataclass
class RigSession:
    """Session state of the rig: profile, station, bench, drivers, record (created on demand)."""

    config: pytest.Config
    profile: Any = None
    station: Station | None = None
    record: RunRecord | None = None
    drivers: dict[str, Any] = field(default_factory=dict)
    table: Any = None
    interrupted: bool = False
    unsafe: str | None = None
    calibration_override: dict[str, Any] | None = None
    _bench: Any = None
    _proc: subprocess.Popen | None = None
    _tmp: tempfile.TemporaryDirectory | None = None

    # -- configuration -------------------------------------------------------------------------
    def model(self) -> str:
        """The model named by option, or by the station file's table (the PLC's KIND)."""
        model = _opt(self.config, "rig_model")
        if not model:
            raise ConfigError(
                "no table model given: pass --model (e.g. --model TT-890) or set "
                "rig_model in the ini file"
            )
        return str(model)

    def get_profile(self) -> Any:
        """The model's profile, loaded and validated once."""
        if self.profile is None:
            from .profiles import load_profile

            self.profile = load_profile(self.model())
        return self.profile

    def defects(self) -> list[str]:
        """Seeded defects asked for (emulated bench only)."""
        opt = self.config.getoption("rig_defects")
        return list(opt if opt is not None else self.config.getini("rig_defects"))

    def scale(self) -> float:
        """Time scale of an emulated bench."""
        raw = _opt(self.config, "rig_scale")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"--scale {raw!r}: expected a number > 0") from None
        if not value > 0:
            raise ConfigError(f"--scale {raw!r}: expected a number > 0")
        return value

    # -- the bench -----------------------------------------------------------------------------
    def get_station(self) -> Station:
        """The station file's bench, or an emulated bench started now."""
        if self.station is not None:
            return self.station
        path = _opt(self.config, "rig_station")
        if path:
            if self.defects():
                raise ConfigError(
                    "--defect seeds defects in an emulated bench; it cannot be used with --station"
                )
            self.station = load_station(path)
            return self.station
        mode = str(_opt(self.config, "rig_emulator"))
        if mode == "inprocess":
            from .emulators.bench import EmulatedBench

            self._bench = EmulatedBench(
                self.model(),
                scale=self.scale(),
                defects=tuple(self.defects()),
                seed=_seed(self.config),
                instrument_kwargs=self._bench_instrument_kwargs(),
                serial=self._bench_serial(),
            )
            self.station = self._bench.start()
        elif mode == "subprocess":
            self.station = self._start_subprocess()
        else:
            raise ConfigError(f"--emulator {mode!r}: expected 'subprocess' or 'inprocess'")
        return self.station

    def _bench_serial(self) -> int | None:
        """An emulated table reports the scanned serial when it is a number (as a real one
        reports its own)."""
        scanned = str(_opt(self.config, "rig_serial") or "")
        return int(scanned) if scanned.isdigit() and int(scanned) < 2**32 else None

    def _bench_instrument_kwargs(self) -> dict[str, dict[str, Any]] | None:
        due = _opt(self.config, "rig_bench_cal_due")
        return {role: {"cal_due": due} for role in ROLE_MODELS} if due else None

    def _start_subprocess(self) -> Station:
        self._tmp = tempfile.TemporaryDirectory(prefix="rig-bench-")
        out = Path(self._tmp.name) / "station.toml"
        cmd = [
            sys.executable,
            "-m",
            "rig.cli",
            "emulate",
            self.model(),
            "--scale",
            str(self.scale()),
            "--station-out",
            str(out),
            "--seed",
            str(_seed(self.config)),
            "--quiet",
        ]
        for d in self.defects():
            cmd += ["--defect", d]
        if self._bench_serial() is not None:
            cmd += ["--plc-serial", str(self._bench_serial())]
        if _opt(self.config, "rig_bench_cal_due"):
            cmd += ["--cal-due", str(_opt(self.config, "rig_bench_cal_due"))]
        log = open(Path(self._tmp.name) / "emulator.log", "w")
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not out.exists():
            if self._proc.poll() is not None:
                log.flush()
                text = (Path(self._tmp.name) / "emulator.log").read_text()
                raise ConfigError(f"emulated bench did not start:\n{text.strip()}")
            if time.monotonic() > deadline:
                raise ConfigError("emulated bench did not start within 60 s")
            time.sleep(0.02)
        return load_station(out)

    def shutdown(self) -> None:
        """Close drivers and stop the emulated bench."""
        for d in self.drivers.values():
            try:
                d.close()
            except Exception:
                pass
        self.drivers.clear()
        if self._bench is not None:
            self._bench.stop()
            self._bench = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- calibration ---------------------------------------------------------------------------
    def calibration_gate(self) -> None:
        """Refuse to start when an instrument's calibration is past due, unless overridden."""
        from .fixtures.instruments import open_instrument

        bench = self.get_station()
        prof = self.get_profile()
        today = date.today()
        expired = []
        for role in (prof.model.reference_role, "actuators"):
            drv = open_instrument(self, bench, role)
            due = drv.calibration_due
            if due < today:
                expired.append(
                    f"{role} {drv.idn.model} {drv.idn.serial} calibration due {due.isoformat()}"
                )
        reason = _opt(self.config, "rig_calibration_override")
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
            from .fixtures.record import record_header

            serial = _opt(self.config, "rig_serial") or "UNKNOWN"
            stamp = time.strftime("%Y%m%dT%H%M%S")
            base = Path(_opt(self.config, "rig_reports") or "reports")
            name = slug(str(serial), strip=False)
            directory = base / f"{self.model()}-{name}-{stamp}-{os.getpid()}"
            self.record = RunRecord(directory)
            self.record.start(record_header(self))
        return self.record


def _seed(config: pytest.Config) -> int:
    """Noise seed of an emulated bench: from the serial, so one unit repeats exactly and
    different units differ."""
    serial = str(_opt(config, "rig_serial") or "")
    return int.from_bytes(hashlib.sha256(serial.encode()).digest()[:4], "big")


# -- requirement parametrisation ----------------------------------------------------------------
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `verifies("x")` runs once per profile requirement whose test is "x"."""
    marker = metafunc.definition.get_closest_marker("verifies")
    if marker is None or "requirement" not in metafunc.fixturenames:
        return
    rs: RigSession = metafunc.config.stash[RIG_KEY]
    try:
        profile = rs.get_profile()
    except ConfigError as e:
        raise pytest.UsageError(str(e)) from None
    body = marker.args[0]
    reqs = [r for r in profile.requirements if r.test == body]
    metafunc.parametrize("requirement", reqs, ids=[r.id for r in reqs], scope="function")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order requirement tests as the profile lists them."""
    rs: RigSession = config.stash[RIG_KEY]
    if rs.profile is None:
        return
    # a body with no requirement of this model (a roller body on a traction table) is not a test
    empty = [
        i
        for i in items
        if i.get_closest_marker("verifies") is not None
        and not hasattr(
            getattr(getattr(i, "callspec", None), "params", {}).get("requirement"), "id"
        )
    ]
    if empty:
        config.hook.pytest_deselected(items=empty)
        items[:] = [i for i in items if i not in empty]
    order = {r.id: i for i, r in enumerate(rs.profile.requirements)}

    def key(item: pytest.Item) -> int:
        cs = getattr(item, "callspec", None)
        req = cs.params.get("requirement") if cs else None
        return order.get(getattr(req, "id", ""), len(order))

    items.sort(key=key)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """After the body ran, fail the test if any of its measurements failed its limit."""
    result = yield
    chk = item.stash.get(CHECK_KEY, None)
    if chk is not None and chk.verdict() != Outcome.PASS:
        raise AssertionError(chk.failure_text())
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Conclude the requirement's verdict in the record once its teardown (safe state) is done."""
    report = yield
    chk = item.stash.get(CHECK_KEY, None)
    if chk is None:
        return report
    outcomes = item.stash.setdefault(_OUTCOMES, {})
    outcomes[call.when] = (report.outcome, call.excinfo)
    if call.when == "teardown":
        rs: RigSession = item.config.stash[RIG_KEY]
        verdict = chk.verdict()
        note = ""
        for phase in ("setup", "call", "teardown"):
            outcome, excinfo = outcomes.get(phase, ("passed", None))
            if (
                outcome == "failed"
                and excinfo is not None
                and not excinfo.errisinstance(AssertionError)
            ):
                verdict = Outcome.ERROR if verdict == Outcome.PASS or phase != "call" else verdict
                note = f"{phase}: {excinfo.typename}: {excinfo.value}"
                if phase != "call":
                    verdict = Outcome.ERROR
        if rs.record is not None:
            rs.record.conclude_requirement(chk.requirement.id, verdict, note, test=item.nodeid)
    return report


_OUTCOMES = pytest.StashKey[dict]()


@pytest.hookimpl(tryfirst=True)
def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Ctrl-C: command STOP at once, before pytest formats anything; the fixtures' teardown
    then verifies the safe state as after any test."""
    for rs in _SESSIONS:
        rs.interrupted = True
        if rs.table is None:
            continue
        try:
            rs.table.plc.command("STOP")
            sent = "STOP sent"
        except Exception as e:
            sent = f"STOP not sent: {e}"
        if rs.record is not None:
            rs.record.event(f"interrupted: {sent}")


_SESSIONS: list[RigSession] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    """Check the user's inputs before anything runs, and make SIGTERM behave like Ctrl-C."""
    rs: RigSession = session.config.stash[RIG_KEY]
    _SESSIONS.append(rs)
    try:
        if _opt(session.config, "rig_station"):
            rs.get_station()
        if rs.defects():
            from .emulators.defects import check_defects

            check_defects(rs.model(), rs.defects())
        if _opt(session.config, "rig_model"):
            rs.get_profile()
            rs.scale()
            if not session.config.option.collectonly:
                rs.calibration_gate()
    except ConfigError as e:
        raise pytest.UsageError(str(e)) from None
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: object) -> None:
    # the fixtures' teardown (safe state) runs on KeyboardInterrupt, not on a bare SIGTERM
    raise KeyboardInterrupt("SIGTERM")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Confirm the table is safe one last time, and close the record with the overall verdict."""
    rs: RigSession = session.config.stash[RIG_KEY]
    if rs in _SESSIONS:
        _SESSIONS.remove(rs)
    if rs.table is not None:
        try:
            report = rs.table.make_safe()
            if rs.record is not None:
                rs.record.event("final safe state confirmed", **report.as_dict())
        except (SafeStateError, RigError) as e:
            rs.unsafe = str(e)
            _shout(session, f"TABLE NOT CONFIRMED SAFE: {e}")
            if rs.record is not None:
                rs.record.event("final safe state NOT confirmed", error=str(e))
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if rs.record is not None and not rs.record.ended:
        profile = rs.profile
        wanted = [r.id for r in profile.requirements] if profile is not None else []
        got = rs.record.requirement_verdicts
        missing = [r for r in wanted if r not in got]
        complete = not rs.interrupted and exitstatus != pytest.ExitCode.INTERRUPTED
        overall = overall_verdict(got, required=wanted, complete=complete, unsafe=rs.unsafe)
        if profile is not None:
            rs.record.traceability(list(profile.requirements))
        rs.record.end(
            overall, complete=complete, not_run=missing, unsafe=rs.unsafe, rig_version=__version__
        )
        _station_signature(session, rs)
        _results_database(session, rs)


def _station_signature(session: pytest.Session, rs: RigSession) -> None:
    """The station signs the ended record (Ed25519, its own key, created on first use)."""
    if rs.record is None:
        return
    try:
        from .evidence.signing import sign_run, station_key

        name = rs.station.id if rs.station is not None else "station"
        sign_run(rs.record, station_key(), name=name, meaning="recorded", role="station")
    except Exception as e:
        _shout(session, f"record NOT signed by the station: {e}")


def _results_database(session: pytest.Session, rs: RigSession) -> None:
    """Add the run to the results database; a failure here never changes the verdict."""
    if rs.record is None:
        return
    try:
        from .outputs.results import ingest_run

        base = Path(_opt(session.config, "rig_reports") or "reports")
        ingest_run(base / "results.sqlite", rs.record.directory)
    except Exception as e:
        _shout(session, f"results database not updated: {e}")


def _shout(session: pytest.Session, text: str) -> None:
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_sep("!", text, red=True, bold=True)
    else:
        print(text, file=sys.stderr)


# fixtures by role live in rig/fixtures; the plugin exposes them
from .fixtures.instruments import (  # noqa: E402, F401
    actuators,
    force_meter,
    inclinometer,
    position_meter,
    reference_meter,
)
from .fixtures.record import check, record  # noqa: E402, F401
from .fixtures.station import profile, rig, station  # noqa: E402, F401
from .fixtures.table import plc, table  # noqa: E402, F401
