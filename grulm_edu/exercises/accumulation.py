"""Checkers for notebook 10: gradient accumulation."""

from __future__ import annotations

import math

from grulm_edu.exercises import Feedback, check_number, correct, incorrect, not_answered

__all__ = ["check_equal_count_gradient", "check_micro_batch_counts", "check_accumulator_bytes"]


def check_equal_count_gradient(answer) -> Feedback:
    """Check the mean-of-means gradient at w = 0 for micro-batches with targets [4, 0] and [0, 0], loss 0.5 (w - t)^2."""
    problem = check_number(answer, -1.0, rel_tol=1e-6, what="your gradient")
    if problem is None:
        return correct(
            "the micro-batch means are -2 and 0, and their mean -1 equals the full-batch mean -4 / 4: "
            "with equal token counts the mean of means is the token-weighted mean"
        )
    if answer is None or not isinstance(answer, (int, float)):
        return problem
    if math.isclose(answer, -2.0, rel_tol=1e-6):
        return incorrect("-2 is the mean of the first micro-batch alone; average it with the second micro-batch's mean 0")
    if math.isclose(answer, 1.0, rel_tol=1e-6):
        return incorrect("the sign is flipped: the gradient of 0.5 (w - t)^2 is w - t, negative when w is below the target")
    if math.isclose(answer, -4.0, rel_tol=1e-6):
        return incorrect("-4 is the summed gradient; divide by the token count (or average the two means)")
    return problem


def check_micro_batch_counts(total, warmup) -> Feedback:
    """Check the micro-batches of a run of 500 updates with k = 4, and those of its 50-update warmup."""
    if total is None or warmup is None:
        return not_answered()
    for name, value in (("total", total), ("warmup", warmup)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return incorrect(f"{name} should be a number, got {value!r}")
    if total == 2000 and warmup == 200:
        return correct("each update takes 4 micro-batches, so 500 updates read 2000 and the 50 warmup updates read 200")
    if total == 500:
        return incorrect("num_steps counts optimizer updates; each update reads accumulation_steps = 4 micro-batches")
    if total != 2000:
        return incorrect(f"total {total} is wrong: 500 updates of 4 micro-batches each")
    if warmup == 50:
        return incorrect("the warmup counts updates too: 50 updates of 4 micro-batches each")
    if warmup in (12.5, 12):
        return incorrect("the schedule is not divided by k: it advances once per update, and each update reads 4 micro-batches")
    return incorrect(f"warmup {warmup} is wrong: the warmup lasts 50 updates of 4 micro-batches each")


def check_accumulator_bytes(answer, num_params: int) -> Feedback:
    """Check the extra bytes that `optax.MultiSteps` keeps for a float32 model of `num_params` parameters (its two int32 counters ignored)."""
    expected = 4 * num_params
    problem = check_number(answer, expected, rel_tol=1e-3, what="your byte count")
    if problem is None:
        return correct(
            f"MultiSteps keeps one running mean of the gradients, shaped like the parameters: "
            f"{num_params:,} float32 values = {expected:,} bytes, whatever k is"
        )
    if answer is None or not isinstance(answer, (int, float)):
        return problem
    if math.isclose(answer, num_params, rel_tol=1e-3):
        return incorrect("that is the number of values; each float32 value takes 4 bytes")
    if math.isclose(answer, 2 * expected, rel_tol=1e-3):
        return incorrect("that is the size of Adam's two moments; MultiSteps adds only one buffer, the gradient mean")
    if answer > 2 * expected and math.isclose(answer / expected, round(answer / expected), rel_tol=1e-3):
        return incorrect("MultiSteps does not store one gradient per micro-batch; it keeps a running mean in one buffer")
    return problem
