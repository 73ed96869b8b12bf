"""One options table for the plugin and `rig certify`; the checks of the bench options."""

import argparse

import pytest

from rig.bench.provision import check_request, scale_of
from rig.cli import build_parser
from rig.errors import ConfigError
from rig.plugin.options import OPTIONS, add_to_argparse, to_pytest_args

pytest_plugins = ["pytester"]


def _certify_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["certify"]


def test_every_option_has_an_ini_twin(pytestconfig):
    for o in OPTIONS:
        assert o.ini.startswith("rig_"), o
        assert pytestconfig.getini(o.ini) is not None or o.default is None
    registered = {a.dest for a in pytestconfig._parser._anonymous.options}
    for group in pytestconfig._parser._groups:
        registered |= {opt.dest for opt in group.options}
    assert {o.ini for o in OPTIONS} <= registered
    assert {o.ini for o in OPTIONS} <= set(pytestconfig._parser._inidict)


def test_rig_certify_exposes_the_same_options():
    dests = {a.dest for a in _certify_parser()._actions}
    assert {o.dest for o in OPTIONS} <= dests
    # what certify has beyond the table is about the certify run itself, not the plugin
    assert dests - {o.dest for o in OPTIONS} == {
        "help",
        "requirement",
        "no_allure",
        "junit",
        "no_live",
        "quiet",
    }


def test_the_cli_turns_its_options_back_into_the_plugins(pytestconfig):
    args = build_parser().parse_args(
        [
            "certify",
            "TT-890",
            "--serial",
            "S 1",
            "--scale",
            "7.5",
            "--defect",
            "a",
            "--defect",
            "b",
            "--operator",
            "Ann",
            "--bench-cal-due",
            "2020-01-31",
        ]
    )
    argv = to_pytest_args(args)
    # parsed again by the plugin's own parser, every value comes back
    parser = pytestconfig._parser
    ns = parser.parse_known_args(argv)
    assert ns.rig_model == "TT-890" and ns.rig_serial == "S 1"
    assert float(ns.rig_scale) == 7.5 and ns.rig_defects == ["a", "b"]
    assert ns.rig_operator == "Ann" and ns.rig_bench_cal_due == "2020-01-31"
    assert ns.rig_reports == "reports" and ns.rig_emulator == "subprocess"


def test_argparse_gets_the_table_defaults():
    p = argparse.ArgumentParser()
    add_to_argparse(p)
    ns = p.parse_args(["TT-890", "--serial", "1"])
    given = {"model": "TT-890", "serial": "1"}
    for o in OPTIONS:
        assert getattr(ns, o.dest) == given.get(o.dest, o.default)


@pytest.mark.parametrize("raw", ["-1", "0", "x", -1.0])
def test_scale_must_be_a_positive_number(raw):
    with pytest.raises(ConfigError, match=r"--scale .*: expected a number > 0"):
        scale_of(raw)


def test_bench_options_are_checked_in_one_place():
    with pytest.raises(ConfigError, match="cannot be used with --station"):
        check_request({"model": "TT-890", "station": "s.toml", "defect": ["x"]})
    with pytest.raises(ConfigError, match="unknown defect 'nope'"):
        check_request({"model": "TT-890", "defect": ["nope"]})
    with pytest.raises(ConfigError, match="no table model given"):
        check_request({})
    with pytest.raises(ConfigError, match="--emulator 'thread'"):
        check_request({"model": "TT-890", "emulator": "thread"})
    req = check_request({"model": "TT-890", "scale": "2", "serial": "890001"})
    assert req.emulated and req.scale == 2.0 and req.plc_serial == 890001
    assert check_request({"station": "s.toml"}).station_file == "s.toml"


def test_the_cli_refuses_a_defect_on_a_real_bench(tmp_path, capsys):
    from rig.cli import main

    code = main(["certify", "TT-890", "--serial", "1", "--station", "s.toml", "--defect", "x"])
    assert code == 2
    assert "cannot be used with --station" in capsys.readouterr().out


def test_the_cli_refuses_a_bad_scale(capsys):
    from rig.cli import main

    assert main(["certify", "TT-890", "--serial", "1", "--scale", "-1"]) == 2
    assert "error: --scale -1.0: expected a number > 0" in capsys.readouterr().err
