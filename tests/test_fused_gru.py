import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grulm_edu.fused_gru import gru_layer_fused, gru_layer_fused_time_major
from grulm_edu.model import ModelConfig, forward, gru_layer_scan, init_params


def layer_case(key, B=3, T=9, E=5, H=7):
    gru = init_params(key, ModelConfig(10, E, H))["gru"]
    xs = jax.random.normal(jax.random.fold_in(key, 1), (B, T, E))
    h0 = jax.random.uniform(jax.random.fold_in(key, 2), (B, H), minval=-1, maxval=1)
    g = jax.random.normal(jax.random.fold_in(key, 3), (B, T, H))
    return gru, xs, h0, g


def weighted_sum(layer, g, **options):
    return lambda gru, xs, h0: jnp.sum(layer(gru, xs, h0, **options).astype(jnp.float32) * g)


def test_fused_layer_matches_scan_values(key):
    gru, xs, h0, _ = layer_case(key)
    np.testing.assert_allclose(gru_layer_fused(gru, xs, h0), gru_layer_scan(gru, xs, h0), rtol=1e-6, atol=1e-6)


def test_fused_layer_matches_scan_gradients(key):
    gru, xs, h0, g = layer_case(key)
    expected = jax.grad(weighted_sum(gru_layer_scan, g), argnums=(0, 1, 2))(gru, xs, h0)
    got = jax.grad(weighted_sum(gru_layer_fused, g), argnums=(0, 1, 2))(gru, xs, h0)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_fused_layer_gradient_matches_finite_difference(key):
    gru, xs, h0, g = layer_case(key, B=2, T=4, E=3, H=4)
    f = weighted_sum(gru_layer_fused, g)
    analytic = jax.grad(f)(gru, xs, h0)["W_hh"][1, 5]
    eps = 1e-3
    bumped = {**gru, "W_hh": gru["W_hh"].at[1, 5].add(eps)}
    lowered = {**gru, "W_hh": gru["W_hh"].at[1, 5].add(-eps)}
    numeric = (f(bumped, xs, h0) - f(lowered, xs, h0)) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=1e-3)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_fused_layer_low_precision_tracks_scan(key, dtype):
    gru, xs, h0, g = layer_case(key)
    got = gru_layer_fused(gru, xs, h0, compute_dtype=dtype)
    expected = gru_layer_scan(gru, xs, h0, compute_dtype=dtype)
    assert got.dtype == dtype
    np.testing.assert_allclose(got.astype(jnp.float32), expected.astype(jnp.float32), atol=3e-2)
    grads = jax.grad(weighted_sum(gru_layer_fused, g, compute_dtype=dtype))(gru, xs, h0)
    reference = jax.grad(weighted_sum(gru_layer_scan, g, compute_dtype=dtype))(gru, xs, h0)
    for name in gru:
        assert grads[name].dtype == jnp.float32, name
        scale = float(jnp.max(jnp.abs(reference[name])))
        np.testing.assert_allclose(grads[name], reference[name], atol=0.05 * scale + 1e-3, err_msg=name)


def test_time_major_layer_is_transposed_batch_major(key):
    gru, xs, h0, _ = layer_case(key)
    time_major = gru_layer_fused_time_major(gru, jnp.swapaxes(xs, 0, 1), h0)
    np.testing.assert_array_equal(jnp.swapaxes(time_major, 0, 1), gru_layer_fused(gru, xs, h0))


def test_forward_scan_matches_python_loop(key):
    params = init_params(key, ModelConfig(11, 6, 8))
    ids = jax.random.randint(jax.random.fold_in(key, 1), (2, 7), 0, 11)
    scan_logits, scan_h = forward(params, ids, use_scan=True)
    loop_logits, loop_h = forward(params, ids, use_scan=False)
    np.testing.assert_allclose(scan_logits, loop_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scan_h, loop_h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("xs_shape", "h0_shape", "message"),
    [((9, 3), (3, 7), "xs must have shape"), ((9, 3, 4), (3, 7), "xs must have shape"), ((9, 3, 5), (2, 7), "h0 must")],
)
def test_time_major_layer_rejects_bad_shapes(key, xs_shape, h0_shape, message):
    gru = init_params(key, ModelConfig(10, 5, 7))["gru"]
    with pytest.raises(ValueError, match=message):
        gru_layer_fused_time_major(gru, jnp.zeros(xs_shape), jnp.zeros(h0_shape))
