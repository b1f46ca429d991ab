"""The training loop every family shares: a stage is a state plus step programs with periods.

The loop owns what must not differ between families: resuming from the latest checkpoint
(and refusing to start afresh over corrupt ones), the input stream from the resumed step,
running each due program in order, logging (losses, steps/s, ETA), sample grids, periodic
evaluation, checkpoints, SIGTERM (save at the end of the iteration and return), the
non-finite guard (never checkpoint a state whose metrics or parameters are not finite), the
replica check and the final export. A family describes one stage as a :class:`Stage`.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import signal
import threading
import time
from typing import Any, Callable, ContextManager, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from clu import periodic_actions
from jax.experimental import multihost_utils

from anycost_jax import checkpoint as ckpt_lib
from anycost_jax import workdir as workdir_lib

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
    pass


def always(step: int) -> bool:
    return True


@dataclasses.dataclass(frozen=True)
class Program:
    """One compiled step: ``fn(state, batch, *args) -> (state, metrics)``, run when ``due(step)``."""
    name: str
    fn: Callable
    due: Callable[[int], bool] = always
    args: tuple = ()


@dataclasses.dataclass
class Stage:
    """What a family hands the loop for one training stage.

    ``init_state(fresh)``: the replicated state at step 0 (``fresh``) or a template of its
    structure that the checkpoint overwrites; it must have a ``step`` field.
    ``data(start_step)``: the input iterator from that step, as a context manager.
    ``checked_trees(state)``: parameters that must stay finite and equal on every device.
    ``samples(state)``: a uint8 HWC grid (process 0 only), ``evaluate(state, step, writer)``
    and ``export(state)``: optional hooks (every process calls evaluate and export).
    """
    name: str
    init_state: Callable[[bool], Any]
    programs: Sequence[Program]
    data: Callable[[int], ContextManager[Iterator]]
    shard_batch: Callable[[Any], Any]
    checked_trees: Callable[[Any], Any]
    batch_size: int
    meta: dict = dataclasses.field(default_factory=dict)
    samples: Optional[Callable[[Any], np.ndarray]] = None
    evaluate: Optional[Callable[[Any, int, Any], None]] = None
    export: Optional[Callable[[Any], None]] = None


@dataclasses.dataclass(frozen=True)
class Periods:
    num_steps: int
    log_every: int = 100
    sample_every: int = 1000
    eval_every: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: Optional[int] = 3

    @classmethod
    def from_config(cls, config) -> 'Periods':
        return cls(**{f.name: config[f.name] for f in dataclasses.fields(cls)})


# ---------------------------------------------------------------------------- guards


class StopSignal:
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


def check_finite(metrics: dict, step: int, workdir: str, last_ckpt: Optional[int]):
    bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
    if bad:
        keep = (f'the last good checkpoint (step {last_ckpt}) is kept in {workdir}/checkpoints' if last_ckpt is not None
                else 'no checkpoint was written yet')
        raise NonFiniteError(f'non-finite training metrics at step {step}: {bad}; stopping ({keep}). Lower the '
                             f'learning rate, raise r1, or check the data; restarting resumes from that checkpoint')


@jax.jit
def all_finite(trees) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(trees)]))


def check_replicas_agree(trees) -> str:
    """Raises if any device of any process holds different parameters; else says so.

    Every device applies the same pmean-ed update, so the replicas must be bitwise equal; a
    difference means a broken collective or non-deterministic hardware, and the run is void.
    """
    prints = []
    for leaf in jax.tree.leaves(trees):
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


def quiet_orbax_info():
    """Orbax logs every save phase at INFO; keep its warnings and errors only."""
    from absl import logging as absl_logging

    class _Filter(logging.Filter):
        def filter(self, record):
            return record.levelno >= logging.WARNING or f'{os.sep}orbax{os.sep}' not in record.pathname

    handler = absl_logging.get_absl_handler()
    if not any(isinstance(f, _Filter) for f in handler.filters):
        handler.addFilter(_Filter())


# ---------------------------------------------------------------------------- the loop


def _restore(stage: Stage, ckpt: ckpt_lib.Checkpointer, workdir: str):
    state = stage.init_state(ckpt.latest_step() is None)
    restored = ckpt.restore(state)
    if restored is None:
        moved = workdir_lib.corrupt_checkpoints(workdir)
        if moved:  # never silently restart from scratch over a run whose checkpoints all failed
            raise RuntimeError(f'{workdir}/checkpoints has no usable checkpoint, only corrupt ones moved aside: '
                               f'{moved}. Move them out of the way (or use a new workdir) to start afresh')
        return state
    state, _, resumed_at = restored
    log.info('resumed from %s/checkpoints/%d', workdir, resumed_at)
    return state


def precompile(programs: Sequence[Program], state, batch) -> list[str]:
    """Compiles every jitted program for the loop's arguments, side by side; returns their names.

    Each program is traced and lowered here, one after the other (Python), then the lowered
    programs compile in threads: XLA compiles without holding the GIL, so on a host with idle
    cores a stage's programs compile at once instead of in turn (the demo's stages spend tens
    of seconds compiling). The loop's own first calls then find the traced, lowered and compiled
    programs in jit's caches. A program whose first call has other argument types (none of ours)
    would simply compile again there.
    """
    lowered = {p.name: p.fn.lower(state, batch, *p.args) for p in programs if hasattr(p.fn, 'lower')}
    if lowered:
        with concurrent.futures.ThreadPoolExecutor(len(lowered)) as pool:
            list(pool.map(lambda low: low.compile(), lowered.values()))
    return list(lowered)


def run(stage: Stage, periods: Periods, workdir: str, writer) -> Any:
    """Trains ``stage`` to ``periods.num_steps`` in ``workdir`` (resuming); returns the last state."""
    ckpt = ckpt_lib.Checkpointer(workdir_lib.checkpoint_dir(workdir), keep=periods.keep_checkpoints)
    is_main = jax.process_index() == 0
    stop = StopSignal()
    try:
        state = _restore(stage, ckpt, workdir)
        start = step = int(state.step)
        # ETA in the log and the work-unit notes; the rates go to TensorBoard with the losses.
        report = periodic_actions.ReportProgress(num_train_steps=periods.num_steps, every_steps=periods.log_every)
        pending, last_ckpt = [], ckpt.latest_step()
        t_log, step_log = time.time(), start
        log.info('training %s: steps %d -> %d, global batch %d on %d devices (%d processes)', stage.name, start,
                 periods.num_steps, stage.batch_size, jax.device_count(), jax.process_count())

        def drain():
            """Fetches the pending metrics, checks them, and returns their mean."""
            nonlocal pending
            fetched, pending = jax.device_get(pending), []
            for m in fetched:
                check_finite(m, step, workdir, last_ckpt)
            keys = {k for m in fetched for k in m}
            return {k: float(np.mean([m[k] for m in fetched if k in m])) for k in sorted(keys)}

        def save(force=False):
            nonlocal last_ckpt
            scalars = drain()
            if scalars:
                writer.write_scalars(step, scalars)
            # Metrics are computed before the update, so a step can still have produced
            # non-finite parameters: never write such a state over the last good checkpoint.
            if not bool(all_finite(stage.checked_trees(state))):
                check_finite({'parameters': float('nan')}, step, workdir, last_ckpt)
            ckpt.save(step, state, {**stage.meta, 'data_position': step * stage.batch_size}, force=force)
            last_ckpt = step

        with stage.data(start) as data:
            batch = stage.shard_batch(next(data)) if step < periods.num_steps else None
            if batch is not None:
                t_compile = time.time()
                names = precompile(stage.programs, state, batch)
                log.info('compiled %s in %.0f s', ', '.join(names) or 'nothing', time.time() - t_compile)
            while step < periods.num_steps:
                with jax.profiler.StepTraceAnnotation('train', step_num=step):
                    batch = batch if batch is not None else stage.shard_batch(next(data))
                    metrics = {}
                    for program in stage.programs:
                        if program.due(step):
                            state, m = program.fn(state, batch, *program.args)
                            metrics.update(m)
                    batch = None
                pending.append(metrics)
                step += 1
                report(step)
                last = step == periods.num_steps
                if step % periods.log_every == 0 or last:
                    scalars = drain()
                    now = time.time()
                    rate = (step - step_log) / max(now - t_log, 1e-9)
                    scalars.update(steps_per_sec=rate, images_per_sec=rate * stage.batch_size)
                    t_log, step_log = now, step
                    writer.write_scalars(step, scalars)
                if stage.samples is not None and (step % periods.sample_every == 0 or last) and is_main:
                    grid = stage.samples(state)
                    writer.write_images(step, {'samples': grid[None]})
                    from PIL import Image
                    Image.fromarray(grid).save(workdir_lib.samples_path(workdir, step))
                if stage.evaluate is not None and periods.eval_every and step % periods.eval_every == 0:
                    stage.evaluate(state, step, writer)
                if step % periods.checkpoint_every == 0 or last:
                    save()
                if stop.should_stop():
                    log.warning('stopping at step %d on SIGTERM', step)
                    save(force=True)
                    break
        ckpt.wait()
        log.info(check_replicas_agree(stage.checked_trees(state)))
        if step == periods.num_steps and stage.export is not None:
            stage.export(state)
    finally:
        stop.restore()
        ckpt.close()
        writer.flush()
    return state
