import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from experiments import mechind_overlap, sweep
from mechind.core import report


def test_group_labels_name_what_differs():
    base = mechind_overlap.train.SlotConfig(num_steps=30)
    groups = mechind_overlap.build_groups([2, 3], [0.0], [0.0, 0.5], [0], base)
    assert sweep.group_labels(groups) == [
        "K 2, overlap 0.0",
        "K 2, overlap 0.5",
        "K 3, overlap 0.0",
        "K 3, overlap 0.5",
    ]
    assert sweep.group_labels(groups[:1]) == [f"id {groups[0].id}"]


def test_paired_differences_and_wilcoxon_closed_form():
    recs = [
        {"alpha": a, "domains": 2, "seed": s, "mcc": 0.5 + s / 10 + (a > 0) * (s + 1) / 100, "failed": False}
        for a in (0.0, 0.1)
        for s in range(5)
    ]
    recs.append({"alpha": 0.1, "domains": 2, "seed": 9, "mcc": 0.9, "failed": False})  # no baseline: unpaired
    recs.append({"alpha": 0.0, "domains": 4, "seed": 0, "mcc": 0.1, "failed": False})  # no alpha run: no cell
    cells = sweep.paired_differences(recs, "alpha", "domains", "mcc", 0.0)
    assert list(cells) == [(0.1, 2)]
    np.testing.assert_allclose(cells[(0.1, 2)], [0.01, 0.02, 0.03, 0.04, 0.05])
    mean, up, n, p = sweep.paired_summary(cells[(0.1, 2)])
    # all 5 differences positive: the exact two-sided signed-rank p is 2 / 2^5
    assert (up, n) == (5, 5) and mean == pytest.approx(0.03) and p == pytest.approx(2 / 32)
    assert sweep.paired_summary([0.0, 0.0])[3] == 1.0
    md = sweep.paired_table(recs, "alpha", "domains", "mcc", 0.0, col_fmt="{} domains")
    assert "+0.0300 (5/5 up, p=0.062)" in md and "2 domains" in md


def test_pivot_and_table_from_records():
    recs = [{"K": 2, "lam": 0.0, "overlap": 0.0, "sis": v, "failed": False} for v in (0.1, 0.3)]
    recs.append({"K": 2, "lam": 0.0, "overlap": 0.0, "sis": None, "failed": True})
    md, csv = sweep.mean_std_table(recs, ("K", "lam"), "overlap", "sis")
    assert "0.200 ± 0.100" in md and "(n=2)" in csv


@pytest.mark.parametrize(
    "module",
    [
        "experiments",
        "experiments.mechind_overlap",
        "experiments.cg_benchmark",
        "experiments.criteria_hierarchy",
        "experiments.bench",
    ],
)
def test_help(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True)
    assert "--out" in out.stdout


# --- exactly once: claims, group files, merging ---------------------------------------------


def test_a_claim_is_exclusive_until_released_or_its_lease_lapses(tmp_path):
    gid = "0123abcd0123"
    first = sweep.try_claim(tmp_path, gid, lease_s=30)
    assert first == tmp_path / "claims" / f"{gid}.0"
    assert sweep.try_claim(tmp_path, gid, lease_s=30) is None  # a live claim holds the group
    assert sweep.claim_held(tmp_path, gid, first)
    old = time.time() - 31  # no heartbeat for longer than the lease: its worker is dead
    os.utime(first, (old, old))
    second = sweep.try_claim(tmp_path, gid, lease_s=30)
    assert second == tmp_path / "claims" / f"{gid}.1" and not sweep.claim_held(tmp_path, gid, first)
    sweep.release_claim(tmp_path, gid, second)  # drops the dead generation too
    assert not list((tmp_path / "claims").iterdir())
    # a claim of a process gone from this host is dead at once, whatever its heartbeat
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = tmp_path / "claims" / f"{gid}.4"
    path.write_text(json.dumps({"host": platform.node(), "pid": int(dead.stdout), "lease_s": 30}))
    assert sweep.claim_is_stale(path, 30) and sweep.try_claim(tmp_path, gid, 30).name == f"{gid}.5"


def test_a_heartbeat_keeps_a_claim_alive_and_sees_it_taken_over(tmp_path):
    gid = "feedfeedfeed"
    claim = sweep.try_claim(tmp_path, gid, lease_s=0.4)
    hb = sweep.Heartbeat(tmp_path, gid, claim, lease_s=0.4)
    try:
        time.sleep(0.6)  # longer than the lease, but renewed every 0.1 s
        assert sweep.try_claim(tmp_path, gid, lease_s=0.4) is None and not hb.lost
        (tmp_path / "claims" / f"{gid}.1").write_text("{}")  # another worker took the group over
        time.sleep(0.3)
        assert hb.lost
    finally:
        hb.close()


def _toy_job(out, steps=20, where="toy, group 1/1") -> sweep.Job:
    from tests.experiments.test_framework import ToyConfig, toy_groups

    (g,) = toy_groups(ToyConfig(steps=steps))
    return sweep.Job(
        g, str(out), "toy", "quick", where, chunk_steps=5, max_runs_per_call=None, progress=False, lease_s=2
    )


def test_two_workers_on_one_group_train_it_once(tmp_path):
    job = _toy_job(tmp_path)
    made = []
    make = job.group.make_task
    job.group.make_task = lambda: made.append(1) or make()
    with ThreadPoolExecutor(2) as pool:  # two workers at once, as two executors on one folder
        a, b = pool.map(sweep.run_job, [job, job])
    assert len(made) == 1  # one trained it, the other waited for its claim and read its records
    assert a == b and len(a) == 4 and [r["run_id"] for r in a] == sorted(sweep.run_ids([job.group]))
    assert report.read_jsonl(sweep.group_file(tmp_path, job.group.id)) == a
    assert not list((tmp_path / "claims").iterdir()) and not (tmp_path / "checkpoints" / job.group.id).exists()
    assert sweep.run_job(job) == a and len(made) == 1  # a group already finished is never trained again


def test_group_files_are_merged_once_and_an_old_results_file_is_still_read(tmp_path):
    from tests.experiments.test_framework import TOY

    args = ["--out", str(tmp_path), "--no-progress", "--steps", "20"]
    first = TOY.main(args)
    results = tmp_path / "results.jsonl"
    # a folder from before group files: results.jsonl alone gives the same table, nothing retrained
    shutil.rmtree(tmp_path / "groups")
    old = TOY.main(args)
    assert old["markdown"] == first["markdown"] and old["records"] == first["records"]
    assert not (tmp_path / "groups").exists()  # nothing trained again
    # a group file its driver never merged (stopped right after the worker wrote it)
    results.unlink()
    sweep.write_group(tmp_path, first["records"][0]["group"], first["records"])
    assert sweep.read_results(tmp_path) == first["records"]
    again = TOY.main(args)
    assert again["records"] == first["records"] and report.read_jsonl(results) == first["records"]
    assert sweep.merge_results(tmp_path) == 0 and len(report.read_jsonl(results)) == 4  # a run id once
