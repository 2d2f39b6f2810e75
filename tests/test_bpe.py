"""Byte-level BPE: round trips, a hand-worked example, parity between encoders and trainers, save/load."""

import functools
import json
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grulm_edu.bpe import (
    FORMAT_VERSION,
    BPETokenizer,
    count_pairs,
    merge_pair,
    merge_pair_with_deltas,
    split_chunks,
    train_merges,
)
from grulm_edu.corpus import load_plays

AWKWARD_TEXTS = [
    "",
    "a",
    "hello world",
    "emoji 😀🎉👍🏽 and a flag 🇬🇧",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math letters and 𠜎 outside the BMP",
    "combining: e\u0301 a\u0308\u0323 and precomposed é ä",
    "CJK 中文字符 日本語のテキスト 한국어",
    "runs   of    spaces\t\ttabs \t mixed\n\n\n",
    "Windows line ends\r\nsecond line\r\n\r\n",
    "   leading and trailing   ",
    "numbers 1234567 3.14159 ½ ² and __under_scores__",
    "contractions: don't, I'll, we've, you're, HE'S",
    "\x00\x01 control \x7f bytes",
    "\ufeffBOM and U+FFFD \ufffd",
]

SMALL_TEXT = (
    "low lower lowest newer newest wider widest. "
    "The low road and the lower road; newest news!\n"
    "emoji 😀😀 and café café, 中文中文\r\n" * 3
)


@functools.cache
def small_tokenizer() -> BPETokenizer:
    return BPETokenizer.train(SMALL_TEXT, 256 + 40)


@functools.cache
def shakespeare_text() -> str:
    return "\n".join(play.text for play in load_plays()[:2])


@functools.cache
def shakespeare_tokenizer() -> BPETokenizer:
    return BPETokenizer.train(shakespeare_text()[:100_000], 256 + 300)


def slow_reference_merges(text: str, num_merges: int) -> list[tuple[int, int]]:
    """Recount every pair of every chunk before each merge; ties go to the smallest pair."""
    chunks = [list(chunk.encode("utf-8")) for chunk in split_chunks(text)]
    merges = []
    for k in range(num_merges):
        counts = Counter()
        for ids in chunks:
            counts.update(zip(ids, ids[1:]))
        top = max(counts.values())
        pair = min(p for p, c in counts.items() if c == top)
        merges.append(pair)
        new_chunks = []
        for ids in chunks:
            out, i = [], 0
            while i < len(ids):
                if tuple(ids[i : i + 2]) == pair:
                    out.append(256 + k)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            new_chunks.append(out)
        chunks = new_chunks
    return merges


# Round trips.


@pytest.mark.parametrize("text", AWKWARD_TEXTS)
def test_round_trip_awkward_text(text):
    tokenizer = shakespeare_tokenizer()
    ids = tokenizer.encode(text)
    assert ids.dtype == np.int32
    assert ids.ndim == 1
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode_bytes(ids) == text.encode("utf-8")


@pytest.mark.parametrize("text", AWKWARD_TEXTS)
def test_split_chunks_cover_text(text):
    assert "".join(split_chunks(text)) == text


def test_split_chunks_examples():
    assert split_chunks("Hello, world! It's 2024.") == ["Hello", ",", " world", "!", " It", "'s", " ", "202", "4", "."]
    assert split_chunks("a  b\r\n") == ["a", " ", " b", "\r\n"]
    assert split_chunks("x\t\ty") == ["x", "\t", "\ty"]


def test_empty_text_encodes_to_no_ids():
    tokenizer = small_tokenizer()
    assert tokenizer.encode("").shape == (0,)
    assert tokenizer.encode_naive("").shape == (0,)
    assert tokenizer.decode([]) == ""


def test_decoding_every_prefix_never_raises():
    tokenizer = shakespeare_tokenizer()
    text = "".join(AWKWARD_TEXTS)
    ids = tokenizer.encode(text)
    full = tokenizer.decode_bytes(ids)
    for end in range(len(ids) + 1):
        prefix_bytes = tokenizer.decode_bytes(ids[:end])
        assert full.startswith(prefix_bytes)
        assert tokenizer.decode(ids[:end]) == prefix_bytes.decode("utf-8", errors="replace")


def test_partial_emoji_decodes_to_replacement():
    tokenizer = BPETokenizer()  # no merges: one id per byte
    ids = tokenizer.encode("😀")
    assert ids.tolist() == [0xF0, 0x9F, 0x98, 0x80]
    assert tokenizer.decode(ids[:2]) == "\ufffd"
    assert tokenizer.decode(ids) == "😀"


# A hand-worked example.


def test_train_hand_worked_example():
    """Three merges on "aaabdaaabac" (a=97, b=98, c=99, d=100); the text is one chunk.

    Merge 1: pair counts are (a,a)=4, (a,b)=2 and 1 for (b,d), (d,a), (b,a), (a,c).
        (97, 97) -> 256, leaving [256, a, b, d, 256, a, b, a, c].
    Merge 2: (256, a)=2 and (a, b)=2 tie; the smaller pair (97, 98) wins.
        (97, 98) -> 257, leaving [256, 257, d, 256, 257, a, c].
    Merge 3: (256, 257)=2 is the only pair seen twice.
        (256, 257) -> 258, leaving [258, d, 258, a, c] = [258, 100, 258, 97, 99].
    """
    tokenizer = BPETokenizer.train("aaabdaaabac", 256 + 3)
    assert tokenizer.merges == ((97, 97), (97, 98), (256, 257))
    assert tokenizer.vocab_size == 259
    assert tokenizer.vocab[258] == b"aaab"
    assert tokenizer.encode("aaabdaaabac").tolist() == [258, 100, 258, 97, 99]
    assert tokenizer.encode_naive("aaabdaaabac").tolist() == [258, 100, 258, 97, 99]
    assert tokenizer.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


def test_count_pairs_and_merge_pair():
    assert count_pairs([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert count_pairs([5]) == {}
    assert merge_pair([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert merge_pair([7, 7, 7], (7, 7), 9) == [9, 7]
    assert merge_pair([7, 7, 7, 7], (7, 7), 9) == [9, 9]


@settings(max_examples=300, deadline=None)
@given(ids=st.lists(st.integers(0, 2), max_size=12), pair=st.tuples(st.integers(0, 2), st.integers(0, 2)))
def test_merge_deltas_match_recount(ids, pair):
    merged, deltas = merge_pair_with_deltas(ids, pair, 9)
    assert merged == merge_pair(ids, pair, 9)
    expected = Counter(zip(merged, merged[1:]))
    expected.subtract(Counter(zip(ids, ids[1:])))
    assert deltas == {p: d for p, d in expected.items() if d != 0}


# Parity: incremental vs slow training, cached vs naive encoding.


def test_incremental_training_matches_slow_reference():
    text = shakespeare_text()[:6000]
    assert BPETokenizer.train(text, 256 + 60).merges == tuple(slow_reference_merges(text, 60))


def test_incremental_training_awkward_text():
    text = "".join(AWKWARD_TEXTS) * 2
    assert BPETokenizer.train(text, 256 + 40).merges == tuple(slow_reference_merges(text, 40))


def test_train_merges_weights_chunk_counts():
    # "ab" three times outweighs "cd" twice, however the chunks are ordered.
    assert train_merges({b"cd": 2, b"ab": 3}, 1) == [(97, 98)]
    assert train_merges({b"ab": 2, b"cd": 2}, 1) == [(97, 98)]


def test_cached_equals_naive_on_shakespeare():
    tokenizer = shakespeare_tokenizer()
    text = shakespeare_text()[150_000:156_000]  # text the tokenizer was not trained on
    cached = tokenizer.encode(text)
    assert cached.tolist() == tokenizer.encode_naive(text).tolist()
    assert len(cached) < 0.6 * len(text)  # 300 merges leave about one id per two characters
    assert tokenizer.encode(text).tolist() == cached.tolist()  # second call reads the cache
    assert tokenizer.cache_size > 0


def test_cached_equals_tiktoken_with_same_merges():
    # tiktoken is not a dependency; when it is installed, it encodes with our merges and split pattern.
    tiktoken = pytest.importorskip("tiktoken")
    tokenizer = shakespeare_tokenizer()
    ranks = {token: token_id for token_id, token in tokenizer.vocab.items()}
    assert len(ranks) == tokenizer.vocab_size  # tiktoken needs distinct token bytes
    encoding = tiktoken.Encoding(name="test", pat_str=tokenizer.pattern, mergeable_ranks=ranks, special_tokens={})
    text = shakespeare_text()[150_000:156_000] + "".join(AWKWARD_TEXTS)
    assert encoding.encode_ordinary(text) == tokenizer.encode(text).tolist()


def test_merges_never_cross_chunk_boundaries():
    # The merge (b, space) exists, but "b a" splits into the chunks "b" and " a".
    tokenizer = BPETokenizer([(98, 32)])
    assert split_chunks("b a") == ["b", " a"]
    assert tokenizer.encode("b a").tolist() == [98, 32, 97]
    assert tokenizer.encode_naive("b a").tolist() == [98, 32, 97]
    assert merge_pair(list(b"b a"), (98, 32), 256) == [256, 97]  # what ignoring chunks would give


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_round_trip_arbitrary_unicode(text):
    tokenizer = small_tokenizer()
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert ids.tolist() == tokenizer.encode_naive(text).tolist()


# Saving and loading.


def test_save_load_round_trip(tmp_path):
    tokenizer = small_tokenizer()
    path = tmp_path / "bpe.json"
    tokenizer.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded == tokenizer
    assert loaded.vocab == tokenizer.vocab
    assert loaded.encode(SMALL_TEXT).tolist() == tokenizer.encode(SMALL_TEXT).tolist()
    assert [p.name for p in tmp_path.iterdir()] == ["bpe.json"]  # no temporary file left behind
    record = json.loads(path.read_text())
    assert record["version"] == FORMAT_VERSION
    assert record["merges"][0] == list(tokenizer.merges[0])


def test_to_dict_from_dict_round_trip():
    tokenizer = small_tokenizer()
    assert BPETokenizer.from_dict(tokenizer.to_dict()) == tokenizer
    assert BPETokenizer.from_dict(json.loads(json.dumps(tokenizer.to_dict()))) == tokenizer


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r.update(kind="char"), "not a BPE tokenizer record"),
        (lambda r: r.update(version=99), "format version 99"),
        (lambda r: r.pop("merges"), "missing"),
        (lambda r: r.update(merges=[[97, 300]]), "uses id 300"),
        (lambda r: r.update(merges=[[97, 98], [97, 98]]), "repeats the pair"),
        (lambda r: r.update(merges=[[97]]), "pair of two ids"),
        (lambda r: r.update(merges=[["a", "b"]]), "integer ids"),
        (lambda r: r.update(pattern="(unclosed"), "not a valid regular expression"),
    ],
)
def test_load_rejects_corrupted_file(tmp_path, edit, message):
    record = small_tokenizer().to_dict()
    edit(record)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=message):
        BPETokenizer.load(path)


def test_load_rejects_invalid_json(tmp_path):
    path = tmp_path / "truncated.json"
    small_tokenizer().save(path)
    path.write_text(path.read_text()[:40])
    with pytest.raises(ValueError, match="invalid JSON"):
        BPETokenizer.load(path)


# Input validation.


def test_train_rejects_small_vocab_size():
    with pytest.raises(ValueError, match="at least 256.*got 255"):
        BPETokenizer.train("some text", 255)


def test_train_rejects_non_str_text():
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        BPETokenizer.train(b"some text", 260)


def test_train_rejects_vocab_size_beyond_text():
    with pytest.raises(ValueError, match="ran out of pairs to merge after 2 merges.*vocab_size <= 258"):
        BPETokenizer.train("abc", 260)


def test_encode_rejects_non_str():
    tokenizer = small_tokenizer()
    with pytest.raises(TypeError, match="got list"):
        tokenizer.encode(["a"])
    with pytest.raises(TypeError, match="got bytes"):
        tokenizer.encode_naive(b"a")


def test_encode_rejects_lone_surrogate():
    with pytest.raises(ValueError, match="lone surrogate .* at index 3"):
        small_tokenizer().encode("abc\udc80")


def test_decode_rejects_out_of_range_ids():
    tokenizer = small_tokenizer()
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 296\)"):
        tokenizer.decode([1, 296])
    with pytest.raises(TypeError, match="integers"):
        tokenizer.decode([1.5])
    with pytest.raises(ValueError, match="1-D"):
        tokenizer.decode([[1, 2]])


def test_vocab_size_counts_merges():
    assert BPETokenizer().vocab_size == 256
    assert small_tokenizer().vocab_size == 296
    assert len(small_tokenizer().vocab) == 296


def test_prefix_of_merges_is_valid_tokenizer():
    tokenizer = shakespeare_tokenizer()
    shorter = BPETokenizer(tokenizer.merges[:50])
    text = shakespeare_text()[:2000]
    assert shorter.decode(shorter.encode(text)) == text
    assert len(shorter.encode(text)) > len(tokenizer.encode(text))


def test_random_chunk_order_gives_same_merges():
    chunks = Counter(chunk.encode() for chunk in split_chunks(SMALL_TEXT))
    items = list(chunks.items())
    random.Random(0).shuffle(items)
    assert train_merges(dict(items), 30) == train_merges(chunks, 30)
