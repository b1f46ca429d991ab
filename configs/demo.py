r"""The embedded default: the paper's stage 1 -> stage 2 recipe in miniature, on one 2-core CPU.

What it reproduces: Anycost training as the paper does it (Sec. 3), on ``anycost_shapes``, the
dataset the package draws itself (colored discs, squares and rings on a gradient; no download),
at 16 px with outputs at 16 and 8 px, 48 channels in every layer. Two stages, run one after the
other by ``train_and_evaluate`` (a pipeline config, :func:`anycost_jax.train.config_lib.pipeline`):

1. ``multires`` (``WORKDIR/multires``): a full-width generator with multi-resolution outputs
   against the multi-resolution discriminator, from scratch (the paper tunes this stage from
   a trained StyleGAN2, which a demo does not have).
2. ``anycost`` (``WORKDIR/anycost``): elastic channels (uniform ratios 0.25..1) tuned, at half
   the learning rate, from stage 1's EMA generator with its channels sorted by importance,
   distilled from that frozen generator (MSE at every resolution), against stage 1's
   discriminator now conditioned on the sampled architecture.

Why two stages and not elastic channels from scratch: with the same images, a generator trained
with sampled widths from its first step learns clearly worse than a full-width one (measured at
16 px, 1000 steps each: the full-width runs drew separate discs and rings, every elastic run --
with or without distillation, with or without the conditioned D -- muddy mixed-color blobs).
Sub-networks need a good full network to be cut from and distilled toward, as in the paper.

Why 16 px and 48 channels: what this StyleGAN2 learns in 10 CPU minutes is bounded by the
images it sees, and a 16 px step costs far less than a 32 px one. Measured (same 2-core CPU,
``benchmarks/train_step.py``'s multires case, batch 16): 63 images/s at 32 px with 64/32
channels (the earlier demo: ~19k images in stage 1, compact mixed-color blobs), 301 at 16 px
with 48 channels, 468 with 32. With 32 channels (8 at 0.25x) stage 1 drew the cleanest shapes, but the 0.25x row
changed colors and lost shapes even after 4000 stage-2 steps or distillation weight 3; 48 (12 at
0.25x) keeps that row the same picture.

Hardware and time: under 10 minutes on a 2-core CPU, start-up, compilation and dataset
generation included (measured: 8 min 19 s from a fresh data directory, one CPU device, with a
benchmark holding the other core, so the run got one core: 487 s of CPU time; stages 1 and 2 at
~20 and ~16.5 steps/s. Before the CPU transposed-conv rewrite the same command took 8 min 0 s
on an idle machine using both cores, 1085 s of CPU). Expected result:
``WORKDIR/anycost/samples/00001500.png`` shows, for eight fixed z (untruncated), rows of widths
1, 0.75, 0.5, 0.25x and columns of resolutions 16 and 8: flat-colored discs, ellipses and
ring-like shapes in the dataset's four saturated colors on its muted backgrounds (two of the
eight were background only in the measured run), the same picture in every row (the 0.25x row
differs in details) and column. Edges are soft, not yet the dataset's crisp ones: stage 1 sees 96k
images. For a longer run use a new workdir and
``--config.stage.multires.num_steps=20000 --config.stage.anycost.num_steps=5000``; raising only
``stage.anycost.num_steps`` resumes stage 2 where it stopped.

    python launch/train.py --config=configs/demo.py --workdir=runs/demo
    tensorboard --logdir=runs/demo
"""
from anycost_jax.train import config_lib


def get_config(arg: str = ''):
    del arg
    c = config_lib.base_config()
    c.name = 'demo'
    c.dataset = 'anycost_shapes'
    c.resolution = 16
    c.model.style_dim = 64
    c.model.n_mlp = 2
    c.model.channel_multiplier = 1 / 16
    c.model.channel_max = 48             # 48 channels in every layer: 12 at 0.25x
    c.batch_size = 16
    c.r1 = 0.5                           # small images need a much smaller gamma than 1024 px faces
    c.g_reg_every = 0
    c.mixing_prob = 0.5
    c.half_life_kimg = 0.5               # an EMA that keeps up with a short run
    c.n_res, c.n_sampled_res = 2, 2      # 16 and 8 px, both every step: the masked step computes them anyway
    c.use_lpips = False                  # VGG features say little about 16 px images
    c.log_every = 200
    c.sample_every = 1000
    c.checkpoint_every = 1000
    c.n_samples = 8
    # No truncation: this early, truncating toward the mean w paints most samples in one color and
    # hides that the generator already covers the dataset's four colors and its backgrounds.
    c.sample_truncation = 1.0
    return config_lib.pipeline(c, [
        ('multires', dict(num_steps=6000, lr=0.002, channel_mode=None, conditioned_d=False, distill_weight=0.,
                          tune_from=None, teacher=None, sort_pretrain=False)),
        # Half the learning rate to fine-tune: in the earlier 32 px demo, at 0.002 this stage's 32 px outputs
        # picked up a per-pixel speckle between its steps 200 and 400; at 0.001 from the same stage 1 they
        # stayed clean and as consistent across widths.
        ('anycost', dict(num_steps=1500, lr=0.001, channel_mode='uniform', conditioned_d=True, distill_weight=1.,
                         tune_from=config_lib.PREVIOUS, teacher=config_lib.PREVIOUS, sort_pretrain=True)),
    ])
