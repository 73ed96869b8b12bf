"""Timing against ground truth: safety stops at random phases, each timing quantity the rig
measures compared with the emulator's own noise-free truth; prints the worst error per quantity.

Usage: python benchmarks/timing_truth.py [--stops 102] [--scale 20] [--jobs 1] [--seed 1]
                                         [--models TT-890,RT-600,IT-90]

Each model gets an emulated bench in a child process with its fault/control channel (the rig
never sees it). The stops are the safety-stop procedure itself, through the rig's drivers: the
requirement's settings with the speed or force drawn at random (so the reaction and the stop fall
at random phases of the sample grid), a random extra wait on the straight or the move, `arm()`
at the rate the sample-rate rule gives for the requirement, the ACT relay, and the kind's
`stop_quantities`. The truth is the ICD's definition applied to the true signal (the emulator's
closed-form track, no noise), exact to 1 us; `t_react` / `t_stopped` (when the drive truly began
the stop, when motion truly ended) are shown beside it. Error = measured - truth: positive is
late / long (the conservative side), negative early / short. The figure to reach: every timing
error within one sample period, none negative beyond the noise (timing) or the instrument noise
(distances, in mm).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rig.bench.provision import open_instrument
from rig.bench.table import Table
from rig.emulators.faults import ControlClient, track_from_pieces
from rig.emulators.spawn import bench_command
from rig.emulators.track import Track
from rig.plc import Plc
from rig.procedures import arm, procedure_for
from rig.profiles import load_profile
from rig.station import load_station

MODELS = ("TT-890", "RT-600", "IT-90")
GRID_S = 1e-6  # resolution of the truth computed on a grid (stop times)
PRETRIGGER_S = 0.2  # as the safety-stop suite arms
# Instrument noise (instruments-scpi.md: about one resolution step rms, 0.01 in every unit) moves
# a reading, hence a crossing, by noise / slope: an error within Z of that is the noise's, not
# the sampling's (the uncertainty budget carries it). Z = 5, as the rig's analysis tests take.
NOISE = 0.01
Z = 5.0


@dataclass(frozen=True)
class Case:
    """One stop: which requirement's procedure, the relay, and the settings drawn for it."""

    requirement: str
    relay: str
    settings: dict[str, float]
    delay_s: float  # device seconds waited in the condition before the relay


@dataclass(frozen=True)
class Row:
    """One timing quantity of one stop against its truth."""

    model: str
    requirement: str
    relay: str
    quantity: str
    unit: str
    measured: float
    truth: float
    period_s: float
    physical: float | None = None  # t_react or t_stopped - t_edge, where it applies
    noise: float = 0.0  # the error the instrument noise can explain (Z sigma, in the unit)

    @property
    def error(self) -> float:
        """measured - truth (s, or mm for a distance): positive is late / long."""
        return self.measured - self.truth


# -- the stops --------------------------------------------------------------------------------


def draw(model: str, rng: np.random.Generator) -> Case:
    """A random stop of `model`: force or speed uniform over the range where the quantity is
    not trivially zero, a random wait (device s) in the condition."""
    if model == "TT-890":
        relay = "estop" if rng.random() < 0.5 else "patient"
        req = "TT-SAF-01" if relay == "estop" else "TT-SAF-02"
        return Case(req, relay, {"FORCE_SET": round(float(rng.uniform(100.0, 890.0)), 1)}, 0.0)
    if model == "RT-600":
        relay = "estop" if rng.random() < 2 / 3 else "patient"
        req = "RT-SAF-01" if relay == "estop" else "RT-SAF-02"
        # below 20 mm/s the 2000 mm/s2 brake stops within 0.1 mm: stop time 0
        speed = round(float(rng.uniform(25.0, 60.0)), 1)
        settings = {"SPEED": speed, "INTENSITY": float(rng.integers(3, 7))}
        return Case(req, relay, settings, float(rng.uniform(0.0, 1.0)))
    if model == "IT-90":
        # below 3.5 deg/s the 120 deg/s2 brake stops within 0.05 deg: stop time 0
        rate = round(float(rng.uniform(3.6, 6.0)), 1)
        return Case("IT-SAF-01", "estop", {"RATE": rate}, float(rng.uniform(0.0, 1.5)))
    raise SystemExit(f"no stops for model {model!r}; known: {', '.join(MODELS)}")


def _mean(track: Track, a: float, b: float) -> float:
    """Mean of the true signal over [a, b) (grid of GRID_S)."""
    return float(track.sample(np.arange(a, b, GRID_S)).mean())


def _stop_time_truth(track: Track, t0: float, tol: float, window: float = 1.0) -> float:
    """ICD stop time of the true signal: last t in [0, window] with |x - Xf| > tol (grid)."""
    xf = _mean(track, t0 + window - 0.1 + GRID_S, t0 + window + GRID_S)
    t = np.arange(0.0, window + GRID_S / 2, GRID_S)
    moving = np.flatnonzero(np.abs(track.sample(t0 + t) - xf) > tol)
    return float(t[moving[-1]]) if moving.size else 0.0


def _noise_time(track: Track, t: float, n_mean: int = 1) -> float:
    """Z sigma of the instrument noise (a sample, and a mean of n_mean samples it is compared
    with) as time at the true signal's slope at t."""
    speed = abs(track.velocity(t))
    sigma = NOISE * (1.0 + 1.0 / math.sqrt(n_mean))
    return Z * sigma / speed if speed > 0 else math.inf


def truths(
    model: str,
    case: Case,
    params: dict[str, Any],
    event: dict[str, Any],
    tracks: dict[str, Track],
    rate_hz: float,
) -> dict[str, tuple[float, float | None, float]]:
    """quantity -> (truth by the ICD's definition on the true signal, the physical instant
    relative to the edge where one applies, the error the noise can explain)."""
    t0 = float(event["t_edge"])
    react = float(event["t_react"]) - t0 if "t_react" in event else None
    stopped = float(event["t_stopped"]) - t0 if "t_stopped" in event else None
    n_block = max(round(0.1 * rate_hz), 1)  # samples in a 100 ms mean
    out: dict[str, tuple[float, float | None, float]] = {}
    if model == "TT-890":
        f = tracks["force"]
        f0 = _mean(f, t0 - 0.1, t0)
        limit = f0 - max(0.02 * f0, 5.0)
        t = f.first_time(t0, limit, above=False)
        out["reaction_time"] = (t - t0, react, _noise_time(f, t, n_block))
        level = float(params["release_level"])
        t = f.first_time(t0, level, above=False)
        out["release_time"] = (max(t - t0, 0.0), stopped, _noise_time(f, t))
    elif model == "RT-600":
        pos, lift = tracks["position"], tracks["lift"]
        if case.relay == "estop":
            tol = float(params["still_tolerance"])
            stop = _stop_time_truth(pos, t0, tol)
            out["stop_time"] = (stop, stopped, _noise_time(pos, t0 + stop, n_block))
            xf = _mean(pos, t0 + 0.9 + GRID_S, t0 + 1.0 + GRID_S)
            out["stopping_distance"] = (abs(xf - pos.value(t0)), None, Z * NOISE * 1.1)
        lift0 = _mean(lift, t0 - 0.1, t0)
        drop = float(params["lift_drop"])
        t = lift.first_time(t0, lift0 - drop, above=False)
        out["lift_drop_time"] = (t - t0, None, _noise_time(lift, t, n_block))
    elif model == "IT-90":
        ang = tracks["angle"]
        tol = float(params["still_tolerance"])
        stop = _stop_time_truth(ang, t0, tol)
        out["stop_time"] = (stop, stopped, _noise_time(ang, t0 + stop, n_block))
        at = float(params["overtravel_at_s"])
        xf = _mean(ang, t0 + at - 0.1 + GRID_S, t0 + at + GRID_S)
        out["overtravel"] = (abs(xf - ang.value(t0)), None, Z * NOISE * 1.1)
    return out


UNITS = {"stopping_distance": "mm", "overtravel": "deg"}


def run_model(
    model: str,
    stops: int,
    *,
    scale: float,
    seed: int,
    log: Callable[[str], None] = print,
) -> list[Row]:
    """`stops` random stops on one emulated bench of `model`; one Row per timing quantity."""
    rng = np.random.default_rng([seed, MODELS.index(model) if model in MODELS else 9])
    tmp = Path(tempfile.mkdtemp(prefix=f"truth-{model}-"))
    station_file, ctl = tmp / "station.toml", tmp / "control.port"
    cmd = bench_command(model, station_out=station_file, scale=scale, seed=seed, control_out=ctl)
    with open(tmp / "bench.log", "w") as out:
        bench = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    rows: list[Row] = []
    plc: Plc | None = None
    opened: dict[str, Any] = {}
    client: ControlClient | None = None
    try:
        deadline = time.monotonic() + 60.0
        while not (station_file.exists() and ctl.exists()):
            if bench.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{model}: the bench did not start: {tmp / 'bench.log'}")
            time.sleep(0.02)  # paces the look for the files; times nothing
        station = load_station(station_file)
        client = ControlClient(int(ctl.read_text()))
        profile = load_profile(model)
        kind = procedure_for(profile)
        plc = Plc(profile, station.plc_host, station.plc_port, unit=station.plc_unit)
        plc.connect()
        plc.wait_responding(30.0)
        plc.heartbeat.start()
        meter = open_instrument(station, profile.model.reference_role, opened)
        act = open_instrument(station, "actuators", opened)
        channel = profile.model.reference_channel
        table = Table(
            plc,
            profile,
            actuators=act,
            reference=lambda: meter.measure(channel),
            meter=meter.measure,
            home=kind.home,
        )
        for i in range(stops):
            case = draw(model, rng)
            req = profile.requirement(case.requirement)
            params = dict(req.params)
            settings = {**req.settings, **case.settings}
            table.ready()
            kind.reach_condition(table, settings, params)
            if case.delay_s:
                table.wait_device(case.delay_s)
            trace_s = float(params["trace_s"])
            acq = arm(
                meter,
                duration_s=trace_s,
                serves=req,
                pretrigger_s=PRETRIGGER_S,
                table=table,
                source="EXT",
            )
            t_before = float(client.request(op="now")["t"])
            setattr(act, case.relay, True)
            trace = acq.fetch(table)
            values, _ = kind.stop_quantities(trace, params, settings)
            setattr(act, case.relay, False)
            # the pieces from before the level-before window; the edge is after t_before
            truth = client.request(op="truth", since=t_before - 2 * PRETRIGGER_S)
            events = [
                e
                for e in truth["events"]
                if e["cause"] == case.relay and float(e["t_edge"]) >= t_before
            ]
            if not events:
                raise SystemExit(f"{model} stop {i + 1}: the emulator saw no {case.relay} edge")
            tracks = {k: track_from_pieces(v) for k, v in truth["tracks"].items()}
            found = truths(model, case, params, events[0], tracks, acq.rate_hz)
            for q, (true, physical, noise) in found.items():
                rows.append(
                    Row(
                        model,
                        case.requirement,
                        case.relay,
                        q,
                        UNITS.get(q, "s"),
                        float(values[q]),
                        float(true),
                        1.0 / acq.rate_hz,
                        physical,
                        noise,
                    )
                )
            log(f"{model} stop {i + 1}/{stops} {case.requirement} {case.settings} done")
        table.ready()
        table.make_safe()
    finally:
        if plc is not None:
            plc.heartbeat.stop()
            plc.close()
        for driver in opened.values():
            driver.close()
        if client is not None:
            client.close()
        bench.terminate()
        try:
            bench.wait(timeout=10)
        except subprocess.TimeoutExpired:
            bench.kill()
            bench.wait(timeout=10)
    return rows


def _worker(args: tuple[str, int, float, int]) -> list[Row]:
    model, stops, scale, seed = args
    return run_model(model, stops, scale=scale, seed=seed, log=lambda s: None)


# -- the figures -------------------------------------------------------------------------------


def summarise(rows: list[Row]) -> list[dict[str, Any]]:
    """Per (model, quantity): count, rates, worst late and worst early error (unit and sample
    periods), and the gap to the physical instant."""
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in rows:
        groups[(r.model, r.quantity)].append(r)
    out = []
    for (model, q), rs in groups.items():
        err = np.array([r.error for r in rs])
        per = np.array([r.error / r.period_s for r in rs])
        phys = [r.measured - r.physical for r in rs if r.physical is not None]
        # beyond what sampling allows: early at all, or late past one period
        early_beyond = [r for r in rs if r.error < -r.noise]
        late_beyond = [r for r in rs if r.error > r.period_s + r.noise]
        out.append(
            {
                "model": model,
                "quantity": q,
                "unit": rs[0].unit,
                "n": len(rs),
                "rates": sorted({round(1.0 / r.period_s) for r in rs}),
                "late": float(err.max()),
                "late_periods": float(per.max()),
                "early": float(err.min()),
                "early_periods": float(per.min()),
                "physical": (min(phys), max(phys)) if phys else None,
                "noise": float(np.median([r.noise for r in rs])),
                "early_beyond_noise": len(early_beyond),
                "late_beyond_period": len(late_beyond),
            }
        )
    return out


def print_table(summary: list[dict[str, Any]]) -> None:
    """The figures, one line per model and quantity."""
    head = (
        f"{'model':<7} {'quantity':<18} {'n':>3} {'rate Hz':>8}  {'worst late':>12} "
        f"{'periods':>7}  {'worst early':>12} {'periods':>7}  {'noise':>10}  side"
    )
    print(head)
    print("-" * len(head))
    for s in summary:
        timing = s["unit"] == "s"
        scale, unit = (1000.0, "ms") if timing else (1.0, s["unit"])
        late, early, noise = s["late"] * scale, s["early"] * scale, s["noise"] * scale
        lp = f"{s['late_periods']:>7.3f}" if timing else f"{'-':>7}"
        ep = f"{s['early_periods']:>7.3f}" if timing else f"{'-':>7}"
        if s["early"] >= -1e-12:
            side = "never early" if timing else "never short"
        elif not s["early_beyond_noise"]:
            side = "early only within noise" if timing else "short only within noise"
        else:
            side = f"EARLY beyond noise x{s['early_beyond_noise']}"
        if timing and s["late_beyond_period"]:
            side += f"; LATE past a period + noise x{s['late_beyond_period']}"
        print(
            f"{s['model']:<7} {s['quantity']:<18} {s['n']:>3} "
            f"{'/'.join(map(str, s['rates'])):>8}  {late:>9.3f} {unit:<3}{lp}  "
            f"{early:>9.3f} {unit:<3}{ep}  {noise:>7.3f} {unit:<3} {side}"
        )
    phys = [s for s in summary if s["physical"]]
    if phys:
        print("\nmeasured minus the physical instant (t_react: reaction; t_stopped: otherwise):")
        for s in phys:
            lo, hi = s["physical"]
            print(f"  {s['model']:<7} {s['quantity']:<16} {lo * 1000:>9.3f} .. {hi * 1000:.3f} ms")


def main() -> None:
    """Run the stops and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stops", type=int, default=102, help="stops in all, split over the models")
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--jobs", type=int, default=1, help="benches at a time")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--quiet", action="store_true", help="no line per stop")
    args = ap.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    per = [args.stops // len(models) + (i < args.stops % len(models)) for i in range(len(models))]
    t0 = time.monotonic()
    rows: list[Row] = []
    if args.jobs <= 1:
        log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr))
        for m, n in zip(models, per, strict=True):
            rows += run_model(m, n, scale=args.scale, seed=args.seed, log=log)
    else:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            jobs = [(m, n, args.scale, args.seed) for m, n in zip(models, per, strict=True)]
            for part in pool.map(_worker, jobs):
                rows += part
    stops = sum(per)
    print(
        f"{stops} stops at scale {args.scale:g} (seed {args.seed}), "
        f"{time.monotonic() - t0:.0f} s wall; error = measured - truth (ICD definition on the "
        f"true signal), in the unit and in sample periods\n"
    )
    summary = summarise(rows)
    print_table(summary)
    timing = [s for s in summary if s["unit"] == "s"]
    worst = max((max(s["late_periods"], -s["early_periods"]) for s in timing), default=math.nan)
    early = [s["quantity"] for s in timing if s["early_beyond_noise"]]
    late = [s["quantity"] for s in timing if s["late_beyond_period"]]
    print(
        f"\nworst timing error {worst:.3f} sample periods (noise column: median Z = {Z:g} sigma "
        f"of the instrument noise at the true slope); early beyond noise: "
        f"{', '.join(early) or 'none'}; late beyond one period + noise: {', '.join(late) or 'none'}"
    )


if __name__ == "__main__":
    main()
