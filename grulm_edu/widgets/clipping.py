"""Notebook 04's experiment: train a GRU whose gradients explode, clipped at a chosen max norm.

The callback trains with `grulm_edu.training.fit`, so one call compiles a
train step and runs every step of the given `TrainConfig`: keep the model
tiny and the run short. The Run button starts it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from grulm_edu.data import Batches
from grulm_edu.plots import new_figure
from grulm_edu.training import History, TrainConfig, fit
from grulm_edu.widgets import experiment

__all__ = ["moving_average", "plot_clipping_runs", "summarize_run", "clipping_view", "clipping_explorer"]


def moving_average(values, window: int) -> np.ndarray:
    """Mean of each run of `window` consecutive values; returns ``len(values) - window + 1`` values."""
    values = np.asarray(values, np.float64)
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= len(values):
        raise ValueError(f"window must be an int in [1, {len(values)}] (the number of values), got {window!r}")
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    return (cumulative[window:] - cumulative[:-window]) / window


def plot_clipping_runs(histories: Mapping[str, History], *, max_norm: float | None = None, window: int = 10):
    """Plot each run's gradient norm (left, log scale) and loss (right, `window`-step moving average)."""
    fig, (ax_norm, ax_loss) = new_figure(ncols=2, width=11.0, height=3.8)
    for label, history in histories.items():
        ax_norm.plot(history.step, history.grad_norm, lw=1.0, label=label)
        ax_loss.plot(history.step[window - 1 :], moving_average(history.loss, window), label=label)
    if max_norm is not None:
        ax_norm.axhline(max_norm, color="k", ls="--", lw=0.8, label=f"threshold {max_norm:g}")
    ax_norm.set(yscale="log", xlabel="step", ylabel="global gradient norm (before clipping)")
    ax_loss.set(xlabel="step", ylabel=f"training loss (nats), {window}-step mean")
    for ax in (ax_norm, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def summarize_run(label: str, history: History, max_norm: float, last: int = 50) -> str:
    """Format one line: how many steps had a gradient norm above `max_norm`, the largest norm, and the final loss."""
    above = int((history.grad_norm > max_norm).sum())
    last = min(last, len(history.loss))
    return (
        f"{label}: {above} of {len(history.step)} steps above {max_norm:g} | "
        f"largest gradient norm {float(history.grad_norm.max()):.4g} | "
        f"mean loss over the last {last} steps {float(history.loss[-last:].mean()):.4f}"
    )


def clipping_view(max_norm: float, *, params: dict, train: Batches, config: TrainConfig, reference: History):
    """Train from `params` with ``config.clip_norm = max_norm`` and plot it against `reference`.

    Args:
        max_norm: the clipping threshold, a finite number > 0.
        params: initial parameters, the same as the reference run's.
        train: training batches.
        config: every other setting of the run; only `clip_norm` is replaced.
        reference: the `History` of the run without clipping (for example
            ``clip_norm=1e9``), drawn beside the new run.

    Returns:
        ``(figure, summary)``: the two runs' curves and one line per run.
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not math.isfinite(max_norm) or max_norm <= 0:
        raise ValueError(f"max_norm must be a finite number > 0, got {max_norm!r}")
    if len(reference.step) != config.num_steps:
        raise ValueError(
            f"reference has {len(reference.step)} steps but config.num_steps is {config.num_steps}; "
            f"train the reference with the same config"
        )
    _, history = fit(params, train, None, dataclasses.replace(config, clip_norm=float(max_norm)))
    label = f"max norm {max_norm:g}"
    figure = plot_clipping_runs({"no clipping": reference, label: history}, max_norm=max_norm)
    summary = "\n".join([summarize_run("no clipping", reference, max_norm), summarize_run(label, history, max_norm)])
    return figure, summary


def clipping_explorer(params: dict, train: Batches, config: TrainConfig, reference: History):
    """Build a log-scale slider for the max norm and a Run button; each run trains for ``config.num_steps`` steps."""
    import ipywidgets as widgets

    def view(max_norm):
        return clipping_view(max_norm, params=params, train=train, config=config, reference=reference)

    controls = {
        "max_norm": widgets.FloatLogSlider(
            value=0.1, base=10, min=-2, max=3, step=0.25, description="max norm", readout_format=".3g"
        ),
    }
    return experiment(
        view,
        controls,
        run_button=True,
        description=f"Pick a max norm and press Run ({config.num_steps} training steps, a few seconds)",
    )
