"""Notebook 10: compiled memory analysis, the accumulation widget callback and the exercise checkers."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from grulm_edu.exercises.accumulation import check_accumulator_bytes, check_equal_count_gradient, check_micro_batch_counts
from grulm_edu.memory import MemoryStats, compiled_memory, train_step_memory
from grulm_edu.model import ModelConfig, count_params, init_params
from grulm_edu.training import TrainConfig, init_state, make_optimizer, make_train_step
from grulm_edu.widgets.accumulation import accumulation_view, megabytes


def test_compiled_memory_counts_arguments_and_outputs():
    x = jnp.ones((64, 32), jnp.float32)
    y = jnp.ones((32, 16), jnp.float32)
    stats = compiled_memory(jax.jit(lambda a, b: jnp.tanh(a @ b)), x, y)
    assert stats.argument_bytes == x.nbytes + y.nbytes
    assert stats.output_bytes == 64 * 16 * 4
    assert stats.temp_bytes >= 0
    assert stats.alias_bytes == 0
    assert stats.total_bytes == stats.argument_bytes + stats.output_bytes + stats.temp_bytes


def test_compiled_memory_accepts_shapes():
    spec = jax.ShapeDtypeStruct((10, 10), jnp.float32)
    stats = compiled_memory(jax.jit(lambda a: a + 1.0), spec)
    assert stats.argument_bytes == 400
    assert stats.output_bytes == 400


def test_compiled_memory_counts_donated_buffer_once():
    x = jnp.ones((128,), jnp.float32)
    stats = compiled_memory(jax.jit(lambda a: a * 2.0, donate_argnums=0), x)
    assert stats.alias_bytes == x.nbytes
    assert stats.total_bytes == x.nbytes + stats.temp_bytes


def test_compiled_memory_without_analysis_returns_none():
    class NoAnalysis:
        def memory_analysis(self):
            return None

    class FakeJitted:
        def lower(self, *args, **kwargs):
            return self

        def compile(self):
            return NoAnalysis()

    assert compiled_memory(FakeJitted(), 1.0) is None


def test_compiled_memory_rejects_plain_function():
    with pytest.raises(TypeError, match="jax.jit"):
        compiled_memory(lambda a: a, 1.0)


def test_memory_stats_total():
    stats = MemoryStats(argument_bytes=10, output_bytes=6, temp_bytes=100, alias_bytes=6, generated_code_bytes=0)
    assert stats.total_bytes == 110
    assert megabytes(2_500_000) == 2.5


@pytest.fixture(scope="module")
def steps():
    """A plain and an accumulating train step of a tiny model, with their states."""
    params = init_params(jax.random.key(3), ModelConfig(12, embed_size=4, hidden_size=8))
    plain_config = TrainConfig(batch_size=8, seq_len=6, num_steps=10, warmup_steps=1)
    plain_optimizer = make_optimizer(plain_config)
    built = {"params": params, "plain": (make_train_step(plain_config, plain_optimizer), init_state(params, plain_optimizer))}
    for k in (2, 4):
        config = dataclasses.replace(plain_config, batch_size=8 // k, accumulation_steps=k)
        optimizer = make_optimizer(config)
        built[k] = (make_train_step(config, optimizer), init_state(params, optimizer))
    return built


def tree_bytes(tree):
    return sum(leaf.nbytes for leaf in jax.tree.leaves(tree))


def test_train_step_memory_grows_with_batch(steps):
    step, state = steps["plain"]
    T = 6
    small, large = train_step_memory(step, state, 2, T), train_step_memory(step, state, 8, T)
    # The batch is an argument: tokens (B, T + 1) int32 and mask (B, T) float32.
    assert large.argument_bytes - small.argument_bytes == (8 - 2) * ((T + 1) * 4 + T * 4)
    assert small.argument_bytes >= tree_bytes(state) + 2 * ((T + 1) * 4 + T * 4)
    assert large.temp_bytes > small.temp_bytes
    assert large.output_bytes == small.output_bytes


def test_train_step_memory_matches_a_real_call(steps):
    step, state = steps[4]
    tokens = jnp.zeros((2, 7), jnp.int32)
    mask = jnp.ones((2, 6), jnp.float32)
    weight = jnp.float32(0.25)
    _ = step(state, tokens, mask, jax.random.key(0), weight)
    direct = compiled_memory(step, state, tokens, mask, jax.random.key(0), weight)
    assert train_step_memory(step, state, 2, 6, loss_weight=True) == direct


def test_accumulating_memory_does_not_depend_on_k(steps):
    two = train_step_memory(*steps[2], 2, 6, loss_weight=True)
    four = train_step_memory(*steps[4], 2, 6, loss_weight=True)
    assert two == four
    plain = train_step_memory(*steps["plain"], 2, 6)
    # The extra argument is MultiSteps' gradient mean (one float32 per parameter),
    # its two int32 counters, and the float32 loss weight.
    assert two.argument_bytes - plain.argument_bytes == 4 * count_params(steps["params"]) + 2 * 4 + 4


def test_train_step_memory_rejects_bad_sizes(steps):
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        train_step_memory(*steps["plain"], 0, 6)
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        train_step_memory(*steps["plain"], 2, 1.5)


def view(steps, k, micro_batch_size):
    return accumulation_view(
        k,
        micro_batch_size,
        plain_step=steps["plain"][0],
        plain_state=steps["plain"][1],
        accumulating_step=steps[4][0],
        accumulating_state=steps[4][1],
        seq_len=6,
    )


def test_accumulation_view_compares_micro_and_whole(steps):
    figure, summary = view(steps, 4, 2)
    micro = train_step_memory(*steps[4], 2, 6, loss_weight=True)
    whole = train_step_memory(*steps["plain"], 8, 6)
    lines = summary.splitlines()
    assert lines[0] == "effective batch 4 x 2 = 8 rows = 48 target tokens per update"
    assert f"{megabytes(micro.total_bytes):8.3f} MB in all" in lines[1]
    assert f"{megabytes(whole.total_bytes):8.3f} MB in all" in lines[2]
    assert lines[3] == f"accumulation needs {micro.total_bytes / whole.total_bytes:.3f} of the single batch's memory"
    bars = figure.axes[0].patches
    assert len(bars) == 4  # two stacked segments for each of the two ways
    assert bars[0].get_width() + bars[2].get_width() == pytest.approx(megabytes(micro.total_bytes))


def test_accumulation_view_without_accumulation(steps):
    _, summary = view(steps, 1, 8)
    lines = summary.splitlines()
    assert lines[0].startswith("effective batch 1 x 8 = 8 rows")
    assert "accumulation needs 1.000 of the single batch's memory" in summary


def test_accumulation_view_rejects_bad_k(steps):
    with pytest.raises(ValueError, match="k must be a positive int"):
        view(steps, 0, 2)


def test_check_equal_count_gradient():
    assert check_equal_count_gradient(-1.0)
    assert not check_equal_count_gradient(None)
    assert "first micro-batch alone" in check_equal_count_gradient(-2.0).message
    assert "sign is flipped" in check_equal_count_gradient(1.0).message
    assert "summed gradient" in check_equal_count_gradient(-4.0).message
    assert "too low" in check_equal_count_gradient(-3.0).message


def test_check_micro_batch_counts():
    assert check_micro_batch_counts(2000, 200)
    assert not check_micro_batch_counts(None, 200)
    assert "counts optimizer updates" in check_micro_batch_counts(500, 50).message
    assert "warmup counts updates too" in check_micro_batch_counts(2000, 50).message
    assert "not divided by k" in check_micro_batch_counts(2000, 12.5).message
    assert "total 125 is wrong" in check_micro_batch_counts(125, 200).message
    assert "should be a number" in check_micro_batch_counts("2000", 200).message


def test_check_accumulator_bytes():
    params = 22_224
    assert check_accumulator_bytes(4 * params, params)
    assert check_accumulator_bytes(4 * params + 8, params)  # the counters are within tolerance
    assert not check_accumulator_bytes(None, params)
    assert "4 bytes" in check_accumulator_bytes(params, params).message
    assert "Adam's two moments" in check_accumulator_bytes(8 * params, params).message
    assert "one gradient per micro-batch" in check_accumulator_bytes(16 * params, params).message
    assert "too low" in check_accumulator_bytes(1000, params).message
