"""The Anycost generator: StyleGAN2 config-f with elastic channels and multi-resolution outputs.

``Generator.__call__`` mirrors the original forward (z or w input, style mixing, truncation,
const / random / explicit noise, early exit at ``target_res``) and adds the width arguments:

* ``channel_ratio`` (uniform, computed as the original) or ``channels`` (one width per elastic
  layer): static; parameters are sliced so the sub-generator really costs less.
* ``channel_masks``: traced widths ([L], or [N, L] for a sub-network per sample) or masks;
  shapes stay full, so a training step compiles once whatever sub-networks it samples.

Images are NHWC float32 in roughly [-1, 1], unclamped, like the original.
"""
from __future__ import annotations

import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from anycost_jax import elastic
from anycost_jax.models.common import init_variables
from anycost_jax.nn.layers import ConstantInput, EqualDense, PixelNorm, StyledConv, ToRGB

Array = jax.Array
NOISE_MODES = ('const', 'random')
MEAN_W_SAMPLES = 10_000  # what the original demo and metrics average over


class Mapping(nn.Module):
    style_dim: int = 512
    n_mlp: int = 8
    lr_mul: float = 0.01

    @nn.compact
    def __call__(self, z: Array) -> Array:
        x = PixelNorm()(z)
        for i in range(self.n_mlp):
            x = EqualDense(self.style_dim, lr_mul=self.lr_mul, activation='lrelu', name=f'dense_{i}')(x)
        return x


class Generator(nn.Module):
    """Anycost / StyleGAN2 generator.

    Attributes mirror the original constructor. ``widths`` overrides the full width of every
    elastic layer and ``output_res`` drops the blocks above a resolution: both are set by
    :func:`anycost_jax.elastic.export`, with ``fan_in_widths`` keeping the equalized-lr scales of
    the network the sub-generator was cut from.
    """
    resolution: int
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: float = 2
    channel_max: int = 512
    blur_kernel: Sequence[float] = (1, 3, 3, 1)
    lr_mlp: float = 0.01
    widths: Optional[Sequence[int]] = None
    fan_in_widths: Optional[Sequence[int]] = None
    output_res: Optional[int] = None
    # Blocks whose output resolution is at least this compute in bfloat16 (parameters stay float32,
    # the RGB skip path and the returned images are float32); None: float32 everywhere.
    bf16_from_res: Optional[int] = None
    # The output resolutions training fitted (a config's n_res highest; () = unknown, taken as all).
    # Metadata only: the forward pass emits every resolution, but an untrained one (e.g. the 4 px
    # output of a 16 px generator trained at 16 and 8) shows nothing the data taught it, so the
    # launchers offer only these by default.
    trained_resolutions: Sequence[int] = ()

    # ------------------------------------------------------------------ static structure

    @property
    def n_style(self) -> int:
        return elastic.num_elastic_layers(self.resolution)

    @property
    def num_layers(self) -> int:  # noise inputs: conv1, then two per resolution from 8
        return self.n_style - 1

    @property
    def top_res(self) -> int:
        return self.output_res or self.resolution

    @property
    def output_resolutions(self) -> tuple[int, ...]:
        return elastic.resolutions_up_to(self.top_res)

    @property
    def trained_output_resolutions(self) -> tuple[int, ...]:
        """Of :attr:`output_resolutions` (ascending), those that were trained: every one when
        ``trained_resolutions`` is empty; the top one when none of them survives an export."""
        if not self.trained_resolutions:
            return self.output_resolutions
        trained = tuple(r for r in self.output_resolutions if r in self.trained_resolutions)
        return trained or (self.top_res,)

    def base_channels(self) -> list[int]:
        """Full widths of the original network (before any export)."""
        return elastic.full_channels(self.resolution, self.channel_multiplier, self.channel_max)

    def full_channels(self) -> list[int]:
        """Declared widths of this module's elastic layers (a prefix when ``output_res`` is set)."""
        n = 2 * len(self.output_resolutions)
        widths = list(self.widths) if self.widths is not None else self.base_channels()[:n]
        if len(widths) != n:
            raise ValueError(f'widths has {len(widths)} entries, expected {n} for output_res {self.top_res}')
        return widths

    def _fan_in(self, layer: int) -> int:
        fan = self.fan_in_widths if self.fan_in_widths is not None else self.full_channels()
        return fan[layer]

    def compute_dtype(self, res: int):
        """The dtype the block producing resolution ``res`` computes in."""
        return jnp.bfloat16 if self.bf16_from_res is not None and res >= self.bf16_from_res else jnp.float32

    # ------------------------------------------------------------------ argument handling

    def resolve_channels(self, channel_ratio=None, channels=None, channel_masks=None) -> Optional[list[int]]:
        """Static per-layer widths for ``channel_ratio`` / ``channels`` (None: full or masked)."""
        given = [n for n, v in (('channel_ratio', channel_ratio), ('channels', channels),
                                ('channel_masks', channel_masks)) if v is not None]
        if len(given) > 1:
            raise ValueError(f'{" and ".join(given)} are mutually exclusive: pass at most one')
        full = self.full_channels()
        if channel_ratio is not None:
            if self.widths is not None:
                raise ValueError('channel_ratio is not available on an exported sub-generator; pass channels')
            return elastic.uniform_channels(self.resolution, channel_ratio, self.base_channels(),
                                            self.channel_max)[:len(full)]
        if channels is not None:
            if len(channels) == self.n_style and len(full) < self.n_style:
                channels = list(channels)[:len(full)]  # full-length list on a truncated export
            return list(elastic.check_channels(channels, full))
        return None

    def _masks(self, channel_masks) -> Optional[list[Array]]:
        if channel_masks is None:
            return None
        full = self.full_channels()
        if not isinstance(channel_masks, (list, tuple)):
            widths = jnp.asarray(channel_masks)
            if widths.ndim not in (1, 2) or widths.shape[-1] not in (len(full), self.n_style):
                raise ValueError(f'channel_masks as an array must be int widths of shape [{len(full)}] (the whole '
                                 f'batch) or [batch, {len(full)}] (one sub-network per sample), got shape {widths.shape}')
            return elastic.masks_from_widths(widths[..., :len(full)], full)
        if len(channel_masks) != len(full):
            raise ValueError(f'channel_masks has {len(channel_masks)} masks, expected {len(full)}')
        for i, (m, f) in enumerate(zip(channel_masks, full)):
            if m.shape[-1] != f:
                raise ValueError(f'channel_masks[{i}] has {m.shape[-1]} channels, expected the full width {f}')
        return [jnp.asarray(m, jnp.float32) for m in channel_masks]

    def check_target_res(self, target_res) -> int:
        """``target_res`` if this generator can emit it, the top resolution for None; else a ValueError."""
        if target_res is None:
            return self.top_res
        if target_res not in self.output_resolutions:
            raise ValueError(f'target_res={target_res!r} cannot be emitted by this generator; expected one of '
                             f'{self.output_resolutions} (or None for {self.top_res})')
        return target_res


    def noise_shapes(self) -> list[tuple[int, int]]:
        """``(h, w)`` of every noise input: conv1 at 4 px, then two per resolution from 8 up."""
        return [(r, r) for r in self.output_resolutions for _ in range(2)][1:]

    def _expand_styles(self, w: Array, inject_index) -> Array:
        n = self.n_style
        k = w.shape[1]
        if k == 1:
            return jnp.repeat(w, n, axis=1)
        if k == 2:
            if inject_index is None:
                if not self.has_rng('mixing'):
                    raise ValueError('two styles given without inject_index: pass inject_index (1..'
                                     f'{n - 1}) or rngs={{"mixing": key}} to draw it as the original does')
                inject_index = jax.random.randint(self.make_rng('mixing'), (), 1, n)
            elif isinstance(inject_index, int) and not 0 <= inject_index <= n:
                raise ValueError(f'inject_index={inject_index} is out of range; expected 0..{n}')
            first = (jnp.arange(n) < inject_index)[None, :, None]
            return jnp.where(first, w[:, :1], w[:, 1:2])
        if k != n:
            raise ValueError(f'styles has {k} latents per sample; expected 1, 2 (mixing) or n_style={n}')
        return w

    def _noise(self, noise_mode, noise, batch) -> list[Array]:
        shapes = self.noise_shapes()
        if noise is not None:
            if len(noise) < len(shapes):
                raise ValueError(f'noise has {len(noise)} arrays, expected {len(shapes)} (one per noise layer)')
            out = []
            for i, (n, hw) in enumerate(zip(noise, shapes)):
                n = jnp.asarray(n, jnp.float32)
                n = n.reshape((1,) * (4 - n.ndim) + n.shape) if n.ndim < 4 else n
                if n.shape[1:3] != hw or n.shape[3] != 1:
                    raise ValueError(f'noise[{i}] has shape {n.shape}; expected [N or 1, {hw[0]}, {hw[1]}, 1]')
                out.append(n)
            return out
        if noise_mode == 'const':
            if not self.is_initializing() and not self.has_variable('noise', 'noise_0'):
                raise ValueError("noise_mode='const' needs the 'noise' collection in variables (the stored noise "
                                 "buffers); pass the full variables, or use noise_mode='random' / noise=[...]")
            return [self.variable('noise', f'noise_{i}',
                                  lambda hw=hw: jax.random.normal(self.make_rng('params'), (1,) + hw + (1,))).value
                    for i, hw in enumerate(shapes)]
        if noise_mode == 'random':
            if not self.has_rng('noise'):
                raise ValueError("noise_mode='random' needs rngs={'noise': key}")
            key = self.make_rng('noise')
            return [jax.random.normal(jax.random.fold_in(key, i), (batch,) + hw + (1,)) for i, hw in enumerate(shapes)]
        raise ValueError(f'noise_mode={noise_mode!r} is not supported; expected one of {NOISE_MODES}')

    # ------------------------------------------------------------------ forward

    def setup(self):
        # Shared by __call__, style() and mean_style(), hence declared here rather than inline.
        self.mapping = Mapping(self.style_dim, self.n_mlp, self.lr_mlp)

    def mean_style(self, n_sample: int, rng: Array) -> Array:
        """The average w over ``n_sample`` random z (for truncation), shape [style_dim]."""
        return self.mapping(jax.random.normal(rng, (n_sample, self.style_dim))).mean(0)

    def style(self, z: Array) -> Array:
        """z -> w (any leading shape)."""
        return self.mapping(z)

    @nn.compact
    def __call__(self, styles: Array, *, input_is_style: bool = False, channel_ratio: Optional[float] = None,
                 channels: Optional[Sequence[int]] = None, channel_masks: Any = None,
                 target_res: Optional[int] = None, truncation: float = 1., truncation_style: Optional[Array] = None,
                 noise_mode: str = 'const', noise: Optional[Sequence[Array]] = None, inject_index=None,
                 return_rgbs: bool = False, return_styles: bool = False):
        """Renders images [N, R, R, 3].

        Returns the image; with ``return_rgbs`` also the list of every resolution's RGB output up
        to ``target_res``; with ``return_styles`` also the w+ codes used [N, n_style, style_dim].
        """
        styles = jnp.asarray(styles)
        if styles.ndim == 2:
            styles = styles[:, None]
        if styles.ndim != 3 or styles.shape[-1] != self.style_dim:
            raise ValueError(f'styles has shape {styles.shape}; expected [N, {self.style_dim}] or '
                             f'[N, k, {self.style_dim}] with k in (1, 2, {self.n_style})')
        widths = self.resolve_channels(channel_ratio, channels, channel_masks)
        masks = self._masks(channel_masks)
        target_res = self.check_target_res(target_res)
        w = styles if input_is_style else self.mapping(styles)
        if truncation < 1:
            if truncation_style is None:
                if not self.has_variable('stats', 'w_avg'):
                    raise ValueError('truncation < 1 needs truncation_style (e.g. gen.apply(variables, 10000, key, '
                                     'method=Generator.mean_style)) or variables with stats/w_avg '
                                     '(convert.load_generator stores one)')
                truncation_style = self.get_variable('stats', 'w_avg')
            w = truncation_style.reshape(1, 1, -1) * (1 - truncation) + truncation * w
        w = self._expand_styles(w, inject_index)
        noises = self._noise(noise_mode, noise, styles.shape[0])

        full = self.full_channels()
        width = (lambda l: None) if widths is None else (lambda l: widths[l])
        mask = (lambda l: None) if masks is None else (lambda l: masks[l])
        out = ConstantInput(full[0], name='input')(styles.shape[0], out_width=width(0), out_mask=mask(0))
        out = StyledConv(full[0], full[1], 3, blur_kernel=self.blur_kernel, fan_in=self._fan_in(0), name='conv1')(
            out, w[:, 0], noises[0], in_width=width(0), out_width=width(1), in_mask=mask(0), out_mask=mask(1))
        skip = ToRGB(full[1], upsample=False, blur_kernel=self.blur_kernel, fan_in=self._fan_in(1), name='to_rgb1')(
            out, w[:, 1], in_width=width(1), in_mask=mask(1))
        rgbs = [skip]
        for b, res in enumerate(self.output_resolutions[1:]):
            if res > target_res:
                break
            l_in, l1, l2 = 2 * b + 1, 2 * b + 2, 2 * b + 3
            out = out.astype(self.compute_dtype(res))
            out = StyledConv(full[l_in], full[l1], 3, upsample=True, blur_kernel=self.blur_kernel,
                             fan_in=self._fan_in(l_in), name=f'convs_{2 * b}')(
                out, w[:, l_in], noises[l1 - 1], in_width=width(l_in), out_width=width(l1), in_mask=mask(l_in),
                out_mask=mask(l1))
            out = StyledConv(full[l1], full[l2], 3, blur_kernel=self.blur_kernel, fan_in=self._fan_in(l1),
                             name=f'convs_{2 * b + 1}')(
                out, w[:, l1], noises[l2 - 1], in_width=width(l1), out_width=width(l2), in_mask=mask(l1),
                out_mask=mask(l2))
            skip = ToRGB(full[l2], blur_kernel=self.blur_kernel, fan_in=self._fan_in(l2), name=f'to_rgbs_{b}')(
                out, w[:, l2], skip, in_width=width(l2), in_mask=mask(l2))
            rgbs.append(skip)
        extra = ((rgbs,) if return_rgbs else ()) + ((w,) if return_styles else ())
        return (skip,) + extra if extra else skip

    def init_variables(self, rng: Array) -> dict:
        """Initial variables (params + const noise buffers) of the full network."""
        return init_variables(self, rng, jnp.zeros((1, self.style_dim)))


@functools.partial(jax.jit, static_argnums=(0, 2))
def _mean_style(gen: Generator, params: dict, n_sample: int, key: Array) -> Array:
    # Module-level so repeated calls for the same architecture reuse one compiled program.
    return gen.apply({'params': params}, n_sample, key, method=Generator.mean_style)


def mean_w(gen: Generator, variables: dict, n_sample: int = MEAN_W_SAMPLES, key: Optional[Array] = None,
           use_stored: bool = True) -> Array:
    """The generator's average w [style_dim]: ``stats/w_avg`` if stored (and ``use_stored``), else
    the mean over ``n_sample`` z drawn from ``key`` (default ``jax.random.key(0)``)."""
    stats = variables.get('stats', {})
    if use_stored and 'w_avg' in stats:
        return jnp.asarray(stats['w_avg'], jnp.float32)
    return _mean_style(gen, variables['params'], n_sample, jax.random.key(0) if key is None else key)
