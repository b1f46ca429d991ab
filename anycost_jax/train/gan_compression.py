"""GAN Compression (Li et al., CVPR 2020) as a family of :mod:`anycost_jax.train.loop`: its
``distill`` stage (a fixed, narrower student distilled from a trained teacher), its ``supernet``
stage (a once-for-all student: every sub-network of a search space at once) and the search of
that supernet under a MAC budget (:func:`search_supernet`).

``config.method = 'distill'`` (gan-compression's ``distill.py --distiller resnet``): the student, a
MobileNet-ResNet (or ResNet) generator of base width ``student_ngf``, starts from ``pretrained``
(default: the teacher) pruned by the L1 norm of its filters (:func:`anycost_jax.models.img2img.resnet.prune`,
the original's ``load_pretrained_weight``), and its discriminator from ``discriminator`` (default: the
teacher run's); it trains with :class:`anycost_jax.train.img2img_steps.DistillSteps`: GAN +
reconstruction (to the real target on paired data; to the teacher's output on unpaired data: the
pseudo-pairs that make CycleGAN's compression paired learning) + the adapters' feature distillation.

The teacher, ``pretrained`` and ``discriminator`` are any of: one of our training workdirs (its
exported ``generator/`` / ``discriminator/``; for CycleGAN its A -> B pair), one of our model
directories, or gan-compression's ``.pth`` (with ``teacher_netG``). Data, preprocessing,
samples and FID are the image-to-image family's (:mod:`anycost_jax.train.img2img`).

``config.method = 'supernet'`` (``train_supernet.py --supernet resnet``): the same iteration, but
the student is a super network of base width ``student_ngf`` and every device draws its own
sub-network of ``config.search_space`` each step (uniformly, or with ``weighted_sample`` > 1 the
original's weights), as masks: one compiled program for every configuration. It starts from
``pretrained`` as it is when that is ``student_ngf`` wide (the original's
``--restore_student_G_path``: e.g. the ``distill`` stage's workdir), else pruned from it (default:
the teacher). ``holdout_examples`` > 0 keeps the last examples of the training split out of
training, for the search. With ``eval_every``, the largest and the smallest configuration are
evaluated (``eval/largest/...``, ``eval/smallest/...``: ``eval_metrics`` 'fid' and / or 'quality',
the L1, PSNR and LPIPS of :mod:`anycost_jax.eval.img2img_quality` against the real targets and
the teacher's outputs on ``test_split``). The export is the super generator (``generator/``, all
widths); :func:`search_supernet` finds and exports a sub-network. ``pretrained='scratch'``: a
MobileNet-ResNet student freshly initialized from the seed (Fast GAN Compression's supernet).

``config.method = 'finetune'`` (the original's ``finetune.sh``: ``train_supernet.py --config_str``):
the distill iteration on a fixed sub-network: ``searched`` (a search step's workdir or an exported
sub-network, as it is) or the supernet in ``pretrained`` exported at ``config_str``; its D from
``discriminator`` (the supernet's); the export is that dense sub-network.

``'search'`` and ``'export'`` are pipeline steps that train nothing
(:mod:`anycost_jax.train.gan_compression_search`); :func:`full_pipeline` (GAN Compression) and
:func:`fast_pipeline` (Fast GAN Compression) chain the stages as ``configs/*.py`` arguments.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Optional

import jax
import ml_collections
import numpy as np

from anycost_jax import convert, modeldir, sharding
from anycost_jax import workdir as workdir_lib
from anycost_jax.data import img2img_pipeline as pipe
from anycost_jax.elastic import img2img as rules
from anycost_jax.losses import distill_img2img as distill
from anycost_jax.models.img2img import resnet
from anycost_jax.render import to_uint8
from anycost_jax.train import img2img
from anycost_jax.train import img2img_steps as steps_lib
from anycost_jax.train import loop

log = logging.getLogger(__name__)

METHODS = ('distill', 'supernet', 'finetune')
TASKS = ('search', 'export')  # pipeline steps that train nothing (:mod:`.gan_compression_search`)
RESUME_KEYS = ('method', 'dataset', 'resolution', 'teacher', 'teacher_netG', 'pretrained', 'student_ngf',
               'discriminator', 'seed', 'batch_size', 'gan_mode', 'direction', 'preprocess', 'load_size',
               'search_space', 'weighted_sample', 'weight_strategy', 'holdout_examples', 'searched', 'config_str',
               'supernet', 'budget', 'search_method', 'measure', 'search_split', 'population', 'iterations',
               'num_shards')
EVAL_METRICS = ('fid', 'quality')
PAIRED_TASKS = ('labels2image', 'edges2image')


def base_config(method: str = 'distill') -> ml_collections.ConfigDict:
    """The stage's defaults (gan-compression's ``base_resnet_distiller`` options): student ngf 48,
    lambda_recon 100, lambda_distill 1, lambda_gan 1, L1 reconstruction, hinge loss, Adam 2e-4
    (0.5, 0.999), the base options' 5 + 15 epochs; the supernet's ``--config_set channels-48``,
    uniform sampling (``weighted_sample`` 1, 'arithmetic' weights above 1); the data fields are
    the image-to-image family's (:func:`anycost_jax.train.img2img.base_config`)."""
    if method not in METHODS + TASKS:
        raise ValueError(f'method={method!r}: the gan_compression family has {METHODS + TASKS}')
    c = img2img.base_config('pix2pix')
    c.family, c.method, c.name = 'gan_compression', method, method
    c.eval_metrics = 'fid,quality'      # with eval_every: what the student (largest / smallest configs) gets
    everything = method in TASKS        # a search / export step's config is also a pipeline's shared one
    if method == 'supernet' or everything:  # only there: a distill run's config (and its resume) is as before
        c.search_space = 'channels-48'  # a name of elastic.img2img.RESNET_SEARCH_SPACES, or the lists
        c.weighted_sample, c.weight_strategy = 1., 'arithmetic'
        c.holdout_examples = 0          # the last training examples kept out of training, for the search
    if method == 'finetune' or everything:
        c.searched = ''                 # the sub-network to fine-tune: a search step's workdir or a model dir
        c.config_str = ''               # or this configuration of the supernet in `pretrained`
    if everything:
        from anycost_jax.train import gan_compression_search as gcs
        gcs.add_task_fields(c)
    c.teacher, c.teacher_netG = '', 'mobile_resnet_9blocks'  # a workdir, model dir or .pth (+ its --netG)
    c.pretrained = ''                   # the student's initialization before pruning ('': the teacher)
    c.discriminator = ''                # '': the teacher run's discriminator
    c.student_ngf = 48
    c.lambda_distill = 1.
    c.netG = ''                         # taken from the teacher (the student is the same architecture)
    return c


# the fields a pipeline's GAN Compression steps take from its teacher stage: data, sizes, bookkeeping
DATA_FIELDS = ('dataset', 'data_dir', 'manual_dir', 'train_split', 'test_split', 'train_examples', 'test_examples',
               'direction', 'preprocess', 'load_size', 'no_flip', 'resolution', 'aspect_ratio', 'batch_size', 'seed',
               'log_every', 'sample_every', 'checkpoint_every', 'keep_checkpoints', 'n_samples', 'eval_batch_size',
               'inception', 'fid_stats', 'ndf', 'n_layers_D', 'netD', 'norm')


def step_config(method: str, data: ml_collections.ConfigDict, **fields) -> ml_collections.ConfigDict:
    """:func:`base_config` of ``method`` with ``data``'s :data:`DATA_FIELDS` (e.g. the teacher's
    config) and ``fields`` on top: one step of a compression pipeline."""
    c = base_config(method)
    for k in DATA_FIELDS:
        if k in data:
            c[k] = data[k]
    c.update(fields)
    return c


def compression_pipeline(name: str, stages) -> ml_collections.ConfigDict:
    """A :func:`anycost_jax.train.config_lib.pipeline` of complete stage configs ``[(name, config)]``
    (the teacher an image-to-image config, the others :func:`step_config` s): each stage keeps what
    differs from the shared config (a search step's :func:`base_config` with the teacher's data), and a
    field any stage sets is set in every stage (its shared value where the stage has none), so no
    stage reads an unset placeholder. ``'@stage:NAME'`` values name earlier stages' workdirs."""
    from anycost_jax.train import config_lib
    shared = step_config('search', stages[0][1])
    shared.name = name
    own = []
    for stage, c in stages:
        extra = [k for k in c if k not in shared]
        if extra:
            raise ValueError(f'compression_pipeline: stage {stage!r} has fields the shared config lacks: {extra}')
        own.append((stage, {k: v for k, v in c.items() if k != 'name' and v != shared[k]}))
    owned = {k for _, f in own for k in f}
    return config_lib.pipeline(shared, [(stage, {**{k: shared[k] for k in owned}, **f}) for stage, f in own])


def full_pipeline(name: str, teacher, distill, supernet, search, finetune) -> ml_collections.ConfigDict:
    """GAN Compression (Li et al. 2020): the (MobileNet) ``teacher`` -> a ``distill`` ed student pruned
    from it -> the ``supernet`` from that student and its D -> ``search`` -> ``finetune`` the found
    sub-network (D from the supernet) -> export. The stages' references are set here."""
    from anycost_jax.train import config_lib
    ref = config_lib.stage_ref
    distill.update(teacher=ref('teacher'), pretrained='', discriminator='')
    supernet.update(teacher=ref('teacher'), pretrained=ref('distill'), discriminator=ref('distill'))
    search.update(supernet=ref('supernet'), num_steps=0)
    finetune.update(teacher=ref('teacher'), searched=ref('search'), discriminator=ref('supernet'))
    export = step_config('export', teacher, supernet=ref('supernet'), searched=ref('finetune'),
                         budget=search.budget, num_steps=0)
    return compression_pipeline(name, [('teacher', teacher), ('distill', distill), ('supernet', supernet),
                                       ('search', search), ('finetune', finetune), ('export', export)])


def fast_pipeline(name: str, teacher, supernet, search) -> ml_collections.ConfigDict:
    """Fast GAN Compression (Li et al. 2022): the full ``teacher`` -> the ``supernet`` trained from scratch
    (``pretrained='scratch'``), distilled from it -> evolutionary ``search`` -> export (no fine-tuning)."""
    from anycost_jax.train import config_lib
    ref = config_lib.stage_ref
    supernet.update(teacher=ref('teacher'), pretrained=SCRATCH)
    search.update(supernet=ref('supernet'), search_method='evolution', num_steps=0)
    export = step_config('export', teacher, supernet=ref('supernet'), searched=ref('search'), budget=search.budget,
                         num_steps=0)
    return compression_pipeline(name, [('teacher', teacher), ('supernet', supernet), ('search', search),
                                       ('export', export)])


def paired(config) -> bool:
    """Aligned data (pix2pix) or unaligned (CycleGAN), from the dataset."""
    task = config.dataset[len(img2img.PROCEDURAL):] if config.dataset.startswith(img2img.PROCEDURAL) else None
    if task is not None:
        return task in PAIRED_TASKS
    return config.dataset.split('/')[0] == 'paired_images'


def data_config(config) -> ml_collections.ConfigDict:
    """The image-to-image family's view of this config: its data functions read pix2pix's paired
    streams or CycleGAN's unpaired ones."""
    c = config.copy_and_resolve_references()
    c.family, c.method = 'img2img', 'pix2pix' if paired(config) else 'cycle_gan'
    c.netG = 'resnet'
    return c


def _run_part(path: str, part: str) -> str:
    """A training workdir -> its exported ``part`` (``generator`` / ``discriminator``); anything else as given."""
    local = convert.resolve_path(path) if not path.startswith(('http://', 'https://')) else path
    if os.path.isdir(local) and not os.path.isfile(os.path.join(local, modeldir.MODEL_FILE)) \
            and os.path.isdir(os.path.join(local, part)):
        return os.path.join(path, part)
    return path


def load_teacher(config):
    if not config.teacher:
        raise ValueError('config.teacher is empty: pass the trained teacher (a training workdir, a model directory '
                         'or a gan-compression .pth with config.teacher_netG), e.g. --config.teacher=runs/horse2zebra')
    gen, variables = convert.load_img2img_generator(_run_part(config.teacher, workdir_lib.GENERATOR),
                                                    netG=config.teacher_netG)
    if not isinstance(gen, resnet.ResnetGenerator) or gen.widths is not None:
        raise ValueError(f'config.teacher={config.teacher!r} is a {type(gen).__name__}'
                         f'{" sub-network" if getattr(gen, "widths", None) else ""}; the ResNet distiller takes a '
                         'full ResNet or MobileNet-ResNet generator')
    return gen, variables


def load_student(config, teacher):
    """The initialization, pruned to ``student_ngf`` (the supernet's taken as it is when already that
    wide, and clamping its input as the original's super network): ``(student, variables)``."""
    if config.method == 'finetune':
        return finetune_student(config)
    if config.pretrained == SCRATCH:
        return scratch_student(config, teacher[0])
    if config.pretrained:
        gen, variables = convert.load_img2img_generator(_run_part(config.pretrained, workdir_lib.GENERATOR),
                                                        netG=config.teacher_netG)
    else:
        gen, variables = teacher
    if config.student_ngf > gen.ngf:
        raise ValueError(f'config.student_ngf={config.student_ngf} is wider than the network it is pruned from '
                         f'(ngf {gen.ngf}); a student is at most as wide')
    if config.method != 'supernet':
        return resnet.prune(gen, variables, config.student_ngf)
    if gen.widths is not None:
        raise ValueError(f'config.pretrained={config.pretrained!r} is a sub-network; the supernet starts from a '
                         'full-width generator')
    if gen.ngf != config.student_ngf:
        gen, variables = resnet.prune(gen, variables, config.student_ngf)
    return gen.clone(clamp_input=True), variables


SCRATCH = 'scratch'  # config.pretrained: a freshly initialized student (Fast GAN Compression's supernet)


def scratch_student(config, teacher):
    """A MobileNet-ResNet student of ``student_ngf`` (the teacher's block count), initialized from the
    seed (Fast GAN Compression trains its supernet from scratch, distilled from a full teacher)."""
    import jax.numpy as jnp
    gen = resnet.MobileResnetGenerator(input_nc=teacher.input_nc, output_nc=teacher.output_nc, ngf=config.student_ngf,
                                       n_blocks=teacher.n_blocks, norm=teacher.norm,
                                       clamp_input=config.method == 'supernet')
    x = jnp.zeros((1, config.resolution, config.resolution, teacher.input_nc), jnp.float32)
    return gen, jax.jit(gen.init)(jax.random.fold_in(jax.random.key(config.seed), 5), x)


def finetune_student(config):
    """The fixed sub-network the ``finetune`` stage trains: ``config.searched`` (a search step's workdir
    or a model directory of an exported sub-network) as it is, or the supernet in ``config.pretrained``
    (or ``searched``) exported at ``config.config_str`` (the original's ``--config_str``)."""
    source = config.searched or config.pretrained
    if not source:
        raise ValueError('config.method=finetune needs the sub-network: --config.searched=<a search step\'s workdir '
                         'or an exported sub-network> or --config.pretrained=<the supernet> --config.config_str=...')
    gen, variables = convert.load_img2img_generator(_run_part(source, workdir_lib.GENERATOR), netG=config.teacher_netG)
    if not isinstance(gen, resnet.ResnetGenerator):
        raise ValueError(f'{source!r} is a {type(gen).__name__}; fine-tuning takes a ResNet / MobileNet-ResNet one')
    if config.config_str:
        if gen.widths is not None:
            raise ValueError(f'{source!r} is already a sub-network; config.config_str applies to a supernet')
        try:
            return resnet.export(gen.clone(clamp_input=True), variables, config.config_str)
        except ValueError as e:
            raise ValueError(f'config.config_str={config.config_str!r}: {e}') from None
    if gen.widths is None:
        raise ValueError(f'{source!r} is a full-width network: pass --config.config_str to fine-tune one of its '
                         'configurations (or a search step\'s workdir as --config.searched)')
    return gen, variables


def load_discriminator(config):
    # a training workdir (e.g. the distill run's, for the supernet) stands for its exported discriminator/
    path = _run_part(config.discriminator, workdir_lib.DISCRIMINATOR) if config.discriminator else \
        _run_part(config.teacher, workdir_lib.DISCRIMINATOR)
    if not config.discriminator and path == config.teacher:
        raise ValueError(f'config.discriminator is empty and config.teacher={config.teacher!r} is not a training '
                         'workdir with a discriminator/: pass the teacher\'s discriminator (its latest_net_D.pth or '
                         'our model directory) as --config.discriminator')
    return convert.load_img2img_discriminator(path)


def search_space(config) -> tuple[tuple[int, ...], ...]:
    """The supernet's search space, checked against ``student_ngf``."""
    try:
        space = rules.search_space(config.search_space)
    except ValueError as e:
        raise ValueError(f'config.search_space: {e}') from None
    widest = max(max(e) for e in space)
    if widest > config.student_ngf:
        fits = [n for n, s in rules.RESNET_SEARCH_SPACES.items() if max(max(e) for e in s) <= config.student_ngf]
        raise ValueError(f'config.search_space={config.search_space!r} reaches {widest} channels, wider than '
                         f'config.student_ngf={config.student_ngf}; use student_ngf >= {widest} or a space within '
                         f'it ({fits or "spell one out"})')
    return space


def eval_metrics(config) -> tuple[str, ...]:
    names = tuple(m for m in config.eval_metrics.split(',') if m)
    bad = [m for m in names if m not in EVAL_METRICS]
    if bad:
        raise ValueError(f'config.eval_metrics={config.eval_metrics!r}: {bad[0]!r} is not one of {EVAL_METRICS}')
    return names


def check(config, workdir: str) -> None:
    if config.method in TASKS:
        from anycost_jax.train import gan_compression_search as gcs
        return gcs.check_task(config, workdir)
    del workdir
    if config.method not in METHODS:
        raise ValueError(f'config.method={config.method!r}: the gan_compression family has {METHODS + TASKS}')
    img2img.procedural_task(data_config(config))
    steps_lib.DistillConfig(config.gan_mode, config.lambda_gan, config.lambda_recon, config.lambda_distill,
                            config.recon, paired(config))
    if config.method == 'supernet':
        search_space(config)
        rules.sampling_weights(2, config.weighted_sample, config.weight_strategy)
        if config.holdout_examples < 0:
            raise ValueError(f'config.holdout_examples={config.holdout_examples} must be >= 0')
    teacher, _ = load_teacher(config)
    distill.resnet_mapping_layers(teacher.n_blocks)
    if config.method == 'finetune':
        finetune_student(config)
    if config.batch_size % jax.device_count():
        raise ValueError(f'config.batch_size={config.batch_size} must be a multiple of the {jax.device_count()} devices')
    if config.eval_every and 'fid' in eval_metrics(config):  # missing Inception weights fail now
        img2img.feature_extractor(config)


class _Rows:
    """Examples ``[start, stop)`` of a source (the training split without / only its held-out tail)."""

    def __init__(self, source, start: int, stop: int):
        self.source, self.start, self.stop = source, start, stop

    @property
    def keys(self):
        return self.source.keys

    def __len__(self):
        return self.stop - self.start

    def get(self, indices, pool=None):
        return self.source.get([self.start + int(i) for i in indices], pool)


def split_holdout(source, n: int):
    """``(training rows, held-out rows)``: the last ``n`` examples held out (of each domain, unpaired)."""
    if not n:
        return source, None
    if isinstance(source, pipe.UnpairedSource):
        (a, ha), (b, hb) = split_holdout(source.a, n), split_holdout(source.b, n)
        return pipe.UnpairedSource(a, b), pipe.UnpairedSource(ha, hb)
    if n >= len(source):
        raise ValueError(f'config.holdout_examples={n} leaves nothing to train on: the training split has '
                         f'{len(source)} examples')
    return _Rows(source, 0, len(source) - n), _Rows(source, len(source) - n, len(source))


def sample_configs(config) -> dict[str, tuple]:
    """What the samples and the evaluation show: the supernet's largest and smallest configurations,
    or the distilled student (None: its own widths)."""
    if config.method != 'supernet':
        return {'student': None}
    return {'largest': rules.largest_config(search_space(config)),
            'smallest': rules.smallest_config(search_space(config))}


@functools.lru_cache(maxsize=8)
def _apply_widths(gen):
    """``fn(variables, x, widths)``: one program for every configuration (widths traced: masks)."""
    return jax.jit(lambda v, x, w: gen.apply(v, x, widths=w))


def generate(gen, variables, x, config=None):
    """``gen``'s outputs at an 8-entry ``config`` (None: all of it)."""
    if config is None:
        return img2img._apply(gen)(variables, x)
    return _apply_widths(gen)(variables, x, rules.resnet_widths_of_entries(np.asarray(config, np.int32), gen.n_blocks))


def make_stage(config, workdir: str) -> loop.Stage:
    mesh = sharding.data_mesh()
    dcfg = data_config(config)
    train_source, _ = split_holdout(img2img.source_of(dcfg, dcfg.train_split), config.get('holdout_examples', 0))
    spe = max(1, len(train_source) // config.batch_size)
    teacher, t_vars = load_teacher(config)
    student, s_vars = load_student(config, (teacher, t_vars))
    disc, d_vars = load_discriminator(config)
    adapters = distill.Adapters((student.full_widths[2],) * 4, (teacher.full_widths[2],) * 4)
    sched = steps_lib.linear_decay(config.lr, spe, config.n_epochs, config.n_epochs_decay)
    g_tx, d_tx = steps_lib.adam(sched, config.beta1), steps_lib.adam(sched, config.beta1)
    cfg = steps_lib.DistillConfig(config.gan_mode, config.lambda_gan, config.lambda_recon, config.lambda_distill,
                                  config.recon, paired(config))
    sampler = None
    if config.method == 'supernet':
        sampler = rules.resnet_sampler(search_space(config), student.n_blocks, config.weighted_sample,
                                       config.weight_strategy)
    steps = steps_lib.DistillSteps(mesh, student, teacher, disc, adapters, cfg, g_tx, d_tx,
                                   distill.resnet_mapping_layers(teacher.n_blocks), sample_widths=sampler)
    rng = jax.random.key(config.seed)
    shape = (1, config.resolution, config.resolution, student.full_widths[2])

    def init_state(fresh: bool):
        del fresh  # the teacher, the pruned student, D and the seeded adapters: the same every time
        a_vars = adapters.init(jax.random.fold_in(rng, 4), [np.zeros(shape, np.float32)] * 4)
        g_vars = {'params': {'student': s_vars['params'], 'adapters': a_vars['params']},
                  **{k: v for k, v in s_vars.items() if k != 'params'}}
        return steps.replicate(steps_lib.create_state(jax.random.fold_in(rng, 3), g_vars, d_vars, g_tx, d_tx))

    teacher_args = steps.replicate(t_vars)
    test = img2img.test_batch(dcfg)
    teacher_out = to_uint8(img2img._apply(teacher)(t_vars, test['A']))
    shown = sample_configs(config)

    def samples(state):
        """Rows of input | student (largest | smallest, supernet) | teacher (| target, paired) on held-out examples."""
        v = student_variables(state)
        outs = [to_uint8(generate(student, v, test['A'], c)) for c in shown.values()]
        cols = [to_uint8(test['A']), *outs, teacher_out] + ([to_uint8(test['B'])] if paired(config) else [])
        return np.concatenate([np.concatenate(row, axis=1) for row in zip(*cols)], axis=0)

    def data(start: int):
        return img2img.make_stream(dcfg, dcfg.train_split, start, config.batch_size, source=train_source)

    return loop.Stage(
        name=config.name, init_state=init_state, programs=[loop.Program('step', steps.program(), args=(teacher_args,))],
        data=data, shard_batch=steps.shard_batch, checked_trees=lambda s: (s.g_params, s.d_params),
        batch_size=config.batch_size, meta={'config': config.to_dict()}, samples=samples,
        export=functools.partial(export, config, workdir=workdir, student=student, disc=disc),
        evaluate=functools.partial(evaluate, config, workdir=workdir, student=student, teacher=(teacher, t_vars))
        if config.eval_every else None)


def heldout_batches(config, split: str, batch_size: int, teacher=None, source=None) -> list[tuple]:
    """``[(A, {'real': B (paired data only), 'teacher': teacher(A)})]``: ``split`` (or ``source``,
    rows of it) in order, whole batches of ``batch_size`` (evaluation preprocessing), on this host."""
    dcfg = data_config(config)
    source = img2img.source_of(dcfg, split) if source is None else source
    n = len(source) if not isinstance(source, pipe.UnpairedSource) else min(len(source.a), len(source.b))
    if n < batch_size:
        raise ValueError(f'the held-out split has {n} examples, fewer than one batch of {batch_size}')
    out = []
    with img2img.make_stream(dcfg, split, 0, batch_size, train=False, source=source, process_index=0,
                             process_count=1, prefetch=1) as stream:
        for step in range(n // batch_size):
            b = stream.batch_at(step)
            refs = {'real': b['B']} if paired(config) else {}
            if teacher is not None:
                refs['teacher'] = np.asarray(img2img._apply(teacher[0])(teacher[1], b['A']))
            out.append((b['A'], refs))
    return out


def evaluate(config, state, step: int, writer, workdir: str, student, teacher) -> dict:
    """The student (supernet: its largest and smallest configurations) on ``test_split``: FID and / or
    the quality measures, written as ``eval/<config>/<measure>``."""
    from anycost_jax.eval import img2img_quality as quality_lib
    metrics, results = eval_metrics(config), {}
    v = student_variables(state)
    batches = heldout_batches(config, config.test_split, config.eval_batch_size, teacher) \
        if 'quality' in metrics else None
    for name, c in sample_configs(config).items():
        if 'quality' in metrics:
            scores = quality_lib.quality(lambda x: generate(student, v, x, c), batches)
            results.update({f'eval/{name}/{k}': s for k, s in scores.items()})
        if 'fid' in metrics:
            gen, g_vars = (student, v) if c is None else resnet.export(student, v, c)
            dcfg = data_config(config)
            stats = config.fid_stats or os.path.join(
                workdir, 'fid_stats', f"{config.dataset.replace('/', '_')}_{config.test_split}_AtoB_"
                f"{config.resolution}.npz")
            results[f'eval/{name}/fid'] = img2img.fid(dcfg, gen, g_vars, img2img.feature_extractor(config),
                                                      batch_size=config.eval_batch_size,
                                                      stats_path=stats.replace('{direction}', 'AtoB'))
    if writer is not None:
        writer.write_scalars(step, results)
    log.info('step %d: %s', step, ', '.join(f'{k} {x:.4f}' for k, x in sorted(results.items())))
    return results


def student_variables(state) -> dict:
    return sharding.local_copy({'params': state.g_params['student'], **state.g_stats})


def export(config, state, workdir: str, student=None, disc=None) -> None:
    """The distilled student (supernet: the super generator, every width) and its discriminator as
    model directories (``generator/``, ``discriminator/``)."""
    if student is None or disc is None:
        teacher = load_teacher(config)
        student = load_student(config, teacher)[0] if student is None else student
        disc = load_discriminator(config)[0] if disc is None else disc
    modeldir.save(os.path.join(workdir, workdir_lib.GENERATOR), student, student_variables(state))
    modeldir.save(os.path.join(workdir, workdir_lib.DISCRIMINATOR), disc,
                  sharding.local_copy({'params': state.d_params, **state.d_stats}))
    log.info('exported the %s (ngf %d) and its discriminator to %s',
             'supernet' if config.method == 'supernet' else 'distilled student', config.student_ngf, workdir)


# ---------------------------------------------------------------------------- search, export and tasks
# (:mod:`anycost_jax.train.gan_compression_search`; here for the trainer and for existing callers)

SEARCHED = 'searched'  # WORKDIR/searched/<budget name>: the found sub-networks


def search_supernet(workdir: str, budget: float, **kw):
    """:func:`anycost_jax.train.gan_compression_search.search_supernet`."""
    from anycost_jax.train import gan_compression_search as gcs
    return gcs.search_supernet(workdir, budget, **kw)


def search_batches(config, split: str, teacher) -> list[tuple]:
    """:func:`anycost_jax.train.gan_compression_search.search_batches`."""
    from anycost_jax.train import gan_compression_search as gcs
    return gcs.search_batches(config, split, teacher)


def precheck(config) -> None:
    """A pipeline's checks of this family's steps before any stage runs (their inputs do not exist yet)."""
    if config.method in TASKS:
        from anycost_jax.train import gan_compression_search as gcs
        gcs.check_task(config, '')


def run_task(config, workdir: str):
    from anycost_jax.train import gan_compression_search as gcs
    return gcs.run_task(config, workdir)


def task_done(config, workdir: str) -> bool:
    from anycost_jax.train import gan_compression_search as gcs
    return gcs.task_done(config, workdir)


def export_task(config, stage_dir: str, workdir: str) -> None:
    from anycost_jax.train import gan_compression_search as gcs
    return gcs.export_task(config, stage_dir, workdir)
