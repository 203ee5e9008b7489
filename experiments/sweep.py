"""The shared sweep runner for experiment modules.

A sweep is a list of :class:`Group` s, one compiled program each (the shape-changing
settings), whose runs (seeds x vmapped hyper-parameters) train together through
:func:`mechind.core.runner.run_group`. Each finished group appends one JSON line per run to
``results.jsonl``; a group already complete there is skipped, and a group interrupted
mid-way resumes from its orbax checkpoint. Tables and figures are then built from the
JSON lines alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from mechind.core import report, rng, runner


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
    log=print,
) -> list[dict]:
    """Run every group not already complete in ``out_dir/results.jsonl``; returns all records.

    Everything that can refuse the sweep (duplicate runs, results of another layout, a
    damaged results file) is checked before the first group trains. A run id already in
    the file is never written again. Ctrl-C raises :class:`runner.Interrupted` naming the
    experiment, group and step. The caller holds ``out_dir`` (see
    :func:`mechind.core.report.locked_folder`)."""
    out_dir = Path(out_dir)
    path = out_dir / "results.jsonl"
    dups = _duplicate_runs(groups)
    if dups:
        raise report.UserError(f"these settings give run {dups[0]} more than once (a value listed twice?)")
    if fresh:
        path.unlink(missing_ok=True)
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    by_id = {r.get("run_id"): r for r in report.read_jsonl(path)}
    device = report.device_info()
    n = len(groups)
    labels = group_labels(groups)
    where = lambda gi, g: f"{experiment}, group {gi + 1}/{n}: {labels[gi]}"  # noqa: E731
    todo, tasks = [], {}
    for gi, g in enumerate(groups):  # every refusal before any training
        ids = [_run_id(g, run) for run in g.runs]
        have = [by_id[i] for i in ids if i in by_id]
        if any(isinstance(r.get("run_layout"), dict) for r in have):
            tasks[gi] = g.make_task()
            _check_layout(path, where(gi, g), have, group_layout(g, tasks[gi], max_runs_per_call))
        if len(have) < len(ids):
            todo.append(gi)
    t_sweep = time.perf_counter()
    for gi, g in enumerate(groups):
        if gi not in todo:
            log(f"[{gi + 1}/{n}] {_short(g.key)} already done, skipped")
            continue
        ckpt = out_dir / "checkpoints" / g.id
        try:
            task = tasks.get(gi) or g.make_task()
            res = runner.run_group(
                task,
                g.keys,
                g.hparams,
                chunk_steps=chunk_steps,
                checkpoint_dir=ckpt,
                progress=progress,
                max_runs_per_call=max_runs_per_call,
                given=g.given,
            )
        except KeyboardInterrupt as e:
            raise runner.Interrupted(getattr(e, "step", None), getattr(e, "num_steps", 0), where(gi, g)) from None
        records = []
        for r, run in enumerate(g.runs):
            rid = _run_id(g, run)
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
                    "experiment": experiment,
                    "preset": preset,
                    "run_id": rid,
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
        # a group redone because some of its runs were missing (a cut last line) adds
        # only those: a run id is written once
        new = [r for r in records if r["run_id"] not in by_id]
        report.append_jsonl(path, new)
        by_id.update((r["run_id"], r) for r in new)
        shutil.rmtree(ckpt, ignore_errors=True)
        n_fail = sum(r["failed"] for r in records)
        log(
            f"[{gi + 1}/{n}] {_short(g.key)}: {len(records)} runs, compile {res.compile_s:.1f}s, "
            f"train {res.train_s:.1f}s, eval {res.eval_s:.1f}s" + (f", {n_fail} FAILED" if n_fail else "")
        )
    log(f"sweep finished in {time.perf_counter() - t_sweep:.1f}s; results in {path}")
    return report.unique_records(report.read_jsonl(path))


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
