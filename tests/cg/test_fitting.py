"""cg.fit on user arrays: bad input, a case with a known answer, the preprocessing, the CLI."""

import numpy as np
import pytest

import cg
from cg import fitting, ivae_data, models
from mechind.core import metrics, rng


def _linear_data(seed=0, segments=20, per=250, n=3):
    return ivae_data.generate(seed, num_segments=segments, per_segment=per, latent_dim=n, act="none", cond_draws=500)


@pytest.mark.parametrize(
    "x, u, match",
    [
        (np.array([[0.0, np.nan]] * 300), np.zeros(300, int), "NaN/inf"),
        (np.array([[0.0, np.inf]] * 300), np.zeros(300, int), "NaN/inf"),
        (np.ones((300, 2)), np.full(300, 0.5), "integer"),
        (np.ones((300, 2)), np.full(300, -1), "negative"),
        # a cast to int32 before the range check used to wrap 2^32 to label 0 and merge that domain
        (np.ones((300, 2)), np.r_[np.zeros(150, np.int64), np.full(150, 2**32)], "label 4294967296"),
        (np.ones((300, 2)), np.full(300, 2**63, np.uint64), "label 9223372036854775808"),
        # float32 statistics overflow near 1e19 and switched the penalty off; float64 1e39 is finite
        (np.c_[np.ones(300), np.full(300, 1e20)], np.zeros(300, int), "magnitude above"),
        (np.c_[np.ones(300), np.full(300, 1e39)], np.zeros(300, int), "magnitude above"),
        (np.ones((300, 2)), np.zeros(299, int), "different lengths"),
        (np.ones((300, 2)), np.array(["a"] * 300), "integer"),
        (np.ones((100, 2)), np.zeros(100, int), "fewer than one batch"),
        (np.ones((300, 2)), np.repeat([0, 2], 150), "missing \\[1\\]"),
        (np.ones(300), np.zeros(300, int), "2-D"),
    ],
)
def test_bad_input_fails_before_compiling(x, u, match, monkeypatch):
    monkeypatch.setattr(fitting.runner, "run_group", lambda *a, **k: pytest.fail("compiled"))
    with pytest.raises(ValueError, match=match):
        cg.fit(rng.key(0), x, u, method="ivae", latent_dim=2)


def test_bad_settings_are_named():
    x, u = np.random.default_rng(0).normal(size=(300, 2)), np.repeat([0, 1], 150)
    with pytest.raises(ValueError, match="unknown setting"):
        cg.fit(rng.key(0), x, u, method="ivae", latent_dim=2, num_stepz=10)
    with pytest.raises(ValueError, match="method"):
        cg.fit(rng.key(0), x, u, method="pca", latent_dim=2)
    with pytest.raises(ValueError, match="latent_dim"):
        cg.fit(rng.key(0), x, u, method="ivae", latent_dim=3)
    with pytest.raises(ValueError, match="constant"):
        cg.fit(rng.key(0), np.c_[x[:, :1], np.ones(300)], u, method="ivae", latent_dim=2)
    with pytest.raises(ValueError, match="fewer than 2 directions of variance"):
        cg.fit(rng.key(0), np.c_[x[:, :1], 2 * x[:, :1]], u, method="ivae", latent_dim=2)
    # what a method fixes cannot be changed behind its name (a "ivae" record with a standard prior)
    with pytest.raises(ValueError, match="set by the method"):
        cg.fit(rng.key(0), x, u, method="ivae", latent_dim=2, prior="standard")
    with pytest.raises(ValueError, match="has no sparsity penalty"):
        cg.fit(rng.key(0), x, u, method="ivae", latent_dim=2, alpha=0.5)
    for bad, match in (
        (dict(num_steps=20.5), "num_steps must be an integer"),
        (dict(hidden="abc"), "hidden must be a list of integers"),
        (dict(num_steps=0), "num_steps must be a positive integer"),
    ):
        with pytest.raises(ValueError, match=match):
            cg.fit(rng.key(0), x, u, method="cg_vae", latent_dim=2, **bad)


def test_whitening_and_standardizing_match_numpy():
    x = np.random.default_rng(1).normal(size=(500, 3)) @ np.array([[2.0, 0, 0], [1, 1, 0], [0, 3, 0.2]])
    mean, proj = fitting.preprocessing(x, "whiten")
    np.testing.assert_allclose(np.cov(((x - mean) @ proj).T), np.eye(3), atol=1e-4)
    # d_x = latent_dim: exactly PCA whitening
    np.testing.assert_allclose(fitting.preprocessing(x, "whiten", 3)[1], proj, rtol=1e-6)
    mean, proj = fitting.preprocessing(x, "standardize")
    np.testing.assert_allclose((x - mean) @ proj, (x - x.mean(0)) / x.std(0), rtol=1e-5, atol=1e-5)


def test_whitening_with_more_observations_than_latents_keeps_noise_small():
    """d_x = 2n: the n signal directions come out white, the n noise directions keep their
    variance relative to the n-th signal eigenvalue (numpy's eigh as the reference) instead
    of being blown up to 1, and the map stays invertible."""
    r = np.random.default_rng(2)
    n, d_x = 3, 6
    signal = r.normal(size=(4000, n)) @ r.normal(size=(n, d_x))
    x = signal + 0.01 * r.normal(size=(4000, d_x))
    evals = np.linalg.eigvalsh(np.cov(x.T))  # ascending
    mean, proj = fitting.preprocessing(x, "whiten", n)
    got = np.linalg.eigvalsh(np.cov(((x - mean) @ proj).T))
    np.testing.assert_allclose(got[-n:], 1.0, rtol=1e-6)
    np.testing.assert_allclose(got[:-n], evals[:-n] / evals[-n], rtol=1e-6)
    assert got[:-n].max() < 1e-3  # plain whitening would give 1 here
    assert np.linalg.matrix_rank(proj) == d_x
    full = fitting.preprocessing(x, "whiten_all", n)[1].astype(np.float64)  # plain whitening, for comparison
    np.testing.assert_allclose(full.T @ np.cov(x.T) @ full, np.eye(d_x), atol=1e-4)


def test_ivae_recovers_a_linear_mixing_with_many_segments():
    """Linear ICA with segment-wise variances is identifiable (Matsuoka et al. 1995): iVAE's
    defaults must recover the sources up to permutation and scale."""
    d = _linear_data()
    f = cg.fit(rng.key(0), d.x, d.u, method="ivae", latent_dim=3, num_steps=3000, lr=3e-3, progress=False)
    assert metrics.mcc(d.s, f.encode(d.x, d.u)) >= 0.95
    assert f.loss_history.shape == (3,) and f.loss_history[-1] < f.loss_history[0]
    assert f.active_latents(d.x, d.u).all() and not f.failed
    with pytest.raises(ValueError, match="pass u"):  # the default encoder is conditioned on the domain
        f.encode(d.x)
    # the decoder maps posterior means back to the observations (un-doing the whitening)
    resid = f.decode(f.encode(d.x, d.u)) - d.x
    assert np.sqrt(np.mean(resid**2)) < 0.3 * d.x.std()
    # the learned decoder variance (whitened units) is of the order of the per-dimension residual
    white = resid @ f.x_proj
    assert 0.3 < float(np.exp(f.params["obs_log_var"])) / np.mean(white**2) < 10
    assert f.prior["log_var"].shape == (20, 3)


@pytest.mark.slow  # 9 s; vmapped runs equal separate ones on the runner's toy task (test_runner.py)
def test_fit_many_equals_separate_fits():
    d0, d1 = _linear_data(0, 4, 80, 2), _linear_data(1, 4, 80, 2)
    kw = dict(method="ivae", latent_dim=2, num_steps=40, batch_size=32, progress=False, chunk_steps=20)
    both = cg.fit_many(rng.seed_keys([3, 4]), np.stack([d0.x, d1.x]), np.stack([d0.u, d1.u]), **kw)
    one = cg.fit(rng.key(4), d1.x, d1.u, **kw)
    np.testing.assert_allclose(both[1].encode(d1.x, d1.u), one.encode(d1.x, d1.u), rtol=1e-4, atol=1e-5)


# cg_vae (the flow prior with the penalty) by default; ivae is trained by
# test_ivae_recovers_a_linear_mixing_with_many_segments and `mechind fit cg`'s end-to-end test
# (tests/mechind/test_cli.py), beta_vae's standard-normal prior is tested in tests/cg/test_models.py
# and trains on the same path; they and the two ablations are slow-only
@pytest.mark.parametrize(
    "method",
    [m if m == "cg_vae" else pytest.param(m, marks=pytest.mark.slow) for m in sorted(models.METHODS)],
)
def test_every_method_fits(method):
    d = _linear_data(2, 3, 100, 2)
    f = cg.fit(
        rng.key(1),
        d.x,
        d.u,
        method=method,
        latent_dim=2,
        num_steps=20,
        batch_size=64,
        progress=False,
        hidden=(8,),
        flow_hidden=2,
        embed_dim=2,
    )
    assert f.encode(d.x, d.u).shape == (300, 2) and np.isfinite(f.loss_history).all()


@pytest.mark.slow  # 6 s; `mechind fit cg` runs this command line end to end with MCC (tests/mechind/test_cli.py)
def test_cli_fits_an_npz_and_reports_mcc(tmp_path, capsys):
    d = _linear_data(3, 4, 100, 2)
    path = tmp_path / "data.npz"
    d.save(path)
    rc = fitting.main(
        [
            str(path),
            "--steps",
            "30",
            "--set",
            "batch_size=64",
            "hidden=[8]",
            "--no-progress",
            "--out",
            str(tmp_path / "out.npz"),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert '"mcc"' in out and np.load(tmp_path / "out.npz")["z_hat"].shape == (400, 2)
    np.savez(tmp_path / "bad.npz", x=np.ones((10, 2)))
    assert fitting.main([str(tmp_path / "bad.npz")]) == 2  # more such cases: tests/cg/test_fitting_cli.py
    assert "lacks" in capsys.readouterr().err
    np.savez(tmp_path / "nan.npz", x=np.full((300, 2), np.nan), u=np.zeros(300, int))
    assert fitting.main([str(tmp_path / "nan.npz"), "--no-progress"]) == 2


def test_out_map_takes_whitened_outputs_to_standardized_coordinates():
    d = _linear_data(4, 3, 200, 3)
    p = fitting.prepare(d.x[None], d.u[None], method="cg_vae", latent_dim=3)
    xw = np.asarray(p.data["x"][0], np.float64)
    np.testing.assert_allclose(xw @ p.out_map[0], (d.x - d.x.mean(0)) / d.x.std(0), atol=1e-4)
    q = fitting.prepare(d.x[None], d.u[None], method="cg_vae", latent_dim=3, preprocess="standardize")
    np.testing.assert_allclose(q.out_map[0], np.eye(3), atol=1e-5)


def test_sparse_methods_switch_the_penalty_on_after_half_the_steps():
    assert fitting.make_config("cg_vae", 2, num_steps=100).sparse_warmup == 50
    assert fitting.make_config("cg_vae", 2, num_steps=100, sparse_warmup=0).sparse_warmup == 0
    assert fitting.make_config("ivae", 2).sparse_warmup == 0


def test_a_method_is_its_registry_entry():
    """Every field a method sets reaches the config; every other field is CGConfig's default
    (the pipeline's config owns the defaults: cg.fit's are these)."""
    import dataclasses

    from cg import train as cg_train

    method_fields = {"prior", "sparse", "penalty", "alpha", "beta", "latent_dim", "sparse_warmup"}
    for name, m in models.METHODS.items():
        c = fitting.make_config(name, 2)
        assert (c.prior, c.sparse, c.alpha, c.beta) == (m.prior, m.sparse, m.alpha, m.beta)
        assert c.penalty == (m.penalty or "exact")
        settings = dict(m.settings)
        for f in dataclasses.fields(cg_train.CGConfig):
            if f.name not in method_fields:
                assert getattr(c, f.name) == settings.get(f.name, f.default), (name, f.name)
    assert (cg_train.CGConfig.num_steps, cg_train.CGConfig.posterior_cov) == (20_000, "full")  # cg.fit's, as documented
    c = fitting.make_config("beta_vae", 2)
    assert not c.learn_obs_var and c.obs_var == 0.05 and c.beta == 4.0
    assert fitting.make_config("beta_vae", 2, learn_obs_var=True).learn_obs_var
    assert fitting.make_config("cg_vae_flow1", 2).flow_hidden == 1
    assert fitting.make_config("cg_vae_fd", 2).penalty == "fd"


def test_a_new_method_is_one_entry(monkeypatch):
    """Registered once, a method is fitted by cg.fit and planned by the experiments."""
    from experiments import cg_runs

    monkeypatch.setitem(models.METHODS, "flow2_l1", models.Method("flow", "exact", 0.2, settings=(("flow_hidden", 2),)))
    assert fitting.make_config("flow2_l1", 2).flow_hidden == 2
    runs = cg_runs.plan(["flow2_l1", "ivae"], 1, [{"domains": 2}], alphas=(0.5,))
    assert sorted((r["method"], r["alpha"]) for r in runs) == [("flow2_l1", 0.2), ("flow2_l1", 0.5), ("ivae", 0.0)]


def test_prepare_sizes_the_domain_table_and_takes_per_run_weights():
    d = _linear_data(4, 3, 200, 3)
    p = fitting.prepare(d.x[None], d.u[None], method="cg_vae", latent_dim=3, num_domains=7)
    assert p.num_domains == 7
    with pytest.raises(ValueError, match="below the 3 domain labels"):
        fitting.prepare(d.x[None], d.u[None], method="ivae", latent_dim=3, num_domains=2)
    hp = p.hparams([0.0])
    assert float(hp.alpha[0]) == 0.0 and float(hp.beta[0]) == 1.0 and hp.out_map.shape == (1, 3, 3)
    with pytest.raises(ValueError, match="has none"):
        fitting.prepare(d.x[None], d.u[None], method="ivae", latent_dim=3).hparams([0.1])
    with pytest.raises(ValueError, match="need 1 alphas"):
        p.hparams([0.1, 0.1])


def test_a_fitted_model_compiles_its_encoder_and_decoder_once(monkeypatch):
    """encode / posterior / decode build the networks and jit them once per Fitted (they
    were rebuilt and re-traced on every call)."""
    from cg import train as cg_train

    d = _linear_data(0, 2, 150, 2)
    f = cg.fit(
        rng.key(0), d.x, d.u, method="ivae", latent_dim=2, num_steps=5, hidden=(4,), batch_size=64, progress=False
    )
    traces = []
    real = cg_train.posterior
    monkeypatch.setattr(cg_train, "posterior", lambda *a: traces.append(1) or real(*a))
    first = f.encode(d.x, d.u)
    for _ in range(3):
        np.testing.assert_array_equal(f.encode(d.x, d.u), first)
        f.posterior(d.x, d.u)
    assert len(traces) == 1 and f._jitted is f._jitted
    z = f.encode(d.x, d.u)
    np.testing.assert_array_equal(f.decode(z), f.decode(z))
