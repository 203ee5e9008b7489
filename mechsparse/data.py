"""Lachapelle et al.'s synthetic protocol (arXiv 2107.10098, section 8.1 of 2401.04890).

Latents whose *mechanism* has a sparse graph, seen through an invertible nonlinear mixing:

* **action sparsity**: actions ``a ~ U(-2, 2)^{d_a}``, latents ``z ~ N(mu(a), sigma²)``
  with ``mu_i(a) = sum_j G^a_ij sin(a_j (i + 3) / pi + i)``;
* **time sparsity**: pairs ``(z⁰, z¹)``, ``z⁰ ~ N(0, I)``,
  ``z¹ ~ N(z⁰ + 0.5 sum_j G^z_ij sin(z⁰_j (i + 3) / pi + i), sigma²)``;

then ``x = f(z)`` with a 4-layer leaky-ReLU (0.2) MLP of width ``d_x`` and orthogonalised
weights, each observed coordinate standardised over the dataset, plus N(0, 0.01²) noise.
``sigma = 0.01`` as in their code.

Variants that break an assumption: ``mean="linear"`` (``mu = A a`` or ``z⁰ + 0.5 A z⁰``
with ``A = N(0, 1) * G``: no sufficient variability) and ``heteroscedastic=True``
(their "k = 2": the variance depends on the parents too,
``0.1 / d_p * exp(sum_j G_ij cos(...))``).

Graphs (``G[i, j] = 1``: parent j of latent i): ``"identity"`` (the trivial graph),
``"cyclic"`` (action: identity plus a cyclic sub-diagonal, 2 d_z edges), ``"lower"`` (time:
lower triangular with the diagonal), ``"random"`` (each edge with probability
``density``; time graphs always keep the diagonal).

Unlike the reference, where every seed shares one mixing and one action set (their
generator RNG is fixed) and only the sampling noise changes, a seed here redraws
everything (mixing, actions, random graph), so seed-to-seed spread includes the
generator's.

:class:`Spec` is the dataset (:class:`mechind.core.datasets.Dataset`, registered as
``"mechanism_sparsity"``): ``Spec(kind="time").sample(key, n)``, or
``datasets.make("mechanism_sparsity", kind="time")``. Its draw is a function of the key
alone: it is traced in the pipelines' random mode (:func:`mechind.core.rng.fast_compile`)
wherever it is called, so a host-side draw (a figure, a bound at the true graph's edge
count, a reference implementation fed our arrays) is the one a training run sees.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from mechind.core import datasets, rng
from mechind.core.nets import NEGATIVE_SLOPE, leaky

Array = jax.Array

# Spec.version: bump when a draw changes (cached results then recompute). 2: host-side draws
# (graph_of, a random graph's true edge count and so the "bound r x true" runs) now equal the run's own
GENERATOR_VERSION = 2
KINDS = ("action", "time")
GRAPHS = {"action": ("identity", "cyclic", "random"), "time": ("identity", "lower", "random")}
MEANS = ("sin", "linear")
LATENT_STD = 0.01  # std of z around its mechanism's mean (their var_fac = 1e-4)
OBS_NOISE_STD = 0.01  # std of the noise added to the standardised observations
TIME_STEP = 0.5  # their "lr": z¹ = z⁰ + 0.5 * delta(z⁰)


@datasets.register("mechanism_sparsity")
@dataclasses.dataclass(frozen=True)
class Spec(datasets.Dataset):
    """Their synthetic dataset (a :class:`~mechind.core.datasets.Dataset`); validated on
    construction (a clear error before anything compiles)."""

    version: ClassVar[int] = GENERATOR_VERSION
    traceable: ClassVar[bool] = True

    kind: str = "action"  # "action" (G^a: actions -> latents) or "time" (G^z: z⁰ -> z¹)
    graph: str = "cyclic"  # graph name of GRAPHS[kind]
    latent_dim: int = 10  # d_z
    obs_dim: int = 20  # d_x (also the mixing MLP's width; >= d_z for injectivity)
    density: float = 0.3  # edge probability of the "random" graph
    mean: str = "sin"  # "sin" (theirs) or "linear" (no sufficient variability)
    heteroscedastic: bool = False  # variance depends on the parents too (their "k=2")

    def __post_init__(self):
        checks = [
            (self.kind in KINDS, f"kind must be one of {KINDS}, got {self.kind!r}"),
            (
                self.kind not in KINDS or self.graph in GRAPHS[self.kind],
                f"graph must be one of {GRAPHS.get(self.kind)} for kind {self.kind!r}, got {self.graph!r}",
            ),
            (self.latent_dim >= 2, f"latent_dim must be >= 2, got {self.latent_dim}"),
            (
                self.obs_dim >= self.latent_dim,
                f"obs_dim ({self.obs_dim}) must be >= latent_dim ({self.latent_dim}) for an injective mixing",
            ),
            (0 <= self.density <= 1, f"density must lie in [0, 1], got {self.density}"),
            (self.mean in MEANS, f"mean must be one of {MEANS}, got {self.mean!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @property
    def parent_dim(self) -> int:
        """d_a (= d_z, as in the reference) for actions, d_z for time."""
        return self.latent_dim

    @property
    def steps(self) -> int:
        """Time steps per sample: 1 for action data, 2 for time data."""
        return 1 if self.kind == "action" else 2

    def sample(self, key: Array, num_samples: int) -> dict:
        """One dataset: ``x [N, T, d_x]``, ``z [N, T, d_z]``, ``a [N, d_p]`` (zeros for time
        data), ``graph [d_z, d_p]``; T = 1 (action) or 2 (time). Also the generator's own
        parts: ``linear [d_z, d_p]`` (the matrix of ``mean="linear"``), the mixing
        ``weights`` and the standardisation ``x_mean``, ``x_std`` [d_x] (the noiseless
        standardised x is ``(mix(weights, z) - x_mean) / x_std``). Pure and vmappable; the
        same draw wherever it is traced (module docstring)."""
        with rng.fast_compile():
            return _sample(key, self, num_samples)


def make_graph(key: Array, spec: Spec) -> Array:
    """``G [d_z, d_p]`` float 0/1 (``G[i, j]``: j is a parent of latent i)."""
    n, p = spec.latent_dim, spec.parent_dim
    eye = jnp.eye(n, p)
    if spec.graph == "identity":
        return eye
    if spec.graph == "cyclic":  # G[i, i] and G[i, i - 1 mod n]
        return jnp.clip(eye + jnp.roll(eye, -1, axis=1), 0, 1)
    if spec.graph == "lower":
        return jnp.tril(jnp.ones((n, p)))
    draws = (jax.random.uniform(key, (n, p)) < spec.density).astype(jnp.float32)
    return jnp.maximum(draws, eye) if spec.kind == "time" else draws


def _phase(n: int, p: int) -> tuple[Array, Array]:
    """Their frequency ``(i + 3) / pi`` and shift ``i`` of latent i, broadcast to ``[n, p]``."""
    i = jnp.arange(n, dtype=jnp.float32)[:, None]
    return jnp.broadcast_to((i + 3) / jnp.pi, (n, p)), jnp.broadcast_to(i, (n, p))


def mechanism(parents: Array, graph: Array, spec: Spec, linear: Array | None = None) -> tuple[Array, Array]:
    """Mean and variance of the latents given their parents, ``[..., d_p] -> ([..., d_z], [..., d_z])``.

    Action data: the mean itself; time data: ``z⁰ + 0.5 * delta(z⁰)``. ``linear [d_z, d_p]``
    (already masked by the graph) is the matrix of the ``mean="linear"`` variant."""
    n, p = graph.shape
    freq, shift = _phase(n, p)
    arg = parents[..., None, :] * freq + shift  # [..., n, p]
    if spec.mean == "sin":
        delta = jnp.sum(graph * jnp.sin(arg), -1)
    else:
        delta = parents @ linear.T
    mean = delta if spec.kind == "action" else parents + TIME_STEP * delta
    if spec.heteroscedastic:
        var = 0.1 / p * jnp.exp(jnp.sum(graph * jnp.cos(arg), -1))
    else:
        var = jnp.full(mean.shape, LATENT_STD**2)
    return mean, var


def _orthogonal(key: Array, rows: int, cols: int) -> Array:
    """``[rows, cols]`` with orthonormal rows (rows <= cols) or columns, scaled as theirs:
    He gain of the leaky ReLU times ``sqrt(2 / (rows + cols))``."""
    w = jax.random.normal(key, (rows, cols))
    q, _ = jnp.linalg.qr(w.T if rows <= cols else w)
    q = q.T if rows <= cols else q
    gain = np.sqrt(2.0 / (1.0 + NEGATIVE_SLOPE**2)) * np.sqrt(2.0 / (rows + cols))
    return q * gain


def sample_mixing(key: Array, spec: Spec) -> list[Array]:
    """Weights ``[d_z, h], [h, h], [h, h], [h, d_x]`` of the 4-layer mixing (h = d_x)."""
    h = spec.obs_dim
    shapes = [(spec.latent_dim, h), (h, h), (h, h), (h, spec.obs_dim)]
    return [_orthogonal(k, *s) for k, s in zip(jax.random.split(key, 4), shapes)]


def mix(weights: list[Array], z: Array) -> Array:
    """``x = f(z)``, ``[..., d_z] -> [..., d_x]`` (before standardisation)."""
    h = z
    for w in weights[:-1]:
        h = leaky(h @ w)
    return h @ weights[-1]


def _sample(key: Array, spec: Spec, num_samples: int) -> dict:
    """:meth:`Spec.sample` (in whatever random mode the caller traces it)."""
    k_graph, k_mix, k_lin, k_par, k_z, k_x = jax.random.split(key, 6)
    graph = make_graph(k_graph, spec)  # = graph_of(key, spec)
    linear = jax.random.normal(k_lin, graph.shape) * graph
    n, p = spec.latent_dim, spec.parent_dim
    if spec.kind == "action":
        a = jax.random.uniform(k_par, (num_samples, p), minval=-2.0, maxval=2.0)
        mean, var = mechanism(a, graph, spec, linear)
        z = (mean + jnp.sqrt(var) * jax.random.normal(k_z, mean.shape))[:, None]
    else:
        a = jnp.zeros((num_samples, p))
        z0 = jax.random.normal(k_par, (num_samples, n))
        mean, var = mechanism(z0, graph, spec, linear)
        z1 = mean + jnp.sqrt(var) * jax.random.normal(k_z, mean.shape)
        z = jnp.stack([z0, z1], 1)
    weights = sample_mixing(k_mix, spec)
    x = mix(weights, z)
    x_mean, x_std = x.reshape(-1, spec.obs_dim).mean(0), x.reshape(-1, spec.obs_dim).std(0)
    x = (x - x_mean) / x_std + OBS_NOISE_STD * jax.random.normal(k_x, x.shape)
    return {
        "x": x,
        "z": z,
        "a": a,
        "graph": graph,
        "linear": linear,
        "weights": weights,
        "x_mean": x_mean,
        "x_std": x_std,
    }


def graph_of(key: Array, spec: Spec) -> Array:
    """The graph :meth:`Spec.sample` draws from ``key`` (for host-side bookkeeping, e.g. a
    bound at the true number of edges of a random graph), in the same random mode."""
    with rng.fast_compile():
        return make_graph(jax.random.split(key, 6)[0], spec)


def edges(graph) -> int:
    """Number of edges of a 0/1 graph."""
    return int(np.asarray(graph).sum())
