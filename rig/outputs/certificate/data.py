"""What a certificate of conformance says about one run, as plain data read from its record."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ... import __version__
from ...errors import ConfigError, RigError
from ...evidence.format import Kind, Outcome, is_unit_failure, severity
from ...evidence.measurement import Measurement
from ...evidence.reader import read_run
from ...evidence.verify import MEANING_OF, TAMPERED, VerifyReport, verify_view
from ...procedures.check import worst
from ...profiles import Profile, load_profile

PASS, FAIL, INCOMPLETE, INVALID = Outcome.PASS, Outcome.FAIL, Outcome.INCOMPLETE, Outcome.INVALID
NOT_RUN, NOT_CONCLUDED = Outcome.NOT_RUN, Outcome.NOT_CONCLUDED
BANNER = "NOT VALID FOR PRODUCT RELEASE"
SIGNATURE_NOTE = (
    "Each signature is checked here as `rig verify` checks it (its key, this record, its place "
    "in it). Whether the key is the named person's is not: compare the fingerprint with the "
    "signer's registered key."
)

# Header (or end line) fields that, when set, say the run may not release a product. The
# calibration override is the one the rig writes; the others are accepted so that a later
# writer need not touch the certificate to block release.
RELEASE_BLOCKERS = ("calibration_override", "not_valid_for_release", "release_blocked")


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Row:
    """One measurement name of a requirement: its worst value as judged."""

    name: str
    value_text: str
    limit_text: str
    verdict: str
    detail: str


@dataclass(frozen=True)
class Plot:
    """One trace plot of the run (a PNG in its traces/ folder)."""

    file: str
    path: Path
    caption: str


@dataclass(frozen=True)
class RequirementEntry:
    """One requirement of the profile (or only of the record) with what the run found."""

    id: str
    quantity: str
    condition: str
    limit: str
    clause: str
    tests: tuple[str, ...]
    verdict: str
    note: str
    rows: tuple[Row, ...]
    counts: tuple[tuple[str, int], ...]
    plots: tuple[Plot, ...]
    in_profile: bool = True


@dataclass(frozen=True)
class Signature:
    """One signature line of the record, with what `rig verify` said of it."""

    name: str
    role: str
    meaning: str
    time: str
    fingerprint: str
    algorithm: str = ""
    signs: str = ""
    verified: bool | None = None  # None: the verifier did not report on this line
    check: str = ""


@dataclass
class Certificate:
    """Everything the certificate shows; the renderers only lay it out."""

    model: str
    serial: str
    description: str
    verdict: str
    verdict_detail: str
    release_blockers: list[str]
    warnings: list[str]
    identity: list[tuple[str, str]]
    station: list[tuple[str, str]]
    instruments: list[dict[str, str]]
    requirements: list[RequirementEntry]
    other_plots: list[Plot]
    signatures: list[Signature]
    record_sha256: str
    record_lines: int
    generated: str
    rig_version: str = __version__
    events: list[str] = field(default_factory=list)

    @property
    def valid_for_release(self) -> bool:
        """False when the banner must be shown."""
        return not self.release_blockers

    @property
    def banner_text(self) -> str:
        """The reasons behind the banner, as one sentence."""
        return "; ".join(self.release_blockers)


def verdict_colour(verdict: str) -> str:
    """The colour a verdict is shown in (both renderers)."""
    if verdict == PASS:
        return "#1b7a35"
    if is_unit_failure(verdict) or verdict == INVALID:
        return "#b3001b"
    return "#a35a00"


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class _Run:
    """The parts of one run record that the certificate shows."""

    directory: Path
    header: dict[str, Any]
    end: dict[str, Any] | None
    measurements: list[Measurement]
    conclusions: list[dict[str, Any]]  # the "requirement" lines, in record order
    events: list[dict[str, Any]]
    signatures: list[dict[str, Any]]
    lines: int  # whole lines read (a torn last line is not counted)
    sha256: str  # of the record file as it is
    check: VerifyReport  # what `rig verify` says of the record and its trace files
    attempts: tuple[int, ...] = ()  # the --retest attempt of each measurement (1 if none)


def _read_run(run: Path) -> _Run:
    """Read a run's record through the one reader: the one place this package reads it.

    Raises ConfigError when there is no record, or no header (no model or serial to certify).
    A torn last line is left out; what came before it is still evidence (the check reports it).
    """
    view = read_run(run)
    if view.header is None:
        raise ConfigError(f"{view.path}: no header line, so no model or serial to certify")
    return _Run(
        directory=view.directory,
        header=view.header,
        end=view.end,
        measurements=view.measurements,
        attempts=tuple(_attempt_of(x) for x in view.of_kind(Kind.MEASUREMENT)),
        conclusions=view.of_kind(Kind.REQUIREMENT),
        events=view.events,
        signatures=view.signatures,
        lines=len(view.entries),
        sha256=hashlib.sha256(view.data).hexdigest(),
        # the same check as `rig verify`: chain, field digests, order, trace files, signatures
        check=verify_view(view),
    )


# --------------------------------------------------------------------------- the certificate


def build_certificate(run_dir: Path, *, profile: Profile | None = None) -> Certificate:
    """Read a run directory's record (and the profile, for the requirement texts).

    `run_dir` may also be the run's record.jsonl. Raises ConfigError when there is no record.
    """
    run = _read_run(run_dir)
    header, end = run.header, run.end
    model = str(header.get("model", "UNKNOWN"))
    serial = str(header.get("serial", "UNKNOWN"))
    warnings: list[str] = []
    blockers: list[str] = []

    if profile is None:
        try:
            profile = load_profile(model)
        except RigError as e:
            warnings.append(
                f"profile of {model} not loaded ({e}): requirement texts from the record"
            )
    if profile is not None:
        for key, ours in (
            ("profile_sha256", profile.sha256),
            ("requirements_sha256", profile.requirements_sha256),
        ):
            theirs = header.get(key)
            if theirs and theirs != ours:
                warnings.append(
                    f"{key} of the run ({_short(theirs)}) differs from the profile used for "
                    f"the requirement texts here ({_short(ours)}); limits and verdicts are "
                    "those of the record"
                )

    report = run.check
    tampered = report.status == TAMPERED
    if tampered:
        blockers.append(
            "record or trace files altered after they were written ("
            + "; ".join(report.problems[:3])
            + (f"; {len(report.problems) - 3} more" if len(report.problems) > 3 else "")
            + ")"
        )
    blockers += _release_blockers(header, end)
    if end is None:
        blockers.append("run incomplete: the record has no end line")

    plots = _plots(run)
    entries = _entries(run, profile, plots)
    shown = {p.file for e in entries for p in e.plots}
    other = [p for p in plots.values() if p.file not in shown]

    verdict, detail = _overall(end, entries, tampered)
    # the plugin's safe-state guard writes "... NOT confirmed" when the table may be unsafe:
    # that belongs on the first page, whatever the verdicts say
    events = [
        f"{x.get('time', '')}: {x.get('event')}" + (f" ({x['error']})" if x.get("error") else "")
        for x in run.events
        if "not confirmed" in str(x.get("event", "")).lower()
    ]
    table = header.get("table") if isinstance(header.get("table"), dict) else {}
    if table and "serial" in table and str(table["serial"]) != serial:
        warnings.append(
            f"the serial as scanned ({serial}) is not the serial the table reports "
            f"({table['serial']})"
        )
    return Certificate(
        model=model,
        serial=serial,
        description=profile.model.description if profile is not None else "",
        verdict=verdict,
        verdict_detail=detail,
        release_blockers=blockers,
        warnings=warnings,
        identity=[*_identity(header, end), ("Record check (rig verify)", _check_text(report))],
        station=_station(header),
        instruments=_instruments(header),
        requirements=entries,
        other_plots=other,
        signatures=[_signature(x, report) for x in run.signatures],
        record_sha256=run.sha256,
        record_lines=run.lines,
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        events=events,
    )


def _entries(run: _Run, profile: Profile | None, plots: dict[str, Plot]) -> list[RequirementEntry]:
    """The profile's requirements in its order, then those only the record names."""
    concluded: dict[str, list[dict[str, Any]]] = {}
    for x in run.conclusions:
        concluded.setdefault(str(x.get("requirement")), []).append(x)
    # --retest: a requirement is shown with its last attempt's measurements (its verdict's)
    last = {rid: max(_attempt_of(c) for c in cs) for rid, cs in concluded.items()}
    attempts = run.attempts or (1,) * len(run.measurements)
    by_req: dict[str, list[Measurement]] = {}
    for m, n in zip(run.measurements, attempts, strict=False):
        if n == last.get(m.requirement, n):
            by_req.setdefault(m.requirement, []).append(m)

    entries: list[RequirementEntry] = []
    profile_reqs = list(profile.requirements) if profile is not None else []
    known = {r.id for r in profile_reqs}
    for req in profile_reqs:
        entries.append(
            _entry(
                req.id,
                req.quantity,
                req.condition,
                req.limit,
                req.clause,
                req.test,
                concluded.get(req.id, []),
                by_req.get(req.id, []),
                plots,
            )
        )
    extra = [r for r in [*concluded, *by_req] if r not in known]
    for rid in dict.fromkeys(extra):
        ms = by_req.get(rid, [])
        entries.append(
            _entry(
                rid,
                "(not in the profile)" if profile is not None else "",
                "",
                "",
                ms[0].clause if ms else "",
                "",
                concluded.get(rid, []),
                ms,
                plots,
                in_profile=profile is None,
            )
        )
    return entries


def _short(h: object) -> str:
    return str(h)[:12]


def _release_blockers(header: dict[str, Any], end: dict[str, Any] | None) -> list[str]:
    out: list[str] = []
    overridden = False
    for where in (header, end or {}):
        overridden |= _set(where.get("calibration_override"))
        for key in RELEASE_BLOCKERS:
            value = where.get(key)
            if not _set(value):
                continue
            if key == "not_valid_for_release" and _set(where.get("calibration_override")):
                # the rig writes this beside the override, for the same cause: the override's
                # own reason (and expired instruments) says more
                continue
            out.append(_blocker(key.replace("_", " "), value))
        if where.get("valid_for_release") is False:
            out.append("run marked not valid for release")
    station = header.get("station") if isinstance(header.get("station"), dict) else {}
    if station.get("emulated"):
        emu = header.get("emulator") if isinstance(header.get("emulator"), dict) else {}
        defects = ", ".join(map(str, emu.get("defects") or [])) or "none"
        out.append(f"emulated bench, no real unit tested (seeded defects: {defects})")
    started = _day(header.get("started") or header.get("time"))
    instruments = header.get("instruments") if isinstance(header.get("instruments"), dict) else {}
    for role, inst in instruments.items():
        if not isinstance(inst, dict):
            continue
        # an override may be written per instrument rather than for the whole run
        for key in RELEASE_BLOCKERS:
            if _set(inst.get(key)):
                out.append(_blocker(f"{role} {key.replace('_', ' ')}", inst[key]))
        due = _day(inst.get("calibration_due"))
        # an override names its expired instruments already
        if started and due and due < started and not overridden:
            out.append(f"{role} calibration was due {due}, before the run ({started})")
    return list(dict.fromkeys(out))


def _set(value: Any) -> bool:
    return value not in (None, False, "", {}, [])


def _blocker(label: str, value: Any) -> str:
    reason = _reason(value)
    # a writer may have put the banner's own words in front of its reason
    reason = re.sub(rf"^\s*{BANNER}\s*[:-]?\s*", "", reason, flags=re.IGNORECASE)
    return f"{label}: {reason}" if reason else label


def _reason(value: Any) -> str:
    if value is True:
        return ""
    if isinstance(value, dict):
        for key in ("reason", "note", "why", "text"):
            if value.get(key):
                rest = [f"{k} {_reason(v)}" for k, v in value.items() if k != key and _set(v)]
                return f"{value[key]}" + (f" ({'; '.join(rest)})" if rest else "")
        return "; ".join(f"{k} {_reason(v)}" for k, v in value.items() if _set(v))
    if isinstance(value, list):
        return ", ".join(_reason(v) for v in value)
    return str(value)


def _day(text: Any) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(str(text)[:10])
    except ValueError:
        return None


def _natural(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _plots(run: _Run) -> dict[str, Plot]:
    """Every PNG of the run, in the order their traces were taken (then by name)."""
    pngs = {p.name: p for p in (run.directory / "traces").glob("*.png")}
    digests: dict[str, str] = {}
    order: list[str] = []
    for m in run.measurements:
        if m.trace:
            name = Path(str(m.trace)).with_suffix(".png").name
            digests.setdefault(name, str(m.trace_sha256 or ""))
            if name not in order:
                order.append(name)
    names = [n for n in order if n in pngs] + sorted(
        (n for n in pngs if n not in order), key=_natural
    )
    out: dict[str, Plot] = {}
    for n in names:
        csv = f"traces/{Path(n).stem}.csv"
        caption = n
        if digests.get(n):
            caption += f" (data {csv}, SHA-256 {digests[n]})"
        out[n] = Plot(file=n, path=pngs[n], caption=caption)
    return out


def _entry(
    rid: str,
    quantity: str,
    condition: str,
    limit: str,
    clause: str,
    body: str,
    concluded: list[dict[str, Any]],
    ms: list[Measurement],
    plots: dict[str, Plot],
    *,
    in_profile: bool = True,
) -> RequirementEntry:
    earlier: list[dict[str, Any]] = []
    if concluded:
        # --retest: the last attempt's conclusion counts; the earlier ones are shown in the note
        final = max(_attempt_of(c) for c in concluded)
        earlier = [c for c in concluded if _attempt_of(c) != final]
        concluded = [c for c in concluded if _attempt_of(c) == final]
        verdict = max((str(c.get("verdict", FAIL)) for c in concluded), key=severity)
    else:
        # measured but never concluded: the test was cut short, its verdict is not known
        verdict = NOT_CONCLUDED if ms else NOT_RUN
    note = "; ".join(str(c["note"]) for c in concluded if c.get("note"))
    if earlier:
        tries = "; ".join(
            f"attempt {_attempt_of(c)}: {c.get('verdict')}"
            + (f" ({c.get('note')})" if c.get("note") else "")
            for c in earlier
        )
        note = f"{tries}; attempt {final}: {verdict}" + (f" ({note})" if note else "")
    tests = tuple(dict.fromkeys(str(c["test"]) for c in concluded if c.get("test")))
    if not tests and body:
        tests = (f"{body} (suite body; node id not recorded)",)
    counts: dict[str, int] = {}
    for m in ms:
        counts[m.name] = counts.get(m.name, 0) + 1
    rows = tuple(_row(m, counts[m.name]) for m in worst(ms).values())
    own = tuple(
        p for name, p in plots.items() if name == f"{rid}.png" or name.startswith(f"{rid}-")
    )
    return RequirementEntry(
        id=rid,
        quantity=quantity,
        condition=condition,
        limit=limit,
        clause=clause,
        tests=tests,
        verdict=verdict,
        note=note,
        rows=rows,
        counts=tuple(counts.items()),
        plots=own,
        in_profile=in_profile,
    )


def _row(m: Measurement, n: int) -> Row:
    bits = []
    if m.bindings:
        bits.append(", ".join(f"{k} = {_g(v)}" for k, v in m.bindings.items()))
    if m.repeat is not None:
        bits.append(f"run {m.repeat + 1}")
    if n > 1:
        bits.append(f"worst of {n}")
    if m.note:
        bits.append(m.note)
    return Row(m.name, m.value_text(), m.limit_text(), m.verdict, "; ".join(bits))


def _g(v: Any) -> str:
    return f"{v:g}" if isinstance(v, int | float) and not isinstance(v, bool) else str(v)


def _attempt_of(line: dict[str, Any]) -> int:
    n = line.get("attempt", 1)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def _overall(
    end: dict[str, Any] | None, entries: list[RequirementEntry], tampered: bool
) -> tuple[str, str]:
    if end is None:
        return INCOMPLETE, (
            "The run did not reach its end line: it stopped early. This unit is not certified."
        )
    if end.get("verdict") == Outcome.INTERRUPTED:
        how = f" ({end.get('interrupted')})" if end.get("interrupted") else ""
        return Outcome.INTERRUPTED, (
            f"The run was interrupted{how}; the table was made safe. This unit is not certified."
        )
    if end.get("verdict") == INCOMPLETE or end.get("complete") is False:
        return INCOMPLETE, "The run was interrupted. This unit is not certified."
    if tampered:
        return INVALID, (
            "The record's hash chain does not verify: it was altered or damaged after the run, "
            "so its verdicts are not evidence."
        )
    bad = [e.id for e in entries if e.verdict != PASS and e.in_profile]
    unsafe = end.get("unsafe")
    if end.get("verdict") == PASS and not bad and not unsafe:
        return PASS, "Every requirement of the profile passed."
    parts = []
    # ERROR is about the test, never the unit: listed apart from the unit's failures
    failed = [e.id for e in entries if e.in_profile and is_unit_failure(e.verdict)]
    errors = [e.id for e in entries if e.in_profile and e.verdict == Outcome.ERROR]
    not_run = [e.id for e in entries if e.in_profile and e.verdict in (NOT_RUN, NOT_CONCLUDED)]
    if failed:
        parts.append("failed: " + ", ".join(failed))
    if errors:
        parts.append(
            "could not be judged (ERROR, a rig or bench fault; retest): " + ", ".join(errors)
        )
    if not_run:
        parts.append("not run: " + ", ".join(not_run))
    if unsafe:
        parts.append(f"table not confirmed safe: {unsafe}")
    if not parts:
        parts.append(f"the record's end line says {end.get('verdict')}")
    text = "; ".join(parts)
    text = text[0].upper() + text[1:] + "."
    said = end.get("verdict")
    if said in (Outcome.RETEST, Outcome.PARTIAL) and not failed and not unsafe:
        return str(said), f"{text} This unit is not certified."
    return FAIL, text


def _text(v: Any) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return ", ".join(map(str, v)) or "none"
    return str(v)


def _identity(header: dict[str, Any], end: dict[str, Any] | None) -> list[tuple[str, str]]:
    table = header.get("table") if isinstance(header.get("table"), dict) else {}
    rows = [
        ("Model", _text(header.get("model"))),
        ("Serial (as scanned)", _text(header.get("serial"))),
    ]
    if "error" in table:
        rows.append(("Table identity", f"not read: {table['error']}"))
    elif table:
        rows += [
            ("Table serial (PLC)", _text(table.get("serial"))),
            ("Table firmware (PLC)", _firmware(table.get("firmware"))),
            ("Table ICD version (PLC)", _text(table.get("icd_version"))),
        ]
    else:
        rows.append(("Table identity", "not recorded"))
    rows += [
        ("Operator", _text(header.get("operator")) if header.get("operator") else "not given"),
        ("Started", _text(header.get("started") or header.get("time"))),
        ("Ended", _text(end.get("time")) if end else "never (no end line)"),
        ("Rig version", _text(header.get("rig_version"))),
        ("Source revision", _text(header.get("source_revision"))),
        ("Requirements SHA-256", _text(header.get("requirements_sha256"))),
        ("Profile SHA-256", _text(header.get("profile_sha256"))),
    ]
    station = header.get("station") if isinstance(header.get("station"), dict) else {}
    emu = header.get("emulator") if isinstance(header.get("emulator"), dict) else {}
    if station.get("emulated") or emu:
        rows.append(
            (
                "Emulated bench",
                f"yes, time scale {_text(emu.get('scale'))}, seeded defects: "
                f"{', '.join(map(str, emu.get('defects') or [])) or 'none'}",
            )
        )
    else:
        rows.append(("Emulated bench", "no"))
    return rows


def _firmware(v: Any) -> str:
    # the ICD keeps FIRMWARE raw as major x 100 + minor, so 210 reads as 2.10
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v} (v{v // 100}.{v % 100:02d})"
    return _text(v)


def _station(header: dict[str, Any]) -> list[tuple[str, str]]:
    station = header.get("station") if isinstance(header.get("station"), dict) else {}
    if not station:
        return [("Station", "not recorded")]
    return [
        ("Station", _text(station.get("id"))),
        ("Station file", _text(station.get("source"))),
    ]


def _instruments(header: dict[str, Any]) -> list[dict[str, str]]:
    insts = header.get("instruments") if isinstance(header.get("instruments"), dict) else {}
    out = []
    for role, inst in insts.items():
        inst = inst if isinstance(inst, dict) else {"error": str(inst)}
        out.append(
            {
                "role": str(role),
                "idn": _text(inst.get("idn")) if "error" not in inst else f"error: {inst['error']}",
                "calibration_date": _text(inst.get("calibration_date")),
                "calibration_due": _text(inst.get("calibration_due")),
            }
        )
    return out


def _first(x: dict[str, Any], *keys: str) -> str:
    for k in keys:
        if x.get(k) not in (None, ""):
            return str(x[k])
    return ""


def _signature(x: dict[str, Any], report: VerifyReport) -> Signature:
    fingerprint = _first(x, "fingerprint", "key_fingerprint", "public_key_fingerprint", "key_id")
    if not fingerprint and x.get("public_key"):
        # as rig.evidence.signature computes it: over the raw key (hex), else the text as recorded
        pub = str(x["public_key"])
        try:
            raw = bytes.fromhex(pub)
        except ValueError:
            raw = pub.encode()
        fingerprint = f"SHA256:{hashlib.sha256(raw).hexdigest()} (computed here)"
    signs = ""
    if isinstance(x.get("signed_lines"), int):
        signs = f"record lines 1 to {x['signed_lines']}"
        if x.get("chain_head"):
            signs += f" (chain head {x['chain_head']})"
    info = next((i for i in report.signatures if i.seq == x.get("seq")), None)
    if info is None:
        verified, check = None, "not checked"
    elif info.valid:
        verified, check = True, "verifies against its public key, over this record"
    else:
        verified, check = False, f"DOES NOT VERIFY: {info.reason or 'invalid'}"
    return Signature(
        name=_first(x, "name", "printed_name", "signer", "signed_by") or "(no name recorded)",
        role=_first(x, "role", "title") or "-",
        meaning=_first(x, "meaning", "reason", "statement") or "-",
        time=_first(x, "signed_at", "time") or "-",
        fingerprint=fingerprint or "(no key recorded)",
        algorithm=_first(x, "algorithm", "alg", "key_type"),
        signs=signs,
        verified=verified,
        check=check,
    )


def _check_text(report: VerifyReport) -> str:
    text = f"{report.status}: {MEANING_OF.get(report.status, '')}"
    if report.problems and report.status != TAMPERED:
        text += " (" + "; ".join(report.problems[:2]) + ")"
    return text
