"""The dataset interface: registry, user arrays, host and traced draws."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mechind.core import datasets, rng


@datasets.register("toy_linear_for_tests")
@dataclasses.dataclass(frozen=True)
class ToyLinear(datasets.Dataset):
    latent_dim: int = 2
    obs_dim: int = 3

    def sample(self, key, num_samples):
        z = jax.random.normal(key, (num_samples, self.latent_dim))
        a = jnp.arange(self.obs_dim * self.latent_dim, dtype=jnp.float32).reshape(self.obs_dim, self.latent_dim)
        return {"x": z @ a.T, "z": z, "support": a != 0}


def test_registry_makes_by_name_and_rejects_bad_names():
    ds = datasets.make("toy_linear_for_tests", latent_dim=3)
    assert isinstance(ds, ToyLinear) and ds.latent_dim == 3 and "toy_linear_for_tests" in datasets.names()
    assert ds.describe() == {"dataset": "toy_linear_for_tests", "dataset_version": 1, "latent_dim": 3, "obs_dim": 3}
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        datasets.make("nope")
    with pytest.raises(ValueError, match="has no setting latent"):
        datasets.make("toy_linear_for_tests", latent=3)
    with pytest.raises(ValueError, match="already registered"):
        datasets.register("toy_linear_for_tests")(type("Other", (datasets.Dataset,), {}))


def test_traced_draw_is_each_key_drawn_alone():
    ds = ToyLinear()
    keys = rng.seed_keys([0, 1, 2])
    d = datasets.draw(ds, keys, 10)
    assert d["x"].shape == (3, 10, 3) and d["support"].shape == (3, 3, 2)
    np.testing.assert_allclose(d["x"][1], ds.sample(keys[1], 10)["x"], rtol=1e-6)
    np.testing.assert_allclose(d["x"][2], d["z"][2] @ np.arange(6.0).reshape(3, 2).T, rtol=1e-5, atol=1e-6)


def test_a_key_draws_the_same_data_inside_and_outside_a_run():
    from mechind.core import runner

    ds, key = ToyLinear(), rng.key(3)
    task = runner.Task(
        make_data=lambda k, given: ds.sample(k, 8),
        init=lambda k, d, h: d["x"].sum(),
        step=lambda s, d, h, i: (s, s),
        evaluate=lambda s, d, h: {"z": d["z"]},
        num_steps=1,
    )
    _, inside = jax.jit(runner.make_train(task))(key, None)
    with jax.threefry_partitionable(True):  # jax's default mode, which the runner does not trace in
        outside = ds.sample(key, 8)["z"]
    np.testing.assert_array_equal(inside["z"], outside)  # the random draw itself (x adds a matmul's rounding)


def test_user_arrays_are_a_dataset():
    x, z, u = np.arange(20.0).reshape(10, 2), np.arange(10.0)[:, None], np.arange(10) % 2
    ds = datasets.Arrays(x=x, z=z, u=u)
    full = ds.sample(rng.key(0), 10)
    np.testing.assert_array_equal(full["x"], x)  # all of them: in their order
    part = ds.sample(rng.key(4), 6)
    rows = part["z"][:, 0].astype(int)
    assert len(set(rows)) == 6 and np.all(np.diff(rows) > 0)  # without replacement, sorted
    np.testing.assert_array_equal(part["x"], x[rows])
    np.testing.assert_array_equal(part["u"], u[rows])
    stacked = datasets.draw(ds, rng.seed_keys([4, 4]), 6)
    np.testing.assert_array_equal(stacked["x"][1], part["x"])
    assert ds.describe()["num_samples"] == 10
    with pytest.raises(ValueError, match="u has 3 samples, x has 10"):
        datasets.Arrays(x=x, u=np.zeros(3))
    with pytest.raises(ValueError, match="asked for 11 samples of 10"):
        ds.sample(rng.key(0), 11)


def test_numpy_seed_of_a_seed_key_is_the_seed():
    assert datasets.numpy_seed(rng.key(1234)) == 1234
    assert datasets.numpy_seed(jax.random.key(7)) == 7


def test_two_user_datasets_of_one_shape_have_different_descriptions():
    x = np.zeros((4, 2))
    a, b = datasets.Arrays(x=x).describe(), datasets.Arrays(x=x + 1).describe()
    assert a["num_samples"] == b["num_samples"] and a["sha256"] != b["sha256"]
    assert datasets.Arrays(x=x.copy()).describe() == a


def test_a_numpy_sample_left_traceable_says_what_to_set():
    @dataclasses.dataclass(frozen=True)
    class NumpyDraw(datasets.Dataset):  # forgot traceable = False
        def sample(self, key, num_samples):
            return {"x": np.random.default_rng(np.asarray(key)[-1]).normal(size=(num_samples, 2))}

    with pytest.raises(TypeError, match="set `traceable = False`"):
        datasets.draw(NumpyDraw(), rng.seed_keys([0, 1]), 3)


@pytest.mark.parametrize(
    "bad,kw,match",
    [
        (np.ones(5), {}, "x must be a 2-D array"),
        (np.ones((2, 2, 2)), {"name": "a", "ndim": 2}, "a must be a 2-D array"),
        (np.array([["a", "b"]]), {}, "real numbers"),
        (np.zeros((0, 3)), {}, "x is empty"),
        (np.array([[0.0, 1.0], [np.inf, np.nan]]), {}, "2 NaN/inf value.s., first in row 1"),
        (np.array([[1.0, 1e16]]), {}, "magnitude above 1e.15"),
        (np.ones((3, 2)), {"obs_dim": 4}, "2 columns, the model was fitted to 4"),
    ],
)
def test_check_user_array_names_what_is_wrong(bad, kw, match):
    with pytest.raises(ValueError, match=match):
        datasets.check_user_array(bad, **kw)


def test_check_user_array_returns_float32():
    out = datasets.check_user_array(np.arange(6).reshape(3, 2))
    assert out.dtype == np.float32 and out.tolist() == [[0, 1], [2, 3], [4, 5]]
