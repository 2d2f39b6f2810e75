import pytest

from grulm_edu.checkpoint import load_pretrained
from grulm_edu.corpus import load_plays
from grulm_edu.data import prepare, split_plays
from grulm_edu.training import evaluate


def test_pretrained_reaches_recorded_validation_loss():
    checkpoint = load_pretrained()
    config = checkpoint.train_config
    prepared = prepare(split_plays(load_plays()), config.batch_size, config.seq_len, tokenizer=checkpoint.tokenizer)
    result = evaluate(checkpoint.params, prepared.val)
    assert result["tokens"] == 485_225
    assert result["loss"] == pytest.approx(checkpoint.metadata["val_loss"], abs=1e-4)
    assert result["loss"] < 1.80
