"""Checkers given correct and incorrect solutions, and widget callbacks called directly."""

import math

import numpy as np
import pytest

from grulm_edu.exercises import Feedback
from grulm_edu.exercises.losses import check_masked_mean, check_split_perplexity, check_uniform_loss
from grulm_edu.widgets.losses import EXAMPLE_CHARS, softmax_loss_view


def test_check_uniform_loss():
    assert check_uniform_loss(math.log(80), 80)
    assert not check_uniform_loss(None, 80)
    assert "bits" in check_uniform_loss(math.log2(80), 80).message
    assert "perplexity" in check_uniform_loss(80, 80).message
    assert "too high" in check_uniform_loss(5.0, 80).message
    assert "number" in check_uniform_loss("four", 80).message


def test_check_split_perplexity():
    def right(means, counts):
        return math.exp((np.asarray(means) * counts).sum() / np.sum(counts))

    def mean_of_perplexities(means, counts):
        return np.exp(means).mean()

    def unweighted(means, counts):
        return math.exp(np.mean(means))

    def broken(means, counts):
        raise KeyError("oops")

    assert check_split_perplexity(right).passed
    assert "mean of per-batch perplexities" in check_split_perplexity(mean_of_perplexities).message
    assert "weight each batch" in check_split_perplexity(unweighted).message
    assert "raised KeyError" in check_split_perplexity(broken).message
    assert not check_split_perplexity(None)


def test_check_masked_mean():
    def right(losses, mask):
        keep = np.asarray(mask) == 1
        return np.where(keep, losses, 0.0).sum() / keep.sum()

    def multiplies(losses, mask):
        return (losses * mask).sum() / mask.sum()

    def all_positions(losses, mask):
        return np.where(mask == 1, losses, 0.0).sum() / mask.size

    assert check_masked_mean(right).passed
    with np.errstate(invalid="ignore"):
        assert "np.where" in check_masked_mean(multiplies).message
    assert "every position" in check_masked_mean(all_positions).message


def test_feedback_text():
    assert str(Feedback(True, "fine")) == "Correct: fine"
    assert str(Feedback(False, "no")) == "Not yet: no"


def test_softmax_loss_view_matches_formula():
    figure, summary = softmax_loss_view(scale=2.0, target="o")
    logits = 2.0 * np.array([2.0, 0.5, 0.8, -0.5, 0.2, -1.0])
    expected = -(logits[2] - np.log(np.exp(logits).sum()))
    assert f"loss = -log p = {expected:.4f} nats" in summary
    assert len(figure.axes) == 1
    assert len(figure.axes[0].patches) == len(EXAMPLE_CHARS)


def test_softmax_loss_view_scale_zero_is_uniform():
    _, summary = softmax_loss_view(scale=0.0, target="u")
    assert f"{math.log(6):.4f} nats" in summary


def test_softmax_loss_view_rejects_unknown_target():
    with pytest.raises(ValueError, match="target must be one of"):
        softmax_loss_view(1.0, "z")


def test_explorer_builds_controls(capsys):
    import ipywidgets

    from grulm_edu.widgets.losses import softmax_loss_explorer

    box = softmax_loss_explorer()
    controls = box.children[0].children
    slider = next(c for c in controls if isinstance(c, ipywidgets.FloatSlider))
    assert slider.value == 1.0
    assert slider.continuous_update is False
    assert any(isinstance(c, ipywidgets.Dropdown) for c in controls)
    # Without a kernel the Output widget cannot capture, so the callback's
    # text reaches stdout: moving the slider re-runs it.
    capsys.readouterr()
    slider.value = 3.0
    assert "scale 3 |" in capsys.readouterr().out


def test_experiment_shows_callback_errors(capsys):
    import ipywidgets

    from grulm_edu.widgets import experiment

    def failing(x):
        raise RuntimeError(f"bad value {x}")

    experiment(failing, {"x": ipywidgets.IntSlider(value=4)})
    out = capsys.readouterr().out
    assert "Traceback" in out
    assert "RuntimeError: bad value 4" in out
