"""Synthetic slot data with a prescribed Jacobian support (mechanistic-independence experiment).

K slots of ``slot_dim`` latents; each slot drives ``obs_per_slot`` observed coordinates,
a fraction ``overlap`` of which it shares with its neighbour (``layout="chain"``) or
with every slot (``layout="shared"``). The generator is an injective leaky-ReLU MLP

    h = leaky(W_1 z)          W_1 block-diagonal, one ``slot_dim x slot_dim`` block a slot
    x = leaky(W_2 h)          W_2 [d_x, d] masked: row n sees slot k iff support[n, k]

so the prescribed zeros of the Jacobian are structural (weight masks, exactly zero)
and overlap 0 gives a block-diagonal Jacobian (Type D). Weights are uniform, columns
normalised, and the best-conditioned of several draws is kept, as in Brady et al.

:class:`SlotSpec` is the dataset (:class:`mechind.core.datasets.Dataset`, registered as
``"slots"``)::

    ds = datasets.make("slots", num_slots=2, overlap=0.5)   # or SlotSpec(2, overlap=0.5)
    d = ds.sample(key, 10_000)   # {"x": [N, d_x], "z": [N, K, s], "support": [d_x, K * s]}

Everything here is a pure function of a PRNG key, so data for many seeds is generated
inside one compiled, vmapped program.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from mechind.core import datasets, rng
from mechind.core.nets import condition_number, leaky  # noqa: F401  (leaky: slope 0.2, Brady et al.'s)

Array = jax.Array

LAYOUTS = ("chain", "shared")
CANDIDATES = 8  # weight draws per seed; the best-conditioned one is kept


@datasets.register("slots")
@dataclasses.dataclass(frozen=True)
class SlotSpec(datasets.Dataset):
    """The slot dataset: its shape and latent law, validated on construction.

    ``sample(key, n)`` returns ``x [n, d_x]``, ``z [n, K, slot_dim]`` and ``support``
    (bool ``[d_x, K * slot_dim]``, the structural support of the mixing's Jacobian,
    :func:`latent_mask`); the mixing weights are drawn from the same key
    (:meth:`sample_with_mixing` returns them too).

    Attributes:
      num_slots: K, the number of slots (>= 1).
      slot_dim: latents per slot (3 in the paper).
      obs_per_slot: observed coordinates each slot drives (20 in the paper).
      overlap: fraction of a slot's coordinates shared; chain: [0, 0.5], shared: [0, 1).
      layout: "chain" (shared with the neighbouring slot) or "shared" (with all slots).
      dependent: latents z ~ N(0, Sigma), Sigma ~ Wishart(d, I) rescaled to a
        correlation matrix, instead of N(0, I).
      noise_std: std of Gaussian observation noise added to x (0: x = g(z) exactly).
    """

    version: ClassVar[int] = 1  # bump when a change to this module changes any drawn number

    num_slots: int
    slot_dim: int = 3
    obs_per_slot: int = 20
    overlap: float = 0.0
    layout: str = "chain"
    dependent: bool = False
    noise_std: float = 0.0

    def __post_init__(self):
        if not isinstance(self.num_slots, (int, np.integer)) or self.num_slots < 1:
            raise ValueError(f"num_slots (K) must be an integer >= 1, got {self.num_slots!r}")
        if self.slot_dim < 1:
            raise ValueError(f"slot_dim must be >= 1, got {self.slot_dim}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must lie in [0, 1), got {self.overlap}")
        if self.layout == "chain" and self.overlap > 0.5:
            raise ValueError(
                f"overlap must be <= 0.5 for layout='chain' (a middle slot shares with both "
                f"neighbours), got {self.overlap}"
            )
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")
        if self.obs_per_slot < self.slot_dim:
            raise ValueError(
                f"obs_per_slot={self.obs_per_slot} is too small for an invertible generator: "
                f"each slot needs at least slot_dim={self.slot_dim} observed coordinates"
            )
        if np.linalg.matrix_rank(_generic_mixing(self.support, self.slot_dim)) < self.latent_dim:
            raise ValueError(
                f"obs_per_slot={self.obs_per_slot} with overlap={self.overlap} ({self.layout}) is too "
                f"small for an invertible generator: the {self.obs_dim} observed coordinates "
                f"cannot determine {self.latent_dim} latents"
            )

    @property
    def latent_dim(self) -> int:
        return self.num_slots * self.slot_dim

    @property
    def num_shared(self) -> int:
        """Observed coordinates a slot shares (with one neighbour, or with all slots)."""
        return int(round(self.overlap * self.obs_per_slot))

    @property
    def support(self) -> np.ndarray:
        """bool ``[d_x, K]``: which slots drive each observed coordinate."""
        return support_mask(self.num_slots, self.obs_per_slot, self.num_shared, self.layout)

    @property
    def obs_dim(self) -> int:
        return self.support.shape[0]

    @property
    def slot_sizes(self) -> tuple[int, ...]:
        return (self.slot_dim,) * self.num_slots

    def sample_with_mixing(self, key: Array, num_samples: int) -> dict:
        """:meth:`sample`'s arrays and the mixing weights they came from (``"mixing"``,
        :func:`sample_mixing`): pure and vmappable. Drawn in the pipelines' random mode
        (:func:`mechind.core.rng.fast_compile`), so a key draws the same data eagerly, under
        ``jit``/``vmap`` and inside a run."""
        if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples must be a whole number >= 1, got {num_samples!r}")
        with rng.fast_compile():  # the pipeline's random mode, wherever this is called or traced
            kg, kz, kc, kn = jax.random.split(key, 4)
            params = sample_mixing(kg, self)
            z = sample_latents(kz, self, num_samples, cov_key=kc)
            x = jax.vmap(functools.partial(mix, params))(z.reshape(num_samples, -1))
            if self.noise_std > 0:
                x = x + self.noise_std * jax.random.normal(kn, x.shape)
        return {"x": x, "z": z, "support": jnp.asarray(latent_mask(self)), "mixing": params}

    def sample(self, key: Array, num_samples: int) -> dict:
        """``{"x": [N, d_x], "z": [N, K, slot_dim], "support": bool [d_x, K * slot_dim]}``:
        a mixing drawn from ``key`` and ``num_samples`` observations of it."""
        out = self.sample_with_mixing(key, num_samples)
        del out["mixing"]
        return out


def support_mask(num_slots: int, obs_per_slot: int, num_shared: int, layout: str) -> np.ndarray:
    """bool ``[d_x, K]`` support of the generator's Jacobian, by slot.

    chain: slot k drives rows ``[k * (o - s), k * (o - s) + o)``, so neighbours share s rows.
    shared: each slot has ``o - s`` private rows, then ``s`` rows every slot drives.
    """
    k, o, s = num_slots, obs_per_slot, num_shared
    if layout == "chain":
        d_x = k * o - (k - 1) * s
        m = np.zeros((d_x, k), bool)
        for i in range(k):
            m[i * (o - s) : i * (o - s) + o, i] = True
    else:
        d_x = k * (o - s) + s
        m = np.zeros((d_x, k), bool)
        for i in range(k):
            m[i * (o - s) : (i + 1) * (o - s), i] = True
        m[k * (o - s) :, :] = True
    return m


def _generic_mixing(support: np.ndarray, slot_dim: int = 3) -> np.ndarray:
    gen = np.random.default_rng(0)
    mask = np.repeat(support, slot_dim, axis=1)
    return np.where(mask, gen.normal(size=mask.shape), 0.0)


def latent_mask(spec: SlotSpec) -> np.ndarray:
    """bool ``[d_x, d]`` structural support of the generator's Jacobian."""
    return np.repeat(spec.support, spec.slot_dim, axis=1)


def _uniform_normalised(key: Array, shape: tuple[int, ...], mask: Array) -> Array:
    w = jax.random.uniform(key, shape, minval=-1.0, maxval=1.0) * mask
    return w / jnp.linalg.norm(w, axis=-2, keepdims=True)


def sample_mixing(key: Array, spec: SlotSpec) -> dict:
    """Mixing weights ``{"w1": [d, d], "w2": [d_x, d], "cond": scalar}``.

    Draws CANDIDATES weight sets and keeps the one whose worst layer condition number is
    smallest (a fixed number of draws keeps this a pure, vmappable function).
    """
    d = spec.latent_dim
    block = jnp.asarray(np.kron(np.eye(spec.num_slots), np.ones((spec.slot_dim, spec.slot_dim))))
    mask2 = jnp.asarray(latent_mask(spec), jnp.float32)

    # one draw for all candidates: each RNG call site costs compile time on CPU
    k1, k2 = jax.random.split(key)
    w1 = _uniform_normalised(k1, (CANDIDATES, d, d), block)
    w2 = _uniform_normalised(k2, (CANDIDATES, spec.obs_dim, d), mask2)
    cond = jnp.maximum(jax.vmap(condition_number)(w1), jax.vmap(condition_number)(w2))
    cands = {"w1": w1, "w2": w2, "cond": cond}
    best = jnp.argmin(cond)
    return jax.tree.map(lambda a: a[best], cands)


def mix(params: dict, z: Array) -> Array:
    """The mixing (generator) ``g``: ``[d] -> [d_x]`` (use under vmap for batches)."""
    return leaky(params["w2"] @ leaky(params["w1"] @ z))


def sample_latents(key: Array, spec: SlotSpec, num_samples: int, cov_key: Array | None = None) -> Array:
    """``[N, K, slot_dim]`` latents; dependent ones share one Sigma drawn from ``cov_key``."""
    d = spec.latent_dim
    eps = jax.random.normal(key, (num_samples, d))
    if spec.dependent:
        if cov_key is None:
            raise ValueError("dependent latents need cov_key (the seed's covariance draw)")
        eps = eps @ correlation_factor(cov_key, d).T
    return eps.reshape(num_samples, spec.num_slots, spec.slot_dim)


def correlation_factor(key: Array, d: int) -> Array:
    """Cholesky factor of a correlation matrix from Sigma ~ Wishart(d, I)."""
    g = jax.random.normal(key, (d, d))
    sigma = g.T @ g + 1e-3 * jnp.eye(d)
    sd = jnp.sqrt(jnp.diag(sigma))
    return jnp.linalg.cholesky(sigma / sd[:, None] / sd[None, :])


@dataclasses.dataclass(frozen=True)
class SlotDraw:
    """A drawn slot dataset with the mixing it came from (for analyses that need ``g``).

    Attributes:
      z: ``[N, K, slot_dim]`` latents.
      x: ``[N, d_x]`` observations, ``generator(z.reshape(N, -1))`` (+ noise if asked).
      generator: the mixing ``g``, ``[K * slot_dim] -> [d_x]``.
      support: bool ``[d_x, K]``, the prescribed support by slot.
      params: the mixing's weights.
      spec: the dataset it was drawn from.
    """

    z: Array
    x: Array
    generator: Callable[[Array], Array]
    support: np.ndarray
    params: dict
    spec: SlotSpec


@functools.partial(jax.jit, static_argnums=(0, 2))
def _sample_with_mixing(spec: SlotSpec, key: Array, num_samples: int) -> dict:
    return spec.sample_with_mixing(key, num_samples)


def make_slot_data(key: Array, spec: SlotSpec, num_samples: int) -> SlotDraw:
    """``spec.sample(key, num_samples)`` (the same numbers) with its mixing as a function."""
    arr = _sample_with_mixing(spec, key, num_samples)
    return SlotDraw(arr["z"], arr["x"], functools.partial(mix, arr["mixing"]), spec.support, arr["mixing"], spec)


def realised_overlap(support: np.ndarray) -> float:
    """Largest fraction of one slot's rows that it shares with any other slot."""
    k = support.shape[1]
    if k < 2:
        return 0.0
    return max(
        float(np.sum(support[:, i] & support[:, j]) / np.sum(support[:, i]))
        for i in range(k)
        for j in range(k)
        if i != j
    )
