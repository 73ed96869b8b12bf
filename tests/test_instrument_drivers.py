"""Protocol tests of the SCPI drivers: the exact conversation each call has, with no socket."""

from __future__ import annotations

import datetime as dt
import struct

import numpy as np
import pytest

from rig.errors import ConfigError, InstrumentError, InstrumentTimeout
from rig.instruments.act3 import ACT3
from rig.instruments.enc600 import ENC600
from rig.instruments.inc360 import INC360
from rig.instruments.lc2000 import LC2000
from rig.instruments.scpi import ProtocolError, ValidationError, WrongInstrument
from rig.instruments.testing import ProtocolTransport, expected_protocol

OK = '0,"No error"'


def cmd(command: str) -> tuple[str, str]:
    """A command that succeeds: the driver appends the error check, the queue is empty."""
    return (f"{command}\nSYST:ERR?", OK)


def query(q: str, reply: str | bytes) -> tuple[str, list[str | bytes]]:
    """A query that succeeds: its reply, then the empty-queue line."""
    return (f"{q}\nSYST:ERR?", [reply, OK])


def block(values) -> bytes:
    payload = np.asarray(values, dtype="<f4").tobytes()
    n = str(len(payload))
    return b"#" + str(len(n)).encode() + n.encode() + payload + b"\n"


# -- the helper itself -------------------------------------------------------------------------


def test_unused_pair_fails():
    with pytest.raises(AssertionError, match="unused"):
        with expected_protocol(LC2000, [cmd("*RST"), cmd("*CLS")]) as lc:
            lc.reset()


def test_unexpected_write_fails():
    with pytest.raises(AssertionError, match="expected write"):
        with expected_protocol(LC2000, [cmd("*RST")]) as lc:
            lc.clear()


def test_unread_reply_fails():
    with pytest.raises(AssertionError, match="unread"):
        with expected_protocol(LC2000, [("*RST\nSYST:ERR?", [OK, "junk"])]) as lc:
            lc.reset()


# -- common commands -------------------------------------------------------------------------


def test_common_commands():
    with expected_protocol(
        LC2000,
        [
            query("*IDN?", "BENCHWORKS,LC-2000,LC0142,1.4"),
            query("CAL:DATE?", "2025-03-01"),
            query("CAL:DUE?", "2026-03-01"),
            cmd("*RST"),
            cmd("*CLS"),
            query("*OPC?", "1"),
        ],
    ) as lc:
        idn = lc.idn
        assert (idn.maker, idn.model, idn.serial, idn.firmware) == (
            "BENCHWORKS",
            "LC-2000",
            "LC0142",
            "1.4",
        )
        assert lc.check_identity() is idn  # asked once per connection
        assert lc.calibration_date == dt.date(2025, 3, 1)
        assert lc.calibration_due == dt.date(2026, 3, 1)
        lc.reset()
        lc.clear()
        assert lc.opc() is True


@pytest.mark.parametrize(
    ("cls", "idn"),
    [
        (ENC600, "BENCHWORKS,LC-2000,LC0142,1.4"),
        (ACT3, "OTHERCO,ACT-3,X1,1.0"),
    ],
)
def test_check_identity_names_address_expected_and_found(cls, idn):
    with expected_protocol(
        cls, [query("*IDN?", idn)], address="TCPIP0::10.0.0.9::5025::SOCKET"
    ) as i:
        with pytest.raises(WrongInstrument) as err:
            i.check_identity()
    assert isinstance(err.value, ConfigError)
    text = str(err.value)
    assert "TCPIP0::10.0.0.9::5025::SOCKET" in text
    assert f"BENCHWORKS {cls.MODEL}" in text and idn in text


def test_malformed_idn_is_a_protocol_error():
    with expected_protocol(INC360, [query("*IDN?", "BENCHWORKS,INC-360")]) as inc:
        with pytest.raises(ProtocolError, match="4 fields"):
            _ = inc.idn


def test_models_and_channels():
    assert (LC2000.MODEL, dict(LC2000.CHANNELS)) == ("LC-2000", {"FORC": "N"})
    assert (ENC600.MODEL, dict(ENC600.CHANNELS)) == ("ENC-600", {"POS": "mm", "LIFT": "mm"})
    assert (INC360.MODEL, dict(INC360.CHANNELS)) == ("INC-360", {"ANGL": "deg"})
    assert ACT3.MODEL == "ACT-3"


def test_no_io_before_open():
    transport = ProtocolTransport([])
    lc = LC2000("TCPIP0::1.2.3.4::5025::SOCKET", transport=transport)
    assert not transport.opened
    with pytest.raises(InstrumentTimeout, match="not open"):
        lc.measure()


# -- device errors ---------------------------------------------------------------------------


def test_setting_refused_by_the_instrument_raises_with_code():
    with expected_protocol(
        LC2000,
        [("ACQ:PRET 5000\nSYST:ERR?", '-222,"Data out of range"'), ("SYST:ERR?", OK)],
    ) as lc:
        with pytest.raises(InstrumentError) as err:
            lc.pretrigger = 5000
    e = err.value
    assert (e.code, e.message, e.command) == (-222, "Data out of range", "ACQ:PRET 5000")
    assert "LC-2000" in str(e) and e.queued == []


def test_failed_query_raises_from_the_error_line_alone():
    # Only the error line is scripted: reading a second line would time out and fail the test.
    with expected_protocol(
        LC2000,
        [("FETC? FORC\nSYST:ERR?", '-230,"Data corrupt or stale"'), ("SYST:ERR?", OK)],
    ) as lc:
        with pytest.raises(InstrumentError) as err:
            lc.fetch()
    assert err.value.code == -230
    assert not isinstance(err.value, InstrumentTimeout)


def test_error_queue_is_drained_and_kept_on_the_exception():
    with expected_protocol(
        LC2000,
        [
            ("ABOR\nSYST:ERR?", '-113,"Undefined header"'),
            ("SYST:ERR?", '-350,"Queue overflow"'),
            ("SYST:ERR?", OK),
        ],
    ) as lc:
        with pytest.raises(InstrumentError) as err:
            lc.abort()
    assert err.value.queued == [(-350, "Queue overflow")]


def test_settings_conflict_while_armed():
    with expected_protocol(
        LC2000,
        [("ACQ:RATE 100\nSYST:ERR?", '-221,"Settings conflict"'), ("SYST:ERR?", OK)],
    ) as lc:
        with pytest.raises(InstrumentError, match="Settings conflict") as err:
            lc.rate = 100
    assert err.value.code == -221


def test_timeout_names_instrument_and_command_and_stale_input_is_dropped():
    with expected_protocol(
        INC360,
        [("MEAS? ANGL\nSYST:ERR?", b"12.5"), cmd("*CLS"), query("MEAS? ANGL", "-3.25")],
        name="inclinometer",
    ) as inc:
        with pytest.raises(InstrumentTimeout, match=r"inclinometer: no reply to 'MEAS\? ANGL'"):
            inc.measure()
        # the half reply left behind must not be taken for the next one: a fresh connection
        # (never pyvisa-py's clear(), which loops on a closed peer) and *CLS come first
        assert inc.measure() == -3.25
        assert inc._transport.opens == 2


def test_silent_instrument_times_out():
    with expected_protocol(ACT3, [("OUTP:EST ON\nSYST:ERR?", None)]) as act:
        with pytest.raises(InstrumentTimeout, match="OUTP:EST ON"):
            act.estop = True


def test_reply_that_is_not_an_error_line_is_a_protocol_error():
    with expected_protocol(LC2000, [("*RST\nSYST:ERR?", "1")]) as lc:
        with pytest.raises(ProtocolError, match="error-queue entry"):
            lc.reset()


def test_write_and_ask_refuse_the_wrong_kind_before_io():
    with expected_protocol(LC2000, []) as lc:
        with pytest.raises(ValidationError):
            lc.write("ACQ:RATE?")
        with pytest.raises(ValidationError):
            lc.ask("ABOR")
        with pytest.raises(ValidationError, match="next_error"):
            lc.ask("SYST:ERR?")


def test_next_error():
    with expected_protocol(LC2000, [("SYST:ERR?", '-102,"Syntax error"')]) as lc:
        assert lc.next_error() == (-102, "Syntax error")


# -- acquisition controls --------------------------------------------------------------------


def test_acquisition_controls():
    with expected_protocol(
        LC2000,
        [
            cmd("ACQ:RATE 2500"),
            query("ACQ:RATE?", "2500"),
            cmd("ACQ:RATE 333.5"),
            cmd("ACQ:POIN 200000"),
            query("ACQ:POIN?", "200000"),
            cmd("ACQ:PRET 0"),
            query("ACQ:PRET?", "0"),
            cmd("TRIG:SOUR BUS"),
            query("TRIG:SOUR?", "BUS"),
            query("TRIG:SOUR?", "EXTERNAL"),
            cmd("FORM:DATA ASC"),
            query("FORM:DATA?", "ASC"),
            query("ACQ:STAT?", "ARMED"),
        ],
    ) as lc:
        lc.rate = 2500
        assert lc.rate == 2500.0
        lc.rate = 333.5
        lc.points = 200000
        assert lc.points == 200000
        lc.pretrigger = 0
        assert lc.pretrigger == 0
        lc.trigger_source = "BUS"
        assert lc.trigger_source == "BUS"
        assert lc.trigger_source == "EXT"
        lc.data_format = "ASC"
        assert lc.data_format == "ASC"
        assert lc.state == "ARMED"


@pytest.mark.parametrize(
    ("attr", "value"),
    [
        ("rate", 9.99),
        ("rate", 10000.5),
        ("rate", float("nan")),
        ("rate", "1000"),
        ("rate", True),
        ("points", 0),
        ("points", 200001),
        ("points", 10.0),
        ("pretrigger", -1),
        ("trigger_source", "IMMEDIATE"),
        ("trigger_source", "imm"),
        ("data_format", "BINARY"),
    ],
)
def test_validators_raise_before_any_io(attr, value):
    with expected_protocol(LC2000, []) as lc:
        with pytest.raises(ValidationError, match=attr):
            setattr(lc, attr, value)


def test_read_only_and_channel_validation_before_io():
    with expected_protocol(ENC600, []) as enc:
        with pytest.raises(AttributeError):
            enc.state = "DONE"
        with pytest.raises(ValidationError, match="name a channel"):
            enc.fetch()
        with pytest.raises(ValidationError, match="no channel"):
            enc.measure("FORC")
        with pytest.raises(ValidationError, match="200000"):
            enc.configure(rate=10000, duration_s=20.0)
        with pytest.raises(ValidationError, match="duration_s"):
            enc.configure(rate=1000, duration_s=-1)
        with pytest.raises(ValidationError):
            enc.configure(rate=1000, duration_s=1, source="SOMETIME")


def test_configure_arm_trigger_abort():
    with expected_protocol(
        LC2000,
        [
            cmd("ABOR"),
            cmd("ACQ:RATE 2000"),
            cmd("ACQ:POIN 3201"),
            cmd("ACQ:PRET 200"),
            cmd("TRIG:SOUR EXT"),
            cmd("FORM:DATA REAL"),
            cmd("INIT"),
            cmd("*TRG"),
            cmd("ABOR"),
        ],
    ) as lc:
        s = lc.configure(rate=2000, duration_s=1.5, pretrigger_s=0.1)
        assert (s.rate, s.points, s.pretrigger, s.source, s.data_format) == (
            2000.0,
            3201,
            200,
            "EXT",
            "REAL",
        )
        lc.arm()
        lc.trigger()
        lc.abort()


def test_wait_done_polls_until_done():
    with expected_protocol(
        LC2000,
        [query("ACQ:STAT?", "ARMED"), query("ACQ:STAT?", "RUN"), query("ACQ:STAT?", "DONE")],
    ) as lc:
        lc.wait_done(timeout_s=5, poll_s=0)


def test_wait_done_timeout_names_the_state_seen():
    with expected_protocol(LC2000, [query("ACQ:STAT?", "ARMED")]) as lc:
        with pytest.raises(InstrumentTimeout, match="state ARMED"):
            lc.wait_done(timeout_s=0)


# -- fetching --------------------------------------------------------------------------------


def test_fetch_real_block():
    values = [1.5, -2.25, float("nan"), 1999.99]
    with expected_protocol(LC2000, [query("FETC? FORC", block(values))]) as lc:
        x = lc.fetch()
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x, np.array(values, dtype="<f4").astype(float))


def test_fetch_real_block_with_newline_bytes_inside():
    # 0x0A inside the binary data must not end the read
    payload = struct.pack("<2f", struct.unpack("<f", b"\n\n\n\n")[0], 1.0)
    wire = b"#18" + payload + b"\n"
    with expected_protocol(LC2000, [query("FETC? FORC", wire)]) as lc:
        x = lc.fetch("FORC")
    assert x[1] == 1.0 and len(x) == 2


def test_fetch_ascii():
    with expected_protocol(ENC600, [query("FETC? LIFT", "NaN,1.25,-1.25E+01,3")]) as enc:
        x = enc.fetch("LIFT")
    np.testing.assert_array_equal(x, [np.nan, 1.25, -12.5, 3.0])


def test_fetch_bad_block_is_a_protocol_error():
    with expected_protocol(
        LC2000, [query("FETC? FORC", b"#0\n"), cmd("*CLS"), query("*OPC?", "1")]
    ) as lc:
        with pytest.raises(ProtocolError, match="block header"):
            lc.fetch()
        assert lc.opc()  # what was left of the bad reply is dropped, not read as the next one
        assert lc._transport.opens == 2  # dropped with the connection it came on


def test_fetch_trace_builds_the_device_time_axis():
    with expected_protocol(
        ENC600,
        [
            query("ACQ:RATE?", "100"),
            query("ACQ:PRET?", "2"),
            query("FETC? POS", block([10, 11, 12, 13, 14])),
            query("FETC? LIFT", "0,0.5,1,1.5,2"),
            query("*IDN?", "BENCHWORKS,ENC-600,ENC0311,1.2"),
        ],
    ) as enc:
        trace = enc.fetch_trace()
    np.testing.assert_allclose(trace.t, [-0.02, -0.01, 0.0, 0.01, 0.02])
    np.testing.assert_array_equal(trace["POS"], [10, 11, 12, 13, 14])
    np.testing.assert_array_equal(trace["LIFT"], [0, 0.5, 1, 1.5, 2])
    assert trace.units == {"POS": "mm", "LIFT": "mm"}
    assert (trace.rate, trace.pretrigger) == (100.0, 2)
    assert trace.source == "BENCHWORKS,ENC-600,ENC0311,1.2"


def test_measure():
    with expected_protocol(
        INC360,
        [query("MEAS? ANGL", "-12.5"), query("MEAS? ANGL", "NaN"), query("MEAS? ANGL", "x")],
    ) as inc:
        assert inc.measure() == -12.5
        assert np.isnan(inc.measure("ANGL"))
        with pytest.raises(ProtocolError):
            inc.measure()


# -- the actuator box ------------------------------------------------------------------------


def test_act3_relays_and_trigger_count():
    with expected_protocol(
        ACT3,
        [
            cmd("OUTP:EST ON"),
            query("OUTP:EST?", "1"),
            cmd("OUTP:PAT OFF"),
            query("OUTP:PAT?", "0"),
            cmd("OUTP:POW OFF"),
            query("OUTP:POW?", "0"),
            query("TRIG:COUN?", "3"),
            query("OUTP:EST?", "ON"),
        ],
    ) as act:
        act.estop = True
        assert act.estop is True
        act.patient = False
        assert act.patient is False
        act.power = False
        assert act.power is False
        assert act.trigger_count == 3
        with pytest.raises(ProtocolError, match="expected 1 or 0"):
            _ = act.estop


@pytest.mark.parametrize("value", [1, 0, "ON", None])
def test_act3_relays_take_only_bools(value):
    with expected_protocol(ACT3, []) as act:
        with pytest.raises(ValidationError, match="estop"):
            act.estop = value


def test_act3_relay_refused():
    with expected_protocol(
        ACT3,
        [("OUTP:POW ON\nSYST:ERR?", '-113,"Undefined header"'), ("SYST:ERR?", OK)],
    ) as act:
        with pytest.raises(InstrumentError) as err:
            act.power = True
    assert (err.value.code, err.value.command) == (-113, "OUTP:POW ON")
