"""One group across hosts: ``jax.distributed`` set-up and the few collectives a sweep needs.

Under ``jax.distributed`` every process runs the same sweep, one group after another; the
run axis of each group is sharded over every process's devices (:func:`runner.run_mesh`
uses the global device list), metrics are gathered from all of them (:func:`to_host`),
orbax writes each checkpoint once (each shard by the process that holds it, the metadata
by process 0), and process 0 alone claims groups, writes records and reports
(:func:`is_writer`); the others follow its decisions (:func:`agree`). The checkpoint and
results folders must be on storage every process sees.

With one process (the default) every function here is the identity or a no-op, and jax
is never asked to start a distributed runtime.
"""

from __future__ import annotations

import os

import jax
import numpy as np

CPU_COLLECTIVES = "gloo"  # jax's CPU backend needs a collectives library for cross-process programs


def in_slurm_step() -> bool:
    """Inside ``srun`` with more than one task: jax reads the coordinator, the number of
    processes and this process's id from Slurm's environment."""
    return "SLURM_STEP_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1


def option_errors(coordinator: str | None, num_processes: int | None, process_id: int | None) -> list[str]:
    """Messages for inconsistent ``--coordinator/--num-processes/--process-id`` options
    (all three or none; ``0 <= process id < processes``; ``host:port``)."""
    given = [x is not None for x in (coordinator, num_processes, process_id)]
    if not any(given):
        return []
    if not all(given):
        return ["--coordinator, --num-processes and --process-id go together (all three, or none)"]
    errors = []
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        errors.append(f"--coordinator must be HOST:PORT (process 0's address), got {coordinator!r}")
    if num_processes < 1:
        errors.append(f"--num-processes must be >= 1, got {num_processes}")
    elif not 0 <= process_id < num_processes:
        errors.append(f"--process-id must be in 0..{num_processes - 1}, got {process_id}")
    return errors


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None) -> bool:
    """Start ``jax.distributed`` from the options, or from Slurm's environment inside a
    multi-task ``srun``; do nothing otherwise. Returns whether this is a multi-process run.

    Must run before anything touches a jax backend (building a sweep's groups does)."""
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    if coordinator is None and not in_slurm_step():
        return False
    # only the CPU backend reads it; a GPU run uses NCCL whatever this says
    jax.config.update("jax_cpu_collectives_implementation", CPU_COLLECTIVES)
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    return True


def is_writer() -> bool:
    """This process writes files (records, reports): process 0, or the only process."""
    return jax.process_index() == 0


def agree(flag: bool) -> bool:
    """Process 0's ``flag`` on every process (a decision only process 0 can make, e.g.
    whether it holds a group's claim); ``flag`` itself with one process."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag, np.bool_)))


def agree_mask(mask: list[bool]) -> list[bool]:
    """Process 0's ``[n]`` bools on every process (which groups the sweep trains)."""
    if jax.process_count() == 1 or not mask:
        return [bool(m) for m in mask]
    from jax.experimental import multihost_utils

    return [bool(m) for m in multihost_utils.broadcast_one_to_all(np.asarray(mask, np.bool_))]


def barrier(name: str) -> None:
    """Wait until every process gets here (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def to_host(a) -> np.ndarray:
    """The whole of array ``a`` as numpy on this process: a plain copy when this process
    holds all of it, else an all-gather over the processes (every process must call it)."""
    if getattr(a, "is_fully_addressable", True):
        return np.asarray(a)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(a, tiled=True))
