"""Mixed precision on this machine: train-step time and memory for float32, bfloat16 and float16.

Parameters and optimizer state stay float32 under every policy; only the
matmuls change dtype (see grulm_edu.precision). Memory is XLA's compiled
memory analysis of the whole train step (temporaries, arguments, outputs).

    python bench/bench_precision.py
    python bench/bench_precision.py --configs S
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

from grulm_edu.model import ModelConfig, init_params
from grulm_edu.profiling import describe_machine, time_fn
from grulm_edu.training import TrainConfig, init_state, make_optimizer, make_train_step

CONFIGS = {"S": {"hidden": 256, "seq_len": 64, "batch": 32}, "M": {"hidden": 512, "seq_len": 128, "batch": 64}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["S", "M"], help="model sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per precision")
    args = parser.parse_args()
    print(f"machine: {describe_machine()}")
    for name in args.configs:
        config = CONFIGS[name]
        print(f"\nconfig {name}: E=64 H={config['hidden']} T={config['seq_len']} B={config['batch']}")
        tokens = jax.random.randint(jax.random.key(1), (config["batch"], config["seq_len"] + 1), 0, 80)
        mask = jnp.ones((config["batch"], config["seq_len"]), jnp.float32)
        params = init_params(jax.random.key(0), ModelConfig(80, 64, config["hidden"]))
        baseline = None
        for precision in ("float32", "bfloat16", "float16"):
            train_config = TrainConfig(config["batch"], config["seq_len"], num_steps=1000, warmup_steps=10, precision=precision)
            optimizer = make_optimizer(train_config)
            step = make_train_step(train_config, optimizer)
            state = init_state(params, optimizer, train_config)
            key = jax.random.key(2)
            memory = step.lower(state, tokens, mask, key).compile().memory_analysis()
            timing = time_fn(step, state, tokens, mask, key, repeats=args.repeats, number=3)
            baseline = baseline or timing["median_s"]
            mib = 2**20
            print(
                f"  {precision:9s} {1e3 * timing['median_s']:8.1f} ms/step (min {1e3 * timing['min_s']:.1f}, "
                f"max {1e3 * timing['max_s']:.1f}), speed {baseline / timing['median_s']:.2f}x float32 | "
                f"temp {memory.temp_size_in_bytes / mib:6.1f} MiB, arguments {memory.argument_size_in_bytes / mib:5.1f} MiB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
