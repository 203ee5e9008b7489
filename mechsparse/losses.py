"""The objective: the ELBO (normalised per observed coordinate, as in Lachapelle et al.'s
code) plus graph sparsity as a penalty or as a constraint solved by dual ascent. The KL
terms are :func:`mechind.core.training.gaussian_kl`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mechind.core.nets import gaussian_log_prob

Array = jax.Array


def reconstruction_nll(x: Array, x_hat: Array, obs_std: Array) -> Array:
    """``-log N(x; x_hat, obs_std²)`` averaged over every axis (samples, time, coordinates)."""
    log_var = 2.0 * jnp.log(obs_std)
    return -jnp.mean(gaussian_log_prob(x[..., None], x_hat[..., None], log_var))


def edge_count(log_alpha: Array) -> Array:
    """``sum_ij sigmoid(log_alpha_ij)``: the expected number of edges of the learned graph."""
    return jnp.sum(jax.nn.sigmoid(log_alpha))


def sparsity_penalty(log_alpha: Array, coeff: Array, obs_dim: int) -> Array:
    """``coeff * sum sigmoid(log_alpha) / d_x`` (their scaling: the ELBO is per coordinate)."""
    return coeff * edge_count(log_alpha) / obs_dim


def annealed_bound(step: Array, full: float, target: Array, anneal_steps: int) -> Array:
    """The constraint's bound at ``step``: linear from ``full`` (every edge) at step 0 to
    ``target`` at ``anneal_steps``, then ``target`` (their ``constraint_schedule``)."""
    if anneal_steps <= 0:
        return jnp.asarray(target, jnp.float32)
    frac = jnp.minimum(1.0, step / anneal_steps)
    return full + (target - full) * frac


def dual_update(multiplier: Array, defect: Array, lr: Array, restart: bool = True) -> Array:
    """Projected gradient ascent on the Lagrange multiplier of ``edge_count <= bound``:
    ``max(0, multiplier + lr * defect)`` with ``defect = edge_count - bound``; with
    ``restart`` the multiplier is reset to 0 whenever the constraint holds (their
    ``--dual_restarts``)."""
    new = jnp.maximum(0.0, multiplier + lr * defect)
    return jnp.where(restart & (defect <= 0), 0.0, new)
