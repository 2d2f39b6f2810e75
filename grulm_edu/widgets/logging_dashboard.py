"""Notebook 12's dashboard: one metric of a JSON Lines training log, smoothed, against steps or wall time.

`dashboard_view` reads the log with `grulm_edu.runlog.read_log` on every
call, so it also shows a log that a running job is still writing. Training
metrics come from the ``train`` records; ``val_loss`` from the ``eval``
records.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from grulm_edu.log_analysis import ema, epoch_means, find_spikes, spike_intervals
from grulm_edu.plots import new_figure
from grulm_edu.runlog import read_log
from grulm_edu.widgets import experiment

__all__ = ["METRICS", "X_AXES", "plot_step_and_epoch", "dashboard_view", "log_dashboard"]

METRICS = ("loss", "grad_norm", "lr", "tokens_per_s", "val_loss")
X_AXES = ("step", "wall_time")
_LABELS = {
    "loss": "training loss (nats)",
    "grad_norm": "gradient norm (before clipping)",
    "lr": "learning rate",
    "tokens_per_s": "tokens per second",
    "val_loss": "validation loss (nats)",
    "step": "step",
    "wall_time": "wall time (s)",
}


def plot_step_and_epoch(log: Mapping, steps_per_epoch: int, *, title: str = ""):
    """Plot a log's per-step training loss beside its per-epoch means and validation checks.

    Args:
        log: the dict `read_log` returns.
        steps_per_epoch: updates per epoch of the run.
        title: the figure's title.

    Returns:
        A figure with two panels sharing the y axis: per step (left), per epoch (right).
    """
    train = log["train"]
    epochs, means, _ = epoch_means(train["step"], train["loss"], steps_per_epoch)
    fig, (ax_step, ax_epoch) = new_figure(ncols=2, width=11.0, height=3.6)
    ax_epoch.sharey(ax_step)
    ax_step.plot(train["step"], train["loss"], lw=0.8, color="C0", label="training loss of each step")
    ax_step.set(xlabel="step", ylabel="loss (nats)", title="per step")
    ax_epoch.plot(epochs + 1, means, marker="o", color="C0", label="mean training loss of the epoch")
    if len(log["eval"]["step"]):
        eval_epochs = log["eval"]["step"] / steps_per_epoch
        ax_epoch.plot(eval_epochs, log["eval"]["val_loss"], marker="s", color="C3", label="validation loss")
    ax_epoch.set(xlabel="epoch", title="per epoch")
    for ax in (ax_step, ax_epoch):
        ax.grid(alpha=0.3)
    # Right of the first steps, where a falling loss leaves room.
    ax_step.legend(loc="upper left", bbox_to_anchor=(0.15, 1.0))
    ax_epoch.legend(loc="upper right")
    if title:
        fig.suptitle(title)
    return fig


def dashboard_view(
    path: str | os.PathLike,
    metric: str = "loss",
    beta: float = 0.9,
    x_axis: str = "step",
    show_spikes: bool = True,
    *,
    spike_window: int = 20,
    spike_factor: float = 1.3,
):
    """Plot one metric of the log at `path`, raw and smoothed, and flag its spikes.

    Args:
        path: a JSON Lines log written by `fit` or `RunLogWriter`.
        metric: one of `METRICS`.
        beta: smoothing of the bias-corrected EMA, in [0, 1); 0 plots the raw values only.
        x_axis: ``"step"`` or ``"wall_time"``.
        show_spikes: shade the steps `find_spikes` flags on the raw values.
        spike_window, spike_factor: passed to `find_spikes`.

    Returns:
        ``(figure, summary)``.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if x_axis not in X_AXES:
        raise ValueError(f"x_axis must be one of {X_AXES}, got {x_axis!r}")
    log = read_log(path)
    records = log["eval"] if metric == "val_loss" else log["train"]
    field = "val_loss" if metric == "val_loss" else metric
    x, values, steps = records[x_axis], records[field], records["step"]
    if len(values) == 0:
        raise ValueError(f"{str(path)!r} has no records for {metric!r}; pick another metric or log")

    fig, (ax,) = new_figure(width=8.0, height=3.6)
    smoothed = ema(values, beta) if beta > 0 else None
    ax.plot(x, values, lw=0.8, color="C0", alpha=0.35 if smoothed is not None else 1.0, label="raw")
    if smoothed is not None:
        ax.plot(x, smoothed, lw=1.6, color="C0", label=f"EMA, beta {beta:g} (bias-corrected)")
    intervals = []
    if show_spikes and len(values) > spike_window:
        flags = find_spikes(values, window=spike_window, factor=spike_factor)
        intervals = spike_intervals(steps, flags)
        position = {int(s): float(v) for s, v in zip(steps, x)}
        for number, (first, last) in enumerate(intervals):
            label = None
            if number == 0:
                label = f"flagged: {spike_factor:g} x the median of the {spike_window} steps before"
            ax.axvspan(position[first], position[last], color="C3", alpha=0.2, label=label)
    if metric == "grad_norm" and np.nanmin(values) > 0:
        ax.set_yscale("log")  # gradient norms spread over orders of magnitude when a run goes wrong
    ax.set(xlabel=_LABELS[x_axis], ylabel=_LABELS[metric], title=os.path.basename(str(path)))
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, fontsize=8)  # below the axes, so it never hides a spike

    lines = [f"{metric}: {len(values)} records, steps {steps[0]} to {steps[-1]}; last value {values[-1]:.4g}"]
    if smoothed is not None:
        lines[0] += f", smoothed {smoothed[-1]:.4g}"
    if show_spikes:
        found = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in intervals) or "none"
        lines.append(f"spikes (steps): {found}")
    return fig, "\n".join(lines)


def log_dashboard(logs: Mapping[str, str | os.PathLike]):
    """Menus for the log and the metric, a smoothing slider, the x axis and a spike toggle."""
    import ipywidgets as widgets

    if not logs:
        raise ValueError("logs is empty; pass a dict of label -> log path")

    def view(log, metric, beta, x_axis, show_spikes):
        return dashboard_view(logs[log], metric, beta, x_axis, show_spikes)

    controls = {
        "log": widgets.Dropdown(options=list(logs), description="log"),
        "metric": widgets.Dropdown(options=METRICS, value="loss", description="metric"),
        "beta": widgets.FloatSlider(value=0.9, min=0.0, max=0.99, step=0.01, description="EMA beta"),
        "x_axis": widgets.ToggleButtons(options=X_AXES, value="step", description="x axis"),
        "show_spikes": widgets.Checkbox(value=True, description="flag spikes"),
    }
    return experiment(view, controls, description="A training log: pick the metric, the smoothing and the x axis")
