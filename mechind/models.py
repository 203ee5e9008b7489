"""Slot autoencoder models (flax.linen): Brady et al.'s MLP encoder/decoder and an
additive per-slot decoder. Parameters are plain pytrees, so training code vmaps and
scans over them directly."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# the shared MLP and activations live in the core; re-exported for the slot pipeline
from mechind.core.nets import ACTIVATIONS, INITS, MLP, NEGATIVE_SLOPE, leaky, parallel_mlp, xtanh

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "MLP",
    "NEGATIVE_SLOPE",
    "leaky",
    "xtanh",
    "AdditiveDecoder",
    "make_models",
    "init_autoencoder",
]


class AdditiveDecoder(nn.Module):
    """``x_hat = sum_k f_k(z_k)``: one MLP per slot, ``[..., K*s] -> [..., d_x]``.

    Its cross-slot second derivatives vanish by construction (Type H2); the slot MLPs
    are evaluated together with batched weights rather than in a Python loop.
    """

    num_slots: int
    slot_dim: int
    hidden: Sequence[int]
    out_dim: int

    @nn.compact
    def __call__(self, z):
        lead = z.shape[:-1]
        h = z.reshape(*lead, self.num_slots, self.slot_dim)
        h = parallel_mlp(self, h, self.num_slots, self.hidden, self.out_dim)
        return h.sum(-2)


def make_models(
    obs_dim: int,
    num_slots: int,
    slot_dim: int,
    hidden: Sequence[int] = (80, 80),
    decoder: str = "mlp",
    init: str = "lecun",
) -> tuple[nn.Module, nn.Module]:
    """Encoder ``d_x -> hidden -> K*s`` and decoder ``K*s -> hidden -> d_x`` (``init``: see
    :func:`_dense`; the additive decoder is always lecun-initialised)."""
    enc = MLP((*hidden, num_slots * slot_dim), init_scheme=init)
    if decoder == "mlp":
        dec = MLP((*hidden, obs_dim), init_scheme=init)
    elif decoder == "additive":
        dec = AdditiveDecoder(num_slots, slot_dim, tuple(hidden), obs_dim)
    else:
        raise ValueError(f"decoder must be 'mlp' or 'additive', got {decoder!r}")
    return enc, dec


def init_autoencoder(key: jax.Array, enc: nn.Module, dec: nn.Module, obs_dim: int, latent_dim: int) -> dict:
    """``{"enc": params, "dec": params}``."""
    ke, kd = jax.random.split(key)
    return {
        "enc": enc.init(ke, jnp.zeros((obs_dim,)))["params"],
        "dec": dec.init(kd, jnp.zeros((latent_dim,)))["params"],
    }
