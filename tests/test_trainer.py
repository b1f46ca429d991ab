"""train_and_evaluate end to end on 8 simulated devices with tiny models: every stage chained as
in the paper (stage 0 -> 1 -> 2, tuning from and distilling our own workdirs, model directories
and original .pt files), exact resume, corrupt checkpoints, SIGTERM, the NaN guard."""
import glob
import importlib
import json
import logging
import os
import signal

import jax
import numpy as np
import pytest

from anycost_jax import checkpoint as ckpt_lib
from anycost_jax import convert
from anycost_jax import workdir as workdir_lib
from anycost_jax.elastic import sorting
from anycost_jax.eval import evaluate as evaluate_lib
from anycost_jax.train import anycost, loop, trainer

pytestmark = pytest.mark.slow  # end-to-end runs of the real trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config_file(name, arg):
    return importlib.import_module(f'configs.{name}').get_config(arg)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('tfds'))


def tiny(stage, data_dir, **overrides):
    """The FFHQ stage config at 16 px with a tiny model: every code path, little compute."""
    c = load_config_file('ffhq', stage)
    c.dataset, c.data_dir, c.resolution = 'anycost_shapes', data_dir, 16
    c.model.style_dim, c.model.n_mlp, c.model.channel_multiplier = 16, 1, 1 / 64
    c.batch_size, c.num_steps = 8, 1
    c.allow_small_stddev_group = True     # 1 image on each of 8 devices
    c.n_res, c.n_sampled_res = min(c.n_res, 2), min(c.n_sampled_res, 1)
    c.d_reg_every = 1                      # R1 and path length run at step 0
    c.g_reg_every = 1 if stage == 'stylegan2' else 0
    c.use_lpips = False
    c.log_every = c.sample_every = c.checkpoint_every = 1
    c.n_samples = 2
    for k, v in overrides.items():
        c[k] = v
    return c


def scalars(workdir):
    """({scalar tag: [(step, value)]}, all tags) from the TensorBoard event files."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util
    acc = event_accumulator.EventAccumulator(workdir, size_guidance={'tensors': 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()['tensors']:
        values = [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
        if all(v.size == 1 and v.dtype.kind == 'f' for _, v in values):
            out[tag] = [(step, float(v)) for step, v in values]
    return out, acc.Tags()


def params(state):
    return jax.tree.map(np.asarray, (state.g_params, state.d_params, state.ema_params, state.g_opt_state,
                                     state.d_opt_state))


def assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope='module')
def stages(tmp_path_factory, data_dir):
    """The three stages chained like the paper's scripts, with every kind of weight source."""
    root = tmp_path_factory.mktemp('runs')
    out = {}
    out['stylegan2'] = str(root / 's0'), trainer.train_and_evaluate(tiny('stylegan2', data_dir), str(root / 's0'))
    s0 = out['stylegan2'][0]
    # Stage 1 tunes from and distills the stage-0 *workdir* (its latest checkpoint's EMA and D).
    out['multires'] = str(root / 's1'), trainer.train_and_evaluate(
        tiny('multires', data_dir, tune_from=s0, teacher=s0), str(root / 's1'))
    s1 = out['multires'][0]
    # Stage 2 from stage 1's exported *model directory* (generator/ + discriminator/ beside it),
    # with the periodic evaluation on (a small stand-in for the Inception network: no download).
    from tests.test_fid import tiny_extractor
    evaluate_lib._EXTRACTORS[None] = tiny_extractor()[0]
    try:
        out['anycost'] = str(root / 's2'), trainer.train_and_evaluate(
            tiny('anycost', data_dir, tune_from=os.path.join(s1, 'generator'), teacher=os.path.join(s1, 'generator'),
                 eval_every=1, eval_metrics=('macs', 'fid', 'consistency'), eval_n_fid=8, eval_n_consistency=2),
            str(root / 's2'))
    finally:
        evaluate_lib._EXTRACTORS.pop(None)
    # The flexible stage from an *original-format .pt* (g_ema + d) of stage 1.
    pt = str(root / 's1.pt')
    g, gv = convert.load_generator(os.path.join(s1, 'generator'), mean_style=False)
    d, dv = convert.load_discriminator(os.path.join(s1, 'discriminator'))
    convert.save_original(pt, g, gv, d, dv)
    out['anycost-flexible'] = str(root / 'flex'), trainer.train_and_evaluate(
        tiny('anycost-flexible', data_dir, tune_from=pt, teacher=pt), str(root / 'flex'))
    return out


@pytest.mark.parametrize('stage', ['stylegan2', 'multires', 'anycost', 'anycost-flexible'])
def test_every_stage_end_to_end(stages, stage):
    workdir, state = stages[stage]
    assert int(state.step) == 1
    # Every device holds the same parameters.
    for leaf in jax.tree.leaves(state.g_params):
        shards = [np.asarray(s.data) for s in leaf.addressable_shards]
        assert len(shards) == 8 and all(np.array_equal(shards[0], s) for s in shards[1:])
    # Workdir: config, checkpoint, samples, exported models, TensorBoard scalars and images.
    cfg = json.load(open(os.path.join(workdir, 'config.json')))
    assert cfg['name'] == f'ffhq-{stage}'
    with ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints')) as ck:
        assert ck.all_steps() == [1]
    assert os.path.exists(os.path.join(workdir, 'samples', '00000001.png'))
    gen, g_vars = convert.load_model(os.path.join(workdir, 'generator'))
    assert 'w_avg' in g_vars['stats']
    assert_trees_equal(g_vars['params'], jax.tree.map(np.asarray, state.ema_params))
    tags_scalars, tags = scalars(workdir)
    expected = {'d_loss', 'd_real_acc', 'd_fake_acc', 'r1', 'g_loss', 'images_per_sec', 'steps_per_sec'}
    expected |= {'path_loss', 'path_length'} if stage == 'stylegan2' else {'distill_loss'}
    assert expected <= set(tags_scalars), set(tags_scalars)
    assert all(np.isfinite(v) for k in expected for _, v in tags_scalars[k])
    assert 'samples' in tags['tensors'] or 'samples' in tags.get('images', [])


def test_sample_grid_has_every_width_and_resolution(stages):
    from PIL import Image
    workdir, _ = stages['anycost']
    grid = np.asarray(Image.open(os.path.join(workdir, 'samples', '00000001.png')))
    from anycost_jax import render
    cell, pad = 64, 2  # 16 px outputs are shown at 64 px
    top, left = render.LABEL_TOP, render.LABEL_LEFT
    # 4 widths x 2 resolutions per z, 2 z side by side, below a band of resolution labels and
    # right of a band of width labels: text (dark pixels) in both bands.
    assert grid.shape == (top + 4 * (cell + pad) + pad, left + 2 * (2 * (cell + pad) + pad), 3)
    assert grid[:top, left:].min() < 100 and grid[top:, :left].min() < 100


def test_periodic_evaluation_and_best_fid_export(stages):
    workdir, state = stages['anycost']
    values, _ = scalars(workdir)
    labels = [f'{r}x@{res}' for r in (1.0, 0.75, 0.5, 0.25) for res in (16, 8)]  # trained widths x resolutions
    for metric in ('macs', 'fid', 'lpips', 'mse'):
        for label in labels:
            (step, v), = values[f'eval/{metric}/{label}']
            assert step == 1 and np.isfinite(v), (metric, label)
    assert values['eval/mse/1.0x@16'][0][1] == 0 < values['eval/mse/0.25x@16'][0][1]
    # Real statistics made from the training data, one file per trained resolution.
    for res in (16, 8):
        assert os.path.exists(os.path.join(workdir, 'fid_stats', f'anycost_shapes_{res}.npz'))
    # The best-FID EMA generator, exported with its step and FID.
    best = json.load(open(os.path.join(workdir, workdir_lib.BEST_GENERATOR, workdir_lib.BEST_FILE)))
    assert best == {'step': 1, 'fid': pytest.approx(values['eval/fid/1.0x@16'][0][1])}
    _, g_vars = convert.load_model(os.path.join(workdir, workdir_lib.BEST_GENERATOR))
    assert_trees_equal(g_vars['params'], jax.tree.map(np.asarray, state.ema_params))
    # With D, as the original's ckpt-best.pt: what tune_from_checkpoint='best' starts from.
    _, best_g, _, best_d = anycost.load_weights(workdir, checkpoint='best')
    assert_trees_equal(best_g['params'], jax.tree.map(np.asarray, state.ema_params))
    assert_trees_equal(best_d['params'], jax.tree.map(np.asarray, state.d_params))
    cfg = tiny('anycost', None, tune_from=workdir, tune_from_checkpoint='best', sort_pretrain=False)
    gen, disc = anycost.build_models(cfg)
    g0, d0 = anycost.initial_variables(cfg, gen, disc, jax.random.key(0))
    assert_trees_equal(g0['params'], best_g['params'])
    assert_trees_equal(d0['params'], best_d['params'])
    s0, _ = stages['stylegan2']  # trained without FID: no best export to tune from
    with pytest.raises(FileNotFoundError, match="tune_from_checkpoint='latest'"):
        anycost.load_weights(s0, checkpoint='best')


def test_stage_transfers_are_checked(stages, data_dir, tmp_path):
    s0, _ = stages['stylegan2']
    # A teacher or tune_from of another architecture is refused with the differing fields.
    cfg = tiny('multires', data_dir, tune_from=s0, teacher=s0)
    cfg.model.channel_multiplier = 1 / 32
    with pytest.raises(ValueError, match='full_channels'):
        trainer.train_and_evaluate(cfg, str(tmp_path / 'bad'))
    with pytest.raises(ValueError, match='needs a teacher'):
        trainer.train_and_evaluate(tiny('multires', data_dir, teacher=None), str(tmp_path / 'bad2'))
    # A workdir resumed with another run shape is refused.
    with pytest.raises(ValueError, match='different shape'):
        trainer.train_and_evaluate(tiny('stylegan2', data_dir, batch_size=16), s0)


def test_transfer_d_single_to_multires(stages):
    s0, state = stages['stylegan2']
    gen, _, disc, d_vars = anycost.load_weights(s0)
    cfg = tiny('multires', '/nonexistent')
    _, multi = anycost.build_models(cfg)
    init = multi.init_variables(jax.random.key(0))['params']
    moved = anycost.transfer_d(disc, d_vars['params'], multi, init)
    assert_trees_equal(moved['from_rgb_0'], d_vars['params']['from_rgb'])  # the 16 px input is the old one
    assert_trees_equal(moved['from_rgb_1'], init['from_rgb_1'])  # the new lower-res input stays initialized
    assert_trees_equal(moved['head'], d_vars['params']['head'])


def _resume_config(data_dir, **kw):
    return tiny('anycost', data_dir, teacher='ema', distill_weight=1., sort_pretrain=False, tune_from=None, **kw)


def test_sigterm_resume_corrupt_checkpoint_and_nan_guard(data_dir, tmp_path, caplog):
    """One run through every way a run stops: preempted, resumed past a corrupt checkpoint, then
    diverging; and a workdir whose checkpoints are all corrupt."""
    straight = trainer.train_and_evaluate(_resume_config(data_dir, num_steps=3), str(tmp_path / 'a'))
    run = str(tmp_path / 'b')
    ckpt_dir = os.path.join(run, 'checkpoints')

    # 1. SIGTERM (sent here by an evaluation hook at step 2): a checkpoint, a clean return.
    evaluate_lib.register('sigterm', lambda gen, variables, configs, settings:
                          os.kill(os.getpid(), signal.SIGTERM) or {})
    previous = signal.getsignal(signal.SIGTERM)
    try:
        stopped = trainer.train_and_evaluate(
            _resume_config(data_dir, num_steps=50, eval_every=2, eval_metrics=('sigterm',)), run)
    finally:
        evaluate_lib.unregister('sigterm')
    assert int(stopped.step) == 2
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is given back
    assert not os.path.exists(os.path.join(run, 'generator'))  # unfinished: no final export
    with ckpt_lib.Checkpointer(ckpt_dir) as ck:
        assert ck.all_steps() == [1, 2]

    # 2. The latest checkpoint is damaged: the resume says so, moves it aside, continues from
    # step 1, and the interrupted run ends exactly where the uninterrupted one did.
    for f in glob.glob(os.path.join(ckpt_dir, '2', 'state', '**', '*'), recursive=True):
        if os.path.isfile(f) and os.path.getsize(f) > 64:
            with open(f, 'r+b') as fh:
                fh.truncate(8)
    caplog.clear()
    resumed = trainer.train_and_evaluate(_resume_config(data_dir, num_steps=3), run)
    assert any('corrupt' in r.getMessage().lower() for r in caplog.records if r.levelname == 'WARNING')
    assert os.path.isdir(os.path.join(ckpt_dir, '2.corrupt'))
    assert int(resumed.step) == 3
    assert_trees_equal(params(resumed), params(straight))
    np.testing.assert_array_equal(jax.random.key_data(resumed.rng), jax.random.key_data(straight.rng))

    # 3. Divergence: stops with an error naming the last good checkpoint, and writes nothing after it.
    with pytest.raises(loop.NonFiniteError, match=r'last good checkpoint \(step 3\)'):
        trainer.train_and_evaluate(_resume_config(data_dir, num_steps=6, lr=float('inf')), run)
    with ckpt_lib.Checkpointer(ckpt_dir) as ck:
        assert ck.latest_step() == 3

    # 4. Every checkpoint corrupt: an error, not a silent restart from scratch.
    for d in os.listdir(ckpt_dir):
        if d.isdigit():
            os.rename(os.path.join(ckpt_dir, d), os.path.join(ckpt_dir, d + '.corrupt-x'))
    with pytest.raises(RuntimeError, match='only corrupt ones'):
        trainer.train_and_evaluate(_resume_config(data_dir, num_steps=4), run)


def test_config_errors(data_dir, tmp_path):
    with pytest.raises(ValueError, match='divisible by the 8 devices'):
        trainer.train_and_evaluate(tiny('stylegan2', data_dir, batch_size=12), str(tmp_path / 'x'))
    with pytest.raises(ValueError, match=r"eval_metrics \['is'\] are neither built in .*nor registered"):
        trainer.train_and_evaluate(tiny('stylegan2', data_dir, eval_every=1, eval_metrics=('fid', 'is')),
                                   str(tmp_path / 'y'))
    # FID without its Inception weights stops before training, saying where they go.
    with pytest.raises(FileNotFoundError, match='FID Inception weights .*missing.pth'):
        trainer.train_and_evaluate(tiny('stylegan2', data_dir, eval_every=1, eval_metrics=('fid',),
                                        inception=str(tmp_path / 'missing.pth')), str(tmp_path / 'z'))
    assert not os.path.exists(tmp_path / 'z' / 'checkpoints')
    with pytest.raises(ValueError, match='unknown stage'):
        load_config_file('ffhq', 'stage3')
    trainer.config_lib.check(load_config_file('demo', ''))
    trainer.config_lib.check(load_config_file('ffhq', 'stylegan2'))
    for name in ('ffhq', 'lsun_car'):  # the distilling stages need the user's teacher
        with pytest.raises(ValueError, match='needs a teacher'):
            trainer.config_lib.check(load_config_file(name, 'anycost'))


@pytest.mark.parametrize('name', ['ffhq', 'lsun_car'])
def test_paper_pipeline_config_is_the_single_stages_chained(name):
    """`:pipeline` runs exactly the single-stage configs, each tuned from and distilled from the one before."""
    p = load_config_file(name, 'pipeline')
    trainer.config_lib.check(p)  # the teachers are @previous: no user-supplied path is needed
    stages = trainer.config_lib.stage_configs(p)
    assert [n for n, _ in stages] == ['stylegan2', 'multires', 'anycost']
    for i, (stage, c) in enumerate(stages):
        single = load_config_file(name, stage).to_dict()
        got = c.to_dict()
        assert got.pop('name') == f'{name}-{stage}' and single.pop('name') == f'{name}-{stage}'
        expect = trainer.config_lib.PREVIOUS if i else None
        assert (got.pop('tune_from'), got.pop('teacher')) == (expect, expect)
        single.pop('tune_from'), single.pop('teacher')
        assert got == single, stage
    with pytest.raises(ValueError, match='config.stage.multires.num_steps'):
        with p.unlocked():
            p.num_steps = 10
        trainer.config_lib.check(p)


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(('localhost', 0))
        return s.getsockname()[1]


_MANY_STEPS = """
import sys
sys.path.insert(0, 'tests')
from test_trainer import tiny
from anycost_jax.train import trainer
c = tiny('multires', sys.argv[1], num_steps=200, teacher=None, distill_weight=0.,
         log_every=10 ** 6, sample_every=10 ** 6, checkpoint_every=10 ** 6)  # nothing drains the queue
state = trainer.train_and_evaluate(c, sys.argv[2])
print('finished', int(state.step), 'steps on', len(state.step.sharding.device_set), 'devices')
"""


def test_many_steps_on_two_cpu_devices_do_not_deadlock(data_dir, tmp_path):
    """200 steps on 2 CPU devices with nothing that waits for the devices in between.

    Queued ahead, these programs deadlock XLA:CPU (an all-reduce that one device never joins;
    XLA aborts the process after 40 s): this failed every time before the step programs waited
    for their results on CPU meshes (Steps.waits_for_results). In a subprocess, so that a regression fails this test, not
    the whole session.
    """
    import subprocess
    import sys
    from anycost_jax.data import pipeline
    pipeline.load_source('anycost_shapes', 16, data_dir=data_dir)
    flags = ' '.join(f for f in os.environ.get('XLA_FLAGS', '').split() if 'device_count' not in f)
    env = {**os.environ, 'XLA_FLAGS': f'{flags} --xla_force_host_platform_device_count=2'}
    r = subprocess.run([sys.executable, '-c', _MANY_STEPS, data_dir, str(tmp_path / 'w')], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and 'finished 200 steps on 2 devices' in r.stdout, (
        r.returncode, r.stdout[-2000:], r.stderr[-3000:])


def test_two_processes_train_like_one(data_dir, tmp_path):
    """launch/train.py as 2 processes x 4 devices (jax.distributed on localhost) = 1 process x 8."""
    import subprocess
    import sys
    from anycost_jax.data import pipeline
    pipeline.load_source('anycost_shapes', 16, data_dir=data_dir)  # prepare once, not in both processes
    overrides = dict(dataset='anycost_shapes', data_dir=data_dir, resolution=16, batch_size=8, num_steps=2,
                     n_res=2, n_sampled_res=1, d_reg_every=1, use_lpips=False, teacher='ema', distill_weight=1.,
                     sort_pretrain=False, log_every=1, sample_every=2, checkpoint_every=1, n_samples=2,
                     allow_small_stddev_group=True)
    overrides.update({'model.style_dim': 16, 'model.n_mlp': 1, 'model.channel_multiplier': 1 / 64})
    args = ['--config=configs/ffhq.py:anycost'] + [f'--config.{k}={v}' for k, v in overrides.items()]
    flags = os.environ['XLA_FLAGS'].replace('device_count=8', 'device_count=4')
    env = {**os.environ, 'XLA_FLAGS': flags}
    port, multi = _free_port(), str(tmp_path / 'multi')
    procs = [subprocess.Popen([sys.executable, 'launch/train.py', *args, f'--workdir={multi}',
                               f'--coordinator_address=localhost:{port}', '--num_processes=2', f'--process_id={i}'],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=900)[0])
    finally:
        for p in procs:
            p.kill()
    for i, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f'process {i} failed:\n{out[-4000:]}'
        assert 'JAX process: %d / 2' % i in out
        assert 'parameters identical on all 8 devices of 2 process(es)' in out, out[-2000:]
    # The same run in this process on 8 local devices: the same parameters (up to the summation
    # order of the cross-process all-reduce).
    single = trainer.train_and_evaluate(trainer.config_lib.config_dict.ConfigDict(
        json.load(open(os.path.join(multi, 'config.json')))), str(tmp_path / 'single'))
    _, multi_g = convert.load_model(os.path.join(multi, 'generator'))
    for a, b in zip(jax.tree.leaves(multi_g['params']), jax.tree.leaves(jax.tree.map(np.asarray, single.ema_params))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with ckpt_lib.Checkpointer(os.path.join(multi, 'checkpoints')) as ck:
        assert ck.all_steps() == [1, 2]


def _tiny_pipeline(data_dir, multires_steps=2, anycost_steps=1):
    """configs/demo.py's two-stage pipeline at the trainer tests' size."""
    c = load_config_file('demo', '')
    c.data_dir, c.resolution, c.batch_size = data_dir, 16, 8
    c.allow_small_stddev_group = True  # 1 image on each of 8 devices
    c.model.style_dim, c.model.n_mlp, c.model.channel_multiplier, c.model.channel_max = 16, 1, 1 / 64, 16
    c.n_res, c.n_sampled_res, c.d_reg_every = 2, 1, 1
    c.log_every = c.sample_every = c.checkpoint_every = 1
    c.n_samples = 2
    c.stage.multires.num_steps, c.stage.anycost.num_steps = multires_steps, anycost_steps
    return c


def test_pipeline_runs_its_stages_in_order_and_resumes(data_dir, tmp_path, caplog):
    """The demo's multires -> anycost pipeline: stage 2 tunes from, sorts and distills stage 1's
    workdir; a preempted stage starts no next one; a rerun skips a finished stage; the final
    export is the last stage's EMA."""
    run = str(tmp_path / 'demo')
    # Preempted in stage 1 (SIGTERM from an evaluation hook at its step 1 of 2): stage 2 never starts.
    evaluate_lib.register('sigterm', lambda gen, variables, configs, settings:
                          os.kill(os.getpid(), signal.SIGTERM) or {})
    try:
        preempted = _tiny_pipeline(data_dir)
        preempted.eval_every, preempted.eval_metrics = 1, ('sigterm',)
        stopped = trainer.train_and_evaluate(preempted, run)
    finally:
        evaluate_lib.unregister('sigterm')
    assert int(stopped.step) == 1
    assert not os.path.exists(os.path.join(run, 'anycost')) and not os.path.exists(os.path.join(run, 'generator'))
    state = trainer.train_and_evaluate(_tiny_pipeline(data_dir), run)
    first, second = (json.load(open(os.path.join(run, n, 'config.json'))) for n in ('multires', 'anycost'))
    assert first['name'] == 'demo-multires' and first['channel_mode'] is None and first['teacher'] is None
    assert second['name'] == 'demo-anycost' and second['channel_mode'] == 'uniform' and second['sort_pretrain']
    assert second['tune_from'] == second['teacher'] == os.path.join(run, 'multires')
    assert os.path.exists(os.path.join(run, 'multires', 'samples', '00000002.png'))
    assert os.path.exists(os.path.join(run, 'anycost', 'samples', '00000001.png'))
    _, final = convert.load_model(os.path.join(run, 'generator'))
    assert_trees_equal(final['params'], jax.tree.map(np.asarray, state.ema_params))
    _, last = convert.load_model(os.path.join(run, 'anycost', 'generator'))
    assert_trees_equal(final['params'], last['params'])
    # Stage 2 started from stage 1's EMA generator with sorted channels, not from scratch or unsorted.
    gen, stage1, _, _ = anycost.load_weights(os.path.join(run, 'multires'))
    assert anycost.load_weights(run)[1]['params'].keys() == stage1['params'].keys()  # the root loads
    k_sort = jax.random.split(jax.random.fold_in(jax.random.key(second['seed']), 1), 3)[2]  # initial_variables'
    sorted_g = sorting.sort_channels(gen, stage1, k_sort)['params']

    def farthest(a, b):
        return max(float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in
                   zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    # One Adam step (beta1 = 0) moves every weight by about lr = 0.002; a permutation moves many by far more.
    assert farthest(state.g_params, sorted_g) < 0.005 < farthest(state.g_params, stage1['params'])
    with ckpt_lib.Checkpointer(os.path.join(run, 'anycost', 'checkpoints')) as ck:
        assert ck.all_steps() == [1]
    # Resuming with more stage-2 steps: stage 1 is skipped, stage 2 continues from its step 1.
    caplog.clear()
    caplog.set_level(logging.INFO, logger=trainer.__name__)
    caplog.set_level(logging.INFO, logger=loop.__name__)  # the loop says where it resumed
    more = trainer.train_and_evaluate(_tiny_pipeline(data_dir, anycost_steps=2), run)
    messages = [r.getMessage() for r in caplog.records]
    assert any('stage multires already finished' in m for m in messages), messages
    assert any('resumed from' in m and 'anycost' in m for m in messages), messages
    assert int(more.step) == 2
    with ckpt_lib.Checkpointer(os.path.join(run, 'multires', 'checkpoints')) as ck:
        assert ck.all_steps() == [1, 2]


def test_pipeline_config_errors(data_dir, tmp_path):
    c = load_config_file('demo', '')
    # A field the stages set is theirs: a top-level value would be ignored, so it is an error.
    c.num_steps = 3000
    with pytest.raises(ValueError, match=r'num_steps is set per stage .*--config.stage.multires.num_steps / '
                                         r'--config.stage.anycost.num_steps'):
        trainer.config_lib.check(c)
    with pytest.raises(ValueError, match="'num_step' is not a"):
        trainer.config_lib.pipeline(trainer.config_lib.base_config(), [('a', {'num_step': 1})])
    bad = _tiny_pipeline(data_dir)
    bad.stage.multires.tune_from = trainer.config_lib.PREVIOUS
    with pytest.raises(ValueError, match='first stage .*no previous stage'):
        trainer.train_and_evaluate(bad, str(tmp_path / 'x'))
    bad = _tiny_pipeline(data_dir)
    bad.stage.anycost.teacher = None
    with pytest.raises(ValueError, match=r"needs a teacher.*in stage 'anycost'"):
        trainer.train_and_evaluate(bad, str(tmp_path / 'y'))
    assert not os.path.exists(tmp_path / 'y')


def test_demo_has_its_own_network_for_every_width_at_every_trained_resolution():
    """The demo shows what Anycost is for: at each resolution it trains, each of the four channel
    ratios is another network (with 48 channels in every layer, 1 / 0.75 / 0.5x were one network
    at 8 px, as the original's clamp-after-scaling width rule gives)."""
    from anycost_jax import elastic
    c = load_config_file('demo', '')
    full = elastic.full_channels(c.resolution, c.model.channel_multiplier, c.model.channel_max)
    for res in [c.resolution >> i for i in range(c.n_res)]:
        n = elastic.num_elastic_layers(res)
        nets = {tuple(elastic.uniform_channels(c.resolution, r, full, c.model.channel_max)[:n]) for r in elastic.RATIOS}
        assert len(nets) == len(elastic.RATIOS), (res, nets)
