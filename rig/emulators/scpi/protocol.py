"""SCPI on the wire as the ICD (`instruments-scpi.md`) has it: error codes, parsing, reply text."""

from __future__ import annotations

import re

import numpy as np

#: Every error the ICD names, with its exact message text.
ERROR_MESSAGES: dict[int, str] = {
    0: "No error",
    -102: "Syntax error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -213: "Init ignored",
    -221: "Settings conflict",
    -222: "Data out of range",
    -224: "Illegal parameter value",
    -230: "Data corrupt or stale",
    -350: "Queue overflow",
}
QUEUE_SIZE = 16

#: A reply message: a text line, or a complete IEEE 488.2 definite-length block. The transport
#: appends the `\n` terminator to either.
Reply = str | bytes

_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_SEGMENT = re.compile(
    r"^\s*:?(?P<header>\*[A-Za-z]+|[A-Za-z][A-Za-z0-9]*(?::[A-Za-z][A-Za-z0-9]*)*)"
    r"(?P<query>\?)?(?:\s+(?P<params>\S.*?))?\s*$"
)
_PARAM = re.compile(r"^[A-Za-z0-9.+\-_]+$")


class ScpiError(Exception):
    """A command failed; the code goes onto the error queue (never onto the wire)."""

    def __init__(self, code: int) -> None:
        super().__init__(code, ERROR_MESSAGES[code])
        self.code = code


# -- received text -------------------------------------------------------------------------------


def parse_segment(segment: str) -> tuple[list[str], bool, list[str]]:
    """(upper-case header mnemonics, is a query, parameters) of one `;`-separated command."""
    m = _SEGMENT.match(segment)
    if m is None:
        raise ScpiError(-102)
    params: list[str] = []
    if m["params"] is not None:
        params = [p.strip() for p in m["params"].split(",")]
        if not all(_PARAM.match(p) for p in params):
            raise ScpiError(-102)
    return m["header"].upper().split(":"), m["query"] is not None, params


def keyword_forms(spelling: str) -> tuple[str, str]:
    """(short, long) forms of one ICD keyword spelling such as 'ACQuire'."""
    short = "".join(c for c in spelling if c.isupper() or c.isdigit() or c == "*")
    return short, spelling.upper()


def parse_choice(param: str, spellings: tuple[str, ...]) -> str:
    """The short form of the ICD spelling `param` names (exactly its short or long form)."""
    p = param.upper()
    for s in spellings:
        short, long = keyword_forms(s)
        if p in (short, long):
            return short
    raise ScpiError(-224)


def parse_number(param: str) -> float:
    """A decimal or exponent-form number; anything else (inf, nan included) is -224."""
    if not _NUMBER.match(param):
        raise ScpiError(-224)
    return float(param)


def parse_integer(param: str) -> int:
    """A whole number, possibly written as a decimal (`10.0`); a fraction is -224."""
    x = parse_number(param)
    # Counts are whole numbers; a fraction is not a value the instrument can take.
    if not x.is_integer():
        raise ScpiError(-224)
    return int(x)


def parse_boolean(param: str) -> bool:
    """ON|OFF|1|0, case-insensitive."""
    p = param.upper()
    if p in ("ON", "1"):
        return True
    if p in ("OFF", "0"):
        return False
    raise ScpiError(-224)


# -- reply text ----------------------------------------------------------------------------------


def format_number(x: float) -> str:
    """A reply number: plain decimal (integers without a point) or exponent form; NaN as `NaN`."""
    x = float(x)
    if x != x:
        return "NaN"
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x + 0.0).upper()


def format_samples(values: np.ndarray) -> str:
    """Comma-separated plain decimals; `repr` keeps 200000 samples fast and round-trip exact."""
    # `+ 0.0` turns -0.0 into 0.0; the only alphabetic repr left is 'nan'.
    text = ",".join(map(repr, (np.asarray(values, dtype=float) + 0.0).tolist()))
    return text.replace("nan", "NaN")


def definite_block(payload: bytes) -> bytes:
    """An IEEE 488.2 definite-length block: `#`, one digit n, n digits of length, the bytes."""
    length = str(len(payload))
    return b"#" + str(len(length)).encode() + length.encode() + payload


def wire(reply: Reply) -> bytes:
    """The bytes of one reply message on the wire, terminator included."""
    return (reply.encode("ascii") if isinstance(reply, str) else reply) + b"\n"
