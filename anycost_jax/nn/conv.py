"""Plain (not equalized) convolutions with PyTorch's semantics, elastic in their widths, NHWC.

These are the layers of the image-to-image networks (pix2pix, CycleGAN, GauGAN and their
compressed students). Each is declared at its full widths (``in_features`` / ``features``)
and takes its live widths at call time in one of two ways, as every elastic layer here does:

* **sliced**: an input with fewer channels than ``in_features`` uses that prefix of the kernel's
  input axis, and ``out_width`` (a static int) the prefix of its output axis and bias: XLA
  computes only the sub-network (what a deployed, exported network runs);
* **masked**: full-width inputs whose dead channels are zero, and ``out_mask`` (float, [C] for
  the batch or [N, C] per sample) zeroes the dead output channels, bias included: shapes never
  change, so one compiled program serves every sampled sub-network.

The two agree because a zero input channel contributes nothing to any output. Kernels are
stored HWIO (torch's ``OIHW`` transposed; a transposed convolution's ``[in, out, kh, kw]`` as
``[kh, kw, in, out]``) and initialized as pix2pix does (normal, std 0.02; biases 0).
"""
from __future__ import annotations

from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from anycost_jax.nn import profile
from anycost_jax.nn import quant as quant_lib
from anycost_jax.nn.masks import apply_mask, live_in as _live_in, live_out as _live_out, module_path as _path
from anycost_jax.nn.norm import InstanceNorm

Array = jax.Array
_DN = ('NHWC', 'HWIO', 'NHWC')
PADDING_TYPES = ('reflect', 'replicate', 'zero')


def pix2pix_normal(stddev: float = 0.02) -> Callable:
    """pix2pix's ``init_weights(net, 'normal', 0.02)`` for conv kernels."""
    return lambda key, shape, dtype=jnp.float32: jax.random.normal(key, shape, dtype) * stddev


def leaky_relu(x: Array, negative_slope: float = 0.2, inplace: bool = False) -> Array:
    """LeakyReLU; ``inplace`` says whether the original runs it in place (only MAC counting reads it)."""
    profile.record('leaky_relu', x.size, inplace=inplace)
    return jnp.where(x >= 0, x, x * negative_slope)


def avg_pool3x3_s2(x: Array) -> Array:
    """``F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)`` on NHWC ``x``."""
    window, strides, pad = (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    total = lax.reduce_window(x, 0., lax.add, window, strides, pad)
    count = lax.reduce_window(jnp.ones(x.shape[1:3], x.dtype)[None, :, :, None], 0., lax.add, window, strides, pad)
    profile.record('mean', total.size)
    return total / count


def pad2d(x: Array, pad: int, padding_type: str = 'reflect') -> Array:
    """``nn.ReflectionPad2d`` / ``nn.ReplicationPad2d`` / zeros on the spatial axes of NHWC ``x``."""
    if padding_type not in PADDING_TYPES:
        raise ValueError(f'padding_type={padding_type!r} is not supported; expected one of {PADDING_TYPES}')
    if pad == 0:
        return x
    mode = {'reflect': 'reflect', 'replicate': 'edge', 'zero': 'constant'}[padding_type]
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)


def conv_kernel(module: nn.Module) -> Array:
    """A conv module's full-width kernel [k, k, in, out] (its ``kernel_init``, field names shared)."""
    k = module.kernel_size
    return module.param('kernel', module.kernel_init, (k, k, module.in_features, module.features))


def quantized(module: nn.Module, x: Array, kernel: Array) -> tuple[Array, Array]:
    """GAN Slimming's ``Conv2dQuant`` / ``ConvTrans2dQuant`` (``quant_bits`` set): the input clamped to
    [0, 4] and fake-quantized unsigned (unless ``quant_input`` is off: the first conv), the kernel
    (the live slice: what the deployed layer holds) signed per tensor; else both unchanged."""
    if module.quant_bits is None:
        return x, kernel
    if module.quant_input:
        x = quant_lib.quantize_input(x, module.quant_bits)
    return x, quant_lib.quantize_weight(kernel, module.quant_bits)


def add_bias(module: nn.Module, y: Array, width: Optional[int] = None) -> Array:
    """``y`` plus the first ``width`` (default all) entries of the module's bias, if it has one."""
    if not module.use_bias:
        return y
    return y + module.param('bias', nn.initializers.zeros, (module.features,))[:width].astype(y.dtype)


class Conv2d(nn.Module):
    """``torch.nn.Conv2d`` (cross-correlation, zero padding ``padding``), groups 1.

    ``quant_bits`` (e.g. 8): fake-quantized input and kernel (:func:`quantized`); ``quant_input``
    False keeps the input in float (GAN Slimming's first conv)."""
    in_features: int
    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = True
    kernel_init: Callable = pix2pix_normal()
    quant_bits: Optional[int] = None
    quant_input: bool = True

    @nn.compact
    def __call__(self, x: Array, out_width: Optional[int] = None, out_mask: Optional[Array] = None) -> Array:
        k, name, kernel = self.kernel_size, _path(self), conv_kernel(self)
        cin, cout = _live_in(x, self.in_features, name), _live_out(out_width, self.features, name)
        x, kernel = quantized(self, x, kernel[:, :, :cin, :cout])
        y = lax.conv_general_dilated(x, kernel.astype(x.dtype), (self.stride,) * 2,
                                     [(self.padding, self.padding)] * 2, dimension_numbers=_DN)
        y = add_bias(self, y, cout)
        profile.record('conv', y.size, cin * k * k, path=name)
        return apply_mask(y, out_mask)


class ConvTranspose2d(nn.Module):
    """``torch.nn.ConvTranspose2d`` with ``padding`` and ``output_padding`` (groups 1, dilation 1).

    The output is ``(H - 1) * stride - 2 * padding + kernel_size + output_padding`` pixels wide: a
    correlation of the stride-dilated input, padded by ``k - 1 - padding`` (plus
    ``output_padding`` at the end), with the spatially flipped kernel.
    """
    in_features: int
    features: int
    kernel_size: int = 3
    stride: int = 2
    padding: int = 1
    output_padding: int = 1
    use_bias: bool = True
    kernel_init: Callable = pix2pix_normal()
    quant_bits: Optional[int] = None  # as Conv2d's
    quant_input: bool = True

    @nn.compact
    def __call__(self, x: Array, out_width: Optional[int] = None, out_mask: Optional[Array] = None) -> Array:
        k, name, kernel = self.kernel_size, _path(self), conv_kernel(self)
        cin, cout = _live_in(x, self.in_features, name), _live_out(out_width, self.features, name)
        x, kernel = quantized(self, x, kernel[:, :, :cin, :cout])
        lo = k - 1 - self.padding
        y = lax.conv_general_dilated(x, kernel[::-1, ::-1].astype(x.dtype), (1, 1),
                                     [(lo, lo + self.output_padding)] * 2, lhs_dilation=(self.stride,) * 2,
                                     dimension_numbers=_DN)
        y = add_bias(self, y, cout)
        # torchprofile reads a transposed kernel [in, out, kh, kw] as in * kh * kw per output element.
        profile.record('conv', y.size, cin * k * k, path=name)
        return apply_mask(y, out_mask)


class DepthwiseConv2d(nn.Module):
    """``nn.Conv2d(C, C, k, groups=C)``: one k x k filter per channel; the live width is the input's."""
    features: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 0
    use_bias: bool = True
    kernel_init: Callable = pix2pix_normal()

    @nn.compact
    def __call__(self, x: Array, out_mask: Optional[Array] = None) -> Array:
        k, name = self.kernel_size, _path(self)
        kernel = self.param('kernel', self.kernel_init, (k, k, 1, self.features))
        c = _live_in(x, self.features, name)
        y = lax.conv_general_dilated(x, kernel[..., :c].astype(x.dtype), (self.stride,) * 2,
                                     [(self.padding, self.padding)] * 2, dimension_numbers=_DN,
                                     feature_group_count=c)
        if self.use_bias:
            y = y + self.param('bias', nn.initializers.zeros, (self.features,))[:c].astype(y.dtype)
        profile.record('conv', y.size, k * k, path=name)
        # The bias would make dead channels non-zero: the caller passes the input's mask.
        return apply_mask(y, out_mask)


class SeparableConv2d(nn.Module):
    """gan-compression's ``SeparableConv2d``: depthwise k x k (bias) -> ``norm`` -> pointwise 1x1 (bias).

    ``norm``: 'instance' (non-affine, the original's default) or 'none'. The live input width is the
    input's; ``in_mask`` is its mask (the depthwise bias would otherwise fill dead channels).
    """
    in_features: int
    features: int
    kernel_size: int = 3
    padding: int = 0
    norm: str = 'instance'

    @nn.compact
    def __call__(self, x: Array, in_mask: Optional[Array] = None, out_width: Optional[int] = None,
                 out_mask: Optional[Array] = None) -> Array:
        x = DepthwiseConv2d(self.in_features, self.kernel_size, padding=self.padding, name='dw')(x, in_mask)
        if self.norm == 'instance':
            x = InstanceNorm(self.in_features, name='dw_norm')(x)
        elif self.norm != 'none':
            raise ValueError(f'separable conv norm={self.norm!r} is not supported; expected "instance" or "none"')
        return Conv2d(self.in_features, self.features, 1, name='pw')(x, out_width, out_mask)
