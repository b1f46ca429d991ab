r"""The embedded default: the paper's stage 1 -> stage 2 recipe in miniature, on one 2-core CPU.

Reproduces Anycost training as the paper does it (Sec. 3) on ``anycost_shapes``, the dataset
the package draws itself (colored discs, squares and rings; no download), at 16 px with outputs
at 16 and 8 px, 32 channels at 16 px and 64 at 8 and 4 px (StyleGAN2's channels-double-per-halving
table, scaled by 1/32 and capped at 64). A pipeline of two stages:

1. ``multires`` (``WORKDIR/multires``): a full-width generator with multi-resolution outputs
   against the multi-resolution discriminator, from scratch (the paper tunes this stage from a
   trained StyleGAN2, which a demo does not have).
2. ``anycost`` (``WORKDIR/anycost``): elastic channels (uniform ratios 0.25..1) tuned at half
   the learning rate from stage 1's EMA generator, its channels sorted by importance, distilled
   from that frozen generator, against stage 1's discriminator conditioned on the architecture.

Elastic channels from scratch learn clearly worse than this two-stage recipe; 16 px and a few
dozen channels are what a CPU can learn in minutes (``benchmarks/README.md`` has the measurements).
The generator cannot be trained at 4 px: the multi-resolution discriminator needs at least one
block before its 4x4 head (``n_res <= log2(16) - 2``), so 4 px is not an output the demo offers.

Hardware and time: under 10 minutes on a 2-core CPU, compilation and dataset generation
included (README.md says what was measured, under what load). Expected result:
``WORKDIR/anycost/samples/00001200.png`` shows, for eight fixed z, rows of widths 1, 0.75, 0.5,
0.25x and columns of resolutions 16 and 8: flat-colored discs and ellipses in the dataset's
colors, edges still soft; the 0.75 and 0.5x rows the same shapes with other details, the 0.25x
row blurrier with drifting colors. For a longer run use a new workdir and
``--config.stage.multires.num_steps=20000 --config.stage.anycost.num_steps=5000``.

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
    # 32 channels at 16 px, 64 at 8 and 4 px. Channels must grow toward low resolution, as in
    # StyleGAN2's table: the original's width rule scales every resolution's base width by the
    # ratio and then clamps at channel_max, so a layer clamped at full width stays at it for
    # ratios down to channel_max / base. With 48 channels everywhere the widths 1, 0.75 and
    # 0.5x were the same network at 8 px; here every ratio has its own 8 px and 16 px widths.
    c.model.channel_multiplier = 1 / 32
    c.model.channel_max = 64
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
        ('multires', dict(num_steps=4500, lr=0.002, channel_mode=None, conditioned_d=False, distill_weight=0.,
                          tune_from=None, teacher=None, sort_pretrain=False)),
        # Half the learning rate to fine-tune: in the earlier 32 px demo, at 0.002 this stage's 32 px outputs
        # picked up a per-pixel speckle between its steps 200 and 400; at 0.001 from the same stage 1 they
        # stayed clean and as consistent across widths.
        ('anycost', dict(num_steps=1200, lr=0.001, channel_mode='uniform', conditioned_d=True, distill_weight=1.,
                         tune_from=config_lib.PREVIOUS, teacher=config_lib.PREVIOUS, sort_pretrain=True)),
    ])
