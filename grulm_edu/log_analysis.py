"""Reading a training log: smoothing, per-epoch means and spike detection.

Works on the per-step arrays that `grulm_edu.runlog.read_log` returns.
`ema` is the exponential moving average with Adam's bias correction, so the
first values are not pulled toward zero. `epoch_means` weights each step by
its tokens. `find_spikes` compares each value with the median of the values
before it. NaN entries (skipped steps) are left out of every statistic.
Left out: smoothing over wall time, which would need uneven-interval weights.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ema", "epoch_means", "rolling_median", "find_spikes", "spike_intervals"]


def _as_1d(values, name: str) -> np.ndarray:
    array = np.asarray(values, np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per step), got shape {array.shape}")
    return array


def ema(values, beta: float, *, bias_correction: bool = True) -> np.ndarray:
    """Compute the exponential moving average ``m_t = beta * m_{t-1} + (1 - beta) * x_t`` with ``m_0 = 0``.

    Args:
        values: ``(N,)`` one value per step; NaN entries leave the average
            unchanged and do not count toward the bias correction.
        beta: in [0, 1); 0 returns the values themselves, and the average
            spans about ``1 / (1 - beta)`` steps.
        bias_correction: divide ``m_t`` by ``1 - beta**n``, with ``n`` the finite
            values seen so far, so the start is not pulled toward ``m_0 = 0``.

    Returns:
        ``(N,)`` the smoothed values; NaN before the first finite value.
    """
    values = _as_1d(values, "values")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be a number in [0, 1), got {beta!r}; 0.9 averages over about 10 steps")
    smoothed = np.full(len(values), np.nan)
    average, seen = 0.0, 0
    for t, x in enumerate(values):
        if math.isfinite(x):
            average = beta * average + (1.0 - beta) * x
            seen += 1
        if seen:
            smoothed[t] = average / (1.0 - beta**seen) if bias_correction else average
    return smoothed


def epoch_means(steps, values, steps_per_epoch: int, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compute the weighted mean of `values` over each epoch.

    Step ``s`` (counted from 1, as in the log) belongs to epoch ``(s - 1) // steps_per_epoch``.

    Args:
        steps: ``(N,)`` step numbers, from 1.
        values: ``(N,)`` one value per step; NaN entries are left out.
        steps_per_epoch: optimizer updates per epoch.
        weights: ``(N,)`` tokens of each step; None weighs every step equally.

    Returns:
        ``(epochs, means, counts)``, each ``(M,)`` for the M epochs that hold a
        finite value: the epoch number from 0, the weighted mean, and how many
        steps it averages (fewer than `steps_per_epoch` in a partial epoch).
    """
    steps = np.asarray(steps)
    values = _as_1d(values, "values")
    if steps.shape != values.shape:
        raise ValueError(f"steps and values must have the same shape, got {steps.shape} and {values.shape}")
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive int, got {steps_per_epoch!r}")
    if len(steps) and steps.min() < 1:
        raise ValueError(f"steps count from 1, as in a log written by fit; got a step {steps.min()}")
    weights = np.ones_like(values) if weights is None else _as_1d(weights, "weights")
    if weights.shape != values.shape or (weights < 0).any():
        raise ValueError(f"weights must be {values.shape} and >= 0, got shape {weights.shape}")

    keep = np.isfinite(values)
    epoch_of_step = (steps[keep] - 1) // steps_per_epoch
    epochs = np.unique(epoch_of_step)
    sums = np.array([np.sum(values[keep][epoch_of_step == e] * weights[keep][epoch_of_step == e]) for e in epochs])
    totals = np.array([np.sum(weights[keep][epoch_of_step == e]) for e in epochs])
    counts = np.array([np.sum(epoch_of_step == e) for e in epochs])
    return epochs.astype(np.int64), sums / totals, counts.astype(np.int64)


def rolling_median(values, window: int) -> np.ndarray:
    """Compute the median of the `window` values before each position, the position itself excluded.

    Returns:
        ``(N,)``; NaN where fewer than `window` earlier values exist or all of them are NaN.
    """
    values = _as_1d(values, "values")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    medians = np.full(len(values), np.nan)
    for t in range(window, len(values)):
        before = values[t - window : t]
        if np.isfinite(before).any():
            medians[t] = np.nanmedian(before)
    return medians


def find_spikes(values, *, window: int = 20, factor: float = 1.5) -> np.ndarray:
    """Flag values at least `factor` times the median of the `window` values before them.

    The median ignores outliers until they fill half the window, so the steps
    right after a spike are still compared with the level before it. Meant for positive
    quantities such as the loss and the gradient norm; the first `window`
    steps are never flagged.

    Returns:
        ``(N,)`` bool.
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 1.0:
        raise ValueError(f"factor must be a number > 1, got {factor!r}; 1.5 flags values 50% above the median")
    values = _as_1d(values, "values")
    medians = rolling_median(values, window)
    with np.errstate(invalid="ignore"):
        return np.isfinite(medians) & (values >= factor * medians)


def spike_intervals(steps, flags) -> list[tuple[int, int]]:
    """Group flagged steps into ``(first step, last step)`` runs of consecutive records."""
    steps = np.asarray(steps)
    flags = np.asarray(flags, bool)
    if steps.shape != flags.shape:
        raise ValueError(f"steps and flags must have the same shape, got {steps.shape} and {flags.shape}")
    intervals = []
    start = None
    for i, flagged in enumerate(flags):
        if flagged and start is None:
            start = i
        if start is not None and (not flagged or i == len(flags) - 1):
            end = i if flagged else i - 1
            intervals.append((int(steps[start]), int(steps[end])))
            start = None
    return intervals
