"""Compare the measurements of two run records (e.g. the same bench at time scale 1 and 20).

Usage: python benchmarks/compare_records.py RECORD_A RECORD_B
Prints each measurement's value in both, the difference, and whether the verdicts agree.
"""

import json
import sys
from pathlib import Path


def load(path):
    p = Path(path)
    p = p / "record.jsonl" if p.is_dir() else p
    out, verdicts = {}, {}
    for line in p.read_text().splitlines():
        obj = json.loads(line)
        if obj["kind"] == "measurement":
            key = (
                obj["requirement"],
                obj["name"],
                obj["repeat"],
                obj["note"],
                json.dumps(obj["bindings"], sort_keys=True),
            )
            out[key] = (obj["value"], obj["verdict"], obj["unit"])
        elif obj["kind"] == "requirement":
            verdicts[obj["requirement"]] = obj["verdict"]
    return out, verdicts


def main():
    a, va = load(sys.argv[1])
    b, vb = load(sys.argv[2])
    worst = {}
    for key in sorted(set(a) & set(b)):
        (x, vx, unit), (y, vy, _) = a[key], b[key]
        d = abs(x - y) if isinstance(x, float) and isinstance(y, float) else 0.0
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
        f"{sum(v == 'PASS' for v in va.values())}/{len(va)} PASS vs "
        f"{sum(v == 'PASS' for v in vb.values())}/{len(vb)} PASS"
    )


if __name__ == "__main__":
    main()
