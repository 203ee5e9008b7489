import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler

from mechind.core import metrics


def _sklearn_r2_matrix(z, z_hat, fit_frac=0.8):
    n = z.shape[0]
    nf = int(round(fit_frac * n))
    k = z.shape[1]
    out = np.zeros((k, z_hat.shape[1]))
    for j in range(z_hat.shape[1]):
        sx = StandardScaler().fit(z_hat[:nf, j])
        xf, xe = sx.transform(z_hat[:nf, j]), sx.transform(z_hat[nf:, j])
        for i in range(k):
            sy = StandardScaler().fit(z[:nf, i])
            yf, ye = sy.transform(z[:nf, i]), sy.transform(z[nf:, i])
            kr = KernelRidge(alpha=1.0, kernel="rbf", gamma=1.0 / z_hat.shape[2]).fit(xf, yf)
            out[i, j] = r2_score(ye, kr.predict(xe))
    return out


def _slotwise_map(z, key):
    """A random invertible nonlinear map applied slot by slot, slots permuted."""
    k, d = z.shape[1], z.shape[2]
    a = jax.random.normal(key, (k, d, d)) + 2 * jnp.eye(d)
    h = jnp.einsum("nkd,ked->nke", z, a)
    h = h + 0.3 * jnp.tanh(h)
    return h[:, jnp.asarray(np.random.default_rng(0).permutation(k))]


def test_sis_r2_matches_sklearn():
    z = jax.random.normal(jax.random.PRNGKey(0), (500, 3, 3))
    z_hat = _slotwise_map(z, jax.random.PRNGKey(1)) + 0.3 * jax.random.normal(jax.random.PRNGKey(2), z.shape)
    ours = np.asarray(metrics.sis_r2_matrix(z, z_hat))
    ref = _sklearn_r2_matrix(np.asarray(z, float), np.asarray(z_hat, float))
    np.testing.assert_allclose(ours, ref, atol=1e-3)
    rows, cols = linear_sum_assignment(-np.clip(ref, 0, None))
    ref_sis = np.mean(
        [np.clip(ref, 0, None)[i, j] - np.delete(np.clip(ref, 0, None)[i], j).max() for i, j in zip(rows, cols)]
    )
    assert metrics.slot_identifiability_score(z, z_hat) == pytest.approx(ref_sis, abs=1e-3)


def test_sis_known_cases():
    z = jax.random.normal(jax.random.PRNGKey(0), (1000, 3, 3))
    good = metrics.slot_identifiability_score(z, _slotwise_map(z, jax.random.PRNGKey(1)))
    # every inferred slot mixes every true slot: no slot is identified
    w = jax.random.normal(jax.random.PRNGKey(2), (9, 9))
    mixed = metrics.slot_identifiability_score(z, jnp.tanh(z.reshape(1000, 9) @ w).reshape(1000, 3, 3))
    noise = metrics.slot_identifiability_score(z, jax.random.normal(jax.random.PRNGKey(3), z.shape))
    assert good > 0.8
    assert abs(mixed) < 0.15 and abs(noise) < 0.05


def test_sis_from_r2_hand_built():
    r2 = np.array([[0.1, 0.9], [0.8, 0.2]])
    assert metrics.sis_from_r2(r2) == pytest.approx(((0.9 - 0.1) + (0.8 - 0.2)) / 2)
    assert metrics.sis_from_r2(np.array([[-0.5, 0.7], [0.6, -2.0]])) == pytest.approx(0.65)  # clipped at 0
    assert np.isnan(metrics.sis_from_r2(np.array([[np.nan, 0.0], [0.0, 1.0]])))


def test_mcc_against_scipy_and_known_cases():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 4))
    perm_scaled = z[:, [2, 0, 3, 1]] * np.array([3.0, -0.5, 2.0, -7.0]) + 1.0
    assert metrics.mcc(z, perm_scaled) == pytest.approx(1.0, abs=1e-5)
    z_hat = z @ rng.normal(size=(4, 4)) + 0.5 * rng.normal(size=(2000, 4))
    ref = np.abs(np.corrcoef(z.T, z_hat.T)[:4, 4:])
    r, c = linear_sum_assignment(-ref)
    assert metrics.mcc(z, z_hat) == pytest.approx(ref[r, c].mean(), abs=1e-5)
    rho = np.abs(spearmanr(z, np.exp(z_hat)).statistic[:4, 4:])
    r, c = linear_sum_assignment(-rho)
    assert metrics.mcc(z, np.exp(z_hat), method="spearman") == pytest.approx(rho[r, c].mean(), abs=1e-4)
    # monotone transforms do not change Spearman
    assert metrics.mcc(z, np.exp(perm_scaled / 10), method="spearman") == pytest.approx(1.0, abs=1e-5)
    assert metrics.mcc(z, rng.normal(size=(2000, 4))) < 0.1


def test_metric_bad_input():
    with pytest.raises(ValueError, match="\\[N, K, d\\]"):
        metrics.slot_identifiability_score(np.ones((10, 6)), np.ones((10, 2, 3)))
    with pytest.raises(ValueError, match="same N"):
        metrics.mcc(np.ones((10, 2)), np.ones((9, 2)))
    with pytest.raises(ValueError, match="method"):
        metrics.mcc(np.ones((10, 2)), np.ones((10, 2)), method="kendall")
    with pytest.raises(ValueError, match="fit_frac"):
        metrics.sis_r2_matrix(jnp.ones((10, 2, 3)), jnp.ones((10, 2, 3)), fit_frac=0.01)


def test_support_f1_on_hand_built_cases():
    from mechind.core import metrics as m

    support = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], bool)
    jac = support * np.array([2.0, 0.5, 3.0])  # scales per latent do not matter
    perm = np.array([2, 0, 1])  # learned column 2 is true latent 0, ...
    learned = jac[:, np.argsort(perm)]
    assert m.support_f1(learned, support, perm) == 1.0
    # one extra edge above threshold: precision 4/5, recall 1
    extra = learned.copy()
    extra[2, perm[0]] = 1.0
    assert m.support_f1(extra, support, perm) == pytest.approx(2 * 0.8 / 1.8)
    # an entry below 10 % of its column's max is not an edge
    small = learned.copy()
    small[2, perm[0]] = 0.1
    assert m.support_f1(small, support, perm) == 1.0
    corr = np.array([[0.1, 0.0, 0.9], [0.8, 0.1, 0.0], [0.0, -0.95, 0.1]])
    assert m.matched_permutation(corr).tolist() == [2, 0, 1]


def test_support_auroc_on_hand_built_cases_and_against_sklearn():
    from sklearn.metrics import roc_auc_score

    support = np.array([[1, 0], [1, 1], [0, 1]], bool)
    perm = np.array([1, 0])  # learned column 1 is true latent 0
    learned = np.array([[0.0, 2.0], [1.0, 4.0], [3.0, 0.1]])  # true latent 0 -> column 1
    assert metrics.support_auroc(learned, support, perm) == 1.0
    assert metrics.support_auroc(np.ones((3, 2)), support, perm) == 0.5  # the dense guess
    assert metrics.support_auroc(learned[:, ::-1], support, np.arange(2)) == 1.0  # the same, relabelled
    flipped = np.array([[0.0, 3.0], [0.1, 0.1], [3.0, 0.0]])  # every zero scored above every edge
    assert metrics.support_auroc(flipped, support, np.arange(2)) == 0.0
    assert np.isnan(metrics.support_auroc(np.ones((3, 2)), np.ones((3, 2), bool), np.arange(2)))
    # column scale does not matter (each column is divided by its largest entry)
    r = np.random.default_rng(0)
    j, s = r.random((7, 4)), r.random((7, 4)) < 0.5
    assert metrics.support_auroc(j * [1, 10, 100, 0.1], s, np.arange(4)) == pytest.approx(
        metrics.support_auroc(j, s, np.arange(4))
    )
    # against sklearn on the column-normalised scores, ties included
    j = np.round(r.random((9, 5)), 1)
    s = r.random((9, 5)) < 0.4
    norm = j / j.max(0)
    assert metrics.support_auroc(j, s, np.arange(5)) == pytest.approx(roc_auc_score(s.ravel(), norm.ravel()))


def _slots(seed=0, n=400):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2, 3)).astype(np.float32)
    return rng, z, np.tanh(z) + 0.3 * z  # an invertible per-slot distortion


def test_sis_per_scene_sees_through_a_per_scene_permutation_and_not_through_mixing():
    rng, z, f = _slots()
    swap = rng.uniform(size=len(z)) < 0.5  # slots swapped in half of the scenes
    permuted = np.where(swap[:, None, None], f[:, ::-1], f)
    mixed = np.stack([np.tanh(z[:, 0] + z[:, 1]), np.tanh(z[:, 0] - z[:, 1])], 1)
    scores = {}
    for name, zh in (("aligned", f), ("permuted", permuted), ("mixed", mixed)):
        on, off = metrics.sis_per_scene_r2(jnp.asarray(z), jnp.asarray(zh))
        assert on.shape == (2,) and off.shape == (2, 2) and np.all(np.diag(np.asarray(off)) == 0)
        scores[name] = (metrics.slot_identifiability_score(z, zh), metrics.sis_from_per_scene(on, off))
    assert scores["aligned"][0] > 0.85 and scores["aligned"][1] > 0.85
    # one matching for all scenes cannot follow the swaps; a matching per scene can
    assert scores["permuted"][0] < 0.3 and scores["permuted"][1] > 0.85
    assert scores["mixed"][0] < 0.2 and scores["mixed"][1] < 0.3


def test_sis_from_per_scene_by_hand():
    on = np.array([0.9, 0.5])
    off = np.array([[0.0, 0.2], [-0.3, 0.0]])  # off[j, j']: slot j' predicting slot j's objects
    assert metrics.sis_from_per_scene(on, off) == pytest.approx(((0.9 - 0.2) + (0.5 - 0.0)) / 2)
    assert np.isnan(metrics.sis_from_per_scene([np.nan, 1.0], off))
    with pytest.raises(ValueError, match="K"):
        metrics.sis_per_scene_r2(jnp.zeros((10, 2, 3)), jnp.zeros((10, 3, 3)))


def test_frechet_distance_matches_the_closed_form_on_gaussians(x64):
    import scipy.linalg

    rng = np.random.default_rng(0)
    f = 4
    a_, b_ = rng.normal(size=(f, f)), rng.normal(size=(f, f))
    s_a, s_b = a_ @ a_.T / f + 0.1 * np.eye(f), b_ @ b_.T / f + 0.1 * np.eye(f)
    m_a, m_b = rng.normal(size=f), rng.normal(size=f)
    closed = np.sum((m_a - m_b) ** 2) + np.trace(s_a + s_b - 2 * scipy.linalg.sqrtm(s_a @ s_b).real)
    a = rng.multivariate_normal(m_a, s_a, size=100_000)
    b = rng.multivariate_normal(m_b, s_b, size=100_000)
    assert float(metrics.frechet_distance(a, b)) == pytest.approx(closed, rel=0.01)
    # exactly the formula on the samples' own moments
    exact = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(
        np.cov(a.T) + np.cov(b.T) - 2 * scipy.linalg.sqrtm(np.cov(a.T) @ np.cov(b.T)).real
    )
    assert float(metrics.frechet_distance(a, b)) == pytest.approx(exact, rel=1e-8)
    assert abs(float(metrics.frechet_distance(a[:50_000], a[50_000:]))) < 0.01


def test_kernel_distance_is_the_unbiased_mmd_of_the_cubic_kernel(x64):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 3)), rng.normal(1.0, 1.0, size=(40, 3))
    k = lambda x, y: (x @ y.T / 3 + 1) ** 3  # noqa: E731
    kaa, kbb = k(a, a), k(b, b)
    expected = (kaa.sum() - np.trace(kaa)) / (30 * 29) + (kbb.sum() - np.trace(kbb)) / (40 * 39) - 2 * k(a, b).mean()
    assert float(metrics.kernel_distance(a, b)) == pytest.approx(expected, rel=1e-10)
    kid = jax.jit(metrics.kernel_distance)
    same = [float(kid(rng.normal(size=(100, 3)), rng.normal(size=(100, 3)))) for _ in range(100)]
    # unbiased: zero on average for one law (within 4 standard errors)
    assert abs(np.mean(same)) < 4 * np.std(same) / np.sqrt(len(same))
