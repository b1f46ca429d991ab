"""Anycost StyleGAN2's elastic rules: width tables, ratios, sampling and the architecture code.

A generator has one *elastic layer* per style: the constant input, ``conv1``, then both
convolutions of every resolution from 8 up, in that order (``2*log2(res) - 2`` layers).
A width configuration (``channels``) lists one live width per elastic layer. Widths are
always a prefix of the full channels: after channel sorting the first channels matter most.

Everything that only depends on the model's hyper-parameters is plain Python (static under
``jit``); sampling uses ``jax.random`` and returns arrays so that a training step can draw a
new sub-network every call without recompiling.
"""
from __future__ import annotations

import logging
import math
import numbers
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from anycost_jax.elastic.core import check_widths, export_module, sample_choices

# Number of channels per resolution before the channel multiplier (StyleGAN2's table).
BASE_CHANNELS = {4: 4096, 8: 2048, 16: 1024, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
# The width ratios a sub-generator may use; the architecture code is one-hot over these.
RATIOS = (0.25, 0.5, 0.75, 1.0)
# How a training step draws its sub-generator (:func:`sample`).
SAMPLING_MODES = ('uniform', 'flexible', 'sandwich')
SUPPORTED_RESOLUTIONS = tuple(BASE_CHANNELS)[1:]  # a generator needs at least one up-sampling block
# Resolutions the launchers offer when a generator does not say which were trained: the original
# trains n_res=4 outputs.
DEFAULT_N_RES = 4
# The original computes the flexible sampler's lower bound with a hard-coded channel_max.
_BOTTOM_CHANNEL_MAX = 512


def log2_resolution(resolution: int) -> int:
    if resolution not in SUPPORTED_RESOLUTIONS:
        raise ValueError(f'resolution={resolution!r} is not supported; expected one of {SUPPORTED_RESOLUTIONS}')
    return int(math.log2(resolution))


def num_elastic_layers(resolution: int) -> int:
    """Number of elastic layers (= number of styles): 18 for 1024."""
    return 2 * log2_resolution(resolution) - 2


def resolutions_up_to(resolution: int) -> tuple[int, ...]:
    """The resolutions a generator of ``resolution`` emits RGB at: 4, 8, ..., resolution."""
    return tuple(2 ** i for i in range(2, log2_resolution(resolution) + 1))


def channels_per_resolution(channel_multiplier: float = 2, channel_max: int = 512) -> dict[int, int]:
    return {r: min(channel_max, int(v * channel_multiplier)) for r, v in BASE_CHANNELS.items()}


def _per_layer(per_res: dict[int, int], resolution: int) -> list[int]:
    # Each resolution owns two elastic layers (input + conv1 at 4; up-conv + conv at the others).
    return [c for r in resolutions_up_to(resolution) for c in (per_res[r], per_res[r])]


def full_channels(resolution: int, channel_multiplier: float = 2, channel_max: int = 512) -> list[int]:
    """Full width of every elastic layer, in the original's order."""
    return _per_layer(channels_per_resolution(channel_multiplier, channel_max), resolution)


def uniform_channels(resolution: int, ratio: float, full: Sequence[int], channel_max: int = 512) -> list[int]:
    """Widths of the uniform sub-generator at ``ratio``, computed as the original does.

    The original scales the base table by ``ratio * (full[-1] / base[resolution])`` and clamps
    to ``channel_max`` *after* scaling, so small ratios can still be clamped at low resolutions.
    """
    check_ratio(ratio)
    mult = full[-1] * 1. / BASE_CHANNELS[resolution]
    per_res = {r: min(channel_max, int(v * ratio * mult)) for r, v in BASE_CHANNELS.items()}
    return _per_layer(per_res, resolution)


def check_ratio(ratio: float) -> None:
    if ratio not in RATIOS:
        raise ValueError(f'channel_ratio={ratio!r} is not supported; expected one of {RATIOS}')


def check_channels(channels: Sequence[int], full: Sequence[int]) -> tuple[int, ...]:
    """Validates a per-layer width list against the full widths; returns it as a tuple of ints."""
    return check_widths(channels, full, 'channels', 'one width per elastic layer (constant input, conv1, then two '
                        'convolutions per resolution from 8 upward)')


class FlexibleSpace:
    """Static description of the flexible search space of one generator.

    ``widths[l, k]`` is the width layer ``l`` gets at ratio ``RATIOS[k]`` (after ``min_channel``
    clamping and rounding up to ``divided_by``); ``valid[l, k]`` says whether that ratio may be
    drawn for the layer (it must not go below the 0.25-uniform config, as in the original).
    """

    def __init__(self, resolution: int, full: Sequence[int], min_channel: int = 8, divided_by: int = 1):
        self.resolution, self.full = resolution, list(full)
        bottom = uniform_channels(resolution, RATIOS[0], full, _BOTTOM_CHANNEL_MAX)
        n = len(full)
        self.widths = np.zeros((n, len(RATIOS)), np.int32)
        self.valid = np.zeros((n, len(RATIOS)), bool)
        for l, (f, b) in enumerate(zip(full, bottom)):
            for k, r in enumerate(RATIOS):
                self.valid[l, k] = r * f >= b
                c = min(max(int(r * f), min_channel), f)
                self.widths[l, k] = math.ceil(c * 1. / divided_by) * divided_by
            if not self.valid[l].any():
                raise ValueError(f'elastic layer {l} (full width {f}) admits no ratio above the 0.25-uniform '
                                 f'width {b}')
        # Per layer, the indices into ``RATIOS`` a flexible draw picks from.
        self.ratio_choices = [[k for k in range(len(RATIOS)) if v[k]] for v in self.valid]

    def widths_of(self, ratio_idx) -> jnp.ndarray:
        return jnp.asarray(self.widths)[jnp.arange(len(self.full)), ratio_idx]


def sample(rng: jax.Array, resolution: int, full: Sequence[int], mode: str = 'uniform', min_channel: int = 8,
           divided_by: int = 1, channel_max: int = 512) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Draws one sub-generator: ``(widths int32[L], ratio_idx int32[L])``.

    ``ratio_idx`` indexes ``RATIOS`` per layer and feeds :func:`arch_code`. Modes follow the
    original: ``uniform`` (one ratio for every layer), ``flexible`` (a ratio per layer) and
    ``sandwich`` (full 25%, smallest uniform 25%, flexible 50%). Traceable: one compiled
    program serves every draw.
    """
    n = len(full)
    uniform = jnp.asarray(np.array([uniform_channels(resolution, r, full, channel_max) for r in RATIOS], np.int32))
    k_mode, k_ratio = jax.random.split(rng)
    if mode == 'uniform':
        k = jax.random.randint(k_ratio, (), 0, len(RATIOS))
        return uniform[k], jnp.full((n,), k, jnp.int32)
    if mode not in SAMPLING_MODES:
        raise ValueError(f"mode={mode!r} is not supported; expected one of {SAMPLING_MODES}")
    space = FlexibleSpace(resolution, full, min_channel, divided_by)
    ratio_idx = sample_choices(k_ratio, space.ratio_choices)
    widths = space.widths_of(ratio_idx)
    if mode == 'flexible':
        return widths, ratio_idx
    u = jax.random.uniform(k_mode)
    full_arr, smallest = jnp.asarray(np.array(full, np.int32)), uniform[0]
    top, bottom = jnp.full((n,), len(RATIOS) - 1, jnp.int32), jnp.zeros((n,), jnp.int32)
    widths = jnp.where(u < 0.25, full_arr, jnp.where(u < 0.5, smallest, widths))
    ratio_idx = jnp.where(u < 0.25, top, jnp.where(u < 0.5, bottom, ratio_idx))
    return widths, ratio_idx


def ratio_index(ratios: Sequence[float]) -> np.ndarray:
    """Per-layer ratios (floats from ``RATIOS``) to indices."""
    for r in ratios:
        check_ratio(r)
    return np.array([RATIOS.index(r) for r in ratios], np.int32)


def arch_code(ratio_idx) -> jnp.ndarray:
    """The discriminator's architecture code: one-hot over ``RATIOS`` per layer, concatenated."""
    ratio_idx = jnp.asarray(ratio_idx)
    return jax.nn.one_hot(ratio_idx, len(RATIOS), dtype=jnp.float32).reshape(*ratio_idx.shape[:-1], -1)


def arch_code_length(resolution: int) -> int:
    return len(RATIOS) * num_elastic_layers(resolution)


def export(generator, variables: dict, channel_ratio: float | None = None, channels: Sequence[int] | None = None,
           target_res: int | None = None):
    """Cuts a sub-generator out of ``generator``: ``(sub_generator, sub_variables)``.

    The result is a dense, smaller parameter tree that runs on its own in the same ``Generator``
    class built with the sub-network's widths (and ``output_res`` when ``target_res`` stops
    early); it keeps the equalized-lr scales of the full network, so its images equal the full
    generator's at that configuration. Every slice is a prefix on every axis, so the new tree
    is the old one cut to the shapes of the smaller module.
    """
    widths = generator.resolve_channels(channel_ratio, channels) or generator.full_channels()
    top = generator.check_target_res(target_res)
    n = 2 * len(resolutions_up_to(top))
    fan_in = list(generator.fan_in_widths or generator.full_channels())
    sub = generator.clone(widths=tuple(widths[:n]), fan_in_widths=tuple(fan_in[:n]),
                          output_res=top if top != generator.resolution else None)
    return sub, export_module(sub, variables, jnp.zeros((1, sub.style_dim)))  # stats/w_avg kept


def label(ratio_or_channels: Union[float, Sequence[int], None], res: int) -> str:
    """A sub-generator's name in tables and logs: ``'0.5x@256'`` for a uniform ratio,
    ``'flexible@256'`` for per-layer widths, ``'1.0x@256'`` for None (the full widths)."""
    if ratio_or_channels is None:
        return f'1.0x@{res}'
    if isinstance(ratio_or_channels, numbers.Real):
        return f'{ratio_or_channels}x@{res}'
    return f'flexible@{res}'


def default_resolutions(generator) -> list[int]:
    """The output resolutions a launcher offers by default, highest first: the trained ones
    (``generator.trained_resolutions``), or the :data:`DEFAULT_N_RES` highest when it does not say."""
    if generator.trained_resolutions:
        return list(generator.trained_output_resolutions[::-1])
    return list(generator.output_resolutions[::-1][:DEFAULT_N_RES])


def warn_untrained(generator, resolutions: Sequence[int], what: str = 'resolution') -> list[int]:
    """Logs one warning line naming the ``resolutions`` (requested explicitly, so still rendered)
    that ``generator`` was not trained at; returns them."""
    untrained = [int(r) for r in resolutions if int(r) not in generator.trained_output_resolutions]
    if untrained:
        logging.getLogger(__name__).warning(
            '%s %s: not trained (this generator was trained at %s px), so expect no learned image there',
            what, ', '.join(f'{r} px' for r in untrained), ', '.join(map(str, generator.trained_output_resolutions[::-1])))
    return untrained


def uniform_grid(generator, ratios: Sequence[float] = RATIOS[::-1],
                 resolutions: Optional[Sequence[int]] = None) -> list[list[tuple[float, int]]]:
    """The uniform sub-generators ``ratio x resolution`` as rows of ``(ratio, res)``: a row per
    ratio (as given, default full first), a column per resolution (default
    :func:`default_resolutions`: the trained ones, descending). An unknown ratio or a resolution
    the generator cannot emit is an error here, before any work; an untrained one a warning."""
    resolutions = list(resolutions or default_resolutions(generator))
    for r in ratios:
        check_ratio(r)
    for res in resolutions:
        generator.check_target_res(res)
    warn_untrained(generator, resolutions)
    return [[(float(r), int(res)) for res in resolutions] for r in ratios]
