"""Fit a slot autoencoder to your own arrays, and ask which criteria its decoder satisfies.

    import jax, mechind
    fitted = mechind.fit(jax.random.PRNGKey(0), x, num_slots=2, slot_dim=3, lam=1.0)
    z_hat = fitted.encode(x)              # [N, K * s], slot k is z_hat[:, fitted.slots[k]]
    x_hat = fitted.decode(z_hat)          # [N, d_x], original units
    fitted.loss_history                   # mean training loss per chunk of steps
    report = fitted.criteria(x)           # Type D, M, S, H2 and G_D on the learned decoder
    report.fractions                      # {"type_d": 0.97, ...}: share of points where each holds

``x [N, d_x]`` float observations; no latents are needed (the experiments score SIS against
the true latents, a user's data has none). The model and its training step are the slot
pipeline's own (:mod:`mechind.train`: encoder, decoder, latents standardized over the batch,
MSE + ``lam`` x compositional contrast, Adam with lr / 10 after ``lr_drop`` of training),
bound to the user's observed dimension by :class:`FitConfig`. Observations are z-scored per
dimension first (``preprocess="standardize"``, the default) or left as they are
(``"none"``); a per-dimension scale keeps the decoder's Jacobian support, so the criteria
read the same structure either way. No whitening: a rotation of x mixes coordinates and
destroys the supports the criteria look at.

**Criteria on the learned decoder** (:meth:`Fitted.criteria`): the registry of
:mod:`mechind.criteria` evaluated on ``decoder: latents -> standardized x`` at the encodings
of the user's points, with the learned slot partition. A learned decoder has no exact
zeros, so a derivative counts as zero below ``tol`` x its largest at that point
(``DEFAULT_TOL`` = 0.05 here, 1e-6 for exact generators); the tolerance is reported. Read
the criteria beside the reconstruction: a large ``lam`` buys a decoder that looks Type D by
reconstructing worse (see :data:`FIT_DEFAULTS`). Type H2 is vacuous for the default
leaky-ReLU decoder (piecewise linear: its second derivatives vanish almost everywhere); it
says something of a smooth decoder or generator.

Every mistake in what is given is one ``ValueError`` line before anything compiles.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mechind import criteria as criteria_mod
from mechind import graph, losses, models
from mechind import train as slot_train
from mechind.core import datasets, derivatives, runner

Array = jax.Array

PREPROCESS = ("standardize", "none")
CRITERIA = ("type_d", "type_m", "type_s", "type_h2")  # what :meth:`Fitted.criteria` evaluates by default
DEFAULT_TOL = 0.05  # a learned decoder's "zero": below 5 % of the largest derivative at that point
MIN_VAL = 10  # held-out samples, at least
# the fields of mechind.train.SlotConfig a user fit may set (the others describe synthetic data or SIS)
SETTINGS = (
    "hidden",
    "decoder",
    "num_steps",
    "batch_size",
    "lr",
    "lr_drop",
    "lam",
    "lam_warmup",
    "latent_norm",
    "norm_ref",
    "init",
)
# defaults of a user fit where they differ from the experiments' (SlotConfig's): the contrast is on, at a
# weight where reconstruction still counts. Measured (K = 2, 1000 steps, 32-32 nets, standardized x, tol
# 0.05): on Type-D data lam = 0.3 gives Type D at 93 % of points (R² 0.94); on x holding products of the
# two slots' latents (Type D impossible for a decoder that reconstructs) 0 % (R² 0.87); lam = 1 buys
# Type D there at 16 % by dropping reconstruction to R² 0.63, lam = 0.1 is not Type D on Type-D data yet
FIT_DEFAULTS = {"num_steps": 5_000, "lam": 0.3}


class Shape(NamedTuple):
    """The shape of a user's slot data, in the names :class:`mechind.data.SlotSpec` gives them
    (what :mod:`mechind.train`'s networks and step read of a dataset)."""

    num_slots: int
    slot_dim: int
    obs_dim: int

    @property
    def latent_dim(self) -> int:
        return self.num_slots * self.slot_dim

    @property
    def slot_sizes(self) -> tuple[int, ...]:
        return (self.slot_dim,) * self.num_slots


@dataclasses.dataclass(frozen=True)
class FitConfig(slot_train.SlotConfig):
    """:class:`mechind.train.SlotConfig` for a user's arrays: the same model, step and
    schedule, its dataset the user's ``obs_dim`` columns (:class:`Shape`) instead of a
    synthetic generator. ``num_train`` / ``num_val`` are the training and held-out rows."""

    obs_dim: int = 1

    @property
    def dataset(self) -> Shape:  # type: ignore[override]
        return Shape(self.num_slots, self.slot_dim, self.obs_dim)


def _check_x(x, obs_dim: int | None = None) -> np.ndarray:
    return datasets.check_user_array(x, "x", 2, obs_dim)


def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def make_config(n: int, obs_dim: int, *, num_slots: int, slot_dim: int, val_fraction: float = 0.1, **overrides):
    """The :class:`FitConfig` of a fit to ``n`` rows of ``obs_dim`` columns: SlotConfig's
    defaults, then :data:`FIT_DEFAULTS`, then ``overrides`` (names in :data:`SETTINGS`);
    the last ``val_fraction`` of the rows (at least ``MIN_VAL``) are held out."""
    num_slots, slot_dim = _positive_int("num_slots", num_slots), _positive_int("slot_dim", slot_dim)
    unknown = sorted(set(overrides) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid: {sorted(SETTINGS)}")
    if not (isinstance(val_fraction, (int, float)) and 0 < val_fraction < 1):
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    if "hidden" in overrides and isinstance(overrides["hidden"], list):
        overrides["hidden"] = tuple(overrides["hidden"])
    settings = {**FIT_DEFAULTS, **overrides}
    batch = settings.get("batch_size", slot_train.SlotConfig.batch_size)
    num_val = max(MIN_VAL, int(round(val_fraction * n)))
    if isinstance(batch, int) and n - num_val < batch:
        raise ValueError(
            f"{n} samples leave {n - num_val} for training after {num_val} held out, fewer than one batch of "
            f"{batch}: use more data or a batch_size of at most {max(1, n - num_val)}"
        )
    try:
        return FitConfig(
            num_slots=num_slots, slot_dim=slot_dim, obs_dim=obs_dim, num_train=n - num_val, num_val=num_val, **settings
        )
    except TypeError as e:  # a value of the wrong type compared with a number, e.g. lr="fast"
        raise ValueError(f"a setting has a value of the wrong type ({e}): {settings}") from None


def check_inputs(x, *, num_slots: int, slot_dim: int, preprocess: str = "standardize", **settings):
    """Validate before anything compiles: ``(x float32, config)``."""
    if preprocess not in PREPROCESS:
        raise ValueError(f"preprocess must be one of {PREPROCESS}, got {preprocess!r}")
    x = _check_x(x)
    config = make_config(len(x), x.shape[1], num_slots=num_slots, slot_dim=slot_dim, **settings)
    if preprocess == "standardize":
        std = x.astype(np.float64).std(0)
        if np.any(std == 0):
            raise ValueError(f"observed dimension(s) {np.flatnonzero(std == 0).tolist()} of x are constant; drop them")
    return x, config


def make_task(config: FitConfig) -> runner.Task:
    """The fit task: :mod:`mechind.train`'s initial state and step on the given arrays
    (``given = {"x": [N, d_x]}``, the first ``num_train`` rows train), evaluated without
    latents (held-out reconstruction, and the encodings' statistics that standardize
    :meth:`Fitted.encode`)."""
    nets = slot_train.make_nets(config)
    with_contrast = config.lam > 0
    n = config.num_train

    def make_data(key, given):
        return {"x_train": given["x"][:n], "x_val": given["x"][n:]}

    def evaluate(state, data, hp):
        p = state.params
        x_ref = data["x_train"][: min(config.norm_ref, n)]
        z_ref = nets.enc.apply({"params": p["enc"]}, x_ref)
        z_hat = slot_train.encode(config, nets.enc, p, data["x_val"], x_ref)
        x_hat = nets.dec.apply({"params": p["dec"]}, z_hat)
        x = data["x_val"]
        return {
            "recon_r2": 1.0 - jnp.sum((x - x_hat) ** 2) / jnp.sum((x - x.mean(0)) ** 2),
            "val_mse": losses.mse(x, x_hat),
            "z_mean": z_ref.mean(0),
            "z_std": z_ref.std(0),
        }

    return runner.Task(
        make_data=make_data,
        init=lambda key, data, hp: slot_train.init_state(config, nets, key, data, hp),
        step=lambda state, data, hp, i: slot_train.train_step(config, nets, with_contrast, state, data, hp, i),
        evaluate=evaluate,
        num_steps=config.num_steps,
        name=f"slots K={config.num_slots}",
    )


class CriteriaReport(NamedTuple):
    """What the criteria say about a decoder at B points.

    Attributes:
      results: criterion name -> :class:`mechind.criteria.CriterionResult` (per point).
      fractions: criterion name -> share of points where it holds.
      components: int ``[B, K * s]`` G_D component label of each latent at each point
        (:func:`mechind.graph.component_labels`: the smallest latent index in its component).
      partition: the most frequent G_D partition of the latents (tuple of tuples of indices).
      partition_share: the share of points with that partition.
      tol: the relative tolerance a derivative counts as zero below.
    """

    results: dict
    fractions: dict
    components: np.ndarray
    partition: tuple
    partition_share: float
    tol: float

    def summary(self) -> dict:
        """JSON-ready: fractions, the usual G_D partition and its share, the tolerance."""
        return {
            "criteria": {k: round(v, 4) for k, v in self.fractions.items()},
            "g_d_components": [list(c) for c in self.partition],
            "g_d_share": round(self.partition_share, 4),
            "tol": self.tol,
        }


def evaluate_criteria(fn, z, slot_sizes: Sequence[int], *, tol: float = DEFAULT_TOL, names=CRITERIA) -> CriteriaReport:
    """The registered criteria ``names`` and G_D of ``fn: [d] -> [d_x]`` at ``z [B, d]``."""
    unknown = [n for n in names if n not in criteria_mod.names()]
    if unknown:
        raise ValueError(f"unknown criterion {unknown[0]!r}; registered: {criteria_mod.names()}")
    z = jnp.asarray(z, jnp.float32)
    tol = graph.check_tol(tol)

    def both(zz):  # one compiled program: XLA shares the Jacobian between the criteria and G_D
        res = criteria_mod.evaluate_all(fn, zz, slot_sizes, tol=tol, only=tuple(names))
        return res, graph.component_labels(derivatives.jacobian(fn, zz), tol)

    res, labels = jax.device_get(jax.jit(both)(z))
    labels = np.asarray(labels)
    parts = [tuple(tuple(np.flatnonzero(row == c).tolist()) for c in np.unique(row)) for row in labels]
    counts: dict = {}
    for p in parts:
        counts[p] = counts.get(p, 0) + 1
    best = max(counts, key=counts.get)
    return CriteriaReport(
        res,
        {k: float(np.mean(np.asarray(v.holds))) for k, v in res.items()},
        labels,
        best,
        counts[best] / len(parts),
        float(tol),
    )


@dataclasses.dataclass(frozen=True)
class Fitted:
    """A fitted slot autoencoder. Arrays are host numpy.

    Attributes:
      config: the :class:`FitConfig` it was trained with.
      params: ``{"enc", "dec"}`` parameter pytrees.
      x_mean, x_std: ``[d_x]``, the preprocessing ``(x - x_mean) / x_std``.
      z_mean, z_std: ``[K * s]``, the encoder's output statistics on the training rows that
        standardize the latents (``latent_norm="batch"``; zeros and ones for ``"none"``).
      loss_history: ``[C]`` mean training loss of each chunk of steps.
      recon_r2: held-out reconstruction R² (standardized units).
      failed: the loss went non-finite.
    """

    config: FitConfig
    params: Any
    x_mean: np.ndarray
    x_std: np.ndarray
    z_mean: np.ndarray
    z_std: np.ndarray
    loss_history: np.ndarray
    recon_r2: float
    failed: bool

    @property
    def slot_sizes(self) -> tuple[int, ...]:
        return self.config.dataset.slot_sizes

    @property
    def slots(self) -> list[np.ndarray]:
        """The slot partition: latent indices of each slot (``z_hat[:, slots[k]]`` is slot k)."""
        s = self.config.slot_dim
        return [np.arange(k * s, (k + 1) * s) for k in range(self.config.num_slots)]

    @functools.cached_property
    def _nets(self):
        return slot_train.make_nets(self.config)

    @functools.cached_property
    def _jitted(self) -> tuple:
        enc, dec = self._nets.enc, self._nets.dec
        return (
            jax.jit(lambda p, x: enc.apply({"params": p["enc"]}, x)),
            jax.jit(lambda p, z: dec.apply({"params": p["dec"]}, z)),
        )

    def preprocess(self, x) -> np.ndarray:
        x = _check_x(x, self.config.obs_dim)
        return ((x - self.x_mean) / self.x_std).astype(np.float32)

    def encode(self, x) -> np.ndarray:
        """Latents ``[N, K * s]`` of ``x [N, d_x]`` (original units), standardized as in training."""
        z = np.asarray(self._jitted[0](self.params, jnp.asarray(self.preprocess(x))))
        if self.config.latent_norm == "none":
            return z
        return (z - self.z_mean) / (self.z_std + 1e-6)

    def decoder(self, z: Array) -> Array:
        """The learned decoder as a function ``[K * s] -> [d_x]`` (standardized x units): what
        the criteria are evaluated on."""
        return self._nets.dec.apply({"params": self.params["dec"]}, z)

    def decode(self, z) -> np.ndarray:
        """Observations ``[N, d_x]`` (original units) of latents ``z [N, K * s]``."""
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.config.dataset.latent_dim:
            raise ValueError(f"z must be [N, {self.config.dataset.latent_dim}], got shape {z.shape}")
        return np.asarray(self._jitted[1](self.params, jnp.asarray(z))) * self.x_std + self.x_mean

    def criteria(self, x, *, points: int = 256, tol: float = DEFAULT_TOL, names=CRITERIA) -> CriteriaReport:
        """Which criteria the learned decoder satisfies, and its G_D components, at the
        encodings of the first ``points`` rows of ``x [N, d_x]`` (the user's data)."""
        points = _positive_int("points", points)
        z = self.encode(np.asarray(x)[:points])
        return evaluate_criteria(self.decoder, z, self.slot_sizes, tol=tol, names=names)

    # ------------------------------------------------------------------ saving
    def to_arrays(self) -> dict:
        """The fitted model as flat arrays for ``np.savez`` (:meth:`from_arrays` reads them)."""
        flat = {"/".join(str(k.key) for k in path): np.asarray(v) for path, v in _leaves(self.params)}
        cfg = {f: getattr(self.config, f) for f in (*SETTINGS, "num_slots", "slot_dim", "obs_dim")}
        cfg.update(num_train=self.config.num_train, num_val=self.config.num_val)
        return {
            **{f"param/{k}": v for k, v in flat.items()},
            "config": np.asarray(json.dumps(cfg)),
            "x_mean": self.x_mean,
            "x_std": self.x_std,
            "z_mean": self.z_mean,
            "z_std": self.z_std,
            "loss_history": self.loss_history,
            "recon_r2": np.asarray(self.recon_r2),
            "failed": np.asarray(self.failed),
        }

    @classmethod
    def from_arrays(cls, arrays) -> "Fitted":
        """A fitted model from :meth:`to_arrays`' arrays (e.g. an opened ``.npz``)."""
        cfg = json.loads(str(arrays["config"]))
        cfg["hidden"] = tuple(cfg["hidden"])
        params: dict = {}
        for name in arrays:
            if name.startswith("param/"):
                node = params
                *path, leaf = name[len("param/") :].split("/")
                for p in path:
                    node = node.setdefault(p, {})
                node[leaf] = np.asarray(arrays[name])
        get = lambda k: np.asarray(arrays[k])  # noqa: E731
        return cls(
            FitConfig(**cfg),
            params,
            get("x_mean"),
            get("x_std"),
            get("z_mean"),
            get("z_std"),
            get("loss_history"),
            float(get("recon_r2")),
            bool(get("failed")) if "failed" in arrays else False,
        )


def _leaves(tree):
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def fit(
    key,
    x,
    *,
    num_slots: int,
    slot_dim: int,
    preprocess: str = "standardize",
    val_fraction: float = 0.1,
    chunk_steps: int = 500,
    progress: bool = True,
    **settings,
) -> Fitted:
    """Fit a slot autoencoder with compositional contrast to ``x [N, d_x]``.

    Args:
      key: a PRNG key (``jax.random.PRNGKey(seed)``): initialisation and minibatches.
      num_slots: K; slot_dim: latents per slot (K * slot_dim latents in all).
      preprocess: "standardize" (z-score each column, the default) or "none".
      val_fraction: the last rows held out for the reconstruction R² (at least 10).
      chunk_steps: steps per compiled chunk (one loss-history entry each).
      settings: :data:`SETTINGS` of :class:`mechind.train.SlotConfig` (``lam`` the contrast
        weight, default 0.3; ``num_steps`` default 5000; ``hidden``, ``decoder``
        ("mlp"/"additive"), ``lr``, ``batch_size``, ...).

    Raises:
      ValueError: before compiling, for NaN/inf or huge values, a constant column, fewer
        samples than a batch plus the held-out rows, an unknown setting or a bad value.
    """
    key = jnp.asarray(key)
    if key.shape != (2,):
        raise ValueError(f"key must be a PRNG key of shape (2,), e.g. jax.random.PRNGKey(0); got shape {key.shape}")
    if isinstance(chunk_steps, bool) or not isinstance(chunk_steps, (int, np.integer)) or chunk_steps < 1:
        raise ValueError(f"chunk_steps must be a positive integer, got {chunk_steps!r}")
    x, config = check_inputs(
        x, num_slots=num_slots, slot_dim=slot_dim, preprocess=preprocess, val_fraction=val_fraction, **settings
    )
    if preprocess == "standardize":
        x_mean, x_std = x.mean(0), x.astype(np.float64).std(0).astype(np.float32)
    else:
        x_mean, x_std = np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)
    xs = ((x - x_mean) / x_std).astype(np.float32)
    hp = slot_train.hparams([config.lam], [config.lr])
    res = runner.run_group(
        make_task(config), key[None], hp, chunk_steps=chunk_steps, progress=progress, given={"x": jnp.asarray(xs)[None]}
    )
    m = res.metrics
    norm = config.latent_norm != "none"
    d = config.dataset.latent_dim
    return Fitted(
        config,
        jax.device_get(jax.tree.map(lambda a: a[0], res.state.params)),
        x_mean,
        x_std,
        np.asarray(m["z_mean"][0]) if norm else np.zeros(d, np.float32),
        np.asarray(m["z_std"][0]) if norm else np.ones(d, np.float32),
        res.loss_history[0],
        float(m["recon_r2"][0]),
        bool(res.failed[0]),
    )


def example_data(key, n: int = 512, *, num_slots: int = 2, slot_dim: int = 2, obs_per_slot: int = 6, overlap=0.0):
    """A small dataset of :class:`mechind.data.SlotSpec` (Type D at ``overlap`` 0) with its
    generator: ``{"x", "z", "w1", "w2", "num_slots", "slot_dim"}`` (the mixing
    ``x = leaky(w2 @ leaky(w1 @ z))``, so :func:`generator_from_arrays` rebuilds it)."""
    from mechind import data as slot_data

    spec = slot_data.SlotSpec(num_slots, slot_dim, obs_per_slot, overlap)
    draw = slot_data.make_slot_data(jnp.asarray(key), spec, n)
    return {
        "x": np.asarray(draw.x),
        "z": np.asarray(draw.z).reshape(n, -1),
        "w1": np.asarray(draw.params["w1"]),
        "w2": np.asarray(draw.params["w2"]),
        "num_slots": np.asarray(num_slots),
        "slot_dim": np.asarray(slot_dim),
    }


def generator_from_arrays(arrays):
    """``(g: [d] -> [d_x], slot_sizes)`` of a generator saved by :func:`example_data`."""
    w1, w2 = jnp.asarray(arrays["w1"]), jnp.asarray(arrays["w2"])
    k, s = int(arrays["num_slots"]), int(arrays["slot_dim"])
    if w1.shape != (k * s, k * s) or w2.ndim != 2 or w2.shape[1] != k * s:
        raise ValueError(f"w1 {tuple(w1.shape)} and w2 {tuple(w2.shape)} do not fit {k} slots of {s} latents")
    return (lambda z: models.leaky(w2 @ models.leaky(w1 @ z))), (s,) * k
