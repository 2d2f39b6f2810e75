"""Notebook 04's library code, widget callback and exercise checkers."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from grulm_edu.clipping import clip_by_leaf_norm, clip_leaves_by_norm
from grulm_edu.data import make_batches
from grulm_edu.exercises.clipping import check_adam_stall, check_clip_by_global_norm, check_global_norm
from grulm_edu.model import ModelConfig, init_params
from grulm_edu.training import TrainConfig, fit
from grulm_edu.widgets.clipping import clipping_view, moving_average, plot_clipping_runs, summarize_run

WORKED_EXAMPLE = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.0, 0.0, 12.0])}


def numpy_leaf_clip(tree, max_norm):
    """Reference: each leaf times min(1, max_norm / norm), in float64."""
    out = {}
    for name, leaf in tree.items():
        leaf = np.asarray(leaf, np.float64)
        norm = np.sqrt((leaf**2).sum())
        out[name] = leaf * min(1.0, max_norm / norm) if norm > 0 else leaf
    return out


# --- grulm_edu.clipping -------------------------------------------------------


def test_leaf_clip_worked_example():
    clipped = clip_leaves_by_norm(WORKED_EXAMPLE, 6.5)
    np.testing.assert_array_equal(clipped["a"], [3.0, 4.0])
    np.testing.assert_allclose(clipped["b"], [0.0, 0.0, 6.5], rtol=1e-6)


def test_global_clip_worked_example():
    clip = optax.clip_by_global_norm(6.5)
    clipped, _ = clip.update(WORKED_EXAMPLE, clip.init(WORKED_EXAMPLE))
    assert math.isclose(float(optax.tree.norm(WORKED_EXAMPLE)), 13.0, rel_tol=1e-6)
    np.testing.assert_allclose(clipped["a"], [1.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(clipped["b"], [0.0, 0.0, 6.0], rtol=1e-6)


def test_leaf_clip_matches_numpy_reference(key):
    keys = jax.random.split(key, 3)
    tree = {
        "small": 0.01 * jax.random.normal(keys[0], (4, 5)),
        "large": 10.0 * jax.random.normal(keys[1], (7,)),
        "matrix": jax.random.normal(keys[2], (3, 6)),
    }
    for max_norm in (0.05, 1.0, 3.0, 100.0):
        clipped = clip_leaves_by_norm(tree, max_norm)
        expected = numpy_leaf_clip(tree, max_norm)
        for name in tree:
            np.testing.assert_allclose(clipped[name], expected[name], rtol=1e-5, atol=1e-7)


def test_leaf_clip_bounds_each_leaf(key):
    tree = {"w": 5.0 * jax.random.normal(key, (10, 10)), "b": jnp.array([0.1, -0.2]), "zero": jnp.zeros(3)}
    clipped = clip_leaves_by_norm(tree, 1.0)
    assert math.isclose(float(jnp.linalg.norm(clipped["w"])), 1.0, rel_tol=1e-5)
    # Leaves inside the bound (the all-zero one too) come back bit for bit.
    np.testing.assert_array_equal(clipped["b"], tree["b"])
    np.testing.assert_array_equal(clipped["zero"], tree["zero"])
    assert not np.isnan(np.asarray(clipped["zero"])).any()


def test_leaf_clip_keeps_dtype_and_structure():
    tree = {"gru": {"W": jnp.full((2, 2), 3.0, jnp.bfloat16)}, "head": jnp.array([5.0, 0.0])}
    clipped = clip_leaves_by_norm(tree, 1.0)
    assert jax.tree.structure(clipped) == jax.tree.structure(tree)
    assert clipped["gru"]["W"].dtype == jnp.bfloat16
    assert clipped["head"].dtype == jnp.float32


def test_only_leaf_clip_turns_direction():
    def cosine(a, b):
        a, b = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)]) for t in (a, b))
        return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))

    global_clip = optax.clip_by_global_norm(6.5)
    globally, _ = global_clip.update(WORKED_EXAMPLE, global_clip.init(WORKED_EXAMPLE))
    per_leaf = clip_leaves_by_norm(WORKED_EXAMPLE, 6.5)
    assert math.isclose(cosine(WORKED_EXAMPLE, globally), 1.0, rel_tol=1e-6)
    # (9 + 16 + 78) / (13 * sqrt(67.25))
    assert math.isclose(cosine(WORKED_EXAMPLE, per_leaf), 103 / (13 * math.sqrt(67.25)), rel_tol=1e-5)


def test_leaf_clip_transform_in_a_chain():
    transform = clip_by_leaf_norm(6.5)
    state = transform.init(WORKED_EXAMPLE)
    updates, new_state = transform.update(WORKED_EXAMPLE, state)
    assert new_state == state
    np.testing.assert_allclose(updates["b"], [0.0, 0.0, 6.5], rtol=1e-6)

    chain = optax.chain(clip_by_leaf_norm(6.5), optax.sgd(1.0))
    updates, _ = chain.update(WORKED_EXAMPLE, chain.init(WORKED_EXAMPLE))
    np.testing.assert_allclose(updates["b"], [0.0, 0.0, -6.5], rtol=1e-6)


def test_leaf_clip_under_jit_compiles_once():
    traces = []

    @jax.jit
    def clip(tree):
        traces.append(1)
        return clip_leaves_by_norm(tree, 2.0)

    clip(WORKED_EXAMPLE)
    result = clip({"a": jnp.array([0.3, 0.4]), "b": jnp.array([1.0, 2.0, 2.0])})
    assert len(traces) == 1
    np.testing.assert_allclose(result["b"], [2 / 3, 4 / 3, 4 / 3], rtol=1e-6)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan")])
def test_leaf_clip_rejects_bad_max_norm(bad):
    with pytest.raises(ValueError, match="max_norm must be a finite number > 0"):
        clip_leaves_by_norm(WORKED_EXAMPLE, bad)
    with pytest.raises(ValueError, match="max_norm"):
        clip_by_leaf_norm(bad)


@pytest.mark.parametrize("bad", [True, "1.0", None])
def test_leaf_clip_rejects_non_numbers(bad):
    with pytest.raises(TypeError, match="max_norm must be a Python number"):
        clip_leaves_by_norm(WORKED_EXAMPLE, bad)


# --- grulm_edu.widgets.clipping ---------------------------------------------------


def test_moving_average_matches_convolution():
    values = np.array([4.0, 1.0, 3.0, 8.0, 2.0, 6.0])
    np.testing.assert_allclose(moving_average(values, 3), np.convolve(values, np.ones(3) / 3, mode="valid"))
    np.testing.assert_allclose(moving_average(values, 1), values)
    np.testing.assert_allclose(moving_average(values, 6), [values.mean()])


@pytest.mark.parametrize("window", [0, 7, 2.0, True])
def test_moving_average_rejects_bad_window(window):
    with pytest.raises(ValueError, match="window must be an int"):
        moving_average(np.arange(6.0), window)


@pytest.fixture(scope="module")
def tiny_run():
    """A tiny model with scaled-up recurrent weights, its batches, a config and an unclipped run."""
    rng = np.random.default_rng(0)
    train = make_batches(rng.integers(0, 11, 2000).astype(np.int32), batch_size=4, seq_len=16)
    params = init_params(jax.random.key(7), ModelConfig(vocab_size=11, embed_size=4, hidden_size=8))
    params = {**params, "gru": {**params["gru"], "W_hh": 8.0 * params["gru"]["W_hh"]}}
    config = TrainConfig(
        batch_size=4, seq_len=16, num_steps=12, learning_rate=1e-2, warmup_steps=0,
        final_lr_fraction=1.0, weight_decay=0.0, clip_norm=1e9, log_interval=12,
    )
    _, reference = fit(params, train, None, config)
    return params, train, config, reference


def test_summarize_run_counts_steps(tiny_run):
    *_, reference = tiny_run
    threshold = float(np.median(reference.grad_norm))
    line = summarize_run("run", reference, threshold, last=5)
    above = int((reference.grad_norm > threshold).sum())
    assert line.startswith(f"run: {above} of 12 steps above {threshold:g}")
    assert f"largest gradient norm {float(reference.grad_norm.max()):.4g}" in line
    assert f"mean loss over the last 5 steps {float(reference.loss[-5:].mean()):.4f}" in line


def test_clipping_view_uses_max_norm(tiny_run):
    params, train, config, reference = tiny_run
    figure, summary = clipping_view(0.5, params=params, train=train, config=config, reference=reference)
    _, expected = fit(params, train, None, dataclasses.replace(config, clip_norm=0.5))
    lines = summary.splitlines()
    assert lines == [summarize_run("no clipping", reference, 0.5), summarize_run("max norm 0.5", expected, 0.5)]
    norm_axes, loss_axes = figure.axes
    assert [line.get_label() for line in norm_axes.get_lines()] == ["no clipping", "max norm 0.5", "threshold 0.5"]
    np.testing.assert_allclose(norm_axes.get_lines()[1].get_ydata(), expected.grad_norm)
    np.testing.assert_allclose(loss_axes.get_lines()[1].get_ydata(), moving_average(expected.loss, 10), rtol=1e-6)


def test_clipping_view_huge_max_norm(tiny_run):
    params, train, config, reference = tiny_run
    _, summary = clipping_view(1e9, params=params, train=train, config=config, reference=reference)
    no_clip, huge = summary.splitlines()
    assert no_clip.split(": ", 1)[1] == huge.split(": ", 1)[1]


def test_plot_clipping_runs_without_threshold(tiny_run):
    *_, reference = tiny_run
    figure = plot_clipping_runs({"a": reference}, window=4)
    assert len(figure.axes[0].get_lines()) == 1
    assert len(figure.axes[1].get_lines()[0].get_ydata()) == 12 - 4 + 1


def test_clipping_view_rejects_bad_arguments(tiny_run):
    params, train, config, reference = tiny_run
    with pytest.raises(ValueError, match="max_norm must be a finite number > 0"):
        clipping_view(0.0, params=params, train=train, config=config, reference=reference)
    with pytest.raises(ValueError, match="reference has 12 steps but config.num_steps is 20"):
        clipping_view(1.0, params=params, train=train, config=dataclasses.replace(config, num_steps=20), reference=reference)


def test_clipping_explorer_builds_and_runs(tiny_run, capsys):
    import ipywidgets

    from grulm_edu.widgets.clipping import clipping_explorer

    params, train, config, reference = tiny_run
    box = clipping_explorer(params, train, config, reference)
    controls = box.children[0].children
    slider = next(c for c in controls if isinstance(c, ipywidgets.FloatLogSlider))
    assert slider.value == 0.1
    assert any(isinstance(c, ipywidgets.Button) and c.description == "Run" for c in controls)
    # Building only prompts; a press of Run trains. Without a kernel the Output
    # widget cannot capture, so the summary reaches stdout.
    assert "press \"Run\"" in capsys.readouterr().out
    box.run()
    assert "max norm 0.1:" in capsys.readouterr().out


# --- grulm_edu.exercises.clipping --------------------------------------------------


def test_check_global_norm():
    assert check_global_norm(5.0)
    assert check_global_norm(5)
    assert "no answer yet" in check_global_norm(None).message
    assert "square root" in check_global_norm(25.0).message
    assert "sum of the two leaf norms" in check_global_norm(7).message
    assert "mean of the leaf norms" in check_global_norm(3.5).message
    assert "largest leaf norm" in check_global_norm(4.0).message
    assert "L1 norm" in check_global_norm(9.0).message
    assert "too high" in check_global_norm(6.0).message
    assert "number" in check_global_norm("five").message


def test_check_clip_by_global_norm():
    def right(grads, max_norm):
        factor = jnp.minimum(1.0, max_norm / optax.tree.norm(grads))
        return jax.tree.map(lambda g: g * factor, grads)

    def always_scales(grads, max_norm):
        return jax.tree.map(lambda g: g * max_norm / optax.tree.norm(grads), grads)

    def squared_norm(grads, max_norm):
        factor = jnp.minimum(1.0, max_norm / optax.tree.norm(grads, squared=True))
        return jax.tree.map(lambda g: g * factor, grads)

    def with_optax(grads, max_norm):
        return optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())[0]

    def drops_a_key(grads, max_norm):
        return {"a": grads["a"]}

    def raises(grads, max_norm):
        raise KeyError("W")

    assert check_clip_by_global_norm(right).passed
    assert check_clip_by_global_norm(with_optax).passed
    assert "clipped each leaf on its own" in check_clip_by_global_norm(clip_leaves_by_norm).message
    assert "must come back unchanged" in check_clip_by_global_norm(always_scales).message
    assert "squared norm" in check_clip_by_global_norm(squared_norm).message
    assert "same keys" in check_clip_by_global_norm(drops_a_key).message
    assert "raised KeyError" in check_clip_by_global_norm(raises).message
    assert "function itself" in check_clip_by_global_norm(3.0).message
    assert not check_clip_by_global_norm(None)


def test_check_adam_stall():
    assert check_adam_stall("b")
    assert check_adam_stall(" (B) ")
    for wrong, phrase in [("a", "about the learning rate"), ("c", "0 skipped"), ("d", "constant learning rate")]:
        feedback = check_adam_stall(wrong)
        assert not feedback
        assert phrase in feedback.message
    assert "one letter" in check_adam_stall("e").message
    assert "one letter" in check_adam_stall(2).message
    assert not check_adam_stall(None)
