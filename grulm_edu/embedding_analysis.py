"""Tools for looking at an embedding table: PCA, cosine nearest neighbours, character classes.

`pca` centres the rows and projects them on the top right singular vectors,
with each component's sign fixed so that figures do not flip between LAPACK
builds. `initial_embedding` rebuilds the table a checkpoint started from, so
a notebook can separate what training changed from the random start. Left
out: t-SNE, UMAP and any other non-linear map.
"""

from __future__ import annotations

import numpy as np

from grulm_edu.model import init_params
from grulm_edu.training import run_keys

__all__ = [
    "pca",
    "cosine_similarity",
    "nearest_neighbours",
    "character_class",
    "CHARACTER_CLASSES",
    "initial_embedding",
]

CHARACTER_CLASSES = ("vowel", "consonant", "capital", "digit", "punctuation", "whitespace")


def _as_matrix(vectors, name: str = "vectors") -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2:
        raise ValueError(f"{name} must be a (N, D) matrix with N >= 2, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains nan or inf; check the table before analysing it")
    return array


def pca(vectors, num_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Project rows onto their principal components, computed with an SVD of the centred matrix.

    Args:
        vectors: ``(N, D)`` rows, for example an embedding table ``(V, E)``.
        num_components: ``k``, at most ``min(N, D)``.

    Returns:
        ``(coords, explained)``. ``coords`` is ``(N, k)`` float64: the centred
        rows in the basis of the top ``k`` components. ``explained`` is ``(k,)``:
        each component's fraction of the total variance. Each component's sign
        makes its largest-magnitude coordinate positive.
    """
    X = _as_matrix(vectors)
    if not 1 <= num_components <= min(X.shape):
        raise ValueError(f"num_components must be in [1, {min(X.shape)}] for shape {X.shape}, got {num_components}")
    X = X - X.mean(axis=0)
    U, S, Vt = np.linalg.svd(X, full_matrices=False)
    coords = U[:, :num_components] * S[:num_components]  # equal to X @ Vt[:k].T
    largest = np.argmax(np.abs(coords), axis=0)
    coords = coords * np.sign(coords[largest, np.arange(num_components)])
    variance = S**2
    return coords, variance[:num_components] / variance.sum()


def cosine_similarity(vectors) -> np.ndarray:
    """Cosine similarity of every pair of rows: ``(N, D)`` to ``(N, N)`` float64 in [-1, 1]."""
    X = _as_matrix(vectors)
    norms = np.linalg.norm(X, axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise ValueError(f"rows {zero.tolist()} have zero length, so their cosine is undefined; leave them out")
    unit = X / norms[:, None]
    return np.clip(unit @ unit.T, -1.0, 1.0)


def nearest_neighbours(vectors, index: int, k: int = 5) -> list[tuple[int, float]]:
    """Find the `k` rows most similar to row `index` by cosine, most similar first, leaving out the row itself.

    Returns a list of ``(row, similarity)`` pairs. Ties keep the lower row first.
    """
    similarity = cosine_similarity(vectors)
    N = similarity.shape[0]
    if not 0 <= index < N:
        raise ValueError(f"index must be in [0, {N}), got {index}")
    if not 1 <= k < N:
        raise ValueError(f"k must be in [1, {N - 1}] for {N} rows, got {k}")
    row = similarity[index]
    order = [j for j in np.argsort(-row, kind="stable") if j != index][:k]
    return [(int(j), float(row[j])) for j in order]


def character_class(char: str) -> str:
    """Sort a character into one of `CHARACTER_CLASSES`. The letter ``y`` counts as a consonant."""
    if not isinstance(char, str) or len(char) != 1:
        raise ValueError(f"expected a single character, got {char!r}")
    if char.isspace():
        return "whitespace"
    if char.isdigit():
        return "digit"
    if char.isupper():
        return "capital"
    if char.islower():
        return "vowel" if char in "aeiou" else "consonant"
    return "punctuation"


def initial_embedding(checkpoint) -> np.ndarray:
    """Rebuild the ``(V, E)`` embedding table that `checkpoint` held before its first update.

    Assumes the run initialised as ``python -m grulm_edu train`` does:
    `init_params` with the ``"init"`` key of `run_keys` for the checkpoint's
    seed. A row that training never updated (an id that never
    occurred in the training text) matches the checkpoint exactly, which
    confirms the assumption.
    """
    seed = checkpoint.train_config.seed
    params = init_params(run_keys(seed)["init"], checkpoint.model_config)
    return np.asarray(params["embed"])
