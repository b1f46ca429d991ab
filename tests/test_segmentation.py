"""Cityscapes mIoU (anycost_jax.eval.segmentation) against gan-compression's ``cityscapes_mIoU.test``.

``fixtures/drn_expected.npz`` holds, for the narrow DRN-D-105 of ``make_drn_fixture.py`` and two
synthetic 32x64 generator outputs against synthetic 1024x2048 train-id maps: the original's uint8
images (``util.tensor2im``), its confusion histogram (``fast_hist`` after ``resize_4d_tensor`` to
2048x1024) and the mIoU its ``test`` returns (rounded there to 2 decimals). The resize is also
checked against Pillow itself.
"""
import numpy as np
import pytest
from PIL import Image

from anycost_jax.eval import segmentation as seg
from tests.test_drn import REF, H, synthetic_drn


@pytest.mark.parametrize('size_in,size_out', [((8, 12), (37, 50)), ((50, 37), (13, 9)), ((5, 7), (5, 21)),
                                              ((16, 16), (16, 16))])
def test_resize_is_pil_bilinear(size_in, size_out):
    maps = np.random.default_rng(0).standard_normal((3,) + size_in).astype(np.float32)
    ours = np.asarray(seg.resize_pil_bilinear(maps, size_out))
    ref = np.stack([np.asarray(Image.fromarray(m).resize(size_out[::-1], Image.BILINEAR)) for m in maps])
    np.testing.assert_allclose(ours, ref, atol=2e-6, rtol=0)


def test_uint8_is_the_originals_truncation():
    np.testing.assert_array_equal(np.asarray(seg.to_uint8(H.synthetic_fakes())), REF['uint8'])
    # truncation, not rounding: 254.99 -> 254; and clipping outside [-1, 1]
    x = np.array([(254.99 / 255) * 2 - 1, -1.2, 1.3, 0.], np.float32)
    assert np.asarray(seg.to_uint8(x)).tolist() == [254, 0, 255, 127]


def _fast_hist(pred, label, n):  # the original's, for the reference below
    k = (label >= 0) & (label < n)
    return np.bincount(n * label[k].astype(int) + pred[k], minlength=n ** 2).reshape(n, n)


def test_confusion_and_miou_match_the_originals_formulas():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 22, (2, 30, 40))
    label[label >= 19] = 255
    pred = rng.integers(0, 17, (2, 30, 40))  # classes 17, 18 never predicted
    label[label == 18] = 255                 # class 18 absent too: its IoU is NaN, left out of the mean
    ours = sum(np.asarray(seg.confusion(p, l)) for p, l in zip(pred, label))
    ref = _fast_hist(pred.reshape(-1), label.reshape(-1), 19)
    np.testing.assert_array_equal(ours, ref)
    value, iou = seg.miou_of_hist(ours)
    with np.errstate(invalid='ignore', divide='ignore'):
        ref_iou = np.diag(ref) / (ref.sum(1) + ref.sum(0) - np.diag(ref)) * 100
    assert np.isnan(iou[18]) and value == pytest.approx(np.nanmean(ref_iou), rel=1e-12)
    with pytest.raises(ValueError, match='no pixel with a valid train id'):
        seg.miou_of_hist(np.zeros((19, 19)))


def test_miou_protocol_matches_original(tmp_path):
    model, variables = synthetic_drn(tmp_path)
    segmenter = seg.Segmenter(model, variables)
    fakes, labels = H.synthetic_fakes(), H.synthetic_labels()
    hist = segmenter.histogram(fakes, labels)
    assert hist.sum() == np.sum(labels != 255)
    # float32 taps against Pillow's float64 ones: an argmax may flip where two classes tie to ~1e-6
    assert np.abs(hist - REF['hist']).sum() <= 1e-4 * hist.sum()
    result = seg.miou(lambda x: x, [(fakes[:1], labels[:1]), (fakes[1:], labels[1:])], segmenter)
    assert result['n_images'] == 2
    assert abs(result['miou'] - float(REF['miou'])) <= 0.005 + 1e-6  # the original rounds to 2 decimals
    # the search's fitness: minus the mIoU, one value per candidate
    batches = [(fakes, labels)]
    fitness = seg.miou_fitness(lambda c: (lambda x: x * c), batches, segmenter)
    a, b = fitness([1., -1.])
    assert a == pytest.approx(-result['miou']) and b != a


def test_histogram_rejects_mismatched_batches(tmp_path):
    model, variables = synthetic_drn(tmp_path)
    with pytest.raises(ValueError, match='train-id maps'):
        seg.Segmenter(model, variables).histogram(np.zeros((2, 8, 8, 3)), np.zeros((1, 8, 8)))
