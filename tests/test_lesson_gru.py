"""Notebook 03: the 2014 GRU, the vanilla RNN, gate activations, gradient norms, the gate widget and the checkers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grulm_edu.exercises.gru import check_gru_2014_cell, check_gru_param_count, check_update_gate_decay
from grulm_edu.model import ModelConfig, embed, gru_cell, gru_layer_scan, init_params
from grulm_edu.rnn_variants import (
    gate_activations,
    gru_cell_2014,
    gru_layer_2014,
    init_rnn_params,
    input_gradient_norms,
    rnn_cell,
    rnn_layer,
)


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def numpy_gru_2014(gru, x, h):
    """The 2014 equations gate by gate in float64, with W_hn applied to r * h."""
    W_ih, W_hh = np.asarray(gru["W_ih"], np.float64), np.asarray(gru["W_hh"], np.float64)
    b_ih, b_hh = np.asarray(gru["b_ih"], np.float64), np.asarray(gru["b_hh"], np.float64)
    x, h = np.asarray(x, np.float64), np.asarray(h, np.float64)
    H = h.shape[1]
    r = sigmoid(x @ W_ih[:, :H] + b_ih[:H] + h @ W_hh[:, :H] + b_hh[:H])
    z = sigmoid(x @ W_ih[:, H : 2 * H] + b_ih[H : 2 * H] + h @ W_hh[:, H : 2 * H] + b_hh[H : 2 * H])
    n = np.tanh(x @ W_ih[:, 2 * H :] + b_ih[2 * H :] + (r * h) @ W_hh[:, 2 * H :] + b_hh[2 * H :])
    return (1 - z) * n + z * h


@pytest.fixture
def small_gru(key):
    params = init_params(key, ModelConfig(vocab_size=11, embed_size=5, hidden_size=7))
    # Scale the weights up so that the gates leave their linear range.
    return params, jax.tree_util.tree_map(lambda w: 3.0 * w, params["gru"])


# --- the 2014 GRU ----------------------------------------------------------------


@pytest.mark.usefixtures("strict_promotion")
def test_gru_cell_2014_matches_numpy(small_gru, key):
    _, gru = small_gru
    k_x, k_h = jax.random.split(key)
    x = jax.random.normal(k_x, (3, 5))
    h = jnp.tanh(jax.random.normal(k_h, (3, 7)))
    np.testing.assert_allclose(gru_cell_2014(gru, x, h), numpy_gru_2014(gru, x, h), rtol=1e-5, atol=1e-6)


@pytest.mark.usefixtures("strict_promotion")
def test_gru_cell_2014_differs_from_library(small_gru, key):
    _, gru = small_gru
    x = jax.random.normal(key, (3, 5))
    h = jnp.full((3, 7), 0.5)
    assert float(jnp.max(jnp.abs(gru_cell_2014(gru, x, h) - gru_cell(gru, x, h)))) > 1e-3


@pytest.mark.usefixtures("strict_promotion")
def test_variants_agree_when_reset_gate_is_open(small_gru, key):
    # With r = 1, r * (W h + b) and W (r * h) + b are the same expression.
    _, gru = small_gru
    gru = dict(gru, b_ih=gru["b_ih"].at[:7].set(100.0))
    x = jax.random.normal(key, (3, 5))
    h = jnp.tanh(jax.random.normal(jax.random.fold_in(key, 1), (3, 7)))
    np.testing.assert_allclose(gru_cell_2014(gru, x, h), gru_cell(gru, x, h), rtol=1e-5, atol=1e-6)


@pytest.mark.usefixtures("strict_promotion")
def test_gru_layer_2014_matches_cell_loop(small_gru, key):
    _, gru = small_gru
    xs = jax.random.normal(key, (2, 6, 5))
    h = h0 = jnp.tanh(jax.random.normal(jax.random.fold_in(key, 1), (2, 7)))
    states = gru_layer_2014(gru, xs, h0)
    assert states.shape == (2, 6, 7)
    for t in range(6):
        h = gru_cell_2014(gru, xs[:, t], h)
        np.testing.assert_allclose(states[:, t], h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", [gru_layer_2014, rnn_layer])
def test_layers_reject_bad_shapes(layer, key):
    params = init_params(key, ModelConfig(11, 5, 7))["gru"] if layer is gru_layer_2014 else init_rnn_params(key, 5, 7)
    with pytest.raises(ValueError, match=r"xs must have shape \(B, T, E=5\)"):
        layer(params, jnp.zeros((2, 6, 4)), jnp.zeros((2, 7)))
    with pytest.raises(ValueError, match=r"h0 must have shape \(B=2, H=7\)"):
        layer(params, jnp.zeros((2, 6, 5)), jnp.zeros((3, 7)))


# --- the vanilla RNN -------------------------------------------------------------


@pytest.mark.usefixtures("strict_promotion")
def test_rnn_cell_and_layer_match_numpy(key):
    rnn = init_rnn_params(key, 4, 6)
    xs = jax.random.normal(jax.random.fold_in(key, 1), (2, 5, 4))
    h0 = jnp.zeros((2, 6))
    states = rnn_layer(rnn, xs, h0)
    w = {name: np.asarray(value, np.float64) for name, value in rnn.items()}
    h = np.zeros((2, 6))
    for t in range(5):
        h = np.tanh(np.asarray(xs[:, t], np.float64) @ w["W_ih"] + w["b_ih"] + h @ w["W_hh"] + w["b_hh"])
        np.testing.assert_allclose(states[:, t], h, rtol=1e-5, atol=1e-6)
    # The scan and the eager cell may fuse differently: allow a few float32 ulps.
    np.testing.assert_allclose(rnn_cell(rnn, xs[:, 0], h0), states[:, 0], rtol=1e-6, atol=1e-6)


def test_init_rnn_params_shapes_and_bound(key):
    rnn = init_rnn_params(key, 3, 16)
    shapes = {name: value.shape for name, value in rnn.items()}
    assert shapes == {"W_ih": (3, 16), "W_hh": (16, 16), "b_ih": (16,), "b_hh": (16,)}
    for value in rnn.values():
        assert float(jnp.max(jnp.abs(value))) <= 0.25
        assert value.dtype == jnp.float32


@pytest.mark.parametrize("sizes", [(0, 4), (4, -1), (4, 2.0), (True, 4)])
def test_init_rnn_params_rejects_bad_sizes(sizes, key):
    with pytest.raises(ValueError, match="must be a positive int"):
        init_rnn_params(key, *sizes)


# --- gate activations ------------------------------------------------------------


def test_gate_activations_agree_with_scan_and_equations(key):
    params = init_params(key, ModelConfig(11, 5, 7))
    params["gru"] = jax.tree_util.tree_map(lambda w: 3.0 * w, params["gru"])
    ids = jax.random.randint(jax.random.fold_in(key, 1), (2, 9), 0, 11)
    gates = gate_activations(params, ids)
    assert {name: value.shape for name, value in gates.items()} == {name: (2, 9, 7) for name in "rznh"}
    states = gru_layer_scan(params["gru"], embed(params["embed"], ids), jnp.zeros((2, 7)))
    np.testing.assert_allclose(gates["h"], states, rtol=1e-5, atol=1e-6)
    # The returned gates must reproduce each new state: h_t = (1 - z) n + z h_{t-1}.
    previous = jnp.concatenate([jnp.zeros((2, 1, 7)), gates["h"][:, :-1]], axis=1)
    np.testing.assert_allclose((1 - gates["z"]) * gates["n"] + gates["z"] * previous, gates["h"], rtol=1e-5, atol=1e-6)
    for name in "rz":
        assert float(gates[name].min()) > 0
        assert float(gates[name].max()) < 1


def test_gate_activations_rejects_float_ids(key):
    params = init_params(key, ModelConfig(11, 5, 7))
    with pytest.raises(ValueError, match="ids must be integers of shape \\(B, T\\)"):
        gate_activations(params, jnp.zeros((2, 3)))


# --- gradient norms --------------------------------------------------------------


def linear_layer(params, xs, h0):
    """h_t = h_{t-1} A + x_t C: the Jacobian of h_T with respect to x_t is (C A^(T-1-t))^T."""

    def step(h, x):
        h_new = h @ params["A"] + x @ params["C"]
        return h_new, h_new

    _, states = jax.lax.scan(step, h0, jnp.swapaxes(xs, 0, 1))
    return jnp.swapaxes(states, 0, 1)


def test_input_gradient_norms_match_linear_closed_form(key):
    rng = np.random.default_rng(0)
    A = rng.normal(0, 0.3, (4, 4))
    C = rng.normal(0, 1.0, (3, 4))
    params = {"A": jnp.asarray(A, jnp.float32), "C": jnp.asarray(C, jnp.float32)}
    xs = jax.random.normal(key, (2, 6, 3))
    norms = input_gradient_norms(linear_layer, params, xs, jnp.zeros((2, 4)))
    expected = [np.linalg.norm(C @ np.linalg.matrix_power(A, 5 - t)) for t in range(6)]
    assert norms.shape == (2, 6)
    for row in np.asarray(norms):
        np.testing.assert_allclose(row, expected, rtol=1e-4)


def test_input_gradient_norms_survive_float32_underflow(key):
    # Entries of 0.1**k for lags up to 29 go far below 1e-19, whose squares are 0 in float32.
    params = {"A": 0.1 * jnp.eye(3), "C": jnp.eye(3)}
    norms = np.asarray(input_gradient_norms(linear_layer, params, jnp.zeros((1, 30, 3)), jnp.zeros((1, 3))))[0]
    expected = np.sqrt(3) * 0.1 ** np.arange(29, -1, -1, dtype=np.float64)
    np.testing.assert_allclose(norms, expected, rtol=1e-4)
    assert norms[0] > 0


def test_input_gradient_norms_match_jacfwd_for_gru(key):
    params = init_params(key, ModelConfig(11, 3, 4))["gru"]
    xs = jax.random.normal(jax.random.fold_in(key, 1), (2, 5, 3))
    h0 = jnp.tanh(jax.random.normal(jax.random.fold_in(key, 2), (2, 4)))
    norms = input_gradient_norms(gru_layer_scan, params, xs, h0)
    for b in range(2):
        # Forward mode on the cell, an independent route to the same Jacobian.
        def last_state(x):
            h = h0[b : b + 1]
            for t in range(5):
                h = gru_cell(params, x[t][None], h)
            return h[0]

        jacobian = jax.jit(jax.jacfwd(last_state))(xs[b])  # (H, T, E)
        np.testing.assert_allclose(norms[b], jnp.sqrt(jnp.sum(jacobian**2, axis=(0, 2))), rtol=1e-4)


def test_input_gradient_norms_rejects_two_dimensional_input():
    with pytest.raises(ValueError, match="xs must have shape \\(B, T, E\\)"):
        input_gradient_norms(linear_layer, {}, jnp.zeros((6, 3)), jnp.zeros((1, 4)))


# --- gate widget -----------------------------------------------------------------


def test_line_gates_ignore_padding():
    from grulm_edu.checkpoint import load_pretrained
    from grulm_edu.widgets.gru import line_gates

    checkpoint = load_pretrained()
    text = "Wherefore art thou"
    ids, gates = line_gates(text)
    direct = gate_activations(checkpoint.params, jnp.asarray(checkpoint.tokenizer.encode(text))[None])
    assert ids.tolist() == checkpoint.tokenizer.encode(text).tolist()
    for name in "rznh":
        assert gates[name].shape == (len(text), 256)
        np.testing.assert_allclose(gates[name], direct[name][0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "text, error, message",
    [("", ValueError, "1 to 120 characters"), ("x" * 121, ValueError, "got 121"), (42, TypeError, "must be a str")],
)
def test_line_gates_rejects_bad_text(text, error, message):
    from grulm_edu.widgets.gru import line_gates

    with pytest.raises(error, match=message):
        line_gates(text)


def test_top_variance_units_against_numpy():
    from grulm_edu.widgets.gru import top_variance_units

    values = np.random.default_rng(4).normal(size=(10, 6)) * np.array([1.0, 5.0, 0.1, 3.0, 2.0, 0.5])
    assert top_variance_units(values, 3).tolist() == np.argsort(-values.var(axis=0))[:3].tolist()
    with pytest.raises(ValueError, match="count must be in \\[1, 6\\]"):
        top_variance_units(values, 7)
    with pytest.raises(ValueError, match="values must have shape \\(T, H\\)"):
        top_variance_units(values[0], 1)


def test_gate_heatmap_view_summary_matches_gates():
    from grulm_edu.widgets.gru import gate_heatmap_view, line_gates, top_variance_units

    text = "O Romeo, Romeo!"
    _, gates = line_gates(text)
    figure, summary = gate_heatmap_view(text, units=8)
    lines = summary.splitlines()
    assert lines[0] == f"{len(text)} characters from a zero state"
    z = gates["z"]
    expected = f"z: mean {z.mean():.3f}, share above 0.9 {np.mean(z > 0.9):.3f}, share below 0.1 {np.mean(z < 0.1):.3f}"
    assert lines[1] == expected
    heatmap_axes = [ax for ax in figure.axes if ax.images]
    assert len(heatmap_axes) == 2
    assert heatmap_axes[0].images[0].get_array().shape == (8, len(text))
    units_shown = sorted(int(label.get_text()) for label in heatmap_axes[0].get_yticklabels())
    assert units_shown == sorted(top_variance_units(z, 8).tolist())


def test_gate_heatmap_view_names_unknown_characters():
    from grulm_edu.widgets.gru import gate_heatmap_view

    _, summary = gate_heatmap_view("caf\u00e9", units=8)
    assert "outside the vocabulary" in summary
    assert "'\u00e9'" in summary


def test_gate_explorer_runs_on_new_text(capsys):
    import ipywidgets

    from grulm_edu.widgets.gru import DEFAULT_LINE, gate_explorer

    box = gate_explorer()
    controls = box.children[0].children
    text = next(c for c in controls if isinstance(c, ipywidgets.Text))
    assert text.value == DEFAULT_LINE
    assert text.continuous_update is False
    capsys.readouterr()
    text.value = "Good night"
    assert "10 characters from a zero state" in capsys.readouterr().out


# --- exercise checkers -----------------------------------------------------------


def test_check_gru_param_count():
    E, H = 64, 256
    assert check_gru_param_count(3 * H * (E + H) + 6 * H, E, H).passed
    assert check_gru_param_count(247_296, E, H).passed
    assert "one bias per gate" in check_gru_param_count(3 * H * (E + H) + 3 * H, E, H).message
    assert "biases" in check_gru_param_count(3 * H * (E + H), E, H).message
    assert "vanilla RNN" in check_gru_param_count(H * (E + H) + 2 * H, E, H).message
    assert "W_hh (H, 3H) is missing" in check_gru_param_count(3 * H * E + 6 * H, E, H).message
    assert "too low" in check_gru_param_count(1000, E, H).message
    assert not check_gru_param_count(None, E, H)


def test_check_gru_2014_cell():
    def split(gru):
        hidden_weights, input_weights = np.split(gru["W_hh"], 3, axis=1), np.split(gru["W_ih"], 3, axis=1)
        return hidden_weights, np.split(gru["b_hh"], 3), np.split(gru["b_ih"], 3), input_weights

    def make(reset_before=True, swap_z=False, with_b_hn=True, swap_gates=False):
        def cell(x, h, gru):
            (W_hr, W_hz, W_hn), (b_hr, b_hz, b_hn), (b_ir, b_iz, b_in), (W_ir, W_iz, W_in) = split(gru)
            r = sigmoid(x @ W_ir + b_ir + h @ W_hr + b_hr)
            z = sigmoid(x @ W_iz + b_iz + h @ W_hz + b_hz)
            if swap_gates:
                r, z = z, r
            b = b_hn if with_b_hn else 0.0
            hidden = (r * h) @ W_hn + b if reset_before else r * (h @ W_hn + b)
            n = np.tanh(x @ W_in + b_in + hidden)
            return z * n + (1 - z) * h if swap_z else (1 - z) * n + z * h

        return cell

    assert check_gru_2014_cell(make()).passed
    assert "library's form" in check_gru_2014_cell(make(reset_before=False)).message
    assert "z weighs the old state" in check_gru_2014_cell(make(swap_z=True)).message
    assert "b_hn" in check_gru_2014_cell(make(with_b_hn=False)).message
    assert "gate order is r, z, n" in check_gru_2014_cell(make(swap_gates=True)).message
    assert "shape (B, H)" in check_gru_2014_cell(lambda x, h, gru: h[0]).message
    assert "raised KeyError" in check_gru_2014_cell(lambda x, h, gru: gru["W_hn"]).message
    assert "first row" in check_gru_2014_cell(lambda x, h, gru: np.zeros_like(h)).message
    assert not check_gru_2014_cell(None)


def test_check_gru_2014_cell_accepts_library_code():
    def with_library(x, h, gru):
        params = {name: jnp.asarray(value, jnp.float32) for name, value in gru.items()}
        return np.asarray(gru_cell_2014(params, jnp.asarray(x, jnp.float32), jnp.asarray(h, jnp.float32)))

    assert check_gru_2014_cell(with_library).passed


def test_check_update_gate_decay():
    assert check_update_gate_decay(0.95**100).passed
    assert check_update_gate_decay(0.0059205).passed
    assert "(1 - z)" in check_update_gate_decay(0.05**100).message
    assert "factors multiply" in check_update_gate_decay(95.0).message
    assert "approximation" in check_update_gate_decay(math.exp(-5)).message
    assert "too high" in check_update_gate_decay(0.5).message
    assert not check_update_gate_decay(None)
    assert check_update_gate_decay(0.9**10, z=0.9, steps=10).passed
