"""Data parallelism through JAX sharding: one mesh axis over the batch.

`data_mesh` builds a one-axis `jax.sharding.Mesh` named ``"data"`` over the
available devices. `shard_batches` places precomputed batches so that the
batch axis ``B`` is split across that axis. `replicate` copies parameters and
optimizer state to every device. The jitted train step then runs unchanged:
XLA partitions it and inserts the gradient all-reduce. The same code runs on
simulated CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=8``),
GPUs, TPUs, or several hosts after `jax.distributed.initialize()`.
Left out: model (tensor) parallelism.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["data_mesh", "shard_batches", "replicate"]


def data_mesh(devices=None) -> Mesh:
    """Build a one-axis mesh named ``"data"`` over `devices` (default: all of them)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), ("data",))


def shard_batches(tokens: np.ndarray, mask: np.ndarray, mesh: Mesh):
    """Place ``tokens (N, B, T+1)`` and ``mask (N, B, T)`` with ``B`` split over the mesh.

    ``B`` must be divisible by the number of devices on the ``"data"`` axis.
    """
    size = mesh.shape["data"]
    if tokens.shape[1] % size:
        raise ValueError(
            f"batch size {tokens.shape[1]} is not divisible by the {size} devices of the mesh; "
            f"use a batch size that is a multiple of {size}"
        )
    spec = NamedSharding(mesh, PartitionSpec(None, "data", None))
    return jax.device_put(tokens, spec), jax.device_put(mask, spec)


def replicate(tree, mesh: Mesh):
    """Copy every array of `tree` to every device of `mesh`."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
