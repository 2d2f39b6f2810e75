"""The GRU layer's forward and gradient in three forms, timed against each other.

`grulm_edu.model.gru_layer_scan` (the input projection hoisted before the
loop, gradients by autodiff), the same scan with the projection inside the
loop body (`grulm_edu.scan_lessons.gru_layer_scan_unhoisted`, autodiff), and
`grulm_edu.fused_gru.gru_layer_fused` (projection inside the loop, custom VJP
with the weight gradients as large matmuls after the reverse scan), which
`forward` uses in float32. All run in this process, 7 interleaved rounds of 5
calls each. The script prints the median milliseconds per call, the speed-up
over the hoisted autodiff form and the largest gradient difference from it.

    python bench/bench_fused_gru.py
"""

from __future__ import annotations

import statistics
import sys
import time

import jax
import jax.numpy as jnp

from grulm_edu.fused_gru import gru_layer_fused
from grulm_edu.model import ModelConfig, gru_layer_scan, init_params
from grulm_edu.profiling import describe_machine
from grulm_edu.scan_lessons import gru_layer_scan_unhoisted

SHAPES = [(256, 64, 32), (256, 128, 32), (512, 128, 64)]  # (H, T, B), embedding 64


def main() -> int:
    print(f"machine: {describe_machine()}")
    for H, T, B in SHAPES:
        gru = init_params(jax.random.key(0), ModelConfig(80, 64, H))["gru"]
        xs = jax.random.normal(jax.random.key(1), (B, T, 64))
        h0 = jnp.zeros((B, H))
        g = jax.random.normal(jax.random.key(2), (B, T, H))
        fns = {
            name: jax.jit(jax.value_and_grad(lambda p, x, layer=layer: jnp.sum(layer(p, x, h0) * g), argnums=(0, 1)))
            for name, layer in (
                ("autodiff scan", gru_layer_scan),
                ("projection inside", gru_layer_scan_unhoisted),
                ("fused (custom VJP)", gru_layer_fused),
            )
        }
        results = {name: jax.tree_util.tree_leaves(jax.block_until_ready(fn(gru, xs))) for name, fn in fns.items()}
        difference = {
            name: max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(leaves, results["autodiff scan"]))
            for name, leaves in results.items()
        }
        times = {name: [] for name in fns}
        for _ in range(7):
            for name, fn in fns.items():
                start = time.perf_counter()
                for _ in range(5):
                    out = fn(gru, xs)
                jax.block_until_ready(out)
                times[name].append((time.perf_counter() - start) / 5)
        medians = {name: 1e3 * statistics.median(values) for name, values in times.items()}
        base = medians["autodiff scan"]
        cells = [
            f"{name} {ms:.1f} ms ({base / ms:.2f}x, gradients within {difference[name]:.0e})" for name, ms in medians.items()
        ]
        print(f"H={H} T={T} B={B}: " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
