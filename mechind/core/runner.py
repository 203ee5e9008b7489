"""The shared sweep runner: many runs as one compiled, vmapped program.

A pipeline describes *one* run as a :class:`Task` of pure functions. The runner vmaps
them over a leading run axis (seeds x vmappable hyper-parameters such as lambda, alpha,
learning rate), shards that axis over every local device, and drives ``lax.scan`` in
chunks from the host: between chunks it updates the progress bar, marks runs whose loss
went non-finite as failed, and writes an orbax checkpoint, so a killed group resumes
from its last chunk and ends with the same numbers as an uninterrupted one.

Every pipeline (``mechind.train``, ``mechsparse.train``, ``cg.fitting``) uses this; there
is no second runner. A run's data always take one route: ``task.make_data(key, given)``
inside one compiled, vmapped call, where ``given`` is the run's slice of the arrays passed
to :func:`run_group` (datasets drawn on the host, or a user's arrays; see
:mod:`mechind.core.datasets`) or ``None`` (the task draws its own from the key).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mechind.core import distributed, report, rng

Array = jax.Array
PyTree = Any


def _is_whole(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def whole_number_errors(config) -> list[str]:
    """Messages for the fields of a dataclass ``config`` annotated ``int`` (or a tuple of
    ints) that hold something else: a ``num_steps`` of 20.5 would otherwise pass ``>= 1``
    and train a step more than asked (``range`` and ``lax.scan`` round it differently)."""
    import typing

    errors = []
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        tp, v = hints.get(f.name), getattr(config, f.name)
        if tp is int and not _is_whole(v):
            errors.append(f"{f.name} must be a whole number, got {v!r}")
        elif tp == tuple[int, ...] and not (isinstance(v, (tuple, list)) and all(_is_whole(x) for x in v)):
            errors.append(f"{f.name} must be whole numbers, got {v!r}")
    return errors


@dataclasses.dataclass(frozen=True)
class Task:
    """One training run, as pure single-run functions (the runner adds the run axis).

    Attributes:
      make_data: ``(key, given) -> data`` (arrays only; regenerated on resume, never
        checkpointed). ``given`` is the run's slice of :func:`run_group`'s ``given`` (a
        pytree of arrays) or ``None``, when the task draws its data from ``key``.
      init: ``(key, data, hparams) -> state`` (params, optimiser state, ...).
      step: ``(state, data, hparams, step) -> (state, loss)``; ``step`` is the global
        step index (int32 scalar) so randomness is ``fold_in(key, step)``, identical
        whether or not the run was interrupted.
      evaluate: ``(state, data, hparams) -> dict of arrays`` (held-out metrics).
      num_steps: total training steps.
      name: shown on the progress bar.
    """

    make_data: Callable[[Array, PyTree], PyTree]
    init: Callable[[Array, PyTree, PyTree], PyTree]
    step: Callable[[PyTree, PyTree, PyTree, Array], tuple[PyTree, Array]]
    evaluate: Callable[[PyTree, PyTree, PyTree], dict]
    num_steps: int
    name: str = "train"
    eval_bytes: int = 0  # peak temporary memory of one run's evaluate (e.g. SIS kernels)

    def __post_init__(self):
        if not _is_whole(self.num_steps) or self.num_steps < 1:
            raise ValueError(f"num_steps must be a whole number >= 1, got {self.num_steps!r}")
        # every use of a task (runner, make_train, benchmarks) draws the same random stream
        for f in ("make_data", "init", "step", "evaluate"):
            fn = getattr(self, f)
            if not getattr(fn, "_mechind_rng_mode", False):
                wrapped = rng.traced_in_fast_mode(fn)
                wrapped._mechind_rng_mode = True
                object.__setattr__(self, f, wrapped)


def make_train(task: Task) -> Callable[..., tuple[PyTree, dict]]:
    """``train(key, hparams, given=None) -> (state, metrics)``: one whole run as a pure function.

    ``jax.jit(jax.vmap(make_train(task)))(keys, hparams)`` trains many runs at once; the
    chunked :func:`run_group` computes exactly the same thing with checkpoints between.
    """

    def train(key, hparams, given=None):
        data = task.make_data(key, given)
        state = task.init(key, data, hparams)
        state, losses = scan_steps(task, state, data, hparams, jnp.int32(0), task.num_steps)
        metrics = dict(task.evaluate(state, data, hparams))
        metrics["final_loss"] = losses[-1]
        metrics["failed"] = ~jnp.all(jnp.isfinite(losses))
        return state, metrics

    return train


def scan_steps(
    task: Task, state: PyTree, data: PyTree, hparams: PyTree, start: Array, length: int
) -> tuple[PyTree, Array]:
    """``length`` training steps of one run from step ``start`` as one ``lax.scan``:
    ``(state, losses [length])``. The unit the runner compiles (under ``vmap``) and the
    benchmarks time."""

    def body(carry, i):
        return task.step(carry, data, hparams, start + i)

    return jax.lax.scan(body, state, jnp.arange(length, dtype=jnp.int32))


@dataclasses.dataclass
class GroupResult:
    """What a group of runs produced. Arrays have the run axis first.

    Attributes:
      metrics: ``task.evaluate`` output per run (host numpy arrays).
      failed: bool ``[R]``, runs whose loss went non-finite.
      failed_at: int ``[R]``, first chunk end at which that was seen (-1: never).
      final_loss: ``[R]`` loss at the last step.
      state: the final vmapped state.
      loss_history: ``[R, C]`` mean training loss of each chunk run in this call (a
        resumed group starts its history at the resumed chunk).
      compile_s, train_s, eval_s: wall times (compile includes data and init).
      resumed_from: step the group resumed from (0: a fresh start).
      layout: how the runs were laid out (:func:`layout`); numbers are reproducible
        for a given layout, and can move in the last bits (then more, training being
        chaotic) under another.
    """

    metrics: dict
    failed: np.ndarray
    failed_at: np.ndarray
    final_loss: np.ndarray
    state: PyTree
    loss_history: np.ndarray
    compile_s: float
    train_s: float
    eval_s: float
    resumed_from: int
    layout: dict = dataclasses.field(default_factory=dict)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a group, with where it stopped: ``step`` is the last step whose
    chunk finished (checkpointed when the group checkpoints), ``where`` is filled in by
    callers that know more (the experiment and group)."""

    def __init__(self, step: int | None, num_steps: int, where: str = ""):
        super().__init__(step, num_steps, where)
        self.step, self.num_steps, self.where = step, num_steps, where

    def describe(self) -> str:
        at = "before training" if self.step is None else f"at step {self.step} of {self.num_steps}"
        return f"{self.where}, {at}" if self.where else at


def run_mesh() -> Mesh:
    """A 1-D mesh named ``runs`` over every device: this process's, or under
    ``jax.distributed`` every process's (:mod:`mechind.core.distributed`)."""
    return Mesh(np.asarray(jax.devices()), ("runs",))


def device_memory_bytes() -> int:
    """Memory of one local device: the accelerator's limit, or the host's RAM on CPU."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def bytes_per_run(task: Task, key: Array, hparams_one: PyTree, given_one: PyTree = None) -> int:
    """Estimated peak memory of one run: its data, 4x its state (params, optimiser
    moments, gradients, updates) and the evaluation's temporaries. ``given_one``: one
    run's slice of :func:`run_group`'s ``given``."""
    data = jax.eval_shape(task.make_data, key, given_one)
    state = jax.eval_shape(task.init, key, data, hparams_one)
    size = lambda t: sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(t))  # noqa: E731
    return size(data) + 4 * size(state) + task.eval_bytes


# On a CPU there is no parallel width for extra runs to fill: past a few dozen runs a
# vmapped step only spills the runs' parameters and optimiser states out of cache
# (measured: 125 vmapped seeds cost 1.21x 125 sequential ones, 25 cost 1.01x; see
# experiments/bench/seeds.py), so CPU groups are trained in slices of this many runs.
CPU_RUNS_PER_CALL = 32


def auto_runs_per_call(task: Task, keys: Array, hparams: PyTree, fraction: float = 0.5, given: PyTree = None) -> int:
    """How many runs to train at once: as many as fit in ``fraction`` of the devices'
    memory, and at most :data:`CPU_RUNS_PER_CALL` per device on a CPU (every process's
    devices under ``jax.distributed``)."""
    first = lambda t: jax.tree.map(lambda a: a[0], t)  # noqa: E731
    per_run = bytes_per_run(task, keys[0], first(hparams), first(given))
    fit = max(1, int(fraction * device_memory_bytes() * jax.device_count() // max(per_run, 1)))
    if jax.default_backend() == "cpu":
        fit = min(fit, CPU_RUNS_PER_CALL * jax.device_count())
    return fit


def effective_runs_per_call(
    task: Task, keys: Array, hparams: PyTree, max_runs_per_call: int | None, given: PyTree = None
) -> int:
    """How many runs :func:`run_group` trains in one call: ``max_runs_per_call`` (default
    :func:`auto_runs_per_call`) capped at the number of runs."""
    if max_runs_per_call is not None and max_runs_per_call < 1:
        raise ValueError(f"max_runs_per_call must be >= 1, got {max_runs_per_call}")
    r = int(jnp.shape(keys)[0])
    if max_runs_per_call is not None:
        return min(r, max_runs_per_call)
    return min(r, auto_runs_per_call(task, keys, hparams, given=given))


def layout(runs_per_call: int, shard: bool = True) -> dict:
    """What besides config and seed decides a run's last bits: how many runs are vmapped
    together, over how many devices, on which backend and jax. The same config and seed
    under the same layout give the same numbers (DESIGN.md, principle 7). Under
    ``jax.distributed`` it counts every process's devices and names the processes (a key
    absent with one process, so earlier records keep their layout)."""
    lay = {
        "backend": jax.default_backend(),
        "devices": jax.device_count() if shard else 1,
        "runs_per_call": int(runs_per_call),
        "jax": jax.__version__,
    }
    if jax.process_count() > 1:
        lay["processes"] = jax.process_count()
    return lay


def _pad_runs(tree: PyTree, total: int) -> PyTree:
    """Pad the run axis to ``total`` by repeating the last run (results are dropped)."""

    def pad(a):
        n = a.shape[0]
        return a if n == total else jnp.concatenate([a, jnp.repeat(a[-1:], total - n, 0)], 0)

    return jax.tree.map(pad, tree)


def tree_checksums(tree: PyTree) -> list[str]:
    """sha256 of every leaf's host bytes (with its shape and dtype): what a checkpoint must
    give back bit for bit. Orbax checks the structure, not the values. Under
    ``jax.distributed`` every process gathers every leaf (all must call it)."""
    out = []
    for leaf in jax.tree.leaves(tree):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        a = np.ascontiguousarray(distributed.to_host(leaf))
        out.append(hashlib.sha256(f"{a.shape}{a.dtype}".encode() + a.tobytes()).hexdigest())
    return out


class _Checkpointer:
    """Thin orbax wrapper: the latest two states of a group, written after every chunk,
    each with the checksums of its arrays in ``checksums.json`` beside the steps."""

    META = "checksums.json"

    def __init__(self, directory: str | Path):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).absolute()
        # two kept: a step that fails its checksum falls back to the one before
        self.mngr = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=2))

    def steps(self) -> list[int]:
        """Saved steps, newest first."""
        return sorted((int(s) for s in self.mngr.all_steps()), reverse=True)

    def meta(self) -> dict:
        try:
            meta = json.loads((self.directory / self.META).read_text())
            return meta if isinstance(meta, dict) else {}
        except (OSError, ValueError):
            return {}  # missing or damaged: no step can be verified, so none is trusted

    def restore(self, step: int, like: PyTree) -> PyTree:
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), like)
        return self.mngr.restore(step, args=self._ocp.args.StandardRestore(abstract))

    def save(self, step: int, tree: PyTree, layout: dict) -> None:
        # Ctrl-C waits until the step is written and verified: raised inside orbax, it
        # leaves orbax's writer threads half done, printing tracebacks (or aborting) at exit
        with _sigint_deferred():
            self.mngr.save(step, args=self._ocp.args.StandardSave(tree))
            self.mngr.wait_until_finished()
            self._record(step, tree, layout)

    def _record(self, step: int, tree: PyTree, layout: dict) -> None:
        # written after orbax finished: a crash in between leaves this step unverified,
        # and resume then falls back to the step before
        kept = set(self.steps())
        sums = {k: v for k, v in self.meta().get("steps", {}).items() if int(k) in kept}
        sums[str(step)] = tree_checksums(tree)
        if distributed.is_writer():  # once, like orbax's own metadata
            report.write_atomic(self.directory / self.META, json.dumps({"run_layout": layout, "steps": sums}))

    def delete(self, step: int) -> None:
        self.mngr.delete(step)

    def close(self):
        self.mngr.close()


@contextlib.contextmanager
def _sigint_deferred():
    """Hold Ctrl-C (SIGINT) until the block ends, then raise it as KeyboardInterrupt.
    Only the main thread can set signal handlers; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if caught:
        raise KeyboardInterrupt


def _check_writable(directory: Path) -> None:
    """One clear error now instead of orbax's timeout (minutes) on a folder it cannot write."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        report.probe_writable(directory)
    except OSError as e:
        raise report.UserError(
            f"cannot write checkpoints to {directory} ({e.strerror}); make it writable or pick another output folder"
        ) from None


def _fresh(directory: Path) -> _Checkpointer:
    if distributed.is_writer():
        shutil.rmtree(directory, ignore_errors=True)
    distributed.barrier("mechind-checkpoint-fresh")  # nobody opens it before it is gone
    return _Checkpointer(directory)


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def _resume(directory: str | Path, like: PyTree, layout: dict) -> tuple[_Checkpointer, int, PyTree | None]:
    """``(checkpointer, step, restored carry or None)`` of a group's checkpoint folder.

    The newest step whose arrays match their checksums is resumed. Anything else is one
    warning line and a fall back to the step before, or to step 0: a folder orbax cannot
    read (a crash while writing, a disk error, another state layout), a step whose bytes
    changed after it was written (a flipped bit), a step without checksums, or a
    checkpoint written under another run layout (resuming it would mix two layouts' last
    bits in one run). Every fall back ends with the numbers of an uninterrupted run."""
    directory = Path(directory)
    _check_writable(directory)
    try:
        ckpt = _Checkpointer(directory)
        steps = ckpt.steps()
    except Exception as e:  # noqa: BLE001 (orbax raises many types for a damaged folder)
        warnings.warn(
            f"checkpoint folder {directory} is unreadable ({_one_line(e)}); discarding it and training "
            "this group from step 0",
            RuntimeWarning,
            stacklevel=3,
        )
        return _fresh(directory), 0, None
    if not steps:
        return ckpt, 0, None
    meta = ckpt.meta()
    if meta.get("run_layout") != layout:
        ckpt.close()
        why = (
            f"has no readable {_Checkpointer.META} (damaged, or written by an older version)"
            if not meta
            else f"was written under another run layout ({meta.get('run_layout')}, now {layout})"
        )
        warnings.warn(
            f"checkpoint folder {directory} {why}; training this group from step 0", RuntimeWarning, stacklevel=3
        )
        return _fresh(directory), 0, None
    problems = []
    for step in steps:
        try:
            tree = ckpt.restore(step, like)
        except Exception as e:  # noqa: BLE001
            problems.append(f"step {step} is unreadable ({_one_line(e)})")
        else:
            expected = meta.get("steps", {}).get(str(step))
            if expected == tree_checksums(tree):
                if problems:
                    warnings.warn(
                        f"checkpoint folder {directory}: {'; '.join(problems)}; resuming from step {step}",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                return ckpt, step, tree
            problems.append(
                f"step {step} has no checksum (its save was cut short)"
                if expected is None
                else f"step {step} fails its checksum (its files changed after they were written)"
            )
        ckpt.delete(step)  # a later save of this step must not find it taken
    ckpt.close()
    warnings.warn(
        f"checkpoint folder {directory}: {'; '.join(problems)}; training this group from step 0",
        RuntimeWarning,
        stacklevel=3,
    )
    return _fresh(directory), 0, None


def run_group(
    task: Task,
    keys: Array,
    hparams: PyTree,
    *,
    chunk_steps: int = 500,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    shard: bool = True,
    max_chunks: int | None = None,
    max_runs_per_call: int | None = None,
    given: PyTree | None = None,
) -> GroupResult:
    """Train R runs (``keys [R, 2]`` from :func:`mechind.core.rng.seed_keys`, ``hparams`` with
    leading axis R) to completion.

    Args:
      chunk_steps: steps per compiled scan chunk; checkpoint/progress/NaN checks between.
      checkpoint_dir: where to keep the group's latest state; resumes from it if present.
      progress: show a tqdm bar over steps.
      shard: shard the run axis over all local devices (padded to a multiple of them).
      max_chunks: stop after this many chunks (simulates a killed job; used by tests).
      max_runs_per_call: train at most this many runs at a time; the group is split into
        consecutive slices that each run the whole schedule. Default: as many as fit in
        half of the devices' memory (:func:`auto_runs_per_call`), so a sweep never
        outgrows the memory it finds.
      given: per-run arrays with leading axis R, handed to ``task.make_data(key, given)``
        (datasets drawn on the host, a user's arrays); ``None``: the task draws its own.

    Returns:
      A :class:`GroupResult`; when ``max_chunks`` stops a group early, its metrics are
      those of the partial state (the checkpoint lets a later call finish it).
    """
    keys = jnp.asarray(keys)
    r = keys.shape[0]
    if chunk_steps < 1:
        raise ValueError(f"chunk_steps must be >= 1, got {chunk_steps}")
    per_call = effective_runs_per_call(task, keys, hparams, max_runs_per_call, given)
    lay = layout(per_call, shard)
    if per_call >= r:
        return _run_call(task, keys, hparams, chunk_steps, checkpoint_dir, progress, shard, max_chunks, given, lay)
    parts = []
    for lo in range(0, r, per_call):  # consecutive slices, each the whole schedule
        sl = lambda a, lo=lo: a[lo : lo + per_call]  # noqa: E731
        sub_dir = None if checkpoint_dir is None else Path(checkpoint_dir) / f"slice{lo}"
        parts.append(
            _run_call(
                task,
                sl(keys),
                jax.tree.map(sl, hparams),
                chunk_steps,
                sub_dir,
                progress,
                shard,
                max_chunks,
                None if given is None else jax.tree.map(sl, given),
                lay,
            )
        )
    return _concat_results(parts)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How R runs are laid out on the devices: padded to ``total`` (a multiple of the
    devices the run axis is sharded over), with ``place`` putting a tree there."""

    runs: int
    total: int
    sharding: Any  # a NamedSharding over the run axis, or None on one device

    def place(self, tree: PyTree) -> PyTree:
        return tree if self.sharding is None else jax.device_put(tree, self.sharding)

    def pad(self, tree: PyTree) -> PyTree:
        return _pad_runs(tree, self.total)

    def trim(self, a) -> np.ndarray:
        """``a [total, ...]`` -> ``[runs, ...]`` on the host (gathered from every process)."""
        return distributed.to_host(a)[: self.runs]


def plan_runs(runs: int, shard: bool) -> Plan:
    """The :class:`Plan` of ``runs`` runs, sharded over every device when ``shard`` (every
    process's under ``jax.distributed``)."""
    n_dev = jax.device_count() if shard else 1
    total = int(math.ceil(runs / n_dev) * n_dev)
    return Plan(runs, total, NamedSharding(run_mesh(), P("runs")) if shard and n_dev > 1 else None)


def compile_chunk(task: Task, length: int, plan: Plan, carry: PyTree, data: PyTree, hparams: PyTree) -> Callable:
    """``(carry, data, hparams, step0) -> (carry, mean loss per run [total])``: ``length``
    steps of every run as one compiled program (ahead of time, so compile time is measured
    apart from training). The carry is ``{"state", "failed_at", "last_loss"}``; a run whose
    loss went non-finite gets ``failed_at`` = the end of the chunk where that was seen."""

    def run_chunk(c, data, hp, step0):
        st, losses = jax.vmap(lambda s, d, h: scan_steps(task, s, d, h, step0, length))(c["state"], data, hp)
        bad = ~jnp.all(jnp.isfinite(losses), axis=1)
        failed_at = jnp.where((c["failed_at"] < 0) & bad, step0 + length, c["failed_at"])
        return {"state": st, "failed_at": failed_at, "last_loss": losses[:, -1]}, jnp.mean(losses, 1)

    # the carry keeps the run sharding from chunk to chunk
    kw = {"out_shardings": plan.sharding} if plan.sharding is not None else {}
    return jax.jit(run_chunk, donate_argnums=0, **kw).lower(carry, data, hparams, jnp.int32(0)).compile()


class ProgressHook:
    """A tqdm bar over steps, with the runs' mean last loss and the number failed."""

    def __init__(self, task: Task, start: int, runs: int):
        from tqdm.auto import tqdm

        self.runs = runs
        self.bar = tqdm(
            total=task.num_steps, initial=start, desc=task.name, unit="step", leave=False, dynamic_ncols=True
        )

    def __call__(self, step: int, length: int, carry: PyTree) -> None:
        n_failed = int(jnp.sum(carry["failed_at"][: self.runs] >= 0))
        self.bar.set_postfix(loss=f"{float(jnp.nanmean(carry['last_loss'][: self.runs])):.4g}", failed=n_failed)
        self.bar.update(length)

    def close(self) -> None:
        self.bar.close()


class CheckpointHook:
    """The carry saved after every chunk (see :func:`_resume` for the way back)."""

    def __init__(self, ckpt: _Checkpointer, layout: dict):
        self.ckpt, self.layout = ckpt, layout

    def __call__(self, step: int, length: int, carry: PyTree) -> None:
        self.ckpt.save(step, carry, self.layout)

    def close(self) -> None:
        self.ckpt.close()


def host_loop(
    task: Task,
    chunk: Callable[[int], Callable],
    carry: PyTree,
    data: PyTree,
    hparams: PyTree,
    start: int,
    chunk_steps: int,
    hooks: list,
    max_chunks: int | None = None,
) -> tuple[PyTree, list, float]:
    """Drive the compiled chunks from step ``start`` to ``task.num_steps`` (or ``max_chunks``
    chunks), calling every hook ``(step, length, carry)`` after each chunk and closing them
    at the end. Returns ``(carry, per-chunk mean losses [total] each, training seconds)``.
    Ctrl-C becomes :class:`Interrupted` with the last finished step."""
    t_train, chunks, history = 0.0, 0, []
    try:
        while start < task.num_steps and (max_chunks is None or chunks < max_chunks):
            length = min(chunk_steps, task.num_steps - start)
            fn = chunk(length)  # a shorter last chunk compiles once more, here
            t1 = time.perf_counter()
            carry, chunk_loss = fn(carry, data, hparams, jnp.int32(start))
            jax.block_until_ready(carry)
            history.append(distributed.to_host(chunk_loss))
            t_train += time.perf_counter() - t1
            start += length
            chunks += 1
            for hook in hooks:
                hook(start, length, carry)
    except KeyboardInterrupt:
        raise Interrupted(start, task.num_steps) from None
    finally:
        _close_all(hooks)
    return carry, history, t_train


def _close_all(hooks: list) -> None:
    """Close every hook even if one fails or Ctrl-C arrives again: closing the checkpoint
    manager waits for orbax's writer threads, which otherwise print their own tracebacks
    at exit."""
    for hook in hooks:
        try:
            hook.close()
        except Exception as e:  # noqa: BLE001 (a close failing must not hide why we stopped)
            warnings.warn(f"closing {type(hook).__name__} failed ({_one_line(e)})", RuntimeWarning, stacklevel=2)


def _run_call(
    task: Task,
    keys: Array,
    hparams: PyTree,
    chunk_steps: int,
    checkpoint_dir,
    progress: bool,
    shard: bool,
    max_chunks: int | None,
    given: PyTree | None,
    lay: dict,
) -> GroupResult:
    """All of ``keys``' runs as one compiled, vmapped program (see :func:`run_group`):
    plan, data and init, resume, compile, the host loop, evaluate."""
    t0 = time.perf_counter()
    plan = plan_runs(keys.shape[0], shard)
    keys_p, hp_p = plan.place((plan.pad(keys), plan.pad(hparams)))
    given_p = None if given is None else plan.place(plan.pad(given))
    data = plan.place(jax.jit(jax.vmap(task.make_data))(keys_p, given_p))
    state = jax.jit(jax.vmap(task.init))(keys_p, data, hp_p)
    # (state, failed_at) is what a checkpoint holds; failed_at = -1 while a run is healthy
    carry = plan.place(
        {
            "state": state,
            "failed_at": jnp.full((plan.total,), -1, jnp.int32),
            "last_loss": jnp.zeros((plan.total,), jnp.float32),
        }
    )
    hooks, start = [], 0
    if checkpoint_dir is not None:
        ckpt, start, restored = _resume(checkpoint_dir, carry, lay)
        carry = carry if restored is None else restored
        hooks.append(CheckpointHook(ckpt, lay))
    resumed_from = start
    if progress and jax.process_count() == 1:  # its loss and failure counts read the whole carry
        hooks.append(ProgressHook(task, start, plan.runs))

    compiled: dict[int, Callable] = {}

    def chunk(length: int) -> Callable:
        if length not in compiled:
            compiled[length] = compile_chunk(task, length, plan, carry, data, hp_p)
        return compiled[length]

    try:
        if start < task.num_steps:
            chunk(min(chunk_steps, task.num_steps - start))
    except KeyboardInterrupt:  # while compiling: nothing new to lose, the checkpoint stays
        _close_all(hooks)
        raise Interrupted(start, task.num_steps) from None
    compile_s = time.perf_counter() - t0
    carry, history, t_train = host_loop(task, chunk, carry, data, hp_p, start, chunk_steps, hooks, max_chunks)

    t2 = time.perf_counter()
    metrics = jax.jit(jax.vmap(task.evaluate))(carry["state"], data, hp_p)
    metrics = {k: plan.trim(v) for k, v in metrics.items()}
    eval_s = time.perf_counter() - t2
    failed_at = plan.trim(carry["failed_at"])
    r = plan.runs
    return GroupResult(
        metrics=metrics,
        failed=failed_at >= 0,
        failed_at=failed_at,
        final_loss=plan.trim(carry["last_loss"]),
        state=jax.tree.map(lambda a: a[:r], carry["state"]),
        loss_history=np.stack([h[:r] for h in history], 1) if history else np.zeros((r, 0), np.float32),
        compile_s=compile_s,
        train_s=t_train,
        eval_s=eval_s,
        resumed_from=resumed_from,
        layout=lay,
    )


def _concat_results(parts: list[GroupResult]) -> GroupResult:
    cat = lambda xs: np.concatenate(xs, 0)  # noqa: E731
    width = max(p.loss_history.shape[1] for p in parts)
    return GroupResult(
        metrics={k: cat([p.metrics[k] for p in parts]) for k in parts[0].metrics},
        failed=cat([p.failed for p in parts]),
        failed_at=cat([p.failed_at for p in parts]),
        final_loss=cat([p.final_loss for p in parts]),
        # slices resumed at different chunks have shorter histories: NaN-pad their start
        loss_history=cat(
            [
                np.pad(p.loss_history, ((0, 0), (width - p.loss_history.shape[1], 0)), constant_values=np.nan)
                for p in parts
            ]
        ),
        state=jax.tree.map(lambda *a: jnp.concatenate(a, 0), *[p.state for p in parts]),
        compile_s=sum(p.compile_s for p in parts),
        train_s=sum(p.train_s for p in parts),
        eval_s=sum(p.eval_s for p in parts),
        resumed_from=min(p.resumed_from for p in parts),
        layout=parts[0].layout,
    )
