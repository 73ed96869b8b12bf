"""The certificate as one self-contained HTML page (jinja2; plots inline), for archive and mail."""

from __future__ import annotations

import base64
from functools import cache
from pathlib import Path

import jinja2

from .data import SIGNATURE_NOTE, Certificate, Plot, verdict_colour

TEMPLATE = "certificate.html.j2"


def render_html(cert: Certificate) -> str:
    """The certificate as one self-contained HTML page (images inline)."""
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(cert=cert, colour=verdict_colour, data_uri=data_uri, signature_note=SIGNATURE_NOTE)
    )


def data_uri(plot: Plot) -> str:
    """A plot's PNG inline, so that the page needs no other file."""
    return "data:image/png;base64," + base64.b64encode(plot.path.read_bytes()).decode()


@cache
def _environment() -> jinja2.Environment:
    # the template ships inside this package (hatch puts every file of rig/ in the wheel)
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
