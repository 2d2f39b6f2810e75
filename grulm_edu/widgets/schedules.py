"""Notebook 09's experiments: draw a warmup + cosine learning-rate schedule, and train on one.

`schedule_view` draws `optax.warmup_cosine_decay_schedule` for any initial,
peak and final rate; it is cheap, so its sliders redraw on release.
`schedule_run_view` trains with `grulm_edu.training.fit`, whose schedule
always warms up from 0 (see `grulm_edu.training.make_schedule`), so a
nonzero initial rate shapes the drawing but not the training run. A run
compiles a train step and takes every update of the schedule: keep the
model small and the run short. The Run button starts it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
import optax

from grulm_edu.data import Batches
from grulm_edu.plots import new_figure
from grulm_edu.training import History, TrainConfig, fit
from grulm_edu.widgets import experiment

__all__ = [
    "smooth",
    "schedule_view",
    "plot_runs",
    "plot_warmup_start",
    "largest_loss_jump",
    "summarize_run",
    "schedule_run_view",
    "schedule_explorer",
]


def _check_rate(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_steps(warmup_steps, decay_steps) -> tuple[int, int]:
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}")
    if isinstance(decay_steps, bool) or not isinstance(decay_steps, int) or decay_steps <= warmup_steps:
        raise ValueError(
            f"decay_steps must be an int larger than warmup_steps ({warmup_steps}), got {decay_steps!r}; "
            f"it counts the whole schedule, warmup included"
        )
    return warmup_steps, decay_steps


def smooth(values, beta: float = 0.9) -> np.ndarray:
    """Exponential moving average with bias correction: ``s_t = beta s_(t-1) + (1 - beta) x_t``, divided by ``1 - beta^(t+1)``.

    The correction makes ``smooth(x)[0] == x[0]``, so a curve does not start at zero.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    values = np.asarray(values, np.float64)
    out = np.empty_like(values)
    running = 0.0
    for t, x in enumerate(values):
        running = beta * running + (1.0 - beta) * x
        out[t] = running / (1.0 - beta ** (t + 1))
    return out


def schedule_view(
    init_lr: float = 0.0,
    peak_lr: float = 0.1,
    end_lr: float = 0.01,
    warmup_steps: int = 20,
    decay_steps: int = 300,
):
    """Draw ``optax.warmup_cosine_decay_schedule(init_lr, peak_lr, warmup_steps, decay_steps, end_lr)``.

    Args:
        init_lr: the rate of update 0, where the linear warmup starts.
        peak_lr: the rate reached at update `warmup_steps`.
        end_lr: the rate from update `decay_steps` on.
        warmup_steps: updates of linear warmup (0 starts at the peak).
        decay_steps: length of the whole schedule, warmup included; the
            cosine spans ``decay_steps - warmup_steps`` updates.

    Returns:
        ``(figure, summary)``: the rate of every update up to 10% past
        `decay_steps`, and one line with the rates at the schedule's corners.
    """
    init_lr, peak_lr, end_lr = (_check_rate(n, v) for n, v in (("init_lr", init_lr), ("peak_lr", peak_lr), ("end_lr", end_lr)))
    warmup_steps, decay_steps = _check_steps(warmup_steps, decay_steps)
    schedule = optax.warmup_cosine_decay_schedule(init_lr, peak_lr, warmup_steps, decay_steps, end_lr)
    updates = np.arange(decay_steps + max(decay_steps // 10, 1) + 1)
    rates = np.asarray(schedule(updates), np.float64)
    halfway = warmup_steps + (decay_steps - warmup_steps) // 2

    fig, (ax,) = new_figure(height=3.2)
    ax.plot(updates, rates, color="C0")
    ax.axvline(warmup_steps, color="k", ls=":", lw=0.8)
    ax.axvline(decay_steps, color="k", ls="--", lw=0.8)
    ax.set(
        xlabel="optimizer update",
        ylabel="learning rate",
        title=f"warmup {warmup_steps} updates (dotted), schedule ends at {decay_steps} (dashed)",
    )
    ax.grid(alpha=0.3)
    summary = (
        f"update 0: {rates[0]:.4g} | update {warmup_steps} (end of warmup): {rates[warmup_steps]:.4g} | "
        f"update {halfway} (half-way through the decay): {rates[halfway]:.4g} | "
        f"update {decay_steps} and later: {rates[decay_steps]:.4g}"
    )
    return fig, summary


def plot_runs(histories: Mapping[str, History], *, beta: float = 0.9):
    """Plot each run's learning rate, smoothed training loss and validation loss against the update."""
    fig, (ax_lr, ax_loss, ax_val) = new_figure(ncols=3, width=12.0, height=3.6)
    for label, history in histories.items():
        ax_lr.plot(history.step, history.lr, label=label)
        ax_loss.plot(history.step, smooth(history.loss, beta), label=label)
        ax_val.plot(history.eval_step, history.val_loss, marker="o", label=label)
    ax_lr.set(xlabel="update", ylabel="learning rate")
    ax_loss.set(xlabel="update", ylabel=f"training loss (nats), moving average {beta:g}")
    ax_val.set(xlabel="update", ylabel="validation loss (nats)")
    for ax in (ax_lr, ax_loss, ax_val):
        ax.grid(alpha=0.3)
    ax_val.legend()
    return fig


def plot_warmup_start(histories: Mapping[str, History], updates: int = 60):
    """Plot the learning rate, the raw training loss and the gradient norm of each run's first `updates` updates."""
    fig, axes = new_figure(ncols=3, width=12.0, height=3.6)
    names = (("lr", "learning rate"), ("loss", "training loss (nats)"), ("grad_norm", "gradient norm (before clipping)"))
    for ax, (field, ylabel) in zip(axes, names):
        for label, history in histories.items():
            ax.plot(history.step[:updates], getattr(history, field)[:updates], lw=1.2, label=label)
        ax.set(xlabel="update", ylabel=ylabel)
        ax.grid(alpha=0.3)
    axes[1].legend()
    return fig


def largest_loss_jump(losses) -> tuple[float, int]:
    """Return ``(jump, index)``: the largest rise of ``losses[i]`` above ``min(losses[:i])``, 0 when the loss never rises."""
    losses = np.asarray(losses, np.float64)
    if len(losses) < 2:
        return 0.0, 0
    jumps = losses[1:] - np.minimum.accumulate(losses[:-1])
    index = int(np.argmax(jumps)) + 1
    return max(float(jumps[index - 1]), 0.0), index


def summarize_run(label: str, history: History, early: int = 20) -> str:
    """Summarize a run in one line: the final validation loss, the largest loss jump and gradient norm of the first `early` updates.

    The loss jump is how far the training loss rose above the lowest loss seen
    before it (see `largest_loss_jump`), a measure of early spikes.
    """
    early = min(early, len(history.loss))
    jump, index = largest_loss_jump(history.loss[:early])
    val = f"{float(history.val_loss[-1]):.4f}" if len(history.val_loss) else "-"
    return (
        f"{label}: final validation loss {val} | first {early} updates: largest loss jump {jump:.4f} "
        f"(update {int(history.step[index])}), largest gradient norm {float(history.grad_norm[:early].max()):.4f}"
    )


def schedule_run_view(
    peak_lr: float,
    end_lr: float,
    warmup_steps: int,
    decay_steps: int,
    *,
    params: dict,
    train: Batches,
    val: Batches | None,
    config: TrainConfig,
    reference: Mapping[str, History] | None = None,
):
    """Train with `fit` on the schedule ``peak_lr, end_lr, warmup_steps, decay_steps`` and plot it beside `reference`.

    Args:
        peak_lr: the rate after warmup (``config.learning_rate``), > 0.
        end_lr: the final rate, at most `peak_lr` (it sets ``final_lr_fraction``).
        warmup_steps: updates of linear warmup from 0.
        decay_steps: the run's length in updates (``config.num_steps``).
        params: initial parameters.
        train, val: training and validation batches.
        config: every other setting of the run.
        reference: earlier runs to draw beside the new one, by label.

    Returns:
        ``(figure, summary)``: `plot_runs` of the runs, and one `summarize_run` line per run.
    """
    peak_lr, end_lr = _check_rate("peak_lr", peak_lr), _check_rate("end_lr", end_lr)
    warmup_steps, decay_steps = _check_steps(warmup_steps, decay_steps)
    if peak_lr <= 0 or end_lr > peak_lr:
        raise ValueError(f"fit needs 0 < end_lr <= peak_lr, got peak_lr {peak_lr!r} and end_lr {end_lr!r}; lower end_lr")
    run_config = dataclasses.replace(
        config,
        learning_rate=peak_lr,
        final_lr_fraction=end_lr / peak_lr,
        warmup_steps=warmup_steps,
        num_steps=decay_steps,
        log_interval=max(decay_steps // 6, 1),
    )
    _, history = fit(params, train, val, run_config)
    label = f"peak {peak_lr:.3g}, end {end_lr:.3g}, warmup {warmup_steps}"
    runs = {**(reference or {}), label: history}
    summary = "\n".join(summarize_run(name, run) for name, run in runs.items())
    return plot_runs(runs), summary


def schedule_explorer(params: dict, train: Batches, val: Batches | None, config: TrainConfig, reference: Mapping[str, History] | None = None):
    """Sliders that redraw the schedule on release, and a Run button that trains on it.

    The sliders start at the schedule of `config`; each run replaces only the
    schedule's settings of `config` (see `schedule_run_view`).
    """
    import ipywidgets as widgets

    # The sliders start at `config`'s schedule; their ranges stretch to contain it.
    peak, end = config.learning_rate, config.learning_rate * config.final_lr_fraction
    controls = {
        "init_lr": widgets.FloatSlider(value=0.0, min=0.0, max=0.1, step=0.001, readout_format=".3f", description="initial"),
        "peak_lr": widgets.FloatLogSlider(
            value=peak, base=10, min=min(-3.0, math.log10(peak)), max=max(-0.5, math.log10(peak)), step=0.05,
            readout_format=".3g", description="peak",
        ),
        "end_lr": widgets.FloatSlider(value=end, min=0.0, max=max(0.1, end), step=0.001, readout_format=".3f", description="final"),
        "warmup_steps": widgets.IntSlider(
            value=config.warmup_steps, min=0, max=max(300, config.warmup_steps), step=5, description="warmup"
        ),
        "decay_steps": widgets.IntSlider(
            value=config.num_steps, min=min(50, config.num_steps), max=max(600, config.num_steps), step=10,
            description="decay steps",
        ),
    }
    drawing = experiment(schedule_view, controls, description="Move a slider and release it to redraw the schedule")

    # With a Run button, `experiment` trains only when it is pressed.
    def train_on_schedule():
        values = {name: control.value for name, control in controls.items()}
        return schedule_run_view(
            values["peak_lr"], values["end_lr"], values["warmup_steps"], values["decay_steps"],
            params=params, train=train, val=val, config=config, reference=reference,
        )

    training = experiment(
        train_on_schedule,
        {},
        run_button=True,
        description="Train on this schedule (one compile, then one update per step; fit's warmup starts from rate 0)",
    )
    return widgets.VBox([drawing, training])
