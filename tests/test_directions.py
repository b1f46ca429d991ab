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
    patches = np.concatenate([np.broadcast_to(c / 127.5 - 1, (1, 8, 8, 3)) for c in procedural.COLORS])
    scores = dirs.color_attributes(patches)
    assert scores.shape == (4, 5) and dirs.color_attributes.attribute_names[:4] == procedural.COLOR_NAMES
    np.testing.assert_allclose(np.diag(scores[:, :4]), 1, atol=1e-5)   # each color is itself ...
    assert (scores[:, :4] - np.diag(np.diag(scores[:, :4]))).max() < 0.05  # ... and not the others
    example = procedural.render_example(0, 32) / 127.5 - 1
    dark = np.full((1, 32, 32, 3), procedural.BACKGROUNDS[0] / 127.5 - 1)
    light = np.full((1, 32, 32, 3), procedural.BACKGROUNDS[2] / 127.5 - 1)
    bright = dirs.color_attributes(np.concatenate([dark, light, example[None]]))[:, 4]
    assert bright[0] < 0.2 < 0.7 < bright[1]
    # Logits [N, n_attr, 2] become positive-class probabilities, as the original's predictor.
    probs = dirs.attribute_probabilities(np.array([[[0., 0.], [0., np.log(3.)]]]))
    np.testing.assert_allclose(probs, [[0.5, 0.75]], atol=1e-6)


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
    assert set(dirs.load_boundaries(str(tmp_path / 'd.npz'))) == set(dirs.COLOR_ATTRIBUTES)
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
