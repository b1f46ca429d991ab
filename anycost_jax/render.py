"""Rendering helpers: jitted sub-generators, the anycost grid, PNG output and latency.

The anycost grid shows one z at every (width, resolution): rows are channel ratios (full
first, labelled at the left), columns are output resolutions (highest first, labelled on top), all
with the same z and noise, so a reader sees how faithful each cheap preview is to the full-cost
image.

PNGs of small generators are hard to inspect at their own size: the launchers enlarge them by an
integer factor, nearest neighbour (:func:`png_scale`: by default until they are at least
:data:`MIN_PNG_SIZE` pixels high), so every generated pixel stays a visible square.
"""
from __future__ import annotations

import dataclasses
import functools
import statistics
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from anycost_jax import elastic, macs
from anycost_jax.models.generator import Generator


@dataclasses.dataclass(frozen=True)
class SubConfig:
    """One sub-generator: a uniform ratio or explicit per-layer widths, and an output resolution."""
    channel_ratio: Optional[float] = None
    channels: Optional[tuple[int, ...]] = None
    target_res: Optional[int] = None

    def label(self, gen: Generator) -> str:
        """``'0.5x@256'``, ``'flexible@256'`` or, for the full widths, ``'1.0x@256'`` (:func:`elastic.label`)."""
        widths = self.channel_ratio if self.channels is None else self.channels
        return elastic.label(widths, self.target_res or gen.top_res)


@functools.lru_cache(maxsize=64)
def renderer(gen: Generator, cfg: SubConfig, truncation: float = 1., noise_mode: str = 'const'):
    """A jitted ``(variables, z[, noise_key]) -> images`` for one static sub-generator (cached)."""
    def render(variables, z, noise_key=None):
        rngs = {'noise': noise_key} if noise_key is not None else None
        return gen.apply(variables, z, channel_ratio=cfg.channel_ratio, channels=cfg.channels,
                         target_res=cfg.target_res, truncation=truncation, noise_mode=noise_mode, rngs=rngs)
    return jax.jit(render)


def to_uint8(images) -> np.ndarray:
    """NHWC images in [-1, 1] (unclamped) to uint8."""
    x = np.asarray(images, np.float32)
    return np.clip(np.rint((x + 1) * 127.5), 0, 255).astype(np.uint8)


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Resizes an HWC uint8 image: nearest when enlarging (pixels stay visible), area when shrinking."""
    if img.shape[0] == size:
        return img
    method = Image.NEAREST if size > img.shape[0] else Image.BOX
    return np.asarray(Image.fromarray(img).resize((size, size), method))


MIN_PNG_SIZE = 128  # what the automatic --scale enlarges a small image to, at least (a 16 px output: 8x)
SCALE_HELP = (f'Enlarge the written PNGs by this integer factor, nearest neighbour; 0 (default): just enough '
              f'for them to be at least {MIN_PNG_SIZE} px high (1 for outputs of {MIN_PNG_SIZE} px and more).')


def png_scale(height: int, scale: int = 0) -> int:
    """The integer factor a PNG of ``height`` pixels is written at: ``scale``, or for 0 the smallest
    factor that makes it at least :data:`MIN_PNG_SIZE` high."""
    if scale < 0:
        raise ValueError(f'--scale={scale} is negative; pass a factor >= 1, or 0 to enlarge small images to '
                         f'{MIN_PNG_SIZE} px automatically')
    return scale or max(1, -(-MIN_PNG_SIZE // max(int(height), 1)))


def save_png(path: str, img: np.ndarray, scale: int = 1) -> None:
    """Writes an HWC uint8 image, enlarged by ``scale`` (:func:`png_scale`), nearest neighbour."""
    scale = png_scale(img.shape[0], scale)
    if scale > 1:
        img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    Image.fromarray(img).save(path)


def grid_configs(gen: Generator, ratios: Sequence[float] = elastic.RATIOS[::-1],
                 resolutions: Optional[Sequence[int]] = None) -> list[list[SubConfig]]:
    """Rows of ratios (as given), columns of resolutions (default: the four highest, descending)."""
    return [[SubConfig(channel_ratio=r, target_res=res) for r, res in row]
            for row in elastic.uniform_grid(gen, ratios, resolutions)]


LABEL_TOP, LABEL_LEFT = 14, 40  # the grid's bands for the column (resolution) and row (width) labels


def label_bands(img: np.ndarray, top: int, left: int, columns: Sequence[tuple[str, int]],
                rows: Sequence[tuple[str, int]]) -> np.ndarray:
    """A copy of ``img`` (HWC uint8) with black text centered in its top band (``columns``: (text,
    x center)) and its left band (``rows``: (text, y center)); the bands must already be blank."""
    band = Image.fromarray(img)
    draw, font = ImageDraw.Draw(band), ImageFont.load_default()

    def centered(text, cx, cy):  # by the text's box: the bitmap fallback font takes no anchor
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        draw.text((cx - (x0 + x1) // 2, cy - (y0 + y1) // 2), text, fill=(0, 0, 0), font=font)

    for text, cx in columns:
        centered(text, cx, top // 2)
    for text, cy in rows:
        centered(text, left // 2, cy)
    return np.asarray(band)


def anycost_grid(gen: Generator, variables: dict, z: jax.Array, rows: list[list[SubConfig]], cell: int = 256,
                 truncation: float = 1., pad: int = 2, labels: bool = True) -> np.ndarray:
    """One grid image per z: ``[len(z), H, W, 3]`` uint8, cells resized to ``cell`` pixels; with
    ``labels``, each column is labelled with its resolution on top and each row with its width
    at the left (bands of :data:`LABEL_TOP` and :data:`LABEL_LEFT` pixels)."""
    n = z.shape[0]
    nr, nc = len(rows), len(rows[0])
    top, left = (LABEL_TOP, LABEL_LEFT) if labels else (0, 0)
    out = np.full((n, top + nr * (cell + pad) + pad, left + nc * (cell + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, cfg in enumerate(row):
            imgs = to_uint8(renderer(gen, cfg, truncation)(variables, z))
            for k in range(n):
                y, x = top + pad + i * (cell + pad), left + pad + j * (cell + pad)
                out[k, y:y + cell, x:x + cell] = resize(imgs[k], cell)
    if labels:
        widths = [f'{row[0].channel_ratio:g}x' if row[0].channel_ratio is not None else 'flex' for row in rows]
        drawn = label_bands(out[0], top, left,
                            [(f'{c.target_res or gen.top_res} px', left + pad + j * (cell + pad) + cell // 2)
                             for j, c in enumerate(rows[0])],
                            [(w, top + pad + i * (cell + pad) + cell // 2) for i, w in enumerate(widths)])
        out[:, :top] = drawn[:top]  # the labels are the same for every z
        out[:, :, :left] = drawn[:, :left]
    return out


def latency_ms(fn, *args, repeats: int = 5) -> float:
    """Median wall time of ``fn(*args)`` after one warm-up (compile) call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def config_macs(gen: Generator, cfg: SubConfig) -> int:
    return macs.generator_macs(gen, channel_ratio=cfg.channel_ratio, channels=cfg.channels,
                               target_res=cfg.target_res)


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7] (the launchers' --seeds)."""
    seeds = []
    for part in (p.strip() for p in text.split(',')):
        lo, dash, hi = part.partition('-')
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(f'--seeds={text!r}: {part!r} is neither a seed nor a range; expected non-negative '
                             f'integers and ranges, e.g. --seeds=0,3,5 or --seeds=0-7')
        if dash and int(hi) < int(lo):
            raise ValueError(f'--seeds={text!r}: the range {part!r} is empty; write it low-high, e.g. {hi}-{lo}')
        seeds += list(range(int(lo), int(hi) + 1)) if dash else [int(lo)]
    return seeds


def check_truncation(truncation: float) -> None:
    """Refuses a truncation outside [0, 1] (the generator truncates only below 1: above, nothing would change)."""
    if not 0 <= truncation <= 1:
        raise ValueError(f'--truncation={truncation:g} is outside [0, 1]: 1 keeps the latents as drawn, lower '
                         f'values pull them toward the average w (0: the average image), e.g. --truncation=0.7')


def z_from_seeds(seeds: Sequence[int], style_dim: int) -> jnp.ndarray:
    """One z per seed, each drawn from its own key so a seed always gives the same image."""
    return jnp.stack([jax.random.normal(jax.random.key(s), (style_dim,)) for s in seeds])
