"""Notebook 14: the token view widget's callback and the exercise checkers."""

import functools
import math

import pytest

from grulm_edu.bpe import BPETokenizer, count_pairs, split_chunks
from grulm_edu.exercises.tokenizers import check_bits_per_character, check_next_merge, check_token_count
from grulm_edu.widgets.tokenizers import SAMPLE_TEXT, bpe_token_view, token_pieces

TINY = "the cat sat on the mat; the rat sat at the hat"


@functools.cache
def tiny_bpe() -> BPETokenizer:
    return BPETokenizer.train(TINY, 256 + 6)


@functools.cache
def sample_bpe() -> BPETokenizer:
    return BPETokenizer.train(SAMPLE_TEXT * 4 + TINY * 4, 256 + 60)


def pair_counts_of(text):
    counts = {}
    for chunk in split_chunks(text):
        count_pairs(list(chunk.encode("utf-8")), counts)
    return counts


# The widget's callback.


@pytest.mark.parametrize("num_merges", [0, 1, 30, 60])
def test_token_view_counts_tokens(num_merges):
    tokenizer = sample_bpe()
    figure, summary = bpe_token_view(SAMPLE_TEXT, num_merges, tokenizer)
    expected = len(BPETokenizer(tokenizer.merges[:num_merges]).encode(SAMPLE_TEXT))
    assert f"-> {expected} tokens with {num_merges} merges" in summary
    assert f"({len(SAMPLE_TEXT) / expected:.2f} characters per token)" in summary
    assert len(figure.axes[0].patches) == expected  # one box per token
    assert len(figure.axes[0].texts) == expected


def test_token_view_without_merges_shows_bytes():
    _, summary = bpe_token_view("café", 0, sample_bpe())
    assert summary.startswith("4 characters, 5 bytes -> 5 tokens with 0 merges")


def test_token_view_more_merges_never_more_tokens():
    tokenizer = sample_bpe()
    counts = [len(BPETokenizer(tokenizer.merges[:k]).encode(SAMPLE_TEXT)) for k in range(0, 61, 10)]
    assert counts == sorted(counts, reverse=True)
    assert counts[0] == len(SAMPLE_TEXT.encode("utf-8"))


def test_token_view_empty_text():
    figure, summary = bpe_token_view("", 10, sample_bpe())
    assert "0 tokens" in summary
    assert len(figure.axes[0].patches) == 0


def test_token_view_truncates_long_text():
    _, summary = bpe_token_view(SAMPLE_TEXT * 20, 60, sample_bpe())
    assert "the figure shows the first" in summary


def test_token_view_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_merges must be an int from 0 to 60, got 61"):
        bpe_token_view("x", 61, sample_bpe())
    with pytest.raises(TypeError, match="text must be a str"):
        bpe_token_view(None, 1, sample_bpe())


def test_token_pieces_make_whitespace_visible():
    tokenizer = BPETokenizer()
    assert token_pieces(tokenizer, tokenizer.encode("a b\n\t")) == ["a", "␣", "b", "↵", "⇥"]
    # 'é' is two bytes, and each byte alone is a partial character.
    assert token_pieces(tokenizer, tokenizer.encode("é")) == ["\ufffd", "\ufffd"]


# Exercise 1: the next merge.


def test_check_next_merge():
    counts = pair_counts_of("low lower lowest slow slower slowest")
    assert counts[(108, 111)] == counts[(111, 119)] == 6  # 'lo' and 'ow' tie
    assert check_next_merge((108, 111), counts).passed
    assert check_next_merge("lo", counts).passed
    assert not check_next_merge(None, counts)
    assert "ties go to the smaller pair" in check_next_merge((111, 119), counts).message
    assert "not in the table" in check_next_merge((1, 2), counts).message
    assert "but some pair occurs 6 times" in check_next_merge((119, 101), counts).message
    assert "looks like an id" in check_next_merge(256, counts).message
    assert "two ids" in check_next_merge((1, 2, 3), counts).message


def test_check_next_merge_rarest_pair():
    counts = pair_counts_of(TINY)
    rare = min(counts, key=counts.get)
    assert "rarest" in check_next_merge(rare, counts).message
    assert check_next_merge((97, 116), counts).passed


# Exercise 2: the token count.


def test_check_token_count():
    text = "the hat sat on that cat"
    expected = len(tiny_bpe().encode(text))
    assert expected == 15  # 'the' | ' ' 'h' 'at' | ' sat' | ' ' 'o' 'n' | ' ' 't' 'h' 'at' | ' ' 'c' 'at'
    assert check_token_count(15, text, tiny_bpe()).passed
    assert not check_token_count(None, text, tiny_bpe())
    assert "number of characters" in check_token_count(23, text, tiny_bpe()).message
    e_acute = BPETokenizer([(195, 169)])  # merges the two bytes of 'é', so 'café' is 4 tokens
    assert "UTF-8 bytes" in check_token_count(5, "café", e_acute).message
    assert "chunks" in check_token_count(6, text, tiny_bpe()).message
    assert "too low" in check_token_count(10, text, tiny_bpe()).message


def test_check_token_count_characters_and_chunk_boundaries():
    bytes_only = BPETokenizer()  # no merges: 'café' is 5 byte tokens
    assert check_token_count(5, "café", bytes_only).passed
    assert "number of characters" in check_token_count(4, "café", bytes_only).message
    crossing = BPETokenizer([(98, 32)])  # 'b' + space, which never share a chunk
    assert check_token_count(3, "b a", crossing).passed
    assert "never cross chunk boundaries" in check_token_count(2, "b a", crossing).message


# Exercise 3: bits per character.


def test_check_bits_per_character():
    args = dict(total_nats=70_000, num_chars=50_000, num_tokens=21_000)
    assert check_bits_per_character(70_000 / (50_000 * math.log(2)), **args).passed
    assert not check_bits_per_character(None, **args)
    assert "bits per token" in check_bits_per_character(70_000 / (21_000 * math.log(2)), **args).message
    assert "nats per character" in check_bits_per_character(1.4, **args).message
    assert "mean loss per token" in check_bits_per_character(70_000 / 21_000, **args).message
    assert "multiplied by ln 2" in check_bits_per_character(1.4 * math.log(2), **args).message
    assert "perplexity" in check_bits_per_character(math.exp(70_000 / 21_000), **args).message
    assert "number" in check_bits_per_character("two", **args).message
