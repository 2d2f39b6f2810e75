"""Notebook 11's helpers and checkers: curves that match fit, decay of unused embedding rows, exercises."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grulm_edu.chars import CharTokenizer
from grulm_edu.data import make_batches
from grulm_edu.exercises.regularization import check_decay_factor, check_decay_mask, check_dropout_value
from grulm_edu.model import ModelConfig, init_params
from grulm_edu.training import TrainConfig, decay_mask, evaluate, fit, make_optimizer
from grulm_edu.widgets import regularization
from grulm_edu.widgets.regularization import (
    Curves,
    make_shared_decay_optimizer,
    plot_curve_grid,
    regularization_view,
    summarize_curves,
    train_bigram_embeddings,
    train_with_curves,
)

TEXT = "Now, fair Hippolyta, our nuptial hour\nDraws on apace; four happy days bring in\n" * 12


@pytest.fixture(scope="module")
def tiny():
    tokenizer = CharTokenizer.from_text(TEXT)
    ids = tokenizer.encode(TEXT)
    train = make_batches(ids[:600], batch_size=4, seq_len=16)
    val = make_batches(ids[600:900], batch_size=4, seq_len=16, drop_last=False)
    params = init_params(jax.random.key(7), ModelConfig(tokenizer.vocab_size, 4, 8))
    config = TrainConfig(batch_size=4, seq_len=16, num_steps=12, warmup_steps=2, dropout_rate=0.2, weight_decay=0.5)
    return params, train, val, config


def fake_curves(train_loss, val_loss):
    steps = np.arange(1, len(train_loss) + 1) * 10
    return Curves(steps, np.array(train_loss), np.array(val_loss), params={})


@pytest.fixture(scope="module")
def tiny_curves(tiny):
    params, train, val, config = tiny
    return train_with_curves(params, train, val, config, eval_every=5, eval_batches=2)


def test_train_with_curves_takes_fits_updates(tiny, tiny_curves):
    params, train, _, config = tiny
    curves = tiny_curves
    state, _ = fit(params, train, None, config)
    for ours, theirs in zip(jax.tree.leaves(curves.params), jax.tree.leaves(state.params)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def test_train_with_curves_scores_without_dropout(tiny, tiny_curves):
    _, train, val, _ = tiny
    curves = tiny_curves
    assert curves.step.tolist() == [5, 10, 12]
    assert curves.train_loss[-1] == pytest.approx(evaluate(curves.params, train, 2)["loss"], rel=1e-12)
    assert curves.val_loss[-1] == pytest.approx(evaluate(curves.params, val, 2)["loss"], rel=1e-12)
    assert curves.gap == pytest.approx(curves.val_loss[-1] - curves.train_loss[-1])


def test_shared_decay_optimizer_matches_library(tiny, key):
    params, _, _, config = tiny
    grads = jax.tree.map(lambda x: jax.random.normal(key, x.shape), params)
    theirs = make_optimizer(config)
    ours = make_shared_decay_optimizer(config)
    their_state, our_state = theirs.init(params), ours.init(params)
    for _ in range(3):
        their_updates, their_state = theirs.update(grads, their_state, params)
        our_updates, our_state = ours.update(grads, our_state, params)
        for a, b in zip(jax.tree.leaves(our_updates), jax.tree.leaves(their_updates)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)


def test_runs_differing_in_decay_share_a_step(tiny):
    params, train, val, config = tiny
    no_decay = TrainConfig(**{**config.to_dict(), "weight_decay": 0.0, "num_steps": 6})
    train_with_curves(params, train, val, no_decay, eval_every=6, eval_batches=1)
    hits = regularization._shared_train_step.cache_info().hits
    strong_decay = TrainConfig(**{**no_decay.to_dict(), "weight_decay": 2.0})
    curves = train_with_curves(params, train, val, strong_decay, eval_every=6, eval_batches=1)
    assert regularization._shared_train_step.cache_info().hits == hits + 1
    state, _ = fit(params, train, None, strong_decay)
    for ours, theirs in zip(jax.tree.leaves(curves.params), jax.tree.leaves(state.params)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_train_with_curves_rejects_bad_settings(tiny):
    params, train, val, config = tiny
    accumulating = TrainConfig(**{**config.to_dict(), "accumulation_steps": 2})
    with pytest.raises(ValueError, match="accumulation_steps=2"):
        train_with_curves(params, train, val, accumulating)
    with pytest.raises(ValueError, match="eval_every"):
        train_with_curves(params, train, val, config, eval_every=0)


def test_summarize_curves_numbers():
    line = summarize_curves("run", fake_curves([2.0, 1.5, 1.0], [2.5, 2.25, 2.4]))
    assert line == "run: train 1.0000 | val 2.4000 | gap 1.4000 | best val 2.2500 at step 20"


def test_plot_curve_grid_panels():
    runs = {name: fake_curves([2.0, 1.0], [2.5, 2.0 + i / 10]) for i, name in enumerate(["a", "b", "c"])}
    figure = plot_curve_grid(runs)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 3
    assert visible[2].get_title() == "c: final gap 1.200 nats"
    np.testing.assert_allclose(visible[1].lines[1].get_ydata(), [2.5, 2.1])
    with pytest.raises(ValueError, match="empty"):
        plot_curve_grid({})


def test_regularization_view_reuses_cache(tiny):
    params, train, val, config = tiny
    baseline = fake_curves([2.0, 1.0], [2.5, 2.6])
    cached = fake_curves([2.2, 1.5], [2.4, 2.0])
    figure, summary = regularization_view(
        0.3, 1.0, params=None, train=None, val=None, config=config, baseline=baseline, cache={(0.3, 1.0): cached}
    )
    expected = "dropout 0.3, weight decay 1: train 1.5000 | val 2.0000 | gap 0.5000 | best val 2.0000 at step 20"
    assert summary.splitlines()[1] == expected
    assert len(figure.axes[0].lines) == 4


def test_regularization_view_trains_and_stores(tiny):
    params, train, val, config = tiny
    cache = {}
    baseline = fake_curves([2.0, 1.0], [2.5, 2.6])
    _, summary = regularization_view(
        0.0, 0.0, params=params, train=train, val=val, config=config, baseline=baseline, cache=cache,
        eval_every=6, eval_batches=2,
    )
    assert list(cache) == [(0.0, 0.0)]
    stored = cache[(0.0, 0.0)]
    assert stored.step.tolist() == [6, 12]
    assert stored.val_loss[-1] == pytest.approx(evaluate(stored.params, val, 2)["loss"], rel=1e-12)
    assert summary.splitlines()[1] == summarize_curves("dropout 0, weight decay 0", stored)


def bigram_setup(key):
    V, E = 6, 3
    k_embed, k_head = jax.random.split(key)
    params = {
        "embed": jax.random.normal(k_embed, (V, E)),
        "head": {"W": jax.random.normal(k_head, (E, V)), "b": jnp.zeros(V)},
    }
    windows = np.asarray(jax.random.randint(jax.random.fold_in(key, 1), (40, 9), 0, V - 1))  # id V - 1 never appears
    return params, windows


def test_unused_embedding_row_decays_geometrically(key):
    params, windows = bigram_setup(key)
    every_matrix = jax.tree.map(lambda x: x.ndim >= 2, params)
    trained = train_bigram_embeddings(params, windows, every_matrix, learning_rate=0.05, weight_decay=0.4)
    expected = np.asarray(params["embed"][-1]) * (1 - 0.05 * 0.4) ** len(windows)
    np.testing.assert_allclose(trained["embed"][-1], expected, rtol=1e-5)
    assert not np.allclose(trained["embed"][0], params["embed"][0] * (1 - 0.05 * 0.4) ** len(windows), rtol=1e-3)


def test_course_mask_leaves_unused_row_alone(key):
    params, windows = bigram_setup(key)
    trained = train_bigram_embeddings(params, windows, decay_mask, learning_rate=0.05, weight_decay=0.4)
    np.testing.assert_array_equal(trained["embed"][-1], params["embed"][-1])
    assert not np.array_equal(trained["embed"][0], params["embed"][0])


def test_bigram_rejects_float_windows(key):
    params, _ = bigram_setup(key)
    with pytest.raises(ValueError, match="int ids"):
        train_bigram_embeddings(params, np.zeros((3, 5)), decay_mask, learning_rate=0.1, weight_decay=0.1)


def test_check_dropout_value():
    assert check_dropout_value(4.0, value=3.0, rate=0.25)
    assert not check_dropout_value(None, value=3.0, rate=0.25)
    assert "rescales" in check_dropout_value(3.0, value=3.0, rate=0.25).message
    assert "keep probability" in check_dropout_value(2.25, value=3.0, rate=0.25).message
    assert "was kept" in check_dropout_value(0.0, value=3.0, rate=0.25).message
    assert "1 + rate" in check_dropout_value(3.75, value=3.0, rate=0.25).message
    assert "too high" in check_dropout_value(5.0, value=3.0, rate=0.25).message


def test_check_decay_factor():
    lr, wd, n = 0.05, 0.4, 25
    assert check_decay_factor((1 - lr * wd) ** n, lr, wd, n)
    assert not check_decay_factor(None, lr, wd, n)
    assert "one update" in check_decay_factor(1 - lr * wd, lr, wd, n).message
    assert "multiply" in check_decay_factor(1 - n * lr * wd, lr, wd, n).message
    assert "continuous approximation" in check_decay_factor(math.exp(-n * lr * wd), lr, wd, n).message
    assert "learning rate too" in check_decay_factor((1 - wd) ** n, lr, wd, n).message
    assert "still shrinks" in check_decay_factor(1.0, lr, wd, n).message
    assert "should be a number" in check_decay_factor("six", lr, wd, n).message


def test_check_decay_mask():
    def right(params):
        gru = {name: name.startswith("W") for name in params["gru"]}
        return {"embed": False, "gru": gru, "head": {"W": True, "b": False}}

    def decays_embedding(params):
        return jax.tree.map(lambda x: x.ndim >= 2, params)

    def decays_biases(params):
        return {**right(params), "head": {"W": True, "b": True}}

    def decays_nothing(params):
        return jax.tree.map(lambda x: False, params)

    def flat(params):
        return [True, False]

    def broken(params):
        raise KeyError("W")

    assert check_decay_mask(right).passed
    assert check_decay_mask(decay_mask).passed
    assert "rare character" in check_decay_mask(decays_embedding).message
    assert "bias" in check_decay_mask(decays_biases).message
    assert "nothing decays" in check_decay_mask(decays_nothing).message
    assert "same structure" in check_decay_mask(flat).message
    assert "raised KeyError" in check_decay_mask(broken).message
    assert not check_decay_mask(None)
    assert "function itself" in check_decay_mask(True).message
