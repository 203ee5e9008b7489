import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import cg_l1_rotations as rot


def test_rotation_is_orthogonal_with_unit_determinant():
    s = jax.random.normal(jax.random.PRNGKey(0), (5, 5))
    r = np.asarray(rot.rotation(s), np.float64)
    np.testing.assert_allclose(r @ r.T, np.eye(5), atol=1e-5)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-5)


def test_l1_of_a_diagonal_mixing_is_minimal_at_signed_permutations():
    """||D R||_1 = sum_i d_i ||R_i||_1 >= sum_i d_i ||R_i||_2 = sum d: the truth is the global
    minimum, so no start may go below it, and the recovered rotation is then a signed
    permutation (MCC 1)."""
    d = jnp.array([1.0, 1.5, 2.0, 0.7])
    a = jnp.diag(d)
    for k in range(3):
        val, r = rot.minimise(rot.PENALTIES["l1"], a, jax.random.PRNGKey(k), steps=1500)
        assert float(d.sum()) - 1e-3 <= float(val) <= 1.02 * float(d.sum())  # Adam hovers at the kink
        assert rot.metrics.mcc_from_corr(np.abs(np.asarray(r))) > 0.999


@pytest.mark.slow  # 9 s; the rotation landscape itself is tested in the default suite
def test_main_writes_json_and_rejects_bad_input(tmp_path):
    res = rot.main(["--mixings", "1", "--starts", "2", "--steps", "20", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "l1_rotations.json").read_text())
    assert [r["penalty"] for r in saved["rows"]] == list(rot.PENALTIES) == [r["penalty"] for r in res["rows"]]
    assert all(r["starts"] == 2 and 0 <= r["mean_mcc"] <= 1 for r in saved["rows"])
    for bad in (["--starts", "0"], ["--density", "0"]):
        with pytest.raises(SystemExit):
            rot.main(bad + ["--out", str(tmp_path / "bad")])
