"""Save and load a run: parameters, optimizer state, configs and tokenizer.

A checkpoint is one directory holding one file, ``checkpoint.npz``: every
array under its pytree path, plus a JSON manifest (format version, model and
training config, tokenizer, free-form metadata) stored as a string array, so
loading never unpickles anything. The file is written to a temporary name in
the same directory, flushed to disk and renamed over the old one, so a process
killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import zipfile

import jax
import numpy as np

from grulm_edu.chars import CharTokenizer
from grulm_edu.model import ModelConfig, init_params
from grulm_edu.training import TrainConfig, TrainState, init_state, make_optimizer

__all__ = ["save_checkpoint", "load_checkpoint", "load_pretrained", "Checkpoint", "CHECKPOINT_FILE", "PRETRAINED_DIR"]

CHECKPOINT_FILE = "checkpoint.npz"
FORMAT_VERSION = 1
# The model the notebooks load; its README records the command that trained it.
PRETRAINED_DIR = pathlib.Path(__file__).parent / "assets" / "shakespeare_gru"
_MANIFEST_KEY = "__manifest__"


def _flatten(prefix: str, tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {prefix + jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def save_checkpoint(
    directory: str | os.PathLike,
    state: TrainState,
    model_config: ModelConfig,
    train_config: TrainConfig,
    tokenizer: CharTokenizer,
    metadata: dict | None = None,
) -> pathlib.Path:
    """Write `state` and its configs to ``directory/checkpoint.npz`` atomically; return the file path."""
    directory = pathlib.Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"checkpoint path {str(directory)!r} is a file; give a directory")
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_config": model_config.to_dict(),
        "train_config": train_config.to_dict(),
        "tokenizer": tokenizer.to_dict(),
        "metadata": metadata or {},
    }
    arrays = {**_flatten("state", state), _MANIFEST_KEY: np.array(json.dumps(manifest))}

    target = directory / CHECKPOINT_FILE
    fd, tmp_name = tempfile.mkstemp(prefix=".checkpoint-", suffix=".npz.tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file readable by its owner only; a checkpoint is not secret.
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        pathlib.Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


class Checkpoint:
    """A loaded checkpoint: `state`, `model_config`, `train_config`, `tokenizer`, `metadata`."""

    def __init__(self, state, model_config, train_config, tokenizer, metadata):
        self.state: TrainState = state
        self.model_config: ModelConfig = model_config
        self.train_config: TrainConfig = train_config
        self.tokenizer: CharTokenizer = tokenizer
        self.metadata: dict = metadata

    @property
    def params(self) -> dict:
        return self.state.params


def _checkpoint_file(path: pathlib.Path) -> pathlib.Path:
    file = path / CHECKPOINT_FILE if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(
            f"no checkpoint at {str(path)!r} (expected {CHECKPOINT_FILE} inside it); "
            f"train one first with `python -m grulm_edu train --out DIR`"
        )
    return file


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load a checkpoint directory (or its ``checkpoint.npz``) written by `save_checkpoint`.

    The stored arrays are checked against the tree that the stored configs
    produce: a missing, extra or wrongly shaped array raises ValueError naming it.
    """
    file = _checkpoint_file(pathlib.Path(path))
    try:
        with np.load(file, allow_pickle=False) as data:
            stored = {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        # NumPy's own message for a non-zip file suggests allow_pickle=True,
        # which would run code from the file; name only the error type.
        raise ValueError(
            f"checkpoint {str(file)!r} is truncated or corrupted ({type(error).__name__}); "
            f"restore it or train again"
        ) from None
    if _MANIFEST_KEY not in stored:
        raise ValueError(f"{str(file)!r} has no manifest; it was not written by grulm_edu")
    try:
        manifest = json.loads(str(stored.pop(_MANIFEST_KEY)))
    except json.JSONDecodeError as error:
        raise ValueError(f"checkpoint {str(file)!r} has an unreadable manifest ({error}); restore it or train again") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint format {manifest.get('format_version')!r} is not supported "
            f"(this version reads {FORMAT_VERSION})"
        )
    try:
        model_config = ModelConfig(**manifest["model_config"])
        train_config = TrainConfig(**manifest["train_config"])
        tokenizer = CharTokenizer.from_dict(manifest["tokenizer"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"checkpoint {str(file)!r} has an invalid manifest ({error}); restore it or train again") from None
    if tokenizer.vocab_size != model_config.vocab_size:
        raise ValueError(
            f"checkpoint tokenizer has {tokenizer.vocab_size} ids but the model expects "
            f"{model_config.vocab_size}; the checkpoint is inconsistent"
        )

    # Rebuild the expected tree (shapes only, no compute) and fill it in.
    template = jax.eval_shape(
        lambda: init_state(init_params(jax.random.key(0), model_config), make_optimizer(train_config), train_config)
    )
    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    expected = {"state" + jax.tree_util.keystr(p): leaf for p, leaf in paths_and_leaves}
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    wrong = [
        f"{name}: stored {stored[name].shape}, expected {tuple(leaf.shape)}"
        for name, leaf in expected.items()
        if name in stored and stored[name].shape != tuple(leaf.shape)
    ]
    if missing or extra or wrong:
        details = "; ".join(
            part
            for part in (
                f"missing {missing}" if missing else "",
                f"unexpected {extra}" if extra else "",
                "wrong shapes: " + ", ".join(wrong) if wrong else "",
            )
            if part
        )
        raise ValueError(f"checkpoint {str(file)!r} does not match its configuration: {details}")
    leaves = [jax.numpy.asarray(stored[name], dtype=leaf.dtype) for name, leaf in expected.items()]
    state = jax.tree_util.tree_unflatten(treedef, leaves)
    return Checkpoint(state, model_config, train_config, tokenizer, manifest["metadata"])


def load_pretrained() -> Checkpoint:
    """Load the small Shakespeare model shipped with the package (see ``assets/shakespeare_gru/README.md``)."""
    return load_checkpoint(PRETRAINED_DIR)
