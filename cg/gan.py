"""CG-GAN's networks and losses (the image half of the sufficient-changes + sparse-mixing
paper, arXiv 2503.00639), as pure functions of parameter dicts, at a CPU's scale.

The generator draws noise ``eps ~ N(0, I_d)``; its first ``i_dim`` dimensions pass
through a **domain-conditioned prior** (the rest are domain-invariant by construction):

    z_hat[:i] = eps[:i] + gate * T_u(eps[:i]),    z_hat[i:] = eps[i:]

* ``T_u`` is the authors' dense sigmoid flow (:func:`ddsf`; their
  ``realworld/training/flow.py``) whose per-dimension parameters an MLP computes from a
  domain embedding, or, for the "no flow" ablation, a per-domain affine map (a Gaussian
  per domain).
* ``gate`` is the learned **mask**: ``importance * [importance > threshold]`` with the
  indicator outside the gradient (their ``causal_influence``); a dimension whose
  importance fell below the threshold is domain-invariant. An L1 on ``importance``
  (their ``lambda_sparse``) pulls it down. Without mask learning ("CG-GAN-M") the gate is 1.

``z_hat`` goes through a mapping MLP to ``w`` and a spatial-broadcast synthesis network (a
per-pixel MLP of ``w`` and the pixel's coordinates; 1x1 convolutions) to the image. The
plain domain-conditioned GAN concatenates the domain embedding to the mapping's input
instead (no prior).

The discriminator is a stride-2 convolutional net with a projection on the domain
(``logit = f(x) . v + f(x) . E[u] / sqrt(F)``, StyleGAN2-ADA's conditioning); the losses
are the non-saturating ones with R1 on real images.

**Image sparsity** (the paper's sparse-mixing term on the generator's Jacobian), in two
forms over the domain-specific dimensions (those the mask keeps):

* exact: ``mean_pixels |dG/dz_hat_i| * std(z_hat_i)``, one forward-mode tangent per
  dimension, averaged over the kept dimensions;
* the authors' proxy: ``mean_pixels |G(z_hat + s delta_i e_i) - G(z_hat)| / delta`` for one
  kept dimension ``i`` and sign ``s`` drawn per step, ``delta_i = delta * std(z_hat_i)``.

Both are multiplied by the batch standard deviation of ``z_hat_i`` (with its gradient):
a penalty on the generator's derivatives is otherwise paid by scaling the latents up (the
flow is free to), and the authors' per-sample second-moment normalisation, which stops
that at 256 dimensions, leaves only a sign at one. Over ``delta`` the proxy's value is
the authors' ``mean |img_perturbed - img_unperturbed|``, so our ``lam_img`` is their
``lambda_imgsparse * perturb_norm``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mechind.scene_models import coordinates, num_downsamplings, strided_patches

Array = jax.Array

MASK_THRESHOLD = 0.1  # the authors' threshold on importance (their get_masks)
_SOFTPLUS_INV = float(np.log(np.exp(1 - 1e-7) - 1))  # their softplus offset: a = 1 at zero input


def leaky(x: Array) -> Array:
    return jax.nn.leaky_relu(x, 0.2)


def normalize_2nd_moment(x: Array, axis: int = -1, eps: float = 1e-8) -> Array:
    """``x / sqrt(mean(x^2) + eps)`` along ``axis`` (StyleGAN's per-sample normalisation)."""
    return x * jax.lax.rsqrt(jnp.mean(x**2, axis=axis, keepdims=True) + eps)


# --- the authors' dense sigmoid flow ------------------------------------------------------


def ddsf_dims(blocks: int, hidden: int) -> list[tuple[int, int]]:
    """``(in, out)`` of each block: ``1 -> 1`` for one block, else ``1 -> h -> ... -> 1``."""
    if blocks == 1:
        return [(1, 1)]
    return [(1, hidden)] + [(hidden, hidden)] * (blocks - 2) + [(hidden, 1)]


def ddsf_num_params(blocks: int, hidden: int) -> int:
    """Conditioning parameters per dimension: ``3 h + in`` per block."""
    return sum(3 * hidden + i for i, _ in ddsf_dims(blocks, hidden))


def init_ddsf(key: Array, blocks: int, hidden: int) -> list[dict]:
    """The blocks' own weights ``u_ [h, in]``, ``w_ [out, h]``, uniform in +-1e-3 (theirs)."""
    out = []
    for k, (i, o) in zip(jax.random.split(key, blocks), ddsf_dims(blocks, hidden)):
        ku, kw = jax.random.split(k)
        out.append(
            {
                "u": jax.random.uniform(ku, (hidden, i), minval=-1e-3, maxval=1e-3),
                "w": jax.random.uniform(kw, (o, hidden), minval=-1e-3, maxval=1e-3),
            }
        )
    return out


def dense_sigmoid_block(x: Array, dsparams: Array, block: dict) -> Array:
    """One block: ``x [..., D, in]``, ``dsparams [..., D, 3h + in]`` -> ``[..., D, out]``.

    ``a = softplus(.)`` (1 at zero), ``u, w`` softmax-normalised, ``y = sum_h w_h
    selu(sum_in u a x + b)``: monotone in ``x``. The authors' ``DenseSigmoidFlow`` as
    released: a selu where the DSF paper has a sigmoid, and no logit at the end."""
    h = block["u"].shape[0]
    n_in = block["u"].shape[1]
    a = jax.nn.softplus(dsparams[..., :h] + _SOFTPLUS_INV)
    b = dsparams[..., h : 2 * h]
    w = jax.nn.softmax(block["w"] + dsparams[..., None, 2 * h : 3 * h], axis=-1)  # [..., D, out, h]
    u = jax.nn.softmax(block["u"] + dsparams[..., None, 3 * h : 3 * h + n_in], axis=-1)  # [..., D, h, in]
    pre = jnp.sum(u * a[..., :, None] * x[..., None, :], -1) + b  # [..., D, h]
    return jnp.sum(w * jax.nn.selu(pre)[..., None, :], -1)


def ddsf(x: Array, dsparams: Array, blocks: list[dict]) -> Array:
    """``x [..., D]``, ``dsparams [..., D, P]`` -> ``[..., D]``: the blocks in turn, each
    reading its slice of ``dsparams`` (their ``DDSF.forward``)."""
    h = x[..., None]
    start = 0
    for block in blocks:
        n = 3 * block["u"].shape[0] + block["u"].shape[1]
        h = dense_sigmoid_block(h, dsparams[..., start : start + n], block)
        start += n
    return h[..., 0]


# --- the generator ------------------------------------------------------------------------


class Arch(NamedTuple):
    """Static shapes of a CG-GAN (hashable, so it can key a compiled program)."""

    latent_dim: int  # d: noise and latent dimensions
    i_dim: int  # the first i_dim of them may be domain-specific (pass the prior)
    max_domains: int
    height: int
    width: int
    embed: int = 16
    cond_hidden: int = 32
    flow_blocks: int = 2
    flow_hidden: int = 10
    w_dim: int = 32
    map_hidden: int = 64
    synth_hidden: int = 64
    disc_channels: int = 32
    disc_features: int = 64
    flow_norm: bool = False  # the authors' per-sample normalisation of z_hat (group_normalize)


class Variant(NamedTuple):
    """Which parts of CG-GAN a run uses, as floats in {0, 1} (so that every method trains
    in one vmapped program; each is also a per-run hyper-parameter)."""

    prior: Array  # the domain-conditioned prior on z_hat[:i]
    flow: Array  # 1: the flow; 0: a per-domain affine map
    mask: Array  # 1: learned mask (gate, L1 on importance); 0: gate = 1
    concat: Array  # the domain embedding concatenated to the mapping's input


def _normal(key, shape, fan_in, gain=1.0):
    return gain * jax.random.normal(key, shape) / math.sqrt(fan_in)


def _mlp(key, sizes) -> list[dict]:
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": _normal(k, (a, b), a, math.sqrt(2)), "b": jnp.zeros(b)} for k, a, b in zip(keys, sizes[:-1], sizes[1:])
    ]


def _apply_mlp(layers: list[dict], x: Array, last_linear: bool = True) -> Array:
    for i, layer in enumerate(layers):
        x = x @ layer["w"] + layer["b"]
        if i < len(layers) - 1 or not last_linear:
            x = leaky(x)
    return x


def init_generator(key: Array, a: Arch) -> dict:
    ks = jax.random.split(key, 8)
    p_flow = ddsf_num_params(a.flow_blocks, a.flow_hidden)
    cond = _mlp(ks[1], [a.embed, a.cond_hidden, a.cond_hidden, p_flow * a.i_dim])
    # small flow parameters at the start, as the authors' (their blocks' weights start at +-1e-3): then
    # T(x) = selu(selu(x)) in every domain, a fixed warp that the domains move away from
    cond[-1]["w"] = cond[-1]["w"] * 0.1
    synth = _mlp(ks[3], [a.w_dim + 2, a.synth_hidden, a.synth_hidden, 3])
    return {
        "embed": jax.random.normal(ks[0], (a.max_domains, a.embed)),
        "cond": cond,
        "flow": init_ddsf(ks[2], a.flow_blocks, a.flow_hidden),
        "affine": {"mu": jnp.zeros((a.max_domains, a.i_dim)), "log_s": jnp.zeros((a.max_domains, a.i_dim))},
        "importance": jnp.ones(a.i_dim),
        "mapping": _mlp(ks[4], [a.latent_dim + a.embed, a.map_hidden, a.w_dim]),
        "synth": synth,
    }


def embedding(p: dict, u: Array) -> Array:
    """``u`` (int, any shape) -> normalised domain embeddings ``[..., e]``."""
    return normalize_2nd_moment(p["embed"][u])


def gate(p: dict, v: Variant) -> Array:
    """``[i]``: the mask's gate on the prior (``importance * [importance > 0.1]``, the
    indicator without gradient), or 1 without mask learning."""
    imp = p["importance"]
    learned = imp * jax.lax.stop_gradient((imp > MASK_THRESHOLD).astype(imp.dtype))
    return v.mask * learned + (1 - v.mask)


def kept(p: dict, v: Variant) -> Array:
    """``[i]`` in {0, 1}: the domain-specific dimensions (the mask's, or all of them)."""
    on = (p["importance"] > MASK_THRESHOLD).astype(jnp.float32)
    return jax.lax.stop_gradient(v.mask * on + (1 - v.mask))


def conditioner(p: dict, a: Arch, u: Array) -> Array:
    """Domain ``u`` -> the flow's per-dimension parameters ``[i_dim, P]`` (an MLP of the
    normalised domain embedding, their ``flow_fc`` layers)."""
    return _apply_mlp(p["cond"], embedding(p, u)).reshape(a.i_dim, -1)


def group_normalize(z: Array, style: Array, eps: float = 1e-8) -> Array:
    """The authors' ``flow_norm``: ``z [d]`` divided by its root mean square over the
    ``style [d]`` (1) dimensions there, over the others elsewhere (per sample)."""
    sq = z**2

    def rms(w):
        return jnp.sqrt(jnp.sum(w * sq) / jnp.maximum(jnp.sum(w), 1.0) + eps)

    return jnp.where(style > 0, z / rms(style), z / rms(1 - style))


def apply_prior(p: dict, a: Arch, eps: Array, dsparams: Array, u: Array, v: Variant) -> Array:
    """``eps [d]`` -> ``z_hat [d]`` given the flow's parameters ``dsparams [i_dim, P]``:
    ``z_hat[:i] = eps[:i] + gate * T(eps[:i])`` (their ``z_in + causal_influence * z_out``),
    then the authors' per-sample normalisation if ``a.flow_norm``."""
    x = eps[: a.i_dim]
    t_flow = ddsf(x, dsparams, p["flow"])
    t_aff = p["affine"]["mu"][u] + (jnp.exp(p["affine"]["log_s"][u]) - 1) * x
    t = v.flow * t_flow + (1 - v.flow) * t_aff
    z = jnp.concatenate([x + v.prior * gate(p, v) * t, eps[a.i_dim :]])
    if a.flow_norm:
        style = jnp.concatenate([kept(p, v), jnp.zeros(a.latent_dim - a.i_dim)])
        z = group_normalize(z, style)
    return z


def prior(p: dict, a: Arch, eps: Array, u: Array, v: Variant) -> Array:
    """``eps [d]``, domain ``u`` -> ``z_hat [d]`` (module docstring)."""
    return apply_prior(p, a, eps, conditioner(p, a, u), u, v)


def mapping(p: dict, z_hat: Array, u: Array, v: Variant) -> Array:
    """``z_hat [d]`` -> ``w [w_dim]`` (with the domain embedding for the plain cGAN)."""
    return _apply_mlp(p["mapping"], jnp.concatenate([z_hat, v.concat * embedding(p, u)]), last_linear=False)


def synthesis(p: dict, a: Arch, w: Array) -> Array:
    """``w [w_dim]`` -> image ``[H, W, 3]`` in (0, 1): a per-pixel MLP of ``(w, coords)``;
    ``w``'s share of the first layer is computed once per image, not per pixel."""
    first, *rest = p["synth"]
    c = coordinates(a.height, a.width)  # [HW, 2]
    h = leaky(c @ first["w"][-2:] + (w @ first["w"][:-2] + first["b"]))
    for i, layer in enumerate(rest):
        h = h @ layer["w"] + layer["b"]
        if i < len(rest) - 1:
            h = leaky(h)
    return jax.nn.sigmoid(h).reshape(a.height, a.width, 3)


def render(p: dict, a: Arch, z_hat: Array, u: Array, v: Variant) -> Array:
    """``z_hat [d]`` -> image ``[H, W, 3]``: the generator from its latents (what the
    sparsity term differentiates and the inversion encoder inverts)."""
    return synthesis(p, a, mapping(p, z_hat, u, v))


def generate(p: dict, a: Arch, eps: Array, u: Array, v: Variant) -> tuple[Array, Array]:
    """Batched: ``eps [B, d]``, ``u [B]`` -> ``(images [B, H, W, 3], z_hat [B, d])``."""
    z_hat = jax.vmap(lambda e, d: prior(p, a, e, d, v))(eps, u)
    return jax.vmap(lambda z, d: render(p, a, z, d, v))(z_hat, u), z_hat


# --- image sparsity ---------------------------------------------------------------------


def latent_scale(z_hat: Array) -> Array:
    """``[d]``: the batch standard deviation of each latent (with its gradient)."""
    return jnp.sqrt(jnp.var(z_hat, axis=0) + 1e-8)


def exact_sparsity(p: dict, a: Arch, z_hat: Array, u: Array, v: Variant, weights: Array, scale: Array) -> Array:
    """``mean_i weights_i scale_i mean_pixels,batch |dG/dz_hat_i|`` over the first i_dim
    latents of ``z_hat [B, d]`` (``weights [i]`` in {0, 1}, normalised to their sum;
    ``scale [i]``: the latents' batch std, :func:`latent_scale`): one forward-mode tangent
    per latent, exact."""

    def per_latent(i):
        t = jnp.zeros_like(z_hat).at[:, i].set(1.0)
        _, jv = jax.jvp(lambda z: jax.vmap(lambda zz, d: render(p, a, zz, d, v))(z, u), (z_hat,), (t,))
        return jnp.mean(jnp.abs(jv))

    vals = jax.vmap(per_latent)(jnp.arange(a.i_dim)) * scale
    return jnp.sum(weights * vals) / jnp.maximum(jnp.sum(weights), 1.0)


def fd_sparsity(render_fn, z_hat: Array, index: Array, sign: Array, delta: float, scale: Array | float = 1.0) -> Array:
    """The authors' proxy: ``mean |G(z_hat + sign delta_i e_index) - G(z_hat)| / delta`` with
    ``delta_i = delta * scale`` (``scale``: latent ``index``'s batch std; 1 is theirs,
    whose value is this times ``delta``). ``render_fn``: ``z_hat [B, d] -> images``."""
    step = sign * delta * scale
    moved = z_hat + step * jax.nn.one_hot(index, z_hat.shape[-1], dtype=z_hat.dtype)
    return jnp.mean(jnp.abs(render_fn(moved) - render_fn(z_hat))) / delta


def draw_perturbation(key: Array, weights: Array) -> tuple[Array, Array]:
    """``(index, sign)``: one latent uniformly among those with ``weights [i] > 0`` (the
    first if none), a sign +-1 (their ``perturbed_dim`` and ``sign``)."""
    k1, k2 = jax.random.split(key)
    logits = jnp.where(weights > 0, 0.0, -jnp.inf)
    logits = jnp.where(jnp.any(weights > 0), logits, jnp.zeros_like(logits).at[1:].set(-jnp.inf))
    return jax.random.categorical(k1, logits), 2.0 * jax.random.bernoulli(k2).astype(jnp.float32) - 1.0


# --- the discriminator -----------------------------------------------------------------


def init_discriminator(key: Array, a: Arch) -> dict:
    n = num_downsamplings(a.height, a.width)
    ks = jax.random.split(key, n + 3)
    convs, c = [], 3
    for i in range(n):
        convs.append(
            {"w": _normal(ks[i], (9 * c, a.disc_channels), 9 * c, math.sqrt(2)), "b": jnp.zeros(a.disc_channels)}
        )
        c = a.disc_channels
    flat = (a.height >> n) * (a.width >> n) * c
    return {
        "convs": convs,
        "dense": {"w": _normal(ks[n], (flat, a.disc_features), flat, math.sqrt(2)), "b": jnp.zeros(a.disc_features)},
        "out": {"w": _normal(ks[n + 1], (a.disc_features, 1), a.disc_features), "b": jnp.zeros(1)},
        "proj": jax.random.normal(ks[n + 2], (a.max_domains, a.disc_features)),
    }


def discriminate(p: dict, x: Array, u: Array) -> Array:
    """Logits ``[B]`` of images ``x [B, H, W, 3]`` in domains ``u [B]``."""
    h = 2 * x - 1
    for layer in p["convs"]:
        h = leaky(strided_patches(h) @ layer["w"] + layer["b"])
    f = leaky(h.reshape(h.shape[0], -1) @ p["dense"]["w"] + p["dense"]["b"])
    proj = jnp.sum(f * p["proj"][u], -1) / math.sqrt(f.shape[-1])
    return (f @ p["out"]["w"])[:, 0] + p["out"]["b"][0] + proj


def r1_penalty(p: dict, x_real: Array, u_real: Array) -> Array:
    """``mean |grad_x D(x_real)|^2`` (R1, Mescheder et al. 2018)."""
    real, vjp = jax.vjp(lambda x: discriminate(p, x, u_real), x_real)
    (g,) = vjp(jnp.ones_like(real))
    return jnp.mean(jnp.sum(g**2, axis=(1, 2, 3)))


def discriminator_loss(p: dict, x_real: Array, u_real: Array, x_fake: Array, u_fake: Array) -> Array:
    """``softplus(D(fake)) + softplus(-D(real))`` (batch means). R1 is apart
    (:func:`r1_penalty`): the caller adds it every few steps with a weight scaled up to
    match (StyleGAN2's lazy regularisation), sparing the double backward pass between."""
    fake = discriminate(p, x_fake, u_fake)
    real = discriminate(p, x_real, u_real)
    return jnp.mean(jax.nn.softplus(fake)) + jnp.mean(jax.nn.softplus(-real))


def generator_adversarial(p_d: dict, x_fake: Array, u_fake: Array) -> Array:
    """The non-saturating generator loss ``softplus(-D(G(eps)))`` (batch mean)."""
    return jnp.mean(jax.nn.softplus(-discriminate(p_d, x_fake, u_fake)))


# --- mask recovery ----------------------------------------------------------------------


def mask_recovery(learned: np.ndarray, truth: np.ndarray, match: np.ndarray) -> tuple[float, float]:
    """``(precision, recall)`` of the learned domain-specific set.

    ``learned [d]`` bool over the model's latents, ``truth [n]`` bool over the true ones,
    ``match [d]``: the true latent each model latent is matched to (-1: none, e.g. the
    MCC's assignment). A learned latent counts as right when its match is a true
    domain-specific one; a true one as found when the latent matched to it is learned. An
    empty learned set has precision 0 (sklearn's convention), no truth recall 1."""
    learned, truth, match = np.asarray(learned, bool), np.asarray(truth, bool), np.asarray(match)
    hit = np.array([m >= 0 and truth[m] for m in match])
    precision = float(np.sum(learned & hit) / np.sum(learned)) if learned.any() else 0.0
    found = sum(1 for j in np.flatnonzero(truth) if np.any(learned & (match == j)))
    recall = float(found / truth.sum()) if truth.any() else 1.0
    return precision, recall
