"""Run benchmark contenders in separate worker processes, interleaved.

Each contender is a worker process (its own framework, its own thread pool)
that warms up once, then replies to ``run N`` on stdin with the seconds N
steps took. The parent sends one ``run`` to each worker in turn, round after round,
so slow drift of the machine (other load, frequency changes) hits every
contender alike. PyTorch and XLA share no process: in one process their
thread pools fight over the cores.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections.abc import Callable


class Worker:
    """One contender's process, speaking the ``run N`` / seconds protocol."""

    def __init__(self, name: str, argv: list[str], env: dict | None = None):
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.info = self._read_line()  # the worker's first line: what it measured during warm-up

    def _read_line(self) -> str:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker {self.name!r} exited with status {self.process.wait()}")
        return line.strip()

    def run(self, steps: int) -> float:
        self.process.stdin.write(f"run {steps}\n")
        self.process.stdin.flush()
        return float(self._read_line())

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
            self.process.wait(timeout=60)


def serve(warm_up: Callable[[], str], step: Callable[[int], float]) -> None:
    """Serve the worker side: print `warm_up()`'s line, then reply to each ``run N`` with ``step(N)`` seconds."""
    print(warm_up(), flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        print(f"{step(int(command[1])):.9f}", flush=True)


def interleave(workers: list[Worker], rounds: int, steps: int) -> dict[str, list[float]]:
    """Seconds per step of every worker, `rounds` times, rotating the order each round."""
    times: dict[str, list[float]] = {w.name: [] for w in workers}
    for r in range(rounds):
        order = workers[r % len(workers):] + workers[: r % len(workers)]
        for worker in order:
            times[worker.name].append(worker.run(steps) / steps)
    return times


def summarize(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)
