"""An emulated bench in a child process: start it, get its station, stop it.

The command line of the child is known here only: `spawn_bench()` runs
`python -m rig.emulators.spawn MODEL ...`, which serves the bench until SIGTERM and writes a
station file once it serves. `rig emulate` is the same program with the same arguments.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..station import ROLE_MODELS, Station, load_station, station_toml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a served bench (`rig emulate` and the child process)."""
    parser.add_argument("model")
    parser.add_argument("--scale", type=float, default=1.0, help="device seconds per wall second")
    parser.add_argument("--defect", action="append", help="seed a named defect (see `rig defects`)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    parser.add_argument("--station-out", help="write a station file for this bench here")
    parser.add_argument("--plc-serial", type=int, help="the SERIAL the emulated PLC reports")
    parser.add_argument(
        "--cal-due", help="calibration due date (YYYY-MM-DD) the instruments report"
    )
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--control-out",
        help="serve a fault-injection control channel on 127.0.0.1 and write its port here "
        "(for the fault campaign; the rig never uses it)",
    )
    parser.add_argument(
        "--observer-log",
        help="log the table's state over device time here, as JSON lines (the campaign's judge)",
    )


def serve(args: argparse.Namespace, announce: Callable[..., None] | None = None) -> int:
    """Serve an emulated bench on 127.0.0.1 until SIGTERM or Ctrl-C; write its station file
    (whole, at once: readers poll for it) and `announce(bench, station, text)` once it serves."""
    from .bench import EmulatedBench

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
    observer = _start_instruments_of_campaign(bench, args)
    _raise_priority()
    text = station_toml(station)
    if args.station_out:
        tmp = Path(args.station_out).with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(args.station_out)
    if announce is not None and not args.quiet:
        announce(bench, station, text)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if observer is not None:
            observer.stop()
        bench.stop()
    return 0


def _start_instruments_of_campaign(bench: Any, args: argparse.Namespace) -> Any:
    """The observer log and the control channel, when asked for; returns the observer."""
    from .faults import Control, Observer, serve_control

    observer = None
    if getattr(args, "observer_log", None):
        observer = Observer(bench, args.observer_log)
        observer.start()
    if getattr(args, "control_out", None):
        server = bench.run_on_loop(serve_control(Control(bench, observer)))
        bench.add_server(server)
        port = server.sockets[0].getsockname()[1]
        tmp = Path(args.control_out).with_suffix(".tmp")
        tmp.write_text(f"{port}\n")
        tmp.replace(args.control_out)  # whole at once: the campaign polls for it
    return observer


def _raise_priority() -> None:
    """SCHED_FIFO 5 (below the rig's heartbeat at 10) for every thread of this bench, when the
    host allows it: an emulated PLC that a loaded host schedules late answers the heartbeat
    late and its watchdog fires on a healthy run (issue 8; benchmarks/heartbeat_jitter.py
    --bench-fifo). A real PLC is not a process on the rig's host. Best effort."""
    try:
        for tid in os.listdir("/proc/self/task"):
            os.sched_setscheduler(int(tid), os.SCHED_FIFO, os.sched_param(5))
    except (OSError, AttributeError):
        pass


def bench_command(
    model: str,
    *,
    station_out: Path,
    scale: float = 1.0,
    defects: Sequence[str] = (),
    seed: int = 0,
    serial: int | None = None,
    cal_due: str | None = None,
    control_out: Path | None = None,
    observer_log: Path | None = None,
) -> list[str]:
    """The command line of a child process serving this bench."""
    cmd = [sys.executable, "-m", "rig.emulators.spawn", model, "--scale", str(scale)]
    cmd += ["--station-out", str(station_out), "--seed", str(seed), "--quiet"]
    for d in defects:
        cmd += ["--defect", d]
    if serial is not None:
        cmd += ["--plc-serial", str(serial)]
    if cal_due:
        cmd += ["--cal-due", cal_due]
    if control_out is not None:
        cmd += ["--control-out", str(control_out)]
    if observer_log is not None:
        cmd += ["--observer-log", str(observer_log)]
    return cmd


class SpawnedBench:
    """An emulated bench served by a child process of this one."""

    def __init__(
        self, process: subprocess.Popen, station: Station, tmp: tempfile.TemporaryDirectory
    ) -> None:
        self.process = process
        self.station = station
        self._tmp: tempfile.TemporaryDirectory | None = tmp

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after 10 s) and remove its files."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def spawn_bench(
    model: str,
    *,
    scale: float = 1.0,
    defects: Sequence[str] = (),
    seed: int = 0,
    serial: int | None = None,
    cal_due: str | None = None,
    timeout: float = 60.0,
) -> SpawnedBench:
    """Start an emulated bench in a child process; return it once it serves (ConfigError with
    the child's output when it does not start)."""
    tmp = tempfile.TemporaryDirectory(prefix="rig-bench-")
    out = Path(tmp.name) / "station.toml"
    log_path = Path(tmp.name) / "emulator.log"
    cmd = bench_command(
        model,
        station_out=out,
        scale=scale,
        defects=defects,
        seed=seed,
        serial=serial,
        cal_due=cal_due,
    )
    with open(log_path, "w") as log:  # the child keeps its own handle
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not out.exists():
        if proc.poll() is not None:
            text = log_path.read_text().strip()
            tmp.cleanup()
            raise ConfigError(f"emulated bench did not start:\n{text}")
        if time.monotonic() > deadline:
            SpawnedBench(proc, Station(id="", plc_host=""), tmp).stop()
            raise ConfigError(f"emulated bench did not start within {timeout:g} s")
        time.sleep(0.02)  # paces the look for the file; nothing is timed by it
    return SpawnedBench(proc, load_station(out), tmp)


def main(argv: list[str] | None = None) -> int:
    """`python -m rig.emulators.spawn MODEL ...`: serve a bench (the child of spawn_bench)."""
    parser = argparse.ArgumentParser(prog="python -m rig.emulators.spawn")
    add_arguments(parser)
    try:
        return serve(parser.parse_args(argv))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
