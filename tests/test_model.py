import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grulm_edu.model import (
    ModelConfig,
    dropout,
    embed,
    forward,
    gru_cell,
    gru_layer_loop,
    gru_layer_scan,
    init_params,
)

pytestmark = pytest.mark.usefixtures("strict_promotion")

REFERENCE = json.loads((pathlib.Path(__file__).parent / "reference" / "gru_reference.json").read_text())
CASES = {case["name"]: case for case in REFERENCE["cases"]}


def gru_from_torch(case):
    """PyTorch stores (3H, E) and (3H, H); the package stores their transposes."""
    return {
        "W_ih": jnp.asarray(np.array(case["W_ih"]).T, jnp.float32),
        "W_hh": jnp.asarray(np.array(case["W_hh"]).T, jnp.float32),
        "b_ih": jnp.asarray(case["b_ih"], jnp.float32),
        "b_hh": jnp.asarray(case["b_hh"], jnp.float32),
    }


def test_scalar_gru_hand_values():
    case = CASES["scalar"]
    gru = gru_from_torch(case)
    h_seq = gru_layer_scan(gru, jnp.asarray(case["x"], jnp.float32), jnp.asarray(case["h0"], jnp.float32))
    np.testing.assert_allclose(h_seq[0, :, 0], [0.624050, 0.612929], atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("layer", [gru_layer_scan, gru_layer_loop])
def test_layer_matches_pytorch(name, layer):
    case = CASES[name]
    gru = gru_from_torch(case)
    x = jnp.asarray(case["x"], jnp.float32)
    h0 = jnp.asarray(case["h0"], jnp.float32)
    h_seq = layer(gru, x, h0)
    np.testing.assert_allclose(h_seq, np.array(case["h_seq"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_seq[:, -1], np.array(case["h_last"]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_gradients_match_pytorch(name):
    case = CASES[name]
    gru = gru_from_torch(case)
    x = jnp.asarray(case["x"], jnp.float32)
    h0 = jnp.asarray(case["h0"], jnp.float32)
    g = jnp.asarray(case["g"], jnp.float32)

    def loss(gru, x, h0):
        return 0.5 * jnp.sum(gru_layer_scan(gru, x, h0) * g)

    value, (d_gru, d_x, d_h0) = jax.value_and_grad(loss, argnums=(0, 1, 2))(gru, x, h0)
    np.testing.assert_allclose(value, case["loss"], rtol=1e-5)
    tol = {"rtol": 1e-4, "atol": 1e-5}
    np.testing.assert_allclose(d_gru["W_ih"], np.array(case["grad_W_ih"]).T, **tol)
    np.testing.assert_allclose(d_gru["W_hh"], np.array(case["grad_W_hh"]).T, **tol)
    np.testing.assert_allclose(d_gru["b_ih"], case["grad_b_ih"], **tol)
    np.testing.assert_allclose(d_gru["b_hh"], case["grad_b_hh"], **tol)
    np.testing.assert_allclose(d_x, case["grad_x"], **tol)
    np.testing.assert_allclose(d_h0, case["grad_h0"], **tol)


def numpy_gru_cell(gru, x, h):
    """The DESIGN equations written out gate by gate in float64."""
    W_ih, W_hh = np.asarray(gru["W_ih"], np.float64), np.asarray(gru["W_hh"], np.float64)
    b_ih, b_hh = np.asarray(gru["b_ih"], np.float64), np.asarray(gru["b_hh"], np.float64)
    H = W_hh.shape[0]
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    gate = lambda k: (slice(k * H, (k + 1) * H))  # noqa: E731
    r = sigmoid(x @ W_ih[:, gate(0)] + b_ih[gate(0)] + h @ W_hh[:, gate(0)] + b_hh[gate(0)])
    z = sigmoid(x @ W_ih[:, gate(1)] + b_ih[gate(1)] + h @ W_hh[:, gate(1)] + b_hh[gate(1)])
    n = np.tanh(x @ W_ih[:, gate(2)] + b_ih[gate(2)] + r * (h @ W_hh[:, gate(2)] + b_hh[gate(2)]))
    return (1 - z) * n + z * h


def test_cell_matches_numpy(key):
    params = init_params(key, ModelConfig(vocab_size=5, embed_size=3, hidden_size=4))
    x = jax.random.normal(jax.random.fold_in(key, 1), (2, 3))
    h = jax.random.uniform(jax.random.fold_in(key, 2), (2, 4), minval=-1, maxval=1)
    expected = numpy_gru_cell(params["gru"], np.asarray(x), np.asarray(h))
    np.testing.assert_allclose(gru_cell(params["gru"], x, h), expected, rtol=1e-5, atol=1e-6)


def test_scan_equals_loop_values_and_gradients(key):
    params = init_params(key, ModelConfig(vocab_size=11, embed_size=6, hidden_size=8))
    ids = jax.random.randint(jax.random.fold_in(key, 1), (3, 9), 0, 11)

    def loss(params, use_scan):
        logits, _ = forward(params, ids, use_scan=use_scan)
        return jnp.mean(logits**2)

    logits_scan, h_scan = forward(params, ids, use_scan=True)
    logits_loop, h_loop = forward(params, ids, use_scan=False)
    np.testing.assert_allclose(logits_scan, logits_loop, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_scan, h_loop, rtol=1e-5, atol=1e-6)
    grads_scan = jax.grad(loss)(params, True)
    grads_loop = jax.grad(loss)(params, False)
    for a, b in zip(jax.tree_util.tree_leaves(grads_scan), jax.tree_util.tree_leaves(grads_loop)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_gradients_match_finite_differences(key):
    params = init_params(key, ModelConfig(vocab_size=7, embed_size=4, hidden_size=5))
    ids = jax.random.randint(jax.random.fold_in(key, 1), (2, 6), 0, 7)
    direction = jax.tree_util.tree_map(
        lambda p: jax.random.normal(jax.random.fold_in(key, p.size), p.shape), params
    )

    def loss(params):
        logits, _ = forward(params, ids)
        return jnp.mean(jax.nn.log_softmax(logits)[..., 0])

    # Directional derivative: grad . d against a central difference along d.
    grads = jax.grad(loss)(params)
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(direction)))
    eps = 1e-2
    shifted = lambda s: jax.tree_util.tree_map(lambda p, d: p + s * d, params, direction)  # noqa: E731
    numeric = (loss(shifted(eps)) - loss(shifted(-eps))) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2)


def test_embedding_equals_one_hot_matmul(key):
    table = jax.random.normal(key, (10, 4))
    ids = jnp.array([[0, 3, 9], [9, 9, 1]])
    np.testing.assert_allclose(embed(table, ids), jax.nn.one_hot(ids, 10) @ table, rtol=1e-6)


def test_forward_shapes_and_initial_state(key):
    config = ModelConfig(vocab_size=13, embed_size=4, hidden_size=6)
    params = init_params(key, config)
    ids = jnp.zeros((2, 5), jnp.int32)
    logits, h = forward(params, ids)
    assert logits.shape == (2, 5, 13)
    assert h.shape == (2, 6)
    logits_zero, _ = forward(params, ids, jnp.zeros((2, 6)))
    np.testing.assert_array_equal(logits, logits_zero)


def test_forward_rejects_bad_ids(key):
    params = init_params(key, ModelConfig(vocab_size=5, embed_size=2, hidden_size=3))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        forward(params, jnp.zeros((5,), jnp.int32))
    with pytest.raises(TypeError, match="integers"):
        forward(params, jnp.zeros((1, 5), jnp.float32))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"vocab_size": 1}, ValueError),
        ({"vocab_size": 10, "hidden_size": 0}, ValueError),
        ({"vocab_size": 10, "embed_size": -3}, ValueError),
        ({"vocab_size": 10.5}, TypeError),
    ],
)
def test_config_rejects_bad_sizes(kwargs, error):
    with pytest.raises(error):
        ModelConfig(**kwargs)


def test_dropout_scales_and_zeroes(key):
    x = jnp.ones((200, 50))
    y = dropout(key, x, 0.25)
    kept = np.asarray(y) != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(dropout(None, x, 0.0), x)
    with pytest.raises(ValueError, match="key"):
        dropout(None, x, 0.5)
    with pytest.raises(ValueError, match="rate"):
        dropout(key, x, 1.0)
