"""Fit the mechanism-sparsity VAE to your own arrays: observations with actions, or a time series.

    import jax, mechsparse
    fitted = mechsparse.fit(jax.random.PRNGKey(0), x, actions=a, latent_dim=4)   # x [N, d_x], a [N, d_a]
    fitted = mechsparse.fit(jax.random.PRNGKey(0), x, time=True, latent_dim=4)   # x [T, d_x] in time order
    z_hat = fitted.encode(x)      # [N, latent_dim] posterior means
    fitted.decode(z_hat)          # [N, d_x], original units
    fitted.graph                  # [latent_dim, d_a] (or [latent_dim, latent_dim]): P(edge i <- j)
    fitted.loss_history           # mean training loss per chunk of steps

Action data: ``x [N, d_x]`` and the action (or any observed auxiliary variable) of each
sample, ``actions [N, d_a]``; the graph learned is action -> latent (G^a). Time data: ``x
[T, d_x]``, consecutive rows consecutive in time; ``time=True`` for one series, or ``time=
episode [T]`` (integer labels: pairs never cross from one episode to the next); the graph
learned is z^t -> z^{t+1} (G^z). The model, objective and step are the pipeline's own
(:mod:`mechsparse.train`), bound to the user's dimensions by :class:`FitConfig`; the
graph is kept sparse by the penalty ``coeff`` (default 1) or, with ``max_edges``, by the
constraint on the expected edge count (annealed, dual ascent). Observations are z-scored per
column (``preprocess="standardize"``, the default) or left as they are (``"none"``); actions
are used as given. Every mistake in what is given is one ``ValueError`` line before anything
compiles.

The defaults are the experiments' quick preset, 20,000 steps included. Fewer steps keep every
edge: the decoder's variance starts at exp(-10) and the prior's at 1e-4 (theirs), and while
they are that small, every edge the transition prior uses is worth several nats of KL per
latent, far more than the penalty's ``coeff`` (1 nat per edge, both per observed coordinate).
Measured on Lachapelle et al.'s action data (d_z = 10, d_x = 20, 2,048 samples, seed 0, the
learned logits traced every 1,000 steps): all 100 edges stay on up to step 9,000, while the
two variances grow (decoder std 0.007 -> 0.05); the false edges then switch off, and at
20,000 steps 16 edges are left of the true 20 (SHD 6 against the dense guess's 80). With too
few samples (1,024 at d_z = 10) or a barely sparse graph (d_z = 3, 6 of 9 edges, 1,024 samples) the
graph stays dense even then. :func:`example_data` therefore draws the paper's d_z = 10.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mechind.core import datasets, runner
from mechsparse import data as ms_data
from mechsparse import models
from mechsparse import train as ms_train

Array = jax.Array

PREPROCESS = ("standardize", "none")
MIN_VAL = 10
# fields of mechsparse.train.Config a user fit may set; the defaults are the quick preset's
SETTINGS = (
    "hidden",
    "transition_hidden",
    "batch_size",
    "num_steps",
    "lr",
    "mask_lr_mult",
    "beta",
    "tau",
    "hard",
    "anneal_frac",
    "dual_lr",
    "dual_restarts",
    "decoder_log_var_init",
    "init",
)
FIT_DEFAULTS = dict(
    num_steps=20_000, hidden=(128, 128), transition_hidden=(32, 32), batch_size=32, lr=3e-3, mask_lr_mult=2.0
)


@dataclasses.dataclass(frozen=True)
class Shape(ms_data.Spec):
    """The shape of a user's data in :class:`mechsparse.data.Spec`'s names (what the model
    and step read of a dataset): ``kind``, ``latent_dim``, ``obs_dim``, and ``action_dim``
    (d_a; the parents of time data are the latents). It draws nothing."""

    graph: str = "identity"
    action_dim: int = 1

    @property
    def parent_dim(self) -> int:
        return self.action_dim if self.kind == "action" else self.latent_dim

    def sample(self, key, num_samples):
        raise NotImplementedError("a user's data shape draws nothing; fit the arrays with mechsparse.fit")


@dataclasses.dataclass(frozen=True)
class FitConfig(ms_train.Config):
    """:class:`mechsparse.train.Config` whose ``data`` is the user's :class:`Shape`."""


def _check_array(name: str, v, ndim: int) -> np.ndarray:
    return datasets.check_user_array(v, name, ndim)


def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def pairs(x: np.ndarray, time) -> np.ndarray:
    """``[N, 2, d_x]`` consecutive pairs of a series ``x [T, d_x]`` (``time=True``), or of each
    episode's rows (``time`` = integer labels ``[T]``; a pair never spans two episodes)."""
    if time is True:
        if len(x) < 2:
            raise ValueError("a time series needs at least 2 rows")
        return np.stack([x[:-1], x[1:]], 1)
    ep = np.asarray(time)
    if ep.ndim != 1 or len(ep) != len(x):
        raise ValueError(f"time must be True or episode labels [T] with T = {len(x)} rows like x, got shape {ep.shape}")
    if not (np.issubdtype(ep.dtype, np.integer) or np.issubdtype(ep.dtype, np.bool_)):
        raise ValueError(f"episode labels must be integers, got dtype {ep.dtype}")
    same = ep[1:] == ep[:-1]
    if not same.any():
        raise ValueError("no two consecutive rows share an episode label: there is no transition to learn from")
    return np.stack([x[:-1][same], x[1:][same]], 1)


def check_inputs(x, *, actions=None, time=None, latent_dim: int, preprocess: str = "standardize", **settings):
    """Validate before anything compiles: ``(x [N, T, d_x], a [N, d_p], config, kind)``
    with T = 1 (actions) or 2 (time pairs)."""
    if (actions is None) == (time is None or time is False):
        raise ValueError("give either actions=[N, d_a] (action data) or time=True / episode labels (a time series)")
    if preprocess not in PREPROCESS:
        raise ValueError(f"preprocess must be one of {PREPROCESS}, got {preprocess!r}")
    latent_dim = _positive_int("latent_dim", latent_dim)
    if latent_dim < 2:
        raise ValueError("latent_dim must be >= 2 (a graph between latents needs two)")
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid: {sorted(SETTINGS)}")
    x = _check_array("x", x, 2)
    if latent_dim > x.shape[1]:
        raise ValueError(f"latent_dim={latent_dim} exceeds the observed dimension {x.shape[1]}")
    if preprocess == "standardize" and np.any(x.std(0) == 0):
        raise ValueError(f"observed dimension(s) {np.flatnonzero(x.std(0) == 0).tolist()} of x are constant; drop them")
    if actions is not None:
        a = np.asarray(actions)
        a = _check_array("actions", a[:, None] if a.ndim == 1 else a, 2)
        if len(a) != len(x):
            raise ValueError(f"x and actions have different lengths: {len(x)} and {len(a)}")
        kind, xs, d_a = "action", x[:, None], a.shape[1]
    else:
        kind, xs = "time", pairs(x, time)
        d_a = latent_dim
        a = np.zeros((len(xs), d_a), np.float32)
    for k in ("hidden", "transition_hidden"):
        if isinstance(settings.get(k), list):
            settings[k] = tuple(settings[k])
    s = {**FIT_DEFAULTS, **settings}
    n = len(xs)
    num_val = max(MIN_VAL, 2 * latent_dim, int(round(0.1 * n)))
    if n - num_val < s["batch_size"]:
        raise ValueError(
            f"{n} samples leave {n - num_val} for training after {num_val} held out, fewer than one batch of "
            f"{s['batch_size']}: use more data or a batch_size of at most {max(1, n - num_val)}"
        )
    shape = Shape(kind=kind, latent_dim=latent_dim, obs_dim=x.shape[1], action_dim=d_a)
    try:
        config = FitConfig(data=shape, num_train=n - num_val, num_val=num_val, **s)
    except TypeError as e:  # a value of the wrong type compared with a number, e.g. lr="fast"
        raise ValueError(f"a setting has a value of the wrong type ({e}): {settings}") from None
    return xs, a, config, kind


def make_task(config: FitConfig) -> runner.Task:
    """The fit task: :mod:`mechsparse.train`'s initial state and step on the given arrays
    (``given = {"x": [N, T, d_x], "a": [N, d_p]}``, the first ``num_train`` rows train),
    evaluated without latents (held-out ELBO terms at the expected mask, edge probabilities)."""
    model = ms_train.make_model(config)
    tx = ms_train.optimizer(config)
    n = config.num_train

    def make_data(key, given):
        return {"x_train": given["x"][:n], "a_train": given["a"][:n], "x_val": given["x"][n:], "a_val": given["a"][n:]}

    def evaluate(state, data, hp):
        p = state.params
        probs = models.edge_probabilities(p["log_alpha"])
        mask = hp.learn_mask * probs + (1.0 - hp.learn_mask)
        rec, kl = ms_train.elbo_terms(
            model, p, data["x_val"], data["a_val"], mask, jax.random.PRNGKey(0), config.data.kind
        )
        return {"edge_probs": probs, "val_rec": rec, "val_kl": kl}

    return runner.Task(
        make_data=make_data,
        init=lambda key, data, hp: ms_train.init_state(config, model, tx, key, data, hp),
        step=lambda state, data, hp, i: ms_train.train_step(config, model, tx, state, data, hp, i),
        evaluate=evaluate,
        num_steps=config.num_steps,
        name=f"mechsparse {config.data.kind}",
    )


@dataclasses.dataclass(frozen=True)
class Fitted:
    """A fitted mechanism-sparsity VAE. Arrays are host numpy.

    Attributes:
      config: the :class:`FitConfig` it was trained with (``config.data.kind``: "action" or "time").
      params: the model's parameters (``log_alpha`` the graph's logits).
      x_mean, x_std: ``[d_x]``, the preprocessing ``(x - x_mean) / x_std``.
      graph: ``[latent_dim, d_p]`` learned edge probabilities, ``graph[i, j] = P(j -> latent i)``
        (j an action coordinate, or latent j at the previous step).
      loss_history: ``[C]`` mean training loss of each chunk of steps.
      val_rec, val_kl: held-out ELBO terms per observed coordinate at the expected graph.
      failed: the loss went non-finite.
    """

    config: FitConfig
    params: Any
    x_mean: np.ndarray
    x_std: np.ndarray
    graph: np.ndarray
    loss_history: np.ndarray
    val_rec: float
    val_kl: float
    failed: bool

    @property
    def kind(self) -> str:
        return self.config.data.kind

    @property
    def edges(self) -> np.ndarray:
        """bool ``[latent_dim, d_p]``: the learned graph's edges (probability > 0.5)."""
        return self.graph > 0.5

    @functools.cached_property
    def _jitted(self) -> tuple:
        model = ms_train.make_model(self.config)
        enc = jax.jit(lambda p, x: model.apply({"params": p}, x, method=models.Model.encode)[0])
        dec = jax.jit(lambda p, z: model.apply({"params": p}, z, method=models.Model.decode))
        return enc, dec

    def encode(self, x) -> np.ndarray:
        """Posterior means ``[N, latent_dim]`` of frames ``x [N, d_x]`` (original units)."""
        x = _check_array("x", x, 2)
        if x.shape[1] != self.config.data.obs_dim:
            raise ValueError(f"x has {x.shape[1]} columns, the model was fitted to {self.config.data.obs_dim}")
        xs = ((x - self.x_mean) / self.x_std).astype(np.float32)
        return np.asarray(self._jitted[0](self.params, jnp.asarray(xs)))

    def decode(self, z) -> np.ndarray:
        """Decoder means ``[N, d_x]`` (original units) of ``z [N, latent_dim]``."""
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.config.data.latent_dim:
            raise ValueError(f"z must be [N, {self.config.data.latent_dim}], got shape {z.shape}")
        return np.asarray(self._jitted[1](self.params, jnp.asarray(z))) * self.x_std + self.x_mean


def fit(
    key,
    x,
    *,
    actions=None,
    time=None,
    latent_dim: int,
    coeff: float = 1.0,
    max_edges: float | None = None,
    learn_graph: bool = True,
    preprocess: str = "standardize",
    chunk_steps: int = 500,
    progress: bool = True,
    **settings,
) -> Fitted:
    """Fit the mechanism-sparsity VAE to ``x`` with ``actions`` or as a time series (module docstring).

    Args:
      key: a PRNG key (``jax.random.PRNGKey(seed)``).
      actions: ``[N, d_a]`` (or ``[N]``) per-sample actions; or
      time: ``True`` (x is one series in time order) or integer episode labels ``[T]``.
      latent_dim: number of latents (2 <= latent_dim <= d_x).
      coeff: the sparsity penalty's weight (0: none).
      max_edges: constrain the expected number of edges to at most this (annealed from the
        full graph); None: no constraint.
      learn_graph: False freezes the full graph (no sparsity: the unregularised baseline).
      settings: fields of :class:`mechsparse.train.Config` (:data:`SETTINGS`; ``num_steps``
        default 20000, as the rest: the experiments' quick preset; module docstring).

    Raises:
      ValueError: before compiling, for bad arrays, lengths, settings or values.
    """
    key = jnp.asarray(key)
    if key.shape != (2,):
        raise ValueError(f"key must be a PRNG key of shape (2,), e.g. jax.random.PRNGKey(0); got shape {key.shape}")
    if isinstance(chunk_steps, bool) or not isinstance(chunk_steps, (int, np.integer)) or chunk_steps < 1:
        raise ValueError(f"chunk_steps must be a positive integer, got {chunk_steps!r}")
    xs, a, config, kind = check_inputs(
        x, actions=actions, time=time, latent_dim=latent_dim, preprocess=preprocess, **settings
    )
    if not isinstance(coeff, (int, float)) or isinstance(coeff, bool):
        raise ValueError(f"coeff must be a number >= 0, got {coeff!r}")
    bound = None if max_edges is None else [float(max_edges)]
    hp = ms_train.hparams(config, [float(coeff)], bound, [float(bool(learn_graph))])  # range errors, before compiling
    flat = xs.reshape(-1, xs.shape[-1]).astype(np.float64)
    if preprocess == "standardize":
        x_mean, x_std = flat.mean(0).astype(np.float32), flat.std(0).astype(np.float32)
    else:
        x_mean, x_std = np.zeros(xs.shape[-1], np.float32), np.ones(xs.shape[-1], np.float32)
    xs = ((xs - x_mean) / x_std).astype(np.float32)
    given = {"x": jnp.asarray(xs)[None], "a": jnp.asarray(a)[None]}
    res = runner.run_group(make_task(config), key[None], hp, chunk_steps=chunk_steps, progress=progress, given=given)
    m = res.metrics
    return Fitted(
        config,
        jax.device_get(jax.tree.map(lambda v: v[0], res.state.params)),
        x_mean,
        x_std,
        np.asarray(m["edge_probs"][0]),
        res.loss_history[0],
        float(m["val_rec"][0]),
        float(m["val_kl"][0]),
        bool(res.failed[0]),
    )


def example_data(key, n: int = 2048, *, kind: str = "action", latent_dim: int = 10, obs_dim: int = 20) -> dict:
    """A dataset of :class:`mechsparse.data.Spec` (by default the paper's shape: d_z = 10, d_x = 20,
    where the action graph is identified and :func:`fit`'s defaults recover it) in the layout :func:`fit` takes:
    action data ``{"x" [N, d_x], "a" [N, d_a], "z", "graph"}``; time data one series
    ``{"x" [T, d_x], "z" [T, d_z], "episode" [T], "graph"}`` (each drawn pair an episode of 2 rows)."""
    spec = ms_data.Spec(
        kind=kind, graph="cyclic" if kind == "action" else "lower", latent_dim=latent_dim, obs_dim=obs_dim
    )
    d = jax.device_get(jax.jit(spec.sample, static_argnums=1)(jnp.asarray(key), n))  # one compile, not op by op
    graph = np.asarray(d["graph"])
    if kind == "action":
        return {"x": np.asarray(d["x"][:, 0]), "a": np.asarray(d["a"]), "z": np.asarray(d["z"][:, 0]), "graph": graph}
    return {
        "x": np.asarray(d["x"]).reshape(2 * n, -1),
        "z": np.asarray(d["z"]).reshape(2 * n, -1),
        "episode": np.repeat(np.arange(n), 2),
        "graph": graph,
    }
