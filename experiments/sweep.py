"""The shared sweep runner for experiment modules.

A sweep is a list of :class:`Group` s, one compiled program each (the shape-changing
settings), whose runs (seeds x vmapped hyper-parameters) train together through
:func:`mechind.core.runner.run_group`. The driver (:func:`run_sweep`) hands every group not
yet done to an executor (:mod:`experiments.executors`: this process, a Ray cluster, Slurm);
whoever trains a group (:func:`run_job`) does it exactly once:

* it first **claims** the group: ``claims/<group id>.<generation>``, created exclusively
  (``O_EXCL``), its mtime a heartbeat renewed every lease/4 by a thread. A claim whose
  heartbeat is older than its lease belongs to a dead worker, and the next worker takes
  the next generation (again ``O_EXCL``: one of two racing workers gets it), so a killed
  worker never leaves a group stuck and two live workers never train the same group;
* after the claim it looks again whether the group is done (another worker may have
  finished it meanwhile), trains it (resuming from ``checkpoints/<group id>``, which must
  therefore be on storage every worker sees), writes all its records atomically to
  ``groups/<group id>.jsonl`` (temp file + ``os.replace``), then drops the checkpoint and
  the claim.

The driver merges each finished group's records into ``results.jsonl`` (a run id is never
written there twice; an older folder holding only ``results.jsonl`` reads as before), and
tables and figures are built from the JSON lines alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import platform
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from mechind.core import distributed, report, rng, runner


@dataclasses.dataclass
class Group:
    """One compiled group of runs.

    Attributes:
      key: identity of the group's settings (dict of JSON-able values).
      make_task: builds the :class:`~mechind.core.runner.Task` (only called if the group runs).
      keys: ``[R]`` PRNG keys, one per run (typed, see mechind.core.rng).
      hparams: per-run hyper-parameters, leading axis R.
      runs: R dicts of per-run fields written to each record (seed, lambda, ...).
      finish: ``metrics of one run (numpy) -> dict`` of scalar results (e.g. SIS from R²).
      given: per-run arrays (leading axis R) the runner hands to ``task.make_data(key, given)``
        (datasets drawn on the host, e.g. :mod:`cg.sparse_data`); None: the task draws its own.
    """

    key: dict
    make_task: Callable[[], runner.Task]
    keys: Any
    hparams: Any
    runs: list[dict]
    finish: Callable[[dict], dict]
    given: Any = None

    @property
    def id(self) -> str:
        text = json.dumps(self.key, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def _short(key: dict) -> dict:
    """A group key for the log: nested settings (a whole config) left out."""
    return {k: v for k, v in key.items() if not isinstance(v, dict)}


def group_labels(groups: list[Group]) -> list[str]:
    """A short name per group for one-line messages: the settings that differ between the
    groups (``K 2, overlap 0.5``), or the group id where none do."""
    short = [_short(g.key) for g in groups]
    varying = [k for k in short[0] if len({repr(s.get(k)) for s in short}) > 1] if short else []
    return [", ".join(f"{k} {s.get(k)}" for k in varying) or f"id {g.id}" for g, s in zip(groups, short)]


def _run_id(group: Group, run: dict) -> str:
    return group.id + ":" + json.dumps(run, sort_keys=True)


def run_ids(groups: list[Group]) -> set[str]:
    """The ids of every run of ``groups``: the records a sweep of exactly these settings owns
    (a group's other runs, e.g. more seeds from an earlier invocation, are not among them)."""
    return {_run_id(g, run) for g in groups for run in g.runs}


def _duplicate_runs(groups: list[Group]) -> list[str]:
    """Run ids that the settings produce more than once (a value given twice, say)."""
    seen, dups = set(), []
    for g in groups:
        for run in g.runs:
            rid = _run_id(g, run)
            if rid in seen:
                dups.append(rid)
            seen.add(rid)
    return dups


def group_layout(group: Group, task: runner.Task, max_runs_per_call: int | None) -> dict:
    """The run layout :func:`~mechind.core.runner.run_group` will use for this group."""
    per_call = runner.effective_runs_per_call(task, group.keys, group.hparams, max_runs_per_call)
    return runner.layout(per_call)


def _check_layout(path: Path, where: str, records: list[dict], now: dict) -> None:
    """Refuse to add runs under a layout other than the one earlier runs of this group
    were computed under: numbers differ between layouts (DESIGN.md, principle 7), and a
    table mixing them would show that as seed noise. Records written before layouts
    were recorded carry none and are taken as they are."""
    old = [r["run_layout"] for r in records if isinstance(r.get("run_layout"), dict)]
    if old and any(o != now for o in old):
        raise report.UserError(
            f"{path} holds runs of {where} computed under another layout ({_fmt_layout(old[0])}; this run: "
            f"{_fmt_layout(now)}); numbers differ between layouts, so they are not mixed: run with the same "
            "devices and --max-runs-per-call, or use --fresh or another --out"
        )


def _fmt_layout(lay: dict) -> str:
    return (
        f"{lay.get('devices')} {lay.get('backend')} device(s), {lay.get('runs_per_call')} runs per call, "
        f"jax {lay.get('jax')}"
    )


RESULTS = "results.jsonl"
GROUPS = "groups"  # groups/<group id>.jsonl: one group's records, written at once
CLAIMS = "claims"  # claims/<group id>.<generation>: who trains a group now
CHECKPOINTS = "checkpoints"
MERGE_LOCK = ".merge.lock"
# How long a claim holds without a heartbeat. A worker renews it every lease/4 from a thread
# of its own, so only a dead (or frozen) worker lets it lapse; a retried worker waits at most
# this long for a dead worker's group (at once when the dead one ran on the same host).
DEFAULT_LEASE_S = 60.0


def group_file(out_dir: str | Path, gid: str) -> Path:
    return Path(out_dir) / GROUPS / f"{gid}.jsonl"


def write_group(out_dir: str | Path, gid: str, records: list[dict]) -> Path:
    """All of one group's records as one atomic write: a reader sees all of them or none."""
    return report.write_atomic(group_file(out_dir, gid), report.jsonl_text(records))


def _group_files(out_dir: Path) -> list[Path]:
    return sorted((out_dir / GROUPS).glob("*.jsonl"))


def _first_per_run(records: list[dict]) -> list[dict]:
    """One record per run id, the first one written (records without an id all kept)."""
    seen, out = set(), []
    for r in records:
        rid = r.get("run_id")
        if rid is None or rid not in seen:
            out.append(r)
            seen.add(rid)
    return out


def read_results(out_dir: str | Path) -> list[dict]:
    """Every record of a results folder, one per run id: ``results.jsonl`` first (what the
    tables have always read; a folder from before group files holds only it), then the
    group files' records not merged into it yet (a driver stopped before merging them)."""
    out_dir = Path(out_dir)
    records = report.read_jsonl(out_dir / RESULTS)
    for f in _group_files(out_dir):
        records += report.read_jsonl(f)
    return _first_per_run(records)


def _not_in(path: Path, records: list[dict]) -> list[dict]:
    have = {r.get("run_id") for r in report.read_jsonl(path)}
    return [r for r in _first_per_run(records) if r.get("run_id") not in have]


@contextlib.contextmanager
def _flocked(path: Path):
    """An exclusive ``flock`` on ``path`` for the block (dropped by the kernel if we die)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def merge_results(out_dir: str | Path, records: list[dict] | None = None) -> int:
    """Append to ``results.jsonl`` the ``records`` (default: every group file's) whose run
    id it does not hold yet; returns how many. Two drivers on one folder merge one at a
    time (an flock of its own), so neither writes a run the other just wrote; with nothing
    to add, nothing is written or locked."""
    out_dir = Path(out_dir)
    if records is None:
        records = [r for f in _group_files(out_dir) for r in report.read_jsonl(f)]
    path = out_dir / RESULTS
    if not _not_in(path, records):
        return 0
    with _flocked(out_dir / MERGE_LOCK):
        new = _not_in(path, records)  # again, under the lock
        report.append_jsonl(path, new)
    return len(new)


# --- claims: one worker per group at a time ------------------------------------------------


def _claims(out_dir: str | Path, gid: str) -> list[tuple[int, Path]]:
    """A group's claim files ``[(generation, path)]``, the newest first."""
    found = []
    for p in (Path(out_dir) / CLAIMS).glob(f"{gid}.*"):
        gen = p.name[len(gid) + 1 :]
        if gen.isdigit():
            found.append((int(gen), p))
    return sorted(found, reverse=True)


def _owner(path: Path) -> dict:
    try:
        owner = json.loads(path.read_text())
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}  # being written (created, not yet filled) or released meanwhile


def _pid_gone(owner: dict) -> bool:
    """The claim's process is known dead: it ran on this host and its pid is gone."""
    if owner.get("host") != platform.node() or not isinstance(owner.get("pid"), int):
        return False
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def claim_is_stale(path: Path, lease_s: float, now: float | None = None) -> bool:
    """A claim nobody holds any more: released, its heartbeat (mtime) older than its lease
    (the one written in it; ``lease_s`` while it is being written), or its process gone on
    this host. Hosts judging each other's heartbeats need clocks within the lease (NTP)."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return True
    owner = _owner(path)
    lease = owner.get("lease_s", lease_s)
    return age > (lease if isinstance(lease, (int, float)) else lease_s) or _pid_gone(owner)


def try_claim(out_dir: str | Path, gid: str, lease_s: float, now: float | None = None) -> Path | None:
    """Claim group ``gid`` unless a live claim holds it: the new claim file, or None.

    The claim is the next generation's file, created with ``O_EXCL`` (atomic on local file
    systems and NFS v3+): of two workers that find the same dead claim, one gets it."""
    claims = _claims(out_dir, gid)
    if claims and not claim_is_stale(claims[0][1], lease_s, now):
        return None
    gen = claims[0][0] + 1 if claims else 0
    path = Path(out_dir) / CLAIMS / f"{gid}.{gen}"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return None  # another worker took this generation first
    with os.fdopen(fd, "w") as f:
        json.dump({"host": platform.node(), "pid": os.getpid(), "lease_s": lease_s, "token": uuid.uuid4().hex}, f)
    return path


def claim_held(out_dir: str | Path, gid: str, path: Path) -> bool:
    """``path`` is still the group's newest claim (no one took over a lapsed lease)."""
    claims = _claims(out_dir, gid)
    return bool(claims) and claims[0][1] == path


def release_claim(out_dir: str | Path, gid: str, path: Path) -> None:
    """Remove our claim and the dead generations before it (a newer one is not ours)."""
    gen = int(path.name[len(gid) + 1 :])
    for g, p in _claims(out_dir, gid):
        if g <= gen:
            p.unlink(missing_ok=True)


class Heartbeat:
    """Renews a claim (its mtime) every ``lease_s / 4`` from a daemon thread; ``lost`` is
    set when the claim was removed or superseded (this worker was taken for dead)."""

    def __init__(self, out_dir: str | Path, gid: str, path: Path, lease_s: float):
        self.out_dir, self.gid, self.path, self.lost = out_dir, gid, path, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(lease_s / 4,), daemon=True)
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:  # any file-system error (ESTALE on NFS, a failing listing) counts as lost:
                os.utime(self.path)  # a heartbeat that cannot beat lets the lease lapse
                held = claim_held(self.out_dir, self.gid, self.path)
            except OSError:
                held = False
            if not held:
                self.lost = True
                return

    def still_ours(self) -> bool:
        """Checked now, not at the last beat: the claim is still this worker's."""
        if self.lost:
            return False
        try:
            return claim_held(self.out_dir, self.gid, self.path)
        except OSError:
            return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


# --- one group, by whichever worker an executor gives it to --------------------------------


@dataclasses.dataclass
class Job:
    """One group for a worker (pickled to Ray and Slurm workers with cloudpickle).

    Attributes:
      group: the :class:`Group`.
      out_dir: the results folder (on storage every worker sees).
      where: ``experiment, group i/n: label`` for messages.
      have: this group's records the driver found (a group partly done): their layout is
        checked against the worker's before it adds runs.
      lease_s: the claim's lease (:data:`DEFAULT_LEASE_S`).
    """

    group: Group
    out_dir: str
    experiment: str
    preset: str
    where: str
    chunk_steps: int
    max_runs_per_call: int | None
    progress: bool
    lease_s: float = DEFAULT_LEASE_S
    have: list = dataclasses.field(default_factory=list)


def _group_done(job: Job) -> list[dict] | None:
    """The group's records if its file holds every run of it (another worker finished it)."""
    recs = {r.get("run_id"): r for r in report.read_jsonl(group_file(job.out_dir, job.group.id))}
    ids = [_run_id(job.group, run) for run in job.group.runs]
    return [recs[i] for i in ids] if all(i in recs for i in ids) else None


def _wait_group_done(job: Job, timeout_s: float = 120.0) -> list[dict]:
    """The group's records, on a process that follows process 0 (``jax.distributed``): its
    group file may reach shared storage a moment after process 0 wrote it."""
    t0 = time.monotonic()
    while True:
        done = _group_done(job)
        if done is not None:
            return done
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"group {job.group.id}: process 0 found it done, but its records did not appear")
        time.sleep(0.5)


def _claim_or_done(job: Job) -> tuple[Path | None, list[dict] | None]:
    """Wait until this worker holds the group's claim ``(claim, None)`` or the group is done
    ``(None, its records)``. Done is looked at again after claiming: a worker that finished
    the group between our first look and our claim has released it."""
    poll = min(max(job.lease_s / 8, 0.05), 5.0)
    gid = job.group.id
    while True:
        done = _group_done(job)
        if done is not None:
            return None, done
        claim = try_claim(job.out_dir, gid, job.lease_s)
        if claim is not None:
            done = _group_done(job)
            if done is None:
                return claim, None
            release_claim(job.out_dir, gid, claim)
            return None, done
        time.sleep(poll)


def group_records(job: Job, task: runner.Task, res: runner.GroupResult) -> list[dict]:
    """One JSON record per run of a trained group."""
    g, device = job.group, report.device_info()
    records = []
    for r, run in enumerate(g.runs):
        m = {k: v[r] for k, v in res.metrics.items()}
        vals = g.finish(m)
        failed = bool(res.failed[r]) or not all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in vals.values() if isinstance(v, float)
        )
        failure = None
        if res.failed[r]:
            failure = f"non-finite loss by step {int(res.failed_at[r])}"
        elif failed:
            failure = "non-finite metric"
        records.append(
            {
                "experiment": job.experiment,
                "preset": job.preset,
                "run_id": _run_id(g, run),
                "group": g.id,
                **g.key,
                **run,
                **vals,
                "failed": failed,
                "failure": failure,
                "final_loss": float(res.final_loss[r]),
                "steps": task.num_steps,
                "group_runs": len(g.runs),
                "compile_s": res.compile_s,
                "train_s": res.train_s,
                "eval_s": res.eval_s,
                "train_s_per_run": res.train_s / len(g.runs),
                "resumed_from": res.resumed_from,
                "device": device,
                "run_layout": res.layout,
            }
        )
    return records


def _train_claimed(job: Job, hb: Heartbeat | None) -> list[dict] | None:
    """Train a claimed group and write its file; None when the claim was lost meanwhile
    (nothing written: the worker that took over writes it)."""
    g = job.group
    ckpt = Path(job.out_dir) / CHECKPOINTS / g.id
    try:
        task = g.make_task()
        if any(isinstance(r.get("run_layout"), dict) for r in job.have):  # this worker's layout
            now = group_layout(g, task, job.max_runs_per_call)
            _check_layout(Path(job.out_dir) / RESULTS, job.where, job.have, now)
        res = runner.run_group(
            task,
            g.keys,
            g.hparams,
            chunk_steps=job.chunk_steps,
            checkpoint_dir=ckpt,
            progress=job.progress,
            max_runs_per_call=job.max_runs_per_call,
            given=g.given,
        )
    except KeyboardInterrupt as e:
        raise runner.Interrupted(getattr(e, "step", None), getattr(e, "num_steps", 0), job.where) from None
    # as the group file holds them (tuples as lists, NaN as None): the same whoever trained it
    records = [json.loads(line) for line in report.jsonl_text(group_records(job, task, res)).splitlines()]
    # process 0's verdict, on every process, taken just before writing: a worker superseded
    # since its last heartbeat must neither write nor delete the new owner's checkpoint
    if distributed.agree(hb is not None and not hb.still_ours()):
        return None
    if distributed.is_writer():  # the records once, by process 0; then the checkpoint goes
        write_group(job.out_dir, g.id, records)
        shutil.rmtree(ckpt, ignore_errors=True)
    return records


def run_job(job: Job) -> list[dict]:
    """Train one group exactly once, whichever worker runs this; returns its records.

    Claims the group (waiting while a live worker holds it), skips it if done, trains it
    (resuming from its checkpoint), writes its records atomically to its group file, and
    releases the claim, also when training raises. Under ``jax.distributed`` every process
    calls this together: process 0 claims and writes, the others follow its decisions."""
    gid = job.group.id
    while True:
        claim, done = _claim_or_done(job) if distributed.is_writer() else (None, None)
        if distributed.agree(claim is None):
            return done if done is not None else _wait_group_done(job)
        hb = Heartbeat(job.out_dir, gid, claim, job.lease_s) if claim is not None else None
        try:
            records = _train_claimed(job, hb)
        finally:
            if hb is not None:
                hb.close()
                release_claim(job.out_dir, gid, claim)
        if records is not None:
            return records


def _done_line(gi: int, n: int, g: Group, records: list[dict]) -> str:
    r0, n_fail = records[0], sum(r["failed"] for r in records)
    return (
        f"[{gi + 1}/{n}] {_short(g.key)}: {len(records)} runs, compile {r0['compile_s']:.1f}s, "
        f"train {r0['train_s']:.1f}s, eval {r0['eval_s']:.1f}s" + (f", {n_fail} FAILED" if n_fail else "")
    )


def _clear(out_dir: Path) -> None:
    """--fresh: every earlier result, group file, claim and checkpoint of the folder."""
    (out_dir / RESULTS).unlink(missing_ok=True)
    for sub in (CHECKPOINTS, GROUPS, CLAIMS):
        shutil.rmtree(out_dir / sub, ignore_errors=True)


def run_sweep(
    groups: list[Group],
    out_dir: str | Path,
    *,
    experiment: str,
    preset: str,
    chunk_steps: int = 1000,
    progress: bool = True,
    fresh: bool = False,
    max_runs_per_call: int | None = None,
    executor=None,
    lease_s: float = DEFAULT_LEASE_S,
    log=print,
) -> list[dict]:
    """Train every group not already done in ``out_dir`` on ``executor`` (default: this
    process, one group after another); returns all records.

    Everything that can refuse the sweep (duplicate runs, results of another layout, a
    damaged results file) is checked before the first group trains; a remote executor's
    workers check the layout of a partly done group against their own devices. A run id
    already in ``results.jsonl`` is never written again. Ctrl-C raises
    :class:`runner.Interrupted` naming the experiment, group and step. The caller holds
    ``out_dir`` (see :func:`mechind.core.report.locked_folder`)."""
    from experiments import executors  # executors import this module

    executor = executor or executors.LocalExecutor()
    out_dir = Path(out_dir)
    path = out_dir / RESULTS
    writer = distributed.is_writer()
    dups = _duplicate_runs(groups)
    if dups:
        raise report.UserError(f"these settings give run {dups[0]} more than once (a value listed twice?)")
    if fresh and writer:
        _clear(out_dir)
    if writer:
        merge_results(out_dir)  # groups finished by workers after their driver stopped
    distributed.barrier("mechind-sweep-start")
    by_id = {r.get("run_id"): r for r in read_results(out_dir)}
    n = len(groups)
    labels = group_labels(groups)
    where = lambda gi, g: f"{experiment}, group {gi + 1}/{n}: {labels[gi]}"  # noqa: E731
    todo, have = [], {}
    for gi, g in enumerate(groups):  # every refusal before any training
        ids = [_run_id(g, run) for run in g.runs]
        have[gi] = [by_id[i] for i in ids if i in by_id]
        if executor.local and any(isinstance(r.get("run_layout"), dict) for r in have[gi]):
            _check_layout(path, where(gi, g), have[gi], group_layout(g, g.make_task(), max_runs_per_call))
        if len(have[gi]) < len(ids):
            todo.append(gi)
    todo = [gi for gi, yes in zip(range(n), distributed.agree_mask([gi in todo for gi in range(n)])) if yes]
    for gi, g in enumerate(groups):
        if gi not in todo:
            log(f"[{gi + 1}/{n}] {_short(g.key)} already done, skipped")
    jobs = [
        Job(
            group=groups[gi],
            out_dir=str(out_dir.absolute()),
            experiment=experiment,
            preset=preset,
            where=where(gi, groups[gi]),
            chunk_steps=chunk_steps,
            max_runs_per_call=max_runs_per_call,
            progress=progress and executor.local and distributed.is_writer(),
            lease_s=lease_s,
            have=have[gi],
        )
        for gi in todo
    ]

    def finished(j: int, records: list[dict]) -> None:
        if writer:
            merge_results(out_dir, records)  # at once: a driver stopped later keeps it
        log(_done_line(todo[j], n, groups[todo[j]], records))

    t_sweep = time.perf_counter()
    executor.map(jobs, finished)
    log(f"sweep finished in {time.perf_counter() - t_sweep:.1f}s; results in {path}")
    distributed.barrier("mechind-sweep-end")  # process 0 has written every group file
    return report.unique_records(report.read_jsonl(path)) if writer else read_results(out_dir)


def seed_keys(seeds, repeat: int = 1):
    """``[len(seeds) * repeat]`` typed keys: the seed list tiled ``repeat`` times (one per
    hyper-parameter value), so runs differing only in a hyper-parameter share data and init."""
    return jnp.concatenate([rng.seed_keys(seeds)] * repeat)


def pivot(
    records: list[dict],
    row_keys: tuple[str, ...],
    col_key: str,
    value: str,
    filt: Callable[[dict], bool] = lambda r: True,
) -> tuple[list, list, dict]:
    """Group finished records into ``{(row, col): [values]}`` (failed runs give None)."""
    cells: dict = {}
    for r in records:
        if not filt(r):
            continue
        row = tuple(r[k] for k in row_keys)
        cells.setdefault((row, r[col_key]), []).append(None if r["failed"] else r[value])
    rows = sorted({k[0] for k in cells})
    cols = sorted({k[1] for k in cells})
    return rows, cols, cells


def mean_std_table(records, row_keys, col_key, value, filt=lambda r: True, col_fmt="{}"):
    """Markdown + CSV of ``value`` mean ± std over seeds; rows ``row_keys``, columns ``col_key``."""
    rows, cols, cells = pivot(records, row_keys, col_key, value, filt)
    header = [*row_keys, *[col_fmt.format(c) for c in cols]]
    md_rows, csv_rows = [], []
    for row in rows:
        vals = [cells.get((row, c), []) for c in cols]
        md_rows.append([*row, *[report.fmt_mean_std(v) if v else "" for v in vals]])
        stats = [report.mean_std(v) for v in vals]
        csv_rows.append([*row, *[f"{m:.4f}±{s:.4f} (n={n})" for m, s, n in stats]])
    return report.markdown_table(header, md_rows), report.csv_text(header, csv_rows)


def paired_differences(records, row_key: str, col_key: str, value: str, baseline, pair_key: str = "seed") -> dict:
    """``{(row, col): [value(row) - value(baseline)]}`` over the ``pair_key`` values both
    have (failed runs dropped). Paired on the seed, a difference compares runs with the same
    data and initialisation, so it sees effects far below the seed-to-seed spread."""
    by = {(r[row_key], r[col_key], r[pair_key]): r[value] for r in records if not r["failed"]}
    out: dict = {}
    for (row, col, pair), v in sorted(by.items()):
        base = by.get((baseline, col, pair))
        if row != baseline and base is not None:
            out.setdefault((row, col), []).append(v - base)
    return out


def paired_summary(diffs) -> tuple[float, int, int, float]:
    """``(mean, number > 0, n, p)``; p is the two-sided Wilcoxon signed-rank p-value (exact
    for small n; 1 when every difference is 0). With n = 5 the smallest possible p is 0.0625."""
    from scipy import stats

    d = np.asarray(diffs, np.float64)
    p = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    return float(d.mean()), int((d > 0).sum()), int(d.size), p


def format_paired(diffs) -> str:
    """``+0.0123 (7/10 up, p=0.049)``: mean paired difference, pairs up, Wilcoxon p."""
    m, up, n, p = paired_summary(diffs)
    return f"{m:+.4f} ({up}/{n} up, p={p:.3f})"


def paired_table(records, row_key: str, col_key: str, value: str, baseline, col_fmt: str = "{}") -> str:
    """Markdown: per (row, col), the mean paired difference to the ``baseline`` row, how many
    pairs went up, and the Wilcoxon p-value."""
    cells = paired_differences(records, row_key, col_key, value, baseline)
    rows = sorted({k[0] for k in cells})
    cols = sorted({k[1] for k in cells})
    body = []
    for row in rows:
        cell = []
        for c in cols:
            cell.append(format_paired(cells[(row, c)]) if (row, c) in cells else "")
        body.append([row, *cell])
    return report.markdown_table([row_key, *[col_fmt.format(c) for c in cols]], body)
