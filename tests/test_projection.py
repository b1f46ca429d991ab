"""Projection (anycost_jax.editing.projection) and launch/project.py on a tiny generator.

Most tests project with lpips_weight=0 (pixels only): LPIPS-VGG's program alone takes tens of
seconds to compile on CPU; one test covers the LPIPS path with a few Adam steps at 16 px.
"""
import os
import re
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from anycost_jax import convert, render
from anycost_jax.editing import projection
from anycost_jax.models import Generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = Generator(16, style_dim=16, n_mlp=1, channel_multiplier=1 / 64)  # n_style 6, outputs 4..16 px
VARS = GEN.init_variables(jax.random.key(0))
SHAPE = (2, GEN.n_style, GEN.style_dim)


def known_targets():
    """Images the generator itself renders from a known w+ (near its mean w, so reachable)."""
    w = GEN.apply(VARS, jax.random.normal(jax.random.key(1), (2, GEN.style_dim)), method=Generator.style)
    w_plus = jnp.repeat(w[:, None], GEN.n_style, 1) + 0.3 * jax.random.normal(jax.random.key(2), SHAPE)
    return np.clip(np.asarray(GEN.apply(VARS, w_plus, input_is_style=True)), -1, 1)


TARGETS = known_targets()


@pytest.mark.parametrize('optimizer, lr', [('adam', 0.05), ('lbfgs', None)])
def test_projection_reconstructs_generated_images(optimizer, lr):
    result = projection.project(GEN, VARS, TARGETS, steps=15, optimizer=optimizer, lr=lr, lpips_weight=0,
                                progress=False)
    assert result.w_plus.shape == SHAPE and result.w_plus.dtype == np.float32
    assert result.images.shape == TARGETS.shape and np.abs(result.images).max() <= 1
    assert len(result.losses) == 16 and set(result.losses[0]) == {'loss', 'lpips', 'mse', 'encoder'}
    first, last = result.losses[0]['loss'], result.losses[-1]['loss']
    assert last < 0.3 * first, (first, last)
    # The returned images are the generator's rendering of the returned latent.
    raw = np.asarray(GEN.apply(VARS, result.w_plus, input_is_style=True))
    np.testing.assert_allclose(result.images, np.clip(raw, -1, 1), atol=1e-5)
    # The final loss is the pixel MSE; as in the original, L-BFGS's objective clamps the image, Adam's does not.
    seen = np.clip(raw, -1, 1) if optimizer == 'lbfgs' else raw
    np.testing.assert_allclose(last, np.mean((seen - TARGETS) ** 2), rtol=1e-4)


def test_projection_with_lpips_lowers_both_terms():
    result = projection.project(GEN, VARS, TARGETS, steps=4, optimizer='adam', lr=0.05, lpips_res=16,
                                progress=False)
    first, last = result.losses[0], result.losses[-1]
    assert first['lpips'] > 0 and last['lpips'] < first['lpips'] and last['mse'] < first['mse']
    with pytest.raises(ValueError, match='LPIPS-VGG needs at least 16x16'):
        projection.project(GEN, VARS, TARGETS, steps=1, lpips_res=8, progress=False)


def test_step_compiles_once_with_random_subgenerators():
    compiles = []
    listener = lambda event, *a, **k: compiles.append(event) if 'backend_compile' in event else None  # noqa: E731
    kw = dict(optimizer='adam', lr=0.05, lpips_weight=0, random_subgenerators=True, progress=False)
    stopped = []
    first = projection.project(GEN, VARS, TARGETS, steps=3, seed=0, **kw,
                               callback=lambda i, w, terms: stopped.append((i, w.shape)) or i == 1)
    assert stopped == [(0, SHAPE), (1, SHAPE)] and len(first.losses) == 3  # callback True stopped it
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        result = projection.project(GEN, VARS, TARGETS[::-1] * 0.5, steps=8, seed=1, **kw)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == []  # new steps, seed, draws and targets: nothing recompiled
    # The draws differ per step: the per-step losses come from different sub-generators.
    assert len({round(l['loss'], 6) for l in result.losses}) > 5


class StandInEncoder(nn.Module):
    """A tiny encoder: mean colour of the image -> w+ (the interface of models/encoder.py)."""
    @nn.compact
    def __call__(self, x):
        assert x.shape[1:] == (256, 256, 3)
        return nn.Dense(GEN.n_style * GEN.style_dim)(x.mean((1, 2))).reshape(-1, GEN.n_style, GEN.style_dim)


def test_encoder_initialises_and_regularises():
    enc = StandInEncoder()
    enc_vars = enc.init(jax.random.key(3), jnp.zeros((1, 256, 256, 3)))
    predicted = np.asarray(enc.apply(enc_vars, projection.resize_align_corners(jnp.asarray(TARGETS),
                                                                                              256)))
    start = projection.project(GEN, VARS, TARGETS, steps=0, encoder=(enc, enc_vars), lpips_weight=0, progress=False)
    np.testing.assert_allclose(start.w_plus, predicted, atol=1e-6)
    kw = dict(steps=25, optimizer='adam', lr=0.05, lpips_weight=0, encoder=(enc, enc_vars), progress=False)
    free = projection.project(GEN, VARS, TARGETS, **kw)
    held = projection.project(GEN, VARS, TARGETS, encoder_reg_weight=10., **kw)
    assert held.losses[-1]['encoder'] > 0 and free.losses[-1]['encoder'] == 0
    dist = lambda r: np.mean((r.w_plus - predicted) ** 2)  # noqa: E731
    assert dist(held) < 0.5 * dist(free)
    with pytest.raises(ValueError, match='encoder_reg_weight > 0'):
        projection.project(GEN, VARS, TARGETS, encoder_reg_weight=1., progress=False)
    with pytest.raises(ValueError, match='init has shape'):
        projection.project(GEN, VARS, TARGETS, init=np.zeros((3, 5)), progress=False)


@pytest.mark.parametrize('targets, message', [
    (np.zeros((2, 32, 32, 3), np.float32), 'targets are 32x32 but the generator renders 16x16'),
    (np.zeros((16, 16, 3), np.float32), 'add a batch axis'),
    (np.zeros((1, 16, 16, 3), np.uint8), 'dtype uint8'),
    (np.full((1, 16, 16, 3), 200., np.float32), r'range over \[200, 200\]'),
    (np.zeros((1, 16, 16, 1), np.float32), 'NHWC RGB'),
])
def test_bad_targets_are_explained(targets, message):
    with pytest.raises(ValueError, match=message):
        projection.project(GEN, VARS, targets, steps=1, progress=False)


def test_load_image_crops_and_resizes(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :10] = (255, 0, 0)    # cropped away
    img[:, 10:30] = (0, 0, 255)  # the centred square
    img[:, 30:] = (0, 255, 0)    # cropped away
    Image.fromarray(img).save(tmp_path / 'wide.png')
    x = projection.load_image(str(tmp_path / 'wide.png'), 16)
    assert x.shape == (16, 16, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[..., 2], 1, atol=1e-6)
    np.testing.assert_allclose(x[..., :2], -1, atol=1e-6)


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    Image.new('RGB', (8, 8), (255, 0, 0)).save(tmp_path / 'a.png')
    (tmp_path / 'b.png').write_text('not an image')
    (tmp_path / 'notes.txt').write_text('neither')
    warnings = []
    paths = [str(tmp_path / n) for n in ('a.png', 'b.png', 'notes.txt')]
    images = projection.load_images(paths, 16, warn=warnings.append)
    assert list(images) == paths[:1] and images[paths[0]].shape == (16, 16, 3)
    assert len(warnings) == 1 and warnings[0].startswith('warning: skipped 2 of 3 images that cannot be read: ')
    assert 'b.png' in warnings[0] and 'and 1 more' in warnings[0]
    with pytest.raises(ValueError, match=r"notes.txt' is not an image PIL can read .*; pass .png / .jpg images"):
        projection.load_images(paths[2:], 16)
    with pytest.raises(ValueError, match='none of the 2 images can be read'):
        projection.load_images(paths[1:], 16)


def run_project(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'project.py'), *args], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))


def test_launcher_writes_latents_and_pairs(tmp_path):
    ckpt = str(tmp_path / 'tiny.pt')
    convert.save_original(ckpt, GEN, VARS)
    folder = tmp_path / 'images'
    folder.mkdir()
    for i, t in enumerate(TARGETS):
        render.save_png(str(folder / f'img{i}.png'), render.to_uint8(t))
    (folder / 'img9.png').write_bytes(b'\x89PNG truncated')  # one unreadable image: skipped, not fatal
    out = tmp_path / 'out'
    proc = run_project(f'--generator={ckpt}', f'--images={folder}', f'--output={out}', '--steps=5',
                       '--optimizer=adam', '--lr=0.05', '--lpips_weight=0', '--batch_size=2')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'warning: skipped 1 of 3 images that cannot be read: ' in proc.stderr and 'img9.png' in proc.stderr
    assert sorted(os.listdir(out)) == ['img0.npy', 'img0_projection.png', 'img1.npy', 'img1_projection.png']
    w = np.load(out / 'img1.npy')
    assert w.shape == (GEN.n_style, GEN.style_dim) and w.dtype == np.float32  # like projected_latents/*.npy
    pair = np.asarray(Image.open(out / 'img1_projection.png'))
    assert pair.shape == (128, 256, 3)  # 16 px | 16 px, enlarged 8x (the default --scale: at least 128 px)
    pair = pair[::8, ::8]
    np.testing.assert_array_equal(pair[:, :16], render.to_uint8(TARGETS[1]))
    rendered = render.to_uint8(np.clip(GEN.apply(VARS, w[None], input_is_style=True), -1, 1))[0]
    assert np.abs(pair[:, 16:].astype(int) - rendered).max() <= 1
    assert 'img1: loss' in proc.stdout
    # A single file that is not an image: one line, status 2, no output folder.
    (tmp_path / 'notes.txt').write_text('not an image')
    proc = run_project(f'--generator={ckpt}', f'--images={tmp_path / "notes.txt"}', f'--output={tmp_path / "o2"}')
    assert proc.returncode == 2 and proc.stderr.count('\n') == 1, proc.stderr[-3000:]
    assert re.fullmatch(r"error: '.*notes.txt' is not an image PIL can read \(.*\); pass .png / .jpg images\n",
                        proc.stderr)
    assert not os.path.exists(tmp_path / 'o2')
