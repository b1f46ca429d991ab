"""PPL: the percentile filter and the formula on cases with known answers, the image preparation,
and the real pipeline (LPIPS-VGG) on a tiny generator."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anycost_jax.eval import ppl
from anycost_jax.models import Generator

GEN = Generator(16, style_dim=16, n_mlp=1, channel_multiplier=1 / 64)  # widths 64, 64, 32, 32, 16, 16


@pytest.fixture(scope='module')
def variables():
    return GEN.init_variables(jax.random.key(0))


def test_filtered_mean_drops_outside_the_1st_and_99th_percentiles():
    rng = np.random.default_rng(0)
    d = rng.permutation(np.arange(1000.))
    # 1st percentile ('lower') = sorted[floor(9.99)] = 9, 99th ('higher') = sorted[ceil(989.01)] = 990.
    assert ppl.filtered_mean(d) == pytest.approx((9 + 990) / 2)
    d[d == 999.] = 1e9  # an outlier above the 99th percentile does not move the mean
    d[d == 0.] = -1e9
    assert ppl.filtered_mean(d) == pytest.approx((9 + 990) / 2)
    # Few samples: the percentiles are the extremes, nothing is dropped.
    assert ppl.filtered_mean([1., 2., 6.]) == pytest.approx(3.)
    with pytest.raises(ValueError, match='no distances'):
        ppl.filtered_mean([])


def test_prepare_images_clamps_crops_and_box_averages():
    x = jnp.arange(8 * 8, dtype=jnp.float32).reshape(1, 8, 8, 1)
    np.testing.assert_allclose(ppl.box_downsample(x, 2)[0, :, :, 0],
                               x[0, :, :, 0].reshape(4, 2, 4, 2).mean((1, 3)))
    big = jnp.full((1, 512, 512, 3), 2.).at[:, :2, :2].set(-3.)
    out = ppl.prepare_images(big)
    assert out.shape == (1, 256, 256, 3)
    assert float(out[0, 0, 0, 0]) == -1. and float(out[0, 1, 1, 0]) == 1.  # clamped, then 2x2 averages
    small = jnp.full((1, 128, 128, 3), 0.5)
    assert ppl.prepare_images(small).shape == (1, 128, 128, 3)  # factor 0: untouched
    crop = ppl.prepare_images(jnp.arange(16.).reshape(1, 16, 1, 1) * jnp.ones((1, 16, 16, 1)) / 100, crop=True)
    assert crop.shape == (1, 8, 8, 1) and float(crop[0, 0, 0, 0]) == pytest.approx(0.06)  # rows 6..13


def _linear_model(style_dim=8, res=4):
    rng = np.random.default_rng(1)
    m = jnp.asarray(rng.standard_normal((style_dim, style_dim)) / np.sqrt(style_dim), jnp.float32)
    a = jnp.asarray(rng.standard_normal((style_dim, res * res * 3)) * 0.02, jnp.float32)
    style_fn = lambda p, z: z @ p['m']  # noqa: E731
    image_fn = lambda p, w, key: (w @ p['a']).reshape(-1, res, res, 3)  # noqa: E731
    return {'m': m, 'a': a}, style_fn, image_fn


def sq_distance(x, y):
    return jnp.square(x - y).sum((1, 2, 3))


@pytest.mark.parametrize('sampling', ['end', 'full'])
def test_linear_image_function_gives_the_analytic_path_length(sampling):
    params, style_fn, image_fn = _linear_model()
    n, batch = 10, 4
    got = ppl.path_distances(style_fn, image_fn, params, 8, n, batch, seed=3, sampling=sampling,
                             distance_fn=sq_distance, progress=False)
    # Images are linear in w, so |img(w0 + eps (w1 - w0)) - img(w0)|^2 / eps^2 = |(w1 - w0) M A|^2 at any t.
    expected = []
    for i in range(3):
        z = jax.random.normal(jax.random.split(jax.random.fold_in(jax.random.key(3), i), 3)[0], (2 * batch, 8))
        w = np.asarray(z, np.float64) @ np.asarray(params['m'], np.float64)
        expected.append(np.square((w[1::2] - w[::2]) @ np.asarray(params['a'], np.float64)).sum(1))
    expected = np.concatenate(expected)[:n]
    assert got.shape == (n,)
    np.testing.assert_allclose(got, expected, rtol=2e-2)  # float32 finite difference at eps = 1e-4
    assert ppl.filtered_mean(got) == pytest.approx(ppl.filtered_mean(expected), rel=2e-2)


def test_lpips_of_an_image_constant_in_w_is_zero():
    params, style_fn, _ = _linear_model(res=16)
    const = lambda p, w, key: jnp.broadcast_to(jnp.linspace(-1, 1, 16)[:, None, None], (w.shape[0], 16, 16, 3))  # noqa
    d = ppl.path_distances(style_fn, const, params, 8, 4, 4, progress=False)
    # (up to rounding: the two VGG passes of an optimized program need not round alike)
    np.testing.assert_allclose(d, 0., atol=1e-5)


def test_ppl_is_finite_on_a_tiny_generator_at_two_widths(variables):
    kw = dict(n_sample=4, batch_size=4, seed=1, progress=False)
    full = ppl.ppl_distances(GEN, variables, **kw)
    half = ppl.ppl_distances(GEN, variables, channel_ratio=0.5, **kw)
    for d in (full, half):
        assert d.shape == (4,) and np.isfinite(d).all() and (d > 0).all()
    assert not np.allclose(full, half)
    assert np.isfinite(ppl.compute_ppl(GEN, variables, channel_ratio=0.5, **kw))
    np.testing.assert_array_equal(ppl.ppl_distances(GEN, variables, **kw), full)  # deterministic from the seed

    # A generator whose styles do nothing (every modulation weight zero) has a path length of 0.
    flat = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.zeros_like(x) if 'modulation' in jax.tree_util.keystr(p) and
        jax.tree_util.keystr(p).endswith("['kernel']") else x, variables)
    # (not bitwise 0: batch elements may round differently; real distances here are ~1)
    np.testing.assert_allclose(ppl.ppl_distances(GEN, flat, **kw), 0., atol=1e-4)


def test_ppl_rejects_what_it_cannot_measure(variables):
    with pytest.raises(ValueError, match='LPIPS-VGG needs at least 16x16'):
        ppl.ppl_distances(GEN, variables, 4, 4, target_res=8, progress=False)
    with pytest.raises(ValueError, match="only 'w'"):
        ppl.ppl_distances(GEN, variables, 4, 4, space='z', progress=False)
    with pytest.raises(ValueError, match='sampling'):
        ppl.ppl_distances(GEN, variables, 4, 4, sampling='mid', progress=False)
