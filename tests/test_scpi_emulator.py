"""Conformance of the emulated SCPI instruments to the ICD (instruments-scpi.md), logic and wire."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import struct
import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.emulators import scpi as emu
from rig.emulators.clock import ManualClock
from rig.emulators.world import World
from rig.errors import ConfigError, InstrumentError, InstrumentTimeout
from rig.instruments.act3 import ACT3
from rig.instruments.enc600 import ENC600
from rig.instruments.lc2000 import LC2000
from rig.instruments.scpi import InstrumentUnreachable

SLOPE = 1000.0  # N per device second: 1 N per ms, so a 1 ms timing error is 100 noise steps
NOISE_TOL = 0.08  # 8 sigma of one 0.01 step, plus rounding


def make_world(seed: int = 7) -> World:
    world = World(ManualClock(), seed=seed)
    world.add_signal("force", lambda t: SLOPE * t - 500.0)
    world.add_signal("position", lambda t: 100.0 + 10.0 * t)
    world.add_signal("lift", lambda t: np.full_like(t, 20.0))
    world.add_signal("angle", lambda t: np.full_like(t, -12.5))
    return world


@pytest.fixture
def world() -> World:
    return make_world()


@pytest.fixture
def lc(world):
    return emu.lc2000(world)


@pytest.fixture
def enc(world):
    return emu.enc600(world)


@pytest.fixture
def act(world):
    return emu.act3(world)


def one(device, line: str) -> str:
    replies = device.handle_line(line)
    assert len(replies) == 1, replies
    return replies[0]


def errors(device) -> list[str]:
    out = []
    while (e := one(device, "SYST:ERR?")) != '0,"No error"':
        out.append(e)
    return out


def advance(world: World, dt_s: float) -> None:
    world.clock.advance(dt_s)


# -- common commands -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "idn"),
    [
        (emu.lc2000, "BENCHWORKS,LC-2000,LC0142,1.4"),
        (emu.enc600, "BENCHWORKS,ENC-600,ENC0311,1.2"),
        (emu.inc360, "BENCHWORKS,INC-360,INC0205,1.1"),
        (emu.act3, "BENCHWORKS,ACT-3,ACT0007,2.0"),
    ],
)
def test_idn_opc_and_empty_queue(world, factory, idn):
    dev = factory(world)
    assert dev.handle_line("*IDN?;*OPC?;SYST:ERR?") == [idn, "1", '0,"No error"']


def test_idn_serial_and_firmware_are_constructor_args(world):
    dev = emu.lc2000(world, serial="LC9999", firmware="3.1")
    assert one(dev, "*IDN?") == "BENCHWORKS,LC-2000,LC9999,3.1"


def test_calibration_dates(world):
    dev = emu.lc2000(world, cal_date=dt.date(2023, 2, 1), cal_due="2024-02-01")
    assert dev.handle_line("CAL:DATE?;CALIBRATION:DUE?") == ["2023-02-01", "2024-02-01"]


def test_default_calibration_is_current(world):
    dev = emu.act3(world)
    date, due = (dt.date.fromisoformat(r) for r in dev.handle_line("CAL:DATE?;CAL:DUE?"))
    assert date <= dt.date.today() < due


def test_bad_calibration_date_is_a_config_error(world):
    with pytest.raises(ConfigError, match="cal_due"):
        emu.lc2000(world, cal_due="next year")


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "code", "message"),
    [
        ("ACQ:RATE,100", -102, "Syntax error"),
        ("ACQ::RATE 100", -102, "Syntax error"),
        ("ACQ:RATE 1 00", -102, "Syntax error"),
        ("ACQ:RATE 100,", -102, "Syntax error"),
        ("*IDN?x", -102, "Syntax error"),
        ("MEAS? FO\u00e9RC", -102, "Syntax error"),
        ("FOO:BAR 1", -113, "Undefined header"),
        ("ACQ:RA 100", -113, "Undefined header"),
        ("ACQU:RATE 100", -113, "Undefined header"),
        ("MEAS", -113, "Undefined header"),
        ("INIT?", -113, "Undefined header"),
        ("OUTP:EST ON", -113, "Undefined header"),
        ("TRIG:COUN?", -113, "Undefined header"),
        ("*WAI", -113, "Undefined header"),
        ("*IDN? 1", -108, "Parameter not allowed"),
        ("ACQ:RATE 100,200", -108, "Parameter not allowed"),
        ("FETC? FORC,FORC", -108, "Parameter not allowed"),
        ("INIT 1", -108, "Parameter not allowed"),
        ("ACQ:RATE", -109, "Missing parameter"),
        ("TRIG:SOUR", -109, "Missing parameter"),
        ("ACQ:RATE 9.99", -222, "Data out of range"),
        ("ACQ:RATE 10001", -222, "Data out of range"),
        ("ACQ:POIN 0", -222, "Data out of range"),
        ("ACQ:POIN 200001", -222, "Data out of range"),
        ("ACQ:PRET 1000", -222, "Data out of range"),
        ("ACQ:PRET -1", -222, "Data out of range"),
        ("TRIG:SOUR FOO", -224, "Illegal parameter value"),
        ("TRIG:SOUR IMMED", -224, "Illegal parameter value"),
        ("FORM:DATA BIN", -224, "Illegal parameter value"),
        ("ACQ:RATE fast", -224, "Illegal parameter value"),
        ("ACQ:RATE inf", -224, "Illegal parameter value"),
        ("ACQ:POIN 10.5", -224, "Illegal parameter value"),
        ("MEAS? POS", -224, "Illegal parameter value"),
        ("FETC?", -230, "Data corrupt or stale"),
    ],
)
def test_error_codes_and_messages(lc, line, code, message):
    assert lc.handle_line(line) == []  # a failure never puts anything on the wire
    assert errors(lc) == [f'{code},"{message}"']


def test_missing_channel_on_a_multichannel_instrument(enc):
    assert enc.handle_line("MEAS?;FETC?") == []
    assert errors(enc) == ['-109,"Missing parameter"'] * 2


def test_actuator_errors(act):
    assert act.handle_line("OUTP:EST 2;OUTP:PAT MAYBE;*TRG;OUTP:POW") == []
    assert errors(act) == [
        '-224,"Illegal parameter value"',
        '-224,"Illegal parameter value"',
        '-113,"Undefined header"',
        '-109,"Missing parameter"',
    ]


def test_settings_conflict_while_armed_and_running(lc, world):
    lc.handle_line("TRIG:SOUR EXT;INIT")
    for line in ("ACQ:RATE 100", "ACQ:POIN 10", "ACQ:PRET 1", "TRIG:SOUR BUS"):
        lc.handle_line(line)
    assert errors(lc) == ['-221,"Settings conflict"'] * 4
    lc.handle_line("ACQ:RATE 5")  # -221 is checked before the range
    assert errors(lc) == ['-221,"Settings conflict"']
    lc.handle_line("FORM:DATA REAL")  # the output format is not an acquisition setting
    assert errors(lc) == []
    world.set_relay("estop", True)
    assert one(lc, "ACQ:STAT?") == "RUN"
    lc.handle_line("ACQ:POIN 5")
    assert errors(lc) == ['-221,"Settings conflict"']
    advance(world, 1.0)
    assert one(lc, "ACQ:STAT?") == "DONE"
    lc.handle_line("ACQ:POIN 5")  # DONE is not ARMED or RUN
    assert errors(lc) == []
    assert lc.handle_line("ACQ:RATE?;ACQ:POIN?;TRIG:SOUR?") == ["1000", "5", "EXT"]


def test_init_ignored_while_armed_or_running(lc, world):
    lc.handle_line("TRIG:SOUR BUS;INIT;INIT")
    assert errors(lc) == ['-213,"Init ignored"']
    lc.handle_line("*TRG;INIT")
    assert one(lc, "ACQ:STAT?") == "RUN"
    assert errors(lc) == ['-213,"Init ignored"']
    advance(world, 1.0)
    lc.handle_line("INIT")  # DONE may be re-armed
    assert errors(lc) == []
    assert one(lc, "ACQ:STAT?") == "ARMED"


def test_fetch_with_no_completed_acquisition(lc, world):
    lc.handle_line("ACQ:POIN 10;TRIG:SOUR BUS;INIT")
    assert lc.handle_line("FETC?") == []  # ARMED
    lc.handle_line("*TRG")
    assert lc.handle_line("FETC?") == []  # RUN
    advance(world, 0.009)
    assert len(one(lc, "FETC?").split(",")) == 10
    lc.handle_line("ABOR")
    assert one(lc, "ACQ:STAT?") == "IDLE"
    assert lc.handle_line("FETC?") == []  # earlier data discarded
    assert errors(lc) == ['-230,"Data corrupt or stale"'] * 3


def test_queue_overflow_replaces_the_last_entry(lc):
    lc.handle_line(";".join(["ACQ:RATE 1"] * 15 + ["FOO", "BAR", "ACQ:POIN 0"]))
    got = errors(lc)
    assert len(got) == 16
    assert got[:15] == ['-222,"Data out of range"'] * 15
    assert got[15] == '-350,"Queue overflow"'
    assert one(lc, "SYST:ERR?") == '0,"No error"'


def test_queue_is_oldest_first_and_cls_clears_it(lc):
    lc.handle_line("FOO;ACQ:RATE 1;FORM:DATA X")
    assert one(lc, "SYST:ERR?") == '-113,"Undefined header"'
    assert one(lc, "SYSTEM:ERROR?") == '-222,"Data out of range"'
    lc.handle_line("FOO;*CLS")
    assert one(lc, "SYST:ERR?") == '0,"No error"'


# -- syntax ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "ACQ:RATE 250",
        "ACQUIRE:RATE 250",
        "acquire:rate 250",
        "Acq:Rate 250",
        ":ACQ:RATE 250",
        "  ACQ:RATE   250  ",
        "ACQ:RATE 2.5e2",
        "ACQ:RATE +2.50E+02",
        "ACQ:RATE 250.",
        "ACQ:RATE .25E3",
        "ACQ:RATE 250\r",
    ],
)
def test_short_long_case_and_number_forms(lc, line):
    assert lc.handle_line(line) == []
    assert errors(lc) == []
    assert lc.handle_line("acq:rate?;:ACQUIRE:RATE?") == ["250", "250"]


def test_long_forms_of_every_measuring_command(lc, world):
    replies = lc.handle_line(
        "ACQUIRE:POINTS 20;ACQUIRE:PRETRIGGER 5;TRIGGER:SOURCE BUS;FORMAT:DATA ASCII;"
        "INITIATE;ACQUIRE:STATE?;ABORT;ACQUIRE:STATE?;MEASURE? FORC;"
        "ACQ:POINTS?;ACQUIRE:PRET?;TRIGGER:SOUR?;FORMAT:DATA?"
    )
    assert len(replies) == 7
    assert replies[:2] == ["ARMED", "IDLE"]
    assert replies[3:] == ["20", "5", "BUS", "ASC"]
    assert errors(lc) == []


def test_parameter_keywords_short_or_long_any_case(lc):
    for word, short in [("imm", "IMM"), ("External", "EXT"), ("bus", "BUS")]:
        lc.handle_line(f"TRIG:SOUR {word}")
        assert one(lc, "TRIG:SOUR?") == short
    lc.handle_line("FORM:DATA real;FORM:DATA?;FORM:DATA ascii")
    assert one(lc, "FORM:DATA?") == "ASC"
    assert errors(lc) == []


def test_several_commands_and_queries_on_one_line(lc):
    replies = lc.handle_line("*CLS;ACQ:RATE 500;ACQ:RATE?;ACQ:FOO?;ACQ:POIN 7;ACQ:POIN?;*OPC?")
    assert replies == ["500", "7", "1"]  # the failing query leaves no gap and no empty line
    assert errors(lc) == ['-113,"Undefined header"']


def test_empty_line_does_nothing_and_empty_command_is_a_syntax_error(lc):
    assert lc.handle_line("") == []
    assert lc.handle_line("   ") == []
    assert errors(lc) == []
    assert lc.handle_line("*OPC?;;*OPC?") == ["1", "1"]
    assert errors(lc) == ['-102,"Syntax error"']


@given(st.floats(min_value=10, max_value=10000, allow_nan=False))
def test_any_decimal_or_exponent_spelling_of_a_rate(rate):
    dev = emu.lc2000(make_world())
    for text in (repr(rate), f"{rate:e}", f"{rate:.3E}", f"{rate:f}"):
        expected = float(text)
        if not 10 <= expected <= 10000:
            continue
        assert dev.handle_line(f"ACQ:RATE {text}") == []
        assert float(one(dev, "ACQ:RATE?")) == expected
    assert errors(dev) == []


def test_reply_number_format():
    assert emu.format_number(1000.0) == "1000"
    assert emu.format_number(12.5) == "12.5"
    assert emu.format_number(-0.0) == "0"
    assert emu.format_number(float("nan")) == "NaN"
    assert emu.format_number(1e-5) == "1E-05"
    assert emu.format_samples(np.array([1.0, np.nan, -0.0, 12.34])) == "1.0,NaN,0.0,12.34"


# -- *RST ------------------------------------------------------------------------------------


def test_rst_restores_defaults_aborts_and_keeps_the_queue(lc):
    lc.handle_line("ACQ:RATE 20;ACQ:POIN 50;ACQ:PRET 10;TRIG:SOUR EXT;FORM:DATA REAL;INIT;FOO")
    assert one(lc, "ACQ:STAT?") == "ARMED"
    lc.handle_line("*RST")
    replies = lc.handle_line("ACQ:RATE?;ACQ:POIN?;ACQ:PRET?;TRIG:SOUR?;FORM:DATA?;ACQ:STAT?")
    assert replies == ["1000", "1000", "0", "IMM", "ASC", "IDLE"]
    assert errors(lc) == ['-113,"Undefined header"']


def test_points_below_pretrigger_clips_pretrigger(lc):
    lc.handle_line("ACQ:POIN 100;ACQ:PRET 80;ACQ:POIN 50")
    assert lc.handle_line("ACQ:POIN?;ACQ:PRET?") == ["50", "49"]
    lc.handle_line("ACQ:POIN 1")
    assert one(lc, "ACQ:PRET?") == "0"
    assert errors(lc) == []


# -- acquisitions: trigger and pretrigger semantics --------------------------------------------


def fetch(dev, ch: str = "") -> np.ndarray:
    reply = one(dev, f"FETC? {ch}".strip())
    if isinstance(reply, bytes):
        return np.frombuffer(reply[2 + int(reply[1:2]) :], dtype="<f4").astype(float)
    return np.array(reply.split(","), dtype=float)


def test_ext_trigger_from_an_act_relay_edge(lc, act, world):
    rate, points, pret = 1000, 301, 100
    advance(world, 2.0)
    lc.handle_line(f"ACQ:RATE {rate};ACQ:POIN {points};ACQ:PRET {pret};TRIG:SOUR EXT;INIT")
    t_arm = world.clock.now()
    advance(world, 0.040)  # armed 40 ms: 40 of the 100 pre-trigger samples are recorded
    assert one(lc, "ACQ:STAT?") == "ARMED"
    t_edge = world.clock.now()
    assert act.handle_line("OUTP:EST ON;OUTP:EST?") == ["1"]
    assert world.trigger_edges == [t_edge]
    assert one(lc, "ACQ:STAT?") == "RUN"
    advance(world, 0.1999)
    assert one(lc, "ACQ:STAT?") == "RUN"
    advance(world, 0.0001)  # the last sample's instant: t_edge + (points - 1 - pret) / rate
    assert one(lc, "ACQ:STAT?") == "DONE"

    x = fetch(lc)
    assert len(x) == points
    t = t_edge + (np.arange(points) - pret) / rate
    recorded = t >= t_arm - 1e-9
    assert recorded.sum() == 40 + 201
    assert np.isnan(x[59]) and not np.isnan(x[60])  # sample 60 is taken at the arming instant
    assert np.isnan(x[~recorded]).all()
    assert np.abs(x[recorded] - (SLOPE * t[recorded] - 500.0)).max() < NOISE_TOL
    assert x[pret] == pytest.approx(SLOPE * t_edge - 500.0, abs=NOISE_TOL)


def test_edges_before_arming_and_no_change_relay_commands_do_not_trigger(lc, act, world):
    act.handle_line("OUTP:PAT ON")  # an edge before INIT
    lc.handle_line("TRIG:SOUR EXT;INIT")
    advance(world, 0.5)
    act.handle_line("OUTP:PAT ON;OUTP:EST OFF;OUTP:POW 1")  # all as they were: no edge
    assert one(lc, "ACQ:STAT?") == "ARMED"
    assert one(act, "TRIG:COUN?") == "1"
    lc.handle_line("*TRG")  # EXT is not BUS: ignored
    assert one(lc, "ACQ:STAT?") == "ARMED"
    act.handle_line("OUTP:POW 0")
    assert one(lc, "ACQ:STAT?") == "RUN"


def test_imm_trigger_has_nan_pretrigger(lc, world):
    advance(world, 1.0)
    lc.handle_line("ACQ:RATE 100;ACQ:POIN 30;ACQ:PRET 10;INIT")
    assert one(lc, "ACQ:STAT?") == "RUN"
    advance(world, 0.19)
    x = fetch(lc)
    assert np.isnan(x[:10]).all()
    t = 1.0 + (np.arange(10, 30) - 10) / 100
    assert np.abs(x[10:] - (SLOPE * t - 500.0)).max() < NOISE_TOL


def test_single_point_imm_is_done_at_once(lc):
    lc.handle_line("ACQ:POIN 1;INIT")
    assert one(lc, "ACQ:STAT?") == "DONE"
    assert fetch(lc) == pytest.approx([-500.0], abs=NOISE_TOL)


def test_bus_trigger(lc, world):
    lc.handle_line("*TRG")  # not armed: ignored
    assert one(lc, "ACQ:STAT?") == "IDLE"
    lc.handle_line("ACQ:RATE 10;ACQ:POIN 5;ACQ:PRET 2;TRIG:SOUR BUS;INIT")
    advance(world, 1.0)  # armed long enough to record all pre-trigger samples
    assert one(lc, "ACQ:STAT?") == "ARMED"
    lc.handle_line("*TRG")
    t_trg = world.clock.now()
    advance(world, 0.2)
    assert one(lc, "ACQ:STAT?") == "DONE"
    t = t_trg + (np.arange(5) - 2) / 10
    assert np.abs(fetch(lc) - (SLOPE * t - 500.0)).max() < NOISE_TOL
    lc.handle_line("*TRG")  # DONE: ignored, data kept
    assert one(lc, "ACQ:STAT?") == "DONE"
    assert errors(lc) == []


def test_every_channel_is_captured_in_one_acquisition(enc, world):
    enc.handle_line("ACQ:RATE 10;ACQ:POIN 11;INIT")
    advance(world, 1.0)
    pos, lift = fetch(enc, "POS"), fetch(enc, "LIFT")
    assert np.abs(pos - (100 + 10 * np.arange(11) / 10)).max() < NOISE_TOL
    assert np.abs(lift - 20.0).max() < NOISE_TOL
    assert errors(enc) == []


def test_acquisition_noise_is_seeded_and_fetch_is_repeatable():
    def run(seed: int, order: tuple[str, str]) -> dict[str, np.ndarray]:
        world = make_world(seed)
        dev = emu.enc600(world)
        dev.handle_line("ACQ:POIN 200;INIT")
        advance(world, 1.0)
        return {ch: fetch(dev, ch) for ch in order}

    a = run(1, ("POS", "LIFT"))
    b = run(1, ("LIFT", "POS"))
    c = run(2, ("POS", "LIFT"))
    for ch in ("POS", "LIFT"):
        np.testing.assert_array_equal(a[ch], b[ch])
    assert not np.array_equal(a["LIFT"], c["LIFT"])


def test_noise_is_about_one_resolution_step_and_readings_are_rounded(world):
    dev = emu.inc360(world)
    dev.handle_line("ACQ:RATE 10000;ACQ:POIN 20000;INIT")
    advance(world, 2.0)
    x = fetch(dev)
    assert 0.007 < np.std(x) < 0.014
    assert np.mean(x) == pytest.approx(-12.5, abs=0.001)
    np.testing.assert_allclose(x * 100, np.round(x * 100), atol=1e-9)
    # successive acquisitions draw fresh noise
    dev.handle_line("INIT")
    advance(world, 2.0)
    assert not np.array_equal(fetch(dev), x)


def test_measure_rounds_and_clips_to_the_range(world):
    world.add_signal("big", lambda t: np.full_like(t, 5000.0))
    dev = emu.lc2000(world, signal_map={"FORC": "big"})
    assert dev.handle_line("MEAS?;MEAS? FORC;measure? forc") == ["2000"] * 3
    advance(world, 0.5)
    lc = emu.lc2000(world)
    value = float(one(lc, "MEAS?"))
    assert value == pytest.approx(SLOPE * 0.5 - 500.0, abs=NOISE_TOL)
    assert value == round(value, 2)


def test_unconnected_channel_reads_nan(world):
    dev = emu.lc2000(world, signal_map={"FORC": "not-on-this-bench"})
    assert one(dev, "MEAS?") == "NaN"


def test_signal_map_must_name_channels(world):
    with pytest.raises(ConfigError, match="signal_map"):
        emu.lc2000(world, signal_map={"POS": "force"})


def test_real_block_exact_bytes(lc, world):
    lc.handle_line("ACQ:RATE 100;ACQ:POIN 3;INIT")
    advance(world, 0.02)
    asc = np.array(one(lc, "FETC?").split(","), dtype=float)
    lc.handle_line("FORM:DATA REAL")
    block = one(lc, "FETC? FORC")
    payload = struct.pack("<3f", *asc)
    assert block == b"#212" + payload
    assert emu.definite_block(b"x" * 1234) == b"#41234" + b"x" * 1234


def test_zero_readings_are_positive_zero_in_both_formats(world):
    world.add_signal("zero", lambda t: np.zeros_like(t))
    dev = emu.lc2000(world, signal_map={"FORC": "zero"})
    dev.handle_line("ACQ:POIN 2000;INIT")
    advance(world, 2.0)
    assert "-0.0," not in one(dev, "FETC?")
    dev.handle_line("FORM:DATA REAL")
    raw = np.frombuffer(one(dev, "FETC?")[6:], dtype="<u4")
    assert (raw != 0x80000000).all()


# -- the actuator box ------------------------------------------------------------------------


def test_relays_defaults_queries_and_on_off_forms(act, world):
    assert act.handle_line("OUTP:EST?;OUTP:PAT?;OUTP:POW?") == ["0", "0", "1"]
    act.handle_line("OUTPUT:ESTOP on;outp:patient 1;OUTP:POW OFF")
    assert act.handle_line("OUTP:EST?;OUTP:PAT?;OUTP:POWER?") == ["1", "1", "0"]
    assert world.relays == {"estop": True, "patient": True, "power": False}
    act.handle_line("OUTP:EST 0")
    assert world.relays["estop"] is False
    assert one(act, "TRIGGER:COUNT?") == "4"
    assert errors(act) == []


def test_rst_issues_one_edge_if_it_changes_any_relay(act, world):
    seen: list[float] = []
    world.on_trigger(seen.append)
    act.handle_line("*RST")  # already at defaults
    assert one(act, "TRIG:COUN?") == "0"
    act.handle_line("OUTP:EST ON;OUTP:PAT ON;OUTP:POW OFF")
    advance(world, 1.5)
    act.handle_line("*RST")
    assert one(act, "TRIG:COUN?") == "4"
    assert seen == [0.0, 0.0, 0.0, 1.5]
    assert world.relays == {"estop": False, "patient": False, "power": True}


def test_rst_tells_models_about_every_relay_it_changes(act, world):
    calls = []

    class Model:
        def advance_to(self, t):
            pass

        def on_relay(self, name, on, t):
            calls.append((name, on, t))

    act.handle_line("OUTP:EST ON;OUTP:POW OFF")
    world.add_model(Model())
    advance(world, 2.0)
    act.handle_line("*RST")
    assert sorted(calls) == [("estop", False, 2.0), ("power", True, 2.0)]


def test_trigger_count_is_since_power_up(world):
    world.set_relay("estop", True)
    act = emu.act3(world)
    assert one(act, "TRIG:COUN?") == "0"
    act.handle_line("OUTP:EST OFF")
    assert one(act, "TRIG:COUN?") == "1"


# -- over real sockets ---------------------------------------------------------------------------


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    servers = []
    loop.servers = servers  # type: ignore[attr-defined]
    yield loop

    async def shutdown():
        for s in servers:
            s.close()
            await s.wait_closed()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def serve(loop, device) -> int:
    server = asyncio.run_coroutine_threadsafe(emu.serve_scpi(device), loop).result(5)
    loop.servers.append(server)
    host, port = server.sockets[0].getsockname()[:2]
    assert host == "127.0.0.1"
    return port


def address(port: int) -> str:
    return f"TCPIP0::127.0.0.1::{port}::SOCKET"


def recv_until(sock: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        data += chunk
    return data


def test_wire_framing_crlf_and_failing_query(loop, lc):
    port = serve(loop, lc)
    err = b'-113,"Undefined header"\n'
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"*IDN?\r\nACQ:FOO?;*OPC?\nACQ:POIN 1;FORM:DATA REAL;INIT;FETC?;SYST:ERR?\n")
        data = recv_until(s, err)
    head = b"BENCHWORKS,LC-2000,LC0142,1.4\n1\n#14"
    assert data.startswith(head)
    assert data[len(head) + 4 :] == b"\n" + err
    (value,) = struct.unpack("<f", data[len(head) : len(head) + 4])
    assert value == pytest.approx(-500.0, abs=NOISE_TOL)


def test_bind_loopback_only(loop, lc):
    wildcard = ".".join(["0"] * 4)  # every interface: must be refused
    with pytest.raises(ConfigError, match="loopback"):
        asyncio.run_coroutine_threadsafe(emu.serve_scpi(lc, host=wildcard), loop).result(5)


def test_one_connection_at_a_time(loop, lc):
    port = serve(loop, lc)
    first = LC2000(address(port), timeout_s=2).open()
    with socket.create_connection(("127.0.0.1", port), timeout=0.2) as second:
        second.sendall(b"*OPC?\n")  # accepted by TCP, not served yet
        with pytest.raises(TimeoutError):
            second.recv(100)
        assert first.opc()
        first.close()
        second.settimeout(2)
        assert second.recv(100) == b"1\n"


def test_a_second_driver_times_out_naming_the_command(loop, lc):
    port = serve(loop, lc)
    with LC2000(address(port), timeout_s=2) as first:
        first.check_identity()
        with LC2000(address(port), timeout_s=0.2, name="second LC") as second:
            with pytest.raises(InstrumentTimeout, match=r"second LC.*'\*IDN\?'"):
                second.check_identity()


def test_drivers_over_sockets_ext_acquisition(loop, lc, act, world):
    lc_port, act_port = serve(loop, lc), serve(loop, act)
    with LC2000(address(lc_port)) as meter, ACT3(address(act_port)) as box:
        assert meter.check_identity().serial == "LC0142"
        assert box.check_identity().model == "ACT-3"
        # TCP_NODELAY on the driver's socket (pyvisa-py cannot set it through VISA)
        sock = meter._transport._socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        settings = meter.configure(rate=1000, duration_s=0.5, pretrigger_s=0.1, source="EXT")
        assert (settings.points, settings.pretrigger) == (601, 100)
        meter.arm()
        world.clock.advance(0.25)
        t_edge = world.clock.now()
        box.estop = True
        assert box.estop is True
        assert box.trigger_count == 1
        with pytest.raises(InstrumentTimeout, match="state RUN"):
            meter.wait_done(timeout_s=0.05)
        world.clock.advance(0.5)
        meter.wait_done(timeout_s=2)
        trace = meter.fetch_trace()
        assert trace.source == "BENCHWORKS,LC-2000,LC0142,1.4"
        assert trace.units == {"FORC": "N"}
        assert trace.t[0] == pytest.approx(-0.1) and trace.t[-1] == pytest.approx(0.5)
        expected = SLOPE * (t_edge + trace.t) - 500.0
        assert np.abs(trace["FORC"] - expected).max() < NOISE_TOL
        meter.data_format = "ASC"
        np.testing.assert_allclose(meter.fetch(), trace["FORC"], atol=1e-4)
        # a failing query raises at once, with no timeout
        t0 = time.perf_counter()
        with pytest.raises(InstrumentError) as err:
            meter.ask("ACQ:FOO?")
        assert err.value.code == -113 and time.perf_counter() - t0 < 0.5
        with pytest.raises(InstrumentError) as err:
            meter.points = 5
            meter.pretrigger = 5
        assert err.value.code == -222
        box.reset()
        assert box.trigger_count == 2 and box.estop is False


def test_multichannel_fetch_trace_over_sockets(loop, enc, world):
    with ENC600(address(serve(loop, enc))) as meter:
        meter.configure(rate=100, duration_s=0.1, source="IMM")
        meter.arm()
        world.clock.advance(0.1)
        meter.wait_done(timeout_s=1)
        trace = meter.fetch_trace()
        assert list(trace.channels) == ["POS", "LIFT"]
        assert trace.units == {"POS": "mm", "LIFT": "mm"}
        assert np.abs(trace["POS"] - (100 + 10 * trace.t)).max() < NOISE_TOL
        assert meter.measure("LIFT") == pytest.approx(20.0, abs=NOISE_TOL)


def test_connection_refused_is_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(InstrumentUnreachable, match="LC-2000"):
            LC2000(address(port), timeout_s=0.5).open()


# -- the instrument table --------------------------------------------------------------------


def test_instrument_table_covers_every_station_model():
    from rig.station import ROLE_MODELS

    assert set(emu.INSTRUMENTS) == {m for models in ROLE_MODELS.values() for m in models}
    assert all(emu.INSTRUMENTS[spec.model] is spec for spec in emu.INSTRUMENTS.values())


def test_spec_builds_the_device_kind_its_channels_say(world):
    assert isinstance(emu.INSTRUMENTS["ENC-600"](world), emu.MeasuringDevice)
    assert isinstance(emu.INSTRUMENTS["ACT-3"](world), emu.ActuatorDevice)
    assert list(emu.enc600(world).channels) == ["POS", "LIFT"]


def test_actuator_box_has_nothing_to_wire(world):
    with pytest.raises(TypeError, match="ACT-3"):
        emu.act3(world, signal_map={"FORC": "force"})


def test_default_wiring_is_not_shared_between_devices(world):
    first = emu.lc2000(world)
    first.signal_map["FORC"] = "elsewhere"
    assert emu.lc2000(world).signal_map == {"FORC": "force"}
