"""Notebook 10's experiment: memory of k accumulated micro-batches of size B against one batch of k * B.

Memory comes from XLA's compiled memory analysis (`grulm_edu.memory`), so
each new batch size costs one compile of the train step. That is why a Run
button starts the callback instead of every slider move. The memory of a micro-batch
step does not depend on k: `optax.MultiSteps` keeps one running mean of the
gradients whatever k is, so one accumulating train step stands in for all
k > 1.
"""

from __future__ import annotations

from grulm_edu.memory import MemoryStats, train_step_memory
from grulm_edu.plots import new_figure
from grulm_edu.widgets import experiment

__all__ = ["MICRO_BATCH_SIZES", "ACCUMULATION_STEPS", "megabytes", "accumulation_view", "accumulation_explorer"]

MICRO_BATCH_SIZES = (4, 8, 16, 32, 64, 128, 256)
ACCUMULATION_STEPS = (1, 2, 4, 8, 16)


def megabytes(num_bytes: int) -> float:
    """Bytes in MB (10^6 bytes)."""
    return num_bytes / 1e6


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def accumulation_view(
    k: int,
    micro_batch_size: int,
    *,
    plain_step,
    plain_state,
    accumulating_step,
    accumulating_state,
    seq_len: int,
):
    """Compare the memory of k micro-batches of `micro_batch_size` rows with one batch of ``k * micro_batch_size``.

    Args:
        k: micro-batches per optimizer update (1 means no accumulation).
        micro_batch_size: ``B``, rows per micro-batch.
        plain_step, plain_state: a train step built with ``accumulation_steps=1``
            and its `TrainState`; it runs the single batch of ``k * B`` rows.
        accumulating_step, accumulating_state: a train step built with any
            ``accumulation_steps > 1`` and its state; it runs one micro-batch.
        seq_len: ``T``, targets per row.

    Returns:
        ``(figure, summary)``: stacked bars of arguments + outputs and
        temporaries for both ways of making one update, and one line per way.
        Where XLA reports no memory analysis, the figure is None and the
        summary states that.
    """
    k = _check_positive_int("k", k)
    micro_batch_size = _check_positive_int("micro_batch_size", micro_batch_size)
    effective = k * micro_batch_size
    if k == 1:
        micro = train_step_memory(plain_step, plain_state, micro_batch_size, seq_len)
    else:
        micro = train_step_memory(accumulating_step, accumulating_state, micro_batch_size, seq_len, loss_weight=True)
    whole = train_step_memory(plain_step, plain_state, effective, seq_len)
    header = f"effective batch {k} x {micro_batch_size} = {effective} rows = {effective * seq_len:,} target tokens per update"
    if micro is None or whole is None:
        return None, header + "\nthis backend reports no compiled memory analysis"

    ways: dict[str, MemoryStats] = {f"{k} micro-batches of {micro_batch_size}": micro, f"1 batch of {effective}": whole}
    fig, (ax,) = new_figure(height=3.6)
    labels = list(ways)
    arguments_outputs = [megabytes(s.argument_bytes + s.output_bytes - s.alias_bytes) for s in ways.values()]
    temp = [megabytes(s.temp_bytes) for s in ways.values()]
    ax.barh(labels, arguments_outputs, color="C0", label="arguments + outputs (parameters, optimizer state, batch)")
    ax.barh(labels, temp, left=arguments_outputs, color="C1", label="temporaries (activations, gradients)")
    ax.set(xlabel="MB planned by XLA for one call of the train step", title=header)
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")
    ax.grid(axis="x", alpha=0.3)

    lines = [header]
    for label, stats in ways.items():
        lines.append(
            f"{label:>24}: {megabytes(stats.total_bytes):8.3f} MB in all, of which temporaries {megabytes(stats.temp_bytes):8.3f} MB"
        )
    lines.append(f"accumulation needs {micro.total_bytes / whole.total_bytes:.3f} of the single batch's memory")
    return fig, "\n".join(lines)


def accumulation_explorer(plain_step, plain_state, accumulating_step, accumulating_state, seq_len: int):
    """Sliders for k and the micro-batch size, and a Run button that compiles the steps and compares their memory."""
    import ipywidgets as widgets

    def view(k, micro_batch_size):
        return accumulation_view(
            k,
            micro_batch_size,
            plain_step=plain_step,
            plain_state=plain_state,
            accumulating_step=accumulating_step,
            accumulating_state=accumulating_state,
            seq_len=seq_len,
        )

    controls = {
        "k": widgets.SelectionSlider(options=ACCUMULATION_STEPS, value=4, description="k"),
        "micro_batch_size": widgets.SelectionSlider(options=MICRO_BATCH_SIZES, value=8, description="micro-batch"),
    }
    return experiment(
        view,
        controls,
        run_button=True,
        description="Pick k and the micro-batch size, then press Run (each new batch size compiles the step once)",
    )
