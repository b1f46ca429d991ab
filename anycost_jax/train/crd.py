"""CRD (content-relationship distillation with an online teacher discriminator; TheKernelZ/CRD, on
bytedance/OMGD) as a family of :mod:`anycost_jax.train.loop`: a teacher trains from scratch
*online*, beside a small student that learns the relations of the teacher's output content
(:mod:`anycost_jax.losses.crd`) and, for CycleGAN, fools the teacher's discriminator.

``config.method = 'cycle_gan'`` (``distill.py --distiller cycleganbest``; unpaired data): the
teacher (G_A, G_B, D_A, D_B, the usual CycleGAN losses, :class:`~anycost_jax.train.img2img_steps.
CycleGANSteps`) trains ``crd_every`` epochs (the original's ``save_epoch_freq``); then its A -> B
generator is scored on ``test_split`` and, if it is the best so far, frozen as *the best teacher*;
the student trains ``n_dis * crd_every`` epochs against that best teacher with::

    lambda_row row + lambda_column column + lambda_patch patch        (25 each)
    + lambda_style style + lambda_feature feature                      (1e4 Gram L1, 1e1 relu2_2 L1)
    + lambda_student_gan LSGAN(D_A(S(A)), real)                        (the teacher's current D_A, frozen)

and the teacher resumes. The loop's global step walks these phases (``teacher``, ``snapshot``,
``student`` programs with periods); a run of ``n_epochs + n_epochs_decay`` teacher epochs takes
``(1 + n_dis) * epochs * steps_per_epoch`` steps. The student's learning rate is the teacher's at
the end of the last teacher phase (the original steps every scheduler once per teacher epoch).

``config.method = 'pix2pix'`` (``--distiller pix2pixbest``; paired data): every step, the teacher
(a conditional PatchGAN, GAN + lambda_recon L1 to the target) makes ``T = G_T(A)`` and updates D
and G (both from the parameters before the step, as the original steps its optimizers together;
every ``n_dis`` steps), then the student updates against that ``T`` with the same terms (the
upstream's weights: 2.5 x row / column / patch, 2 x style and feature) and no adversarial term.

"Best teacher" is measured by ``config.teacher_measure``: ``'fid'`` (FID of G_A on
``test_split``, pytorch-fid's Inception; the original's choice), or, offline, one of
:mod:`anycost_jax.eval.img2img_quality`'s ``'real/l1'``, ``'real/psnr'``, ``'real/lpips'``
against the test split's targets (procedural data: the recolor task's test split is paired).

Where the released code cannot run as written we do what the paper describes (see
:mod:`anycost_jax.losses.crd`): rows / columns as intended (the code's ``.view`` on transposed
tensors fails), pix2pix patches relate the 32 x 32 patches of each image (the code relates the 3
color planes of one patch). Students: ``mobile_resnet`` (the original's
``mobile_resnet_9blocks``) or ``unet`` (``unet_256``), ``student_ngf`` 16. The teacher and the
student start from the seeded initialization (the original's default, no restore paths).
Exports: the student as ``generator/``, the teacher's D_A (pix2pix: D) as ``discriminator/``,
the teacher's generator as ``teacher/`` and, for CycleGAN, the best teacher as ``teacher_best/``.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from anycost_jax import modeldir, sharding
from anycost_jax import workdir as workdir_lib
from anycost_jax.data import img2img_pipeline as pipe
from anycost_jax.losses import crd as crd_loss
from anycost_jax.losses import img2img as losses
from anycost_jax.render import to_uint8
from anycost_jax.sharding import AXIS
from anycost_jax.train import img2img
from anycost_jax.train import img2img_steps as steps_lib
from anycost_jax.train import loop

log = logging.getLogger(__name__)

METHODS = ('cycle_gan', 'pix2pix')
STUDENT_NETGS = ('mobile_resnet', 'unet')
MEASURES = ('fid', 'real/l1', 'real/psnr', 'real/lpips')
RESUME_KEYS = img2img.RESUME_KEYS + ('student_netG', 'student_ngf', 'crd_every', 'n_dis', 'teacher_measure',
                                     'crd_patch')
TEACHER, TEACHER_BEST = 'teacher', 'teacher_best'


def base_config(method: str = 'cycle_gan') -> ml_collections.ConfigDict:
    """The upstream defaults: the image-to-image family's ``method`` options for the teacher
    (:func:`anycost_jax.train.img2img.base_config`) with CRD's on top. CycleGAN
    (``base_cycleganbest_distiller``): mobile_resnet teacher ngf 64, LSGAN, ndf 64, batch 1, 100 + 100
    epochs; row / column / patch x 25, style 1e4, feature 1e1, LSGAN x 1 through D_A; ``n_dis`` 1
    (horse2zebra's script: 4), the best teacher every ``crd_every`` epochs (its ``save_epoch_freq``
    20; the script: 10). pix2pix (``base_pix2pixbest_distiller``): hinge, ndf 128, L1 x 100; row /
    column / patch x 2.5, style 2e4, feature 2e1 (the code's 2x), no student GAN term, ``n_dis`` 1."""
    if method not in METHODS:
        raise ValueError(f'method={method!r}: the crd family has {METHODS}')
    c = img2img.base_config(method)
    c.family, c.method, c.name = 'crd', method, f'crd_{method}'
    c.netG, c.ngf = 'mobile_resnet', 64           # the teacher
    c.student_netG, c.student_ngf = 'mobile_resnet', 16
    c.crd_patch = crd_loss.PATCH
    c.n_dis = 1
    if method == 'cycle_gan':
        c.lambda_row = c.lambda_column = c.lambda_patch = 25.
        c.lambda_style, c.lambda_feature, c.lambda_student_gan = 1e4, 1e1, 1.
        c.crd_every = 20                            # teacher epochs between student phases
        c.teacher_measure = 'fid'
    else:
        c.lambda_row = c.lambda_column = c.lambda_patch = 2.5
        c.lambda_style, c.lambda_feature, c.lambda_student_gan = 2e4, 2e1, 0.
        c.crd_every = 0                             # pix2pix: no phases (every step both)
        c.teacher_measure = ''
        c.n_epochs, c.n_epochs_decay = 100, 100
    return c


# ---------------------------------------------------------------------------- checks and models


def teacher_config(config) -> ml_collections.ConfigDict:
    """The image-to-image family's view: the teacher's networks, data and losses."""
    c = config.copy_and_resolve_references()
    c.family = 'img2img'
    return c


def student_config(config) -> ml_collections.ConfigDict:
    c = teacher_config(config)
    c.method, c.netG, c.ngf = 'pix2pix', config.student_netG, config.student_ngf  # pix2pix: any of the netGs
    return c


def phases(config, spe: int) -> tuple[int, int]:
    """CycleGAN's ``(teacher steps, student steps)`` of one cycle."""
    return config.crd_every * spe, config.n_dis * config.crd_every * spe


def check(config, workdir: str) -> None:
    del workdir
    if config.method not in METHODS:
        raise ValueError(f'config.method={config.method!r}: the crd family has {METHODS}')
    img2img.check(teacher_config(config), '')
    if config.student_netG not in STUDENT_NETGS:
        raise ValueError(f'config.student_netG={config.student_netG!r}: CRD\'s students are {STUDENT_NETGS}')
    if config.student_netG == 'unet' and config.method == 'cycle_gan':
        raise ValueError('config.student_netG="unet": the CycleGAN student is a mobile_resnet '
                         '(the U-Net is for pix2pix)')
    img2img._check_resolution(student_config(config))
    if config.student_ngf > config.ngf:
        raise ValueError(f'config.student_ngf={config.student_ngf} is wider than its teacher '
                         f'(config.ngf={config.ngf}): a student is at most as wide; use config.student_ngf <= '
                         f'{config.ngf} (CRD: 16)')
    crd_loss.check_patches(config.resolution, config.resolution, config.crd_patch)
    if config.n_dis < 1:
        raise ValueError(f'config.n_dis={config.n_dis} must be >= 1')
    weights = {k: config[k] for k in ('lambda_row', 'lambda_column', 'lambda_patch', 'lambda_style',
                                       'lambda_feature', 'lambda_student_gan')}
    if min(weights.values()) < 0:
        raise ValueError(f'CRD loss weights must be >= 0: {weights}')
    if config.method == 'pix2pix':
        if config.lambda_student_gan:
            raise ValueError('config.lambda_student_gan: the pix2pix student has no adversarial term (set it to 0)')
        return
    epochs = config.n_epochs + config.n_epochs_decay
    if config.crd_every < 1 or epochs % config.crd_every:
        raise ValueError(f'config.crd_every={config.crd_every} must divide the {epochs} teacher epochs '
                         '(n_epochs + n_epochs_decay): the run ends after a student phase')
    if config.teacher_measure not in MEASURES:
        raise ValueError(f'config.teacher_measure={config.teacher_measure!r}: one of {MEASURES}')
    if config.teacher_measure.startswith('real/') and img2img.procedural_task(teacher_config(config)) is None:
        raise ValueError(f'config.teacher_measure={config.teacher_measure!r} compares with paired targets; '
                         f'{config.dataset!r} is unpaired: use teacher_measure="fid"')
    if config.teacher_measure == 'fid':
        img2img.feature_extractor(config)


def build_student(config):
    return img2img.build_models(student_config(config), axis_name=AXIS)[0]


# ---------------------------------------------------------------------------- state and steps


@flax.struct.dataclass
class CRDState:
    """The online teacher (an image-to-image state of its own, with its own step and key), the
    student, and (CycleGAN) the frozen best teacher G_A and its score (lower is better)."""
    step: jax.Array
    rng: jax.Array
    teacher: steps_lib.Img2ImgState
    s_params: Any
    s_stats: Any
    s_opt_state: Any
    best_params: Any = None
    best_stats: Any = None
    best_score: Any = None


@dataclasses.dataclass(frozen=True)
class StudentLossConfig:
    lambda_row: float
    lambda_column: float
    lambda_patch: float
    lambda_style: float
    lambda_feature: float
    lambda_gan: float
    gan_mode: str
    patch: int = crd_loss.PATCH

    @classmethod
    def from_config(cls, config) -> 'StudentLossConfig':
        return cls(config.lambda_row, config.lambda_column, config.lambda_patch, config.lambda_style,
                   config.lambda_feature, config.lambda_student_gan, config.gan_mode, config.crd_patch)


def student_terms(cfg: StudentLossConfig, s_out, t_out) -> dict:
    """CRD's content terms of one device's batch (the relations summed over the **global** batch, as
    the original sums over its batch: ``pmean`` of the gradients then gives that sum's)."""
    t_out = jax.lax.stop_gradient(t_out)
    n_dev = jax.lax.axis_size(AXIS)
    m = {}
    for name, w in (('row', cfg.lambda_row), ('column', cfg.lambda_column), ('patch', cfg.lambda_patch)):
        if w:
            m[f'S_{name}'] = w * n_dev * crd_loss.relation_loss(s_out, t_out, name, cfg.patch)
    if cfg.lambda_style or cfg.lambda_feature:
        m['S_style'], m['S_feature'] = crd_loss.style_feature_losses(s_out, t_out, cfg.lambda_style,
                                                                     cfg.lambda_feature)
    return m


class _Program(steps_lib._Steps):
    """One per-device body as a compiled, donating program (traces counted)."""

    def __init__(self, mesh, body, batch_keys=('A', 'B')):
        self.mesh, self._body, self.batch_keys, self.traces = mesh, body, tuple(batch_keys), 0

    def body(self, state, batch):
        return self._body(state, batch)


class CRDSteps:
    """The CRD iterations: ``teacher_gen`` / ``disc`` the teacher's networks (one architecture, CycleGAN's
    two sides in ``{'A', 'B'}`` trees), ``student`` the student generator."""

    def __init__(self, mesh, method: str, teacher_gen, disc, student, t_cfg, s_cfg: StudentLossConfig, g_tx, d_tx,
                 s_tx):
        self.mesh, self.method, self.gen, self.disc, self.student = mesh, method, teacher_gen, disc, student
        self.t_cfg, self.s_cfg, self.g_tx, self.d_tx, self.s_tx = t_cfg, s_cfg, g_tx, d_tx, s_tx
        self.cycle = steps_lib.CycleGANSteps(mesh, teacher_gen, disc, t_cfg, g_tx, d_tx) if method == 'cycle_gan' \
            else None

    # -- the student's update against a given teacher output (and, CycleGAN, the teacher's D_A)
    def _student_update(self, state: CRDState, a, t_out, key):
        cfg = self.s_cfg

        def loss(params):
            s_out, s_stats = steps_lib._run(self.student, params, state.s_stats, a, rngs={'dropout': key})
            m = student_terms(cfg, s_out, t_out)
            if cfg.lambda_gan:  # through the teacher's current D_A, frozen (its statistics are not kept)
                d = state.teacher
                pred, _ = steps_lib._run(self.disc, d.d_params['A'], d.d_stats['A'], s_out)
                m['S_gan'] = cfg.lambda_gan * losses.gan_loss(pred, True, cfg.gan_mode, for_discriminator=False)
            return sum(m.values()), (s_stats, m)

        (total, (s_stats, m)), grads = jax.value_and_grad(loss, has_aux=True)(sharding.varying(state.s_params))
        s_params, s_opt_state = steps_lib._update(self.s_tx, grads, state.s_opt_state, state.s_params)
        state = state.replace(s_params=s_params, s_opt_state=s_opt_state, s_stats=jax.lax.pmean(s_stats, AXIS))
        return state, {**m, 'S_total': total}

    # -- CycleGAN: teacher phase, student phase
    def cycle_teacher(self, state: CRDState, batch):
        teacher, m = self.cycle.body(state.teacher, batch)
        return state.replace(step=state.step + 1, teacher=teacher), m

    def cycle_student(self, state: CRDState, batch):
        key = steps_lib._Steps.device_key(state)
        a = batch['A']
        t_out = self.gen.apply({'params': state.best_params, **state.best_stats}, a)  # the frozen best G_A
        state, m = self._student_update(state, a, t_out, key)
        return state.replace(step=state.step + 1), jax.lax.pmean(m, AXIS)

    # -- pix2pix: the teacher's output, its update (every n_dis steps), the student's update
    def pix2pix_step(self, state: CRDState, batch, update_teacher: bool = True):
        cfg, a, b, t = self.t_cfg, batch['A'], batch['B'], state.teacher
        key = steps_lib._Steps.device_key(state)
        k_t, k_s = jax.random.split(key)

        def g_forward(params):
            return steps_lib._run(self.gen, params, t.g_stats, a, rngs={'dropout': k_t})

        metrics = {}
        if not update_teacher:
            t_out, g_stats = g_forward(t.g_params)
            teacher = t.replace(g_stats=jax.lax.pmean(g_stats, AXIS))
        else:
            t_out, g_vjp, g_stats = jax.vjp(g_forward, sharding.varying(t.g_params), has_aux=True)

            def d_loss(params):
                pred_fake, stats = steps_lib._run(self.disc, params, t.d_stats,
                                                  jnp.concatenate([a, jax.lax.stop_gradient(t_out)], -1))
                pred_real, stats = steps_lib._run(self.disc, params, stats, jnp.concatenate([a, b], -1))
                lf = losses.gan_loss(pred_fake, False, cfg.gan_mode)
                lr = losses.gan_loss(pred_real, True, cfg.gan_mode)
                return 0.5 * (lf + lr), (stats, {'D_fake': lf, 'D_real': lr})

            (_, (d_stats, d_m)), d_grads = jax.value_and_grad(d_loss, has_aux=True)(sharding.varying(t.d_params))

            def g_loss(fake):  # D before its update: the original steps both optimizers after both backwards
                pred, stats = steps_lib._run(self.disc, t.d_params, d_stats, jnp.concatenate([a, fake], -1))
                gan = losses.gan_loss(pred, True, cfg.gan_mode, for_discriminator=False) * cfg.lambda_gan
                recon = steps_lib.recon_loss(fake, b, cfg.recon) * cfg.lambda_recon
                return gan + recon, (stats, {'G_gan': gan, 'G_recon': recon})

            (_, (d_stats, g_m)), d_fake = jax.value_and_grad(g_loss, has_aux=True)(t_out)
            g_grads, = g_vjp(d_fake)
            d_params, d_opt = steps_lib._update(self.d_tx, d_grads, t.d_opt_state, t.d_params)
            g_params, g_opt = steps_lib._update(self.g_tx, g_grads, t.g_opt_state, t.g_params)
            teacher = t.replace(step=t.step + 1, g_params=g_params, g_opt_state=g_opt, d_params=d_params,
                                d_opt_state=d_opt, g_stats=jax.lax.pmean(g_stats, AXIS),
                                d_stats=jax.lax.pmean(d_stats, AXIS))
            metrics.update(d_m, **g_m)
        state, s_m = self._student_update(state, a, t_out, k_s)  # against the teacher before its step
        state = state.replace(step=state.step + 1, teacher=teacher)
        return state, jax.lax.pmean({**metrics, **s_m}, AXIS)

    def programs(self) -> dict:
        """``{name: compiled program}``: one compilation each."""
        if self.method == 'cycle_gan':
            return {'teacher': _Program(self.mesh, self.cycle_teacher),
                    'student': _Program(self.mesh, self.cycle_student, ('A',))}
        return {'step': _Program(self.mesh, self.pix2pix_step),
                'student': _Program(self.mesh, functools.partial(self.pix2pix_step, update_teacher=False))}


# ---------------------------------------------------------------------------- schedules


def _lr_at_epoch(config, epoch):
    """The original's 'linear' policy at (0-based) teacher epoch ``epoch``."""
    return config.lr * (1. - jnp.maximum(0, epoch + 1 - config.n_epochs) / float(config.n_epochs_decay + 1))


def student_schedule(config, spe: int):
    """CycleGAN: the rate of the teacher's last epoch before this student phase (constant within a
    phase); pix2pix: the teacher's schedule (both step every iteration)."""
    if config.method == 'pix2pix':
        return steps_lib.linear_decay(config.lr, spe, config.n_epochs, config.n_epochs_decay)
    per_phase = phases(config, spe)[1]
    return lambda count: _lr_at_epoch(config, config.crd_every * (count // per_phase + 1) - 1)


# ---------------------------------------------------------------------------- quality of a generator


def score(config, gen, variables, workdir: str, measure: str, cache: dict) -> float:
    """``measure`` of ``gen`` (A -> B) on ``test_split``, lower is better (PSNR negated)."""
    from anycost_jax.eval import img2img_quality as quality_lib
    tcfg = teacher_config(config)
    if measure == 'fid':
        name = f"{config.dataset.replace('/', '_')}_{config.test_split}_AtoB_{config.resolution}.npz"
        stats = config.fid_stats or os.path.join(workdir, 'fid_stats', name)
        return float(img2img.fid(tcfg, gen, variables, img2img.feature_extractor(config), direction='AtoB',
                                 batch_size=config.eval_batch_size, stats_path=stats.replace('{direction}', 'AtoB')))
    if 'batches' not in cache:
        source = img2img.source_of(tcfg, config.test_split)
        n = len(source) if not isinstance(source, pipe.UnpairedSource) else min(len(source.a), len(source.b))
        bs = min(config.eval_batch_size, n)
        with img2img.make_stream(tcfg, config.test_split, 0, bs, train=False, source=source, process_index=0,
                                 process_count=1, prefetch=1) as stream:
            cache['batches'] = [(b['A'], {'real': b['B']}) for b in (stream.batch_at(i) for i in range(n // bs))]
    apply = img2img._apply(gen)
    scores = quality_lib.quality(lambda x: apply(variables, x), cache['batches'],
                                 use_lpips=measure.endswith('lpips'))
    return float(quality_lib.distance(scores, measure))


# ---------------------------------------------------------------------------- the stage


def make_stage(config, workdir: str) -> loop.Stage:
    mesh = sharding.data_mesh()
    tcfg = teacher_config(config)
    train_source = img2img.source_of(tcfg, config.train_split)
    spe = max(1, len(train_source) // config.batch_size)
    teacher_gen, disc = img2img.build_models(tcfg, axis_name=AXIS)
    student = build_student(config)
    g_tx, d_tx = img2img._optimizers(tcfg, spe)
    s_tx = steps_lib.adam(student_schedule(config, spe), config.beta1)
    steps = CRDSteps(mesh, config.method, teacher_gen, disc, student, img2img.method_config(tcfg),
                     StudentLossConfig.from_config(config), g_tx, d_tx, s_tx)
    progs = steps.programs()
    rng = jax.random.key(config.seed)
    cycle = config.method == 'cycle_gan'

    def init_state(fresh: bool):
        del fresh  # a pure function of the seed; a checkpoint overwrites it
        g_vars, d_vars = img2img.init_variables(tcfg, rng)
        pools = steps.cycle.init_pools(img2img._input_shapes(tcfg)[0][1:]) if cycle else None
        teacher = steps_lib.create_state(jax.random.fold_in(rng, 3), g_vars, d_vars, g_tx, d_tx, pools=pools)
        shape = (1, config.resolution, config.resolution, 3)
        k = jax.random.fold_in(rng, 20)
        s_params, s_stats = steps_lib.split_variables(
            img2img.build_models(student_config(config))[0].init({'params': k, 'dropout': k}, jnp.zeros(shape)))
        best = {}
        if cycle:  # the best teacher's slot (scored +inf until the first snapshot)
            best = dict(best_params=jax.tree.map(jnp.copy, teacher.g_params['A']),
                        best_stats=jax.tree.map(jnp.copy, teacher.g_stats['A']),
                        best_score=jnp.asarray(jnp.inf, jnp.float32))
        return sharding.replicate(CRDState(step=jnp.zeros((), jnp.int32), rng=jax.random.fold_in(rng, 4),
                                           teacher=teacher, s_params=s_params, s_stats=s_stats,
                                           s_opt_state=s_tx.init(s_params), **best), mesh)

    cache: dict = {}
    plain_teacher = img2img.build_models(tcfg)[0]

    def snapshot(state, batch):
        """Scores the teacher's G_A; the best so far becomes the student's (frozen) teacher."""
        del batch
        t = state.teacher
        v = sharding.local_copy({'params': t.g_params['A'], **t.g_stats['A']})
        s = score(config, plain_teacher, v, workdir, config.teacher_measure, cache)
        best = float(np.asarray(sharding.local_copy(state.best_score)))
        if s < best:
            state = state.replace(best_params=jax.tree.map(jnp.copy, t.g_params['A']),
                                  best_stats=jax.tree.map(jnp.copy, t.g_stats['A']),
                                  best_score=sharding.replicate(jnp.asarray(s, jnp.float32), mesh))
            best = s
        log.info('step %d: teacher %s %.4f (best %.4f)', int(state.step), config.teacher_measure, s, best)
        return state, {'teacher_score': s, 'teacher_best_score': best}

    if cycle:
        t_steps, s_steps = phases(config, spe)
        period = t_steps + s_steps
        programs = [loop.Program('teacher', progs['teacher'].program(), due=lambda s: s % period < t_steps),
                    loop.Program('snapshot', snapshot, due=lambda s: s % period == t_steps),
                    loop.Program('student', progs['student'].program(), due=lambda s: s % period >= t_steps)]
    else:
        n_dis = config.n_dis
        programs = [loop.Program('step', progs['step'].program(), due=lambda s: (s + 1) % n_dis == 0)]
        if n_dis > 1:
            programs.append(loop.Program('student', progs['student'].program(),
                                         due=lambda s: (s + 1) % n_dis != 0))

    test = img2img.test_batch(tcfg)
    plain_student = img2img.build_models(student_config(config))[0]

    def samples(state):
        """Rows of input | student | teacher (| target, paired) on held-out examples."""
        s_out = to_uint8(img2img._apply(plain_student)(student_variables(state), test['A']))
        t_out = to_uint8(img2img._apply(plain_teacher)(teacher_variables(state, cycle), test['A']))
        cols = [to_uint8(test['A']), s_out, t_out] + ([to_uint8(test['B'])] if not cycle else [])
        return np.concatenate([np.concatenate(row, axis=1) for row in zip(*cols)], axis=0)

    def evaluate(state, step, writer):
        measure = config.teacher_measure or 'real/lpips'
        results = {f'eval/student/{measure}': score(config, plain_student, student_variables(state), workdir,
                                                    measure, cache)}
        if writer is not None:
            writer.write_scalars(step, results)
        return results

    def data(start: int):
        return img2img.make_stream(tcfg, config.train_split, start, config.batch_size, source=train_source)

    return loop.Stage(
        name=config.name, init_state=init_state, programs=programs, data=data,
        shard_batch=progs['student'].shard_batch,
        checked_trees=lambda s: (s.s_params, s.teacher.g_params, s.teacher.d_params),
        batch_size=config.batch_size, meta={'config': config.to_dict()}, samples=samples,
        export=lambda s: export(config, s, workdir),
        evaluate=evaluate if config.eval_every else None)


def student_variables(state) -> dict:
    return sharding.local_copy({'params': state.s_params, **state.s_stats})


def teacher_variables(state, cycle: bool, best: bool = False) -> dict:
    t = state.teacher
    if best:
        return sharding.local_copy({'params': state.best_params, **state.best_stats})
    if cycle:
        return sharding.local_copy({'params': t.g_params['A'], **t.g_stats['A']})
    return sharding.local_copy({'params': t.g_params, **t.g_stats})


def export(config, state, workdir: str) -> None:
    """The student as ``generator/``, the teacher's D (A) as ``discriminator/``, its generator (A -> B)
    as ``teacher/`` and, CycleGAN, the best teacher as ``teacher_best/``."""
    tcfg = teacher_config(config)
    gen, disc = img2img.build_models(tcfg)
    cycle = config.method == 'cycle_gan'
    modeldir.save(os.path.join(workdir, workdir_lib.GENERATOR), img2img.build_models(student_config(config))[0],
                  student_variables(state))
    t = state.teacher
    d_vars = {'params': t.d_params['A'], **t.d_stats['A']} if cycle else {'params': t.d_params, **t.d_stats}
    modeldir.save(os.path.join(workdir, workdir_lib.DISCRIMINATOR), disc, sharding.local_copy(d_vars))
    modeldir.save(os.path.join(workdir, TEACHER), gen, teacher_variables(state, cycle))
    if cycle and math.isfinite(float(np.asarray(sharding.local_copy(state.best_score)))):
        modeldir.save(os.path.join(workdir, TEACHER_BEST), gen, teacher_variables(state, cycle, best=True))
    log.info('exported the CRD student (%s, ngf %d), the teacher and its discriminator to %s',
             config.student_netG, config.student_ngf, workdir)
