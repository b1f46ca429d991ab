"""GAN Compression's FID protocol (anycost_jax.eval.img2img) against a numpy reference of the upstream's
code path: ``util.tensor2im`` (uint8 by truncation), ``.astype(float) / 255``, pytorch-fid's
``F.interpolate(size=299, mode='bilinear', align_corners=False)`` and ``2 x - 1``; and the FID fitness
of the search. The Inception itself is checked in tests/test_fid.py.
"""
import numpy as np
import pytest

from anycost_jax.data.img2img_pipeline import photo_to_float
from anycost_jax.eval import fid as fid_lib
from anycost_jax.eval import img2img as ev
from anycost_jax.models import inception as inc
from tests.test_fid import tiny_extractor


def _tensor2im(x):  # gan-compression utils/util.py, in float32 as torch hands it over
    return np.clip((np.asarray(x, np.float32) + 1) / 2.0 * 255.0, 0, 255).astype(np.uint8)


def _torch_bilinear(x, size):  # F.interpolate(align_corners=False, antialias=False), NHWC, one output at a time
    n, h, w, c = x.shape

    def taps(n_in, j):
        src = max((j + .5) * n_in / size - .5, 0.)
        i0 = min(int(np.floor(src)), n_in - 1)
        return i0, min(i0 + 1, n_in - 1), src - i0
    out = np.zeros((n, size, size, c), np.float64)
    for i in range(size):
        y0, y1, fy = taps(h, i)
        for j in range(size):
            x0, x1, fx = taps(w, j)
            out[:, i, j] = ((1 - fy) * ((1 - fx) * x[:, y0, x0] + fx * x[:, y0, x1]) +
                            fy * ((1 - fx) * x[:, y1, x0] + fx * x[:, y1, x1]))
    return out


def test_fid_input_is_the_upstreams():
    fakes = np.random.default_rng(0).uniform(-1.1, 1.1, (2, 20, 30, 3)).astype(np.float32)
    ref = _torch_bilinear(_tensor2im(fakes).astype(float) / 255, 299) * 2 - 1
    ours = np.asarray(inc.resize_bilinear(ev.protocol_images(fakes), 299))  # what the extractor feeds Inception
    np.testing.assert_allclose(ours, ref, atol=2e-6, rtol=0)
    np.testing.assert_array_equal(np.asarray(ev.to_uint8(fakes)), _tensor2im(fakes))
    # truncation, not rounding (nor the old clip to [-1, 1] alone): 0.999 levels below 255 give 254
    assert ev.to_uint8(np.float32(254.999 / 255 * 2 - 1)) == 254


def test_real_images_take_the_upstreams_round_trip():
    """The upstream's real statistics pass ToTensor + Normalize(0.5, 0.5), then tensor2im: pixels 1..63
    come back one level lower. Our pipeline's floats are bit for bit torchvision's, so they do too."""
    u = np.arange(256, dtype=np.uint8)
    ref = _tensor2im((u.astype(np.float32) / np.float32(255) - np.float32(.5)) / np.float32(.5))
    ours = np.asarray(ev.to_uint8(photo_to_float(u)))
    np.testing.assert_array_equal(ours, ref)
    assert np.array_equal(np.nonzero(ours != u)[0], np.arange(1, 64))


def test_fid_fitness():
    extractor = tiny_extractor()[0]
    rng = np.random.default_rng(3)
    inputs = [rng.uniform(-1, 1, (8, 8, 8, 3)).astype(np.float32) for _ in range(2)]
    real = fid_lib.FIDStats.from_features(extractor(ev.protocol_images(np.concatenate(inputs))))
    fitness = ev.fid_fitness(lambda c: (lambda x: x * c), inputs, real, extractor)
    same, darker = fitness([1., .5])
    assert same == pytest.approx(0, abs=1e-6) and darker > same
    want = fid_lib.FIDStats.from_features(extractor(ev.protocol_images(np.concatenate(inputs) * .5))).fid(real)
    assert darker == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match='no held-out input batches'):
        ev.fid_fitness(lambda c: c, [], real, extractor)
