"""Status counts over simulated time, drawn with matplotlib's Agg backend.

Made to be read: series in lifecycle order, one fixed colour per status
(terminal ones dashed), a symmetric-log y axis so a handful of LOST tests
shows beside thousands RUNNING, the legend outside the plot, and the
scenario in the title.
"""

from __future__ import annotations

from typing import Any

from loadtest_core._status import LIFECYCLE, TERMINAL

__all__ = ["COLOURS", "figure", "plot", "supported"]

COLOURS = {
    "CREATED": "#7f7f7f",
    "INITIATED": "#9ecae1",
    "PREPARING": "#4292c6",
    "WAITING": "#08519c",
    "RUNNING": "#2ca02c",
    "FINISHING": "#17becf",
    "POST_PROCESSING": "#006d5b",
    "STOPPING": "#ff7f0e",
    "LOST": "#e6007e",
    "DONE": "#98df8a",
    "FAILED": "#b2182b",
    "STOPPED": "#6a3d9a",
    "AUTOSTOPPED": "#8c564b",
    "CANCELLED": "#000000",
    "DELETING": "#c7c7c7",
}
_ORDER = [s.name for s in LIFECYCLE]
_TERMINAL = {s.name for s in TERMINAL}


def supported() -> set[str]:
    """File suffixes the plot can be written as (``.png``, ``.svg``, ``.pdf``, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return {f".{ext}" for ext in FigureCanvasBase.get_supported_filetypes()}


def figure(timeline: list[tuple[float, dict[str, int]]], title: str = "") -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = {s for _, counts in timeline for s in counts}
    statuses = [s for s in _ORDER if s in present] + sorted(present - set(_ORDER))
    times = [t for t, _ in timeline]
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=100)
    for status in statuses:
        ax.plot(
            times,
            [counts.get(status, 0) for _, counts in timeline],
            label=status,
            color=COLOURS.get(status),
            linestyle="--" if status in _TERMINAL else "-",
            linewidth=1.8,
        )
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("simulated seconds")
    ax.set_ylabel("tests (symmetric log scale)")
    ax.set_title(title or "test statuses over simulated time", fontsize="medium")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
        title="status",
        fontsize="small",
        frameon=False,
    )
    fig.tight_layout()
    return fig


def plot(timeline: list[tuple[float, dict[str, int]]], path: str, title: str = "") -> None:
    import matplotlib.pyplot as plt

    fig = figure(timeline, title)
    try:
        fig.savefig(path, bbox_inches="tight")
    finally:
        plt.close(fig)
