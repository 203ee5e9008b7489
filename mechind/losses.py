"""Losses of the slot autoencoder: reconstruction and compositional contrast."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from mechind.core import derivatives

Array = jax.Array


def mse(x: Array, x_hat: Array) -> Array:
    """Mean squared error over batch and coordinates."""
    return jnp.mean((x - x_hat) ** 2)


def compositional_contrast(jac: Array, slot_sizes: Sequence[int]) -> Array:
    """Compositional contrast (Brady et al. 2023).

    Args:
      jac: ``[B, d_x, sum(slot_sizes)]`` decoder Jacobians at the inferred latents.
      slot_sizes: the latent partition into slots.

    Returns:
      ``mean_b sum_n sum_{i<j} s[b,i,n] s[b,j,n]`` with ``s[b,k,n] = ||J[b, n, slot k]||_2``:
      zero exactly when every observed coordinate depends on at most one slot.
    """
    if jac.ndim != 3:
        raise ValueError(f"jac must have shape [B, d_x, d_z], got shape {jac.shape}")
    s = derivatives.slot_block_norms(jac, slot_sizes)  # [B, K, d_x]
    # sum_{i<j} s_i s_j = ((sum_i s_i)^2 - sum_i s_i^2) / 2, in O(K) rather than O(K^2)
    pair = 0.5 * (jnp.sum(s, 1) ** 2 - jnp.sum(s * s, 1))
    return jnp.mean(jnp.sum(pair, -1))


def standardize_jacobian(jac: Array, z_std: Array, x_std: Array) -> Array:
    """The Jacobian in standardized units: ``J'[b, n, j] = J[b, n, j] * z_std[j] / x_std[n]``.

    ``jac [B, d_x, d_z]``, ``z_std [d_z]`` (spread of each inferred latent), ``x_std [d_x]``.
    Rescaling latent j by c multiplies column j of J by 1/c and its std by c, so J' is
    unchanged: a penalty on J' cannot be paid by inflating the latents.
    """
    return jac * (z_std[None, None, :] / x_std[None, :, None])


def contrast_share(jac: Array, slot_sizes: Sequence[int]) -> Array:
    """Cross-slot share of Jacobian energy, a scale-free compositional contrast.

    ``sum_{b,n} sum_{i<j} s_i s_j / sum_{b,n} (sum_i s_i)^2`` with ``s[b,k,n]`` the slot
    block norms of ``jac [B, d_x, d_z]``. It is 0 exactly when every observed coordinate
    depends on at most one slot and at most ``(K - 1) / (2K)`` (all slots equal on every
    coordinate). Invariant to a global rescaling of J; apply it to
    :func:`standardize_jacobian` to make it invariant to rescaling each latent too.
    """
    s = derivatives.slot_block_norms(jac, slot_sizes)  # [B, K, d_x]
    total = jnp.sum(s, 1)
    pair = 0.5 * (total**2 - jnp.sum(s * s, 1))
    return jnp.sum(pair) / jnp.maximum(jnp.sum(total**2), 1e-30)


def decoder_contrast(decode, z_hat: Array, slot_sizes: Sequence[int]) -> Array:
    """C_comp of ``decode: [d_z] -> [d_x]`` at ``z_hat [B, d_z]`` (forward-mode Jacobian)."""
    return compositional_contrast(derivatives.jacobian(decode, z_hat, mode="fwd"), slot_sizes)
