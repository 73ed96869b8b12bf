"""The rig's pytest hooks, on one plugin object that holds the session (no module state)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import pytest

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
from .session import CHECK_KEY, RigSession
from .sinks import EndedRun, deliver

_OUTCOMES = pytest.StashKey[dict]()
_PROBLEMS = pytest.StashKey[list]()


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
        self._old_sigterm: Any = None

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
            )
        )

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
            raise AssertionError(chk.failure_text())
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
        verdict, note = Outcome.NOT_RUN, ""
        if chk is not None:
            verdict, note = _conclusion(chk.verdict(), outcomes)
            if rs.record is not None:
                rs.record.conclude_requirement(chk.requirement.id, verdict, note, test=item.nodeid)
        rs.events.publish(
            RequirementConcluded(
                test=item.nodeid,
                requirement=getattr(req, "id", ""),
                verdict=verdict,
                note=note,
                problems=tuple(problems),
            )
        )
        return report

    # -- interruption ------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Ctrl-C: command STOP at once, before pytest formats anything; the fixtures' teardown
        then verifies the safe state as after any test."""
        rs = self.session
        rs.interrupted = True
        if rs.table is None:
            return
        try:
            rs.table.plc.command("STOP")
            sent = "STOP sent"
        except Exception as e:
            sent = f"STOP not sent: {e}"
        if rs.record is not None:
            rs.record.event(f"interrupted: {sent}")

    def _terminate(self, signum: int, frame: object) -> None:
        # the fixtures' teardown (safe state) runs on KeyboardInterrupt, not on a bare SIGTERM
        raise KeyboardInterrupt("SIGTERM")

    # -- the session -------------------------------------------------------------------------------
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Check the user's inputs before anything runs, and make SIGTERM behave like Ctrl-C."""
        rs = self.session
        opts = rs.options
        try:
            if opts["station"] or opts["defect"] or opts["model"]:
                rs.bench_request(defects=True)
            if opts["station"]:
                rs.get_station()
            if opts["model"]:
                rs.get_profile()
                if not session.config.option.collectonly:
                    rs.calibration_gate()
        except ConfigError as e:
            raise pytest.UsageError(str(e)) from None
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, self._terminate)

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
        complete = not rs.interrupted and exitstatus != pytest.ExitCode.INTERRUPTED
        missing: list[str] = []
        if record is not None and not record.ended:
            wanted = [r.id for r in profile.requirements] if profile is not None else []
            got = record.requirement_verdicts
            missing = [r for r in wanted if r not in got]
            verdict = overall_verdict(got, required=wanted, complete=complete, unsafe=rs.unsafe)
            if profile is not None:
                record.traceability(list(profile.requirements))
            record.end(
                verdict,
                complete=complete,
                not_run=missing,
                unsafe=rs.unsafe,
                rig_version=__version__,
            )
        record_dir = record.directory if record is not None else None
        rs.events.publish(
            RunEnded(
                verdict=verdict,
                record=str(record_dir) if record_dir is not None else None,
                complete=complete,
                not_run=tuple(missing),
                unsafe=rs.unsafe,
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
        """Stop an emulated bench we started; give SIGTERM back."""
        self.session.shutdown()
        if self._old_sigterm is not None:
            try:
                signal.signal(signal.SIGTERM, self._old_sigterm)
            except ValueError:  # pragma: no cover - not the main thread
                pass
            self._old_sigterm = None


def _conclusion(verdict: str, outcomes: dict[str, tuple[str, Any]]) -> tuple[str, str]:
    """The requirement's verdict: its measurements', or ERROR when a phase raised something
    other than an assertion (the test, not the unit, failed)."""
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
    return verdict, note
