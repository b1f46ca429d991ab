"""GAN Slimming's checkpoints (VITA-Group/GAN-Slimming) -> ours, read without torch.

* ``netG_A2B_epoch_199.pth`` (its dense model) and ``epoch{N}_netG.pth`` from ``gs.py``: a bare
  ``Generator`` state dict; the extracted ``subnet_structures/.../epoch199_netG.pth`` of
  ``extract_subnet.py``: the same for ``Generator(dim_lst=...)`` (the widths are read from the
  tensors; its ``epoch199_netG.npy`` ``dim_lst``, when given, is checked against them);
* ``latest.pth``: ``gs.py``'s ``save_ckpt`` dict, whose ``netG`` / ``netD`` are read (the
  optimizer and scheduler states are not: ours restart them);
* ``netD_B_epoch_199.pth``: a bare ``Discriminator`` state dict.

Keys follow the original's ``nn.Sequential``: ``model.1`` stem (norm ``model.2``), ``model.4`` /
``model.7`` the downsamplings (norm ``model.5``; ``model.8`` has no parameters), ``model.{10+b}``
block ``b`` (``conv_block.1`` / ``.2`` / ``.5``: conv, affine norm, conv; no keys for a block
whose inner width is 0), ``model.{10+n}`` / ``model.{13+n}`` the transposed convs (norms at +1),
``model.{17+n}`` the head. A quantized (GS-8) file has the same keys: pass ``quant_bits=8``.
A zero-width block of the original's files computes ``x + x`` (``zero_block='double'``, the
default here); see :mod:`anycost_jax.models.img2img.gs`.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from anycost_jax.convert import table as table_lib
from anycost_jax.convert.img2img import _conv, state_dict_of
from anycost_jax.convert.table import ConversionError
from anycost_jax.models.img2img import gs as gs_lib


def _affine(tk: str, ours: tuple) -> list:
    return [(f'{tk}.weight', ('params', *ours, 'scale'), 'same'), (f'{tk}.bias', ('params', *ours, 'bias'), 'same')]


def generator_table(gen: gs_lib.GSGenerator) -> list:
    n, w = gen.n_blocks, gen.full_widths
    t = _conv('model.1', ('stem',), True) + _affine('model.2', ('stem_norm',))
    t += _conv('model.4', ('down1',), True) + _affine('model.5', ('down1_norm',))
    t += _conv('model.7', ('down2',), True)
    for b in range(n):
        if w[3 + b] == 0:
            continue
        tk = f'model.{10 + b}.conv_block'
        t += _conv(f'{tk}.1', (f'block{b}', 'conv1'), True) + _affine(f'{tk}.2', (f'block{b}', 'norm1'))
        t += _conv(f'{tk}.5', (f'block{b}', 'conv2'), True)
    t += _conv(f'model.{10 + n}', ('up1',), True, 'conv_transpose') + _affine(f'model.{11 + n}', ('up1_norm',))
    t += _conv(f'model.{13 + n}', ('up2',), True, 'conv_transpose') + _affine(f'model.{14 + n}', ('up2_norm',))
    return t + _conv(f'model.{17 + n}', ('head',), True)


def discriminator_table(disc) -> list:
    t = _conv('model.0', ('conv0',), True)
    for i in range(1, disc.n_layers + 1):
        t += _conv(f'model.{2 + 3 * (i - 1)}', (f'conv{i}',), True)
        t += _affine(f'model.{3 + 3 * (i - 1)}', (f'norm{i}',))
    return t + _conv(f'model.{2 + 3 * disc.n_layers}', ('out',), True)


def _shapes(module, x):
    return jax.eval_shape(lambda: module.init(jax.random.key(0), x))


def infer_generator(sd: dict, quant_bits: Optional[int] = None, zero_block: str = 'double') -> gs_lib.GSGenerator:
    """The ``GSGenerator`` a GAN Slimming state dict holds (block count and widths from the tensors)."""
    if 'model.1.weight' not in sd or 'model.7.weight' not in sd:
        raise ConversionError(f'not a GAN Slimming generator state dict (no model.1.weight / model.7.weight; keys: '
                              f'{sorted(sd)[:6]}...)')
    convs = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r'model\.(\d+)\.weight', k)) and sd[k].ndim == 4)
    n = convs[-1] - 17
    if n < 1 or convs[-3:] != [10 + n, 13 + n, 17 + n]:
        raise ConversionError(f'conv layers at model.{convs}: not the GAN Slimming generator layout')
    res = int(sd['model.7.weight'].shape[0])
    inner = [int(sd[k].shape[0]) if (k := f'model.{10 + b}.conv_block.1.weight') in sd else 0 for b in range(n)]
    widths = (int(sd['model.1.weight'].shape[0]), int(sd['model.4.weight'].shape[0]), res, *inner,
              int(sd[f'model.{10 + n}.weight'].shape[1]), int(sd[f'model.{13 + n}.weight'].shape[1]))
    ngf = res // 4
    if res % 4:
        raise ConversionError(f'residual width {res} is not 4 * ngf')
    full = gs_lib.rules.resnet_full_widths(ngf, n)
    return gs_lib.GSGenerator(input_nc=int(sd['model.1.weight'].shape[1]),
                              output_nc=int(sd[f'model.{17 + n}.weight'].shape[0]), ngf=ngf, n_blocks=n,
                              widths=None if widths == full else widths, quant_bits=quant_bits, zero_block=zero_block)


def generator_from_state_dict(sd: dict, quant_bits: Optional[int] = None, zero_block: str = 'double',
                              dim_lst: Optional[Sequence[int]] = None):
    """``(GSGenerator, variables)``; ``dim_lst`` (the extracted network's ``.npy``) is checked if given."""
    gen = infer_generator(sd, quant_bits, zero_block)
    if dim_lst is not None and list(gs_lib.dim_lst(gen.full_widths)) != [int(d) for d in dim_lst]:
        raise ConversionError(f'dim_lst {list(dim_lst)} does not match the state dict\'s widths '
                              f'{gs_lib.dim_lst(gen.full_widths)} (stem, down1, blocks, up1, up2)')
    shapes = _shapes(gen, jnp.zeros((1, 16, 16, gen.input_nc), jnp.float32))
    variables = table_lib.from_state_dict(sd, generator_table(gen), shapes, what='the GAN Slimming generator')
    return gen, variables


def generator_to_state_dict(gen: gs_lib.GSGenerator, variables: dict) -> dict:
    return table_lib.to_state_dict(variables, generator_table(gen))


def discriminator_from_state_dict(sd: dict):
    if 'model.0.weight' not in sd:
        raise ConversionError('not a GAN Slimming discriminator state dict (no model.0.weight)')
    w = sd['model.0.weight']
    disc = gs_lib.discriminator(int(w.shape[1]), int(w.shape[0]))
    shapes = _shapes(disc, jnp.zeros((1, 32, 32, disc.input_nc), jnp.float32))
    return disc, table_lib.from_state_dict(sd, discriminator_table(disc), shapes,
                                           what='the GAN Slimming discriminator')


def _load(path: str):
    from anycost_jax.convert import load_torch_file, resolve_path
    return load_torch_file(resolve_path(path))


def load_generator(path: str, quant_bits: Optional[int] = None, zero_block: str = 'double',
                   dim_lst_path: Optional[str] = None):
    """``(GSGenerator, variables)`` from ``netG_A2B_epoch_199.pth``, ``epoch{N}_netG.pth`` (dense or extracted) or
    ``latest.pth`` (its ``netG``). ``quant_bits=8`` for a GS-8 run's files (the weights are stored in float,
    as the original trains them); ``dim_lst_path``: the extracted network's ``epoch{N}_netG.npy``, checked."""
    obj = _load(path)
    if isinstance(obj, dict) and 'netG' in obj:
        obj = obj['netG']
    dims = np.load(dim_lst_path) if dim_lst_path else None
    return generator_from_state_dict(state_dict_of(obj, path), quant_bits, zero_block, dims)


def load_discriminator(path: str):
    """``(discriminator, variables)`` from ``netD_B_epoch_199.pth`` or ``latest.pth`` (its ``netD``)."""
    obj = _load(path)
    if isinstance(obj, dict) and 'netD' in obj:
        obj = obj['netD']
    return discriminator_from_state_dict(state_dict_of(obj, path))
