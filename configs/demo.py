r"""The embedded default: a short anycost run on the procedural shapes, on one 2-core CPU.

What it reproduces, in miniature: stage 2 of the paper (elastic channels, uniform ratios
0.25..1, multi-resolution outputs 32/16/8, D conditioned on the
sampled architecture, distillation of every sub-generator from the full one) trained from
scratch on ``anycost_shapes``, the dataset the package generates itself (colored discs,
squares and rings on a gradient; no download). With no pretrained teacher at hand, the
teacher is this run's own EMA generator at full width (in-place distillation,
``teacher='ema'``), which keeps the widths consistent while they learn together.

Hardware and time: about 8 minutes on a 2-core CPU (measured: 600 steps took 10 min with
start-up and compilation, about 1.2 steps/s; the dataset is generated once, ~20 s). Expected
result: ``WORKDIR/samples/00000450.png`` shows, for four fixed z (untruncated), rows of widths
1, 0.75, 0.5, 0.25x and columns of resolutions 32, 16, 8: soft blobs of the dataset's saturated
colors (yellow, blue, red, green) placed on the dataset's muted backgrounds, with the same
picture along each row and column. At this budget (about 7k images seen) the blobs are not yet
crisp discs, squares and rings; more steps sharpen them (``--config.num_steps=5000``,
resumable). Measured while tuning: the step costs about as much per image at batch 16 as at 64
(2 cores are compute-bound), so a bigger batch does not buy images; no distillation, a simpler
dataset (one large shape on a flat background) or r1 0.2-2 gave the same soft blobs at 450 steps.

    python launch/train.py --config=configs/demo.py --workdir=runs/demo
    tensorboard --logdir=runs/demo
"""
from anycost_jax.train.config_lib import base_config


def get_config(arg: str = ''):
    del arg
    c = base_config()
    c.name = 'demo'
    c.dataset = 'anycost_shapes'
    c.resolution = 32
    c.model.style_dim = 64
    c.model.n_mlp = 2
    c.model.channel_multiplier = 1 / 16  # 64 channels up to 16 px, 32 at 32 px
    c.model.channel_max = 64
    c.batch_size = 16
    c.num_steps = 450
    c.r1 = 0.5                           # small images need a much smaller gamma than 1024 px faces
    c.g_reg_every = 0
    c.mixing_prob = 0.5
    c.half_life_kimg = 0.5               # an EMA that keeps up with a short run
    c.n_res, c.n_sampled_res = 3, 3          # masked steps compute every resolution anyway: train them all
    c.channel_mode = 'uniform'
    c.conditioned_d = True
    c.distill_weight = 1.
    c.use_lpips = False                  # VGG features say little about 32 px images
    c.teacher = 'ema'
    c.log_every = 50
    c.sample_every = 150
    c.checkpoint_every = 150
    # No truncation: this early, truncating toward the mean w paints most samples in one color and
    # hides that the generator already covers the dataset's four colors and its backgrounds.
    c.sample_truncation = 1.0
    return c
