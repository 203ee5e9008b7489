"""experiments.cg_runs: planning runs, the config overrides, default alphas and penalty pairs,
on hand-built method tables."""

import dataclasses

import pytest

from cg import models
from experiments import cg_runs

TABLE = {
    "l1": models.Method("flow", "exact", 0.2),
    "plain": models.Method("flow"),
    "gauss_l1": models.Method("gaussian", "fd", 0.3),
    "gauss": models.Method("gaussian"),
    "gauss_b2": models.Method("gaussian", beta=2.0),
    "l1_wide": models.Method("flow", "exact", 0.2, settings=(("flow_hidden", 2),)),
}


@pytest.fixture
def table(monkeypatch):
    monkeypatch.setattr(models, "METHODS", dict(TABLE))


def test_plan_every_method_at_its_alpha_and_penalised_ones_at_the_extra_alphas(table):
    runs = cg_runs.plan(["l1", "gauss"], 2, [{"domains": 2}, {"domains": 4}], alphas=(0.2, 1.0))
    # l1: its own 0.2 (the extra 0.2 is not repeated) and 1.0; gauss has no penalty: 0.0 only
    want = [
        {"method": m, "alpha": a, "domains": d, "seed": s}
        for m, alphas in (("l1", (0.2, 1.0)), ("gauss", (0.0,)))
        for a in alphas
        for d in (2, 4)
        for s in (0, 1)
    ]
    assert runs == want
    assert all(isinstance(r["alpha"], float) for r in runs)
    assert cg_runs.plan(["plain"], 1, [{}]) == [{"method": "plain", "alpha": 0.0, "seed": 0}]
    assert cg_runs.plan(["l1"], 0, [{}]) == []


def test_plan_rejects_an_unknown_method(table):
    with pytest.raises(KeyError):
        cg_runs.plan(["nope"], 1, [{}])


def test_overrides_are_the_cgconfig_fields_but_latent_dim_with_lists_as_tuples():
    @dataclasses.dataclass(frozen=True)
    class Config:
        latent_dim: int = 3
        num_steps: int = 50
        hidden: list = dataclasses.field(default_factory=lambda: [16, 8])
        domains: tuple = (2, 4)  # not a CGConfig field
        lr: float = 1e-3

    assert cg_runs.overrides(Config()) == {"num_steps": 50, "hidden": (16, 8), "lr": 1e-3}


def test_is_default_alpha(table):
    assert cg_runs.is_default_alpha({"method": "l1", "alpha": 0.2})
    assert not cg_runs.is_default_alpha({"method": "l1", "alpha": 1.0})
    assert cg_runs.is_default_alpha({"method": "gauss", "alpha": 0.0})
    assert cg_runs.is_default_alpha({"method": "floor", "alpha": 5.0})  # not a method: a floor, counted as default


def test_penalty_pairs_match_the_method_without_penalty(table):
    # l1_wide has other settings, gauss_b2 another beta: no partner; only methods given are paired
    assert cg_runs.penalty_pairs(list(TABLE)) == [("l1", "plain"), ("gauss_l1", "gauss")]
    assert cg_runs.penalty_pairs(["l1", "gauss", "gauss_b2", "l1_wide"]) == []
    assert cg_runs.penalty_pairs(["gauss", "gauss_l1"]) == [("gauss_l1", "gauss")]


def test_penalty_pairs_of_the_registered_methods():
    assert set(cg_runs.penalty_pairs(list(models.METHODS))) >= {
        ("cg_vae", "cg_vae_no_sparsity"),
        ("cg_vae_no_flow", "ivae"),
        ("cg_vae_fd", "cg_vae_no_sparsity"),
    }
    assert not any("beta_vae" in p or "cg_vae_flow1" in p for p in cg_runs.penalty_pairs(list(models.METHODS)))
