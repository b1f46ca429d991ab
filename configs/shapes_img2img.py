r"""The image-to-image family's embedded default: the procedural shapes, on one 2-core CPU.

Data the package draws itself (no download): scenes of colored discs, squares and rings on a
gradient background (:mod:`anycost_jax.data.procedural_img2img`). ``get_config(arg)``:

* ``labels2image`` (the default): pix2pix (Isola et al. 2017, as gan-compression trains it: hinge
  GAN loss, L1 x 100, Adam 2e-4 with betas (0.5, 0.999), a conditional PatchGAN), label maps
  painted in class colors -> the rendered scene, with a MobileNet-ResNet generator (ngf 16, 9
  blocks) at 32 px;
* ``edges2image``: the same on the shapes' outlines -> the scene with each shape in its kind's
  color (discs red, squares blue, rings yellow: what an outline determines);
* ``recolor``: CycleGAN (Zhu et al. 2017: LSGAN, cycle x 10, identity x 0.5, pools of 50) from
  scenes with red and green shapes to scenes with yellow and blue ones (red -> yellow, green ->
  blue), never paired; two ResNet generators (ngf 8, 6 blocks);
* ``gaugan``: GauGAN (Park et al. 2019: hinge + feature matching x 10, TTUR) from one-hot label
  maps (13 classes) -> the scene with a SPADE generator (ngf 4, 'normal' upsampling, instance
  param-free norm), no VGG loss
  (lambda_vgg 0: VGG19 weights are not shipped; set ``--config.vgg19=<vgg19.pth>
  --config.lambda_vgg=10`` to add it).

* ``gs32`` / ``gs8``: GAN Slimming (Wang et al. 2020) compressing the ``recolor`` teacher (pass its
  workdir as ``--config.teacher``): distillation to the teacher's outputs (VGG16 perceptual x 20 +
  LSGAN through the teacher's D_A), channel pruning by the L1 proximal step on the affine norms'
  gammas (gamma SGD at 0.001, rho 2: see below), 8-bit weights and activations for ``gs8``; 4 epochs, batch 8,
  teacher outputs cached first (``launch/gs_cache.py``) or online (``teacher_cache`` empty). The
  workdir's ``extracted/`` is the pruned dense network; ``gs_finetune`` fine-tunes it
  (``--config.pretrained=<the gs32 / gs8 workdir>``), keeping the best by LPIPS to the teacher.
  Why not the upstream's gamma rate 0.1: a real instability, not a bug. The loss's curvature in the
  gammas at the start of slimming (``benchmarks/gs_gamma.py``, a 32 px ResNet ngf 16 teacher) is
  266 at 32 px and 91 at 64 px, falling with the image size; heavy-ball SGD (momentum 0.5) is
  stable only while lr * curvature < 3: 26.6 at 0.1, 2.7 at 0.01, 0.27 at 0.001. The proximal
  threshold rho * lr_gamma then sets how far the gammas are pushed per step (rho 2 at 0.1 would
  zero every gamma of 1 in 5 steps).

* ``crd_recolor`` / ``crd_labels2image``: CRD (content-relationship distillation with an online
  teacher discriminator, :mod:`anycost_jax.train.crd`) on recolor (CycleGAN: the recolor demo's
  teacher, ResNet ngf 8 with 6 blocks, trains online; every 2 teacher epochs its A -> B generator
  is scored by LPIPS against the test split's targets ('real/lpips', the offline measure: no FID
  weights needed), the best so far is frozen and a MobileNet-ResNet student of ngf 8 (6 blocks)
  trains 2 epochs on the RKD row / column / patch, VGG16 style / feature and LSGAN-through-D_A
  terms; 4 + 4 teacher epochs of 125 steps, 2000 steps in all) and on labels2image (pix2pix: the
  labels2image demo's teacher, MobileNet-ResNet ngf 16, and a student of ngf 8 step together,
  2000 steps). At 32 px the patches are 4 x 4 (64 per image, as 32 x 32 patches at 256 px). The
  upstream's teachers and students are MobileNet-ResNets of ngf 64 and 16 (``horse2zebra.py:crd``);
  these are sized for a CPU, where each student step's VGG16 (4 passes over the batch) dominates.

``compress``: GAN Compression's pipeline on labels2image, the family's embedded default
(teacher -> supernet -> search -> export, :mod:`anycost_jax.train.gan_compression_search`): the
pix2pix teacher above (800 steps), a once-for-all supernet of the same width over 16 / 12 / 8 (4
in the up-sampling layers) channels per entry, distilled from it (600 steps, the last 64 training
scenes held out), an evolutionary search of at most 10 MMACs (under half the teacher's 22.2)
scored by L1 to the teacher on those held-out scenes, and the export of what it found as our
model directory and the original's ``.pth``. It ends by printing ``WORKDIR/summary.md``: teacher /
largest / searched / uniform / smallest configurations with MACs, parameters, CPU latency and L1
/ PSNR / LPIPS against the ground truth and the teacher on 16 test scenes. Measured time
and table: README.md ("GAN Compression"). Run it again in the same workdir to resume.

Expected result: ``WORKDIR/samples/<step>.png`` shows one held-out scene per row: input | output |
target (pix2pix), A | A->B | B | B->A (CycleGAN), labels | output | target (GauGAN); shapes take
their label's (or the other palette's) color and the background its gradient. Times on this
machine: see README.md ("Image-to-image models").

    python launch/train.py --config=configs/shapes_img2img.py --workdir=runs/shapes_pix2pix
    python launch/train.py --config=configs/shapes_img2img.py:edges2image --workdir=runs/shapes_edges
    python launch/train.py --config=configs/shapes_img2img.py:recolor --workdir=runs/shapes_cyclegan
    python launch/train.py --config=configs/shapes_img2img.py:gaugan --workdir=runs/shapes_gaugan
    python launch/gs_cache.py --config=configs/shapes_img2img.py:gs32 --config.teacher=runs/shapes_cyclegan \
        --output=runs/shapes_teacher_cache.npz
    python launch/train.py --config=configs/shapes_img2img.py:gs32 --workdir=runs/shapes_gs32 \
        --config.teacher=runs/shapes_cyclegan --config.teacher_cache=runs/shapes_teacher_cache.npz
    python launch/train.py --config=configs/shapes_img2img.py:gs_finetune --workdir=runs/shapes_gs32_ft \
        --config.teacher=runs/shapes_cyclegan --config.pretrained=runs/shapes_gs32
    python launch/train.py --config=configs/shapes_img2img.py:crd_recolor --workdir=runs/shapes_crd_recolor
    python launch/train.py --config=configs/shapes_img2img.py:crd_labels2image --workdir=runs/shapes_crd_labels
    python launch/train.py --config=configs/shapes_img2img.py:compress --workdir=runs/shapes_compress
"""
from anycost_jax.data import procedural_img2img
from anycost_jax.train import config_lib, crd, gan_slimming, img2img

ARGS = ('labels2image', 'edges2image', 'recolor', 'gaugan', 'gs32', 'gs8', 'gs_finetune', 'crd_recolor',
        'crd_labels2image', 'compress')
COMPRESS_SPACE = '|'.join(['16,12,8'] * 6 + ['16,12,8,4'] * 2)  # channels-48 scaled to ngf 16


def crd_config(task: str):
    """CRD on the procedural ``task`` (recolor: CycleGAN; labels2image: pix2pix) at 32 px."""
    method = 'cycle_gan' if task == 'recolor' else 'pix2pix'
    c = crd.base_config(method)
    c.name = f'shapes_crd_{task}'
    c.dataset, c.test_split = img2img.PROCEDURAL + task, 'test'
    c.resolution, c.crd_patch = 32, 4
    # CPU-sized: the recolor / labels2image demos' teachers (depthwise convs are slow on XLA:CPU),
    # a MobileNet-ResNet student of the same base width (about 1/4 of their MACs)
    c.netG, c.ngf, c.n_blocks, c.ndf, c.n_layers_D = ('resnet', 8, 6, 16, 2) if method == 'cycle_gan' else \
        ('mobile_resnet', 16, 9, 16, 2)
    c.student_netG, c.student_ngf = 'mobile_resnet', 8  # n_blocks: the teacher's
    c.batch_size, c.n_epochs, c.n_epochs_decay = 8, 4, 4
    c.log_every, c.sample_every, c.checkpoint_every = 100, 500, 500
    c.n_samples, c.eval_batch_size = 6, 8
    if method == 'cycle_gan':
        c.train_examples, c.crd_every, c.n_dis, c.teacher_measure = 1000, 2, 1, 'real/lpips'
        c.num_steps = 4 * (2 + 2) * 125      # 4 cycles of 2 teacher + 2 student epochs of 125 steps
    else:
        c.train_examples, c.num_steps = 2000, 2000  # 250 steps per epoch
    return c


def compress_config():
    """The teacher -> supernet -> search -> export pipeline on labels2image (see the module docstring)."""
    from anycost_jax.train import gan_compression as gc
    teacher = get_config('labels2image')
    # 800 + 600 steps: what fits the 10 CPU minutes with the search and the summary
    teacher.num_steps, teacher.n_epochs, teacher.n_epochs_decay = 800, 2, 2
    teacher.sample_every, teacher.checkpoint_every, teacher.eval_batch_size = 800, 800, 64
    ref = config_lib.stage_ref
    supernet = gc.step_config('supernet', teacher, teacher=ref('teacher'), student_ngf=16, search_space=COMPRESS_SPACE,
                              holdout_examples=64, num_steps=600, n_epochs=1, n_epochs_decay=1, sample_every=600,
                              checkpoint_every=600, eval_metrics='quality')
    # L1 to the teacher: LPIPS-VGG costs ~0.1 CPU s per 32 px image here, too much for ~60 candidates x 64
    search = gc.step_config('search', teacher, supernet=ref('supernet'), budget=10e6, measure='teacher/l1',
                            population=16, iterations=4, mutate_prob=0.3, num_steps=0)
    export = gc.step_config('export', teacher, supernet=ref('supernet'), searched=ref('search'), budget=10e6,
                            summary_examples=16, num_steps=0)
    return gc.compression_pipeline('shapes_compress', [('teacher', teacher), ('supernet', supernet),
                                                       ('search', search), ('export', export)])


def get_config(arg: str = ''):
    arg = arg or 'labels2image'
    if arg not in ARGS:
        raise ValueError(f'configs/shapes_img2img.py:{arg}: expected one of {ARGS}')
    if arg.startswith('gs'):
        return _gs_config(arg)
    if arg.startswith('crd_'):
        return crd_config(arg[len('crd_'):])
    if arg == 'compress':
        return compress_config()
    method = {'recolor': 'cycle_gan', 'gaugan': 'gaugan'}.get(arg, 'pix2pix')
    c = img2img.base_config(method)
    c.name = f'shapes_{arg}'
    c.dataset = img2img.PROCEDURAL + ('labels2image' if arg == 'gaugan' else arg)
    c.test_split = 'test'
    c.resolution, c.aspect_ratio = 32, 1.
    c.train_examples = 2000
    c.n_epochs, c.n_epochs_decay = 4, 4
    c.log_every, c.sample_every, c.checkpoint_every = 100, 500, 500
    c.n_samples = 6
    if method == 'pix2pix':
        c.netG, c.ngf, c.n_blocks, c.ndf, c.n_layers_D = 'mobile_resnet', 16, 9, 16, 2
        c.batch_size, c.num_steps = 8, 2000                   # 250 steps per epoch
    elif method == 'cycle_gan':
        c.netG, c.ngf, c.n_blocks, c.ndf, c.n_layers_D = 'resnet', 8, 6, 16, 2
        c.batch_size, c.num_steps = 8, 2000
    else:
        c.netG, c.ngf, c.num_upsampling_layers, c.ndf, c.n_layers_D = 'spade', 4, 'normal', 16, 2
        c.n_classes, c.use_instance, c.lambda_vgg = procedural_img2img.N_CLASSES, False, 0.
        # Instance, not batch, param-free norm: at 32 px 'normal' up-sampling starts from a 1x1
        # latent fed by the label map's top-left pixel, nearly always background, so the first
        # blocks see one value per channel across the batch. Batch norm then trains on a variance
        # of ~1e-17 and its running statistics amplify any offset 300-fold at test time: the
        # samples saturated to flat black / white / cyan. Instance norm has no running statistics.
        c.param_free_norm = 'instance'
        c.batch_size, c.num_steps = 8, 2000
    return c


def _gs_config(arg: str):
    """GAN Slimming of the recolor teacher (its generator A -> B and D_A): 2000 scenes, 250 steps an epoch."""
    c = gan_slimming.base_config('finetune' if arg == 'gs_finetune' else 'slim')
    c.name = f'shapes_{arg}'
    c.dataset, c.test_split = img2img.PROCEDURAL + 'recolor', 'test'
    c.resolution, c.train_examples, c.test_examples = 32, 2000, 64
    c.teacher_netG = 'resnet_6blocks'
    c.rho, c.lr_gamma, c.quant_bits = 2., 1e-3, 8 if arg == 'gs8' else 32
    c.lr = 1e-4 if arg == 'gs_finetune' else 1e-5
    c.batch_size, c.n_epochs = 8, 4
    c.num_steps = c.n_epochs * 250
    c.log_every, c.sample_every, c.checkpoint_every, c.n_samples = 50, 250, 250, 6
    if arg == 'gs_finetune':
        c.eval_every, c.eval_metrics, c.eval_batch_size = 250, 'quality', 16
    return c
