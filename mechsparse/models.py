"""The mechanism-sparsity VAE (flax.linen): Gaussian MLP encoder and decoder, and a
learned transition prior whose latent i depends on its parents only through a learned
binary mask, ``P(edge i <- j) = sigmoid(log_alpha_ij)``, sampled as a Gumbel-sigmoid.

Following Lachapelle et al.'s code: one MLP per latent (batched weights, no Python loop),
masked-out parents replaced by 0, ``log_alpha`` initialised at 5 (an edge with
probability 0.993), one mask sample per minibatch at temperature 1, soft by default
(straight-through as an option), a learned per-latent prior variance initialised at
1e-4, and for time data a learned Gaussian ``p(z⁰)`` initialised at N(0, 1).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mechind.core.nets import MLP, parallel_mlp

Array = jax.Array

LOG_ALPHA_INIT = 5.0  # sigmoid(5) = 0.993: every edge on at the start (DCDI's choice, theirs)
PRIOR_VAR_INIT = 1e-4  # the transition prior's initial variance (theirs)
POSTERIOR_VAR_FLOOR = 1e-4  # q's variance is softplus(.) + this (theirs)
PRIOR_VAR_FLOOR = 1e-6


def softplus_inverse(y: float) -> float:
    return float(np.log(np.expm1(y)))


def logistic_noise(key: Array, shape) -> Array:
    """``log u - log(1 - u)``, ``u ~ U(0, 1)``: a standard logistic sample."""
    u = jax.random.uniform(key, shape, minval=1e-6, maxval=1.0 - 1e-6)
    return jnp.log(u) - jnp.log1p(-u)


def gumbel_sigmoid(key: Array, log_alpha: Array, tau: float = 1.0, hard: bool = False) -> Array:
    """A relaxed Bernoulli sample of ``sigmoid(log_alpha)``, same shape as ``log_alpha``.

    Soft: ``sigmoid((log_alpha + L) / tau)`` with L logistic; it exceeds 0.5 with
    probability exactly ``sigmoid(log_alpha)`` (at any tau), and its mean is
    ``E sigmoid((log_alpha + L) / tau)``, which lies between 0.5 and that probability.
    Hard (straight-through): the soft sample thresholded at 0.5 (a Bernoulli of
    ``sigmoid(log_alpha)``) in the forward pass, the soft sample's gradient backward."""
    soft = jax.nn.sigmoid((log_alpha + logistic_noise(key, log_alpha.shape)) / tau)
    if not hard:
        return soft
    # (soft - stop_gradient(soft)) is exactly 0 forward, so the value is exactly 0 or 1
    return (soft > 0.5).astype(soft.dtype) + (soft - jax.lax.stop_gradient(soft))


def edge_probabilities(log_alpha: Array) -> Array:
    """``P(edge) [d_z, d_p]``."""
    return jax.nn.sigmoid(log_alpha)


class ParallelMLP(nn.Module):
    """``[..., n, d_in] -> [..., n, d_out]``: n independent MLPs (one per latent) with
    batched weights, leaky ReLU (0.2) between layers, linear output."""

    num: int
    hidden: Sequence[int]
    out_dim: int
    init_scheme: str = "lecun"  # or "torch" (PyTorch's nn.Linear), see mechind.core.nets

    @nn.compact
    def __call__(self, h):
        return parallel_mlp(self, h, self.num, tuple(self.hidden), self.out_dim, self.init_scheme)


class TransitionPrior(nn.Module):
    """``p(z_i | parents masked by mask_i)`` for every latent i.

    ``__call__(parents [..., d_p], mask [d_z, d_p]) -> (mean, var)``, each ``[..., d_z]``;
    the parents of latent i are ``mask[i] * parents`` (masked-out parents are 0)."""

    latent_dim: int
    hidden: Sequence[int]
    init_scheme: str = "lecun"

    @nn.compact
    def __call__(self, parents, mask):
        masked = parents[..., None, :] * mask  # [..., d_z, d_p]
        mean = ParallelMLP(self.latent_dim, tuple(self.hidden), 1, self.init_scheme)(masked)[..., 0]
        raw_var = self.param("raw_var", nn.initializers.constant(softplus_inverse(PRIOR_VAR_INIT)), (self.latent_dim,))
        var = jax.nn.softplus(raw_var) + PRIOR_VAR_FLOOR
        return mean, jnp.broadcast_to(var, mean.shape)


class Model(nn.Module):
    """Encoder ``x -> (mean, var)`` of q(z | x), decoder ``z -> x_hat``, the transition
    prior, the mask logits ``log_alpha [d_z, d_p]``, the decoder's log-variance, and
    (time data) the initial Gaussian ``p(z⁰)``. Methods are called with ``method=``."""

    obs_dim: int
    latent_dim: int
    parent_dim: int
    hidden: Sequence[int]
    transition_hidden: Sequence[int]
    decoder_log_var_init: float = -10.0  # theirs: the reconstruction dominates early
    init_scheme: str = "lecun"  # "lecun" (flax) or "torch" (PyTorch's nn.Linear, as theirs)

    def setup(self):
        self.encoder = MLP((*self.hidden, 2 * self.latent_dim), init_scheme=self.init_scheme)
        self.decoder = MLP((*self.hidden, self.obs_dim), init_scheme=self.init_scheme)
        self.prior = TransitionPrior(self.latent_dim, tuple(self.transition_hidden), self.init_scheme)
        self.log_alpha = self.param(
            "log_alpha", nn.initializers.constant(LOG_ALPHA_INIT), (self.latent_dim, self.parent_dim)
        )
        self.decoder_log_var = self.param("decoder_log_var", nn.initializers.constant(self.decoder_log_var_init), ())
        self.init_mean = self.param("init_mean", nn.initializers.zeros, (self.latent_dim,))
        self.init_raw_var = self.param(
            "init_raw_var", nn.initializers.constant(softplus_inverse(1.0)), (self.latent_dim,)
        )

    def encode(self, x):
        """``x [..., d_x] -> (mean, var)`` of q(z | x), each ``[..., d_z]``."""
        out = self.encoder(x)
        mean, raw = out[..., : self.latent_dim], out[..., self.latent_dim :]
        return mean, jax.nn.softplus(raw) + POSTERIOR_VAR_FLOOR

    def decode(self, z):
        return self.decoder(z)

    def transition(self, parents, mask):
        return self.prior(parents, mask)

    def initial(self):
        """``(mean, var) [d_z]`` of p(z⁰) (time data)."""
        return self.init_mean, jax.nn.softplus(self.init_raw_var) + PRIOR_VAR_FLOOR

    def obs_std(self):
        return jnp.exp(0.5 * self.decoder_log_var) + 1e-4

    def __call__(self, x, parents):
        """Touches every parameter (for ``init``)."""
        mean, _ = self.encode(x)
        return (
            self.decode(mean),
            self.transition(parents, jax.nn.sigmoid(self.log_alpha)),
            self.initial(),
            self.obs_std(),
        )
