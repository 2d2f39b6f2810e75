"""Notebook 05's experiment: sample from a trained model with a chosen prompt, temperature, top-k and length.

`generate` compiles once per (prompt length, length, top-k). The first run of
a new combination therefore takes longer than a repeat (about a second on a
2-core CPU), so the widget waits for its Run button.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from grulm_edu.generation import generate
from grulm_edu.model import forward
from grulm_edu.plots import new_figure
from grulm_edu.sampling_stats import character_entropy, distinct_ngram_ratio, sampling_distribution
from grulm_edu.widgets import experiment

__all__ = ["TOP_K_CHOICES", "generation_view", "generation_explorer"]

TOP_K_CHOICES = (("all", None), ("1", 1), ("2", 2), ("3", 3), ("5", 5), ("10", 10), ("20", 20), ("40", 40))


def generation_view(
    prompt: str = "ROMEO:\n",
    temperature: float = 0.8,
    top_k: int | None = None,
    length: int = 160,
    seed: int = 0,
    *,
    checkpoint,
    num_bars: int = 15,
):
    """Sample `length` characters after `prompt` and show the distribution of the first one.

    Args:
        prompt: text the model reads first; every character must be in the
            checkpoint's vocabulary.
        temperature, top_k: as in `grulm_edu.generation.generate`.
        length: how many characters to sample.
        seed: root of the sampling key, ``jax.random.key(seed)``.
        checkpoint: a loaded `grulm_edu.checkpoint.Checkpoint` (its
            `params` and `tokenizer`).
        num_bars: how many of the most likely next characters to draw.

    Returns:
        ``(figure, summary)``: bars of the next-character probabilities with
        and without this temperature and top-k, and text holding the settings,
        the sample's statistics and the prompt followed by the sample.
    """
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    tokenizer, params = checkpoint.tokenizer, checkpoint.params
    ids = tokenizer.encode(prompt)  # raises ValueError naming characters outside the vocabulary
    sample = generate(params, ids, length, jax.random.key(seed), temperature=temperature, top_k=top_k)
    sample = np.asarray(sample)  # the host waits for the device here

    # The distribution of the first sampled character, before and after temperature and top-k.
    logits, _ = forward(params, jnp.asarray(ids)[None])
    last = np.asarray(logits[0, -1])
    model_probs = sampling_distribution(last, 1.0)
    probs = sampling_distribution(last, temperature, top_k)
    order = np.argsort(-model_probs, kind="stable")[:num_bars]
    labels = [repr(tokenizer.decode([int(i)])) for i in order]
    fig, (ax,) = new_figure(width=7.5, height=3.2)
    positions = np.arange(len(order))
    ax.bar(positions, probs[order], color="C0", label=f"temperature {temperature:g}, top-k {top_k or 'all'}")
    ax.bar(positions, model_probs[order], fill=False, edgecolor="C3", label="model (temperature 1, all)")
    ax.set_xticks(positions, labels)
    top = max(probs[order].max(), model_probs[order].max())
    ax.set(ylim=(0, min(1.0, 1.15 * top)), ylabel="probability", title=f"next character after {prompt[-20:]!r}")
    ax.legend()

    text = tokenizer.decode(sample)
    statistics = (
        f"temperature {temperature:g} | top-k {top_k or 'all'} | seed {seed} | {length} characters | "
        f"character entropy {character_entropy(sample):.2f} bits"
    )
    if length >= 4:
        statistics += f" | distinct 4-grams {distinct_ngram_ratio(sample, 4):.2f}"
    return fig, f"{statistics}\n\n{prompt}{text}"


def generation_explorer(checkpoint):
    """Build prompt, temperature, top-k, length and seed controls with a Run button."""
    import ipywidgets as widgets

    def view(prompt, temperature, top_k, length, seed):
        return generation_view(prompt, temperature, top_k, length, seed, checkpoint=checkpoint)

    controls = {
        "prompt": widgets.Textarea(value="ROMEO:\n", description="prompt", rows=2),
        "temperature": widgets.FloatSlider(value=0.8, min=0.0, max=2.0, step=0.05, description="temperature"),
        "top_k": widgets.Dropdown(options=TOP_K_CHOICES, value=None, description="top-k"),
        "length": widgets.IntSlider(value=160, min=20, max=400, step=20, description="length"),
        "seed": widgets.BoundedIntText(value=0, min=0, max=2**31 - 1, description="seed"),
    }
    return experiment(
        view,
        controls,
        run_button=True,
        description="Sample from the shipped model (a new prompt length, length or top-k compiles once, about a second)",
    )
