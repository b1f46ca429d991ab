"""Loading and saving models: original PyTorch checkpoints (read without torch) and our own.

``load_generator(path)`` / ``load_discriminator(path)`` accept
* an original ``.pt`` file (the full training checkpoint with ``g_ema`` / ``d``, or a bare state dict),
* one of our model checkpoint directories (written by :func:`save_model`), or
* an ``http(s)://`` URL of either a ``.pt`` file, downloaded once into the cache
  (``$ANYCOST_CACHE`` or ``~/.cache/anycost_jax``).

``load_encoder(path)`` / ``load_attribute_predictor(path)`` do the same for the original's
ResNet-50 encoder and CelebA attribute predictor (``{'state_dict': ...}`` checkpoints, see
:mod:`anycost_jax.convert.resnet`); ``save_original_encoder`` writes an encoder back in that format.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import urllib.parse
from typing import Any

import jax
import numpy as np

from anycost_jax import download
from anycost_jax.convert import original, resnet
from anycost_jax.convert.original import ConversionError
from anycost_jax.convert.torch_io import load_torch_file, save_torch_file
from anycost_jax.convert.resnet import encoder_to_state_dict
from anycost_jax.models.discriminator import Discriminator, DiscriminatorMultiRes
from anycost_jax.models.encoder import AttributePredictor, ResNet50Encoder
from anycost_jax.models.generator import Generator

__all__ = ['load_generator', 'load_discriminator', 'save_model', 'load_model', 'save_original', 'resolve_path',
           'ConversionError', 'load_torch_file', 'save_torch_file', 'add_mean_style', 'load_encoder',
           'load_attribute_predictor', 'encoder_to_state_dict', 'save_original_encoder']

_MODEL_CLASSES = {c.__name__: c for c in (Generator, Discriminator, DiscriminatorMultiRes, ResNet50Encoder,
                                          AttributePredictor)}
_MODEL_FILE = 'model.json'
_VARIABLES_DIR = 'variables'
MEAN_STYLE_SAMPLES = 10000  # what the original demo and metrics average over


# --------------------------------------------------------------------------- paths and downloads


def _download(url: str) -> str:
    """Downloads ``url`` once into the cache and returns the local path."""
    name = os.path.basename(urllib.parse.urlparse(url).path) or 'download'
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    dest = os.path.join(download.cache_dir(), f'{digest}-{name}')
    if not os.path.exists(dest):
        download.download(url, dest, advice='The original authors\' hosted weights are offline; download the .pt '
                                            'file yourself and pass its local path')
    return dest


def resolve_path(path: str) -> str:
    """A local path for ``path``, downloading URLs into the cache."""
    path = os.fspath(path)
    if path.startswith(('http://', 'https://')):
        return _download(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist; expected an original Anycost/StyleGAN2 .pt '
                                f'file (with key "g_ema" / "d" or a bare state dict), one of our model '
                                f'directories (with {_MODEL_FILE}), or an http(s) URL')
    return path


# --------------------------------------------------------------------------- our checkpoints


def _module_config(module) -> dict:
    fields = {f: getattr(module, f) for f in module.__dataclass_fields__ if f not in ('parent', 'name')}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}


def save_model(path: str, module, variables: dict) -> str:
    """Writes a model directory: ``model.json`` (class + constructor) and Orbax ``variables/``.

    With several JAX processes every process must call it (Orbax synchronizes them); process 0
    writes the files.
    """
    import orbax.checkpoint as ocp
    from jax.experimental import multihost_utils
    path = os.path.abspath(path)
    primary = jax.process_index() == 0
    if primary and os.path.exists(path):
        ours = os.path.isdir(path) and (not os.listdir(path) or os.path.exists(os.path.join(path, _MODEL_FILE)))
        if not ours:  # never delete a file or a directory of something else
            raise FileExistsError(f'save_model: {path!r} exists and is not a model directory (no {_MODEL_FILE}); '
                                  f'refusing to overwrite it, pass a new or empty directory')
        shutil.rmtree(path)
    if primary:
        os.makedirs(path)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f'save_model:{path}')
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.join(path, _VARIABLES_DIR), jax.tree.map(np.asarray, variables))
        ckptr.wait_until_finished()
    if primary:
        with open(os.path.join(path, _MODEL_FILE), 'w') as f:
            json.dump({'class': type(module).__name__, 'config': _module_config(module)}, f, indent=1)
    return path


def load_model(path: str):
    """Reads a directory written by :func:`save_model`: ``(module, variables)``."""
    import orbax.checkpoint as ocp
    meta_path = os.path.join(path, _MODEL_FILE)
    if not os.path.exists(meta_path):
        raise ConversionError(f'{path!r} is a directory without {_MODEL_FILE}: not a model saved by '
                              f'anycost_jax.convert.save_model (or launch/convert.py)')
    with open(meta_path) as f:
        meta = json.load(f)
    cls = _MODEL_CLASSES.get(meta.get('class'))
    if cls is None:
        raise ConversionError(f'{meta_path}: unknown model class {meta.get("class")!r}; expected one of '
                              f'{sorted(_MODEL_CLASSES)}')
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in meta['config'].items()}
    module = cls(**cfg)
    with ocp.StandardCheckpointer() as ckptr:
        variables = ckptr.restore(os.path.join(os.path.abspath(path), _VARIABLES_DIR))
    return module, jax.tree.map(np.asarray, variables)


# --------------------------------------------------------------------------- original checkpoints


def _state_dict(obj: Any, key: str, path: str, probe: str) -> dict:
    """Picks the state dict under ``key`` from a training checkpoint, or takes a bare state dict."""
    if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
        return obj[key]
    if isinstance(obj, dict) and probe in obj:
        return obj
    keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise ConversionError(f'{path}: expected an original checkpoint with key {key!r} or a bare state dict '
                          f'containing {probe!r}; found {keys}')


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _mean_style(gen: Generator, params: dict, n_sample: int, seed: int):
    # Module-level so repeated loads of the same architecture reuse one compiled program.
    return gen.apply({'params': params}, n_sample, jax.random.key(seed), method=Generator.mean_style)


def add_mean_style(gen: Generator, variables: dict, n_sample: int = MEAN_STYLE_SAMPLES, seed: int = 0) -> dict:
    """Adds ``stats/w_avg`` (mean w over ``n_sample`` z) so truncation works without a style."""
    w_avg = _mean_style(gen, variables['params'], n_sample, seed)
    return {**variables, 'stats': {'w_avg': np.asarray(w_avg)}}


def _load(path: str, kind: str, key: str, probe: str, from_sd, classes):
    local = resolve_path(path)
    if os.path.isdir(local):
        module, variables = load_model(local)
        if not isinstance(module, classes):
            raise ConversionError(f'{path!r} holds a {type(module).__name__}, not a {kind}')
        return module, variables
    obj = load_torch_file(local)
    return from_sd(_state_dict(obj, key, path, probe))


def load_generator(path: str, key: str = 'g_ema', mean_style: bool = True):
    """``(Generator, variables)`` from an original .pt, our directory, or a URL.

    ``key`` picks the generator in a training checkpoint (``g_ema``, or ``g``). With ``mean_style``
    an average w is stored under ``stats/w_avg`` (if absent) so ``truncation < 1`` works directly.
    """
    gen, variables = _load(path, 'generator', key, 'style.1.weight', original.generator_from_state_dict,
                           (Generator,))
    if mean_style and 'stats' not in variables:
        variables = add_mean_style(gen, variables)
    return gen, variables


def load_discriminator(path: str, key: str = 'd'):
    """``(discriminator, variables)`` from an original .pt (``d``), our directory, or a URL."""
    return _load(path, 'discriminator', key, 'final_linear.1.weight', original.discriminator_from_state_dict,
                 (Discriminator, DiscriminatorMultiRes))


def save_original(path: str, generator=None, g_variables=None, discriminator=None, d_variables=None) -> None:
    """Writes an original-format ``.pt`` ({'g_ema': ..., 'd': ...}) readable by the PyTorch code."""
    out = {}
    if generator is not None:
        out['g_ema'] = original.generator_to_state_dict(generator, g_variables)
    if discriminator is not None:
        out['d'] = original.discriminator_to_state_dict(discriminator, d_variables)
    if not out:
        raise ValueError('save_original: pass a generator and/or a discriminator with their variables')
    save_torch_file(out, path)


# --------------------------------------------------------------------------- encoder and attribute predictor


def _load_resnet(path: str, kind: str, key: str, from_sd, cls):
    local = resolve_path(path)
    if os.path.isdir(local):
        module, variables = load_model(local)
        if not isinstance(module, cls):
            raise ConversionError(f'{path!r} holds a {type(module).__name__}, not a {kind}')
        return module, variables
    return from_sd(resnet.pick_state_dict(load_torch_file(local), key, path))


def load_encoder(path: str, key: str = 'state_dict'):
    """``(ResNet50Encoder, variables)`` from an original encoder .pt, our directory, or a URL.

    ``enc.apply(variables, images_256)`` gives w+ ``[N, n_style, style_dim]`` (images NHWC in [-1, 1]).
    """
    return _load_resnet(path, 'ResNet50Encoder', key, resnet.encoder_from_state_dict, ResNet50Encoder)


def load_attribute_predictor(path: str, key: str = 'state_dict'):
    """``(AttributePredictor, variables)`` from the original attribute_predictor.pt, our directory, or a URL."""
    return _load_resnet(path, 'AttributePredictor', key, resnet.predictor_from_state_dict, AttributePredictor)


def save_original_encoder(path: str, encoder: ResNet50Encoder, variables: dict) -> None:
    """Writes ``{'state_dict': ...}`` as the original's encoder checkpoints (``models.get_pretrained``)."""
    save_torch_file({'state_dict': encoder_to_state_dict(encoder, variables)}, path)
