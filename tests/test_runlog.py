import json

import numpy as np
import pytest

from grulm_edu.chars import CharTokenizer
from grulm_edu.data import make_batches
from grulm_edu.model import ModelConfig, init_params
from grulm_edu.runlog import RunLogWriter, read_log
from grulm_edu.training import TrainConfig, fit


def test_fit_writes_a_log_that_reads_back(tmp_path, key):
    text = "Shall I compare thee to a summer's day?\n" * 30
    tokenizer = CharTokenizer.from_text(text)
    ids = tokenizer.encode(text)
    train = make_batches(ids, batch_size=4, seq_len=10)
    val = make_batches(ids[:200], batch_size=4, seq_len=10, drop_last=False)
    config = TrainConfig(batch_size=4, seq_len=10, num_steps=12, warmup_steps=2, log_interval=4, eval_batches=2)
    path = tmp_path / "run.jsonl"
    _, history = fit(init_params(key, ModelConfig(tokenizer.vocab_size, 4, 8)), train, val, config, log_path=path)

    log = read_log(path)
    np.testing.assert_array_equal(log["train"]["step"], history.step)
    np.testing.assert_allclose(log["train"]["loss"], history.loss, rtol=1e-6)
    np.testing.assert_allclose(log["train"]["lr"], history.lr, rtol=1e-6)
    np.testing.assert_array_equal(log["eval"]["step"], [4, 8, 12])
    np.testing.assert_allclose(log["eval"]["val_loss"], history.val_loss)
    assert np.all(np.diff(log["train"]["wall_time"]) >= 0)
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {"kind", "step", "loss", "grad_norm", "lr", "skipped", "tokens_per_s", "wall_time"}


def test_read_log_tolerates_cut_last_line_and_nan(tmp_path):
    path = tmp_path / "log.jsonl"
    with RunLogWriter(path) as writer:
        writer.write("train", step=1, loss=float("nan"), grad_norm=1.0, lr=0.1, tokens_per_s=5.0, wall_time=0.1, skipped=True)
        writer.write("train", step=2, loss=2.0, grad_norm=1.0, lr=0.1, tokens_per_s=5.0, wall_time=0.2, skipped=False)
    with path.open("a") as f:
        f.write('{"kind": "train", "step": 3, "lo')
    log = read_log(path)
    assert log["train"]["step"].tolist() == [1, 2]
    assert np.isnan(log["train"]["loss"][0])
    assert log["train"]["skipped"].tolist() == [True, False]


def test_read_log_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="log_path"):
        read_log(tmp_path / "none.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('not json\n{"kind": "train", "step": 1}\n')
    with pytest.raises(ValueError, match="line 1"):
        read_log(bad)
    with pytest.raises(IsADirectoryError):
        RunLogWriter(tmp_path)
