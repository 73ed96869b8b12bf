"""The fault campaign's runner: fault an emulated bench or the rig, judge the outcome from outside.

One run: start a bench (`rig emulate --station-out --control-out --observer-log`, a child),
start `rig certify MODEL --station FILE --requirement X` (another child, its own process
group), wait until the table first runs, wait a random number of device seconds, inject one
fault, then judge:

- safe: the emulator's observer says the table is safe (issue 8, per kind) once the rig has
  ended and its watchdog plus a margin has passed, in device time (n/a when the fault killed the
  bench: there is no table left to look at);
- bounded: the rig ended within its wall bound (SIGINT/SIGTERM: within 5 s), left no process
  of its group behind, and the bench stopped when told to;
- record: `rig verify` says VALID, or INCOMPLETE when the rig was SIGKILLed; never TAMPERED,
  and no record at all is a failure;
- no FAIL: the bench is healthy, so any FAIL in the record of a faulted run blames the unit for
  a fault the rig or the bench caused.

Used by `benchmarks/fault_campaign.py` (the campaign, >= 60 runs) and
`tests/test_fault_campaign.py` (the CI sample).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.emulators.faults import ControlClient

MODELS = ("TT-890", "RT-600", "IT-90")
ROLES = {
    "TT-890": ("force_meter", "actuators"),
    "RT-600": ("position_meter", "actuators"),
    "IT-90": ("inclinometer", "actuators"),
}
# The faults: where each one lands (bench side through the control channel, or a signal).
FAULTS = (
    "plc-killed",  # SIGKILL of the bench process: PLC and instruments gone
    "plc-silent",  # the PLC accepts and never answers
    "modbus-exception",  # every read answers exception 04
    "link-drop",  # one instrument's link cut (RST now, new connections closed)
    "link-silent",  # one instrument reads and never answers
    "link-garbage",  # one instrument answers bytes that are no reply
    "link-inside",  # one instrument answers at 0.8 x the rig's instrument timeout
    "link-past",  # one instrument answers at 1.2 x the rig's instrument timeout
    "power-loss",  # mains off for 10 device seconds, outside the power test
    "rig-sigint",  # Ctrl-C (to the rig's process group, as a terminal sends it)
    "rig-sigterm",  # SIGTERM to the rig's process (as `timeout` sends it)
    "rig-sigkill",  # SIGKILL of the rig's process
)
CONTROL = "none"  # not a fault: a healthy control run (--fault none)
SIGNAL_BOUND_S = 5.0  # issue 8: SIGINT and SIGTERM end a run within 5 s wall
SAFE_MARGIN_S = 20.0  # device seconds after the watchdog for a stop motion to finish
POWER_LOSS_S = 10.0  # device seconds of mains loss
NO_START_S = 10.0  # device seconds after the rig's first PLC request, if the table never runs


def power_test(requirement: str) -> bool:
    """True for the power-loss requirement (SAF-06): a power fault there is no fault."""
    return requirement.endswith("-SAF-06")


def requirements_of(model: str) -> list[str]:
    """The model's requirement ids, from its profile."""
    from rig.profiles import load_profile

    profile = load_profile(model)
    reqs = getattr(profile, "requirements", None)
    ids = [getattr(r, "id", None) or getattr(r, "rid", None) for r in (reqs or [])]
    if ids and all(ids):
        return sorted(str(i) for i in ids)
    # fall back to the file itself: one `id = "..."` per requirement
    import re

    import rig.profiles

    text = (Path(rig.profiles.__file__).parent / model / "requirements.toml").read_text()
    return sorted(set(re.findall(r'^id = "([A-Z]+-[A-Z]+-\d+)"', text, re.M)))


def instrument_timeout_s() -> float:
    """The rig's instrument timeout (wall seconds): what `link-inside` / `link-past` straddle."""
    from rig.instruments.scpi import ScpiInstrument

    return float(inspect.signature(ScpiInstrument.__init__).parameters["timeout_s"].default)


@dataclass(frozen=True)
class Plan:
    """One run of the campaign: which model, requirement, fault, and when."""

    index: int
    model: str
    requirement: str
    fault: str
    role: str | None = None  # the instrument of a link fault
    after_start_s: float = 1.0  # device seconds after the table first runs
    seed: int = 0

    @property
    def label(self) -> str:
        """The fault as printed."""
        return f"{self.fault}:{self.role}" if self.role else self.fault


@dataclass
class Result:
    """What one run did and how it was judged."""

    plan: Plan
    injected_at: float | None = None  # device time of the injection (None: the rig ended first)
    rig_exit: int | None = None
    rig_wall_s: float = 0.0
    exit_after_fault_s: float | None = None  # wall seconds from the fault to the rig's end
    rig_killed: str = ""  # why the campaign had to kill the rig ("" if it did not)
    leftovers: int = 0  # processes of the rig's group alive after the rig ended
    bench_hung: bool = False
    safe: bool | None = None  # None: not judged (the bench is gone)
    safe_detail: str = ""
    record_status: str = ""  # VALID, INCOMPLETE, UNSIGNED, TAMPERED, NO RECORD
    verdicts: dict[str, str] = field(default_factory=dict)
    fails: list[str] = field(default_factory=list)
    note: str = ""
    workdir: str = ""

    @property
    def safe_ok(self) -> bool:
        """The table ended safe (or there is no table left to judge)."""
        return self.safe is not False

    @property
    def bounded_ok(self) -> bool:
        """No process ran past its bound."""
        signal_late = (
            self.plan.fault in ("rig-sigint", "rig-sigterm")
            and self.injected_at is not None
            and (self.exit_after_fault_s is None or self.exit_after_fault_s > SIGNAL_BOUND_S)
        )
        return not (self.rig_killed or self.leftovers or self.bench_hung or signal_late)

    @property
    def record_ok(self) -> bool:
        """VALID; INCOMPLETE only when the rig was SIGKILLed."""
        sigkilled = self.plan.fault == "rig-sigkill" or bool(self.rig_killed)
        return self.record_status == "VALID" or (self.record_status == "INCOMPLETE" and sigkilled)

    @property
    def no_fail_ok(self) -> bool:
        """No unit FAIL recorded."""
        return not self.fails

    @property
    def ok(self) -> bool:
        """Every check passed."""
        return self.safe_ok and self.bounded_ok and self.record_ok and self.no_fail_ok

    def failed_checks(self) -> list[str]:
        """Names of the checks that failed."""
        names = ("safe", "bounded", "record", "no_fail")
        return [n for n in names if not getattr(self, f"{n}_ok")]


def make_plans(
    runs: int,
    seed: int,
    *,
    models: Sequence[str] = MODELS,
    faults: Sequence[str] = FAULTS,
    requirements: dict[str, list[str]] | None = None,
) -> list[Plan]:
    """`runs` random plans, the same for the same seed. Faults go round-robin (shuffled) so
    that every fault is covered as evenly as `runs` allows."""
    rng = random.Random(seed)
    reqs = requirements or {m: requirements_of(m) for m in models}
    order: list[str] = []
    plans = []
    for i in range(runs):
        if not order:
            order = list(faults)
            rng.shuffle(order)
        fault = order.pop()
        model = rng.choice(list(models))
        choices = [r for r in reqs[model] if not (fault == "power-loss" and power_test(r))]
        requirement = rng.choice(choices)
        role = rng.choice(ROLES[model]) if fault.startswith("link-") else None
        plans.append(
            Plan(
                i + 1,
                model,
                requirement,
                fault,
                role,
                round(rng.uniform(0.0, 6.0), 2),
                rng.randrange(1 << 16),
            )
        )
    return plans


def _wait_file(path: Path, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # paces the look for the file
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _reap_group(proc: subprocess.Popen, grace_s: float) -> int:
    """Processes of `proc`'s group still alive `grace_s` after it ended (then killed): count."""
    pgid = proc.pid
    deadline = time.monotonic() + grace_s
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not _group_alive(pgid):
        return 0
    try:
        out = subprocess.run(
            ["ps", "-o", "pid=", "-g", str(pgid)], capture_output=True, text=True, timeout=5
        ).stdout
        count = len(out.split())
    except (OSError, subprocess.SubprocessError):
        count = 1
    _kill_group(pgid)
    return max(count, 1)


def run_one(
    plan: Plan,
    *,
    scale: float = 10.0,
    rig_bound_s: float = 300.0,
    workdir: Path | None = None,
    keep: bool = False,
    log: Callable[[str], None] | None = None,
) -> Result:
    """Run one plan and judge it. `rig_bound_s`: the rig's wall bound (killed past it)."""
    tmp = Path(workdir or tempfile.mkdtemp(prefix=f"fault-{plan.index:03d}-"))
    tmp.mkdir(parents=True, exist_ok=True)
    res = Result(plan, workdir=str(tmp))
    station, ctl, obs = tmp / "station.toml", tmp / "control.port", tmp / "observer.jsonl"
    reports = tmp / "reports"
    bench_cmd = [sys.executable, "-m", "rig.cli", "emulate", plan.model, "--scale", str(scale)]
    bench_cmd += ["--station-out", str(station), "--control-out", str(ctl)]
    bench_cmd += ["--observer-log", str(obs), "--seed", str(plan.seed), "--quiet"]
    with open(tmp / "bench.log", "w") as out:
        bench = subprocess.Popen(
            bench_cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    client: ControlClient | None = None
    rig: subprocess.Popen | None = None
    try:
        if not (_wait_file(station, bench, 60) and _wait_file(ctl, bench, 10)):
            res.note = "bench did not start"
            res.bench_hung = bench.poll() is None
            return res
        client = ControlClient(int(ctl.read_text()))
        rig_cmd = [sys.executable, "-m", "rig.cli", "certify", plan.model]
        rig_cmd += ["--serial", f"FC{plan.index:04d}", "--station", str(station)]
        rig_cmd += ["--requirement", plan.requirement, "--reports", str(reports), "--no-allure"]
        t0 = time.monotonic()
        with open(tmp / "rig.log", "w") as out:
            rig = subprocess.Popen(
                rig_cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = t0 + rig_bound_s
        # 1. the table's first START, seen by the observer; a requirement that never starts
        # the table (setting limits) is faulted NO_START_S device seconds after the rig's
        # first PLC request instead
        t_run = t_first = None
        while rig.poll() is None and time.monotonic() < deadline:
            snap = client.request(op="observe")
            if snap.get("state") == "RUNNING":
                t_run = snap["t"]
                break
            if t_first is None and snap.get("plc_requests"):
                t_first = snap["t"]
            if t_first is not None and snap["t"] >= t_first + NO_START_S:
                t_run = snap["t"]
                break
            time.sleep(0.02)
        # 2. the instant, in device time after it
        if t_run is not None:
            while rig.poll() is None and time.monotonic() < deadline:
                if client.request(op="now")["t"] >= t_run + plan.after_start_s:
                    break
                time.sleep(0.01)
        t_fault_wall = None
        if rig.poll() is None and time.monotonic() < deadline:
            res.injected_at = client.request(op="now")["t"]
            t_fault_wall = time.monotonic()
            _inject(plan, bench, rig, client, scale)
            if plan.fault == "plc-killed":
                client.close()
                client = None
        else:
            res.note = "the rig ended before the fault" if rig.poll() is not None else ""
        # 3. the rig ends on its own within its bound, or is killed
        bound = deadline
        if plan.fault in ("rig-sigint", "rig-sigterm") and t_fault_wall is not None:
            bound = min(deadline, t_fault_wall + SIGNAL_BOUND_S + 25.0)
        while rig.poll() is None and time.monotonic() < bound:
            time.sleep(0.05)
        if rig.poll() is None:
            res.rig_killed = f"still running {time.monotonic() - t0:.0f} s after start"
            rig.kill()
            rig.wait(10)
        t_end = time.monotonic()
        res.rig_exit = rig.returncode
        res.rig_wall_s = round(t_end - t0, 1)
        if t_fault_wall is not None:
            res.exit_after_fault_s = round(t_end - t_fault_wall, 2)
        res.leftovers = _reap_group(rig, 2.0)
        # 4. the table, judged by the emulator once the watchdog and a margin have passed
        if client is not None and bench.poll() is None:
            res.safe, res.safe_detail = _judge_safe(client)
        else:
            res.safe, res.safe_detail = None, "bench gone"
    except (OSError, ValueError) as e:
        res.note = f"campaign: {type(e).__name__}: {e}"
        if rig is not None and rig.poll() is None:
            rig.kill()
    finally:
        if client is not None:
            client.close()
        res.bench_hung = _stop_bench(bench) or res.bench_hung
        if rig is not None and rig.poll() is None:
            _kill_group(rig.pid)
    _judge_record(res, reports)
    if log is not None:
        log(format_row(res))
    if not keep and res.ok:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return res


def _inject(
    plan: Plan,
    bench: subprocess.Popen,
    rig: subprocess.Popen,
    client: ControlClient,
    scale: float,
) -> None:
    f = plan.fault
    client.request(op="mark", text=f"campaign: {plan.label}")
    if f == "none":  # a control run: the campaign's machinery on a healthy run
        return
    if f == "plc-killed":
        bench.kill()
    elif f == "rig-sigint":
        with contextlib.suppress(ProcessLookupError):
            os.killpg(rig.pid, signal.SIGINT)
    elif f == "rig-sigterm":
        rig.send_signal(signal.SIGTERM)
    elif f == "rig-sigkill":
        rig.kill()
    elif f == "power-loss":
        _ok(client.request(op="inject", fault="power-loss", duration_s=POWER_LOSS_S))
    elif f in ("plc-silent", "modbus-exception"):
        _ok(client.request(op="inject", fault=f))
    elif f in ("link-drop", "link-silent", "link-garbage"):
        mode = "instrument-" + f.removeprefix("link-")
        _ok(client.request(op="inject", fault=mode, role=plan.role))
    elif f in ("link-inside", "link-past"):
        delay = instrument_timeout_s() * (0.8 if f == "link-inside" else 1.2)
        # a few exchanges' worth, then healthy again: every reply that late would take hours
        _ok(
            client.request(
                op="inject",
                fault="instrument-delay",
                role=plan.role,
                delay_s=delay,
                duration_s=3 * delay * scale,
            )
        )
    else:
        raise ValueError(f"unknown fault {f!r}")


def _ok(reply: dict[str, Any]) -> None:
    if not reply.get("ok"):
        raise ValueError(f"the bench refused the fault: {reply.get('error')}")


def _judge_safe(client: ControlClient) -> tuple[bool, str]:
    snap = client.request(op="observe")
    judge_at = snap["t"] + snap.get("watchdog_ms", 1000) / 1000.0 + SAFE_MARGIN_S
    while snap["t"] < judge_at:
        time.sleep(0.05)
        snap = client.request(op="observe")
        if snap["safe"] and snap["t"] >= judge_at - SAFE_MARGIN_S:
            break  # safe after the watchdog: a safe table stays safe with no rig driving it
    if snap["safe"]:
        return True, f"{snap['state']} at t={snap['t']:.1f}"
    return False, f"{snap['state']}: {'; '.join(snap['why'])} at t={snap['t']:.1f}"


def _stop_bench(bench: subprocess.Popen) -> bool:
    """Stop the bench (SIGTERM, 10 s, then SIGKILL); True if it had to be killed."""
    if bench.poll() is not None:
        return False
    bench.terminate()
    try:
        bench.wait(10)
        return False
    except subprocess.TimeoutExpired:
        _kill_group(bench.pid)
        bench.wait(10)
        return True


def _judge_record(res: Result, reports: Path) -> None:
    records = sorted(reports.glob("*/record.jsonl")) if reports.exists() else []
    if not records:
        res.record_status = "NO RECORD"
        return
    run_dir = records[-1].parent
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "rig.cli", "verify", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        res.record_status = {0: "VALID", 1: "TAMPERED", 3: "INCOMPLETE", 4: "UNSIGNED"}.get(
            proc.returncode, f"exit {proc.returncode}"
        )
    except subprocess.TimeoutExpired:
        res.record_status = "VERIFY HUNG"
    try:
        from rig.evidence.reader import read_run

        run = read_run(run_dir)
        res.verdicts = dict(run.verdicts)
        fails = {r for r, v in run.verdicts.items() if str(v) == "FAIL"}
        for m in run.measurements:
            if str(getattr(m, "verdict", "")) == "FAIL":
                fails.add(str(getattr(m, "requirement", "?")))
        res.fails = sorted(fails)
    except Exception as e:  # an unreadable record is judged by `rig verify` above
        res.note = (res.note + f"; record unreadable: {e}").strip("; ")


HEADER = (
    f"{'#':>3} {'model':<7} {'requirement':<11} {'fault':<28} {'at s':>5} {'exit':>4} "
    f"{'wall s':>6} {'end s':>6} {'safe':<5} {'record':<10} {'verdicts':<18} result"
)


def format_row(r: Result) -> str:
    """One plain-text row per run."""
    p = r.plan
    safe = "n/a" if r.safe is None else ("yes" if r.safe else "NO")
    verdicts = ",".join(f"{v}" for v in r.verdicts.values()) or "-"
    end = "-" if r.exit_after_fault_s is None else f"{r.exit_after_fault_s:.1f}"
    status = "ok" if r.ok else "FAILED " + "+".join(r.failed_checks())
    extra = []
    if r.rig_killed:
        extra.append(f"rig killed ({r.rig_killed})")
    if r.leftovers:
        extra.append(f"{r.leftovers} process(es) left")
    if r.bench_hung:
        extra.append("bench hung")
    if r.safe is False:
        extra.append(r.safe_detail)
    if r.fails:
        extra.append("FAIL " + ",".join(r.fails))
    if r.note:
        extra.append(r.note)
    if not r.ok:
        extra.append(r.workdir)
    tail = f" [{'; '.join(extra)}]" if extra else ""
    at = "-" if r.injected_at is None else f"{p.after_start_s:.1f}"
    return (
        f"{p.index:>3} {p.model:<7} {p.requirement:<11} {p.label:<28} {at:>5} "
        f"{r.rig_exit if r.rig_exit is not None else '-':>4} {r.rig_wall_s:>6.1f} {end:>6} "
        f"{safe:<5} {r.record_status:<10} {verdicts[:18]:<18} {status}{tail}"
    )


def summary(results: Sequence[Result]) -> str:
    """Per fault: runs, and how many failed each check; then the totals."""
    by: dict[str, list[Result]] = {}
    for r in results:
        by.setdefault(r.plan.fault, []).append(r)
    lines = [
        f"{'fault':<18} {'runs':>4} {'unsafe':>6} {'unbound':>7} {'record':>6} {'FAIL':>4} "
        f"{'ok':>3}"
    ]
    for fault in sorted(by):
        rs = by[fault]
        lines.append(
            f"{fault:<18} {len(rs):>4} {sum(not r.safe_ok for r in rs):>6} "
            f"{sum(not r.bounded_ok for r in rs):>7} {sum(not r.record_ok for r in rs):>6} "
            f"{sum(not r.no_fail_ok for r in rs):>4} {sum(r.ok for r in rs):>3}"
        )
    n = len(results)
    lines.append(
        f"{'total':<18} {n:>4} {sum(not r.safe_ok for r in results):>6} "
        f"{sum(not r.bounded_ok for r in results):>7} "
        f"{sum(not r.record_ok for r in results):>6} "
        f"{sum(not r.no_fail_ok for r in results):>4} {sum(r.ok for r in results):>3}"
    )
    return "\n".join(lines)


def as_json(r: Result) -> str:
    """One result as a JSON line (for --json)."""
    d = {k: v for k, v in r.__dict__.items() if k != "plan"}
    d.update(plan=r.plan.__dict__, ok=r.ok, failed=r.failed_checks())
    return json.dumps(d, default=str)
