"""Width rules of the image-to-image generators (GAN Compression's configs).

A ResNet generator (dense or MobileNet-style) has these elastic layers, in this order::

    stem, down1, res (down2: the width of the whole residual stream), inner_0 ... inner_{n-1}
    (the hidden width of each residual block), up1, up2

so ``n_blocks + 5`` per-layer widths; the full ones are ``ngf * (1, 2, 4, 4, ..., 4, 2, 1)``.
GAN Compression names a sub-network by a config string of entries in units of ``ngf``-scale
channels, multiplied by the layer's factor (x1, x2 or x4):

* 8 entries ``c0_..._c7``: stem c0, down1 2*c1, res 4*c2, the inner width of blocks 0-2 / 3-5 /
  6-8 4*c3 / 4*c4 / 4*c5 (for other block counts: the three groups of the MobileNet generator,
  ``n // 3``, ``n // 3`` and the rest), up1 2*c6, up2 c7;
* 6 entries ``c0_..._c5``: every block's inner width 4*c3, up1 2*c4, up2 c5;
* **legacy** (``legacy_sub_mobile_resnet``): the first block of each group takes the group's
  entry, the other blocks the residual width 4*c2.

A SPADE generator's elastic layers are ``fc`` (the residual stream through ``G_middle_1``), then
for each block (``head_0``, ``G_middle_0``, ``G_middle_1``, ``up_0`` .. ``up_3`` [, ``up_4``]) its
channel width and its SPADE hidden width. The 8-entry config ``c0_..._c7`` gives fc 16*c0, the
blocks 16*c (head_0, G_middle_0 / 1 from c1..c3), 8*c4, 4*c5, 2*c6, c7, and every block's hidden
width 2*c of its entry (full: ``2 * ngf``). ``num_upsampling_layers='most'`` has no config strings
(as the original's super-network), only per-layer widths.
"""
from __future__ import annotations

from typing import Sequence, Union

from anycost_jax.elastic.core import check_widths, format_config, parse_config

Config = Union[str, Sequence[int]]


def resnet_num_layers(n_blocks: int) -> int:
    return n_blocks + 5


def resnet_full_widths(ngf: int, n_blocks: int = 9) -> tuple[int, ...]:
    return (ngf, 2 * ngf, 4 * ngf) + (4 * ngf,) * n_blocks + (2 * ngf, ngf)


def resnet_layout(n_blocks: int) -> str:
    return f'stem, down1, res, inner_0..inner_{n_blocks - 1}, up1, up2'


def block_groups(n_blocks: int) -> list[int]:
    """The group (0, 1, 2) of each residual block: ``n // 3``, ``n // 3`` and the rest."""
    n1 = n_blocks // 3
    return [0 if i < n1 else 1 if i < 2 * n1 else 2 for i in range(n_blocks)]


def resnet_widths(config: Config, n_blocks: int = 9, legacy: bool = False) -> tuple[int, ...]:
    """Per-layer widths of a config string (or its entries) of 6 or 8 entries."""
    c = parse_config(config) if isinstance(config, str) else tuple(config)
    if len(c) not in (6, 8):
        raise ValueError(f'config {format_config(c)!r} has {len(c)} entries; a ResNet config has 8 (stem, down1, '
                         'res, blocks 0-2, 3-5, 6-8, up1, up2) or 6 (stem, down1, res, blocks, up1, up2)')
    group = block_groups(n_blocks)
    block_entry = [3 + (g if len(c) == 8 else 0) for g in group]
    first_of_group = [i == 0 or group[i] != group[i - 1] for i in range(n_blocks)]
    inner = [4 * (c[e] if not legacy or first else c[2]) for e, first in zip(block_entry, first_of_group)]
    up1, up2 = (c[6], c[7]) if len(c) == 8 else (c[4], c[5])
    return (c[0], 2 * c[1], 4 * c[2], *inner, 2 * up1, up2)


def check_resnet_widths(widths: Sequence[int], full: Sequence[int]) -> tuple[int, ...]:
    return check_widths(widths, full, name='ResNet generator widths', layout=resnet_layout(len(full) - 5))


def resolve_resnet_config(config: Config, full: Sequence[int], legacy: bool = False) -> tuple[int, ...]:
    """Per-layer widths from a config string (6 or 8 entries) or a per-layer tuple (``len(full)``
    entries), checked against the full widths."""
    n_blocks = len(full) - 5
    if isinstance(config, str) or len(config) in (6, 8) and len(config) != len(full):
        try:
            widths = resnet_widths(config, n_blocks, legacy)
        except ValueError as e:
            raise ValueError(f'{e}; or pass {len(full)} per-layer widths ({resnet_layout(n_blocks)})') from None
        try:
            return check_resnet_widths(widths, full)
        except ValueError as e:
            raise ValueError(f'config {format_config(config) if not isinstance(config, str) else config!r} '
                             f'gives per-layer widths {list(widths)}: {e}') from None
    return check_resnet_widths(config, full)


# --------------------------------------------------------------------------- search spaces

# GAN Compression's ResNet search spaces (configs/resnet_configs.py): candidates of each of the 8 config
# entries, in the original's order (which its weighted sampling depends on)
RESNET_SEARCH_SPACES = {
    'channels-48': ((48, 32), (48, 32), (48, 40, 32), (48, 40, 32), (48, 40, 32), (48, 40, 32),
                    (48, 32, 24, 16), (48, 32, 24, 16)),
    'channels-32': ((32, 24, 16),) * 8,
    'channels-64-cycleGAN': ((64, 48, 32, 24, 16),) * 8,
    'channels-64-pix2pix': ((64, 56, 48, 40, 32, 24, 16),) * 8,
}
WEIGHT_STRATEGIES = ('arithmetic', 'geometric')


def search_space(space) -> tuple[tuple[int, ...], ...]:
    """A named space (:data:`RESNET_SEARCH_SPACES`), one spelled out as 8 ``|``-separated candidate
    lists (``'16,8|16,8|16,12,8|...'``, e.g. for small tests) or an explicit tuple of 8 candidate lists."""
    if isinstance(space, str):
        if space in RESNET_SEARCH_SPACES:
            return RESNET_SEARCH_SPACES[space]
        name = space
        try:
            space = tuple(tuple(int(c) for c in entry.split(',')) for entry in name.split('|'))
        except ValueError:
            space = ()
        if len(space) != 8:
            raise ValueError(f"search space {name!r} is not one of {sorted(RESNET_SEARCH_SPACES)} nor 8 "
                             "'|'-separated candidate lists such as '16,8|16,8|16,12,8|16,12,8|16,12,8|16,12,8|"
                             "16,8,4|16,8,4'") from None
    space = tuple(tuple(int(c) for c in entry) for entry in space)
    if len(space) != 8 or not all(space):
        raise ValueError(f'a ResNet search space has 8 non-empty candidate lists, got {space}')
    return space


def sampling_weights(n: int, weighted_sample: float = 1., strategy: str = 'arithmetic'):
    """The original's ``ChannelConfigs.sample`` weights of an entry's ``n`` candidates (in their listed
    order), or None (uniform) for ``weighted_sample`` <= 1: arithmetic ``(n-1)/(w-1) + i``, geometric
    ``w ** i``."""
    if weighted_sample <= 1.0001:
        return None
    if strategy == 'arithmetic':
        return [(n - 1) / (weighted_sample - 1) + i for i in range(n)]
    if strategy == 'geometric':
        return [weighted_sample ** i for i in range(n)]
    raise ValueError(f'weight strategy {strategy!r} is not one of {WEIGHT_STRATEGIES}')


def largest_config(space) -> tuple[int, ...]:
    return tuple(max(e) for e in search_space(space))


def smallest_config(space) -> tuple[int, ...]:
    return tuple(min(e) for e in search_space(space))


def resnet_entry_layout(n_blocks: int = 9):
    """(entry index, factor) of each per-layer width under an 8-entry config: widths = factor * entry."""
    entries = [0, 1, 2] + [3 + g for g in block_groups(n_blocks)] + [6, 7]
    factors = [1, 2, 4] + [4] * n_blocks + [2, 1]
    return entries, factors


# --------------------------------------------------------------------------- SPADE

SPADE_UPSAMPLING = {'normal': 5, 'more': 6, 'most': 7}
_SPADE_BLOCKS = ('head_0', 'G_middle_0', 'G_middle_1', 'up_0', 'up_1', 'up_2', 'up_3')
_SPADE_FACTORS = (16, 16, 16, 8, 4, 2, 1)


def spade_blocks(num_upsampling_layers: str = 'more') -> tuple[str, ...]:
    return _SPADE_BLOCKS + (('up_4',) if num_upsampling_layers == 'most' else ())


def spade_block_out(ngf: int, num_upsampling_layers: str = 'more') -> tuple[int, ...]:
    """Full output width of each block."""
    return tuple(f * ngf for f in _SPADE_FACTORS) + ((ngf // 2,) if num_upsampling_layers == 'most' else ())


def spade_full_widths(ngf: int, num_upsampling_layers: str = 'more') -> tuple[int, ...]:
    out = [16 * ngf]
    for c in spade_block_out(ngf, num_upsampling_layers):
        out += [c, 2 * ngf]
    return tuple(out)


def spade_layout(num_upsampling_layers: str = 'more') -> str:
    return 'fc, then channel and hidden width of ' + ', '.join(spade_blocks(num_upsampling_layers))


def spade_widths(config: Config) -> tuple[int, ...]:
    """Per-layer widths of an 8-entry SPADE config string (or its entries)."""
    c = parse_config(config) if isinstance(config, str) else tuple(config)
    if len(c) != 8:
        raise ValueError(f'config {format_config(c)!r} has {len(c)} entries; a SPADE config has 8 (fc, head_0, '
                         'G_middle_0, G_middle_1, up_0, up_1, up_2, up_3)')
    out = [16 * c[0]]
    for f, e in zip(_SPADE_FACTORS, c[1:]):
        out += [f * e, 2 * e]
    return tuple(out)


def resolve_spade_config(config: Config, full: Sequence[int], num_upsampling_layers: str = 'more'
                         ) -> tuple[int, ...]:
    """Per-layer widths from an 8-entry config (string or tuple) or a per-layer tuple, checked."""
    layout = spade_layout(num_upsampling_layers)
    if isinstance(config, str) or len(config) == 8:
        if num_upsampling_layers == 'most':
            raise ValueError('num_upsampling_layers="most" has no config strings (nor has the original\'s '
                             f'super-network): pass {len(full)} per-layer widths ({layout})')
        widths = spade_widths(config)
        try:
            return check_widths(widths, full, name='SPADE generator widths', layout=layout)
        except ValueError as e:
            raise ValueError(f'config {config if isinstance(config, str) else format_config(config)!r} gives '
                             f'per-layer widths {list(widths)}: {e}') from None
    return check_widths(config, full, name='SPADE generator widths', layout=layout)


def resnet_widths_of_entries(entries, n_blocks: int = 9):
    """Traced per-layer widths ``[L]`` (or ``[N, L]``) of 8-entry configs ``[8]`` (``[N, 8]``): jnp."""
    import jax.numpy as jnp
    idx, factors = resnet_entry_layout(n_blocks)
    return jnp.asarray(entries)[..., jnp.asarray(idx)] * jnp.asarray(factors, jnp.int32)


def resnet_sampler(space, n_blocks: int = 9, weighted_sample: float = 1., strategy: str = 'arithmetic'):
    """``sample(key, step) -> int32 [L]``: one sub-network of ``space`` (each entry drawn independently,
    uniformly or with the original's weights), as per-layer widths, traced."""
    import jax
    import jax.numpy as jnp
    space = search_space(space)
    n = max(len(e) for e in space)
    cands = jnp.asarray([list(e) + [0] * (n - len(e)) for e in space], jnp.int32)
    logits = []
    for e in space:
        w = sampling_weights(len(e), weighted_sample, strategy) or [1.] * len(e)
        logits.append([float(jnp.log(v)) for v in w] + [-jnp.inf] * (n - len(e)))
    logits = jnp.asarray(logits, jnp.float32)

    def sample(key, step=None):
        del step
        choice = jax.random.categorical(key, logits, axis=-1)  # [8]
        return resnet_widths_of_entries(jnp.take_along_axis(cands, choice[:, None], axis=1)[:, 0], n_blocks)
    return sample
