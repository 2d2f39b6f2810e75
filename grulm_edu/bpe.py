"""Byte-level byte-pair encoding (BPE): training, a naive and a cached encoder, save/load.

Follows GPT-2's byte-level BPE as taught by Karpathy's minbpe: ids 0-255 are the
UTF-8 bytes and merge ``k`` creates id ``256 + k``. A regex splits text into
chunks first, and merges never cross a chunk boundary. The regex is GPT-4's split
pattern rewritten for the standard `re` module, because the `regex` package (which
has ``\\p{L}``) is not a dependency. Training ties go to the smallest pair.
Left out: special tokens, GPT-2's byte-to-printable remapping and other libraries'
model files.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import pathlib
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from grulm_edu.chars import check_ids

__all__ = [
    "SPLIT_PATTERN",
    "FORMAT_VERSION",
    "BPETokenizer",
    "split_chunks",
    "count_pairs",
    "merge_pair",
    "merge_pair_with_deltas",
    "train_merges",
]

# GPT-4's split pattern (cl100k_base) rewritten for the standard `re` module,
# which has no \p{L} or \p{N} (the third-party `regex` package is not a
# dependency). Letters are written [^\W\d_]: word characters minus decimal
# digits and the underscore. That class also takes in the few numeric
# characters that are not decimal digits, such as '²' and '½'. Every character
# is a letter, a digit (\d), whitespace (\s) or "other", so the alternatives
# below cover any text and joining the chunks gives the text back.
SPLIT_PATTERN = "|".join(
    [
        r"'(?i:[sdmt]|ll|ve|re)",  # English contractions: 's 'd 'm 't 'll 've 're
        r"(?:[^\r\n\w]|_)?+[^\W\d_]+",  # a word, with one leading space or symbol
        r"\d{1,3}",  # numbers in groups of up to three digits
        r" ?(?:[^\s\w]|_)++[\r\n]*",  # a run of punctuation and symbols
        r"\s*[\r\n]",  # whitespace that ends in a line break
        r"\s+(?!\S)",  # whitespace, leaving the last space for the next word
        r"\s+",  # any other whitespace
    ]
)

# Version of the JSON layout written by `BPETokenizer.save` and `to_dict`.
FORMAT_VERSION = 1

# The cached encoder stops adding chunks once its cache contains this many, so
# memory stays bounded. The whole Shakespeare corpus has about 36 thousand distinct chunks.
MAX_CACHE_ENTRIES = 200_000


def split_chunks(text: str, pattern: str | re.Pattern = SPLIT_PATTERN) -> list[str]:
    """Split `text` into the chunks that BPE merges within; ``"".join`` of them is `text`."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}; decode bytes with .decode('utf-8') first")
    return re.findall(pattern, text)


def count_pairs(ids: Sequence[int], counts: dict | None = None, weight: int = 1) -> dict:
    """Count adjacent pairs in `ids`, adding `weight` per occurrence to `counts` (a new dict when None)."""
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids`, scanning left to right, with `new_id`.

    Overlapping occurrences go to the leftmost: ``[a, a, a]`` with pair
    ``(a, a)`` becomes ``[new_id, a]``.
    """
    merged = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def merge_pair_with_deltas(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> tuple[list[int], dict]:
    """Merge like `merge_pair`, and also return how each adjacent-pair count changed.

    Only pairs next to a merged occurrence change: for ``x a b y`` becoming
    ``x N y``, the pairs ``(x, a)``, ``(a, b)`` and ``(b, y)`` lose one and
    ``(x, N)`` and ``(N, y)`` gain one. Returns ``(merged ids, {pair: delta})``;
    pairs whose count did not change are absent.
    """
    a, b = pair
    n = len(ids)
    merged: list[int] = []
    deltas: dict = defaultdict(int)
    i = 0
    while i < n:
        if not (i + 1 < n and ids[i] == a and ids[i + 1] == b):
            merged.append(ids[i])
            i += 1
            continue
        deltas[pair] -= 1

        # Left neighbour. When the previous occurrence ended just before this
        # one, merged[-1] is already new_id and ids[i - 1] is b, so this
        # removes the old (b, a) once and adds (new_id, new_id).
        if merged:
            deltas[(ids[i - 1], a)] -= 1
            deltas[(merged[-1], new_id)] += 1

        # Right neighbour. subtle: when the next occurrence starts right here,
        # its own left-neighbour step above handles the shared pair, so doing
        # it here too would count it twice.
        next_is_merged = i + 3 < n and ids[i + 2] == a and ids[i + 3] == b
        if i + 2 < n and not next_is_merged:
            deltas[(b, ids[i + 2])] -= 1
            deltas[(new_id, ids[i + 2])] += 1

        merged.append(new_id)
        i += 2
    return merged, {p: d for p, d in deltas.items() if d != 0}


def train_merges(chunk_counts: Mapping[bytes, int], num_merges: int) -> list[tuple[int, int]]:
    """Learn `num_merges` merges from distinct chunks and how often each occurs.

    Each step merges the most frequent adjacent pair (ties: the smallest pair).
    Pair counts are kept between steps and, per merge, only the chunks that
    contain the merged pair are visited. A heap of ``(-count, pair)`` finds the
    next pair; entries whose count has since changed are skipped when popped.

    Args:
        chunk_counts: UTF-8 bytes of each distinct chunk -> its number of occurrences.
        num_merges: merges to learn; merge ``k`` creates id ``256 + k``.

    Returns:
        The merged pairs in order.

    Raises:
        ValueError: the text runs out of pairs before `num_merges` merges.
    """
    # Start from bytes: one id list per distinct chunk, weighted by its count.
    chunks = [list(chunk) for chunk in chunk_counts]
    weights = list(chunk_counts.values())
    pair_counts: dict = {}
    where: dict = defaultdict(set)  # pair -> indices of the chunks that may contain it
    for index, (ids, weight) in enumerate(zip(chunks, weights)):
        count_pairs(ids, pair_counts, weight)
        for pair in zip(ids, ids[1:]):
            where[pair].add(index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    for k in range(num_merges):
        # Pop stale heap entries until the top entry has a pair's current count.
        while heap and pair_counts.get(heap[0][1], 0) != -heap[0][0]:
            heapq.heappop(heap)
        if not heap:
            raise ValueError(
                f"the training text ran out of pairs to merge after {k} merges, so vocab_size "
                f"{256 + num_merges} cannot be reached; use vocab_size <= {256 + k} or a longer text"
            )
        _, pair = heapq.heappop(heap)
        new_id = 256 + k
        merges.append(pair)

        # Merge in the chunks that contain the pair and apply the count changes.
        for index in where.pop(pair):
            chunks[index], deltas = merge_pair_with_deltas(chunks[index], pair, new_id)
            for changed, delta in deltas.items():
                count = pair_counts.get(changed, 0) + delta * weights[index]
                if count:
                    pair_counts[changed] = count
                    heapq.heappush(heap, (-count, changed))
                else:
                    pair_counts.pop(changed, None)
                if delta > 0:
                    where[changed].add(index)
        assert pair not in pair_counts, "every occurrence of the merged pair must be gone"
    return merges


def _bpe_chunk(ids: list[int], ranks: Mapping[tuple[int, int], int]) -> list[int]:
    """Apply merges to one chunk's ids, lowest rank first, until no known pair is left."""
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, math.inf))
        rank = ranks.get(pair)
        if rank is None:
            break
        ids = merge_pair(ids, pair, 256 + rank)
    return ids


class BPETokenizer:
    """A byte-level BPE tokenizer: a regex split pattern and an ordered list of merges.

    Attributes:
        merges: the merged pairs in order; merge ``k`` made id ``256 + k``.
        pattern: the regex that splits text into chunks.
        vocab: id -> the bytes it stands for; ``len(vocab) == vocab_size``.
    """

    def __init__(self, merges: Iterable[Sequence[int]] = (), pattern: str = SPLIT_PATTERN):
        self.merges: tuple[tuple[int, int], ...] = _validate_merges(merges)
        self.pattern: str = _validate_pattern(pattern)
        self._regex = re.compile(self.pattern)
        self._ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}
        for rank, (left, right) in enumerate(self.merges):
            self.vocab[256 + rank] = self.vocab[left] + self.vocab[right]
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(cls, text: str, vocab_size: int, pattern: str = SPLIT_PATTERN) -> BPETokenizer:
        """Learn ``vocab_size - 256`` merges from `text` (see `train_merges`)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}; decode bytes with .decode('utf-8') first")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TypeError(f"vocab_size must be an int, got {vocab_size!r}")
        if vocab_size < 256:
            raise ValueError(
                f"vocab_size must be at least 256 (one id per byte), got {vocab_size}; "
                f"pass 256 + the number of merges you want"
            )
        pattern = _validate_pattern(pattern)

        # Distinct chunks with their counts: repeated words are merged once, weighted.
        try:
            chunk_counts = Counter(chunk.encode("utf-8") for chunk in re.findall(pattern, text))
        except UnicodeEncodeError:
            _utf8_ids(text, text)  # raises a ValueError that names the position
            raise
        return cls(train_merges(chunk_counts, vocab_size - 256), pattern)

    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 bytes plus one per merge."""
        return 256 + len(self.merges)

    # Encoding.

    def encode(self, text: str) -> np.ndarray:
        """Encode `text` to int32 ids ``(N,)`` with the rank table and a per-chunk cache.

        Gives the same ids as `encode_naive`. A chunk seen before (a repeated
        word) costs one dict lookup.
        """
        _check_text(text)
        ids: list[int] = []
        cache = self._cache
        for chunk in self._regex.findall(text):
            chunk_ids = cache.get(chunk)
            if chunk_ids is None:
                chunk_ids = _bpe_chunk(_utf8_ids(chunk, text), self._ranks)
                if len(cache) < MAX_CACHE_ENTRIES:
                    cache[chunk] = chunk_ids
            ids.extend(chunk_ids)
        return np.array(ids, dtype=np.int32)

    def encode_naive(self, text: str) -> np.ndarray:
        """Encode `text` to int32 ids ``(N,)`` the textbook way: slow, for teaching and checks.

        The rank lookup is rebuilt on every call. Each round scans every
        adjacent pair of the whole text for the lowest-rank one and merges it
        everywhere. Pairs across chunk boundaries are skipped, so the ids equal
        those of `encode`. The chosen rank grows from round to round, because
        a merge can only involve ids made by earlier merges. Each chunk
        therefore gets the same merges, in the same order, as when it is
        encoded on its own.
        """
        _check_text(text)
        ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        chunks = [_utf8_ids(chunk, text) for chunk in self._regex.findall(text)]
        while True:
            best = None
            for ids in chunks:
                for pair in zip(ids, ids[1:]):
                    rank = ranks.get(pair)
                    if rank is not None and (best is None or rank < best):
                        best = rank
            if best is None:
                break
            chunks = [merge_pair(ids, self.merges[best], 256 + best) for ids in chunks]
        return np.array([i for ids in chunks for i in ids], dtype=np.int32)

    def clear_cache(self) -> None:
        """Empty the per-chunk cache of `encode` (for timing a cold start)."""
        self._cache.clear()

    @property
    def cache_size(self) -> int:
        """Number of chunks in the cache of `encode`."""
        return len(self._cache)

    # Decoding.

    def decode_bytes(self, ids) -> bytes:
        """Concatenate the bytes of `ids`, a 1-D sequence of ints."""
        ids = check_ids(ids, self.vocab_size, hint="; were they made by a tokenizer with more merges?")
        return b"".join(self.vocab[i] for i in ids.tolist())

    def decode(self, ids) -> str:
        """Decode `ids` to text. Bytes that are not valid UTF-8 become U+FFFD.

        A token list cut at any point can end inside a multi-byte character,
        for example after the first of the four bytes of an emoji, so decoding
        replaces such bytes instead of raising.
        """
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # Saving and loading.

    def to_dict(self) -> dict:
        return {
            "kind": "bpe",
            "version": FORMAT_VERSION,
            "pattern": self.pattern,
            "merges": [list(pair) for pair in self.merges],
        }

    @classmethod
    def from_dict(cls, data: dict) -> BPETokenizer:
        """Rebuild a tokenizer from `to_dict` output; raises ValueError on a malformed record."""
        if not isinstance(data, dict):
            raise ValueError(f"a BPE tokenizer record must be a JSON object, got {type(data).__name__}")
        if data.get("kind") != "bpe":
            raise ValueError(f"not a BPE tokenizer record: kind={data.get('kind')!r}, expected 'bpe'")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"BPE record has format version {data.get('version')!r}, but this grulm_edu reads "
                f"version {FORMAT_VERSION}; retrain the tokenizer or use the grulm_edu that saved it"
            )
        missing = [key for key in ("pattern", "merges") if key not in data]
        if missing:
            raise ValueError(f"BPE record is missing {missing}; the file is incomplete or corrupted")
        return cls(data["merges"], data["pattern"])

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as JSON; a temporary file and `os.replace` make the write atomic."""
        path = pathlib.Path(path)
        text = json.dumps(self.to_dict(), indent=None, separators=(",", ":"))
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            pathlib.Path(temporary).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a tokenizer written by `save`; raises ValueError when the file is not one."""
        path = pathlib.Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{str(path)!r} is not a BPE tokenizer file (invalid JSON: {error})") from None
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{str(path)!r} is not a valid BPE tokenizer file: {error}") from None

    def __eq__(self, other) -> bool:
        return isinstance(other, BPETokenizer) and (self.merges, self.pattern) == (other.merges, other.pattern)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


def _check_text(text) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}; decode bytes with .decode('utf-8') first")


def _utf8_ids(chunk: str, text: str) -> list[int]:
    """Return the UTF-8 bytes of `chunk` as ints; a lone surrogate raises a ValueError that points into `text`."""
    try:
        return list(chunk.encode("utf-8"))
    except UnicodeEncodeError as error:
        position = text.find(chunk) + error.start
        raise ValueError(
            f"text has a lone surrogate {chunk[error.start]!r} at index {position}, which UTF-8 cannot "
            f"encode; it usually comes from decoding with errors='surrogateescape', so decode the "
            f"file with errors='replace' instead"
        ) from None


def _validate_pattern(pattern) -> str:
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a regex string, got {type(pattern).__name__}")
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {error}") from None
    return pattern


def _validate_merges(merges) -> tuple[tuple[int, int], ...]:
    """Check that merge ``k`` is a pair of known ids (each below ``256 + k``) and that no pair repeats."""
    checked = []
    seen = set()
    for k, pair in enumerate(merges):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"merge {k} must be a pair of two ids, got {pair!r}")
        for token in pair:
            if isinstance(token, bool) or not isinstance(token, (int, np.integer)):
                raise ValueError(f"merge {k} must contain integer ids, got {pair!r}")
            if not 0 <= token < 256 + k:
                raise ValueError(
                    f"merge {k} uses id {int(token)}, but only ids 0 to {255 + k} exist before it; "
                    f"merges must be listed in the order they were learned"
                )
        pair = (int(pair[0]), int(pair[1]))
        if pair in seen:
            raise ValueError(f"merge {k} repeats the pair {pair}; each pair can be merged only once")
        seen.add(pair)
        checked.append(pair)
    return tuple(checked)
