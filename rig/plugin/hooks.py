"""The rig's pytest hooks, on one plugin object that holds the session (no module state)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import pytest
from _pytest.runner import runtestprotocol

from .. import __version__
from ..errors import ConfigError, RigError, SafeStateError
from ..evidence.format import Outcome, overall_verdict
from ..plc import HeartbeatLate, UnitTrippedCommLoss
from .events import (
    Problem,
    RequirementConcluded,
    RequirementStarted,
    RunEnded,
    RunStarted,
)
from .options import retest_of
from .session import CHECK_KEY, RigSession
from .sinks import EndedRun, deliver

_OUTCOMES = pytest.StashKey[dict]()
_PROBLEMS = pytest.StashKey[list]()
_VERDICT = pytest.StashKey[str]()  # the requirement's conclusion of the attempt just run
_RETESTING = pytest.StashKey[bool]()  # that attempt ended ERROR and runs again
_ATTEMPT_KEYS = (CHECK_KEY, _OUTCOMES, _PROBLEMS, _VERDICT, _RETESTING)
RERUN = "rerun"  # the outcome of a report of an attempt that is run again (--retest)


class JudgedFailure(AssertionError):
    """The judge (RequirementCheck) failed a measurement: the unit failed, not the test."""


def requirement_of(item: pytest.Item) -> Any:
    """The requirement a test item verifies (its `requirement` parameter), or None."""
    req = getattr(getattr(item, "callspec", None), "params", {}).get("requirement")
    return req if hasattr(req, "id") else None


class RigPlugin:
    """Registered with the plugin manager in pytest_configure; `session` is the rig session."""

    name = "rig-session"

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.session = RigSession(config)
        self._collection_problems: list[Problem] = []
        self._index: dict[str, int] = {}
        self._requirement: dict[str, str] = {}
        self._attempt: dict[str, int] = {}  # node id -> the attempt running (--retest)
        self._old_signals: dict[int, Any] = {}
        self._session: pytest.Session | None = None
        self._interrupt_recorded = False
        self.retests = 1

    # -- requirement parametrisation ------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """A test marked `verifies("x")` runs once per profile requirement whose test is "x"."""
        marker = metafunc.definition.get_closest_marker("verifies")
        if marker is None or "requirement" not in metafunc.fixturenames:
            return
        try:
            profile = self.session.get_profile()
        except ConfigError as e:
            raise pytest.UsageError(str(e)) from None
        body = marker.args[0]
        reqs = [r for r in profile.requirements if r.test == body]
        metafunc.parametrize("requirement", reqs, ids=[r.id for r in reqs], scope="function")

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """Order requirement tests as the profile lists them."""
        profile = self.session.profile
        if profile is None:
            return
        # a body with no requirement of this model (a roller body on a traction table) is no test
        empty = [
            i
            for i in items
            if i.get_closest_marker("verifies") is not None and requirement_of(i) is None
        ]
        if empty:
            config.hook.pytest_deselected(items=empty)
            items[:] = [i for i in items if i not in empty]
        order = {r.id: i for i, r in enumerate(profile.requirements)}

        def key(item: pytest.Item) -> int:
            return order.get(getattr(requirement_of(item), "id", ""), len(order))

        items.sort(key=key)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """Keep collection errors for the run-started event."""
        if report.failed:
            text = str(report.longreprtext)[-2000:]
            self._collection_problems.append(Problem(report.nodeid or "collection", text))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Announce the run: the tests in the order they run, and what failed to collect."""
        self._index = {item.nodeid: i for i, item in enumerate(session.items)}
        self._requirement = {
            item.nodeid: getattr(requirement_of(item), "id", "") for item in session.items
        }
        opts = self.session.options
        self.session.events.publish(
            RunStarted(
                model=opts["model"],
                serial=str(opts["serial"] or ""),
                station=opts["station"],
                tests=tuple(item.nodeid for item in session.items),
                requirements=tuple(self._requirement.values()),
                problems=tuple(self._collection_problems),
            )
        )

    # -- one test --------------------------------------------------------------------------------
    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        """Announce the test (and its requirement) starting."""
        self.session.events.publish(
            RequirementStarted(
                test=nodeid,
                requirement=self._requirement.get(nodeid, ""),
                index=self._index.get(nodeid, -1),
                total=len(self._index),
                attempt=self._attempt.get(nodeid, 1),
            )
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        """Run a requirement test; while an attempt ends ERROR (the rig or bench, not the unit)
        run it again, up to --retest times. Every attempt's measurements and conclusion stay in
        the record; reports of an attempt run again are logged as "rerun", not failed."""
        if requirement_of(item) is None:
            return None
        rs = self.session
        attempt = 1
        while True:
            for key in _ATTEMPT_KEYS:  # nothing of the attempt before leaks into this one
                if key in item.stash:
                    del item.stash[key]
            self._attempt[item.nodeid] = attempt
            rs.attempt = attempt
            may_retest = attempt <= self.retests and not rs.interrupted
            item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
            # a possible retest tears down the test's own fixtures (table: safe state) but
            # keeps those above it (bench, PLC) set up: the teardown aims at the item's parent
            toward = item.parent if may_retest else nextitem
            reports = runtestprotocol(item, nextitem=toward, log=False)  # type: ignore[arg-type]
            again = item.stash.get(_RETESTING, False) and not rs.interrupted
            for rep in reports:
                if again and rep.failed:
                    rep.outcome = RERUN  # type: ignore[assignment]
                item.ihook.pytest_runtest_logreport(report=rep)
            if not again:
                if may_retest:  # finish the teardown the next item would have had
                    self._teardown_towards(item, nextitem)
                break
            attempt += 1
        rs.attempt = 1
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def _teardown_towards(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        # what pytest's own teardown does with the true next item (module or session scope)
        try:
            item.session._setupstate.teardown_exact(nextitem)
        except Exception as e:
            self.shout(f"teardown after {item.nodeid} failed: {type(e).__name__}: {e}")

    def pytest_report_teststatus(self, report: pytest.TestReport) -> Any:
        """An attempt that ended ERROR and runs again is shown as a rerun, not a failure."""
        if report.outcome == RERUN:
            return RERUN, "R", ("RERUN", {"yellow": True})
        return None

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        """After an interrupt no further test runs, whatever exception replaced it."""
        if self.session.interrupted and self._session is not None:
            self._session.shouldstop = f"interrupted ({self.session.interrupt_signal})"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        """After the body ran, fail the test if any of its measurements failed its limit."""
        chk = item.stash.get(CHECK_KEY, None)
        table = self.session.table
        error: Exception | None = None
        if table is not None:
            table.begin_test()
        try:
            result = yield
        except Exception as exc:
            error, result = exc, None
        # A COMM_LOSS the test did not provoke, seen by the body or not (issue 8, finding 6):
        # the rig's late heartbeat (ERROR) or the unit's false trip (a FAIL measurement).
        cause = (
            error
            if isinstance(error, HeartbeatLate | UnitTrippedCommLoss)
            else (None if table is None else table.unintended_comm_loss())
        )
        if isinstance(cause, UnitTrippedCommLoss) and chk is not None:
            chk.unit_fault(cause)
        elif cause is not None and cause is not error:
            raise cause from error
        elif error is not None:
            raise error
        if chk is not None and chk.verdict() != Outcome.PASS:
            raise JudgedFailure(chk.failure_text())
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        """Conclude the requirement's verdict in the record once its teardown (safe state) is
        done, and announce it."""
        report = yield
        problems = item.stash.setdefault(_PROBLEMS, [])
        if report.failed and call.when != "call":
            problems.append(Problem(item.nodeid, str(report.longreprtext)[-2000:]))
        chk = item.stash.get(CHECK_KEY, None)
        outcomes = item.stash.setdefault(_OUTCOMES, {})
        outcomes[call.when] = (report.outcome, call.excinfo)
        if call.when != "teardown":
            return report
        rs = self.session
        req = requirement_of(item)
        attempt = self._attempt.get(item.nodeid, 1)
        verdict, note = Outcome.NOT_RUN, ""
        if chk is not None:
            interrupted = rs.interrupt_signal if rs.interrupted else None
            verdict, note = _conclusion(chk, outcomes, interrupted=interrupted)
            if rs.record is not None:
                rs.record.conclude_requirement(chk.requirement.id, verdict, note, test=item.nodeid)
        retesting = (
            verdict == Outcome.ERROR
            and attempt <= self.retests
            and not rs.interrupted
            and not rs.unsafe
            and item.nodeid in self._attempt
        )
        item.stash[_VERDICT] = verdict
        item.stash[_RETESTING] = retesting
        rs.events.publish(
            RequirementConcluded(
                test=item.nodeid,
                requirement=getattr(req, "id", ""),
                verdict=verdict,
                note=note,
                problems=tuple(problems),
                attempt=attempt,
                retesting=retesting,
            )
        )
        return report

    # -- interruption ------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Ctrl-C: command STOP at once, before pytest formats anything; the fixtures' teardown
        then verifies the safe state as after any test."""
        rs = self.session
        if not rs.interrupted:
            rs.interrupted = True
            text = str(excinfo.value)
            rs.interrupt_signal = "SIGTERM" if "SIGTERM" in text else "SIGINT"
        if rs.table is None:
            return
        try:
            rs.table.plc.command("STOP")
            sent = "STOP sent"
        except Exception as e:
            sent = f"STOP not sent: {e}"
        if rs.record is not None:
            rs.record.event(f"interrupted: {sent}", signal=rs.interrupt_signal)
            self._interrupt_recorded = True

    def _on_signal(self, signum: int, frame: object) -> None:
        """SIGINT or SIGTERM: remember the interrupt in the session the moment it arrives (an
        exception raised later, e.g. in a `finally` against an unpowered PLC, may replace the
        KeyboardInterrupt), stop the session after this test, then raise KeyboardInterrupt so
        that the fixtures' teardown (safe state) runs, as it does not on a bare SIGTERM."""
        name = signal.Signals(signum).name
        rs = self.session
        if not rs.interrupted:
            rs.interrupted = True
            rs.interrupt_signal = name
        if self._session is not None:
            self._session.shouldstop = f"interrupted ({rs.interrupt_signal})"
        raise KeyboardInterrupt(name)

    # -- the session -------------------------------------------------------------------------------
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Check the user's inputs before anything runs, and make SIGTERM behave like Ctrl-C."""
        rs = self.session
        opts = rs.options
        self._session = session
        try:
            self.retests = retest_of(opts["retest"])
            if opts["station"] or opts["defect"] or opts["model"]:
                rs.bench_request(defects=True)
            if opts["station"]:
                rs.get_station()
            if opts["model"]:
                rs.get_profile()
                if not session.config.option.collectonly:
                    rs.check_serial()  # before anything moves
                    rs.check_bench()  # a station file's addresses, identities and KIND
                    rs.calibration_gate()
        except ConfigError as e:
            raise pytest.UsageError(str(e)) from None
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_signals[sig] = signal.signal(sig, self._on_signal)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Confirm the table is safe one last time, close the record with the overall verdict,
        announce the end and hand the ended run to the sinks."""
        rs = self.session
        if rs.table is not None:
            try:
                rs.safe_state(rs.table.make_safe(), final=True)
            except (SafeStateError, RigError) as e:
                rs.unsafe = str(e)
                self.shout(f"TABLE NOT CONFIRMED SAFE: {e}")
                rs.safe_state(error=str(e), final=True)
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        record = rs.record
        profile = rs.profile
        verdict: str | None = None
        if exitstatus == pytest.ExitCode.INTERRUPTED and not rs.interrupted:
            rs.interrupted = True
        complete = not rs.interrupted
        interrupted = rs.interrupt_signal if rs.interrupted else None
        missing: list[str] = []
        if record is not None and not record.ended:
            wanted = [r.id for r in profile.requirements] if profile is not None else []
            got = record.requirement_verdicts
            missing = [r for r in wanted if r not in got]
            # what the run set out to run: its items; a collection error leaves requirements
            # unselected by accident, so that run is a retest, not a partial one
            chosen = {r for r in self._requirement.values() if r}
            selected = None if self._collection_problems else chosen
            verdict = overall_verdict(
                got,
                required=wanted,
                selected=selected,
                unsafe=rs.unsafe,
                interrupted=bool(interrupted),
            )
            if interrupted and not self._interrupt_recorded:
                record.event(f"interrupted: {interrupted}", signal=interrupted)
                self._interrupt_recorded = True
            if profile is not None:
                record.traceability(list(profile.requirements))
            extra = {"interrupted": interrupted} if interrupted else {}
            record.end(
                verdict,
                complete=complete,
                not_run=missing,
                unsafe=rs.unsafe,
                rig_version=__version__,
                **extra,
            )
        record_dir = record.directory if record is not None else None
        rs.events.publish(
            RunEnded(
                verdict=verdict,
                record=str(record_dir) if record_dir is not None else None,
                complete=complete,
                not_run=tuple(missing),
                unsafe=rs.unsafe,
                interrupted=interrupted,
            )
        )
        run = EndedRun(
            record_dir=record_dir,
            verdict=verdict,
            complete=complete,
            model=profile.model.name if profile is not None else rs.options["model"],
            serial=str(rs.options["serial"] or "UNKNOWN"),
            station_id=rs.station.id if rs.station is not None else "station",
            reports=rs.reports(),
            exitstatus=int(session.exitstatus),
            unsafe=rs.unsafe,
            not_run=tuple(missing),
            profile=profile,
        )
        sinks = [
            s for found in self.config.hook.pytest_rig_sinks(config=self.config) for s in found
        ]
        deliver(run, sinks, self.shout)

    def shout(self, text: str) -> None:
        """A line the operator must see, whatever the terminal plugin is doing."""
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_sep("!", text, red=True, bold=True)
        else:
            print(text, file=sys.stderr)

    def unconfigure(self) -> None:
        """Stop an emulated bench we started; give SIGINT and SIGTERM back."""
        self.session.shutdown()
        for sig, old in self._old_signals.items():
            try:
                signal.signal(sig, old)
            except ValueError:  # pragma: no cover - not the main thread
                pass
        self._old_signals.clear()
        self._session = None


def _conclusion(
    chk: Any, outcomes: dict[str, tuple[str, Any]], *, interrupted: str | None = None
) -> tuple[str, str]:
    """The requirement's verdict. FAIL only from the judge: a measurement outside its limit.
    ERROR when the test could not judge the unit: an exception in setup or teardown, an
    exception in the body that is not the judge's (a bare assertion, a wait that timed out, a
    rig or bench fault), an interrupt, or nothing measured. PASS only when something was
    measured, everything passed and nothing raised."""
    errors = []
    rig_late = False
    for phase in ("setup", "call", "teardown"):
        outcome, excinfo = outcomes.get(phase, ("passed", None))
        if outcome != "failed" or excinfo is None:
            continue
        if phase == "call" and excinfo.errisinstance(JudgedFailure):
            continue
        rig_late = rig_late or excinfo.errisinstance(HeartbeatLate)
        errors.append((phase, f"{phase}: {excinfo.typename}: {excinfo.value}"))
    note = "; ".join(text for _, text in errors)
    if interrupted:
        return Outcome.ERROR, f"interrupted ({interrupted})" + (f"; {note}" if note else "")
    if rig_late or any(phase != "call" for phase, _ in errors):
        # the rig's own heartbeat was late: the table's COMM_LOSS cut the body short, so what
        # the judge failed around it says nothing about the unit (finding 6)
        return Outcome.ERROR, note
    if chk.failed:
        # the judge failed the unit; a later exception in the body does not undo that
        return Outcome.FAIL, note
    if errors:
        return Outcome.ERROR, note
    if not chk.measurements:
        return Outcome.ERROR, "nothing was measured"
    return Outcome.PASS, note
