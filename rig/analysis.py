"""Trace -> quantity: the ICD's definitions of reaction time, width, period ... in pure numpy.

A trace is two 1-D arrays: ``t``, seconds of device time relative to the trigger instant
(strictly increasing), and ``x``, the readings (NaN marks a missing sample, e.g. pre-trigger
padding; NaN samples are ignored everywhere). Every function takes ``t, x`` first and keyword
parameters after. A time of an event that never happens is ``math.inf``, so a verdict against a
maximum fails honestly; a quantity the data cannot give (empty window, a window the trace does not
cover, no valid samples) raises :class:`AnalysisError` saying what was missing.

A "100 ms mean" is the mean of one of the consecutive ``block``-long blocks counted from the start
of the interval: block k covers ``[start + k*block, start + (k+1)*block)``.

Interpretations (where ``shared/icd/requirements.md`` leaves a choice):

- Times of events are conservative by construction (docs/icd-readings.md C1-C4): each is a
  threshold crossing placed between the two samples that straddle it, on the side a verdict
  against the limit cannot profit from. :func:`_late_crossing` gives an instant never before the
  true crossing and not after the later straddling sample, so the error lies in [0, one sample
  period) for any signal whose curvature keeps one sign over the four samples around the
  crossing (a straight line, a ramp that bends into or out of a level, a brake to rest, a step);
  it is exact on a straight segment. Per quantity: reaction time, release time, the first
  crossing of a level (a lift drop) and stop time may come out late, never early; each crossing
  of a width or a cycle boundary comes out late by less than a period, so a width or a period
  (the difference of two such crossings) is within one sample period either way. X(0) of a
  stopping distance is interpolated at t = 0 (the ICD puts a sample there); a stop decelerates
  from t = 0, so the chord across it lies behind the motion and the distance can only come out
  long.
- "Below" is strict (``<``), "at or below" is ``<=``, "differs by more than" is ``>``, "within"
  is ``<=``.
- A window is covered when its first and last valid samples lie within 1.5 sample periods (the
  median sample spacing) of its ends. Whenever a caller names a window bound the trace must reach
  it; a peak or mean over part of the asked-for window would flatter an "at most" verdict.
- Interval conventions: level before ``[-w, 0)``; final level ``(end - w, end]``; blocks
  ``[a, a + block)``; drift's end block ``[end - block, end)``; stop-time window and settled-value
  window closed at both ends. Boundaries are compared with a 1 ns slack so that a sample lying on
  a boundary up to floating-point rounding falls on the same side every time.
- Stop time is 0.0 when no sample of the window differs from Xf by more than the tolerance.
  Otherwise it is the late crossing after the last sample that differs (the instant the reading
  comes within the tolerance for good): the sample itself would be up to one period early. It is
  judged per sample, as the ICD says; note that the inversion's 0.05 deg is about 5 sigma of the
  INC's noise, so a lone noise sample after the stop can (rarely) count as motion.
- Settled value: the first instant within tolerance is searched over the whole trace unless the
  caller gives ``start`` (default ``-inf``).
- Release time: only samples at ``t >= 0`` count; it is the late crossing into the final run of
  samples at or below the threshold; a trace already at or below the threshold from the trigger
  on gives the crossing from the sample before it, or 0.0 (never a time before the trigger).
- Ramp / move rate: the 10 % instant is the first sample that has covered 10 % of the step
  after one that had not (so a trace that starts beyond the step, e.g. at 0 N before a
  300 -> 150 N ramp down, still finds it); the 90 % instant is the first sample from there on
  that has covered 90 %; the slope is fitted over the samples from one to the other inclusive. A
  trace that is past 10 % from its first valid sample on raises: the start of the move was not
  seen. ``start`` picks a later step.
- Drift is signed (end minus start); the caller compares its magnitude.
- Crossings bridge NaN gaps: a crossing inside a gap is interpolated between the valid samples on
  either side. With hysteresis, levels alternate strictly, so each rising crossing is followed by
  a falling one. Which widths a requirement judges (e.g. the first traction hold, entered from
  0 N, is not judged) is the caller's choice: ``level_widths`` returns every complete level.
- Hold interval: "last leaves the band" is the last sample inside the band; if the trace ends
  inside the band the interval ends ``margin`` before the trace does.
- Fault time: equal uptimes give 0.0; UPTIME_MS wrap-around (49.7 days) is not handled.
- Jitter is the sample standard deviation (ddof=1): the periods are a sample of the unit's
  cycle-to-cycle variation, and with the 3 periods a requirement measures, ddof=1 is the unbiased
  variance estimate and the larger, i.e. conservative, figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "AnalysisError",
    "block_means",
    "crossings",
    "cycle_boundaries",
    "cycle_periods",
    "drift",
    "fault_time",
    "final_level",
    "first_crossing",
    "hold_interval",
    "jitter",
    "level_before",
    "level_widths",
    "max_after",
    "max_excursion",
    "move_rate",
    "peak",
    "ramp_rate",
    "reaction_time",
    "release_time",
    "reversal_points",
    "settle_instant",
    "settled_value",
    "stop_time",
    "stopping_distance",
    "straight_speeds",
]

FloatArray = NDArray[np.float64]

# Slack on time comparisons: far below any sample period (10 kHz max), far above the rounding of
# sample times computed as (i - PRETrigger) / RATE.
_EPS = 1e-9
# How far (in sample periods) the valid samples may stop short of a window's end.
_COVER = 1.5


class AnalysisError(ValueError):
    """The quantity cannot be computed from this trace; the message says what was missing."""


@dataclass(frozen=True)
class _Trace:
    t: FloatArray  # times of the valid (non-NaN) samples
    x: FloatArray
    dt: float  # nominal sample period: median spacing of all samples


def _prepare(t: ArrayLike, x: ArrayLike) -> _Trace:
    ta = np.asarray(t, dtype=float)
    xa = np.asarray(x, dtype=float)
    if ta.ndim != 1 or xa.ndim != 1:
        raise AnalysisError(f"t and x must be 1-D; got shapes {ta.shape} and {xa.shape}")
    if ta.shape != xa.shape:
        raise AnalysisError(f"t and x differ in length: {ta.size} and {xa.size}")
    if not np.all(np.isfinite(ta)):
        raise AnalysisError("t contains NaN or infinite times")
    d = np.diff(ta)
    if np.any(d <= 0):
        i = int(np.argmax(d <= 0))
        raise AnalysisError(f"t is not strictly increasing at sample {i + 1} (t={ta[i + 1]:.6g} s)")
    ok = ~np.isnan(xa)
    if not np.any(ok):
        raise AnalysisError(f"trace has no valid samples ({xa.size} samples, all NaN)")
    dt = float(np.median(d)) if d.size else 0.0
    return _Trace(ta[ok], xa[ok], dt)


def _fmt(v: float) -> str:
    return f"{v:.3f}" if math.isfinite(v) else ("-inf" if v < 0 else "inf")


def _span(
    tr: _Trace,
    lo: float,
    hi: float,
    *,
    what: str,
    lo_closed: bool = True,
    hi_closed: bool = False,
    check_lo: bool = True,
    check_hi: bool = True,
) -> slice:
    """Valid samples in the interval from lo to hi; raise unless there are some covering it."""
    t = tr.t
    i0 = (
        int(np.searchsorted(t, lo - _EPS, side="left"))
        if lo_closed
        else int(np.searchsorted(t, lo + _EPS, side="right"))
    )
    i1 = (
        int(np.searchsorted(t, hi + _EPS, side="right"))
        if hi_closed
        else int(np.searchsorted(t, hi - _EPS, side="left"))
    )
    interval = f"{'[' if lo_closed else '('}{_fmt(lo)}, {_fmt(hi)}{']' if hi_closed else ')'} s"
    if hi > t[-1] + _COVER * tr.dt + _EPS and check_hi:
        raise AnalysisError(
            f"{what} needs samples up to t={_fmt(hi)} s; trace ends at {_fmt(t[-1])} s"
        )
    if lo < t[0] - _COVER * tr.dt - _EPS and check_lo:
        raise AnalysisError(
            f"{what} needs samples from t={_fmt(lo)} s; valid samples start at {_fmt(t[0])} s"
        )
    if i1 <= i0:
        raise AnalysisError(
            f"{what} has no valid samples in {interval}; "
            f"valid samples span {_fmt(t[0])} to {_fmt(t[-1])} s"
        )
    tol = _COVER * tr.dt + _EPS
    if check_lo and t[i0] - lo > tol:
        raise AnalysisError(
            f"{what} needs valid samples from t={_fmt(lo)} s; "
            f"the first in {interval} is at {_fmt(t[i0])} s"
        )
    if check_hi and hi - t[i1 - 1] > tol:
        raise AnalysisError(
            f"{what} needs valid samples up to t={_fmt(hi)} s; "
            f"the last in {interval} is at {_fmt(t[i1 - 1])} s"
        )
    return slice(i0, i1)


def _slope(t: FloatArray, x: FloatArray) -> float:
    """Least-squares slope of x against t (centred, so large offsets do not cost precision)."""
    tc = t - t.mean()
    return float(np.dot(tc, x - x.mean()) / np.dot(tc, tc))


def _late_crossing(t: FloatArray, y: FloatArray, j: ArrayLike) -> FloatArray:
    """Conservative (late) instants at which y falls through 0 between samples j-1 and j.

    `y` is signed so that the event is y going from y[j-1] >= 0 to y[j] < 0 (or > 0 to <= 0):
    e.g. ``x - level`` for "x falls below level", ``level - x`` for "x rises to level". The
    true crossing t* lies in (t[j-1], t[j]]. Three straight lines estimate it: the chord from
    sample j-1 to j, the secant through samples j-2, j-1 carried forward, and the secant through
    samples j, j+1 carried back. Where y keeps the sign of its curvature over those samples, the
    chord crosses late on a convex y and the secants late on a concave one (a secant lies above
    a concave function outside its interval, the chord below it inside): the latest of the three,
    capped at t[j], is never before t* and always within one sample period of it, and exact on a
    straight line. A secant that does not head through 0 cannot say where y crosses: forward it
    counts as never (a step or the bend out of a level: the cap t[j] is what is known), backward
    it is left out. `j` must be >= 1.
    """
    jj = np.atleast_1d(np.asarray(j, dtype=np.intp))
    n = t.size
    ta, tb, ya, yb = t[jj - 1], t[jj], y[jj - 1], y[jj]
    est = ta + ya * (tb - ta) / (ya - yb)
    # the secant of the two samples before, carried forward to 0
    jp = np.maximum(jj - 2, 0)
    tp, yp = t[jp], y[jp]
    down = (jj >= 2) & (ya < yp)
    slope_p = np.where(down, (ya - yp) / np.where(down, ta - tp, 1.0), -1.0)
    fwd = np.where(down, ta - ya / slope_p, np.inf)
    # the secant of the two samples after, carried back to 0
    jn = np.minimum(jj + 1, n - 1)
    tn, yn = t[jn], y[jn]
    down = (jj + 1 < n) & (yn < yb)
    slope_n = np.where(down, (yn - yb) / np.where(down, tn - tb, 1.0), -1.0)
    back = np.where(down, tb - yb / slope_n, -np.inf)
    return np.minimum(tb, np.maximum(est, np.maximum(fwd, back)))


def _pairs(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Pair each event of a with the b event that follows it; a and b alternate in time."""
    if a.size and b.size and b[0] < a[0]:
        b = b[1:]
    n = min(a.size, b.size)
    return a[:n], b[:n]


def _mean_block(tr: _Trace, a: float, block: float, what: str) -> float:
    return float(tr.x[_span(tr, a, a + block, what=what)].mean())


def _level_before(tr: _Trace, window: float) -> float:
    return float(tr.x[_span(tr, -window, 0.0, what="level before")].mean())


def _final_level(tr: _Trace, end: float | None, window: float) -> float:
    e = float(tr.t[-1]) if end is None else end
    sl = _span(tr, e - window, e, what="final level", lo_closed=False, hi_closed=True)
    return float(tr.x[sl].mean())


def _settle_instant(tr: _Trace, target: float, tolerance: float, start: float) -> float:
    i0 = int(np.searchsorted(tr.t, start - _EPS, side="left"))
    inside = np.flatnonzero(np.abs(tr.x[i0:] - target) <= tolerance)
    return float(tr.t[i0 + inside[0]]) if inside.size else math.inf


def _first_at_or_after_trigger(tr: _Trace, what: str) -> int:
    i0 = int(np.searchsorted(tr.t, -_EPS, side="left"))
    if i0 == tr.t.size:
        raise AnalysisError(f"{what}: no valid samples at t >= 0; trace ends at {_fmt(tr.t[-1])} s")
    return i0


# --- levels and blocks -----------------------------------------------------------------------


def level_before(t: ArrayLike, x: ArrayLike, *, window: float = 0.1) -> float:
    """Level before (X0): mean of the valid samples with -window <= t < 0."""
    return _level_before(_prepare(t, x), window)


def final_level(
    t: ArrayLike, x: ArrayLike, *, end: float | None = None, window: float = 0.1
) -> float:
    """Final level (Xf): mean of the samples with end - window < t <= end.

    ``end`` defaults to the time of the last valid sample (the whole trace is the window).
    """
    return _final_level(_prepare(t, x), end, window)


def block_means(
    t: ArrayLike, x: ArrayLike, *, start: float, end: float, block: float = 0.1
) -> tuple[FloatArray, FloatArray]:
    """(block start times, block means) of the complete consecutive blocks from start to end.

    Block k covers [start + k*block, start + (k+1)*block); a partial block at the end is dropped.
    Every block must hold valid samples, and the trace must cover all of them.
    """
    if block <= 0:
        raise AnalysisError(f"block must be positive, got {block}")
    if not (math.isfinite(start) and math.isfinite(end)):
        raise AnalysisError(f"block means need a finite interval, got [{start}, {end}]")
    tr = _prepare(t, x)
    # The slack keeps (0.3 - 0.0) / 0.1 = 2.9999999999999996 at 3 blocks.
    n = math.floor((end - start) / block + 1e-9)
    if n < 1:
        raise AnalysisError(
            f"interval [{_fmt(start)}, {_fmt(end)}] s is shorter than one {block:g} s block"
        )
    edges = start + block * np.arange(n + 1)
    _span(tr, float(edges[0]), float(edges[-1]), what="block means")
    idx = np.searchsorted(tr.t, edges - _EPS, side="left")
    counts = np.diff(idx)
    if np.any(counts == 0):
        k = int(np.argmax(counts == 0))
        raise AnalysisError(
            f"block means: no valid samples in block [{_fmt(edges[k])}, {_fmt(edges[k + 1])}) s"
        )
    sums = np.add.reduceat(tr.x[: idx[-1]], idx[:-1])
    return edges[:-1].astype(float), sums / counts


def drift(t: ArrayLike, x: ArrayLike, *, start: float, end: float, block: float = 0.1) -> float:
    """Drift over [start, end]: mean of the block ending at end minus mean of the block at start.

    Signed; the blocks are [end - block, end) and [start, start + block).
    """
    if end - start < block - _EPS:
        raise AnalysisError(
            f"drift interval [{_fmt(start)}, {_fmt(end)}] s is shorter than one {block:g} s block"
        )
    tr = _prepare(t, x)
    return _mean_block(tr, end - block, block, "drift (end block)") - _mean_block(
        tr, start, block, "drift (start block)"
    )


def max_excursion(
    t: ArrayLike, x: ArrayLike, *, start: float, end: float, block: float = 0.1
) -> float:
    """Still ("no motion"): max |block mean - first block mean| over the blocks of [start, end]."""
    _, means = block_means(t, x, start=start, end=end, block=block)
    return float(np.max(np.abs(means - means[0])))


# --- traction events -------------------------------------------------------------------------


def reaction_time(
    t: ArrayLike,
    x: ArrayLike,
    *,
    x0: float | None = None,
    fraction: float = 0.02,
    minimum: float = 5.0,
) -> float:
    """First t >= 0 at which x < x0 - max(fraction*x0, minimum); inf if never.

    ``x0`` defaults to :func:`level_before`. The instant is :func:`first_crossing`'s: late by
    less than one sample period, never early.
    """
    tr = _prepare(t, x)
    f0 = _level_before(tr, 0.1) if x0 is None else x0
    limit = f0 - max(fraction * f0, minimum)
    return _first_crossing(tr, limit, below=True, start=0.0, what="reaction time")


def first_crossing(
    t: ArrayLike, x: ArrayLike, *, level: float, below: bool = True, start: float = 0.0
) -> float:
    """First t >= start at which x < level (``below``) or x > level; inf if never.

    Conservative by construction: the crossing between the last sample on the near side and the
    first beyond the level, placed late (see :func:`_late_crossing`), never before ``start``. A
    trace already beyond the level at its first valid sample at or after ``start`` gives the
    crossing from the sample before it when there is one, else that sample's time.
    """
    return _first_crossing(_prepare(t, x), level, below=below, start=start, what="first crossing")


def _first_crossing(tr: _Trace, level: float, *, below: bool, start: float, what: str) -> float:
    i0 = int(np.searchsorted(tr.t, start - _EPS, side="left"))
    if i0 == tr.t.size:
        raise AnalysisError(
            f"{what}: no valid samples at t >= {_fmt(start)} s; trace ends at {_fmt(tr.t[-1])} s"
        )
    y = tr.x - level if below else level - tr.x  # y < 0: beyond the level
    beyond = np.flatnonzero(y[i0:] < 0)
    if not beyond.size:
        return math.inf
    j = i0 + int(beyond[0])
    if j == 0 or y[j - 1] < 0:  # nothing known before it on the near side
        return float(tr.t[j])
    return max(float(_late_crossing(tr.t, y, j)[0]), start)


def release_time(t: ArrayLike, x: ArrayLike, *, threshold: float = 15.0) -> float:
    """First t >= 0 from which x stays <= threshold to the end of the trace.

    The late crossing (see :func:`_late_crossing`) from the last sample above the threshold to
    the first of the final run at or below it, never before 0: late by less than one sample
    period, never early. Inf if the last valid sample is above the threshold.
    """
    tr = _prepare(t, x)
    i0 = _first_at_or_after_trigger(tr, "release time")
    y = threshold - tr.x  # y < 0: above the threshold; the release is y rising through 0
    above = np.flatnonzero(y < 0)
    if not above.size or above[-1] + 1 < i0:
        return float(tr.t[i0])  # at or below from before the trigger on
    k = int(above[-1]) + 1
    if k >= tr.t.size:
        return math.inf
    # the crossing is y going from < 0 to >= 0: negate so it falls through 0
    return max(float(_late_crossing(tr.t, -y, k)[0]), 0.0)


def max_after(t: ArrayLike, x: ArrayLike, *, start: float) -> float:
    """Largest valid sample at t >= start (e.g. "force at or below 15 N to the end")."""
    tr = _prepare(t, x)
    sl = _span(tr, start, math.inf, what="max after", hi_closed=True, check_hi=False)
    return float(tr.x[sl].max())


def peak(
    t: ArrayLike, x: ArrayLike, *, start: float | None = None, end: float | None = None
) -> float:
    """Largest valid sample with start <= t <= end (either bound may be left open)."""
    tr = _prepare(t, x)
    sl = _span(
        tr,
        -math.inf if start is None else start,
        math.inf if end is None else end,
        what="peak",
        hi_closed=True,
        check_lo=start is not None,
        check_hi=end is not None,
    )
    return float(tr.x[sl].max())


# --- stops -----------------------------------------------------------------------------------


def stop_time(
    t: ArrayLike,
    x: ArrayLike,
    *,
    tolerance: float,
    window_end: float = 1.0,
    block: float = 0.1,
) -> float:
    """Last t in 0 <= t <= window_end at which |x - Xf| > tolerance; 0.0 if none.

    Xf is the mean of the window's last ``block`` seconds (:func:`final_level` ending at
    window_end). ICD tolerances: 0.1 mm roller position, 0.05 deg inversion angle. The instant
    is the late crossing (see :func:`_late_crossing`) from the last sample that differs to the
    next, capped at window_end: late by less than one sample period, never early (the last
    differing sample itself would be up to a period early).
    """
    tr = _prepare(t, x)
    sl = _span(tr, 0.0, window_end, what="stop time", hi_closed=True)
    xf = _final_level(tr, window_end, block)
    y = np.abs(tr.x - xf) - tolerance  # y > 0: moving
    # a sample just before the window still counts: the motion it shows may end inside it
    moving = np.flatnonzero(y[: sl.stop] > 0)
    if not moving.size or moving[-1] + 1 < sl.start:
        return 0.0
    k = int(moving[-1])
    if k + 1 >= tr.t.size:
        return float(tr.t[k])
    late = float(_late_crossing(tr.t, y, k + 1)[0])
    return min(max(late, 0.0), max(float(tr.t[k]), window_end))


def stopping_distance(
    t: ArrayLike, x: ArrayLike, *, window_end: float | None = None, block: float = 0.1
) -> float:
    """|Xf - X(0)|: X(0) is x linearly interpolated at t = 0, Xf the final level at window_end.

    ``window_end`` defaults to the last valid sample (the whole trace).
    """
    tr = _prepare(t, x)
    xf = _final_level(tr, window_end, block)
    k = int(np.searchsorted(tr.t, 0.0, side="left"))
    tol = _COVER * tr.dt + _EPS
    if k < tr.t.size and abs(tr.t[k]) <= _EPS:
        x_at_0 = float(tr.x[k])
    elif 0 < k < tr.t.size and -tr.t[k - 1] <= tol and tr.t[k] <= tol:
        x_at_0 = float(np.interp(0.0, tr.t[k - 1 : k + 1], tr.x[k - 1 : k + 1]))
    else:
        raise AnalysisError(
            "stopping distance needs valid samples at or around t=0 s to interpolate X(0); "
            f"valid samples span {_fmt(tr.t[0])} to {_fmt(tr.t[-1])} s"
        )
    return abs(xf - x_at_0)


# --- settling --------------------------------------------------------------------------------


def settle_instant(
    t: ArrayLike, x: ArrayLike, *, target: float, tolerance: float, start: float = -math.inf
) -> float:
    """First valid sample time >= start at which |x - target| <= tolerance; inf if never."""
    return _settle_instant(_prepare(t, x), target, tolerance, start)


def settled_value(
    t: ArrayLike,
    x: ArrayLike,
    *,
    target: float,
    tolerance: float,
    delay: float = 2.0,
    window: float = 2.0,
    start: float = -math.inf,
) -> float:
    """Mean over [t_in + delay, t_in + delay + window], t_in = :func:`settle_instant`.

    Raises if x never comes within tolerance of target, or the trace does not cover the window.
    """
    tr = _prepare(t, x)
    t_in = _settle_instant(tr, target, tolerance, start)
    if math.isinf(t_in):
        raise AnalysisError(
            f"settled value: never within {tolerance:g} of {target:g} at t >= {_fmt(start)} s"
        )
    a = t_in + delay
    sl = _span(tr, a, a + window, what="settled value", hi_closed=True)
    return float(tr.x[sl].mean())


# --- crossings and levels --------------------------------------------------------------------


def crossings(
    t: ArrayLike, x: ArrayLike, *, threshold: float, hysteresis: float = 0.0
) -> tuple[FloatArray, FloatArray]:
    """(rising crossing times, falling crossing times) of threshold, interpolated late.

    A crossing counts once x has gone beyond threshold +/- hysteresis/2 on the far side after
    being beyond the other side; its time is that of the last crossing of the threshold itself
    before that confirmation. With hysteresis 0 every sign change counts (x >= threshold is
    high). The first level reached sets the state and is not a crossing. NaN gaps are bridged.
    Each time lies between the two samples straddling the threshold, placed late (see
    :func:`_late_crossing`): never before the true crossing, within one sample period of it.
    """
    if hysteresis < 0:
        raise AnalysisError(f"hysteresis must not be negative, got {hysteresis}")
    tr = _prepare(t, x)
    tv, xv = tr.t, tr.x
    state = np.zeros(xv.size, dtype=np.int8)
    state[xv >= threshold + hysteresis / 2] = 1
    state[xv < threshold - hysteresis / 2] = -1
    nz = np.flatnonzero(state)
    s = state[nz]
    change = np.flatnonzero(s[1:] != s[:-1]) + 1
    confirm, direction = nz[change], s[change]
    high = xv >= threshold
    up = np.flatnonzero(~high[:-1] & high[1:])  # threshold crossed between j and j + 1
    down = np.flatnonzero(high[:-1] & ~high[1:])
    # The confirmed state before each confirmation lies on the other side, so a threshold
    # crossing in the right direction always precedes it: searchsorted never returns 0 here.
    rc, fc = confirm[direction > 0], confirm[direction < 0]
    jr = up[np.searchsorted(up, rc - 1, side="right") - 1]
    jf = down[np.searchsorted(down, fc - 1, side="right") - 1]
    # each crossing late by less than a sample period (see _late_crossing): a width or period,
    # the difference of two, is within one period either way
    return _late_crossing(tv, threshold - xv, jr + 1), _late_crossing(tv, xv - threshold, jf + 1)


def level_widths(
    t: ArrayLike, x: ArrayLike, *, threshold: float, hysteresis: float = 0.0, high: bool = True
) -> FloatArray:
    """Widths of the complete levels: rising to next falling crossing (high) or the reverse.

    Levels not both entered and left inside the trace are not returned.
    """
    rise, fall = crossings(t, x, threshold=threshold, hysteresis=hysteresis)
    into, out = _pairs(rise, fall) if high else _pairs(fall, rise)
    return out - into


# --- rates -----------------------------------------------------------------------------------


def ramp_rate(
    t: ArrayLike,
    x: ArrayLike,
    *,
    start_level: float,
    end_level: float,
    lo: float = 0.1,
    hi: float = 0.9,
    start: float = -math.inf,
) -> float:
    """Least-squares slope (signed, units/s) between the 10 % and 90 % instants of a step.

    The lo instant is the first sample (at t >= start) that has covered ``lo`` of the step from
    start_level to end_level coming from a sample that had not; the hi instant is the first
    sample from there on that has covered ``hi``. Falling steps work the same way.
    """
    step = end_level - start_level
    if step == 0:
        raise AnalysisError("ramp rate: start_level and end_level are equal")
    if not 0 <= lo < hi <= 1:
        raise AnalysisError(f"ramp rate: need 0 <= lo < hi <= 1, got lo={lo}, hi={hi}")
    tr = _prepare(t, x)
    i0 = int(np.searchsorted(tr.t, start - _EPS, side="left"))
    if i0 == tr.t.size:
        raise AnalysisError(
            f"ramp rate: no valid samples at t >= {_fmt(start)} s; trace ends at {_fmt(tr.t[-1])} s"
        )
    covered = (tr.x[i0:] - start_level) / step
    short = covered < lo
    if not short.any():
        raise AnalysisError(
            f"ramp rate: x is past {lo:.0%} of the step {start_level:g} -> {end_level:g} from its "
            f"first valid sample (t={_fmt(tr.t[i0])} s) on; the start of the move is missing"
        )
    reach = np.flatnonzero(short[:-1] & ~short[1:]) + 1
    if not reach.size:
        raise AnalysisError(
            f"ramp rate: x never covers {lo:.0%} of the step {start_level:g} -> {end_level:g}"
        )
    a = int(reach[0])
    at_hi = np.flatnonzero(covered[a:] >= hi)
    if not at_hi.size:
        raise AnalysisError(
            f"ramp rate: x never covers {hi:.0%} of the step {start_level:g} -> {end_level:g}"
        )
    seg = slice(i0 + a, i0 + a + int(at_hi[0]) + 1)
    if seg.stop - seg.start < 2:
        raise AnalysisError(
            f"ramp rate: only one sample between {lo:.0%} and {hi:.0%} of the step; "
            "sample faster to fit a slope"
        )
    return _slope(tr.t[seg], tr.x[seg])


def move_rate(
    t: ArrayLike,
    x: ArrayLike,
    *,
    start_level: float,
    end_level: float,
    lo: float = 0.1,
    hi: float = 0.9,
    start: float = -math.inf,
) -> float:
    """Rate of a move (roller speed, inversion rate): :func:`ramp_rate` of the move's travel."""
    return ramp_rate(t, x, start_level=start_level, end_level=end_level, lo=lo, hi=hi, start=start)


# --- faults ----------------------------------------------------------------------------------


def fault_time(fault_uptime_ms: int, uptime_before_ms: int, *earlier_ms: int | None) -> float:
    """Seconds from the UPTIME_MS read before the last heartbeat that landed before the fault to
    FAULT_UPTIME_MS.

    `uptime_before_ms` is the rig's own last beat; `earlier_ms` the UPTIME_MS read before
    earlier beats (the heartbeat writer's last one), None where not known. When the table
    faulted before the rig's own last beat landed (a host slower than WATCHDOG_MS / scale
    between the writer's pause and that beat), the fault is timed from the latest earlier beat
    before it: still the last heartbeat the PLC had, and an upper bound, as each UPTIME_MS is
    read before its write."""
    if fault_uptime_ms == 0:
        raise AnalysisError("fault time: FAULT_UPTIME_MS is 0, no fault is latched")
    before = [t for t in (uptime_before_ms, *earlier_ms) if t is not None and t >= 0]
    landed = [t for t in before if t <= fault_uptime_ms]
    if not landed:
        raise AnalysisError(
            f"fault time: FAULT_UPTIME_MS {fault_uptime_ms} ms is before the UPTIME_MS "
            f"{uptime_before_ms} ms read before the last heartbeat"
        )
    return (fault_uptime_ms - max(landed)) / 1000.0


# --- roller ----------------------------------------------------------------------------------


def cycle_boundaries(
    t: ArrayLike, x: ArrayLike, *, midpoint: float, hysteresis: float
) -> FloatArray:
    """Times the position crosses the travel midpoint moving toward TRAVEL_END (rising)."""
    return crossings(t, x, threshold=midpoint, hysteresis=hysteresis)[0]


def cycle_periods(boundaries: ArrayLike) -> FloatArray:
    """Periods: the times between successive cycle boundaries."""
    return np.diff(np.asarray(boundaries, dtype=float))


def jitter(periods: ArrayLike) -> float:
    """Standard deviation of the periods, ddof=1 (sample standard deviation).

    ddof=1 because the periods measured are a sample of the unit's cycle-to-cycle variation: it
    is the unbiased variance estimate and, with the few periods a run gives, the larger
    (conservative) figure. Needs at least 2 periods.
    """
    p = np.asarray(periods, dtype=float)
    if p.size < 2:
        raise AnalysisError(f"jitter needs at least 2 periods, got {p.size}")
    return float(np.std(p, ddof=1))


def reversal_points(
    t: ArrayLike, x: ArrayLike, *, midpoint: float, hysteresis: float, band: float = 0.2
) -> tuple[FloatArray, FloatArray]:
    """(far reversals, near reversals) of the complete excursions to either side of midpoint.

    Far: each excursion above the midpoint between a rising and the next falling crossing; near:
    each excursion below it between a falling and the next rising crossing. A reversal is the
    median of the excursion's samples within ``band`` of its extreme, which rejects noise.
    """
    tr = _prepare(t, x)
    rise, fall = crossings(t, x, threshold=midpoint, hysteresis=hysteresis)

    def extremes(a: FloatArray, b: FloatArray, sign: float) -> FloatArray:
        out = np.empty(a.size)
        i0 = np.searchsorted(tr.t, a, side="left")
        i1 = np.searchsorted(tr.t, b, side="right")
        for k, (p, q) in enumerate(zip(i0, i1, strict=True)):
            seg = sign * tr.x[p:q]
            out[k] = sign * np.median(seg[seg >= seg.max() - band])
        return out

    far_a, far_b = _pairs(rise, fall)
    near_a, near_b = _pairs(fall, rise)
    return extremes(far_a, far_b, 1.0), extremes(near_a, near_b, -1.0)


def straight_speeds(t: ArrayLike, x: ArrayLike, *, low: float, high: float) -> FloatArray:
    """Signed least-squares speed of every complete traversal of [low, high].

    A traversal runs from a sample below low to a sample above high or the reverse; its speed is
    fitted over the samples in between (all with low <= x <= high).
    """
    if not low < high:
        raise AnalysisError(f"straight speeds: need low < high, got {low} and {high}")
    tr = _prepare(t, x)
    side = np.zeros(tr.x.size, dtype=np.int8)
    side[tr.x < low] = -1
    side[tr.x > high] = 1
    nz = np.flatnonzero(side)
    across = np.flatnonzero(side[nz[1:]] != side[nz[:-1]])
    speeds = []
    for k in across:
        p, q = nz[k] + 1, nz[k + 1]
        if q - p < 2:
            raise AnalysisError(
                f"straight speeds: fewer than 2 samples in the traversal at "
                f"t={_fmt(tr.t[nz[k]])} s; sample faster to fit a slope"
            )
        speeds.append(_slope(tr.t[p:q], tr.x[p:q]))
    return np.asarray(speeds, dtype=float)


# --- inversion -------------------------------------------------------------------------------


def hold_interval(
    t: ArrayLike, x: ArrayLike, *, target: float, band: float = 0.5, margin: float = 1.0
) -> tuple[float, float]:
    """(margin after x first comes within band of target, margin before it last leaves it)."""
    tr = _prepare(t, x)
    inside = np.flatnonzero(np.abs(tr.x - target) <= band)
    if not inside.size:
        raise AnalysisError(f"hold interval: x never comes within {band:g} of {target:g}")
    a = float(tr.t[inside[0]]) + margin
    b = float(tr.t[inside[-1]]) - margin
    if b <= a:
        raise AnalysisError(
            f"hold interval is empty: within {band:g} of {target:g} from "
            f"{_fmt(tr.t[inside[0]])} to {_fmt(tr.t[inside[-1]])} s, less than 2 x {margin:g} s"
        )
    return a, b
