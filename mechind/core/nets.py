"""Shared network pieces and numerical primitives of every pipeline: the MLP (flax),
its activations and initialisations, the diagonal-Gaussian log-density, and the
condition number used to redraw ill-conditioned mixing weights."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

NEGATIVE_SLOPE = 0.2  # LeakyReLU slope (Brady et al.)


def leaky(x):
    return nn.leaky_relu(x, NEGATIVE_SLOPE)


def xtanh(x, slope: float = 0.1):
    """``tanh(x) + slope x`` (iVAE's activation: smooth, strictly increasing, unbounded)."""
    return jnp.tanh(x) + slope * x


ACTIVATIONS = {"lrelu": leaky, "xtanh": xtanh}


INITS = ("lecun", "torch")


def _dense(features: int, fan_in: int, init: str) -> nn.Dense:
    """A dense layer initialised as flax does ("lecun": truncated normal of variance
    1/fan_in, zero bias) or as PyTorch's ``nn.Linear`` ("torch": weights and biases
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), a third of the variance, as the reference code)."""
    if init == "lecun":
        return nn.Dense(features)
    if init != "torch":
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    return nn.Dense(features, kernel_init=_torch_uniform(fan_in), bias_init=_torch_uniform(fan_in))


class MLP(nn.Module):
    """``[..., d_in] -> [..., features[-1]]``, a nonlinearity between layers (LeakyReLU by
    default, or any name of :data:`ACTIVATIONS`), linear output; ``init_scheme`` of :data:`INITS`."""

    features: Sequence[int]
    activation: str = "lrelu"
    init_scheme: str = "lecun"  # (a field named ``init`` would hide Module.init)

    @nn.compact
    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        for i, f in enumerate(self.features):
            x = _dense(f, x.shape[-1], self.init_scheme)(x)
            if i < len(self.features) - 1:
                x = act(x)
        return x


def _torch_uniform(fan_in: int):
    """PyTorch's ``nn.Linear`` initialiser: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / float(fan_in) ** 0.5
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def parallel_mlp(
    module: nn.Module, h: Array, num: int, hidden: Sequence[int], out_dim: int, init: str = "lecun"
) -> Array:
    """``num`` independent MLPs with batched weights, ``[..., num, d_in] -> [..., num, out_dim]``
    (leaky ReLU between layers, linear output), without a Python loop over them.

    Called from inside a compact ``module``: the weights ``w{i} [num, a, b]`` and biases
    ``b{i}`` are that module's own parameters (the slot pipeline's additive decoder, the
    mechanism-sparsity transition prior). ``init``: "lecun" (normal of variance 1/fan_in,
    zero bias) or "torch" (weights and biases as PyTorch's ``nn.Linear``)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    sizes = (h.shape[-1], *hidden, out_dim)
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lecun = init == "lecun"
        w = module.param(
            f"w{i}", nn.initializers.lecun_normal(batch_axis=(0,)) if lecun else _torch_uniform(a), (num, a, b)
        )
        bias = module.param(f"b{i}", nn.initializers.zeros if lecun else _torch_uniform(a), (num, b))
        h = jnp.einsum("...ka,kab->...kb", h, w) + bias
        if i < len(sizes) - 2:
            h = leaky(h)
    return h


def gaussian_log_prob(x: Array, mean: Array, log_var: Array) -> Array:
    """Diagonal Gaussian log density summed over the last axis."""
    return jnp.sum(-0.5 * ((x - mean) ** 2 / jnp.exp(log_var) + log_var + jnp.log(2 * jnp.pi)), -1)


def condition_number(w: Array) -> Array:
    """2-norm condition number of a tall ``w``, from the eigenvalues of ``w^T w``
    (compiles far faster than an SVD on CPU)."""
    ev = jnp.linalg.eigvalsh(w.T @ w)
    return jnp.sqrt(ev[-1] / jnp.maximum(ev[0], 1e-30))
