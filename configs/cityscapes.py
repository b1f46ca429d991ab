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

Data: ``gaugan`` reads the original Cityscapes folders (``gtFine/`` with ``*_labelIds.png`` and
``*_instanceIds.png``, ``leftImg8bit/``) from ``--config.manual_dir``; ``pix2pix`` the pix2pix
release (``<dir>/train``, ``<dir>/val``). Both are prepared once into TFDS ArrayRecord files;
nothing is downloaded.

Expected: mIoU (DRN-D-105 on the 500 val images) about 62 for GauGAN (62.18 in the paper) and 42
for pix2pix (42.06); the mIoU evaluation is not part of this repository yet. The original trained
GauGAN on 8 GPUs for several days.

    python launch/train.py --config=configs/cityscapes.py:gaugan --workdir=runs/cityscapes_gaugan \
        --config.manual_dir=/data/cityscapes --config.vgg19=/data/vgg19-dcbb9e9d.pth
    python launch/train.py --config=configs/cityscapes.py:pix2pix --workdir=runs/cityscapes_pix2pix \
        --config.manual_dir=/data/cityscapes_pix2pix
"""
from anycost_jax.train import img2img


def get_config(arg: str = ''):
    arg = arg or 'gaugan'
    if arg == 'gaugan':
        c = img2img.base_config('gaugan')  # its defaults are Cityscapes'
        c.spectral_G = True
        c.num_steps = 200 * (2975 // 16)
    elif arg == 'pix2pix':
        c = img2img.base_config('pix2pix')
        c.dataset, c.train_split, c.test_split, c.direction = 'paired_images/cityscapes', 'train', 'val', 'BtoA'
        c.n_epochs, c.n_epochs_decay = 100, 150
        c.num_steps = 250 * 2975
    else:
        raise ValueError(f"configs/cityscapes.py:{arg}: expected 'gaugan' or 'pix2pix'")
    c.name = f'cityscapes_{arg}'
    c.log_every, c.sample_every, c.checkpoint_every = 100, 5000, 10000
    return c
