"""The scene renderer (mechind/scenes.py): its Jacobian against finite differences, exact
zeros under occlusion, the occlusion knob, a numpy re-drawing of scenes, and bad configs.

Canvases are 16 x 16 or smaller and the compiled functions are shared between tests
(:func:`compiled`): dispatching the renderer op by op costs seconds of compilation."""

import functools
import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mechind import criteria, scenes
from mechind.core import datasets, rng

H = W = 16
PIX = 1.0 / H  # one pixel, canvas units
N = 32  # scenes drawn per law
R2 = scenes.Renderer(num_objects=2, height=H, width=W)  # default soft truncated edge, no shadow
LAW0 = scenes.SceneLaw(R2, occlusion=0.0)


def chunked(fn):
    """``fn`` applied to chunks of exactly ``N`` rows (the last padded with repeats of its
    first row), so that a jitted function compiles once whatever the batch."""

    def call(z):
        z = np.asarray(z, np.float32)
        n = len(z)
        z = np.concatenate([z, np.repeat(z[:1], -n % N, 0)])
        return np.concatenate([np.asarray(fn(z[i : i + N])) for i in range(0, len(z), N)])[:n]

    return call


@functools.cache
def compiled(r: scenes.Renderer) -> SimpleNamespace:
    """Jitted batched functions of one renderer, shared between tests (z ``[B, K * 4]``)."""
    gen = scenes.generator(r)
    return SimpleNamespace(
        render=chunked(jax.jit(lambda z: scenes.render_batch(r, z))),
        alphas=chunked(jax.jit(jax.vmap(lambda z: scenes.layers(r, z)[0]))),
        footprints=chunked(jax.jit(jax.vmap(lambda z: scenes.footprints(r, z)))),
        overlap=chunked(jax.jit(lambda z: scenes.pixel_overlap(r, z))),
        jac=jax.jit(jax.vmap(jax.jacfwd(gen))),
    )


# ------------------------------------------------------------------ a numpy re-drawing


def np_band(edge_px, edge_eps, height, width):
    """The edge band, from the module docstring's formula: ``w * logit(1 - eps)``."""
    return 0.0 if edge_px == 0 else edge_px * np.log((1 - edge_eps) / edge_eps) / min(height, width)


def np_grid(height, width):
    x = (np.arange(width) + 0.5) / width
    y = (np.arange(height) + 0.5) / height
    return np.broadcast_to(x[None, :], (height, width)), np.broadcast_to(y[:, None], (height, width))


def np_signed_distance(px, py, obj, p):
    """``||p - centre||_p - size``."""
    dx, dy = np.abs(px - obj[0]), np.abs(py - obj[1])
    return (dx**p + dy**p) ** (1.0 / p) - obj[2]


def np_alpha(r, px, py, obj, p):
    sd = np_signed_distance(px, py, obj, p)
    if r.edge_px == 0:
        return (sd < 0).astype(float)
    w = r.edge_px / min(r.height, r.width)
    a = 1.0 / (1.0 + np.exp(sd / w))
    return np.clip((a - r.edge_eps) / (1 - 2 * r.edge_eps), 0.0, 1.0)


def np_rgb(hue):
    """The colour circle ``0.5 + 0.45 cos 2pi(hue - c/3)``, c = 0, 1, 2."""
    hue = np.asarray(hue, np.float64)
    return np.stack([0.5 + 0.45 * np.cos(2 * np.pi * (hue - c / 3)) for c in range(3)], -1)


def np_alphas(r, z):
    """Each object's alpha ``[K, H, W]`` (numpy)."""
    objs = np.asarray(z, np.float64).reshape(r.num_objects, 4)
    px, py = np_grid(r.height, r.width)
    return np.stack([np_alpha(r, px, py, o, scenes.SHAPES[r.shapes[k % len(r.shapes)]]) for k, o in enumerate(objs)])


def np_render(r, z):
    """A numpy re-drawing of one scene from the module docstring (float64)."""
    objs = np.asarray(z, np.float64).reshape(r.num_objects, 4)
    px, py = np_grid(r.height, r.width)
    ps = [scenes.SHAPES[r.shapes[k % len(r.shapes)]] for k in range(r.num_objects)]
    img = np.full((r.height, r.width, 3), scenes.BACKGROUND)
    alphas = [np_alpha(r, px, py, objs[k], ps[k]) for k in range(r.num_objects)]
    for k in range(r.num_objects):
        img = alphas[k][..., None] * np_rgb(objs[k, 3]) + (1 - alphas[k][..., None]) * img
    if r.shadow > 0:
        dx, dy = r.shadow_offset
        for k in range(r.num_objects):
            cast = np_alpha(r, px - dx, py - dy, objs[k], ps[k])
            img = img * (1 - r.shadow * cast * (1 - alphas[k]))[..., None]
    return img


def draw(law, key):
    """``law.sample(key, N)`` in the datasets' random mode: every draw of ``N`` scenes of two
    objects then shares one compiled sampler with the others and with ``ScenesSpec.sample``."""
    with rng.fast_compile():
        return law.sample(key, N)


@pytest.fixture(scope="module")
def occ0_scenes():
    """Scenes of the law at occlusion 0, ``[N, K * 4]`` float32 (key 0)."""
    return draw(LAW0, jax.random.PRNGKey(0)).reshape(N, -1)


# ------------------------------------------------------------------ Jacobian vs finite differences


def far_from_kinks(r, z, margin=3e-4):
    """Whether every pixel (and every shadow pixel) is ``margin`` (canvas units, 30 steps) away
    from the truncation kinks ``sd = +-band`` and from the centre lines where |.| bends."""
    objs = np.asarray(z, np.float64).reshape(r.num_objects, 4)
    px, py = np_grid(r.height, r.width)
    band = np_band(r.edge_px, r.edge_eps, r.height, r.width)
    offsets = [(0.0, 0.0)] + ([tuple(r.shadow_offset)] if r.shadow > 0 else [])
    for k in range(r.num_objects):
        p = scenes.SHAPES[r.shapes[k % len(r.shapes)]]
        for dx, dy in offsets:
            sd = np_signed_distance(px - dx, py - dy, objs[k], p)
            if np.min(np.abs(np.abs(sd) - band)) < margin:
                return False
            if min(np.min(np.abs(px - dx - objs[k, 0])), np.min(np.abs(py - dy - objs[k, 1]))) < margin:
                return False
    return True


def random_scenes(seed, k, n=40):
    """``[n, 4K]`` float64 uniform scenes (free placement), objects on the canvas."""
    lo, hi = [0.25, 0.25, 0.12, 0.05], [0.75, 0.75, 0.2, 0.75]
    return np.random.default_rng(seed).uniform(lo, hi, size=(n, k, 4)).reshape(n, 4 * k)


def test_jacobian_matches_central_differences():
    # circle, square, diamond, overlapping freely, each casting a shadow (over objects too)
    r = scenes.Renderer(num_objects=3, height=12, width=12, shadow=0.4, shadow_offset=(0.2, 0.1))
    d, h = r.latent_dim, 1e-5
    z = np.stack([v for v in random_scenes(0, 3) if far_from_kinks(r, v)][:4])
    assert z.shape == (4, d)
    assert np.any([np.any(np.sum(np_alphas(r, v) > 0, 0) >= 2) for v in z])  # objects overlap
    steps = np.concatenate([h * np.eye(d), -h * np.eye(d)])  # [2d, d]: +h e_j, then -h e_j
    with jax.enable_x64(True):
        gen = scenes.generator(r)

        @jax.jit
        def both(zz):  # [B, d] -> (jacfwd [B, n, d], central differences [B, n, d]), one program
            out = jax.vmap(gen)((zz[:, None] + steps).reshape(-1, d)).reshape(len(zz), 2 * d, -1)
            return jax.vmap(jax.jacfwd(gen))(zz), jnp.swapaxes(out[:, :d] - out[:, d:], 1, 2) / (2 * h)

        jac, fd = both(jnp.asarray(z))
        assert jac.dtype == jnp.float64
        jac, fd = np.asarray(jac), np.asarray(fd)
    scale = np.abs(jac).max()
    np.testing.assert_allclose(jac, fd, rtol=0, atol=1e-6 * scale)
    # not a vacuous comparison: every latent of every object moves pixels, far above the tolerance
    assert np.all(np.abs(jac).max(axis=1) > 1e-2 * scale)
    # the shadow moves pixels that no object touches (background under the shadow only)
    bare = np.stack([~np.any(np_alphas(r, v) > 0, 0).reshape(-1) for v in z])
    assert np.abs(jac[np.repeat(bare, 3, axis=1)]).max() > 1e-2 * scale


# ------------------------------------------------------------------ occlusion 0: disjoint supports


def test_occlusion_zero_pixels_of_one_object_ignore_the_other(occ0_scenes):
    z = np.asarray(occ0_scenes)
    fn = compiled(R2)
    fp = np.asarray(fn.footprints(jnp.asarray(z))).reshape(N, 2, -1)
    assert not np.any(fp[:, 0] & fp[:, 1])
    # each scene x each object j x each latent of j, moved by +-[0.003, 0.01]: [N, 2, 4, 2, 4]
    steps = np.random.default_rng(0).choice([-1, 1], (N, 2, 4)) * np.random.default_rng(1).uniform(
        0.003, 0.01, (N, 2, 4)
    )
    moved = np.broadcast_to(z.reshape(N, 1, 1, 2, 4), (N, 2, 4, 2, 4)).copy()
    for j in range(2):
        for col in range(4):
            moved[:, j, col, j, col] += steps[:, j, col]
    # kept: the moved scenes the law could draw (apart, on the canvas, in its ranges)
    (lo, hi), (slo, shi), (hlo, hhi) = LAW0.centre_range, LAW0.size_range, LAW0.hue_range
    sizes = moved[..., 2]
    band = np_band(R2.edge_px, R2.edge_eps, H, W)
    keep = np.abs(moved[..., 0, :2] - moved[..., 1, :2]).max(-1) > sizes.sum(-1) + 2 * band + 1e-6  # apart
    keep &= np.all((moved[..., :2] >= lo) & (moved[..., :2] <= hi), (-2, -1))
    keep &= np.all(
        (moved[..., 2] >= slo) & (moved[..., 2] <= shi) & (moved[..., 3] >= hlo) & (moved[..., 3] <= hhi), -1
    )
    assert keep.mean() > 0.6
    assert np.all(keep.any(0))  # every latent of each object moved in some scene
    base = np.asarray(fn.render(jnp.asarray(z))).reshape(N, -1, 3)
    out = np.asarray(fn.render(jnp.asarray(moved.reshape(-1, 8)))).reshape(N, 2, 4, -1, 3)
    for b, j, col in zip(*np.nonzero(keep)):
        other = fp[b, 1 - j]
        np.testing.assert_array_equal(out[b, j, col][other], base[b][other])  # exactly unchanged
        assert np.abs(out[b, j, col] - base[b]).max() > 0  # the moved object's own pixels did change


def test_occlusion_zero_is_type_d_and_an_overlapping_scene_is_not(occ0_scenes):
    overlapping = jnp.array([[0.45, 0.5, 0.15, 0.1, 0.55, 0.5, 0.15, 0.6]])
    z = jnp.concatenate([occ0_scenes, overlapping])  # one compiled program for both
    res = criteria.evaluate_all(scenes.generator(R2), z, R2.slot_sizes, only=("type_d",))["type_d"]
    holds, value = np.asarray(res.holds), np.asarray(res.value)
    assert holds[:-1].all() and np.all(value[:-1] == 0)
    assert not holds[-1] and value[-1] > 0


# a scene at occlusion 0 where object 0's shadow (offset (0.15, 0.1)) falls on object 1
SHADOW_R = scenes.Renderer(num_objects=2, height=H, width=W, shadow=0.5)
SHADOW_SCENE = np.array([0.3, 0.3, 0.1, 0.2, 0.68, 0.4, 0.1, 0.6], np.float32)
SHADOW_MOVED = SHADOW_SCENE + np.array([-0.01, 0.0, 0.005, 0.0, 0.0, 0.0, 0.0, 0.0], np.float32)  # object 0 moves


def test_shadow_reproduction_scene_is_valid_at_occlusion_zero():
    law = scenes.SceneLaw(SHADOW_R, occlusion=0.0)
    both = np.stack([SHADOW_SCENE, SHADOW_MOVED]).reshape(2, 2, 4)
    assert np.all(np.asarray(law.valid(jnp.asarray(np.resize(both, (N, 2, 4))))))  # [N, 2, 4]: compiled already
    fp = np_alphas(SHADOW_R, SHADOW_SCENE) > 0  # the footprints (numpy)
    assert fp[1].sum() > 10 and not np.any(fp[0] & fp[1])  # no pixel touched by both


def test_occlusion_zero_with_a_shadow_is_not_type_d():
    # the knob keeps footprints apart, not shadows (scenes.py): a valid occlusion-0 scene can put
    # object 0's shadow on object 1, whose pixels then move with object 0 (Type D's other failure)
    fp = np_alphas(SHADOW_R, SHADOW_SCENE) > 0
    assert not np.any(fp[0] & fp[1])
    before, after = compiled(SHADOW_R).render(np.stack([SHADOW_SCENE, SHADOW_MOVED]))
    assert np.any(after[fp[1]] != before[fp[1]])  # object 1's pixels, object 0 moved


# ------------------------------------------------------------------ exact zeros under occlusion

BACK, FRONT = [0.33, 0.5, 0.16, 0.2], [0.56, 0.5, 0.2, 0.6]  # object 0 (circle) behind object 1 (square)


@pytest.mark.parametrize("edge_px", [0.0, 0.3], ids=["hard-edge", "soft-truncated-edge"])
def test_covered_pixels_of_the_back_object_have_zero_jacobian(edge_px):
    r = scenes.Renderer(num_objects=2, height=H, width=W, edge_px=edge_px)
    z = jnp.asarray([BACK + FRONT])
    alphas = np.asarray(compiled(r).alphas(z))[0].reshape(2, -1)
    jac = np.asarray(compiled(r).jac(z))[0].reshape(H * W, 3, 8)
    covered = (alphas[0] > 0) & (alphas[1] == 1.0)
    visible = (alphas[0] > 0) & (alphas[1] == 0.0)
    assert covered.sum() >= 5 and visible.sum() >= 10
    assert np.all(jac[covered][:, :, :4] == 0.0)  # exactly, not merely small
    # every visible pixel of the back object changes with its hue (no hue zeroes all 3 channels)
    hue = np.abs(jac[visible][:, :, 3]).max(-1)
    assert np.all(hue > 0) and hue.max() > 0.5
    if edge_px:  # the soft edge also lets the back object's position and size move its rim
        assert np.abs(jac[visible][:, :, :3]).max() > 1.0
        partly = (alphas[0] > 0) & (alphas[1] > 0) & (alphas[1] < 1)  # seen through the front's rim
        assert partly.sum() > 0 and np.all(np.abs(jac[partly][:, :, :4]).max((1, 2)) > 0)
    else:  # a hard edge has no derivative in x, y, size anywhere
        assert np.all(jac[..., [0, 1, 2, 4, 5, 6]] == 0.0)


def test_a_square_is_exactly_opaque_deeper_than_its_band():
    r = scenes.Renderer(num_objects=1, height=H, width=W, shapes=("square",))
    obj = [8.5 * PIX, 7.5 * PIX, 0.11, 0.3]  # centred on pixel (row 7, col 8); a size of the default range
    # the alpha of the exact L8 distance: 1 at the centre pixel (sd = -0.11, deeper than the band 0.086)
    exact = np_alpha(r, *np_grid(H, W), obj, 8.0)
    np.testing.assert_allclose(compiled(r).alphas(np.array([obj]))[0, 0], exact, atol=1e-5)  # centre: 0.9948


# ------------------------------------------------------------------ the occlusion knob


def test_occlusion_knob(occ0_scenes):
    key = jax.random.PRNGKey(0)  # the fixture's key: the same proposals at every level
    band = np_band(R2.edge_px, R2.edge_eps, H, W)
    means = []
    for occ in (0.0, 0.5, 1.0):
        law = scenes.SceneLaw(R2, occlusion=occ)
        z = occ0_scenes.reshape(N, 2, 4) if occ == 0 else draw(law, key)
        assert z.shape == (N, 2, 4)
        assert bool(jnp.all(law.valid(z)))
        zn = np.asarray(z, np.float64)
        # independent check of the bound: L-infinity centre distance >= (1 - occ)(s_i + s_j + 2 band)
        dist = np.abs(zn[:, 0, :2] - zn[:, 1, :2]).max(-1)
        bound = (1 - occ) * (zn[:, 0, 2] + zn[:, 1, 2] + 2 * band)
        assert np.all(dist >= bound * (1 - 1e-6))
        lo, hi = law.centre_range
        assert np.all((zn[..., :2] >= lo - 1e-6) & (zn[..., :2] <= hi + 1e-6))
        assert np.all((zn[..., 2] >= 0.1 - 1e-6) & (zn[..., 2] <= 0.16 + 1e-6))
        ov = np.asarray(compiled(R2).overlap(z.reshape(N, -1)))
        if occ == 0.0:
            assert np.all(ov == 0.0)
        means.append(ov.mean())
    assert means[0] < means[1] - 0.01 and means[1] < means[2] - 0.01, means


def test_occlusion_zero_that_cannot_be_placed_is_a_clear_error():
    # centres within [0.306, 0.694] but at least 2 * 0.2 + 2 * band = 0.57 apart: impossible,
    # known before any draw
    with pytest.raises(ValueError, match="2 objects cannot be placed at occlusion 0.0"):
        scenes.SceneLaw(R2, occlusion=0.0, size_range=(0.2, 0.22))
    # possible but rare (three objects, one proposal): a clear error when drawn eagerly
    r3 = scenes.Renderer(num_objects=3, height=H, width=W)
    law = scenes.SceneLaw(r3, occlusion=0.0, candidates=1, max_rounds=1)
    with pytest.raises(ValueError, match="scenes found no placement at occlusion 0.0"):
        law.sample(jax.random.PRNGKey(1), 64)


# ------------------------------------------------------------------ independent checks of the drawing


def test_hue_to_rgb_closed_form_and_injective():
    hue = np.linspace(0.0, 1.0, 200, endpoint=False)
    rgb = np.asarray(jax.jit(scenes.hue_to_rgb)(jnp.asarray(hue, jnp.float32)))
    assert rgb.shape == (200, 3)
    np.testing.assert_allclose(rgb, np_rgb(hue), atol=1e-6)
    np.testing.assert_allclose(rgb[0], [0.95, 0.275, 0.275], atol=1e-6)  # hue 0: red
    dists = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(200)
    assert dists.min() > 1e-3  # distinct colours around the circle
    assert rgb.min() >= 0.05 - 1e-6 and rgb.max() <= 0.95 + 1e-6


def test_hard_edge_single_object_is_a_drawn_mask_over_the_background():
    r = scenes.Renderer(num_objects=3, height=H, width=W, shapes=("circle", "diamond", "square"), edge_px=0.0)
    obj = np.array([0.47, 0.53, 0.295, 0.42])
    away = np.array([-1.0, -1.0, 0.01, 0.1])  # an object off the canvas: it touches no pixel
    z = np.stack([np.where(np.arange(3)[:, None] == k, obj, away).reshape(-1) for k in range(3)])
    imgs, fps = compiled(r).render(z), compiled(r).footprints(z)
    px, py = np_grid(H, W)
    dx, dy = np.abs(px - obj[0]), np.abs(py - obj[1])
    dists = {"circle": np.hypot(dx, dy), "diamond": dx + dy, "square": (dx**8 + dy**8) ** 0.125}
    for k, shape in enumerate(r.shapes):  # scene k: only slot k's object on the canvas
        assert np.abs(dists[shape] - obj[2]).min() > 1e-3  # no pixel centre on the boundary
        mask = dists[shape] < obj[2]
        assert 20 < mask.sum() < H * W - 20
        expect = np.where(mask[..., None], np_rgb(obj[3]), scenes.BACKGROUND)
        np.testing.assert_allclose(imgs[k], expect, atol=1e-6, err_msg=shape)
        np.testing.assert_array_equal(fps[k], (np.arange(3)[:, None, None] == k) & mask, err_msg=shape)


def test_render_matches_a_numpy_redrawing_and_footprints_match_the_band():
    r = scenes.Renderer(num_objects=3, height=12, width=12, shadow=0.35, shadow_offset=(0.12, 0.08))
    z = random_scenes(5, 3, n=6)
    imgs = np.asarray(compiled(r).render(jnp.asarray(z, jnp.float32)))
    for v, img in zip(z, imgs):
        np.testing.assert_allclose(img, np_render(r, v), atol=1e-5)
    # an object touches exactly the pixels within its size + band (Lp), away from that boundary
    band = np_band(r.edge_px, r.edge_eps, 12, 12)
    assert r.band == pytest.approx(band, rel=1e-12)
    px, py = np_grid(12, 12)
    fps = np.asarray(compiled(r).footprints(jnp.asarray(z, jnp.float32)))
    for v, fp in zip(z, fps):
        for k, obj in enumerate(v.reshape(3, 4)):
            sd = np_signed_distance(px, py, obj, scenes.SHAPES[r.shapes[k]])
            clear = np.abs(sd - band) > 1e-4
            assert clear.mean() > 0.9
            np.testing.assert_array_equal(fp[k][clear], (sd < band)[clear])


def test_depth_order_front_object_shows_its_colour():
    a, b = [0.45, 0.5, 0.2, 0.1], [0.55, 0.52, 0.2, 0.55]
    row, col = 7, 7  # pixel centre (0.469, 0.469): deep inside both objects in either order
    band = np_band(R2.edge_px, R2.edge_eps, H, W)
    pt = (col + 0.5) * PIX, (row + 0.5) * PIX
    for first, second in [(a, b), (b, a)]:  # slot 0 is a circle, slot 1 a square
        assert np_signed_distance(*pt, first, 2.0) < -band - 1e-3
        assert np_signed_distance(*pt, second, 8.0) < -band - 1e-3
    ab, ba = np.asarray(compiled(R2).render(jnp.asarray([a + b, b + a])))[:, row, col]
    np.testing.assert_allclose(ab, np_rgb(b[3]), atol=1e-6)  # object 1 (b) in front
    np.testing.assert_allclose(ba, np_rgb(a[3]), atol=1e-6)  # swapped: a in front
    assert np.abs(ab - ba).max() > 0.3


def test_shadow_darkens_by_exactly_one_minus_shadow():
    shadow, off = 0.4, (0.35, 0.0)
    r = scenes.Renderer(num_objects=2, height=H, width=W, shadow=shadow, shadow_offset=off)
    caster = [0.3, 0.5, 0.16, 0.2]
    far, under = [0.75, 0.15, 0.1, 0.6], [0.66, 0.5, 0.13, 0.6]  # object 1 away from / inside the shadow
    z = jnp.asarray([caster + far, caster + under])
    img, plain = np.asarray(compiled(r).render(z)), np.asarray(compiled(R2).render(z))
    band = np_band(r.edge_px, r.edge_eps, H, W)
    px, py = np_grid(H, W)
    sd = lambda obj, p, dx=0.0, dy=0.0: np_signed_distance(px - dx, py - dy, obj, p)  # noqa: E731
    cast_full = sd(caster, 2.0, *off) < -band - 1e-3  # the caster's shadow has alpha 1
    # background under the shadow: darkened by exactly (1 - shadow)
    bg = cast_full & (sd(caster, 2.0) > band) & (sd(far, 8.0) > band)
    assert bg.sum() >= 3
    np.testing.assert_allclose(img[0][bg], scenes.BACKGROUND * (1 - shadow), rtol=1e-6)
    np.testing.assert_allclose(plain[0][bg], scenes.BACKGROUND, rtol=1e-6)
    # far from every object and shadow: untouched background
    near = (sd(caster, 2.0) < band + PIX) | (sd(far, 8.0) < band + PIX)
    near |= (sd(caster, 2.0, *off) < band + PIX) | (sd(far, 8.0, *off) < band + PIX)
    assert (~near).sum() >= 10
    np.testing.assert_array_equal(img[0][~near], np.float32(scenes.BACKGROUND))
    # another object, opaque under the shadow, is darkened by the same factor
    on_other = cast_full & (sd(under, 8.0) < -band - 1e-3) & (sd(caster, 2.0) > band)
    assert on_other.sum() >= 1
    np.testing.assert_allclose(
        img[1][on_other], np.broadcast_to(np_rgb(under[3]) * (1 - shadow), (on_other.sum(), 3)), rtol=1e-5
    )
    np.testing.assert_allclose(plain[1][on_other], np.broadcast_to(np_rgb(under[3]), (on_other.sum(), 3)), rtol=1e-5)
    # an object is not darkened by its own shadow (an offset smaller than the object)
    r_small = scenes.Renderer(num_objects=1, height=H, width=W, shadow=shadow, shadow_offset=(0.02, 0.0))
    one = np.asarray(compiled(r_small).render(jnp.asarray([[8 * PIX, 8 * PIX, 0.2, 0.3]])))[0]
    np.testing.assert_allclose(one[8, 8], np_rgb(0.3), atol=1e-6)


SCENES_DS = dict(num_objects=2, height=H, width=W, occlusion=0.5)


def test_scenes_dataset_shapes_ranges_and_determinism():
    ds = datasets.make("scenes", **SCENES_DS)
    assert isinstance(ds, scenes.ScenesSpec) and ds.name == "scenes" and ds.traceable
    assert ds.renderer == R2 and ds.law == scenes.SceneLaw(R2, occlusion=0.5)
    sample = jax.jit(ds.sample, static_argnums=1)
    key = jax.random.PRNGKey(7)
    d = sample(key, N)
    assert set(d) == {"x", "z"}
    assert d["x"].shape == (N, H, W, 3) and d["z"].shape == (N, 2, 4)
    assert float(d["x"].min()) >= 0.0 and float(d["x"].max()) <= 1.0
    assert bool(jnp.all(ds.law.valid(d["z"])))
    np.testing.assert_allclose(d["x"], compiled(R2).render(d["z"].reshape(N, -1)), rtol=1e-5, atol=1e-6)
    again = sample(jax.random.PRNGKey(7), N)
    np.testing.assert_array_equal(again["z"], d["z"])
    np.testing.assert_array_equal(again["x"], d["x"])
    assert not np.allclose(sample(jax.random.PRNGKey(8), N)["z"], d["z"])
    assert jax.eval_shape(ds.generator(), d["z"][0].reshape(-1)).shape == (H * W * 3,)


@pytest.mark.slow  # ~3 s: rendering op by op compiles every op; both halves are tested jitted above
def test_scenes_dataset_draws_the_same_eagerly_and_under_jit():
    ds = datasets.make("scenes", **SCENES_DS)
    key = jax.random.PRNGKey(7)
    jitted = jax.jit(ds.sample, static_argnums=1)(key, N)
    eager = ds.sample(key, N)
    np.testing.assert_array_equal(eager["z"], jitted["z"])  # the same random draw
    np.testing.assert_allclose(eager["x"], jitted["x"], rtol=1e-5, atol=1e-6)  # fused rendering rounds differently
    assert float(eager["x"].min()) >= 0.0 and float(eager["x"].max()) <= 1.0


# ------------------------------------------------------------------ bad configs


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(occlusion=-0.1), r"occlusion must lie in \[0, 1\]"),
        (dict(occlusion=1.5), r"occlusion must lie in \[0, 1\]"),
        (dict(num_objects=0), "num_objects must be >= 1"),
        (dict(shapes=("circle", "hexagon")), "shapes must be names of"),
        (dict(size_range=(0.1, 0.45)), "do not fit the canvas"),
        (dict(hue_range=(0.1, 1.0)), "hue_range must satisfy 0 <= lo <= hi < 1"),
        (dict(edge_eps=0.0), "edge_eps = 0 has an infinite band"),
        (dict(edge_px=-0.5), "edge_px must be >= 0"),
        (dict(height=3), "height and width must be >= 4"),
        (dict(shadow=1.0), r"shadow must lie in \[0, 1\)"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        datasets.make("scenes", **kw)


def test_bad_config_direct_constructors_and_unknown_setting():
    with pytest.raises(ValueError, match="edge_px must be >= 0"):
        scenes.Renderer(edge_px=-1.0)
    with pytest.raises(ValueError, match="infinite band"):
        scenes.SceneLaw(scenes.Renderer(edge_eps=0.0))
    assert math.isinf(scenes.Renderer(edge_eps=0.0).band)  # the renderer alone accepts the plain sigmoid
    with pytest.raises(ValueError, match="has no setting bogus"):
        datasets.make("scenes", bogus=1)
