"""Soak under load: healthy certifications beside busy loops; count false FAILs and ERRORs.

Usage: python benchmarks/soak.py [--runs-per-model 10] [--scale 20] [--busy 2] [--cores 2]
       [--model TT-890 ...] [--jobs 1]

Every model is certified healthy on its emulated bench (`rig certify`, its own bench child) at
`--scale`, while `--busy` processes spin beside it, everything pinned to `--cores` CPUs. On a
healthy bench every requirement must PASS: any FAIL is a false FAIL (the unit blamed), any
ERROR (or a run with no ended record) a retest the rig caused. Prints per model the runs, the
false FAIL and ERROR counts, the wall time, and what failed; exits 1 if any run was not a PASS.
Issue 8's figure to reach: 0 and 0 in 30 runs (10 per model).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rig.emulators.bench import emulated_models
from rig.matrix import CertifyOutcome, certify_emulated


def _spin() -> None:
    while True:  # a busy loop: the load the rig must hold its heartbeat against
        pass


def _pin(cores: int) -> str:
    """Pin this process (and so its children) to the first `cores` CPUs it may use."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    allowed = sorted(os.sched_getaffinity(0))
    chosen = set(allowed[:cores])
    os.sched_setaffinity(0, chosen)
    return f"pinned to CPUs {sorted(chosen)}"


def main(argv: list[str] | None = None) -> int:
    """Run the soak; 0 if every certification passed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-per-model", type=int, default=10)
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--busy", type=int, default=2, help="busy-loop processes beside the runs")
    ap.add_argument("--cores", type=int, default=2, help="CPUs everything is pinned to")
    ap.add_argument("--model", action="append", help="only these models")
    ap.add_argument("--jobs", type=int, default=1, help="certifications at once")
    ap.add_argument("--timeout", type=float, default=1800.0, help="wall s one run may take")
    args = ap.parse_args(argv)
    models = [m.upper() for m in args.model] if args.model else emulated_models()
    pinned = _pin(args.cores)
    reports = Path(tempfile.mkdtemp(prefix="soak-"))
    busy = [mp.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for p in busy:
        p.start()
    print(
        f"soak: {args.runs_per_model} healthy runs per model of {', '.join(models)} at scale "
        f"{args.scale:g}, {args.busy} busy loops, {pinned}; records in {reports}",
        flush=True,
    )
    jobs = [(m, i) for i in range(args.runs_per_model) for m in models]

    def one(job: tuple[str, int]) -> tuple[str, int, CertifyOutcome | str]:
        model, i = job
        try:
            out = certify_emulated(
                model,
                scale=args.scale,
                reports=reports / f"{model}-{i}",
                serial=f"SOAK{i:03d}",
                timeout=args.timeout,
            )
        except Exception as e:  # a hung run is a result too, not the end of the soak
            return model, i, f"{type(e).__name__}: {e}"
        bad = {r: v for r, v in out.verdicts.items() if v != "PASS"}
        print(
            f"{model:<7} run {i + 1:>2}: {out.overall:<14} {out.wall_s:6.0f} s"
            + (f"  {bad}" if bad else ""),
            flush=True,
        )
        return model, i, out

    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            results = list(pool.map(one, jobs))
    finally:
        for p in busy:
            p.terminate()
    print(
        f"\n{'model':<7} {'runs':>4} {'false FAIL':>10} {'ERROR':>5} {'other':>5} "
        f"{'wall s':>7}  what failed"
    )
    all_ok = True
    for model in models:
        mine = [r for m, _, r in results if m == model]
        fails = errors = other = 0
        what: Counter[str] = Counter()
        wall = 0.0
        for r in mine:
            if isinstance(r, str):
                other += 1
                what[r[:60]] += 1
                continue
            wall += r.wall_s
            if r.record is None or not r.verdicts:
                other += 1
                what[f"no verdicts ({r.overall}, exit {r.returncode})"] += 1
            for req, v in r.verdicts.items():
                if v == "FAIL":
                    fails += 1
                    what[f"{req} FAIL"] += 1
                elif v == "ERROR":
                    errors += 1
                    what[f"{req} ERROR"] += 1
                elif v != "PASS":
                    other += 1
                    what[f"{req} {v}"] += 1
        all_ok &= not (fails or errors or other)
        mean = wall / max(1, len(mine))
        text = ", ".join(f"{k} x{n}" for k, n in what.most_common()) or "-"
        print(f"{model:<7} {len(mine):>4} {fails:>10} {errors:>5} {other:>5} {mean:>7.0f}  {text}")
    print(f"\ntotal wall {time.monotonic() - t0:.0f} s")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
