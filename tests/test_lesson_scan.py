"""Notebook 07's library code: the GRU walked by loop and scans, jaxpr sizes, timing helpers, widget and checkers."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grulm_edu.exercises.scan import check_loop_equations, check_scan_cumsum, check_scan_gru_layer
from grulm_edu.model import ModelConfig, gru_cell, gru_layer_loop, init_params
from grulm_edu.scan_lessons import (
    compile_and_time,
    count_equations,
    fastest_times,
    gru_layer_scan_unhoisted,
    make_loss,
)
from grulm_edu.training import batch_loss
from grulm_edu.widgets.scan import scan_timing_view

V, E, H, B, T = 9, 3, 5, 2, 5


@pytest.fixture(scope="module")
def params():
    return init_params(jax.random.key(70), ModelConfig(vocab_size=V, embed_size=E, hidden_size=H))


@pytest.fixture(scope="module")
def tokens():
    return jax.random.randint(jax.random.key(71), (B, T + 1), 0, V)


def numpy_gru_layer(gru, xs, h0):
    """Float64 NumPy reference of the GRU equations (gate order r, z, n), looping over time."""
    W_ih, W_hh = np.asarray(gru["W_ih"], np.float64), np.asarray(gru["W_hh"], np.float64)
    b_ih, b_hh = np.asarray(gru["b_ih"], np.float64), np.asarray(gru["b_hh"], np.float64)
    sigmoid = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    h, states = np.asarray(h0, np.float64), []
    for x in np.swapaxes(np.asarray(xs, np.float64), 0, 1):
        i_r, i_z, i_n = np.split(x @ W_ih + b_ih, 3, axis=-1)
        h_r, h_z, h_n = np.split(h @ W_hh + b_hh, 3, axis=-1)
        r, z = sigmoid(i_r + h_r), sigmoid(i_z + h_z)
        n = np.tanh(i_n + r * h_n)
        h = (1 - z) * n + z * h
        states.append(h)
    return np.stack(states, axis=1)


def test_unhoisted_scan_matches_numpy_reference(params):
    xs = jax.random.normal(jax.random.key(72), (B, T, E))
    h0 = jax.random.normal(jax.random.key(73), (B, H))
    expected = numpy_gru_layer(params["gru"], xs, h0)
    for unroll in (1, 2, T):
        states = gru_layer_scan_unhoisted(params["gru"], xs, h0, unroll=unroll)
        assert states.shape == (B, T, H)
        np.testing.assert_allclose(np.asarray(states), expected, rtol=1e-5, atol=1e-6)


def test_unhoisted_scan_rejects_bad_shapes(params):
    with pytest.raises(ValueError, match=r"xs must have shape \(B, T, E=3\)"):
        gru_layer_scan_unhoisted(params["gru"], jnp.zeros((B, T, E + 1)), jnp.zeros((B, H)))
    with pytest.raises(ValueError, match=r"h0 must have shape \(B=2, H=5\)"):
        gru_layer_scan_unhoisted(params["gru"], jnp.zeros((B, T, E)), jnp.zeros((B, H + 1)))


def test_every_kind_gives_batch_loss_and_its_gradient(params, tokens):
    expected_loss = float(batch_loss(params, tokens, jnp.ones((B, T))))
    expected_grads = jax.grad(batch_loss)(params, tokens, jnp.ones((B, T)))
    variants = [("loop", 1), ("scan", 1), ("scan", 2), ("scan", T), ("scan_unhoisted", 1), ("scan_unhoisted", 3)]
    for kind, unroll in variants:
        loss, grads = jax.jit(jax.value_and_grad(make_loss(kind, unroll=unroll)))(params, tokens)
        assert abs(float(loss) - expected_loss) < 1e-5, (kind, unroll)
        for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads)):
            message = f"{kind}, unroll {unroll}"
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6, err_msg=message)


def test_make_loss_rejects_bad_arguments(params):
    with pytest.raises(ValueError, match="kind must be one of"):
        make_loss("while")
    with pytest.raises(ValueError, match="unroll must be a positive int"):
        make_loss("scan", unroll=0)
    with pytest.raises(ValueError, match="unroll applies to the scans only"):
        make_loss("loop", unroll=2)
    with pytest.raises(ValueError, match=r"tokens must have shape \(B, T \+ 1\)"):
        make_loss("scan")(params, jnp.zeros((B, 1), jnp.int32))


def test_loop_jaxpr_grows_linearly_and_scan_stays_flat(params, tokens):
    long_tokens = jax.random.randint(jax.random.key(74), (B, 9), 0, V)
    loop_counts = [count_equations(make_loss("loop"), params, long_tokens[:, : t + 1]) for t in (2, 4, 6, 8)]
    scan_counts = [count_equations(make_loss("scan"), params, long_tokens[:, : t + 1]) for t in (2, 4, 6, 8)]
    steps = np.diff(loop_counts)
    assert steps[0] > 0
    assert (steps == steps[0]).all()
    assert len(set(scan_counts)) == 1


def test_compile_and_time_returns_working_executable(params, tokens):
    loss = make_loss("scan")
    result = compile_and_time(loss, params, tokens, repeats=2, number=1)
    assert result["compile_s"] > 0
    assert 0 < result["min_step_s"] <= result["step_s"]
    np.testing.assert_allclose(float(result["compiled"](params, tokens)), float(loss(params, tokens)), rtol=1e-6)


def test_fastest_times_ranks_by_duration():
    calls = {"sleeps": (time.sleep, (0.003,)), "returns": (abs, (-1,))}
    best = fastest_times(calls, rounds=3, number=2)
    assert best["sleeps"] >= 0.003
    assert best["returns"] < best["sleeps"]
    with pytest.raises(ValueError, match="rounds and number must be >= 1"):
        fastest_times(calls, rounds=0)


def test_scan_timing_view_lists_each_variant(params):
    long_tokens = jax.random.randint(jax.random.key(75), (B, 9), 0, V)
    figure, summary = scan_timing_view(4, 2, params=params, tokens=long_tokens, loop_max_len=4)
    lines = summary.splitlines()
    assert [line.split(":")[0].strip() for line in lines] == ["scan, unroll 1", "scan, unroll 2", "jitted loop"]
    assert len(figure.axes) == 2
    assert len(figure.axes[0].patches) == 3
    loop_equations = count_equations(make_loss("loop"), params, long_tokens[:, :5])
    assert lines[2].endswith(f"| {loop_equations} jaxpr equations")


def test_scan_timing_view_skips_long_loop(params):
    long_tokens = jax.random.randint(jax.random.key(76), (B, 9), 0, V)
    figure, summary = scan_timing_view(8, 1, params=params, tokens=long_tokens, loop_max_len=4)
    assert len(figure.axes[0].patches) == 1
    assert "jitted loop skipped: T = 8 is above 4" in summary
    with pytest.raises(ValueError, match=r"seq_len must be an int in \[1, 8\]"):
        scan_timing_view(9, 1, params=params, tokens=long_tokens)
    with pytest.raises(ValueError, match="unroll must be a positive int"):
        scan_timing_view(4, 0, params=params, tokens=long_tokens)


def test_check_loop_equations():
    counts = {4: 100, 16: 352, 64: 1360}
    assert check_loop_equations(2116, counts, seq_len=100).passed
    assert "in proportion" in check_loop_equations(2500, counts, seq_len=100).message
    assert "per-step part only" in check_loop_equations(2100, counts, seq_len=100).message
    assert "too low" in check_loop_equations(2000, counts, seq_len=100).message
    assert "no answer yet" in check_loop_equations(None, counts, seq_len=100).message
    assert "a number" in check_loop_equations("many", counts, seq_len=100).message
    with pytest.raises(ValueError, match="at least two lengths"):
        check_loop_equations(1, {4: 100}, seq_len=10)


def scan_cumsum(xs):
    def step(total, x):
        total = total + x
        return total, total

    return jax.lax.scan(step, jnp.zeros((), xs.dtype), xs)[1]


def test_check_scan_cumsum():
    def exclusive(xs):
        return jax.lax.scan(lambda total, x: (total + x, total), jnp.zeros((), xs.dtype), xs)[1]

    def final_carry(xs):
        return jax.lax.scan(lambda total, x: (total + x, total + x), jnp.zeros((), xs.dtype), xs)[0]

    def python_loop(xs):
        total, out = 0.0, []
        for x in xs:
            total = total + x
            out.append(total)
        return jnp.stack(out)

    assert check_scan_cumsum(scan_cumsum).passed
    assert check_scan_cumsum(jax.jit(scan_cumsum)).passed
    assert "exclusive" in check_scan_cumsum(exclusive).message
    assert "final carry" in check_scan_cumsum(final_carry).message
    assert "no scan" in check_scan_cumsum(python_loop).message
    assert "no scan" in check_scan_cumsum(jnp.cumsum).message
    assert "raised ZeroDivisionError" in check_scan_cumsum(lambda xs: 1 / 0).message
    assert "no answer yet" in check_scan_cumsum(None).message


def test_check_scan_gru_layer():
    def right(gru, xs, h0):
        def step(h, x):
            h = gru_cell(gru, x, h)
            return h, h

        return jnp.swapaxes(jax.lax.scan(step, h0, jnp.swapaxes(xs, 0, 1))[1], 0, 1)

    def time_major(gru, xs, h0):
        return jnp.swapaxes(right(gru, xs, h0), 0, 1)

    def final_state(gru, xs, h0):
        return right(gru, xs, h0)[:, -1]

    def over_batch(gru, xs, h0):
        return jax.lax.scan(lambda h, x: (gru_cell(gru, x, h), gru_cell(gru, x, h)), h0, xs)[1]

    assert check_scan_gru_layer(right).passed
    assert "time-major" in check_scan_gru_layer(time_major).message
    assert "final state" in check_scan_gru_layer(final_state).message
    assert "axis 0" in check_scan_gru_layer(over_batch).message
    assert "no scan" in check_scan_gru_layer(gru_layer_loop).message
    assert "no answer yet" in check_scan_gru_layer(None).message
