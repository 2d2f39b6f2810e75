"""Notebook 01's experiment: how the softmax probabilities and the loss of one prediction react to logit scale."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from grulm_edu.losses import token_cross_entropy
from grulm_edu.plots import new_figure, plot_bars
from grulm_edu.widgets import experiment

__all__ = ["EXAMPLE_CHARS", "EXAMPLE_LOGITS", "softmax_loss_view", "softmax_loss_explorer"]

# Scores a model might give the character after "To be, or not to b".
EXAMPLE_CHARS = ("e", "a", "o", "u", "y", " ")
EXAMPLE_LOGITS = (2.0, 0.5, 0.8, -0.5, 0.2, -1.0)


def softmax_loss_view(scale: float = 1.0, target: str = "e"):
    """Return ``(figure, summary)`` for logits ``scale * EXAMPLE_LOGITS`` and the correct `target` character."""
    if target not in EXAMPLE_CHARS:
        raise ValueError(f"target must be one of {EXAMPLE_CHARS}, got {target!r}")
    logits = scale * jnp.asarray(EXAMPLE_LOGITS, jnp.float32)
    index = EXAMPLE_CHARS.index(target)
    probs = np.asarray(jax.nn.softmax(logits))
    loss = float(token_cross_entropy(logits, jnp.asarray(index)))
    fig, (ax,) = new_figure(height=3.0)
    labels = [repr(c) for c in EXAMPLE_CHARS]
    plot_bars(probs, labels, highlight=index, ylabel="probability", ax=ax,
              title=f"scale {scale:g}: p({target!r}) = {probs[index]:.3f}, loss {loss:.3f} nats")
    ax.set_ylim(0, 1)
    summary = f"scale {scale:g} | target {target!r} | p = {probs[index]:.4f} | loss = -log p = {loss:.4f} nats"
    return fig, summary


def softmax_loss_explorer():
    """Slider for the logit scale and a menu for the correct character."""
    import ipywidgets as widgets

    controls = {
        "scale": widgets.FloatSlider(value=1.0, min=0.0, max=10.0, step=0.25, description="scale"),
        "target": widgets.Dropdown(options=EXAMPLE_CHARS, value="e", description="target"),
    }
    return experiment(softmax_loss_view, controls, description="Sharpen or flatten the scores; pick the correct next character")
