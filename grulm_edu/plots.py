"""Matplotlib figures that several notebooks share.

Every function returns a `matplotlib.figure.Figure` built without pyplot's
global state, so widget callbacks and tests can call them freely. A notebook
shows one by leaving it as the cell's last expression.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["new_figure", "plot_curves", "plot_bars"]


def _show_figures_as_png_in_ipython() -> None:
    # Figures made without pyplot have no display formatter until a backend
    # registers one; register PNG so notebooks store a picture, not only text.
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        select_figure_formats(shell, {"png"})


_show_figures_as_png_in_ipython()


def new_figure(ncols: int = 1, width: float = 6.4, height: float = 3.6) -> tuple[Figure, list]:
    """Create a figure with `ncols` side-by-side axes, detached from pyplot."""
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = False,
    logy: bool = False,
    ax=None,
) -> Figure:
    """Plot named ``(x, y)`` curves on one axes; returns the figure."""
    if ax is None:
        fig, (ax,) = new_figure()
    else:
        fig = ax.figure
    for label, (x, y) in curves.items():
        ax.plot(np.asarray(x), np.asarray(y), marker="o" if len(x) <= 12 else None, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend()
    return fig


def plot_bars(
    values: Sequence[float],
    labels: Sequence[str],
    *,
    highlight: int | None = None,
    ylabel: str = "",
    title: str = "",
    ax=None,
) -> Figure:
    """Bar chart of `values`; the bar at index `highlight` is drawn in a second colour."""
    if ax is None:
        fig, (ax,) = new_figure()
    else:
        fig = ax.figure
    colors = ["C0"] * len(values)
    if highlight is not None:
        colors[highlight] = "C3"
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), labels)
    ax.set(ylabel=ylabel, title=title)
    return fig
