"""Verification of a run record as evidence (21 CFR Part 11 §11.10(a), (c), (e); §11.70).

`verify_run(run_dir)` reads the record and its trace files and says whether they are what the
rig wrote, naming every alteration it finds: the line (and its seq), the field, the trace file
and its measurement, the signer. It checks that every line parses and is canonical JSON; the
hash chain (each line's `prev` is the SHA-256 of the line before); the per-field digests (which
name the field changed in a line that is otherwise intact); the order of the lines (deleted,
inserted, reordered); each measurement's trace file against its `trace_sha256`; each signature
against its public key and against this record and its position in it; and whether the run
ended.

Status, and the exit code of `rig verify`:

    VALID       0  intact, ended, and signed by the station
    TAMPERED    1  anything altered, deleted, inserted, reordered, or a signature that fails
    (usage)     2  no such run directory or record (`cmd_verify`; verify_run raises NoRecordError)
    INCOMPLETE  3  intact as far as it goes, but no end line (a run stopped or killed mid-way),
                   or a last line cut short without its newline (a crash during a write)
    UNSIGNED    4  intact and ended, but no station signature
    UNTRUSTED   5  intact and ended, its signatures verify, but a signer is not enrolled in the
                   line's trust file (or `trusted_keys`), is enrolled in a role that may not
                   sign with that meaning, or (with the line's database) the run was never
                   anchored there

What the record alone cannot show: lines cut off its end (indistinguishable from a run that
stopped there; hence never VALID without the station's signature over the end line, though a
later reviewer's signature line can be cut off unseen), and a whole record rewritten and
re-signed with another key. Trust anchored outside the file answers both: the trust file
(rig.evidence.trust: enrolled station and person keys, roles) makes a re-signing key UNTRUSTED,
and the line's database (`Anchoring`: the end line's and each signature line's hash, stored
when the run was ingested or signed) makes a rewritten record or a deleted signature TAMPERED.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from .format import FIELDS, RecordError, field_digests
from .reader import RunView, Tail, Unreadable, read_run
from .signature import MEANINGS, SIGNATURE_FIELDS, STATION, fingerprint, manifest, verify_signature
from .trust import OVERRIDE_SIGNED, Trust


class Status(StrEnum):
    """What `rig verify` says of a record (not of the unit: that is its Outcome)."""

    VALID = "VALID"
    TAMPERED = "TAMPERED"
    INCOMPLETE = "INCOMPLETE"
    UNSIGNED = "UNSIGNED"
    UNTRUSTED = "UNTRUSTED"


VALID, TAMPERED, INCOMPLETE, UNSIGNED, UNTRUSTED = Status
EXIT_CODES = {VALID: 0, TAMPERED: 1, INCOMPLETE: 3, UNSIGNED: 4, UNTRUSTED: 5}
EXIT_USAGE = 2
MEANING_OF = {
    VALID: "the record and its trace files are intact, the run ended, and the station's "
    "signature verifies",
    TAMPERED: "the record or its trace files were altered after they were written: "
    "it is not evidence",
    INCOMPLETE: "the record is intact as far as it goes, but the run did not end "
    "(stopped or killed mid-way)",
    UNSIGNED: "the record is intact and the run ended, but no station signature vouches for it",
    UNTRUSTED: "the record is intact and its signatures verify, but the line does not vouch "
    "for a signer (not enrolled, or not in a role that may sign so) or the run is not anchored",
}


@dataclass(frozen=True)
class AnchoredLine:
    """A line of the run as the line's database anchored it (the end line, a signature)."""

    seq: int
    kind: str
    line_sha256: str
    name: str | None = None
    meaning: str | None = None
    anchored: str = ""


@dataclass(frozen=True)
class Anchoring:
    """What the line's database holds for this record: the anchored lines of the run with this
    record's header hash, and how many runs of the same unit and start it holds under another
    header (a rewritten header)."""

    where: str
    lines: tuple[AnchoredLine, ...] = ()
    same_unit: int = 0


_LINES_BEFORE_ALTERED = "what it signs (the lines before it, their trace files) was altered since"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")


@dataclass(frozen=True)
class SignatureInfo:
    """One signature line of the record, as verified."""

    line: int
    seq: Any
    name: str
    meaning: str
    role: str
    time: str
    fingerprint: str
    valid: bool
    reason: str = ""
    untrusted: str = ""  # valid, but the line's trust anchor does not vouch for it: why


@dataclass
class VerifyReport:
    """What `verify_run` found: the status, every problem, the signatures, the run's verdict."""

    run_dir: Path
    record: Path
    status: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    signatures: list[SignatureInfo] = field(default_factory=list)
    verdict: str | None = None  # the end line's verdict of the run (PASS, FAIL, INCOMPLETE)
    ended: bool = False
    lines: int = 0
    model: str | None = None
    serial: str | None = None
    untrusted: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The exit code of `rig verify` for this status."""
        return EXIT_CODES[self.status]

    @property
    def ok(self) -> bool:
        """True only for a VALID record."""
        return self.status == VALID

    def as_text(self) -> str:
        """The report as `rig verify` prints it."""
        out = [f"{self.status}: {MEANING_OF[self.status]}"]
        out.append(f"record      {self.record} ({self.lines} lines)")
        run = f"{self.model or '?'} serial {self.serial or '?'}"
        if self.ended:
            run += f", ended, run verdict {self.verdict}"
        else:
            run += ", not ended"
        out.append(f"run         {run}")
        if self.signatures:
            out.append(f"signatures  {len(self.signatures)}")
            for s in self.signatures:
                state = "valid  " if s.valid else "INVALID"
                if s.valid and s.untrusted:
                    state = "UNTRUSTED"
                why = s.reason or s.untrusted
                out.append(
                    f"  {state} {s.role:<8} {s.meaning:<8} {s.name!r} at {s.time}, "
                    f"key {s.fingerprint[:23]}" + (f" ({why})" if why else "")
                )
        else:
            out.append("signatures  none")
        if self.problems:
            out.append(f"problems    {len(self.problems)}")
            out += [f"  - {p}" for p in self.problems]
        if self.untrusted:
            out.append("untrusted")
            out += [f"  - {u}" for u in self.untrusted]
        if self.notes:
            out.append("notes")
            out += [f"  - {n}" for n in self.notes]
        return "\n".join(out)


def verify_run(
    run: Path | str,
    *,
    trusted_keys: Iterable[str] | None = None,
    trust: Trust | None = None,
    anchoring: Anchoring | None = None,
) -> VerifyReport:
    """Verify a run directory (or its record.jsonl): see the module docstring for the statuses.

    `trusted_keys`: fingerprints (`SHA256:...`) or public keys (hex) of the keys allowed to sign;
    `trust`: the line's trust file (enrolled stations and people with their roles); a valid
    signature by a key neither vouches for makes the record UNTRUSTED. Without both, any key that
    verifies counts. `anchoring`: what the line's database anchored for this run."""
    return verify_view(read_run(run), trusted_keys=trusted_keys, trust=trust, anchoring=anchoring)


def verify_view(
    view: RunView,
    *,
    trusted_keys: Iterable[str] | None = None,
    trust: Trust | None = None,
    anchoring: Anchoring | None = None,
) -> VerifyReport:
    """Verify a record already read (rig.evidence.reader.read_run): see verify_run."""
    return _Verifier(view, trusted_keys, trust, anchoring).run()


def cmd_verify(
    args: argparse.Namespace,
    *,
    trust: Trust | None = None,
    anchoring: Anchoring | None = None,
) -> int:
    """`rig verify RUN [--trust FINGERPRINT ...]`: print the report; exit code by status."""
    try:
        report = verify_run(
            args.run,
            trusted_keys=getattr(args, "trust", None),
            trust=trust,
            anchoring=anchoring,
        )
    except RecordError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(report.as_text())
    return report.exit_code


# --------------------------------------------------------------------------- the checks


class _Verifier:
    def __init__(
        self,
        view: RunView,
        trusted: Iterable[str] | None,
        trust: Trust | None = None,
        anchoring: Anchoring | None = None,
    ) -> None:
        self.view = view
        self.trust = trust
        self.anchoring = anchoring
        self.untrusted: list[str] = []
        self.untrusted_sig: dict[int, str] = {}
        self.run_dir, self.path = view.directory, view.path
        self.trusted = _trusted_set(trusted) if trusted is not None else None
        self.problems: list[str] = []
        self.notes: list[str] = []
        # the reader split, parsed and chained the lines; the checks here explain what it found
        self.raws = view.raws
        self.lines = view.lines
        self.hashes = view.hashes
        self.torn = view.torn
        # lines whose own bytes are known altered, and lines whose place in the chain is known
        # wrong: a chain break next to them is explained and not reported twice
        self.altered: set[int] = set()
        self.misplaced: set[int] = set()

    def problem(self, text: str, *, line: int | None = None, placed: int | None = None) -> None:
        self.problems.append(text)
        if line is not None:
            self.altered.add(line)
        if placed is not None:
            self.misplaced.add(placed)

    def run(self) -> VerifyReport:
        self.check_tail()
        self.check_lines()
        self.check_fields()
        self.check_order()
        faults = self.check_signatures()
        self.check_chain()
        self.check_structure()
        self.check_traces()
        self.check_anchors()
        signatures = self.signature_infos(faults)
        ends = [x for x in self.lines if x is not None and x.get("kind") == "end"]
        header = self.header()
        if not self.raws and not self.torn:
            self.notes.append("the record is empty: the run stopped before writing its header")
        elif not ends:
            last = next((x for x in reversed(self.lines) if x is not None), {})
            self.notes.append(
                f"no end line: the run stopped after seq {last.get('seq')} ({len(self.raws)} lines)"
            )
        station_signed = any(
            s.valid and s.role == STATION and s.meaning in MEANINGS[STATION] for s in signatures
        )
        for s in signatures:
            if s.valid and s.untrusted:
                self.untrusted.append(f"signature by {s.name!r} (line {s.line}): {s.untrusted}")
        override = header.get("calibration_override") if isinstance(header, dict) else None
        if self.trust is not None and override and ends:
            signed = any(
                s.valid and not s.untrusted and s.meaning == OVERRIDE_SIGNED for s in signatures
            )
            if not signed:
                reason = override.get("reason") if isinstance(override, dict) else override
                self.untrusted.append(
                    f"the calibration override (reason {reason!r}) is not signed by an enrolled "
                    f'test engineer (rig sign --meaning "{OVERRIDE_SIGNED}")'
                )
        if self.problems:
            status = TAMPERED
        elif self.torn or not ends:
            status = INCOMPLETE
        elif self.untrusted:
            status = UNTRUSTED
        elif station_signed:
            status = VALID
        else:
            status = UNSIGNED
        return VerifyReport(
            run_dir=self.run_dir,
            record=self.path,
            status=status,
            problems=self.problems,
            notes=self.notes,
            signatures=signatures,
            verdict=ends[-1].get("verdict") if ends else None,
            ended=bool(ends),
            lines=len(self.raws),
            model=_str_or_none(header.get("model")),
            serial=_str_or_none(header.get("serial")),
            untrusted=self.untrusted,
        )

    # -- lines -------------------------------------------------------------------------------
    def check_tail(self) -> None:
        n = len(self.view.raws) + (self.view.tail != Tail.UNTERMINATED)
        if self.view.tail == Tail.UNTERMINATED:
            # the write got all but its newline: checked like any line, but the run is not over
            self.notes.append(
                f"line {n} (seq {(self.lines[-1] or {}).get('seq')}) lacks its newline: its "
                "write was cut short, so the record is incomplete"
            )
        elif self.view.tail == Tail.TORN:
            self.notes.append(
                f"line {n} is partial ({len(self.view.tail_bytes)} bytes, no newline): a write "
                "cut short by a crash or power loss; it is not part of the record"
            )
        elif self.view.tail == Tail.FOREIGN:
            self.problem(
                f"line {n}: bytes after the last line that are not a record line nor the start "
                "of one (altered or appended)"
            )

    def check_lines(self) -> None:
        noncanonical = set(self.view.noncanonical)
        for i in range(len(self.raws)):
            why = self.view.unreadable.get(i)
            if why is not None:
                self.problem(f"line {i + 1}: {_UNREADABLE[why]}", line=i)
            elif i in noncanonical:
                self.problem(
                    f"{self.label(i)}: not in canonical form (its bytes were edited)", line=i
                )

    def label(self, i: int) -> str:
        obj = self.lines[i] if i < len(self.lines) else None
        if obj is None:
            return f"line {i + 1}"
        kind = obj.get("kind")
        what = str(kind)
        if kind == "measurement":
            what = f"measurement {obj.get('requirement')} {obj.get('name')}"
        elif kind == "requirement":
            what = f"requirement {obj.get('requirement')}"
        elif kind == "event":
            what = f"event {obj.get('event')!r}"
        elif kind == "signature" or ("public_key" in obj and "name" in obj):
            what = f"signature by {obj.get('name')!r}"
        return f"line {i + 1} (seq {obj.get('seq')}, {what})"

    def header(self) -> dict[str, Any]:
        first = self.lines[0] if self.lines else None
        return first if first is not None and first.get("kind") == "header" else {}

    # -- per-field digests -------------------------------------------------------------------
    def check_fields(self) -> None:
        present = [x for x in self.lines if x is not None]
        if not any(FIELDS in x for x in present):
            if present:
                self.notes.append(
                    "the lines carry no per-field digests (written before they were added): "
                    "an alteration is located by line, not by field"
                )
            return
        for i, obj in enumerate(self.lines):
            if obj is None:
                continue
            digests = obj.get(FIELDS)
            if not isinstance(digests, dict):
                self.problem(f"{self.label(i)}: its field digests were removed or mangled", line=i)
                continue
            actual = field_digests(obj)
            for k in sorted(actual.keys() | digests.keys()):
                if k not in digests:
                    self.problem(f"{self.label(i)}: field {k!r} was added", line=i)
                elif k not in actual:
                    self.problem(f"{self.label(i)}: field {k!r} was removed", line=i)
                elif digests[k] != actual[k]:
                    placed = i if k in ("prev", "seq") else None
                    self.problem(
                        f"{self.label(i)}: field {k!r} altered (its value does not match the "
                        "digest written with it)",
                        line=i,
                        placed=placed,
                    )

    # -- order: deleted, inserted, reordered lines ------------------------------------------
    def check_order(self) -> None:
        seqs: list[tuple[int, int]] = []
        for i, obj in enumerate(self.lines):
            if obj is None:
                continue
            s = obj.get("seq")
            if not isinstance(s, int) or isinstance(s, bool) or s < 0:
                self.problem(f"{self.label(i)}: seq is not a count", line=i)
                continue
            seqs.append((i, s))
        if not seqs:
            return
        where: dict[int, list[int]] = {}
        for i, s in seqs:
            where.setdefault(s, []).append(i)
        for s, count in sorted(Counter(s for _, s in seqs).items()):
            if count > 1:
                at = where[s]
                self.problems.append(
                    f"seq {s} appears on lines {', '.join(str(i + 1) for i in at)}: "
                    "a line was duplicated or inserted"
                )
                self.misplaced.update(at)
        # gaps between the seqs present (not a range over them: a forged seq may be huge)
        gaps: list[tuple[int, int]] = []
        last = -1
        for s in sorted(where):
            if s > last + 1:
                gaps.append((last + 1, s - 1))
            last = s
        for first, last in gaps:
            after = next((i for i, s in seqs if s > last), None)
            span = f"seq {first}" if first == last else f"seq {first} to {last}"
            where_text = f"before line {after + 1}" if after is not None else "at the end"
            self.problems.append(f"{span} missing {where_text}: line(s) deleted")
            if after is not None:
                self.misplaced.add(after)
        highest = -1
        prev_i = None
        for i, s in seqs:
            if s < highest and prev_i is not None:
                self.problems.append(
                    f"{self.label(i)} comes after seq {highest}: lines reordered or a line inserted"
                )
                self.misplaced.update((i, prev_i))
            highest = max(highest, s)
            prev_i = i

    # -- the hash chain ----------------------------------------------------------------------
    def check_chain(self) -> None:
        n = len(self.lines)
        index_of = {h: i for i, h in enumerate(self.hashes)}
        breaks = self.view.breaks  # found once, by the reader
        for i in breaks:
            if i == 0:
                if 0 not in self.altered and 0 not in self.misplaced:
                    self.problem(
                        f"{self.label(0)}: prev is not the genesis hash: the first line was "
                        "replaced or a line inserted before it",
                        placed=0,
                    )
                continue
            if i - 1 in self.altered or i in self.misplaced or i - 1 in self.misplaced:
                continue  # already reported: the break follows from it
            obj = self.lines[i] or {}
            j = index_of.get(str(obj.get("prev")))
            if j is not None:
                self.problem(
                    f"{self.label(i)} is chained after line {j + 1}, not after line {i}: "
                    "lines reordered or inserted",
                    placed=i,
                )
            elif i + 1 < n and (i + 1) in breaks and i not in self.altered:
                # its prev and its own hash both fail: one edit of this line explains both
                self.problem(
                    f"{self.label(i)} altered (field unknown: value and digest both changed)",
                    line=i,
                    placed=i,
                )
            else:
                self.problem(
                    f"{self.label(i - 1)} altered (field unknown: value and digest both "
                    f"changed): its hash does not match the prev of line {i + 1}",
                    line=i - 1,
                )

    # -- kinds in their places ---------------------------------------------------------------
    def check_structure(self) -> None:
        kinds = [(i, x.get("kind")) for i, x in enumerate(self.lines) if x is not None]
        if kinds and (kinds[0][0] != 0 or kinds[0][1] != "header"):
            self.problem(
                f"{self.label(0)} is not the header: the header was removed or replaced",
                placed=0,
            )
        headers = [i for i, k in kinds if k == "header"]
        for i in headers[1:]:
            self.problem(f"{self.label(i)}: a second header (inserted)", placed=i)
        ends = [i for i, k in kinds if k == "end"]
        for i in ends[1:]:
            self.problem(f"{self.label(i)}: a second end line (inserted)", placed=i)
        end = ends[0] if ends else None
        for i, k in kinds:
            if end is not None and i > end and k != "signature":
                self.problem(
                    f"{self.label(i)} comes after the end line: only signatures may follow it",
                    placed=i,
                )
            if k == "signature" and (end is None or i < end):
                self.problem(
                    f"{self.label(i)} comes before the end line: a record is signed once it "
                    "has ended",
                    placed=i,
                )

    # -- trace files -------------------------------------------------------------------------
    def check_traces(self) -> None:
        referenced: set[str] = set()
        # a measurement names the trace it was judged on (checked first: the better label for
        # an alteration); a `trace` line names every trace file as stored, also those no
        # measurement refers to
        order = sorted(
            range(len(self.lines)),
            key=lambda k: (self.lines[k] or {}).get("kind") != "measurement",
        )
        for i in order:
            obj = self.lines[i]
            if obj is None or obj.get("kind") not in ("measurement", "trace"):
                continue
            if obj.get("trace") is None:
                continue
            rel, sha = obj.get("trace"), obj.get("trace_sha256")
            what = self.label(i)
            if not isinstance(rel, str) or not _inside(rel):
                self.problem(f"{what}: trace path {rel!r} is not inside the run directory", line=i)
                continue
            if rel in referenced:  # its `trace` line and the measurement on it: check once
                continue
            referenced.add(rel)
            path = self.run_dir / rel
            if not path.is_file():
                self.problem(f"trace file {rel} of {what} is missing", line=i)
                continue
            actual = hashlib.sha256(path.read_bytes()).hexdigest()
            if actual != sha:
                self.problem(
                    f"trace file {rel} of {what} altered: its SHA-256 is {actual[:16]}..., "
                    f"the record says {str(sha)[:16]}...",
                    line=i,
                )
        traces = self.run_dir / "traces"
        if traces.is_dir():
            extra = sorted(
                f"traces/{p.name}"
                for p in traces.iterdir()
                if p.suffix == ".csv" and f"traces/{p.name}" not in referenced
            )
            if extra:
                self.notes.append(
                    f"{len(extra)} trace file(s) named by no measurement, so not evidence: "
                    + ", ".join(extra[:5])
                    + (" ..." if len(extra) > 5 else "")
                )

    # -- signatures --------------------------------------------------------------------------
    def check_signatures(self) -> dict[int, str | None]:
        """Each signature line's fault (None if it verifies), reported as problems. Run before
        the chain check: a moved or altered signature explains the chain breaks around it."""
        faults: dict[int, str | None] = {}
        header = self.header()
        for i, obj in enumerate(self.lines):
            if obj is None or obj.get("kind") != "signature":
                continue
            reason = self.signature_fault(i, obj, header)
            if reason is None:
                why = self.trust_fault(obj)
                if why is not None:
                    self.untrusted_sig[i] = why
            if reason == _LINES_BEFORE_ALTERED:
                # genuine, over lines since altered (or from which it was moved): the chain
                # check names those lines, so the break before this line is not blamed on it
                pass
            elif reason is not None:
                self.problems.append(f"{self.label(i)}: {reason}")
                self.misplaced.add(i)
            faults[i] = reason
        return faults

    def signature_infos(self, faults: dict[int, str | None]) -> list[SignatureInfo]:
        """The signatures as found; one that verifies is still invalid if what it signs, or its
        own line, was altered afterwards."""
        out: list[SignatureInfo] = []
        header = self.header()
        station_id = (header.get("station") or {}).get("id") if header else None
        bad_lines = self.altered | (self.misplaced - faults.keys())
        for i, reason in faults.items():
            obj = self.lines[i] or {}
            if reason is None and i in self.altered:
                reason = "its line was altered after it was signed"
            elif reason is None and any(a < i for a in bad_lines):
                reason = _LINES_BEFORE_ALTERED
            name, role = str(obj.get("name")), str(obj.get("role"))
            if reason is None and role == STATION and station_id and name != str(station_id):
                self.notes.append(
                    f"the station signature is by {name!r}, the header names station {station_id!r}"
                )
            out.append(
                SignatureInfo(
                    line=i + 1,
                    seq=obj.get("seq"),
                    name=name,
                    meaning=str(obj.get("meaning")),
                    role=role,
                    time=str(obj.get("signed_at", obj.get("time"))),
                    fingerprint=str(obj.get("fingerprint")),
                    valid=reason is None,
                    reason=reason or "",
                    untrusted=self.untrusted_sig.get(i, "") if reason is None else "",
                )
            )
        return out

    def trust_fault(self, obj: dict[str, Any]) -> str | None:
        """Why the line's trust anchor does not vouch for a signature that verifies, or None."""
        fp = fingerprint(str(obj.get("public_key")))
        by_keys = self.trusted is not None and fp.removeprefix("SHA256:") in self.trusted
        if self.trust is not None and not by_keys:
            return self.trust.signer_fault(
                name=str(obj.get("name")),
                role=str(obj.get("role")),
                meaning=str(obj.get("meaning")),
                fp=fp,
                signed_at=str(obj.get("signed_at")),
            )
        if self.trusted is not None and not by_keys:
            return "its key is not one of the trusted keys"
        return None

    # -- anchors in the line's database ------------------------------------------------------
    def check_anchors(self) -> None:
        a = self.anchoring
        if a is None:
            return
        if not a.lines:
            if a.same_unit:
                self.problems.append(
                    f"{a.where} holds {a.same_unit} run(s) of this model, serial and start time "
                    "under another header: this record's header was rewritten"
                )
            else:
                self.untrusted.append(
                    f"the run is not anchored in {a.where} (never ingested there)"
                )
            return
        by_seq: dict[int, int] = {}
        for i, obj in enumerate(self.lines):
            seq = obj.get("seq") if obj is not None else None
            if isinstance(seq, int) and not isinstance(seq, bool):
                by_seq.setdefault(seq, i)
        anchored = set()
        for x in a.lines:
            anchored.add(x.seq)
            what = (
                f"the signature by {x.name!r} ({x.meaning}) at seq {x.seq}"
                if x.kind == "signature"
                else f"the end line (seq {x.seq})"
            )
            i = by_seq.get(x.seq)
            if i is None:
                self.problems.append(
                    f"{what}, anchored in {a.where} at {x.anchored}, is missing: deleted"
                )
            elif self.hashes[i] != x.line_sha256:
                self.problems.append(
                    f"{what} differs from the one anchored in {a.where} at {x.anchored}: the "
                    "record was rewritten"
                )
                self.misplaced.add(i)
        if not any(a.where in p for p in self.problems):
            sigs = sum(x.kind == "signature" for x in a.lines)
            self.notes.append(
                f"anchored in {a.where}: the end line and {sigs} signature(s) match the record"
            )
        for obj in self.lines:
            if (
                obj is not None
                and obj.get("kind") == "signature"
                and obj.get("seq") not in anchored
            ):
                self.notes.append(
                    f"the signature by {obj.get('name')!r} at seq {obj.get('seq')} is not "
                    f"anchored in {a.where} (signed without the database)"
                )

    def signature_fault(self, i: int, obj: dict[str, Any], header: dict[str, Any]) -> str | None:
        """Why the signature on line i does not hold, or None if it does."""
        missing = [k for k in SIGNATURE_FIELDS if k not in obj]
        if missing:
            return f"signature fields {missing} missing"
        role, meaning = obj["role"], obj["meaning"]
        if role not in MEANINGS or meaning not in MEANINGS[role]:
            return f"role {role!r} with meaning {meaning!r} is not an allowed signature"
        pub, sig = obj["public_key"], obj["signature"]
        if not (isinstance(pub, str) and _HEX64.fullmatch(pub)):
            return "its public key is malformed"
        if not (isinstance(sig, str) and _HEX128.fullmatch(sig)):
            return "its signature is malformed"
        if obj["fingerprint"] != fingerprint(pub):
            return "its key fingerprint does not match its public key"
        if i == 0 or not header:
            return "the record has no header for it to be bound to"
        common = {
            "name": obj["name"],
            "meaning": meaning,
            "role": role,
            "signed_at": obj["signed_at"],
            "public_key": pub,
        }
        here = manifest(
            chain_head=self.hashes[i - 1],
            signed_lines=i,
            header_sha256=self.hashes[0],
            model=header.get("model"),
            serial=header.get("serial"),
            **common,
        )
        if verify_signature(pub, sig, here):
            return None
        claimed = manifest(
            chain_head=obj["chain_head"],
            signed_lines=obj["signed_lines"],
            header_sha256=obj["header_sha256"],
            model=obj["model"],
            serial=obj["serial"],
            **common,
        )
        if verify_signature(pub, sig, claimed):
            if obj["header_sha256"] != self.hashes[0]:
                return (
                    f"made for another record (model {obj['model']}, serial {obj['serial']}, "
                    f"header {str(obj['header_sha256'])[:12]}...): copied or moved here"
                )
            return _LINES_BEFORE_ALTERED
        return "it does not verify: its signature, name, meaning, role, time or key was altered"


# --------------------------------------------------------------------------- helpers


_UNREADABLE = {
    Unreadable.EMPTY: "empty line (inserted)",
    Unreadable.NOT_JSON: "not JSON (bytes altered)",
    Unreadable.NOT_OBJECT: "not a JSON object (altered)",
}


def _str_or_none(x: Any) -> str | None:
    return None if x is None else str(x)


def _inside(rel: str) -> bool:
    p = PurePosixPath(rel)
    return not p.is_absolute() and ".." not in p.parts and "\\" not in rel


def _trusted_set(keys: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for k in keys:
        k = k.strip().lower().removeprefix("sha256:")
        if _HEX64.fullmatch(k):
            out.add(k)  # a fingerprint ...
            out.add(fingerprint(k).removeprefix("SHA256:"))  # ... or a public key
    return out
