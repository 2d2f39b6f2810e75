"""Timing and machine description for notebooks, benchmarks and the command line.

`time_fn` follows the usual JAX recipe: call once to compile (reported
apart), then time repeated calls, each ended with `jax.block_until_ready`
because JAX dispatches work asynchronously and returns before it finishes.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import jax

__all__ = ["describe_machine", "time_fn"]


def describe_machine() -> str:
    """One line naming the JAX version, its devices, and the CPU."""
    devices = jax.devices()
    kinds = ", ".join(sorted({d.device_kind for d in devices}))
    cpu = platform.processor() or platform.machine()
    return (
        f"JAX {jax.__version__}, {len(devices)} {devices[0].platform} device(s) ({kinds}); "
        f"Python {platform.python_version()} on {cpu} with {os.cpu_count()} CPU cores"
    )


def time_fn(fn: Callable, *args, repeats: int = 5, number: int = 1) -> dict:
    """Time ``fn(*args)``: the first call (compile and run) apart, then `repeats` rounds of `number` calls.

    Returns:
        ``{"first_s", "median_s", "min_s", "max_s"}``; the last three are per call.
    """
    if repeats < 1 or number < 1:
        raise ValueError(f"repeats and number must be >= 1, got {repeats} and {number}")
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))  # the host waits for the device here
    first = time.perf_counter() - start
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            result = fn(*args)
        jax.block_until_ready(result)  # and here, once per round
        rounds.append((time.perf_counter() - start) / number)
    return {"first_s": first, "median_s": statistics.median(rounds), "min_s": min(rounds), "max_s": max(rounds)}
