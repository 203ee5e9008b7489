import subprocess
import sys

import numpy as np
import pytest

from experiments import mechind_overlap, sweep


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
