"""pytorch-fid's FID Inception weights: the file (local or downloaded once) and its state dict.

The ported file (``pt_inception-2015-12-05-6726825d.pth``) is read without torch (via
:mod:`anycost_jax.convert.torch_io`); its names are those of
:class:`anycost_jax.models.inception.InceptionV3`, so the table is derived from our variable tree:
convolution kernels go from OIHW to HWIO; BatchNorm ``weight/bias/running_mean/running_var``
become ``scale/bias`` (params) and ``mean/var`` (batch_stats).
"""
from __future__ import annotations

import functools
import os
import re
from typing import Optional

import jax
import jax.numpy as jnp

from anycost_jax import download
from anycost_jax.convert import table as table_lib
from anycost_jax.convert.torch_io import load_torch_file
from anycost_jax.models.inception import INPUT_SIZE, InceptionV3

__all__ = ['FID_WEIGHTS_URL', 'inception_table', 'state_dict_shapes', 'variables_from_state_dict',
           'inception_weights', 'load_inception']

FID_WEIGHTS_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
                   'pt_inception-2015-12-05-6726825d.pth')
# torch.hub's convention: a file named ``<name>-<sha256 prefix>.<ext>`` carries its hash prefix.
_HASH_IN_NAME = re.compile(r'-([0-9a-f]{8,64})\.[^-]*$')
_OUR_LEAF = {('params', 'kernel'): ('conv', 'weight'), ('params', 'scale'): ('bn', 'weight'),
             ('params', 'bias'): ('bn', 'bias'), ('batch_stats', 'mean'): ('bn', 'running_mean'),
             ('batch_stats', 'var'): ('bn', 'running_var')}
# In the ported file but not part of the feature network: the 1008-way classifier and BN step counters.
_IGNORED = re.compile(r'^(fc\.|AuxLogits\.)|\.num_batches_tracked$')


@functools.lru_cache(maxsize=None)
def _variable_shapes() -> dict:
    model = InceptionV3(resize_input=False)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3))))


def _flat(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict) or hasattr(v, 'items'):
            yield from _flat(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def inception_table() -> list:
    """``(torch key, our path, layout)`` of every tensor the feature network uses, sorted by key."""
    t = []
    for path, _ in _flat(_variable_shapes()):
        collection, *modules, conv_or_bn, name = path
        tk, tname = _OUR_LEAF[(collection, name)]
        assert tk == conv_or_bn, path
        t.append(('.'.join(modules + [conv_or_bn, tname]), path, 'conv' if name == 'kernel' else 'same'))
    return sorted(t, key=lambda e: e[0])


def state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """``{pytorch-fid state-dict key: torch shape}`` of every tensor the feature network uses."""
    return table_lib.torch_shapes(inception_table(), _variable_shapes())


def variables_from_state_dict(sd) -> dict:
    """Flax variables (``params`` and ``batch_stats``) from pytorch-fid's Inception state dict.

    The classifier (``fc.*``) and ``num_batches_tracked`` are ignored; anything else missing,
    extra or misshaped is an error (a ``ValueError``).
    """
    if not isinstance(sd, dict) and hasattr(sd, 'items'):
        sd = dict(sd.items())
    if isinstance(sd, dict) and 'state_dict' in sd and not any(k.endswith('.weight') for k in sd):
        sd = sd['state_dict']
    try:
        return table_lib.from_state_dict(sd, inception_table(), _variable_shapes(), ignore=_IGNORED.search,
                                         what='the FID InceptionV3')
    except table_lib.KeyMismatchError as e:
        raise table_lib.ConversionError(
            'not a pytorch-fid FID Inception state dict (pt_inception-2015-12-05): '
            f'{len(e.missing)} missing keys {e.missing[:5]}, {len(e.extra)} unexpected keys {e.extra[:5]}') from e
    except table_lib.ShapeMismatchError as e:
        raise table_lib.ConversionError(f'{e.key} has shape {e.shape}, expected {e.expected}') from e


# How the launchers take these weights.
_FLAG = '--inception=PATH (launch/train.py: --config.inception=PATH)'


def _expected_hash(path_or_name: str) -> Optional[str]:
    m = _HASH_IN_NAME.search(os.path.basename(path_or_name))
    return m.group(1) if m else None


def inception_weights(path_or_url: Optional[str] = None, cache_dir: Optional[str] = None) -> str:
    """A local path of the FID Inception weights, downloading them once if needed.

    Args:
      path_or_url: a local ``.pth`` file (used as is), an ``http(s)://`` URL, or None for the
        official pytorch-fid release (:data:`FID_WEIGHTS_URL`).
      cache_dir: where a URL is downloaded (default ``$ANYCOST_CACHE`` or ``~/.cache/anycost_jax``).
    Returns:
      The local path.

    A URL is cached under its file name. Files named like torch.hub's
    ``<name>-<sha256 prefix>.<ext>`` (the official one ends in ``-6726825d.pth``) are checked
    against that prefix, both after a download (a mismatch caches nothing) and when a local file
    carries the official name.
    """
    url = FID_WEIGHTS_URL if path_or_url is None else os.fspath(path_or_url)
    if not url.startswith(('http://', 'https://')):
        path = os.path.expanduser(url)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'FID Inception weights {path!r} do not exist; download {FID_WEIGHTS_URL} '
                                    f'and pass its path with {_FLAG}, or leave it out to download it into the '
                                    f'cache')
        if os.path.basename(path) == os.path.basename(FID_WEIGHTS_URL):
            _check_hash(path, _expected_hash(path))
        return path
    name = download.url_basename(url)
    expected = _expected_hash(name)
    # A name without a hash takes the default, URL-prefixed name: keeps URLs with the same file name apart.
    dest = download.cache_path(url, name if expected else None, cache_dir)
    return download.cached(url, dest, expected_sha256=expected,
                           advice=f'Download that file on a machine with network access and pass its path with '
                                  f'{_FLAG}, or put it at {dest} (or point $ANYCOST_CACHE at the folder '
                                  f'holding it)')


def _check_hash(path: str, expected: Optional[str]) -> None:
    if expected is not None and not (digest := download.sha256(path)).startswith(expected):
        raise OSError(f'{path} is corrupt: its sha256 is {digest[:16]}..., its name says {expected}...; '
                      f'delete it and download {FID_WEIGHTS_URL} again')


def load_inception(path_or_url: Optional[str] = None, cache_dir: Optional[str] = None,
                   resize_input: bool = True, precision: Optional[str] = 'highest'):
    """``(InceptionV3 module, variables)`` with pytorch-fid's FID weights (see :func:`inception_weights`)."""
    path = inception_weights(path_or_url, cache_dir)
    variables = variables_from_state_dict(load_torch_file(path))
    return InceptionV3(resize_input=resize_input, precision=precision), variables
