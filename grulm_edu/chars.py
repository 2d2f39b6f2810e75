"""Character-level tokenizer: one id per Unicode code point.

The vocabulary is built from the training text only. Id 0 is reserved for
characters the training text never showed (written ``UNKNOWN``, decoded as
U+FFFD). `encode` follows Python's codec convention: ``errors="strict"`` (the
default) raises a ValueError that names the unknown characters, and
``errors="replace"`` maps them to id 0. Nothing is ever dropped silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = ["CharTokenizer", "UNKNOWN_ID", "UNKNOWN_CHAR", "check_ids"]

UNKNOWN_ID = 0
UNKNOWN_CHAR = "\ufffd"


def check_ids(ids, vocab_size: int, hint: str = "") -> np.ndarray:
    """Return `ids` as a 1-D integer array, or raise naming what is wrong with it.

    Raises:
        ValueError: `ids` is not 1-D, or a value lies outside ``[0, vocab_size)``
            (`hint` is appended to that message).
        TypeError: `ids` are not integers.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"decode expects a 1-D sequence of ids, got shape {ids.shape}")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(
            f"ids must lie in [0, {vocab_size}), got values from {int(ids.min())} to {int(ids.max())}{hint}"
        )
    return ids


class CharTokenizer:
    """Map characters to integer ids and back.

    Attributes:
        chars: the known characters, in id order starting at id 1.
        vocab_size: ``len(chars) + 1`` (id 0 is the unknown id).
    """

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"vocabulary entries must be single characters, got {bad[:5]!r}")
        if len(set(chars)) != len(chars):
            repeated = sorted(c for c, n in Counter(chars).items() if n > 1)
            raise ValueError(f"vocabulary repeats characters {repeated!r}; list each once")
        if UNKNOWN_CHAR in chars:
            raise ValueError("U+FFFD is reserved for the unknown id and cannot be in the vocabulary")
        self.chars: tuple[str, ...] = tuple(chars)
        self._ids = {c: i + 1 for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """Build the vocabulary from every distinct character of `text`, sorted."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("cannot build a vocabulary from empty text")
        return cls(sorted(set(text) - {UNKNOWN_CHAR}))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str, errors: str = "strict") -> np.ndarray:
        """Encode `text` to an int32 array of ids, shape ``(len(text),)``.

        Args:
            text: the string to encode.
            errors: ``"strict"`` raises ValueError on characters outside the
                vocabulary; ``"replace"`` maps them to `UNKNOWN_ID`.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if errors not in ("strict", "replace"):
            raise ValueError(f"errors must be 'strict' or 'replace', got {errors!r}")
        ids = np.fromiter((self._ids.get(c, UNKNOWN_ID) for c in text), dtype=np.int32, count=len(text))
        if errors == "strict" and len(ids) and not ids.all():
            unknown = sorted({c for c in text if c not in self._ids})
            first = int(np.argmin(ids != UNKNOWN_ID))
            raise ValueError(
                f"text contains {len(unknown)} character(s) outside the vocabulary: "
                f"{''.join(unknown)!r} (first at index {first}); remove them, or "
                f"encode with errors='replace' to map them to the unknown id {UNKNOWN_ID}"
            )
        return ids

    def decode(self, ids) -> str:
        """Decode a sequence of ids to text; id 0 becomes U+FFFD."""
        ids = check_ids(ids, self.vocab_size)
        table = (UNKNOWN_CHAR,) + self.chars
        return "".join(table[i] for i in ids.tolist())

    def to_dict(self) -> dict:
        return {"kind": "char", "chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, data: dict) -> CharTokenizer:
        if data.get("kind") != "char":
            raise ValueError(f"not a character tokenizer record: kind={data.get('kind')!r}")
        return cls(list(data["chars"]))

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
