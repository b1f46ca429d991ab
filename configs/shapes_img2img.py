r"""The image-to-image family's embedded default: pix2pix on the procedural shapes, on one 2-core CPU.

Reproduces pix2pix training (Isola et al. 2017, as gan-compression runs it: hinge GAN loss,
L1 x 100, Adam 2e-4 with betas (0.5, 0.999), a conditional 3-layer PatchGAN) on
``shapes_img2img``, data the package draws itself (no download): label maps of colored discs,
squares and rings -> the rendered scene (``get_config('labels2image')``, the default), or their
outlines -> the scene (``get_config('edges2image')``). A small MobileNet-ResNet generator
(ngf 16, 9 blocks) at 32 px.

Expected result: ``WORKDIR/samples/<step>.png`` shows rows of input | output | target on
held-out scenes; the output's shapes take their label's color and the background its gradient.
The exact time and quality on this machine are not measured yet (the family's first config).

    python launch/train.py --config=configs/shapes_img2img.py --workdir=runs/shapes_pix2pix
    python launch/train.py --config=configs/shapes_img2img.py:edges2image --workdir=runs/shapes_edges
"""
from anycost_jax.train import img2img


def get_config(arg: str = ''):
    task = arg or 'labels2image'
    c = img2img.base_config()
    c.name = f'shapes_{task}'
    c.dataset = img2img.DATASET_PREFIX + task
    c.resolution = 32
    c.netG, c.ngf, c.n_blocks = 'mobile_resnet', 16, 9
    c.ndf, c.n_layers_D = 16, 2
    c.batch_size = 8
    c.train_examples = 2000
    c.n_epochs, c.n_epochs_decay = 4, 4        # 250 steps per epoch
    c.num_steps = 2000
    c.log_every, c.sample_every, c.checkpoint_every = 100, 500, 500
    c.n_samples = 6
    return c
