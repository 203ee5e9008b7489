import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cg import models, train as cg_train
from mechind.core import metrics, rng, runner

SMALL = cg_train.CGConfig(latent_dim=3, hidden=(16,), num_train=512, num_val=256, batch_size=64, num_steps=60)


def _hp(alphas, betas, domains):
    return cg_train.hparams(alphas, betas, [1e-3] * len(alphas), domains)


# the standard and Gaussian priors are also trained by tests/cg/test_fitting.py (beta_vae, ivae);
# their runs here are slow-only
@pytest.mark.parametrize("prior", [pytest.param(p, marks=pytest.mark.slow) if p in ("standard", "gaussian") else p
                                   for p in models.PRIORS])
def test_every_prior_trains_and_is_deterministic(prior):
    cfg = SMALL.replace(prior=prior, sparse=prior == "flow")
    task = cg_train.make_task(cfg)
    keys = rng.seed_keys([0, 0, 1])
    hp = _hp([0.0, 0.1, 0.1], [1.0, 1.0, 4.0], [2, 2, 8])
    a = runner.run_group(task, keys, hp, chunk_steps=30, progress=False)
    b = runner.run_group(task, keys, hp, chunk_steps=60, progress=False)
    assert not a.failed.any()
    np.testing.assert_allclose(a.metrics["corr"], b.metrics["corr"], rtol=1e-4, atol=1e-5)
    mcc = [metrics.mcc_from_corr(c) for c in a.metrics["corr"]]
    assert all(0 < m <= 1 for m in mcc)


def test_domain_count_is_vmapped_data():
    """A run with d domains sees labels 0..d-1 only, balanced; its data differ from d' != d."""
    cfg = SMALL
    task = cg_train.make_task(cfg)
    data = task.make_data(rng.key(0))
    for d in (2, 5):
        u = np.asarray(data["perm"] % d)
        assert u.max() == d - 1 and np.bincount(u).min() >= (cfg.num_train + cfg.num_val) // d
    _, m = cg_train.train(rng.key(0), cfg.replace(num_domains=3))
    assert 0 < m["mcc"] <= 1


def test_observations_are_standardized_and_identity_mcc_matches_scipy():
    """Rebuild a run's held-out z and x with numpy from its data and check the reported
    MCC of the observations themselves against scipy's assignment on np.corrcoef."""
    from scipy.optimize import linear_sum_assignment

    cfg = SMALL.replace(num_steps=2, num_train=2048, num_val=2048)
    task = cg_train.make_task(cfg)
    key = rng.key(3)
    data = jax.device_get(task.make_data(key))
    w, a, b = (np.asarray(data["mixing"][k], np.float64) for k in ("w", "a", "b"))
    leaky = lambda v: np.where(v >= 0, v, 0.2 * v)  # noqa: E731
    idx = np.arange(cfg.num_train, cfg.num_train + cfg.num_val)

    def held_out(d):
        u = data["perm"][idx] % d
        z = data["mu"][u] + data["sigma"][u] * data["eps"][idx]
        return z, (leaky(leaky(a * z + b) @ w.T) - data["x_mean"]) / data["x_std"]

    _, xs = held_out(cfg.max_domains)  # the pooled population the statistics describe
    np.testing.assert_allclose(xs.mean(0), 0, atol=0.15)
    np.testing.assert_allclose(xs.std(0), 1, atol=0.15)
    z, xs = held_out(2)
    c = np.abs(np.corrcoef(z.T, xs.T)[:3, 3:])
    r, p = linear_sum_assignment(-c)
    _, m = cg_train.train(key, cfg.replace(num_domains=2))
    assert float(m["mcc_identity"]) == pytest.approx(c[r, p].mean(), abs=1e-4)


def test_l1_diagnostics_match_closed_form_and_finite_differences():
    """``l1_true``: the true mixing's Jacobian in closed form (numpy, float64) on the
    held-out samples, in standardized-x per latent-std units. ``l1_model``: the trained
    decoder's Jacobian by central differences at the encoder means."""
    cfg = SMALL.replace(num_steps=40, num_train=512, num_val=300)
    key, d = rng.key(5), 3
    state, m = cg_train.train(key, cfg.replace(num_domains=d))
    data = jax.device_get(cg_train.make_task(cfg).make_data(key))
    w, a, b = (np.asarray(data["mixing"][k], np.float64) for k in ("w", "a", "b"))
    slope = lambda v: np.where(v >= 0, 1.0, 0.2)  # noqa: E731  (leaky ReLU, negative slope 0.2)
    leaky = lambda v: v * slope(v)  # noqa: E731
    idx = np.arange(cfg.num_train, cfg.num_train + cfg.num_val)
    u = data["perm"][idx] % d
    z = data["mu"][u] + data["sigma"][u] * data["eps"][idx]
    pre1 = a * z + b
    pre2 = leaky(pre1) @ w.T
    # J[b] = diag(leaky'(pre2)) W diag(leaky'(pre1) a), then x / x_std and z in units of std(z)
    jac = slope(pre2)[:, :, None] * w[None] * (slope(pre1) * a)[:, None, :]
    jac = jac / np.asarray(data["x_std"], np.float64)[None, :, None] * z.std(0)[None, None, :]
    assert float(m["l1_true"]) == pytest.approx(np.abs(jac).sum((1, 2)).mean(), rel=1e-4)

    enc, dec = models.make_nets(cfg.latent_dim, cfg.latent_dim, cfg.hidden)
    x = (leaky(pre2) - data["x_mean"]) / data["x_std"]
    mu = np.asarray(enc.apply({"params": state.params["enc"]}, jnp.asarray(x, jnp.float32)))[:, :cfg.latent_dim]
    decode = lambda v: np.asarray(dec.apply({"params": state.params["dec"]}, jnp.asarray(v, jnp.float32)), np.float64)  # noqa: E731
    h = 1e-2
    cols = [(decode(mu + h * e) - decode(mu - h * e)) / (2 * h) for e in np.eye(cfg.latent_dim)]
    jac_model = np.stack(cols, -1) * mu.std(0)[None, None, :]
    assert float(m["l1_model"]) == pytest.approx(np.abs(jac_model).sum((1, 2)).mean(), rel=2e-2)


def test_sparse_warmup_switches_the_penalty_on_at_its_step():
    """With the penalty switched on only for the last step, the parameters differ from the
    alpha = 0 run by one Adam step; with it on from the start they differ far more."""
    cfg = SMALL.replace(num_steps=40)
    flat = lambda st: np.concatenate([np.ravel(v) for v in jax.tree.leaves(st.params)])  # noqa: E731
    base = flat(cg_train.train(rng.key(2), cfg.replace(alpha=0.0))[0])
    late = flat(cg_train.train(rng.key(2), cfg.replace(alpha=2.0, sparse_warmup=39))[0])
    early = flat(cg_train.train(rng.key(2), cfg.replace(alpha=2.0))[0])
    one_step = np.abs(late - base).max()
    assert 0 < one_step <= 1.5 * cfg.lr  # Adam moves each parameter by about lr per step
    assert np.abs(early - base).max() > 5 * one_step
    with pytest.raises(ValueError, match="sparse_warmup"):
        cfg.replace(sparse_warmup=40)


def test_fd_penalty_option_trains():
    cfg = SMALL.replace(penalty="fd", fd_step=1e-3)
    _, m = cg_train.train(rng.key(1), cfg)
    assert np.isfinite(m["final_loss"]) and not bool(m["failed"])


@pytest.mark.parametrize("kw, match", [
    (dict(num_domains=0), "num_domains must lie in"),
    (dict(num_domains=9), "num_domains must lie in"),
    (dict(density=0.0), "density"),
    (dict(alpha=-0.1), "alpha"),
    (dict(prior="laplace"), "prior"),
    (dict(penalty="bwd"), "penalty"),
    (dict(penalty_units="metres"), "penalty_units"),
    (dict(max_domains=0), "num_domains"),
])
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        cg_train.CGConfig(**kw)
