"""GAN Compression's once-for-all supernet stage on the trainer, the quality measures that need no
downloaded weights, and the search of a trained supernet under a MAC budget with its export."""
import os

import jax
import numpy as np
import pytest

from anycost_jax import convert, sharding
from tests.test_img2img_distill import _distill_config
from tests.test_trainer import scalars

SPACE = '|'.join(['8,6,4'] * 8)  # spelled out: tiny widths, still 6561 configurations, 3 of them uniform


# --------------------------------------------------------------------------- quality measures


def test_quality_measures_against_a_hand_computation():
    from anycost_jax.eval import img2img_quality as q
    from anycost_jax.models import lpips as lpips_lib
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    real = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    out = x * 0.5
    out[1] = real[1] + 0.1  # image 1: a constant offset of 0.1 (where real + 0.1 stays within [-1, 1])
    clipped = np.clip(out, -1, 1)
    # by hand: image 0 the mean |out - real|; image 1 mean |clip(real + .1) - real|
    l1 = [np.abs(clipped[i] - real[i]).mean() for i in range(2)]
    mse = [np.square(clipped[i] - real[i]).mean() for i in range(2)]
    psnr = [10 * np.log10(4 / m) for m in mse]
    scores = q.quality(lambda a: a * 0 + out, [(x, {'real': real, 'teacher': clipped})])
    assert scores['real/l1'] == pytest.approx(np.mean(l1), rel=1e-5)
    assert scores['real/psnr'] == pytest.approx(np.mean(psnr), rel=1e-5)
    assert scores['real/lpips'] == pytest.approx(float(np.mean(lpips_lib.lpips(clipped, real))), rel=1e-5)
    assert scores['teacher/l1'] == 0 and scores['teacher/psnr'] == q.PSNR_CAP
    assert scores['teacher/lpips'] == pytest.approx(0, abs=1e-6)
    # two batches: means over every image, not over batches
    two = q.quality(lambda a: a, [(x[:1], {'real': real[:1]}), (x, {'real': real})], use_lpips=False)
    per = q.per_image(x, real, use_lpips=False)
    assert two['real/l1'] == pytest.approx((2 * per['l1'][0] + per['l1'][1]) / 3, rel=1e-6)
    assert 'real/lpips' not in two
    assert q.distance({'real/psnr': 30.}, 'real/psnr') == -30. and q.distance({'real/l1': .2}, 'real/l1') == .2
    with pytest.raises(ValueError, match="measure 'teacher/fid' is not one of"):
        q.check_measure('teacher/fid', ['real', 'teacher'])


# --------------------------------------------------------------------------- the supernet stage


@pytest.fixture(scope='module')
def teacher_run(tmp_path_factory):
    """A MobileNet-ResNet teacher of ngf 8, trained 2 steps on 16 px labels -> scenes."""
    from anycost_jax.train import trainer
    from tests.test_img2img_train import _tiny_config
    path = str(tmp_path_factory.mktemp('gc') / 'teacher')
    trainer.train_and_evaluate(_tiny_config('pix2pix', n_blocks=9, ngf=8, netG='mobile_resnet', num_steps=2), path)
    return path


def _supernet_config(teacher, **kw):
    c = _distill_config(teacher, stage='supernet', student_ngf=8, search_space=SPACE, eval_metrics='quality',
                        eval_every=4, eval_batch_size=8, test_examples=8, holdout_examples=8)
    c.update(kw)
    return c


@pytest.fixture(scope='module')
def supernet_run(teacher_run, tmp_path_factory):
    """4 steps straight (every device drawing its own configuration each step, the draws recorded)
    and the same run stopped after 2 steps and resumed."""
    from anycost_jax.elastic import img2img as rules
    from anycost_jax.train import img2img_steps as steps_lib
    from anycost_jax.train import trainer
    root = tmp_path_factory.mktemp('supernet')
    drawn, made = [], []
    real_sampler, real_init = rules.resnet_sampler, steps_lib.DistillSteps.__init__

    def sampler(*a, **kw):
        sample = real_sampler(*a, **kw)

        def recorded(key, step):
            w = sample(key, step)
            jax.debug.callback(lambda w: drawn.append(tuple(np.asarray(w))), w)
            return w
        return recorded

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        made.append(self)

    mp = pytest.MonkeyPatch()
    mp.setattr(rules, 'resnet_sampler', sampler)
    mp.setattr(steps_lib.DistillSteps, '__init__', init)
    try:
        # the teacher run's workdir also as pretrained (as wide as the student: taken as it is) and D
        kw = dict(pretrained=teacher_run, discriminator=teacher_run)
        straight = trainer.train_and_evaluate(_supernet_config(teacher_run, **kw), str(root / 'a'))
        steps = made[-1]
        trainer.train_and_evaluate(_supernet_config(teacher_run, num_steps=2, **kw), str(root / 'b'))
        resumed = trainer.train_and_evaluate(_supernet_config(teacher_run, **kw), str(root / 'b'))
    finally:
        mp.undo()
    return {'root': root, 'straight': straight, 'resumed': resumed, 'traces': steps.traces, 'drawn': drawn}


@pytest.mark.slow
def test_supernet_stage_draws_many_configs_in_one_program_and_resumes_exactly(supernet_run):
    run = supernet_run
    assert run['traces'] == 1  # 4 steps x 8 devices of sampled configurations, one compiled step
    first = run['drawn'][:32]
    assert len(first) == 32 and len(set(first)) > 8  # each device its own configuration, each step
    for x, y in zip(jax.tree.leaves(sharding.local_copy((run['straight'].g_params, run['straight'].d_params))),
                    jax.tree.leaves(sharding.local_copy((run['resumed'].g_params, run['resumed'].d_params)))):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_supernet_stage_exports_evaluates_and_samples_both_ends(supernet_run):
    from PIL import Image
    from anycost_jax.train import gan_compression
    workdir = os.path.join(supernet_run['root'], 'a')
    gen, g_vars = convert.load_img2img_generator(os.path.join(workdir, 'generator'))
    assert gen.mobile and gen.ngf == 8 and gen.widths is None and gen.clamp_input
    x = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    state = supernet_run['straight']
    for config in ('8_8_8_8_8_8_8_8', '6_6_4_4_6_8_4_4'):  # the reloaded super generator at any configuration
        np.testing.assert_allclose(gen.apply(g_vars, x, config=config),
                                   gen.apply(gan_compression.student_variables(state), x, config=config), atol=1e-6)
    values, _ = scalars(workdir)
    for end in ('largest', 'smallest'):
        for measure in ('real/l1', 'real/psnr', 'real/lpips', 'teacher/l1', 'teacher/psnr', 'teacher/lpips'):
            (step, v), = values[f'eval/{end}/{measure}']
            assert step == 4 and np.isfinite(v), (end, measure)
    assert values['eval/largest/teacher/l1'] != values['eval/smallest/teacher/l1']
    grid = np.asarray(Image.open(os.path.join(workdir, 'samples', '00000004.png')))
    assert grid.shape == (2 * 16, 5 * 16, 3)  # input | largest | smallest | teacher | target, 2 rows
    assert not np.array_equal(grid[:, 16:32], grid[:, 32:48])


@pytest.mark.parametrize('name,ngf,space,epochs', [('horse2zebra', 32, 'channels-32', 400),
                                                   ('edges2shoes', 48, 'channels-48', 40)])
def test_real_data_supernet_configs_are_the_originals_train_supernet(name, ngf, space, epochs):
    import importlib
    from anycost_jax.train import gan_compression
    c = importlib.import_module(f'configs.{name}').get_config('supernet')
    assert (c.family, c.method, c.student_ngf, c.search_space) == ('gan_compression', 'supernet', ngf, space)
    assert c.n_epochs + c.n_epochs_decay == epochs
    assert gan_compression.search_space(c) == gan_compression.rules.RESNET_SEARCH_SPACES[space]
    assert 'search_space' not in importlib.import_module(f'configs.{name}').get_config('distill')


def test_supernet_config_errors(tmp_path):
    from anycost_jax.models.img2img import MobileResnetGenerator, UnetGenerator
    from anycost_jax import modeldir
    from anycost_jax.train import trainer
    gen = MobileResnetGenerator(ngf=8)
    v = gen.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))
    path = str(tmp_path / 'latest_net_G.pth')
    convert.save_img2img_generator(path, gen, v)

    def run(teacher=path, **kw):
        c = _supernet_config(teacher, discriminator=path, **kw)
        trainer.train_and_evaluate(c, str(tmp_path / 'w'))
    with pytest.raises(ValueError, match="config.search_space: search space 'channels-99' is not one of"):
        run(search_space='channels-99')
    with pytest.raises(ValueError, match="search_space='channels-32' reaches 32 channels, wider than "
                                         "config.student_ngf=8"):
        run(search_space='channels-32')
    with pytest.raises(ValueError, match="weight strategy 'harmonic' is not one of"):
        run(weighted_sample=2., weight_strategy='harmonic')
    unet = UnetGenerator(input_nc=3, output_nc=3, num_downs=5, ngf=2)
    modeldir.save(str(tmp_path / 'unet'), unet, unet.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32)))
    with pytest.raises(ValueError, match="is a UnetGenerator; the ResNet distiller takes a full ResNet or "
                                         "MobileNet-ResNet generator"):
        run(teacher=str(tmp_path / 'unet'))


# --------------------------------------------------------------------------- search and export


def test_resnet_space_draws_within_its_candidates():
    from anycost_jax import macs, search
    from anycost_jax.models.img2img import MobileResnetGenerator
    gen = MobileResnetGenerator(ngf=8, clamp_input=True)
    space = search.ResnetSpace(gen, SPACE, 16)
    rng = np.random.default_rng(0)
    drawn = [space.random(rng) for _ in range(50)]
    assert all(c in e for d in drawn for c, e in zip(d.config, space.choices))
    assert len({d.key for d in drawn}) > 25
    parent, other = space.candidate((8,) * 8), space.cheapest()
    assert space.mutate(parent, rng, 0.).config == parent.config
    assert sum(a != b for a, b in zip(space.mutate(parent, rng, 1.).config, parent.config)) >= 3
    child = space.crossover(parent, other, rng)
    assert all(c in (a, b) for c, a, b in zip(child.config, parent.config, other.config))
    assert space.uniform_widths() == [4, 6, 8] and space.cheapest().config == (4,) * 8
    x = jax.ShapeDtypeStruct((1, 16, 16, 3), np.float32)
    assert other.macs == macs.count_macs(gen, x, config='4_4_4_4_4_4_4_4') < parent.macs
    with pytest.raises(ValueError, match='does not fit the supernet \\(ngf 8\\)'):
        search.ResnetSpace(gen, 'channels-32', 16)


@pytest.mark.slow
def test_search_finds_a_sub_network_within_budget_and_exports_it(supernet_run, tmp_path):
    from anycost_jax import search
    from anycost_jax.eval import img2img_quality as quality_lib
    from anycost_jax.models.img2img import resnet
    from anycost_jax.train import gan_compression
    from anycost_jax import workdir as workdir_lib
    workdir = os.path.join(supernet_run['root'], 'a')
    gen, g_vars = convert.load_img2img_generator(os.path.join(workdir, 'generator'))
    space = search.ResnetSpace(gen, SPACE, 16)
    uniform6 = space.uniform(6)
    budget = uniform6.macs
    out = str(tmp_path / 'found')
    result, path = gan_compression.search_supernet(workdir, budget, output=out, population=8, iterations=2)
    assert path == out and result.best.macs <= budget
    # the found config is no worse than the uniform one of similar cost, measured afresh on the held-out rows
    config = workdir_lib.read_config(workdir)
    batches = gan_compression.search_batches(config, 'holdout', gan_compression.load_teacher(config))
    assert len(batches) == 1 and len(batches[0][0]) == 8
    best, base = quality_lib.config_fitness(gen, g_vars, batches, 'teacher/lpips')([result.best, uniform6])
    assert best == pytest.approx(result.best.dist, rel=1e-5) and best <= base + 1e-6
    x = np.random.default_rng(1).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    want = np.asarray(gen.apply(g_vars, x, config=result.best.config_str))
    sub, s_vars = convert.load_img2img_generator(out)
    assert sub.widths == resnet.export(gen, g_vars, result.best.config_str)[0].widths
    np.testing.assert_allclose(sub.apply(s_vars, x), want, atol=1e-5)
    pth, p_vars = convert.load_img2img_generator(out + '.pth', netG='sub_mobile_resnet_9blocks')
    np.testing.assert_allclose(pth.apply(p_vars, x), want, atol=1e-5)
    assert os.path.isfile(out + '.json')
    small = space.cheapest()
    with pytest.raises(ValueError, match=f'below the smallest configuration 4_4_4_4_4_4_4_4 \\({small.macs:,} MACs\\)'):
        gan_compression.search_supernet(workdir, small.macs - 1, output=str(tmp_path / 'none'))
