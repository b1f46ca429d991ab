"""Analytic MAC and parameter counts of the Anycost generator, counted the way the paper counts.

The paper (and the original repository's searched configurations) report
``torchprofile.profile_macs(generator, torch.rand(1, 1, style_dim))`` on the original PyTorch
generator with the *native* (pure PyTorch) versions of ``fused_leaky_relu`` and ``upfirdn2d``:
the input is a batch of ``z`` codes, so the mapping network is included, sub-widths are set
with ``set_uniform_channel_ratio`` / ``set_sub_channel_config`` and early exit with
``generator.target_res``. The numbers computed here reproduce that profile exactly (to the MAC),
e.g. 144,365,170,309 MACs (the paper's 144.37 G) for the full 1024 config-f generator and
100,727,199,733 for the searched flexible configuration
``[512] * 10 + [256, 256, 128, 96, 32, 64, 8, 8]``. With the CUDA kernels the fused activation and
the FIR filters are opaque ``prim::PythonOp`` nodes that torchprofile skips; the profile then
drops the blurs, the skip up-sampling and the activations' ``* sqrt(2)`` (143.10 G for the full
1024 model instead of 144.37 G), which does not match the paper's table: the paper used the
native ops.

torchprofile counts, per traced ``aten`` node:

* ``aten::_convolution``: ``numel(output) * in_channels * prod(kernel)``, where ``in_channels``
  is ``weight.shape[1]`` when ``output.shape[1] == weight.shape[0]`` and ``weight.shape[0]``
  otherwise (no division by ``groups``);
* ``aten::linear``: ``batch * out * in`` (the bias is free);
* ``aten::mul``: ``numel(output)``, *including* multiplications of parameters by constants
  and of two Python ints traced as tensors (1 MAC each);
* ``aten::mean``: ``numel(output)``;
* everything else is free: additions, ``pow``/``sum``/``rsqrt`` of the demodulation,
  ``leaky_relu_`` (the in-place variant has no handler), padding, slicing, ``repeat``, noise
  sampling.

With ``B`` the batch, ``sd`` the style dim, ``i``/``o`` the live input/output widths of a layer,
``f`` the *full* input width of the layer, ``k`` the kernel size and ``H`` its output
resolution, that gives:

* mapping: PixelNorm ``B`` (mean) + ``B*sd`` (mul); per MLP layer ``sd*sd`` (``weight * scale``)
  + ``B*sd*sd`` (linear) + ``sd`` (``bias * lr_mul``) + ``B*sd`` (the activation's ``* sqrt(2)``);
* the style modulation of every modulated conv (styled convs and ToRGBs) runs at the FULL
  input width and is sliced afterwards: ``f*sd`` + ``B*f*sd`` + ``f``;
* weight modulation: ``scale * weight`` on ``[1, o, i, k, k]`` (``o*i*k*k``), ``* style`` and,
  for the demodulated 3x3 convs, ``* rsqrt(...)`` on ``[B, o, i, k, k]``;
  plus 2 MACs for ``batch * in_channel`` and ``weight.shape[0] * weight.shape[1]``;
* 3x3 conv: ``B*o*H*H*i*9``; the up-sampling conv is a stride-2 transposed conv with a
  ``(2h+1)``-sized output (``h = H/2``) counted as ``B*o*(2h+1)^2*i*9``, followed by the 4x4
  blur (depthwise conv of ``upfirdn2d``) ``B*o*H*H*16``;
* noise injection ``B*H*H`` and the activation's scale ``B*o*H*H`` per styled conv;
* ToRGB: 1x1 conv ``B*3*H*H*i``; above 4x4 the skip is up-sampled by ``upfirdn2d``: a 2x2
  depthwise transposed conv (``B*3*H*H*4``) and the 4x4 blur (``B*3*H*H*16``).

``target_res`` stops after the ToRGB at that resolution. The original only checks
``target_res`` inside its loop over the up-sampling blocks, so ``target_res=4`` does not exit
early there (its profile is the full cost); here ``target_res=4`` counts the real 4x4 exit
(mapping, ``conv1`` and ``to_rgb1``), which equals the profile of the original with its
up-sampling blocks removed.

For ``batch > 1`` torchprofile's convolution handler mistakes the grouped transposed conv of
the up-sampling layers for an ungrouped one when the input and output widths differ and counts
``B*i`` input channels; that quirk is reproduced so the counts equal the profile at any batch
(it does not arise at the paper's batch of 1).

Parameters: :func:`count_generator_params` with the full widths (the default) equals
``sum(p.numel() for p in generator.parameters())`` of the original (buffers such as the fixed
noises are not parameters). With sub-widths it counts only the slices the sub-generator uses
(``sliced=True``, including the used rows of the modulation layers); ``sliced=False`` counts
the stored tensors of the layers the sub-generator runs.
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence

from anycost_jax.elastic import (check_channels, check_ratio, full_channels, num_elastic_layers,
                                 resolutions_up_to, uniform_channels)

__all__ = ['count_generator_macs', 'count_generator_params', 'macs_breakdown', 'generator_macs',
           'generator_params', 'CONVENTIONS', 'profile_ops', 'count_macs', 'count_params']

_KERNEL = 3  # styled convs are 3x3
_BLUR_TAPS = 16  # the (1, 3, 3, 1) FIR kernel, as a 4x4 depthwise conv
_RGB = 3


def _layer_resolution(layer: int) -> int:
    """Output resolution of elastic layer ``layer`` (0 and 1 at 4x4, then two per resolution)."""
    return 4 * 2 ** (layer // 2)


def _check_target_res(resolution: int, target_res: Optional[int]) -> int:
    valid = resolutions_up_to(resolution)
    if target_res is None:
        return resolution
    if target_res not in valid:
        raise ValueError(f'target_res={target_res!r} is not valid for a {resolution}-resolution generator; '
                         f'expected one of {valid} (or None for {resolution})')
    return int(target_res)


def _resolve(resolution, channels, style_dim, n_mlp, target_res, full, channel_multiplier, channel_max):
    n = num_elastic_layers(resolution)  # also validates the resolution
    full = list(full) if full is not None else full_channels(resolution, channel_multiplier, channel_max)
    if len(full) != n or any(int(f) != f or f < 1 for f in full):
        raise ValueError(f'full must list {n} positive integer widths (one per elastic layer) for resolution '
                         f'{resolution}, got {full!r}')
    full = [int(f) for f in full]
    live = list(check_channels(channels, full)) if channels is not None else list(full)
    for name, value, low in (('style_dim', style_dim, 1), ('n_mlp', n_mlp, 0)):
        if int(value) != value or value < low:
            raise ValueError(f'{name}={value!r} is invalid: expected an integer >= {low}')
    target_res = _check_target_res(resolution, target_res)
    n_used = 2 * (int(math.log2(target_res)) - 1)  # elastic layers run up to the target's ToRGB
    return live, full, int(style_dim), int(n_mlp), n_used


def _mac_terms(live, full, sd, n_mlp, n_used, batch) -> Iterator[tuple[str, int]]:
    b = batch
    yield 'mapping', b + b * sd + n_mlp * (sd * sd + b * sd * sd + sd + b * sd)

    def modulated(i, f, o, k, demodulate):
        yield 'modulation', f * sd + b * f * sd + f  # full width: weight * scale, linear, bias * lr_mul
        yield 'weight_modulation', (1 + b * (2 if demodulate else 1)) * o * i * k * k + 2

    for l in range(1, n_used):  # styled convs (layer 0 is the constant input)
        i, f, o, h = live[l - 1], full[l - 1], live[l], _layer_resolution(l)
        yield from modulated(i, f, o, _KERNEL, True)
        if l >= 2 and l % 2 == 0:  # up-sampling conv: transposed conv + blur
            quirk_in = i if i == o else b * i  # torchprofile ignores groups here (see module docstring)
            yield 'conv', b * o * (h + 1) ** 2 * quirk_in * _KERNEL ** 2
            yield 'blur', b * o * h * h * _BLUR_TAPS
        else:
            yield 'conv', b * o * h * h * i * _KERNEL ** 2
        yield 'noise', b * h * h
        yield 'activation', b * o * h * h
        if l % 2 == 1:  # ToRGB after the second conv of every resolution
            yield from modulated(o, full[l], _RGB, 1, False)
            yield 'to_rgb', b * _RGB * h * h * o
            if h > 4:  # up-sample the skip: 2x2 transposed depthwise conv + 4x4 blur
                yield 'skip_upsample', b * _RGB * h * h * (4 + _BLUR_TAPS)


def macs_breakdown(resolution: int, channels: Optional[Sequence[int]], style_dim: int = 512, n_mlp: int = 8,
                   target_res: Optional[int] = None, full: Optional[Sequence[int]] = None, batch: int = 1, *,
                   channel_multiplier: float = 2, channel_max: int = 512) -> dict[str, int]:
    """:func:`count_generator_macs` split by kind of operation (the values sum to the total)."""
    live, full, sd, n_mlp, n_used = _resolve(resolution, channels, style_dim, n_mlp, target_res, full,
                                             channel_multiplier, channel_max)
    if int(batch) != batch or batch < 1:
        raise ValueError(f'batch={batch!r} is invalid: expected an integer >= 1')
    out: dict[str, int] = {}
    for kind, macs in _mac_terms(live, full, sd, n_mlp, n_used, int(batch)):
        out[kind] = out.get(kind, 0) + macs
    return out


def count_generator_macs(resolution: int, channels: Optional[Sequence[int]], style_dim: int = 512, n_mlp: int = 8,
                         target_res: Optional[int] = None, full: Optional[Sequence[int]] = None, batch: int = 1, *,
                         channel_multiplier: float = 2, channel_max: int = 512) -> int:
    """MACs of one generator forward from ``z``, as ``torchprofile.profile_macs`` counts the original.

    ``channels``: the live width of every elastic layer (``None`` for the full widths);
    ``full``: the full widths (default: ``full_channels(resolution, channel_multiplier,
    channel_max)``), needed because the style modulation always runs at the full width;
    ``target_res``: early exit after the ToRGB at that resolution (``None``: ``resolution``).
    """
    return sum(macs_breakdown(resolution, channels, style_dim, n_mlp, target_res, full, batch,
                              channel_multiplier=channel_multiplier, channel_max=channel_max).values())


def count_generator_params(resolution: int, channels: Optional[Sequence[int]] = None, style_dim: int = 512,
                           n_mlp: int = 8, target_res: Optional[int] = None, full: Optional[Sequence[int]] = None, *,
                           sliced: bool = True, channel_multiplier: float = 2, channel_max: int = 512) -> int:
    """Parameters of the (sub-)generator.

    With the defaults (full widths, no early exit) this is ``sum(p.numel())`` over the original
    generator's parameters. ``sliced=True`` counts the slices a sub-generator actually uses
    (live rows of every modulation layer, live ``[o, i]`` blocks of the conv weights, live
    biases); ``sliced=False`` counts the whole stored tensors of the layers it runs. Layers
    above ``target_res`` are never counted; the mapping network always is.
    """
    live, full, sd, n_mlp, n_used = _resolve(resolution, channels, style_dim, n_mlp, target_res, full,
                                             channel_multiplier, channel_max)
    widths = live if sliced else full
    total = n_mlp * (sd * sd + sd)  # mapping MLP (PixelNorm has none)
    total += widths[0] * 4 * 4  # constant input
    for l in range(1, n_used):
        i, o = widths[l - 1], widths[l]
        total += (sd + 1) * i + o * i * _KERNEL ** 2 + 1 + o  # modulation, weight, noise strength, bias
        if l % 2 == 1:
            total += (sd + 1) * o + _RGB * o + _RGB  # ToRGB: modulation, 1x1 weight, bias
    return total


# ------------------------------------------------------------------ wrappers for a Generator module


def _module_kwargs(generator, channel_ratio, channels, target_res) -> dict:
    if channel_ratio is not None and channels is not None:
        raise ValueError('channel_ratio and channels are mutually exclusive: pass at most one')
    resolution = getattr(generator, 'resolution')
    multiplier = getattr(generator, 'channel_multiplier', 2)
    channel_max = getattr(generator, 'channel_max', 512)
    base = full_channels(resolution, multiplier, channel_max)
    # Optional attributes of an exported sub-generator: its own full widths and a lower top resolution.
    top = getattr(generator, 'output_res', None) or resolution
    n = 2 * len(resolutions_up_to(top))
    full = list(getattr(generator, 'widths', None) or base[:n])
    if channel_ratio is not None:
        check_ratio(channel_ratio)
        if getattr(generator, 'widths', None) is not None:
            raise ValueError('channel_ratio is not available on an exported sub-generator; pass channels')
        channels = uniform_channels(resolution, channel_ratio, base, channel_max)[:n]
    elif channels is not None and len(channels) == num_elastic_layers(resolution) and n < len(channels):
        channels = list(channels)[:n]  # a full-length list for a generator truncated at output_res
    if target_res is not None and target_res not in resolutions_up_to(top):
        raise ValueError(f'target_res={target_res!r} is not valid for this generator; expected one of '
                         f'{resolutions_up_to(top)} (or None for {top})')
    return dict(resolution=top, channels=channels, style_dim=getattr(generator, 'style_dim', 512),
                n_mlp=getattr(generator, 'n_mlp', 8), target_res=target_res, full=full)


def generator_macs(generator, channel_ratio: Optional[float] = None, channels: Optional[Sequence[int]] = None,
                   target_res: Optional[int] = None, *, batch: int = 1) -> int:
    """:func:`count_generator_macs` for a generator module (reads ``resolution``, ``style_dim``,
    ``n_mlp``, ``channel_multiplier``, ``channel_max``); ``channel_ratio`` picks a uniform
    sub-generator as ``set_uniform_channel_ratio`` does, ``channels`` a flexible one."""
    return count_generator_macs(batch=batch, **_module_kwargs(generator, channel_ratio, channels, target_res))


def generator_params(generator, channel_ratio: Optional[float] = None, channels: Optional[Sequence[int]] = None,
                     target_res: Optional[int] = None, *, sliced: bool = True) -> int:
    """:func:`count_generator_params` for a generator module; with no sub-width and no early exit
    it is the full parameter count."""
    return count_generator_params(sliced=sliced, **_module_kwargs(generator, channel_ratio, channels, target_res))


# ------------------------------------------------------------------ any network built from anycost_jax.nn layers
#
# The image-to-image networks are counted from a trace: their layers record what they compute
# (anycost_jax.nn.profile) and a convention decides what counts. gan-compression's figures were
# made with torchprofile 0.0.1 (2019-20), whose handlers count every instance norm (affine or
# not) as one MAC per output element and batch norm as free; current torchprofile counts a norm
# only when it is affine. Both read a convolution, transposed or not, as output elements x
# input channels per group x kernel taps (a transposed conv on its output grid), and element-wise
# products and averaging as one MAC per output element. Current torchprofile also counts a
# LeakyReLU that is not in place (``F.leaky_relu``; 0.0.1 has no handler for it, and neither has
# the in-place ``leaky_relu_``). Pads, other activations, additions and nearest resizes are free.

# 'gan-slimming': GAN Slimming's ``measure_model``: convolutions (and transposed ones, in * out * k * k
# per output pixel) only; it prints them in units of 2^20 (its figures in 'G', 2^30): :func:`binary_giga`
CONVENTIONS = ('torchprofile-0.0.1', 'torchprofile', 'gan-slimming')


def binary_giga(macs: int) -> float:
    """MACs in units of 2^30 (GAN Slimming's 'G': its dense CycleGAN's "52.90 G" is our 56.8G)."""
    return macs / 2 ** 30


def profile_ops(module, *inputs, **kwargs) -> list:
    """The operations ``module`` runs on ``inputs`` (arrays or shape structs) with ``kwargs``
    (e.g. ``config=...``), traced once without computing anything."""
    import jax

    from anycost_jax.nn import profile

    with profile.recording() as ops:
        jax.eval_shape(lambda *xs: module.init({'params': jax.random.key(0), 'dropout': jax.random.key(1)},
                                               *xs, **kwargs), *inputs)
    return ops


def _op_macs(op, convention: str) -> int:
    if op.kind in ('conv', 'linear'):
        return op.out * op.per_output
    if convention == 'gan-slimming':
        return 0
    if op.kind in ('mean', 'mul'):
        return op.out
    if op.kind == 'instance_norm':
        return op.out if convention == 'torchprofile-0.0.1' or op.affine else 0
    if op.kind == 'batch_norm':
        return op.out if convention == 'torchprofile' and op.affine else 0
    if op.kind == 'leaky_relu':
        return op.out if convention == 'torchprofile' and not op.inplace else 0
    raise ValueError(f'no MAC rule for operation kind {op.kind!r} ({op.path})')


def count_macs(module, *inputs, convention: str = 'torchprofile-0.0.1', **kwargs) -> int:
    """MACs of ``module(*inputs, **kwargs)`` under ``convention`` (one of :data:`CONVENTIONS`)."""
    if convention not in CONVENTIONS:
        raise ValueError(f'convention={convention!r} is not known; expected one of {CONVENTIONS}')
    return sum(_op_macs(op, convention) for op in profile_ops(module, *inputs, **kwargs))


def count_params(module, *inputs, **kwargs) -> int:
    """Elements of the ``params`` collection ``module`` creates on ``inputs`` (not its statistics)."""
    import jax

    shapes = jax.eval_shape(lambda *xs: module.init({'params': jax.random.key(0)}, *xs, **kwargs), *inputs)
    return sum(math.prod(a.shape) for a in jax.tree.leaves(shapes.get('params', {})))
