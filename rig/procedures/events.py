"""Events a requirement names, counted: never judged on fewer; FAIL when the unit did not produce
them, ERROR when the rig's acquisition missed them (docs/icd-readings.md D6).

The rule that tells the two apart: an acquisition is sized by the procedure from the ICD's
nominal motion (with a stated margin) to hold every event the requirement names. When fewer are
found, the trace decides whose they were:

- the trace is a **complete record** of the interval asked for (valid samples from its start to
  the duration asked, none missing): the motion did not happen there, so the unit did not
  produce them. FAIL, recorded as a measurement that was not measured, with the count in its
  note;
- it is **not** (the acquisition ended early, or samples are missing, NaN, inside it): the rig
  cannot tell, so it is the rig's. ERROR (`EventsMissed`), and the requirement is retested.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import RigError
from ..trace import Trace

# How far (in sample periods) the last valid sample may stop short of the duration asked for:
# sample i is at i / RATE, so the last of N = duration * RATE points is one period short.
_COVER_PERIODS = 1.5


class EventsMissed(RigError):
    """The rig's acquisition cannot show the events the ICD names (an ERROR, not the unit's)."""


def gaps(trace: Trace, channel: str, *, until: float, start: float = 0.0) -> str | None:
    """None when `trace` is a complete record of `channel` over [start, until] device seconds
    after the trigger; otherwise what is missing (for the ERROR's message)."""
    t = np.asarray(trace.t, dtype=float)
    x = np.asarray(trace[channel], dtype=float)
    period = 1.0 / float(trace.rate) if trace.rate else math.inf
    if t.size == 0:
        return "the acquisition returned no samples"
    inside = (t >= start - 1e-9) & (t <= until + 1e-9)
    missing = int(np.count_nonzero(np.isnan(x[inside])))
    if missing:
        first = float(t[inside][np.isnan(x[inside])][0])
        return f"{missing} samples missing (NaN) from t = {first:.3f} s"
    valid = t[~np.isnan(x)]
    if valid.size == 0 or valid[-1] < until - _COVER_PERIODS * period:
        end = float(valid[-1]) if valid.size else -math.inf
        return f"the trace ends at t = {end:.3f} s, before the {until:g} s asked for"
    return None


def enough(
    check: Any,
    name: str,
    found: int,
    needed: int,
    trace: Trace,
    channel: str,
    *,
    until: float,
    what: str,
    **bindings: float,
) -> bool:
    """True when `found` >= `needed` (the caller judges the first `needed`). Otherwise the rule
    above: raise EventsMissed when the trace is not a complete record up to `until`, else
    record `name` as not measured (FAIL) naming the count, and return False."""
    if found >= needed:
        return True
    missing = gaps(trace, channel, until=until)
    count = f"{found} of the {needed} {what} the ICD names"
    if missing is not None:
        raise EventsMissed(
            f"{check.requirement.id}: {count} in the {channel} trace, which is not a complete "
            f"record of the {until:g} s asked for ({missing}): the rig missed them"
        )
    check.measure(
        name,
        None,
        note=f"the unit produced {count} in a complete {until:g} s {channel} trace",
        **bindings,
    )
    return False


def require_complete(check: Any, trace: Trace, channel: str, *, until: float) -> None:
    """Raise EventsMissed unless `trace` is a complete record up to `until` (a quantity taken
    from the whole trace, e.g. a final level, is judged only on the trace asked for)."""
    missing = gaps(trace, channel, until=until)
    if missing is not None:
        raise EventsMissed(
            f"{check.requirement.id}: the {channel} trace is not a complete record of the "
            f"{until:g} s asked for ({missing}): the rig missed part of it"
        )
