"""Certify the emulated TT-890 healthy and with each seeded defect; print which requirements fail.

Usage: python benchmarks/defect_matrix.py [--model TT-890] [--scale 20] [--jobs 2]
Prints one row per defect: the requirements it is meant to break, those that failed, wall time.
"""

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rig.emulators.defects import defects_for
from rig.matrix import certify_emulated


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="TT-890")
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    runs = [None, *defects_for(args.model).values()]
    reports = Path(tempfile.mkdtemp(prefix="matrix-"))
    t0 = time.monotonic()

    def one(defect):
        names = () if defect is None else (defect.name,)
        return defect, certify_emulated(
            args.model,
            defects=names,
            scale=args.scale,
            reports=reports / (names[0] if names else "healthy"),
        )

    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, runs))
    ok = 0
    print(f"{'defect':<28} {'breaks':<12} {'failed':<34} {'wall s':>7}  match")
    for defect, out in results:
        expected = set() if defect is None else set(defect.breaks)
        match = out.failing() == expected and len(out.verdicts) > 0
        ok += match
        print(
            f"{(defect.name if defect else '(healthy)'):<28} "
            f"{','.join(sorted(expected)) or '-':<12} "
            f"{','.join(sorted(out.failing())) or '-':<34} {out.wall_s:7.1f}  "
            f"{'yes' if match else 'NO'}"
        )
    print(
        f"{ok}/{len(results)} runs fail exactly the requirements they should; "
        f"scale {args.scale:g}, {args.jobs} jobs, {time.monotonic() - t0:.0f} s wall in all"
    )


if __name__ == "__main__":
    main()
