"""The certificate as PDF: reportlab platypus flowables on an A4 page template (banner, footer)."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import matplotlib
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.fonts import addMapping
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    CondPageBreak,
    Flowable,
    Frame,
    Image,
    KeepTogether,
    LongTable,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from .data import (
    BANNER,
    FAIL,
    NOT_RUN,
    PASS,
    SIGNATURE_NOTE,
    Certificate,
    Plot,
    RequirementEntry,
    Signature,
    verdict_colour,
)

PAGE_W, PAGE_H = A4
MARGIN = 16 * mm  # left and right; the text block spans the page between them
WIDTH = PAGE_W - 2 * MARGIN
BOTTOM = 20 * mm  # room for the footer
FOOTER_RULE, FOOTER_TEXT, FOOTER_HASH = 14 * mm, 10.5 * mm, 7 * mm
BANNER_TOP = 8 * mm  # from the top edge to the banner
BANNER_GAP = 10 * mm  # from the banner to the text block
TOP = 14 * mm  # from the top edge to the text block, without a banner

INK = colors.HexColor("#1a1a1a")
GREY = colors.HexColor("#666666")
RULE = colors.HexColor("#bbbbbb")
SHADE = colors.HexColor("#f1f3f5")
RED = colors.HexColor("#b3001b")
HEAD = colors.HexColor("#2b3a4a")
GROUP_RULE = colors.HexColor("#555555")
WARN = colors.HexColor("#7a4a00")


def render_pdf(cert: Certificate) -> bytes:
    """The certificate as PDF (all text is real, extractable text)."""
    return _Pdf(cert).build()


# --------------------------------------------------------------------------- fonts and styles


@dataclass(frozen=True)
class _Fonts:
    regular: str
    bold: str
    italic: str
    mono: str


@cache
def _fonts() -> _Fonts:
    """DejaVu (embedded, full Unicode) from matplotlib's data, else the standard PDF fonts."""
    names = _Fonts("Cert", "Cert-Bold", "Cert-Italic", "Cert-Mono")
    try:
        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        files = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf")
        for name, file in zip(
            (names.regular, names.bold, names.italic, names.mono),
            (*files, "DejaVuSansMono.ttf"),
            strict=True,
        ):
            pdfmetrics.registerFont(TTFont(name, str(ttf / file)))
    except Exception:
        # the standard fonts cover Latin-1, which is all the profiles use today
        return _Fonts("Helvetica", "Helvetica-Bold", "Helvetica-Oblique", "Courier")
    # <b> and <i> inside a paragraph pick the bold and italic faces
    addMapping(names.regular, 0, 0, names.regular)
    addMapping(names.regular, 1, 0, names.bold)
    addMapping(names.regular, 0, 1, names.italic)
    addMapping(names.regular, 1, 1, names.bold)
    return names


def _style(fonts: _Fonts, **kw: Any) -> ParagraphStyle:
    """A paragraph style on the certificate's defaults."""
    base: dict[str, Any] = {
        "fontName": fonts.regular,
        "fontSize": 9,
        "leading": 11.5,
        "textColor": INK,
    }
    base.update(kw)
    return ParagraphStyle("cert", **base)


@dataclass(frozen=True)
class _Styles:
    title: ParagraphStyle
    sub: ParagraphStyle
    h: ParagraphStyle
    h3: ParagraphStyle
    body: ParagraphStyle
    cell: ParagraphStyle
    cellb: ParagraphStyle
    small: ParagraphStyle
    mono: ParagraphStyle
    head: ParagraphStyle
    warn: ParagraphStyle
    caption: ParagraphStyle
    banner: ParagraphStyle
    banner_reasons: ParagraphStyle

    @classmethod
    def of(cls, f: _Fonts) -> _Styles:
        """The certificate's styles in these fonts."""
        return cls(
            title=_style(f, fontName=f.bold, fontSize=20, leading=24),
            sub=_style(f, fontSize=11.5, leading=15, textColor=GREY),
            h=_style(f, fontName=f.bold, fontSize=12.5, leading=16, spaceBefore=10, spaceAfter=5),
            h3=_style(f, fontName=f.bold, fontSize=10, leading=13, spaceBefore=6, spaceAfter=3),
            body=_style(f),
            cell=_style(f, fontSize=7.8, leading=9.6),
            cellb=_style(f, fontName=f.bold, fontSize=7.8, leading=9.6),
            small=_style(f, fontSize=6.8, leading=8.4, textColor=GREY),
            mono=_style(f, fontName=f.mono, fontSize=6.8, leading=8.6),
            head=_style(f, fontName=f.bold, fontSize=7.8, leading=9.6, textColor=colors.white),
            warn=_style(f, fontSize=8.5, leading=11, textColor=WARN),
            caption=_style(f, fontSize=7, leading=8.8, textColor=GREY),
            banner=_style(
                f,
                fontName=f.bold,
                fontSize=13,
                leading=15,
                alignment=TA_CENTER,
                textColor=colors.white,
            ),
            banner_reasons=_style(
                f, fontSize=8.5, leading=10.5, alignment=TA_CENTER, textColor=colors.white
            ),
        )


# --------------------------------------------------------------------------- the document


class _Pdf:
    """Lays out one certificate: a story of flowables, and what every page carries."""

    def __init__(self, cert: Certificate) -> None:
        self.cert = cert
        self.fonts = _fonts()
        self.s = _Styles.of(self.fonts)
        self.banner = self._banner()
        # the banner is drawn on every page: its height moves the text block down
        self.banner_h = self.banner.wrap(WIDTH, PAGE_H)[1] if self.banner else 0.0

    # -- building blocks ------------------------------------------------------------------------
    def p(self, text: str, style: ParagraphStyle | None = None) -> Paragraph:
        """Plain text (escaped) as a paragraph."""
        return Paragraph(escape(text), style or self.s.cell)

    def verdict(self, verdict: str, size: float = 7.8) -> Paragraph:
        """A verdict in its colour."""
        return Paragraph(
            f'<font color="{verdict_colour(verdict)}"><b>{escape(verdict)}</b></font>',
            _style(self.fonts, fontName=self.fonts.bold, fontSize=size, leading=size * 1.25),
        )

    def heading(self, text: str, room: float = 45.0) -> list[Flowable]:
        """A section heading, on a new page unless `room` mm are left below it."""
        return [CondPageBreak(room * mm), Paragraph(escape(text), self.s.h)]

    def grid(self, data: list[list[Any]], widths: list[float], *, header: bool = True) -> Table:
        """A ruled table, `widths` in fractions of the text width; a header row repeats on
        every page the table runs onto."""
        t = LongTable(data, colWidths=[w * WIDTH for w in widths], repeatRows=int(header))
        cmds: list[tuple[Any, ...]] = [
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ("TOPPADDING", (0, 0), (-1, -1), 2),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
            ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE),
        ]
        if header:
            cmds.append(("BACKGROUND", (0, 0), (-1, 0), HEAD))
        t.setStyle(TableStyle(cmds))
        return t

    def pairs(self, rows: list[tuple[str, Any]]) -> Table:
        """A two-column key/value table (a value may be a flowable already)."""
        t = self.grid(
            [[self.p(k, self.s.cellb), self.p(v) if isinstance(v, str) else v] for k, v in rows],
            [0.3, 0.7],
            header=False,
        )
        t.setStyle(TableStyle([("BACKGROUND", (0, 0), (0, -1), SHADE)]))
        return t

    def head_row(self, *titles: str) -> list[Flowable]:
        """The header row of a grid."""
        return [self.p(t, self.s.head) for t in titles]

    # -- sections -------------------------------------------------------------------------------
    def title(self) -> list[Flowable]:
        """Title, unit, overall verdict, and why the run may not release a product."""
        cert, s = self.cert, self.s
        out: list[Flowable] = [Paragraph("Certificate of conformance", s.title), Spacer(1, 2 * mm)]
        out.append(self.p(f"Model {cert.model}, serial {cert.serial}", s.sub))
        if cert.description:
            out.append(self.p(cert.description, s.caption))
        out.append(Spacer(1, 4 * mm))
        c = colors.HexColor(verdict_colour(cert.verdict))
        big = _style(self.fonts, fontName=self.fonts.bold, fontSize=22, leading=27, textColor=c)
        box = Table(
            [
                [Paragraph(f"Overall verdict: {escape(cert.verdict)}", big)],
                [
                    self.p(
                        cert.verdict_detail,
                        _style(self.fonts, fontSize=9.5, leading=12, textColor=c),
                    )
                ],
            ],
            colWidths=[WIDTH],
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
                    _style(self.fonts, fontSize=9.5, leading=12, textColor=RED),
                )
            )
        out += [self.p(e, s.warn) for e in cert.events]
        out += [self.p("Note: " + w, s.warn) for w in cert.warnings]
        return out

    def identity(self) -> list[Flowable]:
        """Unit identity, station and instruments with their calibration."""
        cert = self.cert
        out = [*self.heading("1. Unit identity"), self.pairs(cert.identity)]
        out += [*self.heading("2. Station and instruments"), self.pairs(cert.station)]
        out.append(Spacer(1, 2 * mm))
        if not cert.instruments:
            return [*out, self.p("No instruments recorded.", self.s.body)]
        data = [self.head_row("Role", "Identity (*IDN?)", "Calibrated", "Due")]
        data += [
            [
                self.p(i["role"], self.s.cellb),
                self.p(i["idn"]),
                self.p(i["calibration_date"]),
                self.p(i["calibration_due"]),
            ]
            for i in cert.instruments
        ]
        return [*out, self.grid(data, [0.18, 0.52, 0.15, 0.15])]

    def requirement_rows(self, e: RequirementEntry) -> list[list[Any]]:
        """One row per measurement name of a requirement (its worst value)."""
        s = self.s
        qty = [self.p(e.quantity, s.cellb)]
        if e.limit:
            qty.append(self.p(e.limit, s.small))
        if not e.rows:
            measured = [self.p("not measured" if e.verdict != NOT_RUN else "-")]
            if e.note:
                measured.append(self.p(e.note, s.small))
            # nothing was judged, so no limit was applied (the profile's words are left)
            return [[self.p(e.id, s.cellb), qty, measured, self.p("-"), self.verdict(e.verdict)]]
        out: list[list[Any]] = []
        for i, r in enumerate(e.rows):
            measured = [self.p(f"{r.name} = {r.value_text}")]
            if r.detail:
                measured.append(self.p(r.detail, s.small))
            if i == len(e.rows) - 1 and e.note:
                measured.append(self.p(e.note, s.small))
            if i == 0:
                v: Any = self.verdict(e.verdict)
            else:
                # as on the console: later rows only speak up when they failed
                v = self.verdict(r.verdict, 7) if r.verdict != PASS else ""
            out.append(
                [
                    self.p(e.id, s.cellb) if i == 0 else "",
                    qty if i == 0 else "",
                    measured,
                    self.p(r.limit_text),
                    v,
                ]
            )
        return out

    def requirements(self) -> list[Flowable]:
        """The requirement table, grouped by requirement."""
        data = [
            self.head_row(
                "Requirement", "Quantity and limit", "Measured (worst)", "Limit applied", "Verdict"
            )
        ]
        groups: list[tuple[int, int]] = []
        for e in self.cert.requirements:
            rows = self.requirement_rows(e)
            groups.append((len(data), len(data) + len(rows) - 1))
            data += rows
        t = self.grid(data, [0.13, 0.27, 0.29, 0.19, 0.12])
        t.setStyle(TableStyle(_group_commands(groups)))
        return [*self.heading("3. Requirements"), t]

    def traceability(self) -> list[Flowable]:
        """Requirement -> clause -> test -> measurements -> verdict."""
        data = [self.head_row("Requirement", "Standard clause", "Measurement(s)", "Verdict")]
        groups: list[tuple[int, int]] = []
        spans: list[tuple[Any, ...]] = []
        for e in self.cert.requirements:
            first = len(data)
            clause = [self.p(e.clause or "-")]
            if e.condition:
                clause.append(self.p(f"Condition: {e.condition}", self.s.small))
            data.append(
                [
                    self.p(e.id, self.s.cellb),
                    clause,
                    self.p(", ".join(f"{n} ({k})" for n, k in e.counts) or "-"),
                    self.verdict(e.verdict),
                ]
            )
            # the test's node id gets a row of its own, as wide as the table allows, so that it
            # reads (and copies) as one line
            tests = [
                Paragraph(
                    f'<font name="{self.fonts.regular}" color="#666666">Test: </font>{escape(t)}',
                    self.s.mono,
                )
                for t in e.tests or ("-",)
            ]
            data.append(["", tests, "", ""])
            groups.append((first, first + 1))
            spans += [
                ("SPAN", (1, first + 1), (2, first + 1)),
                ("LINEBELOW", (0, first), (-1, first), 0, colors.white),
            ]
        t = self.grid(data, [0.13, 0.42, 0.33, 0.12])
        t.setStyle(TableStyle(spans + _group_commands(groups, rule=False)))
        return [*self.heading("4. Traceability"), t]

    def image(self, plot: Plot) -> list[Flowable]:
        """One plot and its caption (for one KeepTogether: those do not nest)."""
        # 0.8 of the width fits three plots with captions on a page, their text still legible
        w = 0.8 * WIDTH
        iw, ih = ImageReader(str(plot.path)).getSize()
        return [
            Image(str(plot.path), width=w, height=w * ih / iw),
            self.p(plot.caption, self.s.caption),
            Spacer(1, 3 * mm),
        ]

    def plots(self) -> list[Flowable]:
        """Every trace plot (with its analysis drawn on it), under its requirement."""
        out = self.heading("5. Plots", room=100)
        groups = [(f"{e.id} {e.quantity}", e.plots) for e in self.cert.requirements if e.plots]
        if self.cert.other_plots:
            groups.append(("Other traces", tuple(self.cert.other_plots)))
        for title, plots in groups:
            first, *rest = plots
            # a group's title never ends a page alone
            out.append(KeepTogether([Paragraph(escape(title), self.s.h3), *self.image(first)]))
            out += [KeepTogether(self.image(x)) for x in rest]
        if not groups:
            out.append(self.p("The run kept no trace plots.", self.s.body))
        return out

    def signature(self, sig: Signature) -> Flowable:
        """One signature as recorded, with what `rig verify` said of it."""
        rows: list[tuple[str, Any]] = [
            ("Printed name", self.p(sig.name, self.s.cellb)),
            ("Role", sig.role),
            ("Meaning", sig.meaning),
            ("Date and time", sig.time),
            ("Key fingerprint", self.p(sig.fingerprint, self.s.mono)),
        ]
        if sig.algorithm:
            rows.append(("Algorithm", sig.algorithm))
        if sig.signs:
            rows.append(("Signs", self.p(sig.signs, self.s.mono)))
        colour = verdict_colour(
            PASS if sig.verified else FAIL if sig.verified is False else NOT_RUN
        )
        rows.append(
            ("Check", Paragraph(f'<font color="{colour}">{escape(sig.check)}</font>', self.s.cell))
        )
        t = self.grid(
            [[self.p(k, self.s.cellb), self.p(v) if isinstance(v, str) else v] for k, v in rows],
            [0.22, 0.78],
            header=False,
        )
        t.setStyle(
            TableStyle(
                [("BOX", (0, 0), (-1, -1), 0.6, RULE), ("BACKGROUND", (0, 0), (0, -1), SHADE)]
            )
        )
        return KeepTogether([t, Spacer(1, 3 * mm)])

    def signatures(self) -> list[Flowable]:
        """Each signature, or "Not signed"; then where this certificate came from."""
        cert = self.cert
        out = self.heading("6. Signatures")
        if not cert.signatures:
            out.append(Paragraph("<b>Not signed.</b>", self.s.body))
        else:
            out += [self.p(SIGNATURE_NOTE, self.s.small), Spacer(1, 2 * mm)]
        out += [self.signature(x) for x in cert.signatures]
        out.append(Spacer(1, 4 * mm))
        out.append(
            self.p(
                f"Generated {cert.generated} by rig {cert.rig_version} from record.jsonl "
                f"({cert.record_lines} lines, SHA-256 {cert.record_sha256}).",
                self.s.small,
            )
        )
        return out

    # -- pages ----------------------------------------------------------------------------------
    def _banner(self) -> Table | None:
        """The NOT VALID FOR PRODUCT RELEASE banner with its reasons, or None."""
        if not self.cert.release_blockers:
            return None
        t = Table(
            [
                [Paragraph(BANNER, self.s.banner)],
                [Paragraph(escape(self.cert.banner_text), self.s.banner_reasons)],
            ],
            colWidths=[WIDTH],
        )
        t.setStyle(
            TableStyle(
                [
                    ("BACKGROUND", (0, 0), (-1, -1), RED),
                    ("LEFTPADDING", (0, 0), (-1, -1), 4 * mm),
                    ("RIGHTPADDING", (0, 0), (-1, -1), 4 * mm),
                    ("TOPPADDING", (0, 0), (-1, -1), 0),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 0),
                    ("TOPPADDING", (0, 0), (-1, 0), 1.5 * mm),
                    ("BOTTOMPADDING", (0, -1), (-1, -1), 2 * mm),
                ]
            )
        )
        return t

    def header(self, canvas: Canvas, doc: BaseDocTemplate) -> None:
        """The page template's header: the banner, on every page when the run may not release."""
        if self.banner:
            self.banner.drawOn(canvas, MARGIN, PAGE_H - BANNER_TOP - self.banner_h)

    def footer(self, canvas: Canvas, total: int) -> None:
        """Unit, verdict, "page N of M" and the record's digest, on every page.

        Drawn when the document is saved (see _NumberedCanvas), the one moment M is known.
        """
        cert = self.cert
        canvas.saveState()
        canvas.setFillColor(GREY)
        canvas.setStrokeColor(RULE)
        canvas.setLineWidth(0.4)
        canvas.line(MARGIN, FOOTER_RULE, PAGE_W - MARGIN, FOOTER_RULE)
        canvas.setFont(self.fonts.regular, 7)
        left = f"Certificate of conformance - {cert.model} serial {cert.serial} - {cert.verdict}"
        canvas.drawString(MARGIN, FOOTER_TEXT, left)
        page = f"page {canvas.getPageNumber()} of {total}"
        canvas.drawRightString(PAGE_W - MARGIN, FOOTER_TEXT, page)
        canvas.setFont(self.fonts.mono, 6.5)
        canvas.drawString(MARGIN, FOOTER_HASH, f"record.jsonl SHA-256 {cert.record_sha256}")
        canvas.restoreState()

    def build(self) -> bytes:
        """The PDF bytes."""
        cert = self.cert
        top = BANNER_TOP + self.banner_h + BANNER_GAP if self.banner else TOP
        frame = Frame(
            MARGIN,
            BOTTOM,
            WIDTH,
            PAGE_H - top - BOTTOM,
            leftPadding=0,
            rightPadding=0,
            topPadding=0,
            bottomPadding=0,
            id="text",
        )
        buf = io.BytesIO()
        doc = BaseDocTemplate(
            buf,
            pagesize=A4,
            pageTemplates=[PageTemplate("page", frames=[frame], onPage=self.header)],
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
        doc.build(story, canvasmaker=partial(_NumberedCanvas, numbering=self.footer))
        return buf.getvalue()


def _group_commands(groups: list[tuple[int, int]], *, rule: bool = True) -> list[tuple[Any, ...]]:
    """Table commands for groups of rows (first, last), one per requirement: kept on one page,
    so that no value is read without its ID; shaded every other; ruled above if `rule`."""
    cmds: list[tuple[Any, ...]] = []
    for n, (first, last) in enumerate(groups):
        if rule:
            cmds.append(("LINEABOVE", (0, first), (-1, first), 0.8, GROUP_RULE))
        cmds.append(("NOSPLIT", (0, first), (-1, last)))
        if n % 2:
            cmds.append(("BACKGROUND", (0, first), (-1, last), SHADE))
    return cmds


class _NumberedCanvas(Canvas):
    """Holds its pages back until save(), when `numbering` can write "page N of M" on each.

    (reportlab's own recipe for a page total: the number of pages is known only at the end.)
    """

    def __init__(self, *args: Any, numbering: Callable[[Canvas, int], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._numbering = numbering
        self._held: list[dict[str, Any]] = []

    def showPage(self) -> None:
        self._held.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        for state in self._held:
            self.__dict__.update(state)
            self._numbering(self, len(self._held))
            super().showPage()
        super().save()
