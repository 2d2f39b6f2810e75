"""XLA's own accounting of a compiled function, a matmul yardstick and a profiler trace wrapper.

`cost_analysis` and `memory_analysis` read what XLA reports for one compiled
executable (``jax.jit(f).lower(*args).compile()``). XLA counts the body of a
while loop once, whatever its trip count, so the FLOPs and bytes of a
`lax.scan` over ``T`` steps include its body once, not ``T`` times.
`gru_matmul_flops` gives the analytic matmul count of the GRU model instead.
`matmul_gflops` measures the rate this machine reaches on one large square
matmul, the yardstick for achieved GFLOP/s. Left out: per-op rooflines and
device memory profiles.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import pathlib
from collections import defaultdict
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp

from grulm_edu.model import ModelConfig
from grulm_edu.profiling import time_fn

__all__ = [
    "Cost",
    "Memory",
    "TraceFiles",
    "compile_fn",
    "cost_analysis",
    "memory_analysis",
    "achieved_gflops",
    "matmul_gflops",
    "gru_matmul_flops",
    "compile_count",
    "trace",
    "summarize_trace",
]


@dataclasses.dataclass(frozen=True)
class Cost:
    """XLA's cost estimate for one call of a compiled function.

    Attributes:
        flops: floating-point operations, counting a multiply-add as 2.
        bytes_accessed: bytes read and written by all operations.
        transcendentals: calls of exp, log, tanh and similar functions.
    """

    flops: float
    bytes_accessed: float
    transcendentals: float

    @property
    def arithmetic_intensity(self) -> float:
        """FLOPs per byte accessed, or 0 when no bytes are accessed."""
        return self.flops / self.bytes_accessed if self.bytes_accessed else 0.0


@dataclasses.dataclass(frozen=True)
class Memory:
    """Buffer sizes, in bytes, that XLA assigned to one compiled function.

    Attributes:
        argument_bytes: the inputs (parameters, optimizer state, batch).
        output_bytes: the results.
        temp_bytes: temporaries, such as activations kept for the backward pass.
        alias_bytes: outputs that reuse an input's buffer (donated arguments).
        generated_code_bytes: the compiled machine code.
    """

    argument_bytes: int
    output_bytes: int
    temp_bytes: int
    alias_bytes: int
    generated_code_bytes: int

    @property
    def total_bytes(self) -> int:
        """Arguments, outputs and temporaries, counting an aliased buffer once."""
        return self.argument_bytes + self.output_bytes + self.temp_bytes - self.alias_bytes


def compile_fn(fn: Callable, *args, **kwargs) -> jax.stages.Compiled:
    """Compile `fn` for these arguments, ahead of time.

    A function already wrapped in `jax.jit` is lowered as it is, so its static
    arguments and its compilation cache apply. Calling that jitted function
    afterwards with arguments of the same shapes does not compile again.
    """
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    return jitted.lower(*args, **kwargs).compile()


def cost_analysis(compiled: jax.stages.Compiled) -> Cost:
    """Return XLA's FLOPs, bytes accessed and transcendentals for one call of `compiled`.

    Raises:
        RuntimeError: the backend reports no cost analysis.
    """
    raw = compiled.cost_analysis()
    # Some JAX versions return a list holding one dict per compiled module;
    # jax 0.10 returns the dict itself.
    if isinstance(raw, (list, tuple)):
        raw = raw[0] if raw else None
    if not raw:
        raise RuntimeError(
            f"XLA returned no cost analysis ({raw!r}) on backend {jax.default_backend()!r}; "
            f"count the FLOPs analytically instead (see gru_matmul_flops)"
        )
    return Cost(
        flops=float(raw.get("flops", 0.0)),
        bytes_accessed=float(raw.get("bytes accessed", 0.0)),
        transcendentals=float(raw.get("transcendentals", 0.0)),
    )


def memory_analysis(compiled: jax.stages.Compiled) -> Memory | None:
    """Return the buffer sizes XLA assigned to `compiled`, or None when the backend does not report them."""
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    return Memory(
        argument_bytes=int(stats.argument_size_in_bytes),
        output_bytes=int(stats.output_size_in_bytes),
        temp_bytes=int(stats.temp_size_in_bytes),
        alias_bytes=int(stats.alias_size_in_bytes),
        generated_code_bytes=int(stats.generated_code_size_in_bytes),
    )


def achieved_gflops(flops: float, seconds: float) -> float:
    """Return the rate ``flops / seconds`` in GFLOP/s (1e9 FLOPs per second)."""
    if not flops >= 0:
        raise ValueError(f"flops must be a number >= 0, got {flops!r}")
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}; time the call with time_fn first")
    return flops / seconds / 1e9


def matmul_gflops(size: int = 1024, dtype=jnp.float32, *, repeats: int = 5, key: jax.Array | None = None) -> dict:
    """Measure this machine's GFLOP/s on one ``(size, size) @ (size, size)`` matmul.

    One call costs ``2 * size**3`` FLOPs. The matmul is jitted, warmed up and
    timed with `grulm_edu.profiling.time_fn`.

    Returns:
        ``{"size", "flops", "median_s", "min_s", "gflops", "best_gflops"}``:
        ``gflops`` from the median time, ``best_gflops`` from the fastest round.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    key = jax.random.key(0) if key is None else key
    key_a, key_b = jax.random.split(key)
    a = jax.random.normal(key_a, (size, size), dtype)
    b = jax.random.normal(key_b, (size, size), dtype)
    timing = time_fn(jax.jit(jnp.matmul), a, b, repeats=repeats)
    flops = 2.0 * size**3
    return {
        "size": size,
        "flops": flops,
        "median_s": timing["median_s"],
        "min_s": timing["min_s"],
        "gflops": achieved_gflops(flops, timing["median_s"]),
        "best_gflops": achieved_gflops(flops, timing["min_s"]),
    }


def gru_matmul_flops(config: ModelConfig, batch_size: int, seq_len: int, *, training: bool = True) -> int:
    """Count the matmul FLOPs of the GRU language model on one ``(B, T)`` batch.

    The forward pass runs three matmuls per position: the input projection
    ``(E, 3H)``, the recurrent projection ``(H, 3H)`` and the head ``(H, V)``,
    so it costs ``2 * B * T * (E*3H + H*3H + H*V)``. The backward pass of each
    matmul is two matmuls of the same size (the gradients of its input and of
    its weight), so training costs three times the forward pass. Biases,
    gates and the softmax are left out; they add a few percent.
    """
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    V, E, H = config.vocab_size, config.embed_size, config.hidden_size
    forward = 2 * batch_size * seq_len * (E * 3 * H + H * 3 * H + H * V)
    return 3 * forward if training else forward


def compile_count(jitted: Callable) -> int:
    """Return how many argument signatures (shapes, dtypes, static values) a `jax.jit` function was called with.

    Each new signature compiles once, so the count grows by one per compile.
    NOTE: reads the private ``_cache_size()`` of jitted functions (jax 0.4 to
    0.10). A signature compiled ahead of time with `compile_fn` is counted
    only when the function is first called with it, and that call does not
    compile again.
    """
    size = getattr(jitted, "_cache_size", None)
    if size is None:
        raise TypeError(
            f"{jitted!r} has no _cache_size(); pass the function returned by jax.jit, "
            f"not the Python function it wraps"
        )
    return int(size())


@dataclasses.dataclass
class TraceFiles:
    """The files one `trace` wrote.

    Attributes:
        directory: the folder given to `trace`.
        files: paths relative to `directory`, filled in when the trace stops.
    """

    directory: pathlib.Path
    files: list[pathlib.Path] = dataclasses.field(default_factory=list)

    def find(self, suffix: str) -> pathlib.Path:
        """Return the full path of the one written file whose name ends with `suffix`."""
        matches = [f for f in self.files if f.name.endswith(suffix)]
        if len(matches) != 1:
            names = ", ".join(str(f) for f in self.files) or "none"
            raise FileNotFoundError(f"expected one written file ending in {suffix!r}, found {len(matches)} among: {names}")
        return self.directory / matches[0]


@contextlib.contextmanager
def trace(directory: str | pathlib.Path, *, perfetto: bool = True) -> Iterator[TraceFiles]:
    """Record a `jax.profiler` trace of the block into `directory`.

    JAX writes ``plugins/profile/<timestamp>/`` under `directory`: an
    ``.xplane.pb`` file for TensorBoard's profile plugin and a
    ``.trace.json.gz`` file in the Chrome trace format; with `perfetto` also
    ``perfetto_trace.json.gz``. Both JSON files open in Perfetto
    (https://ui.perfetto.dev, "Open trace file").

    Yields:
        A `TraceFiles` whose ``files`` list holds the new files, relative to
        `directory`, once the block has finished.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    before = {p for p in directory.rglob("*") if p.is_file()}
    written = TraceFiles(directory)
    with jax.profiler.trace(directory, create_perfetto_trace=perfetto):
        yield written
    after = {p for p in directory.rglob("*") if p.is_file()}
    written.files.extend(sorted(p.relative_to(directory) for p in after - before))


def summarize_trace(path: str | pathlib.Path, top: int = 10) -> list[tuple[str, float, int]]:
    """Total the time of each XLA operation in a ``.trace.json.gz`` file.

    Only events that name an HLO operation (``args.hlo_op``) count, so Python
    frames and runtime bookkeeping are left out. A ``while`` operation's time
    includes the operations of its body, which are also listed on their own.

    Returns:
        Up to `top` tuples ``(op name, total milliseconds, number of calls)``,
        longest first.
    """
    with gzip.open(path, "rt", encoding="utf-8") as file:
        events = json.load(file)["traceEvents"]
    total_us: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for event in events:
        op = event.get("args", {}).get("hlo_op")
        if event.get("ph") == "X" and op is not None:
            total_us[op] += float(event.get("dur", 0.0))
            calls[op] += 1
    ranked = sorted(total_us, key=lambda op: -total_us[op])[:top]
    return [(op, total_us[op] / 1000.0, calls[op]) for op in ranked]
