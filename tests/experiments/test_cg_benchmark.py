"""The sparse-mixing benchmark: end to end, the decision rule, and one training path."""

import numpy as np
import pytest

import cg
from cg import sparse_data
from experiments import cg_benchmark as bench
from mechind.core import metrics, report, rng

TINY = [
    "--domains",
    "1",
    "2",
    "--seeds",
    "2",
    "--num-steps",
    "20",
    "--chunk-steps",
    "10",
    "--latent-dim",
    "2",
    "--obs-dims",
    "4",
    "--families",
    "laplace",
    "--arms",
    "structural",
    "--total",
    "400",
    "--heldout",
    "100",
    "--hidden",
    "8",
    "--no-progress",
]


@pytest.mark.slow  # about 15 s (suite time: the default suite measured 429 s from a fresh clone)
def test_end_to_end_and_an_experiment_equals_cg_fit(tmp_path):
    """A run of the experiment and cg.fit with the same settings give the same numbers: one
    training path (same preprocessing, config, key, steps)."""
    args = TINY + ["--out", str(tmp_path), "--methods", "cg_vae", "ivae"]
    out = bench.main(args)
    recs = report.unique_records(report.read_jsonl(tmp_path / "results.jsonl"))
    assert len(recs) == 2 * 2 * 2 and not any(r["failed"] for r in recs)
    for r in recs:
        assert 0 <= r["mcc"] <= 1 and 0 <= r["mcc_spearman"] <= 1 and 0 <= r["support_auroc"] <= 1
        assert np.isfinite(r["heldout_nelbo"]) and r["latent_std"] > 0
    text = (tmp_path / "table.md").read_text()
    for needle in ("## Decision", "Support AUROC", bench.FLOOR, bench.CEILING, "Held-out -ELBO", "Spearman MCC"):
        assert needle in text
    assert (tmp_path / "benchmark.png").stat().st_size > 0

    c = out["config"]
    rec = next(r for r in recs if r["method"] == "cg_vae" and r["domains"] == 2 and r["seed"] == 1)
    d = bench.dataset(c, rec)
    f = cg.fit(
        rng.key(1), d.x, d.u, method="cg_vae", latent_dim=2, num_steps=20, hidden=(8,), chunk_steps=10, progress=False
    )
    assert metrics.mcc(d.z, f.encode(d.x, d.u)) == pytest.approx(rec["mcc"], abs=1e-6)
    z_hat = f.encode(d.x, d.u)
    assert metrics.mcc(d.z, z_hat, method="spearman") == pytest.approx(rec["mcc_spearman"], abs=1e-6)

    bench.main(args)  # everything done: nothing trains, no record added
    assert len(report.read_jsonl(tmp_path / "results.jsonl")) == len(recs)


def _recs(method, values, domains=(1, 2)):
    return [
        {
            "method": method,
            "alpha": bench.models.METHODS[method].alpha,
            "domains": d,
            "seed": s,
            "failed": False,
            "mcc_spearman": v,
            "support_auroc": v,
        }
        for s, v in enumerate(values)
        for d in domains
    ]


def test_decision_rule_on_hand_built_records():
    base = np.linspace(0.5, 0.8, 8)
    holds, rows = bench.decide(
        _recs("cg_vae", base + 0.05) + _recs("cg_vae_no_sparsity", base) + _recs("cg_vae_no_flow", base + 0.05),
        lambda d: True,
    )
    assert holds is True and len(rows) == 4
    # flow + L1 significantly below Gaussian + L1: the claim fails
    holds, _ = bench.decide(
        _recs("cg_vae", base + 0.05) + _recs("cg_vae_no_sparsity", base) + _recs("cg_vae_no_flow", base + 0.2),
        lambda d: True,
    )
    assert holds is False
    # no gain over the flow alone: fails
    holds, _ = bench.decide(
        _recs("cg_vae", base) + _recs("cg_vae_no_sparsity", base) + _recs("cg_vae_no_flow", base), lambda d: True
    )
    assert holds is False
    # a method missing: no decision
    assert bench.decide(_recs("cg_vae", base), lambda d: True)[0] is None


def test_reference_records_floor_and_ceiling():
    c = bench.Config(
        domains=(1,),
        seeds=1,
        latent_dim=2,
        obs_dims=(4,),
        families=("laplace",),
        arms=("structural",),
        total=400,
        heldout=100,
    )
    floor, ceil = bench.reference_records(c)
    d = bench.dataset(c, floor)
    assert floor["mcc"] == pytest.approx(metrics.mcc(d.z, d.x)) and floor["support_auroc"] == 0.5
    assert ceil["support_auroc"] == 1.0  # edges >= 0.125 > 0 = every structural zero
    assert isinstance(d, sparse_data.SparseData) and d.x_val.shape == (100, 4)


@pytest.mark.parametrize(
    "bad",
    [
        ["--domains", "0"],
        ["--domains", "2", "2"],
        ["--domains", "7"],
        ["--obs-dims", "1"],
        ["--density", "1"],
        ["--families", "cauchy"],
    ],
)
def test_bad_settings_exit_before_any_work(tmp_path, bad, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--out", str(tmp_path), "--no-progress"] + bad)
    assert e.value.code == 2 and not (tmp_path / "results.jsonl").exists()
