"""Notebook 07's experiment: compile time and step time of the GRU forward loss at one sequence length.

The callback compiles from scratch, on every call, `lax.scan` with one time
step per loop iteration, `lax.scan` with the chosen `unroll`, and (for short
sequences only) the jitted Python loop, then times each compiled function.
It compiles up to three functions, so the widget runs on a button press.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from grulm_edu.plots import new_figure
from grulm_edu.scan_lessons import compile_and_time, count_equations, make_loss
from grulm_edu.widgets import experiment

__all__ = ["LOOP_MAX_LEN", "scan_timing_view", "scan_timing_explorer"]

# The jitted loop's compile time grows with T (several seconds at T = 32 on a
# 2-core CPU), so the widget compiles it only up to this length.
LOOP_MAX_LEN = 32


def scan_timing_view(seq_len: int, unroll: int, *, params: dict, tokens, loop_max_len: int = LOOP_MAX_LEN):
    """Compile and time the forward loss on ``tokens[:, :seq_len + 1]`` for each way of walking time.

    Args:
        seq_len: ``T``, the number of time steps, at least 1.
        unroll: time steps per iteration of the second scan's compiled loop.
        params: model parameters (`grulm_edu.model.init_params`).
        tokens: ``(B, T_max + 1)`` token ids with ``T_max >= seq_len``.
        loop_max_len: the jitted Python loop is compiled only when ``seq_len`` is at most this.

    Returns:
        ``(figure, summary)``: bars of compile seconds and milliseconds per
        step (the fastest of 7 rounds of 10 calls), and one line per variant
        with its jaxpr size.
    """
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape (B, T_max + 1), got {tokens.shape}")
    max_len = tokens.shape[1] - 1
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or not 1 <= seq_len <= max_len:
        raise ValueError(f"seq_len must be an int in [1, {max_len}] (the tokens' length minus 1), got {seq_len!r}")
    if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
        raise ValueError(f"unroll must be a positive int, got {unroll!r}")
    batch = tokens[:, : seq_len + 1]

    variants = {"scan, unroll 1": make_loss("scan")}
    if unroll > 1:
        variants[f"scan, unroll {unroll}"] = make_loss("scan", unroll=unroll)
    if seq_len <= loop_max_len:
        variants["jitted loop"] = make_loss("loop")
    results = {}
    for label, loss in variants.items():
        timing = compile_and_time(loss, params, batch, repeats=7, number=10)
        timing["equations"] = count_equations(loss, params, batch)
        results[label] = timing

    fig, (ax_compile, ax_step) = new_figure(ncols=2, width=9.0, height=3.2)
    labels = list(results)
    positions = np.arange(len(labels))
    ax_compile.bar(positions, [r["compile_s"] for r in results.values()], color=[f"C{i}" for i in positions])
    ax_step.bar(positions, [r["min_step_s"] * 1e3 for r in results.values()], color=[f"C{i}" for i in positions])
    ax_compile.set(ylabel="compile time (s)", title=f"T = {seq_len}, B = {batch.shape[0]}")
    ax_step.set(ylabel="ms per forward loss", title="step time (fastest of 7 rounds)")
    for ax in (ax_compile, ax_step):
        ax.set_xticks(positions, labels, rotation=15)
        ax.grid(alpha=0.3, axis="y")
    lines = [
        f"{label:15s}: compile {r['compile_s']:.2f} s | step {r['min_step_s'] * 1e3:.3f} ms "
        f"| {r['equations']} jaxpr equations"
        for label, r in results.items()
    ]
    if seq_len > loop_max_len:
        lines.append(f"jitted loop skipped: T = {seq_len} is above {loop_max_len}, where its compile time gets long")
    return fig, "\n".join(lines)


def scan_timing_explorer(params: dict, tokens, *, seq_len: int = 64, unroll: int = 8, loop_max_len: int = LOOP_MAX_LEN):
    """Build sliders for the sequence length and the unroll factor, and a Run button.

    Args:
        params, tokens, loop_max_len: as for `scan_timing_view`.
        seq_len, unroll: the sliders' starting values.
    """
    import ipywidgets as widgets

    max_len = int(np.shape(tokens)[1]) - 1
    lengths = [t for t in (4, 8, 16, 32, 64, 128, 256, 512) if t <= max_len]
    unrolls = [1, 2, 4, 8, 16]
    if seq_len not in lengths or unroll not in unrolls:
        raise ValueError(f"seq_len must be one of {lengths} and unroll one of {unrolls}, got {seq_len} and {unroll}")
    def view(seq_len, unroll):
        return scan_timing_view(seq_len, unroll, params=params, tokens=tokens, loop_max_len=loop_max_len)

    controls = {
        "seq_len": widgets.SelectionSlider(options=lengths, value=seq_len, description="T"),
        "unroll": widgets.SelectionSlider(options=unrolls, value=unroll, description="unroll"),
    }
    return experiment(
        view,
        controls,
        run_button=True,
        description=(
            f"Pick T and the unroll factor, then press Run "
            f"(compiles 2 or 3 functions; the loop only for T <= {loop_max_len})"
        ),
    )
