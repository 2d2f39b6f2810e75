"""Notebook 02: embedding analysis, its widget callback and its exercise checkers."""

import math

import numpy as np
import pytest

from grulm_edu.embedding_analysis import (
    CHARACTER_CLASSES,
    character_class,
    cosine_similarity,
    initial_embedding,
    nearest_neighbours,
    pca,
)
from grulm_edu.exercises.embeddings import check_cosine_similarity, check_embedding_gradient, check_one_hot_flops


@pytest.fixture(scope="module")
def pretrained():
    from grulm_edu.checkpoint import load_pretrained

    return load_pretrained()


# --- pca ---------------------------------------------------------------------


def test_pca_matches_covariance_eigendecomposition():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 6)) @ np.diag([5.0, 3.0, 2.0, 1.0, 0.5, 0.1])
    coords, explained = pca(X, 3)
    centred = X - X.mean(0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    np.testing.assert_allclose(explained, eigenvalues[:3] / eigenvalues.sum(), rtol=1e-10)
    for k in range(3):
        expected = centred @ eigenvectors[:, k]
        sign = np.sign(expected @ coords[:, k])
        np.testing.assert_allclose(coords[:, k], sign * expected, atol=1e-10)


def test_pca_fixes_the_sign_of_each_component():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20, 5))
    coords, _ = pca(X, 4)
    largest = coords[np.argmax(np.abs(coords), axis=0), np.arange(4)]
    assert np.all(largest > 0)
    flipped, _ = pca(-X, 4)
    np.testing.assert_allclose(flipped, coords, atol=1e-10)


def test_pca_explained_sums_to_one_with_all_components():
    X = np.random.default_rng(2).normal(size=(8, 5))
    _, explained = pca(X, 5)
    assert math.isclose(explained.sum(), 1.0, rel_tol=1e-12)
    assert np.all(np.diff(explained) <= 1e-12)


@pytest.mark.parametrize(
    "vectors, k, message",
    [
        (np.zeros(5), 1, "must be a \\(N, D\\) matrix"),
        (np.zeros((1, 4)), 1, "N >= 2"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), 1, "nan or inf"),
        (np.eye(3), 0, "num_components must be in \\[1, 3\\]"),
        (np.eye(3), 4, "num_components must be in \\[1, 3\\]"),
    ],
)
def test_pca_rejects_bad_input(vectors, k, message):
    with pytest.raises(ValueError, match=message):
        pca(vectors, k)


# --- cosine similarity and neighbours ------------------------------------------


def test_cosine_similarity_matches_pairwise_formula():
    X = np.random.default_rng(3).normal(size=(7, 4))
    similarity = cosine_similarity(X)
    for i in range(7):
        for j in range(7):
            expected = X[i] @ X[j] / (np.linalg.norm(X[i]) * np.linalg.norm(X[j]))
            assert math.isclose(similarity[i, j], expected, rel_tol=1e-12, abs_tol=1e-12)
    np.testing.assert_allclose(np.diag(similarity), 1.0)


def test_cosine_similarity_ignores_length():
    X = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    scaled = X * np.array([[10.0], [0.1], [3.0]])
    np.testing.assert_allclose(cosine_similarity(scaled), cosine_similarity(X), atol=1e-12)


def test_cosine_similarity_rejects_zero_rows():
    with pytest.raises(ValueError, match=r"rows \[1\] have zero length"):
        cosine_similarity(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]))


def test_nearest_neighbours_hand_example():
    X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]])
    near = nearest_neighbours(X, 0, k=3)
    assert [j for j, _ in near] == [1, 4, 2]
    assert math.isclose(near[0][1], 0.9 / math.hypot(0.9, 0.1))
    assert math.isclose(near[1][1], 1 / math.sqrt(2))
    assert all(j != 0 for j, _ in nearest_neighbours(X, 0, k=4))


def test_nearest_neighbours_ties_keep_lower_row_first():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 3.0]])
    assert [j for j, _ in nearest_neighbours(X, 0, k=3)] == [1, 2, 3]


@pytest.mark.parametrize(
    "index, k, message",
    [(5, 1, "index must be in"), (-1, 1, "index must be in"), (0, 0, "k must be in"), (0, 5, "k must be in")],
)
def test_nearest_neighbours_rejects_bad_arguments(index, k, message):
    with pytest.raises(ValueError, match=message):
        nearest_neighbours(np.eye(5), index, k)


@pytest.mark.parametrize(
    "char, expected",
    [("a", "vowel"), ("u", "vowel"), ("y", "consonant"), ("t", "consonant"), ("A", "capital"), ("7", "digit"),
     (".", "punctuation"), ("—", "punctuation"), ("'", "punctuation"), (" ", "whitespace"), ("\n", "whitespace")],
)
def test_character_class(char, expected):
    assert character_class(char) == expected
    assert expected in CHARACTER_CLASSES


def test_character_class_rejects_strings():
    with pytest.raises(ValueError, match="single character"):
        character_class("ab")


def test_initial_embedding_matches_untouched_row(pretrained):
    start = initial_embedding(pretrained)
    trained = np.asarray(pretrained.params["embed"])
    assert start.shape == trained.shape
    # Id 0 never occurs in the training text and AdamW skips embeddings, so
    # that row must still hold its initial value exactly.
    np.testing.assert_array_equal(start[0], trained[0])
    assert np.corrcoef(start.ravel(), trained.ravel())[0, 1] > 0.9
    assert np.all(np.linalg.norm(trained[1:] - start[1:], axis=1) > 0)


# --- widget ----------------------------------------------------------------------


def test_neighbours_view_matches_independent_cosine(pretrained):
    from grulm_edu.widgets.embeddings import neighbours_view

    chars = pretrained.tokenizer.chars
    change = (np.asarray(pretrained.params["embed"], np.float64) - initial_embedding(pretrained))[1:]
    unit = change / np.linalg.norm(change, axis=1, keepdims=True)
    row = unit @ unit[chars.index(".")]
    row[chars.index(".")] = -np.inf
    best = np.argsort(-row)[:3]

    figure, summary = neighbours_view(".", "change", k=3)
    expected = ", ".join(f"{chars[j]!r} {row[j]:.3f}" for j in best)
    assert summary == f"change table, '.' (punctuation): {expected}"
    map_ax, bar_ax = figure.axes
    assert len(bar_ax.patches) == 3
    assert len(map_ax.texts) == len(chars)


def test_neighbours_view_trained_table_differs(pretrained):
    from grulm_edu.widgets.embeddings import neighbours_view

    _, change_summary = neighbours_view("e", "change", k=5)
    _, trained_summary = neighbours_view("e", "trained", k=5)
    assert trained_summary.startswith("trained table, 'e' (vowel): ")
    assert change_summary != trained_summary


@pytest.mark.parametrize(
    "kwargs, message",
    [({"char": "\u00e9"}, "not in the model's vocabulary"), ({"table": "start"}, "table must be one of"),
     ({"k": 0}, "k must be between 1 and 20"), ({"k": 21}, "k must be between 1 and 20")],
)
def test_neighbours_view_rejects_bad_arguments(kwargs, message):
    from grulm_edu.widgets.embeddings import neighbours_view

    with pytest.raises(ValueError, match=message):
        neighbours_view(**kwargs)


def test_map_coords_is_pca_of_unit_rows():
    from grulm_edu.widgets.embeddings import embedding_tables, map_coords

    _, tables = embedding_tables()
    rows = tables["change"]
    coords, explained = map_coords("change")
    expected_coords, expected_explained = pca(rows / np.linalg.norm(rows, axis=1, keepdims=True), 2)
    np.testing.assert_allclose(coords, expected_coords)
    np.testing.assert_allclose(explained, expected_explained)


def test_character_map_labels_and_shape_check():
    from grulm_edu.widgets.embeddings import char_label, character_map

    chars = ["a", " ", "\n", "7"]
    figure = character_map(np.arange(8.0).reshape(4, 2), chars, explained=(0.5, 0.25), highlight=0, neighbours=[1])
    labels = [text.get_text() for text in figure.axes[0].texts]
    # Labels are drawn class by class, so compare them as a set.
    assert sorted(labels) == sorted(char_label(c) for c in chars)
    assert "\u2423" in labels
    assert "\u23ce" in labels
    assert figure.axes[0].get_xlabel() == "PC 1 (50.0% of variance)"
    with pytest.raises(ValueError, match="coords must have shape \\(4, 2\\)"):
        character_map(np.zeros((3, 2)), chars)


def test_neighbours_explorer_reacts_to_controls(capsys):
    import ipywidgets

    from grulm_edu.widgets.embeddings import neighbours_explorer

    box = neighbours_explorer()
    controls = box.children[0].children
    menu = next(c for c in controls if isinstance(c, ipywidgets.Dropdown))
    slider = next(c for c in controls if isinstance(c, ipywidgets.IntSlider))
    assert menu.value == "e"
    assert slider.value == 8
    assert slider.continuous_update is False
    # Without a kernel the Output widget cannot capture, so the summary reaches stdout.
    capsys.readouterr()
    menu.value = "?"
    assert "change table, '?' (punctuation):" in capsys.readouterr().out


# --- exercise checkers ---------------------------------------------------------


def test_check_one_hot_flops():
    N, V, E = 1024, 80, 64
    assert check_one_hot_flops(2 * N * V * E, N, V, E).passed
    assert check_one_hot_flops(N * E * (2 * V - 1), N, V, E).passed
    assert "no answer yet" in check_one_hot_flops(None, N, V, E).message
    assert "multiply-add as one" in check_one_hot_flops(N * V * E, N, V, E).message
    assert "for one token" in check_one_hot_flops(2 * V * E, N, V, E).message
    assert "values the lookup copies" in check_one_hot_flops(N * E, N, V, E).message
    assert "size of the one-hot matrix" in check_one_hot_flops(N * V, N, V, E).message
    assert "too high" in check_one_hot_flops(1e9, N, V, E).message
    assert "should be a number" in check_one_hot_flops("many", N, V, E).message


def test_check_cosine_similarity():
    def right(vectors):
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return unit @ unit.T

    def dot_products(vectors):
        return vectors @ vectors.T

    def column_norms(vectors):
        unit = vectors / np.linalg.norm(vectors, axis=0)
        return unit @ unit.T

    def one_side(vectors):
        return vectors @ vectors.T / np.linalg.norm(vectors, axis=1)[:, None]

    def flattened(vectors):
        return right(vectors).ravel()

    def broken(vectors):
        raise IndexError("bad axis")

    assert check_cosine_similarity(right).passed
    assert "plain dot products" in check_cosine_similarity(dot_products).message
    assert "axis=0" in check_cosine_similarity(column_norms).message
    assert "one side" in check_cosine_similarity(one_side).message
    assert "shape (4, 4)" in check_cosine_similarity(flattened).message
    assert "raised IndexError" in check_cosine_similarity(broken).message
    assert "function itself" in check_cosine_similarity(np.eye(4)).message
    assert not check_cosine_similarity(None)


def test_check_embedding_gradient():
    def right(ids, upstream, V):
        grad = np.zeros((V, upstream.shape[1]))
        np.add.at(grad, ids, upstream)
        return grad

    def assigns(ids, upstream, V):
        grad = np.zeros((V, upstream.shape[1]))
        grad[ids] = upstream
        return grad

    def averages(ids, upstream, V):
        counts = np.maximum(np.bincount(ids, minlength=V), 1)[:, None]
        return right(ids, upstream, V) / counts

    def transposed(ids, upstream, V):
        return right(ids, upstream, V).T

    assert check_embedding_gradient(right).passed
    assert "np.add.at" in check_embedding_gradient(assigns).message
    assert "averaged" in check_embedding_gradient(averages).message
    assert "shape (V, E)" in check_embedding_gradient(transposed).message
    assert "row 3 of the gradient" in check_embedding_gradient(lambda ids, up, V: np.ones((V, up.shape[1]))).message
    assert not check_embedding_gradient(None)
