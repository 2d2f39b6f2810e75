"""Notebook 13's experiment: step time and memory of one train step per precision and model size.

`measure_train_step` compiles `grulm_edu.training.make_train_step` for one
`TrainConfig` and model size on a batch of random token ids, reads XLA's
memory analysis of the compiled step and times it with `time_fn`. The compiled step
is kept per setting, so a repeated setting compiles once but is timed afresh.
`measure_train_steps` times several precisions in interleaved passes, so that
a burst of load from other processes slows all of them alike. The Run button
starts a measurement; the first view can show costs measured before.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
import time
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from grulm_edu.model import ModelConfig, init_params
from grulm_edu.plots import new_figure
from grulm_edu.precision import PRECISIONS
from grulm_edu.profiling import time_fn
from grulm_edu.training import TrainConfig, init_state, make_optimizer, make_train_step
from grulm_edu.widgets import experiment
from grulm_edu.xla_stats import compile_fn, memory_analysis

__all__ = [
    "HIDDEN_SIZES",
    "StepCost",
    "default_config",
    "measure_train_step",
    "measure_train_steps",
    "plot_step_costs",
    "precision_cost_view",
    "precision_cost_explorer",
]

HIDDEN_SIZES = (64, 128, 256, 512)
MB = 1e6


@dataclasses.dataclass(frozen=True)
class StepCost:
    """The cost of one train step at one precision and model size.

    Attributes:
        precision: "float32", "bfloat16" or "float16".
        model_config: the model's sizes.
        batch_size, seq_len: the batch shape ``(B, T)``.
        compile_s: seconds to compile the step (measured once per setting).
        step_s: median seconds per step, after warm-up.
        best_s: seconds per step of the fastest round, the one least
            disturbed by other processes on a shared machine.
        param_bytes: bytes of the float32 parameters.
        argument_bytes: bytes of the step's inputs: parameters, optimizer state, batch.
        temp_bytes: bytes of XLA's temporaries, which hold the activations kept for the backward pass.
    """

    precision: str
    model_config: ModelConfig
    batch_size: int
    seq_len: int
    compile_s: float
    step_s: float
    best_s: float
    param_bytes: int
    argument_bytes: int
    temp_bytes: int

    @property
    def tokens_per_s(self) -> float:
        """Tokens per second at the fastest round's step time."""
        return self.batch_size * self.seq_len / self.best_s


@functools.lru_cache(maxsize=16)
def _compiled_step(config: TrainConfig, model_config: ModelConfig, seed: int):
    """Compile one train step; returns ``(compiled, args, compile seconds, param bytes)``."""
    optimizer = make_optimizer(config)
    key_init, key_data, key_dropout = jax.random.split(jax.random.key(seed), 3)
    params = init_params(key_init, model_config)
    state = init_state(params, optimizer, config)
    # Timing and memory depend on the shapes only, so random ids do.
    tokens = jax.random.randint(key_data, (config.batch_size, config.seq_len + 1), 0, model_config.vocab_size)
    mask = jnp.ones((config.batch_size, config.seq_len), jnp.float32)
    args = (state, tokens, mask, key_dropout)
    start = time.perf_counter()
    compiled = compile_fn(make_train_step(config, optimizer), *args)
    compile_s = time.perf_counter() - start
    param_bytes = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(params))
    return compiled, args, compile_s, param_bytes


def default_config(precision: str, batch_size: int = 16, seq_len: int = 64) -> TrainConfig:
    """Return the `TrainConfig` the widget measures: a ``(batch_size, seq_len)`` batch at `precision`."""
    return TrainConfig(batch_size=batch_size, seq_len=seq_len, num_steps=100, warmup_steps=10, precision=precision)


def measure_train_step(config: TrainConfig, model_config: ModelConfig, *, repeats: int = 5, seed: int = 0) -> StepCost:
    """Compile (once per setting) and time the train step of `config`; read its XLA memory analysis.

    The batch is ``(config.batch_size, config.seq_len)`` random token ids and
    the parameters are initialised from `seed`: the cost depends on the shapes only.
    """
    compiled, args, compile_s, param_bytes = _compiled_step(config, model_config, seed)
    memory = memory_analysis(compiled)
    timing = time_fn(compiled, *args, repeats=repeats)
    return StepCost(
        precision=config.precision,
        model_config=model_config,
        batch_size=config.batch_size,
        seq_len=config.seq_len,
        compile_s=compile_s,
        step_s=timing["median_s"],
        best_s=timing["min_s"],
        param_bytes=param_bytes,
        argument_bytes=memory.argument_bytes if memory else 0,
        temp_bytes=memory.temp_bytes if memory else 0,
    )


def measure_train_steps(
    configs: Sequence[TrainConfig], model_config: ModelConfig, *, passes: int = 3, repeats: int = 3, seed: int = 0
) -> dict[str, StepCost]:
    """Measure the train step of each config in `passes` interleaved passes; returns costs keyed by precision.

    Each pass times every config once (`measure_train_step` with `repeats`
    rounds), so load from other processes that comes and goes falls on all of
    them alike. A config's ``best_s`` is its fastest round over all passes and
    its ``step_s`` the median of the passes' medians.
    """
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"passes must be a positive int, got {passes!r}")
    precisions = [c.precision for c in configs]
    if len(set(precisions)) != len(precisions):
        raise ValueError(f"give one config per precision, got precisions {precisions}")
    samples = {c.precision: [] for c in configs}
    for _ in range(passes):
        for config in configs:
            samples[config.precision].append(measure_train_step(config, model_config, repeats=repeats, seed=seed))
    return {
        precision: dataclasses.replace(
            runs[0],
            step_s=statistics.median(run.step_s for run in runs),
            best_s=min(run.best_s for run in runs),
        )
        for precision, runs in samples.items()
    }


def plot_step_costs(costs: Sequence[StepCost]):
    """Bars of milliseconds per step (left) and megabytes of arguments and temporaries (right)."""
    fig, (ax_time, ax_memory) = new_figure(ncols=2, width=10.0, height=3.6)
    labels = [c.precision for c in costs]
    positions = np.arange(len(costs))
    colors = [f"C{i}" for i in range(len(costs))]
    ax_time.bar(positions, [1e3 * c.best_s for c in costs], color=colors, label="fastest round")
    ax_time.plot(positions, [1e3 * c.step_s for c in costs], "k_", markersize=30, label="median")
    ax_time.set_xticks(positions, labels)
    ax_time.set(ylabel="ms per train step", title="Step time on this run")
    ax_time.set_ylim(0, 1.3 * max(1e3 * c.step_s for c in costs))
    ax_time.legend(loc="upper center", ncol=2, fontsize=8)
    arguments = np.array([c.argument_bytes for c in costs]) / MB
    temps = np.array([c.temp_bytes for c in costs]) / MB
    ax_memory.bar(positions, arguments, color="C7", label="arguments (params, optimizer state, batch)")
    ax_memory.bar(positions, temps, bottom=arguments, color="C9", label="temporaries (activations)")
    ax_memory.set_xticks(positions, labels)
    ax_memory.set(ylabel="MB", title="XLA memory analysis of the step")
    ax_memory.set_ylim(0, 1.3 * max(arguments + temps))
    ax_memory.legend(loc="upper center", fontsize=8)
    config = costs[0].model_config
    fig.suptitle(
        f"V={config.vocab_size}, E={config.embed_size}, H={config.hidden_size}, "
        f"batch {costs[0].batch_size} x {costs[0].seq_len}"
    )
    return fig


def precision_cost_view(
    hidden_size: int = 128,
    precisions: Sequence[str] = tuple(PRECISIONS),
    *,
    measured: Mapping[str, StepCost] | None = None,
    vocab_size: int = 80,
    embed_size: int = 64,
    batch_size: int = 16,
    seq_len: int = 64,
    passes: int = 3,
    repeats: int = 3,
):
    """Measure a train step at each of `precisions` for one model size; return ``(figure, summary)``.

    Args:
        hidden_size: ``H`` of the model.
        precisions: names from `grulm_edu.precision.PRECISIONS`.
        measured: costs measured before, keyed by precision. An entry with the
            same model and batch shape is shown as it is, not measured again.
        vocab_size, embed_size: ``V`` and ``E`` of the model.
        batch_size, seq_len: the batch shape ``(B, T)``.
        passes, repeats: see `measure_train_steps`.

    The summary has one line per precision, with its ratio to float32 when
    float32 is among `precisions`.
    """
    precisions = tuple(precisions)
    if not precisions:
        raise ValueError("precisions is empty; pick at least one of " + ", ".join(PRECISIONS))
    for precision in precisions:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    model_config = ModelConfig(vocab_size, embed_size, hidden_size)

    # Reuse earlier measurements of the same model and batch shape.
    costs = {
        precision: cost
        for precision, cost in (measured or {}).items()
        if precision in precisions and (cost.model_config, cost.batch_size, cost.seq_len) == (model_config, batch_size, seq_len)
    }
    missing = [default_config(p, batch_size, seq_len) for p in precisions if p not in costs]
    if missing:
        costs.update(measure_train_steps(missing, model_config, passes=passes, repeats=repeats))
    costs = [costs[p] for p in precisions]

    # One line per precision, compared with float32 when it is there.
    base = costs[precisions.index("float32")] if "float32" in precisions else None
    lines = []
    for c in costs:
        line = (
            f"{c.precision:8s}: {1e3 * c.best_s:7.2f} ms/step fastest, {1e3 * c.step_s:7.2f} median | "
            f"params {c.param_bytes / MB:.3f} MB, arguments {c.argument_bytes / MB:.3f} MB, "
            f"temporaries {c.temp_bytes / MB:.3f} MB"
        )
        if base is not None and c is not base:
            temp_ratio = c.temp_bytes / base.temp_bytes if base.temp_bytes else math.nan
            line += f" | speed {base.best_s / c.best_s:.2f}x float32, temporaries {temp_ratio:.2f}x"
        lines.append(line)
    return plot_step_costs(costs), "\n".join(lines)


def precision_cost_explorer(measured: Mapping[str, StepCost] | None = None, **sizes):
    """Build a hidden-size menu, a precision multi-select and a Run button; each new setting compiles once.

    The first view shows `measured` (see `precision_cost_view`) at its hidden
    size; every Run measures again. `sizes` go to `precision_cost_view`.
    """
    import ipywidgets as widgets

    pending = {"measured": measured}

    def view(hidden_size, precisions):
        reuse, pending["measured"] = pending["measured"], None
        return precision_cost_view(hidden_size, precisions, measured=reuse, **sizes)

    first_hidden = next(iter(measured.values())).model_config.hidden_size if measured else 128
    controls = {
        "hidden_size": widgets.Dropdown(
            options=sorted({*HIDDEN_SIZES, first_hidden}), value=first_hidden, description="hidden H"
        ),
        "precisions": widgets.SelectMultiple(
            options=tuple(PRECISIONS), value=tuple(PRECISIONS), description="precisions", rows=3
        ),
    }
    return experiment(
        view,
        controls,
        run_button=True,
        description="Pick a hidden size and precisions, then Run (a new setting compiles a train step: seconds)",
    )
