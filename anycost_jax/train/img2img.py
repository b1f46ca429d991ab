"""The image-to-image family as a user of :mod:`anycost_jax.train.loop`: pix2pix, CycleGAN and GauGAN.

``config.method`` picks the iteration (:mod:`.img2img_steps`) and what it trains:

* ``pix2pix``: a generator (``netG``: resnet, mobile_resnet or unet) and a conditional PatchGAN on
  paired data (``A`` -> ``B``);
* ``cycle_gan``: two ResNet generators (A -> B, B -> A) and two PatchGANs on unpaired data;
* ``gaugan``: a SPADE generator (``netG``: spade or mobile_spade) and the multi-scale
  discriminator on label maps (+ instance edges) -> images, with the VGG19 perceptual loss.

Data (``config.dataset``): the embedded procedural tasks ``shapes_img2img/<task>``
(:mod:`anycost_jax.data.procedural_img2img`: labels2image and edges2image paired, recolor unpaired;
GauGAN reads labels2image's label maps), drawn on the fly with no download; or our TFDS builders
of local folders (:mod:`anycost_jax.data.img2img_builders`: ``paired_images/<name>``,
``unpaired_images/<name>``, ``cityscapes_fine``), prepared from ``config.manual_dir`` on first use
into ``config.data_dir``, with the original's preprocessing (``config.preprocess`` ...). Every
batch is a pure function of (seed, step), so a resumed run sees exactly the batches an
uninterrupted one would. Samples are rows on held-out examples; the final networks are
exported as model directories (``convert.load_img2img_generator`` reads them).
"""
from __future__ import annotations

import functools
import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from anycost_jax import convert  # registers the image-to-image classes with modeldir
from anycost_jax import modeldir, sharding
from anycost_jax import workdir as workdir_lib
from anycost_jax.data import img2img_pipeline as pipe
from anycost_jax.data import procedural_img2img
from anycost_jax.models.img2img import (MobileResnetGenerator, MultiscaleDiscriminator, NLayerDiscriminator,
                                        ResnetGenerator, SPADEGenerator, UnetGenerator, semantic_input)
from anycost_jax.models.img2img.spade import PARAM_FREE_NORMS
from anycost_jax.render import to_uint8
from anycost_jax.sharding import AXIS
from anycost_jax.train import img2img_steps as steps_lib
from anycost_jax.train import loop

log = logging.getLogger(__name__)

METHODS = ('pix2pix', 'cycle_gan', 'gaugan')
NETGS = {'pix2pix': ('resnet', 'mobile_resnet', 'unet'), 'cycle_gan': ('resnet', 'mobile_resnet'),
         'gaugan': ('spade', 'mobile_spade')}
NETDS = {'pix2pix': 'n_layers', 'cycle_gan': 'n_layers', 'gaugan': 'multi_scale'}
RESUME_KEYS = ('method', 'dataset', 'resolution', 'aspect_ratio', 'netG', 'ngf', 'n_blocks', 'norm', 'netD', 'ndf',
               'n_layers_D', 'num_D', 'seed', 'batch_size', 'gan_mode', 'direction', 'preprocess', 'load_size',
               'n_classes', 'use_instance', 'num_upsampling_layers', 'spectral_G', 'param_free_norm')
PROCEDURAL = 'shapes_img2img/'
PROCEDURAL_TASKS = {'pix2pix': ('labels2image', 'edges2image'), 'cycle_gan': ('recolor',),
                    'gaugan': ('labels2image',)}
# the B -> A generator and discriminator of CycleGAN, beside the A -> B ones in GENERATOR / DISCRIMINATOR
GENERATOR_BTOA, DISCRIMINATOR_B = 'generator_BtoA', 'discriminator_B'


def base_config(method: str = 'pix2pix') -> ml_collections.ConfigDict:
    """gan-compression's train options for ``method``: its base options (Adam 2e-4, betas (0.5,
    0.999), resize_and_crop 286 -> 256 with flips, linear decay after ``n_epochs``) with the
    model's own defaults on top:

    * pix2pix: hinge GAN loss, L1 x 100, a 3-layer PatchGAN of ndf 128 on (input, output), 5 + 15
      epochs, batch 1;
    * cycle_gan: LSGAN, cycle x 10 each way, identity x 0.5, pools of 50, ndf 64, 100 + 100
      epochs, batch 1;
    * gaugan: hinge + feature matching x 10 + VGG x 10, TTUR (G lr / 2, D 2 lr, betas (0, 0.9)),
      a 2-scale, 4-layer discriminator of ndf 64 with spectral instance norm, synchronized batch
      norm in SPADE, 'more' upsampling layers, 100 + 100 epochs, batch 16; Cityscapes' label
      classes (35) with instance edges, scale_width 512 at aspect ratio 2.
    """
    if method not in METHODS:
        raise ValueError(f'method={method!r} is not one of {METHODS}')
    c = ml_collections.ConfigDict()
    c.family = 'img2img'
    c.method = method
    c.name = method
    # data
    c.dataset = PROCEDURAL + PROCEDURAL_TASKS[method][0]
    c.data_dir, c.manual_dir = '', ''          # our TFDS builders: where prepared / the folder to prepare from
    c.train_split, c.test_split = 'train', 'test'
    c.train_examples = 1000                    # procedural data only: scenes per epoch
    c.test_examples = 64                       # procedural data only: held-out scenes (samples, FID)
    c.direction = 'AtoB'
    c.preprocess, c.load_size, c.no_flip = 'resize_and_crop', 286, False
    c.resolution = 256                         # the crop size: the generator's output (width, for gaugan)
    c.aspect_ratio = 1.0                       # width / height (gaugan)
    # networks
    c.netG, c.ngf, c.n_blocks, c.norm, c.dropout_rate = 'resnet', 64, 9, 'instance', 0.
    c.netD, c.ndf, c.n_layers_D, c.num_D = NETDS[method], 128, 3, 2
    c.num_upsampling_layers, c.spectral_G = 'more', False
    c.param_free_norm = 'batch'                # SPADE's: 'batch' (spadesyncbatch3x3) or 'instance' (spadeinstance3x3)
    c.n_classes, c.use_instance = procedural_img2img.N_CLASSES, False
    # losses and optimizers
    c.gan_mode, c.lambda_gan, c.lambda_recon, c.recon = 'hinge', 1., 100., 'l1'
    c.lambda_A, c.lambda_B, c.lambda_identity, c.pool_size = 10., 10., 0.5, 50
    c.lambda_feat, c.lambda_vgg, c.vgg19 = 10., 10., ''   # vgg19: torchvision's vgg19 .pth (a path or URL)
    c.lr, c.beta1, c.beta2, c.ttur = 2e-4, 0.5, 0.999, True
    c.n_epochs, c.n_epochs_decay = 5, 15       # constant lr, then linear decay
    c.batch_size = 1
    c.seed = 0
    c.num_steps = 1000
    c.log_every, c.sample_every, c.eval_every, c.checkpoint_every, c.keep_checkpoints = 100, 1000, 0, 1000, 3
    c.n_samples = 4
    # evaluation every eval_every steps: FID on test_split (anycost_jax.eval.img2img)
    c.inception = ''        # pytorch-fid's Inception weights, a file or URL ('': download once, cached)
    c.fid_stats = ''        # real statistics; '{direction}' is filled in ('': WORKDIR/fid_stats/..., made once)
    c.eval_batch_size = 8
    # the real statistics' images: the held-out split's targets, and for CycleGAN (the upstream's protocol,
    # its README's "FID" section) the target domain's training images too; False: the held-out ones only
    c.fid_real_with_train = method == 'cycle_gan'
    # Cityscapes mIoU (anycost_jax.eval.segmentation): the DRN weights, drn-d-105_ms_cityscapes.pth; pix2pix's
    # split also needs gan-compression's table of its images' gtFine maps and the original Cityscapes folder
    c.drn, c.cityscapes_table, c.cityscapes_dir = '', '', ''
    if method == 'cycle_gan':
        c.gan_mode, c.ndf, c.n_epochs, c.n_epochs_decay = 'lsgan', 64, 100, 100
    elif method == 'gaugan':  # Cityscapes by default; a procedural config sets n_classes to N_CLASSES
        c.netG, c.ndf, c.n_layers_D, c.n_epochs, c.n_epochs_decay, c.batch_size = 'spade', 64, 4, 100, 100, 16
        c.n_classes, c.use_instance = 35, True
        c.dataset, c.train_split, c.test_split = 'cityscapes_fine', 'train', 'val'
        c.preprocess, c.load_size, c.resolution, c.aspect_ratio = 'scale_width', 512, 512, 2.0
    return c


# ---------------------------------------------------------------------------- checks and models


def procedural_task(config):
    """The procedural task of ``config.dataset``, or None for a TFDS dataset."""
    if not config.dataset.startswith(PROCEDURAL):
        return None
    task = config.dataset[len(PROCEDURAL):]
    allowed = PROCEDURAL_TASKS[config.method]
    if task not in allowed:
        why = {'recolor': 'recolor is unpaired: CycleGAN'}.get(task, f'{config.method} trains on {allowed}')
        raise ValueError(f'config.dataset={config.dataset!r}: {config.method} needs {PROCEDURAL}'
                         f'{"|".join(allowed)} ({why})')
    return task


def check(config, workdir: str) -> None:
    del workdir
    if config.method not in METHODS:
        raise ValueError(f'config.method={config.method!r} is not one of {METHODS}')
    task = procedural_task(config)
    if task is None:
        name = config.dataset.split('/')[0]
        if name not in pipe.BUILDERS and name not in pipe.CATALOG:
            raise ValueError(f'config.dataset={config.dataset!r}: the image-to-image family trains on '
                             f'{PROCEDURAL}<task>, one of our builders {sorted(pipe.BUILDERS)} '
                             "(e.g. 'unpaired_images/horse2zebra' with config.manual_dir=<folder>) or TFDS's "
                             "prepared 'cycle_gan/<pair>'")
        kind = {'pix2pix': ('paired_images',), 'cycle_gan': ('unpaired_images', 'cycle_gan'),
                'gaugan': ('cityscapes_fine',)}[config.method]
        if name not in kind:
            raise ValueError(f'config.dataset={config.dataset!r}: {config.method} trains on {" or ".join(kind)}')
    if config.method == 'gaugan' and task is not None and config.n_classes != procedural_img2img.N_CLASSES:
        raise ValueError(f'config.n_classes={config.n_classes}: the procedural label maps have '
                         f'{procedural_img2img.N_CLASSES} classes; set config.n_classes={procedural_img2img.N_CLASSES}')
    if config.netG not in NETGS[config.method]:
        raise ValueError(f'config.netG={config.netG!r}: {config.method} uses one of {NETGS[config.method]}')
    if config.netD != NETDS[config.method]:
        raise ValueError(f'config.netD={config.netD!r}: {config.method} uses "{NETDS[config.method]}"')
    if config.method == 'gaugan' and config.param_free_norm not in PARAM_FREE_NORMS:
        raise ValueError(f'config.param_free_norm={config.param_free_norm!r}: SPADE normalizes with one of '
                         f'{PARAM_FREE_NORMS}')
    method_config(config)
    _check_resolution(config)
    if config.method == 'gaugan' and config.lambda_vgg and not config.vgg19:
        raise ValueError(f'config.lambda_vgg={config.lambda_vgg} needs VGG19 weights: set config.vgg19 to '
                         "torchvision's vgg19 .pth (vgg19-dcbb9e9d.pth, a path or URL), or config.lambda_vgg=0")
    if config.batch_size % jax.device_count():
        raise ValueError(f'config.batch_size={config.batch_size} must be a multiple of the {jax.device_count()} devices')
    if config.eval_every:  # missing Inception weights fail now, not after the first eval_every steps
        feature_extractor(config)


def feature_extractor(config):
    from anycost_jax.eval import evaluate as evaluate_lib
    return evaluate_lib.feature_extractor(evaluate_lib.Settings(inception=config.inception or None))


def _check_resolution(config) -> None:
    """The sizes each generator can produce (its output must be the target's size)."""
    r = config.resolution
    if config.netG in ('resnet', 'mobile_resnet') and (r < 4 or r % 4):
        raise ValueError(f'config.resolution={r}: a ResNet generator downsamples twice by 2, so it needs a '
                         f'multiple of 4 (e.g. {max(4, r - r % 4)})')
    if config.netG == 'unet' and (r < 2 or r & (r - 1)):
        raise ValueError(f'config.resolution={r}: the U-Net halves down to 1x1, so it needs a power of 2 '
                         f'(e.g. {1 << max(1, r.bit_length() - 1)})')
    if config.method == 'gaugan':
        from anycost_jax.elastic.img2img import SPADE_UPSAMPLING
        if config.num_upsampling_layers not in SPADE_UPSAMPLING:
            raise ValueError(f'config.num_upsampling_layers={config.num_upsampling_layers!r} is not one of '
                             f'{list(SPADE_UPSAMPLING)}')
        h, w = build_models(config)[0].output_size
        if not h or not w:
            n = SPADE_UPSAMPLING[config.num_upsampling_layers]
            raise ValueError(f'config.resolution={r} with aspect_ratio={config.aspect_ratio} and num_upsampling_layers='
                             f'{config.num_upsampling_layers!r} leaves an empty latent grid ({h}x{w} outputs): SPADE '
                             f'starts from resolution / 2**{n} columns and that / aspect_ratio rows; use a larger '
                             'resolution or fewer upsampling layers')


def method_config(config):
    """The iteration's loss configuration (its checks run here)."""
    if config.method == 'pix2pix':
        return steps_lib.Pix2PixConfig(config.gan_mode, config.lambda_gan, config.lambda_recon, config.recon)
    if config.method == 'cycle_gan':
        return steps_lib.CycleGANConfig(config.gan_mode, config.lambda_A, config.lambda_B, config.lambda_identity,
                                        config.pool_size)
    return steps_lib.GauGANConfig(config.gan_mode, config.lambda_gan, config.lambda_feat, config.lambda_vgg)


def label_nc(config) -> int:
    """SPADE's input channels: the one-hot classes, + 1 for instance edges."""
    return config.n_classes + int(config.use_instance)


def build_models(config, axis_name=None):
    """``(generator, discriminator)``; ``axis_name``: the synchronized batch norm's axis (training)."""
    if config.method == 'gaugan':
        gen = SPADEGenerator(label_nc=label_nc(config), crop_size=config.resolution, ngf=config.ngf,
                             aspect_ratio=config.aspect_ratio, num_upsampling_layers=config.num_upsampling_layers,
                             mobile=config.netG == 'mobile_spade', spectral=config.spectral_G,
                             param_free_norm=config.param_free_norm, axis_name=axis_name)
        disc = MultiscaleDiscriminator(input_nc=label_nc(config) + 3, ndf=config.ndf, n_layers=config.n_layers_D,
                                       num_D=config.num_D)
        return gen, disc
    kw = dict(input_nc=3, output_nc=3, ngf=config.ngf)
    if config.netG == 'unet':
        gen = UnetGenerator(num_downs=int(np.log2(config.resolution)), norm=config.norm,
                            dropout_rate=config.dropout_rate, **kw)
    elif config.netG == 'mobile_resnet':
        gen = MobileResnetGenerator(n_blocks=config.n_blocks, dropout_rate=config.dropout_rate, **kw)
    else:
        gen = ResnetGenerator(n_blocks=config.n_blocks, norm=config.norm, dropout_rate=config.dropout_rate, **kw)
    d_in = 6 if config.method == 'pix2pix' else 3  # pix2pix's D is conditional: input | output
    return gen, NLayerDiscriminator(input_nc=d_in, ndf=config.ndf, n_layers=config.n_layers_D, norm=config.norm)


# ---------------------------------------------------------------------------- data


def preprocess_of(config, train: bool) -> pipe.Preprocess:
    if procedural_task(config) is not None:  # drawn at the resolution: flips only
        return pipe.Preprocess('none', no_flip=config.no_flip or not train)
    if train:
        return pipe.Preprocess(config.preprocess, config.load_size, config.resolution, config.no_flip)
    # evaluation: no random crop or flip (the whole image at the crop size), as the original's test options
    return pipe.Preprocess(config.preprocess, config.resolution, config.resolution, no_flip=True)


def source_of(config, split: str):
    task = procedural_task(config)
    if task is None:
        return pipe.load_img2img_source(config.dataset, split, data_dir=config.data_dir or None,
                                        manual_dir=config.manual_dir or None)
    n = config.train_examples if split == config.train_split else config.test_examples
    return pipe.procedural_source(task, n, config.resolution, config.seed, 'train' if split == config.train_split
                                  else 'test', labels=config.method == 'gaugan')


def make_stream(config, split: str, start: int, global_batch: int, train: bool = True, source=None, **kw):
    """The stream of ``split`` (or of ``source``, that split's source) from batch ``start``: {'A', 'B'}
    (pix2pix, cycle_gan) or {'label', ('instance',) 'image'} (gaugan), this host's share. At
    evaluation (``train=False``) an unpaired split is read as its two domains paired by position."""
    source = source_of(config, split) if source is None else source
    common = dict(global_batch=global_batch, seed=config.seed, start_step=start, preprocess=preprocess_of(config, train),
                  name=f"'{config.dataset}' ({split})", **kw)
    if config.method == 'gaugan':
        if config.use_instance and 'instance' not in source.keys:
            raise ValueError(f'config.use_instance is set but {config.dataset!r} has no instance maps; '
                             'set config.use_instance=False')
        return pipe.CityscapesStream(source, **common)
    if isinstance(source, pipe.UnpairedSource):
        if train:
            return pipe.UnpairedStream(source, direction=config.direction, **common)
        m = min(len(source.a), len(source.b))
        source = pipe.Img2ImgArraySource(A=source.a.get(np.arange(m))['image'], B=source.b.get(np.arange(m))['image'])
    return pipe.PairedStream(source, direction=config.direction, **common)


def test_batch(config) -> dict:
    """The first ``n_samples`` held-out examples (fewer if the split is smaller), all on this host:
    the rows of the sample grids."""
    source = source_of(config, config.test_split)
    n = min(config.n_samples, len(source) if not isinstance(source, pipe.UnpairedSource)
            else min(len(source.a), len(source.b)))
    with make_stream(config, config.test_split, 0, n, train=False, source=source, process_index=0,
                     process_count=1, prefetch=1) as stream:
        return stream.batch_at(0)


DIRECTIONS = ('AtoB', 'BtoA')


class _OneDomain:
    """A single-domain ('image') source read as paired A = B, so a PairedStream walks it in order."""

    def __init__(self, source):
        self.source = source

    @property
    def keys(self):
        return ('A', 'B')

    def __len__(self):
        return len(self.source)

    def get(self, indices, pool=None):
        images = self.source.get(indices, pool)['image']
        return {'A': images, 'B': images}


def fid_streams(config, split: str, direction: str, batch: int):
    """``(inputs, key of the generator's input or None for SPADE's semantic input, targets, key of the
    real images)``: in-order walks of ``split`` for FID (evaluation preprocessing)."""
    if direction not in DIRECTIONS:
        raise ValueError(f'direction={direction!r} is not one of {DIRECTIONS}')
    source = source_of(config, split)
    common = dict(process_index=None, process_count=None, prefetch=1)
    if config.method != 'cycle_gan':
        if direction != 'AtoB':
            raise ValueError(f'{config.method} translates one way; direction={direction!r} is for CycleGAN '
                             '(set config.direction to train the other way)')
        stream = make_stream(config, split, 0, batch, train=False, source=source, **common)
        return stream, None, stream, 'image' if config.method == 'gaugan' else 'B'
    if isinstance(source, pipe.UnpairedSource):
        src, real = (source.a, source.b) if direction == 'AtoB' else (source.b, source.a)
        src, real = _OneDomain(src), _OneDomain(real)
    else:  # procedural recolor's test split: paired A / B
        src = real = source

    def walk(s):  # in order, no unpaired draws
        return pipe.PairedStream(s, global_batch=batch, seed=config.seed, start_step=0,
                                 preprocess=preprocess_of(config, train=False), name=f'{config.dataset} ({split})',
                                 **common)
    inputs = walk(src)
    targets = inputs if real is src else walk(real)
    key_in, key_real = ('A', 'B') if direction == 'AtoB' or real is not src else ('B', 'A')
    return inputs, key_in, targets, key_real


def fid(config, gen, variables: dict, extractor, *, split=None, direction: str = 'AtoB', batch_size: int = 8,
        real=None, stats_path=None) -> float:
    """FID of ``gen`` (CycleGAN: the generator of ``direction``) on ``split`` (default ``test_split``):
    :func:`anycost_jax.eval.img2img.fid` on this config's streams."""
    from anycost_jax.eval import img2img as eval_lib
    split = split or config.test_split
    batch = batch_size - batch_size % jax.process_count() or jax.process_count()
    inputs, key_in, targets, key_real = fid_streams(config, split, direction, batch)
    extra = []
    if _real_with_train(config) and split != config.train_split:
        extra.append(real_domain_stream(config, config.train_split, direction, batch))
    apply = _apply(gen)
    try:
        return eval_lib.fid(lambda x: apply(variables, x), inputs,
                            (lambda b: generator_input(config, b)) if key_in is None else (lambda b: b[key_in]),
                            targets, key_real, extractor, batch=batch, real=real, stats_path=stats_path,
                            label=f'{config.dataset}:{split}:{direction}', extra_reals=extra)
    finally:
        for stream in [inputs] + ([targets] if targets is not inputs else []) + [s for s, _ in extra]:
            stream.close()


def miou_labels(config, stream):
    """``step -> train-id maps`` of ``stream``'s batch ``step`` (the mIoU ground truth at its native size):
    GauGAN on cityscapes_fine reads its label maps; pix2pix on the pix2pix Cityscapes split looks its
    images up in gan-compression's table (config.cityscapes_table, config.cityscapes_dir)."""
    from anycost_jax.data import img2img_builders
    if isinstance(stream, pipe.CityscapesStream) and config.dataset == 'cityscapes_fine':
        return stream.train_ids_at
    if isinstance(stream, pipe.PairedStream) and config.get('cityscapes_table'):
        table = img2img_builders.CityscapesTable(config.cityscapes_table, config.cityscapes_dir or '.')
        return lambda step: np.stack(table.train_ids(stream.names_at(step)))
    raise ValueError(f'mIoU compares generated street scenes with Cityscapes\' gtFine train ids: it needs GauGAN on '
                     f"'cityscapes_fine', or pix2pix (direction BtoA) on the Cityscapes split of gan-compression's "
                     f'prepare_cityscapes_dataset.py with config.cityscapes_table=<its val_table.txt> and '
                     f'config.cityscapes_dir=<the Cityscapes folder>; got {config.method} on {config.dataset!r}')


def miou_batches(config, split=None, batch_size: int = 1, n_batches=None):
    """Yields ``(generator input, train-id maps)`` of ``split`` (default ``test_split``) in order, this
    process's share of global batches of ``batch_size``: every full batch, or the first ``n_batches``
    (e.g. ``list(miou_batches(config, 'val', 4, 8))`` as the held batches of
    :func:`anycost_jax.eval.segmentation.miou_fitness`). The maps stay at the ground truth's size."""
    split = split or config.test_split
    batch = batch_size - batch_size % jax.process_count() or jax.process_count()
    inputs, key_in, _, _ = fid_streams(config, split, 'AtoB', batch)
    try:
        labels_of = miou_labels(config, inputs)
        total = len(inputs.source) // batch
        if not total:
            raise ValueError(f'mIoU: split {split!r} has fewer examples than one batch ({batch})')
        for step in range(total if n_batches is None else min(n_batches, total)):
            b = inputs.batch_at(step)
            yield (generator_input(config, b) if key_in is None else b[key_in]), labels_of(step)
    finally:
        inputs.close()


def miou(config, gen, variables: dict, segmenter, *, split=None, batch_size: int = 1) -> dict:
    """Cityscapes mIoU of ``gen`` on ``split`` (default ``test_split``): its outputs on every example of the
    split (floor(n / batch_size) batches) against their gtFine train ids, through ``segmenter``
    (:class:`anycost_jax.eval.segmentation.Segmenter`). Returns :func:`anycost_jax.eval.segmentation.miou`'s
    dict (``miou`` in percent). Every process scores its share; the histograms are summed over processes."""
    from anycost_jax.eval import segmentation
    apply = _apply(gen)
    hist, n = np.zeros((segmenter.n_classes,) * 2, np.int64), 0
    for x, labels in miou_batches(config, split, batch_size):
        hist += segmenter.histogram(np.asarray(apply(variables, x)), labels)
        n += len(x)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        hist = np.asarray(multihost_utils.process_allgather(hist)).sum(0)
        n *= jax.process_count()
    value, iou = segmentation.miou_of_hist(hist)
    log.info('mIoU %s:%s (%d images): %.2f', config.dataset, split or config.test_split, n, value)
    return {'miou': value, 'iou': iou, 'n_images': n}


@functools.lru_cache(maxsize=2)
def segmenter_of(drn_path: str):
    """The mIoU's DRN-D-105 (:class:`anycost_jax.eval.segmentation.Segmenter`) from its weights file, read once."""
    from anycost_jax.convert import drn as drn_lib
    from anycost_jax.eval import segmentation
    return segmentation.Segmenter(*drn_lib.load_drn(drn_path))


# launch/evaluate.py's metrics for an image-to-image generator (the Anycost registry, eval.evaluate.METRICS, walks
# grids of sub-generators over latents; these walk a held-out split of a dataset)
GENERATOR_METRICS = ('fid', 'miou')


def evaluate_generator(config, gen, variables: dict, metrics, *, split=None, batch_size: int = 1,
                       stats_path=None) -> dict:
    """``{metric: value}`` of one generator on ``split`` (default ``config.test_split``) with the upstream's
    protocols: ``fid`` (CycleGAN: both directions need both generators, so ``config.direction`` picks the one
    given; real statistics from / to ``stats_path``, made once) and ``miou`` (``miou`` in percent, ``iou`` per
    class). Weight files (``config.inception``, ``config.drn``) and the mIoU ground truth are checked before any
    image is generated."""
    metrics = list(dict.fromkeys(metrics))
    unknown = [m for m in metrics if m not in GENERATOR_METRICS]
    if unknown or not metrics:
        raise ValueError(f'metrics {metrics}: expected some of {GENERATOR_METRICS}')
    segmenter = extractor = None
    if 'miou' in metrics:
        from anycost_jax.convert import drn as drn_lib
        drn_lib.drn_weights(config.get('drn') or None)  # a missing file fails here, not after the FID pass
        inputs = fid_streams(config, split or config.test_split, 'AtoB', 1)[0]
        try:
            miou_labels(config, inputs)  # Cityscapes ground truth available?
        finally:
            inputs.close()
        segmenter = segmenter_of(config.drn)
    if 'fid' in metrics:
        from anycost_jax.convert import inception as inception_lib
        inception_lib.inception_weights(config.inception or None)
        extractor = feature_extractor(config)
    out = {}
    for m in metrics:
        if m == 'fid':
            direction = config.direction if config.method == 'cycle_gan' else 'AtoB'  # else applied by the stream
            out['fid'] = fid(config, gen, variables, extractor, split=split, direction=direction,
                             batch_size=batch_size, stats_path=stats_path)
        else:
            r = miou(config, gen, variables, segmenter, split=split, batch_size=batch_size)
            out['miou'], out['iou'] = r['miou'], [float(v) for v in r['iou']]
    return out


def _real_with_train(config) -> bool:
    return bool(config.get('fid_real_with_train', False)) and config.method == 'cycle_gan'


def real_domain_stream(config, split: str, direction: str, batch: int):
    """``(stream, key)``: an in-order walk of CycleGAN's target-domain images of ``split`` (B for A -> B)."""
    source = source_of(config, split)
    if isinstance(source, pipe.UnpairedSource):
        source, key = _OneDomain(source.b if direction == 'AtoB' else source.a), 'A'
    else:  # a paired A / B source (procedural recolor's test split)
        key = 'B' if direction == 'AtoB' else 'A'
    stream = pipe.PairedStream(source, global_batch=batch, seed=config.seed, start_step=0,
                               preprocess=preprocess_of(config, train=False), name=f'{config.dataset} ({split})',
                               process_index=None, process_count=None, prefetch=1)
    return stream, key


# ---------------------------------------------------------------------------- the stage


def _optimizers(config, spe: int):
    def sched(lr):
        return steps_lib.linear_decay(lr, spe, config.n_epochs, config.n_epochs_decay)
    if config.method == 'gaugan':
        return steps_lib.ttur(config.lr, sched, use=config.ttur, beta1=config.beta1, beta2=config.beta2)
    return steps_lib.adam(sched(config.lr), config.beta1), steps_lib.adam(sched(config.lr), config.beta1)


def _vgg(config):
    if config.method != 'gaugan' or not config.lambda_vgg:
        return None
    model, variables = convert.load_vgg19(config.vgg19)
    return functools.partial(model.apply, variables)


def make_steps(config, mesh, spe: int):
    gen, disc = build_models(config, axis_name=AXIS)
    g_tx, d_tx = _optimizers(config, spe)
    cfg = method_config(config)
    if config.method == 'pix2pix':
        return steps_lib.Pix2PixSteps(mesh, gen, disc, cfg, g_tx, d_tx)
    if config.method == 'cycle_gan':
        return steps_lib.CycleGANSteps(mesh, gen, disc, cfg, g_tx, d_tx)
    return steps_lib.GauGANSteps(mesh, gen, disc, cfg, g_tx, d_tx, vgg=_vgg(config), n_classes=config.n_classes,
                                 use_instance=config.use_instance)


def _input_shapes(config):
    """(generator input, discriminator input) shapes of one example."""
    w = config.resolution
    h = int(w / config.aspect_ratio) if config.method == 'gaugan' else w
    if config.method == 'gaugan':
        return (1, h, w, label_nc(config)), (1, h, w, label_nc(config) + 3)
    return (1, h, w, 3), (1, h, w, 6 if config.method == 'pix2pix' else 3)


def init_variables(config, rng):
    """Initial (generator, discriminator) variables: one network each, or {'A', 'B'} for CycleGAN."""
    gen, disc = build_models(config)
    g_shape, d_shape = _input_shapes(config)

    def one(k):
        g = gen.init({'params': jax.random.fold_in(k, 1), 'dropout': k}, jnp.zeros(g_shape))
        return g, disc.init(jax.random.fold_in(k, 2), jnp.zeros(d_shape))
    if config.method != 'cycle_gan':
        return one(rng)
    (ga, da), (gb, db) = one(jax.random.fold_in(rng, 10)), one(jax.random.fold_in(rng, 11))
    return {'A': ga, 'B': gb}, {'A': da, 'B': db}


def make_stage(config, workdir: str) -> loop.Stage:
    mesh = sharding.data_mesh()
    train_source = source_of(config, config.train_split)
    spe = max(1, len(train_source) // config.batch_size)
    steps = make_steps(config, mesh, spe)
    rng = jax.random.key(config.seed)

    def init_state(fresh: bool):
        del fresh  # initialization is a pure function of the seed; a checkpoint overwrites it
        g_vars, d_vars = init_variables(config, rng)
        pools = steps.init_pools(_input_shapes(config)[0][1:]) if config.method == 'cycle_gan' else None
        return steps.replicate(steps_lib.create_state(jax.random.fold_in(rng, 3), g_vars, d_vars, steps.g_tx,
                                                      steps.d_tx, pools=pools))

    test = test_batch(config)
    samples = functools.partial(sample_rows, config, test)

    def data(start: int):
        return make_stream(config, config.train_split, start, config.batch_size, source=train_source)

    return loop.Stage(
        name=config.name, init_state=init_state, programs=[loop.Program('step', steps.program())], data=data,
        shard_batch=steps.shard_batch, checked_trees=lambda s: (s.g_params, s.d_params), batch_size=config.batch_size,
        meta={'config': config.to_dict()}, samples=samples, export=lambda s: export(config, s, workdir),
        evaluate=functools.partial(evaluate, config, workdir=workdir) if config.eval_every else None)


def evaluate(config, state, step: int, writer, workdir: str) -> dict:
    """FID on ``config.test_split`` (both directions for CycleGAN), written as ``fid/<direction>``; with
    ``config.drn``, the Cityscapes mIoU too (``miou``)."""
    gen, _ = build_models(config)
    extractor, results = feature_extractor(config), {}
    for direction in ('AtoB', 'BtoA') if config.method == 'cycle_gan' else ('AtoB',):
        variables = g_variables(state, {'AtoB': 'A', 'BtoA': 'B'}[direction] if config.method == 'cycle_gan' else None)
        res = config.resolution
        reals = config.test_split + (f'+{config.train_split}' if _real_with_train(config) else '')
        stats = (config.fid_stats or os.path.join(
            workdir, 'fid_stats', f"{config.dataset.replace('/', '_')}_{reals}_{direction}_{res}.npz"))
        results[f'fid/{direction}'] = fid(config, gen, variables, extractor, direction=direction,
                                          batch_size=config.eval_batch_size,
                                          stats_path=stats.replace('{direction}', direction))
    if config.get('drn'):  # Cityscapes: the mIoU of the same generator on the same split
        results['miou'] = miou(config, gen, g_variables(state, None), segmenter_of(config.drn),
                               batch_size=config.eval_batch_size)['miou']
    if writer is not None:
        writer.write_scalars(step, results)
    return results


# ---------------------------------------------------------------------------- samples and export


@functools.lru_cache(maxsize=8)
def _apply(gen):
    return jax.jit(lambda v, x: gen.apply(v, x))


def generator_input(config, batch: dict):
    """What the generator takes from a (test) batch: ``A``, or SPADE's semantic input."""
    if config.method != 'gaugan':
        return batch['A']
    return semantic_input(batch['label'], config.n_classes, batch.get('instance') if config.use_instance else None)


def label_colors(n: int) -> np.ndarray:
    """uint8 [n, 3] colors of label ids: the procedural task's palette where it has one, else a fixed
    spread of hues (label maps in sample rows)."""
    if n <= len(procedural_img2img.LABEL_COLORS):
        return procedural_img2img.LABEL_COLORS[:n].astype(np.uint8)
    g = np.random.default_rng(n)
    return g.integers(0, 256, (n, 3), dtype=np.uint8)


def sample_rows(config, test: dict, state) -> np.ndarray:
    """One row per held-out example: input | output | target (pix2pix), A | G_A(A) | B | G_B(B)
    (cycle_gan), labels | output | image (gaugan)."""
    gen, _ = build_models(config)
    if config.method == 'cycle_gan':
        ab = to_uint8(_apply(gen)(g_variables(state, 'A'), test['A']))
        ba = to_uint8(_apply(gen)(g_variables(state, 'B'), test['B']))
        cols = [to_uint8(test['A']), ab, to_uint8(test['B']), ba]
    else:
        out = to_uint8(_apply(gen)(g_variables(state), generator_input(config, test)))
        if config.method == 'gaugan':
            labels = label_colors(config.n_classes + 1)[np.minimum(test['label'], config.n_classes)]
            cols = [labels, out, to_uint8(test['image'])]
        else:
            cols = [to_uint8(test['A']), out, to_uint8(test['B'])]
    return np.concatenate([np.concatenate(row, axis=1) for row in zip(*cols)], axis=0)


def variables_of(state, net: str = 'g', side=None) -> dict:
    """Process-local variables of the state's generator (``net='g'``) or discriminator (``'d'``);
    ``side``: CycleGAN's 'A' or 'B' network."""
    params, stats = getattr(state, f'{net}_params'), getattr(state, f'{net}_stats')
    if side is not None:
        params, stats = params[side], stats[side]
    return sharding.local_copy({'params': params, **stats})


def g_variables(state, side=None) -> dict:
    return variables_of(state, 'g', side)


def export(config, state, workdir: str) -> None:
    """The trained networks as model directories: ``generator`` / ``discriminator`` (CycleGAN's A -> B
    pair; its B -> A pair in ``generator_BtoA`` / ``discriminator_B``). ``convert.load_img2img_generator``
    reads them; ``convert.save_img2img_generator`` writes gan-compression's .pth."""
    gen, disc = build_models(config)
    sides = (('A', workdir_lib.GENERATOR, workdir_lib.DISCRIMINATOR), ('B', GENERATOR_BTOA, DISCRIMINATOR_B)) \
        if config.method == 'cycle_gan' else ((None, workdir_lib.GENERATOR, workdir_lib.DISCRIMINATOR),)
    for side, g_dir, d_dir in sides:
        modeldir.save(os.path.join(workdir, g_dir), gen, g_variables(state, side))
        modeldir.save(os.path.join(workdir, d_dir), disc, variables_of(state, 'd', side))
    log.info('exported the %s networks to %s', config.method, workdir)

