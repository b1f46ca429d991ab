"""Image-to-image networks (ResNet / MobileNet-ResNet generators, PatchGAN) against gan-compression.

The fixtures (``tests/fixtures/make_img2img_fixture.py``, ``make_img2img_macs.py``) hold state
dicts saved by the original code with torch.save (the compressed sub-network's tensors strided
views into larger storages, as its export writes them), the original's outputs, running
statistics after a train-mode step, parameter gradients, and torchprofile's MAC counts.
"""
import functools
import json
import os
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anycost_jax import convert, macs
from anycost_jax.convert import img2img as img2img_convert
from anycost_jax.convert import table as table_lib
from anycost_jax.convert.torch_io import load_torch_file
from anycost_jax.elastic import img2img as rules
from anycost_jax.models.img2img import MobileResnetGenerator, NLayerDiscriminator, ResnetGenerator
from anycost_jax.models.img2img import resnet as resnet_lib
from anycost_jax.models.img2img import spade as spade_lib

FIX = os.path.join(os.path.dirname(__file__), 'fixtures')
TOL = 1e-4
G_CASES = {'resnet': 'resnet_9blocks', 'resnet_bn': 'resnet_6blocks', 'resnet_zero': 'resnet_6blocks',
           'mobile': 'mobile_resnet_9blocks', 'sub': 'sub_mobile_resnet_9blocks',
           'legacy6': 'legacy_sub_mobile_resnet_9blocks', 'legacy8': 'legacy_sub_mobile_resnet_9blocks',
           'unet': 'unet_128', 'unet_in': 'unet_256'}
D_CASES = ('d_bn', 'd_in', 'd_none')
# SPADE cases: netG and the hyper-parameters the weights do not fix (the fixture's options)
SPADE_CASES = {'spade': ('spade', dict(crop_size=64, num_upsampling_layers='normal', aspect_ratio=2.0)),
               'spade_in': ('spade', dict(crop_size=256, num_upsampling_layers='most', aspect_ratio=2.0)),
               'mobile_spade': ('mobile_spade', dict(crop_size=128, num_upsampling_layers='more', aspect_ratio=2.0)),
               'sub_spade': ('sub_mobile_spade', dict(crop_size=128, num_upsampling_layers='more', aspect_ratio=2.0))}


@pytest.fixture(scope='module')
def expected():
    return dict(np.load(os.path.join(FIX, 'img2img_expected.npz')))


def _pth(case):
    return os.path.join(FIX, f'img2img_{case}.pth')


def _nhwc(x):
    return jnp.asarray(x.transpose(0, 2, 3, 1))


def rel_err(ours, theirs):
    ours = np.asarray(ours).transpose(0, 3, 1, 2)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def _load(case, netG=None):
    if case.startswith('d_'):
        return convert.load_img2img_discriminator(_pth(case))
    if case == 'ms_d':
        return convert.load_img2img_discriminator(_pth(case), netD='multi_scale')
    if case in SPADE_CASES:
        name, hparams = SPADE_CASES[case]
        return convert.load_img2img_generator(_pth(case), netG=netG or name, **hparams)
    return convert.load_img2img_generator(_pth(case), netG=netG or G_CASES[case])


def _table(module):
    return img2img_convert._table_of(module)


def run(module, variables, x, **kwargs):
    """``module.apply`` compiled (deep networks run op by op otherwise, which is slower than compiling)."""
    return jax.jit(functools.partial(module.apply, **kwargs))(variables, x)


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize('case', list(G_CASES) + list(D_CASES) + list(SPADE_CASES))
def test_forward_matches_original(expected, case):
    module, variables = _load(case)
    x = expected[f'{case}_x' if case != 'sub_spade' else 'mobile_spade_x']
    assert rel_err(run(module, variables, _nhwc(x)), expected[f'{case}_y']) < TOL


@pytest.mark.parametrize('case', ['resnet_bn', 'd_bn', 'spade', 'unet'])
def test_train_mode_batch_norm_matches_original(expected, case):
    """Batch statistics in train mode, and the running statistics one step updates (unbiased variance);
    for the spectral-normalized SPADE generator also the power iteration's vectors."""
    module, variables = _load(case)
    y, state = run(module, variables, _nhwc(expected[f'{case}_x']), train=True, mutable=['batch_stats', 'spectral'])
    assert rel_err(y, expected[f'{case}_ytrain']) < TOL
    stats = {tk: np.asarray(table_lib.get_path(state, path))
             for tk, path, _ in _table(module) if path[0] in ('batch_stats', 'spectral')}
    assert len(stats) == sum(k.startswith(f'{case}_stats.') for k in expected) > 0
    for tk, value in stats.items():
        np.testing.assert_allclose(value, expected[f'{case}_stats.{tk}'], rtol=1e-5, atol=1e-6, err_msg=tk)


@pytest.mark.slow
@pytest.mark.parametrize('case', ['mobile', 'resnet_bn', 'd_bn', 'spade', 'mobile_spade', 'unet'])
def test_parameter_gradients_match_original(expected, case):
    module, variables = _load(case)
    probe = np.random.default_rng(zlib.crc32(case.encode())).standard_normal(expected[f'{case}_y'].shape)
    x, probe = _nhwc(expected[f'{case}_x']), jnp.asarray(probe.astype(np.float32).transpose(0, 2, 3, 1))
    train = case != 'mobile'

    def loss(params):
        out = module.apply({**variables, 'params': params}, x, train=train, mutable=['batch_stats', 'spectral'])[0]
        return jnp.sum(out * probe)

    grads = jax.jit(jax.grad(loss))(variables['params'])
    table = _table(module)
    ours = table_lib.to_state_dict({**variables, 'params': grads}, table)
    theirs = {k.split('_grad.', 1)[1]: v for k, v in expected.items() if k.startswith(f'{case}_grad.')}
    assert set(theirs) == {tk for tk, path, _ in table if path[0] == 'params'}
    # A conv bias right before a non-affine instance norm (a separable conv's depthwise bias, a dense
    # ResNet's conv biases) has a true gradient of zero: the norm removes per-channel constants, and
    # both sides hold rounding noise. Such gradients (only biases may be among them) must vanish on
    # both sides; every other one must match.
    vanish = 1e-4 * max(np.abs(g).max() for g in theirs.values())
    for k, g in theirs.items():
        if np.abs(g).max() < vanish:
            assert k.endswith('.bias') and np.abs(ours[k]).max() < vanish, k
            continue
        err = np.abs(ours[k] - g).max() / np.abs(g).max()
        assert err < TOL, (k, err)


def test_supernet_configs_match_original(expected):
    """The mobile generator's weights as gan-compression's SuperMobileResnetGenerator at each config
    (8- and 6-entry), sliced (static) and masked (traced widths, one compiled program for all)."""
    gen, variables = _load('mobile', 'super_mobile_resnet_9blocks')
    assert gen.clamp_input  # the super form clamps, the plain mobile one does not
    x = _nhwc(expected['mobile_x'])
    traces = []

    @jax.jit
    def masked(widths):
        traces.append(1)
        return gen.apply(variables, x, widths=widths)

    for cfg in expected['super_config_list']:
        cfg = str(cfg)
        sliced = run(gen, variables, x, config=cfg)
        assert rel_err(sliced, expected[f'super_y_{cfg}']) < TOL, cfg
        out = masked(jnp.asarray(rules.resnet_widths(cfg), jnp.int32))
        np.testing.assert_allclose(out, sliced, atol=2e-5)
    assert len(traces) == 1


@pytest.mark.slow
def test_per_sample_widths_match_each_sliced_config(expected):
    gen, variables = _load('mobile', 'super_mobile_resnet_9blocks')
    x = _nhwc(expected['mobile_x'])  # two images
    cfgs = ['4_6_8_2_4_6_8_4', '2_2_4_2_2_2_2_2']
    widths = jnp.asarray([rules.resnet_widths(c) for c in cfgs], jnp.int32)
    out = gen.apply(variables, x, widths=widths)
    for i, cfg in enumerate(cfgs):
        np.testing.assert_allclose(out[i:i + 1], gen.apply(variables, x[i:i + 1], config=cfg), atol=2e-5)


def test_export_equals_original_export(expected):
    """Our export of the supernet equals gan-compression's export.py output (the strided .pth) exactly,
    and the exported module runs as the sliced supernet does."""
    gen, variables = _load('mobile', 'super_mobile_resnet_9blocks')
    sub, sub_vars = resnet_lib.export(gen, variables, '4_6_8_2_4_6_8_4')
    theirs, their_vars = _load('sub')
    assert sub.full_widths == theirs.full_widths
    flat_ours = jax.tree_util.tree_leaves_with_path(sub_vars)
    flat_theirs = dict(jax.tree_util.tree_leaves_with_path(their_vars))
    assert len(flat_ours) == len(flat_theirs)
    for path, value in flat_ours:
        np.testing.assert_array_equal(value, flat_theirs[path], err_msg=jax.tree_util.keystr(path))
    x = _nhwc(expected['mobile_x'])
    np.testing.assert_allclose(sub.apply(sub_vars, x), gen.apply(variables, x, config='4_6_8_2_4_6_8_4'), atol=1e-6)


def test_strided_views_are_read_from_their_storage():
    """The exported .pth stores views: reading it must honour offsets and strides (the values equal
    the prefix slices of the supernet's tensors, which a reader ignoring strides would not give)."""
    sub, sup = load_torch_file(_pth('sub')), load_torch_file(_pth('mobile'))
    key = 'model.10.conv_block.1.conv.2.weight'  # pointwise conv 32 -> 8 of a 32 -> 32 storage
    assert sub[key].shape == (8, 32, 1, 1)
    np.testing.assert_array_equal(sub[key], sup[key][:8, :32])
    key = 'model.19.weight'  # a transposed conv: a slice of both leading axes
    np.testing.assert_array_equal(sub[key], sup[key][:sub[key].shape[0], :sub[key].shape[1]])


@pytest.mark.parametrize('case', ['resnet_bn', 'legacy6', 'd_bn', 'spade', 'sub_spade', 'unet', 'ms_d'])
def test_written_pth_equals_the_original_state_dict(tmp_path, case):
    """Our .pth writer gives back the original's state dict: same keys (num_batches_tracked included),
    shapes, dtypes and values, so the original's strict load_state_dict takes it."""
    module, variables = _load(case)
    path = str(tmp_path / 'out.pth')
    save = convert.save_img2img_discriminator if 'd_' in case else convert.save_img2img_generator
    save(path, module, variables)
    ours, theirs = load_torch_file(path), load_torch_file(_pth(case))
    assert sorted(ours) == sorted(theirs)
    for k in theirs:
        assert ours[k].dtype == theirs[k].dtype and ours[k].shape == theirs[k].shape, k
        if not k.endswith('num_batches_tracked'):
            np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)


def test_legacy_config_map(expected):
    """The legacy rule: the first block of each group takes the group's entry, the others the residual width."""
    for case, cfg in (('legacy6', '4_6_8_2_4_6'), ('legacy8', '4_6_8_2_4_6_8_4')):
        gen, _ = _load(case)
        assert rules.resnet_widths(cfg, legacy=True) == gen.full_widths
        assert rules.resnet_widths(cfg, legacy=False) != gen.full_widths


# --------------------------------------------------------------------------- SPADE


@pytest.mark.slow
def test_spade_supernet_configs_match_original(expected):
    """MobileSPADE weights as SuperMobileSPADEGenerator: eval at every config (sliced and masked, one
    compiled program), and train mode at a sub-config, whose batch norms update full-width statistics."""
    gen, variables = _load('mobile_spade', 'super_mobile_spade')
    x = _nhwc(expected['mobile_spade_x'])
    traces = []

    @jax.jit
    def masked(widths):
        traces.append(1)
        return gen.apply(variables, x, widths=widths)

    for cfg in map(str, expected['spade_super_config_list']):
        sliced = run(gen, variables, x, config=cfg)
        assert rel_err(sliced, expected[f'spade_super_y_{cfg}']) < TOL, cfg
        np.testing.assert_allclose(masked(jnp.asarray(rules.spade_widths(cfg))), sliced, atol=2e-5)
    assert len(traces) == 1
    cfg = str(expected['spade_super_train_config'])
    y, state = run(gen, variables, x, config=cfg, train=True, mutable=['batch_stats'])
    assert rel_err(y, expected['spade_super_ytrain']) < TOL
    table = [(tk, path) for tk, path, _ in _table(gen) if path[0] == 'batch_stats']
    assert table
    for tk, path in table:
        np.testing.assert_allclose(table_lib.get_path(state, path), expected[f'spade_super_stats.{tk}'], rtol=1e-5,
                                   atol=1e-5, err_msg=tk)
    y_m, state_m = run(gen, variables, x, widths=jnp.asarray(rules.spade_widths(cfg)), train=True,
                       mutable=['batch_stats'])
    np.testing.assert_allclose(y_m, y, atol=2e-5)
    for a, b in zip(jax.tree.leaves(state_m), jax.tree.leaves(state)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_spade_export_equals_original_export(expected):
    gen, variables = _load('mobile_spade', 'super_mobile_spade')
    cfg = str(expected['sub_spade_config'])
    sub, sub_vars = spade_lib.export(gen, variables, cfg)
    theirs, their_vars = _load('sub_spade')
    assert sub.full_widths == theirs.full_widths
    flat = dict(jax.tree_util.tree_leaves_with_path(their_vars))
    ours = jax.tree_util.tree_leaves_with_path(sub_vars)
    assert len(ours) == len(flat)
    for path, value in ours:
        np.testing.assert_array_equal(value, flat[path], err_msg=jax.tree_util.keystr(path))
    x = _nhwc(expected['mobile_spade_x'])
    assert rel_err(run(sub, sub_vars, x), expected['sub_spade_y']) < TOL


def test_multiscale_discriminator_matches_original(expected):
    disc, variables = _load('ms_d')
    x = _nhwc(expected['ms_d_x'])
    for train in (False, True):
        outs, state = run(disc, variables, x, train=train, mutable=['spectral'])
        mode = 'train' if train else ''
        assert [len(o) for o in outs] == [5, 5]
        for i, layers in enumerate(outs):
            for j, o in enumerate(layers):
                assert rel_err(o, expected[f'ms_d_y{mode}_{i}_{j}']) < TOL, (mode, i, j)
    for tk, path, _ in _table(disc):
        if path[0] == 'spectral':
            np.testing.assert_allclose(table_lib.get_path(state, path), expected[f'ms_d_stats.{tk}'], atol=1e-5)


@pytest.mark.slow
def test_batch_norm_calibration_rules(expected):
    """'original': every batch replaces the statistics (gan-compression's calibrate); 'average': their mean."""
    gen, variables = _load('mobile_spade', 'super_mobile_spade')
    x = _nhwc(expected['mobile_spade_x'])
    cfg = '1_2_1_2_2_1_2_1'
    b1, b2 = x[:1], x[1:]

    def one(seg):
        return run(gen, variables, seg, config=cfg, train=True, bn_momentum=1.0, mutable=['batch_stats'])[1]

    last = spade_lib.calibrate_batch_norm(gen, variables, [b1, b2], config=cfg)
    for a, b in zip(jax.tree.leaves(last['batch_stats']), jax.tree.leaves(one(b2))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # jitted vs not: rounding only
    avg = spade_lib.calibrate_batch_norm(gen, variables, [b1, b2], config=cfg, rule='average')
    for a, b, c in zip(jax.tree.leaves(avg['batch_stats']), jax.tree.leaves(one(b1)), jax.tree.leaves(one(b2))):
        np.testing.assert_allclose(a, (b + c) / 2, rtol=1e-5, atol=1e-7)
    assert jax.tree.leaves(last['params'])[0] is jax.tree.leaves(variables['params'])[0]


def test_spade_nearest_resize_is_pytorchs():
    """floor(dst * in / out), not jax.image.resize's half-pixel centres (they differ at 3 -> 5)."""
    from anycost_jax.nn.resize import torch_nearest_indices
    np.testing.assert_array_equal(torch_nearest_indices(3, 5), [0, 0, 1, 1, 2])  # torch: floor(j * 0.6)
    np.testing.assert_array_equal(torch_nearest_indices(8, 4), [0, 2, 4, 6])
    np.testing.assert_array_equal(torch_nearest_indices(4, 8), [0, 0, 1, 1, 2, 2, 3, 3])


def test_spade_errors_name_what_to_pass(expected):
    with pytest.raises(convert.ConversionError, match='pass crop_size, num_upsampling_layers'):
        convert.load_img2img_generator(_pth('mobile_spade'), netG='mobile_spade')
    with pytest.raises(convert.ConversionError, match='has no block up_4'):
        convert.load_img2img_generator(_pth('mobile_spade'), netG='mobile_spade', crop_size=128,
                                       num_upsampling_layers='most')
    with pytest.raises(convert.ConversionError, match='expects a mobile SPADE'):
        convert.load_img2img_generator(_pth('spade'), netG='mobile_spade', crop_size=64,
                                       num_upsampling_layers='normal')
    gen, variables = _load('mobile_spade', 'super_mobile_spade')
    with pytest.raises(ValueError, match=r'label map is 64x64.*pass the crop_size / aspect_ratio'):
        gen.apply(variables, jnp.zeros((1, 64, 64, gen.label_nc)))
    with pytest.raises(ValueError, match='label_nc=6'):
        gen.apply(variables, jnp.zeros((1, 64, 128, 5)))
    with pytest.raises(ValueError, match='has 7 entries; a SPADE config has 8'):
        gen.apply(variables, jnp.zeros((1, 64, 128, 6)), config='1_1_1_1_1_1_1')
    with pytest.raises(ValueError, match='full width only'):
        _load('spade')[0].apply(_load('spade')[1], jnp.zeros((1, 32, 64, 6)), config='1_1_1_1_1_1_1_1')


# --------------------------------------------------------------------------- elastic behaviour of our own


@pytest.mark.slow
def test_batch_norm_sliced_and_masked_agree_with_full_width_statistics():
    gen = ResnetGenerator(ngf=4, n_blocks=3, norm='batch')
    x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3), minval=-1, maxval=1)
    variables = gen.init(jax.random.key(1), x)
    cfg = (2, 6, 12, 8, 4, 16, 6, 3)
    y_s, st_s = gen.apply(variables, x, config=cfg, train=True, mutable=['batch_stats'])
    y_m, st_m = gen.apply(variables, x, widths=jnp.asarray(cfg), train=True, mutable=['batch_stats'])
    np.testing.assert_allclose(y_s, y_m, atol=2e-5)
    for a, b in zip(jax.tree.leaves(st_s), jax.tree.leaves(st_m)):
        assert a.shape == b.shape  # full width whatever runs
        np.testing.assert_allclose(a, b, atol=1e-6)
    # Dead channels decay toward zero, as the original's zero-padded super batch norm does.
    stem = st_s['batch_stats']['stem_norm']['norm']
    np.testing.assert_allclose(stem['mean'][2:], 0.9 * variables['batch_stats']['stem_norm']['norm']['mean'][2:])
    np.testing.assert_allclose(stem['var'][2:], 0.9 * variables['batch_stats']['stem_norm']['norm']['var'][2:])


def test_dropout_only_in_train_mode():
    gen = ResnetGenerator(ngf=4, n_blocks=2, dropout_rate=0.5)
    x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3), minval=-1, maxval=1)
    v = gen.init(jax.random.key(1), x)
    np.testing.assert_array_equal(gen.apply(v, x), gen.apply(v, x))
    a = gen.apply(v, x, train=True, rngs={'dropout': jax.random.key(2)})
    b = gen.apply(v, x, train=True, rngs={'dropout': jax.random.key(3)})
    assert float(jnp.abs(a - b).max()) > 1e-3


# --------------------------------------------------------------------------- MACs and parameters


def _ours(name, kwargs, shape):
    kwargs = dict(kwargs)
    if name == 'n_layers':
        return NLayerDiscriminator(**kwargs), {}
    if name == 'multi_scale':
        return spade_lib.MultiscaleDiscriminator(**kwargs), {}
    if 'spade' in name:
        gen = spade_lib.SPADEGenerator(label_nc=shape[1], crop_size=shape[3], aspect_ratio=shape[3] / shape[2],
                                       ngf=kwargs['ngf'], mobile=name != 'spade')
        if 'config' in kwargs:
            gen = gen.clone(widths=rules.spade_widths(kwargs['config']))
        return gen, {}
    config = kwargs.pop('config', None)
    n_blocks = 6 if '6blocks' in name else 9
    if config is not None:
        widths = rules.resnet_widths(config, legacy=name.startswith('legacy'))
        return MobileResnetGenerator(ngf=max(widths), widths=widths, clamp_input=True), {}
    cls = ResnetGenerator if name.startswith('resnet') else MobileResnetGenerator
    return cls(n_blocks=n_blocks, **kwargs), {}


@pytest.mark.slow
def test_macs_and_params_equal_torchprofile_under_each_convention():
    fixture = json.load(open(os.path.join(FIX, 'img2img_macs.json')))
    versions = {'0.0.1': 'torchprofile-0.0.1', '0.1.0': 'torchprofile'}
    assert set(fixture['macs']) == set(versions)
    for key, (name, kwargs, shape) in fixture['cases'].items():
        module, kw = _ours(name, kwargs, shape)
        n, c, h, w = shape
        x = jax.ShapeDtypeStruct((n, h, w, c), jnp.float32)
        for version, convention in versions.items():
            want = fixture['macs'][version][key]
            assert macs.count_macs(module, x, convention=convention, **kw) == want['macs'], (key, version)
            assert macs.count_params(module, x) == want['params'], key


def test_supernet_config_macs_equal_the_exported_subnetwork():
    """A config's MACs on the supernet (sliced) equal its dense export's: what search will read."""
    gen = MobileResnetGenerator(ngf=64)
    x = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)
    cfg = '16_16_32_16_32_32_16_16'
    sub = MobileResnetGenerator(ngf=64, widths=rules.resnet_widths(cfg))
    assert macs.count_macs(gen, x, config=cfg) == macs.count_macs(sub, x) == 2_546_204_672  # README: 2.55G


# --------------------------------------------------------------------------- bad input


def test_errors_name_the_argument_and_what_is_valid():
    gen, variables = _load('mobile', 'super_mobile_resnet_9blocks')
    x = jnp.zeros((1, 16, 16, 3))
    with pytest.raises(ValueError, match=r'has 7 entries.*8 \(stem'):
        gen.apply(variables, x, config='8_8_8_8_8_8_8')
    with pytest.raises(ValueError, match=r'invalid: expected an integer in \[1, 8\]'):
        gen.apply(variables, x, config='9_8_8_8_8_8_8_8')
    with pytest.raises(ValueError, match='positive integers'):
        gen.apply(variables, x, config='8_8_x_8_8_8_8_8')
    with pytest.raises(ValueError, match='3 channels'):
        gen.apply(variables, jnp.zeros((1, 16, 16, 4)))
    with pytest.raises(ValueError, match='not a multiple of 4'):
        gen.apply(variables, jnp.zeros((1, 18, 16, 3)))
    with pytest.raises(ValueError, match='not both'):
        gen.apply(variables, x, config='8_8_8_8_8_8_8_8', widths=jnp.ones(14, jnp.int32))


def test_checkpoint_of_another_architecture_is_refused_with_the_fix():
    with pytest.raises(convert.ConversionError, match=r"netG='resnet_9blocks' expects a dense.*mobile_resnet_9blocks"):
        convert.load_img2img_generator(_pth('mobile'), netG='resnet_9blocks')
    with pytest.raises(convert.ConversionError, match='sub_mobile_resnet_9blocks'):
        convert.load_img2img_generator(_pth('sub'), netG='mobile_resnet_9blocks')
    with pytest.raises(convert.ConversionError, match='not a ResNet generator'):
        convert.load_img2img_generator(_pth('d_bn'), netG='resnet_9blocks')
    with pytest.raises(convert.ConversionError, match=r'6 blocks.*expected 9'):
        convert.load_img2img_generator(_pth('resnet_bn'), netG='resnet_9blocks')
    with pytest.raises(convert.ConversionError, match="netG='unet_512' is not supported"):
        convert.load_img2img_generator(_pth('mobile'), netG='unet_512')
    with pytest.raises(convert.ConversionError,
                       match="netG='unet_256' has 8 levels, the state dict 7; pass netG='unet_128'"):
        convert.load_img2img_generator(_pth('unet'), netG='unet_256')
    with pytest.raises(ValueError, match='not a multiple of 128'):
        _load('unet')[0].apply(_load('unet')[1], jnp.zeros((1, 64, 64, 3)))
    with pytest.raises(ValueError, match=r"unknown hyper-parameters \[.ngf.\]"):
        convert.load_img2img_generator(_pth('mobile'), netG='mobile_resnet_9blocks', ngf=8)
    with pytest.raises(convert.ConversionError, match='not a PatchGAN'):
        convert.load_img2img_discriminator(_pth('mobile'))
    with pytest.raises(convert.ConversionError, match='padding_type'):
        convert.load_img2img_generator(_pth('resnet'), netG='resnet_9blocks', padding_type='zero')


def test_missing_and_extra_keys_are_listed(tmp_path):
    sd = dict(load_torch_file(_pth('mobile')))
    sd.pop('model.19.bias')
    sd['model.99.weight'] = np.zeros((1,), np.float32)
    path = str(tmp_path / 'broken.pth')
    convert.save_torch_file(sd, path)
    with pytest.raises(table_lib.KeyMismatchError, match=r"missing keys \['model.19.bias'\].*'model.99.weight'"):
        convert.load_img2img_generator(path, netG='mobile_resnet_9blocks')


@pytest.mark.parametrize('case', ['sub', 'sub_spade', 'unet', 'ms_d'])
def test_model_directory_round_trip(tmp_path, expected, case):
    """Our model directories hold every image-to-image class: saved and loaded back bit for bit, no netG needed."""
    module, variables = _load(case)
    path = convert.save_model(str(tmp_path / case), module, variables)
    load = convert.load_img2img_discriminator if case == 'ms_d' else convert.load_img2img_generator
    again, again_vars = load(path)
    assert type(again) is type(module)
    if hasattr(module, 'full_widths'):
        assert again.full_widths == module.full_widths
    for (p, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(variables),
                              jax.tree_util.tree_leaves_with_path(again_vars)):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(p))


def test_missing_file_and_pth_without_netg(tmp_path):
    with pytest.raises(FileNotFoundError, match='gan-compression .pth state dict'):
        convert.load_img2img_generator(str(tmp_path / 'nope.pth'), netG='resnet_9blocks')
    with pytest.raises(ValueError, match='needs netG='):
        convert.load_img2img_generator(_pth('mobile'))
