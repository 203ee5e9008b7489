"""iVAE's published synthetic protocol (Khemakhem et al., AISTATS 2020), and a sparse variant.

Reproduces ``generate_data`` of the authors' code (github.com/ilkhem/iVAE,
``data/data.py``, as loaded by its ``SyntheticDataset``; read, not copied):

* sources: ``M`` segments of ``N`` points; in segment m source j is
  ``s = L_mj * eps + m_mj`` with ``eps`` standard Gaussian or unit-variance Laplace,
  ``L_mj ~ U(0.5, 3)`` and ``m_mj = 0`` (centred, their default) or ``~ U(-5, 5)``;
  segments are contiguous blocks of the array (labels ``0..M-1``).
* mixing: an MLP of ``L`` layers ``h <- act(h @ A)``, no activation after the last;
  every ``A`` has ``U(-1, 1)`` entries with unit-norm columns and is re-drawn until its
  2-norm condition number is below the 25th percentile of ``cond_draws`` (10^4) such
  draws; ``act`` is leaky ReLU (slope 0.1) or ``xtanh(x) = tanh(x) + 0.1 x``.
  ``tied=True`` (their loader's ``repeat_linearity=True``) uses one matrix for every
  layer (a second square one after the first when ``d_x != n``); ``tied=False`` draws
  one per layer.

The **sparse variant** (``density < 1``) prescribes the Jacobian support
``S [d_x, n]`` (bool, diagonal always in): the first layer is masked by ``S`` (and
conditioned under the same rule among masked draws) and the later layers are diagonal
(per-coordinate scales ``+-U(0.5, 1.5)``), so ``dx/dz = D_L act' ... D_2 act' A_1^T``
has exactly ``S`` as its support (``act' > 0``): structural zeros, and injective since
``A_1`` is invertible. A dense later layer would fill the support in, so this variant
is post-nonlinear; say so wherever it is used.

Everything here is host-side numpy (seeded ``numpy.random.default_rng``), so a dataset
is a fixed array that any implementation (ours, or the PyTorch reference) can be run on.
As a :class:`mechind.core.datasets.Dataset`: :class:`Protocol` (``datasets.make("ivae",
num_segments=40)``), whose ``sample(key, N)`` is :func:`generate` of the key's numpy seed
with ``N / num_segments`` points per segment.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from mechind.core import datasets

ACTIVATIONS = ("xtanh", "lrelu", "none")
SOURCE_DISTS = ("gauss", "lap")
SLOPE = 0.1
SCALE_RANGE = (0.5, 3.0)
CENTER_RANGE = (-5.0, 5.0)
COND_PERCENTILE = 25.0
GENERATOR_VERSION = 1  # bump when a change to this module changes any drawn number


def activation(name: str):
    """The element-wise mixing nonlinearity (numpy)."""
    if name == "xtanh":
        return lambda x: np.tanh(x) + SLOPE * x
    if name == "lrelu":
        return lambda x: np.where(x > 0, x, SLOPE * x)
    if name == "none":
        return lambda x: x
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def unit_columns(a: np.ndarray) -> np.ndarray:
    """``[..., d_in, d_out]`` with every column scaled to unit Euclidean norm."""
    return a / np.sqrt(np.sum(a * a, axis=-2, keepdims=True))


def condition_numbers(a: np.ndarray) -> np.ndarray:
    """2-norm condition numbers of ``[..., p, q]`` matrices (``np.linalg.cond``)."""
    s = np.linalg.svd(a, compute_uv=False)
    return s[..., 0] / s[..., -1]


def draw_conditioned(
    rng: np.random.Generator,
    d_in: int,
    d_out: int,
    mask: np.ndarray | None = None,
    cond_draws: int = 10_000,
    max_tries: int = 100_000,
) -> tuple[np.ndarray, float]:
    """One ``[d_in, d_out]`` matrix with ``U(-1, 1)`` entries (zero off ``mask``) and unit-norm
    columns, re-drawn until its condition number is below the 25th percentile of
    ``cond_draws`` such matrices. Returns ``(A, threshold)``."""

    def draw(k):
        a = rng.uniform(-1.0, 1.0, (k, d_in, d_out))
        return unit_columns(a * mask if mask is not None else a)

    thresh = float(np.percentile(condition_numbers(draw(cond_draws)), COND_PERCENTILE))
    for _ in range(max_tries):
        a = draw(1)[0]
        if condition_numbers(a) <= thresh:
            return a, thresh
    raise RuntimeError(f"no matrix below the condition threshold {thresh:.3g} in {max_tries} draws")


def random_support(rng: np.random.Generator, obs_dim: int, latent_dim: int, density: float) -> np.ndarray:
    """bool ``[d_x, n]``: the diagonal, one entry at random in each further row (d_x > n: an
    observed coordinate that depends on no latent would be constant), then entries at
    random up to ``round(density d_x n)`` in all."""
    n_edges = int(np.clip(round(density * obs_dim * latent_dim), obs_dim, obs_dim * latent_dim))
    s = np.zeros((obs_dim, latent_dim), bool)
    s[np.arange(latent_dim), np.arange(latent_dim)] = True
    if obs_dim > latent_dim:  # (draws nothing extra when d_x == n: those datasets are unchanged)
        s[np.arange(latent_dim, obs_dim), rng.integers(0, latent_dim, obs_dim - latent_dim)] = True
    off = np.flatnonzero(~s)
    s.flat[rng.choice(off, n_edges - s.sum(), replace=False)] = True
    return s


def structural_sparsity(support: np.ndarray) -> np.ndarray:
    """Zheng et al. (2022)'s structural sparsity condition, per latent: bool ``[n]``.

    Latent i satisfies it when the intersection of the supports of the observed rows
    that depend on i is exactly ``{i}`` (``support [d_x, n]``, rows observed, columns
    latent). A latent that no row depends on fails.
    """
    s = np.asarray(support, bool)
    n = s.shape[1]
    ok = np.zeros(n, bool)
    for i in range(n):
        rows = s[s[:, i]]
        if rows.shape[0] == 0:
            continue
        inter = np.all(rows, axis=0)
        ok[i] = inter.sum() == 1 and inter[i]
    return ok


@dataclasses.dataclass(frozen=True)
class IVAEData:
    """A dataset of iVAE's protocol.

    Attributes:
      s: ``[M*N, n]`` sources; x: ``[M*N, d_x]`` observations; u: int ``[M*N]`` segments.
      centers, scales: ``[M, n]`` per-segment means and standard deviations.
      weights: the mixing layers, ``[d_in, d_out]`` each (``x = act(... act(s @ A_1) ...) @ A_L``).
      support: bool ``[d_x, n]`` of the mixing Jacobian (all True when dense).
      activation: the mixing nonlinearity's name.
    """

    s: np.ndarray
    x: np.ndarray
    u: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    weights: tuple
    support: np.ndarray
    activation: str

    def mix(self, s: np.ndarray) -> np.ndarray:
        """The mixing ``[..., n] -> [..., d_x]`` (numpy)."""
        return mlp_mix(self.weights, s, self.activation)

    def jacobian(self, s: np.ndarray) -> np.ndarray:
        """``dx/ds`` at ``s [B, n]``: ``[B, d_x, n]`` (numpy, float64)."""
        return mlp_jacobian(self.weights, s, self.activation)

    def standardized_l1(self, rows: np.ndarray) -> float:
        """``mean_b ||diag(1/sd(x)) J(s_b) diag(sd(s))||_1`` over ``rows`` of the dataset: the
        true mixing's L1 in the units of :func:`cg.losses.sparse_mixing_penalty`
        (standardized), with x z-scored, so a learned decoder's can be divided by it."""
        s = np.asarray(self.s, np.float64)[rows]
        jac = self.jacobian(s) / np.asarray(self.x, np.float64).std(0)[None, :, None] * s.std(0)[None, None, :]
        return float(np.mean(np.sum(np.abs(jac), axis=(1, 2))))

    @property
    def structural_sparsity(self) -> np.ndarray:
        return structural_sparsity(self.support)

    def save(self, path) -> None:
        """An ``.npz`` with ``x``, ``u`` and the true ``z`` (the format ``python -m cg.fitting`` reads)."""
        np.savez(path, x=self.x, u=self.u, z=self.s, support=self.support)


def mlp_mix(weights, s: np.ndarray, act: str) -> np.ndarray:
    """``act(... act(s @ A_1) ...) @ A_L``: ``[..., n] -> [..., d_x]``."""
    f = activation(act)
    h = s
    for i, a in enumerate(weights):
        h = h @ a
        if i < len(weights) - 1:
            h = f(h)
    return h


def activation_slope(name: str):
    """The derivative of :func:`activation` (numpy); leaky ReLU's at 0 is taken as 1."""
    if name == "xtanh":
        return lambda x: 1.0 - np.tanh(x) ** 2 + SLOPE
    if name == "lrelu":
        return lambda x: np.where(x >= 0, 1.0, SLOPE)
    if name == "none":
        return lambda x: np.ones_like(x)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def mlp_jacobian(weights, s: np.ndarray, act: str) -> np.ndarray:
    """Jacobian of :func:`mlp_mix` at ``s [B, n]``: ``[B, d_x, n]`` (chain rule, float64)."""
    df = activation_slope(act)
    f = activation(act)
    h = np.asarray(s, np.float64)
    jac = np.broadcast_to(np.eye(h.shape[-1]), (*h.shape[:-1], h.shape[-1], h.shape[-1]))
    for i, a in enumerate(weights):
        a = np.asarray(a, np.float64)
        pre = h @ a
        jac = np.einsum("io,...in->...on", a, jac)  # d(pre)/ds
        if i < len(weights) - 1:
            jac = df(pre)[..., :, None] * jac
            h = f(pre)
    return jac


def generate(
    seed: int,
    num_segments: int = 40,
    per_segment: int = 1_000,
    latent_dim: int = 5,
    obs_dim: int | None = None,
    num_layers: int = 3,
    act: str = "xtanh",
    dist: str = "gauss",
    centered: bool = True,
    tied: bool = True,
    density: float = 1.0,
    cond_draws: int = 10_000,
    dtype=np.float32,
) -> IVAEData:
    """Draw a dataset of iVAE's protocol (module docstring); ``density < 1`` is the sparse variant."""
    obs_dim = latent_dim if obs_dim is None else obs_dim
    checks = [
        (num_segments >= 1, f"num_segments must be >= 1, got {num_segments}"),
        (per_segment >= 1, f"per_segment must be >= 1, got {per_segment}"),
        (latent_dim >= 1, f"latent_dim must be >= 1, got {latent_dim}"),
        (obs_dim >= latent_dim, f"obs_dim must be >= latent_dim={latent_dim}, got {obs_dim}"),
        (num_layers >= 1, f"num_layers must be >= 1, got {num_layers}"),
        (act in ACTIVATIONS, f"act must be one of {ACTIVATIONS}, got {act!r}"),
        (dist in SOURCE_DISTS, f"dist must be one of {SOURCE_DISTS}, got {dist!r}"),
        (0.0 < density <= 1.0, f"density must lie in (0, 1], got {density}"),
        (cond_draws >= 4, f"cond_draws must be >= 4, got {cond_draws}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)
    rng = np.random.default_rng(seed)
    n, m = latent_dim, num_segments
    scales = rng.uniform(*SCALE_RANGE, (m, n))
    centers = np.zeros((m, n)) if centered else rng.uniform(*CENTER_RANGE, (m, n))
    if dist == "gauss":
        eps = rng.standard_normal((m * per_segment, n))
    else:
        eps = rng.laplace(0.0, 1.0 / np.sqrt(2.0), (m * per_segment, n))
    u = np.repeat(np.arange(m), per_segment)
    s = eps * scales[u] + centers[u]

    if density < 1.0:
        support = random_support(rng, obs_dim, n, density)
        first, _ = draw_conditioned(rng, n, obs_dim, mask=support.T, cond_draws=cond_draws)
        later = [
            np.diag(rng.choice([-1.0, 1.0], obs_dim) * rng.uniform(0.5, 1.5, obs_dim)) for _ in range(num_layers - 1)
        ]
        weights = (first, *later)
    else:
        support = np.ones((obs_dim, n), bool)
        if tied:
            first, _ = draw_conditioned(rng, n, obs_dim, cond_draws=cond_draws)
            square = first if obs_dim == n else draw_conditioned(rng, obs_dim, obs_dim, cond_draws=cond_draws)[0]
            weights = (first, *([square] * (num_layers - 1)))
        else:
            dims = [n] + [obs_dim] * num_layers
            weights = tuple(draw_conditioned(rng, a, b, cond_draws=cond_draws)[0] for a, b in zip(dims[:-1], dims[1:]))
    x = mlp_mix(weights, s, act)
    return IVAEData(
        s.astype(dtype),
        x.astype(dtype),
        u.astype(np.int32),
        centers,
        scales,
        tuple(w.astype(dtype) for w in weights),
        support,
        act,
    )


@datasets.register("ivae")
@dataclasses.dataclass(frozen=True)
class Protocol(datasets.Dataset):
    """iVAE's protocol as a dataset: the settings of :func:`generate` but the seed and the
    number of points (``sample(key, N)``: ``N / num_segments`` per segment)."""

    version: ClassVar[int] = GENERATOR_VERSION
    traceable: ClassVar[bool] = False

    num_segments: int = 40
    latent_dim: int = 5
    obs_dim: int | None = None
    num_layers: int = 3
    act: str = "xtanh"
    dist: str = "gauss"
    centered: bool = True
    tied: bool = True
    density: float = 1.0
    cond_draws: int = 10_000

    def draw(self, key, num_samples: int) -> IVAEData:
        """The whole dataset of ``key`` (with its mixing): :func:`generate` of the key's
        numpy seed."""
        if num_samples < 1 or num_samples % self.num_segments:
            raise ValueError(
                f"num_samples={num_samples} must be a positive multiple of num_segments={self.num_segments}"
            )
        return generate(
            datasets.numpy_seed(key),
            self.num_segments,
            num_samples // self.num_segments,
            self.latent_dim,
            self.obs_dim,
            self.num_layers,
            self.act,
            self.dist,
            self.centered,
            self.tied,
            self.density,
            self.cond_draws,
        )

    def sample(self, key, num_samples: int) -> dict:
        """``{"x" [N, d_x], "z" [N, n] (the sources), "u" int [N], "support" bool [d_x, n]}``."""
        d = self.draw(key, num_samples)
        return {"x": d.x, "z": d.s, "u": d.u, "support": d.support}
