"""TT-SAF-05's fault time and TT-SAF-06's answer time at several time scales: neither may grow
with the scale.

Certifies TT-SAF-05 (comm-loss watchdog) and TT-SAF-06 (power loss) on an emulated TT-890 at
scale 1, 20, 100 and the highest scale the heartbeat holds on this host
(`rig.bench.heartbeat.max_holdable_scale`), and prints what each run recorded (device ms) and
the difference from the first scale. The fault time is FAULT_UPTIME_MS against the UPTIME_MS read
just before the last heartbeat write; the rig sends that read, the write and a second read in one
TCP segment (`Plc.last_heartbeat`), so the host's round trip does not reach the figure. The
answer time is the UPTIME_MS the PLC's first answer after power-on carried. Figure to reach
(issue 9): the fault time within 5 ms of scale 1.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rig.bench.heartbeat import max_holdable_scale, strictest_watchdog_ms
from rig.evidence.reader import read_run
from rig.matrix import certify_emulated

QUANTITIES = (("TT-SAF-05", "fault_time"), ("TT-SAF-06", "answer_time"))


def run_ms(scale: float, reports: Path) -> tuple[dict[str, float | None], str]:
    """(device ms per quantity, verdicts) of one run of both requirements at `scale`."""
    out = certify_emulated(
        "TT-890",
        scale=scale,
        requirements=tuple(r for r, _ in QUANTITIES),
        reports=reports / f"s{scale:g}",
    )
    values: dict[str, float | None] = {q: None for _, q in QUANTITIES}
    if out.record is None:
        return values, "no record: " + out.output[-200:]
    for m in read_run(out.record).measurements:
        if m.name in values and m.value is not None:
            values[m.name] = m.value * 1000.0
    return values, " ".join(f"{r} {out.verdicts.get(r)}" for r, _ in QUANTITIES)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=float, nargs="*", help="scales (default 1 20 100 highest)")
    args = ap.parse_args()
    highest = max_holdable_scale(strictest_watchdog_ms("TT-890"))
    scales = args.scales or [1.0, 20.0, 100.0, float(int(highest))]
    print(f"highest scale the heartbeat holds on this host: {highest:.0f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fault-time-") as tmp:
        for s in scales:
            rows.append((s, *run_ms(s, Path(tmp))))
    names = [q for _, q in QUANTITIES]
    head = "".join(f"{q + ' (ms)':>18} {'vs first':>9}" for q in names)
    print(f"{'scale':>7}{head}  verdicts")
    base = rows[0][1]
    for s, values, verdicts in rows:
        cells = ""
        for q in names:
            v, b = values[q], base[q]
            cells += f"{'-' if v is None else f'{v:.1f}':>18}"
            cells += f"{'' if v is None or b is None else f'{v - b:+.1f}':>10}"
        print(f"{s:>7g}{cells}  {verdicts}")


if __name__ == "__main__":
    main()
