"""Training and evaluating CG-GAN (:mod:`cg.gan`) on multi-domain rendered scenes
(:mod:`cg.scene_domains`), one run as a :class:`mechind.core.runner.Task`.

Every method of :data:`METHODS` (CG-GAN and its ablations) is a setting of the per-run
hyper-parameters (:class:`HParams`), as is the number of domains, so a whole table (methods
x domains x seeds) trains as one vmapped program, paired on the seed: the runs of one
seed see the same domain laws (those of ``max_domains`` drawn from the seed; ``M`` domains
use the first ``M``) and start from the same weights.

Real scenes are drawn afresh for every step from the domain laws (the data are unlimited;
the question is identifiability, not overfitting). Evaluation (:func:`evaluate`):

* **identifiability**: a convolutional encoder trained to invert the generator on its own
  samples (``G(z_hat) -> z_hat``) is applied to held-out real scenes; Pearson and
  Spearman correlations with the true latents, matched by the Hungarian assignment (MCC),
  and per group (domain-specific, invariant). Floor: the same for the top principal
  components of the raw images.
* **mask recovery**: the learned domain-specific set against the truth, through the MCC's
  matching (:func:`cg.gan.mask_recovery`); floor: the dense guess (every latent specific).
* **sample quality**: Fréchet distance and KID in the feature space of an encoder trained
  on real scenes to regress their latents (Inception weights cannot be loaded here), with
  the real-vs-real value of two held-out real sets as the floor.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cg import gan
from cg.scene_domains import DomainScenesSpec
from mechind import scenes
from mechind.core import metrics, rng, runner
from mechind.scene_models import ConvEncoder, StridedConv, leaky, num_downsamplings
from mechind.scene_train import pack_images

Array = jax.Array

# method -> the parts it uses (cg.gan.Variant) and whether its losses are on
METHODS: dict[str, dict[str, float]] = {
    # the paper's method: flow prior, learned mask, exact L1 of the generator's Jacobian
    "cg_gan": dict(prior=1, flow=1, mask=1, concat=0, mask_l1=1, sparsity=1, fd=0),
    # the same with the authors' finite-difference proxy for the sparsity term
    "cg_gan_fd": dict(prior=1, flow=1, mask=1, concat=0, mask_l1=1, sparsity=1, fd=1),
    # CG-GAN-M: no mask learning (every prior dimension domain-specific)
    "cg_gan_m": dict(prior=1, flow=1, mask=0, concat=0, mask_l1=0, sparsity=1, fd=0),
    # no image sparsity (i-StyleGAN with the mask; what the released code trains, see docs)
    "no_sparsity": dict(prior=1, flow=1, mask=1, concat=0, mask_l1=1, sparsity=0, fd=0),
    # a Gaussian per domain in place of the flow
    "no_flow": dict(prior=1, flow=0, mask=1, concat=0, mask_l1=1, sparsity=1, fd=0),
    # a plain domain-conditioned GAN: the domain embedding concatenated to the mapping input
    "cgan": dict(prior=0, flow=0, mask=0, concat=1, mask_l1=0, sparsity=0, fd=0),
}


class HParams(NamedTuple):
    """Per-run hyper-parameters (the runner vmaps them; the method is a setting of them)."""

    lr: Array
    num_domains: Array  # int32
    prior: Array
    flow: Array
    mask: Array
    concat: Array
    lam_mask: Array  # L1 on the mask's importance (their lambda_sparse)
    lam_img: Array  # image sparsity
    fd: Array  # 1: the authors' finite-difference proxy; 0: the exact Jacobian

    @property
    def variant(self) -> gan.Variant:
        return gan.Variant(self.prior, self.flow, self.mask, self.concat)


@dataclasses.dataclass(frozen=True)
class GanConfig:
    """Everything that defines a CG-GAN run; validated on construction. ``method``,
    ``num_domains`` and ``lr`` are per-run in a sweep (:func:`hparams`)."""

    # data (a cg.scene_domains.DomainScenesSpec)
    num_objects: int = 1
    height: int = 16
    width: int = 16
    occlusion: float = 1.0
    size_range: tuple[float, float] = (0.12, 0.3)
    changing: tuple[str, ...] = ("size", "hue")
    num_domains: int = 4
    max_domains: int = 8
    shift: float = 1.5
    spread: float = 0.7
    # model
    latent_dim: int = 0  # 0: the true number, 4 K
    i_dim: int = 0  # latents that pass the prior (0: all of them)
    w_dim: int = 32
    map_hidden: int = 64
    synth_hidden: int = 32
    disc_channels: int = 32
    flow_blocks: int = 2  # the authors' command: 2 blocks x 10 units
    flow_hidden: int = 10
    # training
    method: str = "cg_gan"
    batch_size: int = 32
    num_steps: int = 3000
    lr: float = 2e-3  # Adam(0, 0.99) for both networks (StyleGAN2's betas)
    r1: float = 0.1
    r1_every: int = 4  # lazy R1 (StyleGAN2's 16 at scale; 4 here, where steps are few)
    lam_mask: float = 0.1  # their lambda_sparse
    lam_img: float = 0.01  # their lambda_imgsparse * perturb_norm (0.1 x 0.1)
    delta: float = 0.1  # their perturb_norm, in units of the latent's batch std
    sparsity_batch: int = 8  # samples of each batch the sparsity term is computed on
    # evaluation
    num_val: int = 1024
    inv_steps: int = 600  # the inversion encoder's Adam steps
    feat_steps: int = 600  # the feature encoder's
    feat_dim: int = 32
    num_examples: int = 6

    def __post_init__(self):
        self.dataset  # validates the scenes
        for msg in runner.whole_number_errors(self):
            raise ValueError(msg)
        d = self.dims[0]
        checks = [
            (self.method in METHODS, f"method must be one of {sorted(METHODS)}, got {self.method!r}"),
            (
                self.latent_dim == 0 or self.latent_dim >= self.num_objects * scenes.OBJECT_DIM,
                f"latent_dim must be 0 (the true number) or >= {self.num_objects * scenes.OBJECT_DIM} (4 per object; "
                f"the MCC matches every true latent to one of the model's), got {self.latent_dim}",
            ),
            (0 <= self.i_dim <= d, f"i_dim must lie in [0, latent_dim={d}], got {self.i_dim}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.r1 >= 0 and self.r1_every >= 1, f"r1 must be >= 0 and r1_every >= 1, got {self.r1}, {self.r1_every}"),
            (self.lam_mask >= 0 and self.lam_img >= 0, "lam_mask and lam_img must be >= 0"),
            (self.delta > 0, f"delta must be > 0, got {self.delta}"),
            (self.num_steps >= 1 and self.batch_size >= 2, "num_steps must be >= 1 and batch_size >= 2"),
            (
                1 <= self.sparsity_batch <= self.batch_size,
                f"sparsity_batch must lie in [1, batch_size={self.batch_size}], got {self.sparsity_batch}",
            ),
            (self.num_val >= 2 * self.feat_dim, f"num_val must be >= 2 feat_dim ({2 * self.feat_dim}) for FD"),
            (self.flow_blocks >= 1 and self.flow_hidden >= 1, "flow_blocks and flow_hidden must be >= 1"),
            (0 <= self.num_examples <= 16, f"num_examples must lie in [0, 16], got {self.num_examples}"),
            (self.inv_steps >= 1 and self.feat_steps >= 1, "inv_steps and feat_steps must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @property
    def dataset(self) -> DomainScenesSpec:
        return DomainScenesSpec(
            num_objects=self.num_objects,
            height=self.height,
            width=self.width,
            occlusion=self.occlusion,
            size_range=tuple(self.size_range),
            num_domains=self.num_domains,
            max_domains=self.max_domains,
            changing=tuple(self.changing),
            shift=self.shift,
            spread=self.spread,
        )

    @property
    def dims(self) -> tuple[int, int]:
        """``(latent_dim, i_dim)`` with the defaults filled in."""
        d = self.latent_dim or self.num_objects * scenes.OBJECT_DIM
        return d, (self.i_dim or d)

    @property
    def arch(self) -> gan.Arch:
        d, i = self.dims
        return gan.Arch(
            latent_dim=d,
            i_dim=i,
            max_domains=self.max_domains,
            height=self.height,
            width=self.width,
            flow_blocks=self.flow_blocks,
            flow_hidden=self.flow_hidden,
            w_dim=self.w_dim,
            map_hidden=self.map_hidden,
            synth_hidden=self.synth_hidden,
            disc_channels=self.disc_channels,
        )

    def replace(self, **kw) -> "GanConfig":
        return dataclasses.replace(self, **kw)


def hparams(config: GanConfig, method: str | None = None, num_domains: int | None = None, lr=None) -> HParams:
    """One run's :class:`HParams` (defaults from ``config``)."""
    method = method or config.method
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    m = METHODS[method]
    num_domains = config.num_domains if num_domains is None else num_domains
    if not 1 <= num_domains <= config.max_domains:
        raise ValueError(f"num_domains must lie in [1, max_domains={config.max_domains}], got {num_domains}")
    f = lambda x: jnp.float32(x)  # noqa: E731
    return HParams(
        lr=f(config.lr if lr is None else lr),
        num_domains=jnp.int32(num_domains),
        prior=f(m["prior"]),
        flow=f(m["flow"]),
        mask=f(m["mask"]),
        concat=f(m["concat"]),
        lam_mask=f(config.lam_mask * m["mask_l1"]),
        lam_img=f(config.lam_img * m["sparsity"]),
        fd=f(m["fd"]),
    )


class GanState(NamedTuple):
    g: Any
    d: Any
    opt_g: Any
    opt_d: Any
    key: Array  # raw key data; step i draws from fold_in(key, i)


def _adam():
    """Adam(0, 0.99) whose step size is set per run in its state (:func:`_init_opt`)."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=1.0, b1=0.0, b2=0.99)


def _init_opt(tx, params, lr):
    opt = tx.init(params)
    return opt._replace(hyperparams={**opt.hyperparams, "learning_rate": jnp.asarray(lr, jnp.float32)})


def make_data(config: GanConfig, key: Array, given=None) -> dict:
    """The run's domain laws (``max_domains`` of them, from the seed's key) and the keys of
    its evaluation draws. ``given`` is not used: real scenes are drawn per step."""
    if given is not None:
        raise ValueError("CG-GAN draws its own scenes; given arrays are not supported")
    ds = config.dataset
    return {"domains": ds.draw_domains(jax.random.fold_in(key, 0)), "eval_key": rng.to_data(jax.random.fold_in(key, 3))}


def real_batch(config: GanConfig, data: dict, key: Array, n: int, num_domains: Array) -> tuple[Array, Array, Array]:
    """``(x [n, H, W, 3], z [n, K * 4], u [n])`` of real scenes in the first ``num_domains``."""
    ds = config.dataset
    k1, k2 = jax.random.split(key)
    u = ds.labels(k1, n, num_domains)
    z, _ = ds.sample_domains(data["domains"], k2, u)
    return scenes.render_batch(ds.renderer, z), z.reshape(n, -1), u


def init_state(config: GanConfig, key: Array, data: dict, hp: HParams) -> GanState:
    a = config.arch
    kg, kd = jax.random.split(jax.random.fold_in(key, 1))
    g, d = gan.init_generator(kg, a), gan.init_discriminator(kd, a)
    tx = _adam()
    return GanState(g, d, _init_opt(tx, g, hp.lr), _init_opt(tx, d, hp.lr), rng.to_data(jax.random.fold_in(key, 2)))


def generator_loss(config: GanConfig, g: dict, d: dict, eps: Array, u: Array, key: Array, hp: HParams):
    """``(loss, aux)``: the adversarial loss, the image sparsity (exact or proxy) and the
    mask's L1, weighted by ``hp``."""
    a, v = config.arch, hp.variant
    x, z_hat = gan.generate(g, a, eps, u, v)
    adv = gan.generator_adversarial(d, x, u)
    weights = gan.kept(g, v)
    scale = gan.latent_scale(z_hat)
    m = config.sparsity_batch
    zs, us = z_hat[:m], u[:m]
    exact = gan.exact_sparsity(g, a, zs, us, v, weights, scale[: a.i_dim])
    index, sign = gan.draw_perturbation(key, weights)
    render = jax.vmap(lambda z, dd: gan.render(g, a, z, dd, v))
    fd = gan.fd_sparsity(lambda z: render(z, us), zs, index, sign, config.delta, scale[index])
    fd = fd * jnp.any(weights > 0)  # no kept latent: nothing to penalise (as the exact term)
    sparsity = hp.fd * fd + (1 - hp.fd) * exact
    mask_l1 = jnp.mean(jnp.abs(g["importance"]))
    loss = adv + hp.lam_img * sparsity + hp.lam_mask * mask_l1
    return loss, (adv, exact, fd)


def train_step(config: GanConfig, state: GanState, data: dict, hp: HParams, i: Array):
    """One discriminator step, then one generator step, on a fresh real and fake batch."""
    a, v = config.arch, hp.variant
    k_real, k_eps, k_u, k_pert = jax.random.split(jax.random.fold_in(state.key, i), 4)
    b = config.batch_size
    x_real, _, u_real = real_batch(config, data, k_real, b, hp.num_domains)
    eps = jax.random.normal(k_eps, (b, a.latent_dim))
    u_fake = config.dataset.labels(k_u, b, hp.num_domains)
    tx = _adam()

    x_fake, _ = gan.generate(state.g, a, eps, u_fake, v)
    d_loss, d_grads = jax.value_and_grad(gan.discriminator_loss)(
        state.d, x_real, u_real, jax.lax.stop_gradient(x_fake), u_fake
    )
    # R1 every r1_every steps, weighted by r1_every (StyleGAN2's lazy regularisation); the
    # step index is the scan's, the same for every run, so this stays a branch under vmap
    r1_grads = jax.lax.cond(
        i % config.r1_every == 0,
        lambda: jax.grad(lambda p: 0.5 * config.r1 * config.r1_every * gan.r1_penalty(p, x_real, u_real))(state.d),
        lambda: jax.tree.map(jnp.zeros_like, state.d),
    )
    d_grads = jax.tree.map(jnp.add, d_grads, r1_grads)
    upd, opt_d = tx.update(d_grads, state.opt_d, state.d)
    d_new = optax.apply_updates(state.d, upd)

    (g_loss, _), g_grads = jax.value_and_grad(generator_loss, argnums=1, has_aux=True)(
        config, state.g, d_new, eps, u_fake, k_pert, hp
    )
    upd, opt_g = tx.update(g_grads, state.opt_g, state.g)
    g_new = optax.apply_updates(state.g, upd)
    return GanState(g_new, d_new, opt_g, opt_d, state.key), d_loss + g_loss


# --- evaluation ---------------------------------------------------------------------------


class FeatureNet(nn.Module):
    """``[..., H, W, 3] -> ([..., F] features, [..., n] latents)``: stride-2 convolutions, a
    dense layer of ``F`` features, a linear read-out (trained to regress true latents)."""

    features: int
    out: int
    channels: int = 32

    @nn.compact
    def __call__(self, x):
        h = x
        for _ in range(num_downsamplings(x.shape[-3], x.shape[-2])):
            h = leaky(StridedConv(self.channels)(h))
        f = leaky(nn.Dense(self.features)(h.reshape(h.shape[0], -1)))
        return f, nn.Dense(self.out)(f)


def fit_regressor(apply, params, draw, steps: int, lr: float = 1e-3):
    """``params`` after ``steps`` Adam steps on the MSE of ``apply(params, x)`` against
    ``y``, with ``(x, y) = draw(step)`` a fresh batch per step (scanned)."""
    tx = optax.adam(lr)

    def body(carry, i):
        p, opt = carry
        x, y = draw(i)
        loss, grads = jax.value_and_grad(lambda q: jnp.mean((apply(q, x) - y) ** 2))(p)
        upd, opt = tx.update(grads, opt, p)
        return (optax.apply_updates(p, upd), opt), loss

    (params, _), losses = jax.lax.scan(body, (params, tx.init(params)), jnp.arange(steps))
    return params, losses


def invert(key: Array, sample, x_real: Array, x_check: Array, z_check: Array, steps: int):
    """Fit a :class:`mechind.scene_models.ConvEncoder` to invert a generator and apply it.

    ``sample(i) -> (x [B, H, W, 3], z [B, d])``: step ``i``'s fresh samples of the generator
    and the latents they came from; ``(x_check, z_check)``: held-out samples of it
    (standardize the targets and score the inversion). Returns ``(z_hat [N, d]`` of the
    real scenes ``x_real``, R² on the held-out samples, the last training loss)."""
    enc = ConvEncoder(z_check.shape[1])
    p = enc.init(key, x_real[:1])
    p, losses = fit_regressor(enc.apply, p, lambda i: (lambda x, z: (x, _standardize(z, z_check)))(*sample(i)), steps)
    zc = _standardize(z_check, z_check)
    pred = enc.apply(p, x_check)
    r2 = 1 - jnp.sum((pred - zc) ** 2) / jnp.sum((zc - zc.mean(0)) ** 2)
    return enc.apply(p, x_real), r2, losses[-1]


def _standardize(y: Array, ref: Array) -> Array:
    return (y - ref.mean(0)) / jnp.maximum(ref.std(0), 1e-6)


def evaluate(config: GanConfig, state: GanState, data: dict, hp: HParams) -> dict:
    """Identifiability, mask, sample quality and example images (module docstring); the
    Hungarian steps run on the host (:func:`finish`)."""
    a, v, g = config.arch, hp.variant, state.g
    key = data["eval_key"]
    k_val, k_ref, k_fake, k_inv, k_feat, k_featinit, k_invinit, k_ex = jax.random.split(key, 8)
    n, b = config.num_val, config.batch_size
    x_val, z_val, _ = real_batch(config, data, k_val, n, hp.num_domains)
    x_ref, _, _ = real_batch(config, data, k_ref, n, hp.num_domains)

    def fake(k, m):
        ke, ku = jax.random.split(k)
        u = config.dataset.labels(ku, m, hp.num_domains)
        x, z_hat = gan.generate(g, a, jax.random.normal(ke, (m, a.latent_dim)), u, v)
        return x, z_hat, u

    x_fake, z_fake, _ = fake(k_fake, n)

    # identifiability: invert the generator on its own samples, apply to real scenes
    z_real_hat, inv_r2, inv_loss = invert(
        k_invinit, lambda i: fake(jax.random.fold_in(k_inv, i), b)[:2], x_val, x_fake, z_fake, config.inv_steps
    )

    # the floor: principal components of the raw images
    xc = x_val.reshape(n, -1) - x_val.reshape(n, -1).mean(0)
    _, _, vt = jnp.linalg.svd(xc, full_matrices=False)
    pcs = xc @ vt[: a.latent_dim].T

    # sample quality in the feature space of an encoder trained on real scenes
    n_true = z_val.shape[1]
    feat = FeatureNet(config.feat_dim, n_true)
    p_feat = feat.init(k_featinit, x_val[:1])

    def draw_real(i):
        x, z, _ = real_batch(config, data, jax.random.fold_in(k_feat, i), b, hp.num_domains)
        return x, _standardize(z, z_val)

    p_feat, feat_losses = fit_regressor(lambda p, x: feat.apply(p, x)[1], p_feat, draw_real, config.feat_steps)
    f_val, f_ref, f_fake = (feat.apply(p_feat, x)[0] for x in (x_val, x_ref, x_fake))

    # examples: the same noise in each domain (rows), and traversals of each latent
    e = config.num_examples
    rows = min(4, config.max_domains)
    eps_ex = jax.random.normal(k_ex, (e, a.latent_dim))
    u_rows = jnp.arange(rows) % hp.num_domains
    grid = jax.vmap(lambda u: gan.generate(g, a, eps_ex, jnp.full((e,), u), v)[0])(u_rows)
    z0 = gan.prior(g, a, eps_ex[0], jnp.int32(0), v)
    steps = jnp.linspace(-2.0, 2.0, max(e, 2))
    sd = gan.latent_scale(z_fake)
    trav = jax.vmap(lambda i: jax.vmap(lambda t: gan.render(g, a, z0.at[i].add(t * sd[i]), jnp.int32(0), v))(steps))(
        jnp.arange(a.latent_dim)
    )

    return {
        "corr_pearson": metrics.correlation_matrix(z_val, z_real_hat, "pearson"),
        "corr_spearman": metrics.correlation_matrix(z_val, z_real_hat, "spearman"),
        "corr_pca": metrics.correlation_matrix(z_val, pcs, "pearson"),
        "inversion_r2": inv_r2,
        "inversion_loss": inv_loss,
        "feature_loss": feat_losses[-1],
        "fd": metrics.frechet_distance(f_val, f_fake),
        "fd_real": metrics.frechet_distance(f_val, f_ref),
        "kid": metrics.kernel_distance(f_val, f_fake),
        "kid_real": metrics.kernel_distance(f_val, f_ref),
        "importance": g["importance"],
        "latent_scale": sd,
        "uses_mask": hp.mask,
        "has_prior": hp.prior,
        "examples_domains": grid,
        "examples_traversals": trav,
    }


def make_task(config: GanConfig) -> runner.Task:
    """The CG-GAN task (every method and number of domains in one program)."""
    return runner.Task(
        make_data=lambda key, given: make_data(config, key, given),
        init=lambda key, data, hp: init_state(config, key, data, hp),
        step=lambda state, data, hp, i: train_step(config, state, data, hp, i),
        evaluate=lambda state, data, hp: evaluate(config, state, data, hp),
        num_steps=config.num_steps,
        name=f"CG-GAN {config.height}x{config.width} K={config.num_objects}",
        eval_bytes=4 * config.num_val * (config.height * config.width * 3 * 4 + config.num_val),
    )


def finish(m: dict, truth: np.ndarray) -> dict:
    """Host-side results of one run (numpy metrics ``m``): MCC (Pearson, Spearman; all,
    domain-specific, invariant; the PCA floor), mask precision/recall (and the dense
    guess's), FD and KID with their real-vs-real floors, and the example images.

    ``truth [n]``: which true latents are domain-specific. Whether the run learned a mask and
    had a prior at all is in ``m`` (``uses_mask``, ``has_prior``: its method)."""
    uses_mask, has_prior = bool(m["uses_mask"] > 0), bool(m["has_prior"] > 0)
    truth = np.asarray(truth, bool)
    corr = np.asarray(m["corr_pearson"])
    perm = metrics.matched_permutation(corr)  # model latent perm[j] <-> true latent j
    matched = corr[np.arange(len(perm)), perm]
    matched_s = np.asarray(m["corr_spearman"])[np.arange(len(perm)), perm]
    out = {
        "mcc": metrics.mcc_from_corr(corr),
        "mcc_spearman": metrics.mcc_from_corr(np.asarray(m["corr_spearman"])),
        **({"mcc_specific": float(matched[truth].mean())} if truth.any() else {}),
        **({"mcc_invariant": float(matched[~truth].mean())} if (~truth).any() else {}),
        **({"mcc_spearman_specific": float(matched_s[truth].mean())} if truth.any() else {}),
        "mcc_pca": metrics.mcc_from_corr(np.asarray(m["corr_pca"])),
        "inversion_r2": float(m["inversion_r2"]),
        "fd": float(m["fd"]),
        "fd_real": float(m["fd_real"]),
        "kid": float(m["kid"]),
        "kid_real": float(m["kid_real"]),
        "importance": [float(x) for x in np.asarray(m["importance"])],
        # the penalties are scale-free (times the latents' batch std); the scales themselves
        "latent_scale": [float(x) for x in np.asarray(m["latent_scale"])],
    }
    d = corr.shape[1]
    match = -np.ones(d, int)
    match[perm] = np.arange(len(perm))
    i_dim = len(out["importance"])
    dense = np.zeros(d, bool)
    dense[:i_dim] = True
    guess = gan.mask_recovery(dense, truth, match)
    out["mask_precision_dense"], out["mask_recall_dense"] = guess
    if has_prior:  # without a prior no model latent is domain-specific: no mask fields
        learned = dense.copy()
        if uses_mask:
            learned[:i_dim] = np.asarray(m["importance"]) > gan.MASK_THRESHOLD
        out["mask_precision"], out["mask_recall"] = gan.mask_recovery(learned, truth, match)
        out["mask_size"] = int(learned.sum())
    out["examples"] = {k: pack_images(m[f"examples_{k}"]) for k in ("domains", "traversals") if f"examples_{k}" in m}
    return out


def train(key: Array, config: GanConfig) -> tuple[GanState, dict]:
    """One run as a pure function: ``(state, metrics)`` with :func:`finish`'s results."""
    task = make_task(config)
    state, m = jax.jit(runner.make_train(task))(key, hparams(config))
    m = jax.tree.map(np.asarray, m)
    return state, {**m, **finish(m, config.dataset.changing_mask)}
