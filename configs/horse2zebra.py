r"""CycleGAN on horse2zebra, as GAN Compression trains its teacher (Li et al., CVPR 2020, Table 1).

``get_config(arg)``: ``full`` (the default): the original's ``scripts/cycle_gan/horse2zebra/
train_full.sh``: two ResNet generators (resnet_9blocks, ngf 64, instance norm), two 3-layer
PatchGANs (ndf 64), LSGAN, cycle x 10 each way, identity x 0.5, image pools of 50, Adam 2e-4
(0.5, 0.999), batch 1, 100 epochs + 100 of linear decay, resize_and_crop 286 -> 256 with flips.
``mobile``: MobileNet-ResNet generators (mobile_resnet_9blocks), the teacher GAN Compression
compresses. ``distill`` (GAN Compression's ``distill.sh``): a MobileNet-ResNet student of ngf 32
pruned from that teacher by L1 norm, distilled from it with pseudo-pairs (reconstruction x 10 to
the teacher's outputs), LSGAN, feature distillation x 0.01 through four 1x1 adapters, its D from
the teacher's D_A, 100 + 100 epochs; pass ``--config.teacher=runs/horse2zebra_mobile``.
``supernet`` (its ``train_supernet.sh``): the once-for-all student of ngf 32 over the
``channels-32`` search space, from the distill run's student and D, the same losses, 200 + 200
epochs; then ``gan_compression.search_supernet(workdir, budget)`` finds and exports a sub-network
(hold training examples out for it with ``--config.holdout_examples``; the original searched on
a validation split of horses).

Data: the CycleGAN release of horse2zebra (``<dir>/trainA``, ``trainB``, ``testA``, ``testB``) from
``--config.manual_dir``, prepared once into TFDS ArrayRecord files; nothing is downloaded. An
epoch is max(|A|, |B|) = 1334 steps; B is drawn at random for each A, as the original.

Expected: FID about 61.5 for A -> B on testA against the zebra statistics (61.53 in the paper's
Table 1). The original trained on one GPU for about two days.

    python launch/train.py --config=configs/horse2zebra.py --workdir=runs/horse2zebra \
        --config.manual_dir=/data/horse2zebra --config.data_dir=~/tensorflow_datasets
    python launch/train.py --config=configs/horse2zebra.py:mobile --workdir=runs/horse2zebra_mobile \
        --config.manual_dir=/data/horse2zebra
    python launch/train.py --config=configs/horse2zebra.py:distill --workdir=runs/horse2zebra_distill \
        --config.manual_dir=/data/horse2zebra --config.teacher=runs/horse2zebra_mobile
    python launch/train.py --config=configs/horse2zebra.py:supernet --workdir=runs/horse2zebra_supernet \
        --config.manual_dir=/data/horse2zebra --config.teacher=runs/horse2zebra_mobile \
        --config.pretrained=runs/horse2zebra_distill --config.discriminator=runs/horse2zebra_distill
"""
from anycost_jax.train import gan_compression, img2img


def get_config(arg: str = ''):
    arg = arg or 'full'
    if arg not in ('full', 'mobile', 'distill', 'supernet'):
        raise ValueError(f"configs/horse2zebra.py:{arg}: expected 'full', 'mobile', 'distill' or 'supernet'")
    if arg in ('distill', 'supernet'):
        c = gan_compression.base_config(arg)
        c.dataset, c.train_split, c.test_split = 'unpaired_images/horse2zebra', 'train', 'test'
        c.name, c.student_ngf, c.ndf, c.gan_mode = f'horse2zebra_{arg}', 32, 64, 'lsgan'
        c.lambda_recon, c.lambda_distill, c.n_epochs, c.n_epochs_decay = 10., 0.01, 100, 100
        if arg == 'supernet':
            c.search_space, c.n_epochs, c.n_epochs_decay = 'channels-32', 200, 200
        c.num_steps = (c.n_epochs + c.n_epochs_decay) * 1334
        c.log_every, c.sample_every, c.checkpoint_every = 100, 5000, 10000
        return c
    c = img2img.base_config('cycle_gan')
    c.name = f'horse2zebra_{arg}'
    c.dataset, c.train_split, c.test_split = 'unpaired_images/horse2zebra', 'train', 'test'
    c.netG = 'resnet' if arg == 'full' else 'mobile_resnet'
    c.num_steps = 200 * 1334
    c.log_every, c.sample_every, c.checkpoint_every = 100, 5000, 10000
    return c
