"""Model profiles: TT-890 against the ICD, raw conversions, refusal of bad profiles, expressions."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.errors import ConfigError, ProfileError
from rig.profiles import (
    PROFILES_DIR,
    MaxByRule,
    MinSpanRule,
    NotAboveRule,
    Register,
    available_profiles,
    load_profile,
)
from rig.profiles.expr import ExprError, compile_expr

DATA = Path(__file__).parent / "data" / "profiles"
TT890 = PROFILES_DIR / "TT-890"


@pytest.fixture(scope="module")
def tt890(tmp_path_factory):
    """The packaged TT-890; with the test requirement set if the lead's file is not there yet."""
    if (TT890 / "requirements.toml").is_file():
        return load_profile("TT-890")
    return load_profile(_copy_tt890(tmp_path_factory.mktemp("tt890")))


def _copy_tt890(directory: Path, requirements: Path = DATA / "requirements-small.toml") -> Path:
    shutil.copy(TT890 / "profile.toml", directory / "profile.toml")
    shutil.copy(requirements, directory / "requirements.toml")
    return directory


# --------------------------------------------------------------------------- TT-890 vs the ICD

# name: (space, address, type, scale, unit, min, max, default, access, group)
ICD_REGISTERS = {
    # common input registers
    "KIND": ("input", 0, "u16", 1, "", None, None, None, "r", "identity"),
    "ICD_VERSION": ("input", 1, "u16", 1, "", None, None, None, "r", "identity"),
    "SERIAL": ("input", 2, "u32", 1, "", None, None, None, "r", "identity"),
    "FIRMWARE": ("input", 4, "u16", 1, "", None, None, None, "r", "identity"),
    "STATE": ("input", 5, "u16", 1, "", None, None, None, "r", "status"),
    "STATUS": ("input", 6, "u16", 1, "", None, None, None, "r", "status"),
    "FAULT": ("input", 7, "u16", 1, "", None, None, None, "r", "status"),
    "SESSION_ELAPSED": ("input", 8, "u16", 1, "s", None, None, None, "r", "status"),
    "CYCLES": ("input", 9, "u16", 1, "", None, None, None, "r", "status"),
    "UPTIME_MS": ("input", 10, "u32", 1, "ms", None, None, None, "r", "status"),
    "FAULT_UPTIME_MS": ("input", 12, "u32", 1, "ms", None, None, None, "r", "status"),
    # common holding registers
    "COMMAND": ("holding", 0, "u16", 1, "", 0, 4, 0, "rw", "command"),
    "HEARTBEAT": ("holding", 1, "u16", 1, "", 0, 65535, 0, "rw", "heartbeat"),
    "WATCHDOG_MS": ("holding", 2, "u16", 1, "ms", 100, 5000, 1000, "rw", "setting"),
    "SESSION_S": ("holding", 3, "u16", 1, "s", 60, 5940, 900, "rw", "setting"),
    # service block
    "SERVICE_KEY": ("holding", 900, "u16", 1, "", 0, 65535, None, "rw", "service"),
    "SENSOR_OFFSET": ("holding", 901, "s16", 10, "N", -3276.8, 3276.7, 0.0, "rw", "service"),
    # traction holding registers (ICD range/default columns are raw: x10 registers / 10)
    "MODE": ("holding", 100, "u16", 1, "", 0, 1, 0, "rw", "setting"),
    "HARNESS": ("holding", 101, "u16", 1, "", 0, 1, 0, "rw", "setting"),
    "FORCE_SET": ("holding", 102, "u16", 10, "N", 1.0, 890.0, 100.0, "rw", "setting"),
    "RAMP_RATE": ("holding", 103, "u16", 10, "N/s", 1.0, 100.0, 20.0, "rw", "setting"),
    "HOLD_S": ("holding", 104, "u16", 1, "s", 1, 99, 30, "rw", "setting"),
    "REST_S": ("holding", 105, "u16", 1, "s", 1, 99, 10, "rw", "setting"),
    "REST_PCT": ("holding", 106, "u16", 1, "%", 0, 90, 50, "rw", "setting"),
    # traction input registers
    "FORCE": ("input", 100, "s16", 10, "N", None, None, None, "r", "measurement"),
    "PHASE": ("input", 101, "u16", 1, "", None, None, None, "r", "status"),
}


def test_tt890_is_packaged_and_found_by_name_in_any_case(tt890):
    assert "TT-890" in available_profiles()
    if (TT890 / "requirements.toml").is_file():
        assert load_profile("tt-890").model == load_profile(TT890).model


def test_tt890_model_and_safe_state(tt890):
    m = tt890.model
    assert (m.name, m.kind, m.kind_name, m.icd_version) == ("TT-890", 1, "traction", 100)
    assert (m.reference_role, m.reference_model, m.reference_channel) == (
        "force_meter",
        "LC-2000",
        "FORC",
    )
    assert m.primary_unit == "N"
    s = tt890.safe_state
    assert s.states == ("IDLE", "ESTOP", "FAULT")
    assert s.motor_disabled is True
    assert s.reference_max == 15.0


def test_tt890_has_exactly_the_icd_registers(tt890):
    assert set(tt890.registers) == set(ICD_REGISTERS)


@pytest.mark.parametrize("name", list(ICD_REGISTERS))
def test_tt890_register_matches_icd(tt890, name):
    reg = tt890.register(name)
    space, address, rtype, scale, unit, low, high, default, access, group = ICD_REGISTERS[name]
    assert (reg.space, reg.address, reg.type, reg.scale, reg.unit) == (
        space,
        address,
        rtype,
        scale,
        unit,
    )
    assert (reg.min, reg.max, reg.default) == (low, high, default)
    assert (reg.access, reg.group) == (access, group)


def test_tt890_enums_and_bits_match_icd(tt890):
    r = tt890.registers
    assert dict(r["STATE"].enum) == {
        "IDLE": 0,
        "RUNNING": 1,
        "STOPPING": 2,
        "ESTOP": 3,
        "FAULT": 4,
    }
    assert dict(r["COMMAND"].enum) == {"NONE": 0, "START": 1, "STOP": 2, "RESET": 3, "ESTOP": 4}
    assert [r["FAULT"].enum_name(i) for i in range(9)] == [
        "NONE",
        "ESTOP",
        "PATIENT_STOP",
        "OVERFORCE",
        "OVERTRAVEL",
        "OVERSPEED",
        "COMM_LOSS",
        "RESERVED",
        "POWER_RESTORED",
    ]
    assert dict(r["STATUS"].bits) == {
        "estop_open": 0,
        "patient_pressed": 1,
        "at_setpoint": 2,
        "motor_enabled": 3,
        "brake_engaged": 4,
        "service_mode": 5,
    }
    assert dict(r["MODE"].enum) == {"STATIC": 0, "INTERMITTENT": 1}
    assert dict(r["HARNESS"].enum) == {"LUMBAR": 0, "CERVICAL": 1}
    assert dict(r["PHASE"].enum) == {
        "IDLE": 0,
        "RAMP_UP": 1,
        "HOLD": 2,
        "RAMP_DOWN": 3,
        "REST": 4,
        "RELEASE": 5,
    }
    assert r["KIND"].enum["TRACTION"] == 1
    assert r["SERVICE_KEY"].enum["ENTER"] == 0xA5A5


def test_tt890_harness_rule(tt890):
    (rule,) = tt890.rules
    assert isinstance(rule, MaxByRule)
    assert (rule.kind, rule.register, rule.by) == ("max_by", "FORCE_SET", "HARNESS")
    assert dict(rule.max) == {"0": 890.0, "1": 222.0}
    assert rule.limit_for(1) == 222.0
    assert tt890.rule_problems({"FORCE_SET": 222.0, "HARNESS": 1}, ["FORCE_SET"]) == []
    assert tt890.rule_problems({"FORCE_SET": 222.1, "HARNESS": 1}, ["HARNESS"])
    assert tt890.rule_partners(["HARNESS"]) == {"FORCE_SET"}


def test_tt890_settings_are_the_writable_setting_registers(tt890):
    assert list(tt890.settings()) == [
        "WATCHDOG_MS",
        "SESSION_S",
        "MODE",
        "HARNESS",
        "FORCE_SET",
        "RAMP_RATE",
        "HOLD_S",
        "REST_S",
        "REST_PCT",
    ]


def test_tt890_requirements_load_with_limits(tt890):
    ids = [r.id for r in tt890.requirements]
    assert ids[0] == "TT-PERF-01"
    assert len(ids) == len(set(ids))
    req = tt890.requirement("TT-PERF-01")
    assert req.test == "settled_force" and req.repeat == 1
    assert req.settings["MODE"] == 0
    assert list(req.params["setpoints"]) == [100.0, 300.0, 600.0, 890.0]
    spec = req.measurement("settled_force")
    assert spec.limits({"set": 300.0}) == pytest.approx((291.0, 309.0))
    assert spec.limits({"set": 100.0}) == pytest.approx((96.0, 104.0))
    assert str(spec.low) == "set - max(0.03 * set, 4)"
    for req in tt890.requirements:
        assert req.measurements and req.clause and req.quantity


def test_profile_is_immutable(tt890):
    with pytest.raises(dataclasses.FrozenInstanceError):
        tt890.model.name = "X"  # type: ignore[misc]
    with pytest.raises(TypeError):
        tt890.registers["X"] = tt890.registers["KIND"]  # type: ignore[index]
    with pytest.raises(TypeError):
        tt890.requirements[0].settings["MODE"] = 1  # type: ignore[index]


def test_hashes_follow_the_parsed_content_not_comments(tmp_path):
    (tmp_path / "a").mkdir()
    base = load_profile(_copy_tt890(tmp_path / "a"))
    assert re.fullmatch(r"[0-9a-f]{64}", base.sha256)
    assert re.fullmatch(r"[0-9a-f]{64}", base.requirements_sha256)
    other = tmp_path / "b"
    other.mkdir()
    _copy_tt890(other)
    req = other / "requirements.toml"
    req.write_text("# a new comment\n" + req.read_text())
    assert load_profile(other).requirements_sha256 == base.requirements_sha256
    req.write_text(req.read_text().replace("0.03 * set", "0.04 * set"))
    changed = load_profile(other)
    assert changed.requirements_sha256 != base.requirements_sha256
    assert changed.sha256 != base.sha256
    prof = other / "profile.toml"
    prof.write_text(prof.read_text().replace('doc = "treatment mode"', 'doc = "mode"'))
    assert load_profile(other).requirements_sha256 == changed.requirements_sha256
    assert load_profile(other).sha256 != changed.sha256


def test_unknown_model_lists_available():
    with pytest.raises(ConfigError, match=r"unknown table model 'XX-1'.*TT-890"):
        load_profile("XX-1")


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(ConfigError, match="no profile directory"):
        load_profile(tmp_path / "nope")
    shutil.copy(TT890 / "profile.toml", tmp_path / "profile.toml")
    with pytest.raises(ProfileError, match=r"requirements\.toml"):
        load_profile(tmp_path)


def test_unknown_register_and_requirement_name_the_model(tt890):
    with pytest.raises(ConfigError, match=r"TT-890 has no register 'FORCE_ST'"):
        tt890.register("FORCE_ST")
    with pytest.raises(ConfigError, match=r"no requirement 'TT-PERF-99'"):
        tt890.requirement("TT-PERF-99")
    with pytest.raises(ConfigError, match=r"no measurement 'nope'"):
        tt890.requirements[0].measurement("nope")


def test_small_requirement_set(tmp_path):
    profile = load_profile(_copy_tt890(tmp_path))
    perf05 = profile.requirement("TT-PERF-05")
    (hold,) = perf05.measurements
    # settings and numeric params are bound by the requirement itself
    assert hold.limits() == pytest.approx((7.5, 8.5))
    saf02 = profile.requirement("TT-SAF-02")
    assert saf02.repeat == 3
    assert saf02.params["relay"] == "patient" and saf02.params["verbose"] is False
    fault = saf02.measurement("fault")
    assert fault.equals == 2.0
    assert fault.limits() == (2.0, 2.0)
    assert saf02.measurement("reaction_time").limits() == (None, 0.1)
    # an enum name in settings is stored as its value
    assert profile.requirement("TT-PERF-01").settings["MODE"] == 0


def test_another_layout_needs_only_a_profile():
    profile = load_profile(DATA / "mini")
    assert profile.model.name == "XR-7"
    assert profile.register("STATE").address == 20
    assert profile.register("DOSE").to_raw(70000) == [1, 70000 - 65536]
    span, above = profile.rules
    assert isinstance(span, MinSpanRule) and isinstance(above, NotAboveRule)
    assert profile.rule_problems({"TRAVEL_START": 100, "TRAVEL_END": 199}, ["TRAVEL_END"])
    assert not profile.rule_problems({"TRAVEL_START": 100, "TRAVEL_END": 200}, ["TRAVEL_END"])
    assert profile.rule_problems({"ANGLE_SET": 60.1, "ANGLE_LIMIT": 60.0}, ["ANGLE_LIMIT"])
    assert not profile.rule_problems({"ANGLE_SET": 60.0, "ANGLE_LIMIT": 60.0}, ["ANGLE_SET"])
    speed = profile.requirement("XR-PERF-01").measurement("speed")
    assert speed.limits() == pytest.approx((38.0, 42.0))


def test_load_by_profile_toml_path():
    assert load_profile(DATA / "mini" / "profile.toml").model.name == "XR-7"


# --------------------------------------------------------------------------- raw conversions


def _reg(rtype: str, scale: float = 1, **kw) -> Register:
    return Register("X", "holding", 10, rtype, scale, **kw)


def test_raw_examples():
    force_set = _reg("u16", 10)
    assert force_set.to_raw(222.5) == [2225]
    assert force_set.from_raw([2225]) == 222.5
    force = _reg("s16", 10)
    assert force.to_raw(-123.4) == [0x10000 - 1234]
    assert force.from_raw([0xFFFF]) == -0.1
    assert _reg("s16").from_raw([0x8000]) == -32768
    serial = _reg("u32")
    assert serial.to_raw(0x12345678) == [0x1234, 0x5678]
    assert serial.from_raw([0x1234, 0x5678]) == 0x12345678
    assert isinstance(serial.from_raw([0, 5]), int)
    assert isinstance(force_set.from_raw([5]), float)


@pytest.mark.parametrize(
    ("rtype", "scale", "value"),
    [
        ("u16", 1, -1),
        ("u16", 1, 65536),
        ("u16", 10, 6553.6),
        ("s16", 10, 3276.8),
        ("s16", 1, -32769),
        ("u32", 1, 2**32),
        ("u32", 1, -1),
        ("u16", 1, float("nan")),
        ("u16", 1, True),
    ],
)
def test_to_raw_refuses_what_the_type_cannot_hold(rtype, scale, value):
    with pytest.raises(ValueError, match="X"):
        _reg(rtype, scale).to_raw(value)


def test_from_raw_refuses_wrong_word_count():
    with pytest.raises(ValueError):
        _reg("u32").from_raw([1])
    with pytest.raises(ValueError):
        _reg("u16").from_raw([70000])


def test_enum_and_bits_helpers(tt890):
    state = tt890.register("STATE")
    assert state.enum_name(1) == "RUNNING"
    assert state.enum_name(9) == "UNKNOWN(9)"
    assert tt890.register("MODE").to_raw("INTERMITTENT") == [1]
    with pytest.raises(ValueError, match="no value named 'FAST'"):
        tt890.register("MODE").to_raw("FAST")
    status = tt890.register("STATUS")
    assert status.bit(0b1000, "motor_enabled") is True
    assert status.bit(0b1000, "estop_open") is False
    assert status.bit_dict(0b100001)["service_mode"] is True
    with pytest.raises(ConfigError, match="no bit named 'motor'"):
        status.bit(0, "motor")


def test_range_problem_compares_what_the_plc_sees(tt890):
    fs = tt890.register("FORCE_SET")
    assert fs.range_problem(890.0) is None
    assert fs.range_problem(890.04) is None  # rounds to raw 8900
    assert "above" in fs.range_problem(890.1)
    assert "below" in fs.range_problem(0.9)
    assert "above" in tt890.register("MODE").range_problem(2)
    # inside the range but not a value the enum names
    assert "none of" in tt890.register("SERVICE_KEY").range_problem(1)
    assert tt890.register("SERVICE_KEY").range_problem("ENTER") is None


@given(st.integers(-32768, 32767))
def test_s16_roundtrip(raw):
    reg = _reg("s16")
    words = reg.to_raw(raw)
    assert 0 <= words[0] <= 0xFFFF
    assert reg.from_raw(words) == raw


@given(st.integers(0, 2**32 - 1))
def test_u32_roundtrip_high_word_first(raw):
    reg = _reg("u32")
    hi, lo = reg.to_raw(raw)
    assert hi == raw >> 16 and lo == raw & 0xFFFF
    assert reg.from_raw([hi, lo]) == raw


@given(
    st.sampled_from(["u16", "s16", "u32"]),
    st.sampled_from([1, 10, 100, 0.5]),
    st.data(),
)
def test_scaled_roundtrip(rtype, scale, data):
    reg = _reg(rtype, scale)
    low, high = {"u16": (0, 65535), "s16": (-32768, 32767), "u32": (0, 2**32 - 1)}[rtype]
    raw = data.draw(st.integers(low, high))
    words = reg.words(raw)
    value = reg.from_raw(words)
    assert reg.to_raw(value) == words
    # and an engineering value comes back to within half a raw step
    v = data.draw(st.floats(low / scale, high / scale, allow_nan=False))
    try:
        back = reg.from_raw(reg.to_raw(v))
    except ValueError:
        return  # rounding pushed it one step past the type's end
    assert abs(back - v) <= 0.5 / scale + 1e-9


# --------------------------------------------------------------------------- bad profiles


def _block_patch(text: str, name: str, old: str, new: str) -> str:
    """Replace `old` by `new` inside the [[register]] block of register `name`."""
    blocks = text.split("[[register]]")
    for i, block in enumerate(blocks):
        if f'name = "{name}"\n' in block:
            assert old in block, (name, old)
            blocks[i] = block.replace(old, new, 1)
            return "[[register]]".join(blocks)
    raise AssertionError(f"no register {name}")


def _remove_register(text: str, name: str) -> str:
    blocks = text.split("[[register]]")
    kept = [b for b in blocks if f'name = "{name}"\n' not in b]
    assert len(kept) == len(blocks) - 1
    return "[[register]]".join(kept)


P = "profile.toml"
R = "requirements.toml"

# id: (file, patch, key pattern, value shown in the message)
BAD = {
    "unknown key": (
        P,
        lambda t: _block_patch(t, "FORCE_SET", "max = 890.0", "max = 890.0\nmaxx = 900.0"),
        r"register\[\d+\]\.maxx",
        "did you mean 'max'",
    ),
    "unknown top-level key": (P, lambda t: "[modle]\nname = 'x'\n" + t, r"modle", "'x'"),
    "duplicate address": (
        P,
        lambda t: _block_patch(t, "HOLD_S", "address = 104", "address = 103"),
        r"register\[\d+\]\.address",
        "103",
    ),
    "u32 overlap": (
        P,
        lambda t: _block_patch(t, "FIRMWARE", "address = 4", "address = 3"),
        r"register\[\d+\]\.address",
        "3",
    ),
    "duplicate name": (
        P,
        lambda t: _block_patch(t, "HOLD_S", 'name = "HOLD_S"', 'name = "REST_S"'),
        r"register\[\d+\]\.name",
        "'REST_S'",
    ),
    "min above max": (
        P,
        lambda t: _block_patch(t, "RAMP_RATE", "min = 1.0", "min = 200.0"),
        r"register\[\d+\]\.(min|default)",
        "200.0",
    ),
    "default out of range": (
        P,
        lambda t: _block_patch(t, "FORCE_SET", "default = 100.0", "default = 1000.0"),
        r"register\[\d+\]\.default",
        "1000.0",
    ),
    "bad type": (
        P,
        lambda t: _block_patch(t, "FORCE_SET", 'type = "u16"', 'type = "u17"'),
        r"register\[\d+\]\.type",
        "'u17'",
    ),
    "max not representable": (
        P,
        lambda t: _block_patch(t, "FORCE_SET", "max = 890.0", "max = 7000.0"),
        r"register\[\d+\]\.max",
        "7000.0",
    ),
    "scale not positive": (
        P,
        lambda t: _block_patch(t, "FORCE_SET", "scale = 10", "scale = 0"),
        r"register\[\d+\]\.scale",
        "0",
    ),
    "u32 past the end": (
        P,
        lambda t: _block_patch(t, "SERIAL", "address = 2", "address = 65535"),
        r"register\[\d+\]\.address",
        "65535",
    ),
    "writable without range": (
        P,
        lambda t: _block_patch(t, "HOLD_S", "max = 99\n", ""),
        r"register\[\d+\]\.max",
        "None",
    ),
    "input register writable": (
        P,
        lambda t: _block_patch(t, "FORCE", 'access = "r"', 'access = "rw"'),
        r"register\[\d+\]\.access",
        "'rw'",
    ),
    "enum value repeated": (
        P,
        lambda t: _block_patch(t, "MODE", "INTERMITTENT = 1", "INTERMITTENT = 0"),
        r"register\[\d+\]\.enum\.INTERMITTENT",
        "0",
    ),
    "bit out of range": (
        P,
        lambda t: _block_patch(t, "STATUS", "service_mode = 5", "service_mode = 16"),
        r"register\[\d+\]\.bits\.service_mode",
        "16",
    ),
    "missing KIND": (P, lambda t: _remove_register(t, "KIND"), r"^register$", "'KIND'"),
    "KIND not at 0": (
        P,
        lambda t: _block_patch(t, "KIND", "address = 0", "address = 50"),
        r"register\[\d+\]\.address",
        "50",
    ),
    "missing HEARTBEAT": (
        P,
        lambda t: _remove_register(t, "HEARTBEAT"),
        r"^register$",
        "'HEARTBEAT'",
    ),
    "unknown register in rule": (
        P,
        lambda t: t.replace('by = "HARNESS"', 'by = "HARNES"'),
        r"rule\[0\]\.by",
        "'HARNES'",
    ),
    "rule key not a value of by": (
        P,
        lambda t: t.replace("CERVICAL = 222.0 }", "CERVICAL = 222.0, 7 = 100.0 }"),
        r"rule\[0\]\.max\.7",
        "'7'",
    ),
    "unknown safe state": (
        P,
        lambda t: t.replace('"ESTOP", "FAULT"]', '"ESTOP", "FALT"]'),
        r"safe_state\.states\[2\]",
        "'FALT'",
    ),
    "bad kind_name": (
        P,
        lambda t: t.replace('kind_name = "traction"', 'kind_name = "stretcher"'),
        r"model\.kind_name",
        "'stretcher'",
    ),
    "unknown register in requirement settings": (
        R,
        lambda t: t.replace("settings = { FORCE_SET = 600.0 }", "settings = { FORCE_ST = 600.0 }"),
        r"requirement\[TT-SAF-02\]\.settings\.FORCE_ST",
        "600.0",
    ),
    "read-only register in requirement settings": (
        R,
        lambda t: t.replace("settings = { FORCE_SET = 600.0 }", "settings = { STATE = 1 }"),
        r"requirement\[TT-SAF-02\]\.settings\.STATE",
        "1",
    ),
    "setting out of range": (
        R,
        lambda t: t.replace("settings = { FORCE_SET = 600.0 }", "settings = { FORCE_SET = 900.0 }"),
        r"requirement\[TT-SAF-02\]\.settings\.FORCE_SET",
        "900.0",
    ),
    "settings break a rule": (
        R,
        lambda t: t.replace(
            "settings = { FORCE_SET = 600.0 }", "settings = { FORCE_SET = 600.0, HARNESS = 1 }"
        ),
        r"requirement\[TT-SAF-02\]\.settings\.FORCE_SET",
        "600.0",
    ),
    "unknown name in limit": (
        R,
        lambda t: t.replace('low = "set - max', 'low = "sett - max'),
        r"requirement\[TT-PERF-01\]\.measurement\[0\]\.low",
        "'sett - max(0.03 * set, 4)'",
    ),
    "syntax error in limit": (
        R,
        lambda t: t.replace(
            'high = "set + max(0.03 * set, 4)"', 'high = "set + max(0.03 * set, 4"'
        ),
        r"requirement\[TT-PERF-01\]\.measurement\[0\]\.high",
        "'set + max(0.03 * set, 4'",
    ),
    "call in limit": (
        R,
        lambda t: t.replace('high = "set + max(', 'high = "set + pow('),
        r"requirement\[TT-PERF-01\]\.measurement\[0\]\.high",
        "pow",
    ),
    "bad requirement id": (
        R,
        lambda t: t.replace('id = "TT-SAF-02"', 'id = "TT-SAFE-02"'),
        r"requirement\[2\]\.id",
        "'TT-SAFE-02'",
    ),
    "duplicate requirement id": (
        R,
        lambda t: t.replace('id = "TT-SAF-02"', 'id = "TT-PERF-01"'),
        r"requirement\[2\]\.id",
        "'TT-PERF-01'",
    ),
    "unknown requirement key": (
        R,
        lambda t: t.replace("repeat = 3", "repaet = 3"),
        r"requirement\[2\]\.repaet",
        "3",
    ),
    "repeat below one": (
        R,
        lambda t: t.replace("repeat = 3", "repeat = 0"),
        r"requirement\[TT-SAF-02\]\.repeat",
        "0",
    ),
    "equals with a limit": (
        R,
        lambda t: t.replace("equals = 2", "equals = 2\nhigh = 3"),
        r"requirement\[TT-SAF-02\]\.measurement\[1\]\.high",
        "3",
    ),
    "measurement without limit": (
        R,
        lambda t: t.replace("equals = 2", 'description = "nothing"'),
        r"requirement\[TT-SAF-02\]\.measurement\[1\]$",
        "description",
    ),
    "variable shadows a setting": (
        R,
        lambda t: t.replace('variables = ["set"]', 'variables = ["set", "RAMP_RATE"]'),
        r"requirement\[TT-PERF-01\]\.measurement\[0\]\.variables",
        "RAMP_RATE",
    ),
    "params of a table": (
        R,
        lambda t: t.replace("cycles = 3,", "cycles = { n = 3 },"),
        r"requirement\[TT-PERF-05\]\.params\.cycles",
        "{'n': 3}",
    ),
    "low above high": (
        R,
        lambda t: t.replace("high = 0.1", "high = 0.1\nlow = 0.2"),
        r"requirement\[TT-SAF-02\]\.measurement\[0\]\.low",
        "0.2",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_profile_is_refused_naming_file_key_and_value(tmp_path, case):
    file, patch, key, value = BAD[case]
    _copy_tt890(tmp_path)
    target = tmp_path / file
    original = target.read_text()
    patched = patch(original)
    assert patched != original, "the patch did not apply"
    target.write_text(patched)
    with pytest.raises(ProfileError) as info:
        load_profile(tmp_path)
    err = info.value
    message = str(err)
    assert err.path == str(target)
    assert message.startswith(str(target))
    assert re.search(key, err.key), (err.key, message)
    assert err.key in message
    assert value in message, message
    assert "expected" in message


def test_toml_syntax_error_names_file_and_line():
    with pytest.raises(ProfileError) as info:
        load_profile(DATA / "bad-toml")
    err = info.value
    assert err.path.endswith("bad-toml/profile.toml")
    assert err.key == "line 9"
    assert "reference_model = LC-2000" in str(err)
    assert err.__cause__ is None and err.__suppress_context__


def test_toml_syntax_error_in_requirements(tmp_path):
    _copy_tt890(tmp_path)
    req = tmp_path / "requirements.toml"
    lines = req.read_text().splitlines()
    lines.insert(4, "quantity = = 3")
    req.write_text("\n".join(lines) + "\n")
    with pytest.raises(ProfileError, match=r"requirements\.toml: line 5 = 'quantity = = 3'"):
        load_profile(tmp_path)


# --------------------------------------------------------------------------- expressions


def test_expression_evaluates_with_python_precedence():
    e = compile_expr("set - max(0.03 * set, 4) / 2 + -abs(x) * min(1, 2, 3)", ["set", "x"], "t")
    assert e.names == frozenset({"set", "x"})
    assert str(e) == "set - max(0.03 * set, 4) / 2 + -abs(x) * min(1, 2, 3)"
    assert e.evaluate({"set": 300.0, "x": -2.0}) == pytest.approx(300 - 4.5 - 2)
    assert compile_expr("(1 + 2) * 3", [], "t").evaluate({}) == 9.0
    assert compile_expr(4, [], "t").evaluate({}) == 4.0
    assert compile_expr("max(5)", [], "t").evaluate({}) == 5.0


def test_expression_missing_name_at_evaluation():
    e = compile_expr("set + 1", ["set"], "t")
    with pytest.raises(ExprError, match="needs set"):
        e.evaluate({"other": 1.0})
    with pytest.raises(ExprError, match="division by zero"):
        compile_expr("1 / set", ["set"], "t").evaluate({"set": 0.0})


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "set.__class__",
        "open('x')",
        "eval('1')",
        "(lambda: 1)()",
        "set ** 2",
        "set % 2",
        "set // 2",
        "[1][0]",
        "set if set else 1",
        "set > 1",
        "not set",
        "True",
        "'text'",
        "max(*[1, 2])",
        "max(set, key=abs)",
        "abs(1, 2)",
        "abs()",
        "f(set)",
        "unknown + 1",
        "1 +",
        "",
        "set; 1",
    ],
)
def test_expression_refuses_anything_else(text):
    with pytest.raises(ProfileError) as info:
        compile_expr(text, ["set"], "requirement[TT-PERF-01].measurement[0].low", path="req.toml")
    err = info.value
    assert err.path == "req.toml"
    assert err.key == "requirement[TT-PERF-01].measurement[0].low"
    assert err.value == text


def test_expression_refuses_non_text():
    with pytest.raises(ProfileError):
        compile_expr(True, [], "t")  # type: ignore[arg-type]


@given(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(0.5, 1e3),
)
def test_expression_matches_python_arithmetic(a, b, c):
    e = compile_expr("a - max(0.03 * a, b) / c + abs(b) * -min(a, c)", ["a", "b", "c"], "t")
    want = a - max(0.03 * a, b) / c + abs(b) * -min(a, c)
    assert e.evaluate({"a": a, "b": b, "c": c}) == pytest.approx(want)


# --------------------------------------------------------------------------- loader robustness

_ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(-3, 3), max_size=2),
)


def _paths(data, prefix=()):
    if isinstance(data, dict):
        for k, v in data.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _mutated(data, path, value):
    import copy

    out = copy.deepcopy(data)
    target = out
    for step in path[:-1]:
        target = target[step]
    if value is None and isinstance(target, dict):
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


@pytest.fixture(scope="module")
def parsed():
    import tomllib

    return (
        tomllib.loads((TT890 / "profile.toml").read_text()),
        tomllib.loads((DATA / "requirements-small.toml").read_text()),
    )


@given(data=st.data())
def test_any_damage_to_a_profile_is_a_profile_error_or_a_valid_profile(parsed, data):
    from rig.profiles.validation import _ProfileLoader, _RequirementLoader

    prof, reqs = parsed
    which = data.draw(st.sampled_from(["profile", "requirements"]))
    source = prof if which == "profile" else reqs
    path = data.draw(st.sampled_from(list(_paths(source))))
    damaged = _mutated(source, path, data.draw(_ODD))
    if which == "profile":
        prof = damaged
    else:
        reqs = damaged
    try:
        model, registers, rules, _ = _ProfileLoader("p.toml").load(prof)
        _RequirementLoader("r.toml", model.name, registers, rules, model.kind_name).load(reqs)
    except ProfileError as exc:
        # damage to the register map may make a sound requirement file refer to what is gone
        assert exc.path in (("p.toml", "r.toml") if which == "profile" else ("r.toml",))


@given(st.text(max_size=60))
def test_any_text_compiles_or_is_a_profile_error(text):
    try:
        e = compile_expr(text, ["set", "x"], "t")
    except ProfileError:
        return
    try:
        value = e.evaluate({"set": 3.0, "x": -2.0})
    except ExprError:
        return
    assert isinstance(value, float)


def test_expression_bounds():
    with pytest.raises(ProfileError, match="at most 500"):
        compile_expr("1 + " * 200 + "1", [], "t")
    with pytest.raises(ProfileError, match="too large"):
        compile_expr("1e999", [], "t")
    with pytest.raises(ExprError, match=r"not finite|overflows"):
        compile_expr("x * x * x", ["x"], "t").evaluate({"x": 1e200})
