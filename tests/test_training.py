import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from grulm_edu.chars import CharTokenizer
from grulm_edu.data import make_batches
from grulm_edu.model import ModelConfig, init_params
from grulm_edu.training import (
    NonFiniteError,
    TrainConfig,
    decay_mask,
    evaluate,
    fit,
    init_state,
    make_optimizer,
    make_schedule,
    make_train_step,
)

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 30


@pytest.fixture(scope="module")
def tiny():
    tokenizer = CharTokenizer.from_text(TEXT)
    ids = tokenizer.encode(TEXT)
    train = make_batches(ids, batch_size=4, seq_len=16)
    val = make_batches(ids[:400], batch_size=4, seq_len=16, drop_last=False)
    model_config = ModelConfig(tokenizer.vocab_size, embed_size=8, hidden_size=32)
    return train, val, model_config


def tiny_config(**overrides):
    settings = dict(batch_size=4, seq_len=16, num_steps=40, learning_rate=1e-2, warmup_steps=5,
                    log_interval=20, eval_batches=2)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_schedule_matches_formula():
    config = TrainConfig(num_steps=100, learning_rate=2e-3, warmup_steps=10, final_lr_fraction=0.1)
    schedule = make_schedule(config)
    assert float(schedule(0)) == 0.0
    np.testing.assert_allclose(schedule(5), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(schedule(10), 2e-3, rtol=1e-6)
    # Cosine from step 10 to 100: halfway (step 55) sits midway between peak and end.
    np.testing.assert_allclose(schedule(55), (2e-3 + 2e-4) / 2, rtol=1e-5)
    np.testing.assert_allclose(schedule(100), 2e-4, rtol=1e-5)


def test_decay_mask_skips_biases_and_embeddings(key):
    params = init_params(key, ModelConfig(10, 4, 6))
    mask = decay_mask(params)
    assert mask["embed"] is False
    assert mask["gru"] == {"W_ih": True, "W_hh": True, "b_ih": False, "b_hh": False}
    assert mask["head"] == {"W": True, "b": False}


def test_zero_gradient_step_leaves_biases_and_embeddings_identical(key):
    config = tiny_config(weight_decay=0.5)
    params = init_params(key, ModelConfig(10, 4, 6))
    optimizer = make_optimizer(config)
    state = optimizer.init(params)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    for _ in range(config.warmup_steps + 1):  # past warmup, so the rate is non-zero
        updates, state = optimizer.update(zeros, state, params)
        new = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(new["gru"]["b_ih"], params["gru"]["b_ih"])
    np.testing.assert_array_equal(new["head"]["b"], params["head"]["b"])
    np.testing.assert_array_equal(new["embed"], params["embed"])
    # Weight matrices do decay: decoupled decay shrinks them by lr * wd.
    assert not np.array_equal(new["gru"]["W_hh"], params["gru"]["W_hh"])
    lr = float(make_schedule(config)(config.warmup_steps))
    np.testing.assert_allclose(new["head"]["W"], params["head"]["W"] * (1 - lr * 0.5), rtol=1e-6)


def test_clipping_caps_update_norm(tiny, key):
    train, _, model_config = tiny
    params = init_params(key, model_config)
    grads = jax.tree_util.tree_map(lambda p: 100.0 * jnp.ones_like(p), params)
    clip = optax.clip_by_global_norm(1.0)
    clipped, _ = clip.update(grads, clip.init(params))
    np.testing.assert_allclose(optax.tree.norm(clipped), 1.0, rtol=1e-5)
    # Inside the full step: the logged norm is the raw one, the update is clipped.
    config = tiny_config(clip_norm=1e-3, learning_rate=1.0, weight_decay=0.0, b1=0.0, b2=0.0)
    step = make_train_step(config, make_optimizer(config))
    state = init_state(params, make_optimizer(config))
    new_state, metrics = step(state, jnp.asarray(train.tokens[0]), jnp.asarray(train.mask[0]), key)
    assert float(metrics["grad_norm"]) > 1e-3


def test_train_step_compiles_once(tiny, key):
    train, _, model_config = tiny
    config = tiny_config()
    optimizer = make_optimizer(config)
    step = make_train_step(config, optimizer)
    state = init_state(init_params(key, model_config), optimizer)
    for i in range(3):
        state, _ = step(state, jnp.asarray(train.tokens[i]), jnp.asarray(train.mask[i]), key)
    assert step._cache_size() == 1


def test_non_finite_step_is_skipped_bit_identically(tiny, key):
    train, _, model_config = tiny
    config = tiny_config()
    optimizer = make_optimizer(config)
    step = make_train_step(config, optimizer)
    params = init_params(key, model_config)
    params["head"]["W"] = params["head"]["W"].at[0, 0].set(jnp.nan)
    state = init_state(params, optimizer)
    new_state, metrics = step(state, jnp.asarray(train.tokens[0]), jnp.asarray(train.mask[0]), key)
    assert bool(metrics["skipped"])
    for old, new in zip(jax.tree_util.tree_leaves((state.params, state.opt_state)),
                        jax.tree_util.tree_leaves((new_state.params, new_state.opt_state))):
        np.testing.assert_array_equal(old, new)
    assert int(new_state.skipped) == 1
    assert int(new_state.updates) == 0
    assert int(new_state.step) == 1


def test_fit_stops_on_repeated_non_finite(tiny, key):
    train, val, model_config = tiny
    params = init_params(key, model_config)
    params["embed"] = params["embed"].at[:].set(jnp.inf)
    with pytest.raises(NonFiniteError, match="stopped at step 3") as info:
        fit(params, train, val, tiny_config(max_consecutive_skips=3))
    assert info.value.history.skipped.tolist() == [True, True, True]


def test_fit_loss_falls_and_is_reproducible(tiny, key):
    train, val, model_config = tiny
    config = tiny_config()
    params = init_params(key, model_config)
    lines = []
    _, history = fit(params, train, val, config, log=lines.append)
    assert history.loss[-5:].mean() < 0.7 * history.loss[:5].mean()
    assert history.val_loss[-1] < history.val_loss[0]
    assert len(lines) == 2
    assert lines[0].startswith("step 20/40 | loss ")
    assert history.step.tolist() == list(range(1, 41))
    np.testing.assert_allclose(history.lr[5], config.learning_rate, rtol=1e-6)
    _, again = fit(params, train, val, config)
    np.testing.assert_array_equal(history.loss, again.loss)
    np.testing.assert_array_equal(history.val_loss, again.val_loss)


def test_fit_resume_matches_uninterrupted_run(tiny, key):
    train, val, model_config = tiny
    config = tiny_config(num_steps=30)
    params = init_params(key, model_config)
    full_state, full = fit(params, train, None, config)
    state, first = fit(params, train, None, config, until=12)
    assert int(state.step) == 12
    resumed_state, second = fit(params, train, None, config, state=state)
    np.testing.assert_array_equal(second.step, np.arange(13, 31))
    np.testing.assert_array_equal(np.concatenate([first.loss, second.loss]), full.loss)
    for a, b in zip(jax.tree_util.tree_leaves(resumed_state), jax.tree_util.tree_leaves(full_state)):
        np.testing.assert_array_equal(a, b)


def test_evaluate_is_token_weighted(tiny, key):
    _, val, model_config = tiny
    params = init_params(key, model_config)
    result = evaluate(params, val)
    assert result["tokens"] == val.num_targets == 399
    assert result["perplexity"] == pytest.approx(np.exp(result["loss"]))
    # Untrained: close to uniform over the vocabulary.
    assert abs(result["loss"] - np.log(model_config.vocab_size)) < 0.5


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_steps": 0}, "num_steps"),
        ({"warmup_steps": 40}, "warmup_steps"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"clip_norm": 0.0}, "clip_norm"),
        ({"dropout_rate": 1.0}, "dropout_rate"),
        ({"batch_size": 2.5}, "batch_size"),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)
