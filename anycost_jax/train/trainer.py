"""``train_and_evaluate(config, workdir)``: any stage or pipeline of any family, from one CPU to a pod.

The config names its family (``config.family``, default ``'anycost'``); the family builds a
:class:`~anycost_jax.train.loop.Stage` and :func:`anycost_jax.train.loop.run` trains it. The
work directory's layout is :mod:`anycost_jax.workdir`. Restarting with the same workdir
resumes from the latest checkpoint: the data stream, the random draws and hence the
parameters continue exactly as if the run had never stopped. SIGTERM (preemption) saves a
checkpoint at the end of the current iteration and returns. A non-finite loss stops the run
with an error, keeping the last checkpoint (which was saved only after its metrics were checked).

A family is a module with ``RESUME_KEYS`` (the config fields a resume must keep),
``check(config, workdir)``, ``make_stage(config, workdir) -> Stage`` and
``export(config, state, workdir)`` (a pipeline exports its last stage at its root). A family may
also run pipeline steps that train nothing (``config.method`` in its ``TASKS``, e.g. GAN
Compression's search and export): ``run_task(config, workdir)`` (resumable: run again, it goes on
where it stopped), ``task_done(config, workdir)`` and ``export_task(config, stage_dir, workdir)``.
"""
from __future__ import annotations

import logging
import os

import jax
import ml_collections
from clu import metric_writers

from anycost_jax import workdir as workdir_lib
from anycost_jax.train import anycost, config_lib, crd, gan_compression, gan_slimming, img2img, loop

log = logging.getLogger(__name__)

FAMILIES = {'anycost': anycost, 'img2img': img2img, 'gan_compression': gan_compression,
            'gan_slimming': gan_slimming, 'crd': crd}


def family(config):
    name = config.get('family', 'anycost')
    if name not in FAMILIES:
        raise ValueError(f'config: family={name!r} is not one of {sorted(FAMILIES)}')
    return FAMILIES[name]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
    """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints); returns the final state.

    A pipeline config (:func:`config_lib.pipeline`) runs its stages one after the other, see
    :func:`train_pipeline`.
    """
    if 'pipeline' in config:
        return train_pipeline(config, workdir)
    fam = family(config)
    workdir = workdir_lib.absolute(workdir)
    fam.check(config, workdir)
    loop.quiet_orbax_info()
    is_main = jax.process_index() == 0
    workdir_lib.write_config(config, workdir, fam.RESUME_KEYS, is_main)
    if is_task(config):
        return fam.run_task(config, workdir)
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)
    writer.write_hparams({k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))})
    return loop.run(fam.make_stage(config, workdir), loop.Periods.from_config(config), workdir, writer)


def train_pipeline(config: ml_collections.ConfigDict, workdir: str):
    """Runs a pipeline config's stages in order, stage ``NAME`` in ``WORKDIR/NAME``; returns the last state.

    A stage's ``tune_from`` / ``teacher`` of ``config_lib.PREVIOUS`` become the previous stage's
    workdir (its EMA generator, D and, for a teacher, the frozen EMA), any ``'@stage:NAME'`` field
    stage NAME's; a family's ``precheck(config)`` sees every stage before the first runs; a step
    that trains nothing (a family's ``TASKS``) is done when its ``task_done``. Every stage resumes on
    its own; one that already finished is skipped. SIGTERM stops the stage that runs and starts
    no further one. The last stage's models are also exported at ``WORKDIR``'s root, so the
    pipeline's workdir is used like a single stage's.
    """
    config_lib.check(config)
    # Absolute, so that the stages' config.json name the previous stage wherever they are resumed from.
    workdir = workdir_lib.absolute(workdir)
    stages = config_lib.stage_configs(config)
    for name, c in stages:  # what can be checked before the earlier stages ran fails now, not hours later
        precheck = getattr(family(c), 'precheck', None)
        if precheck is not None:
            try:
                precheck(c)
            except ValueError as e:
                raise ValueError(f'{e} (in stage {name!r}: config.stage.{name})') from None
    plan = [f'{n} ({c.method})' if is_task(c) else f'{n} ({c.num_steps} steps)' for n, c in stages]
    log.info('pipeline %s: %s', config.name, ' -> '.join(plan))
    state, previous, dirs = None, None, {}
    for name, c in stages:
        stage_dir = os.path.join(workdir, name)
        for key in ('tune_from', 'teacher'):
            if c.get(key) == config_lib.PREVIOUS:
                c[key] = previous
        config_lib.resolve_refs(c, dirs)
        previous = dirs[name] = stage_dir
        task = is_task(c)
        done = family(c).task_done(c, stage_dir) if task else workdir_lib.finished(stage_dir, c.num_steps)
        if done and name != stages[-1][0]:
            log.info('pipeline: stage %s already finished in %s; skipped', name, stage_dir)
            continue
        log.info('pipeline: stage %s in %s', name, stage_dir)
        out = train_and_evaluate(c, stage_dir)
        if task:
            if not family(c).task_done(c, stage_dir):  # e.g. a brute-force shard waiting for the others
                log.warning('pipeline: step %s has not finished; run again to continue', name)
                return state
            continue
        state = out
        if int(state.step) < c.num_steps:  # stopped (SIGTERM): the next stage needs this one finished
            log.warning('pipeline: stage %s stopped at step %d of %d; run again to continue', name,
                        int(state.step), c.num_steps)
            return state
    if is_task(c):
        family(c).export_task(c, stage_dir, workdir)
    else:
        family(c).export(c, state, workdir)
    return state


def is_task(config) -> bool:
    """A pipeline step that trains nothing (its family's ``TASKS``)."""
    return config.get('method') in getattr(family(config), 'TASKS', ())
