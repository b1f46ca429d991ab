"""StyleGAN2 / Anycost building blocks in Flax linen, NHWC.

Elastic layers are declared at full width. At call time they take their live widths either
as static ints (``in_width`` / ``out_width``: parameters are sliced, so XLA only computes the
sub-network) or as float masks (``in_mask`` / ``out_mask`` of full width, [C] for the batch or
[N, C] per sample: shapes never change, so one compiled program serves every sampled
sub-network). Both paths reproduce the
original's slicing semantics:

* the modulation FC always produces the full input width, then the live prefix is used;
* the equalized-lr scale of a modulated conv uses the *declared* input width (``fan_in``),
  not the live one;
* demodulation sums over live input channels only;
* biases are the live prefix of the full bias.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from anycost_jax import xla_cpu
from anycost_jax.nn.upfirdn import (downsample_blur_pad, make_kernel, upconv_blur_pad, upfirdn2d, upsample_pad)

Array = jax.Array
SQRT2 = math.sqrt(2.)
_DN = ('NHWC', 'HWIO', 'NHWC')


def fused_leaky_relu(x: Array, bias: Optional[Array] = None, negative_slope: float = 0.2,
                     scale: float = SQRT2) -> Array:
    """``scale * leaky_relu(x + bias)``; the bias is sliced to the live channels of ``x``."""
    if bias is not None:
        x = x + bias[:x.shape[-1]]
    return scale * jnp.where(x >= 0, x, x * negative_slope)


def _conv_same(x: Array, w: Array) -> Array:
    """Same-padded stride-1 correlation (NHWC, HWIO), in the form XLA runs fastest.

    On CPU a 1x1 kernel is a matmul over channels (several times faster than XLA's 1x1
    convolution), so is a convolution of at most 8x8 pixels after im2col (the weight dominates
    there), and a 3x3 convolution with about 256 or more input and output channels on at least
    16x16 pixels uses Winograd (about 1.5x faster; on narrower or smaller inputs its transforms
    cost more than they save). Other platforms run the plain convolution (their libraries pick
    their own algorithms).
    """
    k, _, cin, cout = w.shape

    def direct(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), [(k // 2, k // 2)] * 2, dimension_numbers=_DN)

    if k == 1:
        cpu = lambda x, w: jnp.einsum('nhwi,io->nhwo', x, w[0, 0])
    elif x.shape[1] * x.shape[2] <= 64 and k % 2 == 1 and w.shape[1] == k:
        cpu = xla_cpu.im2col_conv
    elif k == 3 and w.shape[1] == 3 and cin * cout >= 128 * (cin + cout) and x.shape[1] * x.shape[2] >= 256:
        cpu = xla_cpu.winograd_conv3x3
    else:
        return direct(x, w)
    return lax.platform_dependent(x, w, cpu=cpu, default=direct)


def _conv_transpose2x(x: Array, w: Array) -> Array:
    """Stride-2 transposed convolution without padding (NHWC, HWIO), as ``F.conv_transpose2d``.

    That is a correlation of the 2x-dilated input, padded by k-1, with the spatially flipped
    kernel. Flipping is a copy, so it is done on the smaller side: the kernel, or the input and
    the output (conv(x, flip(w)) == flip(conv(flip(x), w)) here), where the flips fuse into the
    neighbouring element-wise ops. On CPU it runs as four phase convolutions instead
    (:func:`anycost_jax.xla_cpu.conv_transpose2x_phases`).
    """
    k = w.shape[0]
    n, h, wd, _ = x.shape
    out_size = n * (2 * h + k - 2) * (2 * wd + k - 2) * w.shape[-1]
    flip_data = x.size + out_size < w.size

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), [(k - 1, k - 1)] * 2, lhs_dilation=(2, 2),
                                        dimension_numbers=_DN)

    def dilated(x, w):
        if flip_data:
            return conv(x[:, ::-1, ::-1], w)[:, ::-1, ::-1]
        return conv(x, w[::-1, ::-1])

    if k < 2 or w.shape[1] != k:
        return dilated(x, w)
    return lax.platform_dependent(x, w, cpu=xla_cpu.conv_transpose2x_phases, default=dilated)


def _normal(stddev: float = 1.):
    return lambda key, shape, dtype=jnp.float32: jax.random.normal(key, shape, dtype) * stddev


def _torch_linear_uniform(fan_in: int):
    """torch.nn.Linear's default init (kaiming-uniform with a=sqrt(5) == U(-1/sqrt(fan_in), ..))."""
    bound = 1. / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class EqualDense(nn.Module):
    """Equalized learning-rate dense layer; weights stored unscaled, ``lr_mul`` as StyleGAN2."""
    features: int
    lr_mul: float = 1.
    bias_init: float = 0.
    use_bias: bool = True
    activation: Optional[str] = None  # None or 'lrelu'

    @nn.compact
    def __call__(self, x: Array, out_width: Optional[int] = None) -> Array:
        fan_in = x.shape[-1]
        kernel = self.param('kernel', _normal(1. / self.lr_mul), (fan_in, self.features))
        n = self.features if out_width is None else out_width
        out = x @ (kernel[:, :n] * (self.lr_mul / math.sqrt(fan_in)))
        bias = None
        if self.use_bias:
            bias = self.param('bias', nn.initializers.constant(self.bias_init), (self.features,))[:n] * self.lr_mul
        if self.activation == 'lrelu':
            return fused_leaky_relu(out, bias)
        if self.activation is not None:
            raise ValueError(f'activation={self.activation!r} is not supported; expected None or "lrelu"')
        return out if bias is None else out + bias


class PixelNorm(nn.Module):
    @nn.compact
    def __call__(self, x: Array) -> Array:
        return x * lax.rsqrt(jnp.mean(x ** 2, axis=-1, keepdims=True) + 1e-8)


class ConstantInput(nn.Module):
    channels: int
    size: int = 4

    @nn.compact
    def __call__(self, batch: int, out_width: Optional[int] = None, out_mask: Optional[Array] = None) -> Array:
        const = self.param('const', _normal(), (1, self.size, self.size, self.channels))
        if out_width is not None:
            const = const[..., :out_width]
        const = jnp.broadcast_to(const, (batch,) + const.shape[1:])
        return const if out_mask is None else const * _spatial(out_mask)


class NoiseInjection(nn.Module):
    @nn.compact
    def __call__(self, x: Array, noise: Array) -> Array:
        weight = self.param('weight', nn.initializers.zeros, (1,))
        return x + (weight * noise).astype(x.dtype)


class ModulatedConv(nn.Module):
    """Modulated convolution with optional demodulation and 2x transposed-conv up-sampling.

    Implemented as modulate-the-input / shared conv / scale-the-output, which is the original's
    per-sample grouped convolution rewritten: conv(x * s, W) * d == conv(x, W * s * d) per sample.
    """
    in_features: int
    features: int
    kernel_size: int
    demodulate: bool = True
    upsample: bool = False
    blur_kernel: Sequence[float] = (1, 3, 3, 1)
    fan_in: Optional[int] = None  # the width the equalized-lr scale uses (full width when exported)

    @nn.compact
    def __call__(self, x: Array, style: Array, in_width: Optional[int] = None, out_width: Optional[int] = None,
                 in_mask: Optional[Array] = None) -> Array:
        k = self.kernel_size
        cin = x.shape[-1]
        fan_in = (self.fan_in or self.in_features) * k * k
        weight = self.param('kernel', _normal(), (k, k, self.in_features, self.features))
        s = EqualDense(self.in_features, bias_init=1., name='modulation')(style, out_width=in_width)  # [N, cin]
        if s.shape[-1] != cin:
            raise ValueError(f'ModulatedConv got {cin} input channels but the live input width is {s.shape[-1]}')
        weight = weight[:, :, :cin, :out_width or self.features]
        if in_mask is not None:
            s = s * in_mask
        s = s * (1. / math.sqrt(fan_in))
        x = x * s[:, None, None, :].astype(x.dtype)
        if self.upsample:
            out = _conv_transpose2x(x, weight.astype(x.dtype))
        else:
            out = _conv_same(x, weight.astype(x.dtype))
        if self.demodulate:
            # sum_{i,kh,kw} (scale * W * s)^2 == sum_i s_i^2 * sum_{kh,kw} W^2
            d = lax.rsqrt((s ** 2) @ xla_cpu.sum_taps(weight ** 2) + 1e-8)  # [N, cout]
            out = out * d[:, None, None, :].astype(out.dtype)
        if self.upsample:
            factor = 2
            kernel = make_kernel(self.blur_kernel) * factor ** 2
            out = upfirdn2d(out, kernel, pad=upconv_blur_pad(len(self.blur_kernel), k, factor))
        return out


class StyledConv(nn.Module):
    """Modulated conv + noise + fused bias/leaky-ReLU; dead output channels are zeroed under masks."""
    in_features: int
    features: int
    kernel_size: int = 3
    upsample: bool = False
    blur_kernel: Sequence[float] = (1, 3, 3, 1)
    fan_in: Optional[int] = None

    @nn.compact
    def __call__(self, x, style, noise, in_width=None, out_width=None, in_mask=None, out_mask=None):
        out = ModulatedConv(self.in_features, self.features, self.kernel_size, upsample=self.upsample,
                            blur_kernel=self.blur_kernel, fan_in=self.fan_in, name='conv')(
            x, style, in_width=in_width, out_width=out_width, in_mask=in_mask)
        out = NoiseInjection(name='noise')(out, noise)
        bias = self.param('bias', nn.initializers.zeros, (self.features,))
        out = fused_leaky_relu(out, bias.astype(out.dtype))
        if out_mask is not None:
            out = out * _spatial(out_mask).astype(out.dtype)
        return out


def _spatial(mask: Array) -> Array:
    """A channel mask [C] (whole batch) or [N, C] (per sample) shaped to multiply NHWC maps."""
    return mask[:, None, None, :] if mask.ndim == 2 else mask


class ToRGB(nn.Module):
    in_features: int
    upsample: bool = True
    blur_kernel: Sequence[float] = (1, 3, 3, 1)
    fan_in: Optional[int] = None

    @nn.compact
    def __call__(self, x, style, skip=None, in_width=None, in_mask=None):
        out = ModulatedConv(self.in_features, 3, 1, demodulate=False, fan_in=self.fan_in, name='conv')(
            x, style, in_width=in_width, in_mask=in_mask)
        # The RGB skip path accumulates every resolution's output: keep it in float32 even when the
        # block computes in a lower precision.
        out = out.astype(jnp.float32) + self.param('bias', nn.initializers.zeros, (3,))
        if skip is not None:
            factor = 2
            kernel = make_kernel(self.blur_kernel) * factor ** 2
            out = out + upfirdn2d(skip, kernel, up=factor, pad=upsample_pad(len(self.blur_kernel), factor))
        return out


# ----------------------------------------------------------------------------- discriminator


class EqualConv(nn.Module):
    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k, cin = self.kernel_size, x.shape[-1]
        weight = self.param('kernel', _normal(), (k, k, cin, self.features))
        out = lax.conv_general_dilated(x, (weight / math.sqrt(cin * k * k)).astype(x.dtype), (self.stride,) * 2,
                                       [(self.padding, self.padding)] * 2, dimension_numbers=_DN)
        if self.use_bias:
            out = out + self.param('bias', nn.initializers.zeros, (self.features,)).astype(out.dtype)
        return out


class ArchModulate(nn.Module):
    """Scales and shifts features by affine maps of the generator's architecture code.

    ``arch`` is one code [L] for the whole batch (as the original trains) or one per sample [N, L].
    The scale starts at 1 (``1 + W a + b``) so a fresh conditioning leaves features unchanged.
    """
    features: int

    @nn.compact
    def __call__(self, x: Array, arch: Array) -> Array:
        fan_in = arch.shape[-1]
        init = _torch_linear_uniform(fan_in)
        wm = nn.Dense(self.features, kernel_init=init, bias_init=init, name='weight_mapping')
        bm = nn.Dense(self.features, kernel_init=init, bias_init=init, name='bias_mapping')
        arch = arch.astype(jnp.float32)
        scale, shift = wm(arch) + 1., bm(arch)
        if arch.ndim == 2:
            scale, shift = scale[:, None, None, :], shift[:, None, None, :]
        return x * scale.astype(x.dtype) + shift.astype(x.dtype)


class ConvLayer(nn.Module):
    """[blur] -> equalized conv -> [architecture modulation] -> [fused bias + leaky ReLU]."""
    features: int
    kernel_size: int
    downsample: bool = False
    activate: bool = True
    modulate: bool = False
    blur_kernel: Sequence[float] = (1, 3, 3, 1)

    @nn.compact
    def __call__(self, x: Array, arch: Optional[Array] = None) -> Array:
        k = self.kernel_size
        if self.downsample:
            x = upfirdn2d(x, make_kernel(self.blur_kernel), pad=downsample_blur_pad(len(self.blur_kernel), k))
            x = EqualConv(self.features, k, stride=2, padding=0, name='conv')(x)
        else:
            x = EqualConv(self.features, k, padding=k // 2, name='conv')(x)
        if self.modulate:
            if arch is None:
                raise ValueError('this discriminator is conditioned on the generator architecture: pass arch, '
                                 'e.g. anycost_jax.elastic.arch_code(ratio_idx) (length 4 * n_elastic_layers)')
            x = ArchModulate(self.features, name='modulate')(x, arch)
        if self.activate:
            x = fused_leaky_relu(x, self.param('bias', nn.initializers.zeros, (self.features,)).astype(x.dtype))
        return x


class ResBlock(nn.Module):
    in_features: int
    features: int
    modulate: bool = False
    blur_kernel: Sequence[float] = (1, 3, 3, 1)

    @nn.compact
    def __call__(self, x: Array, arch: Optional[Array] = None) -> Array:
        out = ConvLayer(self.in_features, 3, modulate=self.modulate, blur_kernel=self.blur_kernel, name='conv1')(x, arch)
        out = ConvLayer(self.features, 3, downsample=True, modulate=self.modulate, blur_kernel=self.blur_kernel,
                        name='conv2')(out, arch)
        skip = ConvLayer(self.features, 1, downsample=True, activate=False, modulate=self.modulate,
                         blur_kernel=self.blur_kernel, name='skip')(x, arch)
        return (out + skip) * (1. / SQRT2)
