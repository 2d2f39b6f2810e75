"""Train/validation/test splits and batches built once, before training.

Split rule for the play corpus: whole plays are held out, so validation text
comes from plays the model never saw. Plays are numbered in the corpus's fixed
order; play ``i`` goes to validation when ``i % 10 == 4``, to test when
``i % 10 == 9``, and to training otherwise. A single user text is split by
position instead: the first 90% trains, the next 5% validates, the last 5%
tests.

Batches are built once as an int32 array ``(num_batches, B, T + 1)``. Window
``k`` of a split is ``ids[k*T : k*T + T + 1]``, so consecutive windows share one
token and every token except the first is a target exactly once. Row ``i`` of
batch ``b`` is window ``i * num_batches + b``, so each batch mixes distant parts
of the text. Each epoch visits the batches in a fresh permutation drawn with a
key.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from grulm_edu.chars import UNKNOWN_ID, CharTokenizer
from grulm_edu.corpus import Play

__all__ = ["Splits", "Batches", "split_plays", "split_text", "make_batches", "epoch_order", "prepare"]


@dataclasses.dataclass(frozen=True)
class Splits:
    """Plain text of each split, and which plays went where (empty for a single text)."""

    train: str
    val: str
    test: str
    train_names: tuple[str, ...] = ()
    val_names: tuple[str, ...] = ()
    test_names: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Batches:
    """Batches of one split.

    Attributes:
        tokens: int32 ``(N, B, T + 1)``; inputs are ``[..., :-1]``, targets ``[..., 1:]``.
        mask: float32 ``(N, B, T)``; 0 marks padding in the last, partial batch.
        num_chars: characters of text the split holds.
    """

    tokens: np.ndarray
    mask: np.ndarray
    num_chars: int

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def num_targets(self) -> int:
        return int(self.mask.sum())


def split_plays(plays: list[Play]) -> Splits:
    """Hold out whole plays: index ``% 10 == 4`` to validation, ``== 9`` to test."""
    if len(plays) < 10:
        raise ValueError(
            f"holding out whole plays needs at least 10 plays, got {len(plays)}; "
            f"join them into one text and use split_text instead"
        )
    groups = {"train": [], "val": [], "test": []}
    for i, play in enumerate(plays):
        group = "val" if i % 10 == 4 else "test" if i % 10 == 9 else "train"
        groups[group].append(play)
    return Splits(
        *("\n".join(p.text for p in groups[g]) for g in ("train", "val", "test")),
        *(tuple(p.name for p in groups[g]) for g in ("train", "val", "test")),
    )


def split_text(text: str, val_fraction: float = 0.05, test_fraction: float = 0.05) -> Splits:
    """Split one text by position: train first, then validation, then test."""
    if not 0.0 < val_fraction < 0.5 or not 0.0 < test_fraction < 0.5:
        raise ValueError(
            f"val_fraction and test_fraction must be in (0, 0.5), got {val_fraction} and {test_fraction}"
        )
    n = len(text)
    n_val, n_test = int(n * val_fraction), int(n * test_fraction)
    n_train = n - n_val - n_test
    return Splits(text[:n_train], text[n_train : n_train + n_val], text[n_train + n_val :])


def make_batches(ids: np.ndarray, batch_size: int, seq_len: int, *, drop_last: bool = True) -> Batches:
    """Cut a 1-D id array into batches ``(N, B, T + 1)`` (see the module docstring).

    Args:
        ids: 1-D integer token ids of one split.
        batch_size: ``B``, windows per batch.
        seq_len: ``T``, targets per window.
        drop_last: drop the windows that do not fill a whole batch (training);
            when False, pad them (and the final short window) and mask the
            padding, so evaluation scores every target of the split.
    """
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
    n_targets = len(ids) - 1
    T = seq_len

    if drop_last:
        num_batches = (n_targets // T) // batch_size
        if num_batches == 0:
            raise ValueError(
                f"text of {len(ids)} tokens is too short for one batch of {batch_size} x "
                f"{T + 1} tokens; use a longer text or smaller --batch-size/--seq-len"
            )
        num_windows = num_batches * batch_size
        starts = np.arange(num_windows) * T
        windows = ids[starts[:, None] + np.arange(T + 1)]
        mask = np.ones((num_windows, T), np.float32)
    else:
        if n_targets < 1:
            raise ValueError(f"text of {len(ids)} tokens has no targets to evaluate; give at least 2 tokens")
        num_windows = -(-n_targets // T)
        num_batches = -(-num_windows // batch_size)
        padded = np.zeros(num_batches * batch_size * T + 1, ids.dtype)
        padded[: len(ids)] = ids
        starts = np.arange(num_batches * batch_size) * T
        windows = padded[starts[:, None] + np.arange(T + 1)]
        positions = starts[:, None] + np.arange(1, T + 1)
        mask = (positions < len(ids)).astype(np.float32)

    # Row i of batch b is window i * num_batches + b.
    tokens = windows.reshape(batch_size, num_batches, T + 1).transpose(1, 0, 2)
    mask = mask.reshape(batch_size, num_batches, T).transpose(1, 0, 2)
    return Batches(np.ascontiguousarray(tokens, np.int32), np.ascontiguousarray(mask), len(ids))


def epoch_order(key: jax.Array, num_batches: int) -> np.ndarray:
    """A permutation of ``range(num_batches)`` drawn with `key`."""
    return np.asarray(jax.random.permutation(key, num_batches))


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Everything a run needs from its text: the tokenizer and each split's batches."""

    tokenizer: CharTokenizer
    splits: Splits
    train: Batches
    val: Batches
    test: Batches
    unknown_counts: dict


def prepare(splits: Splits, batch_size: int, seq_len: int, tokenizer: CharTokenizer | None = None) -> Prepared:
    """Build the vocabulary from the training split and batch all three splits.

    Characters of validation or test text that training never showed map to
    the unknown id; their counts are returned so a caller can report them.
    """
    if not splits.val or not splits.test:
        raise ValueError("validation and test splits must not be empty; use a longer text")
    tokenizer = tokenizer or CharTokenizer.from_text(splits.train)
    encoded = {
        name: tokenizer.encode(getattr(splits, name), errors="replace") for name in ("train", "val", "test")
    }
    unknown_counts = {name: int((ids == UNKNOWN_ID).sum()) for name, ids in encoded.items()}
    return Prepared(
        tokenizer=tokenizer,
        splits=splits,
        train=make_batches(encoded["train"], batch_size, seq_len, drop_last=True),
        val=make_batches(encoded["val"], batch_size, seq_len, drop_last=False),
        test=make_batches(encoded["test"], batch_size, seq_len, drop_last=False),
        unknown_counts=unknown_counts,
    )
