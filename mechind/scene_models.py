"""Slot autoencoders for rendered scenes: a convolutional encoder to K slot latents and
per-slot spatial-broadcast decoders composed into one image.

Decoder: slot k's latent ``z_k [s]`` is broadcast to every pixel, joined with the pixel's
coordinates, and a per-pixel MLP with slot k's own weights gives ``[H, W, 4]`` (RGB and
an alpha logit). The first layer is ``W_z z_k + W_p p + b``, so ``W_z z_k`` is computed
once per slot, not once per pixel. Two compositions (``composition``):

* ``"alpha"`` (default): the slots are alpha-composited in a fixed depth order, slot 0 at
  the back, over a learned background colour, ``img = a_k rgb_k + (1 - a_k) img``
  with ``a_k = sigmoid(logit_k)``. This is the renderer's own model class, so occlusion
  can be represented exactly; the decoder is not additive (a front slot's alpha
  multiplies what is behind it), so Type H2 fails wherever two slots overlap, and since
  a sigmoid is never exactly 0 every slot touches every pixel by a little: Type D of a
  learned alpha decoder holds only up to a tolerance.
* ``"sum"``: ``img = bg + sum_k rgb_k``. Additive by construction, so the decoder is
  Type H2 at every point, and it can be Type D; but it cannot represent an occlusion
  (the renderer is not additive where objects overlap), so with occlusion its
  reconstructions must blur the overlaps. At zero occlusion the renderer is additive and
  both compositions contain it.

The decoder's Jacobian is taken slot by slot (:func:`jacobian`): slot k's latents move only
slot k's layer, so forward mode runs ``s`` tangents through one slot's MLP per slot
(``K * s`` slot passes) instead of ``K * s`` tangents through all K slots (``K^2 * s``),
then pushes them through the (elementwise) composition.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mechind.core.nets import NEGATIVE_SLOPE, leaky

Array = jax.Array

COMPOSITIONS = ("alpha", "sum")


def num_downsamplings(height: int, width: int) -> int:
    """Stride-2 convolutions that take the canvas to about 4 x 4 (at least one)."""
    return max(1, round(math.log2(min(height, width) / 4)))


def strided_patches(x: Array) -> Array:
    """``[B, H, W, C] -> [B, ceil(H/2), ceil(W/2), 9 C]``: the 3 x 3 patches of a stride-2
    convolution with SAME padding (flax's and TF's), by slicing alone.

    A convolution as patches and a matmul: XLA:CPU runs convolutions inside a loop body
    several times slower than outside (jax issue #12868; the encoder's gradient took 34 ms
    a step in the runner's scan against 4 ms unrolled, at 16 x 16), and matmuls do not
    have that problem."""
    b, h, w, c = x.shape
    ho, wo = -(-h // 2), -(-w // 2)
    ph, pw = max(2 * ho + 1 - h, 0), max(2 * wo + 1 - w, 0)  # SAME: total padding, the odd one at the end
    xp = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    return jnp.concatenate(
        [xp[:, dy : dy + 2 * ho : 2, dx : dx + 2 * wo : 2] for dy in range(3) for dx in range(3)], -1
    )


class StridedConv(nn.Module):
    """A 3 x 3, stride-2, SAME convolution (``flax.linen.Conv``'s parameters and numbers) as
    :func:`strided_patches` and a matmul."""

    features: int

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, c, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return strided_patches(x) @ kernel.reshape(9 * c, self.features) + bias


class ConvEncoder(nn.Module):
    """``[..., H, W, 3] -> [..., K * s]``: stride-2 3x3 convolutions down to about 4 x 4,
    then a hidden dense layer (leaky ReLU 0.2 throughout)."""

    latent_dim: int
    channels: int = 32
    hidden: int = 128

    @nn.compact
    def __call__(self, x):
        lead = x.shape[:-3]
        h = x.reshape(-1, *x.shape[-3:])
        for _ in range(num_downsamplings(x.shape[-3], x.shape[-2])):
            h = leaky(StridedConv(self.channels)(h))
        h = h.reshape(h.shape[0], -1)
        h = leaky(nn.Dense(self.hidden)(h))
        return nn.Dense(self.latent_dim)(h).reshape(*lead, self.latent_dim)


def coordinates(height: int, width: int) -> Array:
    """Pixel coordinates ``[H * W, 2]`` in [-1, 1] (x, then y), row-major."""
    py, px = jnp.meshgrid(jnp.linspace(-1, 1, height), jnp.linspace(-1, 1, width), indexing="ij")
    return jnp.stack([px.reshape(-1), py.reshape(-1)], -1)


def init_decoder(key: Array, num_slots: int, slot_dim: int, hidden: Sequence[int], out_dim: int = 4) -> dict:
    """Per-slot weights, stacked on a leading slot axis (lecun-normal, zero biases), and the
    background colour (zeros)."""
    widths = (*hidden, out_dim)
    keys = jax.random.split(key, len(widths) + 1)

    def normal(k, shape, fan_in):
        return jax.random.normal(k, shape) / jnp.sqrt(fan_in)

    params = {
        "w_z": normal(keys[0], (num_slots, slot_dim, widths[0]), slot_dim + 2),
        "w_p": normal(keys[1], (num_slots, 2, widths[0]), slot_dim + 2),
        "b_0": jnp.zeros((num_slots, widths[0])),
        "layers": [
            {
                "w": normal(keys[i + 2], (num_slots, widths[i], widths[i + 1]), widths[i]),
                "b": jnp.zeros((num_slots, widths[i + 1])),
            }
            for i in range(len(widths) - 1)
        ],
        "background": jnp.zeros((3,)),
    }
    return params


def slot_layer(params: dict, k: int | Array, z_k: Array, coords: Array) -> Array:
    """Slot ``k``'s layer ``[H * W, 4]`` (RGB, alpha logit) from its latent ``z_k [s]``."""
    h = z_k @ params["w_z"][k] + coords @ params["w_p"][k] + params["b_0"][k]
    for layer in params["layers"]:
        h = leaky(h) @ layer["w"][k] + layer["b"][k]
    return h


def slot_layers(params: dict, z: Array, coords: Array) -> Array:
    """Every slot's layer ``[K, H * W, 4]`` from ``z [K, s]`` (slots batched, not looped)."""
    h = jnp.einsum("ks,ksh->kh", z, params["w_z"])[:, None] + jnp.einsum("pc,kch->kph", coords, params["w_p"])
    h = h + params["b_0"][:, None]
    for layer in params["layers"]:
        h = jnp.einsum("kph,khj->kpj", leaky(h), layer["w"]) + layer["b"][:, None]
    return h


def composite(layers: Array, background: Array, composition: str) -> Array:
    """``[K, H * W, 4]`` slot layers -> the image ``[H * W, 3]`` (see the module docstring)."""
    if composition == "sum":
        return background + jnp.sum(layers[..., :3], 0)
    img = jnp.broadcast_to(background, layers.shape[1:2] + (3,))
    for k in range(layers.shape[0]):
        a = jax.nn.sigmoid(layers[k, :, 3:4])
        img = a * layers[k, :, :3] + (1 - a) * img
    return img


def decode(params: dict, z: Array, num_slots: int, height: int, width: int, composition: str) -> Array:
    """One image ``[H * W * 3]`` (flat, row-major, channels last) from ``z [K * s]``."""
    layers = slot_layers(params, z.reshape(num_slots, -1), coordinates(height, width))
    return composite(layers, params["background"], composition).reshape(-1)


def slot_decodings(params: dict, z: Array, num_slots: int, height: int, width: int, composition: str) -> Array:
    """Each slot alone on the background, ``[K, H, W, 3]`` (for figures): its layer
    composited by itself (alpha) or added to the background (sum)."""
    layers = slot_layers(params, z.reshape(num_slots, -1), coordinates(height, width))
    one = jax.vmap(lambda lay: composite(lay[None], params["background"], composition))(layers)
    return one.reshape(num_slots, height, width, 3)


def layers_and_tangents(params: dict, z: Array, coords: Array) -> tuple[Array, Array]:
    """Every slot's layer ``[K, P, 4]`` and its forward-mode tangents along the slot's own
    latents ``[K, s, P, 4]`` (``z [K, s]``), in one pass. The first layer's tangent is
    ``W_z`` itself, the same at every pixel, so it is folded into the next layer's weights
    (``W_z W_1``, ``[K, s, H_0, H_1]``) rather than broadcast to every pixel; each later
    tangent is ``(leaky'(h) * t) @ W``."""
    h = jnp.einsum("ks,ksh->kh", z, params["w_z"])[:, None] + jnp.einsum("pc,kch->kph", coords, params["w_p"])
    h = h + params["b_0"][:, None]
    t = None
    for layer in params["layers"]:
        slope = jnp.where(h >= 0, 1.0, NEGATIVE_SLOPE)  # leaky_relu's own choice at 0
        if t is None:
            t = jnp.einsum("kph,kshj->kspj", slope, params["w_z"][..., None] * layer["w"][:, None])
        else:
            t = jnp.einsum("ksph,khj->kspj", slope[:, None] * t, layer["w"])
        h = jnp.einsum("kph,khj->kpj", leaky(h), layer["w"]) + layer["b"][:, None]
    return h, t


def composite_tangents(layers: Array, tangents: Array, background: Array, composition: str) -> Array:
    """The image's tangents ``[K, s, P, 3]`` from the slot layers ``[K, P, 4]`` and their
    tangents ``[K, s, P, 4]``. Alpha: with ``T_k`` the transmittance of the slots in front
    of k and ``below_k`` the image composited behind it, d img = ``T_k (a_k d rgb_k +
    a_k (1 - a_k) (rgb_k - below_k) d logit_k)``."""
    if composition == "sum":
        return tangents[..., :3]
    num_slots = layers.shape[0]
    a = jax.nn.sigmoid(layers[..., 3:4])  # [K, P, 1]
    below, img = [], jnp.broadcast_to(background, layers.shape[1:2] + (3,))
    for k in range(num_slots):
        below.append(img)
        img = a[k] * layers[k, :, :3] + (1 - a[k]) * img
    below = jnp.stack(below)  # [K, P, 3]
    # transmittance of the slots in front of k: prod_{m > k} (1 - a_m)
    front = jnp.cumprod((1 - a)[::-1], axis=0)[::-1]  # prod_{m >= k}
    trans = jnp.concatenate([front[1:], jnp.ones_like(front[:1])], 0)  # prod_{m > k}
    d_rgb = a[:, None] * tangents[..., :3]
    d_logit = (a * (1 - a) * (layers[..., :3] - below))[:, None] * tangents[..., 3:4]
    return trans[:, None] * (d_rgb + d_logit)


def jacobian(params: dict, z: Array, num_slots: int, height: int, width: int, composition: str) -> Array:
    """The decoder's exact Jacobian ``[H * W * 3, K * s]`` at ``z [K * s]``, slot by slot
    (see the module docstring); equal to ``jax.jacfwd`` of :func:`decode`."""
    zk = z.reshape(num_slots, -1)
    layers, tangents = layers_and_tangents(params, zk, coordinates(height, width))
    cols = composite_tangents(layers, tangents, params["background"], composition)  # [K, s, P, 3]
    return jnp.moveaxis(cols.reshape(num_slots * zk.shape[1], -1), 0, 1)


def slot_norms(params: dict, z: Array, num_slots: int, height: int, width: int, composition: str) -> Array:
    """``[K, H * W * 3]``: per slot, the norm of its block of the Jacobian row of every pixel
    channel (what compositional contrast sums), from the slot-by-slot tangents without
    forming ``[H * W * 3, K * s]``. Safe at 0 (gradient 0, not NaN), as
    :func:`mechind.core.derivatives.slot_block_norms`."""
    zk = z.reshape(num_slots, -1)
    layers, tangents = layers_and_tangents(params, zk, coordinates(height, width))
    cols = composite_tangents(layers, tangents, params["background"], composition)  # [K, s, P, 3]
    sq = jnp.sum(cols * cols, 1).reshape(num_slots, -1)
    return jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)


def compositional_contrast(params: dict, z: Array, num_slots: int, height: int, width: int, composition: str) -> Array:
    """Brady et al.'s C_comp of the decoder at ``z [B, K * s]`` (mean over the batch of
    ``sum_n sum_{i<j} s_i s_j``), equal to
    ``losses.compositional_contrast(jacobian(...), slot_sizes)`` at less cost."""
    s = jax.vmap(lambda v: slot_norms(params, v, num_slots, height, width, composition))(z)  # [B, K, n]
    pair = 0.5 * (jnp.sum(s, 1) ** 2 - jnp.sum(s * s, 1))
    return jnp.mean(jnp.sum(pair, -1))
