"""notebooks/colab_tpu.ipynb runs top to bottom (here on the CPU, tiny: a 16 px model, one
training step per stage, two Adam projection steps) and shows its images; it is stored without outputs."""
import json
import os
import re
import sys

import pytest

pytestmark = pytest.mark.slow  # runs the whole notebook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'notebooks', 'colab_tpu.ipynb')
# The demo config shrunk to the size of the trainer tests' models: the notebook's code paths, not its scale.
TINY_CONFIG = ('resolution=16;model.style_dim=16;model.n_mlp=1;model.channel_multiplier=0.015625;'
               'model.channel_max=16;batch_size=8;allow_small_stddev_group=True;n_res=2;n_sampled_res=2')


def test_notebook_is_stored_without_outputs():
    with open(NOTEBOOK) as f:
        nb = json.load(f)
    code = [c for c in nb['cells'] if c['cell_type'] == 'code']
    assert code and all(c['outputs'] == [] and c['execution_count'] is None for c in code)


def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    import nbformat  # the test extras: pip install -e '.[test]'
    from nbclient import NotebookClient

    # A kernel spec running this interpreter, whatever other 'python3' kernels the machine has.
    spec_dir = tmp_path / 'jupyter' / 'kernels' / 'python3'
    spec_dir.mkdir(parents=True)
    (spec_dir / 'kernel.json').write_text(json.dumps({
        'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
        'display_name': 'Python 3 (test)', 'language': 'python'}))
    monkeypatch.setenv('JUPYTER_PATH', str(tmp_path / 'jupyter'))
    # Adam on the full generator: L-BFGS's line search through random sub-generators compiles for a minute.
    for key, value in {'STAGE_STEPS': 'multires=1;anycost=1', 'WORKDIR': str(tmp_path / 'run'), 'PROJECT_STEPS': '2',
                       'PROJECT_OPTIMIZER': 'adam', 'PROJECT_SUB_G': '0',
                       'DIRECTION_SAMPLES': '200', 'CONFIG': f'{TINY_CONFIG};data_dir={tmp_path / "tfds"}'}.items():
        monkeypatch.setenv('ANYCOST_NOTEBOOK_' + key, value)
    monkeypatch.setenv('ANYCOST_CACHE', str(tmp_path / 'cache'))  # the color directions' cache
    monkeypatch.setenv('PYTHONPATH', ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name='python3', timeout=600,
                   resources={'metadata': {'path': os.path.join(ROOT, 'notebooks')}}).execute()

    code = [c for c in nb.cells if c.cell_type == 'code']
    assert all(c.execution_count is not None for c in code)  # every cell ran (an error would have raised)
    text = '\n'.join(o.get('text', '') for c in code for o in c.outputs if o.output_type == 'stream')
    assert 'backend: cpu' in text
    assert 'trained 2 steps (multires: 1, anycost: 1)' in text and 'generator: 16 px' in text
    assert 'projected in' in text and 'preview 0.25x @ 8 px' in text
    # Off Colab: the set-up says what Colab's set-up would install, the editor is served at a local URL.
    assert 'requirements this Python lacks: ' in text
    assert re.search(r'anycost editor: http://127\.0\.0\.1:\d+/', text), text[-2000:]

    def images(cell_index):
        return [o for o in code[cell_index].outputs if o.output_type == 'display_data' and 'image/png' in o.data]
    grid_cell, project_cell, edit_cell = (next(i for i, c in enumerate(code) if marker in c.source)
                                          for marker in ('anycost_grid', 'projection.project', 'color_directions'))
    assert len(images(grid_cell)) == 2           # one grid per seed
    assert len(images(project_cell)) == 1        # target | reconstruction
    assert len(images(edit_cell)) >= 2           # -1 / +1 of at least one direction
    assert os.path.isdir(tmp_path / 'run' / 'generator')
