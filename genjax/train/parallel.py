"""Data parallelism with one ``jax.sharding.Mesh`` over a ``"data"`` axis (no ``pmap``).

The batch is sharded along its leading axis over ``"data"``; parameters, optimizer state
and EMA are replicated; ``jax.jit`` inserts the gradient all-reduce. The same code runs on
1 device, N local devices, or N hosts after ``initialize_distributed()``.

The mesh axis is ``AxisType.Auto`` (``jax.make_mesh`` defaults to ``Explicit`` axes, under
which ``jit`` would not partition an unannotated computation for us).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = ["DATA_AXIS", "data_mesh", "check_mesh", "replicated", "batch_sharded", "initialize_distributed"]

DATA_AXIS = "data"


def data_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh ``("data",)`` over the first ``num_devices`` of ``jax.devices()`` (default: all)."""
    devices = jax.devices()
    if num_devices is None:
        num_devices = len(devices)
    if not isinstance(num_devices, int) or not 1 <= num_devices <= len(devices):
        raise ValueError(f"num_devices must be an int in [1, {len(devices)}], got {num_devices!r}")
    return Mesh(np.asarray(devices[:num_devices]), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def check_mesh(mesh: Mesh) -> Mesh:
    """Return ``mesh`` if it is a ``Mesh`` with a ``"data"`` axis, else raise ``ValueError``."""
    if not isinstance(mesh, Mesh) or DATA_AXIS not in mesh.axis_names:
        raise ValueError(f"mesh must be a jax.sharding.Mesh with a {DATA_AXIS!r} axis (see data_mesh), got {mesh!r}")
    return mesh


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The sharding that splits an array's leading (batch) axis over ``"data"``."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def _multihost_env() -> bool:
    env = os.environ
    return (
        "JAX_COORDINATOR_ADDRESS" in env  # explicit set-up (also read by jax itself)
        or int(env.get("SLURM_NTASKS", "1")) > 1  # srun with several tasks
        or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1  # mpirun
        or "," in env.get("TPU_WORKER_HOSTNAMES", "")  # multi-host TPU slice
    )


def initialize_distributed(**kwargs) -> bool:
    """Call ``jax.distributed.initialize(**kwargs)`` when running on several hosts.

    It runs when ``kwargs`` are given (e.g. ``coordinator_address``, ``num_processes``,
    ``process_id``) or the environment names a multi-host job: ``JAX_COORDINATOR_ADDRESS``,
    ``SLURM_NTASKS > 1``, ``OMPI_COMM_WORLD_SIZE > 1`` or several ``TPU_WORKER_HOSTNAMES``
    (jax auto-detects the rest from the same variables). Call it first thing, before any
    other jax call. Returns whether it initialised. After it, ``jax.devices()`` lists the
    devices of all hosts and ``data_mesh()`` spans them; every process must run the same
    program and pass the same ``data`` to ``fit``.
    """
    if not kwargs and not _multihost_env():
        return False
    jax.distributed.initialize(**kwargs)
    return True
