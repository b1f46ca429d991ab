"""GAN Compression's once-for-all supernet stage on the trainer, the quality measures that need no
downloaded weights, and the search of a trained supernet under a MAC budget with its export."""
import numpy as np
import pytest


# --------------------------------------------------------------------------- quality measures


def test_quality_measures_against_a_hand_computation():
    from anycost_jax.eval import img2img_quality as q
    from anycost_jax.models import lpips as lpips_lib
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    real = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    out = x * 0.5
    out[1] = real[1] + 0.1  # image 1: a constant offset of 0.1 (where real + 0.1 stays within [-1, 1])
    clipped = np.clip(out, -1, 1)
    # by hand: image 0 the mean |out - real|; image 1 mean |clip(real + .1) - real|
    l1 = [np.abs(clipped[i] - real[i]).mean() for i in range(2)]
    mse = [np.square(clipped[i] - real[i]).mean() for i in range(2)]
    psnr = [10 * np.log10(4 / m) for m in mse]
    scores = q.quality(lambda a: a * 0 + out, [(x, {'real': real, 'teacher': clipped})])
    assert scores['real/l1'] == pytest.approx(np.mean(l1), rel=1e-5)
    assert scores['real/psnr'] == pytest.approx(np.mean(psnr), rel=1e-5)
    assert scores['real/lpips'] == pytest.approx(float(np.mean(lpips_lib.lpips(clipped, real))), rel=1e-5)
    assert scores['teacher/l1'] == 0 and scores['teacher/psnr'] == q.PSNR_CAP
    assert scores['teacher/lpips'] == pytest.approx(0, abs=1e-6)
    # two batches: means over every image, not over batches
    two = q.quality(lambda a: a, [(x[:1], {'real': real[:1]}), (x, {'real': real})], use_lpips=False)
    per = q.per_image(x, real, use_lpips=False)
    assert two['real/l1'] == pytest.approx((2 * per['l1'][0] + per['l1'][1]) / 3, rel=1e-6)
    assert 'real/lpips' not in two
    assert q.distance({'real/psnr': 30.}, 'real/psnr') == -30. and q.distance({'real/l1': .2}, 'real/l1') == .2
    with pytest.raises(ValueError, match="measure 'teacher/fid' is not one of"):
        q.check_measure('teacher/fid', ['real', 'teacher'])
