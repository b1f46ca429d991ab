"""GAN Compression after the supernet, on the trainer: the search and export steps, fine-tuning a
fixed sub-network, the pipelines of the papers' configs and of the embedded demo, sharded brute
force and the launcher's GAN Compression mode."""
import importlib
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from anycost_jax import convert
from tests.test_img2img_supernet import SPACE, _supernet_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize('module,arg,steps,budget,measure,method', [
    ('horse2zebra', 'compress', ('teacher', 'distill', 'supernet', 'search', 'finetune', 'export'), 3e9, 'fid',
     'brute_force'),
    ('horse2zebra', 'compress_fast', ('teacher', 'supernet', 'search', 'export'), 3e9, 'fid', 'evolution'),
    ('edges2shoes', 'compress', ('teacher', 'distill', 'supernet', 'search', 'finetune', 'export'), 4.9e9, 'fid',
     'brute_force'),
    ('edges2shoes', 'compress_fast', ('teacher', 'supernet', 'search', 'export'), 4.9e9, 'fid', 'evolution'),
    ('cityscapes', 'pix2pix_compress', ('teacher', 'distill', 'supernet', 'search', 'finetune', 'export'), 5.7e9,
     'miou', 'brute_force'),
    ('cityscapes', 'pix2pix_compress_fast', ('teacher', 'supernet', 'search', 'export'), 5.7e9, 'miou', 'evolution'),
])
def test_papers_pipelines(module, arg, steps, budget, measure, method):
    from anycost_jax.train import config_lib
    c = importlib.import_module(f'configs.{module}').get_config(arg)
    config_lib.check(c)
    assert c.pipeline == steps
    stages = dict(config_lib.stage_configs(c))
    assert stages['teacher'].family == 'img2img'
    assert (stages['search'].budget, stages['search'].measure, stages['search'].search_method) == (budget, measure,
                                                                                                   method)
    assert stages['search'].supernet == '@stage:supernet' and stages['export'].supernet == '@stage:supernet'
    sup = stages['supernet']
    assert sup.teacher == '@stage:teacher' and sup.dataset == stages['teacher'].dataset
    if 'fast' in arg:  # from scratch, the 64-wide spaces, no fine-tuning
        assert sup.pretrained == 'scratch' and sup.student_ngf == 64 and '64' in sup.search_space
        assert stages['teacher'].netG == 'resnet' and stages['export'].searched == '@stage:search'
    else:
        assert stages['teacher'].netG == 'mobile_resnet' and sup.pretrained == '@stage:distill'
        assert stages['finetune'].searched == '@stage:search' and stages['finetune'].discriminator == '@stage:supernet'
        assert stages['export'].searched == '@stage:finetune'


def test_gaugan_compression_says_what_it_needs():
    from configs import cityscapes
    with pytest.raises(ValueError, match='needs the SPADE supernet .* not built yet'):
        cityscapes.get_config('gaugan_compress')


def test_pipeline_errors_come_before_any_stage_runs(tmp_path):
    from anycost_jax.train import config_lib, trainer
    from configs import shapes_img2img
    c = shapes_img2img.get_config('compress')
    c.stage.search.measure = 'teacher/fid'
    with pytest.raises(ValueError, match="config.measure='teacher/fid' is not one of .*in stage 'search'"):
        trainer.train_and_evaluate(c, str(tmp_path / 'w'))
    assert not os.path.exists(tmp_path / 'w' / 'teacher')
    c = shapes_img2img.get_config('compress')
    with c.unlocked():
        c.stage.export.searched = '@stage:finetune'
    with pytest.raises(ValueError, match="searched='@stage:finetune' names no earlier stage"):
        config_lib.check(c)


# --------------------------------------------------------------------------- a tiny pipeline, end to end


@pytest.fixture(scope='module')
def pipeline_run(tmp_path_factory):
    """teacher (2 steps) -> supernet (2) -> search (evolution) -> finetune (2) -> export, on 16 px scenes."""
    from anycost_jax import search
    from anycost_jax.models.img2img import MobileResnetGenerator
    from anycost_jax.train import config_lib, trainer
    from anycost_jax.train import gan_compression as gc
    from tests.test_img2img_train import _tiny_config
    ref = config_lib.stage_ref
    teacher = _tiny_config('pix2pix', n_blocks=9, ngf=8, netG='mobile_resnet', num_steps=2)
    teacher.test_examples = 8
    sup = _supernet_config(ref('teacher'), eval_every=0)
    budget = search.ResnetSpace(MobileResnetGenerator(ngf=8), SPACE, 16).uniform(6).macs
    steps = [('teacher', teacher), ('supernet', sup),
             ('search', gc.step_config('search', sup, supernet=ref('supernet'), budget=float(budget), population=4,
                                       iterations=1, num_steps=0)),
             ('finetune', gc.step_config('finetune', sup, teacher=ref('teacher'), searched=ref('search'),
                                         discriminator=ref('supernet'), num_steps=2)),
             ('export', gc.step_config('export', sup, supernet=ref('supernet'), searched=ref('finetune'),
                                       budget=float(budget), summary_examples=8, num_steps=0))]
    config = gc.compression_pipeline('tiny', steps)
    root = tmp_path_factory.mktemp('pipeline')
    trainer.train_and_evaluate(config, str(root))
    return {'root': str(root), 'config': config, 'budget': budget}


@pytest.mark.slow
def test_pipeline_searches_fine_tunes_and_exports(pipeline_run, capsys):
    from anycost_jax.models.img2img import resnet
    from anycost_jax.train import trainer
    root, budget = pipeline_run['root'], pipeline_run['budget']
    done = json.load(open(os.path.join(root, 'search', 'task.json')))
    assert done['macs'] <= budget
    sup, s_vars = convert.load_img2img_generator(os.path.join(root, 'supernet', 'generator'))
    found, f_vars = convert.load_img2img_generator(os.path.join(root, 'search', 'generator'))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    # the exported sub-network is the supernet at the found configuration
    np.testing.assert_allclose(found.apply(f_vars, x), sup.apply(s_vars, x, config=done['config_str']), atol=1e-5)
    assert found.widths == resnet.export(sup, s_vars, done['config_str'])[0].widths
    # fine-tuning trained that sub-network (same widths, new weights); the export is it, at the root too
    tuned, t_vars = convert.load_img2img_generator(os.path.join(root, 'finetune', 'generator'))
    assert tuned.widths == found.widths
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(t_vars['params']),
                                                        jax.tree.leaves(f_vars['params'])))
    for where in ('export', ''):
        out, o_vars = convert.load_img2img_generator(os.path.join(root, where, 'generator'))
        np.testing.assert_allclose(out.apply(o_vars, x), tuned.apply(t_vars, x), atol=1e-6)
    pth, p_vars = convert.load_img2img_generator(os.path.join(root, 'compressed_net_G.pth'),
                                                 netG='sub_mobile_resnet_9blocks')
    np.testing.assert_allclose(pth.apply(p_vars, x), tuned.apply(t_vars, x), atol=1e-5)
    table = open(os.path.join(root, 'summary.md')).read()
    names = [line.split('|')[1].strip() for line in table.splitlines() if line.startswith('| ') and '---' not in line]
    assert names == ['', 'teacher', 'largest', 'fine-tuned', 'uniform 6', 'smallest']
    for measure in ('real/l1', 'real/psnr', 'real/lpips', 'teacher/l1', 'teacher/psnr', 'teacher/lpips'):
        assert measure in table
    # started again: every step is done, nothing runs again
    mtime = os.path.getmtime(os.path.join(root, 'search', 'task.json'))
    trainer.train_and_evaluate(pipeline_run['config'], root)
    assert os.path.getmtime(os.path.join(root, 'search', 'task.json')) == mtime


@pytest.mark.slow
def test_brute_force_shards_merge_and_the_launcher(pipeline_run, tmp_path):
    from anycost_jax import search
    from anycost_jax.train import gan_compression_search as gcs
    workdir = os.path.join(pipeline_run['root'], 'supernet')
    narrow = '8,6|8|8|8,4|8|8|8|8,6'  # 8 configurations
    _, gen, variables, space = gcs.open_supernet(workdir, search_space=narrow)
    budget = space.candidate((8, 8, 8, 8, 8, 8, 8, 6)).macs
    kw = dict(method='brute_force', search_space=narrow, num_shards=2, state_dir=str(tmp_path),
              output=str(tmp_path / 'found'))
    assert gcs.search_supernet(workdir, budget, shard=0, **kw) == (None, None)  # shard 1 has not run
    result, out = gcs.search_supernet(workdir, budget, shard=1, **kw)  # the last shard merges and exports
    config = gcs.workdir_lib.read_config(workdir)
    fitness = gcs.make_fitness('teacher/lpips', gen, variables, config, 'holdout')
    every = [space.candidate(c) for c in space.enumerate()]
    scored = [c.scored(d) for c, d in zip(every, fitness(every)) if c.macs <= budget]
    assert 4 <= len(scored) < 8 and result.best.config == min(scored, key=lambda c: (c.dist, c.macs)).config
    assert result.best.dist == pytest.approx(min(c.dist for c in scored), rel=1e-5)
    sub, s_vars = convert.load_img2img_generator(out)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(sub.apply(s_vars, x), gen.apply(variables, x, config=result.best.config_str),
                               atol=1e-5)
    again = gcs.search_supernet(workdir, budget, merge=True, **{k: v for k, v in kw.items() if k != 'num_shards'},
                                num_shards=2)[0]
    assert again.best == result.best
    # the launcher: export a given configuration; one outside the space and a budget below the smallest fail
    launch = [sys.executable, os.path.join(ROOT, 'launch', 'search.py'), f'--workdir={workdir}']
    proc = subprocess.run(launch + ['--config_str=8_6_8_4_8_8_8_6', f'--output={tmp_path / "given"}'],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    given, g_vars = convert.load_img2img_generator(str(tmp_path / 'given'))
    np.testing.assert_allclose(given.apply(g_vars, x), gen.apply(variables, x, config='8_6_8_4_8_8_8_6'), atol=1e-5)
    proc = subprocess.run(launch + ['--config_str=8_6_8_5_8_8_8_6'], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert 'outside the search space: entry 3 is 5, the space offers [8, 6, 4]' in proc.stderr
    small = search.ResnetSpace(gen, SPACE, 16).cheapest()
    proc = subprocess.run(launch + [f'--budget={small.macs - 1}', '--population=4', '--iterations=1'],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'below the smallest configuration 4_4_4_4_4_4_4_4' in proc.stderr
    proc = subprocess.run(launch + ['--budget=1e9', '--search_space=channels-99'], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "search space 'channels-99' is not one of" in proc.stderr
    proc = subprocess.run(launch + [f'--budget={budget}', '--population=4', '--iterations=1', '--split=test',
                                    f'--output={tmp_path / "evolved"}'], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'generation 1/1' in proc.stdout and 'best within' in proc.stdout
    assert json.load(open(tmp_path / 'evolved.json'))


@pytest.mark.slow
def test_search_killed_midway_resumes_to_the_same_result(pipeline_run, tmp_path):
    """search_supernet's evolution on a registered fitness that dies in its third call, started again."""
    from anycost_jax.train import gan_compression_search as gcs
    workdir = os.path.join(pipeline_run['root'], 'supernet')
    calls = []

    def make(gen, variables, config, split, die_at=None):
        def fitness(candidates):
            if len(calls) == die_at:
                raise KeyboardInterrupt
            calls.append(len(candidates))
            return [float(np.sum(c.config) % 7 + 0.01 * c.macs / 1e4) for c in candidates]
        return fitness
    budget = pipeline_run['budget']
    kw = dict(population=6, iterations=4, mutate_prob=0.5, seed=1)
    gcs.register_fitness('test/straight', make)
    gcs.register_fitness('test/dies', lambda *a: make(*a, die_at=2))
    gcs.register_fitness('test/resumed', make)
    try:
        straight, _ = gcs.search_supernet(workdir, budget, measure='test/straight', state_dir=str(tmp_path / 'a'),
                                          output=str(tmp_path / 'a' / 'out'), **kw)
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            gcs.search_supernet(workdir, budget, measure='test/dies', state_dir=str(tmp_path / 'b'),
                                output=str(tmp_path / 'b' / 'out'), **kw)
        assert not os.path.exists(tmp_path / 'b' / 'out')  # nothing exported
        # the checkpoint is named after the measure: resume it under the name it was written with
        os.rename(tmp_path / 'b' / f'{gcs.search_lib.budget_name(budget)}-test-dies.evolution.pkl',
                  tmp_path / 'b' / f'{gcs.search_lib.budget_name(budget)}-test-resumed.evolution.pkl')
        resumed, _ = gcs.search_supernet(workdir, budget, measure='test/resumed', state_dir=str(tmp_path / 'b'),
                                         output=str(tmp_path / 'b' / 'out'), **kw)
    finally:
        for name in ('test/straight', 'test/dies', 'test/resumed'):
            gcs.FITNESS.pop(name, None)
    assert resumed.best == straight.best
    assert [[c.config for c in g] for g in resumed.history] == [[c.config for c in g] for g in straight.history]
    assert sum(calls) == len(straight.evaluated)  # the killed run's scores were kept, none scored twice


def test_fast_supernet_starts_from_scratch_under_a_full_teacher():
    from anycost_jax.models.img2img import ResnetGenerator
    from anycost_jax.train import gan_compression as gc
    c = gc.base_config('supernet')
    c.update(student_ngf=8, resolution=16, pretrained='scratch', seed=3)
    gen, variables = gc.load_student(c, (ResnetGenerator(ngf=16, n_blocks=6), None))
    assert gen.mobile and gen.ngf == 8 and gen.n_blocks == 6 and gen.widths is None and gen.clamp_input
    again = gc.load_student(c, (ResnetGenerator(ngf=16, n_blocks=6), None))[1]
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)  # from the seed
    c.method, c.searched, c.pretrained = 'finetune', '', ''
    with pytest.raises(ValueError, match='config.method=finetune needs the sub-network'):
        gc.finetune_student(c)
