"""The PatchGAN discriminator of pix2pix / CycleGAN (``NLayerDiscriminator``).

4x4 convs: stride 2 (``ndf``, bias, LeakyReLU 0.2), ``n_layers - 1`` more stride-2 ones doubling
the width up to ``8 * ndf`` (norm, LeakyReLU), one stride-1 (norm, LeakyReLU) and a stride-1
conv to one channel: a map of real/fake logits, one per 70x70 patch at ``n_layers=3``. A
conditional D (pix2pix) takes the input and the output concatenated on channels.
``norm='instance_affine'`` with ``global_pool`` is GAN Slimming's ``Discriminator`` (affine instance
norms, then the map averaged to one logit per image, ``[N, 1]``).
"""
from __future__ import annotations

import flax.linen as nn
import jax

from anycost_jax.nn.conv import Conv2d, leaky_relu
from anycost_jax.nn.norm import BatchNorm, InstanceNorm

Array = jax.Array
D_NORMS = ('batch', 'instance', 'instance_affine', 'none')


def nlayer_widths(ndf: int, n_layers: int) -> list[int]:
    """Output widths of the convs before the final one."""
    return [ndf * min(2 ** n, 8) for n in range(n_layers + 1)]


class NLayerDiscriminator(nn.Module):
    input_nc: int = 6
    ndf: int = 64
    n_layers: int = 3
    norm: str = 'batch'
    global_pool: bool = False

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        if self.norm not in D_NORMS:
            raise ValueError(f'norm={self.norm!r} is not supported; expected one of {D_NORMS}')
        if x.ndim != 4 or x.shape[-1] != self.input_nc:
            raise ValueError(f'expected NHWC inputs with {self.input_nc} channels (input_nc), got {tuple(x.shape)}')
        # As the original: only instance norm keeps conv biases ('none' drops them too).
        use_bias = self.norm in ('instance', 'instance_affine')
        widths = nlayer_widths(self.ndf, self.n_layers)
        # The original's LeakyReLUs are in place (it matters to MAC counting only).
        h = leaky_relu(Conv2d(self.input_nc, widths[0], 4, 2, 1, name='conv0')(x), 0.2, inplace=True)
        for n in range(1, self.n_layers + 1):
            stride = 2 if n < self.n_layers else 1
            h = Conv2d(widths[n - 1], widths[n], 4, stride, 1, use_bias=use_bias, name=f'conv{n}')(h)
            if self.norm == 'batch':
                h = BatchNorm(widths[n], name=f'norm{n}')(h, train)
            elif self.norm in ('instance', 'instance_affine'):
                h = InstanceNorm(widths[n], affine=self.norm == 'instance_affine', name=f'norm{n}')(h)
            h = leaky_relu(h, 0.2, inplace=True)
        h = Conv2d(widths[-1], 1, 4, 1, 1, name='out')(h)
        return h.mean(axis=(1, 2)) if self.global_pool else h
