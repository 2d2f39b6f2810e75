"""Benchmark grulm_edu's byte-level BPE on the Shakespeare corpus.

Measures BPE training time (merges learned from the start of the corpus), and
encode throughput in MB/s of the naive encoder against the cached one on the
same slice, then of the cached one on the whole corpus. Each timing is repeated
and printed as median, min and max. Hugging Face `tokenizers` and `tiktoken`
are timed as peers only when installed; they are not dependencies of grulm_edu.

Usage: python bench/bench_tokenizer.py [--repeats 3] [--merges 512] [--train-chars 1000000]
                                       [--slice-chars 20000] [--clock wall|cpu]

``--clock cpu`` times with `time.process_time`. Every timed call here is
single-threaded Python, so CPU time matches wall time on an idle machine and
leaves out other jobs' time on a shared one. Peers may use several threads, so
compare them with the default wall clock.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable

from grulm_edu.bpe import BPETokenizer
from grulm_edu.corpus import load_plays


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def measure(fn: Callable[[], object], repeats: int, before: Callable[[], None] | None = None) -> list[float]:
    """Time `repeats` calls of `fn`; `before` runs ahead of each call, outside the timed region."""
    seconds = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = clock()
        fn()
        seconds.append(clock() - start)
    return seconds


def report(label: str, seconds: list[float], megabytes: float | None = None) -> float:
    """Print one line of median/min/max seconds (and MB/s at the median); return the median."""
    median = statistics.median(seconds)
    line = f"{label:<44} median {median:8.4f} s  (min {min(seconds):.4f}, max {max(seconds):.4f})"
    if megabytes is not None:
        line += f"  {megabytes / median:8.3f} MB/s"
    print(line, flush=True)
    return median


def bench_peers(train_text: str, encode_text: str, tokenizer: BPETokenizer, repeats: int) -> None:
    """Time the peers that are installed; print a note for each one that is not."""
    megabytes = len(encode_text.encode("utf-8")) / 1e6

    try:
        import tokenizers
    except ImportError:
        print("peer skipped: Hugging Face `tokenizers` is not installed (pip install tokenizers to compare)")
    else:
        # It trains its own byte-level BPE with the GPT-2 split, so only the speeds compare, not the ids.
        # Its trainer uses several threads, so read its line with the wall clock.
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        def train_hf():
            hf = Tokenizer(models.BPE())
            hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            trainer = trainers.BpeTrainer(
                vocab_size=tokenizer.vocab_size,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            )
            hf.train_from_iterator([train_text], trainer)
            return hf

        report(f"tokenizers {tokenizers.__version__}: train", measure(train_hf, repeats))
        hf = train_hf()
        report(f"tokenizers {tokenizers.__version__}: encode corpus", measure(lambda: hf.encode(encode_text), repeats),
               megabytes)
        # Its batch API spreads a list of strings over its thread pool: one string per line of the corpus.
        lines = encode_text.splitlines(keepends=True)
        report(f"tokenizers {tokenizers.__version__}: encode_batch, {len(lines):,} lines",
               measure(lambda: hf.encode_batch(lines), repeats), megabytes)

    try:
        import tiktoken
    except ImportError:
        print("peer skipped: `tiktoken` is not installed (pip install tiktoken to compare)")
    else:
        # tiktoken ranks token byte strings, so it needs every token's bytes to be distinct.
        ranks = {token: token_id for token_id, token in tokenizer.vocab.items()}
        if len(ranks) != len(tokenizer.vocab):
            print("peer skipped: tiktoken needs distinct token bytes, and two merges made the same bytes")
            return
        encoding = tiktoken.Encoding(
            name="grulm_edu_bench", pat_str=tokenizer.pattern, mergeable_ranks=ranks, special_tokens={}
        )
        report(f"tiktoken {tiktoken.__version__}: encode corpus (our merges)",
               measure(lambda: encoding.encode_ordinary(encode_text), repeats), megabytes)
        # tiktoken merges by the rank of the joined bytes, which can differ from replaying our pair ranks.
        same = encoding.encode_ordinary(encode_text[:100_000]) == tokenizer.encode(encode_text[:100_000]).tolist()
        print(f"tiktoken ids equal grulm_edu's on the first 100,000 characters: {same}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement")
    parser.add_argument("--merges", type=int, default=512, help="BPE merges to learn (vocabulary 256 + merges)")
    parser.add_argument("--train-chars", type=int, default=1_000_000, help="characters of the corpus to train on")
    parser.add_argument("--slice-chars", type=int, default=20_000,
                        help="characters encoded by both encoders (the naive one is slow)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: elapsed time; cpu: CPU time of this process (steadier on a shared machine)")
    args = parser.parse_args()
    for name in ("repeats", "merges", "train_chars", "slice_chars"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")

    global clock
    clock = CLOCKS[args.clock]

    corpus = "\n".join(play.text for play in load_plays())
    train_text = corpus[: args.train_chars]
    # The slice comes from past the training text, so it is text the tokenizer did not learn from.
    slice_start = min(len(corpus) - args.slice_chars, max(args.train_chars, len(corpus) // 2))
    piece = corpus[slice_start : slice_start + args.slice_chars]
    piece_mb = len(piece.encode("utf-8")) / 1e6
    corpus_mb = len(corpus.encode("utf-8")) / 1e6
    print(f"Python {platform.python_version()} on {platform.processor() or platform.machine()}; "
          f"corpus {len(corpus):,} characters ({corpus_mb:.2f} MB), {args.repeats} repeats per line, "
          f"{args.clock} clock")

    # Training.
    train_mb = len(train_text.encode("utf-8")) / 1e6
    report(f"train {args.merges} merges on {train_mb:.2f} MB",
           measure(lambda: BPETokenizer.train(train_text, 256 + args.merges), args.repeats))
    tokenizer = BPETokenizer.train(train_text, 256 + args.merges)

    # Naive against cached on the same slice.
    if tokenizer.encode_naive(piece).tolist() != tokenizer.encode(piece).tolist():
        print("error: naive and cached encoders disagree on the slice", file=sys.stderr)
        return 1
    naive = report(f"naive encode, {len(piece):,}-character slice",
                   measure(lambda: tokenizer.encode_naive(piece), args.repeats), piece_mb)
    cold = report("cached encode, same slice, empty cache",
                  measure(lambda: tokenizer.encode(piece), args.repeats, before=tokenizer.clear_cache), piece_mb)
    warm = report("cached encode, same slice, warm cache",
                  measure(lambda: tokenizer.encode(piece), args.repeats), piece_mb)
    print(f"throughput ratio cached/naive on the slice: {naive / cold:.0f}x (empty cache), {naive / warm:.0f}x (warm)")

    # Cached on the whole corpus.
    report("cached encode, whole corpus, empty cache",
           measure(lambda: tokenizer.encode(corpus), args.repeats, before=tokenizer.clear_cache), corpus_mb)
    report("cached encode, whole corpus, warm cache", measure(lambda: tokenizer.encode(corpus), args.repeats),
           corpus_mb)
    ids = tokenizer.encode(corpus)
    print(f"whole corpus: {len(ids):,} tokens, {len(corpus) / len(ids):.2f} characters per token, "
          f"{tokenizer.cache_size:,} chunks cached")

    bench_peers(train_text, corpus, tokenizer, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
