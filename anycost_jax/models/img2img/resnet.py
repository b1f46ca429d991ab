"""The ResNet generators of pix2pix / CycleGAN and their MobileNet form (GAN Compression).

One elastic class covers every variant gan-compression has (``resnet_9blocks``,
``mobile_resnet_9blocks`` and its super / sub / legacy forms): a supernet is the class at full
width applied with a config, a sub-network (what ``sub_mobile_resnet`` / ``legacy_sub...``
builds) is the class built with smaller ``widths``. The elastic layers and config strings are
:mod:`anycost_jax.elastic.img2img`'s.

Layout (as the original's ``nn.Sequential``): pad 3 -> 7x7 conv -> norm -> ReLU; two 3x3
stride-2 convs (norm, ReLU); ``n_blocks`` residual blocks; two 3x3 stride-2 transposed convs
(padding 1, output padding 1; norm, ReLU); pad 3 -> 7x7 conv -> tanh. A residual block is
pad -> conv (res -> inner) -> norm -> ReLU -> dropout -> pad -> conv (inner -> res) -> norm, plus
the input. In the mobile form each block conv is separable: a depthwise 3x3 (bias), a
non-affine instance norm, a pointwise 1x1 (bias).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from anycost_jax.elastic import core as elastic_core
from anycost_jax.elastic import img2img as rules
from anycost_jax.nn.conv import PADDING_TYPES, Conv2d, ConvTranspose2d, SeparableConv2d, pad2d
from anycost_jax.nn.norm import BatchNorm, InstanceNorm

Array = jax.Array
NORMS = ('instance', 'batch')


class Norm(nn.Module):
    """The generators' norm layer: non-affine instance norm, or affine batch norm (pix2pix's ``--norm``)."""
    features: int
    kind: str = 'instance'

    @nn.compact
    def __call__(self, x: Array, mask: Optional[Array], train: bool) -> Array:
        if self.kind == 'instance':
            return InstanceNorm(self.features, name='norm')(x, mask)
        return BatchNorm(self.features, name='norm')(x, train, mask)


class ResnetBlock(nn.Module):
    features: int  # full residual width
    inner: int  # full inner width
    mobile: bool = False
    norm: str = 'instance'
    dropout_rate: float = 0.
    padding_type: str = 'reflect'

    def _conv(self, cin, cout, name):
        p = 1 if self.padding_type == 'zero' else 0
        if self.mobile:
            return SeparableConv2d(cin, cout, 3, padding=p, name=name)
        use_bias = self.norm == 'instance'
        conv = Conv2d(cin, cout, 3, padding=p, use_bias=use_bias, name=name)
        return lambda x, in_mask, out_width, out_mask: conv(x, out_width, out_mask)

    @nn.compact
    def __call__(self, x, inner_width=None, inner_mask=None, res_mask=None, train=False):
        p = 0 if self.padding_type == 'zero' else 1
        h = pad2d(x, p, self.padding_type)
        h = self._conv(self.features, self.inner, 'conv1')(h, res_mask, inner_width, inner_mask)
        h = nn.relu(Norm(self.inner, self.norm, name='norm1')(h, inner_mask, train))
        if self.dropout_rate > 0:
            h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        h = pad2d(h, p, self.padding_type)
        h = self._conv(self.inner, self.features, 'conv2')(h, inner_mask, x.shape[-1], res_mask)
        h = Norm(self.features, self.norm, name='norm2')(h, res_mask, train)
        return x + h


class ResnetGenerator(nn.Module):
    """pix2pix / CycleGAN's ``ResnetGenerator`` (``mobile=False``) or GAN Compression's MobileNet form.

    ``widths``: the full per-layer widths (``elastic.img2img.resnet_full_widths(ngf, n_blocks)``
    when None); a sub-network is this class with smaller ``widths``. ``clamp_input``: clip the
    input to [-1, 1] first (the original's dense, super, sub and legacy generators do; its plain
    mobile one does not).

    Call with ``x`` NHWC in [-1, 1] and at most one of:

    * ``config``: static, a config string (``'16_16_32_16_32_32_16_16'``, 6 or 8 entries) or a
      tuple of per-layer widths: the parameters are sliced (real savings);
    * ``widths``: int array ``[L]`` or ``[N, L]`` (per sample), traced: masks, one compiled
      program for any widths.

    ``train``: dropout on (needs a 'dropout' rng) and batch norm on batch statistics. With the
    ``intermediates`` collection mutable, the input of the residual stack (``residual_in``) and every
    block's output (``block{b}_out``) are sown (tuples of one array), at the residual width.
    """
    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    n_blocks: int = 9
    widths: Optional[Sequence[int]] = None
    mobile: bool = False
    norm: str = 'instance'
    dropout_rate: float = 0.
    padding_type: str = 'reflect'
    clamp_input: bool = True

    @property
    def full_widths(self) -> tuple[int, ...]:
        if self.widths is None:
            return rules.resnet_full_widths(self.ngf, self.n_blocks)
        w = tuple(int(c) for c in self.widths)
        if len(w) != rules.resnet_num_layers(self.n_blocks):
            raise ValueError(f'widths has {len(w)} entries; a {self.n_blocks}-block ResNet generator has '
                             f'{rules.resnet_num_layers(self.n_blocks)} ({rules.resnet_layout(self.n_blocks)})')
        return w

    def _check_fields(self):
        if self.norm not in NORMS:
            raise ValueError(f'norm={self.norm!r} is not supported; expected one of {NORMS}')
        if self.mobile and self.norm != 'instance':
            raise ValueError('the mobile ResNet generator supports norm="instance" only (as the original\'s '
                             f'super-networks), got norm={self.norm!r}')
        if self.padding_type not in PADDING_TYPES:
            raise ValueError(f'padding_type={self.padding_type!r} is not supported; expected one of {PADDING_TYPES}')

    @nn.compact
    def __call__(self, x: Array, config: Union[str, Sequence[int], None] = None, widths: Optional[Array] = None,
                 train: bool = False) -> Array:
        self._check_fields()
        full = self.full_widths
        if x.ndim != 4 or x.shape[-1] != self.input_nc:
            raise ValueError(f'expected NHWC images with {self.input_nc} channels, got shape {tuple(x.shape)}')
        if x.shape[1] % 4 or x.shape[2] % 4:
            raise ValueError(f'image size {x.shape[1]}x{x.shape[2]} is not a multiple of 4: the two stride-2 '
                             'downsamplings and upsamplings would not give the input size back')
        live, masks = elastic_core.live_widths(config, widths, full, lambda c: rules.resolve_resnet_config(c, full),
                                               rules.resnet_layout(self.n_blocks))
        n = self.n_blocks
        use_bias = self.norm == 'instance'

        def norm(h, i, name):
            return nn.relu(Norm(full[i], self.norm, name=name)(h, masks[i], train))

        if self.clamp_input:
            x = jnp.clip(x, -1, 1)
        h = Conv2d(self.input_nc, full[0], 7, use_bias=use_bias, name='stem')(pad2d(x, 3), live[0], masks[0])
        h = norm(h, 0, 'stem_norm')
        for i, name in ((1, 'down1'), (2, 'down2')):
            h = Conv2d(full[i - 1], full[i], 3, stride=2, padding=1, use_bias=use_bias, name=name)(
                h, live[i], masks[i])
            h = norm(h, i, f'{name}_norm')
        # GAN Compression's distillation reads these (``mutable=['intermediates']``; free otherwise)
        self.sow('intermediates', 'residual_in', h)
        for b in range(n):
            h = ResnetBlock(full[2], full[3 + b], self.mobile, self.norm, self.dropout_rate, self.padding_type,
                            name=f'block{b}')(h, live[3 + b], masks[3 + b], masks[2], train)
            self.sow('intermediates', f'block{b}_out', h)
        for i, name in ((n + 3, 'up1'), (n + 4, 'up2')):
            h = ConvTranspose2d(full[i - 1] if i > n + 3 else full[2], full[i], use_bias=use_bias, name=name)(
                h, live[i], masks[i])
            h = norm(h, i, f'{name}_norm')
        h = Conv2d(full[-1], self.output_nc, 7, name='head')(pad2d(h, 3))
        return jnp.tanh(h)


class MobileResnetGenerator(ResnetGenerator):
    """gan-compression's ``MobileResnetGenerator``: separable block convs and, as its plain mobile
    model, no input clamp (``clamp_input=True`` for its super / sub / legacy forms)."""
    mobile: bool = True
    clamp_input: bool = False


def export(gen: ResnetGenerator, variables: dict, config: Union[str, Sequence[int]], legacy: bool = False):
    """The dense sub-network of ``config``: ``(generator built with those widths, its variables)``."""
    widths = rules.resolve_resnet_config(config, gen.full_widths, legacy)
    sub = gen.clone(widths=widths)
    x = jnp.zeros((1, 16, 16, gen.input_nc), jnp.float32)
    return sub, elastic_core.export_module(sub, variables, x)


def prune(gen: ResnetGenerator, variables: dict, ngf: int):
    """GAN Compression's pre-distillation: the generator at base width ``ngf`` whose filters are ``gen``'s
    of largest L1 norm (:func:`anycost_jax.elastic.prune.l1_prune_resnet`): ``(generator, variables)``."""
    from anycost_jax.elastic import prune as prune_lib
    if gen.widths is not None:
        raise ValueError('prune a full-width generator (this one is a sub-network: widths are set)')
    if ngf > gen.ngf:
        raise ValueError(f'ngf={ngf} is wider than the generator pruned from (ngf={gen.ngf})')
    small = gen.clone(ngf=ngf)
    params = prune_lib.l1_prune_resnet(variables['params'], small.full_widths, gen.n_blocks, gen.mobile)
    return small, {**variables, 'params': params}


__all__ = ['ResnetGenerator', 'MobileResnetGenerator', 'ResnetBlock', 'export', 'prune']
