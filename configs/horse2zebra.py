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

``gs32`` / ``gs8`` (GAN Slimming, Wang et al. ECCV 2020, ``gs.py --rho 0.01 [--quant]``): the dense
CycleGAN A -> B generator distilled into itself with VGG16 perceptual x 20 + LSGAN, its affine
norms' gammas pruned by the proximal step (rho 0.01, gamma SGD 0.1 momentum 0.5; Adam 1e-5, weight
decay 1e-3), 8-bit for ``gs8``; 200 epochs of cosine decay, batch 8 (133 steps an epoch over the
1067 horses), 256 px images as they are. Its teacher: the upstream's dense
``netG_A2B_epoch_199.pth`` (``--config.teacher_format=gs``, D ``netD_B_epoch_199.pth``) or our
``full`` run's workdir; its outputs are cached first by ``launch/gs_cache.py``. ``gs_finetune``
(``finetune.py``): the extracted network, Adam 1e-4, batch 16, 200 epochs, the best by FID on
testA kept in ``WORKDIR/best``. The dense network is 52.90 G MACs in the upstream's units (2^30),
our 56.8G; the compressed networks' MACs and FID are the paper's Table 1 (not reproduced here).

``crd``: CRD (TheKernelZ/CRD's ``scripts/cycle_gan/horse2zebra/distill.sh``,
:mod:`anycost_jax.train.crd`): a MobileNet-ResNet teacher (ngf 64) trains online from scratch
with the CycleGAN losses; every 10 teacher epochs its A -> B generator is scored by FID on testA
(pytorch-fid's Inception, against the zebra statistics) and the best so far is frozen; a
MobileNet-ResNet student of ngf 16 (1.41G MACs at 256 px) then trains 4 x 10 epochs (n_dis 4)
with 25 x RKD row / column / patch + 1e4 x Gram style + 10 x relu2_2 feature + LSGAN through
the teacher's D_A, and the teacher resumes: 200 teacher epochs, 20 cycles.

``compress`` (GAN Compression's whole recipe as one pipeline, each step in ``WORKDIR/<step>``):
``mobile`` teacher -> ``distill`` -> ``supernet`` (the last 100 training images of each domain held
out) -> brute-force ``search`` of ``channels-32`` under 3e9 MACs -> ``finetune`` of the found
sub-network (100 + 100 epochs, distilled from the teacher, D from the supernet) -> ``export``
(``generator/``, ``compressed_net_G.pth``, ``summary.md``). ``compress_fast`` (Fast GAN Compression):
the ``full`` ResNet teacher -> a ``channels-64-cycleGAN`` supernet of ngf 64 from scratch (weighted
sampling 2) -> evolution under 3e9 MACs (mutate probability 0.4) -> export. The search's fitness is
``measure='fid'`` (the original's), which the FID protocol registers in
``gan_compression_search.FITNESS``; ``--config.stage.search.measure=teacher/lpips`` needs no Inception.

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
    python launch/gs_cache.py --config=configs/horse2zebra.py:gs32 --config.manual_dir=/data/horse2zebra \
        --config.teacher=runs/horse2zebra --output=runs/horse2zebra_teacher_cache.npz
    python launch/train.py --config=configs/horse2zebra.py:gs32 --workdir=runs/horse2zebra_gs32 \
        --config.manual_dir=/data/horse2zebra --config.teacher=runs/horse2zebra \
        --config.teacher_cache=runs/horse2zebra_teacher_cache.npz
    python launch/train.py --config=configs/horse2zebra.py:gs_finetune --workdir=runs/horse2zebra_gs32_ft \
        --config.manual_dir=/data/horse2zebra --config.teacher=runs/horse2zebra \
        --config.pretrained=runs/horse2zebra_gs32
    python launch/train.py --config=configs/horse2zebra.py:crd --workdir=runs/horse2zebra_crd \
        --config.manual_dir=/data/horse2zebra
    python launch/train.py --config=configs/horse2zebra.py:compress --workdir=runs/horse2zebra_compress \
        --config.manual_dir=/data/horse2zebra
"""
from anycost_jax.train import crd, gan_compression, gan_slimming, img2img

ARGS = ('full', 'mobile', 'distill', 'supernet', 'gs32', 'gs8', 'gs_finetune', 'crd', 'compress', 'compress_fast')
H2Z_HORSES = 1067  # trainA
BUDGET = 3e9  # the original's evolution_search.sh
STEPS_PER_EPOCH = 1334


def compress_pipeline(fast: bool):
    gc = gan_compression
    if fast:
        supernet = get_config('supernet')
        supernet.update(student_ngf=64, search_space='channels-64-cycleGAN', weighted_sample=2., holdout_examples=100)
        search = gc.step_config('search', supernet, budget=BUDGET, measure='fid', mutate_prob=0.4)
        return gc.fast_pipeline('horse2zebra_compress_fast', get_config('full'), supernet, search)
    supernet = get_config('supernet')
    supernet.holdout_examples = 100
    search = gc.step_config('search', supernet, budget=BUDGET, measure='fid', search_method='brute_force')
    finetune = gc.step_config('finetune', get_config('distill'), gan_mode='lsgan', lambda_recon=10.,
                              lambda_distill=0.01, n_epochs=100, n_epochs_decay=100,
                              num_steps=200 * STEPS_PER_EPOCH)
    return gc.full_pipeline('horse2zebra_compress', get_config('mobile'), get_config('distill'), supernet, search,
                            finetune)


def get_config(arg: str = ''):
    arg = arg or 'full'
    if arg not in ARGS:
        raise ValueError(f'configs/horse2zebra.py:{arg}: expected one of {ARGS}')
    if arg.startswith('compress'):
        return compress_pipeline(arg == 'compress_fast')
    if arg.startswith('gs'):
        c = gan_slimming.base_config('finetune' if arg == 'gs_finetune' else 'slim')
        c.name = f'horse2zebra_{arg}'
        c.dataset, c.train_split, c.test_split = 'unpaired_images/horse2zebra', 'train', 'test'
        c.rho, c.quant_bits = 0.01, 8 if arg == 'gs8' else 32
        c.num_steps = c.n_epochs * (H2Z_HORSES // c.batch_size)
        c.log_every, c.sample_every, c.checkpoint_every = 50, 1330, 1330
        if arg == 'gs_finetune':  # FID every 10 epochs (the original: in the second half)
            c.eval_every, c.eval_metrics = 10 * (H2Z_HORSES // c.batch_size), 'fid'
        return c
    if arg == 'crd':
        c = crd.base_config('cycle_gan')
        c.name = 'horse2zebra_crd'
        c.dataset, c.train_split, c.test_split = 'unpaired_images/horse2zebra', 'train', 'test'
        c.crd_every, c.n_dis = 10, 4
        epochs, spe = c.n_epochs + c.n_epochs_decay, 1334
        c.num_steps = epochs // c.crd_every * (1 + c.n_dis) * c.crd_every * spe
        c.log_every, c.sample_every, c.checkpoint_every = 100, 5000, 10000
        return c
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
