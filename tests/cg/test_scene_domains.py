"""Multi-domain scenes: the changing latents change their law across domains, the others
do not (Kolmogorov-Smirnov tests against each other and against the closed form)."""

import jax
import numpy as np
import pytest
from scipy import stats

from cg import scene_domains
from mechind.core import datasets


def test_warp_is_the_identity_at_zero_location_and_unit_scale_and_monotone():
    v = np.linspace(0.01, 0.99, 50)
    np.testing.assert_allclose(scene_domains.warp(v, 0.0, 1.0), v, atol=1e-6)
    w = np.asarray(scene_domains.warp(v, 0.7, 1.8))
    assert np.all(np.diff(w) > 0)
    # closed form: sigmoid(loc + scale * logit(v))
    np.testing.assert_allclose(w, 1 / (1 + np.exp(-(0.7 + 1.8 * np.log(v / (1 - v))))), rtol=1e-5)


def test_changing_latents_change_law_across_domains_and_the_others_do_not():
    ds = datasets.make("domain_scenes", num_domains=3)
    d = ds.sample(jax.random.PRNGKey(0), 3000)
    z, u = np.asarray(d["z"])[:, 0], np.asarray(d["u"])
    assert set(np.unique(u)) == {0, 1, 2}
    a, b = z[u == 0], z[u == 1]
    for j, name in enumerate(("x", "y", "size", "hue")):
        p = stats.ks_2samp(a[:, j], b[:, j]).pvalue
        if name in ds.changing:
            assert p < 1e-6, name
        else:
            assert p > 1e-3, name
            # and uniform on the centre range in every domain
            lo, hi = ds.law.centre_range
            assert stats.kstest(a[:, j], stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3
    np.testing.assert_array_equal(d["changing"], [False, False, True, True])
    lo, hi = ds.size_range
    assert np.all((z[:, 2] >= lo) & (z[:, 2] <= hi))


def test_fewer_domains_keep_the_first_domain_laws():
    key = jax.random.PRNGKey(3)
    a = datasets.make("domain_scenes", num_domains=2).draw_domains(key)
    b = datasets.make("domain_scenes", num_domains=8).draw_domains(key)
    np.testing.assert_array_equal(a["loc"], b["loc"])
    labels = datasets.make("domain_scenes", num_domains=2).labels(key, 1000)
    assert set(np.unique(np.asarray(labels))) == {0, 1}


def test_two_objects_apart_at_occlusion_zero_and_their_placement_the_same_in_every_domain():
    ds = datasets.make("domain_scenes", num_objects=2, occlusion=0.0, size_range=(0.08, 0.16), num_domains=8, shift=3.0)
    d = ds.sample(jax.random.PRNGKey(1), 4000)
    z, u = np.asarray(d["z"]), np.asarray(d["u"])
    assert bool(np.all(d["accepted"])) and bool(np.all(ds.law.valid(d["z"])))
    assert ds.changing_mask.tolist() == [False, False, True, True] * 2
    # the domains of the smallest and the largest mean size place their objects alike
    size = np.array([z[u == m][:, :, 2].mean() for m in range(8)])
    small, large = int(np.argmin(size)), int(np.argmax(size))
    assert size[large] - size[small] > 0.02
    sep = np.abs(z[:, 0, :2] - z[:, 1, :2]).max(-1)
    assert stats.ks_2samp(sep[u == small], sep[u == large]).pvalue > 1e-3


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"changing": ("colour",)}, "unknown latents"),
        ({"changing": ("hue", "hue")}, "twice"),
        ({"num_domains": 9}, "num_domains"),
        ({"shift": -1.0}, "shift"),
    ],
)
def test_bad_settings_fail_clearly(kw, msg):
    with pytest.raises(ValueError, match=msg):
        datasets.make("domain_scenes", **kw)
