"""Attribute directions (anycost_jax.editing.directions) and launch/edit.py."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from anycost_jax import convert
from anycost_jax.convert.torch_io import save_torch_file
from anycost_jax.data import procedural
from anycost_jax.editing import directions as dirs
from anycost_jax.models import Generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = Generator(16, style_dim=16, n_mlp=1, channel_multiplier=1 / 64)
VARS = GEN.init_variables(jax.random.key(0))


def unit(rng, d):
    v = rng.normal(size=d).astype(np.float32)
    return v / np.linalg.norm(v)


def test_load_boundaries_reads_the_original_torch_format(tmp_path):
    rng = np.random.default_rng(0)
    # The original's file: torch.save({key: torch.tensor(boundary [1, 512])}).
    original = {f'{i:02d}_{name}': unit(rng, 512)[None] for i, name in enumerate(dirs.CELEBA_ATTRIBUTES)}
    save_torch_file(original, str(tmp_path / 'boundary.pt'))
    loaded = dirs.load_boundaries(str(tmp_path / 'boundary.pt'))
    assert sorted(loaded) == sorted(original)
    for k, v in original.items():
        assert loaded[k].shape == (512,) and loaded[k].dtype == np.float32
        np.testing.assert_array_equal(loaded[k], v[0])
    # Every demo slider names a key of the original file; the demo names resolve.
    assert set(dirs.DEMO_DIRECTIONS.values()) <= set(loaded)
    np.testing.assert_array_equal(dirs.resolve_direction(loaded, 'smiling'), original['31_Smiling'][0])
    with pytest.raises(KeyError, match="no direction 'smiles'"):
        dirs.resolve_direction(loaded, 'smiles')
    with pytest.raises(FileNotFoundError, match='boundary file'):
        dirs.load_boundaries(str(tmp_path / 'missing.pt'))
    save_torch_file({'a': np.zeros((2, 3), np.float32)}, str(tmp_path / 'bad.pt'))
    with pytest.raises(ValueError, match="direction 'a' has shape"):
        dirs.load_boundaries(str(tmp_path / 'bad.pt'))
    assert dirs.boundary_url() == ('https://hanlab18.mit.edu/projects/anycost-gan/files/'
                                   'boundary_anycost-ffhq-config-f.pt')


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    found = {'red': unit(rng, 16), 'background brightness': unit(rng, 16)}
    dirs.save_directions(str(tmp_path / 'd.npz'), found)
    loaded = dirs.load_boundaries(str(tmp_path / 'd.npz'))
    assert sorted(loaded) == sorted(found)
    for k in found:
        np.testing.assert_array_equal(loaded[k], found[k])
    assert loaded.max_strength is None  # no range saved with them
    # conditioned on one direction: the others lose their component along it, and stay unit vectors
    mixed = dirs.Directions({'red': unit(rng, 16), 'brightness': found['red']}, max_strength=2.)
    mixed['red'] = (mixed['red'] + 2 * found['red']) / np.linalg.norm(mixed['red'] + 2 * found['red'])
    cond = dirs.conditioned(mixed, 'brightness')
    assert abs(float(cond['red'] @ cond['brightness'])) < 1e-6 and np.linalg.norm(cond['red']) == pytest.approx(1)
    np.testing.assert_array_equal(cond['brightness'], mixed['brightness'])
    assert cond.max_strength == 2. and float(mixed['red'] @ mixed['brightness']) > 0.8
    dirs.save_directions(str(tmp_path / 'r.npz'), dirs.Directions(found, max_strength=2.5))
    ranged = dirs.load_boundaries(str(tmp_path / 'r.npz'))
    assert sorted(ranged) == sorted(found) and ranged.max_strength == 2.5  # the range is not a direction
    with pytest.raises(ValueError, match='.npz'):
        dirs.save_directions(str(tmp_path / 'd.pt'), found)


def test_apply_edits_matches_the_original_demo():
    rng = np.random.default_rng(2)
    boundaries = {v: unit(rng, 512)[None] for v in dirs.DEMO_DIRECTIONS.values()}
    w = rng.normal(size=(1, 18, 512)).astype(np.float32)
    sliders = {'smiling': 40, 'young': -100, 'eyeglass': 7}
    # The original demo's slider_update, literally.
    expected = w.copy()
    for name, value in sliders.items():
        direction = boundaries[dirs.DEMO_DIRECTIONS[name]].reshape(1, 1, -1)
        expected[:, :12] = expected[:, :12] + value * direction / 100 * 0.6
    flat = {k: v[0] for k, v in boundaries.items()}
    edited = dirs.apply_edits(w, flat, {k: dirs.slider_strength(v) for k, v in sliders.items()})
    assert isinstance(edited, np.ndarray) and edited.shape == w.shape
    np.testing.assert_allclose(edited, expected, atol=1e-5)
    np.testing.assert_array_equal(edited[:, 12:], w[:, 12:])   # only the first n_layers move
    # Strength is a plain distance along the unit direction; JAX in, JAX out; n_layers respected.
    d = flat['31_Smiling']
    out = dirs.apply_edits(jnp.asarray(w[0]), flat, {'31_Smiling': 2.0}, n_layers=3)
    assert isinstance(out, jax.Array)
    np.testing.assert_allclose(np.asarray(out)[:3], w[0, :3] + 2 * d, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out)[3:], w[0, 3:])
    with pytest.raises(ValueError, match='style_dim'):
        dirs.apply_edits(w[..., :16], flat, {'smiling': 1.})


def test_svm_separates_and_recovers_a_planted_direction():
    rng = np.random.default_rng(3)
    u = unit(rng, 8)
    x = rng.normal(size=(4000, 8)).astype(np.float32)
    direction, accuracy = dirs.train_boundary(x, x @ u, top_fraction=0.1, seed=0)
    assert np.linalg.norm(direction) == pytest.approx(1, abs=1e-5)
    assert direction @ u > 0.99 and accuracy == 1.0
    # Linearly separable data are separated exactly, with the right sign.
    pos, neg = x[x @ u > 0.5], x[x @ u < -0.5]
    normal, bias = dirs.linear_svm(np.concatenate([pos, neg]), np.r_[np.ones(len(pos)), np.zeros(len(neg))])
    assert np.all(pos @ normal + bias > 0) and np.all(neg @ normal + bias < 0)
    with pytest.raises(ValueError, match='both classes'):
        dirs.linear_svm(pos, np.ones(len(pos)))
    with pytest.raises(ValueError, match='no training sample'):
        dirs.train_boundary(x[:20], x[:20] @ u)


def test_color_attributes_score_the_palette():
    # a square of each color, a quarter of the image, on each background tone
    patches = np.stack([np.broadcast_to(bg, (16, 16, 3)).copy() for bg in procedural.BACKGROUNDS for _ in range(4)])
    for i in range(16):
        patches[i, 4:12, 4:12] = procedural.COLORS[i % 4]
    scores = dirs.color_attributes(patches / 127.5 - 1)
    assert scores.shape == (16, 5) and dirs.color_attributes.attribute_names[:4] == procedural.COLOR_NAMES
    own = scores[np.arange(16), np.arange(16) % 4]
    np.testing.assert_allclose(own, 0.25, atol=1e-3)   # each color is itself ...
    others = scores[:, :4].copy()
    others[np.arange(16), np.arange(16) % 4] = 0
    assert others.max() < 0.02  # ... and not the others
    luma = procedural.BACKGROUNDS @ np.array(dirs.LUMA) / 255  # the background, whatever is on it
    np.testing.assert_allclose(scores[:, 4], np.repeat(luma, 4), atol=1e-3)
    example = procedural.render_example(0, 32) / 127.5 - 1
    dark = np.full((1, 32, 32, 3), procedural.BACKGROUNDS[0] / 127.5 - 1)
    light = np.full((1, 32, 32, 3), procedural.BACKGROUNDS[2] / 127.5 - 1)
    bright = dirs.color_attributes(np.concatenate([dark, light, example[None]]))[:, 4]
    assert bright[0] < 0.2 < 0.7 < bright[1]
    # Logits [N, n_attr, 2] become positive-class probabilities, as the original's predictor.
    probs = dirs.attribute_probabilities(np.array([[[0., 0.], [0., np.log(3.)]]]))
    np.testing.assert_allclose(probs, [[0.5, 0.75]], atol=1e-6)


def _soft(img, res=16):
    """A GAN sample's soft edges: drawn at 4x, area-downsampled, then a 3x3 box blur; in [-1, 1]."""
    x = np.asarray(Image.fromarray(img).resize((res, res), Image.BOX), np.float32)
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode='edge')
    return sum(p[i:i + res, j:j + res] for i in range(3) for j in range(3)) / 9 / 127.5 - 1


def _scores_before(images):
    """The color attributes as they were: background brightness = the luminance of the pixels that
    are near no palette color, so a shape's blurred edge counted as background."""
    rgb = (np.clip(images, -1, 1) + 1) * 127.5
    member = np.exp(-np.sum(np.square(rgb[..., None, :] - procedural.COLORS), -1) / (2 * 40. ** 2))
    background = 1 - member.max(-1)
    luma = rgb @ np.array(dirs.LUMA) / 255
    brightness = (background * luma).sum((1, 2)) / (background.sum((1, 2)) + 1e-6)
    return np.concatenate([member.mean((1, 2)), brightness[:, None]], 1)


def test_color_attributes_measure_shapes_and_background_apart():
    """Cross-talk on the dataset's own scenes with soft edges: repainting every shape yellow must
    not change the background brightness, and another background must not change the colors."""
    idx = range(64)
    drawn = np.stack([_soft(procedural.render_example(i, 64)) for i in idx])
    yellow = np.stack([_soft(procedural.render_example(i, 64, colors=procedural.COLORS[[3, 3, 3, 3]])) for i in idx])
    dark = np.stack([_soft(procedural.render_example(i, 64, background=(0, 0, 0.))) for i in idx])
    sand = np.stack([_soft(procedural.render_example(i, 64, background=(3, 3, 0.))) for i in idx])
    xtalk = {}
    for name, score in (('before', _scores_before), ('now', dirs.color_attributes)):
        brightness = np.abs(score(yellow)[:, 4] - score(drawn)[:, 4]).mean()
        colors = np.abs(score(sand)[:, :4] - score(dark)[:, :4]).mean()
        xtalk[name] = brightness, colors
    # measured: brightness 0.028 before, 0.005 now (its spread over the scenes: 0.14); colors 0.011 -> 0.007
    assert xtalk['now'][0] < 0.01 and xtalk['now'][0] < xtalk['before'][0] / 3, xtalk
    assert xtalk['now'][1] < xtalk['before'][1], xtalk
    # and the brightness still follows the scene's background tones
    truth = [procedural.BACKGROUNDS[list(procedural.scene(i)['background'])].mean(0) @ dirs.LUMA for i in idx]
    assert np.corrcoef(dirs.color_attributes(drawn)[:, 4], truth)[0, 1] > 0.99


@pytest.mark.slow
def test_compute_directions_moves_the_attribute():
    found, accuracy = dirs.compute_directions(GEN, VARS, dirs.color_attributes, n_samples=2000, batch_size=250,
                                              top_fraction=0.1, progress=False, return_accuracy=True)
    assert list(found) == list(dirs.COLOR_ATTRIBUTES)
    for v in found.values():
        assert v.shape == (GEN.style_dim,) and np.linalg.norm(v) == pytest.approx(1, abs=1e-5)
    assert accuracy['red'] > 0.8
    z = jax.random.normal(jax.random.key(7), (64, GEN.style_dim))
    _, w = GEN.apply(VARS, z, return_styles=True)
    red = dirs.COLOR_ATTRIBUTES.index('red')
    before = dirs.color_attributes(jnp.clip(GEN.apply(VARS, w, input_is_style=True), -1, 1))[:, red]
    moved = dirs.apply_edits(w, found, {'red': 2.0})
    after = dirs.color_attributes(jnp.clip(GEN.apply(VARS, moved, input_is_style=True), -1, 1))[:, red]
    assert after.mean() > 1.5 * before.mean() and (after > before).mean() > 0.7


@pytest.mark.slow
def test_edit_launcher_writes_before_and_after(tmp_path):
    ckpt = str(tmp_path / 'tiny.pt')
    convert.save_original(ckpt, GEN, VARS)
    out = tmp_path / 'edited'
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'edit.py'), f'--generator={ckpt}',
                           '--seed=1', '--compute_directions', '--classifier=colors', '--n_samples=400',
                           '--batch_size=100', '--top_fraction=0.1', f'--save_directions={tmp_path / "d.npz"}',
                           '--edit=red=2,blue=-1', '--channel_ratio=0.5', '--resolution=8', '--repeats=1',
                           f'--output={out}'], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(out)) == ['after.png', 'before.png', 'edited.npy']
    before, after = (np.asarray(Image.open(out / f'{t}.png')) for t in ('before', 'after'))
    # full 16 px | 0.5x at 8 px enlarged to 16, then both 8x (the default --scale: at least 128 px)
    assert before.shape == after.shape == (128, 256, 3)
    assert np.abs(before.astype(int) - after).max() > 0
    assert 'full generator (16px)' in proc.stdout and '0.5x@8' in proc.stdout and 'ms' in proc.stdout
    saved = dirs.load_boundaries(str(tmp_path / 'd.npz'))
    assert set(saved) == set(dirs.COLOR_ATTRIBUTES)
    assert f'slider range: +-{saved.max_strength:g} (3 std' in proc.stdout  # saved with the directions
    edited = np.load(out / 'edited.npy')
    assert edited.shape == (GEN.n_style, GEN.style_dim)


def test_edit_refuses_bad_arguments_before_loading(tmp_path):
    from anycost_jax.editing import edit as edit_lib
    missing = str(tmp_path / 'nowhere.pt')  # never read: each mistake is found first
    with pytest.raises(ValueError, match=r'--truncation=1.5 is outside \[0, 1\]'):
        edit_lib.edit(missing, {'red': 1.}, str(tmp_path / 'out'), seed=0, truncation=1.5)
    with pytest.raises(ValueError, match='channel_ratio=0.3 is not supported'):
        edit_lib.edit(missing, {'red': 1.}, str(tmp_path / 'out'), seed=0, channel_ratio=0.3)
    with pytest.raises(edit_lib.EditError, match=r"--latent='.*w.npy' does not exist"):
        edit_lib.edit(missing, {'red': 1.}, str(tmp_path / 'out'), latent=str(tmp_path / 'w.npy'))
    (tmp_path / 'w.npy').write_text('not a latent')
    ckpt = str(tmp_path / 'tiny.pt')
    convert.save_original(ckpt, GEN, VARS)
    with pytest.raises(edit_lib.EditError, match=r"w.npy' is not a .npy latent numpy can read"):
        edit_lib.edit(ckpt, {'red': 1.}, str(tmp_path / 'out'), latent=str(tmp_path / 'w.npy'))
    assert not os.path.exists(tmp_path / 'out')
