"""Per-step training logs as JSON Lines, and reading them back.

`fit` writes one JSON object per line: ``{"kind": "train", "step", "loss",
"grad_norm", "lr", "tokens_per_s", "wall_time", "skipped"}`` after every
optimizer update (and every skipped step), and ``{"kind": "eval", "step",
"val_loss", "wall_time"}`` after every validation check. ``wall_time`` is
seconds since the run (or the resumed part of it) started. Lines are flushed
as they are written, so a crashed run keeps its log up to the last step.
Named `runlog` so that it does not shadow the standard library's `logging`.
"""

from __future__ import annotations

import json
import math
import os
import pathlib

import numpy as np

__all__ = ["RunLogWriter", "read_log"]

TRAIN_FIELDS = ("step", "loss", "grad_norm", "lr", "tokens_per_s", "wall_time", "skipped")
EVAL_FIELDS = ("step", "val_loss", "wall_time")


class RunLogWriter:
    """Append records to a JSON Lines file; use as a context manager."""

    def __init__(self, path: str | os.PathLike, *, append: bool = False):
        self.path = pathlib.Path(path)
        if self.path.is_dir():
            raise IsADirectoryError(f"log path {str(self.path)!r} is a directory; give a file name such as run.jsonl")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a" if append else "w", encoding="utf-8")

    def write(self, kind: str, **fields) -> None:
        record = {"kind": kind}
        for name, value in fields.items():
            value = value.item() if hasattr(value, "item") else value
            # JSON has no inf or nan; write null so every line stays valid JSON.
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            record[name] = value
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RunLogWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_log(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Read a log written by `fit` into ``{"train": {field: array}, "eval": {field: array}}``.

    Missing values (null, written for inf or nan) come back as nan. A last
    line cut off by a crash is ignored; any other malformed line raises
    ValueError naming its line number.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"log file not found: {str(path)!r}; pass log_path=... to fit to write one")
    lines = path.read_text(encoding="utf-8").splitlines()
    rows: dict[str, list[dict]] = {"train": [], "eval": []}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # a crash can cut the last line short
            raise ValueError(f"{str(path)!r} line {number} is not valid JSON: {line[:80]!r}") from None
        kind = record.get("kind")
        if kind not in rows:
            raise ValueError(f"{str(path)!r} line {number} has unknown kind {kind!r}; expected 'train' or 'eval'")
        rows[kind].append(record)

    def columns(records, fields):
        out = {}
        for field in fields:
            values = [r.get(field) for r in records]
            if field == "step":
                out[field] = np.array(values, np.int64)
            elif field == "skipped":
                out[field] = np.array([bool(v) for v in values], bool)
            else:
                out[field] = np.array([np.nan if v is None else v for v in values], np.float64)
        return out

    return {"train": columns(rows["train"], TRAIN_FIELDS), "eval": columns(rows["eval"], EVAL_FIELDS)}
