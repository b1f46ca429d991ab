"""benchmarks/compression.py --quick end to end: one teacher, four methods, one table; and its pieces."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from anycost_jax import modeldir
from anycost_jax.train import trainer
from benchmarks import compression


def test_markdown_formats_rows_and_leaves_missing_cells_empty():
    table = compression.markdown([{'method': 'a', 'macs': 2.5e6, 'params': 1500, 'bytes': 2000, 'notes': 'x'},
                                  {'method': 'crd', 'notes': 'not available on this checkout (...)'}])
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].startswith('| method | MACs (M) |')
    assert lines[2].startswith('| a | 2.50 | 1.5 | 2.0 |')
    assert lines[3].startswith('| crd |  |') and 'not available' in lines[3]


def test_crd_student_fits_the_budget():
    ngf = compression.crd_student_ngf(32, 9, 10_000_000, 16)
    assert ngf % 2 == 0 and 2 <= ngf <= 16
    with pytest.raises(ValueError, match='raise --budget'):
        compression.crd_student_ngf(32, 9, 10, 16)


def test_unknown_method_is_refused(tmp_path):
    with pytest.raises(SystemExit, match='--methods'):
        compression.main(['--workdir', str(tmp_path), '--quick', '--methods', 'gs32,nope'])


@pytest.mark.slow
def test_quick_mode_end_to_end(tmp_path):
    out = compression.main(['--workdir', str(tmp_path), '--quick', '--repeats', '2', '--warmup', '0'])
    rows = {r['method']: r for r in out['rows']}
    assert list(rows) == ['teacher', 'gan_compression', 'gs32', 'gs8', 'crd']
    ran = [m for m in rows if m != 'crd' or 'crd' in trainer.FAMILIES]
    for m in ran:
        r = rows[m]
        for key in ('macs', 'params', 'bytes', 'latency_ms', 'real/l1', 'real/psnr', 'real/lpips', 'teacher/l1',
                    'teacher/psnr', 'teacher/lpips', 'wall_s', 'cpu_s'):
            assert np.isfinite(r[key]), (m, key)
        # every exported model loads and runs on its own
        gen, v = modeldir.load(r['model'])
        y = np.asarray(gen.apply(v, jnp.zeros((2, 32, 32, 3))))
        assert y.shape == (2, 32, 32, 3) and np.all(np.isfinite(y))
    if 'crd' not in trainer.FAMILIES:
        assert 'not available on this checkout' in rows['crd']['notes'] and 'macs' not in rows['crd']
    assert rows['teacher']['teacher/l1'] == 0.
    assert rows['gan_compression']['macs'] <= out['budget_macs']
    # the table, as markdown and JSON
    md = open(tmp_path / 'compression.md').read()
    assert md.count('\n| ') == 1 + len(rows) and '--quick' in md
    assert json.load(open(tmp_path / 'compression.json'))['rows'][0]['method'] == 'teacher'
    # a rerun reuses every finished run: no stage trains again
    steps = {m: sorted(os.listdir(tmp_path / m / 'checkpoints')) for m in ('teacher', 'gs32')
             if os.path.isdir(tmp_path / m / 'checkpoints')}
    again = compression.main(['--workdir', str(tmp_path), '--quick', '--repeats', '1', '--warmup', '0',
                              '--methods', 'gan_compression,gs32'])
    assert [r['method'] for r in again['rows']] == ['teacher', 'gan_compression', 'gs32']
    for m, s in steps.items():
        assert sorted(os.listdir(tmp_path / m / 'checkpoints')) == s
