"""Heartbeat write jitter: thread vs own process, idle vs two busy-loop processes (max gap, ms).

Runs rig.plc.Heartbeat against an emulated bench in its own process, while this process's main
thread does pure-Python work (holding the GIL, as analysis and I/O parsing do) and feeds the
switch; prints the gaps between heartbeat writes in wall ms. The choice of Heartbeat's default
backend rests on these figures; `--scale` shows the watchdog's wall time they must stay under.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import statistics
import time
from typing import Any

from rig.emulators.spawn import spawn_bench
from rig.plc import Heartbeat, Plc
from rig.profiles import load_profile
from rig.wait import progress


def _busy(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def run(backend: str, busy: int, host: str, port: int, seconds: float) -> tuple[list[float], str]:
    """Gaps (wall ms) between heartbeat writes in one configuration, and the priority got."""
    ctx = mp.get_context("spawn")
    stop_busy = ctx.Event()
    hogs = [ctx.Process(target=_busy, args=(stop_busy,), daemon=True) for _ in range(busy)]
    for h in hogs:
        h.start()
    plc = Plc(load_profile("TT-890"), host, port)
    plc.connect()
    hb = plc.heartbeat = Heartbeat(plc, backend=backend)
    try:
        hb.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sum(i * i for i in range(50_000))  # the rig's own work, holding the GIL
            progress()
        hb.stop()
        walls = [b.wall for b in hb.beats()]
        priority = hb.priority
    finally:
        plc.close()
        stop_busy.set()
        for h in hogs:
            h.join(5)
    return [(b - a) * 1000.0 for a, b in itertools.pairwise(walls)], priority


def main() -> None:
    """Print writes, median, p99 and max gap per configuration."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument(
        "--bench-fifo",
        action="store_true",
        help="run the emulated bench at SCHED_FIFO too (root): separates its stalls from ours",
    )
    ap.add_argument("--busy", type=int, nargs="*", default=[0, 2])
    ap.add_argument("--backend", nargs="*", default=["thread", "process"])
    args = ap.parse_args()
    bench = spawn_bench("TT-890", scale=args.scale)
    if args.bench_fifo:
        import subprocess

        subprocess.run(["chrt", "-f", "-a", "-p", "5", str(bench.process.pid)], check=True)
    host, port = bench.station.plc_host, bench.station.plc_port
    wall = 1000.0 / args.scale
    print(f"scale {args.scale:g}: WATCHDOG_MS 1000 is {wall:.1f} ms wall, period {wall / 4:.1f} ms")
    print(f"{'backend':8} {'busy':>4} {'writes':>6} {'median':>7} {'p99':>7} {'max':>7}  priority")
    try:
        for busy in args.busy:
            for backend in args.backend:
                gaps, priority = run(backend, busy, host, port, args.seconds)
                gaps.sort()
                p99 = gaps[int(0.99 * (len(gaps) - 1))]
                print(
                    f"{backend:8} {busy:>4} {len(gaps) + 1:>6} {statistics.median(gaps):7.2f} "
                    f"{p99:7.2f} {gaps[-1]:7.2f}  {priority}"
                )
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
