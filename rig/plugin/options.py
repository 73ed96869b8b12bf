"""The rig's options, in one table: the pytest plugin and `rig certify` are both built from it."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from ..bench.provision import DEFAULT_SCALE, EMULATOR_MODES
from ..errors import ConfigError


@dataclass(frozen=True)
class Option:
    """One option: its flag, its ini twin, how `rig certify` spells it, its default and help.

    `cli` is how `rig certify` exposes it: "option" (--flag VALUE), "positional", "required"
    (--flag VALUE, mandatory) or "hidden" (accepted, not listed in --help)."""

    flag: str
    ini: str
    help: str
    default: Any = None
    type: Callable[[str], Any] = str
    many: bool = False
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    cli: str = "option"

    @property
    def dest(self) -> str:
        """The attribute name on an argparse namespace (`--bench-cal-due` -> bench_cal_due)."""
        return self.flag.removeprefix("--").replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("--model", "rig_model", "table model to certify, e.g. TT-890", cli="positional"),
    Option(
        "--serial",
        "rig_serial",
        "serial number of the unit under test (as scanned)",
        cli="required",
    ),
    Option(
        "--station", "rig_station", "station file (TOML) of a real bench; none: an emulated bench"
    ),
    Option("--operator", "rig_operator", "name of the operator"),
    Option("--reports", "rig_reports", "directory for run records", default="reports"),
    Option(
        "--scale",
        "rig_scale",
        "time scale of the emulated bench",
        default=DEFAULT_SCALE,
        type=float,
    ),
    Option(
        "--defect",
        "rig_defects",
        "seed a named defect in the emulated bench (repeatable)",
        many=True,
    ),
    Option(
        "--emulator",
        "rig_emulator",
        "run the emulated bench in a 'subprocess' or 'inprocess'",
        default=EMULATOR_MODES[0],
        choices=EMULATOR_MODES,
    ),
    Option(
        "--retest",
        "rig_retest",
        "rerun a requirement that ended ERROR (a rig or bench fault, not the unit) up to N "
        "times; every attempt is kept in the record, the last one's verdict counts",
        default=1,
        type=int,
        metavar="N",
    ),
    Option(
        "--calibration-override",
        "rig_calibration_override",
        "engineering override: run although an instrument's calibration has expired (give the "
        "reason); the evidence is then marked NOT VALID FOR PRODUCT RELEASE",
        metavar="REASON",
    ),
    Option(
        "--db",
        "rig_db",
        "results database the ended run goes into: a SQLite file or a postgresql:// URL "
        "(default $RIG_DB_URL, else REPORTS/results.sqlite)",
        metavar="URL",
    ),
    Option(
        "--trust-file",
        "rig_trust_file",
        "the line's trust file (enrolled stations and people with roles): the operator must "
        "be enrolled to start (default $RIG_TRUST; none: nothing checked)",
        metavar="PATH",
    ),
    Option(
        "--events",
        "rig_events",
        "append every event of the run to this file as it happens, one JSON object a line "
        "(flushed as written: another process can follow the run live)",
        metavar="FILE",
    ),
    Option(
        "--confirm",
        "rig_confirm",
        "an operator step of the profile ([[operator_step]] id) the operator confirmed done "
        "(repeatable); recorded with the operator's name",
        many=True,
        metavar="STEP",
    ),
    Option(
        "--bench-cal-due",
        "rig_bench_cal_due",
        "emulated bench only: the calibration due date (YYYY-MM-DD) its instruments report",
        cli="hidden",
    ),
)

BY_DEST: dict[str, Option] = {o.dest: o for o in OPTIONS}


# -- pytest ------------------------------------------------------------------------------------
def add_to_pytest(parser: pytest.Parser) -> None:
    """Every option on the pytest command line, and its ini twin."""
    group = parser.getgroup("rig", "spinal table certification rig")
    for o in OPTIONS:
        if o.many:
            group.addoption(o.flag, action="append", dest=o.ini, default=None, help=o.help)
            parser.addini(o.ini, o.help, type="args", default=[])
        else:
            # the raw text: the bench provisioning judges it, so that the command line and the
            # ini file give the same message for the same mistake
            group.addoption(o.flag, dest=o.ini, default=None, help=f"{o.help} (ini: {o.ini})")
            parser.addini(o.ini, o.help, default=None if o.default is None else str(o.default))


def from_pytest(config: pytest.Config) -> dict[str, Any]:
    """Every option's value by dest: the command line wins over the ini file."""
    values: dict[str, Any] = {}
    for o in OPTIONS:
        value = config.getoption(o.ini)
        if value is None:
            value = config.getini(o.ini)
        values[o.dest] = list(value or ()) if o.many else value
    return values


# -- the `rig certify` command line ------------------------------------------------------------
def add_to_argparse(parser: argparse.ArgumentParser) -> None:
    """Every option on an argparse parser (`rig certify`), typed, with the table's default."""
    for o in OPTIONS:
        shown = o.help if o.default is None else f"{o.help} (default {_text(o.default)})"
        kwargs: dict[str, Any] = {"help": argparse.SUPPRESS if o.cli == "hidden" else shown}
        if o.cli == "positional":
            parser.add_argument(o.dest, **kwargs)
            continue
        if o.many:
            kwargs["action"] = "append"
        else:
            kwargs["type"] = o.type
            kwargs["default"] = o.default
        if o.choices:
            kwargs["choices"] = o.choices
        if o.metavar:
            kwargs["metavar"] = o.metavar
        if o.cli == "required":
            kwargs["required"] = True
        parser.add_argument(o.flag, dest=o.dest, **kwargs)


def to_pytest_args(values: Mapping[str, Any] | argparse.Namespace) -> list[str]:
    """The pytest arguments that give the plugin these option values (the table spells them)."""
    if isinstance(values, argparse.Namespace):
        values = vars(values)
    args: list[str] = []
    for o in OPTIONS:
        value = values.get(o.dest)
        if value is None:
            continue
        for item in value if o.many else [value]:
            args += [o.flag, _text(item)]
    return args


def retest_of(raw: object) -> int:
    """How many times an ERROR requirement is rerun: an integer 0-10 (a ConfigError otherwise)."""
    try:
        value = int(str(raw if raw is not None else BY_DEST["retest"].default))
    except ValueError:
        raise ConfigError(f"--retest {raw!r}: expected an integer 0-10") from None
    if not 0 <= value <= 10:
        raise ConfigError(f"--retest {raw!r}: expected an integer 0-10")
    return value


def _text(value: Any) -> str:
    # 20.0 -> "20", as a person would type it
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
