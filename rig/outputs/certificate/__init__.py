"""Certificate of conformance of one run (self-contained HTML and PDF), built from its record."""

from __future__ import annotations

from pathlib import Path

from ...evidence.format import resolve_run
from ...profiles import Profile
from .data import BANNER, Certificate, build_certificate
from .html import render_html
from .pdf import render_pdf

HTML_NAME = "certificate.html"
PDF_NAME = "certificate.pdf"

__all__ = [
    "BANNER",
    "HTML_NAME",
    "PDF_NAME",
    "Certificate",
    "build_certificate",
    "render_html",
    "render_pdf",
    "write_certificate",
]


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
