"""FID: the FID Inception against pytorch-fid, the Frechet distance, statistics files, weight
downloads, and sharded feature extraction of real images and of sub-generators.

Parity fixture: ``fixtures/inception_expected.npz`` holds pytorch-fid 0.3.0's 2048-d outputs
(``InceptionV3([3], resize_input=True, normalize_input=False)``, as the Anycost original uses it)
for synthetic weights and images that ``fixtures/make_inception_fixture.py`` builds from numpy
seeds; the test rebuilds the same weights, writes them as a pytorch-fid state dict with
``save_torch_file`` and loads them through our torch-free reader. Tolerance: 1e-4 relative
max error. The other tests use a tiny stand-in feature model: the sharding, padding, latent and
statistics logic does not depend on the network, and the 299 px Inception is slow on CPU.
"""
import functools
import hashlib
import http.server
import importlib.util
import os
import socket
import threading

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg

from anycost_jax.convert import inception as inc_weights
from anycost_jax.convert.torch_io import save_torch_file
from anycost_jax.eval import fid
from anycost_jax.models import Generator
from anycost_jax.models import inception as inc
from anycost_jax.render import SubConfig

FIX = os.path.join(os.path.dirname(__file__), 'fixtures')


def _fixture_helper():
    spec = importlib.util.spec_from_file_location('make_inception_fixture',
                                                  os.path.join(FIX, 'make_inception_fixture.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- Inception parity


def test_inception_matches_pytorch_fid(tmp_path):
    helper = _fixture_helper()
    ref = np.load(os.path.join(FIX, 'inception_expected.npz'))
    shapes = inc_weights.state_dict_shapes()
    assert len(shapes) == int(ref['n_weights'])
    sd = helper.random_state_dict(shapes)
    assert helper.checksum(sd.values()) == pytest.approx(float(ref['weights_checksum']), rel=1e-12), \
        'numpy draws different synthetic weights than when the fixture was made'
    # What the real file also holds: the classifier and BatchNorm step counters (ignored).
    sd['fc.weight'] = np.zeros((1008, 2048), np.float32)
    sd['fc.bias'] = np.zeros((1008,), np.float32)
    sd['Conv2d_1a_3x3.bn.num_batches_tracked'] = np.array(5, np.int64)
    path = tmp_path / 'inception.pth'
    save_torch_file(sd, str(path))
    del sd
    model, variables = inc_weights.load_inception(str(path))

    images = helper.synthetic_images()
    assert helper.checksum(images.values()) == pytest.approx(float(ref['images_checksum']), rel=1e-12)
    names = [n for n, _, _ in helper.IMAGE_SETS]
    # Resized per size (small programs), then one batch through the network: one big compile.
    x = jnp.concatenate([inc.resize_bilinear(images[n]) for n in names])
    want = np.concatenate([ref[f'{n}_features'] for n in names])
    with jax.default_matmul_precision('highest'):
        got = np.asarray(jax.jit(model.apply)(variables, x))
    assert got.shape == (5, inc.FEATURE_DIM) and got.dtype == np.float32
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 1e-4, err
    # Meaningful: the images differ from one another far more than our error.
    assert np.abs(want - want.mean(0)).max() / np.abs(want).max() > 100 * err


def test_state_dict_errors():
    shapes = inc_weights.state_dict_shapes()
    sd = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    bad = dict(sd)
    del bad['Mixed_7c.branch_pool.conv.weight']
    with pytest.raises(ValueError, match='1 missing keys'):
        inc_weights.variables_from_state_dict(bad)
    bad = dict(sd, **{'Mixed_5b.branch1x1.conv.weight': np.zeros((64, 192, 3, 3), np.float32)})
    with pytest.raises(ValueError, match=r'Mixed_5b.branch1x1.conv.weight has shape \(64, 192, 3, 3\)'):
        inc_weights.variables_from_state_dict(bad)
    v = inc_weights.variables_from_state_dict(sd)
    assert v['params']['Conv2d_1a_3x3']['conv']['kernel'].shape == (3, 3, 3, 32)
    assert set(v['batch_stats']['Mixed_7c']['branch_pool']['bn']) == {'mean', 'var'}


def test_resize_is_torch_bilinear():
    x = np.random.default_rng(0).uniform(-1, 1, (1, 4, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(inc.resize_bilinear(x, 4), x)
    y = np.asarray(inc.resize_bilinear(x, 8))
    # align_corners=False, 2x up: output 0 clamps to input 0, output 1 = 0.75 * in0 + 0.25 * in1.
    np.testing.assert_allclose(y[0, 0, 0], x[0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(y[0, 1, 0], 0.75 * x[0, 0, 0] + 0.25 * x[0, 1, 0], rtol=1e-6)
    np.testing.assert_allclose(y[0, 7, 7], x[0, 3, 3], rtol=1e-6)


# --------------------------------------------------------------------------- weight downloads


@pytest.fixture
def server(tmp_path):
    """A static HTTP server on 127.0.0.1 over ``tmp_path / 'www'``; counts GET requests."""
    root = tmp_path / 'www'
    root.mkdir()
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f'http://127.0.0.1:{httpd.server_address[1]}', hits
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_hash_and_reuses_cache(server, tmp_path, monkeypatch):
    root, url, hits = server
    payload = b'weights' * 1000
    digest = hashlib.sha256(payload).hexdigest()
    good = f'pt_weights-{digest[:8]}.pth'
    (root / good).write_bytes(payload)
    cache = tmp_path / 'cache'
    path = inc_weights.inception_weights(f'{url}/{good}', cache_dir=str(cache))
    assert path == str(cache / good) and open(path, 'rb').read() == payload
    (root / good).unlink()  # a second call must not need the server
    assert inc_weights.inception_weights(f'{url}/{good}', cache_dir=str(cache)) == path
    assert hits == [f'/{good}']
    # $ANYCOST_CACHE is the default cache.
    monkeypatch.setenv('ANYCOST_CACHE', str(cache))
    assert inc_weights.inception_weights(f'{url}/{good}') == path

    # Contents that do not match the hash in the name: an error, and nothing cached.
    (root / 'pt_weights-deadbeef.pth').write_bytes(payload)
    with pytest.raises(OSError, match='corrupt'):
        inc_weights.inception_weights(f'{url}/pt_weights-deadbeef.pth', cache_dir=str(cache))
    assert sorted(os.listdir(cache)) == [good]
    # A local file with the official name is checked too.
    official = tmp_path / os.path.basename(inc_weights.FID_WEIGHTS_URL)
    official.write_bytes(payload)
    with pytest.raises(OSError, match='corrupt'):
        inc_weights.inception_weights(str(official))


def test_download_offline_says_what_to_do(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    url = f'http://127.0.0.1:{port}/pt_inception-2015-12-05-6726825d.pth'
    with pytest.raises(OSError, match='put it at .*pt_inception-2015-12-05-6726825d.pth') as e:
        inc_weights.inception_weights(url, cache_dir=str(tmp_path))
    assert inc_weights.FID_WEIGHTS_URL in str(e.value) or url in str(e.value)
    assert os.listdir(tmp_path) == []  # no partial file left
    with pytest.raises(FileNotFoundError, match='download https://github.com/mseitzer/pytorch-fid'):
        inc_weights.inception_weights(str(tmp_path / 'missing.pth'))


# --------------------------------------------------------------------------- Frechet distance


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    a, b = rng.uniform(0.1, 2, 6), rng.uniform(0.1, 2, 6)
    want = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    assert fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-12)


def test_fid_of_features_self_shift_and_errors():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8)) + 3
    s = fid.FIDStats.from_features(x)
    np.testing.assert_allclose(s.mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.sigma, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)
    assert abs(s.fid(s)) < 1e-6
    y = x * 0.9 + 0.5
    t = fid.FIDStats.from_features(y)
    covmean = linalg.sqrtm(np.cov(x, rowvar=False) @ np.cov(y, rowvar=False)).real
    want = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(np.cov(x, rowvar=False) + np.cov(y, rowvar=False)
                                                          - 2 * covmean)
    assert s.fid(t) == pytest.approx(want, rel=1e-9)
    # A singular product gets eps on the diagonals (with a warning); large imaginary parts fail.
    with pytest.warns(UserWarning, match='singular'):
        nilpotent = np.array([[0., 1.], [0., 0.]])  # no square root: scipy returns inf
        assert np.isfinite(fid.frechet_distance(np.zeros(2), nilpotent, np.ones(2), np.eye(2)))
    with pytest.raises(ValueError, match='imaginary'):
        fid.frechet_distance(np.zeros(2), np.diag([-1., 1.]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match='different shapes'):
        fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_stats_file_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(3)
    s = fid.FIDStats.from_features(rng.normal(size=(20, 4)), resolution=64, dataset='anycost_shapes')
    path = tmp_path / 'sub' / 'stats.npz'
    s.save(path)
    assert os.listdir(tmp_path / 'sub') == ['stats.npz']
    t = fid.load_stats(path, resolution=64)
    np.testing.assert_array_equal(t.mu, s.mu)
    np.testing.assert_array_equal(t.sigma, s.sigma)
    assert (t.n_images, t.resolution, t.dataset) == (20, 64, 'anycost_shapes')
    with np.load(path) as f:
        assert {'mu', 'sigma', 'n_images', 'resolution', 'dataset'} <= set(f.files)
    with pytest.raises(ValueError, match='are for 64 px images but 32 px'):
        fid.load_stats(path, resolution=32)
    with pytest.raises(FileNotFoundError, match='real_stats'):
        fid.load_stats(tmp_path / 'nope.npz')


# --------------------------------------------------------------------------- sharded features


class TinyFeatures(nn.Module):
    """Stand-in feature network: 4 features per image."""

    @nn.compact
    def __call__(self, x):
        return jnp.tanh(nn.Conv(4, (3, 3))(x)).mean((1, 2))


@functools.lru_cache(maxsize=None)
def tiny_extractor():
    model = TinyFeatures()
    variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    return fid.FeatureExtractor(model, variables, input_size=8), model, variables


def test_extractor_pads_to_devices_and_drops_padding():
    ext, model, variables = tiny_extractor()
    assert jax.device_count() == 8
    x = np.random.default_rng(4).uniform(-1, 1, (5, 16, 16, 3)).astype(np.float32)
    got = ext(x)
    assert got.shape == (5, 4)
    want = model.apply(variables, inc.resize_bilinear(x, 8))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_real_stats_through_the_pipeline():
    from anycost_jax.data import pipeline
    ext, _, _ = tiny_extractor()
    images = np.random.default_rng(5).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    # Every image once (12 = one full batch of 8 and a partial one): order does not matter.
    stats = fid.real_stats(pipeline.ArraySource(images), resolution=8, n_images=12, batch_size=8,
                           source_resolution=16, extractor=ext, name='toy', progress=False)
    want = fid.FIDStats.from_features(ext(pipeline.make_pyramid(images, 2)[1]))
    np.testing.assert_allclose(stats.mu, want.mu, rtol=1e-6)
    np.testing.assert_allclose(stats.sigma, want.sigma, rtol=1e-5, atol=1e-9)
    assert (stats.n_images, stats.resolution, stats.dataset) == (12, 8, 'toy')
    # A list (or iterator) of uint8 batches at the requested size works the same; the short last
    # batch is padded to the first one's size, so the network is not compiled again.
    want16 = fid.FIDStats.from_features(ext(pipeline.make_pyramid(images, 1)[0]))
    compiled = ext._trunk._cache_size()
    s2 = fid.real_stats([images[:7], images[7:]], resolution=16, n_images=12, extractor=ext, progress=False)
    np.testing.assert_allclose(s2.mu, want16.mu, rtol=1e-6)
    np.testing.assert_allclose(s2.sigma, want16.sigma, rtol=1e-5, atol=1e-9)
    assert ext._trunk._cache_size() == compiled
    with pytest.raises(ValueError, match='fewer than n_images=13'):
        fid.real_stats(images, resolution=16, n_images=13, extractor=ext, progress=False)
    with pytest.raises(ValueError, match='ran out after 12'):
        fid.real_stats(iter([images[:8], images[8:]]), resolution=16, n_images=16, extractor=ext, progress=False)
    with pytest.raises(ValueError, match='none at the requested resolution 8'):
        fid.real_stats(iter([images]), resolution=8, n_images=4, extractor=ext, progress=False)


@pytest.fixture(scope='module')
def tiny_gen():
    gen = Generator(8, style_dim=16, n_mlp=1, channel_multiplier=1 / 64)
    return gen, gen.init_variables(jax.random.key(1))


def test_fake_features_same_latents_for_every_config(tiny_gen):
    gen, variables = tiny_gen
    ext, _, _ = tiny_extractor()
    # 2 widths x 2 resolutions, and the full generator again (None and SubConfig() are the same).
    configs = [None, SubConfig(channel_ratio=0.5), SubConfig(channel_ratio=1.0, target_res=4),
               SubConfig(channel_ratio=0.5, target_res=4), SubConfig()]
    n = 10  # one full batch of 8 and a padded one
    stats = fid.fake_features(gen, variables, configs, n_images=n, batch_size=8, seed=7, extractor=ext,
                              progress=False)
    assert [s.dataset for s in stats] == ['1.0x@8', '0.5x@8', '1.0x@4', '0.5x@4', '1.0x@8#2']  # as consistency's
    assert [s.resolution for s in stats] == [8, 8, 4, 4, 8]
    for s in stats:
        assert s.n_images == n and np.isfinite(s.mu).all() and np.isfinite(s.sigma).all()
    np.testing.assert_array_equal(stats[0].mu, stats[4].mu)  # the same program on the same latents
    np.testing.assert_array_equal(stats[0].sigma, stats[4].sigma)
    assert not np.allclose(stats[0].mu, stats[1].mu)
    # Every config renders samples 0..n-1 of the seed (latents and per-sample noise): recompute one directly.
    @jax.jit
    def direct(variables):
        z, noise = fid.sample_latents(gen, 7, jnp.arange(n))
        return jnp.clip(gen.apply(variables, z, noise=noise, channel_ratio=0.5, target_res=4), -1, 1)
    want = fid.FIDStats.from_features(ext(np.asarray(direct(variables))))
    np.testing.assert_allclose(stats[3].mu, want.mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats[3].sigma, want.sigma, rtol=1e-4, atol=1e-8)

    # FID per config against real statistics per resolution; the full config against its own fakes is 0.
    real = {8: stats[0], 4: stats[2]}
    fids = fid.fid_for_configs(gen, variables, configs[:4], real, n_images=n, batch_size=8, seed=7,
                               extractor=ext, progress=False)
    assert list(fids) == ['1.0x@8', '0.5x@8', '1.0x@4', '0.5x@4']
    assert abs(fids['1.0x@8']) < 1e-6 and abs(fids['1.0x@4']) < 1e-6
    assert all(np.isfinite(v) for v in fids.values()) and fids['0.5x@8'] > 1e-6


def test_fid_checks_resolutions_before_generating(tiny_gen, tmp_path):
    gen, variables = tiny_gen
    ext, _, _ = tiny_extractor()
    s = fid.FIDStats.from_features(np.random.default_rng(6).normal(size=(10, 4)), resolution=4)
    path = tmp_path / 'real4.npz'
    s.save(path)
    with pytest.raises(ValueError, match=r'are for 4 px images but 1.0x@8 renders 8 px'):
        fid.fid_for_configs(gen, variables, [None], str(path), n_images=4, extractor=ext, progress=False)
    with pytest.raises(ValueError, match=r'no real statistics at 8 px for 0.5x@8 \(given: \[4\] px\)'):
        fid.fid_for_configs(gen, variables, [0.5], {4: s}, n_images=4, extractor=ext, progress=False)
    with pytest.raises(FileNotFoundError, match='real_stats'):
        fid.fid_for_configs(gen, variables, [None], str(tmp_path / 'missing.npz'), extractor=ext)
    with pytest.raises(ValueError, match='channel_ratio=0.3'):
        fid.fake_features(gen, variables, [0.3], n_images=4, extractor=ext)
