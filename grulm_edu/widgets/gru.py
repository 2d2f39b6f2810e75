"""Notebook 03's experiment: the update and reset gates of the shipped model over a line of text."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from grulm_edu.embedding_analysis import pca
from grulm_edu.rnn_variants import gate_activations
from grulm_edu.widgets import experiment

__all__ = ["DEFAULT_LINE", "MAX_CHARS", "line_gates", "top_variance_units", "gate_heatmap_view", "gate_explorer"]

DEFAULT_LINE = "To be, or not to be: that is the question:"
MAX_CHARS = 120
# Lines are padded to a multiple of this length, so typing a new line reuses a
# compiled scan instead of compiling one per length. Padding comes after the
# text and a GRU is causal, so it cannot change the gates of the real characters.
_PAD_TO = 32


@functools.lru_cache(maxsize=1)
def _pretrained():
    from grulm_edu.checkpoint import load_pretrained

    checkpoint = load_pretrained()
    return checkpoint.params, checkpoint.tokenizer


def line_gates(text: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run the shipped model over `text` from a zero state and return ``(ids (T,), gates)``.

    ``gates`` maps ``"r"``, ``"z"``, ``"n"`` and ``"h"`` to ``(T, H)`` arrays
    (see `grulm_edu.rnn_variants.gate_activations`). Characters outside the
    vocabulary get the unknown id 0.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not 1 <= len(text) <= MAX_CHARS:
        raise ValueError(f"text must have 1 to {MAX_CHARS} characters, got {len(text)}; shorten it or type a line")
    params, tokenizer = _pretrained()
    ids = tokenizer.encode(text, errors="replace")
    padded = np.zeros(-(-len(ids) // _PAD_TO) * _PAD_TO, np.int32)
    padded[: len(ids)] = ids
    gates = gate_activations(params, jnp.asarray(padded)[None])
    return ids, {name: np.asarray(value[0, : len(ids)]) for name, value in gates.items()}


def top_variance_units(values, count: int) -> np.ndarray:
    """Return the indices of the `count` columns of ``values (T, H)`` with the largest variance over time.

    The indices come largest variance first.
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"values must have shape (T, H), got {values.shape}")
    if not 1 <= count <= values.shape[1]:
        raise ValueError(f"count must be in [1, {values.shape[1]}], got {count}")
    return np.argsort(-values.var(axis=0), kind="stable")[:count]


def gate_heatmap_view(text: str = DEFAULT_LINE, units: int = 32):
    """Return ``(figure, summary)``: heatmaps of the update gate z and the reset gate r over `text`.

    Each heatmap shows, for the `units` hidden units whose gate varies most
    over this text, the gate value (0 to 1) at every character. The rows are
    ordered by each unit's coordinate on the first principal component of
    those units' gate values over time.
    """
    ids, gates = line_gates(text)
    labels = [{" ": "\u2423"}.get(c, c) if i else "?" for c, i in zip(text, ids)]

    width = min(16.0, 3.0 + 0.22 * len(text))
    fig = Figure(figsize=(width, 2.0 + 0.09 * units * 2), layout="constrained")
    axes = fig.subplots(2, 1)
    lines = [f"{len(text)} characters from a zero state"]
    titles = ("update gate z (1 keeps the old state)", "reset gate r (0 hides h from the candidate)")
    for ax, name, title in zip(axes, ("z", "r"), titles):
        values = gates[name]  # (T, H)
        chosen = top_variance_units(values, units)
        # Order the chosen units by their first principal component over time,
        # so that units that open and close together sit next to each other.
        chosen = chosen[np.argsort(pca(values[:, chosen].T, 1)[0][:, 0], kind="stable")]
        image = ax.imshow(values[:, chosen].T, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0,
                          interpolation="nearest")
        ax.set_xticks(range(len(labels)), labels, fontsize=9)
        ax.set_yticks(range(len(chosen)), [str(u) for u in chosen], fontsize=6 if units > 16 else 8)
        ax.set(ylabel="hidden unit", title=f"{title}: the {units} units that vary most")
        lines.append(
            f"{name}: mean {values.mean():.3f}, share above 0.9 {np.mean(values > 0.9):.3f}, "
            f"share below 0.1 {np.mean(values < 0.1):.3f}"
        )
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="gate value")
    unknown = sorted({c for c, i in zip(text, ids) if i == 0})
    if unknown:
        lines.append(f"outside the vocabulary (shown as '?', read as the unknown id): {''.join(unknown)!r}")
    return fig, "\n".join(lines)


def gate_explorer():
    """Build the widget: a text box for a line and a slider for the number of units.

    The heatmaps update on Enter or when the text box loses focus.
    """
    import ipywidgets as widgets

    controls = {
        "text": widgets.Text(value=DEFAULT_LINE, description="line", layout=widgets.Layout(width="70%")),
        "units": widgets.IntSlider(value=32, min=8, max=64, step=8, description="units"),
    }
    description = "Type a line and press Enter: the gates at every character"
    return experiment(gate_heatmap_view, controls, description=description)
