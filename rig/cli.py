"""The `rig` command: certify a unit, run an emulated bench, list defects, verify a record."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ConfigError, RigError

CERTIFY_EXIT_CODES = """\
exit codes (the overall verdict):
  0  PASS                     every requirement of the profile passed
  1  FAIL                     the unit failed a requirement (or the table was not confirmed safe)
  2  usage or input error     nothing ran: a bad option, station file, bench address or serial,
                              or (--trust-file) a person not enrolled to start or override
  3  NOT CERTIFIED - retest   a requirement could not be judged (ERROR: a rig or bench fault,
                              not the unit) even after --retest; run again
  4  NOT CERTIFIED - partial  only some requirements were run (--requirement)
  5  INTERRUPTED              Ctrl-C or SIGTERM: the table was made safe, the record ended
"""


def _suites_dir() -> Path:
    """The suites: inside the installed package (a wheel maps them to rig/suites), or the
    checkout's top-level folder (an editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "suites", here.parent / "suites"):
        if (candidate / "safety").is_dir():
            return candidate
    raise ConfigError(f"the certification suites are missing (looked in {here} and its parent)")


def cmd_certify(args: argparse.Namespace) -> int:
    """Run the model's suites on the bench and print the verdict per requirement."""
    import pytest
    from rich.console import Console

    from .bench.provision import check_request, check_serial
    from .outputs import sinks
    from .outputs.console import CertifyConsole
    from .plugin.options import to_pytest_args
    from .profiles import load_profile

    console = Console(width=max(Console().width, 110))
    try:
        profile = load_profile(args.model)
        request = check_request(vars(args), model=profile.model.name)
        check_serial(args.serial, profile)  # before anything starts, let alone moves
        from .outputs.sinks import results_db

        db = results_db(vars(args))
        if db:  # a bad URL is said now, not when the run has ended
            from .outputs.db import database_url

            database_url(db)
    except RigError as e:
        from rich.markup import escape

        console.print(f"[red]error:[/red] {escape(str(e))}")  # "[model]" is not markup
        return 2
    args.model = profile.model.name
    if request.station_file:  # the emulator's options mean nothing to a real bench
        args.scale = args.emulator = None
    argv = [
        str(_suites_dir()),
        *to_pytest_args(args),
        "-p",
        "no:terminal",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(_suites_dir().parent),
        *sinks.certify_args(args),
    ]
    if args.requirement:
        argv += ["-k", " or ".join(args.requirement)]
    if request.station_file:
        bench = "station " + request.station_file
    else:
        bench = f"emulated bench (scale {request.scale:g}"
        bench += f", defects: {', '.join(request.defects)})" if request.defects else ")"
    console.print(
        f"[bold]rig {__version__}[/bold]: certifying {profile.model.name} serial "
        f"[bold]{args.serial}[/bold] on {bench}"
    )
    from .outputs.live import LiveProgress, live_wanted

    live = live_wanted(console, no_live=args.no_live, quiet=args.quiet)
    view = CertifyConsole(console, progress=not live and not args.quiet)
    plugins: list[Any] = [view]
    if live:
        plugins.append(LiveProgress(console))
    code = pytest.main(argv, plugins=plugins)
    return view.exit_code(int(code))


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
    from .evidence.format import Outcome
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
        good = out.overall == Outcome.PASS
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
    """Build an offline single-file HTML report from the Allure results of a run, of the runs
    since a date, or of an allure results directory."""
    from .evidence.format import resolve_run
    from .outputs.report import build_report, report_runs, runs_since

    reports = Path(args.reports)
    if args.results:
        output = Path(args.output or reports / "allure-report.html")
        print(build_report(Path(args.results), output, name=args.name))
        return 0
    if args.run:
        run, _ = resolve_run(args.run)
        output = Path(args.output or run / "allure-report.html")
        print(report_runs([run], output, name=args.name))
        return 0
    if args.since:
        runs = runs_since(reports, args.since)
        if not runs:
            raise ConfigError(f"no runs under {reports} started on or after {args.since}")
        output = Path(args.output or reports / "allure-report.html")
        print(report_runs(runs, output, name=args.name))
        print(f"{len(runs)} run(s) since {args.since}")
        return 0
    raise ConfigError("rig report: name a RUN, or --since DATE, or --results DIR")


def cmd_stats(args: argparse.Namespace) -> int:
    """Per requirement quantity across units: count, yield, mean, sd, Cpk; control charts; by
    station or shift."""
    from .outputs.db import default_url
    from .outputs.results import ResultsDB
    from .outputs.stats import stats_command

    db: str | Path = args.db or default_url() or Path(args.reports) / "results.sqlite"
    if args.ingest:
        refused: list[str] = []
        with ResultsDB(db) as d:
            d.ingest_all(Path(args.reports), refused=refused)
        for text in refused:  # e.g. a record rewritten since it was anchored: not taken in
            print(f"not ingested: {text}", file=sys.stderr)
    charts = Path(args.charts) if args.charts else None
    print(
        stats_command(
            db,
            args.model,
            chart_dir=charts,
            requirement=args.requirement,
            by=args.by,
            station=args.station,
            shift=args.shift,
        )
    )
    return 0


def cmd_station_serve(args: argparse.Namespace) -> int:
    """Serve the operator station: benches side by side in the browser, each run a `rig
    certify` of its own."""
    import importlib.util
    from dataclasses import replace

    from .line import DEFAULT_SCALE, BenchSpec, Line, load_line

    missing = [
        m for m in ("starlette", "uvicorn", "sse_starlette") if not importlib.util.find_spec(m)
    ]
    if missing:
        raise ConfigError(
            f"the operator station needs {', '.join(missing)}: pip install 'spinal-rig[station]'"
        )
    from .emulators.defects import defects_for
    from .operator.app import OperatorStation, serve
    from .profiles import load_profile

    line = load_line(args.line) if args.line else Line(path=None, name="station")
    benches = list(line.benches)
    for file in args.station or ():
        if not Path(file).is_file():
            raise ConfigError(f"--station {file}: no such station file")
        benches.append(BenchSpec(f"BENCH{len(benches) + 1}", station=Path(file)))
    for model in args.emulated or ():
        name = load_profile(model).model.name  # an unknown model is a usage error
        scale = args.scale if args.scale is not None else DEFAULT_SCALE
        known = defects_for(name)
        defects = tuple(d for d in args.defect or () if d in known)
        benches.append(
            BenchSpec(f"BENCH{len(benches) + 1}", emulated=name, scale=scale, defects=defects)
        )
    for d in args.defect or ():
        if not any(d in b.defects for b in benches):
            raise ConfigError(f"--defect {d!r}: no emulated bench's model has it (rig defects)")
    line = replace(line, benches=tuple(benches))
    host = args.host or line.host
    port = args.port if args.port is not None else line.port
    station = OperatorStation(line, reports=Path(args.reports), requirements=args.requirement or ())
    return serve(station, host, port)


def cmd_emulate(args: argparse.Namespace) -> int:
    """Serve an emulated bench on 127.0.0.1 until interrupted."""
    from .emulators.spawn import serve

    def announce(bench: Any, station: Any, text: str) -> None:
        print(
            f"emulated {bench.model} bench, time scale {args.scale:g}, defects: "
            f"{', '.join(sorted(bench.defects)) or 'none'}"
        )
        print(f"PLC   modbus tcp  {station.plc_host}:{station.plc_port} (unit 1)")
        for role, inst in station.instruments.items():
            print(f"{inst.model:<8} {role:<14} {inst.resource}")
        print("station file:\n" + text)
        print("Ctrl-C to stop.", flush=True)

    return serve(args, announce)


def cmd_defects(args: argparse.Namespace) -> int:
    """List the seeded defects of the emulated benches."""
    from .emulators.defects import ALL_DEFECTS

    for d in ALL_DEFECTS:
        if args.model and d.model != args.model.upper():
            continue
        print(f"{d.model:<8} {d.name:<28} breaks {', '.join(d.breaks):<12} {d.description}")
    return 0


def _trust(args: argparse.Namespace) -> Any:
    from .evidence.trust import load_trust, trust_path

    path = trust_path(getattr(args, "trust_file", None))
    return load_trust(path) if path is not None else None


def cmd_verify(args: argparse.Namespace) -> int:
    """Check a run's hash chain, trace files and signatures; tell altered from incomplete; with
    the line's trust file and database, untrusted signers and rewritten records."""
    from .evidence.format import RecordError
    from .evidence.verify import cmd_verify as verify
    from .outputs.db import default_url
    from .outputs.results import anchoring_for

    trust = _trust(args)
    anchoring = None
    db = args.db or default_url()
    if db:
        try:
            anchoring = anchoring_for(db, args.run)
        except RecordError:
            pass  # no readable record: verify says so, with its own exit code
    return verify(args, trust=trust, anchoring=anchoring)


def cmd_sign(args: argparse.Namespace) -> int:
    """A person signs a run with a stated meaning (reviewed, approved); with the line's
    database, the signature is anchored there."""
    from .evidence.signing import cmd_sign as sign
    from .outputs.db import default_url
    from .outputs.results import ResultsDB

    code = sign(args, trust=_trust(args))
    db = args.db or default_url()
    if code == 0 and db:
        with ResultsDB(db) as d:
            d.ingest(Path(args.run))
            print(f"anchored in {d.where}")
    return code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `rig`."""
    from .emulators.spawn import add_arguments as add_bench_arguments
    from .plugin.options import BY_DEST
    from .plugin.options import add_to_argparse as add_options

    p = argparse.ArgumentParser(prog="rig", description="Spinal therapy table certification rig")
    p.add_argument("--version", action="version", version=f"rig {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser(
        "certify",
        help="certify one unit: PASS/FAIL per requirement",
        description="Certify one unit: run the model's requirement tests on the bench and "
        "judge each against the profile's limits.",
        epilog=CERTIFY_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(c)  # the plugin's options, from its one table
    c.add_argument(
        "--requirement",
        action="append",
        help="run only this requirement (repeatable): the unit is then not certified",
    )
    c.add_argument("--no-allure", action="store_true", help="do not write allure results")
    c.add_argument("--junit", help="also write JUnit XML here (for CI systems)")
    c.add_argument(
        "--no-live",
        action="store_true",
        help="no live progress (it is shown only on a terminal anyway)",
    )
    c.add_argument("-q", "--quiet", action="store_true", help="no progress: only the final table")
    c.set_defaults(func=cmd_certify)

    a = sub.add_parser("certify-all", help="certify every emulated model (CI, demos)")
    a.add_argument("--model", action="append", help="only these models (repeatable)")
    a.add_argument("--scale", type=float, default=BY_DEST["scale"].default)
    a.add_argument("--jobs", type=int, default=2, help="models certified at once (default 2)")
    a.add_argument("--reports", default="reports")
    a.set_defaults(func=cmd_certify_all)

    ce = sub.add_parser("certificate", help="write a run's certificate (HTML and PDF) again")
    ce.add_argument("run", help="run directory")
    ce.set_defaults(func=cmd_certificate)

    rp = sub.add_parser(
        "report",
        help="offline single-file HTML report from a run's Allure results",
        description="One self-contained HTML file (Allure 3) from the Allure results of one run "
        "(RUN/allure-results), of every run since a date, or of an allure results directory.",
    )
    rp.add_argument("run", nargs="?", help="run directory (or its record.jsonl)")
    rp.add_argument("--since", help="every run under REPORTS started on or after this ISO date")
    rp.add_argument("--reports", default="reports")
    rp.add_argument("--results", help="an allure results directory instead of runs")
    rp.add_argument(
        "--output", help="the HTML file (default RUN/allure-report.html or REPORTS/...)"
    )
    rp.add_argument("--name", default="Certification", help="report title")
    rp.set_defaults(func=cmd_report)

    st = sub.add_parser("stats", help="statistics per requirement quantity across units")
    st.add_argument("model")
    st.add_argument("--reports", default="reports")
    st.add_argument(
        "--db",
        help="results database: a SQLite file or postgresql://USER@HOST:PORT/DB "
        "(default $RIG_DB_URL, else REPORTS/results.sqlite)",
    )
    st.add_argument("--charts", help="write a control chart PNG per quantity into this directory")
    st.add_argument("--requirement", help="only this requirement")
    st.add_argument(
        "--by",
        choices=("station", "shift"),
        help="one row per station or shift (yield, Cpk); with --charts, a chart per station",
    )
    st.add_argument("--station", help="only runs of this station")
    st.add_argument("--shift", help="only runs of this shift (early, late, night)")
    st.add_argument("--ingest", action="store_true", help="first load every run under REPORTS")
    st.set_defaults(func=cmd_stats)

    so = sub.add_parser("station", help="the operator station in the browser")
    so_sub = so.add_subparsers(dest="station_command", required=True)
    ss = so_sub.add_parser(
        "serve",
        help="serve the operator station (benches side by side) until Ctrl-C",
        description="Serve the operator station: log in by badge, scan a serial, see the model "
        "the PLC's KIND names, confirm the profile's operator steps, start, follow each run "
        "live, abort (the table is made safe), open the certificate. One `rig certify` "
        "process per run; one run per bench at a time.",
    )
    ss.add_argument("--line", help="line file (TOML): station address, people, benches")
    ss.add_argument("--station", action="append", help="a real bench's station file (repeatable)")
    ss.add_argument(
        "--emulated", action="append", metavar="MODEL", help="an emulated bench (repeatable)"
    )
    ss.add_argument("--scale", type=float, help="time scale of the emulated benches (default 20)")
    ss.add_argument(
        "--defect",
        action="append",
        help="seed this defect in the --emulated benches whose model has it (demos of a FAIL)",
    )
    ss.add_argument("--host", help="address to bind (default: the line file's, else 127.0.0.1)")
    ss.add_argument("--port", type=int, help="port (default: the line file's, else 8890)")
    ss.add_argument("--reports", default="reports")
    ss.add_argument(
        "--requirement",
        action="append",
        help="runs check only this requirement (repeatable; demos): the unit is not certified",
    )
    ss.set_defaults(func=cmd_station_serve)

    e = sub.add_parser("emulate", help="run an emulated bench on 127.0.0.1 until Ctrl-C")
    add_bench_arguments(e)
    e.set_defaults(func=cmd_emulate)

    d = sub.add_parser("defects", help="list the emulator's seeded defects")
    d.add_argument("model", nargs="?")
    d.set_defaults(func=cmd_defects)

    v = sub.add_parser(
        "verify",
        help="check a run for alteration: exit 0 VALID, 1 TAMPERED, 3 INCOMPLETE, 4 UNSIGNED, "
        "5 UNTRUSTED",
    )
    v.add_argument("run", help="run directory or record.jsonl")
    v.add_argument(
        "--trust",
        action="append",
        help="only keys with this fingerprint (SHA256:...) or public key may sign",
    )
    v.add_argument(
        "--trust-file",
        help="the line's trust file: enrolled station and person keys with roles "
        "(default $RIG_TRUST)",
    )
    v.add_argument(
        "--db",
        help="the line's results database (path or URL; default $RIG_DB_URL): check the run "
        "against the chain head and signatures anchored there",
    )
    v.set_defaults(func=cmd_verify)

    sg = sub.add_parser("sign", help="sign a run as a named person (reviewed / approved)")
    sg.add_argument("run", help="run directory")
    sg.add_argument("--name", required=True, help="printed name of the signer")
    sg.add_argument(
        "--meaning",
        required=True,
        help='reviewed, approved (QA), or "calibration override" (a test engineer signs a '
        "run's override and its reason)",
    )
    sg.add_argument("--key", help="the signer's Ed25519 key (PEM); default: one kept per name")
    sg.add_argument(
        "--trust-file",
        help="the line's trust file: only an enrolled person in a role that may sign the "
        "meaning signs (approved: QA) (default $RIG_TRUST)",
    )
    sg.add_argument(
        "--db", help="anchor the signature in the line's results database (default $RIG_DB_URL)"
    )
    sg.set_defaults(func=cmd_sign)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: user mistakes give a one-line error and exit code 2, never a traceback."""
    from .bench.provision import scale_of

    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "scale", None) is not None:
            scale_of(args.scale)
        return int(args.func(args))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
