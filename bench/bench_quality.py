"""Quality per wall-clock: validation nats per character against training time.

Three contenders get the same training-time budget on the same corpus,
split and batches (the embedded plays, batch 32 x 128 characters):
grulm_edu's default `train` recipe, a PyTorch GRU of the same size with the
same recipe, and a small causal Transformer built from
`torch.nn.TransformerEncoderLayer`. Each runs alone in its own process
(these runs are long, so they are not interleaved); the clock pauses while
the whole validation split is scored, every `--eval-every` seconds of training.

    python bench/bench_quality.py                   # 300 s per contender
    python bench/bench_quality.py --budget 60 --contenders grulm_edu pytorch_gru
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

BATCH, SEQ_LEN, EMBED, HIDDEN = 32, 128, 64, 256
NUM_STEPS, WARMUP, PEAK_LR, FINAL_FRACTION = 2000, 100, 3e-3, 0.1


def load_data():
    from grulm_edu.corpus import load_plays
    from grulm_edu.data import prepare, split_plays

    return prepare(split_plays(load_plays()), BATCH, SEQ_LEN)


def report(elapsed, val_loss, steps):
    print(json.dumps({"train_seconds": round(elapsed, 2), "val_loss": val_loss, "steps": steps}), flush=True)


def run_grulm(budget, eval_every):
    import jax

    from grulm_edu.model import ModelConfig, init_params
    from grulm_edu.training import TrainConfig, evaluate, fit, init_state, make_optimizer, run_keys

    data = load_data()
    config = TrainConfig()  # the `train` command's defaults
    keys = run_keys(config.seed)
    params = init_params(keys["init"], ModelConfig(data.tokenizer.vocab_size, EMBED, HIDDEN))
    state = init_state(params, make_optimizer(config), config)
    elapsed, chunk = 0.0, 50
    next_eval = eval_every
    while elapsed < budget and int(state.updates) < config.num_steps:
        start = time.perf_counter()
        state, _ = fit(params, data.train, None, config, state=state, until=int(state.updates) + chunk)
        jax.block_until_ready(state.params)
        elapsed += time.perf_counter() - start
        if elapsed >= next_eval or elapsed >= budget or int(state.updates) == config.num_steps:
            report(elapsed, evaluate(state.params, data.val)["loss"], int(state.updates))
            next_eval += eval_every


def _torch_loop(model, budget, eval_every, lr_peak):
    import numpy as np
    import torch

    data = load_data()
    tokens = torch.from_numpy(data.train.tokens).long()
    val_tokens = torch.from_numpy(data.val.tokens).long()
    val_mask = torch.from_numpy(data.val.mask)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=lr_peak, betas=(0.9, 0.99)
    )

    def rate(step):
        if step < WARMUP:
            return lr_peak * step / WARMUP
        progress = min((step - WARMUP) / (NUM_STEPS - WARMUP), 1.0)
        end = lr_peak * FINAL_FRACTION
        return end + (lr_peak - end) * 0.5 * (1 + math.cos(math.pi * progress))

    def validate():
        model.eval()
        total, count = 0.0, 0.0
        with torch.no_grad():
            for i in range(len(val_tokens)):
                logits = model(val_tokens[i, :, :-1])
                losses = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), val_tokens[i, :, 1:].reshape(-1), reduction="none"
                )
                total += float((losses * val_mask[i].reshape(-1)).sum())
                count += float(val_mask[i].sum())
        model.train()
        return total / count

    rng = np.random.default_rng(0)
    order = rng.permutation(len(tokens))
    elapsed, step, next_eval = 0.0, 0, eval_every
    while elapsed < budget and step < NUM_STEPS:
        start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = rate(step)
        batch = tokens[order[step % len(order)]]
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        elapsed += time.perf_counter() - start
        if elapsed >= next_eval or elapsed >= budget or step == NUM_STEPS:
            report(elapsed, validate(), step)
            next_eval += eval_every


def run_pytorch_gru(budget, eval_every):
    import torch

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)

    class GRULM(torch.nn.Module):
        def __init__(self, vocab):
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, EMBED)
            self.gru = torch.nn.GRU(EMBED, HIDDEN, batch_first=True)
            self.head = torch.nn.Linear(HIDDEN, vocab)

        def forward(self, ids):
            return self.head(self.gru(self.embed(ids))[0])

    _torch_loop(GRULM(80), budget, eval_every, PEAK_LR)


def run_pytorch_transformer(budget, eval_every):
    import torch

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    width, layers, heads = 128, 4, 4

    class TransformerLM(torch.nn.Module):
        def __init__(self, vocab):
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, width)
            self.position = torch.nn.Embedding(SEQ_LEN, width)
            layer = torch.nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
            self.blocks = torch.nn.TransformerEncoder(layer, layers)
            self.norm = torch.nn.LayerNorm(width)
            self.head = torch.nn.Linear(width, vocab)

        def forward(self, ids):
            T = ids.shape[1]
            causal = torch.nn.Transformer.generate_square_subsequent_mask(T)
            x = self.embed(ids) + self.position(torch.arange(T))
            return self.head(self.norm(self.blocks(x, mask=causal, is_causal=True)))

    _torch_loop(TransformerLM(80), budget, eval_every, 1e-3)


CONTENDERS = {"grulm_edu": run_grulm, "pytorch_gru": run_pytorch_gru, "pytorch_transformer": run_pytorch_transformer}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds per contender")
    parser.add_argument("--eval-every", type=float, default=60.0, help="training seconds between validation passes")
    parser.add_argument("--contenders", nargs="+", choices=sorted(CONTENDERS), default=list(CONTENDERS))
    parser.add_argument("--worker", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        CONTENDERS[args.worker](args.budget, args.eval_every)
        return 0

    from grulm_edu.profiling import describe_machine

    print(f"machine: {describe_machine()}")
    print(f"budget {args.budget:.0f} s of training per contender; validation: the 4 held-out plays, nats per character")
    finals = {}
    for name in args.contenders:
        result = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--worker", name, "--budget", str(args.budget),
             "--eval-every", str(args.eval_every)],
            capture_output=True, text=True, check=True,
        )
        points = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        curve = ", ".join(f"{p['train_seconds']:.0f}s: {p['val_loss']:.4f}" for p in points)
        print(f"  {name:20s} {curve}  ({points[-1]['steps']} steps)", flush=True)
        finals[name] = points[-1]["val_loss"]
    if "grulm_edu" in finals:
        for name, loss in finals.items():
            if name != "grulm_edu":
                print(f"  grulm_edu {finals['grulm_edu']:.4f} vs {name} {loss:.4f} nats/char")
    return 0


if __name__ == "__main__":
    sys.exit(main())
