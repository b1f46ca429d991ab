"""The pix2pix iteration against gan-compression's Pix2PixModel.optimize_parameters (two iterations from
the same weights and batches: tests/fixtures/make_img2img_fixture.py), its data parallelism, and the
family's three methods on the shared trainer (procedural data and each real-data config's layout)."""
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from anycost_jax import convert, sharding
from anycost_jax.convert import img2img as img2img_convert
from anycost_jax.convert import table as table_lib
from anycost_jax.train import img2img_steps as steps_lib

FIX = os.path.join(os.path.dirname(__file__), 'fixtures')
LR = 2e-4  # the fixture's


@pytest.fixture(scope='module')
def expected():
    return dict(np.load(os.path.join(FIX, 'img2img_expected.npz')))


def _models():
    gen, g_vars = convert.load_img2img_generator(os.path.join(FIX, 'img2img_p2p_G.pth'), netG='resnet_9blocks')
    disc, d_vars = convert.load_img2img_discriminator(os.path.join(FIX, 'img2img_p2p_D.pth'))
    return gen, g_vars, disc, d_vars


def _batch(expected, it):
    return {k: np.ascontiguousarray(expected[f'p2p_{k}_{it}'].transpose(0, 2, 3, 1)) for k in ('A', 'B')}


def _train(expected, devices: int, iterations: int = 2):
    gen, g_vars, disc, d_vars = _models()
    mesh = sharding.data_mesh(devices)
    steps = steps_lib.Pix2PixSteps(mesh, gen, disc, steps_lib.Pix2PixConfig(gan_mode='hinge'),
                                   steps_lib.adam(LR), steps_lib.adam(LR))
    state = steps.replicate(steps_lib.create_state(jax.random.key(0), g_vars, d_vars, steps.g_tx, steps.d_tx))
    program, metrics = steps.program(), []
    for it in range(iterations):
        state, m = program(state, steps.shard_batch(_batch(expected, it)))
        metrics.append(jax.device_get(m))
    return gen, disc, state, metrics, steps


@pytest.mark.slow
def test_two_iterations_match_the_original(expected):
    """Losses of both iterations (the second depends on the first's updates), every parameter's update,
    and the batch-norm statistics (G: one update per iteration; D: three, every D call is in train mode)."""
    gen, disc, state, metrics, steps = _train(expected, devices=1)
    for it, m in enumerate(metrics):
        for name in ('D_fake', 'D_real', 'G_gan', 'G_recon'):
            np.testing.assert_allclose(m[name], expected[f'p2p_loss_{it}.{name}'], rtol=2e-4, err_msg=(it, name))
    _, g0, _, d0 = _models()
    for module, before, params, stats, tag in ((gen, g0, state.g_params, state.g_stats, 'G'),
                                               (disc, d0, state.d_params, state.d_stats, 'D')):
        table = img2img_convert._table_of(module)
        after = table_lib.to_state_dict(sharding.local_copy({'params': params, **stats}), table)
        start = table_lib.to_state_dict(before, table)
        for tk, path, _ in table:
            theirs, ours = expected[f'p2p_after_{tag}.{tk}'], after[tk]
            if path[0] == 'params':  # compare the updates: two Adam steps of about lr each
                d_theirs, d_ours = theirs - start[tk], ours - start[tk]
                assert np.abs(d_ours - d_theirs).max() <= 1e-2 * np.abs(d_theirs).max(), (tag, tk)
            else:
                np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6, err_msg=(tag, tk))
    assert steps.traces == 1


@pytest.mark.slow
def test_two_devices_train_as_one():
    """Per-device halves of the batch with gradients pmean-ed: with instance norms nothing couples the
    samples, so two devices give one device's result on the whole batch, and their replicas agree.
    (SGD here: Adam's first steps are about lr * sign(gradient), and the gradients of the conv biases
    before instance norms are rounding noise of either sign.)"""
    from anycost_jax.models.img2img import MobileResnetGenerator, NLayerDiscriminator
    from anycost_jax.train.loop import check_replicas_agree
    gen, disc = MobileResnetGenerator(ngf=2, n_blocks=3), NLayerDiscriminator(6, 4, 2, 'instance')
    rng = np.random.default_rng(0)
    batches = [{k: rng.uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32) for k in 'AB'} for _ in range(2)]
    g_vars = gen.init(jax.random.key(1), batches[0]['A'])
    d_vars = disc.init(jax.random.key(2), np.zeros((1, 16, 16, 6), np.float32))
    results = []
    for devices in (1, 2):
        steps = steps_lib.Pix2PixSteps(sharding.data_mesh(devices), gen, disc, steps_lib.Pix2PixConfig(),
                                       optax.sgd(0.1), optax.sgd(0.1))
        state = steps.replicate(steps_lib.create_state(jax.random.key(0), g_vars, d_vars, steps.g_tx, steps.d_tx))
        program, losses = steps.program(), []
        for batch in batches:
            state, m = program(state, steps.shard_batch(batch))
            losses.append(jax.device_get(m))
        assert 'identical on all' in check_replicas_agree((state.g_params, state.d_params))
        results.append((sharding.local_copy((state.g_params, state.d_params)), losses))
    (p1, l1), (p2, l2) = results
    for a, b in zip(l1, l2):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=k)
    start = jax.tree.leaves((g_vars['params'], d_vars['params']))
    scale = max(np.abs(x1 - x0).max() for x0, x1 in zip(start, jax.tree.leaves(p1)))
    for x0, x1, x2 in zip(start, jax.tree.leaves(p1), jax.tree.leaves(p2)):
        assert np.abs(x2 - x1).max() <= 1e-4 * scale


def test_config_errors():
    with pytest.raises(ValueError, match="gan_mode='wgan'"):
        steps_lib.Pix2PixConfig(gan_mode='wgan')
    with pytest.raises(ValueError, match="recon='l3'"):
        steps_lib.Pix2PixConfig(recon='l3')


def test_linear_decay_is_the_originals():
    s = steps_lib.linear_decay(2e-4, steps_per_epoch=10, n_epochs=2, n_epochs_decay=3)
    # epochs 0, 1: lr; then lr * (1 - k / 4) for the k-th decay epoch
    got = [float(s(jnp.asarray(e * 10))) for e in range(5)]
    np.testing.assert_allclose(got, [2e-4, 2e-4, 1.5e-4, 1e-4, 0.5e-4], rtol=1e-6)


# --------------------------------------------------------------------------- the family on the shared trainer


def _tiny_config(method='pix2pix', **kw):
    from anycost_jax.train import img2img
    c = img2img.base_config(method)
    c.resolution, c.ngf, c.n_blocks, c.ndf, c.n_layers_D = 16, 4, 2, 4, 1
    c.netG = {'pix2pix': 'mobile_resnet', 'cycle_gan': 'resnet', 'gaugan': 'spade'}[method]
    if method == 'gaugan':
        c.dataset, c.test_split, c.preprocess, c.aspect_ratio = 'shapes_img2img/labels2image', 'test', 'none', 1.
        c.n_classes, c.use_instance, c.lambda_vgg, c.num_upsampling_layers = 13, False, 0., 'normal'
        c.resolution, c.ngf, c.ndf, c.n_layers_D = 32, 2, 4, 2
    c.batch_size, c.train_examples, c.num_steps = 8, 24, 4  # the test session has 8 devices
    c.log_every, c.sample_every, c.checkpoint_every, c.n_samples = 2, 4, 2, 2
    c.update(kw)
    return c


def test_stream_is_a_pure_function_of_the_step():
    from anycost_jax.train import img2img
    c = _tiny_config()
    with img2img.make_stream(c, 'train', 0, 8) as a, img2img.make_stream(c, 'train', 2, 8) as b:
        first, later = [next(a) for _ in range(4)], next(b)
    for k in 'AB':
        np.testing.assert_array_equal(first[2][k], later[k])  # a resumed stream continues exactly
    with img2img.make_stream(c, 'train', 0, 8, train=False) as s:  # no flips: every scene once per epoch
        seen = {s.batch_at(step)['B'][i].tobytes() for step in range(3) for i in range(8)}
    assert len(seen) == 24
    assert first[0]['A'].shape == (8, 16, 16, 3) and first[0]['A'].min() >= -1 and first[0]['A'].max() <= 1


@pytest.mark.slow
def test_trainer_runs_pix2pix_resumes_exactly_and_exports(tmp_path):
    from anycost_jax.eval import evaluate as evaluate_lib
    from anycost_jax.train import trainer
    from tests.test_fid import tiny_extractor
    evaluate_lib._EXTRACTORS[None] = tiny_extractor()[0]  # FID every 2 steps, with a stand-in feature net
    try:
        straight = trainer.train_and_evaluate(_tiny_config(eval_every=2, test_examples=8), str(tmp_path / 'a'))
    finally:
        del evaluate_lib._EXTRACTORS[None]
    assert os.listdir(os.path.join(tmp_path, 'a', 'fid_stats')) == ['shapes_img2img_labels2image_test_AtoB_16.npz']
    trainer.train_and_evaluate(_tiny_config(num_steps=2), str(tmp_path / 'b'))
    resumed = trainer.train_and_evaluate(_tiny_config(), str(tmp_path / 'b'))  # steps 2 -> 4 from the checkpoint
    assert int(resumed.step) == int(straight.step) == 4
    for x, y in zip(jax.tree.leaves(sharding.local_copy((straight.g_params, straight.d_params))),
                    jax.tree.leaves(sharding.local_copy((resumed.g_params, resumed.d_params)))):
        np.testing.assert_array_equal(x, y)
    grid = os.path.join(tmp_path, 'a', 'samples')
    assert os.listdir(grid)  # input | output | target rows
    gen, g_vars = convert.load_img2img_generator(os.path.join(tmp_path, 'a', 'generator'))
    assert gen.mobile and gen.ngf == 4
    with pytest.raises(ValueError, match='batch_size'):
        trainer.train_and_evaluate(_tiny_config(batch_size=16), str(tmp_path / 'a'))  # another run shape


def test_family_config_errors(tmp_path):
    from anycost_jax.train import trainer
    with pytest.raises(ValueError, match="netG='vit'"):
        trainer.train_and_evaluate(_tiny_config(netG='vit'), str(tmp_path))
    with pytest.raises(ValueError, match='recolor is unpaired'):
        trainer.train_and_evaluate(_tiny_config(dataset='shapes_img2img/recolor'), str(tmp_path))
    with pytest.raises(ValueError, match='trains on shapes_img2img/'):
        trainer.train_and_evaluate(_tiny_config(dataset='cityscapes'), str(tmp_path))
    with pytest.raises(ValueError, match="param_free_norm='layer'"):
        trainer.train_and_evaluate(_tiny_config('gaugan', param_free_norm='layer'), str(tmp_path))


def test_gaugan_demo_normalizes_per_instance():
    # Its 1x1 latent sees one value per channel across a batch: batch norm's running statistics
    # would blow up at test time (see configs/shapes_img2img.py), so the demo has none to keep.
    from anycost_jax.train import img2img
    from configs import shapes_img2img
    config = shapes_img2img.get_config('gaugan')
    gen, _ = img2img.build_models(config)
    x = jnp.zeros((1, config.resolution, config.resolution, img2img.label_nc(config)))
    variables = gen.init(jax.random.key(0), x)
    assert gen.param_free_norm == 'instance' and 'batch_stats' not in variables


@pytest.mark.slow
@pytest.mark.parametrize('method', ['cycle_gan', 'gaugan'])
def test_trainer_runs_cycle_gan_and_gaugan_resumes_exactly_and_exports(tmp_path, method):
    """The whole state resumes bit for bit, CycleGAN's image pools included (a pool of 4 fills in the
    first step and answers from its images after the resume)."""
    from anycost_jax.train import img2img, trainer
    kw = {'pool_size': 4} if method == 'cycle_gan' else {}
    straight = trainer.train_and_evaluate(_tiny_config(method, **kw), str(tmp_path / 'a'))
    trainer.train_and_evaluate(_tiny_config(method, num_steps=2, **kw), str(tmp_path / 'b'))
    resumed = trainer.train_and_evaluate(_tiny_config(method, **kw), str(tmp_path / 'b'))
    assert int(resumed.step) == 4
    def everything(state):
        return sharding.local_copy(state.replace(rng=jax.random.key_data(state.rng)))
    for x, y in zip(jax.tree.leaves(everything(straight)), jax.tree.leaves(everything(resumed))):
        np.testing.assert_array_equal(x, y)
    assert os.listdir(os.path.join(tmp_path, 'a', 'samples'))
    gen, g_vars = convert.load_img2img_generator(os.path.join(tmp_path, 'a', 'generator'))
    if method == 'cycle_gan':
        assert int(straight.pools['B']['count']) == 4
        other, _ = convert.load_img2img_generator(os.path.join(tmp_path, 'a', img2img.GENERATOR_BTOA))
        assert other == gen
    else:
        assert gen.label_nc == 13 and gen.axis_name is None


# --------------------------------------------------------------------------- the real-data configs


def _png(path, array):
    from PIL import Image
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def _folders(kind: str, root, n: int = 8):
    """A tiny copy of each release's layout: pix2pix's A | B images, CycleGAN's trainA / trainB /
    testA / testB, and Cityscapes' gtFine label and instance ids beside leftImg8bit photos."""
    rng = np.random.default_rng(0)

    def photo(h, w):
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    for i in range(n):
        if kind == 'paired':
            for split in ('train', 'val'):
                _png(os.path.join(root, split, f'{i}.png'), photo(20, 40))
        elif kind == 'unpaired':
            for split in ('trainA', 'trainB', 'testA', 'testB'):
                _png(os.path.join(root, split, f'{i}.png'), photo(20, 20))
        else:
            for split in ('train', 'val'):
                key = f'aachen_{i:06d}_000019'
                label = rng.integers(0, 35, (32, 64), dtype=np.uint8)
                inst = (rng.integers(0, 3, (4, 8)) * 1000 + 26).repeat(8, 0).repeat(8, 1).astype(np.uint16)
                _png(os.path.join(root, 'gtFine', split, 'aachen', f'{key}_gtFine_labelIds.png'), label)
                _png(os.path.join(root, 'gtFine', split, 'aachen', f'{key}_gtFine_instanceIds.png'), inst)
                _png(os.path.join(root, 'leftImg8bit', split, 'aachen', f'{key}_leftImg8bit.png'), photo(32, 64))


@pytest.mark.slow
@pytest.mark.parametrize('config_arg,kind', [('edges2shoes.py', 'paired'), ('horse2zebra.py', 'unpaired'),
                                             ('cityscapes.py:gaugan', 'cityscapes')])
def test_real_data_configs_train_from_a_folder(tmp_path, config_arg, kind):
    """Each real-data config at a tiny size: prepared from its folder layout on first use (nothing
    downloaded), two steps, samples and the exported generator. GauGAN with the spectral generator,
    instance edges and the VGG19 loss (weights from a file, as a user passes --config.vgg19)."""
    from anycost_jax.train import trainer
    from tests.test_img2img_losses import vgg19_state_dict
    manual = str(tmp_path / 'data')
    _folders(kind, manual)
    path, _, arg = config_arg.partition(':')
    spec = importlib.util.spec_from_file_location('cfg', os.path.join(os.path.dirname(__file__), '..', 'configs', path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config(arg)
    c.manual_dir, c.data_dir = manual, str(tmp_path / 'tfds')
    c.ngf, c.ndf, c.n_layers_D, c.n_blocks = 2, 4, 2, 2
    c.batch_size, c.num_steps, c.n_samples = 8, 2, 2
    c.log_every, c.sample_every, c.checkpoint_every = 1, 2, 2
    if kind == 'cityscapes':
        c.resolution, c.load_size, c.num_upsampling_layers = 64, 64, 'normal'
        c.vgg19 = str(tmp_path / 'vgg19.pth')
        convert.save_torch_file(vgg19_state_dict(), c.vgg19)
    else:
        c.resolution, c.load_size = 16, 18
    state = trainer.train_and_evaluate(c, str(tmp_path / 'run'))
    assert int(state.step) == 2
    assert os.listdir(os.path.join(tmp_path, 'run', 'samples'))
    gen, _ = convert.load_img2img_generator(os.path.join(tmp_path, 'run', 'generator'))
    if kind == 'cityscapes':
        assert gen.spectral and gen.label_nc == 36 and gen.output_size == (32, 64)


# --------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize('method,direction', [('pix2pix', 'AtoB'), ('cycle_gan', 'BtoA'), ('gaugan', 'AtoB')])
def test_fid_walks_the_held_out_split(tmp_path, method, direction):
    """FID (with a small stand-in feature network) equals the Frechet distance of the features of
    the generator's outputs on every held-out input and of the real targets (CycleGAN: and of the
    target domain's training images), both truncated to uint8 as the upstream's protocol, computed
    here by hand; the real statistics are written once and read back."""
    from anycost_jax.eval import fid as fid_lib
    from anycost_jax.train import img2img
    from tests.test_fid import tiny_extractor
    c = _tiny_config(method, test_examples=8)
    extractor = tiny_extractor()[0]
    g_vars, _ = img2img.init_variables(c, jax.random.key(0))
    side = {'AtoB': 'A', 'BtoA': 'B'}[direction]
    if method == 'cycle_gan':
        g_vars = g_vars[side]
    gen, _ = img2img.build_models(c)
    stats = str(tmp_path / 'real.npz')
    value = img2img.fid(c, gen, g_vars, extractor, direction=direction, batch_size=4, stats_path=stats)
    test = img2img.test_batch(_tiny_config(method, test_examples=8, n_samples=8))  # all 8 held-out examples
    x = img2img.generator_input(c, test) if method != 'cycle_gan' else test[side]
    real = test['image'] if method == 'gaugan' else test[{'A': 'B', 'B': 'A'}[side]]
    def upstream(images):  # util.tensor2im (truncation), / 255, then pytorch-fid's 2x - 1
        x = np.asarray(images, np.float32)
        return np.clip((x + 1) / 2 * 255, 0, 255).astype(np.uint8).astype(np.float32) / 255 * 2 - 1
    fake = fid_lib.FIDStats.from_features(extractor(upstream(gen.apply(g_vars, x))))
    if method == 'cycle_gan':  # real statistics: the target domain's test and training images
        with img2img.make_stream(c, 'train', 0, 24, train=False) as s:
            train_real = s.batch_at(0)[{'A': 'B', 'B': 'A'}[side]]  # train=False: A and B paired by position
        real = np.concatenate([real, train_real])
    want = fake.fid(fid_lib.FIDStats.from_features(extractor(upstream(real))))
    np.testing.assert_allclose(value, want, rtol=1e-6)
    assert os.path.isfile(stats)
    again = img2img.fid(c, gen, g_vars, extractor, direction=direction, batch_size=4, stats_path=stats)
    np.testing.assert_allclose(again, value, rtol=1e-6)
    if method != 'cycle_gan':
        with pytest.raises(ValueError, match="translates one way; direction='BtoA'"):
            img2img.fid(c, gen, g_vars, extractor, direction='BtoA')


def test_sizes_the_generator_cannot_make_are_refused(tmp_path):
    from anycost_jax.train import trainer
    with pytest.raises(ValueError, match='config.resolution=30: a ResNet generator .* multiple of 4 \\(e.g. 28\\)'):
        trainer.train_and_evaluate(_tiny_config(resolution=30), str(tmp_path / 'a'))
    with pytest.raises(ValueError, match='config.resolution=24: the U-Net .* power of 2 \\(e.g. 16\\)'):
        trainer.train_and_evaluate(_tiny_config(resolution=24, netG='unet'), str(tmp_path / 'b'))
    with pytest.raises(ValueError, match="empty latent grid \\(0x0 outputs\\)"):
        trainer.train_and_evaluate(_tiny_config('gaugan', resolution=16), str(tmp_path / 'c'))
    with pytest.raises(ValueError, match="num_upsampling_layers='many' is not one of"):
        trainer.train_and_evaluate(_tiny_config('gaugan', num_upsampling_layers='many'), str(tmp_path / 'd'))
    assert not os.path.exists(tmp_path / 'a' / 'checkpoints')
