"""Statistics across units: yield, mean, standard deviation and Cpk per quantity, control charts;
across the line's stations and shifts."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..evidence.format import Outcome, limit_text, number_text, slug
from .db import is_url
from .results import ResultsDB, StoredMeasurement, bindings_key

# statistics show more digits than a certificate: a mean of 300.3333 is not "300.3"
_DIGITS = {"digits": 6, "exact_below": 1e9}
_fmt = partial(number_text, **_DIGITS)


@dataclass(frozen=True)
class Capability:
    """Mean, spread and capability index of a set of values against a limit.

    `std` is the sample standard deviation (ddof=1) of the finite values. `index` is the
    capability index against the limits using that `std` as sigma: `kind` "Cpk" for two limits,
    "Cpu" (upper only) or "Cpl" (lower only); None with `reason` when it is undefined. Since sigma
    is the overall sample sigma, not a within-subgroup estimate, some texts call this Ppk."""

    mean: float | None
    std: float | None
    index: float | None
    kind: str | None
    reason: str


def capability(
    values: Sequence[float | None],
    low: float | None,
    high: float | None,
    equals: float | None = None,
) -> Capability:
    """Capability of `values` against low/high (or an `equals` limit, for which it is undefined).

    Cpk = min(USL - mean, mean - LSL) / (3 sigma); Cpu = (USL - mean) / (3 sigma) when only USL
    exists, Cpl = (mean - LSL) / (3 sigma) when only LSL exists. Non-finite values (inf: the event
    never happened; None/NaN: not measured) are left out of mean and sigma, and make the index
    undefined: a capability computed without them would overstate the process."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    mean = math.fsum(finite) / n if n else None
    std = None
    if n >= 2 and mean is not None:
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1))

    def none(reason: str) -> Capability:
        return Capability(mean, std, None, None, reason)

    if equals is not None:
        return none("equals limit: Cpk undefined for an exact-value limit")
    if low is None and high is None:
        return none("no limit")
    if n < len(values):
        return none(f"{len(values) - n} value(s) not finite (never / not measured)")
    if n < 2 or mean is None or std is None:
        return none("fewer than 2 values")
    # all-equal values: the computed std may be a rounding residue rather than exactly 0
    if max(finite) == min(finite) or std == 0.0:
        return none("zero spread (sigma = 0)")
    if low is not None and high is not None:
        return Capability(mean, std, min(high - mean, mean - low) / (3 * std), "Cpk", "")
    if high is not None:
        return Capability(mean, std, (high - mean) / (3 * std), "Cpu", "")
    assert low is not None
    return Capability(mean, std, (mean - low) / (3 * std), "Cpl", "")


@dataclass(frozen=True)
class QuantityStats:
    """One quantity across units: a requirement's measurement at one binding set and one limit.

    `count` counts observations (a run may record a quantity more than once: repeats, several
    cycles); `runs` the runs and `units` the distinct serials they came from. `pass_yield` is the
    fraction of observations judged PASS; mean/std (ddof=1)/cpk are over the finite values."""

    requirement: str
    name: str
    bindings: dict[str, Any]
    unit: str
    low: float | None
    high: float | None
    equals: float | None
    runs: int
    units: int
    count: int
    passes: int
    pass_yield: float
    mean: float | None
    std: float | None
    cpk: float | None
    cpk_kind: str | None
    cpk_reason: str
    group: str | None = None  # the station or shift of these runs (`by`), else None

    def binding_text(self) -> str:
        """The binding set as a person reads it, e.g. "set=300"."""
        return ", ".join(f"{k}={_fmt(v)}" for k, v in self.bindings.items()) or "-"

    def limit_text(self) -> str:
        """The limit as a person reads it (the unit has a column of its own)."""
        return limit_text(self.low, self.high, self.equals, **_DIGITS)


BY = ("station", "shift")


def _group_key(m: StoredMeasurement, by: str | None = None) -> tuple[Any, ...]:
    # the limits are part of the key: values judged against different limits (a revised profile)
    # must not be pooled into one capability figure
    group = _group_of(m, by)
    return (m.requirement, m.name, bindings_key(m.bindings), m.unit, m.low, m.high, m.equals, group)


def _group_of(m: Any, by: str | None) -> str | None:
    if by is None:
        return None
    if by not in BY:
        raise ConfigError(f"statistics by {by!r}: expected one of {list(BY)}")
    return getattr(m, by) or "-"


def requirement_stats(
    db: ResultsDB,
    model: str,
    *,
    requirement: str | None = None,
    emulated: bool | None = None,
    by: str | None = None,
    station: str | None = None,
    shift: str | None = None,
) -> list[QuantityStats]:
    """Statistics of every quantity of `model` across units, from complete runs only.

    One row per (requirement, measurement name, binding set) (and per limit, should the recorded
    limit of a binding set change between runs), and per station or shift with `by`. Only
    complete runs with an intact hash chain count: an interrupted run is neither a pass nor a
    sample; nor are the measurements of a --retest attempt concluded ERROR (about the rig, not
    the unit). `emulated`: True/False to keep only emulated or only real benches, None for both;
    `station`, `shift`: only runs of that station or shift."""
    groups: dict[tuple[Any, ...], list[StoredMeasurement]] = {}
    for m in db.measurements(
        model, requirement, unit_data=True, emulated=emulated, station=station, shift=shift
    ):
        groups.setdefault(_group_key(m, by), []).append(m)
    rows = []
    for key, ms in groups.items():
        req, name, _, unit, low, high, equals, group = key
        cap = capability([m.value for m in ms], low, high, equals)
        passes = sum(m.verdict == Outcome.PASS for m in ms)
        rows.append(
            QuantityStats(
                requirement=req,
                name=name,
                bindings=ms[0].bindings,
                unit=unit,
                low=low,
                high=high,
                equals=equals,
                runs=len({m.run_id for m in ms}),
                units=len({m.serial for m in ms}),
                count=len(ms),
                passes=passes,
                pass_yield=passes / len(ms),
                mean=cap.mean,
                std=cap.std,
                cpk=cap.index,
                cpk_kind=cap.kind,
                cpk_reason=cap.reason,
                group=group,
            )
        )
    # requirement order, then the order the suites measure in (first seen), which is the
    # profile's order of binding sets (set=100, 300, 600 ...) rather than a string sort
    order = {id(r): i for i, r in enumerate(rows)}
    return sorted(rows, key=lambda r: (r.requirement, order[id(r)]))


@dataclass(frozen=True)
class RunYield:
    """Run-level yield of one station or shift (or the whole line).

    `judged`: complete runs with an intact chain whose verdict is PASS or FAIL (a unit judged);
    partial, retest and interrupted runs judge no unit and are counted in `runs` only."""

    group: str
    runs: int
    judged: int
    passed: int

    @property
    def pass_yield(self) -> float | None:
        """PASS runs over judged runs (None without any)."""
        return self.passed / self.judged if self.judged else None


def run_yields(
    db: ResultsDB, model: str, by: str | None, *, emulated: bool | None = None
) -> list[RunYield]:
    """The yield of judged runs (PASS over PASS + FAIL) per station or shift (`by`), or of all."""
    out: dict[str, list[Any]] = {}
    for r in db.runs(model):
        if emulated is not None and r.emulated is not emulated:
            continue
        g = _group_of(r, by) if by else "all"
        out.setdefault(g or "-", []).append(r)
    return [
        RunYield(
            g,
            len(rs),
            sum(
                r.complete and r.chain_intact and r.verdict in (Outcome.PASS, Outcome.FAIL)
                for r in rs
            ),
            sum(r.complete and r.chain_intact and r.verdict == Outcome.PASS for r in rs),
        )
        for g, rs in sorted(out.items())
    ]


STATS_COLUMNS = (
    "requirement",
    "quantity",
    "at",
    "limit",
    "unit",
    "runs",
    "n",
    "yield",
    "mean",
    "std",
    "Cpk",
    "note",
)


def stats_cells(row: QuantityStats) -> list[str]:
    """One row of the stats table as text cells, in STATS_COLUMNS order (for rich tables too)."""
    cpk = "-" if row.cpk is None else f"{row.cpk:.2f}"
    if row.cpk is not None and row.cpk_kind != "Cpk":
        cpk += f" ({row.cpk_kind})"
    return [
        row.requirement,
        row.name,
        row.binding_text(),
        row.limit_text(),
        row.unit,
        str(row.runs),
        str(row.count),
        f"{100 * row.pass_yield:.1f}%",
        "-" if row.mean is None else _fmt(row.mean),
        "-" if row.std is None else f"{row.std:.3g}",
        cpk,
        row.cpk_reason,
    ]


def format_stats(rows: Sequence[QuantityStats], by: str | None = None) -> str:
    """A plain-text table of the rows for the terminal (with a station or shift column first
    when the rows are `by` one)."""
    columns = ([by] if by else []) + list(STATS_COLUMNS)
    table = [columns, *(([r.group or "-"] if by else []) + stats_cells(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    numeric = {"runs", "n", "yield", "mean", "std"}
    out = []
    for j, cells in enumerate(table):
        parts = [
            c.rjust(w) if columns[i] in numeric and j else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        out.append("  ".join(parts).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def control_chart(
    db: ResultsDB,
    model: str,
    requirement: str,
    name: str,
    bindings: dict[str, Any] | None = None,
    *,
    path: Path,
    emulated: bool | None = None,
    station: str | None = None,
    shift: str | None = None,
) -> Path:
    """PNG individuals chart of one quantity across units in run order (complete runs only).

    Shows the values (FAIL in red; never / not measured as marks along the top), the mean, the
    control limits mean ± 3s (s: the sample standard deviation, ddof=1, as in the stats table)
    and the spec limits (as steps, should they change between runs). `bindings` selects the
    binding set; it may be omitted when the quantity has only one. `station`, `shift`: only
    that station's or shift's runs (a chart per station)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = db.measurements(
        model,
        requirement,
        name,
        unit_data=True,
        emulated=emulated,
        station=station,
        shift=shift,
    )
    sets = {bindings_key(m.bindings): m.bindings for m in ms}
    if bindings is None:
        if len(sets) > 1:
            listed = "; ".join(bindings_key(b) for b in sets.values())
            raise ValueError(f"{requirement} {name}: several binding sets, choose one: {listed}")
        want = next(iter(sets), bindings_key({}))
    else:
        want = bindings_key(bindings)
    ms = [m for m in ms if bindings_key(m.bindings) == want]
    if not ms:
        raise ValueError(f"{model} {requirement} {name} {want}: no values in complete runs")
    cap = capability(
        [m.value for m in ms], ms[-1].low, ms[-1].high, ms[-1].equals
    )  # the current limit's capability, for the title only
    x = list(range(1, len(ms) + 1))
    fig, ax = plt.subplots(figsize=(9, 4), dpi=90)
    try:
        fin = [(i, m) for i, m in zip(x, ms, strict=True) if _finite(m.value)]
        ax.plot(
            [i for i, _ in fin],
            [m.value for _, m in fin],
            color="#1f4e79",
            lw=0.8,
            marker="o",
            ms=4,
            label="value",
        )
        bad = [(i, m) for i, m in fin if m.verdict != Outcome.PASS]
        if bad:
            ax.plot(
                [i for i, _ in bad],
                [m.value for _, m in bad],
                ls="",
                marker="o",
                ms=6,
                color="#c00000",
                label=Outcome.FAIL,
            )
        if cap.mean is not None:
            ax.axhline(cap.mean, color="#2e7d32", lw=1.0, label=f"mean {_fmt(cap.mean)}")
        if cap.mean is not None and cap.std is not None:
            for k, sign in enumerate((1, -1)):
                ax.axhline(
                    cap.mean + sign * 3 * cap.std,
                    color="#2e7d32",
                    lw=0.9,
                    ls="--",
                    label="mean ± 3s" if k == 0 else None,
                )
        for attr, label in (("low", "LSL"), ("high", "USL"), ("equals", "target")):
            levels = [getattr(m, attr) for m in ms]
            style = {"color": "#c00000", "lw": 1.2, "ls": ":", "label": label}
            if len(set(levels)) == 1 and levels[0] is not None:
                ax.axhline(levels[0], **style)
            elif any(v is not None for v in levels):
                ys = [math.nan if v is None else v for v in levels]
                ax.step(x, ys, where="mid", **style)
        odd = [i for i, m in zip(x, ms, strict=True) if not _finite(m.value)]
        if odd:
            ax.plot(
                odd,
                [1.0] * len(odd),
                ls="",
                marker="v",
                color="#c00000",
                transform=ax.get_xaxis_transform(),
                clip_on=False,
                label="never / not measured",
            )
        # runs with several observations (repeats, cycles): mark where each run starts
        starts = [i for i, (a, b) in enumerate(itertools.pairwise(ms), 2) if a.run_id != b.run_id]
        if len(starts) + 1 < len(ms):
            for s in starts:
                ax.axvline(s - 0.5, color="#bbbbbb", lw=0.6)
        if len(ms) <= 30:
            ax.set_xticks(x, [m.serial for m in ms], rotation=60, fontsize=7)
        unit = f" [{ms[0].unit}]" if ms[0].unit else ""
        at = ", ".join(f"{k}={_fmt(v)}" for k, v in ms[0].bindings.items())
        idx = f"{cap.kind} {cap.index:.2f}" if cap.index is not None else f"Cpk - ({cap.reason})"
        where = "".join(f" {k} {v}" for k, v in (("station", station), ("shift", shift)) if v)
        ax.set_title(
            f"{model} {requirement} {name}{' at ' + at if at else ''}{where}: n={len(ms)}, {idx}",
            fontsize=10,
        )
        ax.set_xlabel("unit, in run order")
        ax.set_ylabel(f"{name}{unit}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def stats_command(
    db_path: Path | str,
    model: str,
    *,
    chart_dir: Path | None = None,
    requirement: str | None = None,
    emulated: bool | None = None,
    by: str | None = None,
    station: str | None = None,
    shift: str | None = None,
) -> str:
    """What `rig stats MODEL` prints: the stats table, and control charts into `chart_dir`;
    `by` station or shift: a row per quantity and station (shift), the run yield of each, and
    with `chart_dir` a chart per station (shift) and quantity.

    Raises ConfigError when there is no database file at `db_path` (rather than creating an
    empty one, which would hide a wrong path); a URL names a server database."""
    if not is_url(db_path):
        db_path = Path(db_path)
        if not db_path.is_file():
            raise ConfigError(
                f"{db_path}: no results database (runs are ingested as each certification ends)"
            )
    if by is not None and by not in BY:
        raise ConfigError(f"statistics by {by!r}: expected one of {list(BY)}")
    with ResultsDB(db_path) as db:
        runs = [
            r
            for r in db.runs(model)
            if (emulated is None or r.emulated is emulated)
            and (station is None or r.station == station)
            and (shift is None or r.shift == shift)
        ]
        used = [r for r in runs if r.complete and r.chain_intact]
        head = (
            f"{model}: {len(used)} complete run(s) of {len(runs)} "
            f"({len({r.serial for r in used})} unit(s))"
        )
        excluded = len(runs) - len(used)
        if excluded:
            head += f"; {excluded} incomplete or altered run(s) left out"
        rows = requirement_stats(
            db,
            model,
            requirement=requirement,
            emulated=emulated,
            by=by,
            station=station,
            shift=shift,
        )
        if not rows:
            return head + "\nno measurements" + (f" of {requirement}" if requirement else "")
        text = [head]
        if by is not None:
            ys = [
                y
                for y in run_yields(db, model, by, emulated=emulated)
                if (station is None or by != "station" or y.group == station)
                and (shift is None or by != "shift" or y.group == shift)
            ]
            text.append(
                f"run yield by {by}: "
                + "; ".join(
                    f"{y.group} {y.passed}/{y.judged} PASS"
                    + ("" if y.pass_yield is None else f" ({100 * y.pass_yield:.1f}%)")
                    for y in ys
                )
            )
        text += [
            "std: sample standard deviation (ddof=1); Cpk uses it as sigma; "
            "yield: fraction of observations judged PASS; measurements of --retest attempts "
            "concluded ERROR are left out",
            format_stats(rows, by),
        ]
        if chart_dir is not None:
            written = []
            seen = set()
            for r in rows:
                key = (r.requirement, r.name, bindings_key(r.bindings), r.group)
                # a chart needs a spread to show; the chart covers every limit of a binding set
                if key in seen or r.std is None:
                    continue
                seen.add(key)
                stem = slug(f"{model}_{r.requirement}_{r.name}_{r.binding_text()}", keep="_.=-")
                folder = Path(chart_dir)
                only = {"station": station, "shift": shift}
                if by is not None:  # a chart per station (shift): one folder each
                    folder = folder / slug(str(r.group), keep="_.=-")
                    only[by] = r.group
                written.append(
                    control_chart(
                        db,
                        model,
                        r.requirement,
                        r.name,
                        r.bindings,
                        path=folder / f"{stem}.png",
                        emulated=emulated,
                        **only,
                    )
                )
            text.append(f"{len(written)} control chart(s) in {chart_dir}")
        return "\n".join(text)
