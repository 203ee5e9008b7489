"""The shared derivative core: per-sample Jacobians, Hessians, n-th order cross-slot
derivatives, slot-block views and finite differences.

Every function takes ``fn: [d_in] -> [d_out]`` (a single-sample function, e.g. a
flax model closed over its parameters) and a batch ``x: [B, d_in]``. All of them are
pure JAX, so they compose with an outer ``jax.jit``, ``jax.vmap`` (over seeds or
parameters) and ``jax.grad`` (penalties such as compositional contrast differentiate
through them). This module knows nothing of either pipeline.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Fn = Callable[[Array], Array]

_MODES = ("auto", "fwd", "rev")


def _check_batch(x: Array, name: str = "x") -> None:
    if jnp.ndim(x) != 2:
        raise ValueError(f"{name} must have shape [B, d_in], got shape {jnp.shape(x)}")


def output_dim(fn: Fn, d_in: int, dtype=jnp.float32) -> int:
    """Output width of ``fn`` for a ``[d_in]`` input, found without computing anything."""
    out = jax.eval_shape(fn, jax.ShapeDtypeStruct((d_in,), dtype))
    if len(out.shape) != 1:
        raise ValueError(f"fn must map [d_in] -> [d_out], got output shape {out.shape}")
    return int(out.shape[0])


def choose_mode(d_in: int, d_out: int) -> str:
    """Forward mode costs d_in passes, reverse mode d_out: pick the cheaper one."""
    return "fwd" if d_in <= d_out else "rev"


def jacobian(fn: Fn, x: Array, mode: str = "auto") -> Array:
    """Per-sample Jacobians.

    Args:
      fn: single-sample function ``[d_in] -> [d_out]``.
      x: ``[B, d_in]`` sample points.
      mode: ``"fwd"`` (jacfwd), ``"rev"`` (jacrev) or ``"auto"`` (by shape).

    Returns:
      ``[B, d_out, d_in]`` with ``J[b, i, j] = d fn_i / d x_j`` at ``x[b]``.
    """
    _check_batch(x)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if mode == "auto":
        mode = choose_mode(x.shape[1], output_dim(fn, x.shape[1], x.dtype))
    jac = jax.jacfwd(fn) if mode == "fwd" else jax.jacrev(fn)
    return _batched(jac)(x)


def hessian(fn: Fn, x: Array) -> Array:
    """Per-sample Hessians, ``[B, d_in] -> [B, d_out, d_in, d_in]`` (forward-over-reverse)."""
    _check_batch(x)
    return _batched(jax.jacfwd(jax.jacrev(fn)))(x)


def derivative(fn: Fn, x: Array, order: int) -> Array:
    """Per-sample n-th derivative tensor, ``[B, d_out] + [d_in] * order``.

    Order 1 is the Jacobian, order 2 the Hessian; higher orders nest forward mode on top
    of the Jacobian (each level multiplies the cost by d_in, so keep d_in small). The
    Jacobian inside is taken in the cheaper mode for the shape (:func:`choose_mode`): reverse
    for a narrow output, forward for a wide one such as an image, where reverse mode would
    hold one cotangent per pixel (a 16 x 16 renderer's Hessian at 64 points took 4.6 GB).
    """
    _check_batch(x)
    if not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"order must be a positive integer, got {order!r}")
    inner = jax.jacfwd if choose_mode(x.shape[1], output_dim(fn, x.shape[1], x.dtype)) == "fwd" else jax.jacrev
    d = inner(fn) if order == 1 else jax.jacfwd(inner(fn))
    for _ in range(order - 2):
        d = jax.jacfwd(d)
    return _batched(d)(x)


def _batched(per_sample: Fn) -> Fn:
    """vmap over the batch, jitted: nested derivatives dispatched op by op are slow, and
    inside an outer jit the inner one is simply inlined."""
    return jax.jit(jax.vmap(per_sample))


def check_slot_sizes(slot_sizes: Sequence[int], d_in: int | None = None) -> tuple[int, ...]:
    """Validate a slot partition; returns it as a tuple of ints."""
    sizes = tuple(int(s) for s in slot_sizes)
    if len(sizes) == 0:
        raise ValueError("slot_sizes must name at least one slot")
    if any(s < 1 for s in sizes):
        raise ValueError(f"slot_sizes must be positive, got {sizes}")
    if d_in is not None and sum(sizes) != d_in:
        raise ValueError(f"slot_sizes {sizes} sum to {sum(sizes)}, but the input dimension is {d_in}")
    return sizes


def slot_index(slot_sizes: Sequence[int]) -> np.ndarray:
    """``[d_in]`` int array: the slot each input coordinate belongs to."""
    sizes = check_slot_sizes(slot_sizes)
    return np.repeat(np.arange(len(sizes)), sizes)


def slot_blocks(jac: Array, slot_sizes: Sequence[int]) -> list[Array]:
    """Split ``[..., d_out, d_in]`` Jacobians into per-slot column blocks
    ``[..., d_out, slot_sizes[k]]``."""
    sizes = check_slot_sizes(slot_sizes, jac.shape[-1])
    return jnp.split(jac, np.cumsum(sizes)[:-1], axis=-1)


def slot_block_norms(jac: Array, slot_sizes: Sequence[int]) -> Array:
    """Per-row Euclidean norms of each slot block: ``[..., d_out, d_in] -> [..., K, d_out]``.

    The square root is made safe at zero (gradient 0, not NaN), since exactly-zero
    blocks are the point of a sparse Jacobian.
    """
    sizes = check_slot_sizes(slot_sizes, jac.shape[-1])
    onehot = jnp.asarray(slot_index(sizes)[:, None] == np.arange(len(sizes))[None, :], jac.dtype)
    sq = jnp.einsum("...nj,jk->...kn", jac * jac, onehot)
    safe = jnp.where(sq > 0, sq, 1.0)
    return jnp.where(sq > 0, jnp.sqrt(safe), 0.0)


def cross_slot_mask(slot_sizes: Sequence[int], order: int) -> np.ndarray:
    """Boolean ``[d_in] * order`` mask of derivative indices that touch two or more slots."""
    idx = slot_index(slot_sizes)
    grids = np.meshgrid(*([idx] * order), indexing="ij")
    same = np.ones(grids[0].shape, bool)
    for g in grids[1:]:
        same &= g == grids[0]
    return ~same


def cross_derivatives(fn: Fn, x: Array, slot_sizes: Sequence[int], order: int = 2) -> Array:
    """n-th order derivatives whose indices span two or more slots, zero elsewhere.

    Returns ``[B, d_out] + [d_in] * order``; Type H_n asks that all of it vanish.
    """
    _check_batch(x)
    check_slot_sizes(slot_sizes, x.shape[1])
    if order < 2:
        raise ValueError(f"cross derivatives need order >= 2, got {order}")
    d = derivative(fn, x, order)
    return d * jnp.asarray(cross_slot_mask(slot_sizes, order), d.dtype)


def finite_difference_jacobian(fn: Fn, x: Array, eps: float = 1e-3, scheme: str = "forward") -> Array:
    """Jacobians by finite differences, ``[B, d_in] -> [B, d_out, d_in]``.

    ``scheme="forward"``: (f(x + h e_j) - f(x)) / h, error O(h), d_in + 1 evaluations.
    ``scheme="central"``: (f(x + h e_j) - f(x - h e_j)) / 2h, error O(h^2), 2 d_in.
    """
    _check_batch(x)
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    if scheme not in ("forward", "central"):
        raise ValueError(f"scheme must be 'forward' or 'central', got {scheme!r}")
    d_in = x.shape[1]
    steps = eps * jnp.eye(d_in, dtype=x.dtype)  # [d_in, d_in]

    def one(xb: Array) -> Array:
        plus = jax.vmap(fn)(xb[None, :] + steps)  # [d_in, d_out]
        if scheme == "forward":
            diff = (plus - fn(xb)[None, :]) / eps
        else:
            minus = jax.vmap(fn)(xb[None, :] - steps)
            diff = (plus - minus) / (2 * eps)
        return diff.T

    return _batched(one)(x)
