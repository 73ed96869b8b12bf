"""Certificate of conformance of one run (self-contained HTML and PDF), built from its record."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from . import __version__
from .check import worst
from .errors import ConfigError, RigError
from .evidence.format import Outcome, resolve_run
from .evidence.measurement import Measurement
from .evidence.reader import read_run
from .evidence.verify import MEANING_OF, TAMPERED, VerifyReport, verify_view
from .profiles import Profile, load_profile

HTML_NAME = "certificate.html"
PDF_NAME = "certificate.pdf"
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

# Order of badness when one requirement was concluded more than once.
_RANK = {PASS: 0, NOT_RUN: 1, NOT_CONCLUDED: 2, FAIL: 3, Outcome.ERROR: 4}


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
    """One trace plot of the run."""

    file: str
    path: Path
    caption: str

    def data_uri(self) -> str:
        """The PNG inline, so that the HTML needs no other file."""
        return "data:image/png;base64," + base64.b64encode(self.path.read_bytes()).decode()


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
    """One signature line of the record, as recorded (not verified here)."""

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


# --------------------------------------------------------------------------- from the record


def build_certificate(run_dir: Path, *, profile: Profile | None = None) -> Certificate:
    """Read a run directory's record (and the profile, for the requirement texts)."""
    # raises NoRecordError (a ConfigError) when there is no record; a torn last line is left
    # out (what came before it is still evidence, and the check below reports the tear)
    run = read_run(run_dir)
    run_dir, path, raw, lines = run.directory, run.path, run.data, run.entries
    header = next((x for x in lines if x.get("kind") == "header"), None)
    if header is None:
        raise ConfigError(f"{path}: no header line, so no model or serial to certify")
    model = str(header.get("model", "UNKNOWN"))
    serial = str(header.get("serial", "UNKNOWN"))
    ends = [x for x in lines if x.get("kind") == "end"]
    # signatures are appended after the end line, so the end is not necessarily the last line
    end = ends[-1] if ends else None
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

    # the same check as `rig verify`: chain, field digests, order, trace files, signatures
    report = verify_view(run)
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

    measurements = run.measurements
    by_req: dict[str, list[Measurement]] = {}
    for m in measurements:
        by_req.setdefault(m.requirement, []).append(m)
    concluded: dict[str, list[dict[str, Any]]] = {}
    for x in lines:
        if x.get("kind") == "requirement":
            concluded.setdefault(str(x.get("requirement")), []).append(x)

    plots = _plots(run_dir, lines)
    entries: list[RequirementEntry] = []
    profile_reqs = list(profile.requirements) if profile is not None else []
    known = {r.id for r in profile_reqs}
    extra = [r for r in [*concluded, *by_req] if r not in known]
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
    shown = {p.file for e in entries for p in e.plots}
    other = [p for p in plots.values() if p.file not in shown]

    verdict, detail = _overall(end, entries, tampered)
    # the plugin's safe-state guard writes "... NOT confirmed" when the table may be unsafe:
    # that belongs on the first page, whatever the verdicts say
    events = [
        f"{x.get('time', '')}: {x.get('event')}" + (f" ({x['error']})" if x.get("error") else "")
        for x in lines
        if x.get("kind") == "event" and "not confirmed" in str(x.get("event", "")).lower()
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
        signatures=[_signature(x, report) for x in lines if x.get("kind") == "signature"],
        record_sha256=hashlib.sha256(raw).hexdigest(),
        record_lines=len(lines),
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        events=events,
    )


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


def _plots(run_dir: Path, lines: list[dict[str, Any]]) -> dict[str, Plot]:
    """Every PNG of the run, in the order their traces were taken (then by name)."""
    pngs = {p.name: p for p in (run_dir / "traces").glob("*.png")}
    digests: dict[str, str] = {}
    order: list[str] = []
    for x in lines:
        trace = x.get("trace") if x.get("kind") == "measurement" else None
        if trace:
            name = Path(str(trace)).with_suffix(".png").name
            digests.setdefault(name, str(x.get("trace_sha256") or ""))
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
    if concluded:
        verdict = max((str(c.get("verdict", FAIL)) for c in concluded), key=_rank)
    else:
        # measured but never concluded: the test was cut short, its verdict is not known
        verdict = NOT_CONCLUDED if ms else NOT_RUN
    note = "; ".join(str(c["note"]) for c in concluded if c.get("note"))
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


def _rank(verdict: str) -> int:
    return _RANK.get(verdict, _RANK[FAIL])


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


def _overall(
    end: dict[str, Any] | None, entries: list[RequirementEntry], tampered: bool
) -> tuple[str, str]:
    if end is None:
        return INCOMPLETE, (
            "The run did not reach its end line: it stopped early. This unit is not certified."
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
    failed = [e.id for e in entries if e.in_profile and _rank(e.verdict) >= _rank(FAIL)]
    not_run = [e.id for e in entries if e.in_profile and e.verdict in (NOT_RUN, NOT_CONCLUDED)]
    if failed:
        parts.append("failed: " + ", ".join(failed))
    if not_run:
        parts.append("not run: " + ", ".join(not_run))
    if unsafe:
        parts.append(f"table not confirmed safe: {unsafe}")
    if not parts:
        parts.append(f"the record's end line says {end.get('verdict')}")
    text = "; ".join(parts)
    return FAIL, text[0].upper() + text[1:] + "."


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


# --------------------------------------------------------------------------- outputs


def write_certificate(run_dir: Path, *, profile: Profile | None = None) -> tuple[Path, Path]:
    """Write certificate.html and certificate.pdf into the run directory; their paths.

    `run_dir` may also be the run's record.jsonl. Raises ConfigError when there is no record.
    """
    run_dir, _ = resolve_run(run_dir)
    cert = build_certificate(run_dir, profile=profile)
    html_path = run_dir / HTML_NAME
    pdf_path = run_dir / PDF_NAME
    _write_atomic(html_path, render_html(cert).encode())
    _write_atomic(pdf_path, render_pdf(cert))
    return html_path, pdf_path


def _write_atomic(path: Path, data: bytes) -> None:
    # a reader never sees half a certificate
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def render_html(cert: Certificate) -> str:
    """The certificate as one self-contained HTML page (images inline)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("certificate.html.j2").render(
        cert=cert, colour=verdict_colour, signature_note=SIGNATURE_NOTE
    )


def verdict_colour(verdict: str) -> str:
    """The colour a verdict is shown in."""
    if verdict == PASS:
        return "#1b7a35"
    if _rank(verdict) >= _rank(FAIL) or verdict == INVALID:
        return "#b3001b"
    return "#a35a00"


# ---- PDF


def _fonts() -> tuple[str, str, str, str]:
    """Regular, bold, italic and mono font names: DejaVu (embedded, full Unicode) if found."""
    from reportlab.lib.fonts import addMapping
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    names = ("Cert", "Cert-Bold", "Cert-Italic", "Cert-Mono")
    if names[0] in pdfmetrics.getRegisteredFontNames():
        return names
    try:
        import matplotlib

        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        files = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf")
        for name, file in zip(names, (*files, "DejaVuSansMono.ttf"), strict=True):
            pdfmetrics.registerFont(TTFont(name, str(ttf / file)))
    except Exception:
        # the standard fonts cover Latin-1, which is all the profiles use today
        return ("Helvetica", "Helvetica-Bold", "Helvetica-Oblique", "Courier")
    addMapping("Cert", 0, 0, "Cert")
    addMapping("Cert", 1, 0, "Cert-Bold")
    addMapping("Cert", 0, 1, "Cert-Italic")
    addMapping("Cert", 1, 1, "Cert-Bold")
    return names


def render_pdf(cert: Certificate) -> bytes:
    """The certificate as PDF (reportlab platypus; all text is real, extractable text)."""
    return _Pdf(cert).build()


class _Pdf:
    """Lays out one certificate with reportlab platypus."""

    def __init__(self, cert: Certificate) -> None:
        from reportlab.lib import colors
        from reportlab.lib.pagesizes import A4
        from reportlab.lib.units import mm
        from reportlab.lib.utils import simpleSplit

        self.cert = cert
        self.mm = mm
        self.colors = colors
        self.regular, self.bold, self.italic, self.mono = _fonts()
        self.page_w, self.page_h = A4
        self.margin = 16 * mm
        self.width = self.page_w - 2 * self.margin
        self.ink = colors.HexColor("#1a1a1a")
        self.grey = colors.HexColor("#666666")
        self.rule = colors.HexColor("#bbbbbb")
        self.shade = colors.HexColor("#f1f3f5")
        self.red = colors.HexColor("#b3001b")
        st = self.style
        self.s_title = st(fontName=self.bold, fontSize=20, leading=24)
        self.s_sub = st(fontSize=11.5, leading=15, textColor=self.grey)
        self.s_h = st(fontName=self.bold, fontSize=12.5, leading=16, spaceBefore=10, spaceAfter=5)
        self.s_h3 = st(fontName=self.bold, fontSize=10, leading=13, spaceBefore=6, spaceAfter=3)
        self.s_body = st()
        self.s_cell = st(fontSize=7.8, leading=9.6)
        self.s_cellb = st(fontName=self.bold, fontSize=7.8, leading=9.6)
        self.s_small = st(fontSize=6.8, leading=8.4, textColor=self.grey)
        self.s_mono = st(fontName=self.mono, fontSize=6.8, leading=8.6)
        self.s_head = st(fontName=self.bold, fontSize=7.8, leading=9.6, textColor=colors.white)
        self.s_warn = st(fontSize=8.5, leading=11, textColor=colors.HexColor("#7a4a00"))
        self.s_caption = st(fontSize=7, leading=8.8, textColor=self.grey)
        # the banner is drawn on every page: its height sets the top margin
        self.banner_lines = (
            simpleSplit(cert.banner_text, self.regular, 8.5, self.width - 8 * mm)
            if cert.release_blockers
            else []
        )
        self.banner_h = (11 * mm + 10.5 * len(self.banner_lines)) if self.banner_lines else 0.0

    # -- building blocks ------------------------------------------------------------------------
    def style(self, **kw: Any) -> Any:
        """A paragraph style on the certificate's defaults."""
        from reportlab.lib.styles import ParagraphStyle

        base: dict[str, Any] = {"fontName": self.regular, "fontSize": 9, "leading": 11.5}
        base["textColor"] = self.ink
        base.update(kw)
        return ParagraphStyle("cert", **base)

    def p(self, text: str, st: Any = None) -> Any:
        """Plain text (escaped) as a paragraph."""
        from reportlab.platypus import Paragraph

        return Paragraph(escape(text), st or self.s_cell)

    def verdict(self, verdict: str, size: float = 7.8) -> Any:
        """A verdict in its colour."""
        from reportlab.platypus import Paragraph

        c = verdict_colour(verdict)
        return Paragraph(
            f'<font color="{c}"><b>{escape(verdict)}</b></font>',
            self.style(fontName=self.bold, fontSize=size, leading=size * 1.25),
        )

    def heading(self, text: str, room: float = 45.0) -> list[Any]:
        """A section heading, on a new page unless `room` mm are left below it."""
        from reportlab.platypus import CondPageBreak, Paragraph

        return [CondPageBreak(room * self.mm), Paragraph(escape(text), self.s_h)]

    def grid(self, data: list[list[Any]], widths: list[float], *, header: bool = True) -> Any:
        """A ruled table; `widths` are fractions of the text width."""
        from reportlab.platypus import LongTable, TableStyle

        t = LongTable(data, colWidths=[w * self.width for w in widths], repeatRows=int(header))
        cmds: list[tuple[Any, ...]] = [
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ("TOPPADDING", (0, 0), (-1, -1), 2),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
            ("LINEBELOW", (0, 0), (-1, -1), 0.25, self.rule),
        ]
        if header:
            cmds.append(("BACKGROUND", (0, 0), (-1, 0), self.colors.HexColor("#2b3a4a")))
        t.setStyle(TableStyle(cmds))
        return t

    def pairs(self, rows: list[tuple[str, str]]) -> Any:
        """A two-column key/value table."""
        from reportlab.platypus import TableStyle

        t = self.grid(
            [[self.p(k, self.s_cellb), self.p(v)] for k, v in rows], [0.3, 0.7], header=False
        )
        t.setStyle(TableStyle([("BACKGROUND", (0, 0), (0, -1), self.shade)]))
        return t

    def head_row(self, *titles: str) -> list[Any]:
        """The header row of a grid."""
        return [self.p(t, self.s_head) for t in titles]

    # -- sections -------------------------------------------------------------------------------
    def title(self) -> list[Any]:
        """Title, unit, overall verdict, and why the run may not release a product."""
        from reportlab.platypus import Paragraph, Spacer, Table, TableStyle

        cert, mm = self.cert, self.mm
        out: list[Any] = [Paragraph("Certificate of conformance", self.s_title), Spacer(1, 2 * mm)]
        out.append(self.p(f"Model {cert.model}, serial {cert.serial}", self.s_sub))
        if cert.description:
            out.append(self.p(cert.description, self.s_caption))
        out.append(Spacer(1, 4 * mm))
        c = self.colors.HexColor(verdict_colour(cert.verdict))
        big = self.style(fontName=self.bold, fontSize=22, leading=27, textColor=c)
        box = Table(
            [
                [Paragraph(f"Overall verdict: {escape(cert.verdict)}", big)],
                [self.p(cert.verdict_detail, self.style(fontSize=9.5, leading=12, textColor=c))],
            ],
            colWidths=[self.width],
        )
        box.setStyle(
            TableStyle(
                [
                    ("BOX", (0, 0), (-1, -1), 2, c),
                    ("LEFTPADDING", (0, 0), (-1, -1), 8),
                    ("TOPPADDING", (0, 0), (-1, 0), 7),
                    ("BOTTOMPADDING", (0, -1), (-1, -1), 7),
                ]
            )
        )
        out.append(box)
        if cert.release_blockers:
            out.append(Spacer(1, 3 * mm))
            out.append(
                Paragraph(
                    f"<b>{BANNER}</b>: " + escape(cert.banner_text),
                    self.style(fontSize=9.5, leading=12, textColor=self.red),
                )
            )
        out += [self.p(e, self.s_warn) for e in cert.events]
        out += [self.p("Note: " + w, self.s_warn) for w in cert.warnings]
        return out

    def identity(self) -> list[Any]:
        """Unit identity, station and instruments."""
        from reportlab.platypus import Spacer

        cert = self.cert
        out = [*self.heading("1. Unit identity"), self.pairs(cert.identity)]
        out += [*self.heading("2. Station and instruments"), self.pairs(cert.station)]
        out.append(Spacer(1, 2 * self.mm))
        if not cert.instruments:
            return [*out, self.p("No instruments recorded.", self.s_body)]
        data = [self.head_row("Role", "Identity (*IDN?)", "Calibrated", "Due")]
        data += [
            [
                self.p(i["role"], self.s_cellb),
                self.p(i["idn"]),
                self.p(i["calibration_date"]),
                self.p(i["calibration_due"]),
            ]
            for i in cert.instruments
        ]
        return [*out, self.grid(data, [0.18, 0.52, 0.15, 0.15])]

    def requirements(self) -> list[Any]:
        """One row per measurement name (its worst value), grouped by requirement."""
        from reportlab.platypus import TableStyle

        data = [
            self.head_row(
                "Requirement", "Quantity and limit", "Measured (worst)", "Limit applied", "Verdict"
            )
        ]
        starts: list[int] = []
        for e in self.cert.requirements:
            starts.append(len(data))
            qty = [self.p(e.quantity, self.s_cellb)]
            if e.limit:
                qty.append(self.p(e.limit, self.s_small))
            if not e.rows:
                measured = [self.p("not measured" if e.verdict != NOT_RUN else "-")]
                if e.note:
                    measured.append(self.p(e.note, self.s_small))
                # nothing was judged, so no limit was applied (the profile's words are left)
                limit = self.p("-")
                data.append(
                    [self.p(e.id, self.s_cellb), qty, measured, limit, self.verdict(e.verdict)]
                )
                continue
            for i, r in enumerate(e.rows):
                measured = [self.p(f"{r.name} = {r.value_text}")]
                if r.detail:
                    measured.append(self.p(r.detail, self.s_small))
                if i == len(e.rows) - 1 and e.note:
                    measured.append(self.p(e.note, self.s_small))
                if i == 0:
                    v: Any = self.verdict(e.verdict)
                else:
                    # as on the console: later rows only speak up when they failed
                    v = self.verdict(r.verdict, 7) if r.verdict != PASS else ""
                data.append(
                    [
                        self.p(e.id, self.s_cellb) if i == 0 else "",
                        qty if i == 0 else "",
                        measured,
                        self.p(r.limit_text),
                        v,
                    ]
                )
        t = self.grid(data, [0.13, 0.27, 0.29, 0.19, 0.12])
        cmds: list[tuple[Any, ...]] = []
        for n, s in enumerate(starts):
            stop = starts[n + 1] - 1 if n + 1 < len(starts) else len(data) - 1
            cmds.append(("LINEABOVE", (0, s), (-1, s), 0.8, self.colors.HexColor("#555555")))
            # a requirement's rows stay on one page, so no value is read without its ID
            cmds.append(("NOSPLIT", (0, s), (-1, stop)))
            if n % 2:
                cmds.append(("BACKGROUND", (0, s), (-1, stop), self.shade))
        t.setStyle(TableStyle(cmds))
        return [*self.heading("3. Requirements"), t]

    def traceability(self) -> list[Any]:
        """Requirement -> clause -> test -> measurements -> verdict."""
        from reportlab.platypus import Paragraph, TableStyle

        data = [self.head_row("Requirement", "Standard clause", "Measurement(s)", "Verdict")]
        cmds: list[tuple[Any, ...]] = []
        for n, e in enumerate(self.cert.requirements):
            first = len(data)
            data.append(
                [
                    self.p(e.id, self.s_cellb),
                    [self.p(e.clause or "-")]
                    + ([self.p(f"Condition: {e.condition}", self.s_small)] if e.condition else []),
                    self.p(", ".join(f"{n} ({k})" for n, k in e.counts) or "-"),
                    self.verdict(e.verdict),
                ]
            )
            # the test's node id gets a row of its own, as wide as the table allows, so that it
            # reads (and copies) as one line
            tests = [
                Paragraph(
                    f'<font name="{self.regular}" color="#666666">Test: </font>{escape(t)}',
                    self.s_mono,
                )
                for t in e.tests or ("-",)
            ]
            data.append(["", tests, "", ""])
            cmds += [
                ("SPAN", (1, first + 1), (2, first + 1)),
                ("LINEBELOW", (0, first), (-1, first), 0, self.colors.white),
                ("NOSPLIT", (0, first), (-1, first + 1)),
            ]
            if n % 2:
                cmds.append(("BACKGROUND", (0, first), (-1, first + 1), self.shade))
        t = self.grid(data, [0.13, 0.42, 0.33, 0.12])
        t.setStyle(TableStyle(cmds))
        return [*self.heading("4. Traceability"), t]

    def image(self, plot: Plot) -> list[Any]:
        """One plot and its caption (for one KeepTogether: those do not nest)."""
        from reportlab.lib.utils import ImageReader
        from reportlab.platypus import Image, Spacer

        # 0.8 of the width fits three plots with captions on a page, their text still legible
        w = 0.8 * self.width
        iw, ih = ImageReader(str(plot.path)).getSize()
        return [
            Image(str(plot.path), width=w, height=w * ih / iw),
            self.p(plot.caption, self.s_caption),
            Spacer(1, 3 * self.mm),
        ]

    def plots(self) -> list[Any]:
        """Every trace plot, under its requirement."""
        from reportlab.platypus import KeepTogether, Paragraph

        out = self.heading("5. Plots", room=100)
        groups = [(f"{e.id} {e.quantity}", e.plots) for e in self.cert.requirements if e.plots]
        if self.cert.other_plots:
            groups.append(("Other traces", tuple(self.cert.other_plots)))
        for title, plots in groups:
            first, *rest = plots
            out.append(KeepTogether([Paragraph(escape(title), self.s_h3), *self.image(first)]))
            out += [KeepTogether(self.image(x)) for x in rest]
        if not groups:
            out.append(self.p("The run kept no trace plots.", self.s_body))
        return out

    def signatures(self) -> list[Any]:
        """Each signature as recorded, or "Not signed"."""
        from reportlab.platypus import KeepTogether, Paragraph, Spacer, TableStyle

        cert = self.cert
        out = self.heading("6. Signatures")
        if not cert.signatures:
            out.append(Paragraph("<b>Not signed.</b>", self.s_body))
        else:
            out += [self.p(SIGNATURE_NOTE, self.s_small), Spacer(1, 2 * self.mm)]
        for s in cert.signatures:
            rows = [
                ("Printed name", self.p(s.name, self.s_cellb)),
                ("Role", self.p(s.role)),
                ("Meaning", self.p(s.meaning)),
                ("Date and time", self.p(s.time)),
                ("Key fingerprint", self.p(s.fingerprint, self.s_mono)),
            ]
            if s.algorithm:
                rows.append(("Algorithm", self.p(s.algorithm)))
            if s.signs:
                rows.append(("Signs", self.p(s.signs, self.s_mono)))
            colour = verdict_colour(
                PASS if s.verified else FAIL if s.verified is False else NOT_RUN
            )
            rows.append(
                (
                    "Check",
                    Paragraph(f'<font color="{colour}">{escape(s.check)}</font>', self.s_cell),
                )
            )
            t = self.grid(
                [[self.p(k, self.s_cellb), v] for k, v in rows], [0.22, 0.78], header=False
            )
            t.setStyle(
                TableStyle(
                    [
                        ("BOX", (0, 0), (-1, -1), 0.6, self.rule),
                        ("BACKGROUND", (0, 0), (0, -1), self.shade),
                    ]
                )
            )
            out.append(KeepTogether([t, Spacer(1, 3 * self.mm)]))
        out.append(Spacer(1, 4 * self.mm))
        out.append(
            self.p(
                f"Generated {cert.generated} by rig {cert.rig_version} from record.jsonl "
                f"({cert.record_lines} lines, SHA-256 {cert.record_sha256}).",
                self.s_small,
            )
        )
        return out

    # -- pages ----------------------------------------------------------------------------------
    def decorate(self, canvas: Any, page: int, total: int) -> None:
        """Banner on top and footer at the bottom of one page."""
        cert, mm, c = self.cert, self.mm, canvas
        c.saveState()
        if self.banner_lines:
            y0 = self.page_h - 8 * mm - self.banner_h + 4 * mm
            c.setFillColor(self.red)
            c.rect(self.margin, y0, self.width, self.banner_h - 4 * mm, stroke=0, fill=1)
            c.setFillColor(self.colors.white)
            y = self.page_h - 14.5 * mm
            c.setFont(self.bold, 13)
            c.drawCentredString(self.page_w / 2, y, BANNER)
            c.setFont(self.regular, 8.5)
            for line in self.banner_lines:
                y -= 10.5
                c.drawCentredString(self.page_w / 2, y, line)
        c.setFillColor(self.grey)
        c.setStrokeColor(self.rule)
        c.setLineWidth(0.4)
        c.line(self.margin, 14 * mm, self.page_w - self.margin, 14 * mm)
        c.setFont(self.regular, 7)
        left = f"Certificate of conformance - {cert.model} serial {cert.serial} - {cert.verdict}"
        c.drawString(self.margin, 10.5 * mm, left)
        c.drawRightString(self.page_w - self.margin, 10.5 * mm, f"page {page} of {total}")
        c.setFont(self.mono, 6.5)
        c.drawString(self.margin, 7 * mm, f"record.jsonl SHA-256 {cert.record_sha256}")
        c.restoreState()

    def build(self) -> bytes:
        """The PDF bytes."""
        import io

        from reportlab.pdfgen.canvas import Canvas
        from reportlab.platypus import SimpleDocTemplate

        pdf = self

        class PageCanvas(Canvas):
            """Holds pages back until save(), when "page N of M" can be written."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self._held: list[dict[str, Any]] = []

            def showPage(self) -> None:
                self._held.append(dict(self.__dict__))
                self._startPage()

            def save(self) -> None:
                for state in self._held:
                    self.__dict__.update(state)
                    pdf.decorate(self, self._pageNumber, len(self._held))
                    super().showPage()
                super().save()

        cert, mm = self.cert, self.mm
        buf = io.BytesIO()
        doc = SimpleDocTemplate(
            buf,
            pagesize=(self.page_w, self.page_h),
            leftMargin=self.margin,
            rightMargin=self.margin,
            topMargin=14 * mm + self.banner_h,
            bottomMargin=20 * mm,
            title=f"Certificate of conformance {cert.model} {cert.serial}",
            author=f"rig {cert.rig_version}",
            subject=f"{cert.model} serial {cert.serial}: {cert.verdict}",
            creator=f"rig {cert.rig_version}",
        )
        story = [
            *self.title(),
            *self.identity(),
            *self.requirements(),
            *self.traceability(),
            *self.plots(),
            *self.signatures(),
        ]
        doc.build(story, canvasmaker=PageCanvas)
        return buf.getvalue()
