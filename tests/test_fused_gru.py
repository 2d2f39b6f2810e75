import jax
import jax.numpy as jnp
import numpy as np

from grulm_edu.fused_gru import gru_layer_fused
from grulm_edu.model import ModelConfig, gru_layer_scan, init_params


def test_fused_layer_matches_scan_values_and_gradients(key):
    gru = init_params(key, ModelConfig(10, 5, 7))["gru"]
    xs = jax.random.normal(jax.random.fold_in(key, 1), (3, 9, 5))
    h0 = jax.random.uniform(jax.random.fold_in(key, 2), (3, 7), minval=-1, maxval=1)
    g = jax.random.normal(jax.random.fold_in(key, 3), (3, 9, 7))

    np.testing.assert_allclose(gru_layer_fused(gru, xs, h0), gru_layer_scan(gru, xs, h0), rtol=1e-6, atol=1e-6)

    def loss(layer):
        return lambda gru, xs, h0: jnp.sum(layer(gru, xs, h0) * g)

    expected = jax.grad(loss(gru_layer_scan), argnums=(0, 1, 2))(gru, xs, h0)
    got = jax.grad(loss(gru_layer_fused), argnums=(0, 1, 2))(gru, xs, h0)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
