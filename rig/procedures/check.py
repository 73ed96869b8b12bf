"""A requirement under test: records measurements against the profile's limits (the one judge)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..analysis import AnalysisError, settle_instant, settled_value
from ..errors import ConfigError
from ..evidence.format import Outcome, slug
from ..evidence.measurement import Measurement, evaluate
from ..evidence.writer import RunRecord
from ..profiles import Requirement
from ..trace import Trace


class RequirementCheck:
    """What one requirement test writes to: measurements are soft (all are taken), judged here.

    A test body calls `measure(name, value, **bindings)` for each quantity the requirement lists;
    the limit comes from the profile, evaluated with the requirement's settings and params and
    the bindings (e.g. `set=300.0`). The test fails after its body if any measurement failed.
    """

    def __init__(
        self, requirement: Requirement, record: RunRecord | None, *, model: str = ""
    ) -> None:
        self.requirement = requirement
        self.record = record
        self.model = model
        self.measurements: list[Measurement] = []
        self.repeat: int | None = None
        self._trace_ref: tuple[str, str] | None = None
        self.attachments: list[tuple[str, str]] = []

    # -- environment of the limit expressions -------------------------------------------------
    def env(self, **bindings: float) -> dict[str, float]:
        """Numbers the limit expressions may name."""
        env: dict[str, float] = {}
        for k, v in self.requirement.settings.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                env[k] = float(v)
        for k, v in self.requirement.params.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                env[k] = float(v)
        env.update({k: float(v) for k, v in bindings.items()})
        return env

    def measure(
        self, name: str, value: float | None, *, note: str = "", **bindings: float
    ) -> Measurement:
        """Judge `value` for the requirement's measurement `name` and record it."""
        spec = self.requirement.measurement(name)
        trace, trace_sha = self._trace_ref or (None, None)
        m = evaluate(
            spec,
            self.requirement.id,
            self.requirement.clause,
            value,
            self.env(**bindings),
            bindings=dict(bindings),
            repeat=self.repeat,
            note=note,
            trace=trace,
            trace_sha256=trace_sha,
        )
        return self._keep(m)

    def _keep(self, m: Measurement) -> Measurement:
        """A judged measurement joins the requirement's, the record and the allure steps."""
        self.measurements.append(m)
        if self.record is not None:
            self.record.add(m)
        _allure_step(m)
        return m

    def unit_fault(self, fault: Any) -> Measurement:
        """Record a fault the unit caused on its own as a FAIL measurement: e.g. a COMM_LOSS
        with the rig's heartbeat provably on time (`rig.plc.UnitTrippedCommLoss`: its
        `measurement` name, the gap at the fault in device ms, and WATCHDOG_MS as the lowest
        gap at which the watchdog may fire)."""
        trace, trace_sha = self._trace_ref or (None, None)
        m = Measurement(
            requirement=self.requirement.id,
            clause=self.requirement.clause,
            name=str(fault.measurement),
            value=float(fault.gap_ms),
            unit="ms",
            low=float(fault.watchdog_ms),
            high=None,
            equals=None,
            verdict=Outcome.FAIL,
            repeat=self.repeat,
            note=str(fault),
            trace=trace,
            trace_sha256=trace_sha,
        )
        return self._keep(m)

    def measure_from(
        self,
        name: str,
        compute: Callable[..., float],
        *args: object,
        bindings: dict[str, float] | None = None,
        note: str = "",
        **kwargs: object,
    ) -> Measurement:
        """Measure `compute(*args, **kwargs)`; if the trace never shows the quantity
        (AnalysisError: e.g. the value never came within its limit), record it as not
        measured, which fails, with the reason in the note."""
        try:
            value: float | None = compute(*args, **kwargs)
        except AnalysisError as e:
            value, note = None, f"{note}; {e}".lstrip("; ")
        return self.measure(name, value, note=note, **(bindings or {}))

    def band(self, name: str, **bindings: float) -> tuple[float, float]:
        """Target and half-width of a measurement's two-sided limit from the profile (what a
        body needs to find, e.g., when a quantity first comes within its own limit)."""
        low, high = self.requirement.measurement(name).limits(self.env(**bindings))
        if low is None or high is None:
            raise ConfigError(f"{self.requirement.id}: {name} has no two-sided limit")
        return (low + high) / 2, (high - low) / 2

    def measure_settled(
        self,
        name: str,
        trace: Trace,
        channel: str,
        *,
        label: str,
        lines: dict[str, float],
        **bindings: float,
    ) -> Measurement:
        """Judge the settled value of `channel` (requirements.md) against `name`'s limit; the
        plot marks where it first came within the limit and where the 2 s window starts."""
        target, tol = self.band(name, **bindings)
        t, x = trace.t, trace[channel]
        t_in = settle_instant(t, x, target=target, tolerance=tol)
        self.trace(
            label,
            trace,
            channel=channel,
            lines=lines,
            marks={"within limit": t_in, "window start": t_in + 2.0},
        )
        return self.measure_from(
            name, settled_value, t, x, target=target, tolerance=tol, bindings=bindings
        )

    def has(self, name: str) -> bool:
        """True when the requirement lists a measurement of this name."""
        return any(m.name == name for m in self.requirement.measurements)

    def measure_all(
        self, values: dict[str, float | None], *, note: str = "", **bindings: float
    ) -> None:
        """Measure every quantity the requirement lists from `values` computed by the body."""
        for spec in self.requirement.measurements:
            if spec.name not in values:
                raise ConfigError(
                    f"{self.requirement.id}: measurement {spec.name!r} is not one the test body "
                    f"'{self.requirement.test}' computes; it computes {sorted(values)}"
                )
            self.measure(spec.name, values[spec.name], note=note, **bindings)

    def trace(
        self,
        label: str,
        trace: Trace,
        *,
        channel: str,
        marks: dict[str, float] | None = None,
        lines: dict[str, float] | None = None,
    ) -> None:
        """Keep a trace as evidence (CSV in the record, CSV and PNG in allure); later
        measurements refer to it."""
        name = slug(f"{self.requirement.id}-{label}")
        csv = trace.to_csv()
        if self.record is not None:
            self._trace_ref = self.record.add_trace(name, csv)
            png = self.record.directory / "traces" / f"{name}.png"
        else:
            self._trace_ref = None
            png = None
        from ..plots import plot_trace

        image = plot_trace(
            trace,
            channel=channel,
            title=f"{self.requirement.id} {label}",
            marks=marks or {},
            lines=lines or {},
            path=png,
        )
        _allure_attach(name, csv, image)

    @property
    def failed(self) -> list[Measurement]:
        """Measurements that did not pass."""
        return [m for m in self.measurements if m.verdict != Outcome.PASS]

    def verdict(self) -> str:
        """PASS only when something was measured and everything passed."""
        if not self.measurements:
            return Outcome.FAIL
        return Outcome.FAIL if self.failed else Outcome.PASS

    def failure_text(self) -> str:
        """Why the requirement failed, one line per failing measurement."""
        if not self.measurements:
            return f"{self.requirement.id}: nothing was measured"
        rows = [
            f"{m.requirement} {m.name}{'' if m.repeat is None else f' (run {m.repeat + 1})'}: "
            f"{m.value_text()} not within {m.limit_text()}"
            + (f" [{', '.join(f'{k}={v:g}' for k, v in m.bindings.items())}]" if m.bindings else "")
            for m in self.failed
        ]
        return "\n".join(rows)


def _allure_step(m: Measurement) -> None:
    try:
        import allure
    except ImportError:  # pragma: no cover - allure-pytest is a dependency
        return
    with allure.step(f"{m.name} = {m.value_text()} (limit {m.limit_text()}): {m.verdict}"):
        pass


def _allure_attach(name: str, csv: str, png: bytes | None) -> None:
    try:
        import allure
    except ImportError:  # pragma: no cover
        return
    allure.attach(csv, name=f"{name}.csv", attachment_type=allure.attachment_type.CSV)
    if png:
        allure.attach(png, name=f"{name}.png", attachment_type=allure.attachment_type.PNG)


def worst(measurements: list[Measurement]) -> dict[str, Any]:
    """Per measurement name, the worst value (the one the requirement is judged on)."""
    out: dict[str, Measurement] = {}
    for m in measurements:
        prev = out.get(m.name)
        if prev is None or _badness(m) > _badness(prev):
            out[m.name] = m
    return out


def _badness(m: Measurement) -> float:
    if m.value is None:
        return float("inf")
    fail = 1e12 if m.verdict != Outcome.PASS else 0.0
    if m.equals is not None:
        return fail
    if m.high is not None and m.low is not None:
        mid = (m.high + m.low) / 2
        half = max((m.high - m.low) / 2, 1e-12)
        return fail + abs(m.value - mid) / half
    if m.high is not None:
        return fail + m.value
    return fail - m.value
