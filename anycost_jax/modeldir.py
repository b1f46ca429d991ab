"""Our model-directory format: ``model.json`` (module class and constructor fields) + Orbax ``variables/``.

A directory holds one Flax module and its variables. :func:`load` rebuilds the module from the
class name, so every class it may meet is registered once (:func:`register`); the Anycost
networks are registered here, a new model family registers its own classes where it defines
them (``models/`` never imports this module).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import jax
import numpy as np

from anycost_jax.models.discriminator import Discriminator, DiscriminatorMultiRes
from anycost_jax.models.encoder import AttributePredictor, ResNet50Encoder
from anycost_jax.models.generator import Generator

__all__ = ['MODEL_FILE', 'VARIABLES_DIR', 'ModelDirError', 'register', 'is_modeldir', 'save', 'load',
           'params_digest']

MODEL_FILE = 'model.json'
VARIABLES_DIR = 'variables'
_CLASSES: dict[str, type] = {}


class ModelDirError(ValueError):
    pass


def register(cls: type) -> type:
    """Lets :func:`load` rebuild modules of ``cls`` (a Flax module class); returns it, so it can decorate.

    Raises:
      ValueError: another class of the same name is registered (the name is what ``model.json`` stores).
    """
    other = _CLASSES.setdefault(cls.__name__, cls)
    if other is not cls:
        raise ValueError(f'modeldir.register: {cls.__module__}.{cls.__qualname__} and '
                         f'{other.__module__}.{other.__qualname__} share the name {cls.__name__!r}')
    return cls


for _cls in (Generator, Discriminator, DiscriminatorMultiRes, ResNet50Encoder, AttributePredictor):
    register(_cls)


def is_modeldir(path: str) -> bool:
    """Whether ``path`` is a directory written by :func:`save`."""
    return os.path.isdir(path) and os.path.exists(os.path.join(path, MODEL_FILE))


def _config(module) -> dict:
    fields = {f: getattr(module, f) for f in module.__dataclass_fields__ if f not in ('parent', 'name')}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}


def save(path: str, module, variables: dict) -> str:
    """Writes ``module`` and ``variables`` as a model directory.

    With several JAX processes every process must call it (Orbax synchronizes them); process 0
    writes the files.

    Args:
      path: a new or empty directory, or one written by :func:`save` (replaced).
      module: a Flax module of a registered class.
      variables: its variables.
    Returns:
      The absolute path.
    """
    import orbax.checkpoint as ocp
    from jax.experimental import multihost_utils
    path = os.path.abspath(path)
    primary = jax.process_index() == 0
    if primary and os.path.exists(path):
        ours = os.path.isdir(path) and (not os.listdir(path) or os.path.exists(os.path.join(path, MODEL_FILE)))
        if not ours:  # never delete a file or a directory of something else
            raise FileExistsError(f'modeldir.save: {path!r} exists and is not a model directory (no {MODEL_FILE}); '
                                  f'refusing to overwrite it, pass a new or empty directory')
        shutil.rmtree(path)
    if primary:
        os.makedirs(path)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f'modeldir.save:{path}')
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.join(path, VARIABLES_DIR), jax.tree.map(np.asarray, variables))
        ckptr.wait_until_finished()
    if primary:
        with open(os.path.join(path, MODEL_FILE), 'w') as f:
            json.dump({'class': type(module).__name__, 'config': _config(module)}, f, indent=1)
    return path


def load(path: str):
    """Reads a directory written by :func:`save`.

    Returns:
      ``(module, variables)`` (numpy arrays).
    Raises:
      ModelDirError: no ``model.json``, or a class that is not registered.
    """
    import orbax.checkpoint as ocp
    meta_path = os.path.join(path, MODEL_FILE)
    if not os.path.exists(meta_path):
        raise ModelDirError(f'{path!r} is a directory without {MODEL_FILE}: not a model saved by '
                            f'anycost_jax.modeldir.save (or launch/convert.py)')
    with open(meta_path) as f:
        meta = json.load(f)
    cls = _CLASSES.get(meta.get('class'))
    if cls is None:
        raise ModelDirError(f'{meta_path}: unknown model class {meta.get("class")!r}; expected one of '
                            f'{sorted(_CLASSES)}')
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in meta['config'].items()}
    module = cls(**cfg)
    with ocp.StandardCheckpointer() as ckptr:
        variables = ckptr.restore(os.path.join(os.path.abspath(path), VARIABLES_DIR))
    return module, jax.tree.map(np.asarray, variables)


def params_digest(variables: dict) -> str:
    """A short hash of a model's parameters: what was computed or trained for it is named by it."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables['params'])[0]:
        h.update(jax.tree_util.keystr(path).encode())
        h.update(np.ascontiguousarray(leaf).tobytes())
    return h.hexdigest()[:16]
