"""Notebook 08's library code: the two pipelines, fresh validation samples, widget and checkers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grulm_edu.corpus import Play
from grulm_edu.data import epoch_order, make_batches, split_plays
from grulm_edu.exercises.splits import check_never_drawn_fraction, check_split_of_play, check_spread_at_windows
from grulm_edu.model import ModelConfig, init_params
from grulm_edu.pipelines import (
    batch_at,
    host_rng,
    naive_batches,
    naive_window_order,
    precomputed_batches,
    random_windows,
    seconds_per_batch,
    steps_per_second,
)
from grulm_edu.training import evaluate
from grulm_edu.widgets.splits import fresh_validation_losses, validation_spread_view

T = 4


@pytest.fixture(scope="module")
def ids():
    return np.arange(1, 202, dtype=np.int32) % 50  # 201 ids: 50 windows of T + 1 = 5


def test_host_rng_follows_key():
    first = host_rng(jax.random.key(80)).integers(0, 1000, 5)
    np.testing.assert_array_equal(first, host_rng(jax.random.key(80)).integers(0, 1000, 5))
    assert not np.array_equal(first, host_rng(jax.random.key(81)).integers(0, 1000, 5))


def test_naive_window_order_draws_distinct_windows():
    order = naive_window_order(20, 6, jax.random.key(82))
    for _ in range(10):
        indices = next(order)
        assert indices.shape == (6,)
        assert len(set(indices.tolist())) == 6
        assert indices.min() >= 0
        assert indices.max() < 20


def test_naive_window_order_misses_about_one_in_e():
    order = naive_window_order(4000, 8, jax.random.key(83))
    drawn = np.concatenate([next(order) for _ in range(4000 // 8)])
    never = 1 - np.unique(drawn).size / 4000
    expected = (1 - 8 / 4000) ** (4000 // 8)  # 0.3675
    assert abs(never - expected) < 0.03


def test_naive_window_order_rejects_large_batch():
    with pytest.raises(ValueError, match="batch_size 6 is larger than the 5 windows"):
        next(naive_window_order(5, 6, jax.random.key(0)))
    with pytest.raises(ValueError, match="num_windows must be a positive int"):
        next(naive_window_order(0, 1, jax.random.key(0)))


def test_naive_batches_slice_aligned_windows(ids):
    batches = naive_batches(ids, 3, T, jax.random.key(84))
    expected_order = naive_window_order((len(ids) - 1) // T, 3, jax.random.key(84))
    for _ in range(4):
        batch = next(batches)
        assert isinstance(batch, jax.Array)
        assert batch.shape == (3, T + 1)
        for row, k in zip(np.asarray(batch), next(expected_order)):
            np.testing.assert_array_equal(row, ids[k * T : k * T + T + 1])


def test_naive_batches_reject_short_text():
    with pytest.raises(ValueError, match="a window needs seq_len \\+ 1 = 5 ids"):
        next(naive_batches(np.arange(4), 1, 4, jax.random.key(0)))


def test_precomputed_batches_follow_epoch_order(ids):
    batches = make_batches(ids, batch_size=5, seq_len=T)  # 50 windows: 10 batches of 5
    key = jax.random.key(85)
    stream = precomputed_batches(batches, key)
    for epoch in range(2):
        order = epoch_order(jax.random.fold_in(key, epoch), len(batches))
        for index in order:
            np.testing.assert_array_equal(np.asarray(next(stream)), batches.tokens[index])
    assert sorted(order.tolist()) == list(range(len(batches)))


def test_seconds_per_batch(ids):
    assert seconds_per_batch(naive_batches(ids, 2, T, jax.random.key(86)), 5) > 0
    with pytest.raises(ValueError, match="num_batches must be a positive int"):
        seconds_per_batch(iter([]), 0)


def test_steps_per_second_threads_state_and_mask(ids):
    seen = []

    def train_step(state, tokens, mask, key):
        seen.append((tokens.shape, mask.shape, float(mask.sum())))
        return state + 1, {"loss": jnp.float32(0.0)}

    rate, state = steps_per_second(train_step, 0, naive_batches(ids, 2, T, jax.random.key(87)), 3, jax.random.key(88))
    assert rate > 0
    assert state == 3
    assert seen == [((2, T + 1), (2, T), 2.0 * T)] * 3
    with pytest.raises(ValueError, match="num_steps must be a positive int"):
        steps_per_second(train_step, 0, iter([]), 0, jax.random.key(0))


def test_random_windows_are_contiguous(ids):
    sample = random_windows(ids, 7, T, jax.random.key(89))
    assert sample.tokens.shape == (1, 7, T + 1)
    assert sample.tokens.dtype == np.int32
    np.testing.assert_array_equal(sample.mask, np.ones((1, 7, T), np.float32))
    starts = host_rng(jax.random.key(89)).integers(0, len(ids) - T, size=7)
    for row, start in zip(sample.tokens[0], starts):
        np.testing.assert_array_equal(row, ids[start : start + T + 1])
    with pytest.raises(ValueError, match="num_windows must be a positive int"):
        random_windows(ids, 0, T, jax.random.key(0))


@pytest.fixture(scope="module")
def small_params():
    return init_params(jax.random.key(90), ModelConfig(vocab_size=50, embed_size=3, hidden_size=4))


def test_fresh_validation_losses_equal_evaluate(ids, small_params):
    key = jax.random.key(91)
    losses = fresh_validation_losses(small_params, ids, 3, T, repeats=3, key=key)
    expected = [evaluate(small_params, random_windows(ids, 3, T, jax.random.fold_in(key, i)))["loss"] for i in range(3)]
    np.testing.assert_allclose(losses, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="repeats must be an int >= 2"):
        fresh_validation_losses(small_params, ids, 3, T, repeats=1, key=key)


def test_validation_spread_view_reports_sample_std(ids, small_params):
    key = jax.random.key(92)
    figure, summary = validation_spread_view(
        4, params=small_params, ids=ids, seq_len=T, fixed_loss=3.9, key=key, repeats=4
    )
    losses = fresh_validation_losses(small_params, ids, 4, T, 4, jax.random.fold_in(key, 4))
    assert f"mean {losses.mean():.4f}, std {losses.std(ddof=1):.4f}" in summary
    assert "fixed split 3.9000, std 0" in summary
    assert len(figure.axes) == 1


def test_split_plays_rule_on_numbered_plays():
    plays = [Play(f"genre/play-{i}", f"text {i}") for i in range(20)]
    splits = split_plays(plays)
    assert splits.val_names == ("genre/play-4", "genre/play-14")
    assert splits.test_names == ("genre/play-9", "genre/play-19")
    assert len(splits.train_names) == 16


def test_check_split_of_play():
    def rule(val_remainder, test_remainder):
        def split_of_play(i):
            if i % 10 == val_remainder:
                return "val"
            if i % 10 == test_remainder:
                return "test"
            return "train"

        return split_of_play

    right, swapped, off_by_one = rule(4, 9), rule(9, 4), rule(5, 0)

    assert check_split_of_play(right).passed
    assert "swapped" in check_split_of_play(swapped).message
    assert "go to the wrong split" in check_split_of_play(off_by_one).message
    assert "'validation'" in check_split_of_play(lambda i: "validation" if i % 10 == 4 else right(i)).message
    assert "no answer yet" in check_split_of_play(None).message


def test_check_spread_at_windows():
    settings = {"std": 0.08, "num_windows": 16, "new_num_windows": 256}
    assert check_spread_at_windows(0.02, **settings).passed
    assert "1/n law" in check_spread_at_windows(0.005, **settings).message
    assert "must fall" in check_spread_at_windows(0.08, **settings).message
    assert "too high" in check_spread_at_windows(0.04, **settings).message
    assert "no answer yet" in check_spread_at_windows(None, **settings).message


def test_check_never_drawn_fraction():
    assert check_never_drawn_fraction(math.exp(-1)).passed
    assert check_never_drawn_fraction(0.37).passed
    assert "drawn at least once" in check_never_drawn_fraction(0.632).message
    assert "precomputed batches" in check_never_drawn_fraction(0).message
    assert "too high" in check_never_drawn_fraction(0.5).message
    assert "no answer yet" in check_never_drawn_fraction(None).message


def test_batch_at_equals_indexing():
    tokens = jnp.arange(3 * 2 * 5, dtype=jnp.int32).reshape(3, 2, 5)
    for index in range(3):
        np.testing.assert_array_equal(np.asarray(batch_at(tokens, index)), np.asarray(tokens[index]))
    np.testing.assert_array_equal(np.asarray(batch_at(tokens, np.int64(2))), np.asarray(tokens[2]))
