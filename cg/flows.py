"""Component-wise deep sigmoid flows (Huang et al. 2018) as distrax bijectors.

DSF, per dimension with m sigmoid units:
    a = softplus(a~), w = softmax(w~), p_j = a_j x + b_j, s = sum_j w_j sigma(p_j), y = logit(s)
    log|dy/dx| = logsumexp_j(log w_j + log sigma(p_j) + log sigma(-p_j) + log a_j) - log s - log(1 - s)

Everything is computed in log space (``log s`` and ``log(1 - s) = log sum_j w_j sigma(-p_j)``),
so y stays finite where s rounds to 0 or 1. The map is strictly increasing, so the
inverse is found by bisection. DDSF stacks such layers with hidden width m and positive,
normalised weights (still monotone); its log-det comes from forward-mode autodiff.

The CG-VAE prior is ``log p(z|u) = sum_i log N(F_u(z)_i; 0, 1) + log|dF_u/dz_i|`` with F_u's
parameters produced from an embedding of the domain index u (:func:`conditional_log_prob`).
"""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

Array = jax.Array

BISECTION_STEPS = 80
BISECTION_RANGE = 1e3


def _log_s_and_1ms(x, pre_a, b, pre_w):
    """``x [..., n]``, params ``[..., n, m]`` -> (log s, log(1 - s), log a, log w, p)."""
    a = jax.nn.softplus(pre_a)
    log_w = jax.nn.log_softmax(pre_w, axis=-1)
    p = a * x[..., None] + b
    log_s = logsumexp(log_w + jax.nn.log_sigmoid(p), axis=-1)
    log_1ms = logsumexp(log_w + jax.nn.log_sigmoid(-p), axis=-1)
    return log_s, log_1ms, jnp.log(a), log_w, p


def dsf_forward(x: Array, pre_a: Array, b: Array, pre_w: Array) -> tuple[Array, Array]:
    """DSF ``y`` and element-wise ``log|dy/dx|``, both shaped like ``x [..., n]``."""
    log_s, log_1ms, log_a, log_w, p = _log_s_and_1ms(x, pre_a, b, pre_w)
    y = log_s - log_1ms
    log_det = logsumexp(log_w + jax.nn.log_sigmoid(p) + jax.nn.log_sigmoid(-p) + log_a, axis=-1) - log_s - log_1ms
    return y, log_det


def bisect_inverse(forward, y: Array, steps: int = BISECTION_STEPS, bound: float = BISECTION_RANGE) -> Array:
    """Solve ``forward(x) = y`` element-wise for a strictly increasing ``forward``."""
    lo = jnp.full_like(y, -bound)
    hi = jnp.full_like(y, bound)

    def body(_, lh):
        lo, hi = lh
        mid = 0.5 * (lo + hi)
        below = forward(mid) < y
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, steps, body, (lo, hi))
    return 0.5 * (lo + hi)


class DeepSigmoidFlow(distrax.Bijector):
    """Component-wise DSF bijector; parameters ``[..., n, m]`` broadcast against ``x [..., n]``."""

    def __init__(self, pre_a: Array, b: Array, pre_w: Array):
        super().__init__(event_ndims_in=0)
        if not (pre_a.shape == b.shape == pre_w.shape):
            raise ValueError(
                f"DSF parameters must share a shape [..., n, m], got {pre_a.shape}, {b.shape}, {pre_w.shape}"
            )
        self.pre_a, self.b, self.pre_w = pre_a, b, pre_w

    def forward_and_log_det(self, x):
        return dsf_forward(x, self.pre_a, self.b, self.pre_w)

    def inverse_and_log_det(self, y):
        x = bisect_inverse(lambda v: dsf_forward(v, self.pre_a, self.b, self.pre_w)[0], y)
        return x, -dsf_forward(x, self.pre_a, self.b, self.pre_w)[1]


def ddsf_forward(x: Array, layers: list[dict]) -> Array:
    """Dense DSF: each layer ``h' = logit(W sigmoid(A h + b))`` per dimension, with A > 0 and
    W rows on the simplex. ``x [..., n]``; layer params ``a [..., n, m_out, m_in]``,
    ``b [..., n, m_out]``, ``w [..., n, k_out, m_out]``; first m_in = 1, last k_out = 1."""
    h = x[..., None]
    for layer in layers:
        a = jax.nn.softplus(layer["a"])
        p = jnp.einsum("...oi,...i->...o", a, h) + layer["b"]
        log_w = jax.nn.log_softmax(layer["w"], axis=-1)
        log_s = logsumexp(log_w + jax.nn.log_sigmoid(p)[..., None, :], axis=-1)
        log_1ms = logsumexp(log_w + jax.nn.log_sigmoid(-p)[..., None, :], axis=-1)
        h = log_s - log_1ms
    return h[..., 0]


class DenseDeepSigmoidFlow(distrax.Bijector):
    """Component-wise DDSF bijector (monotone; log-det by forward-mode autodiff)."""

    def __init__(self, layers: list[dict]):
        super().__init__(event_ndims_in=0)
        self.layers = layers

    def forward_and_log_det(self, x):
        y, dy = jax.jvp(lambda v: ddsf_forward(v, self.layers), (x,), (jnp.ones_like(x),))
        return y, jnp.log(dy)

    def inverse_and_log_det(self, y):
        x = bisect_inverse(lambda v: ddsf_forward(v, self.layers), y)
        return x, -self.forward_and_log_det(x)[1]


def init_ddsf(key: Array, shape: tuple[int, ...], hidden: int = 4, depth: int = 2) -> list[dict]:
    """Random DDSF layers for ``shape = (..., n)`` dimensions."""
    sizes = [1] + [hidden] * (depth - 1) + [1]
    layers = []
    for i in range(depth):
        key, ka, kb, kw = jax.random.split(key, 4)
        m_in, k_out = sizes[i], sizes[i + 1]
        layers.append(
            {
                "a": jax.random.normal(ka, (*shape, hidden, m_in)),
                "b": jax.random.normal(kb, (*shape, hidden)),
                "w": jax.random.normal(kw, (*shape, k_out, hidden)),
            }
        )
    return layers


def std_normal_log_prob(y: Array) -> Array:
    return -0.5 * (y * y + jnp.log(2 * jnp.pi))


def flow_log_prob(bijector: distrax.Bijector, z: Array) -> Array:
    """``log N(F(z); 0, I) + log|det dF/dz|`` summed over the last axis: ``[..., n] -> [...]``."""
    y, log_det = bijector.forward_and_log_det(z)
    return jnp.sum(std_normal_log_prob(y) + log_det, axis=-1)


def dsf_params_from_embedding(table: Array, proj: Array, bias: Array, u: Array, n: int, m: int):
    """Domain embedding -> DSF parameters: ``u int [B]`` -> three ``[B, n, m]`` arrays.

    ``table [num_domains, e]``, ``proj [e, 3 n m]``, ``bias [3 n m]``.
    """
    raw = table[u] @ proj + bias
    pre_a, b, pre_w = jnp.split(raw.reshape(*u.shape, n, 3 * m), 3, axis=-1)
    return pre_a, b, pre_w


def conditional_log_prob(params: dict, z: Array, u: Array, num_hidden: int) -> Array:
    """CG-VAE prior ``log p(z | u)``: ``z [B, n]``, ``u int [B]`` -> ``[B]``.

    ``params``: ``{"table": [D, e], "proj": [e, 3 n m], "bias": [3 n m]}``.
    A concrete ``u`` is checked against the embedding's number of domains.
    """
    if not isinstance(u, jax.core.Tracer):
        from cg.data import check_domains

        check_domains(u, params["table"].shape[0])
    pre_a, b, pre_w = dsf_params_from_embedding(
        params["table"], params["proj"], params["bias"], u, z.shape[-1], num_hidden
    )
    return flow_log_prob(DeepSigmoidFlow(pre_a, b, pre_w), z)
