"""Procedures as data: every number a procedure uses comes from the profile, a missing one is a
load-time profile error naming file and key, and changing one changes what the procedure does."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rig.bench.table import Table
from rig.errors import ProfileError
from rig.procedures import (
    InversionProcedure,
    RollerProcedure,
    TractionProcedure,
    nominal_period,
    procedure_for,
)
from rig.procedures.roller import period_of
from rig.profiles import PROFILES_DIR, load_profile
from rig.profiles.model import KIND_NAMES
from rig.profiles.needs import BODY_PARAMS, HOME, needs_of
from rig.trace import Trace

RATE = 1000.0


def _copy(model: str, tmp_path: Path) -> Path:
    directory = tmp_path / model
    shutil.copytree(PROFILES_DIR / model, directory)
    return directory


def _edit(path: Path, old: str, new: str, *, requirement: str | None = None) -> None:
    """Replace `old` (once) in the file, or in the [[requirement]] block with that ID."""
    text = path.read_text()
    start, end = 0, len(text)
    if requirement is not None:
        start = text.index(f'id = "{requirement}"')
        nxt = text.find("[[requirement]]", start)
        end = len(text) if nxt < 0 else nxt
    block = text[start:end]
    assert block.count(old) == 1, old
    path.write_text(text[:start] + block.replace(old, new) + text[end:])


def _trace(channels: dict[str, np.ndarray], *, pretrigger: int) -> Trace:
    return Trace.from_samples(
        channels, rate=RATE, pretrigger=pretrigger, units={k: "" for k in channels}
    )


# --- the packaged profiles declare everything their procedures read ---------------------------


@pytest.mark.parametrize("model", ["TT-890", "RT-600", "IT-90"])
def test_packaged_profiles_have_every_param_their_procedures_read(model):
    profile = load_profile(model)
    kind = profile.model.kind_name
    for req in profile.requirements:
        assert req.test in BODY_PARAMS, f"{req.id}: no declared needs for {req.test}"
        for need in needs_of(req.test, kind):
            if need.optional or (
                need.when is not None and req.params.get(need.when[0]) != need.when[1]
            ):
                continue
            assert need.name in req.params, (req.id, need.name)
    assert set(profile.home) == {n.name for n in HOME[kind]}


def test_every_kind_has_needs():
    assert set(HOME) == set(KIND_NAMES)


# --- a missing or wrong number is a load-time error naming file and key ------------------------


@pytest.mark.parametrize(
    ("model", "old", "new", "key", "expected"),
    [
        (
            "RT-600",
            ", lift_by_s = 5.0, lift_drop = 0.5 }",
            ", lift_by_s = 5.0 }",
            "requirement[RT-SAF-02].params.lift_drop",
            "a number in mm",
        ),
        (
            "RT-600",
            'params = { trace_s = 16.0, quiet_from_s = 0.0, at = "straight", '
            "straight_margin = 60.0 }",
            'params = { trace_s = 16.0, quiet_from_s = 0.0, at = "straight" }',
            "requirement[RT-SAF-05].params.straight_margin",
            "a number in mm",
        ),
        (
            "TT-890",
            "release_limit_s = 3.0, release_level = 15.0 }",
            "release_limit_s = 3.0 }",
            "requirement[TT-SAF-02].params.release_level",
            "a number in N",
        ),
        (
            "IT-90",
            "still_tolerance = 0.05, overtravel_at_s = 1.0 }",
            "overtravel_at_s = 1.0 }",
            "requirement[IT-SAF-02].params.still_tolerance",
            "a number in deg",
        ),
        (
            "RT-600",
            "mm_per_level = 3.0, lift_speed = 10.0 }",
            "mm_per_level = 3.0 }",
            "requirement[RT-PERF-04].params.lift_speed",
            "a number in mm/s",
        ),
        (
            "RT-600",
            "params = { cycles = 2, accel = 200.0, dwell_total = 1.0, hysteresis = 2.0 }",
            "params = { cycles = 2, accel = 200.0, hysteresis = 2.0 }",
            "requirement[RT-PERF-05].params.dwell_total",
            "a number in s",
        ),
        (
            "RT-600",
            'params = { runs_of = "RT-PERF-01", hysteresis = 2.0 }',
            'params = { runs_of = "RT-PERF-01" }',
            "requirement[RT-PERF-03].params.hysteresis",
            "a number in mm",
        ),
    ],
)
def test_a_missing_param_fails_the_load_naming_file_and_key(
    tmp_path, model, old, new, key, expected
):
    directory = _copy(model, tmp_path)
    rid = key.split("[")[1].split("]")[0]
    _edit(directory / "requirements.toml", old, new, requirement=rid)
    with pytest.raises(ProfileError) as info:
        load_profile(directory)
    err = info.value
    assert err.path == str(directory / "requirements.toml")
    assert err.key == key
    assert err.value is None
    assert err.expected.startswith(expected)
    assert str(err).startswith(f"{directory / 'requirements.toml'}: {key} = None: expected")
    assert "reads it" in str(err)


def test_a_param_of_the_wrong_type_is_refused(tmp_path):
    directory = _copy("TT-890", tmp_path)
    _edit(
        directory / "requirements.toml",
        "release_limit_s = 3.0, release_level = 15.0 }",
        'release_limit_s = 3.0, release_level = "low" }',
        requirement="TT-SAF-02",
    )
    with pytest.raises(ProfileError, match=r"params\.release_level = 'low': expected a number"):
        load_profile(directory)


def test_a_choice_outside_the_kinds_conditions_is_refused(tmp_path):
    directory = _copy("RT-600", tmp_path)
    _edit(
        directory / "requirements.toml",
        'params = { relay = "estop", quiet_s = 5.0, at = "straight"',
        'params = { relay = "estop", quiet_s = 5.0, at = "moving"',
    )
    with pytest.raises(
        ProfileError,
        match=r"RT-SAF-07\]\.params\.at = 'moving': expected one of setpoint, straight",
    ):
        load_profile(directory)


def test_a_conditional_param_is_needed_only_under_its_condition(tmp_path):
    directory = _copy("RT-600", tmp_path)
    _edit(
        directory / "requirements.toml",
        'params = { relay = "estop", quiet_s = 5.0, at = "straight", straight_margin = 60.0 }',
        'params = { relay = "estop", quiet_s = 5.0, at = "setpoint" }',
    )
    assert "straight_margin" not in load_profile(directory).requirement("RT-SAF-07").params


def test_a_reference_to_another_requirement_must_name_one_that_makes_the_runs(tmp_path):
    directory = _copy("RT-600", tmp_path)
    _edit(
        directory / "requirements.toml",
        'params = { runs_of = "RT-PERF-01", margin = 50.0 }',
        'params = { runs_of = "RT-PERF-04", margin = 50.0 }',
    )
    with pytest.raises(
        ProfileError,
        match=r"RT-PERF-02\]\.params\.runs_of = 'RT-PERF-04': expected the ID of a "
        r"roller_cycles requirement",
    ):
        load_profile(directory)


def test_the_home_numbers_are_required_in_profile_toml(tmp_path):
    directory = _copy("IT-90", tmp_path)
    _edit(directory / "profile.toml", "timeout_s = 200.0\n", "")
    with pytest.raises(ProfileError) as info:
        load_profile(directory)
    assert info.value.path == str(directory / "profile.toml")
    assert info.value.key == "home.timeout_s"
    assert "a number in s" in info.value.expected
    _edit(directory / "profile.toml", "tolerance = 0.3\n", "tolerance = 0.3\ntolerence = 1\n")
    with pytest.raises(ProfileError, match=r"home\.tolerence = 1: expected no such key"):
        load_profile(directory)


def test_a_traction_profile_has_no_home_numbers_to_give(tmp_path):
    directory = _copy("TT-890", tmp_path)
    _edit(directory / "profile.toml", "[safe_state]", "[home]\ntolerance = 1.0\n\n[safe_state]")
    with pytest.raises(ProfileError, match=r"home\.tolerance = 1\.0: expected no such key"):
        load_profile(directory)


def test_the_monitor_body_needs_a_service_key_the_profile_names(tmp_path):
    directory = _copy("RT-600", tmp_path)
    _edit(directory / "profile.toml", "enum = { LEAVE = 0, ENTER = 42405 }", "enum = { LEAVE = 0 }")
    with pytest.raises(
        ProfileError, match=r"RT-SAF-04\]\.test = 'protective_monitor': .*SERVICE_KEY = ENTER"
    ):
        load_profile(directory)


def test_the_service_key_the_monitor_writes_is_the_icds():
    for model in ("TT-890", "RT-600", "IT-90"):
        assert load_profile(model).register("SERVICE_KEY").enum_value("ENTER") == 0xA5A5


# --- each kind's procedure uses the profile's numbers -------------------------------------------


def _release(level_before: float = 300.0) -> Trace:
    """A cord released exponentially at t 0.05 s after the trigger (0.2 s pre-trigger)."""
    t = (np.arange(int(5.2 * RATE)) - 200) / RATE
    f = np.where(t < 0.05, level_before, level_before * np.exp(-(t - 0.05) / 0.3))
    return _trace({"FORC": f}, pretrigger=200)


def test_traction_stop_uses_the_release_level_and_limit_from_params(tmp_path):
    directory = _copy("TT-890", tmp_path)
    _edit(
        directory / "requirements.toml",
        "release_limit_s = 3.0, release_level = 15.0 }",
        "release_limit_s = 0.5, release_level = 60.0 }",
        requirement="TT-SAF-02",
    )
    changed = load_profile(directory).requirement("TT-SAF-02")
    packaged = load_profile("TT-890").requirement("TT-SAF-02")
    trace = _release()
    proc = TractionProcedure(load_profile(directory))
    ours, _ = proc.stop_quantities(trace, changed.params, changed.settings)
    theirs, _ = proc.stop_quantities(trace, packaged.params, packaged.settings)
    # 300 N e^(-t/0.3): below 60 N after 0.3 ln 5 = 0.483 s, below 15 N after 0.3 ln 20 = 0.899 s
    assert ours["release_time"] == pytest.approx(0.05 + 0.3 * np.log(5), abs=2 / RATE)
    assert theirs["release_time"] == pytest.approx(0.05 + 0.3 * np.log(20), abs=2 / RATE)
    assert ours["force_after_release"] == pytest.approx(300 * np.exp(-0.45 / 0.3), rel=0.01)
    assert theirs["force_after_release"] < 1.0


def test_traction_monitor_offset_is_the_params_fraction_of_force_set():
    req = load_profile("TT-890").requirement("TT-SAF-04")
    proc = TractionProcedure(load_profile("TT-890"))
    assert proc.sensor_offset(req.settings, req.params) == pytest.approx(-0.15 * 400.0)


def _roller_stop(lift_before: float = 15.0) -> Trace:
    """A carriage stopping from 60 mm/s; the lift lowering at 10 mm/s from t 0.02 s."""
    t = (np.arange(int(6.0 * RATE)) - 200) / RATE
    x = 300.0 + 60.0 * np.clip(t, None, 0.0) + np.where(t > 0, 60.0 * t - 1500 * t**2, 0.0)
    x = np.where(t > 0.02, 300.0 + 60 * 0.02 - 1500 * 0.02**2, x)
    lift = np.where(t < 0.02, lift_before, np.maximum(lift_before - 10.0 * (t - 0.02), 0.0))
    return _trace({"POS": x, "LIFT": lift}, pretrigger=200)


def test_roller_stop_uses_the_lift_drop_and_tolerances_from_params(tmp_path):
    directory = _copy("RT-600", tmp_path)
    _edit(
        directory / "requirements.toml",
        "lift_by_s = 5.0, lift_drop = 0.5 }",
        "lift_by_s = 0.5, lift_drop = 2.0 }",
        requirement="RT-SAF-02",
    )
    changed = load_profile(directory).requirement("RT-SAF-02")
    packaged = load_profile("RT-600").requirement("RT-SAF-02")
    proc = RollerProcedure(load_profile("RT-600"))
    trace = _roller_stop()
    ours, our_marks = proc.stop_quantities(trace, changed.params, changed.settings)
    theirs, their_marks = proc.stop_quantities(trace, packaged.params, packaged.settings)
    # the lift falls 0.5 mm in 0.05 s and 2 mm in 0.2 s at 10 mm/s
    assert theirs["lift_drop_time"] == pytest.approx(0.07, abs=2 / RATE)
    assert ours["lift_drop_time"] == pytest.approx(0.22, abs=2 / RATE)
    assert "lift -0.5 mm" in their_marks and "lift -2 mm" in our_marks
    # lift_after from lift_by_s: 15 mm lowering at 10 mm/s is still 10.2 mm high at 0.5 s
    assert ours["lift_after"] == pytest.approx(15.0 - 10.0 * 0.48, abs=0.02)
    assert theirs["lift_after"] == 0.0


def test_roller_period_is_the_icds_formula_in_one_place():
    # plc-modbus.md: T = 2 (d/v + v/a) + 1.0 s, a = 200 mm/s2
    assert nominal_period(500.0, 60.0, accel=200.0, dwell_total=1.0) == pytest.approx(
        2 * (500 / 60 + 60 / 200) + 1.0
    )
    profile = load_profile("RT-600")
    cycles = profile.requirement("RT-PERF-01")
    settings = {"TRAVEL_START": 50.0, "TRAVEL_END": 550.0, "SPEED": 60.0}
    period = period_of(settings, cycles.params)
    low, high = cycles.measurement("mean_period").limits({"d": 500.0, "v": 60.0, "T": period})
    assert (low, high) == pytest.approx((0.98 * period, 1.02 * period))
    # RT-PERF-05 times its acquisition with the same numbers
    assert period_of(settings, profile.requirement("RT-PERF-05").params) == period


def test_roller_period_follows_the_params(tmp_path):
    directory = _copy("RT-600", tmp_path)
    _edit(
        directory / "requirements.toml",
        "periods = 3, accel = 200.0, dwell_total = 1.0,",
        "periods = 3, accel = 100.0, dwell_total = 2.0,",
    )
    params = load_profile(directory).requirement("RT-PERF-01").params
    settings = {"TRAVEL_START": 50.0, "TRAVEL_END": 550.0, "SPEED": 60.0}
    assert period_of(settings, params) == pytest.approx(2 * (500 / 60 + 60 / 100) + 2.0)


def _stop_angle() -> Trace:
    """A frame braked from 6 deg/s at 40 deg: stops 0.12 deg further within 0.04 s."""
    t = (np.arange(int(3.0 * RATE)) - 200) / RATE
    a = 40.0 + np.where(t > 0.04, 0.12, np.where(t > 0, 6.0 * t - 75 * t**2, 6.0 * t))
    return _trace({"ANGL": a}, pretrigger=200)


def test_inversion_stop_uses_the_still_tolerance_and_overtravel_instant(tmp_path):
    directory = _copy("IT-90", tmp_path)
    _edit(
        directory / "requirements.toml",
        "still_tolerance = 0.05, overtravel_at_s = 1.0 }",
        "still_tolerance = 0.005, overtravel_at_s = 5.0 }",
        requirement="IT-SAF-02",
    )
    changed = load_profile(directory).requirement("IT-SAF-02")
    packaged = load_profile("IT-90").requirement("IT-SAF-02")
    proc = InversionProcedure(load_profile("IT-90"))
    trace = _stop_angle()
    ours, _ = proc.stop_quantities(trace, changed.params, changed.settings)
    theirs, _ = proc.stop_quantities(trace, packaged.params, packaged.settings)
    # within 0.05 deg of the final 0.12 from 6t - 75t^2 = 0.07 (t 0.0142 s); within 0.005 from
    # 0.115 (t 0.0305 s)
    assert theirs["stop_time"] == pytest.approx(0.0142, abs=2 / RATE)
    assert ours["stop_time"] == pytest.approx(0.0305, abs=2 / RATE)
    # overtravel is judged at overtravel_at_s: a 3 s trace does not reach 5 s
    assert "overtravel" in theirs and "overtravel" not in ours


# --- home: the profile's [home] numbers -----------------------------------------------------------


class FakeTable:
    """The Table role as the procedures see it: named reads, commands, waits."""

    def __init__(self, profile: Any, values: dict[str, float]) -> None:
        self.profile = profile
        self.values = dict(values)
        self.commands: list[str] = []
        self.timeouts: list[float] = []

    def read(self, name: str) -> float:
        return self.values[name]

    def read_many(self, names: list[str]) -> dict[str, float]:
        return {n: self.values[n] for n in names}

    def status(self) -> dict[str, bool]:
        return {"motor_enabled": False, "at_setpoint": True}

    def state(self) -> str:
        return "IDLE"

    def configure(self, settings: dict[str, float]) -> None:
        self.values.update(settings)

    def command(self, name: str) -> None:
        self.commands.append(name)

    def stop_and_wait(self) -> None:
        self.commands.append("STOP (waited)")

    def wall_timeout(self, device_seconds: float) -> float:
        self.timeouts.append(device_seconds)
        return 1.0


def _with_home(tmp_path: Path, model: str, tolerance: str, new: str) -> Any:
    directory = _copy(model, tmp_path)
    _edit(directory / "profile.toml", f"tolerance = {tolerance}\n", f"tolerance = {new}\n")
    return load_profile(directory)


def test_roller_home_parks_only_beyond_the_profiles_tolerance(tmp_path):
    values = {"TRAVEL_START": 50.0, "POSITION": 50.8}
    table = FakeTable(load_profile("RT-600"), values)
    procedure_for(table.profile).home(table)
    assert table.commands == []  # 0.8 mm is parked within the packaged 1.0 mm
    strict = _with_home(tmp_path, "RT-600", "1.0", "0.5")
    table = FakeTable(strict, values)
    procedure_for(strict).home(table)
    assert table.commands == ["START", "STOP (waited)"]
    assert table.timeouts == [60.0]


def test_inversion_home_uses_the_profiles_tolerance_and_timeout(tmp_path):
    values = {"ANGLE": 0.25}
    table = FakeTable(load_profile("IT-90"), values)
    procedure_for(table.profile).home(table)
    assert table.commands == []  # upright within 0.3 deg
    strict = _with_home(tmp_path, "IT-90", "0.3", "0.1")
    table = FakeTable(strict, values)
    procedure_for(strict).home(table)
    assert table.commands == ["START", "STOP (waited)"]
    assert table.values["ANGLE_SET"] == 0.0 and table.timeouts == [200.0]


def test_expected_time_reads_a_setting_the_requirement_leaves_out_from_the_table():
    profile = load_profile("TT-890")
    table = FakeTable(profile, {"FORCE_SET": 300.0, "RAMP_RATE": 50.0})
    proc = procedure_for(profile)
    assert proc.expected_s(table, {"FORCE_SET": 600.0, "RAMP_RATE": 100.0}) == 6.0
    assert proc.expected_s(table, {"FORCE_SET": 600.0}) == 12.0
    assert proc.expected_s(table, {}) == 6.0


def test_procedure_for_each_kind():
    assert isinstance(procedure_for(load_profile("TT-890")), TractionProcedure)
    assert isinstance(procedure_for(load_profile("RT-600")), RollerProcedure)
    assert isinstance(procedure_for(load_profile("IT-90")), InversionProcedure)


# --- the Table role: heartbeat pause -------------------------------------------------------------


class FakeHeartbeat:
    def __init__(self, running: bool) -> None:
        self.running = running
        self.calls: list[str] = []

    def stop(self) -> None:
        self.calls.append("stop")
        self.running = False

    def start(self) -> None:
        self.calls.append("start")
        self.running = True


class FakePlc:
    def __init__(self, running: bool) -> None:
        self.heartbeat = FakeHeartbeat(running)


def test_heartbeat_paused_stops_and_resumes_even_on_an_error():
    plc = FakePlc(running=True)
    table = Table(plc, load_profile("TT-890"))  # type: ignore[arg-type]
    with table.heartbeat_paused():
        assert not plc.heartbeat.running
    assert plc.heartbeat.calls == ["stop", "start"]
    with pytest.raises(RuntimeError), table.heartbeat_paused():
        raise RuntimeError("acquisition failed")
    assert plc.heartbeat.running and plc.heartbeat.calls[-2:] == ["stop", "start"]


def test_heartbeat_paused_does_not_start_a_heartbeat_that_was_not_running():
    plc = FakePlc(running=False)
    table = Table(plc, load_profile("TT-890"))  # type: ignore[arg-type]
    with table.heartbeat_paused():
        pass
    assert not plc.heartbeat.running


def test_suites_use_the_table_role_only():
    suites = Path(__file__).resolve().parent.parent / "suites"
    offenders = [
        f"{path.relative_to(suites)}:{n}"
        for path in sorted(suites.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\.plc\b", line)
    ]
    assert offenders == []
