"""Mechanistic-independence criteria (Shen, Matthes, Han; arXiv 2509.22196).

Each criterion looks at a generator ``g: [d_in] -> [d_out]`` through its derivatives at
sample points ``z [B, d_in]`` and a partition of the latents into slots, and answers
per point. Implemented:

* ``type_d``  disjoint Jacobian supports across slots.
* ``type_m``  no slot's Jacobian support contains another's (non-containment).
* ``type_s``  sparsity gap: rho+ (fewest Jacobian nonzeros over slot-aligned bases) is
  strictly below rho- (fewest over misaligned bases). See :func:`type_s` for how
  this is computed exactly.
* ``type_h2``, ``type_h3``  all cross-slot 2nd / 3rd derivatives vanish (H2 is
  additivity ``g = sum_k g_k(z_k)``).

Every result also carries the irreducibility of each slot: whether the slot's
directions form one connected component of the dependency graph G_D.

Add a criterion with :func:`register`::

    @criteria.register("my_criterion")
    def my_criterion(fn, z, slot_sizes, tol):
        jac = derivatives.jacobian(fn, z)
        ...
        return criteria.CriterionResult("my_criterion", holds, value, tol, exact=True)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mechind import graph
from mechind.core import derivatives

Array = jax.Array


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["holds", "value", "irreducible"],
    meta_fields=["name", "tol", "exact", "note"],
)
@dataclasses.dataclass(frozen=True)
class CriterionResult:
    """What a criterion says at each of B sample points.

    Attributes:
      name: the criterion's registered name.
      holds: bool ``[B]``, whether it holds at each point.
      value: float ``[B]``, the criterion's own measure (documented per criterion).
      tol: the relative tolerance used to call a derivative zero.
      exact: False when ``holds`` comes from an estimate rather than an exact test.
      irreducible: bool ``[B, K]`` per-slot irreducibility, or None.
      note: how it was computed, including any assumption.
    """

    name: str
    holds: Array
    value: Array
    tol: float
    exact: bool
    irreducible: Array | None = None
    note: str = ""

    def fraction(self) -> float:
        """Fraction of sample points at which the criterion holds."""
        return float(np.mean(np.asarray(self.holds)))


Criterion = Callable[..., CriterionResult]
_REGISTRY: dict[str, Criterion] = {}


def register(name: str) -> Callable[[Criterion], Criterion]:
    """Decorator: add ``fn(generator, z, slot_sizes, tol, **kw) -> CriterionResult``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"criterion name must be a non-empty string, got {name!r}")

    def deco(fn: Criterion) -> Criterion:
        if name in _REGISTRY:
            raise ValueError(f"criterion {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def unregister(name: str) -> None:
    """Remove a criterion (mostly for tests and interactive work)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown criterion {name!r}; registered: {names()}")
    del _REGISTRY[name]


def names() -> list[str]:
    """Registered criterion names, in registration order."""
    return list(_REGISTRY)


def _prepare(fn, z, slot_sizes, tol, basis):
    """Validate inputs; fold a basis change into the generator."""
    z = jnp.asarray(z)
    if z.ndim != 2:
        raise ValueError(f"z must have shape [B, d_in], got shape {z.shape}")
    sizes = derivatives.check_slot_sizes(slot_sizes, z.shape[1])
    tol = graph.check_tol(tol)
    if basis is not None:
        basis = jnp.asarray(basis, z.dtype)
        if basis.shape != (z.shape[1], z.shape[1]):
            raise ValueError(f"basis must have shape [{z.shape[1]}, {z.shape[1]}], got {basis.shape}")
        base_fn = fn
        fn = lambda w: base_fn(basis @ w)  # noqa: E731
        z = jnp.linalg.solve(basis, z.T).T
    derivatives.output_dim(fn, z.shape[1], z.dtype)  # raises on a non-vector output
    return fn, z, sizes, tol


def evaluate(
    name: str,
    fn: Callable[[Array], Array],
    z: Array,
    slot_sizes: Sequence[int],
    tol: float | None = None,
    basis: Array | None = None,
    **kw,
) -> CriterionResult:
    """Evaluate a registered criterion of generator ``fn`` at points ``z [B, d_in]``.

    With ``basis [d_in, d_in]`` (directions as columns), the criterion is judged in that
    latent basis instead of the aligned one: the generator becomes ``w -> fn(basis @ w)``
    at ``w = basis^{-1} z``, so its Jacobian columns are ``Dg(u_a)``.
    """
    return evaluate_all(fn, z, slot_sizes, tol=tol, basis=basis, only=(name,), **kw)[name]


def evaluate_all(fn, z, slot_sizes, tol=None, basis=None, only=None, **kw) -> dict[str, CriterionResult]:
    """Several registered criteria (all by default) as one compiled program, by name."""
    wanted = tuple(names() if only is None else only)
    for name in wanted:
        if name not in _REGISTRY:
            raise ValueError(f"unknown criterion {name!r}; registered: {names()}")
    fn, z, sizes, tol = _prepare(fn, z, slot_sizes, tol, basis)
    # one program for all: dispatching nested derivatives op by op is slow, and XLA
    # shares the Jacobian between criteria
    return jax.jit(lambda zz: {n: _REGISTRY[n](fn, zz, sizes, tol, **kw) for n in wanted})(z)


# --------------------------------------------------------------------------- helpers


def _onehot(slot_sizes: Sequence[int]) -> Array:
    idx = derivatives.slot_index(slot_sizes)
    return jnp.asarray(idx[:, None] == np.arange(len(slot_sizes))[None, :], jnp.float32)


def slot_supports(jac: Array, slot_sizes: Sequence[int], tol: float) -> Array:
    """``[B, d_x, d_in] -> bool [B, K, d_x]``: rows that each slot moves."""
    s = graph.support(jac, tol).astype(jnp.float32)
    return jnp.einsum("bnj,jk->bkn", s, _onehot(slot_sizes)) > 0


def irreducible(jac: Array, slot_sizes: Sequence[int], tol: float) -> Array:
    """``bool [B, K]``: the slot's directions form one connected component of G_D
    restricted to that slot (judged in the basis the Jacobian is given in)."""
    out = []
    for block in derivatives.slot_blocks(jac, slot_sizes):
        # a slot's graph uses the whole Jacobian's scale, not the block's own
        scale = jnp.max(jnp.abs(jac), axis=(1, 2), keepdims=True)
        sub = jnp.where(jnp.abs(block) > tol * scale, 1.0, 0.0)
        out.append(graph.num_components(sub, tol=0.5) == 1)
    return jnp.stack(out, axis=-1)


def _pairs(k: int, ordered: bool) -> list[tuple[int, int]]:
    return [(i, j) for i in range(k) for j in range(k) if i != j and (ordered or i < j)]


# ------------------------------------------------------------------------ criteria


@register("type_d")
def type_d(fn, z, slot_sizes, tol) -> CriterionResult:
    """Disjoint supports. ``value``: the largest number of rows two slots share."""
    jac = derivatives.jacobian(fn, z)
    supp = slot_supports(jac, slot_sizes, tol).astype(jnp.int32)
    pairs = _pairs(len(slot_sizes), ordered=False)
    if pairs:
        shared = jnp.stack([jnp.sum(supp[:, i] * supp[:, j], -1) for i, j in pairs], -1).max(-1)
    else:
        shared = jnp.zeros(z.shape[0], jnp.int32)
    return CriterionResult(
        "type_d",
        shared == 0,
        shared.astype(jnp.float32),
        tol,
        exact=True,
        irreducible=irreducible(jac, slot_sizes, tol),
        note="rows with |J| > tol * max|J| per point; value = max rows shared by a slot pair",
    )


@register("type_m")
def type_m(fn, z, slot_sizes, tol) -> CriterionResult:
    """Non-containment. ``value``: min over ordered slot pairs (k, l) of |supp_k \\ supp_l|
    (0 means some slot's support lies inside another's)."""
    jac = derivatives.jacobian(fn, z)
    supp = slot_supports(jac, slot_sizes, tol)
    pairs = _pairs(len(slot_sizes), ordered=True)
    if pairs:
        excess = jnp.stack([jnp.sum(supp[:, i] & ~supp[:, j], -1) for i, j in pairs], -1).min(-1)
    else:
        excess = jnp.full(z.shape[0], jac.shape[1], jnp.int32)
    return CriterionResult(
        "type_m",
        excess > 0,
        excess.astype(jnp.float32),
        tol,
        exact=True,
        irreducible=irreducible(jac, slot_sizes, tol),
        note="value = min over ordered slot pairs of rows in supp_k outside supp_l",
    )


@register("type_s")
def type_s(fn, z, slot_sizes, tol) -> CriterionResult:
    """Sparsity gap ``rho- - rho+ > 0``; ``value`` is that gap (in Jacobian nonzeros).

    A latent basis is a set of directions; with no cancellation between Jacobian
    columns, a direction supported on coordinates S moves ``|union_{i in S} supp J_i|``
    rows, and the directions form a basis iff their supports admit a perfect matching
    to coordinates. Support unions only grow, so ``rho+`` (aligned bases: every
    direction inside one slot) is the coordinate basis's count, and the cheapest
    misaligned basis swaps one coordinate i for a direction on {i, j}, j in another
    slot: ``rho- - rho+ = min_{slot(i) != slot(j)} |supp J_j \\ supp J_i|``. The
    minimisation over all bases therefore reduces exactly to the d_in^2 pairs; no
    enumeration bound is needed. The one assumption (stated in ``note``) is genericity:
    no direction cancels Jacobian entries exactly, which holds for almost every basis
    and is what the paper's L0 count presumes.
    """
    jac = derivatives.jacobian(fn, z)
    col = graph.support(jac, tol)  # [B, n, d]
    idx = derivatives.slot_index(slot_sizes)
    extra = jnp.einsum("bnj,bni->bij", col.astype(jnp.int32), (~col).astype(jnp.int32))
    cross = jnp.asarray(idx[:, None] != idx[None, :])  # [i, j]
    big = jac.shape[1] + 1
    gap = jnp.min(jnp.where(cross[None], extra, big), axis=(1, 2))
    gap = jnp.where(gap == big, jac.shape[1], gap)  # one slot: nothing is misaligned
    return CriterionResult(
        "type_s",
        gap > 0,
        gap.astype(jnp.float32),
        tol,
        exact=True,
        irreducible=irreducible(jac, slot_sizes, tol),
        note="exact reduction to column pairs under genericity (no exact cancellation); "
        "value = rho- - rho+ in nonzeros",
    )


def _type_h(fn, z, slot_sizes, tol, order: int) -> CriterionResult:
    d = derivatives.derivative(fn, z, order)
    mask = jnp.asarray(derivatives.cross_slot_mask(slot_sizes, order))
    axes = tuple(range(1, d.ndim))
    scale = jnp.max(jnp.abs(d), axis=axes)
    cross = jnp.max(jnp.where(mask[None, None], jnp.abs(d), 0.0), axis=axes)
    rel = jnp.where(scale > 0, cross / jnp.where(scale > 0, scale, 1.0), 0.0)
    jac = derivatives.jacobian(fn, z)
    return CriterionResult(
        f"type_h{order}",
        rel <= tol,
        rel,
        tol,
        exact=True,
        irreducible=irreducible(jac, slot_sizes, tol),
        note=f"value = max |cross-slot order-{order} derivative| / max |order-{order} derivative|",
    )


@register("type_h2")
def type_h2(fn, z, slot_sizes, tol) -> CriterionResult:
    """All cross-slot second derivatives vanish (additivity)."""
    return _type_h(fn, z, slot_sizes, tol, 2)


@register("type_h3")
def type_h3(fn, z, slot_sizes, tol) -> CriterionResult:
    """All cross-slot third derivatives vanish."""
    return _type_h(fn, z, slot_sizes, tol, 3)
