"""DRN-D-105 (the Cityscapes mIoU segmenter) against gan-compression's original on synthetic weights.

``fixtures/drn_expected.npz`` (``fixtures/make_drn_fixture.py``, run with torch offline) holds the
original ``DRNSeg``'s log-probabilities and ``seg`` logits for weights both sides draw from numpy
seeds: DRN-D-105 at full width (one 32x32 image; slow: ~20 s to compile the 105 layers on CPU)
and at full depth with narrow widths (the original's ``channels`` argument). The weights go
through a ``.pth`` written by our torch-free writer and read back through
``convert.drn.load_drn``, as the real ``drn-d-105_ms_cityscapes.pth`` is.
"""
import importlib.util
import os

import jax
import numpy as np
import pytest

from anycost_jax.convert import drn as drn_convert
from anycost_jax.convert.table import ConversionError
from anycost_jax.convert.torch_io import save_torch_file
from anycost_jax.models.drn import DRNSeg, bilinear_up_kernel, drn_d_plan

FIX = os.path.join(os.path.dirname(__file__), 'fixtures')


def fixture_helper():
    spec = importlib.util.spec_from_file_location('make_drn_fixture', os.path.join(FIX, 'make_drn_fixture.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


H = fixture_helper()
REF = np.load(os.path.join(FIX, 'drn_expected.npz'))


def synthetic_drn(tmp_path, channels=H.NARROW_CHANNELS, extra=None):
    """(model, variables) of the fixture's weights, through a .pth file and load_drn."""
    model = DRNSeg() if channels is None else DRNSeg(channels=channels)
    sd = H.random_state_dict(drn_convert.state_dict_shapes(model))
    sd.update(extra or {})
    path = str(tmp_path / 'drn.pth')
    save_torch_file(sd, path)
    return drn_convert.load_drn(path)


def _close(ours, ref, rtol=2e-4):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape
    err = np.max(np.abs(ours - ref)) / (np.max(np.abs(ref)) + 1e-12)
    assert err < rtol, err


def test_narrow_drn_d_105_matches_original(tmp_path):
    # the fixture summed torch's state dict: our tensors and a step counter per BatchNorm
    shapes = drn_convert.state_dict_shapes(DRNSeg(channels=H.NARROW_CHANNELS))
    shapes.update({k[:-len('running_mean')] + 'num_batches_tracked': () for k in list(shapes)
                   if k.endswith('running_mean')})
    checksum = sum(float(np.sum(v, dtype=np.float64)) for v in H.random_state_dict(shapes).values())
    assert checksum == pytest.approx(float(REF['checksum_weights']), rel=1e-12), \
        'numpy draws different synthetic weights than when the fixture was made'
    model, variables = synthetic_drn(tmp_path, extra={'base.0.1.num_batches_tracked': np.array(3, np.int64)})
    assert tuple(model.layers) == (1, 1, 3, 4, 23, 3, 1, 1) and tuple(model.channels) == H.NARROW_CHANNELS
    apply = jax.jit(lambda v, x: model.apply(v, x, return_logits=True))
    for n, h, w in H.NARROW_SIZES:
        logp, logits = apply(variables, H.synthetic_images('narrow', n, h, w))
        _close(logits, REF[f'narrow_{h}x{w}_logits'])
        _close(logp, REF[f'narrow_{h}x{w}_logp'])
        # a size that is not a multiple of 8 comes back larger, as the original's
        assert logp.shape[1:3] == (-(-h // 8) * 8, -(-w // 8) * 8)


@pytest.mark.slow
def test_full_drn_d_105_matches_original(tmp_path):
    model, variables = synthetic_drn(tmp_path, channels=None)
    assert tuple(model.channels) == (16, 32, 64, 128, 256, 512, 512, 512)
    n, h, w = H.FULL_SIZES[0]
    logp, logits = jax.jit(lambda v, x: model.apply(v, x, return_logits=True))(
        variables, H.synthetic_images('full', n, h, w))
    _close(logits, REF[f'full_{h}x{w}_logits'])
    _close(logp, REF[f'full_{h}x{w}_logp'])


def test_plan_is_drn_d_105():
    plan = drn_d_plan()
    blocks = [u for u in plan if u[0] == 'block']
    assert len(blocks) == 3 + 4 + 23 + 3 and len(plan) == 1 + 1 + 1 + 33 + 1 + 1
    # 105 = the weighted layers on the main path: the 7x7, two plain 3x3, 3 per bottleneck, the two degridding
    # 3x3 and the (ImageNet) classifier, which DRNSeg replaces by seg; shortcuts aside
    assert 1 + 2 + 3 * len(blocks) + 2 + 1 == 105
    assert [u[4] for u in blocks if u[1].startswith('base_5')] == [2] * 23
    assert [u[1] for u in blocks if u[5]] == ['base_3_0', 'base_4_0', 'base_5_0', 'base_6_0']


def test_state_dict_round_trip_and_up_kernel(tmp_path):
    model, variables = synthetic_drn(tmp_path)
    sd = drn_convert.drn_to_state_dict(model, variables)
    assert set(sd) == set(drn_convert.state_dict_shapes(model)) | {
        k for k in sd if k.endswith('num_batches_tracked')}
    model2, variables2 = drn_convert.drn_from_state_dict(sd)
    assert model2 == model.clone(precision=None)
    jax.tree.map(np.testing.assert_array_equal, variables, variables2)
    # the initialization is the original's fill_up_weights: bilinear, 1 at the centre pair
    k = bilinear_up_kernel()
    assert k.shape == (16, 16) and np.isclose(k.max(), (1 - 1 / 16) ** 2) and np.allclose(k, k.T)


def test_bad_weights_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'drn-d-105_ms_cityscapes\.pth.*go\.yf\.io.*--drn=PATH'):
        drn_convert.load_drn(str(tmp_path / 'missing.pth'))
    with pytest.raises(FileNotFoundError, match='--drn=PATH'):
        drn_convert.load_drn(None)
    from anycost_jax import convert
    with pytest.raises(FileNotFoundError, match='go.yf.io'):
        convert.load_drn(str(tmp_path / 'missing.pth'))
    save_torch_file({'conv1.weight': np.zeros((2, 3, 1, 1), np.float32)}, str(tmp_path / 'other.pth'))
    with pytest.raises(ConversionError, match='not a DRNSeg state dict'):
        drn_convert.load_drn(str(tmp_path / 'other.pth'))
    model = DRNSeg(channels=H.NARROW_CHANNELS)
    sd = H.random_state_dict(drn_convert.state_dict_shapes(model))
    del sd['base.5.3.conv2.weight']
    with pytest.raises(ConversionError, match=r'missing keys.*base\.5\.3\.conv2\.weight'):
        drn_convert.drn_from_state_dict(sd, model)
    # DataParallel's prefix and a {'state_dict': ...} wrapper are read as the bare dict
    sd = H.random_state_dict(drn_convert.state_dict_shapes(model))
    m2, _ = drn_convert.drn_from_state_dict({'state_dict': {f'module.{k}': v for k, v in sd.items()}})
    assert m2 == model
