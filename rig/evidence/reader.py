"""The one reader of run records: a run directory (or its record file) as a `RunView`.

Everything that reads a record goes through `read_run`: the writer reopening a record to append
signatures, the verifier, the certificate, the results database, the CLI and the benchmarks.
The file is read once, split into lines, each line parsed, and the hash chain checked once here;
each reader then takes what it needs (the verifier explains every break, the results database
wants to know whether the chain holds up to the end line, the writer refuses a damaged tail).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

from .format import (
    GENESIS,
    Kind,
    Outcome,
    RecordError,
    canonical,
    line_hash,
    resolve_run,
)
from .measurement import Measurement


class Tail(StrEnum):
    """What follows the record's last newline."""

    NONE = "none"  # nothing: the file ends with its newline, as written
    UNTERMINATED = "unterminated"  # a whole canonical line that lacks only its newline
    TORN = "torn"  # the start of a line: a write cut short by a crash or power loss
    FOREIGN = "foreign"  # bytes that are neither a line nor the start of one (altered)


class Unreadable(StrEnum):
    """Why a line of the record could not be read as a record line."""

    EMPTY = "empty line"
    NOT_JSON = "not JSON"
    NOT_OBJECT = "not a JSON object"


@dataclass(frozen=True)
class Conclusion:
    """A requirement's concluded verdict (a `requirement` line)."""

    seq: Any
    requirement: str
    verdict: str
    note: str
    test: str
    attempt: int = 1  # --retest: the attempt this conclusion is of (records before: 1)


@dataclass(frozen=True)
class TraceFile:
    """A trace file the record names: its path inside the run directory and its SHA-256."""

    path: Any  # as recorded: a relative path, or whatever an altered line holds
    sha256: Any
    line: int  # index of the line that names it


@dataclass
class RunView:
    """A run record as read: its lines, what they say, and whether their chain holds.

    `raws`, `lines` and `hashes` run in parallel, one per line (a last line lacking only its
    newline is one of them; see `tail`). `lines[i]` is None when line i is not a JSON object
    (`unreadable` says why). The chain is checked once, at reading: `breaks` are the lines whose
    `prev` is not the hash of the line before (or the genesis hash), `noncanonical` the lines
    whose bytes are not the canonical JSON of what they parse to (edited by hand).

    What the run says (`header`, `measurements`, `conclusions`, `end` ...) is read from
    `entries`: the lines up to the first one that cannot be read."""

    directory: Path
    path: Path
    data: bytes
    raws: list[bytes]
    lines: list[dict[str, Any] | None]
    hashes: list[str]
    tail: Tail = Tail.NONE
    tail_bytes: bytes = b""
    unreadable: dict[int, Unreadable] = field(default_factory=dict)
    noncanonical: tuple[int, ...] = ()
    breaks: tuple[int, ...] = ()

    # -- the lines -------------------------------------------------------------------------
    @cached_property
    def entries(self) -> list[dict[str, Any]]:
        """The lines up to the first one that is not a JSON object, parsed."""
        out: list[dict[str, Any]] = []
        for line in self.lines:
            if line is None:
                break
            out.append(line)
        return out

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """The entries of one kind, in record order."""
        return [x for x in self.entries if x.get("kind") == kind]

    @property
    def torn(self) -> bool:
        """True if the last write was cut short (the file does not end with a newline after a
        record line or the start of one)."""
        return self.tail in (Tail.UNTERMINATED, Tail.TORN)

    # -- what the run says -----------------------------------------------------------------
    @property
    def header(self) -> dict[str, Any] | None:
        """The header line (the first line, if it is one), as parsed."""
        first = self.lines[0] if self.lines else None
        return first if first is not None and first.get("kind") == Kind.HEADER else None

    @property
    def header_raw(self) -> bytes | None:
        """The header line's bytes (what signatures bind to)."""
        return self.raws[0] if self.header is not None else None

    @property
    def model(self) -> str | None:
        """The model the header names."""
        h = self.header or {}
        return None if h.get("model") is None else str(h.get("model"))

    @property
    def serial(self) -> str | None:
        """The serial the header names."""
        h = self.header or {}
        return None if h.get("serial") is None else str(h.get("serial"))

    @cached_property
    def measurements(self) -> list[Measurement]:
        """Every measurement line, as a Measurement (inf and NaN as floats again)."""
        return [Measurement.from_line(x) for x in self.of_kind(Kind.MEASUREMENT)]

    @cached_property
    def conclusions(self) -> list[Conclusion]:
        """Every requirement conclusion, in record order."""
        return [
            Conclusion(
                seq=x.get("seq"),
                requirement=str(x.get("requirement")),
                verdict=str(x.get("verdict", Outcome.FAIL)),
                note=str(x.get("note") or ""),
                test=str(x.get("test") or ""),
                attempt=_attempt(x.get("attempt")),
            )
            for x in self.of_kind(Kind.REQUIREMENT)
        ]

    @property
    def verdicts(self) -> dict[str, str]:
        """Each concluded requirement's verdict (its last conclusion)."""
        return {c.requirement: c.verdict for c in self.conclusions}

    @property
    def tests(self) -> dict[str, str]:
        """Each concluded requirement's test (node id), from its last conclusion."""
        return {c.requirement: c.test for c in self.conclusions}

    @property
    def end(self) -> dict[str, Any] | None:
        """The end line, or None: the run did not end. Signatures follow it, so it is not
        necessarily the last line. Should there be more than one, the first: anyone can chain
        a line to a record, so a later "end" is an insertion (rig verify says TAMPERED), never
        the run's word."""
        return next((x for x in self.entries if x.get("kind") == Kind.END), None)

    @property
    def ended(self) -> bool:
        """True if the run wrote its end line."""
        return self.end is not None

    @property
    def complete(self) -> bool:
        """True if the run ended and its end line does not say it was interrupted."""
        end = self.end
        return end is not None and end.get("complete", True) is not False

    @property
    def verdict(self) -> str:
        """The run's overall verdict as its end line records it; INCOMPLETE when the run did not
        end or its end line says it did not complete (INTERRUPTED when it says so)."""
        end = self.end
        if end is not None and end.get("verdict") == Outcome.INTERRUPTED:
            return Outcome.INTERRUPTED  # ended by Ctrl-C or SIGTERM: it says so itself
        if end is None or not self.complete:
            return Outcome.INCOMPLETE
        return str(end.get("verdict", Outcome.INCOMPLETE))

    @property
    def signatures(self) -> list[dict[str, Any]]:
        """The signature lines, as recorded (verified by rig.evidence.verify, not here)."""
        return self.of_kind(Kind.SIGNATURE)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The event lines (safe-state checks, interruptions)."""
        return self.of_kind(Kind.EVENT)

    @cached_property
    def traces(self) -> list[TraceFile]:
        """Every trace file a line names (a `trace` line, or a measurement judged on it), in
        record order; a file named by both appears twice."""
        return [
            TraceFile(x.get("trace"), x.get("trace_sha256"), i)
            for i, x in enumerate(self.entries)
            if x.get("kind") in (Kind.MEASUREMENT, Kind.TRACE) and x.get("trace") is not None
        ]

    @property
    def next_seq(self) -> int:
        """The seq of the line an append would write."""
        seq = 0
        for line in self.entries:
            seq = int(line.get("seq", seq)) + 1
        return seq

    def chain_intact(self, *, to_end: bool = True) -> bool:
        """True if every line is readable, canonical and chained to the one before.

        `to_end`: only up to the (first) end line; what follows it (signatures) is another
        author's, and must not disqualify the run's results. A torn tail (a crash mid-write)
        is not a break."""
        last = len(self.lines) - 1
        if to_end:
            ends = [i for i, x in enumerate(self.lines) if x is not None and x.get("kind") == "end"]
            if ends:
                last = ends[0]
        first_bad = min([*self.unreadable, *self.noncanonical, *self.breaks], default=last + 1)
        return first_bad > last


def read_run(run: Path | str) -> RunView:
    """Read a run directory (or its record file) once: see RunView.

    Raises NoRecordError (a RecordError and a ConfigError) if there is no record there."""
    directory, path = resolve_run(run)
    return parse_run(directory, path, path.read_bytes())


def parse_run(directory: Path, path: Path, data: bytes) -> RunView:
    """The RunView of a record's bytes (already read)."""
    parts = data.split(b"\n")
    tail_bytes = parts.pop()  # b"" when the file ends with its newline, as written
    raws = parts
    tail = Tail.NONE
    if tail_bytes:
        try:
            obj = json.loads(tail_bytes)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict) and canonical(obj) == tail_bytes:
            raws = [*parts, tail_bytes]
            tail = Tail.UNTERMINATED
        elif obj is None and is_torn_line(tail_bytes):
            tail = Tail.TORN
        else:
            tail = Tail.FOREIGN
    lines: list[dict[str, Any] | None] = []
    hashes: list[str] = []
    unreadable: dict[int, Unreadable] = {}
    noncanonical: list[int] = []
    for i, raw in enumerate(raws):
        obj = None
        if not raw.strip():
            unreadable[i] = Unreadable.EMPTY
        else:
            try:
                obj = json.loads(raw)
            except (ValueError, RecursionError):  # nesting deep enough to overflow: forged
                unreadable[i] = Unreadable.NOT_JSON
            if obj is not None and not isinstance(obj, dict):
                unreadable[i] = Unreadable.NOT_OBJECT
                obj = None
        lines.append(obj)
        hashes.append(line_hash(raw))
        if obj is not None and canonical(obj) != raw:
            noncanonical.append(i)
    breaks = tuple(
        i
        for i, obj in enumerate(lines)
        if obj is not None and obj.get("prev") != (GENESIS if i == 0 else hashes[i - 1])
    )
    return RunView(
        directory=directory,
        path=path,
        data=data,
        raws=raws,
        lines=lines,
        hashes=hashes,
        tail=tail,
        tail_bytes=tail_bytes if tail != Tail.UNTERMINATED else b"",
        unreadable=unreadable,
        noncanonical=tuple(noncanonical),
        breaks=breaks,
    )


def read_record(path: Path | str) -> list[dict[str, Any]]:
    """The lines of a record as dicts (up to the first line that cannot be read)."""
    return read_run(path).entries


def verify_chain(path: Path | str) -> list[str]:
    """Problems found in a record's hash chain (empty if intact). `rig verify` says more."""
    view = read_run(path)
    problems: list[str] = []
    for i, line in enumerate(view.lines):
        if line is None:
            problems.append(f"line {i + 1}: not JSON")
            return problems
        if i in view.breaks:
            problems.append(f"line {i + 1} (seq {line.get('seq')}): chain broken")
        if i in view.noncanonical:
            problems.append(f"line {i + 1} (seq {line.get('seq')}): not in canonical form")
    if view.tail in (Tail.TORN, Tail.FOREIGN):
        problems.append(f"line {len(view.lines) + 1}: not JSON")
    return problems


def require_appendable(view: RunView) -> None:
    """Raise RecordError unless a line can be appended to the record as it is."""
    if view.tail != Tail.NONE:
        raise RecordError(
            f"{view.path}: the last line is partial (a write was cut short); "
            "the record cannot be appended to"
        )
    if view.unreadable:
        raise RecordError(f"{view.path}: a line is not JSON; verify the record")


# --------------------------------------------------------------------------- torn lines

_STR = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*'
_STRING = re.compile(_STR + '"')
_STRING_START = re.compile(_STR + r"(?:\\(?:u[0-9a-fA-F]{0,3})?)?\Z")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_NUMBER_START = re.compile(r"-?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*|(?:\.[0-9]+)?[eE][-+]?[0-9]*)?)?")
_LITERALS = ("true", "false", "null")


def is_torn_line(tail: bytes) -> bool:
    """True if `tail` is a proper prefix of a canonical JSON object: what a write cut short
    leaves. A complete object followed by anything, or any byte a record line cannot hold,
    is not (that is an alteration, not a crash)."""
    try:
        text = tail.decode("ascii")  # canonical lines are ASCII (non-ASCII is \\u-escaped)
    except UnicodeDecodeError:
        return False
    if not text.startswith("{"):
        return False
    stack: list[str] = []
    state = "value"
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if state in ("value", "value_or_close"):
            if state == "value_or_close" and c == "]":
                stack.pop()
                i, state = i + 1, "after"
            elif c in "{[":
                stack.append("}" if c == "{" else "]")
                i, state = i + 1, "key_or_close" if c == "{" else "value_or_close"
            elif c == '"':
                m = _STRING.match(text, i)
                if m is None:
                    return _STRING_START.match(text, i) is not None
                i, state = m.end(), "after"
            elif c == "-" or c.isdigit():
                j = i
                while j < n and text[j] in "+-.eE0123456789":
                    j += 1
                if j == n:
                    return _NUMBER_START.fullmatch(text, i) is not None
                if _NUMBER.fullmatch(text, i, j) is None:
                    return False
                i, state = j, "after"
            else:
                lit = next((x for x in _LITERALS if text.startswith(x, i)), None)
                if lit is None:
                    return any(x.startswith(text[i:]) for x in _LITERALS)
                i, state = i + len(lit), "after"
        elif state in ("key", "key_or_close"):
            if state == "key_or_close" and c == "}":
                stack.pop()
                i, state = i + 1, "after"
                continue
            if c != '"':
                return False
            m = _STRING.match(text, i)
            if m is None:
                return _STRING_START.match(text, i) is not None
            i, state = m.end(), "colon"
        elif state == "colon":
            if c != ":":
                return False
            i, state = i + 1, "value"
        else:  # after a value
            if not stack:
                return False  # something after a complete object
            if c == ",":
                i, state = i + 1, "key" if stack[-1] == "}" else "value"
            elif c == stack[-1]:
                stack.pop()
                i += 1
            else:
                return False
    return bool(stack)


def _attempt(value: Any) -> int:
    # a conclusion written before --retest has none: its run had one attempt
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1
