"""Fault campaign: inject faults into emulated benches and the rig; judge each run from outside.

Usage: python benchmarks/fault_campaign.py [--runs 60] [--seed 1] [--jobs 1] [--scale 10]
       [--model TT-890 ...] [--fault plc-silent ...] [--rig-bound 300] [--keep] [--json FILE]

Each run picks a model, a requirement (`rig certify --requirement X`), a fault and an instant
(device seconds after the table first runs), injects it, and checks: the table ends safe (the
emulator's observer), no process runs past its wall bound, the record verifies (VALID, or
INCOMPLETE after a SIGKILL), and no FAIL is recorded (the bench is healthy: a FAIL blames the
unit for a fault the rig or bench caused). Prints one row per run and a summary per fault;
exits 1 if any check failed. The runner is tests/fault_support.py (the CI sample uses it too).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fault_support as fs  # found through the path above


def main(argv: list[str] | None = None) -> int:
    """Run the campaign; 0 if every check of every run passed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (each has its own bench)")
    ap.add_argument("--scale", type=float, default=10.0, help="device seconds per wall second")
    ap.add_argument("--model", action="append", choices=fs.MODELS, help="only these models")
    ap.add_argument(
        "--fault",
        action="append",
        choices=(*fs.FAULTS, fs.CONTROL),
        help="only these faults (none: healthy control runs)",
    )
    ap.add_argument("--rig-bound", type=float, default=300.0, help="wall s a rig may run")
    ap.add_argument("--keep", action="store_true", help="keep every run's files (not only bad)")
    ap.add_argument("--json", help="also write one JSON line per run here")
    args = ap.parse_args(argv)

    plans = fs.make_plans(
        args.runs, args.seed, models=args.model or fs.MODELS, faults=args.fault or fs.FAULTS
    )
    print(
        f"fault campaign: {len(plans)} runs, seed {args.seed}, scale {args.scale:g}, "
        f"{args.jobs} at a time; instrument timeout {fs.instrument_timeout_s():g} s"
    )
    print(fs.HEADER, flush=True)
    lock = threading.Lock()

    def log(row: str) -> None:
        with lock:
            print(row, flush=True)

    t0 = time.monotonic()
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = list(
            pool.map(
                lambda p: fs.run_one(
                    p, scale=args.scale, rig_bound_s=args.rig_bound, keep=args.keep, log=log
                ),
                plans,
            )
        )
    results.sort(key=lambda r: r.plan.index)
    print()
    print(fs.summary(results))
    bad = [r for r in results if not r.ok]
    print(
        f"\n{len(results) - len(bad)} of {len(results)} runs passed every check "
        f"({time.monotonic() - t0:.0f} s wall)"
    )
    if args.json:
        Path(args.json).write_text("".join(fs.as_json(r) + "\n" for r in results))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
