import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cg import losses
from tests.conftest import random_mlp


def test_fd_penalty_approaches_exact_penalty(x64):
    dec, _ = random_mlp(jax.random.PRNGKey(0), (4, 16, 5))
    z = jax.random.normal(jax.random.PRNGKey(1), (32, 4))
    exact = losses.sparse_mixing_penalty(dec, z, "exact", units="raw")
    errs = [
        abs(float(losses.sparse_mixing_penalty(dec, z, "fd", h, units="raw")) - float(exact))
        for h in (1e-2, 1e-3, 1e-4)
    ]
    assert errs[2] < errs[1] < errs[0] and errs[2] < 1e-3 * float(exact)
    # and by hand: mean over samples of the sum of |J|
    jac = jax.vmap(jax.jacfwd(dec))(z)
    assert float(exact) == pytest.approx(float(jnp.mean(jnp.sum(jnp.abs(jac), (1, 2)))), rel=1e-12)


def test_standardized_penalty_is_jacobian_times_batch_std_and_fd_agrees(x64):
    dec, _ = random_mlp(jax.random.PRNGKey(0), (4, 16, 5))
    z = jax.random.normal(jax.random.PRNGKey(1), (64, 4)) * jnp.array([0.5, 1.0, 2.0, 4.0])
    jac = np.asarray(jax.vmap(jax.jacfwd(dec))(z))
    ref = np.mean(np.sum(np.abs(jac * np.std(np.asarray(z), axis=0)), axis=(1, 2)))
    assert float(losses.sparse_mixing_penalty(dec, z)) == pytest.approx(ref, rel=1e-12)
    assert float(losses.sparse_mixing_penalty(dec, z, "fd", 1e-6)) == pytest.approx(ref, rel=1e-4)


def test_standardized_penalty_is_blind_to_latent_rescaling_raw_is_not(x64):
    """Rescaling latent j by c (decoder reads z_j / c) leaves the same model; only the
    standardized norm sees it as the same, the raw norm falls as the latents grow."""
    dec, _ = random_mlp(jax.random.PRNGKey(2), (3, 16, 4))
    z = jax.random.normal(jax.random.PRNGKey(3), (128, 3))
    c = jnp.array([10.0, 0.2, 3.0])
    dec_scaled = lambda v: dec(v / c)  # noqa: E731
    std0 = losses.sparse_mixing_penalty(dec, z)
    std1 = losses.sparse_mixing_penalty(dec_scaled, z * c)
    assert float(std1) == pytest.approx(float(std0), rel=1e-10)
    big = jnp.array([10.0, 10.0, 10.0])
    raw0 = losses.sparse_mixing_penalty(dec, z, units="raw")
    raw1 = losses.sparse_mixing_penalty(lambda v: dec(v / big), z * big, units="raw")
    assert float(raw1) == pytest.approx(float(raw0) / 10, rel=1e-10)
    # and a sparser decoder scores lower at equal column scales: diagonal vs dense rotation
    rot = jnp.array([[0.6, -0.8], [0.8, 0.6]])
    zz = jax.random.normal(jax.random.PRNGKey(4), (256, 2))
    assert float(losses.sparse_mixing_penalty(lambda v: v, zz)) < float(
        losses.sparse_mixing_penalty(lambda v: rot @ v, zz)
    )


def test_penalty_zero_for_constant_decoder_and_method_check():
    assert float(losses.sparse_mixing_penalty(lambda v: jnp.ones(3), jnp.ones((2, 4)))) == 0.0
    with pytest.raises(ValueError, match="method"):
        losses.sparse_mixing_penalty(lambda v: v, jnp.ones((2, 4)), "sideways")
    with pytest.raises(ValueError, match="units"):
        losses.sparse_mixing_penalty(lambda v: v, jnp.ones((2, 4)), units="metric")
