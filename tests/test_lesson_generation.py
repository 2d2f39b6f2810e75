"""Notebook 05's library code, widget callback and exercise checkers."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grulm_edu.chars import CharTokenizer
from grulm_edu.exercises.generation import (
    DISTINCT_TEXT,
    check_apply_temperature,
    check_distinct_trigrams,
    check_top_k_filter,
)
from grulm_edu.generation import generate, sample_logits
from grulm_edu.model import ModelConfig, forward, init_params
from grulm_edu.sampling_stats import character_entropy, distinct_ngram_ratio, sampling_distribution
from grulm_edu.widgets.generation import generation_view

LOGITS = np.array([2.0, 0.5, 0.8, -0.5, 0.2, -1.0])


def softmax(x):
    weights = np.exp(x - x.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True)


# --- sampling_distribution ---------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_distribution_is_softmax_of_scaled_logits(temperature):
    np.testing.assert_allclose(sampling_distribution(LOGITS, temperature), softmax(LOGITS / temperature), rtol=1e-12)


def test_distribution_temperature_zero_is_argmax():
    np.testing.assert_array_equal(sampling_distribution(LOGITS, 0.0), np.eye(6)[0])
    # On ties the first maximum wins, as jnp.argmax does.
    np.testing.assert_array_equal(sampling_distribution([1.0, 3.0, 3.0], 0), [0.0, 1.0, 0.0])


def test_distribution_top_k_renormalises():
    probs = sampling_distribution(LOGITS, 1.0, top_k=3)  # keeps ids 0, 2, 1
    expected = np.zeros(6)
    expected[[0, 1, 2]] = softmax(LOGITS[[0, 1, 2]])
    np.testing.assert_allclose(probs, expected, rtol=1e-12)
    np.testing.assert_allclose(sampling_distribution(LOGITS, 0.7, top_k=6), sampling_distribution(LOGITS, 0.7))


def test_distribution_top_k_keeps_ties():
    probs = sampling_distribution([3.0, 1.0, 1.0, 0.0], 1.0, top_k=2)
    assert probs[1] > 0
    assert probs[2] > 0
    assert probs[3] == 0
    np.testing.assert_allclose(probs.sum(), 1.0)


def test_distribution_rows_and_small_temperatures():
    rows = np.stack([LOGITS, -LOGITS, 100.0 * LOGITS])
    probs = sampling_distribution(rows, 0.01)
    assert probs.shape == (3, 6)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(-1), 1.0)
    np.testing.assert_array_equal(probs.argmax(-1), [0, 5, 0])


def test_distribution_matches_sample_frequencies(key):
    logits = jnp.asarray(LOGITS, jnp.float32)[None]
    draws = jax.vmap(lambda k: sample_logits(k, logits, 0.7, top_k=4))(jax.random.split(key, 20000))
    counts = np.bincount(np.asarray(draws).ravel(), minlength=6) / draws.size
    expected = sampling_distribution(LOGITS, 0.7, top_k=4)
    # Standard error of a frequency near 0.5 over 20000 draws is about 0.0035.
    np.testing.assert_allclose(counts, expected, atol=0.015)
    assert counts[expected == 0].sum() == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": -1.0}, "temperature must be a finite number >= 0"),
        ({"temperature": float("inf")}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"top_k": 0}, r"top_k must be an int in \[1, 6\]"),
        ({"top_k": 7}, "top_k"),
        ({"top_k": 2.0}, "top_k"),
        ({"logits": np.zeros((2, 3, 4))}, "logits must have shape"),
    ],
)
def test_distribution_rejects_bad_arguments(kwargs, message):
    arguments = {"logits": LOGITS, "temperature": 1.0, "top_k": None}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        sampling_distribution(**arguments)


# --- character_entropy and distinct_ngram_ratio --------------------------------------


def test_entropy_of_simple_texts():
    assert character_entropy(np.array([7, 7, 7])) == 0.0
    assert math.isclose(character_entropy(np.arange(8)), 3.0)
    assert math.isclose(character_entropy(np.array(list("abab"))), 1.0)
    # Counts 2, 1, 1: -(0.5 log2 0.5 + 2 * 0.25 log2 0.25) = 1.5
    assert math.isclose(character_entropy([1, 1, 2, 3]), 1.5)


def test_entropy_pools_all_rows():
    rows = np.array([[0, 0], [1, 1]])
    assert math.isclose(character_entropy(rows), 1.0)


def test_entropy_rejects_empty_input():
    with pytest.raises(ValueError, match="ids is empty"):
        character_entropy([])


def test_distinct_ratio_hand_worked_examples():
    # "abababab": 7 bigrams, only "ab" and "ba" distinct.
    assert math.isclose(distinct_ngram_ratio(np.array(list("abababab")), 2), 2 / 7)
    # "to be or not to be": 16 trigrams; "to ", "o b" and " be" occur twice.
    assert math.isclose(distinct_ngram_ratio(np.array(list(DISTINCT_TEXT)), 3), 13 / 16)
    assert distinct_ngram_ratio(np.arange(10), 4) == 1.0
    assert math.isclose(distinct_ngram_ratio(np.array([5, 5, 5, 5]), 1), 0.25)
    assert distinct_ngram_ratio(np.array([1, 2, 3]), 3) == 1.0


@pytest.mark.parametrize(
    "ids, n, message",
    [
        (np.arange(5), 0, "n must be an int >= 1"),
        (np.arange(5), 2.0, "n must be an int"),
        (np.arange(2), 3, "L >= n = 3"),
        (np.zeros((2, 5), int), 2, "one text of shape"),
    ],
)
def test_distinct_ratio_rejects_bad_arguments(ids, n, message):
    with pytest.raises(ValueError, match=message):
        distinct_ngram_ratio(ids, n)


# --- grulm_edu.widgets.generation ----------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint():
    tokenizer = CharTokenizer("\n abcdeR:")
    params = init_params(jax.random.key(3), ModelConfig(tokenizer.vocab_size, embed_size=4, hidden_size=8))
    return types.SimpleNamespace(params=params, tokenizer=tokenizer)


def test_generation_view_text_matches_generate(tiny_checkpoint):
    _, summary = generation_view("Rab:\n", temperature=0.9, top_k=3, length=24, seed=5, checkpoint=tiny_checkpoint)
    ids = tiny_checkpoint.tokenizer.encode("Rab:\n")
    sample = np.asarray(generate(tiny_checkpoint.params, ids, 24, jax.random.key(5), temperature=0.9, top_k=3))
    statistics, text = summary.split("\n\n", 1)
    assert text == "Rab:\n" + tiny_checkpoint.tokenizer.decode(sample)
    assert statistics == (
        f"temperature 0.9 | top-k 3 | seed 5 | 24 characters | character entropy {character_entropy(sample):.2f} bits"
        f" | distinct 4-grams {distinct_ngram_ratio(sample, 4):.2f}"
    )


def test_generation_view_bars_show_both_distributions(tiny_checkpoint):
    figure, _ = generation_view("ab", temperature=0.5, top_k=None, length=8, checkpoint=tiny_checkpoint, num_bars=5)
    logits, _ = forward(tiny_checkpoint.params, jnp.asarray(tiny_checkpoint.tokenizer.encode("ab"))[None])
    model = sampling_distribution(np.asarray(logits[0, -1]), 1.0)
    sharpened = sampling_distribution(np.asarray(logits[0, -1]), 0.5)
    order = np.argsort(-model, kind="stable")[:5]
    filled, outlined = figure.axes[0].containers
    np.testing.assert_allclose([bar.get_height() for bar in filled], sharpened[order], rtol=1e-6)
    np.testing.assert_allclose([bar.get_height() for bar in outlined], model[order], rtol=1e-6)


def test_generation_view_greedy_and_short_samples(tiny_checkpoint):
    _, greedy = generation_view("a", temperature=0.0, length=3, seed=1, checkpoint=tiny_checkpoint)
    _, other_seed = generation_view("a", temperature=0.0, length=3, seed=2, checkpoint=tiny_checkpoint)
    assert greedy.split("\n\n", 1)[1] == other_seed.split("\n\n", 1)[1]
    assert "distinct 4-grams" not in greedy  # 3 characters hold no 4-gram


def test_generation_view_rejects_bad_prompts(tiny_checkpoint):
    with pytest.raises(ValueError, match="prompt must be a non-empty string"):
        generation_view("", checkpoint=tiny_checkpoint)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        generation_view("xyz", checkpoint=tiny_checkpoint)


def test_generation_explorer_builds_and_runs(tiny_checkpoint, capsys):
    import ipywidgets

    from grulm_edu.widgets.generation import generation_explorer

    box = generation_explorer(tiny_checkpoint)
    controls = box.children[0].children
    kinds = {type(c) for c in controls}
    for kind in (ipywidgets.Textarea, ipywidgets.FloatSlider, ipywidgets.Dropdown, ipywidgets.IntSlider, ipywidgets.BoundedIntText):
        assert kind in kinds
    assert any(isinstance(c, ipywidgets.Button) and c.description == "Run" for c in controls)
    # The default prompt "ROMEO:\n" uses letters outside the tiny vocabulary: after
    # a press of Run the error is shown in the output area (stdout without a
    # kernel), not raised.
    box.run()
    assert "outside the vocabulary" in capsys.readouterr().out


# --- grulm_edu.exercises.generation ----------------------------------------------------


def test_check_apply_temperature():
    def right(logits, temperature):
        scaled = np.asarray(logits) / temperature
        weights = np.exp(scaled - scaled.max())
        return weights / weights.sum()

    def multiplies(logits, temperature):
        return right(np.asarray(logits) * temperature * temperature, temperature)

    def unnormalised(logits, temperature):
        scaled = np.asarray(logits) / temperature
        return np.exp(scaled)

    def overflows(logits, temperature):
        weights = np.exp(np.asarray(logits) / temperature)
        return weights / weights.sum()

    def with_jax(logits, temperature):
        return jax.nn.softmax(jnp.asarray(logits) / temperature)

    assert check_apply_temperature(right).passed
    assert check_apply_temperature(with_jax).passed
    assert "multiplied by the temperature" in check_apply_temperature(multiplies).message
    assert "sum to 1" in check_apply_temperature(unnormalised).message
    assert "overflows" in check_apply_temperature(overflows).message
    assert "raised ZeroDivisionError" in check_apply_temperature(lambda logits, t: 1 / 0).message
    assert not check_apply_temperature(None)


def test_check_top_k_filter():
    def right(probs, k):
        kept = np.zeros_like(probs)
        top = np.argsort(-probs)[:k]
        kept[top] = probs[top]
        return kept / kept.sum()

    def no_renormalise(probs, k):
        kept = np.zeros_like(probs)
        top = np.argsort(-probs)[:k]
        kept[top] = probs[top]
        return kept

    def smallest(probs, k):
        kept = np.zeros_like(probs)
        low = np.argsort(probs)[:k]
        kept[low] = probs[low]
        return kept / kept.sum()

    def one_too_many(probs, k):
        return right(probs, k + 1)

    assert check_top_k_filter(right).passed
    assert "divide by their sum" in check_top_k_filter(no_renormalise).message
    assert "k smallest" in check_top_k_filter(smallest).message
    assert "you kept 3 ids for k = 2" in check_top_k_filter(one_too_many).message
    assert "one probability per id" in check_top_k_filter(lambda probs, k: probs[:k]).message
    assert not check_top_k_filter(None)


def test_check_distinct_trigrams():
    assert check_distinct_trigrams(13 / 16)
    assert check_distinct_trigrams(0.8125)
    assert "number of characters" in check_distinct_trigrams(13 / 18).message
    assert "number of distinct trigrams" in check_distinct_trigrams(13).message
    assert "repeated" in check_distinct_trigrams(3 / 16).message
    assert "too low" in check_distinct_trigrams(0.5).message
    assert not check_distinct_trigrams(None)
