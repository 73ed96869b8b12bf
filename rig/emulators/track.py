"""Closed-form motion history: a piecewise-quadratic track x(t) planned in events, sampled lazily.

The emulators never step physics on a fixed tick. A move is appended as pieces of constant
acceleration; an event (a stop, a fault) cuts the plan at its instant and appends a new one.
Instruments sample the history at any device times, so the CPU cost per device second does not
depend on the time scale.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterator

import numpy as np


class Track:
    """x(t) = X + V (t - T) + A (t - T)^2 / 2 on each piece [T_k, T_k+1)."""

    def __init__(self, t0: float = 0.0, x0: float = 0.0) -> None:
        self._t: list[float] = [t0]
        self._x: list[float] = [x0]
        self._v: list[float] = [0.0]
        self._a: list[float] = [0.0]

    # -- reading -----------------------------------------------------------------------------
    def _index(self, t: float) -> int:
        return max(bisect_right(self._t, t) - 1, 0)

    def state(self, t: float) -> tuple[float, float]:
        """(x, v) at device time t."""
        k = self._index(t)
        dt = max(t - self._t[k], 0.0)
        a = self._a[k]
        return self._x[k] + self._v[k] * dt + 0.5 * a * dt * dt, self._v[k] + a * dt

    def value(self, t: float) -> float:
        """x at device time t."""
        return self.state(t)[0]

    def velocity(self, t: float) -> float:
        """dx/dt at device time t."""
        return self.state(t)[1]

    def sample(self, times: np.ndarray) -> np.ndarray:
        """x at each of `times` (vectorised)."""
        times = np.asarray(times, dtype=float)
        tk = np.asarray(self._t)
        k = np.clip(np.searchsorted(tk, times, side="right") - 1, 0, len(tk) - 1)
        dt = np.maximum(times - tk[k], 0.0)
        x = np.asarray(self._x)[k]
        v = np.asarray(self._v)[k]
        a = np.asarray(self._a)[k]
        return x + v * dt + 0.5 * a * dt * dt

    def end_time(self) -> float:
        """Start of the last planned piece (after it, x moves as that piece says forever)."""
        return self._t[-1]

    def is_moving(self, t: float) -> bool:
        """True while the plan at `t` has any velocity or acceleration."""
        k = self._index(t)
        _, v = self.state(t)
        return abs(v) > 1e-12 or abs(self._a[k]) > 1e-12 or k < len(self._t) - 1

    # -- planning ----------------------------------------------------------------------------
    def cut(self, t: float) -> tuple[float, float]:
        """Drop every planned piece from `t` on; return (x, v) at `t`."""
        x, v = self.state(t)
        k = bisect_right(self._t, t)
        # pieces that start exactly at t are replaced too
        while k > 0 and self._t[k - 1] >= t and k - 1 > 0:
            k -= 1
        del self._t[k:], self._x[k:], self._v[k:], self._a[k:]
        return x, v

    def append(self, t: float, x: float, v: float, a: float) -> None:
        """Add a piece starting at `t` (must not start before the last one)."""
        if t < self._t[-1]:
            raise ValueError(f"piece at {t} before last piece at {self._t[-1]}")
        if t == self._t[-1] and len(self._t) > 1:
            self._t[-1], self._x[-1], self._v[-1], self._a[-1] = t, x, v, a
            return
        if t == self._t[-1]:
            self._x[-1], self._v[-1], self._a[-1] = x, v, a
            return
        self._t.append(t)
        self._x.append(x)
        self._v.append(v)
        self._a.append(a)

    def hold(self, t: float) -> float:
        """Stop dead at `t` (no deceleration): the value stays where it is. Returns that value."""
        x, _ = self.cut(t)
        self.append(t, x, 0.0, 0.0)
        return x

    def set(self, t: float, x: float) -> None:
        """Jump to `x` at `t` and stay (a discontinuity, e.g. a reading that drops out)."""
        self.cut(t)
        self.append(t, x, 0.0, 0.0)

    def linear_to(self, t: float, target: float, rate: float) -> float:
        """From its value at `t`, move at `rate` (> 0, units/s) to `target`; returns arrival."""
        if rate <= 0:
            raise ValueError("rate must be > 0")
        x, _ = self.cut(t)
        d = target - x
        if d == 0:
            self.append(t, x, 0.0, 0.0)
            return t
        t_end = t + abs(d) / rate
        self.append(t, x, math.copysign(rate, d), 0.0)
        self.append(t_end, target, 0.0, 0.0)
        return t_end

    def brake(self, t: float, decel: float) -> tuple[float, float]:
        """Decelerate at `decel` (>0) from the velocity at `t` to rest. Returns (t_stop, x_stop)."""
        x, v = self.cut(t)
        if v == 0:
            self.append(t, x, 0.0, 0.0)
            return t, x
        dt = abs(v) / decel
        a = -math.copysign(decel, v)
        x_stop = x + v * dt + 0.5 * a * dt * dt
        self.append(t, x, v, a)
        self.append(t + dt, x_stop, 0.0, 0.0)
        return t + dt, x_stop

    def trapezoid_to(self, t: float, target: float, vmax: float, accel: float) -> float:
        """Trapezoidal move from the state at `t` to rest at `target`. Returns the arrival time.

        A move already under way toward the target is continued; one moving away, or too fast
        to stop in time, first brakes to rest.
        """
        x, v = self.cut(t)
        s = 1.0 if target >= x else -1.0
        u = v * s  # speed toward the target
        if u < 0 or u * u / (2 * accel) > abs(target - x) + 1e-12:
            t, x = self.brake(t, accel)
            return self.trapezoid_to(t, target, vmax, accel)
        if u > vmax:  # come down to the top speed first
            dt = (u - vmax) / accel
            self.append(t, x, s * u, -s * accel)
            x += s * (u * dt - 0.5 * accel * dt * dt)
            t += dt
            u = vmax
        d = abs(target - x)
        if d <= 1e-12 and u <= 1e-12:
            self.append(t, target, 0.0, 0.0)
            return t
        vp = min(vmax, math.sqrt(accel * d + 0.5 * u * u))
        t_acc = (vp - u) / accel
        d_acc = (vp * vp - u * u) / (2 * accel)
        d_dec = vp * vp / (2 * accel)
        d_cruise = max(d - d_acc - d_dec, 0.0)
        t_cruise = d_cruise / vp if vp > 0 else 0.0
        t_dec = vp / accel
        if t_acc > 0:
            self.append(t, x, s * u, s * accel)
        t1 = t + t_acc
        x1 = x + s * d_acc
        if t_cruise > 0:
            self.append(t1, x1, s * vp, 0.0)
        t2 = t1 + t_cruise
        x2 = x1 + s * d_cruise
        self.append(t2, x2, s * vp, -s * accel)
        t3 = t2 + t_dec
        self.append(t3, target, 0.0, 0.0)
        return t3

    # -- events ------------------------------------------------------------------------------
    def pieces_from(self, t_from: float) -> Iterator[tuple[float, float, float, float, float]]:
        """(t0, t1, x0, v0, a) of every planned piece still running at or after `t_from`.

        Each piece is [t0, t1) clipped to start no earlier than `t_from` (t1 is inf for the last),
        with position x0 and velocity v0 at t0 and its constant acceleration a: the closed-form
        searches work piece by piece on these.
        """
        n = len(self._t)
        for k in range(self._index(t_from), n):
            t0 = max(self._t[k], t_from)
            t1 = self._t[k + 1] if k + 1 < n else math.inf
            if t1 <= t0:
                continue
            dt0 = t0 - self._t[k]
            a = self._a[k]
            x0 = self._x[k] + self._v[k] * dt0 + 0.5 * a * dt0 * dt0
            v0 = self._v[k] + a * dt0
            yield t0, t1, x0, v0, a

    def first_time(self, t_from: float, level: float, *, above: bool = True) -> float:
        """Earliest t >= t_from with x > level (above) or x < level (not above); inf if never."""
        sign = 1.0 if above else -1.0
        for t0, t1, x0, v0, a in self.pieces_from(t_from):
            # g(s) = sign*(x(t0+s) - level) > 0
            c, b, q = sign * (x0 - level), sign * v0, sign * 0.5 * a
            if c > 0:
                return t0
            s = _first_positive(q, b, c, t1 - t0)
            if s is not None:
                return t0 + s
        return math.inf

    def prune(self, before: float) -> None:
        """Forget pieces that ended before `before` (keeps memory bounded)."""
        k = self._index(before)
        if k > 0:
            del self._t[:k], self._x[:k], self._v[:k], self._a[:k]


def first_excursion(
    track: Track, t_from: float, level: float, persist: float, *, above: bool = True
) -> float:
    """Earliest instant at which `track` has been beyond `level` continuously for `persist` s.

    Closed form over the planned pieces (no sampling); inf if the plan never does it.
    """
    t = t_from
    for _ in range(10_000):
        t_in = track.first_time(t, level, above=above)
        if math.isinf(t_in):
            return math.inf
        t_out = track.first_time(t_in, level, above=not above)
        if t_out >= t_in + persist:
            return t_in + persist
        t = max(t_out, t + 1e-9)
    return math.inf


def _first_positive(q: float, b: float, c: float, span: float) -> float | None:
    """Smallest s in (0, span) where q s^2 + b s + c > 0, given c <= 0; None if none."""
    eps = 1e-12
    if abs(q) < eps:
        if b > eps:
            s = -c / b
            return s + 1e-9 if s < span else None
        return None
    disc = b * b - 4 * q * c
    if disc < 0:
        return None
    r = math.sqrt(disc)
    roots = sorted(((-b - r) / (2 * q), (-b + r) / (2 * q)))
    for s in roots:
        if 0 <= s < span:
            # the polynomial must rise through zero here
            if 2 * q * s + b > eps or (abs(2 * q * s + b) <= eps and q > 0):
                return s + 1e-9
    return None
