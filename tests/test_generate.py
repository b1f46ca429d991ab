"""launch/generate.py end to end on a tiny random generator, and the render helpers."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from anycost_jax import render

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--init_random', '--resolution=16', '--channel_multiplier=0.015625', '--style_dim=16', '--n_mlp=1',
        '--repeats=1', '--cell=32']


def run_generate(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'generate.py'), *args],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, JAX_PLATFORMS='cpu'))  # (no log line about a missing TPU)


@pytest.mark.slow
def test_generate_writes_grid_and_samples(tmp_path):
    proc = run_generate(*TINY, f'--outdir={tmp_path}', '--seeds=3-4', '--channel_ratio=0.5', '--target_res=8')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(os.listdir(tmp_path)) == ['grid_seed3.png', 'grid_seed4.png', 'sample_seed3.png',
                                            'sample_seed4.png']
    sample = np.asarray(Image.open(tmp_path / 'sample_seed3.png'))
    # 8 px enlarged 16x (the default --scale: at least 128 px), each pixel a 16x16 square
    assert sample.shape == (128, 128, 3)
    np.testing.assert_array_equal(sample, np.repeat(np.repeat(sample[::16, ::16], 16, 0), 16, 1))
    grid = np.asarray(Image.open(tmp_path / 'grid_seed3.png'))
    # 4 rows of widths x 3 columns of resolutions (16, 8, 4), 32-pixel cells with 2-pixel gaps, below a band
    # of column labels and right of a band of row labels.
    top, left = render.LABEL_TOP, render.LABEL_LEFT
    assert grid.shape == (top + 4 * 34 + 2, left + 3 * 34 + 2, 3)
    cells = [grid[top + 2 + i * 34:top + 2 + i * 34 + 32, left + 2:left + 34] for i in range(4)]
    assert all(c.std() > 0 for c in cells)  # every width rendered something
    # every column and row has its label: dark text on the white bands
    assert all((grid[:top, left + 2 + j * 34:left + 34 + j * 34] < 128).any() for j in range(3))
    assert all((grid[top + 2 + i * 34:top + 34 + i * 34, :left] < 128).any() for i in range(4))
    # Every configuration's MACs and latency are printed: the 12 grid cells (sample included).
    table = [l for l in proc.stdout.splitlines() if '@' in l]
    assert len(table) == 12 and {'1.0x@16', '0.5x@8', '0.25x@4'} <= {l.split()[0] for l in table}
    # The same seed renders the same sample.
    again = run_generate(*TINY, f'--outdir={tmp_path / "again"}', '--seeds=3', '--channel_ratio=0.5',
                         '--target_res=8', '--grid=false')
    assert again.returncode == 0, again.stderr[-2000:]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'again' / 'sample_seed3.png')), sample)
    # --scale=1 writes the sample at its own size
    proc = run_generate(*TINY, f'--outdir={tmp_path / "own"}', '--seeds=3', '--target_res=8', '--grid=false',
                        '--scale=1')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.asarray(Image.open(tmp_path / 'own' / 'sample_seed3.png')).shape == (8, 8, 3)


@pytest.mark.parametrize('args, message', [
    ([], 'exactly one of --checkpoint'),
    (['--channel_ratio=0.3'], 'channel_ratio=0.3 is not supported; expected one of'),
    (['--target_res=32'], 'target_res=32'),
    (['--channels=1,2'], 'channels has 2 entries'),
    (['--seeds=0-x'], "--seeds='0-x': '0-x' is neither a seed nor a range"),
    (['--truncation=1.5'], '--truncation=1.5 is outside [0, 1]'),
    (['--scale=-2'], '--scale=-2 is negative'),
])
def test_generate_rejects_bad_arguments_in_one_line(tmp_path, args, message):
    base = TINY if args else [a for a in TINY if a != '--init_random']
    proc = run_generate(*base, *args, f'--outdir={tmp_path / "new" / "out"}')
    assert proc.returncode == 2
    assert proc.stderr.startswith('error: ') and proc.stderr.count('\n') == 1, proc.stderr[-3000:]
    assert message in proc.stderr
    assert not os.path.exists(tmp_path / 'new')  # a failed run leaves no empty output folder


def test_parse_seeds():
    assert render.parse_seeds('0-3,7') == [0, 1, 2, 3, 7] and render.parse_seeds(' 5 ') == [5]
    for bad in ('', 'a', '1,,2', '-1', '3-', '2-1'):
        with pytest.raises(ValueError, match=f"--seeds='{bad}'"):
            render.parse_seeds(bad)
    with pytest.raises(ValueError, match='write it low-high, e.g. 3-7'):
        render.parse_seeds('7-3')
    render.check_truncation(0.)
    render.check_truncation(1.)
    for bad in (1.01, -0.1, float('nan')):
        with pytest.raises(ValueError, match='outside \\[0, 1\\]'):
            render.check_truncation(bad)


def test_seeds_are_independent_of_batch():
    z = render.z_from_seeds([5, 6], 8)
    np.testing.assert_array_equal(z[1], render.z_from_seeds([6], 8)[0])


def test_to_uint8_clamps():
    assert render.to_uint8(np.array([-2., -1., 0., 1., 2.])).tolist() == [0, 0, 128, 255, 255]


def test_launcher_output_starts_with_its_own_lines(tmp_path):
    """Orbax's INFO lines of the restore (a dozen) are kept out unless --verbosity asks; an explicitly
    requested untrained resolution is one warning line."""
    import jax
    from anycost_jax import convert
    from anycost_jax.models import Generator
    gen = Generator(16, style_dim=16, n_mlp=1, channel_multiplier=1 / 64, trained_resolutions=(16, 8))
    model = convert.save_model(str(tmp_path / 'g'), gen, gen.init_variables(jax.random.key(0)))
    args = [f'--checkpoint={model}', '--grid=false', '--repeats=1', '--target_res=4']
    proc = run_generate(*args, f'--outdir={tmp_path / "a"}')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'orbax' not in proc.stderr.lower() and proc.stdout.startswith('generator: resolution 16')
    warnings = [l for l in proc.stderr.splitlines() if 'not trained' in l]
    assert len(warnings) == 1 and '--target_res 4 px: not trained (this generator was trained at 16, 8 px)' \
        in warnings[0], proc.stderr
    loud = run_generate(*args, f'--outdir={tmp_path / "b"}', '--verbosity=0')
    assert loud.returncode == 0 and 'orbax' in loud.stderr.lower()
