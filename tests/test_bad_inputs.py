"""Every public entry point rejects bad input with an error that names the value.

One table: (case id, a callable that makes the bad call, expected exception,
a regular expression the message must contain). Add a row when an entry
point gains an argument. The command-line cases live in test_cli.py.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grulm_edu.chars import CharTokenizer
from grulm_edu.checkpoint import load_checkpoint, save_checkpoint
from grulm_edu.corpus import Play, read_text_file
from grulm_edu.data import Splits, make_batches, prepare, split_plays, split_text
from grulm_edu.generation import generate
from grulm_edu.losses import bits_per_character, cross_entropy, masked_loss_sum
from grulm_edu.model import ModelConfig, dropout, forward, gru_layer_scan, init_params
from grulm_edu.precision import compute_dtype
from grulm_edu.profiling import time_fn
from grulm_edu.runlog import RunLogWriter, read_log
from grulm_edu.training import TrainConfig, init_state, make_optimizer, micro_batch_loss_weight

TOKENIZER = CharTokenizer.from_text("abcdef ")
CONFIG = ModelConfig(vocab_size=TOKENIZER.vocab_size, embed_size=3, hidden_size=4)
PARAMS = init_params(jax.random.key(0), CONFIG)
KEY = jax.random.key(1)


def train_config(**overrides):
    settings = {"num_steps": 10, "warmup_steps": 2}
    settings.update(overrides)
    return TrainConfig(**settings)


CASES = [
    # corpus
    ("read-missing-file", lambda tmp: read_text_file(tmp / "nope.txt"), FileNotFoundError, "not found.*nope.txt"),
    ("read-directory", lambda tmp: read_text_file(tmp), IsADirectoryError, "is a directory"),
    ("read-not-utf8", lambda tmp: read_text_file(_write(tmp / "l1.txt", b"\xff\xfe caf\xe9")), ValueError, "not valid UTF-8"),
    ("read-empty", lambda tmp: read_text_file(_write(tmp / "e.txt", b"\n\n")), ValueError, "is empty"),
    # tokenizer
    ("vocab-from-empty-text", lambda tmp: CharTokenizer.from_text(""), ValueError, "empty text"),
    ("vocab-not-str", lambda tmp: CharTokenizer.from_text(b"abc"), TypeError, "must be a str, got bytes"),
    ("vocab-repeats", lambda tmp: CharTokenizer(["a", "a"]), ValueError, r"repeats characters \['a'\]"),
    ("vocab-multichar", lambda tmp: CharTokenizer(["ab"]), ValueError, "single characters"),
    ("encode-unknown-char", lambda tmp: TOKENIZER.encode("abz"), ValueError, r"'z' \(first at index 2\)"),
    ("encode-bad-errors", lambda tmp: TOKENIZER.encode("ab", errors="skip"), ValueError, "'skip'"),
    ("decode-out-of-range", lambda tmp: TOKENIZER.decode([1, 99]), ValueError, r"\[0, 8\).*99"),
    ("decode-negative", lambda tmp: TOKENIZER.decode([-1]), ValueError, "-1"),
    ("decode-2d", lambda tmp: TOKENIZER.decode([[1, 2]]), ValueError, r"1-D.*\(1, 2\)"),
    ("decode-floats", lambda tmp: TOKENIZER.decode([1.5]), TypeError, "float"),
    # data
    ("batches-zero-batch", lambda tmp: make_batches(np.arange(100), 0, 4), ValueError, "batch_size.*got 0"),
    ("batches-negative-seq", lambda tmp: make_batches(np.arange(100), 2, -4), ValueError, "seq_len.*got -4"),
    ("batches-too-short", lambda tmp: make_batches(np.arange(10), 4, 8), ValueError, "10 tokens is too short"),
    ("batches-2d-ids", lambda tmp: make_batches(np.zeros((4, 4)), 1, 2), ValueError, r"1-D, got shape \(4, 4\)"),
    ("eval-batches-one-token", lambda tmp: make_batches(np.arange(1), 1, 2, drop_last=False), ValueError, "no targets"),
    ("split-bad-fraction", lambda tmp: split_text("abc" * 100, val_fraction=0.7), ValueError, "0.7"),
    ("split-too-few-plays", lambda tmp: split_plays([Play("a", "x")] * 4), ValueError, "got 4"),
    ("prepare-empty-val", lambda tmp: prepare(Splits("abc" * 50, "", "abc"), 2, 4), ValueError, "must not be empty"),
    # losses
    ("ce-shape-mismatch", lambda tmp: cross_entropy(jnp.zeros((2, 3, 4)), jnp.zeros((3, 2), jnp.int32)), ValueError, r"\(2, 3, 4\).*\(3, 2\)"),
    ("labels-outside-vocabulary", lambda tmp: cross_entropy(jnp.zeros((1, 2, 4)), jnp.array([[1, 4]])), ValueError, r"\[0, 4\).*from 1 to 4"),
    ("labels-negative", lambda tmp: cross_entropy(jnp.zeros((1, 2, 4)), jnp.array([[-1, 0]])), ValueError, "from -1 to 0"),
    ("labels-float", lambda tmp: cross_entropy(jnp.zeros((1, 2, 4)), jnp.array([[1.0, 0.0]])), TypeError, "integer ids"),
    ("mask-shape-mismatch", lambda tmp: masked_loss_sum(jnp.zeros((2, 3)), jnp.ones((3, 2))), ValueError, r"mask shape \(3, 2\)"),
    ("bpc-zero-chars", lambda tmp: bits_per_character(10.0, 0), ValueError, "got 0"),
    # model
    ("config-zero-hidden", lambda tmp: ModelConfig(10, hidden_size=0), ValueError, "hidden_size.*got 0"),
    ("config-negative-embed", lambda tmp: ModelConfig(10, embed_size=-1), ValueError, "embed_size.*got -1"),
    ("config-one-token-vocab", lambda tmp: ModelConfig(1), ValueError, "vocab_size must be at least 2, got 1"),
    ("config-float-size", lambda tmp: ModelConfig(10, hidden_size=4.0), TypeError, "hidden_size must be an int"),
    ("forward-1d-ids", lambda tmp: forward(PARAMS, jnp.zeros(5, jnp.int32)), ValueError, r"\(B, T\), got \(5,\)"),
    ("forward-float-ids", lambda tmp: forward(PARAMS, jnp.zeros((1, 5))), TypeError, "float32"),
    ("layer-wrong-E", lambda tmp: gru_layer_scan(PARAMS["gru"], jnp.zeros((2, 5, 9)), jnp.zeros((2, 4))), ValueError, r"E=3.*\(2, 5, 9\)"),
    ("layer-wrong-h0", lambda tmp: gru_layer_scan(PARAMS["gru"], jnp.zeros((2, 5, 3)), jnp.zeros((3, 4))), ValueError, r"h0.*\(3, 4\)"),
    ("dropout-rate-one", lambda tmp: dropout(KEY, jnp.ones(3), 1.0), ValueError, "got 1.0"),
    ("dropout-negative", lambda tmp: dropout(KEY, jnp.ones(3), -0.1), ValueError, "got -0.1"),
    ("dropout-no-key", lambda tmp: dropout(None, jnp.ones(3), 0.5), ValueError, "needs a PRNG key"),
    ("loop-low-precision", lambda tmp: forward(PARAMS, jnp.zeros((1, 2), jnp.int32), use_scan=False, compute_dtype=jnp.bfloat16), ValueError, "float32 only"),
    # training
    ("train-zero-steps", lambda tmp: train_config(num_steps=0), ValueError, "num_steps.*got 0"),
    ("train-negative-batch", lambda tmp: train_config(batch_size=-2), ValueError, "batch_size.*got -2"),
    ("train-warmup-too-long", lambda tmp: train_config(warmup_steps=10), ValueError, r"warmup_steps \(10\).*num_steps \(10\)"),
    ("train-negative-warmup", lambda tmp: train_config(warmup_steps=-1), ValueError, "warmup_steps.*-1"),
    ("train-zero-lr", lambda tmp: train_config(learning_rate=0.0), ValueError, "learning_rate.*got 0.0"),
    ("train-inf-lr", lambda tmp: train_config(learning_rate=math.inf), ValueError, "learning_rate.*inf"),
    ("train-negative-decay", lambda tmp: train_config(weight_decay=-0.1), ValueError, "weight_decay.*-0.1"),
    ("train-zero-clip", lambda tmp: train_config(clip_norm=0.0), ValueError, "clip_norm"),
    ("train-zero-accumulation", lambda tmp: train_config(accumulation_steps=0), ValueError, "accumulation_steps.*got 0"),
    ("train-unknown-precision", lambda tmp: train_config(precision="fp8"), ValueError, "unknown precision 'fp8'"),
    ("train-bool-seed", lambda tmp: train_config(seed=True), TypeError, "seed"),
    ("weights-empty", lambda tmp: micro_batch_loss_weight([]), ValueError, "token_counts"),
    ("weights-zero-tokens", lambda tmp: micro_batch_loss_weight([0, 0]), ValueError, "positive sum"),
    ("precision-unknown", lambda tmp: compute_dtype("half"), ValueError, "choose one of float32, bfloat16, float16"),
    # generation
    ("generate-negative-temperature", lambda tmp: generate(PARAMS, [1], 3, KEY, temperature=-1.0), ValueError, "temperature.*-1.0"),
    ("generate-nan-temperature", lambda tmp: generate(PARAMS, [1], 3, KEY, temperature=math.nan), ValueError, "temperature.*nan"),
    ("generate-top-k-zero", lambda tmp: generate(PARAMS, [1], 3, KEY, top_k=0), ValueError, r"top_k.*\[1, 8\].*got 0"),
    ("generate-top-k-too-big", lambda tmp: generate(PARAMS, [1], 3, KEY, top_k=9), ValueError, "got 9"),
    ("generate-zero-tokens", lambda tmp: generate(PARAMS, [1], 0, KEY), ValueError, "num_tokens.*got 0"),
    ("generate-empty-prompt", lambda tmp: generate(PARAMS, [], 3, KEY), ValueError, "P >= 1"),
    ("generate-prompt-out-of-vocab", lambda tmp: generate(PARAMS, [1, 8], 3, KEY), ValueError, r"\[0, 8\).*8"),
    ("generate-float-prompt", lambda tmp: generate(PARAMS, [1.0, 2.0], 3, KEY), TypeError, "integers"),
    # checkpoints
    ("load-missing", lambda tmp: load_checkpoint(tmp / "none"), FileNotFoundError, "no checkpoint"),
    ("load-not-a-zip", lambda tmp: load_checkpoint(_write(tmp / "c.npz", b"garbage")), ValueError, "truncated or corrupted"),
    ("save-into-a-file", lambda tmp: _save(_write(tmp / "f", b"x")), NotADirectoryError, "is a file"),
    # logs and timing
    ("log-is-directory", lambda tmp: RunLogWriter(tmp), IsADirectoryError, "is a directory"),
    ("read-missing-log", lambda tmp: read_log(tmp / "x.jsonl"), FileNotFoundError, "not found"),
    ("time-zero-repeats", lambda tmp: time_fn(lambda: 1, repeats=0), ValueError, "got 0"),
]


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _save(directory):
    config = train_config()
    state = init_state(PARAMS, make_optimizer(config))
    return save_checkpoint(directory, state, CONFIG, config, TOKENIZER)


@pytest.mark.parametrize(("make_call", "error", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_named_error(make_call, error, pattern, tmp_path):
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(error, match=pattern):
        make_call(tmp_path)
    # The only files present are the bad inputs the case wrote itself.
    after = sorted(p.name for p in tmp_path.rglob("*"))
    assert not [name for name in after if name not in before and name.startswith(".checkpoint-")]
