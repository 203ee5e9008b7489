"""Slot autoencoders on rendered scenes: reconstruction + lambda * compositional contrast on
the decoder's image Jacobian, on the shared runner (seeds and lambda vmapped).

The data are latents drawn from :class:`mechind.scenes.ScenesSpec`; each step renders its
minibatch (rendering is exact and cheap, so 72k images of 64 x 64 never sit in memory per
run). A run is one seed and one (lambda, lr), as in :mod:`mechind.train`, whose
standardized latents, lambda warm-up, per-run hyper-parameters, restarts, metrics and
contrast diagnostics this pipeline shares::

    from mechind import scene_train
    state, metrics = scene_train.train(jax.random.PRNGKey(0), scene_train.SceneSlotConfig(lam=1.0))
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mechind import losses, scene_models, scenes
from mechind import train as slot_train
from mechind.core import metrics, runner, training

Array = jax.Array

# shared with the MLP slot pipeline: per-run hyper-parameters and restarts
HParams = slot_train.HParams
hparams = slot_train.hparams
select_restarts = slot_train.select_restarts


def finish(m: dict) -> dict:
    """Host-side metrics of one run: :func:`mechind.train.finish`'s, SIS up to a permutation per
    scene (``sis_scene``, :func:`mechind.core.metrics.sis_per_scene_r2`), and the example scenes,
    reconstructions and per-slot decodings as 8-bit images (:func:`pack_images`)."""
    out = slot_train.finish(m)
    if "scenes_placed" in m:  # the share of scenes drawn with a placement the occlusion level allows
        out["scenes_placed"] = float(m["scenes_placed"])
    if "sis_scene_on" in m:
        out["sis_scene"] = metrics.sis_from_per_scene(m["sis_scene_on"], m["sis_scene_off"])
    if "examples_x" in m:
        out["examples"] = {k: pack_images(m[f"examples_{k}"]) for k in ("x", "recon", "slots")}
    return out


def pack_images(images) -> dict:
    """Images in [0, 1] (any shape) as JSON-able 8-bit data: ``{"shape", "b64"}``."""
    a = np.clip(np.round(np.asarray(images, np.float64) * 255), 0, 255).astype(np.uint8)
    return {"shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def unpack_images(packed: dict) -> np.ndarray:
    """The inverse of :func:`pack_images` (to 1/255): float images in [0, 1]."""
    a = np.frombuffer(base64.b64decode(packed["b64"]), np.uint8).reshape(packed["shape"])
    return a.astype(np.float32) / 255.0


@dataclasses.dataclass(frozen=True)
class SceneSlotConfig:
    """Everything that defines a run on rendered scenes; validated on construction.

    The scene settings (``num_objects`` to ``shadow``) are those of the dataset,
    :attr:`dataset` (a :class:`mechind.scenes.ScenesSpec`); each slot has the 4 latents of
    an object. ``lam`` and ``lr`` are per-run data in a sweep (vmapped).
    """

    num_objects: int = 2  # K: objects in a scene = slots of the model
    height: int = 16
    width: int = 16
    occlusion: float = 1.0  # 0: no pixel touched by two objects (Type D); 1: free placement
    shadow: float = 0.0  # cast-shadow darkening (0: none)
    composition: str = "alpha"  # "alpha" (depth-ordered, the renderer's class) or "sum" (additive)
    enc_channels: int = 32  # channels of the encoder's stride-2 convolutions
    enc_hidden: int = 128  # the encoder's dense layer
    dec_hidden: tuple[int, ...] = (32, 32)  # per-pixel MLP widths of each slot's decoder
    num_train: int = 72_000  # training scenes (Brady et al.: 80,000 minus validation)
    num_val: int = 8_000  # held-out scenes for SIS / R²
    batch_size: int = 64
    num_steps: int = 115_000  # Brady et al.'s sprite training length
    lr: float = 1e-3  # Adam, divided by 10 at lr_drop of training
    lr_drop: float = 0.5
    lam: float = 0.0  # weight of compositional contrast
    lam_warmup: float = 0.0  # fraction of training over which lambda ramps up from 0
    latent_norm: str = "batch"  # as in mechind.train: "batch" or "none"
    norm_ref: int = 8_192  # training scenes whose statistics standardize latents at evaluation
    sis_fit_frac: float = 0.8
    contrast_eval_samples: int = 256  # validation scenes on which C_comp is reported
    # scenes of each minibatch on which the training contrast is computed (0: all of them,
    # Brady et al.'s form); a random subset (the minibatch is random) gives an unbiased
    # estimate of the same penalty at a fraction of the Jacobian's cost
    contrast_batch: int = 0
    num_examples: int = 3  # validation scenes whose reconstructions each record keeps (figures)

    def __post_init__(self):
        self.dataset  # validates the scenes
        for msg in runner.whole_number_errors(self):
            raise ValueError(msg)
        checks = [
            (
                self.composition in scene_models.COMPOSITIONS,
                f"composition must be one of {scene_models.COMPOSITIONS}, got {self.composition!r}",
            ),
            *slot_train.training_checks(self),
            (self.enc_channels >= 1 and self.enc_hidden >= 1, "enc_channels and enc_hidden must be >= 1"),
            (
                len(self.dec_hidden) >= 1 and all(h >= 1 for h in self.dec_hidden),
                f"dec_hidden must be a non-empty tuple of positive widths, got {self.dec_hidden}",
            ),
            (
                0 <= self.contrast_batch <= self.batch_size,
                f"contrast_batch must lie in [0, batch_size={self.batch_size}], got {self.contrast_batch}",
            ),
            (0 <= self.num_examples <= self.num_val, f"num_examples must lie in [0, num_val], got {self.num_examples}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @property
    def dataset(self) -> scenes.ScenesSpec:
        """The scenes these settings draw (their fields are this config's of the same names)."""
        return scenes.ScenesSpec(
            num_objects=self.num_objects,
            height=self.height,
            width=self.width,
            occlusion=self.occlusion,
            shadow=self.shadow,
        )

    @property
    def slot_sizes(self) -> tuple[int, ...]:
        return self.dataset.slot_sizes

    def replace(self, **kw) -> "SceneSlotConfig":
        return dataclasses.replace(self, **kw)


class Nets(NamedTuple):
    """The static parts of a config's runs (no arrays): the encoder, the renderer and Adam."""

    enc: Any
    renderer: scenes.Renderer
    tx: optax.GradientTransformation


def make_nets(config: SceneSlotConfig) -> Nets:
    enc = scene_models.ConvEncoder(scenes.OBJECT_DIM * config.num_objects, config.enc_channels, config.enc_hidden)
    return Nets(enc, config.dataset.renderer, training.adam(drop_at=int(config.lr_drop * config.num_steps)))


def decoder_fn(config: SceneSlotConfig, dec_params: dict):
    """The decoder as a generator ``[K * 4] -> [H * W * 3]`` (what the criteria take)."""
    return lambda z: scene_models.decode(
        dec_params, z, config.num_objects, config.height, config.width, config.composition
    )


def decoder_jacobian(config: SceneSlotConfig, dec_params: dict, z: Array) -> Array:
    """``z [B, K * 4] -> [B, H * W * 3, K * 4]``, slot by slot (:func:`scene_models.jacobian`)."""
    k, h, w, c = config.num_objects, config.height, config.width, config.composition
    return jax.vmap(lambda v: scene_models.jacobian(dec_params, v, k, h, w, c))(z)


def encode(config: SceneSlotConfig, enc, params: dict, x: Array, ref: Array | None = None) -> Array:
    """Inferred latents ``[N, K * 4]`` of images ``x [N, H, W, 3]`` (standardized as in
    :func:`mechind.train.encode`)."""
    z = enc.apply({"params": params["enc"]}, x)
    if config.latent_norm == "none":
        return z
    return slot_train.standardize(z, None if ref is None else enc.apply({"params": params["enc"]}, ref))


def make_data(config: SceneSlotConfig, key: Array, given: dict | None = None) -> dict:
    """``z_train [N, K, 4]`` and ``z_val [M, K, 4]`` (latents; images are rendered from them
    when needed). ``given``: ``{"z": [N + M, K, 4]}`` (e.g. host-drawn); ``None``: drawn from
    :attr:`SceneSlotConfig.dataset`'s law with ``fold_in(key, 0)``."""
    n, m = config.num_train, config.num_val
    if given is None:
        z, placed = config.dataset.law.sample_with_acceptance(jax.random.fold_in(key, 0), n + m)
    else:
        z, placed = jnp.asarray(given["z"]), jnp.ones(n + m, bool)
    if z.size != (n + m) * config.dataset.renderer.latent_dim:
        raise ValueError(f"given z of shape {tuple(z.shape)} does not fit [{n + m}, {config.num_objects}, 4]")
    z = z.reshape(n + m, config.num_objects, scenes.OBJECT_DIM)
    # inside a run a scene without a valid placement cannot raise: its share is recorded
    return {"z_train": z[:n], "z_val": z[n:], "placed": jnp.mean(placed)}


def init_state(config: SceneSlotConfig, nets: Nets, key: Array, data: dict, hp: HParams) -> training.TrainState:
    k_init = jax.random.fold_in(key, 1)
    if hp.restart is not None:
        k_init = jnp.where(hp.restart > 0, jax.random.fold_in(k_init, hp.restart), k_init)
    ke, kd = jax.random.split(k_init)
    params = {
        "enc": nets.enc.init(ke, jnp.zeros((config.height, config.width, 3)))["params"],
        "dec": scene_models.init_decoder(kd, config.num_objects, scenes.OBJECT_DIM, config.dec_hidden),
    }
    return training.init_state(nets.tx, params, hp.lr, jax.random.fold_in(key, 2))


def loss(config: SceneSlotConfig, nets: Nets, params: dict, x: Array, lam: Array, with_contrast: bool):
    """``(MSE + lam * C_comp, (MSE, C_comp))`` of images ``x [B, H, W, 3]``."""
    z_hat = encode(config, nets.enc, params, x)
    x_hat = jax.vmap(decoder_fn(config, params["dec"]))(z_hat)
    rec = losses.mse(x.reshape(x.shape[0], -1), x_hat)
    if not with_contrast:
        return rec, (rec, jnp.zeros(()))
    m = config.contrast_batch or x.shape[0]
    cc = scene_models.compositional_contrast(
        params["dec"], z_hat[:m], config.num_objects, config.height, config.width, config.composition
    )
    return rec + lam * cc, (rec, cc)


def train_step(config, nets: Nets, with_contrast: bool, state: training.TrainState, data: dict, hp: HParams, i):
    """One Adam step on a minibatch of scenes rendered from step ``i``'s latents."""
    batch = training.minibatch(training.step_key(state.key, i), data, ("z_train",), config.batch_size, config.num_train)
    x = scenes.render_batch(nets.renderer, batch["z_train"])
    lam = slot_train.lam_ramp(hp.lam, i, config.num_steps, config.lam_warmup)
    (value, _), grads = jax.value_and_grad(loss, argnums=2, has_aux=True)(
        config, nets, state.params, x, lam, with_contrast
    )
    return training.apply_gradients(nets.tx, state, grads), value


def evaluate(config: SceneSlotConfig, nets: Nets, state: training.TrainState, data: dict, hp: HParams) -> dict:
    """Held-out metrics with :func:`mechind.train.finish`'s fields: SIS's R² matrix,
    reconstruction, the contrast three ways, the latent scale, the training objective."""
    p = state.params
    n_ref = min(config.norm_ref, config.num_train)
    x_ref = scenes.render_batch(nets.renderer, data["z_train"][:n_ref])
    x = scenes.render_batch(nets.renderer, data["z_val"])
    z_hat = encode(config, nets.enc, p, x, x_ref)
    decode = decoder_fn(config, p["dec"])
    xf = x.reshape(x.shape[0], -1)
    x_hat = jax.lax.map(decode, z_hat, batch_size=256)
    ss_res, ss_tot = jnp.sum((xf - x_hat) ** 2), jnp.sum((xf - xf.mean(0)) ** 2)
    m = min(config.contrast_eval_samples, config.num_val)
    z_ref = encode(config, nets.enc, p, x_ref, x_ref)
    x_ref_hat = jax.lax.map(decode, z_ref, batch_size=256)
    objective = losses.mse(x_ref.reshape(n_ref, -1), x_ref_hat) + hp.lam * losses.compositional_contrast(
        decoder_jacobian(config, p["dec"], z_ref[:m]), config.slot_sizes
    )
    sizes = config.slot_sizes
    z_slots = z_hat.reshape(config.num_val, config.num_objects, -1)
    e = config.num_examples
    examples = jax.vmap(
        lambda v: scene_models.slot_decodings(
            p["dec"], v, config.num_objects, config.height, config.width, config.composition
        )
    )(z_hat[:e])
    return {
        "examples_x": x[:e],
        "examples_recon": x_hat[:e].reshape(x[:e].shape),
        "examples_slots": examples,
        "sis_r2": metrics.sis_r2_matrix(data["z_val"], z_slots, fit_frac=config.sis_fit_frac),
        # slots identified up to a permutation per scene (Brady et al.'s sprite protocol)
        **dict(
            zip(
                ("sis_scene_on", "sis_scene_off"),
                metrics.sis_per_scene_r2(data["z_val"], z_slots, fit_frac=config.sis_fit_frac),
            )
        ),
        "recon_r2": 1.0 - ss_res / ss_tot,
        "val_mse": losses.mse(xf, x_hat),
        "scenes_placed": data["placed"],
        "objective": objective,
        **slot_train.contrast_diagnostics(decode, z_hat, xf, sizes, m),
    }


def make_task(config: SceneSlotConfig, with_contrast: bool | None = None) -> runner.Task:
    """The scene slot-autoencoder task (``with_contrast`` static, default ``config.lam > 0``)."""
    if with_contrast is None:
        with_contrast = config.lam > 0
    nets = make_nets(config)
    name = f"K={config.num_objects} occ={config.occlusion:g}" + (" +C_comp" if with_contrast else "")
    n_fit = int(round(config.sis_fit_frac * config.num_val))
    return runner.Task(
        make_data=lambda key, given: make_data(config, key, given),
        init=lambda key, data, hp: init_state(config, nets, key, data, hp),
        step=lambda state, data, hp, i: train_step(config, nets, with_contrast, state, data, hp, i),
        evaluate=lambda state, data, hp: evaluate(config, nets, state, data, hp),
        num_steps=config.num_steps,
        name=name,
        # SIS: one n_fit x n_fit kernel at a time; the per-scene SIS holds K factors and K kernels
        eval_bytes=(2 + 2 * config.num_objects) * 4 * n_fit * n_fit,
    )


def reconstructions(config: SceneSlotConfig, params: dict, z_true: Array, ref: Array) -> dict:
    """For figures: scenes of ``z_true [N, K, 4]``, their reconstructions and per-slot
    decodings (``ref [M, K, 4]``: latents whose renders standardize the encoder's output)."""
    r = config.dataset.renderer
    nets = make_nets(config)
    x = scenes.render_batch(r, z_true)
    z_hat = encode(config, nets.enc, params, x, scenes.render_batch(r, ref))
    shape = (config.height, config.width, 3)
    recon = jax.vmap(decoder_fn(config, params["dec"]))(z_hat).reshape(-1, *shape)
    slots = jax.vmap(
        lambda v: scene_models.slot_decodings(
            params["dec"], v, config.num_objects, config.height, config.width, config.composition
        )
    )(z_hat)
    return {"x": x, "recon": recon, "slots": slots}


def train(key: Array, config: SceneSlotConfig) -> tuple[Any, dict]:
    """One run as a pure function: ``(state, metrics)``; metrics include ``sis``."""
    task = make_task(config)
    state, m = jax.jit(runner.make_train(task))(key, HParams(jnp.float32(config.lam), jnp.float32(config.lr)))
    return state, {**m, **finish(m)}
