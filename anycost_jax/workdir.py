"""The training work directory: its layout, what it is, and reading weights back out of it.

A stage's work directory::

    config.json           the config of the first start (a resume must keep its run shape)
    checkpoints/<step>/   the train state (:mod:`anycost_jax.checkpoint`) + meta
    samples/<step>.png    sample grids
    generator/            the final (EMA) generator as a model directory (:mod:`anycost_jax.modeldir`)
    discriminator/        the final discriminator
    best_generator/       with FID evaluated: the best-FID generator, ``best.json`` (step, fid)
    best_discriminator/   and the discriminator of that step
    events.out.tfevents.* TensorBoard scalars and images

A pipeline's work directory holds one stage directory per stage and, once the last stage has
finished, that stage's ``generator/`` and ``discriminator/`` at its root.
"""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import ml_collections

from anycost_jax import checkpoint as ckpt_lib

CONFIG_FILE = 'config.json'
CHECKPOINTS = 'checkpoints'
SAMPLES = 'samples'
GENERATOR, DISCRIMINATOR = 'generator', 'discriminator'
BEST_GENERATOR, BEST_DISCRIMINATOR, BEST_FILE = 'best_generator', 'best_discriminator', 'best.json'


def local_path(path: str) -> str:
    """``path`` with ``~`` expanded, unless it is a URL."""
    return path if '://' in path else os.path.expanduser(path)


def absolute(path: str) -> str:
    """An absolute path (URLs unchanged): config.json files name other workdirs by it."""
    return path if '://' in path else os.path.abspath(os.path.expanduser(path))


def is_stage(path: str) -> bool:
    return os.path.isfile(os.path.join(local_path(path), CONFIG_FILE))


def is_pipeline(path: str) -> bool:
    """A pipeline's root: no config of its own, the last stage's export at the top."""
    local = local_path(path)
    return not is_stage(local) and os.path.isdir(os.path.join(local, GENERATOR))


def is_workdir(path: str) -> bool:
    """Whether ``path`` is a stage's or a pipeline's training work directory."""
    return is_stage(path) or is_pipeline(path)


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(workdir, CHECKPOINTS)


def read_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(local_path(workdir), CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{workdir} is not a stage work directory: it has no {CONFIG_FILE}')
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def write_config(config: ml_collections.ConfigDict, workdir: str, resume_keys: Sequence[str],
                 is_main: bool = True, filename: str = CONFIG_FILE) -> None:
    """Writes ``config.json`` (or ``filename``) on the first start; on a resume, refuses (ValueError,
    before writing anything) a config whose ``resume_keys`` (the run's shape) differ from the first
    start's. Every trainer that resumes in a workdir keeps its config this way."""
    path = os.path.join(workdir, filename)
    new = config.to_dict()
    if os.path.exists(path):
        with open(path) as f:
            first = json.load(f)
        same = lambda k: json.dumps(first.get(k), sort_keys=True) == json.dumps(new.get(k), sort_keys=True)
        diff = [f'{k}: {first.get(k)!r} -> {new.get(k)!r}' for k in resume_keys if not same(k)]
        if diff:
            raise ValueError(f'{workdir} holds a run with a different shape ({"; ".join(diff)}); resume it with '
                             f'the same settings or use a new workdir')
    if is_main:
        os.makedirs(workdir, exist_ok=True)
        with open(path + '.tmp', 'w') as f:
            f.write(config.to_json_best_effort(indent=1, sort_keys=True))
        os.replace(path + '.tmp', path)


def latest_step(workdir: str) -> Optional[int]:
    directory = checkpoint_dir(workdir)
    if not os.path.isdir(directory):
        return None
    with ckpt_lib.Checkpointer(directory, async_save=False) as ck:
        return ck.latest_step()


def finished(workdir: str, num_steps: int) -> bool:
    """Whether ``workdir`` holds a stage that ran to ``num_steps`` and exported its models."""
    if not os.path.isdir(os.path.join(workdir, GENERATOR)):
        return False
    latest = latest_step(workdir)
    return latest is not None and latest >= num_steps


def corrupt_checkpoints(workdir: str) -> list[str]:
    """Checkpoints the checkpointer moved aside as unreadable."""
    return ckpt_lib.moved_aside(checkpoint_dir(workdir))


def restore_fields(workdir: str, fields: Sequence[str], step: Optional[int] = None) -> tuple[dict, dict, int]:
    """``({field: numpy tree}, meta, step)`` of a stage's latest checkpoint, reading only ``fields``
    (e.g. the EMA weights without the optimizer states)."""
    directory = checkpoint_dir(local_path(workdir))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f'{workdir}: a work directory without checkpoints; nothing to load')
    with ckpt_lib.Checkpointer(directory, async_save=False) as ck:
        return ck.restore_fields(fields, step)


def read_best(workdir: str) -> Optional[dict]:
    """``{'step', 'fid'}`` of the best-FID export, or None."""
    path = os.path.join(local_path(workdir), BEST_GENERATOR, BEST_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_best(workdir: str, step: int, fid: float) -> None:
    """Marks the best-FID export complete (written after both models)."""
    path = os.path.join(workdir, BEST_GENERATOR, BEST_FILE)
    with open(path + '.tmp', 'w') as f:
        json.dump({'step': step, 'fid': fid}, f)
    os.replace(path + '.tmp', path)


def samples_path(workdir: str, step: int) -> str:
    os.makedirs(os.path.join(workdir, SAMPLES), exist_ok=True)
    return os.path.join(workdir, SAMPLES, f'{step:08d}.png')
