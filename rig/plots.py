"""Plots of traces with the analysis marked on them (PNG), for allure and the certificate."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .trace import Trace


def plot_trace(
    trace: Trace,
    *,
    channel: str,
    title: str,
    marks: dict[str, float],
    lines: dict[str, float],
    path: Path | None = None,
) -> bytes:
    """PNG of one channel against device time: `marks` are instants (vertical), `lines` levels."""
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=90)
    try:
        ax.plot(trace.t, trace[channel], lw=0.9, color="#1f4e79")
        ax.axvline(0.0, color="#888888", lw=0.8, ls=":", label="trigger")
        colours = ["#c0392b", "#27ae60", "#8e44ad", "#d35400", "#16a085"]
        for i, (label, t) in enumerate(marks.items()):
            if t is not None and math.isfinite(t):
                ax.axvline(t, color=colours[i % len(colours)], lw=1.0, ls="--", label=label)
        for i, (label, y) in enumerate(lines.items()):
            if y is not None and math.isfinite(y):
                ax.axhline(y, color=colours[(i + 2) % len(colours)], lw=0.8, ls="-.", label=label)
        ax.set_xlabel("device time after trigger (s)")
        ax.set_ylabel(f"{channel} ({trace.units.get(channel, '')})")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        data = buf.getvalue()
    finally:
        plt.close(fig)
    if path is not None:
        Path(path).write_bytes(data)
    return data
