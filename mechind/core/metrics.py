"""Identifiability metrics: SIS (slot identifiability score) and MCC, shared with cg/.

The heavy parts (kernel ridge fits, correlation matrices) are pure JAX and vmappable
over runs; the assignment step (Hungarian matching) runs on the host with scipy.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_factor, cho_solve
from scipy.optimize import linear_sum_assignment

Array = jax.Array


def _standardise(a: Array, ref: Array) -> Array:
    """z-score ``a`` with the mean/std of ``ref`` (the fit split), per feature."""
    mu, sd = ref.mean(0), ref.std(0)
    return (a - mu) / jnp.where(sd > 0, sd, 1.0)


def _sq_dists(a: Array, b: Array) -> Array:
    return jnp.maximum(jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :] - 2 * a @ b.T, 0.0)


def _r2(y: Array, pred: Array) -> Array:
    """Coefficient of determination averaged over outputs (sklearn's 'uniform_average')."""
    ss_res = jnp.sum((y - pred) ** 2, 0)
    ss_tot = jnp.sum((y - y.mean(0)) ** 2, 0)
    return jnp.mean(1.0 - ss_res / jnp.where(ss_tot > 0, ss_tot, 1.0))


@functools.partial(jax.jit, static_argnames=("fit_frac", "alpha", "gamma"))
def sis_r2_matrix(
    z: Array, z_hat: Array, fit_frac: float = 0.8, alpha: float = 1.0, gamma: float | None = None
) -> Array:
    """R² of kernel ridge regression from each inferred slot to each true slot.

    Args:
      z: ``[N, K, d]`` true slots; z_hat: ``[N, K', d']`` inferred slots.
      fit_frac: leading fraction of the N samples used to fit; the rest scores R².
      alpha, gamma: RBF kernel ridge hyper-parameters (gamma default 1 / d').

    Returns:
      ``[K, K']`` with entry (i, j) the R² of predicting true slot i from inferred slot j
      (unclipped). The kernel depends only on the inferred slot, so there is one Cholesky
      factorisation per inferred slot, shared by all true slots.
    """
    n = z.shape[0]
    n_fit = int(round(fit_frac * n))
    if not 0 < n_fit < n:
        raise ValueError(f"fit_frac={fit_frac} leaves an empty fit or eval split of {n} samples")
    gamma = 1.0 / z_hat.shape[-1] if gamma is None else gamma
    zs = _standardise(z.reshape(n, -1), z.reshape(n, -1)[:n_fit])
    targets_fit, targets_eval = zs[:n_fit], zs[n_fit:]  # [n_fit, K*d], all true slots at once
    k, d = z.shape[1], z.shape[2]

    def per_inferred(zj: Array) -> Array:  # zj [N, d'] -> [K] R² over true slots
        zj = _standardise(zj, zj[:n_fit])
        a, b = zj[:n_fit], zj[n_fit:]
        gram = jnp.exp(-gamma * _sq_dists(a, a)) + alpha * jnp.eye(n_fit, dtype=a.dtype)
        coef = cho_solve(cho_factor(gram, lower=True), targets_fit)
        pred = jnp.exp(-gamma * _sq_dists(b, a)) @ coef  # [n_eval, K*d]
        yt, yp = targets_eval.reshape(-1, k, d), pred.reshape(-1, k, d)
        return jax.vmap(_r2, in_axes=(1, 1))(yt, yp)

    # sequential over inferred slots keeps one n_fit x n_fit kernel alive at a time
    return jax.lax.map(per_inferred, jnp.moveaxis(z_hat, 1, 0)).T


def sis_from_r2(r2: np.ndarray) -> float:
    """SIS from a ``[K, K']`` R² matrix: clip at 0, match (Hungarian, maximising R²),
    then ``mean_i (R²[i, π(i)] - max_{j != π(i)} R²[i, j])``."""
    r2 = np.clip(np.asarray(r2, float), 0.0, None)
    if not np.all(np.isfinite(r2)):
        return float("nan")
    rows, cols = linear_sum_assignment(-r2)
    scores = []
    for i, j in zip(rows, cols):
        others = np.delete(r2[i], j)
        scores.append(r2[i, j] - (others.max() if others.size else 0.0))
    return float(np.mean(scores))


def slot_identifiability_score(
    z, z_hat, fit_frac: float = 0.8, alpha: float = 1.0, gamma: float | None = None
) -> float:
    """SIS (Brady et al. 2023) of inferred slots ``z_hat [N, K, d']`` against ``z [N, K, d]``."""
    z, z_hat = jnp.asarray(z), jnp.asarray(z_hat)
    if z.ndim != 3 or z_hat.ndim != 3 or z.shape[0] != z_hat.shape[0]:
        raise ValueError(f"z and z_hat must be [N, K, d] with the same N, got {z.shape} and {z_hat.shape}")
    return sis_from_r2(np.asarray(sis_r2_matrix(z, z_hat, fit_frac, alpha, gamma)))


def _ranks(a: Array) -> Array:
    return jnp.argsort(jnp.argsort(a, axis=0), axis=0).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("method",))
def correlation_matrix(z: Array, z_hat: Array, method: str = "pearson") -> Array:
    """``|corr(z_i, ẑ_j)|``, ``[N, n] x [N, m] -> [n, m]`` (Pearson or Spearman)."""
    if method == "spearman":
        z, z_hat = _ranks(z), _ranks(z_hat)
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    a = (z - z.mean(0)) / jnp.maximum(z.std(0), 1e-12)
    b = (z_hat - z_hat.mean(0)) / jnp.maximum(z_hat.std(0), 1e-12)
    return jnp.abs(a.T @ b) / z.shape[0]


def mcc_from_corr(corr: np.ndarray) -> float:
    """Mean matched |correlation| under the Hungarian matching maximising the total."""
    corr = np.asarray(corr, float)
    if not np.all(np.isfinite(corr)):
        return float("nan")
    rows, cols = linear_sum_assignment(-corr)
    return float(corr[rows, cols].mean())


def mcc(z, z_hat, method: str = "pearson") -> float:
    """Mean correlation coefficient between true ``z [N, n]`` and inferred ``z_hat [N, n]``."""
    z, z_hat = jnp.asarray(z), jnp.asarray(z_hat)
    if z.ndim != 2 or z_hat.ndim != 2 or z.shape[0] != z_hat.shape[0]:
        raise ValueError(f"z and z_hat must be [N, n] with the same N, got {z.shape} and {z_hat.shape}")
    return mcc_from_corr(np.asarray(correlation_matrix(z, z_hat, method)))


def matched_permutation(corr: np.ndarray) -> np.ndarray:
    """``perm [n]``: inferred latent ``perm[i]`` is matched to true latent i by the MCC
    assignment (Hungarian matching on ``|corr| [n_true, n_inferred]``)."""
    rows, cols = linear_sum_assignment(-np.abs(np.asarray(corr, float)))
    perm = np.empty(len(rows), int)
    perm[rows] = cols
    return perm


def support_f1(jac_abs: np.ndarray, support: np.ndarray, perm: np.ndarray, threshold: float = 0.1) -> float:
    """F1 of a learned Jacobian support against the true one.

    Args:
      jac_abs: ``[d_x, n]`` mean absolute Jacobian of the learned decoder (any units).
      support: bool ``[d_x, n]``, the true mixing's support.
      perm: ``[n]`` from :func:`matched_permutation` (learned column ``perm[i]`` is true latent i).
      threshold: an entry is an edge when it exceeds ``threshold`` times the largest entry
        of its column (so the score does not depend on each latent's scale).
    """
    j = np.asarray(jac_abs, float)[:, perm]
    est = j > threshold * np.max(j, axis=0, keepdims=True)
    tp = np.sum(est & support)
    if tp == 0:
        return 0.0
    precision, recall = tp / est.sum(), tp / np.sum(support)
    return float(2 * precision * recall / (precision + recall))


def support_auroc(jac_abs: np.ndarray, support: np.ndarray, perm: np.ndarray) -> float:
    """Support recovery without a threshold: the AUROC of the learned Jacobian's entries as
    scores for "is an edge", true edges against true zeros.

    Each column of ``jac_abs [d_x, n]`` (learned column ``perm[i]`` is true latent i, see
    :func:`matched_permutation`) is divided by its largest entry first, so the score does
    not depend on a latent's scale. The AUROC is ``P(edge score > zero score)`` with ties
    counted half (the Mann-Whitney U over pairs). Every entry tied (the dense guess) gives
    0.5; the true Jacobian gives 1. NaN when the support has no zeros or no edges.
    """
    j = np.asarray(jac_abs, float)[:, perm]
    j = j / np.maximum(np.max(j, axis=0, keepdims=True), np.finfo(float).tiny)
    s = np.asarray(support, bool)
    pos, neg = j[s], j[~s]
    if not pos.size or not neg.size:
        return float("nan")
    greater = np.mean(pos[:, None] > neg[None, :])
    ties = np.mean(pos[:, None] == neg[None, :])
    return float(greater + 0.5 * ties)


@functools.partial(jax.jit, static_argnames=("fit_frac", "alpha", "gamma", "iters"))
def sis_per_scene_r2(
    z: Array, z_hat: Array, fit_frac: float = 0.8, alpha: float = 1.0, gamma: float | None = None, iters: int = 5
) -> tuple[Array, Array]:
    """SIS's R² when slots are identified only up to a permutation per sample (scene), as
    object-centric models are and as Brady et al. score their sprite images.

    Each inferred slot j gets a kernel ridge regression (RBF, as :func:`sis_r2_matrix`)
    onto the true slot it explains in each sample; which one that is, a permutation
    ``pi_s`` per sample, is found by alternating (``iters`` times) between fitting the
    regressions and choosing, per sample, the permutation whose predictions fit best,
    starting from the best global permutation. Off-diagonal: a regression from slot j
    onto the true slot that another slot j' explains (``pi_s(j')``, per sample).

    Args:
      z: ``[N, K, d]`` true slots; z_hat: ``[N, K, d']`` inferred slots (the same K, at
        most 5: the permutations are enumerated).
      fit_frac: leading fraction of the samples that fits; the rest scores R².

    Returns:
      ``(on [K], off [K, K])``: ``on[j]`` the R² of slot j's predictions of its matched
      objects, ``off[j', j]`` (j != j') that of slot j's predictions of the objects slot j'
      explains (diagonal 0). The score is
      ``mean_j (on[j] - max_{j' != j} off[j, j'])`` (:func:`sis_from_per_scene`).
    """
    import itertools

    n, k, d = z.shape
    if z_hat.shape[:2] != (n, k) or k > 5:
        raise ValueError(f"z_hat must be [N, K, d'] with z's N and K (K <= 5), got {z.shape} and {z_hat.shape}")
    n_fit = int(round(fit_frac * n))
    if not 0 < n_fit < n:
        raise ValueError(f"fit_frac={fit_frac} leaves an empty fit or eval split of {n} samples")
    gamma = 1.0 / z_hat.shape[-1] if gamma is None else gamma
    zs = _standardise(z.reshape(n, -1), z.reshape(n, -1)[:n_fit]).reshape(n, k, d)
    perms = jnp.asarray(list(itertools.permutations(range(k))))  # [P, K]: slot j explains object perm[j]

    def kernels(zj):  # one inferred slot: its Cholesky factor and its kernel against the fit split
        zj = _standardise(zj, zj[:n_fit])
        a = zj[:n_fit]
        chol = cho_factor(jnp.exp(-gamma * _sq_dists(a, a)) + alpha * jnp.eye(n_fit, dtype=a.dtype), lower=True)
        return chol[0], jnp.exp(-gamma * _sq_dists(zj, a))  # [n_fit, n_fit], [N, n_fit]

    chols, cross = jax.lax.map(kernels, jnp.moveaxis(z_hat, 1, 0))  # [K, n_fit, n_fit], [K, N, n_fit]

    def predict(targets):  # targets [K, N, d] (slot j's target per sample) -> predictions [K, N, d]
        coef = jax.vmap(lambda c, t: cho_solve((c, True), t[:n_fit]))(chols, targets)
        return jnp.einsum("knf,kfd->knd", cross, coef)

    def assigned(p):  # p [N] permutation indices -> [K, N, d]: the object each slot explains
        return jnp.moveaxis(jnp.take_along_axis(zs, perms[p][:, :, None], axis=1), 1, 0)

    # start from the best global permutation of sis_r2_matrix's R²
    r2 = sis_r2_matrix(z, z_hat, fit_frac, alpha, gamma)  # [true, inferred]
    start = jnp.argmax(jnp.sum(r2[perms, jnp.arange(k)[None, :]], 1))

    def em(p, _):
        pred = predict(assigned(p))  # [K, N, d]
        target = jnp.moveaxis(zs[:, perms], 0, 2)  # [P, K, N, d]: the objects under each permutation
        cost = jnp.sum((pred[None] - target) ** 2, (1, 3))  # [P, N]
        return jnp.argmin(cost, 0), None

    p, _ = jax.lax.scan(em, jnp.full((n,), start), None, length=iters)
    own = assigned(p)  # [K, N, d]
    ev = slice(n_fit, None)
    on = jax.vmap(lambda t, q: _r2(t[ev], q[ev]))(own, predict(own))

    def off_row(jp):  # slot j' 's objects, predicted by every slot j
        target = jnp.broadcast_to(own[jp], own.shape)
        return jax.vmap(lambda t, q: _r2(t[ev], q[ev]))(target, predict(target))

    off = jax.lax.map(off_row, jnp.arange(k)) * (1 - jnp.eye(k))
    return on, off


def sis_from_per_scene(on, off) -> float:
    """The per-scene SIS from :func:`sis_per_scene_r2`'s ``(on [K], off [K, K])``: R² clipped at
    0, ``mean_j (on[j] - max_{j' != j} off[j, j'])``."""
    on, off = np.clip(np.asarray(on, float), 0, None), np.clip(np.asarray(off, float), 0, None)
    if not (np.all(np.isfinite(on)) and np.all(np.isfinite(off))):
        return float("nan")
    k = len(on)
    best_off = np.array([max((off[j, jp] for jp in range(k) if jp != j), default=0.0) for j in range(k)])
    return float(np.mean(on - best_off))


def _sqrtm_psd(a: Array) -> Array:
    """The symmetric square root of a symmetric positive semi-definite ``a [F, F]``."""
    w, v = jnp.linalg.eigh((a + a.T) / 2)
    return (v * jnp.sqrt(jnp.maximum(w, 0.0))) @ v.T


def frechet_distance(a: Array, b: Array) -> Array:
    """The Fréchet distance between Gaussians fitted to features ``a [N, F]`` and ``b [M, F]``:
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)`` (FID's formula, in
    whatever feature space ``a`` and ``b`` come from; covariances with ``N - 1``)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a = jnp.cov(a, rowvar=False).reshape(a.shape[1], a.shape[1])
    s_b = jnp.cov(b, rowvar=False).reshape(b.shape[1], b.shape[1])
    r = _sqrtm_psd(s_a)
    cross = jnp.sum(jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(r @ s_b @ r), 0.0)))
    return jnp.sum((mu_a - mu_b) ** 2) + jnp.trace(s_a) + jnp.trace(s_b) - 2 * cross


def kernel_distance(a: Array, b: Array) -> Array:
    """KID: the unbiased squared MMD between ``a [N, F]`` and ``b [M, F]`` under the kernel
    ``k(x, y) = (x . y / F + 1)^3`` (Bińkowski et al. 2018), on the whole sets."""
    f = a.shape[1]
    k = lambda x, y: (x @ y.T / f + 1.0) ** 3  # noqa: E731
    n, m = a.shape[0], b.shape[0]
    kaa, kbb = k(a, a), k(b, b)
    within_a = (jnp.sum(kaa) - jnp.trace(kaa)) / (n * (n - 1))
    within_b = (jnp.sum(kbb) - jnp.trace(kbb)) / (m * (m - 1))
    return within_a + within_b - 2 * jnp.mean(k(a, b))
