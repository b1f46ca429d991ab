"""Widths as data, for any network with elastic layers.

An elastic network declares its full width per elastic layer; a sub-network is one live width
per layer, always a prefix of the full channels (channel permutations put the channels that
matter most first). This module holds what does not depend on the model family: width
validation and masks, config strings, drawing widths from per-layer candidate lists, cutting a
dense sub-network's parameters out of the full ones, and the channel permutations.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

CONFIG_SEPARATOR = '_'


# --------------------------------------------------------------------------- widths


def check_widths(widths: Sequence[int], full: Sequence[int], name: str = 'channels',
                 layout: str = '') -> tuple[int, ...]:
    """Validates a per-layer width list against the full widths; returns it as a tuple of ints.

    ``name`` is what errors call the list; ``layout`` (e.g. which layers come in which order)
    is appended to the length error.
    """
    widths = tuple(widths)
    if len(widths) != len(full):
        raise ValueError(f'{name} has {len(widths)} entries, expected {len(full)}'
                         + (f': {layout}' if layout else ''))
    for i, (c, f) in enumerate(zip(widths, full)):
        if int(c) != c or not 1 <= c <= f:
            raise ValueError(f'{name}[{i}]={c!r} is invalid: expected an integer in [1, {f}] (the full width '
                             f'of elastic layer {i}); full widths are {list(full)}')
    return tuple(int(c) for c in widths)


def masks_from_widths(widths, full: Sequence[int]) -> list[jnp.ndarray]:
    """Per-layer float masks ``[..., full_l]`` (1 for live channels) from widths ``[..., L]`` (traced or static)."""
    widths = jnp.asarray(widths)
    return [(jnp.arange(f) < widths[..., l, None]).astype(jnp.float32) for l, f in enumerate(full)]


def live_widths(config, widths, full: Sequence[int], resolve, layout: str):
    """``(static per-layer widths, masks)`` of a call that takes at most one of ``config`` (static,
    resolved by ``resolve(config)``: sliced) and ``widths`` (a traced int array ``[..., L]``:
    masks); neither: the full widths and no masks."""
    if config is not None and widths is not None:
        raise ValueError('pass config (static, sliced) or widths (traced, masked), not both')
    if config is not None:
        return list(resolve(config)), [None] * len(full)
    if widths is not None:
        widths = jnp.asarray(widths)
        if widths.shape[-1] != len(full):
            raise ValueError(f'widths has shape {widths.shape}; expected [..., {len(full)}] ({layout})')
        return list(full), masks_from_widths(widths, full)
    return list(full), [None] * len(full)


# --------------------------------------------------------------------------- config strings


def format_config(widths: Sequence[int]) -> str:
    """``(16, 16, 32, 16)`` -> ``'16_16_32_16'`` (GAN Compression's config strings)."""
    widths = list(widths)
    if not widths:
        raise ValueError('a width config needs at least one width')
    for i, c in enumerate(widths):
        if int(c) != c or c < 1:
            raise ValueError(f'width {i} of {widths} is {c!r}; expected a positive integer')
    return CONFIG_SEPARATOR.join(str(int(c)) for c in widths)


def parse_config(text: str) -> tuple[int, ...]:
    """``'16_16_32_16'`` -> ``(16, 16, 32, 16)``."""
    parts = str(text).strip().split(CONFIG_SEPARATOR)
    out = []
    for i, p in enumerate(parts):
        if not p.isdigit() or int(p) < 1:
            raise ValueError(f'config {text!r}: part {i} is {p!r}; expected positive integers joined by '
                             f'{CONFIG_SEPARATOR!r}, e.g. "16_16_32_16"')
        out.append(int(p))
    return tuple(out)


# --------------------------------------------------------------------------- sampling


def choice_table(choices: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer candidate lists packed as ``(table int32[L, K], counts int32[L])``: layer ``l``'s
    candidates are ``table[l, :counts[l]]``, the rest is padding (0)."""
    choices = [list(c) for c in choices]
    empty = [l for l, c in enumerate(choices) if not c]
    if not choices or empty:
        raise ValueError(f'every layer needs at least one candidate; empty: {empty or "all (no layers)"}')
    k = max(len(c) for c in choices)
    table = np.array([c + [0] * (k - len(c)) for c in choices], np.int32)
    return table, np.array([len(c) for c in choices], np.int32)


def sample_choices(rng: jax.Array, choices: Sequence[Sequence[int]]) -> jnp.ndarray:
    """One entry per layer, uniformly from that layer's candidates: int32[L] (traceable: the
    lists are static, the draw is data, so one compiled program serves every draw)."""
    table, counts = choice_table(choices)
    pick = jax.random.randint(rng, (len(counts),), 0, jnp.asarray(counts))
    return jnp.asarray(table)[jnp.arange(len(counts)), pick]


# --------------------------------------------------------------------------- export


def slice_to_shapes(tree: Mapping[str, Any], shape_tree: Mapping[str, Any]) -> dict:
    """``tree`` cut to the shapes of ``shape_tree`` (e.g. ``jax.eval_shape`` of a smaller module's
    init): every array keeps the prefix of every axis. Keys absent from ``shape_tree`` are dropped."""
    out = {}
    for k, v in shape_tree.items():
        if isinstance(v, Mapping):
            out[k] = slice_to_shapes(tree[k], v)
            continue
        x = np.asarray(tree[k])
        if x.ndim != len(v.shape) or any(d > s for d, s in zip(v.shape, x.shape)):
            raise ValueError(f'{k}: cannot cut shape {tuple(v.shape)} out of {x.shape}')
        out[k] = x[tuple(slice(0, d) for d in v.shape)]
    return out


def export_module(sub_module, variables: Mapping[str, Any], *example_inputs) -> dict:
    """The variables of ``sub_module`` (the same module class built with smaller widths) cut out
    of the full network's ``variables``: the shapes come from tracing ``sub_module.init`` on
    ``example_inputs``; collections the smaller module does not create (e.g. constants
    independent of the widths) are kept as they are."""
    shapes = jax.eval_shape(lambda: sub_module.init({'params': jax.random.key(0)}, *example_inputs))
    out = slice_to_shapes(variables, shapes)
    for k in variables:
        out.setdefault(k, variables[k])
    return out


# --------------------------------------------------------------------------- channel permutations


def permute_axis(x, idx, axis: int):
    """``x`` with axis ``axis`` reordered by ``idx`` (numpy stays numpy, jax stays jax)."""
    axis = axis % np.ndim(x)
    return x[(slice(None),) * axis + (idx,)]


def importance_order(importance) -> np.ndarray:
    """Indices by importance, most important first; ties keep their original order."""
    return np.asarray(jnp.argsort(-jnp.asarray(importance), stable=True))


def l1_order(kernel, k: Optional[int] = None, out_axis: int = -1) -> np.ndarray:
    """Output channels of a conv kernel by L1 norm (over every other axis), largest first; the
    top ``k`` only when given (channel pruning keeps those)."""
    kernel = jnp.asarray(kernel)
    out_axis = out_axis % kernel.ndim
    norms = jnp.sum(jnp.abs(kernel), axis=tuple(a for a in range(kernel.ndim) if a != out_axis))
    order = importance_order(norms)
    if k is not None and not 1 <= k <= len(order):
        raise ValueError(f'k={k} must lie in [1, {len(order)}] (the output channels of the kernel)')
    return order if k is None else order[:k]


def nonzero_indices(scale, threshold: float = 0.) -> np.ndarray:
    """Indices of the entries of a norm's scale vector with ``|scale| > threshold``, in order
    (the channels a sparsity-trained norm keeps)."""
    scale = np.asarray(scale)
    if scale.ndim != 1:
        raise ValueError(f'expected a scale vector [C], got shape {scale.shape}')
    return np.flatnonzero(np.abs(scale) > threshold)


def unique_labels(labels: Sequence[str]) -> list[str]:
    """``labels`` made distinct: a repeated label keeps its first occurrence and gets ``#2``, ``#3``...
    after (e.g. several flexible configs at one resolution)."""
    out: list[str] = []
    taken: set[str] = set()
    for base in labels:
        lab, k = base, 1
        while lab in taken:
            k += 1
            lab = f'{base}#{k}'
        taken.add(lab)
        out.append(lab)
    return out
