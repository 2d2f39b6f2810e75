"""Checkers for notebook 14: BPE merges, token counts and bits per character."""

from __future__ import annotations

import math
from collections.abc import Mapping

from grulm_edu.bpe import BPETokenizer, split_chunks
from grulm_edu.exercises import Feedback, check_number, correct, incorrect, not_answered

__all__ = ["check_next_merge", "check_token_count", "check_bits_per_character"]


def _show(pair) -> str:
    text = bytes(pair).decode("utf-8", errors="replace") if all(0 <= i < 256 for i in pair) else "?"
    return f"{tuple(pair)} ({text!r})"


def check_next_merge(answer, pair_counts: Mapping[tuple[int, int], int]) -> Feedback:
    """Check `answer` against the pair that BPE training merges next: the most frequent, ties to the smallest.

    `answer` is a pair of byte ids such as ``(108, 111)``, or a two-byte string such as ``"lo"``.
    """
    if answer is None:
        return not_answered()
    if isinstance(answer, str):
        answer = tuple(answer.encode("utf-8"))
    if isinstance(answer, int):
        return incorrect(f"{answer} looks like an id; give the pair that gets merged, as (left id, right id)")
    try:
        pair = tuple(int(i) for i in answer)
    except (TypeError, ValueError):
        return incorrect(f"give the pair as a tuple of two ids, got {answer!r}")
    if len(pair) != 2:
        return incorrect(f"a pair has two ids, got {len(pair)}: {answer!r}")

    top = max(pair_counts.values())
    expected = min(p for p, c in pair_counts.items() if c == top)
    if pair == expected:
        return correct(f"{_show(pair)} occurs {top} times, more than any other pair, so it becomes id 256")
    if pair not in pair_counts:
        return incorrect(f"{_show(pair)} is not in the table; pick one of its pairs")
    if pair_counts[pair] == top:
        return incorrect(
            f"{_show(pair)} ties with {_show(expected)} at {top} occurrences; ties go to the smaller pair "
            f"(compare the left ids first, then the right ids)"
        )
    if pair_counts[pair] == min(pair_counts.values()):
        rarest = pair_counts[pair]
        return incorrect(f"{_show(pair)} is one of the rarest pairs ({rarest}); BPE merges the most frequent pair")
    return incorrect(f"{_show(pair)} occurs {pair_counts[pair]} times, but some pair occurs {top} times")


def check_token_count(answer, text: str, tokenizer: BPETokenizer) -> Feedback:
    """Check `answer` against the number of ids that `tokenizer` encodes `text` to."""
    expected = len(tokenizer.encode(text))
    problem = check_number(answer, expected, rel_tol=0, what="your count")
    if problem is None:
        return correct(f"{text!r} becomes {expected} tokens: {tokenizer.encode(text).tolist()}")
    if answer is None or not isinstance(answer, (int, float)):
        return problem
    whole_text = BPETokenizer(tokenizer.merges, pattern=r"[\s\S]+")  # one chunk: merges may cross boundaries
    # The first matching count names the mistake.
    mistakes = [
        (len(whole_text.encode(text)), "merges never cross chunk boundaries; split the text into chunks first"),
        (len(text), "that is the number of characters; merges join several of them into one token"),
        (len(text.encode("utf-8")), "that is the number of UTF-8 bytes, the count before any merge"),
        (len(split_chunks(text, tokenizer.pattern)),
         "that is the number of chunks from the regex split; a chunk can still be several tokens"),
    ]
    for count, message in mistakes:
        if count != expected and answer == count:
            return incorrect(message)
    return problem


def check_bits_per_character(answer, total_nats: float, num_chars: int, num_tokens: int) -> Feedback:
    """Check `answer` against the bits per character of `total_nats` over `num_chars` characters.

    `num_tokens` is the number of tokens the text became, so that the checker can name per-token mistakes.
    """
    expected = total_nats / (num_chars * math.log(2))
    problem = check_number(answer, expected, what="your bits per character")
    if problem is None:
        return correct(f"{total_nats:g} / ({num_chars} x ln 2) = {expected:.4f} bits per character")
    if answer is None or not isinstance(answer, (int, float)):
        return problem
    mistakes = {
        total_nats / (num_tokens * math.log(2)): "that is bits per token; divide by the number of characters",
        total_nats / num_chars: "that is nats per character; divide by ln 2 to get bits",
        total_nats / num_tokens: "that is the mean loss per token in nats; divide the total by characters and by ln 2",
        total_nats * math.log(2) / num_chars: "you multiplied by ln 2; a nat is 1 / ln 2 = 1.4427 bits, so divide",
        math.exp(total_nats / num_tokens): "that is the per-token perplexity, which depends on the tokenizer",
    }
    for value, message in mistakes.items():
        if math.isclose(answer, value, rel_tol=1e-3):
            return incorrect(message)
    return problem
