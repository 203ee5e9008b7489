"""Fit CG-VAE, iVAE, beta-VAE or an ablation to your own arrays, on the shared runner.

    import jax, cg
    fitted = cg.fit(jax.random.PRNGKey(0), x, u, method="ivae", latent_dim=5)
    z_hat = fitted.encode(x, u)          # [N, latent_dim] posterior means
    fitted.loss_history                  # mean training loss per chunk of steps

``x [N, d_x]`` float observations, ``u [N]`` integer domain (segment) labels
``0..M-1``. Observations are whitened first (``preprocess="whiten"``, the default), or
z-scored per dimension (``"standardize"``), or left as they are (``"none"``);
:meth:`Fitted.decode` un-does it. Every choice is an invertible linear map, so
identifiability is unchanged, and the sparse-mixing penalty is always on the Jacobian in
the data's own (z-scored) coordinates (``out_map``), whatever the preprocessing.

``"whiten"`` whitens the ``latent_dim`` leading principal directions and scales the other
``d_x - latent_dim`` by the same factor as the last of those, so they keep their small
variance relative to the signal. For ``d_x = latent_dim`` this is plain PCA whitening.
Why not plain whitening when ``d_x > n``: it blows the near-null directions of x (noise)
up to unit variance, as large as a latent's, and the models then fit noise (measured:
n = 4, d_x = 8, linear, Gaussian prior + L1, MCC 0.01). Why not z-scoring: a mixing
whose Jacobian is ill-conditioned leaves directions with variance below the decoder
variance ``obs_var``; the ELBO is then higher with that latent switched off (posterior
collapse) and MCC falls (measured in ``docs/ivae_identification.md``). ``"whiten_all"``
is plain PCA whitening of every direction, kept to measure that difference. Every field of
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
import functools
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cg import models
from cg import train as cg_train
from mechind.core import datasets, metrics, report, rng, runner

Array = jax.Array

# what a method fixes (cg.models.METHODS); --set cannot change them behind the method's name
METHOD_FIELDS = ("prior", "sparse", "penalty")
PREPROCESS = ("whiten", "standardize", "none", "whiten_all")
SPARSE_WARMUP_FRACTION = 0.5  # sparse methods: the L1 penalty fine-tunes an ELBO solution
# the defaults of every CG fit (cg.fit and the experiments alike); each was measured on iVAE's protocol, see
# docs/ivae_identification.md: a decoder variance learned from a large start (0.5 of the
# whitened variance), a full-covariance posterior conditioned on the domain, the KL in
# closed form (Gaussian priors), hidden (128, 128) and Adam 2e-3 for 20k steps with lr / 10 for
# the last quarter (wider and faster-learning beat (64, 64) at 1e-3 for 60k steps, at a third
# of the cost); chosen on data seeds 0-4 and checked on held-out seeds 5-9
# x's bound (float32 statistics overflow beyond 1e15: issue 20) is datasets.MAX_ABS, shared by every fit
MAX_LABEL = 2**31 - 1


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

    @functools.cached_property
    def _jitted(self) -> tuple:
        """``(posterior, decode)``, compiled once per fitted model: ``posterior(params, x, u)``
        and ``decode(params, z [N, n])`` (vmapped)."""
        c = self.config
        nets = cg_train.make_nets(c, self.x_mean.shape[0], self.num_domains)
        post = jax.jit(lambda params, x, u: cg_train.posterior(c, nets, params, x, u))
        dec = jax.jit(jax.vmap(lambda params, z: cg_train.decode(nets, params, z), in_axes=(None, 0)))
        return post, dec

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
        mu, log_var = self._jitted[0](self.params, xs, jnp.asarray(u))
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
        out = self._jitted[1](self.params, z)
        return np.asarray(out) @ np.linalg.inv(self.x_proj) + self.x_mean

    @property
    def prior(self) -> dict:
        """The learned prior's parameters (``{"mu", "log_var"}`` per domain for iVAE's
        Gaussian prior, the flow's embedding for CG-VAE, empty for beta-VAE)."""
        return self.params["prior"]


def _check_x(x, obs_dim: int | None = None) -> np.ndarray:
    return datasets.check_user_array(x, "x", 2, obs_dim)


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
    # range checks on the values as they are, before any cast (a cast to int32 first wrapped 2^32 to 0)
    if len(u) and u.min() < 0:
        raise ValueError(f"u must hold labels 0..M-1, got a negative label {u.min()}")
    if len(u) and u.max() > MAX_LABEL:
        raise ValueError(f"u holds label {u.max()}; labels must be 0..M-1 with M the number of domains")
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
        raise ValueError(
            f"{len(x)} samples are fewer than one batch of {batch_size}: "
            f"use more data or a batch_size of at most {len(x)}"
        )
    num_domains = int(u.max()) + 1
    missing = np.setdiff1d(np.arange(num_domains), u)
    if missing.size:
        raise ValueError(f"domain labels must be 0..M-1 with every label used; missing {missing[:5].tolist()}")
    if latent_dim > x.shape[1]:
        raise ValueError(f"latent_dim={latent_dim} exceeds the observed dimension {x.shape[1]}")
    return x, u, num_domains


def preprocessing(x: np.ndarray, how: str, latent_dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [d_x], proj [d_x, d_x])``, invertible, with ``(x - mean) @ proj`` whitened in its
    ``latent_dim`` leading principal directions (the rest scaled alike, see the module
    docstring; all of them when ``latent_dim`` is None), z-scored per dimension, or
    unchanged. Raises on a constant dimension, or fewer than ``latent_dim`` directions of
    variance."""
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
    evals, evecs = np.linalg.eigh(np.cov(x64.T))  # ascending
    k = d if latent_dim is None or how == "whiten_all" else min(latent_dim, d)
    floor = evals[-k]  # the k-th largest: directions below it are scaled as it is, not blown up
    if floor <= 1e-12 * evals[-1] or evals[0] <= 1e-24 * evals[-1]:
        raise ValueError(
            f"x has fewer than {k} directions of variance (a linear combination of its columns is "
            "constant): drop redundant columns, lower latent_dim or pass preprocess='standardize'"
        )
    return mean.astype(np.float32), (evecs / np.sqrt(np.maximum(evals, floor))).astype(np.float32)


def make_config(method: str, latent_dim: int, **overrides) -> cg_train.CGConfig:
    """The config of a fit: :class:`cg.train.CGConfig`'s defaults, then the method's entry of
    :data:`cg.models.METHODS` (prior, penalty, weights, settings), then ``overrides``
    (fields of :class:`cg.train.CGConfig`, except those a method fixes)."""
    if method not in models.METHODS:
        raise ValueError(f"method must be one of {sorted(models.METHODS)}, got {method!r}")
    known = {f.name for f in dataclasses.fields(cg_train.CGConfig)} - set(METHOD_FIELDS) - {"latent_dim"}
    fixed = sorted(set(overrides) & set(METHOD_FIELDS))
    if fixed:
        raise ValueError(
            f"{fixed} are set by the method; pick the method that has the one you want "
            f"({', '.join(f'{k}: {m.prior}' for k, m in models.METHODS.items())})"
        )
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}; valid: {sorted(known)}")
    m = models.METHODS[method]
    base = dict(
        latent_dim=latent_dim,
        prior=m.prior,
        sparse=m.sparse,
        penalty=m.penalty or "exact",
        alpha=m.alpha,
        beta=m.beta,
        **dict(m.settings),
    )
    if m.sparse and "sparse_warmup" not in overrides:
        # the penalty on from the start, with the decoder variance starting large, switched every
        # latent off (CG-VAE MCC 0.28-0.35, 0 active latents); on after half the steps: 0.87
        steps = overrides.get("num_steps", cg_train.CGConfig.num_steps)
        base["sparse_warmup"] = int(SPARSE_WARMUP_FRACTION * steps) if isinstance(steps, int) else 0
    if not m.sparse and overrides.get("alpha", 0) != 0:
        raise ValueError(
            f"method {method!r} has no sparsity penalty, so alpha must stay 0; "
            f"the methods with one: {sorted(k for k, v in models.METHODS.items() if v.sparse)}"
        )
    return cg_train.CGConfig(**{**base, **overrides})


# the pipeline's finish under the name every CG experiment and helper calls: Pearson and
# Spearman MCC, active latents, latent scale, support recovery, held-out -ELBO


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Checked, preprocessed arrays of R datasets and the config that fits them.

    Attributes: method; config; data ``{"x" [R, N, d_x] preprocessed, "u" [R, N]}`` (and
    ``"x_val"``, ``"u_val"``, ``"logdet"`` with held-out data); mean ``[R, d_x]`` and proj
    ``[R, d_x, d_x]`` (the preprocessing); num_domains M; out_map ``[R, d_x, d_x]``,
    preprocessed -> z-scored coordinates (``inv(proj) diag(1 / std)``)."""

    method: str
    config: cg_train.CGConfig
    data: dict
    mean: np.ndarray
    proj: np.ndarray
    num_domains: int
    out_map: np.ndarray

    def hparams(self, alphas=None) -> cg_train.HParams:
        """Per-run numbers, and ``out_map [R, d_x, d_x]``: preprocessed x -> z-scored observed
        coordinates, so a sparsity penalty is on the Jacobian in the data's own coordinates
        (whitening mixes them; this undoes it inside the penalty only). ``alphas [R]``: per-run
        penalty weights (default: the config's), so an alpha sweep is one compiled program."""
        c, r = self.config, len(self.mean)
        alphas = [c.alpha] * r if alphas is None else list(alphas)
        if len(alphas) != r:
            raise ValueError(f"need {r} alphas, got {len(alphas)}")
        if any(a > 0 for a in alphas) and not c.sparse:
            raise ValueError(f"alpha > 0 needs a method with the sparse-mixing penalty; {self.method!r} has none")
        return cg_train.hparams(alphas, [c.beta] * r, [c.lr] * r, self.out_map)

    def task(self) -> runner.Task:
        """The fit task of these arrays (:func:`cg.train.make_task`)."""
        return cg_train.make_task(self.config, self.data["x"].shape[-1], self.num_domains)


def prepare(
    xs,
    us,
    *,
    method: str,
    latent_dim: int,
    preprocess: str = "whiten",
    num_domains: int | None = None,
    xs_val=None,
    us_val=None,
    **overrides,
) -> Prepared:
    """Validate (before anything compiles) and preprocess ``xs [R, N, d_x]``, ``us [R, N]``
    (and held-out ``xs_val [R, V, d_x]``, ``us_val [R, V]``, preprocessed with the training
    data's statistics).

    ``num_domains``: the size of the prior's domain table and of the encoder's one-hot
    (default: the largest label + 1). A larger value lets datasets with different numbers
    of domains share one compiled program; a run never touches the rows of labels it lacks."""
    xs, us = np.asarray(xs), np.asarray(us)
    if xs.ndim != 3 or us.ndim != 2 or len(xs) != len(us):
        raise ValueError(f"need xs [R, N, d_x] and us [R, N], got {xs.shape} and {us.shape}")
    if preprocess not in PREPROCESS:
        raise ValueError(f"preprocess must be one of {PREPROCESS}, got {preprocess!r}")
    config = make_config(method, latent_dim, **overrides)  # bad settings fail before the data are touched
    checked = [
        check_inputs(x, u, method=method, latent_dim=latent_dim, batch_size=config.batch_size) for x, u in zip(xs, us)
    ]
    used = max(c[2] for c in checked)
    if num_domains is None:
        num_domains = used
    elif num_domains < used:
        raise ValueError(f"num_domains={num_domains} is below the {used} domain labels in the data")
    x = np.stack([c[0] for c in checked])
    u = np.stack([c[1] for c in checked])
    pre = [preprocessing(xi, preprocess, latent_dim) for xi in x]
    mean, proj = np.stack([p[0] for p in pre]), np.stack([p[1] for p in pre])
    apply = lambda a: jnp.asarray(np.einsum("rnd,rde->rne", a - mean[:, None], proj), jnp.float32)  # noqa: E731
    data = {"x": apply(x), "u": jnp.asarray(u)}
    if xs_val is not None:
        xv = np.stack([_check_x(a, x.shape[2]) for a in np.asarray(xs_val)])
        uv = np.stack([_check_u(b, xv.shape[1], num_domains) for b in np.asarray(us_val)])
        logdet = np.linalg.slogdet(proj.astype(np.float64))[1]
        data.update(x_val=apply(xv), u_val=jnp.asarray(uv), logdet=jnp.asarray(logdet, jnp.float32))
    out_map = np.linalg.inv(proj.astype(np.float64)) / x.std(1)[:, None, :]
    return Prepared(method, config, data, mean, proj, num_domains, out_map)


def fit_many(
    keys,
    xs,
    us,
    *,
    method: str = "ivae",
    latent_dim: int,
    preprocess: str = "whiten",
    chunk_steps: int = 1_000,
    progress: bool = True,
    **overrides,
) -> list[Fitted]:
    """Fit R models at once, run r on ``(xs[r], us[r])`` with key ``keys[r]``, as one
    compiled, vmapped program. ``xs [R, N, d_x]``, ``us [R, N]``: datasets of equal shape
    (the same dataset repeated fits several seeds). See :func:`fit`."""
    keys = jnp.asarray(keys)
    if keys.ndim != 2 or len(keys) != len(np.asarray(xs)):
        raise ValueError(f"need keys [R, 2] with R = len(xs); got {keys.shape} for {len(np.asarray(xs))} datasets")
    p = prepare(xs, us, method=method, latent_dim=latent_dim, preprocess=preprocess, **overrides)
    res = runner.run_group(p.task(), keys, p.hparams(), chunk_steps=chunk_steps, progress=progress, given=p.data)
    return [
        Fitted(
            p.config,
            method,
            jax.device_get(jax.tree.map(lambda a, i=i: a[i], res.state.params)),
            p.mean[i],
            p.proj[i],
            p.num_domains,
            res.loss_history[i],
            bool(res.failed[i]),
        )
        for i in range(len(keys))
    ]


def fit(
    key,
    x,
    u,
    *,
    method: str = "ivae",
    latent_dim: int,
    preprocess: str = "whiten",
    chunk_steps: int = 1_000,
    progress: bool = True,
    **overrides,
) -> Fitted:
    """Fit one model of ``cg.models.METHODS`` to ``x [N, d_x]`` with domain labels ``u [N]``.

    Args:
      key: a PRNG key (initialisation, batches, the reparameterisation noise).
      method: a key of :data:`cg.models.METHODS` ("cg_vae", "cg_vae_no_sparsity",
        "cg_vae_no_flow", "ivae", "beta_vae", "cg_vae_flow1", "cg_vae_fd").
      latent_dim: number of latents (<= d_x).
      preprocess: "whiten" (default), "standardize" or "none" (module docstring); the
        decoder variance ``obs_var`` is in the preprocessed units.
      chunk_steps: steps per compiled chunk (the loss history has one entry per chunk).
      overrides: fields of :class:`cg.train.CGConfig` (``num_steps``, ``hidden``, ``lr``,
        ``alpha``, ``obs_var``, ``batch_size``, ...), not those the method fixes.

    Raises:
      ValueError: before compiling, for NaN/inf or huge values in x, labels that are not
        integers ``0..M-1``, mismatched lengths, fewer samples than a batch, an unknown
        setting or a value of the wrong type.
    """
    key = jnp.asarray(key)
    if key.shape != (2,):
        raise ValueError(f"key must be a PRNG key of shape (2,), e.g. jax.random.PRNGKey(0); got shape {key.shape}")
    x = _check_x(x)  # clear messages for a single dataset's shapes before stacking
    u = _check_u(u, len(x))
    return fit_many(
        key[None],
        x[None],
        u[None],
        method=method,
        latent_dim=latent_dim,
        preprocess=preprocess,
        chunk_steps=chunk_steps,
        progress=progress,
        **overrides,
    )[0]


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _output_path(out: Path) -> Path:
    """The file ``np.savez`` writes for ``out`` (it appends ``.npz`` to any other name)."""
    return out if out.name.endswith(".npz") else out.with_name(out.name + ".npz")


def _check_output(out: Path, data: Path) -> str | None:
    """Why ``out`` cannot be written, checked before any work (None: it can)."""
    if out.exists() and out.resolve() == data.resolve():
        return f"--out {out} is the input file; pick another name (the input is never overwritten)"
    if out.is_dir():
        return f"--out {out} is a folder; give a file name such as {out / 'fit.npz'}"
    if not out.parent.is_dir():
        return f"--out {out}: folder {out.parent} does not exist"
    if not os.access(out.parent, os.W_OK):
        return f"--out {out}: folder {out.parent} is not writable"
    if out.exists():
        try:
            with np.load(out) as f:
                ours = "z_hat" in f.files
        except Exception:  # noqa: BLE001  (any unreadable file is not one of our outputs)
            ours = False
        if not ours:
            return f"--out {out} exists and is not an earlier fit's output; pick another name"
    return None


def _load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(x, u, z or None)`` from an ``.npz``; ValueError with one line for anything else."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give an .npz file holding x and u")
    if not path.exists():
        raise ValueError(f"no such file: {path}")
    try:
        f = np.load(path, allow_pickle=False)
        if not hasattr(f, "files"):
            raise ValueError(f"{path} holds one array, not an .npz with x and u (save with np.savez)")
        with f:
            missing = {"x", "u"} - set(f.files)
            if missing:
                raise ValueError(f"{path} lacks array(s) {sorted(missing)}; it has {f.files}")
            return f["x"], f["u"], (f["z"] if "z" in f.files else None)
    except ValueError as e:
        if "pickle" in str(e):  # numpy's guess for any file it cannot parse
            raise ValueError(f"{path} is not an .npz file numpy can read (save the arrays with np.savez)") from None
        raise
    except (OSError, EOFError) as e:
        raise ValueError(f"{path} cannot be read as an .npz file: {e}") from None


def _check_z(z, n: int) -> np.ndarray:
    z = np.asarray(z)
    if z.ndim != 2 or len(z) != n:
        raise ValueError(f"z must be the true latents [N, n] with N = {n} rows like x, got shape {z.shape}")
    if not np.issubdtype(z.dtype, np.number) or not np.all(np.isfinite(z)):
        raise ValueError("z must hold finite real numbers")
    return z


def main(argv=None, prog: str = "python -m cg.fitting") -> int:
    """The command line; a user mistake is one line on stderr and exit code 2 (set
    ``MECHIND_DEBUG=1`` for the traceback), Ctrl-C one line and exit code 130. ``prog``: the
    name its usage shows (``mechind fit cg`` runs it too)."""
    ap = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Fit CG-VAE, iVAE, beta-VAE or an ablation to an .npz holding x [N, d_x] (float) and u [N] "
            "(integer domain labels 0..M-1), optionally the true latents z [N, n] (then MCC is reported). "
            "Writes the posterior means and the loss history to --out (.npz) and a summary as JSON. "
            "Methods: " + "; ".join(f"{k}: {m.doc}" for k, m in models.METHODS.items()) + "."
        ),
    )
    ap.add_argument("data", type=Path, help=".npz file with arrays x, u (and optionally z)")
    ap.add_argument(
        "--method",
        default="ivae",
        choices=sorted(models.METHODS),
        help="which model: its prior, penalty and beta (default: ivae)",
    )
    ap.add_argument(
        "--latent-dim", type=int, default=None, help="number of latents (default: the width of z if given, else of x)"
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the initialisation and batches (default 0)")
    ap.add_argument(
        "--num-steps",
        "--steps",
        dest="steps",
        type=int,
        default=None,
        help=f"training steps (default {cg_train.CGConfig.num_steps})",
    )
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="any other CGConfig field, e.g. --set lr=0.003 'hidden=[64,64]' alpha=0.5 "
        "(values parsed as JSON; lists become tuples)",
    )
    ap.add_argument(
        "--preprocess",
        default="whiten",
        choices=PREPROCESS,
        help="whiten the leading latent-dim directions of x (default), z-score each dimension, "
        "none, or whiten every direction (whiten_all)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output .npz (default: <data>_<method>_fit.npz beside the data); never the input",
    )
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument(
        "--debug", action="store_true", help=f"full tracebacks instead of one-line errors (also: {report.DEBUG_ENV}=1)"
    )
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except ValueError as e:
        if report.debug_requested(args.debug):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written; the same command starts the fit again", file=sys.stderr)
        return 130


def _run(args) -> int:
    """``main`` after parsing: every input and the output path checked before any work."""
    x, u, z = _load(args.data)
    if args.out is not None and args.out.is_dir():
        raise ValueError(f"--out {args.out} is a folder; give a file name such as {args.out / 'fit.npz'}")
    out = _output_path(args.out or args.data.with_name(f"{args.data.stem}_{args.method}_fit.npz"))
    problem = _check_output(out, args.data)
    if problem:
        raise ValueError(problem)
    overrides = {}
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set takes FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        v = _parse_value(v)
        overrides[k] = tuple(v) if isinstance(v, list) else v
    if args.steps is not None:
        overrides["num_steps"] = args.steps
    x = _check_x(x)
    if z is not None:
        z = _check_z(z, len(x))
    latent_dim = args.latent_dim if args.latent_dim is not None else (z.shape[1] if z is not None else x.shape[1])
    fitted = fit(
        rng.key(args.seed),
        x,
        u,
        method=args.method,
        latent_dim=latent_dim,
        preprocess=args.preprocess,
        progress=not args.no_progress,
        **overrides,
    )
    z_hat = fitted.encode(x, u if fitted.config.encoder_u else None)
    summary = {
        "method": args.method,
        "latent_dim": latent_dim,
        "samples": int(len(x)),
        "domains": fitted.num_domains,
        "steps": fitted.config.num_steps,
        "final_loss": float(fitted.loss_history[-1]) if fitted.loss_history.size else None,
        "failed": fitted.failed,
    }
    if z is not None:
        summary["mcc"] = metrics.mcc(z, z_hat)
        summary["mcc_spearman"] = metrics.mcc(z, z_hat, method="spearman")
        summary["mcc_observations"] = metrics.mcc(z, x)  # the floor: x itself as the representation
    buf = io.BytesIO()
    np.savez(buf, z_hat=z_hat, loss_history=fitted.loss_history, x_mean=fitted.x_mean, x_proj=fitted.x_proj)
    report.write_atomic(out, buf.getvalue())
    print(json.dumps(summary, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
