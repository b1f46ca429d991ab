"""Tests for anycost_jax.convert (checkpoints in and out), the models' argument errors and launch/convert.py.

Everything runs on tiny models (a 32x32 generator of widths 32..4, 32x32 discriminators) whose
variables are drawn with numpy on the shapes from ``jax.eval_shape`` (no eager init: that would
compile every op). Forward passes are jitted and cached per (module, options); argument errors are
provoked under ``jax.eval_shape`` so nothing compiles. XLA's optimizations are off for this module
(compilation dominates the runtime; every comparison runs both sides under the same setting).
"""
from __future__ import annotations

import functools
import http.server
import os
import re
import threading

import jax
import numpy as np
import pytest
from absl import logging as absl_logging

from anycost_jax import checkpoint, cli, convert, elastic, workdir
from anycost_jax.convert import original
from anycost_jax.convert.original import ConversionError
from anycost_jax.convert.torch_io import TorchFileError, load_torch_file, save_torch_file
from anycost_jax.models.discriminator import Discriminator, DiscriminatorMultiRes
from anycost_jax.models.generator import Generator

RES, STYLE_DIM = 32, 32
MULT = 1 / 128  # widths 32, 32, 16, 16, 8, 8, 4, 4


# --------------------------------------------------------------------------- helpers


def tiny_generator(**kw) -> Generator:
    return Generator(RES, style_dim=STYLE_DIM, n_mlp=2, channel_multiplier=MULT, **kw)


def tiny_multires() -> DiscriminatorMultiRes:
    return DiscriminatorMultiRes(RES, n_res=3, modulate=True, channel_multiplier=MULT)


def tiny_plain() -> Discriminator:
    return Discriminator(RES, channel_multiplier=MULT)


def random_variables(module, *init_args, seed: int = 0) -> dict:
    """Every leaf (weights, biases, noise strengths, noise buffers) random and non-zero."""
    shapes = jax.eval_shape(lambda: module.init({'params': jax.random.key(0)}, *init_args))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (rng.standard_normal(s.shape) * 0.5 + 0.1).astype(np.float32), shapes)


def disc_args(disc, batch=4, res=RES):
    x = np.random.default_rng(1).standard_normal((batch, res, res, 3)).astype(np.float32)
    if isinstance(disc, DiscriminatorMultiRes) and disc.modulate:
        ratio_idx = np.full(elastic.num_elastic_layers(disc.resolution), 2)  # same layout as elastic.arch_code
        return x, np.eye(len(elastic.RATIOS), dtype=np.float32)[ratio_idx].reshape(-1)
    return (x,)


def flat(tree, prefix=()) -> dict:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in flat(sub, prefix + (key,)).items()}
    return {'/'.join(prefix): np.asarray(tree)}


def assert_same_variables(a: dict, b: dict, ignore=('stats',)):
    fa = {k: v for k, v in flat(a).items() if k.split('/')[0] not in ignore}
    fb = {k: v for k, v in flat(b).items() if k.split('/')[0] not in ignore}
    assert sorted(fa) == sorted(fb)
    for k in fa:
        assert fa[k].dtype == fb[k].dtype == np.float32, k
        assert fa[k].shape == fb[k].shape, k
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)


@functools.lru_cache(maxsize=None)
def _jitted(module, kw: tuple):
    return jax.jit(lambda v, *args: module.apply(v, *args, **dict(kw)))


def run(module, variables, *args, **kw):
    """Jitted ``module.apply`` (one compilation per equal module and options)."""
    out = np.asarray(_jitted(module, tuple(sorted(kw.items())))(variables, *args))
    assert np.isfinite(out).all()
    return out


def assert_same_generator(gen_a, gen_b):
    for attr in ('resolution', 'style_dim', 'n_mlp', 'blur_kernel', 'lr_mlp', 'widths', 'output_res'):
        assert getattr(gen_a, attr) == getattr(gen_b, attr), attr
    assert gen_a.full_channels() == gen_b.full_channels()
    for r in elastic.RATIOS:  # the inferred channel_max must give the same sub-generators
        assert elastic.uniform_channels(RES, r, gen_a.base_channels(), gen_a.channel_max) == \
            elastic.uniform_channels(RES, r, gen_b.base_channels(), gen_b.channel_max)


@pytest.fixture(scope='module', autouse=True)
def _fast_compilation():
    before = jax.config.read('jax_disable_most_optimizations')
    jax.config.update('jax_disable_most_optimizations', True)
    yield
    jax.config.update('jax_disable_most_optimizations', before)


@pytest.fixture(scope='module')
def gen():
    g = tiny_generator()
    assert g.full_channels() == [32, 32, 16, 16, 8, 8, 4, 4]
    return g, random_variables(g, np.zeros((1, STYLE_DIM), np.float32))


@pytest.fixture(scope='module')
def dmulti():
    d = tiny_multires()
    return d, random_variables(d, *original._disc_init_args(d), seed=2)


@pytest.fixture(scope='module')
def dplain():
    d = tiny_plain()
    return d, random_variables(d, *original._disc_init_args(d), seed=3)


@pytest.fixture(scope='module')
def z():
    return np.random.default_rng(4).standard_normal((2, STYLE_DIM)).astype(np.float32)


@pytest.fixture(scope='module')
def pt_file(tmp_path_factory, gen, dmulti):
    """An original-format checkpoint with g_ema and d."""
    path = str(tmp_path_factory.mktemp('pt') / 'tiny.pt')
    convert.save_original(path, gen[0], gen[1], dmulti[0], dmulti[1])
    return path


# --------------------------------------------------------------------------- round trips


def test_original_round_trip_generator(gen, pt_file, z):
    g, v = gen
    ckpt = load_torch_file(pt_file)
    assert set(ckpt) == {'g_ema', 'd'}
    assert ckpt['g_ema']['convs.0.conv.weight'].shape == (1, 16, 32, 3, 3)  # PyTorch layout on disk
    g2, v2 = convert.load_generator(pt_file, mean_style=False)
    assert type(g2) is Generator and 'stats' not in v2
    assert_same_generator(g, g2)
    assert_same_variables(v, v2)
    np.testing.assert_array_equal(run(g, v, z), run(g2, v2, z))
    # and the exported state dict of the reloaded model is bit-identical
    sd2 = original.generator_to_state_dict(g2, v2)
    assert sorted(sd2) == sorted(ckpt['g_ema'])
    for k in sd2:
        np.testing.assert_array_equal(sd2[k], ckpt['g_ema'][k], err_msg=k)


@pytest.mark.parametrize('which', ['multires', 'plain'])
def test_original_round_trip_discriminators(which, dmulti, dplain, tmp_path):
    d, dv = dmulti if which == 'multires' else dplain
    path = str(tmp_path / 'd.pt')
    convert.save_original(path, discriminator=d, d_variables=dv)
    assert set(load_torch_file(path)) == {'d'}
    d2, dv2 = convert.load_discriminator(path)
    assert type(d2) is type(d) and d2.resolution == d.resolution
    if which == 'multires':
        assert (d2.n_res, d2.modulate) == (3, True)
    assert elastic.channels_per_resolution(d.channel_multiplier, d.channel_max) == \
        elastic.channels_per_resolution(d2.channel_multiplier, d2.channel_max)
    assert_same_variables(dv, dv2)
    args = disc_args(d)
    logits = run(d, dv, *args)
    assert logits.shape == (4, 1)
    np.testing.assert_array_equal(logits, run(d2, dv2, *args))


def test_our_directory_round_trip(gen, dmulti, tmp_path, z):
    g, v = gen
    d, dv = dmulti
    g_dir = convert.save_model(str(tmp_path / 'g'), g, v)
    assert sorted(os.listdir(g_dir)) == ['model.json', 'variables']
    g2, v2 = convert.load_generator(g_dir, mean_style=False)
    assert g2 == g  # the exact constructor comes back
    assert_same_variables(v, v2)
    np.testing.assert_array_equal(run(g, v, z), run(g2, v2, z))
    # load_model gives the stored variables as they are
    g3, v3 = convert.load_model(g_dir)
    assert g3 == g and 'stats' not in v3
    d_dir = convert.save_model(str(tmp_path / 'd'), d, dv)
    d2, dv2 = convert.load_discriminator(d_dir)
    assert d2 == d
    assert_same_variables(dv, dv2)
    np.testing.assert_array_equal(run(d, dv, *disc_args(d)), run(d2, dv2, *disc_args(d)))
    # saving over a previous model directory replaces it
    convert.save_model(g_dir, g, v)
    assert convert.load_model(g_dir)[0] == g


def test_directory_keeps_stats_and_pt_drops_them(pt_file, tmp_path):
    g, v = convert.load_generator(pt_file)  # adds stats/w_avg
    g2, v2 = convert.load_generator(convert.save_model(str(tmp_path / 'g'), g, v))
    assert g2 == g
    np.testing.assert_array_equal(v2['stats']['w_avg'], v['stats']['w_avg'])  # stored, not recomputed
    convert.save_original(str(tmp_path / 'g.pt'), g2, v2)  # stats have no original-format key
    assert 'stats' not in convert.load_generator(str(tmp_path / 'g.pt'), mean_style=False)[1]


def test_save_model_refuses_to_overwrite_other_things(gen, tmp_path):
    g, v = gen
    (tmp_path / 'precious').mkdir()
    (tmp_path / 'precious' / 'data.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='precious.*not a model directory'):
        convert.save_model(str(tmp_path / 'precious'), g, v)
    assert (tmp_path / 'precious' / 'data.txt').read_text() == 'keep me'
    (tmp_path / 'file.pt').write_bytes(b'x')
    with pytest.raises(FileExistsError, match='file.pt'):
        convert.save_model(str(tmp_path / 'file.pt'), g, v)
    (tmp_path / 'empty').mkdir()
    convert.save_model(str(tmp_path / 'empty'), g, v)  # an empty directory is fine


def test_mean_style_and_truncation(gen, pt_file, z):
    g, v = gen
    g2, v2 = convert.load_generator(pt_file)
    w_avg = v2['stats']['w_avg']
    assert w_avg.shape == (STYLE_DIM,) and w_avg.dtype == np.float32 and np.isfinite(w_avg).all()
    # truncation < 1 without truncation_style uses stats/w_avg (target_res=4: cheap to compile)
    with_stats = run(g2, v2, z, truncation=0.5, target_res=4)
    explicit = jax.jit(lambda v, z, s: g2.apply(v, z, truncation=0.5, truncation_style=s, target_res=4))
    no_stats = {k: v2[k] for k in ('params', 'noise')}
    np.testing.assert_array_equal(with_stats, np.asarray(explicit(no_stats, z, w_avg)))
    assert not np.allclose(with_stats, np.asarray(explicit(no_stats, z, w_avg + 1)))
    # the stored mean is that of the mapping over MEAN_STYLE_SAMPLES draws of jax.random.key(seed)
    ref = jax.jit(lambda p: g2.apply({'params': p}, jax.random.normal(jax.random.key(0), (convert.MEAN_STYLE_SAMPLES,
                                                                                         STYLE_DIM)),
                                     method=Generator.style).mean(0))
    np.testing.assert_allclose(w_avg, np.asarray(ref(v2['params'])), rtol=1e-5, atol=1e-6)
    # loading the same architecture again reuses the compiled mean-style program and gives the same mean
    assert convert.load_generator(pt_file)[1]['stats']['w_avg'].tobytes() == w_avg.tobytes()


def test_bare_state_dict_and_key_selection(gen, dmulti, tmp_path):
    g, v = gen
    d, dv = dmulti
    bare = str(tmp_path / 'bare_g.pt')
    save_torch_file(original.generator_to_state_dict(g, v), bare)
    assert_same_variables(v, convert.load_generator(bare, mean_style=False)[1])
    bare_d = str(tmp_path / 'bare_d.pt')
    save_torch_file(original.discriminator_to_state_dict(d, dv), bare_d)
    assert_same_variables(dv, convert.load_discriminator(bare_d)[1])
    # a training checkpoint with g, g_ema and d: key picks the generator
    v_other = random_variables(g, np.zeros((1, STYLE_DIM), np.float32), seed=9)
    full = str(tmp_path / 'train.pt')
    save_torch_file({'g': original.generator_to_state_dict(g, v_other),
                     'g_ema': original.generator_to_state_dict(g, v),
                     'd': original.discriminator_to_state_dict(d, dv), 'iteration': 7}, full)
    assert_same_variables(v, convert.load_generator(full, mean_style=False)[1])
    assert_same_variables(v_other, convert.load_generator(full, key='g', mean_style=False)[1])
    assert_same_variables(dv, convert.load_discriminator(full)[1])


def test_sub_generator_and_incomplete_variables_do_not_export(gen, tmp_path):
    g, v = gen
    with pytest.raises(ConversionError, match='sub-generator'):
        convert.save_original(str(tmp_path / 'x.pt'), tiny_generator(output_res=16), v)
    with pytest.raises(ConversionError, match="noise/noise_0.*'noise' collection"):
        convert.save_original(str(tmp_path / 'x.pt'), g, {'params': v['params']})
    with pytest.raises(ValueError, match='generator and/or a discriminator'):
        convert.save_original(str(tmp_path / 'x.pt'))
    assert not (tmp_path / 'x.pt').exists()


# --------------------------------------------------------------------------- URLs


class _Server:
    """http.server on 127.0.0.1 in a thread, serving ``root``; counts requests per path."""

    def __init__(self, root):
        self.hits: dict[str, int] = {}
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                if self.path.startswith('/short/'):  # announces more bytes than it sends, then hangs up
                    data = (root / self.path.split('/')[-1]).read_bytes()
                    self.send_response(200)
                    self.send_header('Content-Length', str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[:len(data) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server(tmp_path, pt_file, monkeypatch):
    root = tmp_path / 'www'
    root.mkdir()
    (root / 'x.pt').write_bytes(open(pt_file, 'rb').read())
    cache = tmp_path / 'cache'
    monkeypatch.setenv('ANYCOST_CACHE', str(cache))
    for var in ('no_proxy', 'NO_PROXY'):
        monkeypatch.setenv(var, '127.0.0.1,localhost')
    s = _Server(root)
    s.cache = cache
    yield s
    s.close()


def test_url_downloads_once_into_cache(server, gen, capsys):
    g, v = gen
    url = f'{server.url}/x.pt'
    g2, v2 = convert.load_generator(url, mean_style=False)
    assert_same_variables(v, v2)
    assert server.hits == {'/x.pt': 1}
    err = capsys.readouterr().err
    assert f'downloading {url}' in err and '100.0%' in err
    cached = os.listdir(server.cache)
    assert len(cached) == 1 and cached[0].endswith('-x.pt')
    assert open(os.path.join(server.cache, cached[0]), 'rb').read() == open(server.cache.parent / 'www' / 'x.pt',
                                                                           'rb').read()
    # second call (generator again, then the discriminator of the same file): served from the cache
    assert_same_variables(v, convert.load_generator(url, mean_style=False)[1])
    assert convert.load_discriminator(url)[0].resolution == RES
    assert server.hits == {'/x.pt': 1}
    assert 'downloading' not in capsys.readouterr().err


def test_url_404_names_url_and_offline_weights(server):
    url = f'{server.url}/missing.pt'
    with pytest.raises(OSError, match=r'could not download .*/missing\.pt.*404.*hosted weights are offline'):
        convert.load_generator(url)
    assert not server.cache.exists() or os.listdir(server.cache) == []


def test_url_interrupted_download_leaves_no_partial_file(server, capsys):
    url = f'{server.url}/short/x.pt'
    with pytest.raises(OSError, match=r'could not download .*/short/x\.pt') as info:
        convert.load_generator(url)
    assert 'hosted weights are offline' in str(info.value)
    assert os.listdir(server.cache) == []  # neither the checkpoint nor a .partial file
    with pytest.raises(OSError):  # and nothing was cached: the next call tries again
        convert.load_generator(url)
    assert server.hits['/short/x.pt'] == 2
    capsys.readouterr()


# --------------------------------------------------------------------------- loading errors


def _write(path, obj) -> str:
    save_torch_file(obj, str(path))
    return str(path)


def test_missing_and_garbage_files(tmp_path):
    missing = str(tmp_path / 'nope.pt')
    with pytest.raises(FileNotFoundError, match=r"checkpoint '.*nope\.pt' does not exist.*\.pt file.*http"):
        convert.load_generator(missing)
    with pytest.raises(FileNotFoundError, match='nope.pt'):
        convert.load_discriminator(missing)
    garbage = tmp_path / 'garbage.pt'
    garbage.write_bytes(b'definitely not a checkpoint' * 10)
    with pytest.raises(TorchFileError, match=r'garbage\.pt: not a torch\.save checkpoint'):
        convert.load_generator(str(garbage))


def test_other_resolution_into_explicit_generator(gen):
    g, v = gen
    sd = original.generator_to_state_dict(g, v)
    big = Generator(64, style_dim=STYLE_DIM, n_mlp=2, channel_multiplier=MULT)
    with pytest.raises(ConversionError, match=r'holds a 32x32 generator, but the given Generator has resolution=64'):
        original.generator_from_state_dict(sd, gen=big)
    # a state dict that is merely incomplete still lists what is missing
    with pytest.raises(ConversionError, match=r'Generator\(resolution=64\): missing keys \[.*\(\d+ in all\)'):
        original.from_state_dict(big, sd, original.generator_table(big), original._generator_buffers(big),
                                 original._shapes(big, np.zeros((1, STYLE_DIM), np.float32)))
    wider = tiny_generator(channel_max=16)  # same keys, other shapes
    with pytest.raises(ConversionError, match=r'input\.input: shape \(1, 32, 4, 4\) converts to .*expected'):
        original.generator_from_state_dict(sd, gen=wider)
    with pytest.raises(ConversionError, match=r'DiscriminatorMultiRes\(resolution=32\).*missing keys'):
        original.discriminator_from_state_dict(sd, disc=tiny_multires())


def test_other_resolution_into_explicit_discriminator(dmulti, dplain):
    for d, dv in (dmulti, dplain):
        sd = original.discriminator_to_state_dict(d, dv)
        small = type(d)(16, channel_multiplier=MULT)
        with pytest.raises(ConversionError, match=rf'holds a 32x32 discriminator, but the given {type(d).__name__} '
                                                  r'has resolution=16'):
            original.discriminator_from_state_dict(sd, disc=small)


def test_missing_extra_keys_and_wrong_blur(gen, dmulti, tmp_path):
    g, v = gen
    sd = original.generator_to_state_dict(g, v)
    for drop in ('convs.1.noise.weight', 'convs.3.conv.weight', 'noises.noise_2'):
        bad = {k: a for k, a in sd.items() if k != drop}
        with pytest.raises(ConversionError, match=rf"missing keys \['{drop}'\], unexpected keys \[\]"):
            convert.load_generator(_write(tmp_path / 'missing.pt', {'g_ema': bad}), mean_style=False)
    with pytest.raises(ConversionError, match=r"missing keys \[\], unexpected keys \['extra\.weight'\]"):
        convert.load_generator(_write(tmp_path / 'extra.pt', {'g_ema': {**sd, 'extra.weight': np.ones(3)}}))
    with pytest.raises(ConversionError, match=r"keys \['style\.1\.weight'\] are missing"):
        original.generator_from_state_dict({k: a for k, a in sd.items() if k != 'style.1.weight'})
    with pytest.raises(ConversionError, match=r"keys \['to_rgbs\.2\.conv\.weight'\] are missing"):
        original.generator_from_state_dict({k: a for k, a in sd.items() if k != 'to_rgbs.2.conv.weight'})
    blur = dict(sd)
    blur['convs.0.conv.blur.kernel'] = np.ones((4, 4), np.float32) / 4
    with pytest.raises(ConversionError, match=r'convs\.0\.conv\.blur\.kernel.*blur kernel other than \[1, 3, 3, 1\]'):
        convert.load_generator(_write(tmp_path / 'blur.pt', {'g_ema': blur}))
    d, dv = dmulti
    dsd = original.discriminator_to_state_dict(d, dv)
    dblur = {**dsd, 'blocks.0.conv2.0.kernel': np.ones((4, 4), np.float32)}
    with pytest.raises(ConversionError, match=r'blocks\.0\.conv2\.0\.kernel.*blur kernel'):
        convert.load_discriminator(_write(tmp_path / 'dblur.pt', {'d': dblur}))
    dmiss = {k: a for k, a in dsd.items() if k != 'blocks.2.conv1.1.weight_mapping.bias'}
    with pytest.raises(ConversionError, match=r"missing keys \['blocks\.2\.conv1\.1\.weight_mapping\.bias'\]"):
        convert.load_discriminator(_write(tmp_path / 'dmiss.pt', {'d': dmiss}))


def test_pt_without_the_requested_model(gen, dmulti, tmp_path):
    g, v = gen
    d, dv = dmulti
    only_d = _write(tmp_path / 'only_d.pt', {'d': original.discriminator_to_state_dict(d, dv)})
    with pytest.raises(ConversionError, match=r"only_d\.pt: expected an original checkpoint with key 'g_ema'.*"
                                              r"'style\.1\.weight'; found \['d'\]"):
        convert.load_generator(only_d)
    only_g = _write(tmp_path / 'only_g.pt', {'g_ema': original.generator_to_state_dict(g, v)})
    with pytest.raises(ConversionError, match=r"key 'd'.*'final_linear\.1\.weight'; found \['g_ema'\]"):
        convert.load_discriminator(only_g)
    with pytest.raises(ConversionError, match=r"key 'g'.*found \['g_ema'\]"):
        convert.load_generator(only_g, key='g')
    not_a_dict = _write(tmp_path / 'list.pt', [1, 2])
    with pytest.raises(ConversionError, match="key 'g_ema'.*found list"):
        convert.load_generator(not_a_dict)


def test_directory_errors(gen, dmulti, tmp_path):
    d, dv = dmulti
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ConversionError, match=r"'.*empty' is a directory without model\.json"):
        convert.load_generator(str(tmp_path / 'empty'))
    d_dir = convert.save_model(str(tmp_path / 'd'), d, dv)
    with pytest.raises(ConversionError, match=r"holds a DiscriminatorMultiRes, not a generator"):
        convert.load_generator(d_dir)
    g_dir = convert.save_model(str(tmp_path / 'g'), *gen)
    with pytest.raises(ConversionError, match=r"holds a Generator, not a discriminator"):
        convert.load_discriminator(g_dir)


# --------------------------------------------------------------------------- model argument errors


def gen_error(gen, styles, rngs=None, **kw):
    g, v = gen
    return jax.eval_shape(lambda: g.apply(v, styles, rngs=rngs, **kw))


@pytest.mark.parametrize('shape,match', [
    ((2, 2, 2, STYLE_DIM), r'styles has shape \(2, 2, 2, 32\); expected \[N, 32\]'),
    ((2, 16), r'styles has shape \(2, 1, 16\); expected \[N, 32\]'),
    ((2, 5, STYLE_DIM), r'styles has 5 latents per sample; expected 1, 2 \(mixing\) or n_style=8'),
])
def test_generator_bad_latents(gen, shape, match):
    with pytest.raises(ValueError, match=match):
        gen_error(gen, np.zeros(shape, np.float32))


@pytest.mark.parametrize('kw,match', [
    (dict(channel_ratio=0.3), r'channel_ratio=0\.3 is not supported; expected one of \(0\.25, 0\.5, 0\.75, 1\.0\)'),
    (dict(target_res=12), r'target_res=12 cannot be emitted.*expected one of \(4, 8, 16, 32\)'),
    (dict(target_res=64), r'target_res=64 cannot be emitted'),
    (dict(channels=[32] * 7), r'channels has 7 entries, expected 8'),
    (dict(channels=[32, 32, 16, 16, 8, 9, 4, 4]), r'channels\[5\]=9 is invalid: expected an integer in \[1, 8\]'),
    (dict(channels=[32, 32, 16, 0, 8, 8, 4, 4]), r'channels\[3\]=0 is invalid'),
    (dict(channel_ratio=0.5, channels=[32] * 8), r'channel_ratio and channels are mutually exclusive'),
    (dict(noise_mode='random'), r"noise_mode='random' needs rngs=\{'noise': key\}"),
    (dict(noise_mode='weird'), r"noise_mode='weird' is not supported"),
    (dict(truncation=0.7), r'truncation < 1 needs truncation_style .* stats/w_avg'),
])
def test_generator_bad_arguments(gen, z, kw, match):
    with pytest.raises(ValueError, match=match):
        gen_error(gen, z, **kw)


def test_generator_mixing_needs_index_or_rng(gen, z):
    two = np.stack([z, z[::-1]], 1)
    with pytest.raises(ValueError, match=r'two styles given without inject_index: pass inject_index \(1\.\.7\) or '
                                         r'rngs=\{"mixing": key\}'):
        gen_error(gen, two)
    with pytest.raises(ValueError, match=r'inject_index=9 is out of range; expected 0\.\.8'):
        gen_error(gen, two, inject_index=9)
    # either fix makes it work
    assert gen_error(gen, two, inject_index=3).shape == (2, RES, RES, 3)
    assert gen_error(gen, two, rngs={'mixing': jax.random.key(0)}).shape == (2, RES, RES, 3)
    assert gen_error(gen, z, rngs={'noise': jax.random.key(0)}, noise_mode='random').shape == (2, RES, RES, 3)


@pytest.mark.parametrize('which,args,match', [
    ('multires', ((4, 24, 24, 3), 'arch'), r'image resolution 24 is not accepted; expected one of \[8, 16, 32\]'),
    ('multires', ((4, 4, 4, 3), 'arch'), r'image resolution 4 is not accepted'),
    ('multires', ((4, RES, RES, 3),), r'modulate=True\): pass arch='),
    ('multires', ((4, RES, RES, 3), (31,)), r'arch has shape \(31,\); expected \[32\] or \[N, 32\]'),
    ('multires', ((6, RES, RES, 3), 'arch'), r'batch 6 is not divisible by the group size 4'),
    ('plain', ((4, 16, 16, 3),), r'image resolution 16 is not accepted; expected one of \[32\]'),
    ('plain', ((4, RES, RES, 1),), r'images must be NHWC square RGB \[N, R, R, 3\], got shape \(4, 32, 32, 1\)'),
    ('plain', ((6, RES, RES, 3),), r'batch 6 is not divisible by the group size 4'),
])
def test_discriminator_bad_inputs(which, args, match, dmulti, dplain):
    d, dv = dmulti if which == 'multires' else dplain
    arrays = [np.zeros(a, np.float32) if a != 'arch' else np.zeros((d.arch_code_length,), np.float32) for a in args]
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda: d.apply(dv, *arrays))


def test_discriminator_accepts_every_input_resolution(dmulti):
    d, dv = dmulti
    arch = np.zeros((2, d.arch_code_length), np.float32)
    for r in (8, 16, 32):
        assert jax.eval_shape(lambda: d.apply(dv, np.zeros((2, r, r, 3), np.float32), arch)).shape == (2, 1)


def test_load_generator_reads_training_workdirs(gen, tmp_path):
    """The one resolver of every launcher: a stage workdir gives its latest checkpoint's EMA weights
    (in float32, as the exports), a pipeline's its final export."""
    import ml_collections
    g, v = gen
    stage = str(tmp_path / 'run' / 'stage')
    config = ml_collections.ConfigDict(dict(resolution=RES, bf16_from_res=16, model=dict(
        style_dim=STYLE_DIM, n_mlp=2, channel_multiplier=MULT, channel_max=512)))
    workdir.write_config(config, stage, ())
    ema = jax.tree.map(lambda a: np.asarray(a) + 1, v['params'])  # not the online weights
    with checkpoint.Checkpointer(workdir.checkpoint_dir(stage), async_save=False) as ck:
        ck.save(1, {'params': v['params'], 'ema_params': v['params'], 'g_noise': v['noise']}, {})
        ck.save(3, {'params': v['params'], 'ema_params': ema, 'g_noise': v['noise']}, {})
    g2, v2 = convert.load_generator(stage)
    assert g2 == g and 'stats' in v2  # float32: bf16_from_res dropped; the mean w added
    assert_same_variables({'params': ema, 'noise': v['noise']}, v2)
    assert convert.generator_from_config(config).bf16_from_res == 16  # the trainer's, at the run's precision
    convert.save_model(str(tmp_path / 'run' / 'generator'), g, v)
    g3, v3 = convert.load_generator(str(tmp_path / 'run'))
    assert g3 == g
    assert_same_variables(v, v3)
    with pytest.raises(FileNotFoundError, match=r"does not exist; .*a training workdir"):
        convert.load_generator(str(tmp_path / 'nowhere'))


# --------------------------------------------------------------------------- launch/convert.py


def test_launch_convert_end_to_end(gen, dmulti, pt_file, tmp_path, capsys):
    from launch import convert as launch_convert
    g, v = gen
    d, dv = dmulti
    out = str(tmp_path / 'ours')
    written = convert.convert_checkpoint(pt_file, out, what='both')
    assert written == [os.path.join(out, 'generator'), os.path.join(out, 'discriminator')]
    log = capsys.readouterr().out
    assert 'found generator in' in log and "(key 'g_ema')" in log and 'Generator 32x32' in log
    assert 'widths [32, 32, 16, 16, 8, 8, 4, 4]' in log and 'DiscriminatorMultiRes 32x32' in log
    n_params = sum(a.size for k, a in flat(v).items() if k.startswith('params/'))
    assert f'{n_params:,} parameters' in log
    assert f'wrote generator to {written[0]}' in log and f'wrote discriminator to {written[1]}' in log
    g2, v2 = convert.load_generator(written[0], mean_style=False)
    assert 'stats' in v2  # stored by the conversion
    assert_same_variables(v, v2)
    assert_same_variables(dv, convert.load_discriminator(written[1])[1])
    # and back to the original format from the 'both' directory
    back = str(tmp_path / 'back' / 'model.pt')
    assert convert.convert_checkpoint(out, back, what='both') == [back]
    ckpt, ref = load_torch_file(back), load_torch_file(pt_file)
    assert set(ckpt) == {'g_ema', 'd'}
    for part in ckpt:
        assert sorted(ckpt[part]) == sorted(ref[part])
        for k in ckpt[part]:
            np.testing.assert_array_equal(ckpt[part][k], ref[part][k], err_msg=k)
    # main() with flags: the discriminator only, under an explicit key
    flags, verbosity = launch_convert.FLAGS, absl_logging.get_verbosity()

    def main(*args):
        flags(['convert', *args])
        try:
            cli.guard(launch_convert.main, outputs=['output'])(['convert'])  # as cli.run runs it
        finally:
            flags.unparse_flags()
            absl_logging.set_verbosity(verbosity)

    main(f'--input={pt_file}', f'--output={tmp_path / "d_only"}', '--what=discriminator', '--key=d')
    assert 'wrote discriminator to' in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(f'--input={tmp_path / "d_only"}', f'--output={tmp_path / "x"}')
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: .*holds a DiscriminatorMultiRes, not a generator\n", err), err
    assert not os.path.exists(tmp_path / 'x')
    assert_same_variables(dv, convert.load_discriminator(str(tmp_path / 'd_only'))[1])
    with pytest.raises(ValueError, match=r"key='a,b,c': expected G or G,D"):
        convert.convert_checkpoint(pt_file, out, what='both', key='a,b,c')
    with pytest.raises(ValueError, match=r"what='all' is not supported"):
        convert.convert_checkpoint(pt_file, out, what='all')


# --------------------------------------------------------------------------- trained resolutions


def test_trained_resolutions_are_kept_and_defaulted(gen, pt_file, tmp_path, caplog):
    g, v = gen
    trained = g.clone(trained_resolutions=(32, 16))
    assert trained.trained_output_resolutions == (16, 32)
    assert elastic.default_resolutions(trained) == [32, 16]
    # "unknown" (the default, old model directories): every resolution, the launchers' four highest
    assert g.trained_output_resolutions == g.output_resolutions
    assert elastic.default_resolutions(g) == [32, 16, 8, 4]
    # our directory stores it in model.json
    g2, _ = convert.load_generator(convert.save_model(str(tmp_path / 'g'), trained, v), mean_style=False)
    assert g2.trained_resolutions == (32, 16)
    # an original .pt does not say: the released models' n_res=4 highest
    g3, _ = convert.load_generator(pt_file, mean_style=False)
    assert g3.trained_resolutions == (32, 16, 8, 4)
    # a training config: its n_res highest
    from configs import demo
    from anycost_jax.train import config_lib
    cfg = demo.get_config('')
    stage = config_lib.stage_configs(cfg)[-1][1]
    g4 = convert.generator_from_config(stage)
    assert g4.trained_output_resolutions == elastic.resolutions_up_to(stage.resolution)[::-1][:stage.n_res][::-1]
    # an exported sub-generator below every trained resolution still offers its own top
    assert trained.clone(output_res=8).trained_output_resolutions == (8,)
    # an untrained request is one warning line, and still allowed
    with caplog.at_level('WARNING'):
        assert elastic.warn_untrained(trained, [32, 8, 4]) == [8, 4]
        assert elastic.uniform_grid(trained, (1.0,), [8]) == [[(1.0, 8)]]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
    assert warnings[0] == 'resolution 8 px, 4 px: not trained (this generator was trained at 32, 16 px), so ' \
                          'expect no learned image there'
    assert len(warnings) == 2 and '8 px' in warnings[1]
