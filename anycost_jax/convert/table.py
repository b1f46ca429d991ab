"""One table engine mapping PyTorch state dicts onto our variable trees, and back.

A table is a list of entries ``(torch key, our path, layout)``: ``our path`` is a tuple of keys
into the variables (``('params', 'conv1', 'kernel')``), ``layout`` a name from :data:`LAYOUTS`
or a ``(torch -> ours, ours -> torch)`` pair of functions. The same table drives both
directions, so import and export cannot drift apart. Besides the entries a model may have
*buffers* (constants the original stores, e.g. blur kernels: checked on import, written on
export) and keys to *ignore* on import (e.g. BatchNorm step counters).
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Union

import numpy as np

Layout = Union[str, tuple[Callable, Callable]]
Entry = tuple[str, tuple, Layout]


class ConversionError(ValueError):
    pass


class KeyMismatchError(ConversionError):
    """The state dict's keys are not the table's: ``missing`` and ``extra`` (sorted lists)."""

    def __init__(self, message: str, missing: list, extra: list):
        super().__init__(message)
        self.missing, self.extra = missing, extra


class ShapeMismatchError(ConversionError):
    """Tensor ``key`` has torch shape ``shape``; the model needs ``expected`` (torch layout)."""

    def __init__(self, message: str, key: str, shape: tuple, expected: tuple):
        super().__init__(message)
        self.key, self.shape, self.expected = key, shape, expected


def flatten_linear(channels: int, height: int = 4, width: int = 4) -> tuple[Callable, Callable]:
    """The first dense layer after a conv map: torch flattens (c, h, w), we flatten (h, w, c)."""
    def to_ours(a):
        return a.reshape(a.shape[0], channels, height, width).transpose(2, 3, 1, 0).reshape(-1, a.shape[0])

    def to_torch(a):
        return a.reshape(height, width, channels, -1).transpose(3, 2, 0, 1).reshape(a.shape[1], -1)
    return to_ours, to_torch


# layout -> (torch -> ours, ours -> torch)
LAYOUTS: dict[str, tuple[Callable, Callable]] = {
    'same': (lambda a: a, lambda a: a),
    'linear': (lambda a: a.T, lambda a: a.T),  # [out, in] <-> [in, out]
    'conv': (lambda a: a.transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1)),  # OIHW <-> HWIO
    # a transposed conv's [in, out, kh, kw] <-> [kh, kw, in, out] (the permutation is its own inverse)
    'conv_transpose': (lambda a: a.transpose(2, 3, 0, 1), lambda a: a.transpose(2, 3, 0, 1)),
    'nchw': (lambda a: a.transpose(0, 2, 3, 1), lambda a: a.transpose(0, 3, 1, 2)),  # NCHW <-> NHWC
}


def layout(lay: Layout) -> tuple[Callable, Callable]:
    """The ``(torch -> ours, ours -> torch)`` pair of a layout name or pair."""
    return LAYOUTS[lay] if isinstance(lay, str) else lay


def get_path(tree, path: tuple):
    for p in path:
        tree = tree[p]
    return tree


def set_path(tree: dict, path: tuple, value) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def _some(keys: list) -> str:
    return f'{keys[:10]}' + (f' ... ({len(keys)} in all)' if len(keys) > 10 else '')


def from_state_dict(sd: dict, table: Iterable[Entry], shapes, *, what: str = 'the model',
                    buffers: Optional[dict] = None, buffer_error: str = 'differs from the expected constant',
                    ignore: Optional[Callable[[str], bool]] = None, shape_context: str = '') -> dict:
    """Our variables (float32 numpy) from a torch state dict; strict in both directions.

    Args:
      sd: ``{torch key: array}``.
      table: the entries.
      shapes: our variables' shapes (e.g. ``jax.eval_shape`` of ``module.init``).
      what: the model, as the mismatch error names it.
      buffers: ``{torch key: expected value}`` of constants that must be present and equal.
      buffer_error: ends the error for a buffer that differs (after ``buffer KEY``).
      ignore: keys for which it is true are neither required nor converted.
      shape_context: appended to the error for a mis-shaped tensor.
    Returns:
      The variables, nested as the table's paths.
    Raises:
      ConversionError: missing or unexpected keys (all listed), a mis-shaped tensor, a buffer that differs.
    """
    table, buffers = list(table), buffers or {}
    if ignore is not None:
        sd = {k: v for k, v in sd.items() if not ignore(k)}
    known = {t[0] for t in table} | set(buffers)
    missing = sorted(k for k in known if k not in sd)
    extra = sorted(k for k in sd if k not in known)
    if missing or extra:
        raise KeyMismatchError(f'state dict does not match {what}: missing keys {_some(missing)}, unexpected keys '
                               f'{_some(extra)}', missing, extra)
    for k, ref in buffers.items():
        value = np.asarray(sd[k])
        if value.shape != ref.shape or not np.allclose(value, ref, atol=1e-6):
            raise ConversionError(f'buffer {k} {buffer_error}')
    out: dict = {}
    for tk, path, lay in table:
        value = np.asarray(sd[tk])
        want = tuple(get_path(shapes, path).shape)
        try:
            conv = np.ascontiguousarray(layout(lay)[0](value)).astype(np.float32)
        except ValueError:  # a transpose or reshape that does not fit: report it as any other wrong shape
            conv = None
        if conv is None or conv.shape != want:
            got = 'does not convert' if conv is None else f'converts to {conv.shape}'
            raise ShapeMismatchError(f'{tk}: shape {value.shape} {got}, expected {want}{shape_context}', tk,
                                     value.shape, _torch_shape(lay, want))
        set_path(out, path, conv)
    return out


def to_state_dict(variables: dict, table: Iterable[Entry], *, buffers: Optional[dict] = None,
                  dtype=None, hint: Union[str, Callable[[tuple], str]] = '') -> dict:
    """A torch state dict (numpy values) of our variables.

    Args:
      variables: our variables.
      table: the entries.
      buffers: ``{torch key: value}`` written as they are (constants, step counters).
      dtype: cast every converted tensor to it (None: keep the variables' dtype).
      hint: ends the error for a path the variables lack (a string, or a function of the path).
    Returns:
      ``{torch key: array}``.
    """
    sd = {}
    for tk, path, lay in table:
        try:
            value = np.asarray(get_path(variables, path))
        except (KeyError, TypeError) as e:
            raise ConversionError(f'variables lack {"/".join(path)} (needed for {tk})'
                                  f'{hint(path) if callable(hint) else hint}') from e
        value = np.ascontiguousarray(layout(lay)[1](value))
        sd[tk] = value if dtype is None else value.astype(dtype)
    # np.array, not ascontiguousarray: that would turn a 0-d step counter into shape (1,)
    sd.update({k: np.array(v, order='C') for k, v in (buffers or {}).items()})
    return sd


def torch_shapes(table: Iterable[Entry], shapes) -> dict[str, tuple[int, ...]]:
    """``{torch key: torch shape}`` of the table's tensors, given our variables' shapes."""
    return {tk: _torch_shape(lay, get_path(shapes, path).shape) for tk, path, lay in table}


def _torch_shape(lay: Layout, shape: tuple) -> tuple[int, ...]:
    # Layouts are transposes and reshapes: apply them to a zero-stride view to read the torch shape.
    return tuple(layout(lay)[1](np.broadcast_to(np.float32(0), tuple(shape))).shape)
