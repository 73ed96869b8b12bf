"""Compare the measurements of two run records (e.g. the same bench at time scale 1 and 20).

Usage: python benchmarks/compare_records.py RECORD_A RECORD_B
Prints each measurement's value in both, the difference, and whether the verdicts agree.
"""

import math
import sys

from rig.evidence.format import Outcome, canonical_text
from rig.evidence.reader import read_run


def load(path):
    """(measurements by key, requirement verdicts) of a run directory or record file."""
    run = read_run(path)
    out = {}
    for m in run.measurements:
        key = (m.requirement, m.name, m.repeat, m.note, canonical_text(m.bindings))
        out[key] = (m.value, m.verdict, m.unit)
    return out, run.verdicts


def main():
    a, va = load(sys.argv[1])
    b, vb = load(sys.argv[2])
    worst = {}
    for key in sorted(set(a) & set(b)):
        (x, vx, unit), (y, vy, _) = a[key], b[key]
        finite = all(isinstance(v, float) and math.isfinite(v) for v in (x, y))
        d = abs(x - y) if finite else 0.0
        name = (key[0], key[1], unit)
        worst[name] = max(worst.get(name, 0.0), d)
        if vx != vy:
            print(f"VERDICT DIFFERS {key}: {x} {vx} vs {y} {vy}")
    print(f"{'requirement':<11} {'measurement':<22} {'max |difference|':>18}")
    for (req, name, unit), d in worst.items():
        print(f"{req:<11} {name:<22} {d:>14.4g} {unit}")
    same = va == vb
    print(
        f"{len(set(a) & set(b))} measurements compared ({len(set(a) ^ set(b))} unmatched); "
        f"requirement verdicts {'identical' if same else 'DIFFER'}: "
        f"{sum(v == Outcome.PASS for v in va.values())}/{len(va)} PASS vs "
        f"{sum(v == Outcome.PASS for v in vb.values())}/{len(vb)} PASS"
    )


if __name__ == "__main__":
    main()
