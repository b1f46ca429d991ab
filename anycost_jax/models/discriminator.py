"""StyleGAN2 discriminators, NHWC.

``DiscriminatorMultiRes`` takes images at any of ``n_res`` resolutions (each has its own
fromRGB layer and enters the shared residual trunk at its own depth) and, with
``modulate=True``, conditions its last two residual blocks on the one-hot code of the
generator architecture that produced the images (:func:`anycost_jax.elastic.arch_code`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from anycost_jax import elastic
from anycost_jax.models.common import init_variables
from anycost_jax.nn.layers import ConvLayer, EqualDense, ResBlock

Array = jax.Array
STDDEV_GROUP = 4  # images per minibatch-stddev group, as the original


def minibatch_stddev(x: Array, group_size: int = STDDEV_GROUP, n_feat: int = 1) -> Array:
    """Appends the minibatch standard deviation as extra channels, grouped as the original.

    The batch is split into ``group`` contiguous chunks; sample ``m`` of every chunk forms one
    statistics group (the original's ``view(group, -1, ...)``), so the batch must divide evenly.
    """
    n, h, w, c = x.shape
    group = min(n, group_size)
    if n % group:
        raise ValueError(f'minibatch stddev: batch {n} is not divisible by the group size {group}; '
                         f'use a batch that is a multiple of {group_size} (or smaller than it)')
    if c % n_feat:
        raise ValueError(f'minibatch stddev: {c} channels are not divisible by n_feat={n_feat}')
    y = x.reshape(group, n // group, h, w, n_feat, c // n_feat)
    y = jnp.sqrt(jnp.var(y, axis=0) + 1e-8)  # [n/g, h, w, f, c/f]
    y = jnp.mean(y, axis=(1, 2, 4))  # [n/g, f]
    y = jnp.tile(y[:, None, None, :], (group, h, w, 1))
    return jnp.concatenate([x, y.astype(x.dtype)], axis=-1)


def compute_dtype(res: int, bf16_from_res: Optional[int]):
    """bfloat16 for layers that read a resolution of at least ``bf16_from_res``, else float32."""
    return jnp.bfloat16 if bf16_from_res is not None and res >= bf16_from_res else jnp.float32


class _Head(nn.Module):
    """Minibatch stddev -> 3x3 conv -> flatten -> two equalized FC layers."""
    channels: int
    stddev_group: int = STDDEV_GROUP

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = minibatch_stddev(x.astype(jnp.float32), self.stddev_group)
        x = ConvLayer(self.channels, 3, name='final_conv')(x)
        x = x.reshape(x.shape[0], -1)  # (h, w, c) order; convert/ permutes the original's (c, h, w)
        x = EqualDense(self.channels, activation='lrelu', name='final_linear_0')(x)
        return EqualDense(1, name='final_linear_1')(x)


def _check_images(x: Array, valid: Sequence[int]) -> int:
    if x.ndim != 4 or x.shape[1] != x.shape[2] or x.shape[-1] != 3:
        raise ValueError(f'images must be NHWC square RGB [N, R, R, 3], got shape {x.shape}')
    if x.shape[1] not in valid:
        raise ValueError(f'image resolution {x.shape[1]} is not accepted; expected one of {sorted(valid)}')
    return x.shape[1]


class Discriminator(nn.Module):
    """The single-resolution StyleGAN2 discriminator."""
    resolution: int
    channel_multiplier: float = 2
    channel_max: int = 512
    blur_kernel: Sequence[float] = (1, 3, 3, 1)
    # Layers reading a resolution of at least this compute in bfloat16 (parameters, the head and
    # the logits stay float32); None: float32 everywhere.
    bf16_from_res: Optional[int] = None

    def init_variables(self, rng: Array) -> dict:
        return init_variables(self, rng, jnp.zeros((1, self.resolution, self.resolution, 3)))

    @nn.compact
    def __call__(self, x: Array) -> Array:
        _check_images(x, (self.resolution,))
        ch = elastic.channels_per_resolution(self.channel_multiplier, self.channel_max)
        log_res = elastic.log2_resolution(self.resolution)
        dtype = lambda r: compute_dtype(r, self.bf16_from_res)
        out = ConvLayer(ch[self.resolution], 1, name='from_rgb')(x.astype(dtype(self.resolution)))
        for i, lr in enumerate(range(log_res, 2, -1)):
            out = ResBlock(ch[2 ** lr], ch[2 ** (lr - 1)], blur_kernel=self.blur_kernel, name=f'blocks_{i}')(
                out.astype(dtype(2 ** lr)))
        return _Head(ch[4], name='head')(out)


class DiscriminatorMultiRes(nn.Module):
    """Multi-resolution, optionally architecture-conditioned discriminator (Anycost)."""
    resolution: int
    n_res: int = 4
    modulate: bool = True
    channel_multiplier: float = 2
    channel_max: int = 512
    blur_kernel: Sequence[float] = (1, 3, 3, 1)
    # Layers reading a resolution of at least this compute in bfloat16 (parameters, the head and
    # the logits stay float32); None: float32 everywhere.
    bf16_from_res: Optional[int] = None

    @property
    def input_resolutions(self) -> tuple[int, ...]:
        return tuple(self.resolution // 2 ** i for i in range(self.n_res))

    @property
    def arch_code_length(self) -> int:
        return elastic.arch_code_length(self.resolution)

    def init_variables(self, rng: Array) -> dict:
        arch = jnp.zeros((self.arch_code_length,)) if self.modulate else None
        return init_variables(self, rng, jnp.zeros((1, self.resolution, self.resolution, 3)), arch)

    @nn.compact
    def __call__(self, x: Array, arch: Optional[Array] = None) -> Array:
        """Logits [N, 1]. ``arch``: architecture code [L] (whole batch) or [N, L]; required iff modulated."""
        log_res = elastic.log2_resolution(self.resolution)
        if not 1 <= self.n_res <= log_res - 2:
            raise ValueError(f'n_res={self.n_res} must be in [1, {log_res - 2}] for resolution {self.resolution}')
        res = _check_images(x, self.input_resolutions)
        if arch is not None:
            arch = jnp.asarray(arch)
            if arch.shape[-1] != self.arch_code_length or arch.ndim not in (1, 2):
                raise ValueError(f'arch has shape {arch.shape}; expected [{self.arch_code_length}] or '
                                 f'[N, {self.arch_code_length}] (one-hot over 4 ratios per elastic layer)')
        elif self.modulate:
            raise ValueError('this discriminator is conditioned on the generator architecture (modulate=True): '
                             'pass arch=anycost_jax.elastic.arch_code(ratio_idx)')
        ch = elastic.channels_per_resolution(self.channel_multiplier, self.channel_max)
        idx = self.input_resolutions.index(res)
        # Every input resolution has its own fromRGB; declare them all so params do not depend on input.
        from_rgb = [ConvLayer(ch[r], 1, name=f'from_rgb_{i}') for i, r in enumerate(self.input_resolutions)]
        out = from_rgb[idx](x.astype(compute_dtype(res, self.bf16_from_res)))
        if self.is_initializing():
            for i, r in enumerate(self.input_resolutions):
                if i != idx:
                    from_rgb[i](jnp.zeros((1, r, r, 3), x.dtype))
        levels = list(range(log_res, 2, -1))
        for i, lr in enumerate(levels):
            block = ResBlock(ch[2 ** lr], ch[2 ** (lr - 1)], modulate=self.modulate and i >= len(levels) - 2,
                             blur_kernel=self.blur_kernel, name=f'blocks_{i}')
            if i >= idx:
                out = block(out.astype(compute_dtype(2 ** lr, self.bf16_from_res)), arch)
            elif self.is_initializing():
                block(jnp.zeros((1, 2 ** lr, 2 ** lr, ch[2 ** lr]), x.dtype), arch)
        return _Head(ch[4], name='head')(out)
