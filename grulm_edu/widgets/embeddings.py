"""Notebook 02's experiment: a character's nearest neighbours in the shipped model's embedding table.

The widget also marks the character and its neighbours on a PCA map of the table.
"""

from __future__ import annotations

import functools

import numpy as np
from matplotlib.figure import Figure

from grulm_edu.embedding_analysis import CHARACTER_CLASSES, character_class, initial_embedding, nearest_neighbours, pca
from grulm_edu.widgets import experiment

__all__ = [
    "TABLES",
    "char_label",
    "character_map",
    "embedding_tables",
    "map_coords",
    "neighbours_view",
    "neighbours_explorer",
]

# "trained" is the table as stored in the checkpoint. "change" is trained minus
# the random table it started from, so only what training added remains.
TABLES = ("change", "trained")
_CLASS_COLOURS = dict(zip(CHARACTER_CLASSES, ("C3", "C0", "C2", "C4", "C1", "C7")))


def char_label(char: str) -> str:
    """Return a printable label: ``␣`` for the space, ``⏎`` for the newline, the character otherwise."""
    return {" ": "\u2423", "\n": "\u23ce"}.get(char, char)


@functools.lru_cache(maxsize=1)
def embedding_tables() -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """Load the shipped model once and return its characters and both tables.

    Returns ``(chars, tables)``: ``chars`` are the ``V - 1`` known characters
    in id order from id 1, and ``tables`` maps each name in `TABLES` to a
    ``(V - 1, E)`` float64 array. The unknown id 0 is left out: it never
    occurs in the training text, so training never moved it.
    """
    from grulm_edu.checkpoint import load_pretrained

    checkpoint = load_pretrained()
    trained = np.asarray(checkpoint.params["embed"], np.float64)
    change = trained - initial_embedding(checkpoint)
    return checkpoint.tokenizer.chars, {"change": change[1:], "trained": trained[1:]}


@functools.lru_cache(maxsize=len(TABLES))
def map_coords(table: str) -> tuple[np.ndarray, np.ndarray]:
    """Compute the PCA of the table's rows scaled to unit length: ``(coords (V - 1, 2), explained (2,))``.

    Unit rows make the map show directions, which is what cosine similarity
    compares. Without the scaling, rows that barely moved would crowd the centre.
    """
    rows = embedding_tables()[1][table]
    return pca(rows / np.linalg.norm(rows, axis=1, keepdims=True), 2)


def character_map(coords, chars, *, explained=None, title: str = "", highlight: int | None = None,
                  neighbours=(), ax=None) -> Figure:
    """Draw each character as a text label at its 2-D coordinates, coloured by `character_class`.

    Args:
        coords: ``(N, 2)`` positions, one per character.
        chars: the ``N`` characters.
        explained: optional fractions of variance of the two axes, shown in the axis labels.
        title: axes title.
        highlight: index of a character to circle in red.
        neighbours: indices of characters to circle in grey.
        ax: axes to draw on; a new figure when None.
    """
    coords = np.asarray(coords)
    if coords.shape != (len(chars), 2):
        raise ValueError(f"coords must have shape ({len(chars)}, 2), one row per character, got {coords.shape}")
    if ax is None:
        ax = Figure(figsize=(6.4, 5.2), layout="constrained").subplots()
    for kind in CHARACTER_CLASSES:
        members = [i for i, c in enumerate(chars) if character_class(c) == kind]
        # Invisible points give the legend its entries and set the axis limits.
        ax.scatter(coords[members, 0], coords[members, 1], s=0, color=_CLASS_COLOURS[kind], label=kind)
        for i in members:
            ax.text(coords[i, 0], coords[i, 1], char_label(chars[i]), color=_CLASS_COLOURS[kind],
                    ha="center", va="center", fontsize=10, fontweight="bold")
    for i in neighbours:
        ax.scatter(*coords[i], s=260, facecolors="none", edgecolors="0.4", linewidths=1.2)
    if highlight is not None:
        ax.scatter(*coords[highlight], s=320, facecolors="none", edgecolors="red", linewidths=2.0)
    if explained is not None:
        ax.set_xlabel(f"PC 1 ({explained[0]:.1%} of variance)")
        ax.set_ylabel(f"PC 2 ({explained[1]:.1%} of variance)")
    ax.set_title(title)
    legend = ax.legend(loc="best", fontsize=8, markerscale=0, handletextpad=0.2)
    for text in legend.get_texts():
        text.set_color(_CLASS_COLOURS[text.get_text()])
    return ax.figure


def neighbours_view(char: str = "e", table: str = "change", k: int = 8):
    """Return ``(figure, summary)``: the `k` nearest neighbours of `char` by cosine similarity.

    Args:
        char: one character of the shipped model's vocabulary.
        table: ``"change"`` (trained minus initial rows) or ``"trained"`` (the stored rows).
        k: number of neighbours, 1 to 20.
    """
    chars, tables = embedding_tables()
    if table not in TABLES:
        raise ValueError(f"table must be one of {TABLES}, got {table!r}")
    if char not in chars:
        raise ValueError(f"{char!r} is not in the model's vocabulary; pick one of {''.join(chars)!r}")
    if not 1 <= k <= 20:
        raise ValueError(f"k must be between 1 and 20, got {k}")
    index = chars.index(char)
    neighbours = nearest_neighbours(tables[table], index, k)

    fig = Figure(figsize=(10.5, 4.6), layout="constrained")
    map_ax, bar_ax = fig.subplots(1, 2, width_ratios=[1.6, 1])
    coords, explained = map_coords(table)
    character_map(coords, chars, explained=explained, highlight=index, neighbours=[j for j, _ in neighbours],
                  title=f"{table} table: {char_label(char)!r} (red) and its neighbours (grey)", ax=map_ax)
    labels = [char_label(chars[j]) for j, _ in neighbours]
    similarities = [s for _, s in neighbours]
    bar_ax.barh(range(k), similarities, color=[_CLASS_COLOURS[character_class(chars[j])] for j, _ in neighbours])
    bar_ax.set_yticks(range(k), labels)
    bar_ax.invert_yaxis()
    bar_ax.axvline(0, color="0.3", linewidth=0.8)
    bar_ax.set(xlabel="cosine similarity", title=f"nearest {k} to {char_label(char)!r}",
               xlim=(min(0.0, *similarities) - 0.05, 1))

    listing = ", ".join(f"{char_label(chars[j])!r} {s:.3f}" for j, s in neighbours)
    summary = f"{table} table, {char_label(char)!r} ({character_class(char)}): {listing}"
    return fig, summary


def neighbours_explorer():
    """Build the widget: a menu of characters, a choice of table and a slider for the number of neighbours."""
    import ipywidgets as widgets

    chars, _ = embedding_tables()
    controls = {
        "char": widgets.Dropdown(options=[(repr(c), c) for c in chars], value="e", description="character"),
        "table": widgets.ToggleButtons(options=TABLES, value="change", description="table"),
        "k": widgets.IntSlider(value=8, min=1, max=20, description="neighbours"),
    }
    description = "Pick a character: its nearest neighbours by cosine similarity"
    return experiment(neighbours_view, controls, description=description)
