"""Unit and property tests of rig.analysis on synthetic traces with known answers."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig import analysis as an
from rig.analysis import AnalysisError

RATE = 1000.0  # Hz, the instruments' default
DT = 1.0 / RATE
SIGMA = 0.01  # instrument noise: about one resolution step rms (instruments-scpi.md)
Z = 5.0  # noise bounds are Z standard deviations: a seeded trace never flakes, a bug still shows
ROUND = 1e-12  # float rounding of sample times computed as (i - PRETrigger) / RATE


# --- trace builders ----------------------------------------------------------------------------


def times(duration, *, pretrigger=0, rate=RATE):
    """Sample times as the ICD gives them: t_i = (i - PRETrigger) / RATE."""
    n = pretrigger + round(duration * rate)
    return (np.arange(n) - pretrigger) / rate


def noisy(x, *, sigma=SIGMA, seed=0):
    return x + np.random.default_rng(seed).normal(0.0, sigma, np.shape(x))


def nan_before(t, x, until):
    """Pre-trigger padding: samples before `until` missing."""
    y = np.array(x, dtype=float)
    y[t < until] = np.nan
    return y


def mean_bound(n, sigma=SIGMA):
    """Bound on the error of a mean of n noisy samples."""
    return Z * sigma / math.sqrt(n)


def slope_bound(duration, rate=RATE, sigma=SIGMA):
    """Bound on the error of a least-squares slope over `duration` s of noisy samples."""
    n = max(math.floor(duration * rate), 2)
    sxx = n * (n * n - 1) / 12.0 / rate**2  # sum of (t - mean t)^2 for n uniform samples
    return Z * sigma / math.sqrt(sxx)


def linear_release(t, *, f0, rate, latency, floor=0.0):
    """Force held at f0, released at `rate` N/s from t = latency down to `floor`."""
    return np.where(t < latency, f0, np.maximum(f0 - rate * (t - latency), floor))


def ramp(t, *, t0, x0, x1, rate):
    """From x0, starting at t0, straight to x1 at |rate| units/s, then holding x1."""
    dur = abs(x1 - x0) / rate
    frac = np.clip((t - t0) / dur, 0.0, 1.0)
    return x0 + (x1 - x0) * frac


def trapezoid_level(t, *, t0, base, top, ramp_time, hold):
    """Rises from base at t0 over ramp_time, holds `hold` s at top, falls over ramp_time."""
    if ramp_time == 0:
        return np.where((t >= t0) & (t < t0 + hold), top, base)
    up = np.clip((t - t0) / ramp_time, 0.0, 1.0)
    down = np.clip((t - (t0 + ramp_time + hold)) / ramp_time, 0.0, 1.0)
    return base + (top - base) * (up - down)


def move_distance(tau, *, d, v, a):
    """Distance covered tau s into a trapezoidal move of length d (top speed v, accel a)."""
    ta = v / a
    total = d / v + v / a
    tau = np.clip(tau, 0.0, total)
    return np.where(
        tau < ta,
        a * tau**2 / 2,
        np.where(
            tau < total - ta, v * v / (2 * a) + v * (tau - ta), d - a * (total - tau) ** 2 / 2
        ),
    )


def move(t, *, t0, x0, x1, v, a):
    """A trapezoidal move from x0 to x1 starting at t0."""
    return x0 + np.sign(x1 - x0) * move_distance(t - t0, d=abs(x1 - x0), v=v, a=a)


def roller_period(start, end, v, a=200.0, dwell=0.5):
    """Nominal cycle period of plc-modbus.md: T = 2 (d/v + v/a) + 2 dwell."""
    return 2 * ((end - start) / v + v / a) + 2 * dwell


def roller(t, *, start, end, v, a=200.0, dwell=0.5, t0=0.0):
    """Carriage parked at `start` until t0, then cycling start -> end -> start with dwells."""
    d = end - start
    tm = d / v + v / a
    tau = np.mod(np.maximum(t - t0, 0.0), roller_period(start, end, v, a, dwell))
    out = start + move_distance(tau, d=d, v=v, a=a)
    back = tau >= tm + dwell
    out[back] = end - move_distance(tau[back] - tm - dwell, d=d, v=v, a=a)
    return out


def time_to_go(distance, *, v, a):
    """How long before the end of a trapezoidal move (top speed v, decel a) `distance` remains."""
    if distance <= v * v / (2 * a):
        return math.sqrt(2 * distance / a)
    return v / a + (distance - v * v / (2 * a)) / v


def reversal_bound(rate, dwell=0.5):
    """Bound on a reversal point from the median of a dwell's noisy samples: the approach
    samples within the band (all below the dwell) bias the median by less than SIGMA / 2; the
    median of n normal samples has a standard error of sqrt(pi/2) SIGMA / sqrt(n)."""
    return SIGMA / 2 + Z * math.sqrt(math.pi / 2) * SIGMA / math.sqrt(dwell * rate)


def braked_stop(t, *, x0, v, a):
    """Moving at v through x0 at t = 0, braked at a from t = 0 to a standstill."""
    ts = v / a
    tc = np.clip(t, None, ts)
    return np.where(t < 0, x0 + v * t, x0 + v * tc - a * tc**2 / 2)


def approach(t, *, target, tau):
    """First-order approach from 0 to target starting at t = 0."""
    return np.where(t < 0, 0.0, target * (1 - np.exp(-np.maximum(t, 0.0) / tau)))


def intermittent(t, *, hold_level, rest_level, rate, hold, rest, cycles):
    """Intermittent traction: ramp 0 -> hold, hold, ramp -> rest, rest, ... then release."""
    knots_t, knots_x = [0.0], [0.0]

    def go(level, dwell):
        knots_t.append(knots_t[-1] + abs(level - knots_x[-1]) / rate)
        knots_x.append(level)
        knots_t.append(knots_t[-1] + dwell)
        knots_x.append(level)

    for _ in range(cycles):
        go(hold_level, hold)
        go(rest_level, rest)
    go(0.0, 1.0)
    return np.interp(t, knots_t, knots_x)


# --- levels ------------------------------------------------------------------------------------


def test_level_before_is_the_mean_of_the_100ms_before_the_trigger():
    t = times(0.5, pretrigger=150)
    # x = t: the samples -0.100 ... -0.001 average to their midpoint; one sample more or less
    # would move the mean by half a sample period.
    assert an.level_before(t, t) == pytest.approx(-(0.1 + DT) / 2)
    assert an.level_before(t, t, window=0.05) == pytest.approx(-(0.05 + DT) / 2)


def test_level_before_of_a_noisy_hold():
    t = times(0.5, pretrigger=300)
    x = noisy(np.full(t.size, 890.0))
    assert an.level_before(t, x) == pytest.approx(890.0, abs=mean_bound(100))


def test_level_before_needs_a_valid_pretrigger():
    t = times(0.5, pretrigger=100)
    # IMM trigger: the pre-trigger samples are NaN
    with pytest.raises(
        AnalysisError,
        match=r"level before needs samples from t=-0\.100 s; valid samples start at 0\.000 s",
    ):
        an.level_before(t, nan_before(t, np.ones(t.size), 0.0))
    # half the window padded
    with pytest.raises(AnalysisError, match=r"valid samples start at -0\.050 s"):
        an.level_before(t, nan_before(t, np.ones(t.size), -0.05))
    # a gap at the start of the window, inside the trace
    t = times(0.5, pretrigger=200)
    x = np.ones(t.size)
    x[(t >= -0.11) & (t < -0.09)] = np.nan
    with pytest.raises(AnalysisError, match=r"the first in \[-0\.100, 0\.000\) s is at -0\.090"):
        an.level_before(t, x)
    # pretrigger shorter than the window
    t = times(0.5, pretrigger=50)
    with pytest.raises(AnalysisError, match=r"valid samples start at -0\.050 s"):
        an.level_before(t, np.ones(t.size))
    # no pretrigger at all
    t = times(0.5)
    with pytest.raises(AnalysisError, match="level before"):
        an.level_before(t, np.ones(t.size))


def test_all_nan_trace_raises():
    t = times(0.5)
    with pytest.raises(AnalysisError, match="no valid samples"):
        an.peak(t, np.full(t.size, np.nan))


def test_malformed_traces_raise():
    with pytest.raises(AnalysisError, match="differ in length"):
        an.peak([0.0, 1.0], [1.0])
    with pytest.raises(AnalysisError, match="strictly increasing"):
        an.peak([0.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(AnalysisError, match="1-D"):
        an.peak([[0.0, 1.0]], [[1.0, 2.0]])


def test_final_level_is_the_mean_of_the_last_100ms():
    t = times(1.0)  # 0.000 ... 0.999
    # (0.899, 0.999]: the samples 0.900 ... 0.999
    assert an.final_level(t, t) == pytest.approx((0.9 + 0.999) / 2)
    # (0.4, 0.5]: 0.401 ... 0.500
    assert an.final_level(t, t, end=0.5) == pytest.approx((0.401 + 0.5) / 2)
    assert an.final_level(t, t, end=0.5, window=0.01) == pytest.approx((0.491 + 0.5) / 2)


def test_final_level_ignores_nan_and_raises_past_the_trace():
    t = times(1.0, pretrigger=100)
    x = nan_before(t, noisy(np.full(t.size, 42.0)), 0.0)
    assert an.final_level(t, x) == pytest.approx(42.0, abs=mean_bound(100))
    with pytest.raises(
        AnalysisError, match=r"needs samples up to t=2\.000 s; trace ends at 0\.999"
    ):
        an.final_level(t, x, end=2.0)


def test_block_means_of_consecutive_blocks():
    t = times(1.05)
    starts, means = an.block_means(t, t, start=0.05, end=0.5)
    # 4 complete blocks; the partial one [0.45, 0.5) is dropped
    np.testing.assert_allclose(starts, [0.05, 0.15, 0.25, 0.35])
    # mean of the uniform samples of [a, a + 0.1) is a + (0.1 - DT) / 2
    np.testing.assert_allclose(means, starts + (0.1 - DT) / 2)
    starts, means = an.block_means(t, t, start=0.0, end=1.0, block=0.25)
    np.testing.assert_allclose(starts, [0.0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(means, starts + (0.25 - DT) / 2)


def test_block_means_errors():
    t = times(1.0)
    x = np.ones(t.size)
    with pytest.raises(AnalysisError, match="shorter than one"):
        an.block_means(t, x, start=0.0, end=0.05)
    with pytest.raises(AnalysisError, match="trace ends at"):
        an.block_means(t, x, start=0.0, end=2.0)
    gap = x.copy()
    gap[(t >= 0.3) & (t < 0.45)] = np.nan
    with pytest.raises(AnalysisError, match=r"no valid samples in block \[0\.300, 0\.400\)"):
        an.block_means(t, gap, start=0.0, end=1.0)
    with pytest.raises(AnalysisError, match="block must be positive"):
        an.block_means(t, x, start=0.0, end=1.0, block=0.0)
    with pytest.raises(AnalysisError, match="finite interval"):
        an.block_means(t, x, start=0.0, end=math.inf)


def test_drift_of_a_linear_creep():
    t = times(11.5, pretrigger=100)
    creep = 0.01  # deg/s
    x = noisy(30.0 + creep * t)
    # end block [10.9, 11.0) and start block [1.0, 1.1) are both uniform blocks of a line
    expected = creep * (11.0 - 0.1 - 1.0)
    assert an.drift(t, x, start=1.0, end=11.0) == pytest.approx(
        expected, abs=Z * SIGMA * math.sqrt(2 / 100)
    )
    assert an.drift(t, -x, start=1.0, end=11.0) == pytest.approx(
        -expected, abs=Z * SIGMA * math.sqrt(2 / 100)
    )


def test_drift_errors():
    t = times(2.0)
    x = np.ones(t.size)
    with pytest.raises(AnalysisError, match="shorter than one"):
        an.drift(t, x, start=1.0, end=1.05)
    with pytest.raises(AnalysisError, match=r"drift \(end block\) needs samples up to t=3\.000"):
        an.drift(t, x, start=1.0, end=3.0)


def test_max_excursion_still_and_moving():
    t = times(6.0)
    still = noisy(np.full(t.size, 250.0))
    # each difference of two 100-sample means has rms SIGMA * sqrt(2/100)
    assert an.max_excursion(t, still, start=0.0, end=5.0) <= Z * SIGMA * math.sqrt(2 / 100)
    bumped = still + np.where((t >= 2.0) & (t < 2.3), 0.3, 0.0)
    assert an.max_excursion(t, bumped, start=0.0, end=5.0) == pytest.approx(
        0.3, abs=Z * SIGMA * math.sqrt(2 / 100)
    )
    assert an.max_excursion(t, bumped, start=0.0, end=0.1) == 0.0  # one block


# --- traction: reaction and release ------------------------------------------------------------


def assert_first_sample_after(result, instant, slope, *, sigma=SIGMA):
    """`result` is the first sample at or after `instant` at which a signal moving at `slope`
    passes a level: within one sample period after it, give or take the noise's time jitter."""
    jitter = Z * sigma / abs(slope)
    assert instant - jitter - ROUND <= result <= instant + DT + jitter + ROUND


def test_reaction_time_lumbar_estop():
    t = times(5.0, pretrigger=200)
    f0, rate, latency = 890.0, 1500.0, 0.03
    x = noisy(linear_release(t, f0=f0, rate=rate, latency=latency))
    drop = 0.02 * f0  # 17.8 N > 5 N
    assert_first_sample_after(an.reaction_time(t, x), latency + drop / rate, rate)


def test_reaction_time_uses_the_5N_minimum_drop_and_parameters():
    t = times(2.0, pretrigger=200)
    f0, rate, latency = 100.0, 1000.0, 0.05
    x = noisy(linear_release(t, f0=f0, rate=rate, latency=latency))
    assert_first_sample_after(an.reaction_time(t, x), latency + 5.0 / rate, rate)
    assert_first_sample_after(an.reaction_time(t, x, minimum=0.0), latency + 0.02 * f0 / rate, rate)
    assert_first_sample_after(
        an.reaction_time(t, x, fraction=0.1, minimum=0.0), latency + 0.1 * f0 / rate, rate
    )


def test_reaction_time_with_explicit_x0_needs_no_pretrigger():
    t = times(2.0, pretrigger=100)
    x = nan_before(t, linear_release(t, f0=600.0, rate=2000.0, latency=0.02), 0.0)
    with pytest.raises(AnalysisError, match="level before"):
        an.reaction_time(t, x)
    assert_first_sample_after(an.reaction_time(t, x, x0=600.0), 0.02 + 12.0 / 2000.0, 2000.0)


def test_reaction_time_never_is_inf_and_no_post_trigger_raises():
    t = times(2.0, pretrigger=200)
    assert an.reaction_time(t, noisy(np.full(t.size, 600.0))) == math.inf
    pre = t[:150]
    with pytest.raises(AnalysisError, match="no valid samples at t >= 0"):
        an.reaction_time(pre, np.full(pre.size, 600.0), x0=600.0)


def test_release_time_of_an_exponential_release():
    t = times(5.0, pretrigger=200)
    f0, tau, latency = 890.0, 0.4, 0.02
    x = noisy(np.where(t < latency, f0, f0 * np.exp(-(t - latency) / tau)))
    instant = latency + tau * math.log(f0 / 15.0)
    assert_first_sample_after(an.release_time(t, x), instant, 15.0 / tau)
    assert an.max_after(t, x, start=an.release_time(t, x)) <= 15.0


def test_release_time_is_after_the_last_excursion_above_the_threshold():
    t = times(5.0, pretrigger=200)
    x = linear_release(t, f0=300.0, rate=1000.0, latency=0.0)
    x[(t >= 3.0) & (t < 3.05)] = 20.0  # a jerk above 15 N
    # first sample of the final run at or below 15 N: the first one after the jerk
    assert an.release_time(t, x) == pytest.approx(3.05)
    assert an.release_time(t, x, threshold=25.0) == pytest.approx((300.0 - 25.0) / 1000.0, abs=DT)


def test_release_time_inf_when_the_trace_ends_above():
    t = times(5.0, pretrigger=200)
    x = np.where(t < 4.0, 0.0, 300.0)
    assert an.release_time(t, x) == math.inf


def test_release_time_ignores_the_pretrigger():
    t = times(2.0, pretrigger=200)
    x = np.where(t < 0, 300.0, 3.0)  # above before the trigger only
    assert an.release_time(t, x) == 0.0
    x = nan_before(t, x, -0.05)
    assert an.release_time(t, x) == 0.0


def test_max_after():
    t = times(7.0, pretrigger=100)
    x = noisy(np.where((t >= 5.5) & (t < 5.6), 20.0, 0.0))
    assert an.max_after(t, x, start=5.0) == pytest.approx(20.0, abs=Z * SIGMA)
    assert an.max_after(t, x, start=5.6) <= Z * SIGMA
    with pytest.raises(AnalysisError, match="max after"):
        an.max_after(t, x, start=8.0)
    with pytest.raises(AnalysisError, match=r"needs samples from t=-1\.000"):
        an.max_after(t, x, start=-1.0)


def test_peak():
    t = times(6.0, pretrigger=100)
    # overshoot to 310 N, settling at 300 N
    x = noisy(np.interp(t, [0.0, 1.0, 1.2, 2.0], [0.0, 310.0, 300.0, 300.0]))
    assert an.peak(t, x) == pytest.approx(310.0, abs=Z * SIGMA)
    assert an.peak(t, x, start=2.0) == pytest.approx(300.0, abs=Z * SIGMA)
    assert an.peak(t, x, end=0.5) == pytest.approx(155.0, abs=Z * SIGMA)
    with pytest.raises(AnalysisError, match="trace ends at"):
        an.peak(t, x, start=2.0, end=10.0)
    with pytest.raises(AnalysisError, match="valid samples start at"):
        an.peak(t, nan_before(t, x, 0.0), start=-0.1)


# --- stops -------------------------------------------------------------------------------------


def check_braked_stop(*, x0, v, a, tol, sigma=SIGMA, seed=0, pretrigger=100):
    t = times(1.5, pretrigger=pretrigger)
    x = noisy(braked_stop(t, x0=x0, v=v, a=a), sigma=sigma, seed=seed)
    ts = v / a
    # The reading differs from the standstill by a (ts - t)^2 / 2. With noise on the sample and
    # on Xf (a 100-sample mean) up to e, the instant it comes within tol for good lies where that
    # distance is between tol + e and tol - e; the stop time is never before it (conservative)
    # and less than one sample period after it. Where e reaches tol (inversion: 0.05 deg is 5
    # sigma), noise alone may count as motion anywhere in the window: the ICD's per-sample
    # definition is noise-limited there.
    e = Z * sigma + mean_bound(100, sigma) if sigma else 0.0
    earliest = ts - math.sqrt(2 * (tol + e) / a)
    latest = ts - math.sqrt(2 * (tol - e) / a) + DT if e < tol else 1.0
    got = an.stop_time(t, x, tolerance=tol)
    assert earliest - ROUND <= got < latest + ROUND
    # X(0) is one noisy sample (t = 0 is on the grid), Xf a 100-sample mean
    assert an.stopping_distance(t, x) == pytest.approx(v * v / (2 * a), abs=e + ROUND)


def test_stop_time_and_distance_roller_estop():
    check_braked_stop(x0=300.0, v=60.0, a=1000.0, tol=0.1)


def test_stop_time_and_distance_inversion_estop():
    # 0.05 deg is 5 sigma of the INC's noise: only the noise-free trace pins the instant down
    check_braked_stop(x0=35.0, v=6.0, a=60.0, tol=0.05)
    check_braked_stop(x0=35.0, v=6.0, a=60.0, tol=0.05, sigma=0.0)


def test_stop_time_is_zero_when_nothing_moves():
    t = times(1.5, pretrigger=100)
    assert an.stop_time(t, noisy(np.full(t.size, 120.0)), tolerance=0.1) == 0.0
    # "differs by more than": a sample exactly the tolerance away does not count
    x = np.where(t == 0.2, 0.5, 0.25)
    assert an.stop_time(t, x, tolerance=0.25) == 0.0
    # the lone differing sample at 0.2 s: the reading is within tolerance again by the next one,
    # and the stop time is that later instant (the sample itself could be a period early)
    assert an.stop_time(t, x, tolerance=0.125) == pytest.approx(0.2 + DT)


def test_stop_time_needs_the_whole_window():
    t = times(0.8, pretrigger=100)
    with pytest.raises(
        AnalysisError, match=r"needs samples up to t=1\.000 s; trace ends at 0\.799"
    ):
        an.stop_time(t, np.ones(t.size), tolerance=0.1)
    t = times(1.5)[300:]  # starts at 0.3 s
    with pytest.raises(AnalysisError, match=r"stop time needs samples from t=0\.000"):
        an.stop_time(t, np.ones(t.size), tolerance=0.1)


def test_stopping_distance_window_end_and_interpolated_x0():
    # trigger between samples: X(0) interpolated on the line through the straddling samples
    t = times(11.0, pretrigger=100) + DT / 2
    v, a, creep = 6.0, 60.0, 0.05
    x = braked_stop(t, x0=35.0, v=v, a=a) + np.where(t > 1.0, creep * (t - 1.0), 0.0)
    # X(0) interpolated across the start of braking: a line through a parabola one sample wide
    # is off by at most a DT^2 / 8
    kink = a * DT**2 / 8
    assert an.stopping_distance(t, x, window_end=1.0) == pytest.approx(v * v / (2 * a), abs=kink)
    # over the whole trace the creep counts too (Xf: mean of (t_end - 0.1, t_end])
    t_end = t[-1]
    whole = v * v / (2 * a) + creep * (t_end - (0.1 - DT) / 2 - 1.0)
    assert an.stopping_distance(t, x) == pytest.approx(whole, abs=kink)


def test_stopping_distance_with_nan_pretrigger_uses_the_sample_at_zero():
    t = times(1.5, pretrigger=100)
    x = nan_before(t, braked_stop(t, x0=200.0, v=40.0, a=1000.0), 0.0)
    assert an.stopping_distance(t, x) == pytest.approx(40.0**2 / 2000.0)


def test_stopping_distance_needs_samples_around_zero():
    t = times(2.0)[500:]
    with pytest.raises(AnalysisError, match="X\\(0\\)"):
        an.stopping_distance(t, np.ones(t.size))


# --- settling ----------------------------------------------------------------------------------


def test_settled_value_of_a_first_order_approach():
    t = times(8.0, pretrigger=100)
    target, tau = 300.0, 0.4
    tol = max(0.03 * target, 4.0)
    clean = approach(t, target=target, tau=tau)
    x = noisy(clean)
    t_in = an.settle_instant(t, x, target=target, tolerance=tol)
    assert_first_sample_after(t_in, tau * math.log(target / tol), tol / tau)
    got = an.settled_value(t, x, target=target, tolerance=tol)
    # the clean signal rises monotonically: its window mean lies between its values at the ends
    lo = target * (1 - math.exp(-(t_in + 2.0) / tau))
    hi = target * (1 - math.exp(-(t_in + 4.0) / tau))
    n = round(2.0 * RATE) + 1
    assert lo - mean_bound(n) <= got <= hi + mean_bound(n)


def test_settled_value_start_skips_an_earlier_pass_through_the_band():
    t = times(10.0)
    # passes 300 on the way up to 600 (first step), then settles at 300
    x = np.interp(t, [0.0, 1.0, 2.0, 3.0], [0.0, 600.0, 600.0, 300.0])
    assert an.settle_instant(t, x, target=300.0, tolerance=9.0) == pytest.approx(
        (300.0 - 9.0) / 600.0, abs=DT
    )
    t_in = an.settle_instant(t, x, target=300.0, tolerance=9.0, start=2.0)
    assert t_in == pytest.approx(3.0 - 9.0 / 300.0, abs=DT)
    assert an.settled_value(t, x, target=300.0, tolerance=9.0, start=2.0) == pytest.approx(300.0)


def test_settled_value_errors():
    t = times(5.0)
    x = approach(t, target=300.0, tau=0.4)
    assert an.settle_instant(t, x, target=600.0, tolerance=9.0) == math.inf
    with pytest.raises(AnalysisError, match="never within 9 of 600"):
        an.settled_value(t, x, target=600.0, tolerance=9.0)
    # t_in = 0.4 ln(300/9) = 1.403 s: the window ends at 5.403 s, after the trace
    with pytest.raises(
        AnalysisError, match=r"settled value needs samples up to t=5\.40\d s; trace ends at 4\.999"
    ):
        an.settled_value(t, x, target=300.0, tolerance=9.0)


# --- crossings and widths ----------------------------------------------------------------------


def test_crossings_of_a_sampled_rectangle_are_at_the_first_sample_past_the_step():
    # a step may lie anywhere between the straddling samples: only the later one is never early
    # (this asserted the midpoint, half a sample early, before crossings were made conservative)
    t = times(3.0)
    x = np.where((t >= 1.0) & (t < 2.0), 100.0, 0.0)
    rise, fall = an.crossings(t, x, threshold=50.0)
    np.testing.assert_allclose(rise, [1.0])
    np.testing.assert_allclose(fall, [2.0])


def test_crossings_of_linear_ramps_are_exact():
    t = times(13.0, pretrigger=100)
    x = trapezoid_level(t, t0=1.0, base=0.0, top=200.0, ramp_time=4.0, hold=3.0)
    # up from 1 s to 5 s, down from 8 s to 12 s; linear interpolation of a line is exact
    rise, fall = an.crossings(t, x, threshold=100.0, hysteresis=20.0)
    np.testing.assert_allclose(rise, [3.0])
    np.testing.assert_allclose(fall, [10.0])
    rise, fall = an.crossings(t, x, threshold=50.0)
    np.testing.assert_allclose(rise, [2.0])
    np.testing.assert_allclose(fall, [11.0])


def test_crossings_hysteresis_rejects_noise_on_a_slow_ramp():
    t = times(6.0)
    step, ramp_time = 100.0, 2.0
    sigma = 0.01 * step  # 1 % of the step
    x = noisy(
        trapezoid_level(t, t0=1.0, base=0.0, top=step, ramp_time=ramp_time, hold=1.0), sigma=sigma
    )
    bare_rise, _ = an.crossings(t, x, threshold=50.0)
    assert bare_rise.size > 1  # without hysteresis the noise makes many crossings
    rise, fall = an.crossings(t, x, threshold=50.0, hysteresis=0.2 * step)
    slope = step / ramp_time
    jitter = Z * sigma / slope
    assert rise.size == 1 and fall.size == 1
    assert rise[0] == pytest.approx(2.0, abs=DT + jitter)
    assert fall[0] == pytest.approx(1.0 + 2.0 + 1.0 + 1.0, abs=DT + jitter)


def test_crossings_across_nan_gaps():
    t = times(4.0, pretrigger=200)
    x = nan_before(
        t, trapezoid_level(t, t0=1.0, base=0.0, top=100.0, ramp_time=0.5, hold=1.0), -0.1
    )
    x[(t >= 1.6) & (t < 2.0)] = np.nan  # a gap inside the high level: no crossing
    rise, fall = an.crossings(t, x, threshold=50.0, hysteresis=10.0)
    np.testing.assert_allclose(rise, [1.25])
    np.testing.assert_allclose(fall, [2.75])
    x[(t >= 2.6) & (t < 2.9)] = np.nan  # a gap over the falling crossing: bridged
    rise, fall = an.crossings(t, x, threshold=50.0, hysteresis=10.0)
    np.testing.assert_allclose(rise, [1.25])
    assert fall.size == 1 and 2.6 - DT <= fall[0] <= 2.9


def test_crossings_first_level_is_not_a_crossing():
    t = times(2.0)
    x = np.where(t < 1.0, 100.0, 0.0)
    rise, fall = an.crossings(t, x, threshold=50.0)
    assert rise.size == 0
    np.testing.assert_allclose(fall, [1.0])
    with pytest.raises(AnalysisError, match="hysteresis"):
        an.crossings(t, x, threshold=50.0, hysteresis=-1.0)


def test_level_widths_intermittent_traction():
    # TT-PERF-05: 300 N, rest 50 %, 50 N/s, hold 5 s, rest 5 s, 3 cycles
    t = times(60.0)
    rate = 50.0
    x = noisy(
        intermittent(t, hold_level=300.0, rest_level=150.0, rate=rate, hold=5.0, rest=5.0, cycles=3)
    )
    threshold = (300.0 + 150.0) / 2
    # both crossings of a width carry the noise's time jitter
    tol = 2 * Z * SIGMA / rate
    holds = an.level_widths(t, x, threshold=threshold, hysteresis=10.0)
    rests = an.level_widths(t, x, threshold=threshold, hysteresis=10.0, high=False)
    ramp_time = 150.0 / rate
    # the first hold is entered from 0 N; every hold and rest is its duration plus one ramp
    np.testing.assert_allclose(holds, [5.0 + ramp_time] * 3, atol=tol)
    # the rest after the third hold ends in the release to 0 N, never crossing back up: it is
    # not a complete level
    np.testing.assert_allclose(rests, [5.0 + ramp_time] * 2, atol=tol)


def test_level_widths_drop_incomplete_levels():
    t = times(10.0)
    # starts high (no entry seen), one complete level, ends high (no exit seen)
    x = np.where((t < 1.0) | ((t >= 3.0) & (t < 5.0)) | (t >= 8.0), 10.0, 0.0)
    np.testing.assert_allclose(an.level_widths(t, x, threshold=5.0), [2.0])
    np.testing.assert_allclose(an.level_widths(t, x, threshold=5.0, high=False), [2.0, 3.0])
    assert an.level_widths(t, np.zeros(t.size), threshold=5.0).size == 0


# --- rates -------------------------------------------------------------------------------------


def test_ramp_rate_rising_and_falling():
    t = times(20.0, pretrigger=100)
    up = noisy(ramp(t, t0=0.5, x0=0.0, x1=300.0, rate=50.0))
    bound = slope_bound(0.8 * 300.0 / 50.0)
    assert an.ramp_rate(t, up, start_level=0.0, end_level=300.0) == pytest.approx(50.0, abs=bound)
    down = noisy(ramp(t, t0=0.5, x0=300.0, x1=0.0, rate=50.0))
    assert an.ramp_rate(t, down, start_level=300.0, end_level=0.0) == pytest.approx(
        -50.0, abs=bound
    )


def test_move_rate_of_an_inversion_move():
    # IT-PERF-02: 0 -> 60 deg at 3 deg/s, 10 deg/s2: the 10-90 % segment is all top speed
    t = times(25.0, pretrigger=100)
    x = noisy(move(t, t0=0.2, x0=0.0, x1=60.0, v=3.0, a=10.0))
    got = an.move_rate(t, x, start_level=0.0, end_level=60.0)
    assert got == pytest.approx(3.0, abs=slope_bound(0.8 * 60.0 / 3.0))
    assert got == an.ramp_rate(t, x, start_level=0.0, end_level=60.0)


def test_ramp_rate_start_picks_a_later_ramp():
    t = times(30.0)
    x = np.interp(t, [0.0, 6.0, 11.0, 14.0, 19.0, 25.0], [0.0, 300.0, 300.0, 150.0, 150.0, 300.0])
    # the trace starts at 0 N, beyond the end of the 300 -> 150 N step: still found
    assert an.ramp_rate(t, x, start_level=300.0, end_level=150.0) == pytest.approx(-50.0)
    # 150 -> 300 N: the first ramp (0 -> 300 N) passes 10 % and 90 % of it too
    assert an.ramp_rate(t, x, start_level=150.0, end_level=300.0) == pytest.approx(50.0)
    assert an.ramp_rate(t, x, start_level=150.0, end_level=300.0, start=15.0) == pytest.approx(
        150.0 / 6.0
    )


def test_ramp_rate_errors():
    t = times(10.0)
    x = ramp(t, t0=1.0, x0=0.0, x1=200.0, rate=50.0)
    with pytest.raises(AnalysisError, match="never covers 90%"):
        an.ramp_rate(t, x, start_level=0.0, end_level=300.0)
    with pytest.raises(AnalysisError, match="never covers 10%"):
        an.ramp_rate(t, x, start_level=0.0, end_level=-300.0)
    with pytest.raises(AnalysisError, match="start of the move is missing"):
        an.ramp_rate(t[4000:], x[4000:], start_level=0.0, end_level=200.0)
    with pytest.raises(AnalysisError, match="equal"):
        an.ramp_rate(t, x, start_level=5.0, end_level=5.0)
    coarse = times(10.0, rate=10.0)  # 10 Hz: one sample between 10 % and 90 % of a 0.1 s step
    with pytest.raises(AnalysisError, match="only one sample"):
        an.ramp_rate(
            coarse,
            ramp(coarse, t0=1.0, x0=0.0, x1=10.0, rate=100.0),
            start_level=0.0,
            end_level=10.0,
        )


# --- faults ------------------------------------------------------------------------------------


def test_fault_time_from_the_last_beat_that_landed_before_the_fault():
    # the table faulted on the writer's last beat before the test's own last beat landed
    assert an.fault_time(5600, 5700, 5000) == pytest.approx(0.6)
    assert an.fault_time(5900, 5700, 5000) == pytest.approx(0.2)  # the own beat landed first
    assert an.fault_time(5900, 5700, None) == pytest.approx(0.2)
    with pytest.raises(an.AnalysisError):
        an.fault_time(4000, 5700, 5000)


def test_fault_time():
    assert an.fault_time(123_950, 123_400) == pytest.approx(0.55)
    assert an.fault_time(5000, 5000) == 0.0
    with pytest.raises(AnalysisError, match="no fault is latched"):
        an.fault_time(0, 5000)
    with pytest.raises(AnalysisError, match="before the UPTIME_MS"):
        an.fault_time(4000, 5000)


# --- roller ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "end", "v"), [(50.0, 550.0, 60.0), (200.0, 400.0, 20.0)])
def test_roller_cycles(start, end, v):
    period = roller_period(start, end, v)
    t0 = 0.5
    t = times(t0 + 3.6 * period, pretrigger=100)
    x = nan_before(t, noisy(roller(t, start=start, end=end, v=v, t0=t0)), -0.05)
    mid = (start + end) / 2
    bounds = an.cycle_boundaries(t, x, midpoint=mid, hysteresis=10.0)
    # a boundary is where the outward move passes the midpoint, halfway through the move
    first = t0 + ((end - start) / v + v / 200.0) / 2
    jitter_t = Z * SIGMA / v  # noise on the interpolated crossing, at speed v
    np.testing.assert_allclose(bounds, first + period * np.arange(4), atol=jitter_t)
    periods = an.cycle_periods(bounds)
    np.testing.assert_allclose(periods, [period] * 3, atol=2 * jitter_t)
    assert an.jitter(periods) <= 2 * jitter_t

    far, near = an.reversal_points(t, x, midpoint=mid, hysteresis=10.0)
    # complete excursions: 3 above the midpoint (the 4th is cut by the trace's end), 3 below
    # between them (the park before the first boundary is not one)
    assert far.size == 3 and near.size == 3
    np.testing.assert_allclose(far, end, atol=reversal_bound(RATE))
    np.testing.assert_allclose(near, start, atol=reversal_bound(RATE))

    speeds = an.straight_speeds(t, x, low=start + 50.0, high=end - 50.0)
    assert speeds.size == 7  # 4 outward, 3 back
    bound = slope_bound((end - start - 100.0) / v)
    np.testing.assert_allclose(speeds, v * np.array([1, -1, 1, -1, 1, -1, 1]), atol=bound)


def test_jitter_is_the_sample_standard_deviation():
    assert an.jitter([1.0, 2.0, 3.0]) == pytest.approx(1.0)
    with pytest.raises(AnalysisError, match="at least 2 periods"):
        an.jitter([18.0])
    with pytest.raises(AnalysisError, match="at least 2 periods"):
        an.jitter(an.cycle_periods([1.0, 2.0]))


def test_straight_speeds_skip_incomplete_traversals():
    t = times(10.0)
    # into the straight and back out the same side: no traversal
    x = np.interp(t, [0.0, 2.0, 4.0, 6.0, 8.0], [50.0, 300.0, 50.0, 550.0, 550.0])
    np.testing.assert_allclose(an.straight_speeds(t, x, low=100.0, high=500.0), [250.0])
    with pytest.raises(AnalysisError, match="low < high"):
        an.straight_speeds(t, x, low=500.0, high=100.0)


# --- inversion ---------------------------------------------------------------------------------


def test_hold_interval_of_an_inversion_hold():
    # IT-PERF-04: ANGLE_SET 45, RATE 3 deg/s, 10 deg/s2, HOLD_S 10
    t = times(45.0, pretrigger=100)
    v, a, target, band = 3.0, 10.0, 45.0, 0.5
    move_time = target / v + v / a
    t_back = 0.5 + move_time + 10.0
    clean = move(t, t0=0.5, x0=0.0, x1=target, v=v, a=a) - move_distance(
        t - t_back, d=target, v=v, a=a
    )
    x = noisy(clean)
    # within the band for the move's last `edge` s, and as long into the return
    edge = time_to_go(band, v=v, a=a)
    jitter = Z * SIGMA / min(a * edge, v)  # noise over the speed where the band's edge is crossed
    start, end = an.hold_interval(t, x, target=target)
    assert start == pytest.approx(0.5 + move_time - edge + 1.0, abs=DT + jitter)
    assert end == pytest.approx(t_back + edge - 1.0, abs=DT + jitter)
    with pytest.raises(AnalysisError, match=r"never comes within 0\.5 of 60"):
        an.hold_interval(t, x, target=60.0)
    with pytest.raises(AnalysisError, match="empty"):
        an.hold_interval(t, x, target=target, margin=8.0)


# --- properties --------------------------------------------------------------------------------

seeds = st.integers(0, 2**32 - 1)


@settings(deadline=None, max_examples=200)
@given(
    f0=st.floats(20.0, 2000.0),
    rate=st.floats(1000.0, 5000.0),
    latency=st.floats(0.0, 0.2),
    pretrigger=st.integers(100, 400),
    seed=seeds,
)
def test_property_reaction_and_release_of_a_linear_release(f0, rate, latency, pretrigger, seed):
    t = times(3.0, pretrigger=pretrigger)
    x = noisy(linear_release(t, f0=f0, rate=rate, latency=latency), seed=seed)
    drop = max(0.02 * f0, 5.0)
    assert_first_sample_after(an.reaction_time(t, x), latency + drop / rate, rate)
    release = an.release_time(t, x)
    assert_first_sample_after(release, latency + (f0 - 15.0) / rate, rate)
    assert an.max_after(t, x, start=release) <= 15.0


@settings(deadline=None, max_examples=100)
@given(
    latency=st.floats(0.05, 0.2),
    shift=st.integers(-50, 50),
    pretrigger=st.integers(150, 400),
    padding=st.integers(0, 50),
)
def test_property_time_results_follow_the_trigger(latency, shift, pretrigger, padding):
    """The same physical release, triggered `shift` samples later and with any pretrigger count
    and NaN padding: every time result moves by exactly the shift."""
    f0, rate = 600.0, 2000.0
    n_trig = 500  # sample index of the reference trigger
    n = np.arange(4000)
    physical = linear_release((n - n_trig) / RATE, f0=f0, rate=rate, latency=latency)
    ref_t = (n - n_trig) / RATE
    ref = (an.reaction_time(ref_t, physical), an.release_time(ref_t, physical))

    trig = n_trig + shift
    keep = n >= trig - pretrigger  # the acquisition keeps `pretrigger` samples before it
    t = (n[keep] - trig) / RATE
    x = physical[keep].copy()
    x[:padding] = np.nan  # not yet collected when the trigger came
    got = (an.reaction_time(t, x), an.release_time(t, x))
    np.testing.assert_allclose(got, np.array(ref) - shift / RATE, rtol=0, atol=1e-9)


@settings(deadline=None, max_examples=200)
@given(
    base=st.floats(0.0, 100.0),
    height=st.floats(10.0, 1000.0),
    ramp_time=st.one_of(st.just(0.0), st.floats(0.01, 2.0)),
    holds=st.lists(st.floats(0.5, 5.0), min_size=1, max_size=3),
    gap=st.floats(0.5, 3.0),
    t0=st.floats(0.0, 1.0),
    seed=seeds,
)
def test_property_level_widths_of_trapezoids(base, height, ramp_time, holds, gap, t0, seed):
    starts = t0 + np.concatenate([[0.0], np.cumsum([h + 2 * ramp_time + gap for h in holds])[:-1]])
    t = times(starts[-1] + holds[-1] + 2 * ramp_time + 1.0, pretrigger=100)
    clean = base + sum(
        trapezoid_level(t, t0=s, base=0.0, top=height, ramp_time=ramp_time, hold=h)
        for s, h in zip(starts, holds, strict=True)
    )
    sigma = 0.01 * height
    x = nan_before(t, noisy(clean, sigma=sigma, seed=seed), -0.05)
    widths = an.level_widths(t, x, threshold=base + height / 2, hysteresis=0.2 * height)
    # per crossing: within a sample, plus the noise's time jitter on a ramp
    tol = 2 * (DT + Z * sigma * ramp_time / height)
    np.testing.assert_allclose(widths, np.array(holds) + ramp_time, atol=tol)
    gaps = an.level_widths(t, x, threshold=base + height / 2, hysteresis=0.2 * height, high=False)
    np.testing.assert_allclose(gaps, [gap + ramp_time] * (len(holds) - 1), atol=tol)


@settings(deadline=None, max_examples=200)
@given(
    x0=st.floats(-100.0, 100.0),
    step=st.floats(10.0, 500.0),
    falling=st.booleans(),
    slope=st.floats(10.0, 1000.0),
    seed=seeds,
)
def test_property_ramp_rate_recovers_the_slope(x0, step, falling, slope, seed):
    x1 = x0 - step if falling else x0 + step
    duration = step / slope
    t = times(duration + 1.0, pretrigger=100)
    x = noisy(ramp(t, t0=0.3, x0=x0, x1=x1, rate=slope), seed=seed)
    got = an.ramp_rate(t, x, start_level=x0, end_level=x1)
    expected = -slope if falling else slope
    assert got == pytest.approx(expected, abs=slope_bound(0.8 * duration - DT))


@settings(deadline=None, max_examples=60)
@given(
    start=st.floats(0.0, 100.0),
    travel=st.floats(150.0, 500.0),
    v=st.floats(10.0, 60.0),
    seed=seeds,
)
def test_property_roller_periods_reversals_speeds(start, travel, v, seed):
    rate = 100.0  # long runs: 10 ms samples keep them small
    end = start + travel
    period = roller_period(start, end, v)
    t = times(0.5 + 3.6 * period, pretrigger=10, rate=rate)
    x = noisy(roller(t, start=start, end=end, v=v, t0=0.5), seed=seed)
    mid = (start + end) / 2
    periods = an.cycle_periods(an.cycle_boundaries(t, x, midpoint=mid, hysteresis=10.0))
    # each boundary carries the noise's time jitter at speed v
    np.testing.assert_allclose(periods, [period] * 3, atol=2 * Z * SIGMA / v)
    far, near = an.reversal_points(t, x, midpoint=mid, hysteresis=10.0)
    np.testing.assert_allclose(far, end, atol=reversal_bound(rate))
    np.testing.assert_allclose(near, start, atol=reversal_bound(rate))
    speeds = an.straight_speeds(t, x, low=start + 50.0, high=end - 50.0)
    bound = slope_bound((travel - 100.0) / v, rate=rate)
    np.testing.assert_allclose(np.abs(speeds), v, atol=bound)


@settings(deadline=None, max_examples=200)
@given(
    data=st.data(),
    roller_table=st.booleans(),
    x0=st.floats(20.0, 500.0),
    seed=seeds,
)
def test_property_constant_deceleration_stop(data, roller_table, x0, seed):
    # roller position: 0.1 mm; inversion angle: 0.05 deg
    tol, speeds = (0.1, st.floats(10.0, 60.0)) if roller_table else (0.05, st.floats(1.0, 6.0))
    v = data.draw(speeds)
    # the stop must be past the tolerance (else stop time is 0) and end well inside the window
    distance = data.draw(st.floats(3 * tol, v / 4))
    a = v * v / (2 * distance)
    check_braked_stop(x0=x0, v=v, a=a, tol=tol, seed=seed)
    check_braked_stop(x0=x0, v=v, a=a, tol=tol, sigma=0.0)


@settings(deadline=None, max_examples=100)
@given(creep=st.floats(-0.05, 0.05), start=st.floats(0.0, 2.0), length=st.floats(0.2, 10.0))
def test_property_drift_of_a_line(creep, start, length):
    t = times(start + length + 0.5, pretrigger=100)
    x = 45.0 + creep * t
    end = start + length
    # both block means sit at their block's sample midpoint, (block - DT)/2 into the block
    got = an.drift(t, x, start=start, end=end)
    # the blocks' sample sets can differ by one sample from the ideal, moving a mean by DT/2
    assert got == pytest.approx(creep * (length - 0.1), abs=abs(creep) * DT + 1e-12)


# --- conservative timing by construction ---------------------------------------------------------
# Noise-free signals sampled at a random phase: every event time lies in [truth, truth + one
# sample period), exactly at the truth where the four samples around the crossing lie on a line.

phases = st.floats(0.0, 1.0, exclude_max=True)


def phased_times(duration, *, phase, rate=RATE, pretrigger=100):
    """Sample times whose grid is offset by `phase` sample periods from the trigger (a real
    instrument's grid is the trigger's; offsetting the physics is the same thing)."""
    return times(duration, pretrigger=pretrigger, rate=rate) + phase / rate


@settings(deadline=None, max_examples=300)
@given(
    f0=st.floats(50.0, 2000.0),
    rate=st.floats(500.0, 5000.0),
    latency=st.floats(0.0, 0.05),
    phase=phases,
    sample_rate=st.sampled_from([100.0, 200.0, 1000.0]),
)
def test_property_reaction_and_release_are_never_early(f0, rate, latency, phase, sample_rate):
    dt = 1.0 / sample_rate
    t = phased_times(1.0 + f0 / rate, phase=phase, rate=sample_rate, pretrigger=30)
    x = linear_release(t, f0=f0, rate=rate, latency=latency)
    reaction = latency + max(0.02 * f0, 5.0) / rate
    got = an.reaction_time(t, x, x0=f0)
    assert reaction - 1e-9 <= got < reaction + dt
    release = latency + (f0 - 15.0) / rate
    got = an.release_time(t, x)
    assert release - 1e-9 <= got < release + dt


def test_reaction_time_on_a_straight_release_is_exact():
    # the bend out of the hold is two samples before the crossing: the chord is the line itself
    t = times(1.0, pretrigger=100, rate=200.0) + 0.0013
    x = linear_release(t, f0=890.0, rate=2000.0, latency=0.010)
    assert an.reaction_time(t, x, x0=890.0) == pytest.approx(0.010 + 17.8 / 2000.0, abs=1e-12)


def test_reaction_time_across_the_bend_is_late_not_early():
    # hold at 100 N until 10 ms, then 2000 N/s: 5 N below at 12.5 ms. At 100 Hz with samples at
    # 9.5 ms (still 100 N) and 19.5 ms (81 N) the chord says 12.1 ms, early; the late crossing
    # cannot place the bend, so it keeps the later sample
    t = times(0.5, pretrigger=20, rate=100.0) + 0.0095
    x = linear_release(t, f0=100.0, rate=2000.0, latency=0.010)
    chord = 0.0095 + 0.010 * 5.0 / 19.0
    assert chord < 0.0125
    assert an.reaction_time(t, x, x0=100.0) == pytest.approx(0.0195)


@settings(deadline=None, max_examples=300)
@given(
    v=st.floats(10.0, 60.0),
    decel=st.floats(500.0, 3000.0),
    phase=phases,
    sample_rate=st.sampled_from([100.0, 140.0, 1000.0]),
)
def test_property_stop_time_is_never_early(v, decel, phase, sample_rate):
    tol = 0.1
    ts = v / decel
    truth = ts - math.sqrt(2 * tol / decel)
    if truth <= 0:
        return  # the carriage never differs from its standstill by more than tol
    t = phased_times(1.5, phase=phase, rate=sample_rate)
    x = braked_stop(t, x0=300.0, v=v, a=decel)
    got = an.stop_time(t, x, tolerance=tol)
    assert truth - 1e-9 <= got < truth + 1.0 / sample_rate


@settings(deadline=None, max_examples=200)
@given(
    height=st.floats(10.0, 1000.0),
    ramp_time=st.one_of(st.just(0.0), st.floats(0.001, 2.0)),
    hold=st.floats(0.5, 5.0),
    t0=st.floats(0.2, 1.0),
    sample_rate=st.sampled_from([20.0, 50.0, 200.0]),
)
def test_property_crossings_late_and_widths_within_one_period(
    height, ramp_time, hold, t0, sample_rate
):
    dt = 1.0 / sample_rate
    t = times(t0 + hold + 2 * ramp_time + 1.0, pretrigger=10, rate=sample_rate)
    x = trapezoid_level(t, t0=t0, base=0.0, top=height, ramp_time=ramp_time, hold=hold)
    rise, fall = an.crossings(t, x, threshold=height / 2)
    up, down = t0 + ramp_time / 2, t0 + ramp_time + hold + ramp_time / 2
    assert up - 1e-9 <= rise[0] < up + dt
    assert down - 1e-9 <= fall[0] < down + dt
    (width,) = an.level_widths(t, x, threshold=height / 2)
    assert abs(width - (hold + ramp_time)) < dt


def test_first_crossing_of_a_lift_lowering_from_the_trigger():
    # RT patient stop: the lift lowers from t = 0 at 10 mm/s; 0.5 mm below its level at 50 ms
    t = times(1.0, pretrigger=20, rate=140.0)
    lift = np.where(t < 0, 15.0, np.maximum(15.0 - 10.0 * t, 0.0))
    got = an.first_crossing(t, lift, level=14.5)
    assert 0.05 - 1e-9 <= got < 0.05 + 1e-9  # on a straight line: exact
    assert an.first_crossing(t, lift, level=20.0, below=False) == math.inf
    assert an.first_crossing(t, lift, level=16.0) == 0.0  # below from before the start on
    with pytest.raises(AnalysisError, match="no valid samples at t >= 2"):
        an.first_crossing(t, lift, level=14.5, start=2.0)


def test_release_time_of_a_convex_decay_is_never_early():
    t = times(5.0, pretrigger=20, rate=200.0) + 0.0017
    f0, tau, latency = 890.0, 0.4, 0.02
    x = np.where(t < latency, f0, f0 * np.exp(-(t - latency) / tau))
    instant = latency + tau * math.log(f0 / 15.0)
    assert instant <= an.release_time(t, x) < instant + 1.0 / 200.0
