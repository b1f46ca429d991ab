"""DRN-D segmenter weights (``drn-d-105_ms_cityscapes.pth``) <-> :class:`anycost_jax.models.drn.DRNSeg`.

The file GAN Compression's Cityscapes mIoU loads (``--drn_path``; from fyu/drn's model zoo,
http://go.yf.io/drn-cityscapes-models) is a bare ``DRNSeg.state_dict()``: ``base.<i>.*`` (the DRN
trunk as a ``Sequential``), ``seg.weight`` / ``seg.bias`` and the fixed bilinear ``up.weight``. It is
read without torch (:mod:`anycost_jax.convert.torch_io`); a ``{'state_dict': ...}`` wrapper and
DataParallel's ``module.`` prefix are accepted too. One table (:mod:`anycost_jax.convert.table`)
drives both directions; the architecture (blocks per level, widths, classes) is read off the shapes.
"""
from __future__ import annotations

import os
import re
from typing import Optional

import jax
import numpy as np

from anycost_jax.convert import table as table_lib
from anycost_jax.convert.table import ConversionError
from anycost_jax.convert.torch_io import load_torch_file
from anycost_jax.models.drn import DRN_CHANNELS, DRNSeg

__all__ = ['DRN_FILE', 'DRN_SOURCE', 'drn_table', 'state_dict_shapes', 'drn_from_state_dict', 'drn_to_state_dict',
           'drn_weights', 'load_drn']

DRN_FILE = 'drn-d-105_ms_cityscapes.pth'
DRN_SOURCE = 'http://go.yf.io/drn-cityscapes-models'  # where gan-compression's README sends users for it
# How the launchers take the file; shown in the error for a missing one.
FLAG = '--drn=PATH (launch/evaluate.py; a config\'s config.drn)'
_COUNTER = '.num_batches_tracked'
_LEAF = {('params', 'kernel'): ('weight', 'conv'), ('params', 'scale'): ('weight', 'same'),
         ('params', 'bias'): ('bias', 'same'), ('batch_stats', 'mean'): ('running_mean', 'same'),
         ('batch_stats', 'var'): ('running_var', 'same')}


def _flat(tree, prefix=()):
    for k, v in tree.items():
        if hasattr(v, 'items'):
            yield from _flat(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def _shapes(model: DRNSeg):
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x), jax.ShapeDtypeStruct((1, 16, 16, 3), np.float32))


def _torch_module(names: tuple) -> str:
    """Our module path -> the torch module name: ``base_3_0/downsample_conv`` -> ``base.3.0.downsample.0``."""
    top, *rest = names
    out = top.replace('_', '.')  # base_3_0 -> base.3.0; seg -> seg
    for r in rest:
        out += '.' + {'downsample_conv': 'downsample.0', 'downsample_bn': 'downsample.1'}.get(r, r)
    return out


def drn_table(model: DRNSeg, shapes=None) -> list:
    """``(torch key, our path, layout)`` of every tensor of ``model``, sorted by torch key."""
    shapes = _shapes(model) if shapes is None else shapes
    t = []
    for path, _ in _flat(shapes):
        collection, *modules, leaf = path
        if modules == [] and leaf == 'up':  # the fixed bilinear kernel: torch [C, 1, 16, 16] <-> our [16, 16, 1, C]
            t.append(('up.weight', path, 'conv'))
            continue
        name, lay = _LEAF[(collection, leaf)]
        t.append((f'{_torch_module(tuple(modules))}.{name}', path, lay))
    return sorted(t, key=lambda e: e[0])


def state_dict_shapes(model: DRNSeg) -> dict[str, tuple[int, ...]]:
    """``{torch key: torch shape}`` of ``DRNSeg.state_dict()``'s float tensors."""
    shapes = _shapes(model)
    return table_lib.torch_shapes(drn_table(model, shapes), shapes)


def _clean(sd, what: str) -> dict:
    if not isinstance(sd, dict) and hasattr(sd, 'items'):
        sd = dict(sd.items())
    if isinstance(sd, dict) and isinstance(sd.get('state_dict'), dict):
        sd = sd['state_dict']
    if not isinstance(sd, dict):
        raise ConversionError(f'{what}: expected a DRNSeg state dict, got a {type(sd).__name__}')
    if sd and all(str(k).startswith('module.') for k in sd):
        sd = {k[len('module.'):]: v for k, v in sd.items()}
    if 'seg.weight' not in sd or 'base.0.0.weight' not in sd:
        raise ConversionError(f'{what}: not a DRNSeg state dict (the segmenter of gan-compression\'s Cityscapes '
                              f'mIoU, {DRN_FILE}): no seg.weight / base.0.0.weight among {sorted(sd)[:6]}')
    return sd


def infer_architecture(sd: dict) -> dict:
    """``classes``, ``layers`` and ``channels`` of the DRN-D in a (cleaned) state dict."""
    count = [0] * 8
    for k in sd:
        m = re.match(r'base\.(\d+)\.(\d+)\.(weight|conv1\.weight)$', k)
        if not m or np.ndim(sd[k]) != 4:
            continue
        level = int(m.group(1))
        if 1 <= level <= 8:
            count[level - 1] += 1
    layers = tuple(count)  # the original's layer1..8 are base.1..8 (base.0 is the 7x7 stem)
    channels = list(DRN_CHANNELS)
    channels[0] = int(np.shape(sd['base.0.0.weight'])[0])
    for level in (1, 2, 7, 8):
        if f'base.{level}.0.weight' in sd:
            channels[level - 1] = int(np.shape(sd[f'base.{level}.0.weight'])[0])
    for level in (3, 4, 5, 6):
        if f'base.{level}.0.conv1.weight' in sd:
            channels[level - 1] = int(np.shape(sd[f'base.{level}.0.conv1.weight'])[0])
    return {'classes': int(np.shape(sd['seg.weight'])[0]), 'layers': layers, 'channels': tuple(channels)}


def drn_from_state_dict(sd, model: Optional[DRNSeg] = None, what: str = 'the DRN state dict'):
    """``(DRNSeg, variables)`` from ``DRNSeg.state_dict()`` (numpy values); strict: every key used."""
    sd = _clean(sd, what)
    if model is None:
        model = DRNSeg(**infer_architecture(sd))
    shapes = _shapes(model)
    variables = table_lib.from_state_dict(
        sd, drn_table(model, shapes), shapes, ignore=lambda k: k.endswith(_COUNTER),
        what=f'DRNSeg(layers={tuple(model.layers)}, channels={tuple(model.channels)}, classes={model.classes})')
    return model, variables


def drn_to_state_dict(model: DRNSeg, variables: dict) -> dict:
    """``DRNSeg.state_dict()`` of ``model`` (numpy; BatchNorm step counters written as 0)."""
    table = drn_table(model)
    counters = {tk[:-len('.running_mean')] + _COUNTER: np.array(0, np.int64)
                for tk, _, _ in table if tk.endswith('.running_mean')}
    return table_lib.to_state_dict(variables, table, buffers=counters, dtype=np.float32)


def drn_weights(path: Optional[str]) -> str:
    """The local DRN weights file, checked before any work (there is no automatic download: the
    file sits behind the model zoo's link page)."""
    if not path:
        raise FileNotFoundError(f'Cityscapes mIoU needs the DRN-D-105 segmenter: download {DRN_FILE} from '
                                f'{DRN_SOURCE} and pass its path with {FLAG}')
    local = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(local):
        raise FileNotFoundError(f'DRN weights {local!r} do not exist: download {DRN_FILE} from {DRN_SOURCE} and '
                                f'pass its path with {FLAG}')
    return local


def load_drn(path: Optional[str], precision: Optional[str] = 'highest'):
    """``(DRNSeg, variables)`` from ``drn-d-105_ms_cityscapes.pth`` (or any DRNSeg state dict)."""
    local = drn_weights(path)
    model, variables = drn_from_state_dict(load_torch_file(local), what=local)
    return model.clone(precision=precision), variables
