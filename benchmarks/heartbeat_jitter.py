"""Heartbeat write jitter: thread vs own process, idle vs two busy-loop processes (max gap, ms)."""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import statistics
import threading
import time
from typing import Any

from rig.emulators.spawn import spawn_bench
from rig.plc import FC_WRITE_ONE, _Link


def _raise_priority() -> str:
    """SCHED_FIFO for the calling thread, else a lower nice value, else nothing (unprivileged)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))  # this thread on Linux
        return "fifo"
    except (OSError, AttributeError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
        return "nice-10"
    except OSError:
        return "none"


def _beat(host: str, port: int, period: float, seconds: float, prio: bool = False) -> list[float]:
    """Write HEARTBEAT every `period` wall seconds for `seconds`; return each write's end time."""
    if prio:
        _raise_priority()
    link = _Link(host, port, 1, 1.0)
    link.connect()
    ends: list[float] = []
    value = 0
    next_at = time.monotonic()
    stop_at = next_at + seconds
    while time.monotonic() < stop_at:
        value = (value + 1) & 0xFFFF
        link.execute(FC_WRITE_ONE, 1, [value], "FC06 HEARTBEAT")
        ends.append(time.monotonic())
        next_at = max(next_at + period, time.monotonic())
        time.sleep(max(0.0, next_at - time.monotonic()))
    link.close()
    return ends


def _child(host: str, port: int, period: float, seconds: float, prio: bool, out: Any) -> None:
    out.send(_beat(host, port, period, seconds, prio))
    out.close()


def _busy(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _main_work(stop: threading.Event) -> None:
    # What the rig's main thread does between polls: pure-Python work holding the GIL.
    while not stop.is_set():
        sum(i * i for i in range(50_000))


def run(mode: str, busy: int, host: str, port: int, period: float, seconds: float) -> list[float]:
    """Gaps (wall ms) between heartbeat writes in one configuration."""
    ctx = mp.get_context("spawn")
    stop_busy = ctx.Event()
    hogs = [ctx.Process(target=_busy, args=(stop_busy,), daemon=True) for _ in range(busy)]
    for h in hogs:
        h.start()
    stop_main = threading.Event()
    worker = threading.Thread(target=_main_work, args=(stop_main,), daemon=True)
    worker.start()
    try:
        prio = mode.endswith("+prio")
        if mode.startswith("thread"):
            ends: list[float] = []
            t = threading.Thread(
                target=lambda: ends.extend(_beat(host, port, period, seconds, prio)), daemon=True
            )
            t.start()
            t.join()
        else:
            parent, child = ctx.Pipe(duplex=False)
            p = ctx.Process(
                target=_child, args=(host, port, period, seconds, prio, child), daemon=True
            )
            p.start()
            ends = parent.recv()
            p.join()
    finally:
        stop_main.set()
        stop_busy.set()
        for h in hogs:
            h.join(5)
        worker.join(5)
    return [(b - a) * 1000.0 for a, b in itertools.pairwise(ends)]


def _raise_priority_probe() -> str:
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(_raise_priority()))
    t.start()
    t.join()
    return out[0]


def main() -> None:
    """Print max / p99 / median gap per configuration."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--watchdog-ms", type=float, default=1000.0)
    ap.add_argument("--fraction", type=float, default=0.25)
    args = ap.parse_args()
    period = args.watchdog_ms / 1000.0 * args.fraction / args.scale
    bench = spawn_bench("TT-890", scale=args.scale)
    host, port = bench.station.plc_host, bench.station.plc_port
    budget = args.watchdog_ms / args.scale
    print(f"scale {args.scale:g}: period {period * 1000:.1f} ms, watchdog {budget:.1f} ms wall")
    print(f"priority available: {_raise_priority_probe()}")
    print(f"{'mode':12} {'busy':>4} {'writes':>6} {'median':>7} {'p99':>7} {'max':>7}  (gap, ms)")
    try:
        for busy in (0, 2):
            for mode in ("thread", "process", "thread+prio", "process+prio"):
                gaps = sorted(run(mode, busy, host, port, period, args.seconds))
                p99 = gaps[int(0.99 * (len(gaps) - 1))]
                print(
                    f"{mode:12} {busy:>4} {len(gaps) + 1:>6} {statistics.median(gaps):7.2f} "
                    f"{p99:7.2f} {gaps[-1]:7.2f}"
                )
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
