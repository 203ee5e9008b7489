"""The image slot-autoencoder pipeline: its loss against an independent computation (the
contrast from jax.jacfwd of the decoder), its data route, its config errors, the 8-bit
example images, and one short run end to end (slow)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mechind import losses, scene_models, scene_train, scenes

TINY = dict(height=8, width=8, num_train=64, num_val=20, batch_size=8, num_steps=4, enc_channels=4, enc_hidden=8)


def test_loss_is_mse_plus_lambda_times_the_contrast_of_jacfwd():
    cfg = scene_train.SceneSlotConfig(**TINY, dec_hidden=(8,), occlusion=1.0)
    nets = scene_train.make_nets(cfg)
    hp = scene_train.HParams(jnp.float32(0.5), jnp.float32(1e-3))
    state = scene_train.init_state(cfg, nets, jax.random.PRNGKey(0), None, hp)
    z = cfg.dataset.law.sample(jax.random.PRNGKey(1), 6)
    x = scenes.render_batch(nets.renderer, z)
    value, (rec, cc) = jax.jit(lambda p: scene_train.loss(cfg, nets, p, x, 0.5, True))(state.params)

    @jax.jit
    def independent(p):  # the encoder's standardized latents, the decoder, the generic Jacobian
        zh = nets.enc.apply({"params": p["enc"]}, x)
        zh = (zh - zh.mean(0)) / (zh.std(0) + 1e-6)
        dec = lambda u: scene_models.decode(p["dec"], u, 2, 8, 8, "alpha")  # noqa: E731
        jac = jax.vmap(jax.jacfwd(dec))(zh)
        rec = jnp.mean((x.reshape(6, -1) - jax.vmap(dec)(zh)) ** 2)
        return rec, losses.compositional_contrast(jac, (4, 4)), losses.compositional_contrast(jac[:3], (4, 4))

    want_rec, want_cc, want_cc3 = independent(state.params)
    np.testing.assert_allclose([rec, cc, value], [want_rec, want_cc, want_rec + 0.5 * want_cc], rtol=2e-4)
    # a contrast batch takes the first scenes of the (random) minibatch
    sub = dataclasses.replace(cfg, contrast_batch=3)
    _, (_, cc3) = jax.jit(lambda p: scene_train.loss(sub, nets, p, x, 0.5, True))(state.params)
    np.testing.assert_allclose(cc3, want_cc3, rtol=2e-4)


def test_data_route_draws_latents_or_takes_them_given():
    cfg = scene_train.SceneSlotConfig(**TINY)
    d = scene_train.make_data(cfg, jax.random.PRNGKey(0))
    assert d["z_train"].shape == (64, 2, 4) and d["z_val"].shape == (20, 2, 4)
    z = np.asarray(jnp.concatenate([d["z_train"], d["z_val"]]))
    np.testing.assert_array_equal(scene_train.make_data(cfg, jax.random.PRNGKey(5), {"z": z})["z_val"], d["z_val"])
    with pytest.raises(ValueError, match="does not fit"):
        scene_train.make_data(cfg, jax.random.PRNGKey(0), {"z": z[:10]})


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(composition="max"), "composition"),
        (dict(contrast_batch=99), "contrast_batch"),
        (dict(occlusion=1.5), "occlusion"),
        (dict(num_objects=0), "num_objects"),
        (dict(dec_hidden=()), "dec_hidden"),
        (dict(num_steps=2.5), "whole number"),
        (dict(num_train=4), "num_train"),
        (dict(num_examples=50), "num_examples"),
    ],
)
def test_bad_configs_fail_clearly(bad, match):
    with pytest.raises(ValueError, match=match):
        scene_train.SceneSlotConfig(**{**TINY, **bad})


def test_example_images_round_trip_to_8_bits():
    imgs = np.random.default_rng(0).uniform(size=(2, 3, 4, 3)).astype(np.float32)
    back = scene_train.unpack_images(scene_train.pack_images(imgs))
    assert back.shape == imgs.shape and np.abs(back - imgs).max() <= 0.5 / 255 + 1e-7
    assert np.all(scene_train.unpack_images(scene_train.pack_images(np.array([-1.0, 2.0]))) == [0.0, 1.0])


@pytest.mark.slow
def test_a_short_run_end_to_end():
    cfg = scene_train.SceneSlotConfig(**TINY, lam=0.1, contrast_batch=4, num_examples=2)
    _, m = scene_train.train(jax.random.PRNGKey(0), cfg)
    assert -1.0 <= m["sis"] <= 1.0 and np.isfinite(m["recon_r2"]) and m["c_comp"] > 0
    assert np.asarray(m["sis_r2"]).shape == (2, 2)
    assert scene_train.unpack_images(m["examples"]["slots"]).shape == (2, 2, 8, 8, 3)
