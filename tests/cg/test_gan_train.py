"""The CG-GAN pipeline: settings, methods as hyper-parameters, the inversion MCC on
generators with a known answer, and the host-side scores on hand-built metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cg import gan_train
from mechind import scenes
from mechind.core import metrics


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"method": "stylegan"}, "method must be one of"),
        ({"i_dim": 5}, "i_dim"),
        ({"latent_dim": 2}, "latent_dim"),
        ({"num_domains": 9}, "num_domains"),
        ({"sparsity_batch": 64}, "sparsity_batch"),
        ({"num_steps": 2.5}, "whole number"),
        ({"delta": 0.0}, "delta"),
    ],
)
def test_bad_settings_fail_clearly(kw, msg):
    with pytest.raises(ValueError, match=msg):
        gan_train.GanConfig(**kw)


def test_each_method_is_a_setting_of_the_hyper_parameters():
    c = gan_train.GanConfig()
    cg = gan_train.hparams(c, "cg_gan", 2)
    assert (float(cg.prior), float(cg.flow), float(cg.mask), float(cg.fd)) == (1, 1, 1, 0)
    assert float(cg.lam_img) == pytest.approx(c.lam_img) and float(cg.lam_mask) == pytest.approx(c.lam_mask)
    assert float(gan_train.hparams(c, "cg_gan_m").lam_mask) == 0 and float(gan_train.hparams(c, "cg_gan_m").mask) == 0
    assert float(gan_train.hparams(c, "no_sparsity").lam_img) == 0
    assert float(gan_train.hparams(c, "cg_gan_fd").fd) == 1
    plain = gan_train.hparams(c, "cgan")
    assert (float(plain.prior), float(plain.concat), float(plain.lam_img)) == (0, 1, 0)
    with pytest.raises(ValueError, match="num_domains"):
        gan_train.hparams(c, "cg_gan", 0)


def _inversion_mcc(mix: np.ndarray, steps: int = 300) -> float:
    """MCC of the inversion of the true renderer whose latents are ``mix @ z``: it must be
    high when ``mix`` is the identity (the generator's latents are the true ones)."""
    r = scenes.Renderer(1, 8, 8, ("circle",))
    law = scenes.SceneLaw(r, size_range=(0.15, 0.3))
    mix = jnp.asarray(mix, jnp.float32)

    def sample(i):
        z = law.propose(jax.random.fold_in(jax.random.PRNGKey(1), i), (32,))
        return scenes.render_batch(r, z), z.reshape(32, -1) @ mix.T

    z_real = law.propose(jax.random.PRNGKey(2), (512,))
    x_real = scenes.render_batch(r, z_real)
    z_check = law.propose(jax.random.PRNGKey(3), (256,))
    x_check = scenes.render_batch(r, z_check)
    run = jax.jit(
        lambda: gan_train.invert(
            jax.random.PRNGKey(0), sample, x_real, x_check, z_check.reshape(256, -1) @ mix.T, steps
        )
    )
    z_hat, r2, _ = run()
    assert float(r2) > 0.8  # the encoder inverts whatever generator it is given
    return metrics.mcc(z_real.reshape(512, -1), z_hat)


@pytest.mark.slow  # two encoders trained: about 8 s (suite time)
def test_inversion_mcc_is_high_for_the_true_generator_and_low_for_a_mixing_one():
    identity = _inversion_mcc(np.eye(4))
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    rotation = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])  # mixes x and y
    mixed = _inversion_mcc(rotation)
    assert identity > 0.9, identity
    assert mixed < identity - 0.1, (mixed, identity)


def test_finish_matches_latents_then_scores_the_mask_on_hand_built_metrics():
    truth = np.array([False, False, True, True])
    # true latents 0, 1, 2, 3 are explained by model latents 2, 0, 3, 1
    corr = np.eye(4)[[2, 0, 3, 1]] * 0.9 + 0.01
    m = {
        "corr_pearson": corr,
        "corr_spearman": corr,
        "corr_pca": np.full((4, 4), 0.2),
        "inversion_r2": 0.9,
        "fd": 1.0,
        "fd_real": 0.1,
        "kid": 0.5,
        "kid_real": 0.0,
        # model latents 1 and 3 kept: matched to true latents 3 and 2, the domain-specific ones
        "importance": np.array([0.05, 0.5, 0.02, 0.6]),
        "uses_mask": 1.0,
        "has_prior": 1.0,
        "latent_scale": np.array([1.0, 2.0, 0.5, 1.5]),
    }
    out = gan_train.finish(m, truth)
    assert out["mcc"] == pytest.approx(0.91)
    assert (out["mask_precision"], out["mask_recall"]) == (1.0, 1.0)
    wrong = gan_train.finish({**m, "importance": np.array([0.5, 0.05, 0.6, 0.02])}, truth)
    assert (wrong["mask_precision"], wrong["mask_recall"]) == (0.0, 0.0)
    assert (out["mask_precision_dense"], out["mask_recall_dense"]) == (0.5, 1.0)
    assert out["mask_size"] == 2 and out["latent_scale"] == [1.0, 2.0, 0.5, 1.5]
    assert out["mcc_pca"] == pytest.approx(0.2)
    plain = gan_train.finish({**m, "has_prior": 0.0, "uses_mask": 0.0}, truth)
    assert "mask_precision" not in plain  # no latent of a plain cGAN is domain-specific
