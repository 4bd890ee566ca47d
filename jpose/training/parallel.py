"""Data parallelism: one mesh with a ``data`` axis, batches sharded, parameters replicated.

This is jit-with-shardings, the successor of ``pmap``: the train step is written for the
*global* batch, XLA inserts the gradient all-reduce, and batch-norm statistics are those
of the global batch (a mean over the sharded axis is a global mean).

Multi-host: every process calls :func:`initialize_distributed` first, reads only its
slice of each global batch, and :func:`global_batch` assembles the global array with
``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "make_mesh",
    "replicated",
    "batch_sharded",
    "check_batch_size",
    "global_batch",
    "initialize_distributed",
]

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1D mesh over all (global) devices with the single axis ``"data"``."""
    devices = jax.devices() if devices is None else list(devices)
    # Mesh (not jax.make_mesh): its axis type stays Auto on every JAX version we support,
    # so sharding propagation, not explicit sharding-in-types, places intermediates.
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data``; other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    """Raises ``ValueError`` unless the devices and processes divide the global batch."""
    devices = mesh.devices.size
    if global_batch_size % devices:
        raise ValueError(
            f"global batch size {global_batch_size} is not divisible by the {devices} "
            f"devices of the mesh; choose a multiple of {devices}.")
    if global_batch_size % jax.process_count():
        raise ValueError(
            f"global batch size {global_batch_size} is not divisible by the "
            f"{jax.process_count()} processes.")


def global_batch(local_batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles this process's slice of a batch into global arrays sharded on ``data``.

    Each process passes ``global_batch_size / process_count`` examples; the global array
    stacks the processes' slices in process order. Nested dicts (one per stream) keep
    their structure.
    """
    sharding = batch_sharded(mesh)
    return jax.tree.map(
        lambda v: jax.make_array_from_process_local_data(sharding, np.asarray(v)),
        dict(local_batch))


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None,
                           local_device_ids: Sequence[int] | None = None) -> bool:
    """Joins a multi-process job through ``jax.distributed`` when one is configured.

    Explicit arguments (coordinator ``host:port``, process count and id) come first. With
    none given, JAX auto-detects clusters it knows (SLURM, Open MPI, Kubernetes, Cloud
    TPU) when ``JAX_COORDINATOR_ADDRESS`` or such an environment is present; a plain
    single-process run does nothing. Returns whether distributed mode is on.

    On CPU the processes' collectives go through gloo, which this selects.
    """
    explicit = coordinator_address is not None or num_processes is not None
    if explicit and (coordinator_address is None or num_processes is None
                     or process_id is None):
        raise ValueError(
            "distributed: coordinator_address, num_processes and process_id must be "
            f"given together; got {coordinator_address!r}, {num_processes!r}, "
            f"{process_id!r}.")
    cluster_env = any(k in os.environ for k in (
        "JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE",
        "TPU_WORKER_HOSTNAMES"))
    if not explicit and not cluster_env:
        return False
    if num_processes == 1:
        return False
    try:  # The default on recent JAX; the option may disappear once it is the only one.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, KeyError, ValueError):
        pass
    kwargs = {}
    if explicit:
        kwargs = dict(coordinator_address=coordinator_address,
                      num_processes=num_processes, process_id=process_id)
    if local_device_ids is not None:
        kwargs["local_device_ids"] = list(local_device_ids)
    jax.distributed.initialize(**kwargs)
    logging.info("Process %d of %d; %d local / %d global devices.", jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count())
    return True
