"""Maps the original PyTorch state dicts onto our parameter trees, and back.

One table per model (see :mod:`anycost_jax.convert.table`) lists ``(torch key, our path, layout)``;
the layout names the transpose between PyTorch's (out, in, kh, kw) / NCHW conventions and ours
(kh, kw, in, out) / NHWC. The model's hyper-parameters are read off the tensor shapes; anything
unexpected (missing or extra keys, shapes, a blur kernel other than the default) is an error that
lists what was expected.
"""
from __future__ import annotations

import jax
import numpy as np

from anycost_jax import elastic
from anycost_jax.convert import table as table_lib
from anycost_jax.convert.table import ConversionError, flatten_linear
from anycost_jax.models.discriminator import Discriminator, DiscriminatorMultiRes
from anycost_jax.models.generator import Generator
from anycost_jax.nn.upfirdn import make_kernel

__all__ = ['ConversionError', 'generator_table', 'discriminator_table', 'infer_generator', 'infer_discriminator',
           'from_state_dict', 'to_state_dict', 'generator_from_state_dict', 'generator_to_state_dict',
           'discriminator_from_state_dict', 'discriminator_to_state_dict']

# The StyleGAN2-specific layouts; the generic ones ('same', 'linear', 'conv') are the engine's.
_MODCONV = (lambda a: a[0].transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1)[None])  # [1, O, I, k, k]
_RGB_BIAS = (lambda a: a.reshape(3), lambda a: a.reshape(1, 3, 1, 1))


# --------------------------------------------------------------------------- generator


def _modconv_entries(tk: str, ours: tuple) -> list:
    return [(f'{tk}.conv.weight', ours + ('conv', 'kernel'), _MODCONV),
            (f'{tk}.conv.modulation.weight', ours + ('conv', 'modulation', 'kernel'), 'linear'),
            (f'{tk}.conv.modulation.bias', ours + ('conv', 'modulation', 'bias'), 'same')]


def _styled_entries(tk: str, ours: tuple) -> list:
    return _modconv_entries(tk, ours) + [(f'{tk}.noise.weight', ours + ('noise', 'weight'), 'same'),
                                         (f'{tk}.activate.bias', ours + ('bias',), 'same')]


def generator_table(gen: Generator) -> list:
    t = [(f'style.{i + 1}.{p}', ('params', 'mapping', f'dense_{i}', q), lay)
         for i in range(gen.n_mlp) for p, q, lay in (('weight', 'kernel', 'linear'), ('bias', 'bias', 'same'))]
    t.append(('input.input', ('params', 'input', 'const'), 'nchw'))
    t += _styled_entries('conv1', ('params', 'conv1'))
    t += _modconv_entries('to_rgb1', ('params', 'to_rgb1')) + [('to_rgb1.bias', ('params', 'to_rgb1', 'bias'),
                                                                _RGB_BIAS)]
    for b in range(len(gen.output_resolutions) - 1):
        for j in (2 * b, 2 * b + 1):
            t += _styled_entries(f'convs.{j}', ('params', f'convs_{j}'))
        t += _modconv_entries(f'to_rgbs.{b}', ('params', f'to_rgbs_{b}'))
        t.append((f'to_rgbs.{b}.bias', ('params', f'to_rgbs_{b}', 'bias'), _RGB_BIAS))
    t += [(f'noises.noise_{i}', ('noise', f'noise_{i}'), 'nchw') for i in range(gen.num_layers)]
    return t


def _generator_buffers(gen: Generator) -> dict[str, np.ndarray]:
    """Blur kernels the original stores as buffers (flipped and scaled, as its make_kernel does)."""
    k = make_kernel(gen.blur_kernel)[::-1, ::-1] * 4
    out = {}
    for b in range(len(gen.output_resolutions) - 1):
        out[f'convs.{2 * b}.conv.blur.kernel'] = k
        out[f'to_rgbs.{b}.upsample.kernel'] = k
    return out


def infer_generator(sd: dict) -> Generator:
    """Builds the Generator whose shapes match an original ``g_ema`` state dict."""
    _require(sd, ['style.1.weight', 'input.input', 'conv1.conv.weight'], 'an Anycost/StyleGAN2 generator (g_ema)')
    n_mlp = len({k.split('.')[1] for k in sd if k.startswith('style.')})
    style_dim = sd['style.1.weight'].shape[1]
    n_blocks = len({k.split('.')[1] for k in sd if k.startswith('to_rgbs.')})
    resolution = 2 ** (n_blocks + 2)
    if resolution not in elastic.SUPPORTED_RESOLUTIONS:
        raise ConversionError(f'the state dict has {n_blocks} to_rgbs blocks, i.e. resolution {resolution}; '
                              f'expected one of {elastic.SUPPORTED_RESOLUTIONS}')
    top_key = f'to_rgbs.{n_blocks - 1}.conv.weight'
    _require(sd, [top_key], f'an Anycost/StyleGAN2 generator (g_ema) of resolution {resolution}')
    c4 = sd['input.input'].shape[1]
    c_top = sd[top_key].shape[2]
    mult = c_top / elastic.BASE_CHANNELS[resolution]
    # A .pt does not say which outputs were trained: the released Anycost models fit the top one
    # and the n_res=4 highest (configs/ffhq.py), so that is what the launchers offer.
    trained = elastic.resolutions_up_to(resolution)[::-1][:elastic.DEFAULT_N_RES]
    gen = Generator(resolution, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=mult, channel_max=c4,
                    trained_resolutions=tuple(trained))
    try:
        expected = gen.full_channels()
    except ValueError as e:
        raise ConversionError(f'cannot infer the generator from the state dict: {e}') from e
    # The width of every elastic layer (modconv weights are [1, out, in, k, k]); a layer whose key
    # is missing is skipped here and reported (with every other missing key) by from_state_dict.
    found = [c4, sd['conv1.conv.weight'].shape[1]] + [
        sd[k].shape[1] if k in sd else None for k in (f'convs.{j}.conv.weight' for j in range(2 * n_blocks))]
    if any(f is not None and f != e for f, e in zip(found, expected)) or len(found) != len(expected):
        raise ConversionError(f'generator widths {found} do not follow the StyleGAN2 channel table '
                              f'(expected {expected} for resolution {resolution}, multiplier {mult}, max {c4})')
    return gen


# --------------------------------------------------------------------------- discriminator


def _convlayer_entries(tk: str, ours: tuple, downsample: bool, activate: bool, modulate: bool) -> list:
    i = 1 if downsample else 0  # the blur sits at index 0 of the original's Sequential
    t = [(f'{tk}.{i}.weight', ours + ('conv', 'kernel'), 'conv')]
    if modulate:
        i += 1
        for m in ('weight_mapping', 'bias_mapping'):
            t += [(f'{tk}.{i}.{m}.weight', ours + ('modulate', m, 'kernel'), 'linear'),
                  (f'{tk}.{i}.{m}.bias', ours + ('modulate', m, 'bias'), 'same')]
    if activate:
        t.append((f'{tk}.{i + 1}.bias', ours + ('bias',), 'same'))
    return t


def _resblock_entries(tk: str, ours: tuple, modulate: bool) -> list:
    return (_convlayer_entries(f'{tk}.conv1', ours + ('conv1',), False, True, modulate) +
            _convlayer_entries(f'{tk}.conv2', ours + ('conv2',), True, True, modulate) +
            _convlayer_entries(f'{tk}.skip', ours + ('skip',), True, False, modulate))


def discriminator_table(disc) -> list:
    ch = elastic.channels_per_resolution(disc.channel_multiplier, disc.channel_max)
    n_blocks = elastic.log2_resolution(disc.resolution) - 2
    head = [('final_conv.0.weight', ('params', 'head', 'final_conv', 'conv', 'kernel'), 'conv'),
            ('final_conv.1.bias', ('params', 'head', 'final_conv', 'bias'), 'same'),
            ('final_linear.0.weight', ('params', 'head', 'final_linear_0', 'kernel'), flatten_linear(ch[4])),
            ('final_linear.0.bias', ('params', 'head', 'final_linear_0', 'bias'), 'same'),
            ('final_linear.1.weight', ('params', 'head', 'final_linear_1', 'kernel'), 'linear'),
            ('final_linear.1.bias', ('params', 'head', 'final_linear_1', 'bias'), 'same')]
    if isinstance(disc, Discriminator):
        t = _convlayer_entries('convs.0', ('params', 'from_rgb'), False, True, False)
        for i in range(n_blocks):
            t += _resblock_entries(f'convs.{i + 1}', ('params', f'blocks_{i}'), False)
        return t + head
    t = []
    for i in range(disc.n_res):
        t += _convlayer_entries(f'convs.{i}', ('params', f'from_rgb_{i}'), False, True, False)
    for i in range(n_blocks):
        t += _resblock_entries(f'blocks.{i}', ('params', f'blocks_{i}'), disc.modulate and i >= n_blocks - 2)
    return t + head


def _discriminator_buffers(disc) -> dict[str, np.ndarray]:
    k = make_kernel(disc.blur_kernel)[::-1, ::-1]
    n_blocks = elastic.log2_resolution(disc.resolution) - 2
    prefix = 'convs.{}' if isinstance(disc, Discriminator) else 'blocks.{}'
    first = 1 if isinstance(disc, Discriminator) else 0
    return {f'{prefix.format(i + first)}.{c}.0.kernel': k for i in range(n_blocks) for c in ('conv2', 'skip')}


def infer_discriminator(sd: dict):
    """Builds the (multi-resolution, maybe modulated) discriminator matching an original state dict."""
    _require(sd, ['final_conv.0.weight', 'final_linear.1.weight', 'convs.0.0.weight'],
             'an Anycost/StyleGAN2 discriminator (d)')
    c4 = sd['final_conv.0.weight'].shape[0]
    c_top = sd['convs.0.0.weight'].shape[0]
    if 'blocks.0.conv1.0.weight' in sd:
        n_blocks = len({k.split('.')[1] for k in sd if k.startswith('blocks.')})
        resolution = _disc_resolution(n_blocks)
        n_res = len({k.split('.')[1] for k in sd if k.startswith('convs.')})
        modulate = any('_mapping.' in k for k in sd)
        mult = c_top / elastic.BASE_CHANNELS[resolution]
        return DiscriminatorMultiRes(resolution, n_res=n_res, modulate=modulate, channel_multiplier=mult,
                                     channel_max=c4)
    n_blocks = len({k.split('.')[1] for k in sd if k.startswith('convs.')}) - 1
    resolution = _disc_resolution(n_blocks)
    return Discriminator(resolution, channel_multiplier=c_top / elastic.BASE_CHANNELS[resolution], channel_max=c4)


def _disc_resolution(n_blocks: int) -> int:
    resolution = 2 ** (n_blocks + 2)
    if resolution not in elastic.SUPPORTED_RESOLUTIONS:
        raise ConversionError(f'the discriminator state dict has {n_blocks} residual blocks, i.e. resolution '
                              f'{resolution}; expected one of {elastic.SUPPORTED_RESOLUTIONS}')
    return resolution


# --------------------------------------------------------------------------- generic conversion


def _require(sd: dict, keys: list, what: str) -> None:
    missing = [k for k in keys if k not in sd]
    if missing:
        sample = ', '.join(sorted(sd)[:6]) or 'nothing'
        raise ConversionError(f'expected the state dict of {what}; keys {missing} are missing (found: {sample}, ...)')


def from_state_dict(model, sd: dict, table: list, buffers: dict, shapes: dict) -> dict:
    """Our variables from a torch state dict of ``model``; strict in both directions (see :mod:`.table`)."""
    return table_lib.from_state_dict(
        sd, table, shapes, what=f'{type(model).__name__}(resolution={model.resolution})', buffers=buffers,
        buffer_error=f'holds a blur kernel other than {list(model.blur_kernel)}; build the model with the '
                     f'matching blur_kernel')


def _noise_hint(path: tuple) -> str:
    return " (pass the full variables, including the 'noise' collection)" if path[0] == 'noise' else ''


def to_state_dict(variables: dict, table: list, buffers: dict) -> dict:
    """The torch state dict (numpy values) of our variables."""
    return table_lib.to_state_dict(variables, table, buffers=buffers, hint=_noise_hint)


def _shapes(model, *args) -> dict:
    return jax.eval_shape(lambda: model.init({'params': jax.random.key(0)}, *args))


def _check_resolution(model, sd: dict, prefix: str, offset: int, what: str) -> None:
    """A clear error when an explicit ``model`` gets the checkpoint of another resolution."""
    n = len({k.split('.')[1] for k in sd if k.startswith(prefix)})
    r, have = 2 ** (n + offset), getattr(model, 'top_res', model.resolution)  # top_res: a generator's output_res
    if n and have != r:
        raise ConversionError(f'the state dict holds a {r}x{r} {what}, but the given {type(model).__name__} has '
                              f'resolution={have}; build it with resolution={r}, or pass none to infer it from '
                              f'the state dict')


def generator_from_state_dict(sd: dict, gen: Generator | None = None):
    if gen is not None:
        _check_resolution(gen, sd, 'to_rgbs.', 2, 'generator')
    gen = gen or infer_generator(sd)
    shapes = _shapes(gen, np.zeros((1, gen.style_dim), np.float32))
    return gen, from_state_dict(gen, sd, generator_table(gen), _generator_buffers(gen), shapes)


def generator_to_state_dict(gen: Generator, variables: dict) -> dict:
    if gen.widths is not None or gen.output_res is not None:
        raise ConversionError('an exported sub-generator has no original-format equivalent; export the full one')
    return to_state_dict(variables, generator_table(gen), _generator_buffers(gen))


def _disc_init_args(disc):
    args = (np.zeros((1, disc.resolution, disc.resolution, 3), np.float32),)
    if isinstance(disc, DiscriminatorMultiRes) and disc.modulate:
        args += (np.zeros((disc.arch_code_length,), np.float32),)
    return args


def discriminator_from_state_dict(sd: dict, disc=None):
    if isinstance(disc, DiscriminatorMultiRes) and 'blocks.0.conv1.0.weight' in sd:
        _check_resolution(disc, sd, 'blocks.', 2, 'discriminator')
    elif isinstance(disc, Discriminator) and 'blocks.0.conv1.0.weight' not in sd:
        _check_resolution(disc, sd, 'convs.', 1, 'discriminator')
    disc = disc or infer_discriminator(sd)
    shapes = _shapes(disc, *_disc_init_args(disc))
    return disc, from_state_dict(disc, sd, discriminator_table(disc), _discriminator_buffers(disc), shapes)


def discriminator_to_state_dict(disc, variables: dict) -> dict:
    return to_state_dict(variables, discriminator_table(disc), _discriminator_buffers(disc))
