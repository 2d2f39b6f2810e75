"""Notebook 11's experiment: train and validation curves of one run, with dropout and weight decay as chosen.

`train_with_curves` runs the same updates as `grulm_edu.training.fit` (the
same optax chain, data order and per-step dropout keys) but also scores the
training batches in evaluation mode, without dropout, every few steps. Its
chain reads the weight decay from the optimizer state
(`optax.inject_hyperparams`), so runs that differ only in weight decay share
one compiled train step. `fit` logs the
training loss of each step with dropout on, which reads high by however much
the dropped units cost, so the gap between train and validation loss is
measured here with both sides in evaluation mode. Gradient accumulation is
left out. `train_bigram_embeddings` is the small model of the notebook's
embedding-decay demonstration.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, MutableMapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.figure import Figure

from grulm_edu.data import Batches, epoch_order
from grulm_edu.losses import cross_entropy
from grulm_edu.plots import new_figure
from grulm_edu.training import (
    TrainConfig,
    decay_mask,
    evaluate,
    init_state,
    make_schedule,
    make_train_step,
    run_keys,
)
from grulm_edu.widgets import experiment

__all__ = [
    "Curves",
    "make_shared_decay_optimizer",
    "train_with_curves",
    "summarize_curves",
    "plot_curve_grid",
    "regularization_view",
    "regularization_explorer",
    "train_bigram_embeddings",
]


@dataclasses.dataclass(frozen=True)
class Curves:
    """Losses of one run, scored in evaluation mode every few updates.

    Attributes:
        step: ``(K,)`` updates done at each check.
        train_loss: ``(K,)`` mean loss on the first training batches, without dropout.
        val_loss: ``(K,)`` mean loss on the first validation batches.
        params: the parameters after the last update.
    """

    step: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    params: dict

    @property
    def gap(self) -> float:
        """Validation minus training loss at the last check, in nats."""
        return float(self.val_loss[-1] - self.train_loss[-1])


def make_shared_decay_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Build `make_optimizer`'s chain (no accumulation) with the weight decay kept in the optimizer state.

    Clipping, then AdamW on the warmup + cosine schedule with `decay_mask`, as
    in `grulm_edu.training.make_optimizer`. `optax.inject_hyperparams` turns
    ``weight_decay`` (and the other numeric settings) into arrays of the
    state, so a train step compiled for one weight decay runs any other.
    """
    adamw = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
        learning_rate=make_schedule(config),
        b1=config.b1,
        b2=config.b2,
        weight_decay=config.weight_decay,
        mask=decay_mask,
    )
    return optax.chain(optax.clip_by_global_norm(config.clip_norm), adamw)


@functools.lru_cache(maxsize=8)
def _shared_train_step(config: TrainConfig):
    """Build (once per config) the jitted train step; callers pass their config with ``weight_decay=0``."""
    return make_train_step(config, make_shared_decay_optimizer(config))


def train_with_curves(
    params: dict,
    train: Batches,
    val: Batches,
    config: TrainConfig,
    *,
    eval_every: int = 25,
    eval_batches: int = 8,
) -> Curves:
    """Train for ``config.num_steps`` updates and score train and validation batches every `eval_every` updates.

    Args:
        params: initial parameters.
        train: training batches ``(N, B, T + 1)``; each epoch visits them in
            the order `fit` would use for ``config.seed``.
        val: validation batches.
        config: the run's settings; ``accumulation_steps`` must be 1.
        eval_every: updates between two checks; a check also follows the last update.
        eval_batches: how many of the first batches of each split a check scores.

    Returns:
        A `Curves` with one entry per check.
    """
    if config.accumulation_steps != 1:
        raise ValueError(
            f"train_with_curves runs one micro-batch per update, got accumulation_steps={config.accumulation_steps}; "
            f"use fit for gradient accumulation"
        )
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive int, got {eval_every!r}")
    # The step reads the weight decay from the state that init_state builds here.
    train_step = _shared_train_step(dataclasses.replace(config, weight_decay=0.0))
    state = init_state(params, make_shared_decay_optimizer(config), config)
    keys = run_keys(config.seed)
    tokens, mask = jax.numpy.asarray(train.tokens), jax.numpy.asarray(train.mask)

    steps, train_losses, val_losses = [], [], []
    for step in range(config.num_steps):
        # Same data order and dropout key per step as fit, so both runs take the same updates.
        epoch, position = divmod(step, len(train))
        if position == 0:
            order = epoch_order(jax.random.fold_in(keys["data"], epoch), len(train))
        index = int(order[position])
        state, _ = train_step(state, tokens[index], mask[index], jax.random.fold_in(keys["dropout"], step))

        done = step + 1
        if done % eval_every == 0 or done == config.num_steps:
            steps.append(done)
            # evaluate never applies dropout; the host waits for the device inside it.
            train_losses.append(evaluate(state.params, train, eval_batches)["loss"])
            val_losses.append(evaluate(state.params, val, eval_batches)["loss"])
    return Curves(np.array(steps), np.array(train_losses), np.array(val_losses), state.params)


def summarize_curves(label: str, curves: Curves) -> str:
    """Summarize a run in one line: final train and validation loss, their gap, and the best validation loss."""
    best = int(np.argmin(curves.val_loss))
    return (
        f"{label}: train {curves.train_loss[-1]:.4f} | val {curves.val_loss[-1]:.4f} | "
        f"gap {curves.gap:.4f} | best val {curves.val_loss[best]:.4f} at step {curves.step[best]}"
    )


def plot_curve_grid(runs: Mapping[str, Curves], *, ncols: int = 2) -> Figure:
    """Plot one panel per run, train and validation loss against updates, all panels on the same y range."""
    if not runs:
        raise ValueError("runs is empty; pass at least one label -> Curves")
    nrows = math.ceil(len(runs) / ncols)
    fig = Figure(figsize=(5.0 * ncols, 3.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax, (label, curves) in zip(axes, runs.items()):
        ax.plot(curves.step, curves.train_loss, marker="o", ms=3, label="train (no dropout)")
        ax.plot(curves.step, curves.val_loss, marker="o", ms=3, label="validation")
        ax.fill_between(curves.step, curves.train_loss, curves.val_loss, color="C3", alpha=0.12)
        ax.set_title(f"{label}: final gap {curves.gap:.3f} nats")
        ax.grid(alpha=0.3)
    for ax in axes[len(runs):]:
        ax.set_visible(False)
    for ax in axes[-ncols:]:
        ax.set_xlabel("update")
    for ax in axes[::ncols]:
        ax.set_ylabel("loss (nats)")
    axes[0].legend()
    return fig


def regularization_view(
    dropout_rate: float,
    weight_decay: float,
    *,
    params: dict,
    train: Batches,
    val: Batches,
    config: TrainConfig,
    baseline: Curves,
    cache: MutableMapping | None = None,
    eval_every: int = 25,
    eval_batches: int = 8,
):
    """Train with the chosen dropout rate and weight decay and plot the run beside `baseline`.

    Args:
        dropout_rate: in [0, 1).
        weight_decay: >= 0, AdamW's decoupled decay coefficient.
        params, train, val: as for `train_with_curves`.
        config: every other setting; `dropout_rate` and `weight_decay` are replaced.
        baseline: the run without either regulariser, drawn dashed.
        cache: optional dict from ``(dropout_rate, weight_decay)`` to `Curves`;
            a run found there is reused and a new run is stored in it. The
            result is the same either way, because a run is deterministic.
        eval_every, eval_batches: as for `train_with_curves`.

    Returns:
        ``(figure, summary)``.
    """
    run_config = dataclasses.replace(config, dropout_rate=float(dropout_rate), weight_decay=float(weight_decay))
    key = (run_config.dropout_rate, run_config.weight_decay)
    if cache is not None and key in cache:
        curves = cache[key]
    else:
        curves = train_with_curves(params, train, val, run_config, eval_every=eval_every, eval_batches=eval_batches)
        if cache is not None:
            cache[key] = curves

    label = f"dropout {dropout_rate:g}, weight decay {weight_decay:g}"
    fig, (ax,) = new_figure(width=7.0, height=3.8)
    ax.plot(baseline.step, baseline.train_loss, "--", color="0.55", label="no regularisation: train")
    ax.plot(baseline.step, baseline.val_loss, "-", color="0.55", label="no regularisation: validation")
    ax.plot(curves.step, curves.train_loss, "--", color="C0", marker="o", ms=3, label=f"{label}: train")
    ax.plot(curves.step, curves.val_loss, "-", color="C3", marker="o", ms=3, label=f"{label}: validation")
    title = f"gap {curves.gap:.3f} nats (no regularisation: {baseline.gap:.3f})"
    ax.set(xlabel="update", ylabel="loss (nats)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    summary = "\n".join([summarize_curves("no regularisation", baseline), summarize_curves(label, curves)])
    return fig, summary


def regularization_explorer(
    params: dict, train: Batches, val: Batches, config: TrainConfig, baseline: Curves, cache=None
):
    """Build sliders for the dropout rate and the weight decay, and a Run button.

    Each run trains ``config.num_steps`` updates; `cache` is passed to `regularization_view`.
    """
    import ipywidgets as widgets

    def view(dropout_rate, weight_decay):
        return regularization_view(
            dropout_rate,
            weight_decay,
            params=params,
            train=train,
            val=val,
            config=config,
            baseline=baseline,
            cache=cache,
        )

    controls = {
        "dropout_rate": widgets.FloatSlider(value=0.3, min=0.0, max=0.7, step=0.05, description="dropout"),
        "weight_decay": widgets.FloatSlider(value=1.0, min=0.0, max=3.0, step=0.1, description="weight decay"),
    }
    return experiment(
        view,
        controls,
        run_button=True,
        description=f"Pick a dropout rate and a weight decay, then press Run ({config.num_steps} updates, seconds)",
    )


def train_bigram_embeddings(params: dict, windows, decay_mask, *, learning_rate: float, weight_decay: float) -> dict:
    """Train a bigram model ``logits = embed[x] @ W + b`` with AdamW, one update per window.

    An embedding row gets a nonzero gradient only in updates whose window
    contains its character, as in the full model. The updates run inside one
    `jax.lax.scan`, so they compile once.

    Args:
        params: ``{"embed": (V, E), "head": {"W": (E, V), "b": (V,)}}``.
        windows: ``(S, L + 1)`` int token ids, one window of text per update;
            inputs ``[:, :-1]``, targets ``[:, 1:]``.
        decay_mask: a pytree of bools shaped like `params`, or a function of
            the params returning one (as `optax.adamw` takes it); True decays.
        learning_rate: constant AdamW rate.
        weight_decay: AdamW's decoupled decay coefficient.

    Returns:
        The parameters after ``S`` updates.
    """
    windows = jnp.asarray(windows)
    if windows.ndim != 2 or not jnp.issubdtype(windows.dtype, jnp.integer):
        raise ValueError(f"windows must be int ids of shape (S, L + 1), got {windows.dtype} {windows.shape}")
    optimizer = optax.adamw(learning_rate, weight_decay=weight_decay, mask=decay_mask)

    def loss_fn(p, window):
        logits = p["embed"][window[:-1]] @ p["head"]["W"] + p["head"]["b"]  # (L, V)
        return cross_entropy(logits[None], window[None, 1:])

    def update(carry, window):
        p, opt_state = carry
        grads = jax.grad(loss_fn)(p, window)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), None

    @jax.jit
    def run(p):
        (p, _), _ = jax.lax.scan(update, (p, optimizer.init(p)), windows)
        return p

    return run(params)
