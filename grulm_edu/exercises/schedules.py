"""Checkers for notebook 09: learning-rate schedules."""

from __future__ import annotations

import math

import numpy as np
import optax

from grulm_edu.exercises import Feedback, check_number, correct, incorrect, not_answered
from grulm_edu.training import TrainConfig, make_schedule

__all__ = ["RATE_QUESTION", "check_rate_at_update", "check_warmup_linear_decay", "check_constant_config"]

# The schedule of exercise 1: TrainConfig(learning_rate=3e-3, warmup_steps=100,
# num_steps=1000, final_lr_fraction=0.1), read at update 550.
RATE_QUESTION = {"peak": 3e-3, "warmup_steps": 100, "num_steps": 1000, "end": 3e-4, "update": 550}


def _cosine(t, peak, end, length):
    return end + (peak - end) * 0.5 * (1.0 + math.cos(math.pi * t / length))


def check_rate_at_update(answer) -> Feedback:
    """Check the rate of `RATE_QUESTION`'s schedule at update 550."""
    q = RATE_QUESTION
    expected = _cosine(q["update"] - q["warmup_steps"], q["peak"], q["end"], q["num_steps"] - q["warmup_steps"])
    problem = check_number(answer, expected, rel_tol=1e-3, what="your rate")
    if problem is None:
        return correct(
            f"update 550 is 450 updates into a 900-update cosine, exactly half-way, so the rate is the mean "
            f"of peak and end: ({q['peak']:g} + {q['end']:g}) / 2 = {expected:g}"
        )
    if answer is None or not isinstance(answer, (int, float)):
        return problem
    mistakes = {
        "the cosine starts after the warmup: measure t from update 100, not from 0": _cosine(
            q["update"], q["peak"], q["end"], q["num_steps"]
        ),
        "the cosine decays to the end rate 0.1 x peak, not to 0": _cosine(
            q["update"] - q["warmup_steps"], q["peak"], 0.0, q["num_steps"] - q["warmup_steps"]
        ),
        "the cosine spans num_steps - warmup_steps = 900 updates, not 1000": _cosine(
            q["update"] - q["warmup_steps"], q["peak"], q["end"], q["num_steps"]
        ),
    }
    for message, value in mistakes.items():
        if math.isclose(answer, value, rel_tol=1e-3):
            return incorrect(message)
    return problem


def _warmup_linear_decay(peak, end, warmup_steps, decay_steps) -> optax.Schedule:
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak, warmup_steps), optax.linear_schedule(peak, end, decay_steps - warmup_steps)],
        [warmup_steps],
    )


def check_warmup_linear_decay(fn) -> Feedback:
    """Check `fn(step, peak, end, warmup_steps, decay_steps)`: linear warmup from 0, then a straight line down to `end`.

    The reference is optax's `linear_schedule` for each phase joined at
    `warmup_steps`; the decay spans ``decay_steps - warmup_steps`` updates and
    the rate stays at `end` after it.
    """
    if fn is None:
        return not_answered()
    if not callable(fn):
        return incorrect(f"pass your function itself, got {type(fn).__name__}")
    peak, end, warmup, decay = 2.0, 0.2, 10, 50
    steps = [0, 1, 5, 10, 11, 20, 30, 49, 50, 60, 100]
    expected = np.asarray(_warmup_linear_decay(peak, end, warmup, decay)(np.array(steps)), np.float64)
    try:
        got = np.array([float(fn(s, peak, end, warmup, decay)) for s in steps])
    except Exception as error:  # the learner's code may raise anything
        return incorrect(f"your function raised {type(error).__name__}: {error}")
    wrong = ~np.isclose(got, expected, rtol=1e-5, atol=1e-7)
    if not wrong.any():
        return correct("a linear rise from 0 to the peak, a linear fall to the end rate, then flat")
    steps_array = np.array(steps)
    first = int(steps_array[wrong][0])
    at_first = f"at step {first} expected {expected[steps.index(first)]:.4g}, got {got[steps.index(first)]:.4g}"
    if wrong[steps_array < warmup].any():
        return incorrect(f"the warmup is wrong: {at_first}; the rate rises linearly from 0 to the peak over warmup_steps")
    if wrong[steps_array <= decay].any():
        return incorrect(
            f"the decay is wrong: {at_first}; count t from the end of the warmup and divide by "
            f"decay_steps - warmup_steps, the decay's length"
        )
    return incorrect(f"after decay_steps the rate must stay at the end rate {end}: {at_first}; clip t at the decay's length")


def check_constant_config(config) -> Feedback:
    """Check for a `TrainConfig` whose rate is 2e-3 at every one of 500 updates."""
    if config is None:
        return not_answered()
    if not isinstance(config, TrainConfig):
        return incorrect(f"build a grulm_edu.training.TrainConfig, got {type(config).__name__}")
    if config.num_steps != 500:
        return incorrect(f"the run should last 500 updates, but num_steps is {config.num_steps}")
    rates = np.asarray(make_schedule(config)(np.arange(config.num_steps)), np.float64)
    if np.allclose(rates, 2e-3, rtol=1e-6):
        return correct("warmup_steps=0 starts at the peak and final_lr_fraction=1.0 makes the cosine end where it starts")
    if config.warmup_steps > 0:
        return incorrect(f"warmup_steps={config.warmup_steps} still ramps the rate up from 0; set it to 0")
    if config.final_lr_fraction != 1.0:
        return incorrect(
            f"final_lr_fraction={config.final_lr_fraction:g} makes the rate decay to "
            f"{config.learning_rate * config.final_lr_fraction:g}; set it to 1.0"
        )
    return incorrect(f"the rate is {rates[0]:g} throughout; set learning_rate to 2e-3")
