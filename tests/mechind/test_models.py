"""The slot models: the additive decoder is a sum of per-slot MLPs."""

import jax
import numpy as np

from mechind import models


def test_additive_decoder_is_a_sum_of_slot_mlps():
    dec = models.AdditiveDecoder(num_slots=2, slot_dim=3, hidden=(8,), out_dim=5)
    z = jax.random.normal(jax.random.PRNGKey(1), (4, 6))
    p = dec.init(jax.random.PRNGKey(0), z)["params"]
    assert p["w0"].shape == (2, 3, 8) and p["w1"].shape == (2, 8, 5)

    def slot_mlp(k, zk):  # slot k's MLP, written out from its own weights
        h = models.leaky(zk @ p["w0"][k] + p["b0"][k])
        return h @ p["w1"][k] + p["b1"][k]

    expected = slot_mlp(0, z[:, :3]) + slot_mlp(1, z[:, 3:])
    np.testing.assert_allclose(np.asarray(dec.apply({"params": p}, z)), np.asarray(expected), rtol=1e-5, atol=1e-6)
    # slot 1's coordinates never change slot 0's contribution: moving them moves x by
    # exactly slot 1's MLP difference
    z2 = z.at[:, 3:].add(0.7)
    np.testing.assert_allclose(
        np.asarray(dec.apply({"params": p}, z2) - dec.apply({"params": p}, z)),
        np.asarray(slot_mlp(1, z2[:, 3:]) - slot_mlp(1, z[:, 3:])),
        rtol=1e-4,
        atol=1e-5,
    )
