r"""pix2pix on edges2shoes-r, as GAN Compression trains its teacher (Li et al., CVPR 2020, Table 1).

``get_config(arg)``: ``full`` (the default): the ResNet teacher (resnet_9blocks, ngf 64), the
original's ``scripts/pix2pix/edges2shoes-r/train_full.sh``: hinge GAN loss, L1 x 100, a 3-layer
PatchGAN of ndf 128, Adam 2e-4 (0.5, 0.999), batch 4, 5 epochs + 15 of linear decay,
resize_and_crop 286 -> 256 with flips. ``mobile``: the same with the MobileNet-ResNet generator
(mobile_resnet_9blocks), GAN Compression's starting point for distillation. ``distill`` (its
``distill.sh``): a MobileNet-ResNet student of ngf 48 pruned from the mobile teacher by L1 norm and
distilled from it (L1 x 100 to the real photos, hinge, feature distillation x 1 through four 1x1
adapters), its D from the teacher's; pass ``--config.teacher=runs/edges2shoes_mobile``.
``supernet`` (its ``train_supernet.sh``): the once-for-all student of ngf 48 over ``channels-48``
from the distill run's student and D, 10 + 30 epochs; the original trains it on a part of the
training pairs (``train1.meta``) and searches on the rest: ``--config.holdout_examples=N`` keeps
the last N out, for ``gan_compression.search_supernet(workdir, budget)``.

``crd`` / ``crd_unet``: CRD (TheKernelZ/CRD's ``scripts/{resnet,unet}_pix2pix/edges2shoes/
distill.sh``, :mod:`anycost_jax.train.crd`): a teacher (mobile_resnet_9blocks, or unet_256 with
batch norm, ngf 64) trains online from scratch (hinge, L1 x 100, ndf 128) and every step the
student (the same architecture, ngf 16) learns from its output: 2.5 x RKD row / column / patch +
2 x (1e4 Gram style + 10 relu2_2 feature), no adversarial term; batch 4, 100 + 100 epochs.

``compress`` (GAN Compression as one pipeline, each step in ``WORKDIR/<step>``): ``mobile`` teacher ->
``distill`` -> ``supernet`` (the last 2000 training pairs held out, as the original's train2 split)
-> brute-force ``search`` of ``channels-48`` under 4.9e9 MACs -> ``finetune`` (5 + 15 epochs, the
original's ``finetune.sh``) -> ``export``. ``compress_fast`` (Fast GAN Compression): the ``full``
teacher -> a ``channels-64-pix2pix`` supernet of ngf 64 from scratch (10 + 30 epochs) -> evolution
under 4.9e9 MACs (mutate probability 0.3) -> export. Fitness ``measure='fid'`` (registered by the
FID protocol; ``--config.stage.search.measure=real/lpips`` needs no Inception).

Data: the pix2pix release of edges2shoes-r (``<dir>/train/*.jpg``, ``<dir>/val/*.jpg``, each image
edges | photo side by side), read from ``--config.manual_dir`` and prepared once into TFDS
ArrayRecord files under ``--config.data_dir``; nothing is downloaded.

Expected: FID about 24 on the val split for the full model (24.18 in the paper's Table 1, against
the val photos' Inception statistics). The original trained on one GPU for about a day.

    python launch/train.py --config=configs/edges2shoes.py --workdir=runs/edges2shoes \
        --config.manual_dir=/data/edges2shoes-r --config.data_dir=~/tensorflow_datasets
    python launch/train.py --config=configs/edges2shoes.py:distill --workdir=runs/edges2shoes_distill \
        --config.manual_dir=/data/edges2shoes-r --config.teacher=runs/edges2shoes_mobile
    python launch/train.py --config=configs/edges2shoes.py:supernet --workdir=runs/edges2shoes_supernet \
        --config.manual_dir=/data/edges2shoes-r --config.teacher=runs/edges2shoes_mobile \
        --config.pretrained=runs/edges2shoes_distill --config.discriminator=runs/edges2shoes_distill
    python launch/train.py --config=configs/edges2shoes.py:crd --workdir=runs/edges2shoes_crd \
        --config.manual_dir=/data/edges2shoes-r
    python launch/train.py --config=configs/edges2shoes.py:compress_fast --workdir=runs/edges2shoes_fast \
        --config.manual_dir=/data/edges2shoes-r
"""
from anycost_jax.train import crd, gan_compression, img2img

ARGS = ('full', 'mobile', 'distill', 'supernet', 'crd', 'crd_unet', 'compress', 'compress_fast')
BUDGET = 4.9e9  # the original's evolution_search.sh


def compress_pipeline(fast: bool):
    gc = gan_compression
    supernet = get_config('supernet')
    supernet.holdout_examples = 2000
    if fast:
        supernet.update(student_ngf=64, search_space='channels-64-pix2pix')
        search = gc.step_config('search', supernet, budget=BUDGET, measure='fid', mutate_prob=0.3)
        return gc.fast_pipeline('edges2shoes_compress_fast', get_config('full'), supernet, search)
    search = gc.step_config('search', supernet, budget=BUDGET, measure='fid', search_method='brute_force')
    finetune = gc.step_config('finetune', get_config('distill'), num_steps=20 * (49825 // 4))
    return gc.full_pipeline('edges2shoes_compress', get_config('mobile'), get_config('distill'), supernet, search,
                            finetune)


def get_config(arg: str = ''):
    arg = arg or 'full'
    if arg not in ARGS:
        raise ValueError(f'configs/edges2shoes.py:{arg}: expected one of {ARGS}')
    if arg.startswith('compress'):
        return compress_pipeline(arg == 'compress_fast')
    if arg.startswith('crd'):
        c = crd.base_config('pix2pix')
        c.name = f'edges2shoes_{arg}'
        c.dataset, c.train_split, c.test_split = 'paired_images/edges2shoes-r', 'train', 'val'
        if arg == 'crd_unet':
            c.netG, c.student_netG, c.norm = 'unet', 'unet', 'batch'
        c.batch_size = 4
        c.num_steps = (c.n_epochs + c.n_epochs_decay) * (49825 // 4)
        c.log_every, c.sample_every, c.checkpoint_every = 100, 5000, 5000
        return c
    compress = arg in ('distill', 'supernet')
    c = gan_compression.base_config(arg) if compress else img2img.base_config('pix2pix')
    c.name = f'edges2shoes_{arg}'
    c.dataset, c.train_split, c.test_split = 'paired_images/edges2shoes-r', 'train', 'val'
    if not compress:
        c.netG = 'resnet' if arg == 'full' else 'mobile_resnet'
    if arg == 'supernet':
        c.n_epochs, c.n_epochs_decay = 10, 30
    c.batch_size = 4
    # 5 + 15 epochs (supernet: 10 + 30) of the 49825 training pairs at batch 4
    c.num_steps = (c.n_epochs + c.n_epochs_decay) * (49825 // 4)
    c.log_every, c.sample_every, c.checkpoint_every = 100, 5000, 5000
    return c
