"""A benchmark that can show the sparse-mixing claim (CG paper, arXiv 2503.00639).

Why a new generator: in :mod:`cg.ivae_data`'s sparse variant the sources are centred
Gaussians (iVAE's prior is exactly right), columns of the support are often nested or
identical (sparsity then has nothing to single out), edges can be tiny, and a domain
sweep redraws the mixing. Here every one of those is controlled:

* **Support** ``S [d_x, n]`` (bool). Arm ``"structural"``: Zheng et al.'s structural
  sparsity holds for every latent. For each latent k the rows that depend on k
  intersect in ``{k}`` alone; equivalently (:func:`nested_pairs`) no column's support
  lies inside another's, so there are no nested and no identical columns. Arm
  ``"nested"`` breaks it for one latent: column 0's support is a strict subset of
  column 1's, and every other pair stays un-nested. The first n rows contain the
  diagonal, so the mixing is invertible. Every row has at least ``min_row_edges`` edges,
  and the rows are shuffled.
* **Why these defaults** (off-diagonal density 0.25, ``min_row_edges = 1``). The claim
  needs a benchmark where the penalty points at the truth: the true mixing should be the
  global minimum of the standardized L1 over the rotations the likelihood cannot tell
  apart. ``python -m experiments.cg_l1_rotations --data sparse`` measures this (n = 5,
  d_x = 10, 10 mixings x 6 starts):

  | density | min_row_edges | starts below the truth's L1 | mixings with the truth not the minimum | log: starts below |
  |---|---|---|---|---|
  | 0.4 | 2 | 31/60 | (not counted) | 1/60 |
  | 0.25 | 2 | 15/60 | 5/10 | 0/60 |
  | 0.4 | 1 | 13/60 | (not counted) | 1/60 |
  | 0.25 | 1 | 4/60 | 2/10 | 0/60 |

  Rows that depend on one latent (anchors) and sparser supports are what make L1 point at
  the truth. A log penalty, closer to counting edges, almost always has the truth below
  every start. Anchors also raise the raw observations' Spearman MCC, the floor every
  method is scored against: 0.83-0.95 at d_x = 10 and 0.68-1.0 at d_x = 5 (seeds 0-4; at
  1.0 every latent has an anchor, and that dataset measures nothing). So the decision is
  read at d_x = 2n, on paired differences.
* **Mixing** (drawn from its own stream: the same for a seed at any number of domains).
  ``A [d_x, n]`` has entries ``±U(0.5, 1.5)`` on S and 0 elsewhere, redrawn until
  ``cond(A) <= MAX_COND``. ``"linear"``: ``x = A z``. ``"nonlinear"``:
  ``x = g(h)``, ``h = A z + kappa tanh(B z / c)``, with B on the same support, entries
  ``U(0.5, 1.5)`` carrying the sign of A's, ``c = TANH_SCALE``,
  ``kappa = NONLINEARITY * c * sigma_min(A) / ||B||_2``, and the element-wise
  ``g(t) = 0.25 t + softplus(t)`` (slope in (0.25, 1.25)). Each x_i is then a
  non-additive, curved function of the latents in its support only. A linear fit of x on z
  leaves 7-9 % of the variance unexplained (linear R² 0.91-0.93 over seeds 0-4 at n = 5,
  d_x = 5 and 10, the defaults). The Jacobian ``J = diag(g'(h)) (A + (kappa / c) diag(sech^2(Bz / c)) B)``
  has support exactly S. Every edge satisfies ``|J_ij| >= 0.25 |A_ij| >= 0.125`` (same
  signs), the edge floor. The map is injective because g is strictly increasing and
  ``|A(z - z')| >= sigma_min |z - z'| > |kappa (tanh(Bz / c) - tanh(Bz' / c))|``.
* **Sources.** In domain u, ``z = m_u + s_u * eps``, with means ``m_u ~ U(-2, 2)^n`` and
  scales ``s_u ~ U(0.5, 2)^n`` both changing across domains. Domain u's parameters come
  from a stream of (seed, u), so the first M domains are the same whatever the
  sweep's largest M. ``eps`` has unit variance and is Gaussian, Laplace, or a
  symmetric two-component mixture (``±0.9 + 0.436 N(0, 1)``).
* **Data.** ``total`` samples split evenly between the M domains, in contiguous blocks.
  ``x`` gets Gaussian noise of ``noise`` times each coordinate's clean standard
  deviation.

Everything is host-side numpy (seeded ``numpy.random.default_rng``), so a dataset is a
fixed array that any estimator can be run on.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from mechind.core import datasets

GENERATOR_VERSION = 3  # bump when a change here changes any drawn number
FAMILIES = ("gaussian", "laplace", "mixture")
ARMS = ("structural", "nested")
MIXINGS = ("linear", "nonlinear")
EDGE_RANGE = (0.5, 1.5)
MEAN_RANGE = (-2.0, 2.0)
SCALE_RANGE = (0.5, 2.0)
MAX_COND = 10.0  # the linear part's condition number bound (well-posed inversion)
NONLINEARITY = 0.9  # kappa ||B|| / (c sigma_min(A)) < 1: the injectivity margin used
TANH_SCALE = 2.0  # c: the interaction term's input scale (latents span about +-5)
OUT_SLOPE = 0.25  # g(t) = OUT_SLOPE t + softplus(t)
MIXTURE_MEAN = 0.9  # the two-component mixture: +-0.9 with std sqrt(1 - 0.81), unit variance
MAX_TRIES = 10_000
# the streams of numpy's SeedSequence([seed, STREAM, ...]): one per concern, so changing the
# number of domains never changes the mixing, nor one domain's parameters another's
_MIXING, _DOMAIN, _SAMPLES = 1, 2, 3


@datasets.register("cg_sparse")
@dataclasses.dataclass(frozen=True)
class Spec(datasets.Dataset):
    """What is drawn, and the dataset itself (``datasets.make("cg_sparse", num_domains=4,
    heldout=400)``; host numpy, seeded by the key's :func:`~mechind.core.datasets.numpy_seed`);
    validated on construction. ``num_domains`` and ``heldout`` are :meth:`sample`'s (a
    :func:`generate` call names its own)."""

    version: ClassVar[int] = GENERATOR_VERSION
    traceable: ClassVar[bool] = False

    latent_dim: int = 5
    obs_dim: int = 10
    family: str = "laplace"
    arm: str = "structural"
    mixing: str = "nonlinear"
    density: float = 0.25  # the chance of an off-diagonal edge
    noise: float = 0.01  # observation noise std, relative to each coordinate's clean std
    min_row_edges: int = 1  # latents each observed coordinate depends on, at least
    num_domains: int = 1  # M: the samples of a draw are split evenly between them
    heldout: int = 0  # held-out samples drawn alike (x_val, u_val, z_val)

    def __post_init__(self):
        checks = [
            (self.latent_dim >= 2, f"latent_dim must be >= 2 (sparsity compares columns), got {self.latent_dim}"),
            (self.obs_dim >= self.latent_dim, f"obs_dim must be >= latent_dim={self.latent_dim}, got {self.obs_dim}"),
            (self.family in FAMILIES, f"family must be one of {FAMILIES}, got {self.family!r}"),
            (self.arm in ARMS, f"arm must be one of {ARMS}, got {self.arm!r}"),
            (self.mixing in MIXINGS, f"mixing must be one of {MIXINGS}, got {self.mixing!r}"),
            (0 < self.density < 1, f"density must lie in (0, 1), got {self.density}"),
            (0 <= self.noise < 1, f"noise must lie in [0, 1), got {self.noise}"),
            (
                1 <= self.min_row_edges <= self.latent_dim,
                f"min_row_edges must lie in [1, latent_dim], got {self.min_row_edges}",
            ),
            (self.num_domains >= 1, f"num_domains must be >= 1, got {self.num_domains}"),
            (
                self.heldout >= 0 and self.heldout % max(self.num_domains, 1) == 0,
                f"heldout={self.heldout} must be a multiple of num_domains={self.num_domains}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    def draw(self, key, total: int) -> "SparseData":
        """The whole dataset of ``key`` (with its mixing and domain parameters):
        ``generate(numpy_seed(key), num_domains, total, self, heldout)``."""
        return generate(datasets.numpy_seed(key), self.num_domains, total, self, self.heldout)

    def sample(self, key, num_samples: int) -> dict:
        """``{"x" [N, d_x], "z" [N, n], "u" int [N], "support" bool [d_x, n]}``, and with
        ``heldout`` the held-out ``"x_val"``, ``"u_val"``, ``"z_val"``."""
        return self.draw(key, num_samples).arrays()


@dataclasses.dataclass(frozen=True)
class Mixing:
    """``x = g(a z + kappa tanh(b z / c))`` (``nonlinear``) or ``a z``. a, b ``[d_x, n]``;
    support bool ``[d_x, n]``."""

    a: np.ndarray
    b: np.ndarray
    kappa: float
    support: np.ndarray
    nonlinear: bool

    def _pre(self, z: np.ndarray) -> np.ndarray:
        return z @ self.a.T + self.kappa * np.tanh(z @ self.b.T / TANH_SCALE)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """``z [N, n] -> x [N, d_x]`` (noise-free)."""
        if not self.nonlinear:
            return z @ self.a.T
        h = self._pre(z)
        return OUT_SLOPE * h + np.logaddexp(0.0, h)

    def jacobian(self, z: np.ndarray) -> np.ndarray:
        """``[N, d_x, n]``, in closed form."""
        if not self.nonlinear:
            return np.broadcast_to(self.a, (len(z), *self.a.shape)).copy()
        sech2 = 1.0 - np.tanh(z @ self.b.T / TANH_SCALE) ** 2  # [N, d_x]
        inner = self.a[None] + (self.kappa / TANH_SCALE) * sech2[:, :, None] * self.b[None]
        slope = OUT_SLOPE + 1.0 / (1.0 + np.exp(-self._pre(z)))  # g'(h) [N, d_x]
        return slope[:, :, None] * inner


@dataclasses.dataclass(frozen=True)
class SparseData:
    """One dataset: z ``[N, n]``, u int ``[N]``, x ``[N, d_x]`` float32 and its truth."""

    z: np.ndarray
    u: np.ndarray
    x: np.ndarray
    mixing: Mixing
    means: np.ndarray  # [M, n]
    scales: np.ndarray  # [M, n]
    spec: Spec
    z_val: np.ndarray | None = None  # held-out draws of the same domains: [V, n]
    u_val: np.ndarray | None = None  # [V]
    x_val: np.ndarray | None = None  # [V, d_x]

    @property
    def support(self) -> np.ndarray:
        return self.mixing.support

    @property
    def s(self) -> np.ndarray:  # the name the CG experiments' truth uses
        return self.z

    def arrays(self) -> dict:
        """The arrays of :meth:`Spec.sample`."""
        out = {"x": self.x, "z": self.z, "u": self.u, "support": self.support}
        if self.x_val is not None:
            out.update(x_val=self.x_val, u_val=self.u_val, z_val=self.z_val)
        return out


def nested_pairs(support: np.ndarray) -> list[tuple[int, int]]:
    """``(j, k)``, j != k, with column j's support inside column k's (identical columns give
    both orders). Structural sparsity holds for latent j iff j is in no pair as the first:
    the rows depending on j intersect in {j} alone unless every one of them also depends on
    some k, i.e. column j lies inside column k."""
    s = np.asarray(support, bool)
    n = s.shape[1]
    return [(j, k) for j in range(n) for k in range(n) if j != k and not np.any(s[:, j] & ~s[:, k])]


def _candidate_support(rng: np.random.Generator, d_x: int, n: int, density: float) -> np.ndarray:
    s = rng.random((d_x, n)) < density
    s[np.arange(n), np.arange(n)] = True  # an invertible part
    return s


def _make_nested(rng: np.random.Generator, s: np.ndarray) -> np.ndarray:
    """Column 0 replaced by a random strict, nonempty subset of column 1."""
    rows = np.flatnonzero(s[:, 1])
    keep = rng.permutation(rows)[: rng.integers(1, len(rows))]  # 1 .. len - 1 rows: strict
    s = s.copy()
    s[:, 0] = False
    s[keep, 0] = True
    return s


def _support_ok(s: np.ndarray, arm: str, min_row_edges: int) -> bool:
    if s.sum(1).min() < min_row_edges or not s.any(0).all():
        return False
    pairs = nested_pairs(s)
    return not pairs if arm == "structural" else pairs == [(0, 1)]


def draw_mixing(seed: int, spec: Spec) -> Mixing:
    """The mixing of ``seed`` (its own stream: independent of the domains and samples)."""
    rng = np.random.default_rng([seed, _MIXING])
    n, d_x = spec.latent_dim, spec.obs_dim
    for _ in range(MAX_TRIES):
        s = _candidate_support(rng, d_x, n, spec.density)
        if spec.arm == "nested":
            if s[:, 1].sum() < 2:
                continue
            s = _make_nested(rng, s)
        if not _support_ok(s, spec.arm, spec.min_row_edges):
            continue
        signs = rng.choice([-1.0, 1.0], (d_x, n))
        a = np.where(s, signs * rng.uniform(*EDGE_RANGE, (d_x, n)), 0.0)
        if np.linalg.cond(a) > MAX_COND:
            continue
        b = np.where(s, signs * rng.uniform(*EDGE_RANGE, (d_x, n)), 0.0)
        kappa = 0.0
        if spec.mixing == "nonlinear":
            sv = np.linalg.svd(a, compute_uv=False)
            kappa = NONLINEARITY * TANH_SCALE * sv[-1] / np.linalg.norm(b, 2)
        perm = rng.permutation(d_x)  # rows in no special order
        return Mixing(a[perm], b[perm], float(kappa), s[perm], spec.mixing == "nonlinear")
    raise RuntimeError(f"no {spec.arm} support with cond <= {MAX_COND} in {MAX_TRIES} draws; raise density")


def draw_domain(seed: int, spec: Spec, u: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [n], scale [n])`` of domain ``u`` (its own stream)."""
    rng = np.random.default_rng([seed, _DOMAIN, u])
    return rng.uniform(*MEAN_RANGE, spec.latent_dim), rng.uniform(*SCALE_RANGE, spec.latent_dim)


def unit_noise(rng: np.random.Generator, shape: tuple[int, ...], family: str) -> np.ndarray:
    """Zero-mean, unit-variance draws of ``family``."""
    if family == "gaussian":
        return rng.standard_normal(shape)
    if family == "laplace":
        return rng.laplace(0.0, 1.0 / np.sqrt(2.0), shape)
    if family == "mixture":
        sign = rng.choice([-1.0, 1.0], shape)
        return sign * MIXTURE_MEAN + np.sqrt(1 - MIXTURE_MEAN**2) * rng.standard_normal(shape)
    raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


def _draw(rng: np.random.Generator, mixing: Mixing, means, scales, total: int, spec: Spec, noise_std=None):
    m = len(means)
    u = np.repeat(np.arange(m), total // m)
    z = means[u] + scales[u] * unit_noise(rng, (total, spec.latent_dim), spec.family)
    clean = mixing(z)
    std = clean.std(0) if noise_std is None else noise_std
    x = clean + spec.noise * std * rng.standard_normal(clean.shape)
    return z, u.astype(np.int32), x.astype(np.float32), std


def generate(seed: int, num_domains: int, total: int, spec: Spec = Spec(), heldout: int = 0) -> SparseData:
    """The (seed, num_domains) dataset: ``total`` samples split evenly between the domains,
    and ``heldout`` more drawn alike (``z_val``, ``u_val``, ``x_val``; the same noise scale)."""
    for k, name in ((total, "total"), (heldout, "heldout")):
        if k < 0 or (k and num_domains < 1) or k % max(num_domains, 1):
            raise ValueError(f"{name}={k} must be a multiple of num_domains={num_domains}")
    if num_domains < 1 or total < num_domains:
        raise ValueError(f"need num_domains >= 1 and total >= num_domains, got {num_domains} and {total}")
    mixing = draw_mixing(seed, spec)
    params = [draw_domain(seed, spec, u) for u in range(num_domains)]
    means, scales = np.stack([p[0] for p in params]), np.stack([p[1] for p in params])
    z, u, x, std = _draw(np.random.default_rng([seed, _SAMPLES, num_domains]), mixing, means, scales, total, spec)
    val = {}
    if heldout:
        zv, uv, xv, _ = _draw(
            np.random.default_rng([seed, _SAMPLES, num_domains, 1]), mixing, means, scales, heldout, spec, std
        )
        val = dict(z_val=zv, u_val=uv, x_val=xv)
    return SparseData(z, u, x, mixing, means, scales, spec, **val)


def true_jacobian_abs(d: SparseData, rows: np.ndarray) -> np.ndarray:
    """``[d_x, n]``: the true mixing's mean |J| over ``rows`` in z-scored x per latent std,
    the units in which the fitted decoder's Jacobian is scored (the AUROC ceiling)."""
    z = d.z[rows]
    jac = d.mixing.jacobian(z) / d.x.std(0)[None, :, None] * z.std(0)[None, None, :]
    return np.mean(np.abs(jac), 0)
