"""Print how long each rig.analysis function takes on a full-size trace (200 000 samples)."""

import time

import numpy as np

from rig import analysis as an

RATE = 10_000.0
N = 200_000
PRETRIGGER = 1_000


def timed(name, fn, repeat=5):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    print(f"{name:<22} {best * 1e3:8.2f} ms")


def main():
    rng = np.random.default_rng(0)
    t = (np.arange(N) - PRETRIGGER) / RATE
    force = np.where(t < 0.03, 890.0, np.maximum(890.0 - 1500.0 * (t - 0.03), 0.0))
    force += rng.normal(0.0, 0.01, N)
    # roller position: 200-400 mm sweeps with dwells at both ends
    period = 2 * (200 / 60 + 60 / 200) + 1.0
    phase = np.mod(np.maximum(t, 0.0), period) / period
    pos = 200 + 200 * np.clip(np.minimum(phase, 1 - phase) * 2.4 - 0.1, 0, 1)
    pos += rng.normal(0.0, 0.01, N)
    print(f"{N} samples at {RATE:g} Hz")
    timed("level_before", lambda: an.level_before(t, force))
    timed("reaction_time", lambda: an.reaction_time(t, force))
    timed("release_time", lambda: an.release_time(t, force))
    timed("block_means (199 blk)", lambda: an.block_means(t, force, start=0.0, end=19.9))
    timed("max_excursion", lambda: an.max_excursion(t, force, start=0.0, end=19.9))
    timed("settled_value", lambda: an.settled_value(t, force, target=0.0, tolerance=4.0))
    timed("stop_time", lambda: an.stop_time(t, pos, tolerance=0.1))
    timed("crossings", lambda: an.crossings(t, pos, threshold=300.0, hysteresis=10.0))
    timed("reversal_points", lambda: an.reversal_points(t, pos, midpoint=300.0, hysteresis=10.0))
    timed("straight_speeds", lambda: an.straight_speeds(t, pos, low=250.0, high=350.0))
    timed("ramp_rate", lambda: an.ramp_rate(t, force, start_level=890.0, end_level=0.0))


if __name__ == "__main__":
    main()
