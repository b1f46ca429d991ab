"""Applying an image-to-image generator to files: the library of ``launch/translate.py``.

ResNet and U-Net generators take RGB (or one-channel) images, scaled to [-1, 1]; SPADE
generators take label maps: single-channel PNGs of class indices, one-hot encoded to the
generator's ``label_nc`` channels (an instance-edge channel, when the model has one, is the
last; without instance maps it is left at zero, and :func:`read_label_map` says so once).
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from anycost_jax import macs
from anycost_jax.models.img2img.spade import SPADEGenerator
from anycost_jax.models.img2img.unet import UnetGenerator

def input_size(gen, size: Optional[int]) -> tuple[int, int]:
    """(height, width) the generator gets: SPADE's is fixed by its options; others take ``size``
    (None: the file's own size), which must fit the network's downsamplings."""
    if isinstance(gen, SPADEGenerator):
        return gen.output_size
    return (size, size) if size else None


def _check_size(gen, h: int, w: int, path: str) -> None:
    step = 2 ** gen.num_downs if isinstance(gen, UnetGenerator) else 4
    if h % step or w % step:
        raise ValueError(f'{path}: {h}x{w} is not a multiple of {step}, which this generator needs; pass '
                         f'--size=N (N a multiple of {step}) to resize the inputs')


def read_image(path: str, gen, size: Optional[tuple[int, int]]) -> np.ndarray:
    """float32 HWC in [-1, 1] with the generator's input channels."""
    channels = gen.input_nc
    img = Image.open(path)
    img = img.convert('L' if channels == 1 else 'RGB')
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BICUBIC)
    x = np.asarray(img, np.float32) / 127.5 - 1
    x = x[..., None] if x.ndim == 2 else x
    if x.shape[-1] != channels:
        raise ValueError(f'{path}: {x.shape[-1]} channels; the generator takes {channels}')
    _check_size(gen, x.shape[0], x.shape[1], path)
    return x


def read_label_map(path: str, gen: SPADEGenerator, n_classes: Optional[int] = None) -> np.ndarray:
    """A class-index PNG as a one-hot float32 [H, W, label_nc] at the generator's size (nearest)."""
    img = Image.open(path)
    if img.mode not in ('L', 'P', 'I', 'I;16'):
        raise ValueError(f'{path}: a label map must be a single-channel PNG of class indices (mode {img.mode!r})')
    h, w = gen.output_size
    if img.size != (w, h):
        img = img.resize((w, h), Image.NEAREST)
    labels = np.asarray(img).astype(np.int64)
    n = gen.label_nc if n_classes is None else n_classes
    if n > gen.label_nc:
        raise ValueError(f'--label_classes={n} is more than the generator\'s label_nc={gen.label_nc}')
    if labels.max() >= n:
        raise ValueError(f'{path}: class index {labels.max()} >= {n} classes (the generator has label_nc='
                         f'{gen.label_nc}{"" if n_classes is None else f", --label_classes={n_classes}"})')
    onehot = np.zeros((h, w, gen.label_nc), np.float32)
    onehot[np.arange(h)[:, None], np.arange(w)[None, :], labels] = 1
    return onehot


def translator(gen, variables, config=None):
    """A compiled ``x -> uint8 images`` for ``config`` (None: the full network)."""
    @jax.jit
    def run(x):
        y = gen.apply(variables, x, config=config) if config is not None else gen.apply(variables, x)
        return jnp.clip(jnp.round((y + 1) * 127.5), 0, 255).astype(jnp.uint8)
    return run


def generator_macs(gen, x_shape, config=None, convention: str = 'torchprofile-0.0.1') -> int:
    kw = {} if config is None else {'config': config}
    return macs.count_macs(gen, jax.ShapeDtypeStruct((1, *x_shape[1:]), jnp.float32), convention=convention, **kw)


def save_png(path: str, img: np.ndarray) -> None:
    Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(path)
