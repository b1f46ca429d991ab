"""The image-to-image losses against gan-compression's GANLoss / VGGLoss (tests/fixtures/make_img2img_fixture.py),
the VGG19 import, and the image pool's behaviour."""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anycost_jax import convert
from anycost_jax.losses import img2img as losses
from anycost_jax.models.vgg import VGG19_CONV_INDICES

FIX = os.path.join(os.path.dirname(__file__), 'fixtures')
VGG_SEED = 19
VGG19_CFG = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512, 512, 512, 512, 'M')


@pytest.fixture(scope='module')
def expected():
    return dict(np.load(os.path.join(FIX, 'img2img_expected.npz')))


def _nhwc(x):
    return jnp.asarray(x.transpose(0, 2, 3, 1))


def vgg19_state_dict():
    """The fixture's VGG19 weights (the same numpy draws), as torchvision's vgg19 state dict."""
    g, sd, cin, index = np.random.default_rng(VGG_SEED), {}, 3, 0
    for layer in VGG19_CFG:
        if layer == 'M':
            index += 1
            continue
        sd[f'features.{index}.weight'] = (g.standard_normal((layer, cin, 3, 3)) * np.sqrt(2 / (cin * 9))).astype(
            np.float32)
        sd[f'features.{index}.bias'] = (0.1 * g.standard_normal(layer)).astype(np.float32)
        cin, index = layer, index + 2
    sd['classifier.6.weight'] = np.zeros((2, 3), np.float32)  # a stand-in for the (unused) classifier
    return sd


@pytest.fixture(scope='module')
def vgg(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('vgg') / 'vgg19.pth')
    convert.save_torch_file(vgg19_state_dict(), path)
    return convert.load_vgg19(path)


@pytest.mark.parametrize('mode', ['lsgan', 'vanilla'])
def test_gan_losses_match_original(expected, mode):
    single = _nhwc(expected['loss_single'])
    multi = [_nhwc(expected['loss_multi_0']), _nhwc(expected['loss_multi_1'])]
    for real in (True, False):
        np.testing.assert_allclose(losses.gan_loss(single, real, mode), expected[f'loss_{mode}_single_{real}'],
                                   rtol=1e-6)
        np.testing.assert_allclose(losses.gan_loss(multi, real, mode), expected[f'loss_{mode}_multi_{real}'],
                                   rtol=1e-6)  # summed over the list


def test_hinge_loss_matches_original(expected):
    nested = [[_nhwc(expected[f'loss_nested_{i}_{j}']) for j in range(2)] for i in range(2)]
    single = _nhwc(expected['loss_single'])
    for real in (True, False):
        np.testing.assert_allclose(losses.gan_loss(nested, real, 'hinge'), expected[f'loss_hinge_nested_{real}'],
                                   rtol=1e-6)  # the last output of each scale, averaged over scales
        np.testing.assert_allclose(losses.gan_loss(single, real, 'hinge'), expected[f'loss_hinge_single_{real}'],
                                   rtol=1e-6)
    np.testing.assert_allclose(losses.gan_loss(nested, True, 'hinge', for_discriminator=False),
                               expected['loss_hinge_nested_G'], rtol=1e-6)


def test_discriminator_loss_weights_real_and_fake():
    real, fake = jnp.full((1, 4, 4, 1), 0.7), jnp.full((1, 4, 4, 1), -0.2)
    want = 0.5 * (0.3 ** 2 + 0.2 ** 2)
    np.testing.assert_allclose(losses.discriminator_loss(real, fake, 'lsgan'), want, rtol=1e-6)
    np.testing.assert_allclose(losses.discriminator_loss(real, fake, 'lsgan', weight=1.), 2 * want, rtol=1e-6)


def test_vgg19_features_and_vgg_loss_match_original(expected, vgg):
    model, variables = vgg
    x, y = _nhwc(expected['vgg_x']), _nhwc(expected['vgg_y'])
    apply = jax.jit(functools.partial(model.apply, variables))
    for i, f in enumerate(apply(x)):
        ref = expected[f'vgg_feat_{i}']
        assert np.abs(np.asarray(f).transpose(0, 3, 1, 2) - ref).max() / np.abs(ref).max() < 1e-5, i
    np.testing.assert_allclose(losses.vgg_loss(apply, x, y), expected['vgg_loss'], rtol=1e-5)


def test_vgg_loss_gradient_flows_to_x_only(vgg):
    model, variables = vgg
    apply = functools.partial(model.apply, variables)
    x = jax.random.uniform(jax.random.key(0), (1, 32, 32, 3), minval=-1, maxval=1)
    y = jax.random.uniform(jax.random.key(1), (1, 32, 32, 3), minval=-1, maxval=1)
    gx, gy = jax.grad(lambda a, b: losses.vgg_loss(apply, a, b), argnums=(0, 1))(x, y)
    assert float(jnp.abs(gx).max()) > 0 and float(jnp.abs(gy).max()) == 0


def test_vgg19_import_is_strict_about_the_trunk(tmp_path):
    sd = vgg19_state_dict()
    sd.pop(f'features.{VGG19_CONV_INDICES[3]}.bias')
    path = str(tmp_path / 'broken.pth')
    convert.save_torch_file(sd, path)
    with pytest.raises(convert.ConversionError, match=r"missing keys \['features.7.bias'\]"):
        convert.load_vgg19(path)
    convert.save_torch_file({'model.0.weight': np.zeros((8, 3, 4, 4), np.float32)}, path)
    with pytest.raises(convert.ConversionError, match="torchvision's vgg19"):
        convert.load_vgg19(path)


def test_feature_matching_skips_the_logits_and_averages_scales():
    k = jax.random.split(jax.random.key(0), 6)
    fake = [[jax.random.normal(k[0], (2, 4, 4, 3)), jax.random.normal(k[1], (2, 2, 2, 1))],
            [jax.random.normal(k[2], (2, 2, 2, 3)), jax.random.normal(k[3], (2, 1, 1, 1))]]
    real = [[jax.random.normal(k[4], (2, 4, 4, 3)), jnp.zeros((2, 2, 2, 1))],
            [jax.random.normal(k[5], (2, 2, 2, 3)), jnp.zeros((2, 1, 1, 1))]]
    want = (np.abs(fake[0][0] - real[0][0]).mean() + np.abs(fake[1][0] - real[1][0]).mean()) / 2
    np.testing.assert_allclose(losses.feature_matching_loss(fake, real), want, rtol=1e-6)
    g = jax.grad(lambda r: losses.feature_matching_loss(fake, [[r, real[0][1]], real[1]]))(real[0][0])
    assert float(jnp.abs(g).max()) == 0  # the real features are constants


def test_image_pool_fills_then_swaps_half_the_time():
    query = jax.jit(losses.pool_query)  # one compilation for the 200 queries
    pool = losses.pool_init(4, (2, 2, 1))
    batch = lambda v: jnp.full((2, 2, 2, 1), v, jnp.float32).at[1].add(0.5)
    out, pool = query(pool, batch(1.), jax.random.key(0))
    np.testing.assert_array_equal(out, batch(1.))  # filling: the new images come back
    out, pool = query(pool, batch(2.), jax.random.key(1))
    np.testing.assert_array_equal(out, batch(2.))
    assert int(pool['count']) == 4
    stored = set(np.asarray(pool['images'])[:, 0, 0, 0].tolist())
    assert stored == {1., 1.5, 2., 2.5}
    swaps, n = 0, 400
    for i in range(n // 2):
        out, pool = query(pool, batch(10. + i), jax.random.key(10 + i))
        values = np.asarray(out)[:, 0, 0, 0]
        swaps += int(values[0] != 10. + i) + int(values[1] != 10.5 + i)
    assert 0.4 < swaps / n < 0.6  # a stored image comes back with probability 1/2
    # everything the pool returns was either new or stored earlier: nothing is invented
    assert set(np.asarray(pool['images'])[:, 0, 0, 0].tolist()) <= {1., 1.5, 2., 2.5} | {
        10. + i + d for i in range(n // 2) for d in (0, .5)}


def test_image_pool_of_size_zero_passes_through():
    pool = losses.pool_init(0, (2, 2, 1))
    x = jnp.ones((3, 2, 2, 1))
    out, new = losses.pool_query(pool, x, jax.random.key(0))
    assert out is x and new is pool


def test_unknown_gan_mode_is_refused():
    with pytest.raises(ValueError, match="gan_mode='wgan' is not supported"):
        losses.gan_loss(jnp.zeros((1, 2, 2, 1)), True, 'wgan')
    with pytest.raises(ValueError, match='per-layer lists'):
        losses.gan_loss([[jnp.zeros((1, 2, 2, 1))]], True, 'lsgan')
