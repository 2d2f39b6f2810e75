"""Notebook 09: schedule drawing, run summaries, the training callback and the exercise checkers."""

import dataclasses
import math

import jax
import numpy as np
import optax
import pytest

import grulm_edu.widgets.schedules as schedules_widget
from grulm_edu.chars import CharTokenizer
from grulm_edu.data import make_batches
from grulm_edu.exercises.schedules import check_constant_config, check_rate_at_update, check_warmup_linear_decay
from grulm_edu.model import ModelConfig, init_params
from grulm_edu.training import History, TrainConfig
from grulm_edu.widgets.schedules import (
    largest_loss_jump,
    plot_runs,
    plot_warmup_start,
    schedule_run_view,
    schedule_view,
    smooth,
    summarize_run,
)


def closed_form(update, init, peak, end, warmup, decay):
    """Linear warmup from `init` to `peak`, then ``end + (peak - end) * 0.5 * (1 + cos(pi * t / (decay - warmup)))``."""
    if update < warmup:
        return init + (peak - init) * update / warmup
    t = min(update - warmup, decay - warmup)
    return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * t / (decay - warmup)))


def make_history(loss, grad_norm=None, val_loss=(2.0,)):
    n = len(loss)
    return History(
        step=np.arange(1, n + 1),
        loss=np.asarray(loss, np.float32),
        grad_norm=np.asarray(grad_norm if grad_norm is not None else np.ones(n), np.float32),
        lr=np.full(n, 0.1, np.float32),
        skipped=np.zeros(n, bool),
        tokens_per_s=np.ones(n),
        wall_time=np.arange(n, dtype=np.float64),
        eval_step=np.array([n]),
        val_loss=np.asarray(val_loss, np.float64),
    )


@pytest.mark.parametrize(
    "init, peak, end, warmup, decay",
    [(0.0, 0.1, 0.01, 20, 300), (0.02, 0.3, 0.0, 7, 61), (0.0, 1.0, 0.1, 0, 10)],
)
def test_schedule_view_matches_closed_form(init, peak, end, warmup, decay):
    figure, summary = schedule_view(init, peak, end, warmup, decay)
    updates, rates = figure.axes[0].lines[0].get_data()
    expected = [closed_form(u, init, peak, end, warmup, decay) for u in updates]
    np.testing.assert_allclose(rates, expected, rtol=1e-5, atol=1e-7)
    assert updates[-1] > decay  # drawn past the end, where the rate is flat
    halfway = warmup + (decay - warmup) // 2
    assert f"update 0: {closed_form(0, init, peak, end, warmup, decay):.4g}" in summary
    assert f"update {halfway} (half-way through the decay): {closed_form(halfway, init, peak, end, warmup, decay):.4g}" in summary
    assert f"update {decay} and later: {end:.4g}" in summary


def test_schedule_view_rejects_bad_steps():
    with pytest.raises(ValueError, match="decay_steps must be an int larger than warmup_steps"):
        schedule_view(0.0, 0.1, 0.01, 30, 30)
    with pytest.raises(ValueError, match="warmup_steps must be an int >= 0"):
        schedule_view(0.0, 0.1, 0.01, -1, 30)
    with pytest.raises(ValueError, match="peak_lr must be a finite number >= 0"):
        schedule_view(0.0, float("nan"), 0.01, 3, 30)


def test_smooth_is_bias_corrected_moving_average():
    values = [4.0, 2.0, 3.0]
    beta = 0.5
    running, expected = 0.0, []
    for t, x in enumerate(values):
        running = beta * running + (1 - beta) * x
        expected.append(running / (1 - beta ** (t + 1)))
    np.testing.assert_allclose(smooth(values, beta), expected)
    np.testing.assert_allclose(smooth(np.full(5, 2.5)), 2.5)
    assert smooth(values, 0.0).tolist() == values
    with pytest.raises(ValueError, match="beta"):
        smooth(values, 1.0)


def test_largest_loss_jump():
    assert largest_loss_jump([4.0, 3.0, 3.5, 2.0, 2.2]) == pytest.approx((0.5, 2))
    assert largest_loss_jump([4.0, 3.0, 2.0]) == (0.0, 1)
    assert largest_loss_jump([1.0]) == (0.0, 0)


def test_summarize_run_reports_spike_and_norm():
    history = make_history([4.0, 3.0, 3.8, 2.5], grad_norm=[0.5, 1.5, 0.7, 0.2], val_loss=(2.75, 2.3456))
    line = summarize_run("run", history, early=3)
    assert line.startswith("run: final validation loss 2.3456")
    assert "largest loss jump 0.8000 (update 3)" in line
    assert "largest gradient norm 1.5000" in line


def test_plots_draw_every_run():
    runs = {"a": make_history([3.0, 2.0, 1.0]), "b": make_history([3.0, 2.5, 2.0])}
    figure = plot_runs(runs)
    assert len(figure.axes) == 3
    assert all(len(ax.lines) == 2 for ax in figure.axes)
    figure = plot_warmup_start(runs, updates=2)
    assert all(len(line.get_xdata()) == 2 for line in figure.axes[1].lines)


@pytest.fixture(scope="module")
def tiny_run():
    text = "Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 10
    tokenizer = CharTokenizer.from_text(text)
    batches = make_batches(tokenizer.encode(text), batch_size=4, seq_len=8)
    params = init_params(jax.random.key(7), ModelConfig(tokenizer.vocab_size, embed_size=4, hidden_size=8))
    config = TrainConfig(batch_size=4, seq_len=8, num_steps=6, warmup_steps=1, log_interval=3, eval_batches=2)
    return params, batches, config


def test_schedule_run_view_trains_on_the_schedule(tiny_run):
    params, batches, config = tiny_run
    reference = {"earlier": make_history([4.0, 3.0])}
    figure, summary = schedule_run_view(0.05, 0.005, 2, 8, params=params, train=batches, val=batches, config=config, reference=reference)
    lr = figure.axes[0].lines[-1].get_ydata()
    expected = [closed_form(u, 0.0, 0.05, 0.005, 2, 8) for u in range(8)]
    np.testing.assert_allclose(lr, expected, rtol=1e-5, atol=1e-8)
    lines = summary.splitlines()
    assert lines[0].startswith("earlier:")
    assert lines[1].startswith("peak 0.05, end 0.005, warmup 2:")
    assert len(figure.axes[2].lines) == 2


def test_schedule_run_view_rejects_end_above_peak(tiny_run):
    params, batches, config = tiny_run
    with pytest.raises(ValueError, match="end_lr <= peak_lr"):
        schedule_run_view(0.01, 0.02, 2, 8, params=params, train=batches, val=None, config=config)


def test_explorer_trains_only_on_run(tiny_run, monkeypatch):
    params, batches, config = tiny_run
    calls = []

    def fake_run_view(peak_lr, end_lr, warmup_steps, decay_steps, **kwargs):
        calls.append((peak_lr, end_lr, warmup_steps, decay_steps))
        return "trained"

    monkeypatch.setattr(schedules_widget, "schedule_run_view", fake_run_view)
    box = schedules_widget.schedule_explorer(params, batches, None, config)
    assert calls == []  # building the widget draws the schedule but does not train
    training = box.children[1]
    training.run()
    assert len(calls) == 1
    peak, end, warmup, decay = calls[0]
    assert (warmup, decay) == (config.warmup_steps, config.num_steps)
    assert peak == pytest.approx(config.learning_rate)
    assert end == pytest.approx(config.learning_rate * config.final_lr_fraction)


def test_check_rate_at_update():
    assert check_rate_at_update(1.65e-3)
    assert not check_rate_at_update(None)
    wrong_start = 3e-4 + 2.7e-3 * 0.5 * (1 + math.cos(math.pi * 0.55))
    assert "measure t from update 100" in check_rate_at_update(wrong_start).message
    assert "not to 0" in check_rate_at_update(1.5e-3).message
    wrong_length = 3e-4 + 2.7e-3 * 0.5 * (1 + math.cos(math.pi * 450 / 1000))
    assert "900 updates" in check_rate_at_update(wrong_length).message
    assert "too high" in check_rate_at_update(3e-3).message
    assert "number" in check_rate_at_update("fast").message


def warmup_linear_decay(step, peak, end, warmup_steps, decay_steps):
    if step < warmup_steps:
        return peak * step / warmup_steps
    t = min(step - warmup_steps, decay_steps - warmup_steps)
    return peak + (end - peak) * t / (decay_steps - warmup_steps)


def test_check_warmup_linear_decay():
    assert check_warmup_linear_decay(warmup_linear_decay).passed

    def no_clamp(step, peak, end, warmup_steps, decay_steps):
        if step < warmup_steps:
            return peak * step / warmup_steps
        return peak + (end - peak) * (step - warmup_steps) / (decay_steps - warmup_steps)

    def decay_from_zero(step, peak, end, warmup_steps, decay_steps):
        if step < warmup_steps:
            return peak * step / warmup_steps
        return peak + (end - peak) * min(step, decay_steps) / decay_steps

    def no_warmup(step, peak, end, warmup_steps, decay_steps):
        return warmup_linear_decay(step, peak, end, 0, decay_steps)

    def broken(*args):
        raise ZeroDivisionError("division by zero")

    assert "clip t" in check_warmup_linear_decay(no_clamp).message
    assert "count t from the end of the warmup" in check_warmup_linear_decay(decay_from_zero).message
    assert "the warmup is wrong" in check_warmup_linear_decay(no_warmup).message
    assert "raised ZeroDivisionError" in check_warmup_linear_decay(broken).message
    assert "function itself" in check_warmup_linear_decay(0.5).message
    assert not check_warmup_linear_decay(None)


def test_reference_of_linear_decay_exercise_is_optax():
    schedule = optax.join_schedules([optax.linear_schedule(0.0, 2.0, 10), optax.linear_schedule(2.0, 0.2, 40)], [10])
    for step in (0, 5, 10, 30, 50, 70):
        assert float(schedule(step)) == pytest.approx(warmup_linear_decay(step, 2.0, 0.2, 10, 50), abs=1e-6)


def test_check_constant_config():
    right = TrainConfig(num_steps=500, learning_rate=2e-3, warmup_steps=0, final_lr_fraction=1.0)
    assert check_constant_config(right)
    assert not check_constant_config(None)
    assert "TrainConfig" in check_constant_config({"learning_rate": 2e-3}).message
    assert "warmup_steps=100" in check_constant_config(dataclasses.replace(right, warmup_steps=100)).message
    assert "final_lr_fraction=0.1" in check_constant_config(dataclasses.replace(right, final_lr_fraction=0.1)).message
    assert "set learning_rate to 2e-3" in check_constant_config(dataclasses.replace(right, learning_rate=3e-3)).message
    assert "num_steps is 400" in check_constant_config(dataclasses.replace(right, num_steps=400)).message
