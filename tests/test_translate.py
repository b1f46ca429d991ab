"""launch/translate.py: any image-to-image generator (a gan-compression .pth, a config of a supernet, a
SPADE on label maps) applied to a folder, with MACs and latency; bad inputs as one line."""
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from anycost_jax import convert, translate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, 'tests', 'fixtures')
SPADE = ['--netG=mobile_spade', '--crop_size=128', '--aspect_ratio=2', '--num_upsampling_layers=more']


def launch(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'translate.py'), *args],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})


def _images(folder, n=2, size=32, seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(os.path.join(folder, f'im{i}.png'))
    return folder


@pytest.mark.slow
def test_translates_a_folder_at_a_config_as_the_library_does(tmp_path):
    src, out = _images(str(tmp_path / 'in')), str(tmp_path / 'out')
    pth = os.path.join(FIX, 'img2img_mobile.pth')
    r = launch(f'--generator={pth}', '--netG=super_mobile_resnet_9blocks', '--config=4_6_8_2_4_6_8_4',
               f'--input={src}', f'--outdir={out}')
    assert r.returncode == 0, r.stderr
    assert 'GMACs per image' in r.stdout and 'ms per batch' in r.stdout
    assert sorted(os.listdir(out)) == ['im0.png', 'im1.png']
    gen, variables = convert.load_img2img_generator(pth, netG='super_mobile_resnet_9blocks')
    x = np.stack([translate.read_image(os.path.join(src, f'im{i}.png'), gen, None) for i in range(2)])
    want = np.asarray(translate.translator(gen, variables, '4_6_8_2_4_6_8_4')(jnp.asarray(x)))
    got = np.asarray(Image.open(os.path.join(out, 'im1.png')))
    assert np.abs(got.astype(int) - want[1].astype(int)).max() <= 1  # rounding at .5 only


@pytest.mark.slow
def test_spade_label_maps(tmp_path):
    src, out = tmp_path / 'labels', str(tmp_path / 'out')
    os.makedirs(src)
    labels = np.random.default_rng(0).integers(0, 6, (64, 128), np.uint8)
    Image.fromarray(labels, mode='L').save(src / 'a.png')
    r = launch(f'--generator={os.path.join(FIX, "img2img_mobile_spade.pth")}', *SPADE, f'--input={src}',
               f'--outdir={out}')
    assert r.returncode == 0, r.stderr
    assert np.asarray(Image.open(os.path.join(out, 'a.png'))).shape == (64, 128, 3)


def test_label_maps_are_one_hot_at_the_generator_size(tmp_path):
    gen, _ = convert.load_img2img_generator(os.path.join(FIX, 'img2img_mobile_spade.pth'), netG='mobile_spade',
                                            crop_size=128, aspect_ratio=2.0, num_upsampling_layers='more')
    labels = np.random.default_rng(1).integers(0, 4, (32, 64), np.uint8)
    Image.fromarray(labels, mode='L').save(tmp_path / 'small.png')
    onehot = translate.read_label_map(str(tmp_path / 'small.png'), gen, n_classes=4)
    assert onehot.shape == (64, 128, 6) and np.all(onehot.sum(-1) == 1) and not onehot[..., 4:].any()
    np.testing.assert_array_equal(onehot.argmax(-1), np.repeat(np.repeat(labels, 2, 0), 2, 1))  # nearest, 2x
    Image.fromarray(np.zeros((64, 128, 3), np.uint8)).save(tmp_path / 'rgb.png')
    with pytest.raises(ValueError, match='single-channel PNG of class indices'):
        translate.read_label_map(str(tmp_path / 'rgb.png'), gen)
    with pytest.raises(ValueError, match='--label_classes=7 is more than'):
        translate.read_label_map(str(tmp_path / 'small.png'), gen, n_classes=7)


def test_bad_inputs_are_one_line(tmp_path):
    src = _images(str(tmp_path / 'in'), size=30)
    pth = os.path.join(FIX, 'img2img_mobile.pth')
    r = launch(f'--generator={pth}', '--netG=mobile_resnet_9blocks', f'--input={src}', f'--outdir={tmp_path}/o')
    assert r.returncode == 2 and 'not a multiple of 4' in r.stderr and '--size=N' in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not os.path.exists(tmp_path / 'o')
    labels = tmp_path / 'labels'
    os.makedirs(labels)
    Image.fromarray(np.full((64, 128), 9, np.uint8), mode='L').save(labels / 'a.png')
    r = launch(f'--generator={os.path.join(FIX, "img2img_mobile_spade.pth")}', *SPADE, f'--input={labels}')
    assert r.returncode == 2 and 'class index 9 >= 6 classes' in r.stderr
    r = launch(f'--generator={os.path.join(FIX, "img2img_mobile_spade.pth")}', '--netG=mobile_spade',
               f'--input={labels}')
    assert r.returncode == 2 and 'pass crop_size, num_upsampling_layers' in r.stderr
    r = launch(f'--generator={tmp_path}/none.pth', '--netG=resnet_9blocks', f'--input={src}')
    assert r.returncode == 2 and 'does not exist' in r.stderr
