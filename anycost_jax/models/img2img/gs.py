"""GAN Slimming's generator and discriminator (Wang et al., ECCV 2020; VITA-Group/GAN-Slimming
``models/models.py``), on our conv and norm layers.

The generator is the CycleGAN ResNet generator (pad 3 -> 7x7 conv -> norm -> ReLU, two stride-2
convs, ``n_blocks`` residual blocks, two stride-2 transposed convs, pad 3 -> 7x7 conv -> tanh, all
convs with biases) whose **prunable** norms are affine instance norms: the stem's, the first
downsampling's, every block's inner one and both upsamplings'. Their scales gamma are the
channel-pruning scales. The second downsampling's norm and every block's output norm are not
affine: the residual stream is not pruned. Parameter names are :class:`ResnetGenerator`'s
(``stem``, ``stem_norm``, ``down1``, ..., ``block{b}/conv1``, ``norm1``, ``conv2``, ``up1``, ``head``),
so a trained CycleGAN / pix2pix ResNet teacher initializes it as it is (:func:`from_resnet`).

``widths``: per-layer widths in :mod:`anycost_jax.elastic.img2img`'s ResNet layout (stem, down1,
res, inner_0 .. inner_{n-1}, up1, up2); an extracted sub-network (:func:`extract`) is this
class with smaller widths. A block's inner width may be 0 (all its scales pruned); what such a
block computes is ``zero_block``:

* ``'identity'`` (ours, the default): ``x``. It is what the pruned dense network computes: with
  every gamma 0, the inner norm outputs its bias beta, a constant map, whose conv is constant
  again and the block's output instance norm maps a constant to 0.
* ``'double'``: ``x + x``, what the original's extracted ``Generator(dim_lst=...)`` computes (its
  block keeps ``x + conv_block(x)`` with an empty ``nn.Sequential``): use it to load its files.

``quant_bits`` (8 for GS-8): every conv's kernel and every conv's input except the stem's are
fake-quantized (:mod:`anycost_jax.nn.quant`); norms, biases and activations stay float.
"""
from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from anycost_jax.elastic import core as elastic_core
from anycost_jax.elastic import img2img as rules
from anycost_jax.models.img2img.discriminators import NLayerDiscriminator
from anycost_jax.nn import quant as quant_lib
from anycost_jax.nn.conv import Conv2d, ConvTranspose2d, pad2d
from anycost_jax.nn.norm import InstanceNorm

Array = jax.Array
ZERO_BLOCKS = ('identity', 'double')


def prunable_norms(n_blocks: int) -> tuple[tuple[int, tuple[str, ...]], ...]:
    """``(layer index in the width layout, parameter path of its affine norm)`` of each pruned norm."""
    out = [(0, ('stem_norm',)), (1, ('down1_norm',))]
    out += [(3 + b, (f'block{b}', 'norm1')) for b in range(n_blocks)]
    return tuple(out + [(n_blocks + 3, ('up1_norm',)), (n_blocks + 4, ('up2_norm',))])


def check_gs_widths(widths: Sequence[int], full: Sequence[int]) -> tuple[int, ...]:
    """Like ResNet widths, but a block's inner width may be 0 (a pruned-away block)."""
    n = len(full) - 5
    w = tuple(widths)
    if len(w) != len(full):
        raise ValueError(f'widths has {len(w)} entries, expected {len(full)}: {rules.resnet_layout(n)}')
    for i, (c, f) in enumerate(zip(w, full)):
        lo = 0 if 3 <= i < 3 + n else 1
        if int(c) != c or not lo <= c <= f:
            raise ValueError(f'widths[{i}]={c!r} is invalid: expected an integer in [{lo}, {f}] (a student is never '
                             f'wider than its teacher, full widths {list(full)}; only block inner widths may be 0)')
    return tuple(int(c) for c in w)


class GSResnetBlock(nn.Module):
    features: int
    inner: int
    quant_bits: Optional[int] = None
    zero_block: str = 'identity'

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.inner == 0:
            return x + x if self.zero_block == 'double' else x
        q = self.quant_bits
        h = Conv2d(self.features, self.inner, 3, quant_bits=q, name='conv1')(pad2d(x, 1))
        h = nn.relu(InstanceNorm(self.inner, affine=True, name='norm1')(h))
        h = Conv2d(self.inner, self.features, 3, quant_bits=q, name='conv2')(pad2d(h, 1))
        return x + InstanceNorm(self.features, name='norm2')(h)


class GSGenerator(nn.Module):
    """GAN Slimming's ``Generator(input_nc, output_nc, n_residual_blocks, dim_lst, quant)``; see the module doc."""
    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    n_blocks: int = 9
    widths: Optional[Sequence[int]] = None
    quant_bits: Optional[int] = None
    zero_block: str = 'identity'

    @property
    def full_widths(self) -> tuple[int, ...]:
        full = rules.resnet_full_widths(self.ngf, self.n_blocks)
        return full if self.widths is None else check_gs_widths(self.widths, full)

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.zero_block not in ZERO_BLOCKS:
            raise ValueError(f'zero_block={self.zero_block!r}: expected one of {ZERO_BLOCKS}')
        q = quant_lib.check_bits(self.quant_bits)
        w, n = self.full_widths, self.n_blocks
        if x.ndim != 4 or x.shape[-1] != self.input_nc:
            raise ValueError(f'expected NHWC images with {self.input_nc} channels, got shape {tuple(x.shape)}')
        if x.shape[1] % 4 or x.shape[2] % 4:
            raise ValueError(f'image size {x.shape[1]}x{x.shape[2]} is not a multiple of 4')

        def affine(h, c, name):
            return nn.relu(InstanceNorm(c, affine=True, name=name)(h))

        # the input image is not quantized (the original turns the stem's input_quant off)
        h = Conv2d(self.input_nc, w[0], 7, quant_bits=q, quant_input=False, name='stem')(pad2d(x, 3))
        h = affine(h, w[0], 'stem_norm')
        h = affine(Conv2d(w[0], w[1], 3, 2, 1, quant_bits=q, name='down1')(h), w[1], 'down1_norm')
        h = nn.relu(InstanceNorm(w[2], name='down2_norm')(Conv2d(w[1], w[2], 3, 2, 1, quant_bits=q, name='down2')(h)))
        for b in range(n):
            h = GSResnetBlock(w[2], w[3 + b], q, self.zero_block, name=f'block{b}')(h)
        h = affine(ConvTranspose2d(w[2], w[n + 3], quant_bits=q, name='up1')(h), w[n + 3], 'up1_norm')
        h = affine(ConvTranspose2d(w[n + 3], w[n + 4], quant_bits=q, name='up2')(h), w[n + 4], 'up2_norm')
        return jnp.tanh(Conv2d(w[n + 4], self.output_nc, 7, quant_bits=q, name='head')(pad2d(h, 3)))


def discriminator(input_nc: int = 3, ndf: int = 64) -> NLayerDiscriminator:
    """GAN Slimming's ``Discriminator(input_nc)``: 4 convs (stride 2, 2, 2, 1; affine instance norms after
    the last three), a 1-channel conv and a global average: ``[N, 1]``."""
    return NLayerDiscriminator(input_nc, ndf, 3, 'instance_affine', global_pool=True)


# --------------------------------------------------------------------------- gammas


def get_path(tree: dict, path: Sequence[str]):
    for k in path:
        tree = tree[k]
    return tree


def gammas(gen: GSGenerator, params: dict) -> list[np.ndarray]:
    """The pruning scales, one vector per prunable norm (:func:`prunable_norms` order; absent for a
    zero-width block: an empty vector)."""
    out = []
    for layer, path in prunable_norms(gen.n_blocks):
        try:
            out.append(np.asarray(get_path(params, path)['scale']))
        except KeyError:
            out.append(np.zeros((0,), np.float32))
    return out


def gamma_mask(params: dict) -> dict:
    """A pytree of bools over ``params``: True for the gammas (every affine instance norm's ``scale``;
    the original's "1-d parameters named weight"), which get their own optimizer."""
    def walk(tree, under_norm):
        return {k: walk(v, 'norm' in k) if isinstance(v, dict) else (under_norm and k == 'scale')
                for k, v in tree.items()}
    return walk(params, False)


def soft_threshold(x: Array, threshold) -> Array:
    """The proximal step of ``rho * ||gamma||_1``: ``sign(x) * relu(|x| - threshold)``."""
    return jnp.sign(x) * jax.nn.relu(jnp.abs(x) - threshold)


def prox_gammas(params: dict, threshold) -> dict:
    """Every gamma of ``params`` soft-thresholded by ``threshold`` (``rho * lr_gamma``); the rest as is."""
    mask = gamma_mask(params)
    return jax.tree.map(lambda p, m: soft_threshold(p, threshold) if m else p, params, mask)


def check_rho(rho: float) -> float:
    if rho < 0:
        raise ValueError(f'rho={rho} < 0: the sparsity weight must be >= 0 (0: no pruning; the paper sweeps '
                         'e.g. 0.01 to 0.0001); a negative rho would grow every gamma instead of shrinking it')
    return float(rho)


def live_widths(gen: GSGenerator, params: dict) -> tuple[int, ...]:
    """Per-layer widths after pruning: the number of non-zero gammas of each prunable norm (the residual
    width unchanged)."""
    w = list(gen.full_widths)
    for (layer, _), g in zip(prunable_norms(gen.n_blocks), gammas(gen, params)):
        w[layer] = int(np.count_nonzero(g))
    return tuple(w)


def dim_lst(widths: Sequence[int]) -> list[int]:
    """Our per-layer widths -> the original's ``dim_lst`` (the residual width dropped)."""
    return [widths[0], widths[1]] + list(widths[3:])


def widths_from_dim_lst(dims: Sequence[int], res: int) -> tuple[int, ...]:
    """The original's ``dim_lst`` (stem, down1, inner_0.., up1, up2) -> our layout (res inserted)."""
    dims = [int(d) for d in dims]
    return (dims[0], dims[1], res, *dims[2:])


# --------------------------------------------------------------------------- teacher init and extraction


def from_resnet(gen: GSGenerator, teacher_params: dict) -> dict:
    """GS parameters computing exactly what a non-affine instance-norm ResNet teacher computes: its convs,
    every gamma 1 and beta 0. The teacher must be :class:`ResnetGenerator` (``mobile=False``,
    ``norm='instance'``) of the same widths."""
    x = jnp.zeros((1, 16, 16, gen.input_nc), jnp.float32)
    shapes = jax.eval_shape(lambda: gen.init(jax.random.key(0), x))['params']

    def fill(shape_tree, src, path):
        out = {}
        for k, v in shape_tree.items():
            if isinstance(v, dict):
                out[k] = fill(v, src.get(k, {}) if isinstance(src, dict) else {}, path + (k,))
            elif 'norm' in path[-1] if path else False:
                out[k] = (jnp.ones if k == 'scale' else jnp.zeros)(v.shape, v.dtype)
            else:
                if k not in src:
                    raise ValueError(f'the teacher has no parameter {"/".join(path + (k,))}: expected a ResNet '
                                     'generator (resnet_9blocks-like, instance norm, not mobile)')
                if tuple(src[k].shape) != tuple(v.shape):
                    raise ValueError(f'{"/".join(path + (k,))}: the teacher has shape {tuple(src[k].shape)}, the GS '
                                     f'generator {tuple(v.shape)}: build it with the teacher\'s ngf and n_blocks')
                out[k] = jnp.asarray(src[k])
        return out
    return fill(shapes, teacher_params, ())


def _take(p: dict, idx, axis: int) -> dict:
    return {k: elastic_core.permute_axis(np.asarray(v), idx, axis if v.ndim > 1 else 0) for k, v in p.items()}


def permute_pruned_first(gen: GSGenerator, params: dict) -> dict:
    """``params`` with every prunable layer's channels reordered so those of non-zero gamma come first
    (in their order), then the pruned ones: the same function, and the live prefix is what
    :func:`extract` keeps."""
    params = jax.tree.map(np.asarray, params)
    p = dict(params)
    n = gen.n_blocks

    def order(g):
        keep = elastic_core.nonzero_indices(g)
        return np.concatenate([keep, np.setdiff1d(np.arange(len(g)), keep)]).astype(np.int64)

    def out_perm(conv, norm, idx):
        p[conv] = _take(p[conv], idx, -1)
        p[norm] = _take(p[norm], idx, 0)

    o0 = order(p['stem_norm']['scale'])
    out_perm('stem', 'stem_norm', o0)
    p['down1'] = {**p['down1'], 'kernel': p['down1']['kernel'][:, :, o0]}
    o1 = order(p['down1_norm']['scale'])
    out_perm('down1', 'down1_norm', o1)
    p['down2'] = {**p['down2'], 'kernel': p['down2']['kernel'][:, :, o1]}
    for b in range(n):
        blk = dict(p[f'block{b}'])
        o = order(blk['norm1']['scale'])
        blk['conv1'] = _take(blk['conv1'], o, -1)
        blk['norm1'] = _take(blk['norm1'], o, 0)
        blk['conv2'] = {**blk['conv2'], 'kernel': blk['conv2']['kernel'][:, :, o]}
        p[f'block{b}'] = blk
    o = order(p['up1_norm']['scale'])
    out_perm('up1', 'up1_norm', o)
    p['up2'] = {**p['up2'], 'kernel': p['up2']['kernel'][:, :, o]}
    o = order(p['up2_norm']['scale'])
    out_perm('up2', 'up2_norm', o)
    p['head'] = {**p['head'], 'kernel': p['head']['kernel'][:, :, o]}
    return p


def extract(gen: GSGenerator, variables: dict, zero_block: str = 'identity'):
    """The dense sub-network of the channels whose gamma is non-zero (the original's ``extract_subnet.py``):
    ``(GSGenerator with those widths, its variables)``, through the shared permutation and export
    (:func:`permute_pruned_first`, :func:`anycost_jax.elastic.core.export_module`). As the original, a
    removed channel's constant output (its norm's beta, through the ReLU) is dropped with it;
    ``zero_block`` is what a block left with no inner channel computes (see the module doc)."""
    if gen.widths is not None and gen.widths != rules.resnet_full_widths(gen.ngf, gen.n_blocks):
        raise ValueError('extract from the full-width (trained) GS generator; this one is already a sub-network')
    widths = live_widths(gen, variables['params'])
    names = ['stem', 'down1', 'res'] + [f'block{b}' for b in range(gen.n_blocks)] + ['up1', 'up2']
    empty = [names[i] for i, c in enumerate(widths) if c == 0 and not 3 <= i < 3 + gen.n_blocks]
    if empty:
        raise ValueError(f'every gamma of {empty} is 0: only a residual block can be pruned away (the original '
                         'cannot build such a network either); train with a smaller rho')
    sub = gen.clone(widths=widths, zero_block=zero_block)
    permuted = {**variables, 'params': permute_pruned_first(gen, variables['params'])}
    x = jnp.zeros((1, 16, 16, gen.input_nc), jnp.float32)
    return sub, elastic_core.export_module(sub, permuted, x)


__all__ = ['GSGenerator', 'GSResnetBlock', 'discriminator', 'gammas', 'gamma_mask', 'soft_threshold',
           'prox_gammas', 'check_rho', 'live_widths', 'from_resnet', 'permute_pruned_first', 'extract',
           'dim_lst', 'widths_from_dim_lst', 'prunable_norms', 'ZERO_BLOCKS']
