"""Notebook 13: the precision widget's measurements and the exercise checkers."""

import dataclasses
import math

import jax
import numpy as np
import pytest

from grulm_edu.exercises.precision import check_bfloat16_stall, check_float16_exp_limit, check_loss_scale_update
from grulm_edu.model import ModelConfig, count_params, init_params
from grulm_edu.training import TrainConfig
from grulm_edu.widgets.precision import (
    StepCost,
    default_config,
    measure_train_step,
    measure_train_steps,
    precision_cost_view,
)

# A tiny model, so each compile is quick; tests share its compiled steps.
TINY = dict(vocab_size=12, embed_size=8, batch_size=4, seq_len=8)
TINY_MODEL = ModelConfig(12, 8, 16)


def tiny_config(precision):
    return default_config(precision, batch_size=4, seq_len=8)


def test_measure_train_step_bytes_match_shapes():
    cost = measure_train_step(tiny_config("float32"), TINY_MODEL, repeats=2)
    V, E, H = 12, 8, 16
    n_params = V * E + E * 3 * H + H * 3 * H + 2 * 3 * H + H * V + V
    assert cost.param_bytes == 4 * n_params
    # Arguments hold at least the parameters, AdamW's two moments and the batch.
    batch_bytes = 4 * (4 * 9) + 4 * (4 * 8)
    assert cost.argument_bytes >= 3 * cost.param_bytes + batch_bytes
    assert cost.argument_bytes < 3 * cost.param_bytes + batch_bytes + 1024  # plus a few scalars
    assert cost.temp_bytes > 0
    assert 0 < cost.best_s <= cost.step_s
    assert cost.tokens_per_s == pytest.approx(4 * 8 / cost.best_s)


def test_measure_train_step_params_stay_float32():
    costs = measure_train_steps([tiny_config(p) for p in ("float32", "bfloat16")], TINY_MODEL, passes=2, repeats=1)
    assert list(costs) == ["float32", "bfloat16"]
    assert costs["bfloat16"].param_bytes == costs["float32"].param_bytes
    assert costs["bfloat16"].argument_bytes == costs["float32"].argument_bytes
    for cost in costs.values():
        assert cost.best_s <= cost.step_s


def test_measure_train_steps_rejects_repeated_precision():
    with pytest.raises(ValueError, match="one config per precision"):
        measure_train_steps([tiny_config("float32"), tiny_config("float32")], TINY_MODEL)
    with pytest.raises(ValueError, match="passes must be a positive int"):
        measure_train_steps([tiny_config("float32")], TINY_MODEL, passes=0)


def test_precision_cost_view_summary_and_bars():
    figure, summary = precision_cost_view(16, ("float32", "bfloat16"), passes=1, repeats=1, **TINY)
    lines = summary.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("float32 ")
    assert lines[1].startswith("bfloat16")
    assert "x float32" in lines[1]
    assert "x float32" not in lines[0]
    params_mb = 4 * count_params(jax.eval_shape(lambda: init_params(jax.random.key(0), TINY_MODEL))) / 1e6
    assert f"params {params_mb:.3f} MB" in lines[0]
    time_axes, memory_axes = figure.axes
    assert len(time_axes.patches) == 2
    assert len(memory_axes.patches) == 4  # arguments and temporaries, stacked, per precision


def fake_cost(precision, step_s, temp_bytes, model_config=TINY_MODEL):
    return StepCost(precision, model_config, 4, 8, 0.1, step_s, step_s / 2, 1000, 3000, temp_bytes)


def test_precision_cost_view_reuses_measured():
    measured = {"float32": fake_cost("float32", 0.4, 8000), "float16": fake_cost("float16", 0.2, 6000)}
    _, summary = precision_cost_view(16, ("float32", "float16"), measured=measured, **TINY)
    float32_line, float16_line = summary.splitlines()
    assert "200.00 ms/step fastest,  400.00 median" in float32_line
    assert "speed 2.00x float32" in float16_line  # 200 ms against 100 ms at the fastest
    assert "temporaries 0.75x" in float16_line


def test_precision_cost_view_measures_when_shape_differs():
    other_model = dataclasses.replace(TINY_MODEL, hidden_size=32)
    measured = {"float32": fake_cost("float32", 123.0, 8000, model_config=other_model)}
    _, summary = precision_cost_view(16, ("float32",), measured=measured, passes=1, repeats=1, **TINY)
    assert "123000" not in summary.replace(",", "")


def test_precision_cost_view_rejects_bad_precisions():
    with pytest.raises(ValueError, match="precisions is empty"):
        precision_cost_view(16, ())
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        precision_cost_view(16, ("fp8",))


def test_default_config_sets_precision_and_shape():
    config = default_config("float16", batch_size=2, seq_len=5)
    assert isinstance(config, TrainConfig)
    assert (config.precision, config.batch_size, config.seq_len) == ("float16", 2, 5)


def test_check_float16_exp_limit():
    assert check_float16_exp_limit(math.log(65504)).passed
    assert check_float16_exp_limit(11.09).passed
    assert not check_float16_exp_limit(None).passed
    assert "no answer yet" in check_float16_exp_limit(None).message
    assert "float32" in check_float16_exp_limit(88.72).message
    assert "largest float16 value itself" in check_float16_exp_limit(65504).message
    assert "log base 2" in check_float16_exp_limit(math.log2(65504)).message
    assert "too high" in check_float16_exp_limit(12.0).message


def test_check_bfloat16_stall():
    assert check_bfloat16_stall(256).passed
    assert check_bfloat16_stall(256.0).passed
    assert not check_bfloat16_stall(None).passed
    assert "float16 stalls" in check_bfloat16_stall(2048).message
    assert "float32 stalls" in check_bfloat16_stall(2**24).message
    assert "257" in check_bfloat16_stall(255).message
    assert "too low" in check_bfloat16_stall(100).message


def test_check_bfloat16_stall_matches_numpy_rounding():
    # Independent of JAX: round 256 + 1 to 8 significant bits (spacing 2 above 256, ties to even).
    total = 256.0
    spacing = 2.0
    assert np.round((total + 1.0) / spacing) * spacing == total


def test_check_loss_scale_update():
    assert check_loss_scale_update((32768.0, 0)).passed
    assert not check_loss_scale_update(None).passed
    assert "doubles only after" in check_loss_scale_update((131072.0, 0)).message
    assert "must change the scale" in check_loss_scale_update((65536.0, 151)).message
    assert "must change the scale" in check_loss_scale_update((65536.0, 0)).message
    assert "resets it to 0" in check_loss_scale_update((32768.0, 150)).message
    assert "pair" in check_loss_scale_update(32768.0).message
    assert "neither" in check_loss_scale_update((1000.0, 3)).message


def test_check_loss_scale_update_floor_of_one():
    # At scale 1 an overflow cannot halve further: the rule floors the scale at 1.
    assert check_loss_scale_update((1.0, 0), scale=1.0, good_steps=7).passed
