"""Checkers for notebook 15: matmul FLOPs, achieved throughput and compile counts."""

from __future__ import annotations

import math
from collections.abc import Sequence

from grulm_edu.exercises import Feedback, check_number, correct, incorrect

__all__ = ["check_matmul_flops", "check_peak_fraction", "check_compile_count"]


def _is_close(answer, value: float, rel_tol: float = 1e-3) -> bool:
    return isinstance(answer, (int, float)) and not isinstance(answer, bool) and math.isclose(answer, value, rel_tol=rel_tol)


def check_matmul_flops(answer, M: int, K: int, N: int) -> Feedback:
    """Check the FLOPs of one ``(M, K) @ (K, N)`` matmul: ``2 * M * K * N``."""
    expected = 2 * M * K * N
    problem = check_number(answer, expected, rel_tol=1e-6, what="your FLOP count")
    if problem is None:
        return correct(f"M * N outputs, each a sum of K products: K multiplies and K adds, so 2 * M * K * N = {expected:,}")
    if _is_close(answer, M * K * N):
        return incorrect("that counts multiply-adds; each is two FLOPs, a multiply and an add")
    if _is_close(answer, 3 * expected) or _is_close(answer, 6 * M * K * N):
        return incorrect("that is the forward and backward pass together; the question asks for one matmul")
    if _is_close(answer, 2 * M * N) or _is_close(answer, M * N):
        return incorrect("that counts the outputs only; each output is a sum over K products")
    return problem


def check_peak_fraction(answer, flops: float, seconds: float, peak_gflops: float) -> Feedback:
    """Check the fraction of `peak_gflops` that a step of `flops` FLOPs taking `seconds` achieves."""
    achieved = flops / seconds / 1e9
    expected = achieved / peak_gflops
    problem = check_number(answer, expected, rel_tol=1e-3, what="your fraction")
    if problem is None:
        return correct(f"{flops:.3g} FLOPs in {seconds:g} s is {achieved:.2f} GFLOP/s, {expected:.3f} of {peak_gflops:g}")
    if _is_close(answer, 100 * expected):
        return incorrect("that is a percentage; give the fraction (divide by 100)")
    if _is_close(answer, expected / 1000) or _is_close(answer, expected * 1000):
        return incorrect("off by a factor of 1000: check the seconds against milliseconds, and GFLOP means 1e9 FLOPs")
    if _is_close(answer, achieved):
        return incorrect("that is the achieved GFLOP/s; divide it by the peak to get the fraction")
    if _is_close(answer, 1 / expected):
        return incorrect("that is peak over achieved; the fraction is achieved over peak")
    return problem


def check_compile_count(answer, lengths: Sequence[int]) -> Feedback:
    """Check how many times a jitted function compiles when called on batches of these sequence `lengths`."""
    expected = len(set(lengths))
    problem = check_number(answer, expected, rel_tol=1e-9, what="your count")
    if problem is None:
        return correct(f"one compile per distinct shape: {sorted(set(lengths))}; repeated shapes reuse the cached executable")
    if _is_close(answer, len(lengths)) and len(lengths) != expected:
        return incorrect("a call with a shape seen before reuses the compiled executable; count distinct shapes, not calls")
    if _is_close(answer, 1) and expected != 1:
        return incorrect("jit compiles per argument shape: a new sequence length is a new shape, so it compiles again")
    return problem
