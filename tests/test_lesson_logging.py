"""Notebook 12's log analysis against NumPy references, the dashboard callback, and the checkers."""

import numpy as np
import pytest

from grulm_edu.exercises.logging_lessons import check_ema, check_epoch_means, check_first_spike
from grulm_edu.log_analysis import ema, epoch_means, find_spikes, rolling_median, spike_intervals
from grulm_edu.runlog import RunLogWriter, read_log
from grulm_edu.widgets.logging_dashboard import dashboard_view, plot_step_and_epoch


def reference_ema(values, beta):
    """Bias-corrected EMA from its closed form: weights (1 - beta) beta^(t - i), normalised by 1 - beta^t."""
    out = []
    for t in range(1, len(values) + 1):
        weights = (1 - beta) * beta ** np.arange(t - 1, -1, -1, dtype=np.float64)
        out.append(np.dot(weights, values[:t]) / (1 - beta**t))
    return np.array(out)


@pytest.fixture
def noisy():
    rng = np.random.default_rng(0)
    return 2.0 + 0.1 * rng.standard_normal(60)


def test_ema_matches_closed_form(noisy):
    for beta in (0.0, 0.5, 0.9, 0.99):
        np.testing.assert_allclose(ema(noisy, beta), reference_ema(noisy, beta), rtol=1e-12)


def test_ema_without_correction_starts_low(noisy):
    smoothed = ema(noisy, 0.9, bias_correction=False)
    assert smoothed[0] == pytest.approx(0.1 * noisy[0])
    np.testing.assert_allclose(smoothed, reference_ema(noisy, 0.9) * (1 - 0.9 ** np.arange(1, 61)), rtol=1e-12)


def test_ema_of_constant_is_constant():
    np.testing.assert_allclose(ema(np.full(30, 3.5), 0.95), 3.5, rtol=1e-12)


def test_ema_skips_nan():
    smoothed = ema([np.nan, 2.0, np.nan, 4.0], 0.5)
    assert np.isnan(smoothed[0])
    assert smoothed[1:3].tolist() == [2.0, 2.0]
    assert smoothed[3] == pytest.approx(reference_ema(np.array([2.0, 4.0]), 0.5)[-1])


def test_ema_rejects_bad_input():
    with pytest.raises(ValueError, match="beta"):
        ema([1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="1-D"):
        ema(np.ones((2, 2)), 0.5)


def test_epoch_means_match_numpy_average():
    rng = np.random.default_rng(1)
    losses = rng.uniform(1, 3, 23)
    tokens = rng.integers(10, 100, 23)
    steps = np.arange(1, 24)
    epochs, means, counts = epoch_means(steps, losses, 5, weights=tokens)
    assert epochs.tolist() == [0, 1, 2, 3, 4]
    assert counts.tolist() == [5, 5, 5, 5, 3]
    for e in range(5):
        chunk = slice(5 * e, min(5 * e + 5, 23))
        assert means[e] == pytest.approx(np.average(losses[chunk], weights=tokens[chunk]), rel=1e-12)


def test_epoch_means_leave_out_nan():
    epochs, means, counts = epoch_means([1, 2, 3, 4], [1.0, np.nan, 3.0, 5.0], 2)
    assert means.tolist() == [1.0, 4.0]
    assert counts.tolist() == [1, 2]


def test_epoch_means_reject_bad_input():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        epoch_means([1, 2], [1.0, 2.0], 0)
    with pytest.raises(ValueError, match="count from 1"):
        epoch_means([0, 1], [1.0, 2.0], 2)
    with pytest.raises(ValueError, match="same shape"):
        epoch_means([1, 2, 3], [1.0, 2.0], 2)
    with pytest.raises(ValueError, match="weights"):
        epoch_means([1, 2], [1.0, 2.0], 2, weights=[1.0, -1.0])


def test_rolling_median_matches_numpy(noisy):
    medians = rolling_median(noisy, 7)
    assert np.isnan(medians[:7]).all()
    for t in range(7, len(noisy)):
        assert medians[t] == np.median(noisy[t - 7 : t])


def test_rolling_median_ignores_nan():
    medians = rolling_median([1.0, np.nan, 3.0, 10.0, np.nan, np.nan, np.nan, np.nan], 3)
    assert medians[3] == 2.0
    assert medians[4] == 6.5
    assert medians[6] == 10.0
    assert np.isnan(medians[7])


def test_find_spikes_flags_the_jump(noisy):
    values = noisy.copy()
    values[40:43] *= 2.0
    flags = find_spikes(values, window=10, factor=1.5)
    assert np.flatnonzero(flags).tolist() == [40, 41, 42]
    assert not find_spikes(noisy, window=10, factor=1.5).any()


def test_find_spikes_never_flags_the_first_window():
    values = np.array([1.0, 100.0, 1.0, 1.0, 100.0])
    assert find_spikes(values, window=3, factor=2.0).tolist() == [False, False, False, False, True]
    with pytest.raises(ValueError, match="factor"):
        find_spikes(values, factor=1.0)


def test_spike_intervals_group_runs():
    steps = np.arange(1, 11)
    flags = np.array([0, 1, 1, 0, 0, 1, 0, 0, 1, 1], bool)
    assert spike_intervals(steps, flags) == [(2, 3), (6, 6), (9, 10)]
    assert spike_intervals(steps, np.zeros(10, bool)) == []
    with pytest.raises(ValueError, match="same shape"):
        spike_intervals(steps, flags[:3])


def write_log(path, losses, val_losses=()):
    with RunLogWriter(path) as writer:
        for i, loss in enumerate(losses, start=1):
            fields = {"grad_norm": 0.5, "lr": 1e-3, "tokens_per_s": 1000.0, "wall_time": 0.1 * i, "skipped": False}
            writer.write("train", step=i, loss=loss, **fields)
        for i, loss in enumerate(val_losses, start=1):
            writer.write("eval", step=10 * i, val_loss=loss, wall_time=float(i))


def test_dashboard_view_smooths_and_flags(tmp_path, noisy):
    losses = noisy.copy()
    losses[30:33] = 6.0
    path = tmp_path / "run.jsonl"
    write_log(path, losses)
    figure, summary = dashboard_view(path, "loss", beta=0.8, x_axis="step")
    first, second = summary.splitlines()
    smoothed_last = reference_ema(losses, 0.8)[-1]
    assert first == f"loss: 60 records, steps 1 to 60; last value {losses[-1]:.4g}, smoothed {smoothed_last:.4g}"
    assert second == "spikes (steps): 31-33"
    np.testing.assert_allclose(figure.axes[0].lines[1].get_ydata(), reference_ema(losses, 0.8), rtol=1e-12)


def test_dashboard_view_wall_time_and_val_loss(tmp_path, noisy):
    path = tmp_path / "run.jsonl"
    write_log(path, noisy, val_losses=[2.5, 2.2, 2.1])
    figure, _ = dashboard_view(path, "loss", beta=0.0, x_axis="wall_time", show_spikes=False)
    np.testing.assert_allclose(figure.axes[0].lines[0].get_xdata(), 0.1 * np.arange(1, 61))
    assert len(figure.axes[0].lines) == 1
    _, summary = dashboard_view(path, "val_loss", beta=0.5)
    assert summary.startswith("val_loss: 3 records, steps 10 to 30; last value 2.1")


def test_dashboard_view_rejects_bad_choices(tmp_path, noisy):
    path = tmp_path / "run.jsonl"
    write_log(path, noisy)
    with pytest.raises(ValueError, match="metric must be one of"):
        dashboard_view(path, "accuracy")
    with pytest.raises(ValueError, match="x_axis"):
        dashboard_view(path, x_axis="epoch")
    with pytest.raises(ValueError, match="no records"):
        dashboard_view(path, "val_loss")


def test_plot_step_and_epoch_draws_epoch_means(tmp_path, noisy):
    path = tmp_path / "run.jsonl"
    write_log(path, noisy[:20], val_losses=[2.4, 2.3])
    figure = plot_step_and_epoch(read_log(path), steps_per_epoch=10)
    epoch_axes = figure.axes[1]
    np.testing.assert_allclose(epoch_axes.lines[0].get_xdata(), [1, 2])
    np.testing.assert_allclose(epoch_axes.lines[0].get_ydata(), [noisy[:10].mean(), noisy[10:20].mean()], rtol=1e-12)
    np.testing.assert_allclose(epoch_axes.lines[1].get_ydata(), [2.4, 2.3])


def test_check_ema():
    def right(values, beta):
        return reference_ema(np.asarray(values), beta)

    def uncorrected(values, beta):
        return ema(values, beta, bias_correction=False)

    def swapped(values, beta):
        return ema(values, 1 - beta)

    def from_first(values, beta):
        out = [values[0]]
        for x in values[1:]:
            out.append(beta * out[-1] + (1 - beta) * x)
        return out

    def too_short(values, beta):
        return values[1:]

    assert check_ema(right).passed
    assert "bias correction" in check_ema(uncorrected).message
    assert "swaps" in check_ema(swapped).message
    assert "first value" in check_ema(from_first).message
    assert "one smoothed value per step" in check_ema(too_short).message
    assert not check_ema(None)


def test_check_epoch_means():
    def right(losses, tokens, steps_per_epoch):
        epochs = np.arange(len(losses)) // steps_per_epoch
        return [np.average(losses[epochs == e], weights=tokens[epochs == e]) for e in np.unique(epochs)]

    def unweighted(losses, tokens, steps_per_epoch):
        epochs = np.arange(len(losses)) // steps_per_epoch
        return [losses[epochs == e].mean() for e in np.unique(epochs)]

    def drops_partial(losses, tokens, steps_per_epoch):
        return right(losses, tokens, steps_per_epoch)[:-1]

    def broken(losses, tokens, steps_per_epoch):
        raise IndexError("out of range")

    assert check_epoch_means(right).passed
    assert "weight each step" in check_epoch_means(unweighted).message
    assert "partial" in check_epoch_means(drops_partial).message
    assert "raised IndexError" in check_epoch_means(broken).message
    assert not check_epoch_means(None)


def test_check_first_spike():
    steps = np.arange(1, 9)
    losses = np.array([2.0, 2.0, 2.0, 3.0, 4.0, 2.5, 2.0, 2.0])
    flags = np.array([0, 0, 0, 1, 1, 0, 0, 0], bool)
    assert check_first_spike(4, steps, losses, flags).passed
    assert check_first_spike(np.int64(4), steps, losses, flags).passed
    assert "array index" in check_first_spike(3, steps, losses, flags).message
    assert "highest value" in check_first_spike(5, steps, losses, flags).message
    assert "comes later" in check_first_spike(2, steps, losses, flags).message
    assert "earliest" in check_first_spike(7, steps, losses, flags).message
    assert "as an int" in check_first_spike(4.0, steps, losses, flags).message
    assert not check_first_spike(None, steps, losses, flags)
    with pytest.raises(ValueError, match="no spike"):
        check_first_spike(4, steps, losses, np.zeros(8, bool))
