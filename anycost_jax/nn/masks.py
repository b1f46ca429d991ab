"""Helpers of every elastic layer: channel masks and live-width checks."""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax

Array = jax.Array


def spatial_mask(mask: Array) -> Array:
    """A channel mask [C] (whole batch) or [N, C] (per sample) shaped to multiply NHWC maps."""
    return mask[:, None, None, :] if mask.ndim == 2 else mask


def apply_mask(x: Array, mask: Optional[Array]) -> Array:
    return x if mask is None else x * spatial_mask(mask).astype(x.dtype)


def live_in(x: Array, full: int, what: str) -> int:
    cin = x.shape[-1]
    if cin > full:
        raise ValueError(f'{what}: the input has {cin} channels, more than the layer\'s full width {full}')
    return cin


def live_out(out_width: Optional[int], full: int, what: str) -> int:
    if out_width is None:
        return full
    if int(out_width) != out_width or not 1 <= out_width <= full:
        raise ValueError(f'{what}: out_width={out_width!r} must be an integer in [1, {full}]')
    return int(out_width)


def module_path(module: nn.Module) -> str:
    return '/'.join(module.scope.path) if module.scope is not None else ''
