"""The experiment ConfigDict shared by every config file, and what the trainer derives from it.

Every file in ``configs/`` starts from :func:`base_config` and overrides fields, so every run
is overridden the same way on the command line (``--config.batch_size=64``). The defaults are
the original's FFHQ 1024 config-f training (``tools/train_gan.py`` and ``scripts/``):

* Adam, lr 0.002, betas (0, 0.99), for G and D; global batch 32 (8 GPUs x 4);
* lazy R1 10 every 16 steps; path length 2 every 8 steps, batch shrink 2 (stage 0 only);
* style mixing probability 0.9; G EMA half-life 10k images;
* multi-resolution: 4 resolutions, 2 sampled per step; distillation weight 2 (MSE at every
  output resolution + LPIPS-VGG); elastic channels: min channel 8, widths divisible by 4.

A *pipeline* config (:func:`pipeline`) chains stages the way the paper trains (multi-resolution
first, then elastic channels tuned from it, sorted, and distilled from it): the shared fields
once at the top, each stage's own fields under ``stage.<name>``, run in the order of
``pipeline``, each in ``WORKDIR/<name>``; :data:`PREVIOUS` in ``tune_from`` / ``teacher`` names
the stage before, ``'@stage:NAME'`` (:func:`stage_ref`) in any string field an earlier stage.
Stages of other families than Anycost are checked by their family when they start (their inputs
are the earlier stages' results); a method in :data:`TASKS` trains nothing (no ``num_steps``).
"""
from __future__ import annotations

import copy

import ml_collections
from ml_collections import config_dict


CHANNEL_MODES = ('uniform', 'flexible', 'sandwich')  # elastic.SAMPLING_MODES; no jax import here
# The run shape a checkpoint must match to be resumed (everything else may change on resume,
# e.g. num_steps, logging intervals).
RESUME_KEYS = ('resolution', 'model', 'n_res', 'channel_mode', 'conditioned_d', 'dataset', 'seed', 'batch_size')
# In a pipeline stage's tune_from / teacher: the previous stage's work directory.
PREVIOUS = '@previous'
# In any string field of a pipeline stage: '@stage:NAME' is the work directory of the earlier stage NAME.
STAGE_REF = '@stage:'
# Pipeline steps that train nothing (a family runs them with run_task): num_steps does not apply.
TASKS = ('search', 'export')


def stage_ref(name: str) -> str:
    """The value that names stage ``name``'s work directory in a later stage's field."""
    return STAGE_REF + name


def resolve_refs(config: ml_collections.ConfigDict, stage_dirs: dict) -> list[str]:
    """Replaces every ``'@stage:NAME'`` field of ``config`` by ``stage_dirs[NAME]``; returns the fields
    replaced. ValueError for a name that is not an earlier stage."""
    done = []
    for key, value in config.items():
        if isinstance(value, str) and value.startswith(STAGE_REF):
            name = value[len(STAGE_REF):]
            if name not in stage_dirs:
                raise ValueError(f'config: {key}={value!r} names no earlier stage (earlier: {sorted(stage_dirs)})')
            config[key] = stage_dirs[name]
            done.append(key)
    return done


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = 'stylegan2'                 # a label for logs
    # ---- data
    c.dataset = 'ffhq'                   # 'ffhq', 'anycost_shapes' or a prepared TFDS catalog image dataset
    c.data_dir = config_dict.placeholder(str)    # TFDS data dir (default ~/tensorflow_datasets)
    c.manual_dir = config_dict.placeholder(str)  # FFHQ: a folder or zip of the images
    c.flip = True                        # horizontal flips (same flip at every resolution)
    # ---- models
    c.resolution = 1024
    c.model = ml_collections.ConfigDict(dict(style_dim=512, n_mlp=8, channel_multiplier=2., channel_max=512))
    # ---- optimization
    c.batch_size = 32                    # global, over every device of every host
    # D's minibatch-stddev statistics (and one sampled sub-network) cover a group of 4 images on
    # one device. Fewer than 4 images per device shrink the group (the original allows it too):
    # refused unless asked for here, e.g. for a 1024 px model that fits 2 images per device.
    c.allow_small_stddev_group = False
    c.num_steps = 781_250                # 25M images at batch 32
    c.lr = 0.002
    c.r1 = 10.
    c.d_reg_every = 16
    c.path_regularize = 2.               # stage 0 only; g_reg_every = 0 turns it off
    c.g_reg_every = 8
    c.path_batch_shrink = 2
    c.mixing_prob = 0.9
    c.half_life_kimg = 10.
    # Mixed precision: G and D blocks at resolutions >= bf16_from_res compute in bfloat16 (0: off).
    # Parameters, optimizer states, losses, R1 and path-length penalties stay float32. A speed-up
    # on GPUs and TPUs for the high-resolution blocks; on CPU it is slower.
    c.bf16_from_res = 0
    # ---- anycost
    c.n_res = 1                          # output resolutions trained (the highest n_res)
    c.n_sampled_res = 1                  # of which this many per step
    c.channel_mode = config_dict.placeholder(str)  # None: full width; 'uniform', 'flexible', 'sandwich'
    c.min_channel = 8
    c.divided_by = 4
    c.conditioned_d = False              # D modulated by G's architecture code
    c.sort_pretrain = False              # sort tune_from's channels by importance first
    c.distill_weight = 0.                # > 0 needs a teacher
    c.use_lpips = True
    c.tune_from = config_dict.placeholder(str)  # initial G (g_ema) and D: .pt, URL, model dir or workdir
    # Of a stage workdir tune_from: 'latest' checkpoint, or 'best' (its best-FID export, as the
    # original tunes from ckpt-best.pt; needs fid in that run's eval_metrics).
    c.tune_from_checkpoint = 'latest'
    c.teacher = config_dict.placeholder(str)    # frozen full generator; 'ema': this run's own EMA G
    # ---- bookkeeping
    c.seed = 0
    c.log_every = 100
    c.sample_every = 1000
    c.n_samples = 4                      # fixed z of the sample grids
    c.sample_truncation = 0.5
    c.checkpoint_every = 2000
    c.keep_checkpoints = 3
    c.eval_every = 0                     # 0: no periodic evaluation
    # Names in anycost_jax.eval.evaluate.METRICS: the built-in 'macs', 'fid', 'consistency', 'ppl'
    # and any registered with evaluate.register; every trained width x resolution.
    c.eval_metrics = ()
    c.fid_stats = ''                     # real statistics with {res}; '': WORKDIR/fid_stats/DATASET_{res}.npz
    c.inception = ''                     # pytorch-fid weights file or URL; '': downloaded once, cached
    c.eval_n_fid = 50_000                # images per FID (fakes; reals when statistics are made)
    c.eval_n_consistency = 1000
    c.eval_n_ppl = 100_000
    return c


def pipeline(shared: ml_collections.ConfigDict, stages) -> ml_collections.ConfigDict:
    """A config that runs ``stages`` (``[(name, {field: value})]``) in order on ``shared``.

    A field any stage sets is owned by the stages: at the top level it becomes an unset
    placeholder, and :func:`check` refuses a value there, so an override goes only where it
    takes effect: ``--config.batch_size=8`` for every stage, ``--config.stage.NAME.num_steps``
    for one (``--config.num_steps`` is an error that says so, not a silently ignored value).
    """
    c = copy.deepcopy(shared)
    names = [name for name, _ in stages]
    if not names or len(set(names)) != len(names):
        raise ValueError(f'pipeline: stage names must be unique and at least one, got {names}')
    with c.unlocked():
        for _, fields in stages:
            for key in fields:
                if key not in shared or isinstance(shared[key], ml_collections.ConfigDict):
                    raise ValueError(f'pipeline: stage field {key!r} is not a (non-nested) config field')
                c[key] = config_dict.placeholder(shared.get_type(key))
        c.pipeline = tuple(names)
        c.stage = ml_collections.ConfigDict({name: dict(fields) for name, fields in stages})
    return c


def stage_configs(config) -> list[tuple[str, ml_collections.ConfigDict]]:
    """``[(name, full config)]`` of a pipeline config, in order (a single-stage config: ``[('', config)]``).

    ``PREVIOUS`` is left in place: the trainer replaces it with the previous stage's workdir.
    """
    if 'pipeline' not in config:
        return [('', config)]
    missing = [n for n in config.pipeline if n not in config.stage]
    if missing:
        raise ValueError(f'config: pipeline stages {missing} have no config.stage.<name> entry')
    owned = {k: [n for n in config.pipeline if k in config.stage[n]] for n in config.pipeline for k in config.stage[n]}
    for key, names in owned.items():
        if config.get(key) is not None:
            raise ValueError(f'config: {key} is set per stage in this pipeline ({", ".join(names)}): use '
                             + ' / '.join(f'--config.stage.{n}.{key}' for n in names) + f' instead of --config.{key}')
    shared = {k: v for k, v in config.to_dict().items() if k not in ('pipeline', 'stage')}
    out = []
    for name in config.pipeline:
        c = ml_collections.ConfigDict({**shared, **config.stage[name].to_dict()})
        c.name = f'{config.name}-{name}'
        out.append((name, c))
    return out


def check(config) -> None:
    """Raises ValueError for a config that cannot run, saying which field to change."""
    if 'pipeline' in config:
        earlier = {}
        for i, (name, c) in enumerate(stage_configs(config)):
            if i == 0 and PREVIOUS in (c.get('tune_from'), c.get('teacher')):
                raise ValueError(f'config: the first stage ({name}) has no previous stage for tune_from / teacher')
            try:
                resolve_refs(c, earlier)
            except ValueError as e:
                raise ValueError(f'{e} (in stage {name!r}: config.stage.{name})') from None
            earlier[name] = name
            if c.get('family', 'anycost') != 'anycost':
                continue  # the other families' checks need the earlier stages' results: the trainer runs them
            try:
                check(c)
            except ValueError as e:
                raise ValueError(f'{e} (in stage {name!r}: config.stage.{name})') from None
        return

    def need(ok, msg):
        if not ok:
            raise ValueError(f'config: {msg}')
    need(config.resolution >= 8 and config.resolution & (config.resolution - 1) == 0,
         f'resolution={config.resolution} must be a power of two >= 8')
    need(config.batch_size >= 1 and (config.get('method') in TASKS or config.num_steps >= 1),
         'batch_size and num_steps must be positive')
    need(config.bf16_from_res == 0 or config.bf16_from_res in [4 * 2 ** i for i in range(9)],
         f'bf16_from_res={config.bf16_from_res!r}; expected 0 (off) or a power of two from 4 to 1024')
    need(config.channel_mode in (None,) + CHANNEL_MODES,
         f'channel_mode={config.channel_mode!r}; expected None, {", ".join(CHANNEL_MODES)}')
    need(not config.conditioned_d or config.channel_mode is not None,
         'conditioned_d=True needs elastic channels (set channel_mode)')
    need(not config.conditioned_d or config.n_res > 1,
         'conditioned_d=True needs the multi-resolution discriminator (n_res > 1), as in the original')
    need(config.distill_weight == 0 or config.teacher,
         f'distill_weight={config.distill_weight} needs a teacher: --config.teacher=PATH (a .pt, URL, model '
         f"directory or workdir of a full-width generator) or --config.teacher=ema (this run's own EMA)")
    for k in ('d_reg_every', 'log_every', 'sample_every', 'checkpoint_every', 'keep_checkpoints'):
        need(config[k] >= 1, f'{k}={config[k]} must be >= 1')
    need(config.eval_every == 0 or config.eval_metrics, 'eval_every > 0 needs eval_metrics')
    need(config.tune_from_checkpoint in ('latest', 'best'),
         f"tune_from_checkpoint={config.tune_from_checkpoint!r}; expected 'latest' or 'best'")
