r"""Cityscapes label maps -> street photos: GauGAN and pix2pix teachers as GAN Compression trains them
(Li et al., CVPR 2020, Table 1).

``get_config(arg)``:

* ``gaugan`` (the default): the original's ``scripts/gaugan/cityscapes/train_full.sh``: a SPADE
  generator with spectral norm (``spectralspadesyncbatch3x3``: batch norm synchronized over all
  devices), ngf 64, 'more' upsampling layers, 256x512 output (scale_width 512, aspect ratio 2),
  35 label classes + instance edges; the 2-scale, 4-layer spectral-instance-norm discriminator
  (ndf 64); hinge + feature matching x 10 + VGG19 x 10; TTUR (G 1e-4, D 4e-4, betas (0, 0.9));
  batch 16 over every device; 100 epochs + 100 of linear decay. Needs torchvision's VGG19
  weights: ``--config.vgg19=/path/to/vgg19-dcbb9e9d.pth``.
* ``pix2pix``: ``scripts/pix2pix/cityscapes/train_full.sh``: pix2pix's AB release of Cityscapes
  (photo | label colors), direction BtoA, resnet_9blocks, batch 1, 100 + 150 epochs.

GAN Compression of the pix2pix model as pipelines (each step in ``WORKDIR/<step>``; budget 5.7e9
MACs, fitness ``measure='miou'``, which is not yet registered as a search fitness in
``gan_compression_search.FITNESS``: until it is, the precheck stops and names the measure to pass
instead, e.g. ``--config.stage.search.measure=teacher/lpips``):

* ``pix2pix_compress``: a MobileNet-ResNet teacher of ngf 96 (``pix2pix_mobile``) -> ``distill`` (ngf
  48, 100 + 150 epochs) -> ``supernet`` (``channels-48``, 200 + 300 epochs, the last 500 training
  pairs held out) -> brute-force ``search`` -> ``finetune`` (100 + 150 epochs) -> ``export``;
* ``pix2pix_compress_fast``: the full teacher -> a ``channels-64-pix2pix`` supernet of ngf 64 from
  scratch (200 + 300 epochs) -> evolution (mutate probability 0.3) -> export.

``gaugan_compress`` / ``gaugan_compress_fast`` (budget 32e9) need the SPADE supernet, not built yet:
they say so.

Data: ``gaugan`` reads the original Cityscapes folders (``gtFine/`` with ``*_labelIds.png`` and
``*_instanceIds.png``, ``leftImg8bit/``) from ``--config.manual_dir``; ``pix2pix`` the pix2pix
release (``<dir>/train``, ``<dir>/val``). Both are prepared once into TFDS ArrayRecord files;
nothing is downloaded.

Expected: mIoU (DRN-D-105 on the 500 val images) about 62 for GauGAN (62.18 in the paper) and 42
for pix2pix (42.06), as ``launch/evaluate.py --img2img_config=configs/cityscapes.py:<arg> --checkpoint=<generator>
--metrics=miou --drn=drn-d-105_ms_cityscapes.pth`` measures it (README.md). The original trained
GauGAN on 8 GPUs for several days.

    python launch/train.py --config=configs/cityscapes.py:gaugan --workdir=runs/cityscapes_gaugan \
        --config.manual_dir=/data/cityscapes --config.vgg19=/data/vgg19-dcbb9e9d.pth
    python launch/train.py --config=configs/cityscapes.py:pix2pix --workdir=runs/cityscapes_pix2pix \
        --config.manual_dir=/data/cityscapes_pix2pix
"""
from anycost_jax.train import gan_compression, img2img

ARGS = ('gaugan', 'pix2pix', 'pix2pix_mobile', 'pix2pix_compress', 'pix2pix_compress_fast', 'gaugan_compress',
        'gaugan_compress_fast')
BUDGETS = {'pix2pix': 5.7e9, 'gaugan': 32e9}  # the original's evolution_search.sh
STEPS_PER_EPOCH = 2975  # pix2pix, batch 1


def compress_pipeline(fast: bool):
    gc = gan_compression
    teacher = get_config('pix2pix' if fast else 'pix2pix_mobile')

    def stage(method, epochs, **kw):
        c = gc.step_config(method, teacher, lambda_recon=100., gan_mode='hinge', n_epochs=epochs[0],
                           n_epochs_decay=epochs[1], num_steps=sum(epochs) * STEPS_PER_EPOCH, **kw)
        c.teacher_netG = 'resnet_9blocks' if fast else 'mobile_resnet_9blocks'
        return c
    supernet = stage('supernet', (200, 300), holdout_examples=500,
                     **(dict(student_ngf=64, search_space='channels-64-pix2pix') if fast else {}))
    search = gc.step_config('search', teacher, budget=BUDGETS['pix2pix'], measure='miou',
                            **(dict(mutate_prob=0.3) if fast else dict(search_method='brute_force')))
    if fast:
        return gc.fast_pipeline('cityscapes_pix2pix_compress_fast', teacher, supernet, search)
    return gc.full_pipeline('cityscapes_pix2pix_compress', teacher, stage('distill', (100, 150)), supernet, search,
                            stage('finetune', (100, 150)))


def get_config(arg: str = ''):
    arg = arg or 'gaugan'
    if arg not in ARGS:
        raise ValueError(f'configs/cityscapes.py:{arg}: expected one of {ARGS}')
    if arg.startswith('gaugan_compress'):
        raise ValueError(f'configs/cityscapes.py:{arg}: GauGAN\'s compression needs the SPADE supernet (its '
                         'once-for-all training over the channels-48 / channels-64 SPADE search spaces), which is '
                         f'not built yet; the pix2pix ones run: {[a for a in ARGS if a.startswith("pix2pix_c")]}')
    if arg.startswith('pix2pix_compress'):
        return compress_pipeline(arg.endswith('fast'))
    if arg == 'gaugan':
        c = img2img.base_config('gaugan')  # its defaults are Cityscapes'
        c.spectral_G = True
        c.num_steps = 200 * (2975 // 16)
    else:  # pix2pix, pix2pix_mobile (GAN Compression's teacher: train_mobile.sh, ngf 96)
        c = img2img.base_config('pix2pix')
        c.dataset, c.train_split, c.test_split, c.direction = 'paired_images/cityscapes', 'train', 'val', 'BtoA'
        c.n_epochs, c.n_epochs_decay = 100, 150
        c.num_steps = 250 * STEPS_PER_EPOCH
        if arg == 'pix2pix_mobile':
            c.netG, c.ngf = 'mobile_resnet', 96
    c.name = f'cityscapes_{arg}'
    c.log_every, c.sample_every, c.checkpoint_every = 100, 5000, 10000
    return c
