"""Multi-domain data with sparse mixing (sufficient changes + sparse mixing experiment).

n latents; in domain u, ``z | u ~ N(mu_u, diag sigma_u^2)`` with ``mu_u ~ U(-2, 2)`` and
``sigma_u ~ U(0.5, 3)`` (iVAE lineage). The mixing ``x = g(z)`` is an injective
leaky-ReLU network whose Jacobian support is a prescribed bipartite graph ``support
[d_x, n]`` (diagonal included; ``density`` is the fraction of nonzero entries, 1 is
dense mixing):

    h = leaky(a * z + b)              element-wise, a != 0
    x = leaky((W * support) h)        best-conditioned of several draws

so the zeros of the Jacobian are structural (exactly zero). Every edge of the support is a
real one: diagonal weights lie in [1, 2] and off-diagonal ones in +-[0.5, 1.5]. (An earlier
version drew off-diagonal weights from U(-1, 1) and kept the best-conditioned draw, which
selected nearly diagonal mixings: the observations themselves then scored MCC 0.86 with
the latents, above every trained model, so the experiment measured nothing.)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from mechind.core import datasets, rng
from mechind.core.nets import condition_number, leaky  # leaky: slope 0.2, Brady et al.'s, shared with the models

GENERATOR_VERSION = 1  # bump when a change to this module changes any drawn number

Array = jax.Array

CANDIDATES = 8
MU_RANGE = (-2.0, 2.0)
SIGMA_RANGE = (0.5, 3.0)
DIAG_RANGE = (1.0, 2.0)  # |W_ii|
OFF_RANGE = (0.5, 1.5)  # |W_ij|, i != j, on the support
LATENT_DISTS = ("gaussian", "laplace", "bimodal")


@datasets.register("cg_domains")
@dataclasses.dataclass(frozen=True)
class DomainSpec(datasets.Dataset):
    """Shape of a multi-domain dataset, and the dataset itself (``datasets.make("cg_domains",
    num_domains=3, latent_dim=6)``; traceable: drawn with jax); validated on construction.

    Attributes:
      num_domains: number of domains (>= 1).
      latent_dim: n, the number of latents (= observed dimension).
      density: fraction of nonzero Jacobian entries, in (0, 1]; the diagonal is always in.
      latent_dist: within-domain noise ``eps`` in ``z = mu_u + sigma_u * eps``, unit
        variance: "gaussian" (iVAE lineage), "laplace", or "bimodal" (+-0.95 plus
        N(0, 0.31^2)); the latter two make a conditional Gaussian prior misspecified.
    """

    version: ClassVar[int] = GENERATOR_VERSION

    num_domains: int
    latent_dim: int
    density: float = 0.5
    latent_dist: str = "gaussian"

    def __post_init__(self):
        if not isinstance(self.num_domains, (int, np.integer)) or self.num_domains < 1:
            raise ValueError(f"num_domains must be an integer >= 1, got {self.num_domains!r}")
        if not isinstance(self.latent_dim, (int, np.integer)) or self.latent_dim < 1:
            raise ValueError(f"latent_dim must be an integer >= 1, got {self.latent_dim!r}")
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"density must lie in (0, 1], got {self.density}")
        if self.latent_dist not in LATENT_DISTS:
            raise ValueError(f"latent_dist must be one of {LATENT_DISTS}, got {self.latent_dist!r}")

    def sample(self, key: Array, num_samples: int) -> dict:
        """``{"x" [N, n], "z" [N, n], "u" int [N], "support" bool [n, n]}`` (:func:`sample_arrays`),
        drawn in the pipelines' random mode (:func:`mechind.core.rng.fast_compile`), so a key
        draws the same data eagerly, under ``jit``/``vmap`` and as :func:`make_domain_data` does."""
        with rng.fast_compile():
            arr = sample_arrays(key, self, num_samples)
        return {"x": arr["x"], "z": arr["z"], "u": arr["u"], "support": arr["mixing"]["support"]}

    @property
    def num_edges(self) -> int:
        """Nonzero Jacobian entries: at least the diagonal, at most all n^2."""
        n = self.latent_dim
        return int(np.clip(round(self.density * n * n), n, n * n))


def sample_support(key: Array, latent_dim: int, num_edges: int) -> Array:
    """bool ``[n, n]``: the diagonal plus ``num_edges - n`` off-diagonal entries at random."""
    n = latent_dim
    off = ~jnp.eye(n, dtype=bool)
    scores = jnp.where(off, jax.random.uniform(key, (n, n)), -1.0).reshape(-1)
    k = num_edges - n
    thresh = jnp.sort(scores)[::-1][max(k - 1, 0)] if k > 0 else 2.0
    return jnp.eye(n, dtype=bool) | (off & (scores.reshape(n, n) >= thresh))


def sample_noise(key: Array, shape: tuple[int, ...], dist: str) -> Array:
    """Zero-mean, unit-variance within-domain noise of the given kind."""
    if dist == "gaussian":
        return jax.random.normal(key, shape)
    if dist == "laplace":
        return jax.random.laplace(key, shape) / jnp.sqrt(2.0)
    if dist == "bimodal":
        ks, kn = jax.random.split(key)
        sign = jnp.where(jax.random.bernoulli(ks, 0.5, shape), 1.0, -1.0)
        return 0.95 * sign + 0.3122 * jax.random.normal(kn, shape)  # 0.95^2 + 0.3122^2 = 1
    raise ValueError(f"latent_dist must be one of {LATENT_DISTS}, got {dist!r}")


def sample_mixing(key: Array, spec: DomainSpec) -> dict:
    """Mixing parameters ``{"a", "b", "w", "support", "cond"}`` (pure, vmappable)."""
    n = spec.latent_dim
    ks, ka, kb, kw, kd, kg = jax.random.split(key, 6)
    support = sample_support(ks, n, spec.num_edges)
    a = jax.random.uniform(ka, (n,), minval=0.5, maxval=1.5) * jnp.sign(jax.random.uniform(ka, (n,)) - 0.5)
    b = jax.random.uniform(kb, (n,), minval=-0.5, maxval=0.5)
    sign = jnp.where(jax.random.bernoulli(kg, 0.5, (CANDIDATES, n, n)), 1.0, -1.0)
    off = sign * jax.random.uniform(kw, (CANDIDATES, n, n), minval=OFF_RANGE[0], maxval=OFF_RANGE[1])
    diag = jax.random.uniform(kd, (CANDIDATES, n), minval=DIAG_RANGE[0], maxval=DIAG_RANGE[1])
    w = jnp.where(jnp.eye(n, dtype=bool), diag[:, :, None] * jnp.eye(n), off) * support
    c = jax.vmap(condition_number)(w)
    best = jnp.argmin(c)
    return {"a": a, "b": b, "w": w[best], "support": support, "cond": c[best]}


def mix(params: dict, z: Array) -> Array:
    """The mixing ``g``: ``[n] -> [n]``."""
    return leaky(params["w"] @ leaky(params["a"] * z + params["b"]))


def sample_arrays(key: Array, spec: DomainSpec, num_samples: int, num_domains: Array | int | None = None) -> dict:
    """Pure core: ``{"z": [N, n], "u": int [N], "x": [N, n], "mixing": params, "mu", "sigma"}``.

    Domains take the samples in turn (balanced). ``num_domains`` may be a traced integer
    <= ``spec.num_domains`` (then the domain statistics are drawn for ``spec.num_domains``
    and only the first ``num_domains`` used), so domain counts can be vmapped.
    """
    d = spec.num_domains if num_domains is None else num_domains
    n = spec.latent_dim
    km, kmu, ksd, kz, kp = jax.random.split(key, 5)
    mixing = sample_mixing(km, spec)
    mu = jax.random.uniform(kmu, (spec.num_domains, n), minval=MU_RANGE[0], maxval=MU_RANGE[1])
    sigma = jax.random.uniform(ksd, (spec.num_domains, n), minval=SIGMA_RANGE[0], maxval=SIGMA_RANGE[1])
    u = jax.random.permutation(kp, jnp.arange(num_samples) % d).astype(jnp.int32)
    z = mu[u] + sigma[u] * sample_noise(kz, (num_samples, n), spec.latent_dist)
    x = jax.vmap(functools.partial(mix, mixing))(z)
    return {"z": z, "u": u, "x": x, "mixing": mixing, "mu": mu, "sigma": sigma}


@dataclasses.dataclass(frozen=True)
class DomainData:
    """A multi-domain sample.

    Attributes:
      z: ``[N, n]`` latents; u: int ``[N]`` domain indices; x: ``[N, n]`` observations.
      mixing: ``[n] -> [n]``; support: bool ``[n, n]`` (observed x latent).
      mu, sigma: ``[num_domains, n]`` domain statistics; params: mixing weights.
    """

    z: Array
    u: Array
    x: Array
    mixing: Callable[[Array], Array]
    support: np.ndarray
    mu: Array
    sigma: Array
    params: dict
    spec: DomainSpec


def make_domain_data(
    key, num_domains: int, latent_dim: int, samples_per_domain: int, density: float = 0.5, latent_dist: str = "gaussian"
) -> DomainData:
    """Draw a sparse mixing and ``samples_per_domain`` samples in each domain."""
    spec = DomainSpec(num_domains, latent_dim, density, latent_dist)
    if samples_per_domain < 1:
        raise ValueError(f"samples_per_domain must be >= 1, got {samples_per_domain}")
    arr = jax.jit(rng.traced_in_fast_mode(sample_arrays), static_argnums=(1, 2))(
        key, spec, samples_per_domain * num_domains
    )
    return DomainData(
        arr["z"],
        arr["u"],
        arr["x"],
        functools.partial(mix, arr["mixing"]),
        np.asarray(arr["mixing"]["support"]),
        arr["mu"],
        arr["sigma"],
        arr["mixing"],
        spec,
    )


def check_domains(u, num_domains: int) -> None:
    """Raise a clear error for a domain index outside ``[0, num_domains)``."""
    u = np.asarray(u)
    if u.size and (u.min() < 0 or u.max() >= num_domains):
        raise ValueError(
            f"domain index out of range: got indices in [{u.min()}, {u.max()}], expected [0, {num_domains})"
        )
