"""Training throughput: grulm_edu's GRU language model against PyTorch and Flax.

Every contender runs the same step (embedding 64, one GRU layer, a linear
head, cross-entropy, gradients, global-norm clipping at 1.0, AdamW) on the
same random tokens (vocabulary 80), each in its own process, steps
interleaved (see harness.py). Also measures the achieved GFLOP/s of
grulm_edu's step (the analytic matmul FLOP count, because XLA's cost
analysis counts a scan body only once) against a float32 matmul timed in the
same run.

    python bench/bench_training.py                 # configs S and M
    python bench/bench_training.py --configs S --rounds 3

Needs the bench extra for the peers: pip install -e ".[bench]".
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import Worker, interleave, serve, summarize  # noqa: E402

VOCAB, EMBED = 80, 64
CONFIGS = {"S": {"hidden": 256, "seq_len": 64, "batch": 32}, "M": {"hidden": 512, "seq_len": 128, "batch": 64}}
MATMUL_SIZE = 1024


def random_tokens(batch, seq_len, seed=0):
    import numpy as np

    return np.random.default_rng(seed).integers(0, VOCAB, size=(batch, seq_len + 1), dtype=np.int32)


# Workers ------------------------------------------------------------------

def worker_grulm(config):
    import jax
    import jax.numpy as jnp

    from grulm_edu.model import ModelConfig, init_params
    from grulm_edu.training import TrainConfig, init_state, make_optimizer, make_train_step

    train_config = TrainConfig(batch_size=config["batch"], seq_len=config["seq_len"], num_steps=10**6, warmup_steps=10)
    optimizer = make_optimizer(train_config)
    step = make_train_step(train_config, optimizer)
    state = init_state(init_params(jax.random.key(0), ModelConfig(VOCAB, EMBED, config["hidden"])), optimizer)
    tokens = jnp.asarray(random_tokens(config["batch"], config["seq_len"]))
    mask = jnp.ones((config["batch"], config["seq_len"]), jnp.float32)
    key = jax.random.key(1)
    cost = step.lower(state, tokens, mask, key).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    holder = {"state": state}

    def warm_up():
        for _ in range(3):
            holder["state"], metrics = step(holder["state"], tokens, mask, key)
        jax.block_until_ready(metrics)
        return f"flops_per_step {cost.get('flops', float('nan'))}"

    def run(n):
        start = time.perf_counter()
        for _ in range(n):
            holder["state"], metrics = step(holder["state"], tokens, mask, key)
        jax.block_until_ready(metrics)  # the host waits for the device here
        return time.perf_counter() - start

    serve(warm_up, run)


def worker_matmul(config):
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (MATMUL_SIZE, MATMUL_SIZE), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (MATMUL_SIZE, MATMUL_SIZE), jnp.float32)
    dot = jax.jit(jnp.dot)

    def warm_up():
        jax.block_until_ready(dot(a, b))
        return f"flops_per_step {2 * MATMUL_SIZE**3}"

    def run(n):
        start = time.perf_counter()
        for _ in range(n):
            out = dot(a, b)
        jax.block_until_ready(out)
        return time.perf_counter() - start

    serve(warm_up, run)


def worker_torch(config):
    import torch

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(VOCAB, EMBED)
            self.gru = torch.nn.GRU(EMBED, config["hidden"], batch_first=True)
            self.head = torch.nn.Linear(config["hidden"], VOCAB)

        def forward(self, ids):
            states, _ = self.gru(self.embed(ids))
            return self.head(states)

    model = Model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    tokens = torch.from_numpy(random_tokens(config["batch"], config["seq_len"])).long()
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def one_step():
        optimizer.zero_grad(set_to_none=True)
        logits = model(inputs)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss

    def warm_up():
        for _ in range(3):
            one_step()
        return f"torch {torch.__version__}, {torch.get_num_threads()} threads"

    def run(n):
        start = time.perf_counter()
        for _ in range(n):
            one_step()
        return time.perf_counter() - start

    serve(warm_up, run)


def _optax_chain():
    import optax

    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, weight_decay=0.1))


def worker_flax_linen(config):
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    class Model(nn.Module):
        @nn.compact
        def __call__(self, ids):
            x = nn.Embed(VOCAB, EMBED)(ids)
            states = nn.RNN(nn.GRUCell(features=config["hidden"]))(x)
            return nn.Dense(VOCAB)(states)

    model = Model()
    tokens = jnp.asarray(random_tokens(config["batch"], config["seq_len"]))
    params = model.init(jax.random.key(0), tokens[:, :-1])
    optimizer = _optax_chain()
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, tokens):
        def loss_fn(params):
            logits = model.apply(params, tokens[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    holder = {"params": params, "opt_state": opt_state}

    def run(n):
        start = time.perf_counter()
        for _ in range(n):
            holder["params"], holder["opt_state"], loss = step(holder["params"], holder["opt_state"], tokens)
        jax.block_until_ready(loss)
        return time.perf_counter() - start

    def warm_up():
        run(3)
        import flax

        return f"flax {flax.__version__} linen"

    serve(warm_up, run)


def worker_flax_nnx(config):
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(VOCAB, EMBED, rngs=rngs)
            self.rnn = nnx.RNN(nnx.GRUCell(EMBED, config["hidden"], rngs=rngs), rngs=rngs)
            self.head = nnx.Linear(config["hidden"], VOCAB, rngs=rngs)

        def __call__(self, ids):
            return self.head(self.rnn(self.embed(ids)))

    model = Model(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, _optax_chain(), wrt=nnx.Param)
    tokens = jnp.asarray(random_tokens(config["batch"], config["seq_len"]))

    @nnx.jit
    def step(model, optimizer, tokens):
        def loss_fn(model):
            logits = model(tokens[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    def run(n):
        start = time.perf_counter()
        for _ in range(n):
            loss = step(model, optimizer, tokens)
        jax.block_until_ready(loss)
        return time.perf_counter() - start

    def warm_up():
        run(3)
        import flax

        return f"flax {flax.__version__} nnx"

    serve(warm_up, run)


WORKERS = {
    "grulm_edu": worker_grulm,
    "matmul": worker_matmul,
    "pytorch": worker_torch,
    "flax_linen": worker_flax_linen,
    "flax_nnx": worker_flax_nnx,
}
NEEDS = {"pytorch": "torch", "flax_linen": "flax", "flax_nnx": "flax"}


# Parent -------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description="Training throughput of grulm_edu against PyTorch and Flax.")
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["S", "M"], help="model sizes to run")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per contender")
    parser.add_argument("--steps", type=int, default=5, help="train steps per round")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--config", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        WORKERS[args.worker](CONFIGS[args.config])
        return 0

    from grulm_edu.profiling import describe_machine

    print(f"machine: {describe_machine()}")
    names = [n for n in WORKERS if n not in NEEDS or importlib.util.find_spec(NEEDS[n])]
    for missing in sorted(set(WORKERS) - set(names)):
        print(f"note: {missing} skipped, {NEEDS[missing]} is not installed (pip install -e '.[bench]')")
    for config_name in args.configs:
        config = CONFIGS[config_name]
        tokens_per_step = config["batch"] * config["seq_len"]
        print(f"\nconfig {config_name}: E={EMBED} H={config['hidden']} T={config['seq_len']} B={config['batch']} V={VOCAB}, "
              f"{args.rounds} rounds of {args.steps} steps")
        script = str(pathlib.Path(__file__).resolve())
        workers = [Worker(n, [script, "--worker", n, "--config", config_name]) for n in names]
        try:
            times = interleave(workers, args.rounds, args.steps)
        finally:
            for worker in workers:
                worker.close()
        info = {w.name: w.info for w in workers}
        rates = {}
        for name in names:
            if name == "matmul":
                continue
            median, low, high = summarize(times[name])
            rates[name] = tokens_per_step / median
            print(f"  {name:11s} {1e3 * median:8.1f} ms/step (min {1e3 * low:.1f}, max {1e3 * high:.1f}) "
                  f"{rates[name]:10,.0f} tokens/s   [{info[name]}]")
        for name in rates:
            if name != "grulm_edu":
                print(f"  grulm_edu / {name}: {rates['grulm_edu'] / rates[name]:.2f}x")
        from grulm_edu.model import ModelConfig
        from grulm_edu.xla_stats import gru_matmul_flops

        # XLA's cost analysis counts a scan body once, not once per step, so
        # the achieved rate uses the analytic matmul count instead.
        xla_flops = float(info["grulm_edu"].split()[1])
        flops = gru_matmul_flops(ModelConfig(VOCAB, EMBED, config["hidden"]), config["batch"], config["seq_len"])
        step_gflops = flops / summarize(times["grulm_edu"])[0] / 1e9
        matmul_gflops = 2 * MATMUL_SIZE**3 / summarize(times["matmul"])[0] / 1e9
        print(f"  grulm_edu step: {flops / 1e9:.2f} GFLOP of matmuls (analytic; XLA's cost analysis says "
              f"{xla_flops / 1e9:.2f}), {step_gflops:.1f} GFLOP/s = {100 * step_gflops / matmul_gflops:.0f}% of a "
              f"{MATMUL_SIZE}^3 float32 matmul's {matmul_gflops:.1f} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
