"""Tests of the command line: ``python -m grulm_edu train | generate | evaluate``.

Most tests call `grulm_edu.cli.main` in the test process. One module-scoped
run trains a tiny model (E=8, H=16, 30 steps of 4 x 16 characters) on the
embedded Shakespeare plays, and the generate, evaluate and resume tests read
its checkpoint. That run took about 8 s on a shared 2-core x86-64 CPU
(`pytest --durations`), mostly JAX compilation, loading the corpus and the
final pass over the whole validation split (about 1.5 s of it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from grulm_edu import training
from grulm_edu.checkpoint import CHECKPOINT_FILE, load_checkpoint
from grulm_edu.cli import DEFAULT_PROMPT, main

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

NUM_STEPS = 30
SAMPLE_LENGTH = 40
TINY_TRAIN_ARGS = [
    "--hidden-size", "16",
    "--embed-size", "8",
    "--batch-size", "4",
    "--seq-len", "16",
    "--steps", str(NUM_STEPS),
    "--warmup-steps", "3",
    "--log-interval", "10",
    "--eval-batches", "2",
    "--length", str(SAMPLE_LENGTH),
    "--no-progress",
]

LOG_LINE = re.compile(r"^step\s+(\d+)/(\d+) \| loss (\S+) \| val (\S+) \|", re.MULTILINE)
REPORT_LINE = re.compile(
    r"^(\w+): loss (\S+) nats/char \| perplexity (\S+) \| (\S+) bits/char \| ([\d,]+) characters$", re.MULTILINE
)
CORPUS_LINE = re.compile(r"^corpus: .*: ([\d,]+) train / ([\d,]+) val / ([\d,]+) test characters$", re.MULTILINE)

# A small corpus that contains every character of the default prompt.
SMALL_CORPUS = "ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 80
SMALL_TRAIN_ARGS = ["--batch-size", "4", "--seq-len", "16", "--steps", "5", "--warmup-steps", "1",
                    "--hidden-size", "8", "--embed-size", "4", "--eval-batches", "1", "--no-progress"]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run `main` in this process and return (exit status, stdout, stderr).

    argparse raises SystemExit(2) on a bad argument, and the process then
    exits with status 2, so the SystemExit code counts as the exit status.
    """
    try:
        code = main(argv)
    except SystemExit as exit_request:
        code = exit_request.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def parse_report(stdout: str, name: str) -> dict:
    """Parse the ``NAME: loss ... | perplexity ... | ... bits/char | N characters`` line."""
    reports = {match[1]: match for match in REPORT_LINE.finditer(stdout)}
    assert name in reports, f"no {name!r} report line in:\n{stdout}"
    match = reports[name]
    return {
        "line": match[0],
        "loss": float(match[2]),
        "perplexity": float(match[3]),
        "bits_per_char": float(match[4]),
        "characters": int(match[5].replace(",", "")),
    }


def parse_split_sizes(stdout: str) -> dict[str, int]:
    match = CORPUS_LINE.search(stdout)
    assert match, f"no corpus line in:\n{stdout}"
    return {name: int(match[i].replace(",", "")) for i, name in enumerate(("train", "val", "test"), start=1)}


def tree_snapshot(root: pathlib.Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for a directory)."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes() if path.is_file() else None
        for path in sorted(root.rglob("*"))
    }


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    out: pathlib.Path
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> TrainedRun:
    """Train the tiny model once on the embedded plays; its checkpoint is shared by the module."""
    out = tmp_path_factory.mktemp("trained") / "run"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        exit_code = main(["train", *TINY_TRAIN_ARGS, "--out", str(out)])
    return TrainedRun(out, exit_code, stdout.getvalue(), stderr.getvalue())


# --- train --------------------------------------------------------------------


def test_train_exits_cleanly(trained):
    assert trained.exit_code == 0, trained.stderr
    assert "Traceback" not in trained.stderr
    assert f"trained {NUM_STEPS} steps" in trained.stdout


def test_train_loss_falls(trained):
    logged = [(int(m[1]), int(m[2]), float(m[3]), float(m[4])) for m in LOG_LINE.finditer(trained.stdout)]
    steps = [step for step, _, _, _ in logged]
    totals = {total for _, total, _, _ in logged}
    losses = [loss for _, _, loss, _ in logged]
    val_losses = [val for _, _, _, val in logged]

    assert steps == [10, 20, 30], trained.stdout
    assert totals == {NUM_STEPS}
    assert losses[-1] < losses[0], losses
    assert val_losses[-1] < val_losses[0], val_losses


def test_train_reports_full_validation(trained):
    report = parse_report(trained.stdout, "validation")
    sizes = parse_split_sizes(trained.stdout)

    # Every character of the split except the first is a target exactly once.
    assert report["characters"] == sizes["val"] - 1
    assert math.isfinite(report["loss"])
    vocab_size = load_checkpoint(trained.out).model_config.vocab_size
    assert report["loss"] < math.log(vocab_size), "a trained model should beat a uniform guess"
    assert report["perplexity"] == pytest.approx(math.exp(report["loss"]), rel=1e-3)
    assert report["bits_per_char"] == pytest.approx(report["loss"] / math.log(2), rel=1e-3)


def test_train_saves_named_checkpoint(trained):
    expected = trained.out / CHECKPOINT_FILE
    assert f"checkpoint: {expected}\n" in trained.stdout
    assert expected.is_file()

    checkpoint = load_checkpoint(trained.out)
    assert int(checkpoint.state.step) == NUM_STEPS
    assert checkpoint.metadata["step"] == NUM_STEPS
    assert checkpoint.metadata["corpus"] is None
    assert checkpoint.model_config.hidden_size == 16
    assert checkpoint.model_config.embed_size == 8


def test_train_prints_sample_after_prompt(trained):
    header = f"sample ({SAMPLE_LENGTH} characters, temperature 0.8):\n"
    assert header in trained.stdout
    sample = trained.stdout.split(header, 1)[1].removesuffix("\n")
    assert sample.startswith(DEFAULT_PROMPT)
    assert len(sample) == len(DEFAULT_PROMPT) + SAMPLE_LENGTH


def test_train_on_corpus_file(tmp_path, capsys):
    corpus = tmp_path / "small.txt"
    corpus.write_text(SMALL_CORPUS, encoding="utf-8")
    out = tmp_path / "out"

    code, stdout, stderr = run_cli(
        ["train", "--corpus", str(corpus), *SMALL_TRAIN_ARGS, "--length", "10", "--out", str(out)], capsys
    )

    assert code == 0, stderr
    assert f"corpus: {corpus}: " in stdout
    assert (out / CHECKPOINT_FILE).is_file()
    assert load_checkpoint(out).metadata["corpus"] == str(corpus)


def test_train_length_zero_skips_prompt_check(tmp_path, capsys):
    # The default prompt "ROMEO:\n" is not in this corpus, but --length 0 samples nothing.
    corpus = tmp_path / "lowercase.txt"
    corpus.write_text("but soft, what light through yonder window breaks?\n" * 80, encoding="utf-8")
    out = tmp_path / "out"

    code, stdout, stderr = run_cli(
        ["train", "--corpus", str(corpus), *SMALL_TRAIN_ARGS, "--length", "0", "--out", str(out)], capsys
    )

    assert code == 0, stderr
    assert "sample (" not in stdout
    assert (out / CHECKPOINT_FILE).is_file()


# --- generate and evaluate ----------------------------------------------------------------


def test_generate_starts_with_prompt(trained, capsys):
    code, stdout, stderr = run_cli(
        ["generate", "--checkpoint", str(trained.out), "--prompt", "KING:", "--length", "25"], capsys
    )
    assert code == 0, stderr
    text = stdout.removesuffix("\n")
    assert text.startswith("KING:")
    assert len(text) == len("KING:") + 25


def test_generate_same_seed_same_text(trained, capsys):
    command = ["generate", "--checkpoint", str(trained.out), "--length", "60"]
    _, first, _ = run_cli([*command, "--seed", "7"], capsys)
    _, second, _ = run_cli([*command, "--seed", "7"], capsys)
    _, other_seed, _ = run_cli([*command, "--seed", "8"], capsys)

    assert first == second
    assert first != other_seed, "different seeds should give different samples at temperature 0.8"


def test_generate_greedy_ignores_seed(trained, capsys):
    command = ["generate", "--checkpoint", str(trained.out), "--length", "60", "--temperature", "0"]
    _, seed_0, _ = run_cli([*command, "--seed", "0"], capsys)
    _, seed_1, _ = run_cli([*command, "--seed", "1"], capsys)
    _, top_1, _ = run_cli(
        ["generate", "--checkpoint", str(trained.out), "--length", "60", "--temperature", "1", "--top-k", "1"], capsys
    )

    assert seed_0 == seed_1
    assert top_1 == seed_0, "top-k 1 keeps only the most likely character, as greedy decoding does"


def test_evaluate_val_matches_train_report(trained, capsys):
    code, stdout, stderr = run_cli(["evaluate", "--checkpoint", str(trained.out)], capsys)
    assert code == 0, stderr
    evaluated = parse_report(stdout, "val")
    reported = parse_report(trained.stdout, "validation")

    assert "corpus: embedded Shakespeare plays" in stdout
    assert evaluated["loss"] == reported["loss"]
    assert evaluated["characters"] == reported["characters"]


def test_evaluate_test_split(trained, capsys):
    code, stdout, stderr = run_cli(["evaluate", "--checkpoint", str(trained.out), "--split", "test"], capsys)
    assert code == 0, stderr
    report = parse_report(stdout, "test")
    sizes = parse_split_sizes(trained.stdout)

    assert report["characters"] == sizes["test"] - 1
    assert math.isfinite(report["loss"])
    assert report["perplexity"] == pytest.approx(math.exp(report["loss"]), rel=1e-3)
    assert report["bits_per_char"] == pytest.approx(report["loss"] / math.log(2), rel=1e-3)


def subprocess_env() -> dict[str, str]:
    """The current environment, with this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def test_module_entry_point_generates(trained, tmp_path, capsys):
    command = ["generate", "--checkpoint", str(trained.out), "--length", "30", "--seed", "3"]
    result = subprocess.run(
        [sys.executable, "-m", "grulm_edu", *command],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )
    _, in_process, _ = run_cli(command, capsys)

    assert result.returncode == 0, result.stderr
    assert result.stdout == in_process


def test_module_entry_point_exit_status_two(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "grulm_edu", "train", "--steps", "0", "--out", str(tmp_path / "out")],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "python -m grulm_edu train: error: argument --steps: expected a positive integer, got 0"
    )
    assert not (tmp_path / "out").exists()


# --- resume ---------------------------------------------------------------------------


def assert_same_params(left: dict, right: dict) -> None:
    left_leaves = jax.tree_util.tree_leaves_with_path(left)
    right_leaves = jax.tree_util.tree_leaves_with_path(right)
    assert [path for path, _ in left_leaves] == [path for path, _ in right_leaves]
    for (path, left_leaf), (_, right_leaf) in zip(left_leaves, right_leaves):
        np.testing.assert_array_equal(left_leaf, right_leaf, err_msg=jax.tree_util.keystr(path))


def test_resume_finished_run_trains_nothing(trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained.out, out)

    code, stdout, stderr = run_cli(["train", "--resume", "--out", str(out), "--length", "0", "--no-progress"], capsys)

    assert code == 0, stderr
    assert f"{NUM_STEPS} steps from step {NUM_STEPS}" in stdout
    assert "trained 0 steps" in stdout
    assert parse_report(stdout, "validation")["line"] == parse_report(trained.stdout, "validation")["line"]
    resumed = load_checkpoint(out)
    assert int(resumed.state.step) == NUM_STEPS
    assert_same_params(resumed.params, load_checkpoint(trained.out).params)


def test_resume_after_interrupt_matches_full_run(trained, tmp_path, capsys, monkeypatch):
    """Ctrl-C after step 20 saves that step; --resume then ends where an uninterrupted run ends."""
    interrupt_at = 20
    real_make_train_step = training.make_train_step

    def make_interrupted_train_step(config, optimizer):
        train_step = real_make_train_step(config, optimizer)

        def step(state, *args):
            if int(state.step) == interrupt_at:
                raise KeyboardInterrupt
            return train_step(state, *args)

        return step

    out = tmp_path / "run"
    monkeypatch.setattr(training, "make_train_step", make_interrupted_train_step)
    code, stdout, _ = run_cli(["train", *TINY_TRAIN_ARGS, "--out", str(out)], capsys)
    monkeypatch.undo()

    assert code == 130
    assert f"interrupted after update {interrupt_at}" in stdout
    assert int(load_checkpoint(out).state.step) == interrupt_at

    code, stdout, stderr = run_cli(["train", "--resume", "--out", str(out), "--length", "0", "--no-progress"], capsys)

    assert code == 0, stderr
    assert f"{NUM_STEPS} steps from step {interrupt_at}" in stdout
    assert f"trained {NUM_STEPS - interrupt_at} steps" in stdout
    assert [int(m[1]) for m in LOG_LINE.finditer(stdout)] == [NUM_STEPS]
    resumed = load_checkpoint(out)
    assert int(resumed.state.step) == NUM_STEPS
    assert_same_params(resumed.params, load_checkpoint(trained.out).params)
    assert parse_report(stdout, "validation")["line"] == parse_report(trained.stdout, "validation")["line"]


# --- bad input ----------------------------------------------------------------------------

# Each case: id, command line, and fragments that the one-line error must contain.
# "{name}" in either is replaced by the path of that name from `bad_input_paths`.
# A train command without --out gets "--out {out}".
BAD_INPUTS = [
    ("steps-zero", ["train", "--steps", "0"], ["--steps", "got 0"]),
    ("steps-negative", ["train", "--steps", "-3"], ["--steps", "got -3"]),
    ("lr-zero", ["train", "--lr", "0"], ["--lr", "got 0"]),
    ("lr-nan", ["train", "--lr", "nan"], ["--lr", "got nan"]),
    ("warmup-longer-than-steps", ["train", "--steps", "30", "--warmup-steps", "5000"], ["--warmup-steps", "5000"]),
    ("temperature-negative", ["train", "--temperature", "-1"], ["--temperature", "got -1"]),
    ("top-k-zero", ["train", "--top-k", "0"], ["--top-k", "got 0"]),
    ("dropout-one", ["train", "--dropout", "1.0"], ["--dropout", "got 1.0"]),
    ("batch-size-zero", ["train", "--batch-size", "0"], ["--batch-size", "got 0"]),
    ("accumulation-zero", ["train", "--accumulation-steps", "0"], ["--accumulation-steps", "got 0"]),
    ("precision-unknown", ["train", "--precision", "fp8"], ["--precision", "'fp8'"]),
    ("log-file-directory", ["train", "--corpus", "{small}", *SMALL_TRAIN_ARGS, "--log-file", "{directory}"],
     ["--log-file", "{directory}", "is a directory"]),
    ("corpus-missing", ["train", "--corpus", "{missing_file}"], ["{missing_file}", "not found"]),
    ("corpus-directory", ["train", "--corpus", "{directory}"], ["{directory}", "is a directory"]),
    ("corpus-not-utf8", ["train", "--corpus", "{latin1}"], ["{latin1}", "not valid UTF-8"]),
    ("corpus-empty", ["train", "--corpus", "{empty}"], ["{empty}", "empty"]),
    ("corpus-too-short", ["train", "--corpus", "{short}"], ["too short", "32 x 129"]),
    ("train-top-k-above-vocabulary", ["train", "--corpus", "{small}", *SMALL_TRAIN_ARGS, "--top-k", "1000"],
     ["--top-k 1000", "vocabulary"]),
    ("train-prompt-outside-vocabulary", ["train", "--corpus", "{small}", *SMALL_TRAIN_ARGS, "--prompt", "日本"],
     ["--prompt", "日本"]),
    ("train-prompt-empty", ["train", "--corpus", "{small}", *SMALL_TRAIN_ARGS, "--prompt", ""],
     ["--prompt", "empty"]),
    ("out-is-a-file", ["train", "--out", "{regular_file}"], ["--out", "{regular_file}"]),
    ("resume-without-checkpoint", ["train", "--resume"], ["--resume", "{out}"]),
    ("resume-corrupted-checkpoint", ["train", "--resume", "--out", "{corrupted}"], ["{corrupted}", "corrupted"]),
    ("generate-checkpoint-missing", ["generate", "--checkpoint", "{missing_directory}"], ["{missing_directory}"]),
    ("generate-checkpoint-corrupted", ["generate", "--checkpoint", "{corrupted}"], ["{corrupted}", "corrupted"]),
    ("generate-checkpoint-truncated", ["generate", "--checkpoint", "{truncated}"], ["{truncated}", "truncated"]),
    ("generate-top-k-above-vocabulary", ["generate", "--checkpoint", "{checkpoint}", "--top-k", "1000"],
     ["--top-k 1000", "vocabulary"]),
    ("generate-prompt-outside-vocabulary", ["generate", "--checkpoint", "{checkpoint}", "--prompt", "日本"],
     ["--prompt", "日本"]),
    ("generate-prompt-empty", ["generate", "--checkpoint", "{checkpoint}", "--prompt", ""], ["--prompt", "empty"]),
    ("evaluate-checkpoint-missing", ["evaluate", "--checkpoint", "{missing_directory}"], ["{missing_directory}"]),
]


@pytest.fixture
def bad_input_paths(tmp_path, trained) -> dict[str, str]:
    """Create the files that the bad-input cases point at, under `tmp_path / "inputs"`."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "small.txt").write_text(SMALL_CORPUS, encoding="utf-8")
    (inputs / "latin1.txt").write_bytes("ROMÉO: Où es-tu?\n".encode("latin-1") * 200)
    (inputs / "empty.txt").write_bytes(b"")
    (inputs / "short.txt").write_text(SMALL_CORPUS[:1000], encoding="utf-8")
    (inputs / "a-directory").mkdir()
    (inputs / "regular-file").write_text("not a directory\n", encoding="utf-8")
    (inputs / "corrupted").mkdir()
    (inputs / "corrupted" / CHECKPOINT_FILE).write_bytes(b"this is not a checkpoint\n")
    (inputs / "truncated").mkdir()
    (inputs / "truncated" / CHECKPOINT_FILE).write_bytes((trained.out / CHECKPOINT_FILE).read_bytes()[:200])
    return {
        "small": str(inputs / "small.txt"),
        "latin1": str(inputs / "latin1.txt"),
        "empty": str(inputs / "empty.txt"),
        "short": str(inputs / "short.txt"),
        "directory": str(inputs / "a-directory"),
        "missing_file": str(inputs / "missing.txt"),
        "missing_directory": str(inputs / "missing-run"),
        "regular_file": str(inputs / "regular-file"),
        "corrupted": str(inputs / "corrupted"),
        "truncated": str(inputs / "truncated"),
        "checkpoint": str(trained.out),
        "out": str(tmp_path / "out"),
    }


@pytest.mark.parametrize(("argv", "fragments"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_exits_with_status_two(argv, fragments, bad_input_paths, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so that a default --out would land inside the snapshot
    argv = [arg.format(**bad_input_paths) for arg in argv]
    if argv[0] == "train" and "--out" not in argv:
        argv += ["--out", bad_input_paths["out"]]
    fragments = [fragment.format(**bad_input_paths) for fragment in fragments]
    before = tree_snapshot(tmp_path)

    code, stdout, stderr = run_cli(argv, capsys)

    assert code == 2
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if ": error: " in line]
    assert len(error_lines) == 1, stderr
    assert stderr.splitlines()[-1] == error_lines[0]
    assert error_lines[0].startswith(f"python -m grulm_edu {argv[0]}: error: ")
    for fragment in fragments:
        assert fragment in error_lines[0]
    assert stdout == ""
    assert tree_snapshot(tmp_path) == before, "a rejected command must not write anything"


def test_own_corpus_without_prompt_samples_from_newline(tmp_path, capsys):
    corpus = tmp_path / "lower.txt"
    corpus.write_text("but soft, what light through yonder window breaks?\n" * 80, encoding="utf-8")
    code, out, err = run_cli(["train", "--corpus", str(corpus), "--out", str(tmp_path / "run"),
                              "--length", "20", *SMALL_TRAIN_ARGS], capsys)
    assert code == 0, err
    sample = out.split("temperature 0.8):\n", 1)[1]
    assert sample.startswith("\n")
    assert len(sample.rstrip("\n")) > 0


def test_new_run_replaces_old_log(tmp_path, capsys):
    corpus = tmp_path / "small.txt"
    corpus.write_text(SMALL_CORPUS, encoding="utf-8")
    out = tmp_path / "run"
    for steps in ("5", "3"):
        args = ["train", "--corpus", str(corpus), "--out", str(out), "--length", "0", *SMALL_TRAIN_ARGS, "--steps", steps]
        code, _, err = run_cli(args, capsys)
        assert code == 0, err
    records = [json.loads(line) for line in (out / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    train_steps = [record["step"] for record in records if record["kind"] == "train"]
    assert train_steps.count(1) == 1
    assert max(train_steps) == 3
