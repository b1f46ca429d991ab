"""GAN Compression's distillation of a fixed student (``ResnetDistiller.optimize_parameters``, paired
and with pseudo-pairs) against the original: two iterations from the same weights and batches, and
every gradient of the first (tests/fixtures/make_img2img_train_fixture.py)."""
import os

import jax
import numpy as np
import optax
import pytest

from anycost_jax import convert, sharding
from anycost_jax.convert.torch_io import load_torch_file
from anycost_jax.losses import distill_img2img as distill
from anycost_jax.models.img2img import MobileResnetGenerator
from anycost_jax.train import img2img_steps as steps_lib
from tests.test_img2img_cycle_gaugan import LR, _check_after, _check_gradients, _nhwc, _run, expected  # noqa: F401

FIX = os.path.join(os.path.dirname(__file__), 'fixtures')


def _adapters_from_fixture(tag):
    """The fixture's four 1x1 adapters: torch ``weight`` [out, in, 1, 1] -> our kernel [1, 1, in, out]."""
    params = {}
    for i in range(4):
        sd = load_torch_file(os.path.join(FIX, f'img2img_{tag}_A{i}.pth'))
        params[f'adapter{i}'] = {'kernel': np.asarray(sd['weight']).transpose(2, 3, 1, 0),
                                 'bias': np.asarray(sd['bias'])}
    return params


def _setup(tag, paired, g_tx, d_tx):
    path = lambda n: os.path.join(FIX, f'img2img_{tag}_{n}.pth')  # noqa: E731
    teacher, t_vars = convert.load_img2img_generator(path('T'), netG='mobile_resnet_9blocks')
    student, s_vars = convert.load_img2img_generator(path('S'), netG='mobile_resnet_9blocks')
    disc, d_vars = convert.load_img2img_discriminator(path('D'))
    adapters = distill.Adapters((4 * student.ngf,) * 4, (4 * teacher.ngf,) * 4)
    cfg = steps_lib.DistillConfig(gan_mode='hinge' if paired else 'lsgan', lambda_recon=10., lambda_distill=0.5,
                                  paired=paired)
    steps = steps_lib.DistillSteps(sharding.data_mesh(1), student, teacher, disc, adapters, cfg, g_tx, d_tx,
                                   distill.resnet_mapping_layers(9))
    g_vars = {'params': {'student': s_vars['params'], 'adapters': _adapters_from_fixture(tag)}}
    state = steps.replicate(steps_lib.create_state(jax.random.key(0), g_vars, d_vars, g_tx, d_tx))
    return steps, state, student, s_vars, disc, d_vars, steps.replicate(t_vars)


def _train(expected, tag, paired, g_tx, d_tx, iterations):
    steps, state, student, s_vars, disc, d_vars, t_vars = _setup(tag, paired, g_tx, d_tx)
    program, metrics = steps.program(), []
    for it in range(iterations):
        batch = {k: _nhwc(expected[f'{tag}_{k}_{it}']) for k in 'AB'}
        state, m = program(state, steps.shard_batch(batch), t_vars)
        metrics.append(jax.device_get(m))
    assert steps.traces == 1
    return state, metrics, student, s_vars, disc, d_vars


def _nets(state, student, s_vars, disc, d_vars):
    return {'S': (student, s_vars, {'params': state.g_params['student'], **state.g_stats}),
            'D': (disc, d_vars, {'params': state.d_params, **state.d_stats})}


def _check_adapters(expected, tag, state, before, kind, lr=None):
    """The adapters' updates (``kind`` 'after': Adam, to 1% of the largest) or gradients ('grad0': SGD 1)."""
    after = jax.device_get(state.g_params['adapters'])
    for i in range(4):
        for ours, theirs_key, start, layout in (
                (after[f'adapter{i}']['kernel'], f'A{i}.weight', before[f'adapter{i}']['kernel'], (3, 2, 0, 1)),
                (after[f'adapter{i}']['bias'], f'A{i}.bias', before[f'adapter{i}']['bias'], None)):
            d_ours = (ours - start) if layout is None else (ours - start).transpose(layout)
            theirs = expected[f'{tag}_{kind}_{theirs_key}']
            if kind == 'after':
                start_t = start if layout is None else start.transpose(layout)
                d_theirs = theirs - start_t
                assert np.abs(d_ours - d_theirs).max() <= 1e-2 * np.abs(d_theirs).max(), (i, theirs_key)
            else:
                np.testing.assert_allclose(-d_ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max(),
                                           err_msg=theirs_key)


@pytest.mark.slow
@pytest.mark.parametrize('tag,paired', [('dst', True), ('dsu', False)])
def test_distillation_two_iterations_match_the_original(expected, tag, paired):
    """The losses (GAN, reconstruction to the target or to the teacher's output, the four layers'
    distillation MSEs), and every update of the student, the adapters and D."""
    state, metrics, student, s_vars, disc, d_vars = _train(expected, tag, paired, steps_lib.adam(LR),
                                                           steps_lib.adam(LR), 2)
    for it, m in enumerate(metrics):
        for name in ('G_gan', 'G_recon', 'G_distill', 'D_fake', 'D_real', *[f'G_distill{i}' for i in range(4)]):
            np.testing.assert_allclose(m[name], expected[f'{tag}_loss_{it}.{name}'], rtol=2e-4, err_msg=(it, name))
    _check_after(expected, tag, _nets(state, student, s_vars, disc, d_vars), LR)
    _check_adapters(expected, tag, state, _adapters_from_fixture(tag), 'after')


@pytest.mark.slow
@pytest.mark.parametrize('tag,paired', [('dst', True), ('dsu', False)])
def test_distillation_gradients_match_the_original(expected, tag, paired):
    """Every gradient of the first iteration (SGD at rate 1: the step is minus the gradient): the
    student's and adapters' through GAN (D before its update), reconstruction and distillation; D's."""
    state, _, student, s_vars, disc, d_vars = _train(expected, tag, paired, optax.sgd(1.), optax.sgd(1.), 1)
    _check_gradients(expected, tag, _nets(state, student, s_vars, disc, d_vars))
    _check_adapters(expected, tag, state, _adapters_from_fixture(tag), 'grad0')


def test_mapping_layers_are_sown_at_the_residual_width():
    gen = MobileResnetGenerator(ngf=2, n_blocks=9)
    x = np.zeros((1, 16, 16, 3), np.float32)
    v = gen.init(jax.random.key(0), x)
    _, new = gen.apply(v, x, mutable=['intermediates'])
    acts = distill.activations(new['intermediates'], distill.resnet_mapping_layers(9))
    assert [a.shape for a in acts] == [(1, 4, 4, 8)] * 4
    with pytest.raises(ValueError, match='n_blocks=6: GAN Compression distills 9-block'):
        distill.resnet_mapping_layers(6)
    with pytest.raises(KeyError, match="not \\['block9_out'\\]"):
        distill.activations(new['intermediates'], ['block9_out'])


@pytest.mark.parametrize('tag,netG', [('prune_mobile', 'mobile_resnet_9blocks'), ('prune_resnet', 'resnet_9blocks')])
def test_l1_pruning_is_the_originals_load_pretrained_weight(tag, netG):
    """ngf 8 -> 4: every kept filter, in the original's order (largest L1 first), the residual stream's
    channels carried through all nine blocks; the pruned network equal to the original's, tensor for tensor."""
    from anycost_jax.convert import img2img as img2img_convert
    from anycost_jax.convert import table as table_lib
    from anycost_jax.models.img2img import resnet
    wide, w_vars = convert.load_img2img_generator(os.path.join(FIX, f'img2img_{tag}_wide.pth'), netG=netG)
    narrow, n_vars = resnet.prune(wide, w_vars, 4)
    assert narrow.ngf == 4 and narrow.mobile == wide.mobile
    ours = table_lib.to_state_dict(jax.device_get(n_vars), img2img_convert._table_of(narrow))
    theirs = load_torch_file(os.path.join(FIX, f'img2img_{tag}_narrow.pth'))
    assert set(ours) == set(theirs)
    for k in theirs:
        np.testing.assert_array_equal(ours[k], np.asarray(theirs[k]), err_msg=k)
    with pytest.raises(ValueError, match='ngf=16 is wider'):
        resnet.prune(wide, w_vars, 16)


# --------------------------------------------------------------------------- the distill stage on the trainer


def _teacher_run(tmp_path, method='pix2pix'):
    from anycost_jax.train import trainer
    from tests.test_img2img_train import _tiny_config
    c = _tiny_config(method, n_blocks=9, ngf=4, netG='mobile_resnet', num_steps=2)
    trainer.train_and_evaluate(c, str(tmp_path / 'teacher'))
    return str(tmp_path / 'teacher')


def _distill_config(teacher, dataset='shapes_img2img/labels2image', **kw):
    from anycost_jax.train import gan_compression
    c = gan_compression.base_config(kw.pop('stage', 'distill'))
    c.dataset, c.teacher, c.student_ngf = dataset, teacher, 2
    c.resolution, c.ndf, c.n_layers_D = 16, 4, 1
    c.batch_size, c.train_examples, c.num_steps = 8, 24, 4
    c.log_every, c.sample_every, c.checkpoint_every, c.n_samples = 2, 4, 2, 2
    if dataset.endswith('recolor'):
        c.gan_mode, c.lambda_recon, c.lambda_distill = 'lsgan', 10., 0.01
    c.update(kw)
    return c


@pytest.mark.slow
@pytest.mark.parametrize('method,dataset', [('pix2pix', 'shapes_img2img/labels2image'),
                                            ('cycle_gan', 'shapes_img2img/recolor')])
def test_distill_stage_from_a_teacher_run_resumes_exactly_and_exports(tmp_path, method, dataset):
    """The student pruned from the teacher run's generator, D from its discriminator; 4 steps straight
    equal 2 + 2 resumed, bit for bit; the exported student is the narrower MobileNet-ResNet."""
    from anycost_jax.train import trainer
    teacher = _teacher_run(tmp_path, method)
    # the straight run also evaluates the student (L1 / PSNR / LPIPS; eval fields do not shape a run)
    straight = trainer.train_and_evaluate(_distill_config(teacher, dataset, eval_every=4, eval_metrics='quality',
                                                          test_examples=8, eval_batch_size=8), str(tmp_path / 'a'))
    trainer.train_and_evaluate(_distill_config(teacher, dataset, num_steps=2), str(tmp_path / 'b'))
    resumed = trainer.train_and_evaluate(_distill_config(teacher, dataset), str(tmp_path / 'b'))
    for x, y in zip(jax.tree.leaves(sharding.local_copy((straight.g_params, straight.d_params))),
                    jax.tree.leaves(sharding.local_copy((resumed.g_params, resumed.d_params)))):
        np.testing.assert_array_equal(x, y)
    gen, g_vars = convert.load_img2img_generator(os.path.join(tmp_path, 'a', 'generator'))
    assert gen.mobile and gen.ngf == 2 and gen.n_blocks == 9
    assert os.listdir(os.path.join(tmp_path, 'a', 'samples'))
    from tests.test_trainer import scalars
    values, _ = scalars(str(tmp_path / 'a'))
    refs = ('real', 'teacher') if method == 'pix2pix' else ('teacher',)  # unpaired: no ground truth
    assert {k for k in values if k.startswith('eval/')} == {f'eval/student/{r}/{m}' for r in refs
                                                           for m in ('l1', 'psnr', 'lpips')}
    with pytest.raises(ValueError, match='student_ngf=8 is wider'):
        trainer.train_and_evaluate(_distill_config(teacher, dataset, student_ngf=8), str(tmp_path / 'c'))


def test_distill_config_errors(tmp_path):
    from anycost_jax.train import trainer
    with pytest.raises(ValueError, match='config.teacher is empty'):
        trainer.train_and_evaluate(_distill_config(''), str(tmp_path / 'a'))
    from anycost_jax.models.img2img import MobileResnetGenerator
    gen = MobileResnetGenerator(ngf=4)
    v = gen.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))
    path = str(tmp_path / 'latest_net_G.pth')
    convert.save_img2img_generator(path, gen, v)
    with pytest.raises(ValueError, match='config.discriminator is empty'):
        trainer.train_and_evaluate(_distill_config(path), str(tmp_path / 'b'))
    with pytest.raises(ValueError, match="method='once_for_all': the gan_compression family has"):
        trainer.train_and_evaluate(_distill_config(path, method='once_for_all'), str(tmp_path / 'c'))


# --------------------------------------------------------------------------- once-for-all supernet


def _train_supernet(expected, g_tx, d_tx, iterations):
    from anycost_jax.elastic import img2img as rules
    import jax.numpy as jnp
    path = lambda n: os.path.join(FIX, f'img2img_sup_{n}.pth')  # noqa: E731
    teacher, t_vars = convert.load_img2img_generator(path('T'), netG='mobile_resnet_9blocks')
    student, s_vars = convert.load_img2img_generator(path('S'), netG='super_mobile_resnet_9blocks')
    disc, d_vars = convert.load_img2img_discriminator(path('D'))
    adapters = distill.Adapters((4 * student.ngf,) * 4, (4 * teacher.ngf,) * 4)
    table = rules.resnet_widths_of_entries(jnp.asarray(expected['sup_configs']))  # the fixture's two configs
    steps = steps_lib.DistillSteps(sharding.data_mesh(1), student, teacher, disc, adapters,
                                   steps_lib.DistillConfig(), g_tx, d_tx, distill.resnet_mapping_layers(9),
                                   sample_widths=lambda key, step: table[step])
    g_vars = {'params': {'student': s_vars['params'], 'adapters': _adapters_from_fixture('sup')}}
    state = steps.replicate(steps_lib.create_state(jax.random.key(0), g_vars, d_vars, g_tx, d_tx))
    program, metrics = steps.program(), []
    for it in range(iterations):
        state, m = program(state, steps.shard_batch({k: _nhwc(expected[f'sup_{k}_{it}']) for k in 'AB'}),
                           steps.replicate(t_vars))
        metrics.append(jax.device_get(m))
    assert steps.traces == 1  # two configurations, one compiled program
    return state, metrics, student, s_vars, disc, d_vars


@pytest.mark.slow
def test_supernet_iterations_match_the_original(expected):
    """ResnetSupernet.optimize_parameters at two configurations (one per iteration): masks in one
    program against the original's sliced super network: losses, updates, first-iteration gradients."""
    state, metrics, student, s_vars, disc, d_vars = _train_supernet(expected, steps_lib.adam(LR), steps_lib.adam(LR), 2)
    for it, m in enumerate(metrics):
        for name in ('G_gan', 'G_recon', 'G_distill', 'D_fake', 'D_real', *[f'G_distill{i}' for i in range(4)]):
            np.testing.assert_allclose(m[name], expected[f'sup_loss_{it}.{name}'], rtol=2e-4, err_msg=(it, name))
    _check_after(expected, 'sup', _nets(state, student, s_vars, disc, d_vars), LR)
    _check_adapters(expected, 'sup', state, _adapters_from_fixture('sup'), 'after')
    state, *_ = _train_supernet(expected, optax.sgd(1.), optax.sgd(1.), 1)
    _check_gradients(expected, 'sup', _nets(state, student, s_vars, disc, d_vars))
    _check_adapters(expected, 'sup', state, _adapters_from_fixture('sup'), 'grad0')


def test_search_spaces_and_sampling():
    """The original's spaces and its weights; the sampler draws every candidate of every entry, as
    per-layer widths, and with weights favours the candidates the original's weights favour."""
    from anycost_jax.elastic import img2img as rules
    assert rules.largest_config('channels-48') == (48, 48, 48, 48, 48, 48, 48, 48)
    assert rules.smallest_config('channels-48') == (32, 32, 32, 32, 32, 32, 16, 16)
    assert rules.sampling_weights(3, 1.) is None
    assert rules.sampling_weights(3, 2., 'arithmetic') == [2., 3., 4.]
    assert rules.sampling_weights(3, 2., 'geometric') == [1., 2., 4.]
    sample = jax.jit(jax.vmap(rules.resnet_sampler('channels-48')))
    w = np.asarray(sample(jax.random.split(jax.random.key(0), 2000)))
    assert w.shape == (2000, 14)
    assert set(w[:, 0]) == {48, 32} and set(w[:, 2]) == {4 * c for c in (48, 40, 32)}
    assert set(w[:, 12]) == {2 * c for c in (48, 32, 24, 16)}
    np.testing.assert_array_equal(w[:, 3], w[:, 5])  # blocks 0-2 share an entry
    weighted = np.asarray(jax.jit(jax.vmap(rules.resnet_sampler('channels-48', weighted_sample=2.)))(
        jax.random.split(jax.random.key(1), 4000)))
    # entry 0 (48, 32) has weights (1, 2): 32 about twice as often; uniform: about as often
    assert 1.7 < (weighted[:, 0] == 32).mean() / (weighted[:, 0] == 48).mean() < 2.3
    assert 0.85 < (w[:, 0] == 32).mean() / (w[:, 0] == 48).mean() < 1.15
    with pytest.raises(ValueError, match="'channels-99' is not one of"):
        rules.search_space('channels-99')
