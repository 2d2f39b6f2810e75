"""Optimizer, train step, evaluation and the `fit` loop.

The optimizer is an optax chain: global-norm clipping, then AdamW whose
learning rate follows linear warmup and cosine decay
(`optax.warmup_cosine_decay_schedule`). Schedule lengths count optimizer
updates. Weight decay applies to weight matrices only: biases never decay,
and neither do embedding rows. Decoupled decay shrinks every row on every
update, while a rare character's row gets a gradient only when that
character appears, so rare characters would fade toward zero.

Gradient accumulation wraps the chain in `optax.MultiSteps`: ``k``
micro-batches make one update, and each micro-batch's summed loss is
weighted by ``k / N`` (``N`` the tokens of all ``k`` micro-batches), so the
averaged gradient equals the gradient of the token-weighted mean over the
whole update, even when micro-batches hold different numbers of tokens.

A step whose loss or gradient norm is not finite is skipped: parameters and
optimizer state stay bit-identical and the skip is counted. Mixed precision
follows `grulm_edu.precision`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from grulm_edu.data import Batches, epoch_order
from grulm_edu.losses import masked_loss_sum, token_cross_entropy
from grulm_edu.model import forward
from grulm_edu.precision import INITIAL_LOSS_SCALE, adjust_loss_scale, compute_dtype, needs_loss_scaling
from grulm_edu.runlog import RunLogWriter

__all__ = [
    "TrainConfig",
    "TrainState",
    "History",
    "NonFiniteError",
    "make_schedule",
    "decay_mask",
    "make_optimizer",
    "init_state",
    "make_train_step",
    "make_eval_fn",
    "evaluate",
    "fit",
    "run_keys",
    "micro_batch_loss_weight",
]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run. Step counts are optimizer updates."""

    batch_size: int = 32
    seq_len: int = 128
    num_steps: int = 2000
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    b1: float = 0.9
    b2: float = 0.99
    dropout_rate: float = 0.0
    accumulation_steps: int = 1
    precision: str = "float32"
    loss_scale_period: int = 200
    log_interval: int = 100
    eval_batches: int = 16
    max_consecutive_skips: int = 10
    seed: int = 0

    def __post_init__(self):
        positive_ints = (
            "batch_size",
            "seq_len",
            "num_steps",
            "accumulation_steps",
            "loss_scale_period",
            "log_interval",
            "eval_batches",
            "max_consecutive_skips",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        if self.warmup_steps >= self.num_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be smaller than num_steps "
                f"({self.num_steps}); shorten the warmup or train longer"
            )
        checks = {
            "learning_rate": self.learning_rate > 0,
            "final_lr_fraction": 0 <= self.final_lr_fraction <= 1,
            "weight_decay": self.weight_decay >= 0,
            "clip_norm": self.clip_norm > 0,
            "b1": 0 <= self.b1 < 1,
            "b2": 0 <= self.b2 < 1,
            "dropout_rate": 0 <= self.dropout_rate < 1,
        }
        ranges = {
            "learning_rate": "> 0",
            "final_lr_fraction": "in [0, 1]",
            "weight_decay": ">= 0",
            "clip_norm": "> 0",
            "b1": "in [0, 1)",
            "b2": "in [0, 1)",
            "dropout_rate": "in [0, 1)",
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok:
                raise ValueError(f"{name} must be a finite number {ranges[name]}, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {self.seed!r}")
        compute_dtype(self.precision)  # raises ValueError naming the valid choices

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class TrainState(NamedTuple):
    """Everything that changes during training, as one pytree."""

    params: dict
    opt_state: optax.OptState
    step: jax.Array  # micro-batches processed, skipped ones included
    updates: jax.Array  # optimizer updates applied; the schedule's clock
    skipped: jax.Array  # micro-batches skipped for non-finite loss or gradients
    loss_scale: jax.Array  # float16 dynamic loss scale; 1 for other precisions
    good_steps: jax.Array  # finite steps since the loss scale last changed


class NonFiniteError(FloatingPointError):
    """Training stopped after too many consecutive non-finite steps.

    Attributes `state` (the last good parameters) and `history` keep the run so far.
    """

    def __init__(self, message, state, history):
        super().__init__(message)
        self.state = state
        self.history = history


def run_keys(seed: int) -> dict[str, jax.Array]:
    """Split one root seed into one key per purpose: init, data order, dropout, sampling."""
    names = ("init", "data", "dropout", "sample")
    return dict(zip(names, jax.random.split(jax.random.key(seed), len(names))))


def make_schedule(config: TrainConfig) -> optax.Schedule:
    """Linear warmup from 0 to the peak rate, then cosine decay to ``final_lr_fraction`` of it."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=config.warmup_steps,
        decay_steps=config.num_steps,
        end_value=config.learning_rate * config.final_lr_fraction,
    )


def decay_mask(params: dict) -> dict:
    """True for the weight matrices that AdamW decays: GRU and head weights, not biases or embeddings."""
    mask = jax.tree_util.tree_map(lambda x: x.ndim >= 2, params)
    mask["embed"] = False
    return mask


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping followed by AdamW on the warmup + cosine schedule.

    With ``accumulation_steps = k > 1`` the chain is wrapped in
    `optax.MultiSteps`, which averages k gradients before each update; the
    schedule then advances once per update, not per micro-batch.
    """
    chain = optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.adamw(
            make_schedule(config),
            b1=config.b1,
            b2=config.b2,
            weight_decay=config.weight_decay,
            mask=decay_mask,
        ),
    )
    if config.accumulation_steps > 1:
        return optax.MultiSteps(chain, every_k_schedule=config.accumulation_steps).gradient_transformation()
    return chain


def init_state(params: dict, optimizer: optax.GradientTransformation, config: TrainConfig | None = None) -> TrainState:
    zero = jnp.zeros((), jnp.int32)
    scaling = config is not None and needs_loss_scaling(config.precision)
    loss_scale = jnp.asarray(INITIAL_LOSS_SCALE if scaling else 1.0, jnp.float32)
    return TrainState(params, optimizer.init(params), zero, zero, zero, loss_scale, zero)


def micro_batch_loss_weight(token_counts) -> float:
    """Weight for each micro-batch's summed loss: ``k / N`` for k micro-batches holding N tokens in all.

    `optax.MultiSteps` averages the k gradients (divides their sum by k), so
    weighting each summed loss by ``k / N`` makes the update the gradient of
    the token-weighted mean over all N tokens. The mean of per-micro-batch
    means would over-weight a short micro-batch.
    """
    counts = np.asarray(token_counts, np.float64)
    if counts.ndim != 1 or len(counts) == 0 or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError(f"token_counts must be a non-empty list of counts >= 0 with a positive sum, got {token_counts!r}")
    return len(counts) / float(counts.sum())


def batch_loss(params: dict, tokens: jax.Array, mask: jax.Array, dropout_rate: float = 0.0, key=None):
    """Mean cross-entropy of one batch ``tokens (B, T+1)`` under ``mask (B, T)``."""
    logits, _ = forward(params, tokens[:, :-1], dropout_rate=dropout_rate, key=key)
    total, count = masked_loss_sum(token_cross_entropy(logits, tokens[:, 1:]), mask)
    return total / count


def make_train_step(config: TrainConfig, optimizer: optax.GradientTransformation) -> Callable:
    """Build the jitted ``train_step(state, tokens, mask, key, loss_weight=None) -> (state, metrics)``.

    Args of the returned function:
        state: a `TrainState`.
        tokens: ``(B, T + 1)`` int32 ids; inputs ``[:, :-1]``, targets ``[:, 1:]``.
        mask: ``(B, T)`` 1 for real targets, 0 for padding.
        key: PRNG key for dropout.
        loss_weight: factor on the batch's summed loss; None means ``1 / tokens``
            (the mean). Under accumulation pass `micro_batch_loss_weight`.

    `metrics` contains the batch's summed loss and token count, its mean loss,
    the norm of the gradient the optimizer receives (before clipping; the
    accumulated one under accumulation), the learning rate of the update,
    whether an update was applied, and whether the step was skipped.
    """
    schedule = make_schedule(config)
    k = config.accumulation_steps
    dtype = compute_dtype(config.precision)
    scaling = needs_loss_scaling(config.precision)

    def objective(params, tokens, mask, key, loss_weight, loss_scale):
        logits, _ = forward(
            params, tokens[:, :-1], dropout_rate=config.dropout_rate, key=key, compute_dtype=dtype
        )
        total, count = masked_loss_sum(token_cross_entropy(logits, tokens[:, 1:]), mask)
        weight = 1.0 / count if loss_weight is None else loss_weight
        return total * weight * loss_scale, (total, count)

    @jax.jit
    def train_step(state: TrainState, tokens, mask, key, loss_weight=None):
        (_, (total, count)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params, tokens, mask, key, loss_weight, state.loss_scale
        )
        grads = jax.tree_util.tree_map(lambda g: g / state.loss_scale, grads)

        # The gradient the optimizer acts on: under MultiSteps, the running
        # mean of this update's micro-batch gradients (optax's own formula).
        if k > 1:
            seen = state.opt_state.mini_step
            applied = jax.tree_util.tree_map(
                lambda g, acc: acc + (g - acc) / (seen + 1), grads, state.opt_state.acc_grads
            )
            emits = seen == k - 1
        else:
            applied, emits = grads, jnp.array(True)
        grad_norm = optax.tree.norm(applied)

        updates, new_opt_state = optimizer.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)

        # Keep the old state, bit for bit, when anything is inf or nan.
        finite = jnp.isfinite(total) & jnp.isfinite(optax.tree.norm(grads))
        params, opt_state = jax.tree_util.tree_map(
            lambda new, old: jnp.where(finite, new, old),
            (new_params, new_opt_state),
            (state.params, state.opt_state),
        )
        if scaling:
            loss_scale, good_steps = adjust_loss_scale(
                state.loss_scale, state.good_steps, finite, config.loss_scale_period
            )
        else:
            loss_scale, good_steps = state.loss_scale, state.good_steps
        applied_update = finite & emits
        metrics = {
            "total": total,
            "count": count,
            "loss": total / jnp.maximum(count, 1.0),
            "grad_norm": grad_norm,
            "lr": schedule(state.updates),
            "applied": applied_update,
            "skipped": ~finite,
            "loss_scale": state.loss_scale,
        }
        new_state = TrainState(
            params,
            opt_state,
            state.step + 1,
            state.updates + applied_update.astype(jnp.int32),
            state.skipped + (~finite).astype(jnp.int32),
            loss_scale,
            good_steps,
        )
        return new_state, metrics

    return train_step


def make_eval_fn() -> Callable:
    """Build the jitted ``eval_fn(params, tokens, mask) -> (summed nats, token count)``."""

    @jax.jit
    def eval_fn(params, tokens, mask):
        logits, _ = forward(params, tokens[:, :-1])
        return masked_loss_sum(token_cross_entropy(logits, tokens[:, 1:]), mask)

    return eval_fn


_EVAL_FN = make_eval_fn()


def evaluate(params: dict, batches: Batches, max_batches: int | None = None) -> dict:
    """Score `batches` and return ``{"loss", "perplexity", "tokens", "total_nats"}``.

    The loss is the token-weighted mean in nats over every unmasked target (or
    over the first `max_batches` batches); perplexity is its ``exp``.
    """
    n = len(batches) if max_batches is None else min(max_batches, len(batches))
    total, count = 0.0, 0.0
    for i in range(n):
        batch_total, batch_count = _EVAL_FN(params, batches.tokens[i], batches.mask[i])
        # The host waits here for the device; summing in float64 on the host
        # keeps the total exact enough over hundreds of batches.
        total += float(batch_total)
        count += float(batch_count)
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": int(count), "total_nats": total}


@dataclasses.dataclass
class History:
    """Per-step and per-evaluation records of a run, as NumPy arrays."""

    step: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    lr: np.ndarray
    skipped: np.ndarray
    tokens_per_s: np.ndarray
    wall_time: np.ndarray
    eval_step: np.ndarray
    val_loss: np.ndarray
    compile_seconds: float = 0.0
    interrupted: bool = False

    @classmethod
    def from_records(cls, steps: list[dict], evals: list[tuple[int, float]], **extra) -> History:
        def column(name, dtype):
            return np.array([r[name] for r in steps], dtype=dtype)

        return cls(
            step=column("step", np.int64),
            loss=column("loss", np.float32),
            grad_norm=column("grad_norm", np.float32),
            lr=column("lr", np.float32),
            skipped=column("skipped", bool),
            tokens_per_s=column("tokens_per_s", np.float64),
            wall_time=column("wall_time", np.float64),
            eval_step=np.array([s for s, _ in evals], np.int64),
            val_loss=np.array([v for _, v in evals], np.float64),
            **extra,
        )


def _format_line(step, num_steps, loss, val_loss, grad_norm, lr, tokens_per_s) -> str:
    width = len(str(num_steps))
    val = f"{val_loss:.4f}" if val_loss is not None else "   -  "
    return (
        f"step {step:>{width}}/{num_steps} | loss {loss:.4f} | val {val} | "
        f"grad {grad_norm:7.4f} | lr {lr:.2e} | {tokens_per_s:8,.0f} tok/s"
    )


_STEP_CACHE: dict = {}


def _cached_train_step(config: TrainConfig):
    # Reuse the jitted step across fit calls with the same config, so training
    # in chunks (fit(..., state=..., until=...)) compiles once. The key also
    # contains the builder, so a replaced make_train_step is never bypassed.
    key = (config, make_train_step)
    if key not in _STEP_CACHE:
        if len(_STEP_CACHE) >= 16:
            _STEP_CACHE.clear()
        optimizer = make_optimizer(config)
        _STEP_CACHE[key] = (optimizer, make_train_step(config, optimizer))
    return _STEP_CACHE[key]


def fit(
    params: dict,
    train: Batches,
    val: Batches | None,
    config: TrainConfig,
    *,
    state: TrainState | None = None,
    until: int | None = None,
    progress: bool = False,
    log: bool | Callable[[str], None] | None = None,
    log_path: str | None = None,
    mesh=None,
) -> tuple[TrainState, History]:
    """Train until ``config.num_steps`` optimizer updates and return ``(final state, history)``.

    Args:
        params: initial parameters (ignored when `state` is given).
        train: training batches; epochs visit them in a fresh permutation each.
            With ``accumulation_steps = k``, k consecutive batches of that
            order make one update.
        val: validation batches, scored on ``config.eval_batches`` batches every
            ``log_interval`` updates; None skips validation.
        config: the run's hyperparameters.
        state: a `TrainState` to continue from (for example a checkpoint's);
            the data order and dropout keys depend only on the micro-batch
            counter, so a resumed run repeats an uninterrupted one exactly.
        until: stop after this many updates instead of ``config.num_steps``;
            the schedule still spans ``config.num_steps``.
        progress: show a tqdm progress bar.
        log: called with one fixed-precision line per ``log_interval`` updates;
            True prints them (through tqdm when the bar is shown), None
            prints nothing.
        log_path: also write every update and validation check to this JSON
            Lines file (see `grulm_edu.runlog`); appended to when `state` is given.
        mesh: a `jax.sharding.Mesh` with a ``"data"`` axis (see
            `grulm_edu.distributed`) to train data-parallel: the batch axis is
            split across its devices and the state is replicated.

    Returns:
        The final state and a `History` with one record per applied update or
        skipped micro-batch. On KeyboardInterrupt the state after the last
        completed micro-batch and the history so far are returned, with
        ``history.interrupted`` set.

    Raises:
        NonFiniteError: ``max_consecutive_skips`` micro-batches in a row had a
            non-finite loss or gradient norm.
    """
    optimizer, train_step = _cached_train_step(config)
    keys = run_keys(config.seed)
    resumed = state is not None
    if state is None:
        state = init_state(params, optimizer, config)
    if mesh is None:
        tokens, mask = jnp.asarray(train.tokens), jnp.asarray(train.mask)
    else:
        from grulm_edu.distributed import replicate, shard_batches

        tokens, mask = shard_batches(train.tokens, train.mask, mesh)
        state = replicate(state, mesh)
    num_batches = len(train)
    k = config.accumulation_steps
    last_update = config.num_steps if until is None else min(until, config.num_steps)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=last_update, initial=int(state.updates), unit="step", dynamic_ncols=True)
    if log is True:
        write = bar.write if bar is not None else print
    else:
        write = log
    writer = RunLogWriter(log_path, append=resumed) if log_path is not None else None

    orders: dict[int, np.ndarray] = {}

    def index_of(micro_step: int) -> int:
        epoch, position = divmod(micro_step, num_batches)
        if epoch not in orders:
            orders.clear()
            orders[epoch] = epoch_order(jax.random.fold_in(keys["data"], epoch), num_batches)
        return int(orders[epoch][position])

    step_records: list[dict] = []
    evals: list[tuple[int, float]] = []
    compile_seconds = 0.0
    consecutive_skips = 0
    interrupted = False
    fit_start = time.perf_counter()
    interval_start = fit_start
    interval_tokens = 0
    update_total, update_count, update_tokens, update_start = 0.0, 0.0, 0, time.perf_counter()
    loss_weight = None
    try:
        while int(state.updates) < last_update:
            micro_step = int(state.step)

            # At the start of an update, weight its k micro-batches by their tokens.
            if k > 1 and int(state.opt_state.mini_step) == 0:
                counts = [float(train.mask[index_of(micro_step + j)].sum()) for j in range(k)]
                loss_weight = jnp.float32(micro_batch_loss_weight(counts))
            index = index_of(micro_step)
            step_key = jax.random.fold_in(keys["dropout"], micro_step)

            # Take the step; the first call also compiles.
            start = time.perf_counter()
            state, metrics = train_step(state, tokens[index], mask[index], step_key, loss_weight)
            metrics = jax.device_get(metrics)  # the host waits for the device here
            first_call = not step_records and compile_seconds == 0.0
            if first_call:
                compile_seconds = time.perf_counter() - start
                interval_start = update_start = time.perf_counter()
            skipped = bool(metrics["skipped"])
            if not skipped:
                update_total += float(metrics["total"])
                update_count += float(metrics["count"])
                if not first_call:  # the compile call's tokens would inflate the rate
                    update_tokens += int(metrics["count"])

            # One record per applied update or skipped micro-batch.
            if bool(metrics["applied"]) or skipped:
                now = time.perf_counter()
                record = {
                    "step": int(state.updates) + int(state.skipped),
                    "loss": float(metrics["loss"]) if skipped else update_total / max(update_count, 1.0),
                    "grad_norm": float(metrics["grad_norm"]),
                    "lr": float(metrics["lr"]),
                    "skipped": skipped,
                    "tokens_per_s": update_tokens / max(now - update_start, 1e-9),
                    "wall_time": now - fit_start,
                }
                step_records.append(record)
                if writer is not None:
                    writer.write("train", **record)
                if not skipped:
                    interval_tokens += update_tokens
                    update_total, update_count, update_tokens, update_start = 0.0, 0.0, 0, now
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)

            # Skip non-finite updates; stop when they keep coming.
            consecutive_skips = consecutive_skips + 1 if skipped else 0
            if skipped and write:
                write(f"step {record['step']}: non-finite loss or gradient, update skipped")
            if consecutive_skips >= config.max_consecutive_skips:
                history = History.from_records(step_records, evals, compile_seconds=compile_seconds)
                raise NonFiniteError(
                    f"training stopped at step {record['step']}: {consecutive_skips} consecutive steps had a "
                    f"non-finite loss or gradient; lower --lr or --clip-norm, or check the data",
                    state,
                    history,
                )

            # Evaluate and log once per interval of updates, and after the last one.
            updates = int(state.updates)
            if bool(metrics["applied"]) and (updates % config.log_interval == 0 or updates == last_update):
                rate = interval_tokens / max(time.perf_counter() - interval_start, 1e-9)
                val_loss = None
                if val is not None:
                    val_loss = evaluate(state.params, val, config.eval_batches)["loss"]
                    evals.append((updates, val_loss))
                    if writer is not None:
                        writer.write("eval", step=updates, val_loss=val_loss, wall_time=time.perf_counter() - fit_start)
                recent = [r for r in step_records[-config.log_interval :] if not r["skipped"]]
                if write:
                    write(
                        _format_line(
                            updates,
                            config.num_steps,
                            float(np.mean([r["loss"] for r in recent])),
                            val_loss,
                            float(np.mean([r["grad_norm"] for r in recent])),
                            record["lr"],
                            rate,
                        )
                    )
                interval_start = update_start = time.perf_counter()
                interval_tokens = 0
    except KeyboardInterrupt:
        interrupted = True
        if write:
            write(f"interrupted after update {int(state.updates)}; returning the last completed step's state")
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    history = History.from_records(
        step_records, evals, compile_seconds=compile_seconds, interrupted=interrupted
    )
    return state, history
