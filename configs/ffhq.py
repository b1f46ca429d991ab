r"""FFHQ 1024, config-f: the paper's three training stages (Lin et al., CVPR 2021, Sec. 3 and 4).

``get_config(arg)``, arg one of:

* ``stylegan2`` (stage 0): a plain StyleGAN2 generator, single-resolution D, path length
  regularization. 781k steps at batch 32 (25M images, the original's 357 epochs).
  Expected: FID ~2.8 at 1024 (the released stylegan2-ffhq-config-f).
* ``multires`` (stage 1): 4 output resolutions (1024..128), 2 sampled per step, distilled from
  the stage-0 generator (``teacher``) and tuned from it (``tune_from``); 43.75k steps (20 epochs).
  Expected: FID ~3.0 at 1024 and consistent lower resolutions (paper Table 1).
* ``anycost`` (stage 2): elastic channels (uniform ratios 0.25..1), channels sorted from the
  stage-1 generator, D conditioned on the sampled architecture, distillation from the stage-1
  generator; 284k steps (130 epochs). Expected: FID ~3 at full cost, usable previews at every
  width (paper Table 2, Fig. 5); the released anycost-ffhq-config-f.
* ``anycost-flexible``: as ``anycost`` with the sandwich rule over per-layer ratios
  (``channel_mode='sandwich'``), for the flexible search space (anycost-ffhq-config-f-flexible).
* ``pipeline``: ``stylegan2`` -> ``multires`` -> ``anycost`` as one run (a pipeline config, see
  :func:`anycost_jax.train.config_lib.pipeline`), each stage exactly its config above, in
  ``WORKDIR/<stage>``; stage 1 tunes from and distills from stage 0 and stage 2 from stage 1
  (``@previous``). To start from the released StyleGAN2 instead of training stage 0, run the
  single stages.

Hardware: the original used 8 V100 for days per stage; here a TPU v4-32 / v5e-32 pod or 8+ A100
(global batch 32 over every device). FFHQ is read from a local folder or zip of the 70k PNGs
(``manual_dir``), prepared once into TFDS ArrayRecord files.

    python launch/train.py --config=configs/ffhq.py:stylegan2 --workdir=runs/ffhq-s0 \
        --config.manual_dir=/data/ffhq/images1024x1024
    python launch/train.py --config=configs/ffhq.py:multires --workdir=runs/ffhq-s1 \
        --config.tune_from=runs/ffhq-s0 --config.teacher=runs/ffhq-s0
    python launch/train.py --config=configs/ffhq.py:anycost --workdir=runs/ffhq-s2 \
        --config.tune_from=runs/ffhq-s1 --config.teacher=runs/ffhq-s1
    python launch/train.py --config=configs/ffhq.py:pipeline --workdir=runs/ffhq \
        --config.manual_dir=/data/ffhq/images1024x1024      # the three in one run

``tune_from`` / ``teacher`` also take the original's checkpoints (``stylegan2-ffhq-config-f.pt``,
a URL, or a directory written by ``launch/convert.py``).
"""
from anycost_jax.train import config_lib
from anycost_jax.train.config_lib import base_config

STAGES = ('stylegan2', 'multires', 'anycost', 'anycost-flexible')
PIPELINE = ('stylegan2', 'multires', 'anycost')


def get_config(arg: str = 'anycost'):
    if arg == 'pipeline':
        return _pipeline()
    if arg not in STAGES:
        raise ValueError(f'configs/ffhq.py:{arg}: unknown stage; expected one of {STAGES + ("pipeline",)}')
    c = base_config()
    c.name = f'ffhq-{arg}'
    c.dataset = 'ffhq'
    c.resolution = 1024
    c.batch_size = 32
    c.checkpoint_every = 70_000 // 32    # about one epoch, as the original
    c.sample_every = 1000
    if arg == 'stylegan2':
        c.num_steps = 781_250
        return c
    # Stages 1 and 2: multi-resolution, distilled from a full-width teacher, no path length.
    c.n_res, c.n_sampled_res = 4, 2
    c.g_reg_every = 0
    c.distill_weight = 2.
    c.tune_from = None
    if arg == 'multires':
        c.num_steps = 43_750
        return c
    c.num_steps = 284_375
    c.channel_mode = 'uniform' if arg == 'anycost' else 'sandwich'
    c.conditioned_d = True
    c.sort_pretrain = True
    return c


def _pipeline():
    """The stages of ``PIPELINE`` chained: the fields where their configs differ are stage fields."""
    configs = {name: get_config(name).to_dict() for name in PIPELINE}
    first = configs[PIPELINE[0]]
    differ = {k for k in first if k != 'name' and any(c[k] != first[k] for c in configs.values())}
    differ |= {'tune_from', 'teacher'}
    stages = []
    for i, name in enumerate(PIPELINE):
        fields = {k: configs[name][k] for k in sorted(differ)}
        if i:  # each stage starts from, and distills from, the one before (the paper's recipe)
            fields.update(tune_from=config_lib.PREVIOUS, teacher=config_lib.PREVIOUS)
        stages.append((name, fields))
    shared = get_config(PIPELINE[0])
    shared.name = 'ffhq'
    return config_lib.pipeline(shared, stages)
