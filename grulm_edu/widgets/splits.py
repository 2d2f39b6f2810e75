"""Notebook 08's experiment: how much a validation loss on freshly sampled windows varies.

`fresh_validation_losses` evaluates the same parameters on several fresh
samples of random windows (`grulm_edu.pipelines.random_windows`). A fixed,
precomputed validation split removes the spread of those losses. The
callback evaluates ``repeats`` samples, so the widget runs on a button press.
"""

from __future__ import annotations

import jax
import numpy as np

from grulm_edu.pipelines import random_windows
from grulm_edu.plots import new_figure
from grulm_edu.training import evaluate
from grulm_edu.widgets import experiment

__all__ = ["WINDOW_COUNTS", "fresh_validation_losses", "validation_spread_view", "validation_spread_explorer"]

WINDOW_COUNTS = (4, 8, 16, 32, 64, 128, 256, 512)
# Half the histogram's x range, in nats; it widens when a loss falls outside.
_HALF_WIDTH = 0.2


def fresh_validation_losses(
    params: dict, ids, num_windows: int, seq_len: int, repeats: int, key: jax.Array
) -> np.ndarray:
    """Evaluate `params` on `repeats` fresh samples of `num_windows` random windows; returns ``(repeats,)`` losses.

    Sample ``i`` is drawn with ``jax.random.fold_in(key, i)``; each loss is the
    token-weighted mean over its sample (`grulm_edu.training.evaluate`).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        raise ValueError(f"repeats must be an int >= 2 (a spread needs two evaluations), got {repeats!r}")
    losses = []
    for i in range(repeats):
        sample = random_windows(ids, num_windows, seq_len, jax.random.fold_in(key, i))
        losses.append(evaluate(params, sample)["loss"])
    return np.array(losses)


def validation_spread_view(
    num_windows: int, *, params: dict, ids, seq_len: int, fixed_loss: float, key: jax.Array, repeats: int = 20
):
    """Plot the losses of `repeats` fresh validation samples of `num_windows` windows against the fixed split's loss.

    Args:
        num_windows: windows per fresh sample.
        params: the model's parameters; the same for every evaluation.
        ids: 1-D token ids of the validation text.
        seq_len: ``T``, targets per window.
        fixed_loss: the loss on the whole precomputed validation split.
        key: PRNG key; folded with `num_windows`, so each size gets its own samples.
        repeats: fresh samples to evaluate.

    Returns:
        ``(figure, summary)``.
    """
    losses = fresh_validation_losses(params, ids, num_windows, seq_len, repeats, jax.random.fold_in(key, num_windows))
    std = float(losses.std(ddof=1))

    # The same x range for every window count, so the histograms compare at a glance.
    half_width = max(_HALF_WIDTH, float(np.abs(losses - fixed_loss).max()) * 1.05)
    edges = np.linspace(fixed_loss - half_width, fixed_loss + half_width, 41)
    fig, (ax,) = new_figure(height=3.2)
    ax.hist(losses, bins=edges, color="C1", alpha=0.8, label=f"{repeats} fresh samples of {num_windows} windows")
    ax.axvline(fixed_loss, color="k", lw=2, label=f"fixed split: {fixed_loss:.4f}, the same every time")
    ax.set(xlabel="validation loss (nats per character)", ylabel="evaluations",
           title=f"{num_windows} windows of {seq_len} targets: std {std:.4f}")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    summary = (
        f"{num_windows} windows x {repeats} fresh samples: mean {losses.mean():.4f}, std {std:.4f}, "
        f"range {losses.min():.4f} to {losses.max():.4f} | fixed split {fixed_loss:.4f}, std 0"
    )
    return fig, summary


def validation_spread_explorer(
    params: dict,
    ids,
    seq_len: int,
    fixed_loss: float,
    key: jax.Array,
    *,
    num_windows: int = 64,
    repeats: int = 20,
):
    """Build a slider for the number of windows per sample, and a Run button.

    Args:
        params, ids, seq_len, fixed_loss, key, repeats: as for `validation_spread_view`.
        num_windows: the slider's starting value, one of `WINDOW_COUNTS`.
    """
    import ipywidgets as widgets

    if num_windows not in WINDOW_COUNTS:
        raise ValueError(f"num_windows must be one of {WINDOW_COUNTS}, got {num_windows!r}")
    def view(num_windows):
        return validation_spread_view(
            num_windows, params=params, ids=ids, seq_len=seq_len, fixed_loss=fixed_loss, key=key, repeats=repeats
        )

    controls = {"num_windows": widgets.SelectionSlider(options=WINDOW_COUNTS, value=num_windows, description="windows")}
    return experiment(
        view,
        controls,
        run_button=True,
        description=f"Pick how many random windows each evaluation uses, then press Run ({repeats} evaluations)",
    )
