"""pix2pix's U-Net generator (``unet_256``: 8 downsamplings), as OMGD / CRD define it (their student
for edges2shoes), NHWC.

Built from the innermost level out: level ``i`` is LeakyReLU(0.2) -> 4x4 stride-2 conv (-> norm,
not at the innermost level) -> the inner levels -> ReLU -> 4x4 stride-2 transposed conv (padding
1) -> norm (-> dropout at the ``num_downs - 5`` middle levels of 8 ngf), its input concatenated
before its output. The outermost level has no activation or norm before its conv, and ends in
ReLU -> transposed conv (bias) -> tanh. Widths: ngf, 2 ngf, 4 ngf, then 8 ngf. Convs have biases
only with instance norm (torch's ``use_bias``).

No elastic widths: the skip concatenations put each level's live channels in two separated
blocks, which a prefix slice cannot express (CRD trains its U-Net students at a fixed width).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from anycost_jax.nn.conv import Conv2d, ConvTranspose2d, leaky_relu
from anycost_jax.nn.norm import BatchNorm, InstanceNorm

Array = jax.Array


def unet_widths(ngf: int, num_downs: int) -> list[int]:
    """The downsampling convs' output widths, outermost first."""
    return [ngf * min(2 ** i, 8) for i in range(num_downs)]


class UnetGenerator(nn.Module):
    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    num_downs: int = 8
    norm: str = 'batch'
    dropout_rate: float = 0.

    def _norm(self, c, name):
        if self.norm == 'batch':
            return lambda h, train: BatchNorm(c, name=name)(h, train)
        return lambda h, train: InstanceNorm(c, name=name)(h)

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        if self.norm not in ('batch', 'instance'):
            raise ValueError(f'norm={self.norm!r} is not supported; expected "batch" or "instance"')
        if self.num_downs < 5:
            raise ValueError(f'num_downs={self.num_downs} must be at least 5 (the U-Net has ngf..8 ngf levels)')
        if x.ndim != 4 or x.shape[-1] != self.input_nc:
            raise ValueError(f'expected NHWC images with {self.input_nc} channels, got shape {tuple(x.shape)}')
        side = 2 ** self.num_downs
        if x.shape[1] % side or x.shape[2] % side:
            raise ValueError(f'image size {x.shape[1]}x{x.shape[2]} is not a multiple of {side} (2 ** num_downs='
                             f'{self.num_downs}): the U-Net halves it {self.num_downs} times')
        widths = unet_widths(self.ngf, self.num_downs)
        bias = self.norm == 'instance'
        n = self.num_downs

        def level(h, i):
            outer = self.input_nc if i == 0 else widths[i - 1]
            inner = widths[i]
            if i > 0:
                h = leaky_relu(h, 0.2, inplace=True)
            down = Conv2d(outer, inner, 4, 2, 1, use_bias=bias, name=f'down{i}')(h)
            if 0 < i < n - 1:
                down = self._norm(inner, f'down_norm{i}')(down, train)
            sub = level(down, i + 1) if i < n - 1 else down
            up_in = inner * 2 if i < n - 1 else inner
            out_c = self.output_nc if i == 0 else outer
            up = ConvTranspose2d(up_in, out_c, 4, 2, 1, 0, use_bias=bias or i == 0, name=f'up{i}')(nn.relu(sub))
            if i == 0:
                return jnp.tanh(up)
            up = self._norm(out_c, f'up_norm{i}')(up, train)
            if self.dropout_rate > 0 and 4 <= i < n - 1:  # the 8 ngf middle levels
                up = nn.Dropout(self.dropout_rate, deterministic=not train)(up)
            return jnp.concatenate([h, up], axis=-1)

        return level(x, 0)
