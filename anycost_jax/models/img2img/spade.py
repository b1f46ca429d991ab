"""GauGAN's SPADE generator and GAN Compression's MobileNet form, with the multi-scale discriminator.

One elastic class serves ``spade``, ``mobile_spade``, ``super_mobile_spade`` and ``sub_mobile_spade``
(a sub-network is the class built with smaller ``widths``). The label map (one-hot semantic
classes, plus an instance-edge channel when used) is resized to the latent grid
(``crop_size / 2**n_up`` wide, ``aspect_ratio`` times less high) by PyTorch's nearest rule, goes
through a 3x3 conv (``fc``, 16 ngf) and the SPADE residual blocks ``head_0``, ``G_middle_0``,
``G_middle_1`` (16 ngf), ``up_0`` .. ``up_3`` (8, 4, 2, 1 ngf; ``up_4`` at ngf / 2 with
``num_upsampling_layers='most'``), each after a 2x nearest upsampling (``G_middle_0`` only
with 'more' / 'most'), then LeakyReLU -> 3x3 conv -> tanh.

SPADE normalizes without parameters (batch norm with full-width running statistics, or
instance norm), then modulates by ``1 + gamma`` and ``beta`` from convs of the label map
(``mlp_shared``: label -> hidden (2 ngf), ReLU; ``mlp_gamma`` / ``mlp_beta``: hidden -> channels,
separable in the mobile form).

Elastic layers (``elastic.img2img.spade_*``): ``fc`` (the width of the residual stream through
``G_middle_1``), then per block its channel width and its SPADE hidden width.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from anycost_jax.elastic import core as elastic_core
from anycost_jax.elastic import img2img as rules
from anycost_jax.nn import profile
from anycost_jax.nn.conv import Conv2d, SeparableConv2d, avg_pool3x3_s2, leaky_relu
from anycost_jax.nn.norm import BatchNorm, InstanceNorm
from anycost_jax.nn.resize import resize_nearest, upsample2x_nearest
from anycost_jax.nn.spectral import SpectralConv2d

Array = jax.Array
PARAM_FREE_NORMS = ('batch', 'instance')



def instance_edges(instance: Array) -> Array:
    """GauGAN's instance-boundary map: 1 where a pixel's instance id differs from its left, right,
    upper or lower neighbour's. ``instance``: int [N, H, W] -> float32 [N, H, W, 1]."""
    dx = instance[:, :, 1:] != instance[:, :, :-1]  # [N, H, W - 1]: column j differs from column j + 1
    dy = instance[:, 1:, :] != instance[:, :-1, :]

    def pad(d, axis, before):
        widths = [(0, 0)] * 3
        widths[axis] = (1, 0) if before else (0, 1)
        return jnp.pad(d, widths)
    edge = pad(dx, 2, True) | pad(dx, 2, False) | pad(dy, 1, True) | pad(dy, 1, False)
    return edge.astype(jnp.float32)[..., None]


def semantic_input(label: Array, n_classes: int, instance: Optional[Array] = None) -> Array:
    """The generator's input from a label map, as the original's ``preprocess_input``: one-hot classes
    (``n_classes``: ``input_nc``, + 1 when a don't-care label is among them) then, given instance ids,
    their edges: int [N, H, W] -> float32 [N, H, W, n_classes (+ 1)]. A label outside
    ``[0, n_classes)`` gets an all-zero row (the original's scatter would fail on it)."""
    x = jax.nn.one_hot(label, n_classes, dtype=jnp.float32)
    if instance is None:
        return x
    return jnp.concatenate([x, instance_edges(instance)], axis=-1)


class SPADE(nn.Module):
    """``norm_nc``: the (declared) width of the normalized input and of gamma / beta; ``stats_nc``: the
    batch norm's width, which stays the full network's in a sub-network (as the original's)."""
    norm_nc: int
    label_nc: int
    nhidden: int
    stats_nc: Optional[int] = None
    mobile: bool = False
    param_free_norm: str = 'batch'
    kernel_size: int = 3
    separable_norm: str = 'instance'
    axis_name: Optional[str] = None

    @nn.compact
    def __call__(self, x, seg, mask=None, hidden_width=None, hidden_mask=None, train=False, bn_momentum=None):
        if self.param_free_norm == 'batch':
            normalized = BatchNorm(self.stats_nc or self.norm_nc, affine=False, axis_name=self.axis_name,
                                   name='param_free_norm')(x, train, mask, bn_momentum)
        else:
            normalized = InstanceNorm(self.norm_nc, name='param_free_norm')(x, mask)
        seg = resize_nearest(seg, x.shape[1:3])
        k, p = self.kernel_size, self.kernel_size // 2
        actv = nn.relu(Conv2d(self.label_nc, self.nhidden, k, padding=p, name='mlp_shared')(
            seg, hidden_width, hidden_mask))
        c = x.shape[-1]
        if self.mobile:
            gamma = SeparableConv2d(self.nhidden, self.norm_nc, k, p, self.separable_norm, name='mlp_gamma')(
                actv, hidden_mask, c, mask)
            beta = SeparableConv2d(self.nhidden, self.norm_nc, k, p, self.separable_norm, name='mlp_beta')(
                actv, hidden_mask, c, mask)
        else:
            gamma = Conv2d(self.nhidden, self.norm_nc, k, padding=p, name='mlp_gamma')(actv, c, mask)
            beta = Conv2d(self.nhidden, self.norm_nc, k, padding=p, name='mlp_beta')(actv, c, mask)
        profile.record('mul', normalized.size, path='/'.join(self.scope.path))  # normalized * (1 + gamma)
        return normalized * (1 + gamma) + beta


class SPADEResnetBlock(nn.Module):
    """A SPADE residual block. Declared widths: ``in_features`` (its input), ``features`` (conv_0's
    output, and the block's output when the shortcut is learned; otherwise the output keeps the
    input's width), ``hidden`` (its SPADEs' hidden width). ``learned``: a learned 1x1 shortcut (no
    bias; the original's ``fin != fout``). ``stats_in`` / ``stats_mid``: the full network's widths
    of the input and of conv_0's output, where batch norm keeps its statistics."""
    in_features: int
    features: int
    hidden: int
    label_nc: int
    learned: bool
    stats_in: int
    stats_mid: int
    mobile: bool = False
    spectral: bool = False
    param_free_norm: str = 'batch'
    separable_norm: str = 'instance'
    axis_name: Optional[str] = None

    def _spade(self, nc, stats_nc, name):
        return SPADE(nc, self.label_nc, self.hidden, stats_nc, self.mobile, self.param_free_norm,
                     separable_norm=self.separable_norm, axis_name=self.axis_name, name=name)

    def _conv(self, cin, cout, k, name, use_bias=True):
        if self.spectral:
            conv = SpectralConv2d(cin, cout, k, padding=k // 2, use_bias=use_bias, name=name)
            return lambda x, width, mask, train: conv(x, train)
        conv = Conv2d(cin, cout, k, padding=k // 2, use_bias=use_bias, name=name)
        return lambda x, width, mask, train: conv(x, width, mask)

    @nn.compact
    def __call__(self, x, seg, in_mask=None, width=None, mask=None, hidden=None, hidden_mask=None, train=False,
                 bn_momentum=None):
        cin, c = self.in_features, self.features
        kw = dict(hidden_width=hidden, hidden_mask=hidden_mask, train=train, bn_momentum=bn_momentum)
        if self.learned:
            xs = self._conv(cin, c, 1, 'conv_s', use_bias=False)(
                self._spade(cin, self.stats_in, 'norm_s')(x, seg, in_mask, **kw), width, mask, train)
        else:
            xs = x
        dx = self._spade(cin, self.stats_in, 'norm_0')(x, seg, in_mask, **kw)
        dx = self._conv(cin, c, 3, 'conv_0')(leaky_relu(dx, 0.2), width, mask, train)
        dx = self._spade(c, self.stats_mid, 'norm_1')(dx, seg, mask, **kw)
        cout, out_width, out_mask = (c, width, mask) if self.learned else (cin, x.shape[-1], in_mask)
        dx = self._conv(c, cout, 3, 'conv_1')(leaky_relu(dx, 0.2), out_width, out_mask, train)
        return xs + dx


class SPADEGenerator(nn.Module):
    """GauGAN's generator (``mobile=False``) or its MobileNet form (``mobile=True``).

    ``label_nc``: input channels (gan-compression's ``semantic_nc``: classes, + 1 for a don't-care
    label, + 1 for instance edges). ``crop_size`` / ``aspect_ratio`` / ``num_upsampling_layers`` fix
    the latent grid and so the output size (the label map must have that size). ``spectral``:
    spectral-normalized block convs (``norm_G='spectralspade...'``; full width only).
    ``param_free_norm``: 'batch' (the original's ``spadesyncbatch3x3``; ``axis_name`` synchronizes
    it across devices) or 'instance'. ``widths``: full per-layer widths (None: from ``ngf``).

    Call with ``seg`` NHWC and at most one of ``config`` (static: a config string of 8 entries or
    a per-layer tuple; sliced) or ``widths`` (traced ``[L]`` / ``[N, L]``; masks). ``train``: batch
    norm on batch statistics, updating ``batch_stats`` (and spectral norms' power iteration);
    ``bn_momentum`` overrides the batch norms' momentum (1.0: calibration).
    """
    label_nc: int
    crop_size: int
    ngf: int = 64
    aspect_ratio: float = 1.0
    num_upsampling_layers: str = 'more'
    mobile: bool = False
    spectral: bool = False
    param_free_norm: str = 'batch'
    separable_norm: str = 'instance'
    widths: Optional[Sequence[int]] = None
    axis_name: Optional[str] = None

    @property
    def blocks(self) -> tuple[str, ...]:
        return rules.spade_blocks(self.num_upsampling_layers)

    @property
    def full_widths(self) -> tuple[int, ...]:
        full = rules.spade_full_widths(self.ngf, self.num_upsampling_layers)
        if self.widths is None:
            return full
        w = tuple(int(c) for c in self.widths)
        if len(w) != len(full):
            raise ValueError(f'widths has {len(w)} entries; this SPADE generator has {len(full)} '
                             f'({rules.spade_layout(self.num_upsampling_layers)})')
        return w

    @property
    def latent_size(self) -> tuple[int, int]:
        """(height, width) of the latent grid, as the original's ``compute_latent_vector_size``."""
        n = rules.SPADE_UPSAMPLING[self.num_upsampling_layers]
        sw = self.crop_size // 2 ** n
        return round(sw / self.aspect_ratio), sw

    @property
    def output_size(self) -> tuple[int, int]:
        n = rules.SPADE_UPSAMPLING[self.num_upsampling_layers]
        sh, sw = self.latent_size
        return sh * 2 ** n, sw * 2 ** n

    def _check(self, seg):
        if self.num_upsampling_layers not in rules.SPADE_UPSAMPLING:
            raise ValueError(f'num_upsampling_layers={self.num_upsampling_layers!r} is not valid; expected one of '
                             f'{list(rules.SPADE_UPSAMPLING)}')
        if self.param_free_norm not in PARAM_FREE_NORMS:
            raise ValueError(f'param_free_norm={self.param_free_norm!r} is not valid; expected one of '
                             f'{PARAM_FREE_NORMS}')
        if seg.ndim != 4 or seg.shape[-1] != self.label_nc:
            raise ValueError(f'expected NHWC label maps with label_nc={self.label_nc} channels (one-hot classes '
                             f'[+ don\'t care] [+ instance edges]), got shape {tuple(seg.shape)}')
        if tuple(seg.shape[1:3]) != self.output_size:
            raise ValueError(f'the label map is {seg.shape[1]}x{seg.shape[2]}, but crop_size={self.crop_size}, '
                             f'aspect_ratio={self.aspect_ratio} and num_upsampling_layers='
                             f'{self.num_upsampling_layers!r} make {self.output_size[0]}x{self.output_size[1]} '
                             'outputs: pass the crop_size / aspect_ratio the network was trained with')

    @nn.compact
    def __call__(self, seg: Array, config: Union[str, Sequence[int], None] = None, widths: Optional[Array] = None,
                 train: bool = False, bn_momentum: Optional[float] = None) -> Array:
        self._check(seg)
        full = self.full_widths
        if self.spectral and (config is not None or widths is not None or self.widths is not None):
            raise ValueError('a spectral-normalized SPADE generator runs at full width only (spectral=True)')
        n_up = self.num_upsampling_layers
        live, masks = elastic_core.live_widths(
            config, widths, full, lambda c: rules.resolve_spade_config(c, full, n_up), rules.spade_layout(n_up))
        # Full-network widths (``ngf``) fix the structure (learned shortcuts) and the batch norms' widths;
        # ``full`` (this network's widths, smaller in a sub-network) the conv shapes.
        block_out = rules.spade_block_out(self.ngf, self.num_upsampling_layers)
        x = resize_nearest(seg, self.latent_size)
        x = Conv2d(self.label_nc, full[0], 3, padding=1, name='fc')(x, live[0], masks[0])
        in_mask, cin, stats_in = masks[0], full[0], 16 * self.ngf
        more = self.num_upsampling_layers in ('more', 'most')
        for i, name in enumerate(self.blocks):
            if name != 'head_0' and (name != 'G_middle_1' or more):
                x = upsample2x_nearest(x)
            c, h = 1 + 2 * i, 2 + 2 * i
            learned = stats_in != block_out[i]
            block = SPADEResnetBlock(cin, full[c], full[h], self.label_nc, learned, stats_in,
                                     min(stats_in, block_out[i]), self.mobile, self.spectral, self.param_free_norm,
                                     self.separable_norm, self.axis_name, name=name)
            x = block(x, seg, in_mask, live[c], masks[c], live[h], masks[h], train, bn_momentum)
            if learned:
                in_mask, cin = masks[c], full[c]
            stats_in = block_out[i]
            self.sow('intermediates', name, x)
        x = Conv2d(cin, 3, 3, padding=1, name='conv_img')(leaky_relu(x, 0.2))
        return jnp.tanh(x)


class MobileSPADEGenerator(SPADEGenerator):
    mobile: bool = True


def export(gen: SPADEGenerator, variables: dict, config: Union[str, Sequence[int]]):
    """The dense sub-network of ``config``: ``(generator built with those widths, its variables)``.
    Batch-norm statistics stay full width (the original's sub-networks keep them so)."""
    widths = rules.resolve_spade_config(config, gen.full_widths, gen.num_upsampling_layers)
    sub = gen.clone(widths=widths)
    seg = jnp.zeros((1, *gen.output_size, gen.label_nc), jnp.float32)
    out = elastic_core.export_module(sub, variables, seg)
    out['batch_stats'] = variables.get('batch_stats', {})
    if not out['batch_stats']:
        out.pop('batch_stats')
    return sub, out


def calibrate_batch_norm(gen: SPADEGenerator, variables: dict, batches: Iterable[Array], config=None,
                         widths=None, rule: str = 'original') -> dict:
    """Re-estimates the batch-norm statistics of a sub-network on label-map ``batches``.

    ``rule='original'``: as gan-compression's ``calibrate``, every batch replaces the statistics
    (its ``calibrate_bn`` switches momentum to 1 at the first batch and leaves it on), so the last
    batch's statistics remain; ``rule='average'``: the mean of every batch's statistics (torch's
    cumulative average, ``momentum=None``). Returns ``variables`` with the new ``batch_stats``.
    """
    if rule not in ('original', 'average'):
        raise ValueError(f'rule={rule!r} is not valid; expected "original" or "average"')
    @jax.jit
    def batch_statistics(v, seg):
        return gen.apply(v, seg, config=config, widths=widths, train=True, bn_momentum=1.0,
                         mutable=['batch_stats'])[1]['batch_stats']

    stats, n = None, 0
    for seg in batches:
        new = batch_statistics(variables, seg)
        n += 1
        if rule == 'original' or stats is None:
            stats = new
        else:
            stats = jax.tree.map(lambda a, b: a + (b - a) / n, stats, new)
    if stats is None:
        raise ValueError('calibrate_batch_norm: no batches given')
    return {**variables, 'batch_stats': jax.tree.map(np.asarray, stats)}


class SPADENLayerDiscriminator(nn.Module):
    """GauGAN's PatchGAN: 4x4 convs with padding 2, the first plain (bias), then ``n_layers - 1``
    spectral-normalized convs without bias + non-affine instance norm (``norm_D='spectralinstance'``;
    'instance' drops the spectral norm), stride 2 but the last, widths doubling to 512, LeakyReLU 0.2,
    and a plain conv to one channel. Returns every layer's output (for feature matching)."""
    input_nc: int
    ndf: int = 64
    n_layers: int = 4
    norm: str = 'spectralinstance'

    @nn.compact
    def __call__(self, x, train: bool = False) -> list:
        if self.norm not in ('spectralinstance', 'instance'):
            raise ValueError(f'norm_D={self.norm!r} is not supported; expected "spectralinstance" or "instance"')
        nf, outs = self.ndf, []
        x = leaky_relu(Conv2d(self.input_nc, nf, 4, 2, 2, name='model0')(x), 0.2)
        outs.append(x)
        for n in range(1, self.n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == self.n_layers - 1 else 2
            if self.norm == 'spectralinstance':
                x = SpectralConv2d(nf_prev, nf, 4, stride, 2, use_bias=False, name=f'model{n}')(x, train)
            else:
                x = Conv2d(nf_prev, nf, 4, stride, 2, use_bias=False, name=f'model{n}')(x)
            x = leaky_relu(InstanceNorm(nf, name=f'norm{n}')(x), 0.2)
            outs.append(x)
        outs.append(Conv2d(nf, 1, 4, 1, 2, name=f'model{self.n_layers}')(x))
        return outs


class MultiscaleDiscriminator(nn.Module):
    """``num_D`` PatchGANs, the i-th on the input average-pooled i times (3x3, stride 2, padding 1,
    padding not counted). Returns ``[[layer outputs] per D]``; the last output of each is its logits."""
    input_nc: int
    ndf: int = 64
    n_layers: int = 4
    num_D: int = 2
    norm: str = 'spectralinstance'

    @nn.compact
    def __call__(self, x, train: bool = False) -> list:
        if x.ndim != 4 or x.shape[-1] != self.input_nc:
            raise ValueError(f'expected NHWC inputs with input_nc={self.input_nc} channels (label map + image), '
                             f'got {tuple(x.shape)}')
        result = []
        for i in range(self.num_D):
            result.append(SPADENLayerDiscriminator(self.input_nc, self.ndf, self.n_layers, self.norm,
                                                   name=f'discriminator_{i}')(x, train))
            if i + 1 < self.num_D:
                x = avg_pool3x3_s2(x)
        return result
