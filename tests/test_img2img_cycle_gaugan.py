"""The CycleGAN and GauGAN iterations against gan-compression's CycleGANModel / SPADEModel
``optimize_parameters`` (two iterations from the same weights and batches, and every gradient of the
first: tests/fixtures/make_img2img_train_fixture.py), and their data parallelism."""
import functools
import os

import jax
import numpy as np
import optax
import pytest

from anycost_jax import convert, sharding
from anycost_jax.convert import img2img as img2img_convert
from anycost_jax.convert import table as table_lib
from anycost_jax.models.img2img import MultiscaleDiscriminator, NLayerDiscriminator, ResnetGenerator
from anycost_jax.models.img2img import SPADEGenerator, instance_edges, semantic_input
from anycost_jax.sharding import AXIS
from anycost_jax.train import img2img_steps as steps_lib
from anycost_jax.train.loop import check_replicas_agree
from tests.test_img2img_losses import vgg  # noqa: F401  (a fixture: VGG19 with the fixture's weights)

FIX = os.path.join(os.path.dirname(__file__), 'fixtures')
LR = 2e-4  # the fixture's
GAU_CLASSES = 5


@pytest.fixture(scope='module')
def expected():
    return dict(np.load(os.path.join(FIX, 'img2img_train_expected.npz')))


def _nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _sd(module, variables):
    table = img2img_convert._table_of(module)
    return table_lib.to_state_dict(jax.device_get(variables), table), table


def _check_after(expected, tag, nets, lr, stats_atol=1e-6, update_rtol=1e-2):
    """``nets``: {fixture name: (module, variables before, variables after)}. Parameters: the two
    updates (two Adam steps of about ``lr`` each) agree to ``update_rtol`` of the largest; statistics
    to 1e-4 relative (``stats_atol`` absolute).
    A parameter the outputs do not depend on (a conv bias before a batch norm) has a gradient of
    rounding size (below 1e-6 of the network's largest) in both programs, which Adam turns into
    steps of about ``lr`` of either sign: for those only the size of the update is compared.
    Adam divides each entry by its own gradient's size, so an entry whose gradient is small next
    to its tensor's largest carries the gradients' rounding (1e-4 of the largest, see
    :func:`_check_gradients`) into its update undivided: it depends on the CPU's kernels (this
    check failed at 1.3% on one machine and passed on another). Updates are compared on the
    entries whose first gradient is at least 1e-2 of their tensor's largest; every entry's step
    stays within ``2.5 lr``."""
    for name, (module, before, after) in nets.items():
        start, table = _sd(module, before)
        end, _ = _sd(module, after)
        grad0 = {tk: np.abs(expected[f'{tag}_grad0_{name}.{tk}']) for tk, path, _ in table if path[0] == 'params'}
        scale = max(g.max() for g in grad0.values())
        for tk, path, _ in table:
            theirs = expected[f'{tag}_after_{name}.{tk}']
            if path[0] != 'params':
                np.testing.assert_allclose(end[tk], theirs, rtol=1e-4, atol=stats_atol, err_msg=(name, tk))
                continue
            d_theirs, d_ours = theirs - start[tk], end[tk] - start[tk]
            assert np.abs(d_ours).max() <= 2.5 * lr and np.abs(d_theirs).max() <= 2.5 * lr, (name, tk)
            if grad0[tk].max() < 1e-6 * scale:
                continue
            conditioned = grad0[tk] >= 1e-2 * grad0[tk].max()
            diff = np.abs(d_ours - d_theirs)[conditioned]
            assert diff.max() <= update_rtol * np.abs(d_theirs).max(), (name, tk)


def _check_gradients(expected, tag, nets):
    """``nets``: {fixture name: (module, variables before, after one SGD step of rate 1)}: the step
    is minus the gradient. Each tensor within 1e-4 of the network's largest gradient (the biases
    before a batch norm have gradients of rounding size in both programs)."""
    for name, (module, before, after) in nets.items():
        start, table = _sd(module, before)
        end, _ = _sd(module, after)
        keys = [tk for tk, path, _ in table if path[0] == 'params']
        scale = max(np.abs(expected[f'{tag}_grad0_{name}.{tk}']).max() for tk in keys)
        for tk in keys:
            theirs, ours = expected[f'{tag}_grad0_{name}.{tk}'], start[tk] - end[tk]
            assert np.abs(ours - theirs).max() <= 1e-4 * scale, (name, tk, np.abs(ours - theirs).max(), scale)


def _run(steps, state, batches):
    program, metrics = steps.program(), []
    for batch in batches:
        state, m = program(state, steps.shard_batch(batch))
        metrics.append(jax.device_get(m))
    assert steps.traces == 1
    return state, metrics


def _variables(state, net, side=None):
    params, stats = getattr(state, f'{net}_params'), getattr(state, f'{net}_stats')
    if side is not None:
        params, stats = params[side], stats[side]
    return {'params': params, **stats}


# ------------------------------------------------------------------------------------- CycleGAN


def _cyc_models():
    g, d = {}, {}
    for side in 'AB':
        gen, g[side] = convert.load_img2img_generator(os.path.join(FIX, f'img2img_cyc_G{side}.pth'),
                                                      netG='resnet_9blocks')
        disc, d[side] = convert.load_img2img_discriminator(os.path.join(FIX, f'img2img_cyc_D{side}.pth'))
    return gen, disc, g, d


def _train_cyc(expected, g_tx, d_tx, iterations):
    gen, disc, g_vars, d_vars = _cyc_models()
    steps = steps_lib.CycleGANSteps(sharding.data_mesh(1), gen, disc, steps_lib.CycleGANConfig(pool_size=0), g_tx, d_tx)
    state = steps.replicate(steps_lib.create_state(jax.random.key(0), g_vars, d_vars, g_tx, d_tx,
                                                   pools=steps.init_pools((16, 16, 3))))
    batches = [{k: _nhwc(expected[f'cyc_{k}_{it}']) for k in 'AB'} for it in range(iterations)]
    state, metrics = _run(steps, state, batches)
    nets = {f'{kind}{side}': (module, before[side], _variables(state, kind.lower(), side))
            for kind, module, before in (('G', gen, g_vars), ('D', disc, d_vars)) for side in 'AB'}
    return nets, metrics


@pytest.mark.slow
def test_cyclegan_two_iterations_match_the_original(expected):
    """Both iterations' eight losses, every update (one Adam over both generators, one over both
    discriminators) and every batch-norm statistic (G: six calls, D: three per iteration)."""
    nets, metrics = _train_cyc(expected, steps_lib.adam(LR), steps_lib.adam(LR), 2)
    for it, m in enumerate(metrics):
        assert set(m) == {'D_A', 'G_A', 'G_cycle_A', 'G_idt_A', 'D_B', 'G_B', 'G_cycle_B', 'G_idt_B'}
        for name, value in m.items():
            np.testing.assert_allclose(value, expected[f'cyc_loss_{it}.{name}'], rtol=2e-4, err_msg=(it, name))
    _check_after(expected, 'cyc', nets, LR)


@pytest.mark.slow
def test_cyclegan_gradients_match_the_original(expected):
    nets, _ = _train_cyc(expected, optax.sgd(1.), optax.sgd(1.), 1)
    _check_gradients(expected, 'cyc', nets)


# ------------------------------------------------------------------------------------- GauGAN


def _gau_models(vgg_pair):
    gen, g_vars = convert.load_img2img_generator(os.path.join(FIX, 'img2img_gau_G.pth'), netG='spade',
                                                 crop_size=64, num_upsampling_layers='normal')
    disc, d_vars = convert.load_img2img_discriminator(os.path.join(FIX, 'img2img_gau_D.pth'), 'multi_scale')
    model, variables = vgg_pair
    return gen, g_vars, disc, d_vars, functools.partial(model.apply, variables)


def _gau_batch(expected, it):
    return {'label': expected[f'gau_label_{it}'][:, 0], 'instance': expected[f'gau_instance_{it}'][:, 0],
            'image': _nhwc(expected[f'gau_B_{it}'])}


def _train_gau(expected, vgg_pair, g_tx, d_tx, iterations):
    gen, g_vars, disc, d_vars, vgg_apply = _gau_models(vgg_pair)
    steps = steps_lib.GauGANSteps(sharding.data_mesh(1), gen, disc, steps_lib.GauGANConfig(), g_tx, d_tx, vgg=vgg_apply,
                                  n_classes=GAU_CLASSES, use_instance=True)
    state = steps.replicate(steps_lib.create_state(jax.random.key(0), g_vars, d_vars, g_tx, d_tx))
    state, metrics = _run(steps, state, [_gau_batch(expected, it) for it in range(iterations)])
    return {'G': (gen, g_vars, _variables(state, 'g')), 'D': (disc, d_vars, _variables(state, 'd'))}, metrics


def test_semantic_input_is_the_originals_preprocess_input(expected):
    """One-hot classes then instance edges (ids above 255 too), bit for bit."""
    for it in range(2):
        ours = semantic_input(expected[f'gau_label_{it}'][:, 0], GAU_CLASSES, expected[f'gau_instance_{it}'][:, 0])
        np.testing.assert_array_equal(np.asarray(ours), _nhwc(expected[f'gau_seg_{it}']))
    inst = np.zeros((1, 3, 4), np.int32)
    inst[0, 1, 2] = 300
    edges = np.asarray(instance_edges(inst))[0, ..., 0]
    want = np.zeros((3, 4))
    want[1, 1:4] = 1  # the pixel and its left / right neighbours
    want[0, 2] = want[2, 2] = 1  # and above / below
    np.testing.assert_array_equal(edges, want)


@pytest.mark.slow
def test_gaugan_two_iterations_match_the_original(expected, vgg):
    """TTUR Adam (G lr / 2, D 2 lr, betas (0, 0.9)); the losses of both iterations (the D step's fake
    comes from the updated G), every update, G's batch-norm statistics (two train-mode passes per
    iteration) and D's spectral-norm vectors (two power iterations per iteration)."""
    nets, metrics = _train_gau(expected, vgg, *steps_lib.ttur(LR), 2)
    for it, m in enumerate(metrics):
        assert set(m) == {'G_gan', 'G_feat', 'G_vgg', 'D_real', 'D_fake'}
        for name, value in m.items():
            np.testing.assert_allclose(value, expected[f'gau_loss_{it}.{name}'], rtol=2e-4, err_msg=(it, name))
    # D's rate bounds both (G's is LR / 2). The biases before G's batch norms take steps of random sign
    # (see _check_after), which move the batch means that the running ones follow (momentum 0.1) by
    # about 1e-4 over the four passes: 5e-4 absolute still tells a missing or reordered pass (a change
    # of about 0.1 times the statistics, 1e-2 here). The second iteration's gradients follow those
    # moved means a little: its updates agree to 2% of the largest, not 1%.
    _check_after(expected, 'gau', nets, 2 * LR, stats_atol=5e-4, update_rtol=2e-2)


@pytest.mark.slow
def test_gaugan_gradients_match_the_original(expected, vgg):
    """G's gradients (SGD for G); then D's, whose fake comes from G after the original's TTUR Adam step."""
    g_tx, d_tx = steps_lib.ttur(LR)
    nets, _ = _train_gau(expected, vgg, optax.sgd(1.), d_tx, 1)
    _check_gradients(expected, 'gau', {'G': nets['G']})
    nets, _ = _train_gau(expected, vgg, g_tx, optax.sgd(1.), 1)
    _check_gradients(expected, 'gau', {'D': nets['D']})


# ------------------------------------------------------------------------------------- data parallelism


def _one_vs_two_devices(make_steps, init, batches):
    """One device on the whole batches, then two on halves: the same losses, and parameters equal to
    1e-4 of the largest update (a small rate: these tiny networks amplify rounding differences of the
    gradients' sum order from step to step at larger ones); the two replicas identical."""
    results = []
    for devices in (1, 2):
        steps = make_steps(sharding.data_mesh(devices))
        state = steps.replicate(init(steps))
        start = sharding.local_copy((state.g_params, state.d_params))
        state, metrics = _run(steps, state, batches)
        assert 'identical on all' in check_replicas_agree((state.g_params, state.d_params))
        results.append((sharding.local_copy((state.g_params, state.d_params)), metrics))
    (p1, m1), (p2, m2) = results
    for a, b in zip(m1, m2):
        for k in a:
            # absolute too: a hinge G loss is a small difference of large terms
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5, err_msg=k)
    scale = max(np.abs(x1 - x0).max() for x0, x1 in zip(jax.tree.leaves(start), jax.tree.leaves(p1)))
    for x1, x2 in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        assert np.abs(x2 - x1).max() <= 1e-4 * scale


@pytest.mark.slow
def test_cyclegan_two_devices_train_as_one():
    """Instance norms (nothing couples the samples) and a pool of 3 that the first batch of 4 fills
    and that answers from its images after: the pool is the global batch's, so two devices query it
    as one does. SGD: Adam's first steps are about lr * sign(gradient) (see
    test_img2img_train.test_two_devices_train_as_one)."""
    gen, disc = ResnetGenerator(ngf=2, n_blocks=2), NLayerDiscriminator(3, 4, 2, 'instance')
    rng = np.random.default_rng(0)
    batches = [{k: rng.uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32) for k in 'AB'} for _ in range(2)]
    g_vars = {s: gen.init(jax.random.key(i), batches[0]['A']) for i, s in enumerate('AB')}
    d_vars = {s: disc.init(jax.random.key(2 + i), batches[0]['A']) for i, s in enumerate('AB')}

    def make(mesh):
        return steps_lib.CycleGANSteps(mesh, gen, disc, steps_lib.CycleGANConfig(pool_size=3),
                                       optax.sgd(0.01), optax.sgd(0.01))
    _one_vs_two_devices(make, lambda s: steps_lib.create_state(jax.random.key(0), g_vars, d_vars, s.g_tx, s.d_tx,
                                                               pools=s.init_pools((16, 16, 3))), batches)


@pytest.mark.slow
def test_gaugan_two_devices_train_as_one():
    """The generator's batch norms synchronized over ``data`` (``axis_name``): two devices compute the
    statistics of the whole batch, as the original's synchronized batch norm does across GPUs. (64 px:
    at 32 the latent grid is 1x1, batch norms see 4 values and amplify rounding in their backward pass
    to gradients of 1e-2 for parameters the output does not depend on.)"""
    gen = SPADEGenerator(label_nc=4, ngf=2, crop_size=64, num_upsampling_layers='normal', axis_name=AXIS)
    disc = MultiscaleDiscriminator(input_nc=7, ndf=4, n_layers=2)
    rng = np.random.default_rng(0)
    batches = [{'label': rng.integers(0, 4, (4, 64, 64)).astype(np.int32),
                'image': rng.uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32)} for _ in range(2)]
    g_vars = gen.clone(axis_name=None).init(jax.random.key(1), semantic_input(batches[0]['label'], 4))
    d_vars = disc.init(jax.random.key(2), np.zeros((1, 64, 64, 7), np.float32))

    def make(mesh):
        return steps_lib.GauGANSteps(mesh, gen, disc, steps_lib.GauGANConfig(lambda_vgg=0.), optax.sgd(0.01),
                                     optax.sgd(0.01), n_classes=4)
    _one_vs_two_devices(make, lambda s: steps_lib.create_state(jax.random.key(0), g_vars, d_vars, s.g_tx, s.d_tx),
                        batches)


def test_step_config_errors():
    with pytest.raises(ValueError, match="gan_mode='wgan'"):
        steps_lib.CycleGANConfig(gan_mode='wgan')
    with pytest.raises(ValueError, match='pool_size=-1'):
        steps_lib.CycleGANConfig(pool_size=-1)
    with pytest.raises(ValueError, match='lambda_vgg=10.0 needs VGG19 features'):
        steps_lib.GauGANSteps(None, None, None, steps_lib.GauGANConfig(), None, None, n_classes=3)
    g, d = steps_lib.ttur(1e-3)
    params = {'w': np.ones(2, np.float32)}
    grads = {'w': np.ones(2, np.float32)}
    # TTUR: G at lr / 2, D at 2 lr (Adam's first step is lr * sign(gradient))
    for tx, lr in ((g, 5e-4), (d, 2e-3)):
        updates, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(updates['w'], -lr, rtol=1e-5)
