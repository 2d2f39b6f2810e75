"""Notebook 06's library code: per-window losses and gradients, gradient noise, throughput, widget and checkers."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from grulm_edu.exercises.batching import check_noise_at_batch_size, check_per_window_losses, check_tokens_per_second
from grulm_edu.model import ModelConfig, init_params
from grulm_edu.training import batch_loss
from grulm_edu.widgets.batching import (
    batching_view,
    expected_gradient_noise,
    gradient_noise,
    loss_and_grad,
    measure_throughput,
    per_example_gradients,
    sequence_loss,
    throughput_sweep,
)

V, T = 11, 6


@pytest.fixture(scope="module")
def params():
    return init_params(jax.random.key(60), ModelConfig(vocab_size=V, embed_size=4, hidden_size=8))


@pytest.fixture(scope="module")
def windows():
    return np.asarray(jax.random.randint(jax.random.key(61), (5, T + 1), 0, V), np.int32)


def test_vmapped_sequence_loss_equals_batch_loss(params, windows):
    per_window = jax.vmap(sequence_loss, in_axes=(None, 0))(params, jnp.asarray(windows))
    assert per_window.shape == (5,)
    batched = batch_loss(params, jnp.asarray(windows), jnp.ones((5, T)))
    np.testing.assert_allclose(float(per_window.mean()), float(batched), rtol=1e-6)


def test_sequence_loss_matches_numpy_cross_entropy(params, windows):
    from grulm_edu.model import forward

    logits = np.asarray(forward(params, jnp.asarray(windows[:1, :-1]))[0][0], np.float64)  # (T, V)
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    expected = -log_probs[np.arange(T), windows[0, 1:]].mean()
    np.testing.assert_allclose(float(sequence_loss(params, jnp.asarray(windows[0]))), expected, rtol=1e-5)


def test_per_example_gradients_mean_is_batch_gradient(params, windows):
    rows = per_example_gradients(params, windows, chunk_size=5)
    _, grads = loss_and_grad(params, jnp.asarray(windows), jnp.ones((5, T)))
    np.testing.assert_allclose(rows.mean(axis=0), np.asarray(ravel_pytree(grads)[0]), rtol=1e-5, atol=1e-7)


def test_per_example_gradients_rows_and_padding(params, windows):
    rows = per_example_gradients(params, windows, chunk_size=2)  # 5 windows: the last chunk is padded
    assert rows.shape == (5, ravel_pytree(params)[0].size)
    np.testing.assert_allclose(rows, per_example_gradients(params, windows, chunk_size=5), rtol=1e-6, atol=1e-8)
    single = ravel_pytree(jax.grad(sequence_loss)(params, jnp.asarray(windows[3])))[0]
    np.testing.assert_allclose(rows[3], np.asarray(single), rtol=1e-5, atol=1e-7)


def test_per_example_gradients_rejects_bad_windows(params):
    with pytest.raises(ValueError, match="windows must be integer ids"):
        per_example_gradients(params, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        per_example_gradients(params, np.zeros((3, 4), np.int32), chunk_size=0)


def brute_force_noise(rows, batch_size):
    """Mean squared distance over every subset of `batch_size` distinct rows."""
    full = rows.mean(axis=0)
    subsets = itertools.combinations(range(len(rows)), batch_size)
    distances = [np.sum((rows[list(subset)].mean(axis=0) - full) ** 2) for subset in subsets]
    return float(np.mean(distances))


@pytest.fixture(scope="module")
def synthetic_rows():
    return np.random.default_rng(62).normal(size=(6, 3))


@pytest.mark.parametrize("batch_size", [1, 2, 3, 6])
def test_expected_noise_equals_enumeration(synthetic_rows, batch_size):
    expected = brute_force_noise(synthetic_rows, batch_size)
    assert math.isclose(expected_gradient_noise(synthetic_rows, batch_size), expected, rel_tol=1e-12, abs_tol=1e-15)


def test_expected_noise_vectorised(synthetic_rows):
    values = expected_gradient_noise(synthetic_rows, [1, 2, 3])
    assert values.shape == (3,)
    for value, size in zip(values, [1, 2, 3]):
        assert math.isclose(value, expected_gradient_noise(synthetic_rows, size), rel_tol=1e-12)


def test_expected_noise_formula(synthetic_rows):
    sigma2 = np.mean(np.sum((synthetic_rows - synthetic_rows.mean(0)) ** 2, axis=1))
    assert math.isclose(expected_gradient_noise(synthetic_rows, 1), sigma2, rel_tol=1e-12)
    assert math.isclose(expected_gradient_noise(synthetic_rows, 3), sigma2 / 3 * 3 / 5, rel_tol=1e-12)


def test_gradient_noise_mean_approaches_expectation(synthetic_rows):
    distances = gradient_noise(synthetic_rows, 2, 4000, jax.random.key(63))
    assert distances.shape == (4000,)
    expected = expected_gradient_noise(synthetic_rows, 2)
    standard_error = distances.std() / math.sqrt(len(distances))
    assert abs(distances.mean() - expected) < 4 * standard_error


def test_gradient_noise_whole_pool_is_zero(synthetic_rows):
    np.testing.assert_allclose(gradient_noise(synthetic_rows, 6, 10, jax.random.key(64)), 0.0, atol=1e-24)


def test_gradient_noise_depends_only_on_key(synthetic_rows):
    first = gradient_noise(synthetic_rows, 2, 20, jax.random.key(65))
    np.testing.assert_array_equal(first, gradient_noise(synthetic_rows, 2, 20, jax.random.key(65)))
    assert not np.array_equal(first, gradient_noise(synthetic_rows, 2, 20, jax.random.key(66)))


def test_gradient_noise_rejects_bad_arguments(synthetic_rows):
    with pytest.raises(ValueError, match=r"batch_size must be an int in \[1, 6\]"):
        gradient_noise(synthetic_rows, 7, 10, jax.random.key(0))
    with pytest.raises(ValueError, match="num_draws must be a positive int"):
        gradient_noise(synthetic_rows, 2, 0, jax.random.key(0))
    with pytest.raises(ValueError, match=r"batch_size must be an int in \[1, 6\]"):
        expected_gradient_noise(synthetic_rows, 0)


def test_measure_throughput_counts_targets(params, windows):
    result = measure_throughput(params, windows, 3, repeats=2, number=1)
    assert result["batch_size"] == 3
    assert result["step_s"] > 0
    assert result["step_s"] <= result["median_s"]
    assert math.isclose(result["tokens_per_s"], 3 * T / result["step_s"], rel_tol=1e-12)
    with pytest.raises(ValueError, match=r"batch_size must be an int in \[1, 5\]"):
        measure_throughput(params, windows, 6)


def test_throughput_sweep_counts_targets(params, windows):
    results = throughput_sweep(params, windows, (1, 2), rounds=2, number=1)
    assert sorted(results) == [1, 2]
    for B, result in results.items():
        assert result["first_s"] > 0
        assert math.isclose(result["tokens_per_s"], B * T / result["step_s"], rel_tol=1e-12)


def test_batching_view_reports_expected_noise(params, windows):
    rows = per_example_gradients(params, windows, chunk_size=5)
    figure, summary = batching_view(
        2, params=params, windows=windows, per_example=rows, key=jax.random.key(67),
        reference_speed={1: 100.0, 2: 150.0}, reference_noise={1: 0.1, 2: 0.05}, num_draws=30,
    )
    assert len(figure.axes) == 2
    assert summary.startswith("B = 2: ")
    assert f"expected {expected_gradient_noise(rows, 2):.4g}" in summary
    measured = gradient_noise(rows, 2, 30, jax.random.fold_in(jax.random.key(67), 2)).mean()
    assert f"gradient noise {measured:.4g}" in summary


def test_check_per_window_losses():
    def right(params, tokens):
        return jax.vmap(sequence_loss, in_axes=(None, 0))(params, tokens)

    def batch_mean(params, tokens):
        return right(params, tokens).mean()

    def maps_params(params, tokens):
        return jax.vmap(sequence_loss)(params, tokens)

    def first_window_only(params, tokens):
        return right(params, tokens[:1])

    assert check_per_window_losses(right).passed
    assert "batch's mean loss" in check_per_window_losses(batch_mean).message
    assert "in_axes=(None, 0)" in check_per_window_losses(maps_params).message
    assert "shape (5,)" in check_per_window_losses(first_window_only).message
    assert "no answer yet" in check_per_window_losses(None).message
    assert "function itself" in check_per_window_losses(3.0).message


def test_check_tokens_per_second():
    settings = {"batch_size": 32, "seq_len": 128, "step_ms": 40}
    assert check_tokens_per_second(102_400, **settings).passed
    assert "sequences" in check_tokens_per_second(800, **settings).message
    assert "T targets" in check_tokens_per_second(32 * 129 / 0.04, **settings).message
    assert "milliseconds" in check_tokens_per_second(102.4, **settings).message
    assert "too low" in check_tokens_per_second(5_000, **settings).message
    assert "no answer yet" in check_tokens_per_second(None, **settings).message


def test_check_noise_at_batch_size():
    settings = {"noise": 0.8, "batch_size": 4, "new_batch_size": 64}
    assert check_noise_at_batch_size(0.05, **settings).passed
    assert "1/sqrt(B)" in check_noise_at_batch_size(0.2, **settings).message
    assert "must fall" in check_noise_at_batch_size(12.8, **settings).message
    assert "too high" in check_noise_at_batch_size(0.1, **settings).message
    assert "no answer yet" in check_noise_at_batch_size(None, **settings).message
