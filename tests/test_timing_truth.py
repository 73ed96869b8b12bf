"""Conservative timing against ground truth: the sample-rate rule, the emulator's truth hooks,
and a few real stops judged against the emulator's own truth (benchmarks/timing_truth.py runs
the hundred)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from rig.emulators.clock import ManualClock
from rig.emulators.faults import track_from_pieces, truth
from rig.emulators.registers import COMMAND, HEARTBEAT
from rig.emulators.roller import RollerTable
from rig.emulators.traction import EMERGENCY_RELEASE_N_S, STOP_LATENCY_S, TractionTable
from rig.emulators.world import World
from rig.errors import ConfigError
from rig.procedures.common import (
    BLOCK_RATE_HZ,
    CLOCK_TIMED,
    arm,
    sample_rate,
    timing_limit,
)
from rig.profiles import load_profile

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "timing_truth.py"


# --- the sample-rate rule ----------------------------------------------------------------------


def test_rate_is_twenty_samples_per_timing_limit_rounded_up_to_10_hz():
    assert sample_rate(duration_s=5.0, timing_limit_s=0.100) == 200.0
    assert sample_rate(duration_s=5.0, timing_limit_s=0.150) == 140.0  # 133.3 -> 140
    assert sample_rate(duration_s=11.0, timing_limit_s=0.200) == 100.0
    assert sample_rate(duration_s=60.0, timing_limit_s=3.0) == 10.0  # the instrument's least
    # a floor for the acquisition's other quantities raises it, never lowers it
    assert sample_rate(duration_s=5.0, timing_limit_s=0.100, floor_hz=500.0) == 500.0
    assert sample_rate(duration_s=5.0, timing_limit_s=0.100, floor_hz=50.0) == 200.0
    # no timing limit, no floor: ten samples in each 100 ms mean
    assert sample_rate(duration_s=5.0) == BLOCK_RATE_HZ


def test_rate_rule_refuses_what_the_instrument_cannot_do():
    with pytest.raises(ConfigError, match=r"needs 20000 Hz .* at most 10000 Hz"):
        sample_rate(duration_s=1.0, timing_limit_s=0.001)
    with pytest.raises(ConfigError, match="200000 points"):
        sample_rate(duration_s=1000.0, timing_limit_s=0.05, what="RT-X")
    # a floor that does not fit is lowered to what fits, never below the rule
    rate = sample_rate(duration_s=100.0, timing_limit_s=0.5, floor_hz=5000.0)
    assert rate == 1990.0
    assert (100.0 * rate) + 1 <= 200_000


def test_timing_limit_of_the_packaged_requirements():
    tt, rt, it = (load_profile(m) for m in ("TT-890", "RT-600", "IT-90"))
    assert timing_limit(tt.requirement("TT-SAF-01")) == pytest.approx(0.100)  # reaction time
    assert timing_limit(tt.requirement("TT-PERF-05")) == pytest.approx(0.5)  # width half-band
    assert timing_limit(rt.requirement("RT-SAF-02")) == pytest.approx(0.150)  # lift drop
    assert timing_limit(it.requirement("IT-SAF-01")) == pytest.approx(0.200)
    # fault and answer times are read from the PLC's clock: the sample rate serves none
    assert {"fault_time", "answer_time"} <= CLOCK_TIMED
    assert timing_limit(tt.requirement("TT-SAF-05")) is None
    assert timing_limit(tt.requirement("TT-PERF-01")) is None
    # RT-PERF-01's limits need the run's T: without it, an error naming what is missing
    cycles = rt.requirement("RT-PERF-01")
    with pytest.raises(ConfigError, match=r"RT-PERF-01.*mean_period.*needs T"):
        timing_limit(cycles)
    t = 18.27
    assert timing_limit(cycles, {"d": 500.0, "v": 60.0, "T": t}) == pytest.approx(0.005 * t)


class _Meter:
    """Records what arm() asks of an instrument."""

    def __init__(self) -> None:
        self.configured: dict[str, float | str] = {}
        self.armed = False

    def configure(self, **kw: float | str) -> None:
        self.configured = kw

    def arm(self) -> None:
        self.armed = True


def test_arm_samples_at_the_rule_rate_of_the_requirement_it_serves():
    tt, it = load_profile("TT-890"), load_profile("IT-90")
    meter = _Meter()
    acq = arm(meter, duration_s=5.0, serves=tt.requirement("TT-SAF-01"), source="EXT")
    assert acq.rate_hz == meter.configured["rate"] == 200.0
    assert meter.armed
    # IT-SAF-02 judges no time: the block rate
    acq = arm(meter, duration_s=30.0, serves=it.requirement("IT-SAF-02"))
    assert acq.rate_hz == BLOCK_RATE_HZ
    # a caller's floor still counts (the watchdog trace: 200 Hz, nothing timed from samples)
    acq = arm(meter, duration_s=7.0, rate_hz=200.0, serves=tt.requirement("TT-SAF-05"))
    assert acq.rate_hz == 200.0


# --- the emulator's truth hooks (in process, manual clock) -------------------------------------


def _traction(defects: tuple[str, ...] = ()) -> tuple[ManualClock, World, TractionTable]:
    clock = ManualClock()
    world = World(clock, seed=3)
    table = TractionTable(world, serial=1, defects=frozenset(defects))
    return clock, world, table


def _hold(clock: ManualClock, table: TractionTable, until: float) -> None:
    """Advance to `until`, beating the heartbeat every 0.1 s (a running table needs it)."""
    beat = 0
    while clock.now() < until:
        beat += 1
        assert table.write(6, HEARTBEAT, [beat]) is None
        clock.set(min(clock.now() + 0.1, until))


@pytest.mark.parametrize(("defects", "late"), [((), 0.0), (("estop-slow",), 0.150)])
def test_traction_truth_of_an_estop(defects, late):
    clock, world, table = _traction(defects)
    assert table.write(16, 102, [3000, 1000]) is None  # FORCE_SET 300 N, RAMP_RATE 100 N/s
    assert table.write(6, COMMAND, [1]) is None  # START
    _hold(clock, table, 5.0)
    world.set_relay("estop", True)
    _hold(clock, table, 6.0)
    (event,) = table.truth()
    assert event["cause"] == "estop"
    assert event["t_edge"] == pytest.approx(5.0)
    # the e-stop circuit reached the drive (after the defect's delay), which holds 10 ms, then
    # releases at 2000 N/s
    react = 5.0 + late + STOP_LATENCY_S
    assert event["t_react"] == pytest.approx(react)
    assert event["t_stopped"] == pytest.approx(react + 300.0 / EMERGENCY_RELEASE_N_S)
    # the channel's view: JSON, and the pieces rebuild the true signal exactly
    seen = json.loads(json.dumps(truth(table, 4.0)))
    (event,) = seen["events"]
    force = track_from_pieces(seen["tracks"]["force"])
    times = np.linspace(4.0, 6.0, 2001)
    np.testing.assert_allclose(force.sample(times), table.sample_force(times), atol=1e-9)
    assert truth(table, 5.5)["events"] == []  # only what happened since


def test_roller_truth_of_estop_and_patient_stop():
    clock = ManualClock()
    world = World(clock, seed=4)
    table = RollerTable(world, serial=2)
    # SPEED 60 mm/s, INTENSITY 3, travel 50-550
    assert table.write(16, 200, [600, 3, 50, 550]) is None
    assert table.write(6, COMMAND, [1]) is None
    _hold(clock, table, 3.0)  # moving out on the straight
    v = table.sample_position(np.array([2.999, 3.0]))
    speed = (v[1] - v[0]) / 0.001
    world.set_relay("estop", True)
    _hold(clock, table, 5.0)
    event = table.truth()[-1]
    assert (event["cause"], event["t_react"]) == ("estop", pytest.approx(3.0))
    assert event["t_stopped"] == pytest.approx(3.0 + speed / 2000.0, abs=1e-6)  # the brake
    assert event["t_lift_down"] > event["t_stopped"]  # the lift lowers once stopped
    assert set(table.truth_tracks()) == {"position", "lift"}
    assert not math.isnan(event["t_edge"])


# --- a few real stops against the truth ----------------------------------------------------------


def _benchmark():
    spec = importlib.util.spec_from_file_location("timing_truth", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("model", ["TT-890", "RT-600", "IT-90"])
def test_stops_are_never_early_and_within_one_period_of_the_truth(model):
    """Two stops through the rig's drivers and arm() on a bench in a child process (scale 10):
    each timing quantity lies in [truth, truth + one sample period], give or take what the
    instrument noise explains at the true slope; distances never short beyond the noise."""
    bench = _benchmark()
    rows = bench.run_model(model, 2, scale=10.0, seed=7, log=lambda s: None)
    assert {r.quantity for r in rows} >= {
        "TT-890": {"reaction_time", "release_time"},
        "RT-600": {"lift_drop_time"},
        "IT-90": {"stop_time", "overtravel"},
    }[model]
    for r in rows:
        assert r.error >= -r.noise, r
        if r.unit == "s":
            assert r.error <= r.period_s + r.noise, r
            # the rate is the rule's for the requirement the stop serves
            req = load_profile(model).requirement(r.requirement)
            rule = sample_rate(duration_s=1.0, timing_limit_s=timing_limit(req))
            assert 1.0 / r.period_s == pytest.approx(rule)
