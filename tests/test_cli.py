"""What every launcher shares (anycost_jax.cli): routine mistakes as one line with status 2, bugs
as tracebacks, no empty output folder left by a failed run; then every launcher in launch/ on
a path that does not exist."""
import os
import subprocess
import sys

import pytest
from absl import app, flags

from anycost_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string('test_cli_out', None, 'An output folder of the guarded mains below.')
flags.DEFINE_integer('test_cli_port', 0, 'An integer flag to misspell.')


def failing(error, make=None):
    def main(argv):
        if make:
            os.makedirs(make)
        raise error
    return main


@pytest.mark.parametrize('error', [cli.UserError('--x=3: too big\n  pass --x=2'), app.UsageError('--x=3: too big'),
                                   ValueError('--x=3: too big'), FileNotFoundError('--x=3: too big')])
def test_routine_mistakes_are_one_line_and_status_2(error, capsys):
    with pytest.raises(SystemExit) as e:
        cli.guard(failing(error))(['prog'])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: --x=3: too big') and err.count('\n') == 1 and 'Traceback' not in err


def test_bugs_keep_their_traceback(capsys):
    with pytest.raises(KeyError):
        cli.guard(failing(KeyError('params')))(['prog'])
    with pytest.raises(RuntimeError):
        cli.guard(failing(RuntimeError('XLA went wrong')))(['prog'])
    assert capsys.readouterr().err == ''


def test_a_bad_flag_is_one_line(capsys):
    try:
        with pytest.raises(SystemExit) as e:
            cli.parse_flags(['prog', '--test_cli_port=eighty'])
    finally:
        flags.FLAGS.unparse_flags()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'eighty' in err and err.count('\n') == 1


def test_a_failed_run_leaves_no_empty_output_folder(tmp_path, capsys):
    flag = flags.FLAGS['test_cli_out']
    try:
        flag.value = str(tmp_path / 'new' / 'out')
        with pytest.raises(SystemExit):
            cli.guard(failing(ValueError('bad'), make=flag.value), outputs=['test_cli_out'])(['prog'])
        assert os.listdir(tmp_path) == []  # out/ and new/ were made by the run, both empty
        with pytest.raises(RuntimeError):  # a bug cleans up too
            cli.guard(failing(RuntimeError('bug'), make=flag.value), outputs=['test_cli_out'])(['prog'])
        assert os.listdir(tmp_path) == []
        # What existed before, or holds something, stays.
        os.makedirs(tmp_path / 'kept')
        flag.value = str(tmp_path / 'kept' / 'out')

        def half_written(argv):
            os.makedirs(flag.value)
            open(os.path.join(flag.value, 'sample.png'), 'w').close()
            raise ValueError('bad')
        with pytest.raises(SystemExit):
            cli.guard(half_written, outputs=['test_cli_out'])(['prog'])
        assert os.listdir(tmp_path / 'kept' / 'out') == ['sample.png']
        flag.value = str(tmp_path / 'ok')
        assert cli.guard(lambda argv: os.makedirs(flag.value), outputs=['test_cli_out'])(['prog']) is None
        assert os.path.isdir(tmp_path / 'ok')
    finally:
        flag.value = None
    capsys.readouterr()


@pytest.mark.slow
@pytest.mark.parametrize('launcher, args', [
    ('convert', ['--input={missing}', '--output={out}']),
    ('edit', ['--generator={missing}', '--seed=0', '--compute_directions', '--edit=red=1', '--output={out}']),
    ('editor', ['--generator={missing}', '--port=0']),
    ('evaluate', ['--checkpoint={missing}', '--metrics=macs', '--output={out}/eval.json']),
    ('generate', ['--checkpoint={missing}', '--outdir={out}']),
    ('project', ['--generator={missing}', '--images={image}', '--output={out}']),
    ('search', ['--checkpoint={missing}', '--budgets=0.5', '--output={out}/s.json']),
    ('train', ['--config={missing}', '--workdir={out}']),
    ('train_encoder', ['--config.generator={missing}', '--workdir={out}']),
])
def test_every_launcher_says_what_is_missing_in_one_line(tmp_path, launcher, args):
    from PIL import Image
    image = tmp_path / 'a.png'
    Image.new('RGB', (8, 8)).save(image)
    missing, out = tmp_path / 'nowhere' / 'model.pt', tmp_path / 'new' / 'out'
    args = [a.format(missing=missing, out=out, image=image) for a in args]
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'launch', f'{launcher}.py'), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith('error: ') and str(missing) in lines[0], proc.stderr[-3000:]
    assert not os.path.exists(tmp_path / 'new')  # no empty output folder behind


def test_library_info_is_quiet_unless_verbosity_asks():
    import logging
    quiet = cli._QuietLibraries()
    record = lambda path, level: logging.LogRecord('x', level, path, 1, 'msg', (), None)
    orbax = os.path.join(os.sep, 'venv', 'site-packages', 'orbax', 'checkpoint', 'checkpointer.py')
    clu = os.path.join(os.sep, 'venv', 'site-packages', 'clu', 'metric_writers', 'logging_writer.py')
    assert not quiet.filter(record(orbax, logging.INFO))
    assert quiet.filter(record(orbax, logging.WARNING))          # their warnings stay
    assert quiet.filter(record(clu, logging.INFO))               # training progress stays
    assert quiet.filter(record(os.path.join(ROOT, 'anycost_jax', 'train', 'loop.py'), logging.INFO))
    assert cli._verbosity_requested(['prog', '--verbosity=1']) and not cli._verbosity_requested(['prog', '--seeds=1'])
