"""``train_and_evaluate(config, workdir)``: every Anycost training stage, from one CPU to a pod.

One loop serves all stages; the config decides what runs (see ``configs/`` and
:mod:`anycost_jax.train.config_lib`). An iteration is, as in the original:

    D step (+ lazy R1 every ``d_reg_every``) -> G step (+ lazy path length every ``g_reg_every``)
    -> one EMA update

with the regularizers on the last iteration of each interval (the original counts from 1),

compiled once each as per-device programs over a 1-D ``data`` mesh of every device of every
process (:mod:`anycost_jax.train.steps`).

The work directory holds::

    config.json           the config of the first start (resumes must keep its run shape)
    checkpoints/<step>/   Orbax train state (G, D, G EMA, both Adam states, step, rng, path
                          length mean) + meta (data position, config, teacher reference)
    samples/<step>.png    grids of every width x resolution from fixed z (EMA generator)
    generator/            the final EMA generator as a model directory (``convert.load_model``;
                          ``launch/generate.py --checkpoint=WORKDIR/generator``)
    discriminator/        the final D (a later stage's ``tune_from`` may also be the workdir)
    best_generator/       with fid evaluated: the best-FID EMA generator (+ best.json: step, FID)
    best_discriminator/   and D at that step (``tune_from_checkpoint='best'`` tunes from the pair)
    events.out.tfevents.* TensorBoard scalars (every loss, D accuracies, steps/s, images/s) and
                          the sample grids

Restarting with the same workdir resumes from the latest checkpoint: the data stream, the
random draws and hence the parameters continue exactly as if the run had never stopped.
SIGTERM (preemption) saves a checkpoint at the end of the current iteration and returns. A
non-finite loss stops the run with an error, keeping the last checkpoint (which was saved
only after its metrics were checked).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import ml_collections
from clu import metric_writers, periodic_actions
from jax.experimental import multihost_utils

from anycost_jax import convert, elastic, sorting
from anycost_jax.data import pipeline
from anycost_jax.eval import evaluate as evaluate_lib
from anycost_jax.models.discriminator import Discriminator, DiscriminatorMultiRes
from anycost_jax.models.generator import Generator
from anycost_jax.render import resize, to_uint8
from anycost_jax import checkpoint as ckpt_lib
from anycost_jax.train import config_lib
from anycost_jax.train import steps as steps_lib

log = logging.getLogger(__name__)

# Custom metrics: name -> fn(step, generator, ema_variables, config) -> {scalar name: value}, run
# every eval_every steps by every process on the EMA generator. The built-in metrics
# (anycost_jax.eval.evaluate.METRICS) need no registration.
EVALUATORS: dict[str, Callable] = {}
CONFIG_FILE = 'config.json'
BEST_DIR, BEST_D_DIR, BEST_FILE = 'best_generator', 'best_discriminator', 'best.json'


class NonFiniteError(FloatingPointError):
    pass


# ---------------------------------------------------------------------------- models and weights


def build_models(config):
    m = config.model
    bf16 = config.get('bf16_from_res') or None  # config.json of older runs has no such field
    gen = Generator(config.resolution, style_dim=m.style_dim, n_mlp=m.n_mlp,
                    channel_multiplier=m.channel_multiplier, channel_max=m.channel_max, bf16_from_res=bf16)
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


def _load_workdir(path: str):
    """(gen, g_vars{ema}, disc, d_vars) from the latest checkpoint of one of our work directories."""
    with open(os.path.join(path, CONFIG_FILE)) as f:
        cfg = ml_collections.ConfigDict(json.load(f))
    gen, disc = build_models(cfg)
    g_vars = gen.init_variables(jax.random.key(0))
    d_vars = disc.init_variables(jax.random.key(0))
    tx = steps_lib.adam(cfg.lr)
    target = steps_lib.create_state(jax.random.key(0), g_vars, d_vars, tx, tx)
    ckpt = ckpt_lib.Checkpointer(os.path.join(path, 'checkpoints'), async_save=False)
    try:
        restored = ckpt.restore(target)
    finally:
        ckpt.close()
    if restored is None:
        raise FileNotFoundError(f'{path}: a work directory without checkpoints; nothing to load')
    state, _, step = restored
    log.info('loaded %s at step %d', path, step)
    g_vars = {'params': jax.tree.map(np.asarray, state.ema_params), 'noise': jax.tree.map(np.asarray, state.g_noise)}
    return gen, g_vars, disc, {'params': jax.tree.map(np.asarray, state.d_params)}


def _local_path(path: str) -> str:
    """``path`` with ``~`` expanded, unless it is a URL."""
    return path if '://' in path else os.path.expanduser(path)


def is_workdir(path: str) -> bool:
    """Whether ``path`` is one of our training workdirs: a stage's (``config.json``) or a pipeline's
    (the last stage's ``generator/`` export), as :func:`load_weights` reads them."""
    local = _local_path(path)
    return os.path.isfile(os.path.join(local, CONFIG_FILE)) or os.path.isdir(os.path.join(local, 'generator'))


def load_weights(path: str, want_d: bool = True, checkpoint: str = 'latest'):
    """(gen, g_vars, disc or None, d_vars or None) from a .pt / URL, a model directory or a workdir
    (a stage's: its latest checkpoint, or with ``checkpoint='best'`` its best-FID export, as the
    original's ``ckpt-best.pt``; a pipeline's: the last stage's export).

    From a training checkpoint the generator is its EMA (``g_ema``), as the original tunes from.
    """
    local = _local_path(path)
    if checkpoint not in ('latest', 'best'):
        raise ValueError(f"checkpoint={checkpoint!r}; expected 'latest' or 'best'")
    if checkpoint == 'best':
        best = os.path.join(local, BEST_DIR)
        if not os.path.isfile(os.path.join(best, BEST_FILE)):
            raise FileNotFoundError(f'{path} has no best-FID export ({BEST_DIR}/{BEST_FILE}): that needs a stage '
                                    f'workdir trained with fid in eval_metrics and eval_every > 0; use '
                                    f"tune_from_checkpoint='latest' otherwise")
        gen, g_vars = convert.load_generator(best, mean_style=False)
        disc = d_vars = None
        if want_d:
            disc, d_vars = convert.load_discriminator(os.path.join(local, BEST_D_DIR))
        return gen, g_vars, disc, d_vars
    if os.path.isdir(local) and os.path.exists(os.path.join(local, CONFIG_FILE)):
        return _load_workdir(local)
    if os.path.isdir(os.path.join(local, 'generator')):  # a pipeline's workdir: its final export
        path = local = os.path.join(local, 'generator')
    gen, g_vars = convert.load_generator(path, mean_style=False)
    disc = d_vars = None
    if want_d:
        if os.path.isdir(local):  # a model directory holds one model; look for a D next to it
            sibling = os.path.join(os.path.dirname(os.path.abspath(local)), 'discriminator')
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
    out, missing = {}, []

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


# ---------------------------------------------------------------------------- samples


class Sampler:
    """Grids of every width x trained resolution from fixed z, rendered by process 0 on one device.

    One program serves every width (channel masks), so sampling compiles once.
    """

    def __init__(self, gen: Generator, config):
        self.gen = gen
        ratios = elastic.RATIOS[::-1] if config.channel_mode else (1.,)
        self.rows = [jnp.asarray(elastic.uniform_channels(gen.resolution, r, gen.full_channels(), gen.channel_max),
                                 jnp.int32) for r in ratios]
        self.labels = [f'{r}x' for r in ratios]
        self.n_res = config.n_res
        self.truncation = config.sample_truncation
        self.z = jax.random.normal(jax.random.key(2020), (config.n_samples, gen.style_dim))
        self._render = jax.jit(self._render_fn)

    def _render_fn(self, variables, z, widths):
        mean = self.gen.apply(variables, 4096, jax.random.key(0), method=Generator.mean_style)
        _, rgbs = self.gen.apply(variables, z, channel_masks=widths, truncation=self.truncation,
                                 truncation_style=mean, return_rgbs=True)
        return rgbs[::-1][:self.n_res]

    def grid(self, variables, cell: Optional[int] = None, pad: int = 2) -> np.ndarray:
        """uint8 HWC: a block per z side by side; rows = widths (1x first), columns = resolutions.

        Cells are ``cell`` pixels (default the resolution, kept between 64 and 256 so that small
        outputs stay visible and large ones fit a TensorBoard page).
        """
        cell = cell or min(max(self.gen.resolution, 64), 256)
        per_row = [[to_uint8(x) for x in self._render(variables, self.z, w)] for w in self.rows]
        n, nr, nc = self.z.shape[0], len(self.rows), self.n_res
        h, w = nr * (cell + pad) + pad, nc * (cell + pad) + pad
        out = np.full((h, n * w, 3), 255, np.uint8)
        for i, row in enumerate(per_row):
            for j, imgs in enumerate(row):
                for k in range(n):
                    y, x = pad + i * (cell + pad), k * w + pad + j * (cell + pad)
                    out[y:y + cell, x:x + cell] = resize(imgs[k], cell)
        return out


def _local(tree):
    """Process-local numpy copy of a replicated global pytree (no collective)."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)


def _ema_variables(state) -> dict:
    """This process's copy of the EMA generator's variables (samples, evaluation, export)."""
    return {'params': _local(state.ema_params), 'noise': _local(state.g_noise)}


# ---------------------------------------------------------------------------- preemption


class _StopSignal:
    """Turns SIGTERM into a flag the loop checks at iteration boundaries (agreed across hosts)."""

    def __init__(self):
        self.flag = False
        self._prev = None
        if threading.current_thread() is threading.main_thread():
            self._prev = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        log.warning('SIGTERM received: saving a checkpoint at the end of this iteration')
        self.flag = True

    def should_stop(self) -> bool:
        if jax.process_count() == 1:
            return self.flag
        return bool(multihost_utils.process_allgather(np.array(self.flag)).any())

    def restore(self):
        if self._prev is not None:
            signal.signal(signal.SIGTERM, self._prev)


# ---------------------------------------------------------------------------- the loop


def _check_finite(metrics: dict, step: int, workdir: str, last_ckpt: Optional[int]):
    bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
    if bad:
        keep = (f'the last good checkpoint (step {last_ckpt}) is kept in {workdir}/checkpoints' if last_ckpt is not None
                else 'no checkpoint was written yet')
        raise NonFiniteError(f'non-finite training metrics at step {step}: {bad}; stopping ({keep}). Lower the '
                             f'learning rate, raise r1, or check the data; restarting resumes from that checkpoint')


@jax.jit
def all_finite(state: steps_lib.TrainState) -> jax.Array:
    trees = (state.g_params, state.d_params, state.ema_params)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(trees)]))


def _listdir(path):
    return os.listdir(path) if os.path.isdir(path) else []


def quiet_orbax_info():
    """Orbax logs every save phase at INFO; keep its warnings and errors only."""
    from absl import logging as absl_logging

    class _Filter(logging.Filter):
        def filter(self, record):
            return record.levelno >= logging.WARNING or f'{os.sep}orbax{os.sep}' not in record.pathname

    handler = absl_logging.get_absl_handler()
    if not any(isinstance(f, _Filter) for f in handler.filters):
        handler.addFilter(_Filter())


def _absolute(workdir: str) -> str:
    return workdir if '://' in workdir else os.path.abspath(os.path.expanduser(workdir))


def _write_config(config, workdir):
    path = os.path.join(workdir, CONFIG_FILE)
    if os.path.exists(path):
        with open(path) as f:
            first = json.load(f)
        diff = [f'{k}: {first.get(k)!r} -> {config.to_dict().get(k)!r}' for k in config_lib.RESUME_KEYS
                if json.dumps(first.get(k), sort_keys=True) != json.dumps(config.to_dict().get(k), sort_keys=True)]
        if diff:
            raise ValueError(f'{workdir} holds a run with a different shape ({"; ".join(diff)}); resume it with '
                             f'the same settings or use a new workdir')
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(path + '.tmp', 'w') as f:
            f.write(config.to_json_best_effort(indent=1, sort_keys=True))
        os.replace(path + '.tmp', path)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> steps_lib.TrainState:
    """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints); returns the final state.

    A pipeline config (:func:`config_lib.pipeline`) runs its stages one after the other, see
    :func:`train_pipeline`.
    """
    if 'pipeline' in config:
        return train_pipeline(config, workdir)
    config_lib.check(config)
    quiet_orbax_info()
    unknown = [m for m in config.eval_metrics if m not in EVALUATORS and m not in evaluate_lib.METRICS]
    if unknown:
        raise ValueError(f'config: eval_metrics {unknown} are neither built in ({", ".join(evaluate_lib.METRICS)}) '
                         f'nor registered in trainer.EVALUATORS ({sorted(EVALUATORS)})')
    workdir = _absolute(workdir)
    n_dev, n_proc = jax.device_count(), jax.process_count()
    if config.batch_size % n_dev:
        raise ValueError(f'config: batch_size={config.batch_size} must be divisible by the {n_dev} devices')
    check_device_batch(config.batch_size // n_dev, config.allow_small_stddev_group)
    if 'fid' in config.eval_metrics:  # missing Inception weights fail now, not after the first eval_every steps
        evaluate_lib.feature_extractor(eval_settings(config, workdir))
    _write_config(config, workdir)
    is_main = jax.process_index() == 0
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)
    writer.write_hparams({k: v for k, v in config.to_dict().items()
                          if isinstance(v, (int, float, str, bool))})

    mesh = jax.make_mesh((n_dev,), (steps_lib.AXIS,))
    gen, disc = build_models(config)
    teacher, teacher_params = load_teacher(config, gen)
    cfg = config_lib.step_config(config, config.batch_size)
    g_tx, d_tx = steps_lib.adam(config.lr), steps_lib.adam(config.lr)
    steps = steps_lib.Steps(mesh, gen, disc, cfg, g_tx, d_tx, teacher=teacher)
    progs = steps.programs()

    ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), keep=config.keep_checkpoints)
    rng = jax.random.key(config.seed)
    # Initialization is a pure function of the seed: every process computes the same variables.
    if ckpt.latest_step() is None:
        g_vars, d_vars = initial_variables(config, gen, disc, jax.random.fold_in(rng, 1))
    else:  # a template with the right structure; the checkpoint overwrites it
        g_vars, d_vars = gen.init_variables(jax.random.key(0)), disc.init_variables(jax.random.key(0))
    state = steps.replicate(steps_lib.create_state(jax.random.fold_in(rng, 2), g_vars, d_vars, g_tx, d_tx))
    restored = ckpt.restore(state)
    if restored is None:
        moved = sorted(d for d in _listdir(os.path.join(workdir, 'checkpoints')) if '.corrupt' in d)
        if moved:  # never silently restart from scratch over a run whose checkpoints all failed
            raise RuntimeError(f'{workdir}/checkpoints has no usable checkpoint, only corrupt ones moved aside: '
                               f'{moved}. Move them out of the way (or use a new workdir) to start afresh')
    else:
        state, _, resumed_at = restored
        log.info('resumed from %s/checkpoints/%d', workdir, resumed_at)
    start = int(state.step)
    teacher_params = steps.replicate(teacher_params)

    # ------------------------------------------------------------------ loop
    data = pipeline.create_input_iter(config.dataset, config.resolution, config.n_res, config.batch_size,
                                      config.seed, start_step=start, data_dir=config.data_dir,
                                      manual_dir=config.manual_dir, flip=config.flip)
    sampler = Sampler(gen, config)
    stop = _StopSignal()
    # ETA in the log and the work-unit notes; the rates go to TensorBoard with the losses below.
    report = periodic_actions.ReportProgress(num_train_steps=config.num_steps, every_steps=config.log_every)
    hooks = [report]
    meta = {'config': config.to_dict(), 'teacher': config.teacher, 'tune_from': config.tune_from}
    pending, last_ckpt, step = [], ckpt.latest_step(), start
    t_log, step_log = time.time(), start
    log.info('training %s: steps %d -> %d, global batch %d on %d devices (%d processes)', config.name, start,
             config.num_steps, config.batch_size, n_dev, n_proc)

    def drain():
        """Fetches the pending metrics, checks them, and returns their mean."""
        nonlocal pending
        fetched, pending = jax.device_get(pending), []
        for m in fetched:
            _check_finite(m, step, workdir, last_ckpt)
        keys = {k for m in fetched for k in m}
        return {k: float(np.mean([m[k] for m in fetched if k in m])) for k in sorted(keys)}

    def save(force=False):
        nonlocal last_ckpt
        scalars = drain()
        if scalars:
            writer.write_scalars(step, scalars)
        # Losses are computed before the update, so a step can still have produced non-finite
        # parameters: never write such a state over the last good checkpoint.
        if not bool(all_finite(state)):
            _check_finite({'parameters': float('nan')}, step, workdir, last_ckpt)
        ckpt.save(step, state, {**meta, 'data_position': step * config.batch_size}, force=force)
        last_ckpt = step

    try:
        with data:
            while step < config.num_steps:
                with jax.profiler.StepTraceAnnotation('train', step_num=step):
                    batch = steps.shard_batch(next(data))
                    state, m_d = progs['d_step'](state, batch)
                    metrics = dict(m_d)
                    if cfg.r1_due(step):
                        state, m_r = progs['d_reg_step'](state, batch)
                        metrics.update(m_r)
                    state, m_g = progs['g_step'](state, batch, teacher_params)
                    metrics.update(m_g)
                    if cfg.pl_due(step):
                        state, m_p = progs['g_reg_step'](state, batch)
                        metrics.update(m_p)
                pending.append(metrics)
                step += 1
                for h in hooks:
                    h(step)
                if step % config.log_every == 0 or step == config.num_steps:
                    scalars = drain()
                    now = time.time()
                    rate = (step - step_log) / max(now - t_log, 1e-9)
                    scalars.update(steps_per_sec=rate, images_per_sec=rate * config.batch_size)
                    t_log, step_log = now, step
                    writer.write_scalars(step, scalars)
                if step % config.sample_every == 0 or step == config.num_steps:
                    _write_samples(sampler, state, step, workdir, writer, is_main)
                if config.eval_every and step % config.eval_every == 0:
                    _evaluate(config, gen, disc, state, step, writer, workdir)
                if step % config.checkpoint_every == 0 or step == config.num_steps:
                    save()
                if stop.should_stop():
                    log.warning('stopping at step %d on SIGTERM', step)
                    save(force=True)
                    break
        ckpt.wait()
        log.info(check_replicas_agree(state))
        if step == config.num_steps:
            _export(gen, disc, state, workdir, is_main)
    finally:
        stop.restore()
        ckpt.close()
        writer.flush()
    return state


def check_device_batch(per_device: int, allow_small: bool = False) -> None:
    """Refuses a per-device batch that D's minibatch-stddev groups of 4 do not tile."""
    group = steps_lib.STDDEV_GROUP
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


def _finished(config, workdir: str) -> bool:
    """Whether ``workdir`` holds a stage that already ran to ``num_steps`` and exported its models."""
    ckpt_dir = os.path.join(workdir, 'checkpoints')
    if not (os.path.isdir(ckpt_dir) and os.path.isdir(os.path.join(workdir, 'generator'))):
        return False
    with ckpt_lib.Checkpointer(ckpt_dir, async_save=False) as ck:
        latest = ck.latest_step()
    return latest is not None and latest >= config.num_steps


def train_pipeline(config: ml_collections.ConfigDict, workdir: str) -> steps_lib.TrainState:
    """Runs a pipeline config's stages in order, stage ``NAME`` in ``WORKDIR/NAME``; returns the last state.

    A stage's ``tune_from`` / ``teacher`` of ``config_lib.PREVIOUS`` become the previous stage's
    workdir (its EMA generator, D and, for a teacher, the frozen EMA). Every stage resumes on
    its own; one that already finished is skipped. SIGTERM stops the stage that runs and starts
    no further one. The last stage's generator and D are also exported to ``WORKDIR/generator``
    and ``WORKDIR/discriminator``, so the pipeline's workdir is used like a single stage's.
    """
    config_lib.check(config)
    # Absolute, so that the stages' config.json name the previous stage wherever they are resumed from.
    workdir = _absolute(workdir)
    stages = config_lib.stage_configs(config)
    log.info('pipeline %s: %s', config.name, ' -> '.join(f'{n} ({c.num_steps} steps)' for n, c in stages))
    state, previous = None, None
    for name, c in stages:
        stage_dir = os.path.join(workdir, name)
        for key in ('tune_from', 'teacher'):
            if c[key] == config_lib.PREVIOUS:
                c[key] = previous
        previous = stage_dir
        if _finished(c, stage_dir) and name != stages[-1][0]:
            log.info('pipeline: stage %s already finished in %s; skipped', name, stage_dir)
            continue
        log.info('pipeline: stage %s in %s', name, stage_dir)
        state = train_and_evaluate(c, stage_dir)
        if int(state.step) < c.num_steps:  # stopped (SIGTERM): the next stage needs this one finished
            log.warning('pipeline: stage %s stopped at step %d of %d; run again to continue', name,
                        int(state.step), c.num_steps)
            return state
    gen, disc = build_models(c)
    _export(gen, disc, state, workdir, jax.process_index() == 0)
    return state


def check_replicas_agree(state: steps_lib.TrainState) -> str:
    """Raises if any device of any process holds different G / D / EMA parameters; else says so.

    Every device applies the same pmean-ed update, so the replicas must be bitwise equal; a
    difference means a broken collective or non-deterministic hardware, and the run is void.
    """
    leaves = jax.tree.leaves((state.g_params, state.d_params, state.ema_params))
    prints = []
    for leaf in leaves:
        shards = [np.asarray(s.data) for s in leaf.addressable_shards]
        if any(not np.array_equal(shards[0], s) for s in shards[1:]):
            raise RuntimeError(f'process {jax.process_index()}: the devices hold different parameters; '
                               f'the data-parallel replicas diverged')
        prints.append(np.float64(np.abs(shards[0].astype(np.float64)).sum()))
    prints = np.asarray(prints)
    if jax.process_count() > 1:
        everyone = multihost_utils.process_allgather(prints)
        if not all(np.array_equal(everyone[0], p) for p in everyone[1:]):
            raise RuntimeError('the processes hold different parameters: the data-parallel replicas diverged')
    return f'parameters identical on all {jax.device_count()} devices of {jax.process_count()} process(es)'


def _write_samples(sampler, state, step, workdir, writer, is_main):
    if not is_main:
        return
    variables = _ema_variables(state)
    grid = sampler.grid(variables)
    writer.write_images(step, {'samples': grid[None]})
    os.makedirs(os.path.join(workdir, 'samples'), exist_ok=True)
    from PIL import Image
    Image.fromarray(grid).save(os.path.join(workdir, 'samples', f'{step:08d}.png'))


def eval_configs(gen: Generator, config) -> dict:
    """The sub-generators the trainer evaluates: every trained width x trained resolution."""
    ratios = elastic.RATIOS[::-1] if config.channel_mode else (1.,)
    return evaluate_lib.grid(gen, ratios, gen.output_resolutions[::-1][:config.n_res])


def eval_settings(config, workdir: str) -> evaluate_lib.Settings:
    stats = config.fid_stats or os.path.join(workdir, 'fid_stats', config.dataset.replace('/', '_') + '_{res}.npz')
    return evaluate_lib.Settings(n_fid=config.eval_n_fid, n_ppl=config.eval_n_ppl,
                                 n_consistency=config.eval_n_consistency, seed=config.seed, stats=stats,
                                 dataset=config.dataset, data_dir=config.data_dir, manual_dir=config.manual_dir,
                                 source_resolution=config.resolution, inception=config.inception or None, progress=False)


def _evaluate(config, gen, disc, state, step, writer, workdir):
    """Built-in metrics of every trained sub-generator, then registered ones; keeps the best-FID EMA."""
    gen = gen.clone(bf16_from_res=None)  # metrics are measured in float32
    variables = _ema_variables(state)
    is_main = jax.process_index() == 0
    builtin = [m for m in config.eval_metrics if m in evaluate_lib.METRICS]
    if builtin:
        t = time.time()
        results = evaluate_lib.evaluate(gen, variables, builtin, eval_configs(gen, config),
                                        eval_settings(config, workdir))
        log.info('evaluation at step %d (%.0f s):\n%s', step, time.time() - t, evaluate_lib.format_table(results))
        if is_main:
            writer.write_scalars(step, evaluate_lib.scalars(results))
        full = f'1.0x@{gen.top_res}'
        if 'fid' in builtin:
            _keep_best(gen, variables, disc, state, step, results[full]['fid'], workdir, is_main)
    for name in config.eval_metrics:
        if name in EVALUATORS and name not in evaluate_lib.METRICS:
            scalars = EVALUATORS[name](step, gen, variables, config)
            if is_main:
                writer.write_scalars(step, {f'eval/{k}': v for k, v in scalars.items()})


def _keep_best(gen, variables, disc, state, step, fid, workdir, is_main):
    """Exports the EMA generator to ``best_generator/`` and D to ``best_discriminator/`` when the
    full-width FID is the best so far (the original's ``ckpt-best.pt``, which a later stage may
    tune from)."""
    best_file = os.path.join(workdir, BEST_DIR, BEST_FILE)
    better = True
    if is_main and os.path.exists(best_file):
        with open(best_file) as f:
            best = json.load(f)
        better = best['step'] == step or fid < best['fid']
    if jax.process_count() > 1:  # process 0 decides: the export is collective
        better = bool(multihost_utils.broadcast_one_to_all(np.int32(better)))
    if not better:
        return
    # D first: best.json, written last, marks a complete pair.
    convert.save_model(os.path.join(workdir, BEST_D_DIR), disc.clone(bf16_from_res=None),
                       {'params': _local(state.d_params)})
    convert.save_model(os.path.join(workdir, BEST_DIR), gen, convert.add_mean_style(gen, variables))
    if is_main:
        with open(best_file + '.tmp', 'w') as f:
            json.dump({'step': step, 'fid': fid}, f)
        os.replace(best_file + '.tmp', best_file)
        log.info('step %d: best FID so far (%.3f), exported to %s', step, fid, os.path.join(workdir, BEST_DIR))


def _export(gen, disc, state, workdir, is_main):
    """The final EMA generator (with its mean w) and D as model directories (every process calls it)."""
    # Exported models compute in float32 whatever the run's training precision was.
    gen, disc = gen.clone(bf16_from_res=None), disc.clone(bf16_from_res=None)
    g_vars = convert.add_mean_style(gen, _ema_variables(state))
    convert.save_model(os.path.join(workdir, 'generator'), gen, g_vars)
    convert.save_model(os.path.join(workdir, 'discriminator'), disc, {'params': _local(state.d_params)})
    if is_main:
        log.info('exported %s/generator and %s/discriminator', workdir, workdir)
