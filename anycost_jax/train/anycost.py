"""The Anycost family as a user of :mod:`anycost_jax.train.loop`: every stage of the paper.

An iteration is, as in the original::

    D step (+ lazy R1 every ``d_reg_every``) -> G step (+ lazy path length every ``g_reg_every``)
    -> one EMA update

(:mod:`anycost_jax.train.anycost_steps`). This module builds the models from the config,
loads weights from any source (``tune_from``, teachers), moves D across the stages'
architectures, sorts channels, renders the sample grids, evaluates every trained
sub-generator (keeping the best-FID one) and exports the final models.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from anycost_jax import convert, elastic, sharding
from anycost_jax import render as render_lib
from anycost_jax import workdir as workdir_lib
from anycost_jax.data import pipeline
from anycost_jax.elastic import sorting
from anycost_jax.eval import evaluate as evaluate_lib
from anycost_jax.models.discriminator import STDDEV_GROUP, Discriminator, DiscriminatorMultiRes
from anycost_jax.models import generator as generator_lib
from anycost_jax.models.generator import Generator
from anycost_jax.render import resize, to_uint8
from anycost_jax.train import anycost_steps as steps_lib
from anycost_jax.train import config_lib, loop

log = logging.getLogger(__name__)

RESUME_KEYS = config_lib.RESUME_KEYS


# ---------------------------------------------------------------------------- models and weights


def build_models(config):
    m = config.model
    gen = convert.generator_from_config(config)
    bf16 = gen.bf16_from_res
    if config.n_res > 1:
        disc = DiscriminatorMultiRes(config.resolution, n_res=config.n_res, modulate=config.conditioned_d,
                                     channel_multiplier=m.channel_multiplier, channel_max=m.channel_max,
                                     bf16_from_res=bf16)
    else:
        disc = Discriminator(config.resolution, channel_multiplier=m.channel_multiplier, channel_max=m.channel_max,
                             bf16_from_res=bf16)
    return gen, disc


def _same_arch(a, b, fields) -> list[str]:
    """The differing ``fields`` of two generators (``full_channels`` compares the actual widths: an
    original .pt does not say which channel_multiplier / channel_max produced them)."""
    get = lambda m, f: m.full_channels() if f == 'full_channels' else getattr(m, f)
    return [f'{f}: {get(a, f)} vs {get(b, f)}' for f in fields if get(a, f) != get(b, f)]


def _load_stage(path: str, want_d: bool):
    """(gen, g_vars{ema}, disc, d_vars) from a stage's latest checkpoint, without optimizer state."""
    gen, disc = build_models(workdir_lib.read_config(path))
    fields = ('ema_params', 'g_noise') + (('d_params',) if want_d else ())
    saved, _, step = workdir_lib.restore_fields(path, fields)
    log.info('loaded %s at step %d', path, step)
    g_vars = {'params': saved['ema_params'], 'noise': saved['g_noise']}
    return gen, g_vars, (disc if want_d else None), ({'params': saved['d_params']} if want_d else None)


def load_weights(path: str, want_d: bool = True, checkpoint: str = 'latest'):
    """(gen, g_vars, disc or None, d_vars or None) from a .pt / URL, a model directory or a workdir
    (a stage's: its latest checkpoint, or with ``checkpoint='best'`` its best-FID export, as the
    original's ``ckpt-best.pt``; a pipeline's: the last stage's export).

    From a training checkpoint the generator is its EMA (``g_ema``), as the original tunes from.
    """
    local = workdir_lib.local_path(path)
    if checkpoint not in ('latest', 'best'):
        raise ValueError(f"checkpoint={checkpoint!r}; expected 'latest' or 'best'")
    if checkpoint == 'best':
        if workdir_lib.read_best(local) is None:
            raise FileNotFoundError(
                f'{path} has no best-FID export ({workdir_lib.BEST_GENERATOR}/{workdir_lib.BEST_FILE}): that '
                f"needs a stage workdir trained with fid in eval_metrics and eval_every > 0; use "
                f"tune_from_checkpoint='latest' otherwise")
        gen, g_vars = convert.load_generator(os.path.join(local, workdir_lib.BEST_GENERATOR), mean_style=False)
        disc = d_vars = None
        if want_d:
            disc, d_vars = convert.load_discriminator(os.path.join(local, workdir_lib.BEST_DISCRIMINATOR))
        return gen, g_vars, disc, d_vars
    if workdir_lib.is_stage(local):
        return _load_stage(local, want_d)
    if workdir_lib.is_pipeline(local):  # its final export
        path = local = os.path.join(local, workdir_lib.GENERATOR)
    gen, g_vars = convert.load_generator(path, mean_style=False)
    disc = d_vars = None
    if want_d:
        if os.path.isdir(local):  # a model directory holds one model; look for a D next to it
            sibling = os.path.join(os.path.dirname(os.path.abspath(local)), workdir_lib.DISCRIMINATOR)
            if os.path.isdir(sibling):
                disc, d_vars = convert.load_discriminator(sibling)
        else:
            try:
                disc, d_vars = convert.load_discriminator(path)
            except convert.ConversionError as e:  # a G-only file (e.g. a released model)
                log.warning('%s has no discriminator (%s); D starts from its initialization', path, e)
    return gen, g_vars, disc, d_vars


def transfer_d(src_disc, src_params: dict, dst_disc, dst_params: dict) -> dict:
    """D weights across the stages' architectures, keeping ``dst_params`` where ``src`` has none.

    single-res -> multi-res (stage 0 -> 1): the same trunk; the extra fromRGB layers of the lower
    resolutions stay initialized. multi-res -> conditioned (stage 1 -> 2): the same weights; the
    new architecture-modulation layers stay initialized. As the original's partial loads.
    """
    src = dict(src_params)
    if isinstance(src_disc, Discriminator) and isinstance(dst_disc, DiscriminatorMultiRes):
        src = {('from_rgb_0' if k == 'from_rgb' else k): v for k, v in src.items()}
    missing = []

    def merge(s, d, path):
        if isinstance(d, dict):
            if not isinstance(s, dict):
                raise ValueError(f'D transfer: {path} is a layer here but not in the source')
            res = {}
            for k, v in d.items():
                if k in s:
                    res[k] = merge(s[k], v, f'{path}/{k}')
                else:
                    missing.append(f'{path}/{k}')
                    res[k] = v
            return res
        if np.shape(s) != np.shape(d):
            raise ValueError(f'D transfer: {path} has shape {np.shape(s)} in the source but {np.shape(d)} here '
                             f'(different channel_multiplier or resolution?)')
        return s

    out = merge(src, dst_params, '')
    if missing:
        log.info('D transfer: kept the initialization of %s', ', '.join(missing))
    return out


def initial_variables(config, gen, disc, rng):
    """G and D variables at step 0: fresh, or ``tune_from`` (optionally sorted), as the original."""
    k_g, k_d, k_sort = jax.random.split(rng, 3)
    g_vars = gen.init_variables(k_g)
    d_vars = disc.init_variables(k_d)
    if not config.tune_from:
        if config.sort_pretrain:
            raise ValueError('config: sort_pretrain=True sorts the channels of tune_from, which is not set')
        return g_vars, d_vars
    src_gen, src_g, src_disc, src_d = load_weights(config.tune_from, checkpoint=config.tune_from_checkpoint)
    diff = _same_arch(src_gen, gen, ('resolution', 'style_dim', 'n_mlp', 'full_channels'))
    if diff:
        raise ValueError(f'tune_from={config.tune_from!r} is a different generator: {"; ".join(diff)}; '
                         f'set config.resolution / config.model to match it')
    g_vars = {'params': src_g['params'], 'noise': src_g.get('noise', g_vars['noise'])}
    if config.sort_pretrain:
        log.info('sorting the channels of %s by importance', config.tune_from)
        g_vars = sorting.sort_channels(gen, g_vars, k_sort)
    if src_disc is not None:
        d_vars = {'params': transfer_d(src_disc, src_d['params'], disc, d_vars['params'])}
    return g_vars, d_vars


def load_teacher(config, gen):
    """(teacher Generator, params) for distillation; ``'ema'`` is this run's own EMA (in-place)."""
    if config.distill_weight <= 0:
        return None, {}
    if config.teacher == 'ema':
        return gen, {}
    t_gen, t_vars, _, _ = load_weights(config.teacher, want_d=False)
    diff = _same_arch(t_gen, gen, ('resolution', 'style_dim'))
    if diff:
        raise ValueError(f'teacher={config.teacher!r} does not match the student: {"; ".join(diff)}')
    # The teacher's forward pass is as costly as the student's: it runs in the run's precision.
    return t_gen.clone(bf16_from_res=gen.bf16_from_res), t_vars['params']


def trained_ratios(config) -> tuple[float, ...]:
    """The uniform widths a stage trains, widest first."""
    return elastic.RATIOS[::-1] if config.channel_mode else (1.,)


# ---------------------------------------------------------------------------- samples


class Sampler:
    """Grids of every width x trained resolution from fixed z, rendered by process 0 on one device.

    One program serves every width (channel masks), so sampling compiles once.
    """

    def __init__(self, gen: Generator, config):
        self.gen = gen
        ratios = trained_ratios(config)
        self.rows = [jnp.asarray(elastic.uniform_channels(gen.resolution, r, gen.full_channels(), gen.channel_max),
                                 jnp.int32) for r in ratios]
        self.labels = [f'{r}x' for r in ratios]
        self.n_res = config.n_res
        self.truncation = config.sample_truncation
        self.z = jax.random.normal(jax.random.key(2020), (config.n_samples, gen.style_dim))
        self._render = jax.jit(self._render_fn)

    def _render_fn(self, variables, mean, z, widths):
        _, rgbs = self.gen.apply(variables, z, channel_masks=widths, truncation=self.truncation,
                                 truncation_style=mean, return_rgbs=True)
        return rgbs[::-1][:self.n_res]

    def grid(self, variables, cell: Optional[int] = None, pad: int = 2) -> np.ndarray:
        """uint8 HWC: a block per z side by side; rows = widths (1x first), columns = resolutions,
        labelled in a band on top (resolution) and at the left (width).

        Cells are ``cell`` pixels (default the resolution, kept between 64 and 256 so that small
        outputs stay visible and large ones fit a TensorBoard page).
        """
        cell = cell or min(max(self.gen.resolution, 64), 256)
        mean = generator_lib.mean_w(self.gen, variables, 4096, use_stored=False)  # once per grid, not per row
        per_row = [[to_uint8(x) for x in self._render(variables, mean, self.z, w)] for w in self.rows]
        n, nr, nc = self.z.shape[0], len(self.rows), self.n_res
        top, left = render_lib.LABEL_TOP, render_lib.LABEL_LEFT
        h, w = nr * (cell + pad) + pad, nc * (cell + pad) + pad
        out = np.full((top + h, left + n * w, 3), 255, np.uint8)
        for i, row in enumerate(per_row):
            for j, imgs in enumerate(row):
                for k in range(n):
                    y, x = top + pad + i * (cell + pad), left + k * w + pad + j * (cell + pad)
                    out[y:y + cell, x:x + cell] = resize(imgs[k], cell)
        resolutions = self.gen.output_resolutions[::-1][:nc]
        columns = [(f'{r} px', left + k * w + pad + j * (cell + pad) + cell // 2)
                   for k in range(n) for j, r in enumerate(resolutions)]
        rows = [(label, top + pad + i * (cell + pad) + cell // 2) for i, label in enumerate(self.labels)]
        return render_lib.label_bands(out, top, left, columns, rows)


def ema_variables(state) -> dict:
    """This process's copy of the EMA generator's variables (samples, evaluation, export)."""
    return {'params': sharding.local_copy(state.ema_params), 'noise': sharding.local_copy(state.g_noise)}


# ---------------------------------------------------------------------------- evaluation and export


def eval_configs(gen: Generator, config) -> dict:
    """The sub-generators the trainer evaluates: every trained width x trained resolution."""
    return evaluate_lib.grid(gen, trained_ratios(config), gen.output_resolutions[::-1][:config.n_res])


def eval_settings(config, workdir: str) -> evaluate_lib.Settings:
    stats = config.fid_stats or os.path.join(workdir, 'fid_stats', config.dataset.replace('/', '_') + '_{res}.npz')
    return evaluate_lib.Settings(n_fid=config.eval_n_fid, n_ppl=config.eval_n_ppl,
                                 n_consistency=config.eval_n_consistency, seed=config.seed, stats=stats,
                                 dataset=config.dataset, data_dir=config.data_dir, manual_dir=config.manual_dir,
                                 source_resolution=config.resolution, inception=config.inception or None,
                                 progress=False)


def evaluate(config, gen, disc, state, step, writer, workdir):
    """``config.eval_metrics`` (:data:`anycost_jax.eval.evaluate.METRICS`) of every trained
    sub-generator on the EMA generator; keeps the best-FID pair."""
    gen = gen.clone(bf16_from_res=None)  # metrics are measured in float32
    variables = ema_variables(state)
    t = time.time()
    results = evaluate_lib.evaluate(gen, variables, config.eval_metrics, eval_configs(gen, config),
                                    eval_settings(config, workdir))
    log.info('evaluation at step %d (%.0f s):\n%s', step, time.time() - t, evaluate_lib.format_table(results))
    if jax.process_index() == 0:
        writer.write_scalars(step, evaluate_lib.scalars(results))
    if 'fid' in config.eval_metrics:
        keep_best(gen, variables, disc, state, step, results[f'1.0x@{gen.top_res}']['fid'], workdir)


def keep_best(gen, variables, disc, state, step, fid, workdir):
    """Exports the EMA generator and D as the best pair when the full-width FID is the best so
    far (the original's ``ckpt-best.pt``, which a later stage may tune from)."""
    better = True
    if jax.process_index() == 0:
        best = workdir_lib.read_best(workdir)
        better = best is None or best['step'] == step or fid < best['fid']
    if jax.process_count() > 1:  # process 0 decides: the export is collective
        better = bool(multihost_utils.broadcast_one_to_all(np.int32(better)))
    if not better:
        return
    # D first: best.json, written last, marks a complete pair.
    convert.save_model(os.path.join(workdir, workdir_lib.BEST_DISCRIMINATOR), disc.clone(bf16_from_res=None),
                       {'params': sharding.local_copy(state.d_params)})
    convert.save_model(os.path.join(workdir, workdir_lib.BEST_GENERATOR), gen, convert.add_mean_style(gen, variables))
    if jax.process_index() == 0:
        workdir_lib.write_best(workdir, step, fid)
        log.info('step %d: best FID so far (%.3f), exported to %s', step, fid,
                 os.path.join(workdir, workdir_lib.BEST_GENERATOR))


def export(config, state, workdir):
    """The final EMA generator (with its mean w) and D as model directories (every process calls it)."""
    gen, disc = build_models(config)
    # Exported models compute in float32 whatever the run's training precision was.
    gen, disc = gen.clone(bf16_from_res=None), disc.clone(bf16_from_res=None)
    g_vars = convert.add_mean_style(gen, ema_variables(state))
    convert.save_model(os.path.join(workdir, workdir_lib.GENERATOR), gen, g_vars)
    convert.save_model(os.path.join(workdir, workdir_lib.DISCRIMINATOR), disc,
                       {'params': sharding.local_copy(state.d_params)})
    if jax.process_index() == 0:
        log.info('exported %s/%s and %s/%s', workdir, workdir_lib.GENERATOR, workdir, workdir_lib.DISCRIMINATOR)


# ---------------------------------------------------------------------------- the stage


def check_device_batch(per_device: int, allow_small: bool = False) -> None:
    """Refuses a per-device batch that D's minibatch-stddev groups of 4 do not tile."""
    group = STDDEV_GROUP
    if per_device >= group and per_device % group == 0:
        return
    if per_device < group and allow_small:
        log.warning('%d images per device: minibatch-stddev groups of %d instead of %d (allow_small_stddev_group)',
                    per_device, per_device, group)
        return
    hint = ' or set --config.allow_small_stddev_group=True to accept a smaller group' if per_device < group else ''
    raise ValueError(f'config: {per_device} images per device (batch_size / devices); D computes its minibatch '
                     f'stddev over groups of {group} images on one device, as the original, so use a multiple of '
                     f'{group} per device{hint}')


def check(config, workdir: str) -> None:
    """Every config error before any work (missing Inception weights included)."""
    config_lib.check(config)
    unknown = [m for m in config.eval_metrics if m not in evaluate_lib.METRICS]
    if unknown:
        raise ValueError(f'config: eval_metrics {unknown} are neither built in ({", ".join(evaluate_lib.BUILTIN)}) '
                         f'nor registered with anycost_jax.eval.evaluate.register')
    n_dev = jax.device_count()
    if config.batch_size % n_dev:
        raise ValueError(f'config: batch_size={config.batch_size} must be divisible by the {n_dev} devices')
    check_device_batch(config.batch_size // n_dev, config.allow_small_stddev_group)
    if 'fid' in config.eval_metrics:  # missing Inception weights fail now, not after the first eval_every steps
        evaluate_lib.feature_extractor(eval_settings(config, workdir))


def make_stage(config, workdir: str) -> loop.Stage:
    mesh = sharding.data_mesh()
    gen, disc = build_models(config)
    teacher, teacher_params = load_teacher(config, gen)
    cfg = steps_lib.StepConfig.from_config(config, config.batch_size)
    g_tx, d_tx = steps_lib.adam(config.lr), steps_lib.adam(config.lr)
    steps = steps_lib.Steps(mesh, gen, disc, cfg, g_tx, d_tx, teacher=teacher)
    progs = steps.programs()
    rng = jax.random.key(config.seed)
    teacher_params = steps.replicate(teacher_params)

    def init_state(fresh: bool):
        # Initialization is a pure function of the seed: every process computes the same variables.
        if fresh:
            g_vars, d_vars = initial_variables(config, gen, disc, jax.random.fold_in(rng, 1))
        else:  # a template with the right structure; the checkpoint overwrites it
            g_vars, d_vars = gen.init_variables(jax.random.key(0)), disc.init_variables(jax.random.key(0))
        return steps.replicate(steps_lib.create_state(jax.random.fold_in(rng, 2), g_vars, d_vars, g_tx, d_tx))

    programs = [loop.Program('d_step', progs['d_step']),
                loop.Program('d_reg_step', progs['d_reg_step'], cfg.r1_due),
                loop.Program('g_step', progs['g_step'], args=(teacher_params,))]
    if 'g_reg_step' in progs:
        programs.append(loop.Program('g_reg_step', progs['g_reg_step'], cfg.pl_due))

    def data(start: int):
        return pipeline.create_input_iter(config.dataset, config.resolution, config.n_res, config.batch_size,
                                          config.seed, start_step=start, data_dir=config.data_dir,
                                          manual_dir=config.manual_dir, flip=config.flip)

    sampler = Sampler(gen, config)
    return loop.Stage(
        name=config.name, init_state=init_state, programs=programs, data=data, shard_batch=steps.shard_batch,
        checked_trees=lambda s: (s.g_params, s.d_params, s.ema_params), batch_size=config.batch_size,
        meta={'config': config.to_dict(), 'teacher': config.teacher, 'tune_from': config.tune_from},
        samples=lambda s: sampler.grid(ema_variables(s)),
        evaluate=lambda s, step, writer: evaluate(config, gen, disc, s, step, writer, workdir),
        export=lambda s: export(config, s, workdir))
