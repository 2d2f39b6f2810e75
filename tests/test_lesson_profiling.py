"""Notebook 15: XLA cost and memory helpers, the trace wrapper, the pipeline widget and the checkers."""

import functools
import gzip
import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grulm_edu.chars import CharTokenizer
from grulm_edu.exercises.profiling import check_compile_count, check_matmul_flops, check_peak_fraction
from grulm_edu.losses import cross_entropy, token_cross_entropy
from grulm_edu.model import ModelConfig, forward, init_params
from grulm_edu.widgets.profiling import (
    PHASES,
    VARIANTS,
    PipelineRun,
    encode_lines,
    pad_batch,
    padded_length,
    pipeline_view,
    plot_pipeline_runs,
    run_pipeline,
)
from grulm_edu.xla_stats import (
    Cost,
    Memory,
    achieved_gflops,
    compile_count,
    compile_fn,
    cost_analysis,
    gru_matmul_flops,
    matmul_gflops,
    memory_analysis,
    summarize_trace,
    trace,
)


# XLA cost and memory analysis


@pytest.mark.parametrize("M, K, N", [(64, 32, 16), (7, 5, 3)])
def test_cost_analysis_of_matmul(M, K, N):
    compiled = compile_fn(jnp.matmul, jnp.ones((M, K)), jnp.ones((K, N)))
    cost = cost_analysis(compiled)
    assert cost.flops == 2 * M * K * N
    assert cost.bytes_accessed == 4 * (M * K + K * N + M * N)  # read both inputs, write the output once
    assert cost.arithmetic_intensity == pytest.approx(cost.flops / cost.bytes_accessed)


class FakeCompiled:
    def __init__(self, cost=None, memory=None):
        self._cost, self._memory = cost, memory

    def cost_analysis(self):
        return self._cost

    def memory_analysis(self):
        return self._memory


def test_cost_analysis_accepts_list_of_dicts():
    raw = {"flops": 10.0, "bytes accessed": 4.0, "transcendentals": 2.0}
    assert cost_analysis(FakeCompiled(cost=[raw])) == Cost(10.0, 4.0, 2.0)
    assert cost_analysis(FakeCompiled(cost=raw)) == Cost(10.0, 4.0, 2.0)


@pytest.mark.parametrize("raw", [None, [], {}])
def test_cost_analysis_missing_raises(raw):
    with pytest.raises(RuntimeError, match="no cost analysis"):
        cost_analysis(FakeCompiled(cost=raw))


def test_memory_analysis_of_matmul():
    memory = memory_analysis(compile_fn(jnp.matmul, jnp.ones((64, 32)), jnp.ones((32, 16))))
    assert memory.argument_bytes == 4 * (64 * 32 + 32 * 16)
    assert memory.output_bytes == 4 * 64 * 16
    assert memory.total_bytes == memory.argument_bytes + memory.output_bytes + memory.temp_bytes - memory.alias_bytes


def test_memory_analysis_none_when_unreported():
    assert memory_analysis(FakeCompiled(memory=None)) is None


def test_memory_total_counts_alias_once():
    assert Memory(100, 40, 10, 40, 0).total_bytes == 110


def test_scan_body_counted_once():
    # The notebook teaches this XLA behaviour; if it changes, section 4 must change too.
    def repeated(h, W, length):
        return jax.lax.scan(lambda h, _: (h @ W, None), h, None, length=length)[0]

    h, W = jnp.ones((4, 8)), jnp.ones((8, 8))
    flops_1_step = cost_analysis(compile_fn(functools.partial(repeated, length=1), h, W)).flops
    flops_10_steps = cost_analysis(compile_fn(functools.partial(repeated, length=10), h, W)).flops
    assert flops_1_step == 2 * 4 * 8 * 8
    assert flops_10_steps < 2 * flops_1_step


def test_compile_fn_reuses_jit_cache(caplog):
    jitted = jax.jit(lambda x: x * 2)
    x = jnp.ones(3)  # built outside, because creating it compiles too
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        compile_fn(jitted, x)
        jitted(x)
    compiles = [r for r in caplog.records if "Finished XLA compilation" in r.getMessage()]
    assert len(compiles) == 1


# Achieved rates


def test_achieved_gflops():
    assert achieved_gflops(2e9, 0.5) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="seconds must be > 0"):
        achieved_gflops(1e9, 0.0)
    with pytest.raises(ValueError, match="flops must be"):
        achieved_gflops(-1.0, 1.0)


def test_matmul_gflops_probe():
    probe = matmul_gflops(64, repeats=2)
    assert probe["flops"] == 2 * 64**3
    assert probe["gflops"] == pytest.approx(probe["flops"] / probe["median_s"] / 1e9)
    assert probe["best_gflops"] >= probe["gflops"]
    with pytest.raises(ValueError, match="size must be a positive int"):
        matmul_gflops(0)


# The analytic GRU count against XLA on an unrolled model (a Python loop has no while op)


@pytest.fixture(scope="module")
def small_model():
    config = ModelConfig(vocab_size=20, embed_size=16, hidden_size=64)
    params = init_params(jax.random.key(3), config)
    ids = jax.random.randint(jax.random.key(4), (8, 5), 0, 20)
    return config, params, ids


def test_gru_matmul_flops_forward_matches_xla(small_model):
    config, params, ids = small_model
    analytic = gru_matmul_flops(config, 8, 4, training=False)
    V, E, H = 20, 16, 64
    assert analytic == 2 * 8 * 4 * (E * 3 * H + H * 3 * H + H * V)
    xla = cost_analysis(compile_fn(lambda p, x: forward(p, x, use_scan=False)[0], params, ids[:, :-1])).flops
    # XLA also counts biases and gates; with H = 64 they add under 10%.
    assert analytic <= xla <= 1.1 * analytic


def test_gru_matmul_flops_training_is_three_forwards(small_model):
    config, params, ids = small_model

    def loss(p, x):
        return cross_entropy(forward(p, x[:, :-1], use_scan=False)[0], x[:, 1:])

    xla = cost_analysis(compile_fn(jax.value_and_grad(loss), params, ids)).flops
    analytic = gru_matmul_flops(config, 8, 4)
    assert analytic == 3 * gru_matmul_flops(config, 8, 4, training=False)
    assert 0.9 * analytic <= xla <= 1.2 * analytic


def test_gru_matmul_flops_rejects_bad_sizes(small_model):
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        gru_matmul_flops(small_model[0], 8, 0)


def test_compile_count_counts_shapes():
    jitted = jax.jit(lambda x: x.sum())
    for n in (3, 4, 3, 5, 4):
        jitted(jnp.ones(n))
    assert compile_count(jitted) == 3


def test_compile_count_needs_jitted_function():
    with pytest.raises(TypeError, match="pass the function returned by jax.jit"):
        compile_count(lambda x: x)


# Trace


def test_trace_writes_files(tmp_path):
    f = jax.jit(lambda x: jnp.tanh(x @ x))
    x = jnp.ones((32, 32))
    f(x).block_until_ready()
    with trace(tmp_path) as written:
        assert written.files == []  # filled when the block ends
        f(x).block_until_ready()
    names = [p.name for p in written.files]
    assert any(name.endswith(".xplane.pb") for name in names)
    assert "perfetto_trace.json.gz" in names
    assert all(not p.is_absolute() for p in written.files)
    trace_file = written.find(".trace.json.gz")
    assert trace_file.is_file()
    assert trace_file.parents[3] == tmp_path  # <tmp_path>/plugins/profile/<timestamp>/<file>
    with pytest.raises(FileNotFoundError, match="ending in '.nothing'"):
        written.find(".nothing")


def test_summarize_trace_totals_hlo_ops(tmp_path):
    events = [
        {"ph": "X", "name": "dot.1", "dur": 1500.0, "args": {"hlo_op": "dot.1"}},
        {"ph": "X", "name": "dot.1", "dur": 500.0, "args": {"hlo_op": "dot.1"}},
        {"ph": "X", "name": "add.2", "dur": 300.0, "args": {"hlo_op": "add.2"}},
        {"ph": "X", "name": "$python frame", "dur": 9000.0, "args": {}},
        {"ph": "M", "name": "thread_name", "args": {"name": "python"}},
    ]
    path = tmp_path / "x.trace.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as file:
        json.dump({"traceEvents": events}, file)
    assert summarize_trace(path) == [("dot.1", 2.0, 2), ("add.2", 0.3, 1)]
    assert summarize_trace(path, top=1) == [("dot.1", 2.0, 2)]


# The pipeline widget


LINES = ["To be, or not to be,", "that is", "the question:", "Whether 'tis nobler in the mind", "to suffer", "a"]


@pytest.fixture(scope="module")
def tiny_scorer():
    tokenizer = CharTokenizer.from_text("\n" + "".join(LINES))
    params = init_params(jax.random.key(5), ModelConfig(tokenizer.vocab_size, 8, 16))
    return params, tokenizer


def test_pad_batch_layout():
    tokens, mask = pad_batch([np.array([5, 6, 7]), np.array([8, 9])], length=4)
    np.testing.assert_array_equal(tokens, [[5, 6, 7, 0, 0], [8, 9, 0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0], [1, 0, 0, 0]])
    assert tokens.dtype == np.int32
    assert mask.dtype == np.float32
    with pytest.raises(ValueError, match="more than length=1"):
        pad_batch([np.array([5, 6, 7])], length=1)


def test_padded_length_per_variant():
    group = [np.zeros(10), np.zeros(20)]  # 9 and 19 targets
    assert padded_length(group, "pad per batch", longest=40) == 19
    assert padded_length(group, "fixed length", longest=40) == 40
    assert padded_length(group, "fixed length, on device", longest=40) == 40
    assert padded_length(group, "bucketed", longest=40) == 32
    with pytest.raises(ValueError, match="unknown variant 'eager'"):
        padded_length(group, "eager", longest=40)


def reference_line_losses(params, tokenizer, lines):
    """Each line alone, unpadded: mean loss per character."""
    result = []
    for ids in encode_lines(lines, tokenizer):
        ids = jnp.asarray(ids)[None, :]
        logits, _ = forward(params, ids[:, :-1])
        result.append(float(token_cross_entropy(logits, ids[:, 1:]).mean()))
    return np.array(result)


@pytest.mark.parametrize("variant", VARIANTS)
def test_run_pipeline_matches_unpadded_reference(tiny_scorer, variant):
    params, tokenizer = tiny_scorer
    run = run_pipeline(variant, params, LINES, tokenizer, batch_size=2)
    np.testing.assert_allclose(run.line_losses, reference_line_losses(params, tokenizer, LINES), rtol=1e-5)
    assert len(run.lengths) == 3
    assert run.compiles == len(set(run.lengths))
    assert set(run.seconds) == set(PHASES)
    assert sum(run.seconds.values()) <= run.total_s


def test_run_pipeline_lengths(tiny_scorer):
    params, tokenizer = tiny_scorer
    # Lines have 20, 7, 13, 31, 9 and 1 characters, so as many targets each.
    assert run_pipeline("pad per batch", params, LINES, tokenizer, batch_size=2).lengths == (20, 31, 9)
    fixed = run_pipeline("fixed length", params, LINES, tokenizer, batch_size=2)
    assert fixed.lengths == (31, 31, 31)
    assert fixed.compiles == 1
    assert run_pipeline("bucketed", params, LINES, tokenizer, batch_size=2).lengths == (32, 32, 16)


def test_run_pipeline_rejects_bad_arguments(tiny_scorer):
    params, tokenizer = tiny_scorer
    with pytest.raises(ValueError, match="unknown variant"):
        run_pipeline("eager", params, LINES, tokenizer)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        run_pipeline("fixed length", params, LINES, tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="lines is empty"):
        run_pipeline("fixed length", params, [], tokenizer)


def fake_run(variant, compile_s):
    seconds = {"prepare": 0.01, "transfer": 0.02, "compile": compile_s, "run and wait": 0.5}
    return PipelineRun(variant, seconds, sum(seconds.values()), 2, (8, 9), np.zeros(4))


def test_pipeline_view_shows_measured_run(tiny_scorer):
    params, tokenizer = tiny_scorer
    measured = fake_run("fixed length", 1.25)
    figure, summary = pipeline_view("fixed length", params=params, lines=LINES, tokenizer=tokenizer, measured=measured)
    assert "fixed length: 1.780 s for 4 lines in 2 batches, 2 compile(s), 2 distinct length(s)" in summary
    assert "compile 1.250 s" in summary
    assert len(figure.axes[0].patches) == len(PHASES)


def test_plot_pipeline_runs_stacks_phases():
    runs = {"a": fake_run("pad per batch", 3.0), "b": fake_run("fixed length", 1.0)}
    ax = plot_pipeline_runs(runs).axes[0]
    assert len(ax.patches) == 2 * len(PHASES)
    right_edges = sorted({round(p.get_x() + p.get_width(), 6) for p in ax.patches})
    assert right_edges[-1] == pytest.approx(runs["a"].total_s)


# Checkers


def test_check_matmul_flops():
    assert check_matmul_flops(2 * 1024 * 64 * 768, 1024, 64, 768).passed
    assert not check_matmul_flops(None, 1024, 64, 768).passed
    assert "multiply-adds" in check_matmul_flops(1024 * 64 * 768, 1024, 64, 768).message
    assert "forward and backward" in check_matmul_flops(6 * 1024 * 64 * 768, 1024, 64, 768).message
    assert "outputs only" in check_matmul_flops(1024 * 768, 1024, 64, 768).message
    assert "too low" in check_matmul_flops(5, 1024, 64, 768).message


def test_check_peak_fraction():
    expected = 1.6e9 / 0.08 / 1e9 / 40.0  # 0.5
    assert check_peak_fraction(expected, 1.6e9, 0.08, 40.0).passed
    assert not check_peak_fraction(None, 1.6e9, 0.08, 40.0).passed
    assert "percentage" in check_peak_fraction(50.0, 1.6e9, 0.08, 40.0).message
    assert "factor of 1000" in check_peak_fraction(0.0005, 1.6e9, 0.08, 40.0).message
    assert "achieved GFLOP/s" in check_peak_fraction(20.0, 1.6e9, 0.08, 40.0).message
    assert "peak over achieved" in check_peak_fraction(2.0, 1.6e9, 0.08, 40.0).message


def test_check_compile_count():
    lengths = [48, 52, 48, 64, 52, 48, 64, 50]
    assert check_compile_count(4, lengths).passed
    assert not check_compile_count(None, lengths).passed
    assert "distinct shapes, not calls" in check_compile_count(8, lengths).message
    assert "compiles again" in check_compile_count(1, lengths).message
    assert "too high" in check_compile_count(5, lengths).message
