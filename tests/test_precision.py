import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grulm_edu.chars import CharTokenizer
from grulm_edu.data import make_batches
from grulm_edu.model import ModelConfig, forward, init_params
from grulm_edu.precision import INITIAL_LOSS_SCALE, adjust_loss_scale, compute_dtype, needs_loss_scaling
from grulm_edu.training import TrainConfig, fit


def test_compute_dtype_names():
    assert compute_dtype("bfloat16") == jnp.bfloat16
    assert needs_loss_scaling("float16")
    assert not needs_loss_scaling("bfloat16")
    with pytest.raises(ValueError, match="unknown precision 'fp8'; choose one of float32, bfloat16, float16"):
        compute_dtype("fp8")
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="half")


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_forward_close_to_float32(key, dtype):
    params = init_params(key, ModelConfig(30, 16, 32))
    ids = jax.random.randint(jax.random.fold_in(key, 1), (4, 20), 0, 30)
    reference, h_ref = forward(params, ids)
    logits, h = forward(params, ids, compute_dtype=dtype)
    assert logits.dtype == dtype
    assert h.dtype == jnp.float32
    assert jax.tree_util.tree_leaves(params)[0].dtype == jnp.float32
    tolerance = 0.05 if dtype == jnp.bfloat16 else 0.01
    np.testing.assert_allclose(np.asarray(logits, np.float32), reference, atol=tolerance)


@pytest.mark.parametrize(
    "scale, good, finite, expected",
    [
        (1024.0, 0, False, (512.0, 0)),  # overflow: halve, restart the count
        (1.0, 5, False, (1.0, 0)),  # never below 1
        (1024.0, 3, True, (1024.0, 4)),  # finite: count up
        (1024.0, 9, True, (2048.0, 0)),  # the 10th finite step in a row doubles the scale
    ],
)
def test_adjust_loss_scale(scale, good, finite, expected):
    new_scale, new_good = adjust_loss_scale(jnp.float32(scale), jnp.int32(good), jnp.bool_(finite), period=10)
    assert (float(new_scale), int(new_good)) == expected


@pytest.fixture(scope="module")
def tiny_batches():
    text = "If music be the food of love, play on;\nGive me excess of it, that, surfeiting,\n" * 25
    tokenizer = CharTokenizer.from_text(text)
    return make_batches(tokenizer.encode(text), batch_size=4, seq_len=16), tokenizer.vocab_size


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_training_tracks_float32(tiny_batches, key, precision):
    train, vocab = tiny_batches
    params = init_params(key, ModelConfig(vocab, 8, 32))
    settings = dict(batch_size=4, seq_len=16, num_steps=30, warmup_steps=3, learning_rate=1e-2)
    _, reference = fit(params, train, None, TrainConfig(**settings))
    state, history = fit(params, train, None, TrainConfig(precision=precision, **settings))
    assert not history.skipped.any()
    assert jax.tree_util.tree_leaves(state.params)[0].dtype == jnp.float32
    # Same run within 1% relative over the last steps.
    np.testing.assert_allclose(history.loss[-10:].mean(), reference.loss[-10:].mean(), rtol=0.01)
    expected_scale = INITIAL_LOSS_SCALE if precision == "float16" else 1.0
    assert float(state.loss_scale) == expected_scale
