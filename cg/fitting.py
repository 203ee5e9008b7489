"""Fit CG-VAE, iVAE, beta-VAE or an ablation to your own arrays, on the shared runner.

    import jax, cg
    fitted = cg.fit(jax.random.PRNGKey(0), x, u, method="ivae", latent_dim=5)
    z_hat = fitted.encode(x, u)          # [N, latent_dim] posterior means
    fitted.loss_history                  # mean training loss per chunk of steps

``x [N, d_x]`` float observations, ``u [N]`` integer domain (segment) labels
``0..M-1``. Observations are whitened first (``preprocess="whiten"``, the default: PCA
whitening, an invertible linear map, so identifiability is unchanged), or z-scored per
dimension (``"standardize"``, which keeps the observed coordinates and so the support of
the mixing Jacobian: use it for the sparse-mixing methods' support questions), or left
as they are (``"none"``); :meth:`Fitted.decode` un-does it. Why whitening is the
default: with per-dimension z-scoring, a mixing whose Jacobian is ill-conditioned leaves
directions of the data with variance below the decoder variance ``obs_var``; the ELBO is
then higher with that latent switched off (posterior collapse) and MCC falls (measured
in ``docs/ivae_identification.md``). Every field of
:class:`cg.train.CGConfig` that defines the model or the optimisation (``hidden``,
``num_steps``, ``lr``, ``alpha``, ``obs_var``, ...) may be overridden by keyword;
the defaults are the ones the experiments use.

Command line (an ``.npz`` with ``x``, ``u`` and optionally the true ``z``, then MCC is
reported)::

    python -m cg.fitting data.npz --method ivae --latent-dim 5 --out fitted.npz
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cg import models
from cg import train as cg_train
from mechind.core import derivatives, metrics, rng, runner

Array = jax.Array

# CGConfig fields that describe a synthetic dataset, not a model: not overridable here
DATA_FIELDS = ("density", "latent_dist", "max_domains", "num_domains", "num_train", "num_val")
PREPROCESS = ("whiten", "standardize", "none")
SPARSE_WARMUP_FRACTION = 0.5  # sparse methods: the L1 penalty fine-tunes an ELBO solution
JACOBIAN_SAMPLES = 1_000  # posterior means at which support recovery reads the decoder's Jacobian
# fit's own defaults where they differ from CGConfig's (the CG experiments keep theirs until
# they are re-run on this estimator); each was measured on iVAE's protocol, see
# docs/ivae_identification.md: a decoder variance learned from a large start (0.5 of the
# whitened variance), a full-covariance posterior conditioned on the domain, the KL in
# closed form (Gaussian priors), hidden (128, 128) and Adam 2e-3 for 20k steps with lr / 10 for
# the last quarter (wider and faster-learning beat (64, 64) at 1e-3 for 60k steps, at a third
# of the cost); chosen on data seeds 0-4 and checked on held-out seeds 5-9
FIT_DEFAULTS = dict(num_steps=20_000, hidden=(128, 128), lr=2e-3, obs_var=0.5, learn_obs_var=True,
                    posterior_cov="full", kl="analytic", encoder_u=True, lr_drop=0.75)

# per-method defaults on top of FIT_DEFAULTS: beta > 1 with a *learned* decoder variance has a
# degenerate optimum (the variance explains all the data, every latent switched off; measured on
# the sparse iVAE protocol, n = 3, 4 domains: 0 active latents, MCC 0.23-0.50), so beta-VAE keeps
# a fixed variance of 0.05 of the whitened unit variance (3 of 3 latents active, MCC 0.70-0.81)
METHOD_FIT_DEFAULTS = {"beta_vae": dict(learn_obs_var=False, obs_var=0.05)}


@dataclasses.dataclass(frozen=True)
class Fitted:
    """A fitted model. Arrays are host numpy.

    Attributes:
      config: the :class:`cg.train.CGConfig` it was trained with.
      method: a key of :data:`cg.models.METHODS`.
      params: ``{"enc", "dec", "prior"}`` parameter pytrees (and the scalar ``"obs_log_var"``
        when the decoder variance is learned).
      x_mean: ``[d_x]``, x_proj: ``[d_x, d_x]``: the preprocessing, ``x -> (x - x_mean) @ x_proj``.
      num_domains: M, the number of domain labels.
      loss_history: ``[C]`` mean training loss of each chunk of ``chunk_steps`` steps.
      failed: the loss went non-finite.
    """

    config: cg_train.CGConfig
    method: str
    params: Any
    x_mean: np.ndarray
    x_proj: np.ndarray
    num_domains: int
    loss_history: np.ndarray
    failed: bool

    @property
    def _model(self) -> cg_train.Model:
        return cg_train.make_model(self.config, self.x_mean.shape[0], self.num_domains)

    def encode(self, x, u=None) -> np.ndarray:
        """Posterior means ``[N, latent_dim]`` of ``x [N, d_x]`` (original units); ``u [N]``
        is needed only when the encoder is conditioned on the domain (``encoder_u``)."""
        return self.posterior(x, u)[0]

    def preprocess(self, x) -> np.ndarray:
        """``x [N, d_x]`` in the units the model was trained in."""
        return ((np.asarray(x, np.float32) - self.x_mean) @ self.x_proj).astype(np.float32)

    def posterior(self, x, u=None) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, variance)``, each ``[N, latent_dim]``, of q(z | x) (and u if conditioned)."""
        x = _check_x(x, self.x_mean.shape[0])
        if self.config.encoder_u and u is None:
            raise ValueError("this model's encoder is conditioned on the domain: pass u")
        u = np.zeros(len(x), np.int32) if u is None else _check_u(u, len(x), self.num_domains)
        xs = jnp.asarray(self.preprocess(x))
        mu, log_var = jax.jit(self._model.posterior)(self.params, xs, jnp.asarray(u))
        return np.asarray(mu), np.exp(np.asarray(log_var))

    def active_latents(self, x, u=None, threshold: float = 0.5) -> np.ndarray:
        """bool ``[latent_dim]``: latents whose posterior mean carries more than ``threshold``
        of their total variance ``Var(E[z|x]) + E[Var(z|x)]``; a collapsed latent (posterior
        equal to the prior, ignored by the decoder) carries almost none."""
        mu, var = self.posterior(x, u)
        signal = mu.var(0)
        return signal / (signal + var.mean(0)) > threshold

    def decode(self, z) -> np.ndarray:
        """Decoder means ``[N, d_x]`` (original units) of ``z [N, latent_dim]``."""
        z = jnp.asarray(z, jnp.float32)
        model = self._model
        out = jax.jit(jax.vmap(lambda v: model.decode(self.params, v)))(z)
        return np.asarray(out) @ np.linalg.inv(self.x_proj) + self.x_mean

    @property
    def prior(self) -> dict:
        """The learned prior's parameters (``{"mu", "log_var"}`` per domain for iVAE's
        Gaussian prior, the flow's embedding for CG-VAE, empty for beta-VAE)."""
        return self.params["prior"]


def _check_x(x, obs_dim: int | None = None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be a 2-D array [N, d_x], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"x must hold real numbers, got dtype {x.dtype}")
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(1))
        raise ValueError(f"x holds {int(bad.sum())} NaN/inf value(s), first in row {rows[0]}")
    if obs_dim is not None and x.shape[1] != obs_dim:
        raise ValueError(f"x has {x.shape[1]} columns, the model was fitted to {obs_dim}")
    return x.astype(np.float32)


def _check_u(u, n: int, num_domains: int | None = None) -> np.ndarray:
    u = np.asarray(u)
    if u.ndim != 1:
        raise ValueError(f"u must be a 1-D array of domain labels [N], got shape {u.shape}")
    if len(u) != n:
        raise ValueError(f"x and u have different lengths: {n} and {len(u)}")
    if np.issubdtype(u.dtype, np.floating):
        if not np.all(np.isfinite(u)) or np.any(u != np.round(u)):
            raise ValueError("u must hold integer domain labels 0..M-1; got non-integer values")
    elif not np.issubdtype(u.dtype, np.integer):
        raise ValueError(f"u must hold integer domain labels 0..M-1, got dtype {u.dtype}")
    u = u.astype(np.int64)
    if len(u) and u.min() < 0:
        raise ValueError(f"u must hold labels 0..M-1, got a negative label {u.min()}")
    if num_domains is not None and len(u) and u.max() >= num_domains:
        raise ValueError(f"u holds label {u.max()}, outside 0..{num_domains - 1} of the fitted model")
    return u.astype(np.int32)


def check_inputs(x, u, *, method: str, latent_dim: int, batch_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate user arrays before anything compiles: ``(x float32, u int32, M)``."""
    if method not in models.METHODS:
        raise ValueError(f"method must be one of {sorted(models.METHODS)}, got {method!r}")
    if not isinstance(latent_dim, (int, np.integer)) or latent_dim < 1:
        raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
    x = _check_x(x)
    u = _check_u(u, len(x))
    if len(x) < batch_size:
        raise ValueError(f"{len(x)} samples are fewer than one batch of {batch_size}: "
                         f"pass batch_size=<= {len(x)} or more data")
    num_domains = int(u.max()) + 1
    missing = np.setdiff1d(np.arange(num_domains), u)
    if missing.size:
        raise ValueError(f"domain labels must be 0..M-1 with every label used; missing {missing[:5].tolist()}")
    if latent_dim > x.shape[1]:
        raise ValueError(f"latent_dim={latent_dim} exceeds the observed dimension {x.shape[1]}")
    return x, u, num_domains


def preprocessing(x: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [d_x], proj [d_x, d_x])`` with ``(x - mean) @ proj`` whitened (identity
    covariance), z-scored per dimension, or unchanged. Raises on a constant dimension."""
    if how not in PREPROCESS:
        raise ValueError(f"preprocess must be one of {PREPROCESS}, got {how!r}")
    x64 = np.asarray(x, np.float64)
    d = x64.shape[1]
    if how == "none":
        return np.zeros(d, np.float32), np.eye(d, dtype=np.float32)
    mean, std = x64.mean(0), x64.std(0)
    if np.any(std == 0):
        raise ValueError(f"observed dimension(s) {np.flatnonzero(std == 0).tolist()} of x are constant; drop them")
    if how == "standardize":
        return mean.astype(np.float32), np.diag(1.0 / std).astype(np.float32)
    evals, evecs = np.linalg.eigh(np.cov(x64.T))
    if evals[0] <= 1e-12 * evals[-1]:
        raise ValueError("x is rank-deficient (a linear combination of its columns is constant): "
                         "whitening is undefined; drop redundant columns or pass preprocess='standardize'")
    return mean.astype(np.float32), (evecs / np.sqrt(evals)).astype(np.float32)


def make_config(method: str, latent_dim: int, num_samples: int, num_domains: int, **overrides) -> cg_train.CGConfig:
    """The config of a fit: the experiments' defaults, the method's prior and penalty, and
    ``overrides`` (fields of :class:`cg.train.CGConfig`, data-description fields excluded)."""
    known = {f.name for f in dataclasses.fields(cg_train.CGConfig)} - set(DATA_FIELDS)
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}; valid: {sorted(known)}")
    m = models.METHODS[method]
    base = dict(latent_dim=latent_dim, max_domains=num_domains, num_domains=num_domains,
                num_train=num_samples, num_val=2, prior=m["prior"], sparse=m["sparse"], beta=m["beta"],
                **{**FIT_DEFAULTS, **METHOD_FIT_DEFAULTS.get(method, {})})
    if not m["sparse"]:
        base["alpha"] = 0.0
    elif "sparse_warmup" not in overrides:
        # the penalty on from the start, with the decoder variance starting large, switched every
        # latent off (CG-VAE MCC 0.28-0.35, 0 active latents); on after half the steps: 0.87
        base["sparse_warmup"] = int(SPARSE_WARMUP_FRACTION * overrides.get("num_steps", base["num_steps"]))
    return cg_train.CGConfig(**{**base, **overrides})


def jacobian_rows(num_samples: int) -> np.ndarray:
    """int ``[min(N, JACOBIAN_SAMPLES)]``: rows evenly spread over ``0..N-1`` at which the
    decoder's Jacobian is read (support recovery, its standardized L1)."""
    return np.unique(np.linspace(0, num_samples - 1, min(num_samples, JACOBIAN_SAMPLES)).astype(np.int64))


def make_fit_task(config: cg_train.CGConfig, obs_dim: int, num_samples: int, truth_dim: int = 0) -> runner.Task:
    """A :class:`~mechind.core.runner.Task` whose data are caller-supplied arrays ``{"x", "u"}``
    (and the true latents ``"s" [N, truth_dim]`` when ``truth_dim > 0``: then ``evaluate``
    returns their correlation matrix with the posterior means over the whole dataset,
    ``"corr" [truth_dim, n]``, and each latent's share of variance carried by its posterior
    mean, ``"active" [n]``, see :meth:`Fitted.active_latents`; with a true support
    ``"support" [d_x, truth_dim]`` in the data as well, the decoder's mean absolute Jacobian
    in z-scored observed coordinates per latent standard deviation, ``"jac_abs" [d_x, n]``,
    over the rows :func:`jacobian_rows`; its sum is the standardized L1 of
    :func:`cg.losses.sparse_mixing_penalty`)."""
    model = cg_train.make_model(config, obs_dim, config.max_domains)

    def make_data(key):  # shapes only: run_group is given the arrays themselves
        d = {"x": jnp.zeros((num_samples, obs_dim)), "u": jnp.zeros((num_samples,), jnp.int32)}
        return {**d, "s": jnp.zeros((num_samples, truth_dim))} if truth_dim else d

    def init(key, data, hp):
        return model.init(key, hp)

    def step(state, data, hp, i):
        kb = jax.random.split(jax.random.fold_in(rng.from_data(state.key), i))[0]
        idx = jax.random.randint(kb, (config.batch_size,), 0, num_samples)
        return model.update(state, data["x"][idx], data["u"][idx], hp, i)

    def evaluate(state, data, hp):
        if "s" not in data:
            return {}
        mu, log_var = model.posterior(state.params, data["x"], data["u"])
        signal = jnp.var(mu, 0)
        out = {"corr": metrics.correlation_matrix(data["s"], mu),
               "active": signal / (signal + jnp.mean(jnp.exp(log_var), 0)),
               # a derivative penalty can be paid by inflating the latents: keep their scale in view
               "latent_std": jnp.mean(jnp.sqrt(signal))}
        if "support" in data:  # support recovery: the decoder's Jacobian in z-scored coordinates
            # evenly spread over the dataset (user data and iVAE's protocol come sorted by domain:
            # the first points would all be from one domain, with that domain's latent spread)
            m = mu[jacobian_rows(num_samples)]
            dec = lambda v: model.decode(state.params, v) @ hp.out_map  # noqa: E731
            jac = derivatives.jacobian(dec, m, mode="fwd")  # [B, d_x, n]
            out["jac_abs"] = jnp.mean(jnp.abs(jac), 0) * jnp.std(m, 0)[None, :]  # per latent std
            out["support"] = data["support"]
        return out

    return runner.Task(make_data, init, step, evaluate, config.num_steps, f"fit {config.prior}")


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Checked, preprocessed arrays of R datasets and the config that fits them.

    Attributes: config; data ``{"x" [R, N, d_x] preprocessed, "u" [R, N]}``; mean
    ``[R, d_x]`` and proj ``[R, d_x, d_x]`` (the preprocessing); num_domains M; out_map
    ``[R, d_x, d_x]``, preprocessed -> z-scored coordinates (``inv(proj) diag(1 / std)``)."""

    config: cg_train.CGConfig
    data: dict
    mean: np.ndarray
    proj: np.ndarray
    num_domains: int
    out_map: np.ndarray

    def hparams(self, alphas=None, betas=None) -> cg_train.HParams:
        """Per-run numbers, and ``out_map [R, d_x, d_x]``: preprocessed x -> z-scored observed
        coordinates, so a sparsity penalty is on the Jacobian in the data's own coordinates
        (whitening mixes them; this undoes it inside the penalty only). ``alphas``, ``betas``
        ``[R]``: per-run weights (default: the config's), so methods that share a prior share
        one compiled program."""
        c, r = self.config, len(self.mean)
        alphas = [c.alpha] * r if alphas is None else list(alphas)
        betas = [c.beta] * r if betas is None else list(betas)
        if len(alphas) != r or len(betas) != r:
            raise ValueError(f"need {r} alphas and betas, got {len(alphas)} and {len(betas)}")
        if any(a > 0 for a in alphas) and not c.sparse:
            raise ValueError("alpha > 0 needs a config with the sparse-mixing penalty (sparse=True)")
        hp = cg_train.hparams(alphas, betas, [c.lr] * r, [self.num_domains] * r)
        return hp._replace(out_map=jnp.asarray(self.out_map, jnp.float32))


def prepare(xs, us, *, method: str, latent_dim: int, preprocess: str = "whiten", num_domains: int | None = None,
            **overrides) -> Prepared:
    """Validate (before anything compiles) and preprocess ``xs [R, N, d_x]``, ``us [R, N]``.

    ``num_domains``: the size of the prior's domain table and of the encoder's one-hot
    (default: the largest label + 1). A larger value lets datasets with different numbers
    of domains share one compiled program; a run never touches the rows of labels it lacks."""
    xs, us = np.asarray(xs), np.asarray(us)
    if xs.ndim != 3 or us.ndim != 2 or len(xs) != len(us):
        raise ValueError(f"need xs [R, N, d_x] and us [R, N], got {xs.shape} and {us.shape}")
    if preprocess not in PREPROCESS:
        raise ValueError(f"preprocess must be one of {PREPROCESS}, got {preprocess!r}")
    batch = overrides.get("batch_size", cg_train.CGConfig.batch_size)
    checked = [check_inputs(x, u, method=method, latent_dim=latent_dim, batch_size=batch) for x, u in zip(xs, us)]
    used = max(c[2] for c in checked)
    if num_domains is None:
        num_domains = used
    elif num_domains < used:
        raise ValueError(f"num_domains={num_domains} is below the {used} domain labels in the data")
    x = np.stack([c[0] for c in checked])
    u = np.stack([c[1] for c in checked])
    pre = [preprocessing(xi, preprocess) for xi in x]
    mean, proj = np.stack([p[0] for p in pre]), np.stack([p[1] for p in pre])
    config = make_config(method, latent_dim, x.shape[1], num_domains, **overrides)
    data = {"x": jnp.asarray(np.einsum("rnd,rde->rne", x - mean[:, None], proj), jnp.float32), "u": jnp.asarray(u)}
    out_map = np.linalg.inv(proj.astype(np.float64)) / x.std(1)[:, None, :]
    return Prepared(config, data, mean, proj, num_domains, out_map)


def fit_many(keys, xs, us, *, method: str = "ivae", latent_dim: int, preprocess: str = "whiten",
             chunk_steps: int = 1_000, progress: bool = True, **overrides) -> list[Fitted]:
    """Fit R models at once, run r on ``(xs[r], us[r])`` with key ``keys[r]``, as one
    compiled, vmapped program. ``xs [R, N, d_x]``, ``us [R, N]``: datasets of equal shape
    (the same dataset repeated fits several seeds). See :func:`fit`."""
    keys = jnp.asarray(keys)
    if keys.ndim != 2 or len(keys) != len(np.asarray(xs)):
        raise ValueError(f"need keys [R, 2] with R = len(xs); got {keys.shape} for {len(np.asarray(xs))} datasets")
    p = prepare(xs, us, method=method, latent_dim=latent_dim, preprocess=preprocess, **overrides)
    n_samples, obs_dim = p.data["x"].shape[1:]
    task = make_fit_task(p.config, obs_dim, n_samples)
    res = runner.run_group(task, keys, p.hparams(), chunk_steps=chunk_steps, progress=progress, data=p.data)
    return [Fitted(p.config, method, jax.device_get(jax.tree.map(lambda a, i=i: a[i], res.state.params)),
                   p.mean[i], p.proj[i], p.num_domains, res.loss_history[i], bool(res.failed[i]))
            for i in range(len(keys))]


def fit(key, x, u, *, method: str = "ivae", latent_dim: int, preprocess: str = "whiten",
        chunk_steps: int = 1_000, progress: bool = True, **overrides) -> Fitted:
    """Fit one model of ``cg.models.METHODS`` to ``x [N, d_x]`` with domain labels ``u [N]``.

    Args:
      key: a PRNG key (initialisation, batches, the reparameterisation noise).
      method: "cg_vae", "cg_vae_no_sparsity", "cg_vae_no_flow", "ivae" or "beta_vae".
      latent_dim: number of latents (<= d_x).
      preprocess: "whiten" (default), "standardize" or "none" (module docstring); the
        decoder variance ``obs_var`` is in the preprocessed units.
      chunk_steps: steps per compiled chunk (the loss history has one entry per chunk).
      overrides: fields of :class:`cg.train.CGConfig` (``num_steps``, ``hidden``, ``lr``,
        ``alpha``, ``obs_var``, ``batch_size``, ...).

    Raises:
      ValueError: before compiling, for NaN/inf in x, labels that are not integers
        ``0..M-1``, mismatched lengths, fewer samples than a batch, an unknown setting.
    """
    key = jnp.asarray(key)
    if key.shape != (2,):
        raise ValueError(f"key must be a PRNG key of shape (2,), e.g. jax.random.PRNGKey(0); got shape {key.shape}")
    x = _check_x(x)  # clear messages for a single dataset's shapes before stacking
    u = _check_u(u, len(x))
    return fit_many(key[None], x[None], u[None], method=method, latent_dim=latent_dim, preprocess=preprocess,
                    chunk_steps=chunk_steps, progress=progress, **overrides)[0]


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m cg.fitting", description=(
            "Fit CG-VAE, iVAE, beta-VAE or an ablation to an .npz holding x [N, d_x] (float) and u [N] "
            "(integer domain labels 0..M-1), optionally the true latents z [N, n] (then MCC is reported). "
            "Writes the posterior means and the loss history to --out (.npz) and a summary as JSON."))
    ap.add_argument("data", type=Path, help=".npz file with arrays x, u (and optionally z)")
    ap.add_argument("--method", default="ivae", choices=sorted(models.METHODS),
                    help="which model: its prior, penalty and beta (default: ivae)")
    ap.add_argument("--latent-dim", type=int, default=None,
                    help="number of latents (default: the width of z if given, else of x)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the initialisation and batches (default 0)")
    ap.add_argument("--steps", type=int, default=None,
                    help=f"training steps (default {FIT_DEFAULTS['num_steps']})")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="any other CGConfig field, e.g. --set lr=0.003 'hidden=[64,64]' alpha=0.5 "
                         "(values parsed as JSON; lists become tuples)")
    ap.add_argument("--preprocess", default="whiten", choices=PREPROCESS,
                    help="whiten x (default), z-score each dimension (keeps the coordinates, for the "
                         "sparse-mixing methods' support), or none")
    ap.add_argument("--out", type=Path, default=None,
                    help="output .npz (default: <data>_<method>_fit.npz beside the data)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    if not args.data.exists():
        ap.error(f"no such file: {args.data}")
    with np.load(args.data) as f:
        missing = {"x", "u"} - set(f.files)
        if missing:
            ap.error(f"{args.data} lacks array(s) {sorted(missing)}; it has {f.files}")
        x, u = f["x"], f["u"]
        z = f["z"] if "z" in f.files else None
    overrides = {}
    for item in args.set:
        if "=" not in item:
            ap.error(f"--set takes FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        v = _parse_value(v)
        overrides[k] = tuple(v) if isinstance(v, list) else v
    if args.steps is not None:
        overrides["num_steps"] = args.steps
    latent_dim = args.latent_dim or (z.shape[1] if z is not None else np.asarray(x).shape[1])
    try:
        fitted = fit(rng.key(args.seed), x, u, method=args.method, latent_dim=latent_dim,
                     preprocess=args.preprocess, progress=not args.no_progress, **overrides)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    z_hat = fitted.encode(x, u if fitted.config.encoder_u else None)
    summary = {"method": args.method, "latent_dim": latent_dim, "samples": int(len(x)),
               "domains": fitted.num_domains, "steps": fitted.config.num_steps,
               "final_loss": float(fitted.loss_history[-1]) if fitted.loss_history.size else None,
               "failed": fitted.failed}
    if z is not None:
        summary["mcc"] = float(metrics.mcc(np.asarray(z), z_hat))
        summary["mcc_observations"] = float(metrics.mcc(np.asarray(z), np.asarray(x))) \
            if np.asarray(x).shape[1] == np.asarray(z).shape[1] else None
    out = args.out or args.data.with_name(f"{args.data.stem}_{args.method}_fit.npz")
    np.savez(out, z_hat=z_hat, loss_history=fitted.loss_history, x_mean=fitted.x_mean, x_proj=fitted.x_proj)
    print(json.dumps(summary, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
