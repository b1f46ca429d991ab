"""The evaluation entry point: every metric over a (width x resolution) grid, statistics files,
the table / TensorBoard output, and launch/evaluate.py end to end. (Each metric's own
correctness: test_fid.py, test_consistency.py, test_ppl.py; the trainer's periodic evaluation
and best-FID export: test_trainer.py.)"""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from anycost_jax import convert, macs
from anycost_jax.eval import evaluate as ev
from anycost_jax.eval import fid
from anycost_jax.models import Generator
from tests.test_fid import tiny_extractor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = Generator(16, style_dim=16, n_mlp=1, channel_multiplier=1 / 64)


@pytest.fixture(scope='module')
def variables():
    return convert.add_mean_style(GEN, GEN.init_variables(jax.random.key(3)))


def settings(tmp_path, **kw):
    reals = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    base = dict(n_fid=16, n_ppl=4, n_consistency=3, batch_size=8, stats=str(tmp_path / 'stats_{res}.npz'),
                dataset=reals, source_resolution=16, consistency_res=16, extractor=tiny_extractor()[0],
                progress=False)
    base.update(kw)
    return ev.Settings(**base)


@pytest.mark.slow
def test_every_metric_over_the_grid(tmp_path, variables):
    configs = ev.grid(GEN, (1.0, 0.5), (16, 8))
    assert list(configs) == ['1.0x@16', '1.0x@8', '0.5x@16', '0.5x@8']
    s = settings(tmp_path)
    results = ev.evaluate(GEN, variables, ['macs', 'fid', 'consistency', 'ppl'], configs, s)
    full, half = results['1.0x@16'], results['0.5x@16']
    # The full generator against itself; a narrower one differs.
    assert full['mse'] == 0 and full['lpips'] == pytest.approx(0, abs=1e-6)
    assert half['mse'] > 0 and half['lpips'] > 0 and results['1.0x@8']['mse'] > 0
    for k, c in configs.items():
        assert results[k]['macs'] == macs.generator_macs(GEN, c.channel_ratio, None, c.target_res)
        assert np.isfinite(results[k]['fid']) and results[k]['fid'] >= 0
    assert half['macs'] < full['macs'] and results['1.0x@8']['macs'] < full['macs']
    assert full['ppl'] > 0 and results['1.0x@8']['ppl'] is None  # LPIPS-VGG needs 16 px
    # Real statistics were made once per resolution (8 px: area-downsampled from 16) and are reused.
    for res in (16, 8):
        assert fid.load_stats(str(tmp_path / f'stats_{res}.npz'), resolution=res).n_images == 16
    again = ev.evaluate(GEN, variables, ['fid'], configs, settings(tmp_path, dataset=None))
    assert {k: v['fid'] for k, v in again.items()} == pytest.approx({k: v['fid'] for k, v in results.items()})
    # The table and the TensorBoard scalars carry every value.
    table = ev.format_table(results).splitlines()
    assert table[0].split() == ['config', 'macs', 'fid', 'lpips', 'mse', 'ppl'] and len(table) == 5
    assert table[2].split()[-1] == '-'
    flat = ev.scalars(results)
    assert flat['eval/fid/0.5x@8'] == results['0.5x@8']['fid'] and 'eval/ppl/1.0x@8' not in flat


def test_errors_say_what_to_do(tmp_path, variables):
    configs = ev.grid(GEN, (1.0,), (16,))
    with pytest.raises(ValueError, match="unknown metrics \\['is'\\]"):
        ev.evaluate(GEN, variables, ['fid', 'is'], configs, settings(tmp_path))
    with pytest.raises(ValueError, match='must contain "{res}"'):
        ev.evaluate(GEN, variables, ['fid'], configs, settings(tmp_path, stats=str(tmp_path / 'x.npz')))
    with pytest.raises(FileNotFoundError, match='no real statistics at .*give the dataset'):
        ev.evaluate(GEN, variables, ['fid'], configs, settings(tmp_path, dataset=None))
    with pytest.raises(ValueError, match='target_res=32'):
        ev.grid(GEN, (1.0,), (32,))
    with pytest.raises(ValueError, match='0.3'):
        ev.grid(GEN, (0.3,), (16,))


@pytest.mark.slow
def test_launcher_table_json_and_tensorboard(tmp_path, variables):
    # A pipeline's workdir (as runs/demo): the last stage's generator is exported into it.
    run = tmp_path / 'run'
    convert.save_model(str(run / 'generator'), GEN, variables)
    out, logs = str(tmp_path / 'eval.json'), str(tmp_path / 'tb')
    cmd = [sys.executable, 'launch/evaluate.py', f'--checkpoint={run}', '--metrics=macs,consistency',
           '--ratios=1.0,0.25', '--resolutions=16', '--n_consistency=2', '--consistency_res=16', '--batch_size=8',
           f'--output={out}', f'--workdir={logs}', '--step=7']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '0.25x@16' in proc.stdout and 'lpips' in proc.stdout
    got = json.load(open(out))
    assert got['metrics'] == ['macs', 'consistency'] and set(got['results']) == {'1.0x@16', '0.25x@16'}
    assert got['results']['1.0x@16']['mse'] == 0 < got['results']['0.25x@16']['mse']
    assert any(f.startswith('events.out.tfevents') for f in os.listdir(logs))
    # FID without statistics is refused before anything is loaded.
    proc = subprocess.run(cmd[:3] + ['--metrics=fid'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --metrics has fid: pass --stats='"), proc.stderr


def test_fid_without_inception_weights_says_which_flag(tmp_path):
    from anycost_jax.convert import inception
    with pytest.raises(FileNotFoundError, match=r"'/nowhere/w.pth' do not exist; .*--inception=PATH"):
        inception.inception_weights('/nowhere/w.pth')
    # Offline: the download fails at once (a closed local port), before the generator is even looked for.
    url = 'http://127.0.0.1:9/pt_inception-2015-12-05-6726825d.pth'
    proc = subprocess.run([sys.executable, 'launch/evaluate.py', f'--checkpoint={tmp_path / "nowhere"}',
                           '--metrics=fid', f'--stats={tmp_path}/s_{{res}}.npz', f'--inception={url}',
                           f'--output={tmp_path / "new" / "eval.json"}'], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, ANYCOST_CACHE=str(tmp_path / 'cache'), JAX_PLATFORMS='cpu'))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f'error: could not download {url}') and proc.stderr.count('\n') == 1, proc.stderr
    assert 'pass its path with --inception=PATH' in proc.stderr
    assert not os.path.exists(tmp_path / 'new')
