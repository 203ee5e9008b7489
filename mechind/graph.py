"""The dependency graph G_D of a generator's latent directions.

Edge (a, b) between latent directions u_a, u_b when ``Dg(u_a) * Dg(u_b) != 0``
(Hadamard product of the two Jacobian columns has a nonzero entry), i.e. the two
directions move a common observed coordinate. Type-D independent, irreducible factors
are exactly the connected components. "Nonzero" is judged against a tolerance relative
to the Jacobian's scale at each sample point.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array

DEFAULT_TOL = 1e-6


def check_tol(tol: float) -> float:
    """Validate a relative tolerance; returns it as a float."""
    if tol is None:
        return DEFAULT_TOL
    tol = float(tol)
    if not tol > 0 or not math.isfinite(tol):
        raise ValueError(f"tol must be a positive finite number, got {tol}")
    return tol


def _check_jac(jac: Array) -> None:
    if jnp.ndim(jac) != 3:
        raise ValueError(f"jac must have shape [B, d_x, d_in], got shape {jnp.shape(jac)}")


def support(jac: Array, tol: float | None = None) -> Array:
    """``[B, d_x, d_in] -> bool [B, d_x, d_in]``: entries above ``tol * max|J_b|``.

    The scale is per sample point, so a generator that is locally flat somewhere is not
    judged against the steepest point of the batch.
    """
    _check_jac(jac)
    tol = check_tol(tol)
    scale = jnp.max(jnp.abs(jac), axis=(1, 2), keepdims=True)
    return jnp.abs(jac) > tol * scale


def adjacency(jac: Array, tol: float | None = None) -> Array:
    """``[B, d_x, d_in] -> bool [B, d_in, d_in]``, self-loops on nonzero columns."""
    s = support(jac, tol).astype(jnp.float32)
    return jnp.einsum("bna,bnc->bac", s, s) > 0


def _closure(adj: Array) -> Array:
    """Reflexive-transitive closure of ``bool [B, d, d]`` by repeated squaring."""
    d = adj.shape[-1]
    reach = adj | jnp.eye(d, dtype=bool)[None]
    for _ in range(max(1, math.ceil(math.log2(max(d, 2))))):
        r = reach.astype(jnp.float32)
        reach = jnp.einsum("bij,bjk->bik", r, r) > 0
    return reach


def component_labels(jac: Array, tol: float | None = None) -> Array:
    """``[B, d_x, d_in] -> int [B, d_in]``: each direction's component, labelled by the
    smallest direction index in it (so labels are canonical and comparable)."""
    reach = _closure(adjacency(jac, tol))
    return jnp.argmax(reach, axis=-1).astype(jnp.int32)


def num_components(jac: Array, tol: float | None = None) -> Array:
    """``[B, d_x, d_in] -> int [B]``: number of connected components of G_D."""
    labels = component_labels(jac, tol)
    return jnp.sum(labels == jnp.arange(labels.shape[-1])[None, :], axis=-1)


def in_basis(jac: Array, basis: Array) -> Array:
    """Jacobian columns in another latent basis: ``Dg(u_a) = J @ basis[:, a]``.

    ``basis [d_in, d_in]`` holds the directions u_a as columns.
    """
    _check_jac(jac)
    if basis.shape != (jac.shape[-1], jac.shape[-1]):
        raise ValueError(f"basis must have shape [{jac.shape[-1]}, {jac.shape[-1]}], got {basis.shape}")
    return jnp.einsum("bnj,ja->bna", jac, basis)


def random_basis(key: Array, d: int) -> Array:
    """A Haar-random orthogonal ``[d, d]`` basis (generically misaligned with every slot)."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (d, d)))
    return q * jnp.sign(jnp.diag(r))[None, :]
