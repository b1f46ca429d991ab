"""Losses against closed forms and PyTorch semantics (values derived by hand here)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anycost_jax.losses import distill, gan
from anycost_jax.models import lpips
from anycost_jax.nn.resize import resize_align_corners


def test_logistic_and_nonsaturating():
    real, fake = jnp.array([[2.], [-1.]]), jnp.array([[0.5], [3.]])
    sp = lambda x: np.log1p(np.exp(x))
    expected = (sp(-2.) + sp(1.)) / 2 + (sp(0.5) + sp(3.)) / 2
    np.testing.assert_allclose(gan.d_logistic_loss(real, fake), expected, rtol=1e-6)
    np.testing.assert_allclose(gan.g_nonsaturating_loss(fake), (sp(-0.5) + sp(-3.)) / 2, rtol=1e-6)


def test_r1_is_mean_squared_gradient_norm():
    # D(x) = sum(a * x^2) per sample -> grad 2 a x, penalty mean_n sum (2 a x)^2
    a = jnp.linspace(0.1, 1., 12).reshape(1, 2, 2, 3)
    x = jax.random.normal(jax.random.key(0), (4, 2, 2, 3))
    pen = gan.r1_penalty(lambda p, v: (p * v ** 2).sum((1, 2, 3))[:, None], a, x)
    np.testing.assert_allclose(pen, np.mean(np.sum((2 * a * x) ** 2, (1, 2, 3))), rtol=1e-5)


def test_r1_gradient_forward_over_reverse_equals_autodiff():
    """The custom (forward-over-reverse) parameter gradient against reverse-over-reverse autodiff of
    the same penalty, in float64, on a small conv net with a nonlinearity, an extra argument and a
    cotangent other than 1."""
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(4), 4)
        params = {'w1': jax.random.normal(k[0], (3, 3, 3, 5), jnp.float64),
                  'w2': jax.random.normal(k[1], (3, 3, 5, 2), jnp.float64)}
        x = jax.random.normal(k[2], (3, 6, 6, 3), jnp.float64)
        scale = jax.random.normal(k[3], (3, 1), jnp.float64)

        def apply(p, v, s):
            conv = lambda h, w: jax.lax.conv_general_dilated(h, w, (1, 1), 'SAME',
                                                             dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
            h = jax.nn.leaky_relu(conv(v, p['w1']), 0.2)
            return jnp.tanh(conv(h, p['w2'])).mean((1, 2)) * s

        def plain(p):
            g = jax.grad(lambda v: apply(p, v, scale).sum())(x)
            return 3. * jnp.square(g).reshape(len(g), -1).sum(1).mean()

        ours = jax.grad(lambda p: 3. * gan.r1_penalty(apply, p, x, scale))(params)
        want = jax.grad(plain)(params)
        np.testing.assert_allclose(3. * gan.r1_penalty(apply, params, x, scale), plain(params), rtol=1e-12)
        for name in params:
            np.testing.assert_allclose(ours[name], want[name], rtol=1e-10, atol=1e-12)


def test_path_length_matches_closed_form():
    # images = (w @ A) reshaped: the gradient of sum(img * noise) w.r.t. w is noise @ A^T.
    n, k, d, h = 3, 2, 4, 2
    a = jax.random.normal(jax.random.key(1), (d, h * h * 3))
    w = jax.random.normal(jax.random.key(2), (n, k, d))
    fn = lambda w_: (w_.sum(1) @ a).reshape(n, h, h, 3)
    key = jax.random.key(3)
    pen, new_mean, lengths = gan.path_length_penalty(fn, w, jnp.float32(0.5), key)
    noise = jax.random.normal(key, (n, h, h, 3)) / h
    g = noise.reshape(n, -1) @ a.T  # same gradient for each of the k styles
    expected_len = np.sqrt((np.asarray(g) ** 2).sum(1))  # mean over k of identical rows
    np.testing.assert_allclose(lengths, expected_len, rtol=1e-5)
    np.testing.assert_allclose(new_mean, 0.5 + 0.01 * (expected_len.mean() - 0.5), rtol=1e-5)
    np.testing.assert_allclose(pen, np.mean((expected_len - float(new_mean)) ** 2), rtol=1e-4)


def test_resize_align_corners_semantics():
    x = jnp.arange(4.).reshape(1, 4, 1, 1) * jnp.ones((1, 4, 4, 1))
    up = resize_align_corners(x, 7)
    # align_corners=True keeps both end pixels and samples at i * 3/6 in between.
    np.testing.assert_allclose(up[0, :, 0, 0], [0, .5, 1, 1.5, 2, 2.5, 3], atol=1e-6)
    down = resize_align_corners(x, 2)
    np.testing.assert_allclose(down[0, :, 0, 0], [0, 3], atol=1e-6)
    assert resize_align_corners(x, 4) is x


def test_lpips_input_clamps_and_shrinks():
    big = jnp.full((1, 512, 512, 3), 3.)
    out = lpips.prepare(big)
    assert out.shape == (1, 256, 256, 3) and float(out.max()) == 1.
    small = jnp.full((1, 64, 64, 3), -2.)
    assert lpips.prepare(small).shape == (1, 64, 64, 3) and float(lpips.prepare(small).min()) == -1.


@pytest.mark.slow
def test_distillation_is_zero_for_a_perfect_student_and_grows_with_error():
    teacher = jax.random.uniform(jax.random.key(4), (2, 64, 64, 3), minval=-1, maxval=1)
    perfect = distill.teacher_pyramid(teacher, [64, 32])
    assert float(distill.distillation_loss(perfect, teacher)) == pytest.approx(0., abs=1e-6)
    noisy = [p + 0.3 * jax.random.normal(jax.random.key(5), p.shape) for p in perfect]
    worse = [p + 0.6 * jax.random.normal(jax.random.key(5), p.shape) for p in perfect]
    l1, l2 = float(distill.distillation_loss(noisy, teacher)), float(distill.distillation_loss(worse, teacher))
    mse_only = float(distill.distillation_loss(noisy, teacher, use_lpips=False))
    assert 0 < mse_only < l1 < l2
