"""The `rig` command: certify a unit, run an emulated bench, list defects, verify a record."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ConfigError, RigError


def _suites_dir() -> Path:
    """The suites: inside the installed package (a wheel maps them to rig/suites), or the
    checkout's top-level folder (an editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "suites", here.parent / "suites"):
        if (candidate / "safety").is_dir():
            return candidate
    raise ConfigError(f"the certification suites are missing (looked in {here} and its parent)")


class Progress:
    """A pytest plugin object that drives a rich progress display and collects outcomes."""

    def __init__(self, console: Any, total_hint: int = 0) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = None
        self.errors: list[tuple[str, str]] = []
        self.record_dir: Path | None = None
        self.rig: Any = None

    def pytest_collection_finish(self, session: Any) -> None:
        self.task = self.progress.add_task("certifying", total=len(session.items))
        self.progress.start()

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=nodeid.split("[")[-1].rstrip("]"))

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed and report.when != "call":
            self.errors.append((report.nodeid, str(report.longreprtext)[-2000:]))
        if report.when == "teardown" and self.task is not None:
            self.progress.advance(self.task)

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.errors.append((report.nodeid or "collection", str(report.longreprtext)[-2000:]))

    def pytest_sessionfinish(self, session: Any) -> None:
        self.progress.stop()
        from .plugin import RIG_KEY

        self.rig = session.config.stash.get(RIG_KEY, None)


def cmd_certify(args: argparse.Namespace) -> int:
    """Run the model's suites on the bench and print the verdict per requirement."""
    import pytest
    from rich.console import Console

    from .profiles import load_profile

    console = Console(width=max(Console().width, 110))
    try:
        profile = load_profile(args.model)
    except RigError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    if args.defect:
        from .emulators.defects import check_defects

        try:
            check_defects(profile.model.name, args.defect)
        except RigError as e:
            console.print(f"[red]error:[/red] {e}")
            return 2
    if args.station and args.defect:
        console.print(
            "[red]error:[/red] --defect seeds defects in the emulated bench; it cannot "
            "be used with --station"
        )
        return 2
    argv = [
        str(_suites_dir()),
        "--model",
        profile.model.name,
        "--serial",
        args.serial,
        "--reports",
        args.reports,
        "-p",
        "no:terminal",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(_suites_dir().parent),
    ]
    if args.station:
        argv += ["--station", args.station]
    else:
        argv += ["--scale", str(args.scale), "--emulator", args.emulator]
    for d in args.defect or []:
        argv += ["--defect", d]
    if args.operator:
        argv += ["--operator", args.operator]
    if args.calibration_override:
        argv += ["--calibration-override", args.calibration_override]
    if args.bench_cal_due:
        argv += ["--bench-cal-due", args.bench_cal_due]
    if args.junit:
        argv += ["--junitxml", args.junit]
    if args.requirement:
        argv += ["-k", " or ".join(args.requirement)]
    if not args.no_allure:
        argv += ["--alluredir", str(Path(args.reports) / "allure-results")]
    bench = "station " + args.station if args.station else f"emulated bench (scale {args.scale:g}"
    if not args.station:
        bench += f", defects: {', '.join(args.defect)})" if args.defect else ")"
    console.print(
        f"[bold]rig {__version__}[/bold]: certifying {profile.model.name} serial "
        f"[bold]{args.serial}[/bold] on {bench}"
    )
    progress = Progress(console)
    code = pytest.main(argv, plugins=[progress])
    return report_certification(console, profile, progress, int(code))


def report_certification(console: Any, profile: Any, progress: Progress, code: int) -> int:
    """Print the requirement table and the overall verdict; the exit code of `rig certify`."""
    from rich.table import Table

    from .evidence.format import Outcome
    from .evidence.reader import read_run
    from .procedures.check import worst

    rig = progress.rig
    record = rig.record if rig is not None else None
    for nodeid, text in progress.errors:
        console.print(f"[red]ERROR[/red] {nodeid}\n{text}")
    if record is None:
        console.print("[red]no requirement was run[/red] (see the errors above)")
        return 2
    table = Table(title=f"{profile.model.name} certification", show_lines=False)
    for col in ("requirement", "quantity", "measured (worst)", "limit", "verdict"):
        table.add_column(col)
    run = read_run(record.directory)  # the record as written, the one reader
    by_req: dict[str, list[Any]] = {}
    for m in run.measurements:
        by_req.setdefault(m.requirement, []).append(m)
    for req in profile.requirements:
        verdict = run.verdicts.get(req.id, Outcome.NOT_RUN)
        colour = {Outcome.PASS: "green", Outcome.FAIL: "red"}.get(verdict, "yellow")
        rows = list(worst(by_req.get(req.id, [])).values())
        if not rows:
            table.add_row(req.id, req.quantity, "-", req.limit, f"[{colour}]{verdict}[/{colour}]")
        for i, m in enumerate(rows):
            table.add_row(
                req.id if i == 0 else "",
                req.quantity if i == 0 else "",
                f"{m.name} = {m.value_text()}",
                m.limit_text(),
                f"[{colour}]{verdict}[/{colour}]"
                if i == 0
                else ("" if m.verdict == Outcome.PASS else "[red]FAIL[/red]"),
            )
    console.print(table)
    overall = run.verdict
    colour = "green" if overall == Outcome.PASS else "red"
    header = run.header or {}
    if header.get("not_valid_for_release"):
        reason = header.get("calibration_override", {}).get("reason", "")
        console.print(
            f"[bold red]NOT VALID FOR PRODUCT RELEASE[/bold red] (calibration override: {reason})"
        )
    if rig.unsafe:
        console.print(f"[bold red]TABLE NOT CONFIRMED SAFE: {rig.unsafe}[/bold red]")
    console.print(f"overall: [bold {colour}]{overall}[/bold {colour}]   record: {record.path}")
    try:
        from .outputs.certificate import write_certificate

        html, pdf = write_certificate(record.directory, profile=profile)
        console.print(f"certificate: {pdf} (and {html.name})")
    except RigError as e:  # the record is the evidence; a certificate can be made again later
        console.print(f"[yellow]certificate not written:[/yellow] {e} (run `rig certificate`)")
    return 0 if overall == Outcome.PASS and code == 0 else 1


def cmd_certificate(args: argparse.Namespace) -> int:
    """Write (again) the HTML and PDF certificate of a run, e.g. after a reviewer signed."""
    from .outputs.certificate import build_certificate, write_certificate

    html, pdf = write_certificate(Path(args.run))
    print(f"{pdf}\n{html}\nverdict: {build_certificate(Path(args.run)).verdict}")
    return 0


def cmd_certify_all(args: argparse.Namespace) -> int:
    """Certify every emulated model (CI and demos): one child process per model, in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    from rich.console import Console
    from rich.table import Table

    from .emulators.bench import emulated_models
    from .matrix import certify_emulated

    console = Console(width=max(Console().width, 110))
    models = [m.upper() for m in args.model] if args.model else emulated_models()
    console.print(
        f"certifying {', '.join(models)} on emulated benches (scale {args.scale:g}, "
        f"{args.jobs} at a time)"
    )

    def one(model: str) -> Any:
        return certify_emulated(
            model, scale=args.scale, reports=Path(args.reports), serial=f"DEMO-{model}"
        )

    with ThreadPoolExecutor(args.jobs) as pool:
        outcomes = dict(zip(models, pool.map(one, models), strict=True))
    table = Table(title="emulated certification")
    for col in ("model", "requirements", "passed", "failed", "verdict", "wall s", "record"):
        table.add_column(col)
    ok = True
    for model, out in outcomes.items():
        good = out.overall == "PASS"
        ok &= good
        colour = "green" if good else "red"
        failed = sorted(out.failing())
        table.add_row(
            model,
            str(len(out.verdicts)),
            str(len(out.verdicts) - len(failed)),
            ", ".join(failed) or "-",
            f"[{colour}]{out.overall}[/{colour}]",
            f"{out.wall_s:.0f}",
            str(out.record or "-"),
        )
        if not good and out.record is None:
            console.print(out.output[-3000:])
    console.print(table)
    return 0 if ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    """Build an offline single-file HTML report from the allure results."""
    from .report import build_report

    results = Path(args.results or Path(args.reports) / "allure-results")
    output = Path(args.output or Path(args.reports) / "allure-report.html")
    print(build_report(results, output, name=args.name))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Per requirement quantity across units: count, yield, mean, sd, Cpk; control charts."""
    from .outputs.results import ResultsDB
    from .outputs.stats import stats_command

    db = Path(args.db or Path(args.reports) / "results.sqlite")
    if args.ingest:
        with ResultsDB(db) as d:
            d.ingest_all(Path(args.reports))
    charts = Path(args.charts) if args.charts else None
    print(stats_command(db, args.model, chart_dir=charts, requirement=args.requirement))
    return 0


def cmd_emulate(args: argparse.Namespace) -> int:
    """Serve an emulated bench on 127.0.0.1 until interrupted."""
    from .emulators.bench import EmulatedBench
    from .station import ROLE_MODELS, station_toml

    kwargs = {role: {"cal_due": args.cal_due} for role in ROLE_MODELS} if args.cal_due else None
    bench = EmulatedBench(
        args.model,
        scale=args.scale,
        defects=tuple(args.defect or ()),
        seed=args.seed,
        instrument_kwargs=kwargs,
        serial=args.plc_serial,
    )
    station = bench.start()
    text = station_toml(station)
    if args.station_out:
        tmp = Path(args.station_out).with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(args.station_out)  # appears whole: readers poll for it
    if not args.quiet:
        print(
            f"emulated {bench.model} bench, time scale {args.scale:g}, defects: "
            f"{', '.join(sorted(bench.defects)) or 'none'}"
        )
        print(f"PLC   modbus tcp  {station.plc_host}:{station.plc_port} (unit 1)")
        for role, inst in station.instruments.items():
            print(f"{inst.model:<8} {role:<14} {inst.resource}")
        print("station file:\n" + text)
        print("Ctrl-C to stop.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        bench.stop()
    return 0


def cmd_defects(args: argparse.Namespace) -> int:
    """List the seeded defects of the emulated benches."""
    from .emulators.defects import ALL_DEFECTS

    for d in ALL_DEFECTS:
        if args.model and d.model != args.model.upper():
            continue
        print(f"{d.model:<8} {d.name:<28} breaks {', '.join(d.breaks):<12} {d.description}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check a run's hash chain, trace files and signatures; tell altered from incomplete."""
    from .evidence.verify import cmd_verify as verify

    return verify(args)


def cmd_sign(args: argparse.Namespace) -> int:
    """A person signs a run with a stated meaning (reviewed, approved)."""
    from .evidence.signing import cmd_sign as sign

    return sign(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `rig`."""
    p = argparse.ArgumentParser(prog="rig", description="Spinal therapy table certification rig")
    p.add_argument("--version", action="version", version=f"rig {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("certify", help="certify one unit: PASS/FAIL per requirement")
    c.add_argument("model", help="table model, e.g. TT-890")
    c.add_argument("--serial", required=True, help="serial number of the unit (as scanned)")
    c.add_argument("--station", help="station file of a real bench; default: an emulated bench")
    c.add_argument("--operator", default="", help="operator name for the record")
    c.add_argument("--reports", default="reports", help="where run records go (default reports/)")
    c.add_argument(
        "--scale", type=float, default=20.0, help="emulated bench time scale (default 20)"
    )
    c.add_argument("--defect", action="append", help="seed a defect in the emulated bench")
    c.add_argument("--emulator", choices=("subprocess", "inprocess"), default="subprocess")
    c.add_argument(
        "--requirement",
        action="append",
        help="run only this requirement (repeatable): the unit is then not certified",
    )
    c.add_argument("--no-allure", action="store_true", help="do not write allure results")
    c.add_argument("--junit", help="also write JUnit XML here (for CI systems)")
    c.add_argument(
        "--calibration-override",
        metavar="REASON",
        help="run although an instrument's calibration has expired; the evidence is then "
        "marked NOT VALID FOR PRODUCT RELEASE",
    )
    c.add_argument("--bench-cal-due", help=argparse.SUPPRESS)
    c.set_defaults(func=cmd_certify)

    a = sub.add_parser("certify-all", help="certify every emulated model (CI, demos)")
    a.add_argument("--model", action="append", help="only these models (repeatable)")
    a.add_argument("--scale", type=float, default=20.0)
    a.add_argument("--jobs", type=int, default=2, help="models certified at once (default 2)")
    a.add_argument("--reports", default="reports")
    a.set_defaults(func=cmd_certify_all)

    ce = sub.add_parser("certificate", help="write a run's certificate (HTML and PDF) again")
    ce.add_argument("run", help="run directory")
    ce.set_defaults(func=cmd_certificate)

    rp = sub.add_parser("report", help="offline single-file HTML report from allure results")
    rp.add_argument("--reports", default="reports")
    rp.add_argument("--results", help="allure results directory (default REPORTS/allure-results)")
    rp.add_argument("--output", help="the HTML file (default REPORTS/allure-report.html)")
    rp.add_argument("--name", default="Certification", help="report title")
    rp.set_defaults(func=cmd_report)

    st = sub.add_parser("stats", help="statistics per requirement quantity across units")
    st.add_argument("model")
    st.add_argument("--reports", default="reports")
    st.add_argument("--db", help="results database (default REPORTS/results.sqlite)")
    st.add_argument("--charts", help="write a control chart PNG per quantity into this directory")
    st.add_argument("--requirement", help="only this requirement")
    st.add_argument("--ingest", action="store_true", help="first load every run under REPORTS")
    st.set_defaults(func=cmd_stats)

    e = sub.add_parser("emulate", help="run an emulated bench on 127.0.0.1 until Ctrl-C")
    e.add_argument("model")
    e.add_argument("--scale", type=float, default=1.0, help="device seconds per wall second")
    e.add_argument("--defect", action="append", help="seed a named defect (see `rig defects`)")
    e.add_argument("--seed", type=int, default=0, help="noise seed")
    e.add_argument("--station-out", help="write a station file for this bench here")
    e.add_argument("--plc-serial", type=int, help="the SERIAL the emulated PLC reports")
    e.add_argument("--cal-due", help="calibration due date (YYYY-MM-DD) the instruments report")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_emulate)

    d = sub.add_parser("defects", help="list the emulator's seeded defects")
    d.add_argument("model", nargs="?")
    d.set_defaults(func=cmd_defects)

    v = sub.add_parser(
        "verify",
        help="check a run for alteration: exit 0 VALID, 1 TAMPERED, 3 INCOMPLETE, 4 UNSIGNED",
    )
    v.add_argument("run", help="run directory or record.jsonl")
    v.add_argument(
        "--trust",
        action="append",
        help="only keys with this fingerprint (SHA256:...) or public key may sign",
    )
    v.set_defaults(func=cmd_verify)

    sg = sub.add_parser("sign", help="sign a run as a named person (reviewed / approved)")
    sg.add_argument("run", help="run directory")
    sg.add_argument("--name", required=True, help="printed name of the signer")
    sg.add_argument("--meaning", required=True, help="reviewed or approved")
    sg.add_argument("--key", help="the signer's Ed25519 key (PEM); default: one kept per name")
    sg.set_defaults(func=cmd_sign)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: user mistakes give a one-line error and exit code 2, never a traceback."""
    args = build_parser().parse_args(argv)
    if getattr(args, "scale", 1.0) is not None and getattr(args, "scale", 1.0) <= 0:
        print(f"error: --scale {args.scale}: expected a number > 0", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
