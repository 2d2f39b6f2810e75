"""Loop against scan: compile time and step time of the GRU forward and gradient against sequence length.

Contenders: the Python loop under `jax.jit` (unrolled at trace time), `lax.scan`
(`gru_layer_scan`), `lax.scan` with ``unroll=8``, and the fused layer that
`forward` trains with (`gru_layer_fused`: two scans and a custom VJP). The loop is compiled only up to
``--max-loop-len`` because its compile time grows steeply with T.

    python bench/bench_scan.py
    python bench/bench_scan.py --lengths 8 32 128 --hidden 256
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

import jax
import jax.numpy as jnp

from grulm_edu.fused_gru import gru_layer_fused
from grulm_edu.model import ModelConfig, gru_layer_loop, gru_layer_scan, init_params
from grulm_edu.profiling import describe_machine, time_fn


def build(layer):
    """Jit the layer's loss and gradient. Every array is an argument: an array
    captured from Python would be baked into the program as a constant, and
    compiling a (B, T, H) constant costs time that grows with T."""

    def loss(gru, xs, h0, g):
        return jnp.sum(layer(gru, xs, h0) * g)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256], help="sequence lengths T")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size H")
    parser.add_argument("--batch", type=int, default=32, help="batch size B")
    parser.add_argument("--max-loop-len", type=int, default=32, help="longest T for the unrolled Python loop")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per contender")
    args = parser.parse_args()

    print(f"machine: {describe_machine()}")
    print(f"GRU layer forward + gradient, E=64 H={args.hidden} B={args.batch}; compile s | step ms (median of {args.repeats})")
    params = init_params(jax.random.key(0), ModelConfig(80, 64, args.hidden))["gru"]
    contenders = {
        "loop (jit)": gru_layer_loop,
        "scan": gru_layer_scan,
        "scan unroll=8": functools.partial(gru_layer_scan, unroll=8),
        "fused": gru_layer_fused,
    }
    compile_times: dict[str, dict[int, float]] = {name: {} for name in contenders}
    for T in args.lengths:
        xs = jax.random.normal(jax.random.key(1), (args.batch, T, 64))
        h0 = jnp.zeros((args.batch, args.hidden))
        g = jax.random.normal(jax.random.key(2), (args.batch, T, args.hidden))
        cells = []
        for name, layer in contenders.items():
            if name.startswith("loop") and T > args.max_loop_len:
                cells.append(f"{name:>14s}: {'skipped':>17s}")
                continue
            fn = build(layer)
            start = time.perf_counter()
            fn.lower(params, xs, h0, g).compile()
            compile_times[name][T] = time.perf_counter() - start
            timing = time_fn(fn, params, xs, h0, g, repeats=args.repeats)
            cells.append(f"{name:>14s}: {compile_times[name][T]:6.2f} s {1e3 * timing['median_s']:7.1f} ms")
        print(f"T={T:4d} " + " | ".join(cells), flush=True)

    for name in ("scan", "fused"):
        times = compile_times[name]
        low, high = min(times), max(times)
        print(f"{name} compile time at T={high} is {times[high] / times[low]:.2f}x its compile time at T={low}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
