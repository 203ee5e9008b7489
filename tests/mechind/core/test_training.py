"""The shared training step's pieces against independent computations: optax's own Adam,
hand-applied scalings, closed-form and numerically integrated KLs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import integrate, stats

from mechind.core import training


def _grads(i):
    k = jax.random.PRNGKey(i)
    return {"w": jax.random.normal(k, (3, 2)), "mask": jax.random.normal(jax.random.fold_in(k, 1), (2,))}


def _run(tx, opt, params, steps=8):
    for i in range(steps):
        updates, opt = tx.update(_grads(i), opt, params)
        params = optax.apply_updates(params, updates)
    return params


PARAMS = {"w": jnp.ones((3, 2)), "mask": jnp.full((2,), 5.0)}


def test_adam_with_a_drop_is_optax_adam_with_that_schedule_bit_for_bit():
    lr, drop_at = 3e-2, 4
    ref_tx = optax.adam(lambda c: lr * jnp.where(c < drop_at, 1.0, 0.1))
    ref = _run(ref_tx, ref_tx.init(PARAMS), PARAMS)
    tx = training.adam(drop_at=drop_at)
    state = training.init_state(tx, PARAMS, lr, jax.random.PRNGKey(0))
    ours = _run(tx, state.opt, PARAMS)
    for k in PARAMS:
        np.testing.assert_array_equal(ours[k], ref[k])
    assert float(training.learning_rate(state)) == pytest.approx(lr)


def test_leaf_scale_multiplies_only_that_leaf_after_adam():
    lr, mult = 1e-2, 7.0
    ref_tx = optax.adam(lr)
    opt, params = ref_tx.init(PARAMS), PARAMS
    for i in range(5):  # the hand-written form the mechanism-sparsity step used
        updates, opt = ref_tx.update(_grads(i), opt, params)
        params = optax.apply_updates(params, {**updates, "mask": mult * updates["mask"]})
    tx = training.adam(scale_leaves={"mask": mult})
    ours = _run(tx, training.init_state(tx, PARAMS, lr, jax.random.PRNGKey(0)).opt, PARAMS, steps=5)
    for k in PARAMS:
        np.testing.assert_array_equal(ours[k], params[k])


def test_per_run_learning_rates_vmap_like_separate_optimizers():
    lrs = jnp.array([1e-3, 1e-1])
    tx = training.adam()

    def run(lr):
        state = training.init_state(tx, PARAMS, lr, jax.random.PRNGKey(0))
        for i in range(3):
            state = training.apply_gradients(tx, state, _grads(i))
        return state.params

    both = jax.vmap(run)(lrs)
    for r, lr in enumerate([1e-3, 1e-1]):
        ref_tx = optax.adam(lr)
        ref = _run(ref_tx, ref_tx.init(PARAMS), PARAMS, steps=3)
        np.testing.assert_allclose(both["w"][r], ref["w"], rtol=1e-6)


def test_apply_gradients_replaces_the_extra_fields():
    tx = training.adam()
    s = training.init_state(tx, PARAMS, 0.1, jax.random.PRNGKey(3), extra=jnp.zeros(()))
    s2 = training.apply_gradients(tx, s, _grads(0), extra=jnp.ones(()))
    assert float(s2.extra) == 1.0 and not np.array_equal(s2.params["w"], s.params["w"])
    np.testing.assert_array_equal(s2.key, s.key)


def test_step_keys_and_minibatch():
    key = jax.random.PRNGKey(5)
    kb, kn = training.step_keys(key, jnp.int32(7))
    ref = jax.random.split(jax.random.fold_in(key, 7))
    np.testing.assert_array_equal(kb, ref[0])
    np.testing.assert_array_equal(kn, ref[1])
    data = {"x": jnp.arange(50.0)[:, None] * jnp.ones((1, 3)), "u": jnp.arange(50), "other": jnp.zeros(9)}
    b = training.minibatch(kb, data, ("x", "u"), 200, 50)
    assert set(b) == {"x", "u"} and b["x"].shape == (200, 3)
    np.testing.assert_array_equal(b["x"][:, 0], b["u"])  # the same rows of every array
    counts = np.bincount(np.asarray(b["u"]), minlength=50)
    assert counts.sum() == 200 and stats.chisquare(counts).pvalue > 1e-4  # uniform with replacement


@pytest.mark.parametrize("mq,vq,mp,vp", [(0.3, 0.5, -1.0, 2.0), (0.0, 1.0, 0.0, 1.0), (2.0, 0.1, 0.5, 0.7)])
def test_gaussian_kl_matches_numerical_integration(mq, vq, mp, vp):
    q, p = stats.norm(mq, np.sqrt(vq)), stats.norm(mp, np.sqrt(vp))
    lo, hi = mq - 12 * np.sqrt(vq), mq + 12 * np.sqrt(vq)
    num = integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), lo, hi, epsabs=1e-12)[0]
    ours = training.gaussian_kl(jnp.float32(mq), jnp.float32(vq), jnp.float32(mp), jnp.float32(vp))
    assert float(ours) == pytest.approx(num, abs=1e-5)
    with_logs = training.gaussian_kl(mq, vq, mp, vp, np.log(vq), np.log(vp))
    assert float(with_logs) == pytest.approx(num, abs=1e-5)


def test_gaussian_kl_summed_over_an_axis_is_the_sum_of_its_terms():
    g = np.random.default_rng(0)
    mq, mp = g.normal(size=(4, 3)), g.normal(size=(4, 3))
    vq, vp = g.uniform(0.2, 2.0, (4, 3)), g.uniform(0.2, 2.0, (4, 3))
    per = np.asarray(training.gaussian_kl(mq, vq, mp, vp))
    summed = np.asarray(training.gaussian_kl(mq, vq, mp, vp, np.log(vq), np.log(vp), axis=-1))
    np.testing.assert_allclose(summed, per.sum(-1), rtol=1e-6)
    closed = 0.5 * (np.log(vp / vq) + (vq + (mq - mp) ** 2) / vp - 1).sum(-1)  # the textbook formula, float64
    np.testing.assert_allclose(summed, closed, rtol=1e-5)


def test_a_misspelt_scaled_leaf_is_an_error_not_a_silent_no_op():
    tx = training.adam(scale_leaves={"mask_typo": 2.0})
    with pytest.raises(ValueError, match="'mask_typo', which is not a top-level parameter"):
        training.init_state(tx, PARAMS, 0.1, jax.random.PRNGKey(0))
