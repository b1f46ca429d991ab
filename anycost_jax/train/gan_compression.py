"""GAN Compression (Li et al., CVPR 2020) as a family of :mod:`anycost_jax.train.loop`: so far its
``distill`` stage, the distillation of a fixed, narrower student from a trained teacher.

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
"""
from __future__ import annotations

import functools
import logging
import os

import jax
import ml_collections
import numpy as np

from anycost_jax import convert, modeldir, sharding
from anycost_jax import workdir as workdir_lib
from anycost_jax.losses import distill_img2img as distill
from anycost_jax.models.img2img import resnet
from anycost_jax.render import to_uint8
from anycost_jax.train import img2img
from anycost_jax.train import img2img_steps as steps_lib
from anycost_jax.train import loop

log = logging.getLogger(__name__)

METHODS = ('distill',)
RESUME_KEYS = ('method', 'dataset', 'resolution', 'teacher', 'teacher_netG', 'pretrained', 'student_ngf',
               'discriminator', 'seed', 'batch_size', 'gan_mode', 'direction', 'preprocess', 'load_size')
PAIRED_TASKS = ('labels2image', 'edges2image')


def base_config() -> ml_collections.ConfigDict:
    """The distill stage's defaults (gan-compression's ``base_resnet_distiller`` options): student
    ngf 48, lambda_recon 100, lambda_distill 1, lambda_gan 1, L1 reconstruction, hinge loss, Adam
    2e-4 (0.5, 0.999), the base options' 5 + 15 epochs; the data fields are the image-to-image
    family's (:func:`anycost_jax.train.img2img.base_config`)."""
    c = img2img.base_config('pix2pix')
    c.family, c.method, c.name = 'gan_compression', 'distill', 'distill'
    c.teacher, c.teacher_netG = '', 'mobile_resnet_9blocks'  # a workdir, model dir or .pth (+ its --netG)
    c.pretrained = ''                   # the student's initialization before pruning ('': the teacher)
    c.discriminator = ''                # '': the teacher run's discriminator
    c.student_ngf = 48
    c.lambda_distill = 1.
    c.netG = ''                         # taken from the teacher (the student is the same architecture)
    return c


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
    """The pruned initialization: ``(student, variables)``."""
    if config.pretrained:
        gen, variables = convert.load_img2img_generator(_run_part(config.pretrained, workdir_lib.GENERATOR),
                                                        netG=config.teacher_netG)
    else:
        gen, variables = teacher
    if config.student_ngf > gen.ngf:
        raise ValueError(f'config.student_ngf={config.student_ngf} is wider than the network it is pruned from '
                         f'(ngf {gen.ngf}); a student is at most as wide')
    return resnet.prune(gen, variables, config.student_ngf)


def load_discriminator(config):
    path = config.discriminator or _run_part(config.teacher, workdir_lib.DISCRIMINATOR)
    if path == config.teacher:
        raise ValueError(f'config.discriminator is empty and config.teacher={config.teacher!r} is not a training '
                         'workdir with a discriminator/: pass the teacher\'s discriminator (its latest_net_D.pth or '
                         'our model directory) as --config.discriminator')
    return convert.load_img2img_discriminator(path)


def check(config, workdir: str) -> None:
    del workdir
    if config.method not in METHODS:
        raise ValueError(f'config.method={config.method!r}: the gan_compression family has {METHODS} so far')
    img2img.procedural_task(data_config(config))
    steps_lib.DistillConfig(config.gan_mode, config.lambda_gan, config.lambda_recon, config.lambda_distill,
                            config.recon, paired(config))
    teacher, _ = load_teacher(config)
    distill.resnet_mapping_layers(teacher.n_blocks)
    if config.batch_size % jax.device_count():
        raise ValueError(f'config.batch_size={config.batch_size} must be a multiple of the {jax.device_count()} devices')


def make_stage(config, workdir: str) -> loop.Stage:
    mesh = sharding.data_mesh()
    dcfg = data_config(config)
    train_source = img2img.source_of(dcfg, dcfg.train_split)
    spe = max(1, len(train_source) // config.batch_size)
    teacher, t_vars = load_teacher(config)
    student, s_vars = load_student(config, (teacher, t_vars))
    disc, d_vars = load_discriminator(config)
    adapters = distill.Adapters((student.full_widths[2],) * 4, (teacher.full_widths[2],) * 4)
    sched = steps_lib.linear_decay(config.lr, spe, config.n_epochs, config.n_epochs_decay)
    g_tx, d_tx = steps_lib.adam(sched, config.beta1), steps_lib.adam(sched, config.beta1)
    cfg = steps_lib.DistillConfig(config.gan_mode, config.lambda_gan, config.lambda_recon, config.lambda_distill,
                                  config.recon, paired(config))
    steps = steps_lib.DistillSteps(mesh, student, teacher, disc, adapters, cfg, g_tx, d_tx,
                                   distill.resnet_mapping_layers(teacher.n_blocks))
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

    def samples(state):
        """Rows of input | student | teacher (| target, paired) on held-out examples."""
        out = to_uint8(img2img._apply(student)(student_variables(state), test['A']))
        cols = [to_uint8(test['A']), out, teacher_out] + ([to_uint8(test['B'])] if paired(config) else [])
        return np.concatenate([np.concatenate(row, axis=1) for row in zip(*cols)], axis=0)

    def data(start: int):
        return img2img.make_stream(dcfg, dcfg.train_split, start, config.batch_size, source=train_source)

    return loop.Stage(
        name=config.name, init_state=init_state, programs=[loop.Program('step', steps.program(), args=(teacher_args,))],
        data=data, shard_batch=steps.shard_batch, checked_trees=lambda s: (s.g_params, s.d_params),
        batch_size=config.batch_size, meta={'config': config.to_dict()}, samples=samples,
        export=functools.partial(export, config, workdir=workdir, student=student, disc=disc))


def student_variables(state) -> dict:
    return sharding.local_copy({'params': state.g_params['student'], **state.g_stats})


def export(config, state, workdir: str, student=None, disc=None) -> None:
    """The distilled student and its discriminator as model directories (``generator/``, ``discriminator/``)."""
    if student is None or disc is None:
        teacher = load_teacher(config)
        student = load_student(config, teacher)[0] if student is None else student
        disc = load_discriminator(config)[0] if disc is None else disc
    modeldir.save(os.path.join(workdir, workdir_lib.GENERATOR), student, student_variables(state))
    modeldir.save(os.path.join(workdir, workdir_lib.DISCRIMINATOR), disc,
                  sharding.local_copy({'params': state.d_params, **state.d_stats}))
    log.info('exported the distilled student (ngf %d) and its discriminator to %s', config.student_ngf, workdir)
