"""Where a sweep's groups train: this process, a Ray cluster, or Slurm (through submitit).

The driver (:func:`experiments.sweep.run_sweep`) hands every group not yet done to an
executor as a :class:`~experiments.sweep.Job`; the executor runs
:func:`experiments.sweep.run_job` on it somewhere and calls ``on_done(index, records)`` in
the driver as each group finishes. What makes a group train exactly once (claims,
atomic group files, resume from the checkpoint) is in ``run_job``, so every executor
gives the same records, and two executors on one results folder share its groups.

* ``local`` (the default): one group after another in this process, as before.
* ``ray``: one Ray task per group with the resources it needs (``--cpus-per-group``,
  ``--gpus-per-group``) on the cluster at ``--ray-address`` (a local one started on the spot
  without it); a task whose worker dies is retried by Ray (``--retries``) and resumes from
  the group's checkpoint.
* ``slurm``: one Slurm job per group, submitted as a job array by submitit (partition,
  time, GPUs and CPUs as options); a job that dies is resubmitted (``--retries``) and
  resumes from the checkpoint. ``--slurm-cluster local`` runs the same jobs as processes
  on this machine (submitit's local executor), ``debug`` in this process.

Ray and submitit come with the ``cluster`` extra (``pip install -e ".[cluster]"``); an
executor whose package is missing is one line before any work (:func:`check`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
import warnings
from pathlib import Path
from typing import Callable

from experiments import sweep
from mechind.core import report

NAMES = ("local", "ray", "slurm")
PACKAGE = {"ray": "ray", "slurm": "submitit"}
INSTALL = 'pip install -e ".[cluster]"'
DEFAULT_RETRIES = 2
OnDone = Callable[[int, list], None]


def _import(name: str):
    """The executor's package, or a one-line :class:`UserError` saying how to install it."""
    module = PACKAGE[name]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise report.UserError(
            f"--executor {name} needs the {module} package, which is not installed: {INSTALL}"
        ) from None


def _outcome(job: sweep.Job) -> dict:
    """:func:`sweep.run_job` on a worker: ``{"records"}``, or ``{"error"}`` with a user's
    mistake (a UserError, e.g. results of another layout) as one line; anything else
    (a crash, a killed worker) is the engine's to see and retry."""
    try:
        return {"records": sweep.run_job(job)}
    except report.UserError as e:
        return {"error": str(e)}


def _records(out: dict) -> list:
    if "error" in out:
        raise report.UserError(out["error"])
    return out["records"]


class LocalExecutor:
    """Every group in this process, one after another (progress bars, Ctrl-C resumes)."""

    name, local = "local", True

    def map(self, jobs: list[sweep.Job], on_done: OnDone) -> None:
        for i, job in enumerate(jobs):
            on_done(i, sweep.run_job(job))


class RayExecutor:
    """One Ray task per group (``num_cpus``/``num_gpus`` per group, ``max_retries`` when
    its worker dies). ``address`` None starts a local cluster of ``workers`` CPUs (all
    cores by default) for the sweep and stops it afterwards; a cluster already started
    in this process (``ray.init`` by the caller) is used as it is."""

    name, local = "ray", False

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_group: float = 1,
        gpus_per_group: float = 0,
        retries: int = DEFAULT_RETRIES,
    ):
        self.address, self.workers = address, workers
        self.cpus, self.gpus, self.retries = cpus_per_group, gpus_per_group, retries

    def map(self, jobs: list[sweep.Job], on_done: OnDone) -> None:
        ray = _import("ray")
        started = not ray.is_initialized()
        if started:
            if self.address:  # a cluster's workers have the code installed (the same image or venv)
                kw = {"address": self.address}
            else:  # a local cluster's workers import the experiments from where this driver does
                path = os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH")] if p)
                kw = {"num_cpus": self.workers, "runtime_env": {"env_vars": {"PYTHONPATH": path}}}
            with warnings.catch_warnings():  # jax's at-fork warning: Ray's fork is followed by an exec
                warnings.filterwarnings("ignore", message=".*os.fork.*")
                ray.init(**kw, include_dashboard=False, log_to_driver=False)
        try:
            task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.retries)(_outcome)
            index = {task.remote(job): i for i, job in enumerate(jobs)}
            pending = list(index)
            try:
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    for ref in done:
                        on_done(index[ref], _records(self._get(ray, ref, jobs[index[ref]])))
            except BaseException:
                for ref in pending:  # Ctrl-C or an error: the other groups stop too
                    ray.cancel(ref, force=True)
                raise
        finally:
            if started:
                ray.shutdown()

    def _get(self, ray, ref, job: sweep.Job) -> dict:
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as e:
            raise report.UserError(
                f"{job.where}: failed on Ray after {self.retries} retries ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:300]})"
            ) from None


class SlurmExecutor:
    """One Slurm job per group through submitit: a job array first, a job that died
    resubmitted up to ``retries`` times (it resumes from the group's checkpoint).

    ``cluster``: None or ``"slurm"`` (Slurm), ``"local"`` (processes on this machine) or
    ``"debug"`` (this process); ``folder``: submitit's logs and pickles."""

    name, local = "slurm", False

    def __init__(
        self,
        folder: str | Path,
        cluster: str | None = None,
        partition: str | None = None,
        time_min: int = 60,
        cpus_per_group: int = 1,
        gpus_per_group: int = 0,
        array_parallelism: int | None = None,
        retries: int = DEFAULT_RETRIES,
        poll_s: float = 1.0,
    ):
        self.folder, self.cluster, self.partition = Path(folder), cluster, partition
        self.time_min, self.cpus, self.gpus = time_min, cpus_per_group, gpus_per_group
        self.array_parallelism, self.retries, self.poll_s = array_parallelism, retries, poll_s

    def _executor(self, submitit):
        ex = submitit.AutoExecutor(folder=self.folder, cluster=None if self.cluster == "slurm" else self.cluster)
        params = {"timeout_min": int(self.time_min), "cpus_per_task": int(self.cpus), "name": "mechind"}
        if self.gpus:
            params["gpus_per_node"] = int(self.gpus)
        if ex.cluster == "slurm":
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.array_parallelism:
                params["slurm_array_parallelism"] = int(self.array_parallelism)
        ex.update_parameters(**params)
        return ex

    def map(self, jobs: list[sweep.Job], on_done: OnDone) -> None:
        submitit = _import("slurm")
        ex = self._executor(submitit)
        running = dict(enumerate(ex.map_array(_outcome, jobs))) if jobs else {}
        tries = dict.fromkeys(running, 0)
        try:
            while running:
                for i, sjob in list(running.items()):
                    if not sjob.done():
                        continue
                    del running[i]
                    try:
                        out = sjob.result()
                    except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError) as e:
                        if tries[i] >= self.retries:
                            raise report.UserError(
                                f"{jobs[i].where}: Slurm job {sjob.job_id} failed after {self.retries} retries "
                                f"({type(e).__name__}: {' '.join(str(e).split())[:300]}); logs in {self.folder}"
                            ) from None
                        tries[i] += 1
                        running[i] = ex.submit(_outcome, jobs[i])  # resumes from the checkpoint
                        continue
                    on_done(i, _records(out))
                if running:
                    time.sleep(self.poll_s)
        except BaseException:
            for sjob in running.values():
                sjob.cancel(check=False)
            raise


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


_positive, _non_negative = _at_least(1), _at_least(0)


def add_args(ap: argparse.ArgumentParser) -> None:
    """The executor and ``jax.distributed`` options of every experiment's command line."""
    g = ap.add_argument_group("where groups train (pip install -e '.[cluster]' for ray and slurm)")
    g.add_argument(
        "--executor",
        choices=NAMES,
        default="local",
        help="local: this process, one group after another; ray: one Ray task per group; slurm: one Slurm "
        "job per group (submitit). The results folder (and its checkpoints) must be on storage every "
        "worker sees",
    )
    g.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local one)")
    g.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="a local Ray cluster's CPUs, i.e. groups trained at once with --cpus-per-group 1 (default: all cores)",
    )
    g.add_argument("--cpus-per-group", type=_positive, default=1, help="CPUs a group's worker needs (ray, slurm)")
    g.add_argument(
        "--gpus-per-group", type=_non_negative, default=0, help="GPUs a group's worker needs (ray, slurm; default 0)"
    )
    g.add_argument(
        "--retries",
        type=_non_negative,
        default=DEFAULT_RETRIES,
        help="times a group whose worker died is started again, resuming from its checkpoint (ray, slurm)",
    )
    g.add_argument("--slurm-partition", default=None, help="Slurm partition (default: the cluster's)")
    g.add_argument("--slurm-time", type=_positive, default=60, help="Slurm time limit per group, in minutes")
    g.add_argument(
        "--slurm-array-parallelism", type=_positive, default=None, help="Slurm: at most this many groups at once"
    )
    g.add_argument(
        "--slurm-cluster",
        choices=("slurm", "local", "debug"),
        default="slurm",
        help="submitit's backend: slurm, or local (processes on this machine) / debug (this process) to try "
        "the Slurm path without Slurm",
    )
    g.add_argument(
        "--claim-lease",
        type=float,
        default=sweep.DEFAULT_LEASE_S,
        help="seconds a silent worker's claim on a group holds before another worker takes the group over",
    )
    d = ap.add_argument_group("one group across processes (jax.distributed; inside a multi-task srun: automatic)")
    d.add_argument("--coordinator", default=None, help="HOST:PORT of process 0, the same for every process")
    d.add_argument("--num-processes", type=_positive, default=None, help="how many processes share each group")
    d.add_argument("--process-id", type=int, default=None, help="this process's index, 0 .. --num-processes - 1")


def option_errors(args: argparse.Namespace) -> list[str]:
    """Messages for executor options that do not fit together (checked before any work)."""
    from mechind.core import distributed

    errors = distributed.option_errors(args.coordinator, args.num_processes, args.process_id)
    given = lambda *names: [n for n in names if getattr(args, n) not in (None, False)]  # noqa: E731
    if args.executor != "ray":
        errors += [f"--{n.replace('_', '-')} needs --executor ray" for n in given("ray_address")]
    if args.executor != "slurm":
        slurm_only = given("slurm_partition", "slurm_array_parallelism")
        errors += [f"--{n.replace('_', '-')} needs --executor slurm" for n in slurm_only]
    if args.workers is not None and args.ray_address:
        errors.append("--workers sizes a local Ray cluster; the cluster at --ray-address has its own")
    if args.claim_lease <= 0 or args.claim_lease != args.claim_lease:
        errors.append(f"--claim-lease must be > 0 seconds, got {args.claim_lease}")
    if args.executor != "local" and (args.coordinator is not None or distributed.in_slurm_step()):
        errors.append(
            "one group across processes (--coordinator, or a multi-task srun) runs with --executor local: "
            "every process runs the sweep, one group after another"
        )
    return errors


def check(args: argparse.Namespace) -> None:
    """Raise a one-line :class:`UserError` for bad executor options or a missing package."""
    errors = option_errors(args)
    if errors:
        raise report.UserError(errors[0])
    if args.executor in PACKAGE:
        _import(args.executor)


def from_args(args: argparse.Namespace, out: Path):
    """The executor the command line asks for (options checked by :func:`check`)."""
    if args.executor == "ray":
        return RayExecutor(args.ray_address, args.workers, args.cpus_per_group, args.gpus_per_group, args.retries)
    if args.executor == "slurm":
        return SlurmExecutor(
            Path(out) / "slurm_logs",
            cluster=args.slurm_cluster,
            partition=args.slurm_partition,
            time_min=args.slurm_time,
            cpus_per_group=args.cpus_per_group,
            gpus_per_group=args.gpus_per_group,
            array_parallelism=args.slurm_array_parallelism,
            retries=args.retries,
        )
    return LocalExecutor()
