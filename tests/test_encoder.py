"""The ResNet-50 encoder and attribute predictor: parity with the original (torchvision), the
256 input check, conversion round trips (original .pt, our directory, URL), and encoder training.

Parity fixture: ``fixtures/encoder_expected.npz`` holds the original encoder's and predictor's
outputs (torch 2.14.1 / torchvision 0.29.1) on synthetic weights and images that
``fixtures/make_encoder_fixture.py`` draws from numpy seeds; the test rebuilds the same weights
from our own key list, writes them as original ``{'state_dict': ...}`` checkpoints and loads
them through ``convert.load_encoder`` / ``load_attribute_predictor``. Tolerance: 1e-4 relative
max error (float32 through 53 layers; measured ~1e-6). The other tests use a tiny trunk
(one block per stage, width 8): conversion and training do not depend on the depth.
"""
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anycost_jax import convert
from anycost_jax.convert import resnet as cr
from anycost_jax.convert.torch_io import save_torch_file
from anycost_jax.editing import encoder_training as et
from anycost_jax.eval.consistency import predictions
from anycost_jax.models.encoder import (CELEBA_ATTRIBUTES, AttributePredictor, ResNet50Encoder, encoder_input,
                                        predict_attributes)
from anycost_jax.models.generator import Generator
from tests.test_convert import _Server

FIX = os.path.join(os.path.dirname(__file__), 'fixtures')
TINY = dict(stage_sizes=(1, 1, 1, 1), width=8)


def _fixture_helper():
    spec = importlib.util.spec_from_file_location('make_encoder_fixture', os.path.join(FIX, 'make_encoder_fixture.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rel_err(got, want):
    return float(np.abs(np.asarray(got) - want).max() / np.abs(want).max())


# --------------------------------------------------------------------------- parity with the original


@pytest.mark.slow
def test_encoder_and_predictor_match_original(tmp_path):
    helper = _fixture_helper()
    ref = np.load(os.path.join(FIX, 'encoder_expected.npz'))
    images = helper.synthetic_images()
    assert helper.checksum(images.values()) == pytest.approx(float(ref['images_checksum']), rel=1e-12)

    enc_shapes = cr.state_dict_shapes(ResNet50Encoder(helper.N_STYLE, helper.STYLE_DIM))
    sd = helper.random_state_dict(enc_shapes)
    assert helper.checksum(sd.values()) == pytest.approx(float(ref['encoder_weights_checksum']), rel=1e-12), \
        'numpy draws different synthetic weights than when the fixture was made'
    n_bn = sum(k.endswith('running_mean') for k in sd)
    assert len(sd) + n_bn == int(ref['n_encoder_keys'])  # + the BatchNorm step counters
    sd.update({k[:-len('running_mean')] + 'num_batches_tracked': np.array(7, np.int64)
               for k in list(sd) if k.endswith('running_mean')})
    save_torch_file({'state_dict': sd, 'epoch': 3}, str(tmp_path / 'enc.pt'))
    enc, enc_vars = convert.load_encoder(str(tmp_path / 'enc.pt'))
    assert (enc.n_style, enc.style_dim, enc.input_size) == (helper.N_STYLE, helper.STYLE_DIM, 256)
    assert tuple(enc.stage_sizes) == (3, 4, 6, 3) and enc.width == 64

    pred_shapes = cr.state_dict_shapes(AttributePredictor())
    psd = helper.random_state_dict(pred_shapes)
    assert helper.checksum(psd.values()) == pytest.approx(float(ref['predictor_weights_checksum']), rel=1e-12)
    save_torch_file({'state_dict': {f'module.{k}': v for k, v in psd.items()}}, str(tmp_path / 'pred.pt'))
    pred, pred_vars = convert.load_attribute_predictor(str(tmp_path / 'pred.pt'))
    assert pred.n_attributes == len(CELEBA_ATTRIBUTES) == 40

    errs = {}
    with jax.default_matmul_precision('highest'):
        # The small images skip the 256 check (a copy of the encoder built for 64 px), as the fixture does.
        small = enc.clone(input_size=helper.SMALL)
        errs['encoder_small'] = _rel_err(jax.jit(small.apply)(enc_vars, images['small']), ref['encoder_small'])
        got_full = enc.apply(enc_vars, images['full'])  # the real 256 path, exactly the editing call
        errs['encoder_full'] = _rel_err(got_full, ref['encoder_full'])
        got_pred = jax.jit(pred.apply)(pred_vars, images['small'])
        errs['predictor_small'] = _rel_err(got_pred, ref['predictor_small'])
        # As the original metric: clamp an unclamped 48 px generator image, resize to 256, [N, 40, 2].
        got_metric = predict_attributes(pred, pred_vars, images['metric'])
        errs['predictor_metric'] = _rel_err(got_metric, ref['predictor_metric'])
    print('max relative errors', errs)
    assert got_full.shape == (1, helper.N_STYLE, helper.STYLE_DIM) and got_metric.shape == (1, 40, 2)
    assert max(errs.values()) < 1e-4, errs
    np.testing.assert_array_equal(predictions(got_metric), predictions(ref['predictor_metric']))
    # Meaningful: the two small images' outputs differ far more than our error.
    want = ref['encoder_small']
    assert np.abs(want[0] - want[1]).max() / np.abs(want).max() > 100 * errs['encoder_small']


# --------------------------------------------------------------------------- tiny models: checks and round trips


@pytest.fixture(scope='module')
def tiny():
    enc = ResNet50Encoder(n_style=4, style_dim=8, **TINY)
    variables = enc.init_variables(jax.random.key(1), mean_latent=np.linspace(-1, 1, 8))
    # Non-trivial BatchNorm statistics, so a mix-up of mean/var or scale/bias shows.
    rng = np.random.default_rng(0)
    variables = {**variables, 'batch_stats': jax.tree.map(
        lambda a: np.asarray(rng.uniform(0.5, 1.5, a.shape), np.float32), variables['batch_stats'])}
    x = np.random.default_rng(1).uniform(-1, 1, (2, 256, 256, 3)).astype(np.float32)
    return enc, variables, x, np.asarray(jax.jit(enc.apply)(variables, x))


def _assert_same_tree(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_input_must_be_256(tiny):
    enc, variables, x, _ = tiny
    with pytest.raises(ValueError, match=r'256x256 images .* got 128x128.*encoder_input'):
        enc.apply(variables, x[:, :128, :128])
    with pytest.raises(ValueError, match=r'square NHWC'):
        enc.apply(variables, x[:, :, :200])
    # encoder_input resizes (align_corners=True: corners are kept) and leaves 256 alone.
    small = x[:, ::4, ::4]
    y = np.asarray(encoder_input(small))
    assert y.shape == (2, 256, 256, 3)
    np.testing.assert_allclose(y[:, 0, 0], small[:, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(y[:, -1, -1], small[:, -1, -1], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(encoder_input(x)), x)


def test_state_dict_round_trips(tiny, tmp_path):
    enc, variables, x, want = tiny
    sd = convert.encoder_to_state_dict(enc, variables)
    assert sd['mean_latent'].shape == (8,) and sd['fc.weight'].shape == (32, 256)
    assert sd['layer2.0.conv2.weight'].shape == (16, 16, 3, 3) and sd['layer2.0.downsample.1.running_var'].shape == (64,)
    assert sd['bn1.num_batches_tracked'].dtype == np.int64
    enc2, v2 = cr.encoder_from_state_dict(sd)
    assert enc2 == enc
    _assert_same_tree(v2, variables)
    # The original's file format ({'state_dict': ...}, as models.get_pretrained reads it), with DataParallel prefixes.
    convert.save_original_encoder(str(tmp_path / 'enc.pt'), enc, variables)
    obj = convert.load_torch_file(str(tmp_path / 'enc.pt'))
    assert set(obj) == {'state_dict'} and set(obj['state_dict']) == set(sd)
    save_torch_file({'state_dict': {f'module.{k}': v for k, v in sd.items()}}, str(tmp_path / 'prefixed.pt'))
    for path in ('enc.pt', 'prefixed.pt'):
        enc3, v3 = convert.load_encoder(str(tmp_path / path))
        assert enc3 == enc
        _assert_same_tree(v3, variables)


def test_model_directory_and_url(tiny, tmp_path, monkeypatch):
    enc, variables, x, want = tiny
    convert.save_model(str(tmp_path / 'enc_dir'), enc, variables)
    enc2, v2 = convert.load_encoder(str(tmp_path / 'enc_dir'))
    assert enc2 == enc
    np.testing.assert_array_equal(np.asarray(jax.jit(enc2.apply)(v2, x)), want)
    enc3, v3 = convert.load_model(str(tmp_path / 'enc_dir'))
    assert isinstance(enc3, ResNet50Encoder) and set(v3) == {'params', 'batch_stats', 'stats'}
    with pytest.raises(convert.ConversionError, match='holds a ResNet50Encoder, not a AttributePredictor'):
        convert.load_attribute_predictor(str(tmp_path / 'enc_dir'))

    root = tmp_path / 'www'
    root.mkdir()
    convert.save_original_encoder(str(root / 'encoder_x.pt'), enc, variables)
    monkeypatch.setenv('ANYCOST_CACHE', str(tmp_path / 'cache'))
    for var in ('no_proxy', 'NO_PROXY'):
        monkeypatch.setenv(var, '127.0.0.1,localhost')
    server = _Server(root)
    try:
        for _ in range(2):  # the second load reads the cache
            enc4, v4 = convert.load_encoder(f'{server.url}/encoder_x.pt')
            assert enc4 == enc
            _assert_same_tree(v4, variables)
        assert server.hits == {'/encoder_x.pt': 1}
    finally:
        server.close()


def test_predictor_round_trip_and_errors(tiny, tmp_path):
    enc, variables, _, _ = tiny
    pred = AttributePredictor(n_attributes=3, **TINY)
    pv = pred.init_variables(jax.random.key(2))
    psd = cr.predictor_to_state_dict(pred, pv)
    pred2, pv2 = cr.predictor_from_state_dict(psd)
    assert pred2 == pred
    _assert_same_tree(pv2, pv)
    convert.save_model(str(tmp_path / 'pred'), pred, pv)
    pred3, pv3 = convert.load_attribute_predictor(str(tmp_path / 'pred'))
    assert pred3 == pred and set(pv3) == {'params', 'batch_stats'}

    sd = convert.encoder_to_state_dict(enc, variables)
    with pytest.raises(convert.ConversionError, match="'mean_latent' is missing.*load_attribute_predictor"):
        cr.encoder_from_state_dict(psd)
    bad = dict(sd)
    del bad['layer3.0.bn2.running_var']
    bad['layer3.0.extra.weight'] = np.zeros(3, np.float32)
    with pytest.raises(convert.ConversionError, match=r"missing keys \['layer3.0.bn2.running_var'\], unexpected "
                                                       r"keys \['layer3.0.extra.weight'\]"):
        cr.encoder_from_state_dict(bad)
    bad = dict(sd, **{'layer1.0.conv2.weight': np.zeros((8, 8, 1, 1), np.float32)})
    with pytest.raises(convert.ConversionError, match=r'layer1.0.conv2.weight: shape \(8, 8, 1, 1\)'):
        cr.encoder_from_state_dict(bad)
    with pytest.raises(convert.ConversionError, match='not a multiple of style_dim=5'):
        cr.encoder_from_state_dict(dict(sd, mean_latent=np.zeros(5, np.float32)))
    save_torch_file({'g_ema': {'style.1.weight': np.zeros((2, 2), np.float32)}}, str(tmp_path / 'g.pt'))
    with pytest.raises(convert.ConversionError, match="key 'state_dict'.*fc.weight"):
        convert.load_encoder(str(tmp_path / 'g.pt'))
    with pytest.raises(convert.ConversionError, match='only accepts 256x256'):
        convert.encoder_to_state_dict(enc.clone(input_size=128), variables)


# --------------------------------------------------------------------------- training


@pytest.mark.slow
def test_train_encoder_steps_save_and_resume(tmp_path):
    gen = Generator(16, style_dim=16, n_mlp=1, channel_multiplier=1 / 64)
    g_vars = gen.init_variables(jax.random.key(0))
    # Quick: the default encoder input, sized to the 16 px generator (32 px; the 256 path is the parity
    # test's), and no LPIPS (VGG compiles and runs slowly here; test_reconstruction_loss checks that term).
    kw = dict(batch_size=2, lpips_weight=0., latent_weight=1., mixing_prob=0.5, sub_generator_prob=0.5,
              save_every=2, progress=False, **TINY)
    workdir = str(tmp_path / 'run')
    enc, variables, history = et.train_encoder(gen, g_vars, workdir, steps=2, **kw)
    assert len(history) == 2 and all(np.isfinite(h['loss']) and h['mse'] > 0 for h in history)
    assert (enc.n_style, enc.style_dim, enc.input_size) == (gen.n_style, gen.style_dim, 32)
    _, init = et.init_encoder(gen, g_vars, et.EncoderTrainConfig(input_size=32, **TINY),
                              jax.random.split(jax.random.key(0))[0])
    changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), variables['params'],
                           init['params'])
    assert all(jax.tree.leaves(changed)), 'every parameter should have moved'
    np.testing.assert_array_equal(variables['stats']['mean_latent'], init['stats']['mean_latent'])
    assert not np.array_equal(variables['batch_stats']['resnet']['bn1']['mean'],
                              init['batch_stats']['resnet']['bn1']['mean'])
    # The exported encoder reproduces the trained one, through the editing call.
    enc2, v2 = convert.load_encoder(os.path.join(workdir, et.ENCODER_DIR))
    x = np.asarray(jnp.clip(gen.apply(g_vars, jax.random.normal(jax.random.key(5), (1, 16))), -1, 1))
    np.testing.assert_allclose(np.asarray(enc2.apply(v2, encoder_input(x, 32))),
                               np.asarray(enc.apply(variables, encoder_input(x, 32))), rtol=1e-6)
    # projection feeds it at its own input size
    from anycost_jax.editing import projection
    start = projection._encoder_w((enc2, v2), x, (1, gen.n_style, gen.style_dim))
    np.testing.assert_allclose(np.asarray(start), np.asarray(enc.apply(variables, encoder_input(x, 32))), rtol=1e-5)
    # Resume: one more step continues from the step-2 checkpoint, not from scratch.
    _, v3, h3 = et.train_encoder(gen, g_vars, workdir, steps=3, **kw)
    assert len(h3) == 1
    assert sorted(os.listdir(os.path.join(workdir, et.CHECKPOINT_DIR))) == ['2', '3']
    assert not np.array_equal(v3['params']['resnet']['fc']['kernel'], variables['params']['resnet']['fc']['kernel'])
    # A resume that changes the run is refused before anything is written, as the generator trainer's.
    saved = open(os.path.join(workdir, et.CONFIG_FILE)).read()
    other_gen = gen.init_variables(jax.random.key(1))
    for change, message in ((dict(batch_size=4), 'batch_size: 2 -> 4'),
                            (dict(sub_generator_prob=0.), 'sub_generator_prob: 0.5 -> 0.0'),
                            (dict(g_vars=other_gen), 'generator_digest: ')):
        args = {**kw, 'steps': 4, **change}
        with pytest.raises(ValueError, match=f'holds a run with a different shape \\({message}.*use a new workdir'):
            et.train_encoder(gen, args.pop('g_vars', g_vars), workdir, **args)
    assert open(os.path.join(workdir, et.CONFIG_FILE)).read() == saved
    assert sorted(os.listdir(os.path.join(workdir, et.CHECKPOINT_DIR))) == ['2', '3']


def test_encoder_input_is_sized_to_the_generator():
    sizes = {res: et.input_size_for(Generator(res, style_dim=16, n_mlp=1, channel_multiplier=1 / 64))
             for res in (8, 16, 32, 64, 256, 1024)}
    # ResNet-50 downsamples 32x: at least 32 px; at most the original's 256
    assert sizes == {8: 32, 16: 32, 32: 32, 64: 64, 256: 256, 1024: 256}
    gen = Generator(16, style_dim=16, n_mlp=1, channel_multiplier=1 / 64)
    with pytest.raises(ValueError, match='input_size=16: ResNet-50 downsamples 32x'):
        et.EncoderTrainConfig(input_size=16).check(gen)
    et.EncoderTrainConfig(input_size=0).check(gen)  # 0: sized to the generator


def test_reconstruction_loss():
    from anycost_jax.models.lpips import lpips
    rng = np.random.default_rng(3)
    recon = rng.uniform(-1.4, 1.4, (2, 32, 32, 3)).astype(np.float32)  # unclamped, like generator outputs
    target = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    w_pred, w_true = rng.normal(size=(2, 3, 4)).astype(np.float32), rng.normal(size=(2, 3, 4)).astype(np.float32)
    cfg = et.EncoderTrainConfig(lpips_weight=2., mse_weight=3., latent_weight=5.)
    total, terms = et.reconstruction_loss(recon, target, w_pred, w_true, cfg, lpips, 16)
    small = lambda a: np.asarray(et.resize_align_corners(np.clip(a, -1, 1), 16))
    want = {'lpips': float(lpips(small(recon), small(target)).mean()), 'mse': float(np.mean((recon - target) ** 2)),
            'latent': float(np.mean((w_pred - w_true) ** 2))}
    for k, v in want.items():
        assert float(terms[k]) == pytest.approx(v, rel=1e-5), k
    assert float(total) == pytest.approx(2 * want['lpips'] + 3 * want['mse'] + 5 * want['latent'], rel=1e-5)
    assert want['lpips'] > 0.01
    # Same images: every term is 0 (LPIPS up to rounding).
    _, same = et.reconstruction_loss(target, target, w_true, w_true, cfg, lpips, 16)
    assert float(same['mse']) == 0 and float(same['latent']) == 0 and abs(float(same['lpips'])) < 1e-6
    _, no_lpips = et.reconstruction_loss(recon, target, w_pred, w_true, et.EncoderTrainConfig(lpips_weight=0.),
                                         lpips, 16)
    assert 'lpips' not in no_lpips


def test_encoder_config_file_is_the_library_config():
    import subprocess
    import sys
    from configs import encoder as encoder_config
    c = encoder_config.get_config()
    fields = {k: v for k, v in c.items() if k not in ('generator', 'init', 'export_pt')}
    assert et.EncoderTrainConfig(**fields) == et.EncoderTrainConfig()  # same fields, same defaults
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, 'launch/train_encoder.py', '--config=configs/encoder.py',
                        '--config.steps=3', '--workdir=/nonexistent'], cwd=root, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, JAX_PLATFORMS='cpu'))
    assert r.returncode != 0 and '--config.generator and --workdir are required' in r.stderr
