"""Notebook 15's experiment: an evaluation pipeline that scores lines of a play, in four variants.

Each line is scored as ``"\\n" + line`` (every character of the line is a
target), in batches of `batch_size` lines padded with id 0 and masked. The
variants differ only in how batches are shaped and moved:

- "pad per batch": each batch is padded to its own longest line, copied from
  NumPy and read back at once. Every new length compiles the function again.
- "fixed length": every batch is padded to the longest line of all, so one
  compile serves them all. Each batch is still copied and waited for.
- "fixed length, on device": as "fixed length", but all batches move to the
  device once and the results come back once, at the end.
- "bucketed": lengths rounded up to a multiple of 16, a middle way that
  compiles a few times and pads less.

Every run builds a fresh jitted function, so its compiles are its own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from grulm_edu.chars import CharTokenizer
from grulm_edu.losses import token_cross_entropy
from grulm_edu.model import forward
from grulm_edu.plots import new_figure
from grulm_edu.widgets import experiment
from grulm_edu.xla_stats import compile_count

__all__ = [
    "VARIANTS",
    "PHASES",
    "PipelineRun",
    "encode_lines",
    "pad_batch",
    "padded_length",
    "make_line_loss_fn",
    "run_pipeline",
    "plot_pipeline_runs",
    "pipeline_view",
    "pipeline_explorer",
]

VARIANTS = ("pad per batch", "fixed length", "fixed length, on device", "bucketed")
PHASES = ("prepare", "transfer", "compile", "run and wait")
BUCKET = 16


@dataclasses.dataclass(frozen=True)
class PipelineRun:
    """Timing and results of one pass of the pipeline over all lines.

    Attributes:
        variant: one of `VARIANTS`.
        seconds: seconds per phase, keyed by `PHASES`: NumPy padding
            ("prepare"), NumPy-to-device copies ("transfer"), calls that
            compiled, including their own run ("compile"), and the other calls
            until their results reached the host ("run and wait").
        total_s: wall-clock seconds of the whole pass.
        compiles: executables the pass's jitted function compiled.
        lengths: the padded length ``T`` of each batch.
        line_losses: ``(num_lines,)`` mean loss in nats per character of each line.
    """

    variant: str
    seconds: dict
    total_s: float
    compiles: int
    lengths: tuple[int, ...]
    line_losses: np.ndarray


def encode_lines(lines: Sequence[str], tokenizer: CharTokenizer) -> list[np.ndarray]:
    """Encode each line as ``"\\n" + line``; characters the tokenizer lacks map to the unknown id."""
    if not lines:
        raise ValueError("lines is empty; give at least one line of text")
    return [tokenizer.encode("\n" + line, errors="replace") for line in lines]


def padded_length(encoded: Sequence[np.ndarray], variant: str, longest: int) -> int:
    """Return the number of targets ``T`` that a batch of `encoded` lines is padded to under `variant`.

    `longest` is the most targets any line of the whole pass has.
    """
    own = max(len(ids) for ids in encoded) - 1
    if variant == "pad per batch":
        return own
    if variant in ("fixed length", "fixed length, on device"):
        return longest
    if variant == "bucketed":
        return -(-own // BUCKET) * BUCKET
    raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")


def pad_batch(encoded: Sequence[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad encoded lines to `length` targets: tokens ``(B, length + 1)`` int32, mask ``(B, length)`` float32."""
    if any(len(ids) - 1 > length for ids in encoded):
        raise ValueError(f"a line has more than length={length} targets; pad to at least the longest line")
    tokens = np.zeros((len(encoded), length + 1), np.int32)
    mask = np.zeros((len(encoded), length), np.float32)
    for row, ids in enumerate(encoded):
        tokens[row, : len(ids)] = ids
        mask[row, : len(ids) - 1] = 1.0
    return tokens, mask


def make_line_loss_fn():
    """Return a fresh jitted ``fn(params, tokens (B, T+1), mask (B, T)) -> (B,)`` summed nats per line."""

    def line_losses(params, tokens, mask):
        logits, _ = forward(params, tokens[:, :-1])
        losses = token_cross_entropy(logits, tokens[:, 1:])
        return jnp.sum(jnp.where(mask > 0, losses, 0.0), axis=1)

    return jax.jit(line_losses)


def run_pipeline(variant: str, params: dict, lines: Sequence[str], tokenizer: CharTokenizer, batch_size: int = 16) -> PipelineRun:
    """Score every line once with the `variant` pipeline and time each phase (see `PipelineRun`)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    encoded = encode_lines(lines, tokenizer)
    groups = [encoded[i : i + batch_size] for i in range(0, len(encoded), batch_size)]
    longest = max(len(ids) for ids in encoded) - 1
    line_loss_fn = make_line_loss_fn()
    seconds = dict.fromkeys(PHASES, 0.0)
    results = []
    start_pass = time.perf_counter()

    def timed(phase, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        seconds[phase] += time.perf_counter() - start
        return out

    # Pad every batch with NumPy first.
    batches = timed("prepare", lambda: [pad_batch(g, padded_length(g, variant, longest)) for g in groups])

    if variant == "fixed length, on device":
        # One copy of everything, calls that only queue work, one wait at the end.
        on_device = timed("transfer", lambda: jax.block_until_ready(jax.device_put(batches)))
        for tokens, mask in on_device:
            before = compile_count(line_loss_fn)
            start = time.perf_counter()
            out = line_loss_fn(params, tokens, mask)
            if compile_count(line_loss_fn) > before:
                jax.block_until_ready(out)  # charge the compiling call's run to it
                seconds["compile"] += time.perf_counter() - start
            else:
                seconds["run and wait"] += time.perf_counter() - start
            results.append(out)
        results = timed("run and wait", jax.device_get, results)  # the host waits for the device here
    else:
        for tokens, mask in batches:
            device_batch = timed("transfer", lambda: jax.block_until_ready(jax.device_put((tokens, mask))))
            before = compile_count(line_loss_fn)
            start = time.perf_counter()
            # np.asarray makes the host wait for this batch's result.
            results.append(np.asarray(line_loss_fn(params, *device_batch)))
            phase = "compile" if compile_count(line_loss_fn) > before else "run and wait"
            seconds[phase] += time.perf_counter() - start

    total_s = time.perf_counter() - start_pass
    counts = np.array([len(ids) - 1 for ids in encoded], np.float64)
    summed = np.concatenate([np.asarray(r, np.float64) for r in results])
    return PipelineRun(
        variant=variant,
        seconds=seconds,
        total_s=total_s,
        compiles=compile_count(line_loss_fn),
        lengths=tuple(int(mask.shape[1]) for _, mask in batches),
        line_losses=summed / counts,
    )


def plot_pipeline_runs(runs: Mapping[str, PipelineRun]):
    """Stacked horizontal bars: each run's seconds per phase, with its compile count."""
    fig, (ax,) = new_figure(width=9.0, height=1.3 + 0.6 * len(runs))
    labels = list(runs)
    left = np.zeros(len(labels))
    for i, phase in enumerate(PHASES):
        widths = np.array([runs[label].seconds[phase] for label in labels])
        ax.barh(labels, widths, left=left, color=f"C{i}", label=phase)
        left += widths
    for row, label in enumerate(labels):
        ax.text(left[row], row, f"  {runs[label].compiles} compile(s)", va="center", fontsize=9)
    ax.set_xlim(0, left.max() * 1.35)
    ax.invert_yaxis()
    ax.set(xlabel="seconds on this run", title="Where the time of one pass goes")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return fig


def pipeline_view(
    variant: str = "fixed length, on device",
    *,
    params: dict,
    lines: Sequence[str],
    tokenizer: CharTokenizer,
    batch_size: int = 16,
    measured: PipelineRun | None = None,
):
    """Run the `variant` pipeline once; return ``(figure, summary)`` with its time per phase.

    A `measured` run of the same variant is shown as it is instead of running again.
    """
    if measured is not None and measured.variant == variant:
        run = measured
    else:
        run = run_pipeline(variant, params, lines, tokenizer, batch_size)
    parts = " | ".join(f"{phase} {run.seconds[phase]:.3f} s" for phase in PHASES)
    summary = (
        f"{variant}: {run.total_s:.3f} s for {len(run.line_losses)} lines in {len(run.lengths)} batches, "
        f"{run.compiles} compile(s), {len(set(run.lengths))} distinct length(s)\n{parts}"
    )
    return plot_pipeline_runs({variant: run}), summary


def pipeline_explorer(
    params: dict, lines: Sequence[str], tokenizer: CharTokenizer, batch_size: int = 16, measured: PipelineRun | None = None
):
    """Build a menu of pipeline variants and a Run button; each run compiles afresh.

    The first view shows `measured` when it is a run of the default variant.
    """
    import ipywidgets as widgets

    pending = {"measured": measured}

    def view(variant):
        reuse, pending["measured"] = pending["measured"], None
        return pipeline_view(variant, params=params, lines=lines, tokenizer=tokenizer, batch_size=batch_size, measured=reuse)

    controls = {"variant": widgets.Dropdown(options=VARIANTS, value="fixed length, on device", description="variant")}
    return experiment(view, controls, run_button=True, description=f"Pick a pipeline and Run: {len(lines)} lines, one pass")
