"""Graph recovery: the structural Hamming distance of a learned graph, after matching the
learned latents to the true ones (the MCC assignment)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def permute_graph(learned: np.ndarray, perm: np.ndarray, kind: str) -> np.ndarray:
    """The learned graph in the true latents' order: ``P G Pᵀ`` for G^z (time: rows and
    columns are latents), ``P G`` for G^a (action: columns are the actions, not permuted).
    ``perm[i]``: the learned latent matched to true latent i."""
    learned = np.asarray(learned)
    if kind == "time":
        return learned[np.ix_(perm, perm)]
    if kind == "action":
        return learned[perm]
    raise ValueError(f"kind must be 'action' or 'time', got {kind!r}")


def shd(truth: np.ndarray, learned: np.ndarray, perm: np.ndarray, kind: str) -> int:
    """Structural Hamming distance: entries where the permuted learned 0/1 graph and the
    true one differ (a missing and an extra edge count one each)."""
    truth, learned = np.asarray(truth, bool), np.asarray(learned, bool)
    if learned.shape != truth.shape:
        raise ValueError(f"graphs differ in shape: {truth.shape} and {learned.shape}")
    aligned = permute_graph(learned, np.asarray(perm), kind)
    return int(np.sum(truth != aligned))


def linear_r2(z: Array, z_hat: Array) -> Array:
    """Mean R² of each true latent regressed on every inferred latent (least squares with a
    bias), ``[N, n] x [N, m] -> scalar``: near 1 when ``z_hat`` identifies z up to an
    affine map, the most a dense graph can give."""
    design = jnp.concatenate([z_hat - z_hat.mean(0), jnp.ones((z_hat.shape[0], 1))], 1)
    coef, *_ = jnp.linalg.lstsq(design, z)
    resid = z - design @ coef
    return jnp.mean(1.0 - jnp.var(resid, 0) / jnp.maximum(jnp.var(z, 0), 1e-12))
