"""Shared matplotlib plumbing: Agg figures without pyplot (no global state, no display), PNG
bytes, one palette, and the small touches every figure uses."""

from __future__ import annotations

import io

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from pipeline import storage

DPI = 100
GREEN, RED, GREY, BLUE, ORANGE = "#2e7d32", "#c62828", "#9e9e9e", "#1f77b4", "#ff7f0e"
INK, MUTED = "#222222", "#666666"
STAGE_COLORS = {  # error stages (errors.stage)
    "list": "#6a1b9a",
    "plan": "#c62828",
    "decode": "#ef6c00",
    "infer": "#ad1457",
}
OTHER_STAGE = "#5d4037"


def figure(width: float = 8.0, height: float = 3.6, **subplots) -> tuple[Figure, object]:
    """A white figure on the Agg canvas and its axes (`subplots` go to Figure.subplots)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(**subplots)


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def tidy(ax: Axes, grid: str = "y") -> None:
    """No top/right frame, a light grid behind the data."""
    ax.spines[["top", "right"]].set_visible(False)
    if grid:
        ax.grid(axis=grid, color="#dddddd", linewidth=0.8)
        ax.set_axisbelow(True)


def message(ax: Axes, text: str, color: str = MUTED) -> None:
    """An axes that only says why there is nothing to plot."""
    ax.set_axis_off()
    box = FancyBboxPatch(
        (0.05, 0.2),
        0.9,
        0.6,
        boxstyle="round,pad=0.02",
        transform=ax.transAxes,
        facecolor="#f5f5f5",
        edgecolor="#cccccc",
    )
    ax.add_patch(box)
    ax.text(
        0.5, 0.5, text, ha="center", va="center", fontsize=13, color=color, transform=ax.transAxes
    )


def short_uri(uri: str, width: int = 42) -> str:
    """A readable label for a video: the last path parts, shortened in the middle."""
    text = storage.redact(uri).rstrip("/")
    parts = text.split("/")
    text = "/".join(parts[-2:]) if len(parts) > 2 else text
    if len(text) <= width:
        return text
    keep = (width - 1) // 2
    return f"{text[:keep]}…{text[-(width - 1 - keep) :]}"


def bar_labels(ax: Axes, bars, labels: list[str]) -> None:
    """A text at the end of each bar, and room on the value axis for it."""
    ax.bar_label(bars, labels=labels, padding=3, fontsize=9, color=INK)
    if bars.orientation == "horizontal":
        ax.margins(x=0.18, y=0.35 if len(bars) <= 2 else None)  # one or two bars: not slabs
    else:
        ax.margins(y=0.18)


def compact(value: float, _pos=None) -> str:
    """Tick labels that stay short: 950, 1.5k, 12k, 3.4M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:g}"


def count_axis(axis, integer: bool = True) -> None:
    """An axis of counts (or rates): a few ticks with compact labels."""
    axis.set_major_locator(MaxNLocator(nbins=5, integer=integer))
    axis.set_major_formatter(FuncFormatter(compact))
