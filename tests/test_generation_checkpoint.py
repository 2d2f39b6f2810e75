import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grulm_edu.chars import CharTokenizer
from grulm_edu.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from grulm_edu.generation import generate, sample_logits
from grulm_edu.model import ModelConfig, forward, gru_cell, init_params
from grulm_edu.training import TrainConfig, init_state, make_optimizer


@pytest.fixture
def params(key):
    return init_params(key, ModelConfig(vocab_size=17, embed_size=5, hidden_size=12))


def greedy_reference(params, prompt, num_tokens):
    """Feed the prompt, then the argmax, one step at a time in Python."""
    logits, h = forward(params, jnp.asarray(prompt)[None])
    last = logits[0, -1]
    out = []
    for _ in range(num_tokens):
        token = int(jnp.argmax(last))
        out.append(token)
        h = gru_cell(params["gru"], params["embed"][token][None], h)
        last = (h @ params["head"]["W"] + params["head"]["b"])[0]
    return out


def test_greedy_matches_python_loop(params, key):
    prompt = [3, 1, 4, 1, 5]
    expected = greedy_reference(params, prompt, 12)
    assert generate(params, prompt, 12, key, temperature=0.0).tolist() == expected


def test_temperature_zero_and_top_k_one_equal_greedy(params, key):
    prompt = jnp.array([2, 7, 1])
    greedy = generate(params, prompt, 20, key, temperature=0.0)
    top1 = generate(params, prompt, 20, jax.random.fold_in(key, 9), temperature=1.3, top_k=1)
    np.testing.assert_array_equal(greedy, top1)


def test_same_key_same_sample_and_ids_in_range(params, key):
    prompt = jnp.array([[1, 2], [3, 4]])
    a = generate(params, prompt, 50, key, temperature=1.0)
    b = generate(params, prompt, 50, key, temperature=1.0)
    c = generate(params, prompt, 50, jax.random.fold_in(key, 1), temperature=1.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (2, 50)
    assert int(a.min()) >= 0
    assert int(a.max()) < 17


def test_top_k_only_draws_from_top_k(key):
    logits = jnp.log(jnp.array([[0.05, 0.4, 0.3, 0.2, 0.05]]))
    draws = jax.vmap(lambda k: sample_logits(k, logits, 1.0, top_k=2))(jax.random.split(key, 400))
    assert set(np.asarray(draws).ravel().tolist()) == {1, 2}
    share = float((np.asarray(draws) == 1).mean())
    assert abs(share - 0.4 / 0.7) < 0.08


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": -0.5}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 18}, "top_k"),
        ({"num_tokens": 0}, "num_tokens"),
        ({"prompt_ids": []}, "P >= 1"),
        ({"prompt_ids": [1, 17]}, r"\[0, 17\)"),
    ],
)
def test_generate_rejects_bad_arguments(params, key, kwargs, message):
    arguments = {"prompt_ids": [1, 2], "num_tokens": 5, "temperature": 1.0, "top_k": None}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        generate(params, arguments.pop("prompt_ids"), arguments.pop("num_tokens"), key, **arguments)


def make_state(key):
    tokenizer = CharTokenizer.from_text("abcdefghijklmnop")
    model_config = ModelConfig(tokenizer.vocab_size, embed_size=5, hidden_size=12)
    train_config = TrainConfig(num_steps=10, warmup_steps=2)
    state = init_state(init_params(key, model_config), make_optimizer(train_config))
    return state, model_config, train_config, tokenizer


def test_checkpoint_round_trip_is_exact(tmp_path, key):
    state, model_config, train_config, tokenizer = make_state(key)
    path = save_checkpoint(tmp_path / "run", state, model_config, train_config, tokenizer, {"val_loss": 1.5})
    assert path == tmp_path / "run" / CHECKPOINT_FILE
    loaded = load_checkpoint(tmp_path / "run")
    assert loaded.model_config == model_config
    assert loaded.train_config == train_config
    assert loaded.tokenizer == tokenizer
    assert loaded.metadata == {"val_loss": 1.5}
    assert jax.tree_util.tree_structure(loaded.state) == jax.tree_util.tree_structure(state)
    for a, b in zip(jax.tree_util.tree_leaves(loaded.state), jax.tree_util.tree_leaves(state)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in (tmp_path / "run").iterdir()] == [CHECKPOINT_FILE]


def test_checkpoint_rejects_truncated_file(tmp_path, key):
    state, *configs = make_state(key)
    path = save_checkpoint(tmp_path, state, *configs)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        load_checkpoint(tmp_path)


def test_checkpoint_names_mismatched_shapes(tmp_path, key):
    state, model_config, train_config, tokenizer = make_state(key)
    other = ModelConfig(model_config.vocab_size, embed_size=5, hidden_size=8)
    other_state = init_state(init_params(key, other), make_optimizer(train_config))
    # Claim the larger config while storing the smaller arrays.
    path = save_checkpoint(tmp_path, other_state, model_config, train_config, tokenizer)
    with pytest.raises(ValueError, match=r"wrong shapes: .*W_hh.*stored \(8, 24\), expected \(12, 36\)"):
        load_checkpoint(path)


def test_checkpoint_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing")
