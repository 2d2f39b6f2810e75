"""Checkers for notebook 13: float16 range, bfloat16 rounding and dynamic loss scaling."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from grulm_edu.exercises import Feedback, check_number, correct, incorrect, not_answered
from grulm_edu.precision import adjust_loss_scale

__all__ = ["check_float16_exp_limit", "check_bfloat16_stall", "check_loss_scale_update"]

FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _is_close(answer, value: float, rel_tol: float = 2e-3) -> bool:
    return isinstance(answer, (int, float)) and not isinstance(answer, bool) and math.isclose(answer, value, rel_tol=rel_tol)


def check_float16_exp_limit(answer) -> Feedback:
    """Check the largest logit ``x`` whose ``exp(x)`` is still finite in float16: ``log(65504)``."""
    expected = math.log(FLOAT16_MAX)
    problem = check_number(answer, expected, rel_tol=2e-3, what="your logit")
    if problem is None:
        return correct(f"exp overflows float16 above log(65504) = {expected:.4f}, against {math.log(FLOAT32_MAX):.2f} in float32")
    if _is_close(answer, math.log(FLOAT32_MAX)):
        return incorrect("that is the limit for float32; float16's largest finite value is 65504")
    if _is_close(answer, FLOAT16_MAX):
        return incorrect("65504 is the largest float16 value itself; the question asks for the logit x with exp(x) = 65504")
    if _is_close(answer, math.log2(FLOAT16_MAX)):
        return incorrect("that is log base 2; exp is base e, so take the natural log")
    return problem


def check_bfloat16_stall(answer) -> Feedback:
    """Check where a bfloat16 total that starts at 0 stops growing when 1.0 is added again and again."""
    expected = 256.0  # 8 significant bits: 257 rounds back to 256
    problem = check_number(answer, expected, rel_tol=1e-9, what="your total")
    if problem is None:
        return correct("bfloat16 keeps 8 significant bits, so above 256 its spacing is 2 and 256 + 1 rounds back to 256")
    if _is_close(answer, 2048.0, rel_tol=1e-9):
        return incorrect("2048 is where float16 stalls (11 significant bits); bfloat16 keeps only 8")
    if _is_close(answer, 2.0**24, rel_tol=1e-9):
        return incorrect("2**24 is where float32 stalls (24 significant bits); bfloat16 keeps only 8")
    if _is_close(answer, 128.0, rel_tol=1e-9) or _is_close(answer, 255.0, rel_tol=1e-9):
        return incorrect("every integer up to 256 fits in 8 significant bits; the first one that does not is 257")
    return problem


def check_loss_scale_update(answer, scale: float = 65536.0, good_steps: int = 150, period: int = 200) -> Feedback:
    """Check the ``(scale, good_steps)`` after a step whose gradients overflowed, under `adjust_loss_scale`."""
    if answer is None:
        return not_answered()
    try:
        new_scale, new_good = (float(x) for x in answer)
    except (TypeError, ValueError):
        return incorrect(f"answer with a pair (scale, good_steps), got {answer!r}")
    expected_scale, expected_good = adjust_loss_scale(jnp.float32(scale), jnp.int32(good_steps), jnp.bool_(False), period)
    expected = (float(expected_scale), float(expected_good))
    if (new_scale, new_good) == expected:
        return correct(f"the step is skipped, the scale halves to {expected[0]:g} and the count of good steps starts again at 0")
    if new_scale == expected[0]:
        return incorrect(f"the scale is right; good_steps counts finite steps in a row, so an overflow resets it to {expected[1]:g}")
    if new_scale == scale * 2:
        return incorrect("the scale doubles only after a run of finite steps; an overflow halves it")
    if new_scale == scale:
        return incorrect("an overflow must change the scale: the gradients were inf at this scale, so halve it")
    return incorrect(f"from scale {scale:g} and {good_steps} good steps, an overflow gives neither {new_scale:g} nor {new_good:g}")
