"""The image-to-image family as a user of :mod:`anycost_jax.train.loop`: pix2pix so far.

A stage trains a generator (``config.netG``: a ResNet, MobileNet-ResNet or U-Net) and a
conditional PatchGAN (``n_layers``) with the iteration of :mod:`.img2img_steps`, on paired data:
the embedded procedural tasks (:mod:`anycost_jax.data.procedural_img2img`, ``dataset =
'shapes_img2img/<task>'``). The stream of batches is a pure function of (seed, step): every
example's position in it comes from per-epoch permutations, so a resumed run sees exactly the
batches an uninterrupted one would. Samples are rows of input | output | target on held-out
scenes; the final generator and discriminator are exported as model directories.
"""
from __future__ import annotations

import contextlib
import logging
import os

import jax
import ml_collections
import numpy as np

from anycost_jax import convert  # noqa: F401  (registers the image-to-image classes with modeldir)
from anycost_jax import modeldir, sharding
from anycost_jax import workdir as workdir_lib
from anycost_jax.data import procedural_img2img
from anycost_jax.data.pipeline import epoch_permutation
from anycost_jax.models.img2img import MobileResnetGenerator, NLayerDiscriminator, ResnetGenerator, UnetGenerator
from anycost_jax.render import to_uint8
from anycost_jax.train import img2img_steps as steps_lib
from anycost_jax.train import loop

log = logging.getLogger(__name__)

RESUME_KEYS = ('method', 'dataset', 'resolution', 'netG', 'ngf', 'n_blocks', 'norm', 'netD', 'ndf', 'n_layers_D',
               'seed', 'batch_size', 'gan_mode')
NETGS = ('resnet', 'mobile_resnet', 'unet')
DATASET_PREFIX = 'shapes_img2img/'


def base_config() -> ml_collections.ConfigDict:
    """pix2pix's defaults (gan-compression's train options): Adam 2e-4, betas (0.5, 0.999), hinge
    GAN loss, L1 x 100, 3-layer PatchGAN on (input, output), linear decay after ``n_epochs``."""
    c = ml_collections.ConfigDict()
    c.family = 'img2img'
    c.method = 'pix2pix'
    c.name = 'pix2pix'
    c.dataset = DATASET_PREFIX + 'labels2image'
    c.train_examples = 1000              # scenes per epoch of the procedural data
    c.resolution = 256
    c.netG, c.ngf, c.n_blocks, c.norm, c.dropout_rate = 'resnet', 64, 9, 'instance', 0.
    c.netD, c.ndf, c.n_layers_D = 'n_layers', 64, 3
    c.gan_mode, c.lambda_gan, c.lambda_recon, c.recon = 'hinge', 1., 100., 'l1'
    c.lr, c.beta1 = 2e-4, 0.5
    c.n_epochs, c.n_epochs_decay = 100, 100  # constant lr, then linear decay (epochs of train_examples)
    c.batch_size = 1
    c.seed = 0
    c.num_steps = 1000
    c.log_every, c.sample_every, c.eval_every, c.checkpoint_every, c.keep_checkpoints = 100, 1000, 0, 1000, 3
    c.n_samples = 4
    return c


def task_of(config) -> str:
    if not config.dataset.startswith(DATASET_PREFIX):
        raise ValueError(f'config.dataset={config.dataset!r}: the image-to-image family trains on '
                         f'{DATASET_PREFIX}<task> with task one of {procedural_img2img.TASKS[:2]}')
    task = config.dataset[len(DATASET_PREFIX):]
    if task not in ('labels2image', 'edges2image'):
        raise ValueError(f'config.dataset={config.dataset!r}: pix2pix needs a paired task, labels2image or '
                         'edges2image (recolor is unpaired: CycleGAN)')
    return task


def check(config, workdir: str) -> None:
    del workdir
    if config.method != 'pix2pix':
        raise ValueError(f'config.method={config.method!r}: this family trains pix2pix only so far')
    task_of(config)
    if config.netG not in NETGS:
        raise ValueError(f'config.netG={config.netG!r} is not one of {NETGS}')
    if config.netD != 'n_layers':
        raise ValueError(f'config.netD={config.netD!r}: pix2pix uses the PatchGAN, "n_layers"')
    steps_lib.Pix2PixConfig(config.gan_mode, config.lambda_gan, config.lambda_recon, config.recon)
    if config.batch_size % jax.device_count():
        raise ValueError(f'config.batch_size={config.batch_size} must be a multiple of the {jax.device_count()} devices')


def build_models(config):
    kw = dict(input_nc=3, output_nc=3, ngf=config.ngf)
    if config.netG == 'unet':
        gen = UnetGenerator(num_downs=int(np.log2(config.resolution)), norm=config.norm,
                            dropout_rate=config.dropout_rate, **kw)
    elif config.netG == 'mobile_resnet':
        gen = MobileResnetGenerator(n_blocks=config.n_blocks, dropout_rate=config.dropout_rate, **kw)
    else:
        gen = ResnetGenerator(n_blocks=config.n_blocks, norm=config.norm, dropout_rate=config.dropout_rate, **kw)
    disc = NLayerDiscriminator(input_nc=6, ndf=config.ndf, n_layers=config.n_layers_D, norm=config.norm)
    return gen, disc


# ---------------------------------------------------------------------------- data


def _to_float(u8: np.ndarray) -> np.ndarray:
    return u8.astype(np.float32) / np.float32(127.5) - np.float32(1)


class PairedStream:
    """This host's share of global batches ``start``, ``start + 1``, ...: ``{'A': input, 'B': target}``,
    float32 NHWC in [-1, 1]. Batch ``step`` holds stream positions ``step * batch ...``; position
    ``p`` is example ``perm_e[p % n]`` of epoch ``e = p // n``, so any batch is a pure function."""

    def __init__(self, config, start: int):
        self.task, self.res, self.seed = task_of(config), config.resolution, config.seed
        self.n, self.batch, self.step = config.train_examples, config.batch_size, start
        if self.n < self.batch:
            raise ValueError(f'config.train_examples={self.n} is smaller than one batch ({self.batch})')
        self.local = self.batch // jax.process_count()
        self.offset = jax.process_index() * self.local
        self._perms: dict = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: epoch_permutation(self.seed, epoch, self.n), **{
                e: p for e, p in self._perms.items() if e >= epoch - 1}}
        return self._perms[epoch]

    def batch_at(self, step: int) -> dict:
        pos = step * self.batch + self.offset + np.arange(self.local)
        idx = [int(self._perm(int(p // self.n))[p % self.n]) for p in pos]
        ex = [procedural_img2img.example(self.task, i, self.res, self.seed) for i in idx]
        return {'A': _to_float(np.stack([e['input'] for e in ex])), 'B': _to_float(np.stack([e['target'] for e in ex]))}

    def __iter__(self):
        return self

    def __next__(self):
        out = self.batch_at(self.step)
        self.step += 1
        return out


# ---------------------------------------------------------------------------- the stage


def make_stage(config, workdir: str) -> loop.Stage:
    mesh = sharding.data_mesh()
    gen, disc = build_models(config)
    steps_per_epoch = max(1, config.train_examples // config.batch_size)
    sched = steps_lib.linear_decay(config.lr, steps_per_epoch, config.n_epochs, config.n_epochs_decay)
    g_tx, d_tx = steps_lib.adam(sched, config.beta1), steps_lib.adam(sched, config.beta1)
    cfg = steps_lib.Pix2PixConfig(config.gan_mode, config.lambda_gan, config.lambda_recon, config.recon)
    steps = steps_lib.Pix2PixSteps(mesh, gen, disc, cfg, g_tx, d_tx)
    rng = jax.random.key(config.seed)
    res, task = config.resolution, task_of(config)
    x = np.zeros((1, res, res, 3), np.float32)

    def init_state(fresh: bool):
        del fresh  # initialization is a pure function of the seed; a checkpoint overwrites it
        g_vars = gen.init({'params': jax.random.fold_in(rng, 1), 'dropout': rng}, x)
        d_vars = disc.init(jax.random.fold_in(rng, 2), np.zeros((1, res, res, 6), np.float32))
        return steps.replicate(steps_lib.create_state(jax.random.fold_in(rng, 3), g_vars, d_vars, g_tx, d_tx))

    tests = [procedural_img2img.example(task, i, res, config.seed, split='test') for i in range(config.n_samples)]
    test_inputs = _to_float(np.stack([t['input'] for t in tests]))
    apply = jax.jit(lambda v, a: gen.apply(v, a))

    def samples(state):
        """Rows of input | output | target on held-out scenes."""
        out = to_uint8(apply(g_variables(state), test_inputs))
        rows = [np.concatenate([t['input'], o, t['target']], axis=1) for t, o in zip(tests, out)]
        return np.concatenate(rows, axis=0)

    def data(start: int):
        return contextlib.nullcontext(PairedStream(config, start))

    return loop.Stage(
        name=config.name, init_state=init_state, programs=[loop.Program('step', steps.program())], data=data,
        shard_batch=steps.shard_batch, checked_trees=lambda s: (s.g_params, s.d_params), batch_size=config.batch_size,
        meta={'config': config.to_dict()}, samples=samples, export=lambda s: export(config, s, workdir))


def g_variables(state) -> dict:
    return sharding.local_copy({'params': state.g_params, **state.g_stats})


def export(config, state, workdir: str) -> None:
    """The trained generator and discriminator as model directories (``convert.load_img2img_generator``
    reads them; ``convert.save_img2img_generator`` writes gan-compression's .pth)."""
    gen, disc = build_models(config)
    modeldir.save(os.path.join(workdir, workdir_lib.GENERATOR), gen, g_variables(state))
    modeldir.save(os.path.join(workdir, workdir_lib.DISCRIMINATOR), disc,
                  sharding.local_copy({'params': state.d_params, **state.d_stats}))
    log.info('exported the generator and discriminator to %s', workdir)
