"""Notebook 14's experiment: the BPE tokens of a text, as coloured boxes, for a chosen number of merges."""

from __future__ import annotations

import functools

from matplotlib.patches import Rectangle

from grulm_edu.bpe import BPETokenizer
from grulm_edu.plots import new_figure
from grulm_edu.widgets import experiment

__all__ = ["SAMPLE_TEXT", "token_pieces", "bpe_token_view", "bpe_token_explorer"]

SAMPLE_TEXT = "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun."

# Visible stand-ins for characters that would otherwise draw as nothing.
_VISIBLE = str.maketrans({" ": "␣", "\n": "↵", "\r": "␍", "\t": "⇥"})
_LINE_WIDTH = 48  # characters per drawn line
_MAX_LINES = 14


def token_pieces(tokenizer: BPETokenizer, ids) -> list[str]:
    """Return the text of each token, with whitespace drawn visibly and partial characters as U+FFFD."""
    return [tokenizer.vocab[int(i)].decode("utf-8", errors="replace").translate(_VISIBLE) for i in ids]


def bpe_token_view(text: str, num_merges: int, tokenizer: BPETokenizer):
    """Return ``(figure, summary)`` for `text` encoded with the first `num_merges` merges of `tokenizer`.

    Each token is a coloured box; a token wider than a line gets a line of its own.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if isinstance(num_merges, bool) or not isinstance(num_merges, int) or not 0 <= num_merges <= len(tokenizer.merges):
        raise ValueError(f"num_merges must be an int from 0 to {len(tokenizer.merges)}, got {num_merges!r}")
    truncated = BPETokenizer(tokenizer.merges[:num_merges], tokenizer.pattern)
    ids = truncated.encode(text)
    pieces = token_pieces(truncated, ids)

    # Lay the boxes out in lines of _LINE_WIDTH characters; a line break in the text starts a new line.
    boxes = []  # (line, column, piece, token index)
    line, column = 0, 0
    for index, piece in enumerate(pieces):
        if column and column + len(piece) > _LINE_WIDTH:
            line, column = line + 1, 0
        boxes.append((line, column, piece, index))
        column += len(piece)
        if piece.endswith("↵"):
            line, column = line + 1, 0
    visible_boxes = [box for box in boxes if box[0] < _MAX_LINES]
    num_lines = max([box[0] for box in visible_boxes], default=0) + 1

    fig, (ax,) = new_figure(height=0.6 + 0.32 * num_lines)
    width_points = fig.get_figwidth() * 72 * 0.94
    # A monospace glyph is about 0.6 em wide, so this size makes one character one data unit.
    font_size = width_points / ((_LINE_WIDTH + 1) * 0.6)
    for line, column, piece, index in visible_boxes:
        ax.add_patch(Rectangle((column, -line - 0.9), len(piece), 0.8, facecolor=f"C{index % 10}", alpha=0.35,
                               edgecolor="black", linewidth=0.5))
        ax.text(column + len(piece) / 2, -line - 0.5, piece, ha="center", va="center", family="monospace",
                fontsize=font_size)
    ax.set_xlim(-0.5, _LINE_WIDTH + 0.5)
    ax.set_ylim(-num_lines - 0.1, 0)
    ax.axis("off")
    ax.set_title(f"{len(ids)} tokens with {num_merges} merges (vocabulary {truncated.vocab_size})", fontsize=10)

    num_bytes = len(text.encode("utf-8"))
    ratio = len(text) / len(ids) if len(ids) else 0.0
    summary = (
        f"{len(text)} characters, {num_bytes} bytes -> {len(ids)} tokens with {num_merges} merges "
        f"({ratio:.2f} characters per token)"
    )
    if len(visible_boxes) < len(boxes):
        summary += f"; the figure shows the first {len(visible_boxes)} tokens"
    return fig, summary


def bpe_token_explorer(tokenizer: BPETokenizer, text: str = SAMPLE_TEXT):
    """Build a text box and a slider for the number of merges above a view of the text's tokens."""
    import ipywidgets as widgets

    controls = {
        "text": widgets.Textarea(value=text, description="text", layout=widgets.Layout(width="95%", height="80px")),
        "num_merges": widgets.IntSlider(value=len(tokenizer.merges), min=0, max=len(tokenizer.merges), step=1,
                                        description="merges"),
    }
    callback = functools.partial(bpe_token_view, tokenizer=tokenizer)
    return experiment(callback, controls, description="Type a text and move the slider: fewer merges, more tokens")
