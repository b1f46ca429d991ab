"""gan-compression's image-to-image checkpoints (plain ``state_dict`` ``.pth`` files) <-> ours.

``netG`` / ``netD`` take gan-compression's ``--netG`` / ``--netD`` names. Every hyper-parameter
that the tensors' shapes fix is read from them (input / output channels, the per-layer widths
of a sub-network, the block count, batch vs instance norm); the others are arguments
(``dropout_rate``, ``padding_type``: they leave no trace in the weights).

The keys follow the original's ``nn.Sequential`` indices. ResNet generators: ``model.1`` stem,
``model.4`` / ``model.7`` the downsamplings (norms at +1), ``model.{10+b}`` block ``b``
(``conv_block.{1,6}`` its convs, ``conv_block.{2,7}`` its norms; without pad layers, for
``padding_type='zero'``, ``{0,4}`` and ``{1,5}``; a separable conv's depthwise and pointwise
parts are ``.conv.0`` / ``.conv.2``), ``model.{10+n}`` / ``model.{13+n}`` the transposed convs,
``model.{17+n}`` the head. PatchGAN: ``model.0`` then ``model.{2+3i}`` convs, ``model.{3+3i}`` norms.
"""
from __future__ import annotations

import re
from typing import Optional

import jax
import numpy as np

from anycost_jax.convert import table as table_lib
from anycost_jax.convert.table import ConversionError
from anycost_jax.elastic import img2img as rules
from anycost_jax.models.img2img.discriminators import NLayerDiscriminator
from anycost_jax.models.img2img.resnet import ResnetGenerator

# netG -> (mobile, clamp_input, blocks (None: any), sub-network: widths free)
RESNET_NETGS = {
    'resnet_9blocks': (False, True, 9, False),
    'resnet_6blocks': (False, True, 6, False),
    'mobile_resnet_9blocks': (True, False, 9, False),
    'super_mobile_resnet_9blocks': (True, True, 9, False),
    'sub_mobile_resnet_9blocks': (True, True, 9, True),
    'legacy_sub_mobile_resnet_9blocks': (True, True, 9, True),
}
NETGS = tuple(RESNET_NETGS)
NETDS = ('n_layers',)
_BN_BUFFER = 'num_batches_tracked'


def _strip_module_prefix(sd: dict) -> dict:
    """``nn.DataParallel`` saves keys under ``module.``."""
    if sd and all(k.startswith('module.') for k in sd):
        return {k[len('module.'):]: v for k, v in sd.items()}
    return sd


def state_dict_of(obj, path: str) -> dict:
    """The state dict in a loaded ``.pth`` (a bare one, as gan-compression saves)."""
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        raise ConversionError(f'{path}: expected a state dict (a dict of tensors, as gan-compression\'s '
                              f'torch.save(net.state_dict())), found {type(obj).__name__}')
    return _strip_module_prefix(obj)


# --------------------------------------------------------------------------- tables


def _conv(tk: str, ours: tuple, bias: bool, lay: str = 'conv') -> list:
    out = [(f'{tk}.weight', ('params', *ours, 'kernel'), lay)]
    return out + ([(f'{tk}.bias', ('params', *ours, 'bias'), 'same')] if bias else [])


def _bn(tk: str, ours: tuple) -> list:
    return [(f'{tk}.weight', ('params', *ours, 'scale'), 'same'), (f'{tk}.bias', ('params', *ours, 'bias'), 'same'),
            (f'{tk}.running_mean', ('batch_stats', *ours, 'mean'), 'same'),
            (f'{tk}.running_var', ('batch_stats', *ours, 'var'), 'same')]


def _norm(tk: str, ours: tuple, norm: str) -> list:
    return _bn(tk, ours) if norm == 'batch' else []


def resnet_table(gen: ResnetGenerator) -> list:
    n, bias = gen.n_blocks, gen.norm == 'instance'
    t = _conv('model.1', ('stem',), bias) + _norm('model.2', ('stem_norm', 'norm'), gen.norm)
    t += _conv('model.4', ('down1',), bias) + _norm('model.5', ('down1_norm', 'norm'), gen.norm)
    t += _conv('model.7', ('down2',), bias) + _norm('model.8', ('down2_norm', 'norm'), gen.norm)
    conv_idx, norm_idx = ((0, 4), (1, 5)) if gen.padding_type == 'zero' else ((1, 6), (2, 7))
    for b in range(n):
        tk = f'model.{10 + b}.conv_block'
        for j, (ci, ni) in enumerate(zip(conv_idx, norm_idx), start=1):
            ours = (f'block{b}', f'conv{j}')
            if gen.mobile:
                t += _conv(f'{tk}.{ci}.conv.0', (*ours, 'dw'), True) + _conv(f'{tk}.{ci}.conv.2', (*ours, 'pw'), True)
            else:
                t += _conv(f'{tk}.{ci}', ours, bias)
            t += _norm(f'{tk}.{ni}', (f'block{b}', f'norm{j}', 'norm'), gen.norm)
    t += _conv(f'model.{10 + n}', ('up1',), bias, 'conv_transpose') + _norm(f'model.{11 + n}', ('up1_norm', 'norm'),
                                                                            gen.norm)
    t += _conv(f'model.{13 + n}', ('up2',), bias, 'conv_transpose') + _norm(f'model.{14 + n}', ('up2_norm', 'norm'),
                                                                            gen.norm)
    return t + _conv(f'model.{17 + n}', ('head',), True)


def nlayer_table(disc: NLayerDiscriminator) -> list:
    bias = disc.norm == 'instance'
    t = _conv('model.0', ('conv0',), True)
    for i in range(1, disc.n_layers + 1):
        t += _conv(f'model.{2 + 3 * (i - 1)}', (f'conv{i}',), bias)
        t += _norm(f'model.{3 + 3 * (i - 1)}', (f'norm{i}',), disc.norm)
    return t + _conv(f'model.{2 + 3 * disc.n_layers}', ('out',), True)


def _bn_buffers(table: list) -> dict:
    """The step counters torch's BatchNorm2d stores beside its running statistics (written as 0)."""
    keys = sorted({tk.rsplit('.', 1)[0] for tk, path, _ in table if path[0] == 'batch_stats'})
    return {f'{k}.{_BN_BUFFER}': np.array(0, np.int64) for k in keys}


def _is_bn_counter(key: str) -> bool:
    return key.endswith('.' + _BN_BUFFER)


# --------------------------------------------------------------------------- inference from shapes


def _describe_keys(sd: dict) -> str:
    return ', '.join(sorted(sd)[:6]) + (' ...' if len(sd) > 6 else '')


def _resnet_kind(sd: dict) -> Optional[str]:
    if 'model.1.weight' not in sd or not any(k.startswith('model.10.conv_block') for k in sd):
        return None
    return 'mobile' if any('.conv_block.' in k and '.conv.0.' in k for k in sd) else 'dense'


def infer_resnet(sd: dict, netG: str, dropout_rate: float = 0., padding_type: Optional[str] = None
                 ) -> ResnetGenerator:
    mobile, clamp, n_expected, sub = RESNET_NETGS[netG]
    kind = _resnet_kind(sd)
    if kind is None:
        raise ConversionError(f'netG={netG!r}: this state dict is not a ResNet generator (keys: {_describe_keys(sd)})')
    if (kind == 'mobile') != mobile:
        names = [k for k, v in RESNET_NETGS.items() if v[0] == (kind == 'mobile')]
        raise ConversionError(f'netG={netG!r} expects a {"mobile" if mobile else "dense"} ResNet generator, but the '
                              f'state dict holds a {kind} one (its block convs are '
                              f'{"separable" if kind == "mobile" else "dense"}); pass netG= one of {names}')
    blocks = sorted({int(m.group(1)) for k in sd if (m := re.match(r'model\.(\d+)\.conv_block\.', k))})
    n = len(blocks)
    if blocks != list(range(10, 10 + n)) or (n_expected is not None and n != n_expected):
        raise ConversionError(f'netG={netG!r}: the state dict has residual blocks at model.{blocks[0]}..'
                              f'model.{blocks[-1]} ({n} blocks); expected {n_expected} at model.10..')
    zero = f'model.10.conv_block.0.{"conv.0." if mobile else ""}weight' in sd
    if padding_type is None:
        padding_type = 'zero' if zero else 'reflect'
    elif (padding_type == 'zero') != zero:
        raise ConversionError(f'padding_type={padding_type!r} does not fit the state dict, whose blocks '
                              f'{"have no" if zero else "have"} padding layers; pass padding_type='
                              f'{"zero" if zero else "reflect (or replicate)"}')
    c = 0 if zero else 1
    inner_key = (lambda b: f'model.{10 + b}.conv_block.{c}.conv.2.weight') if mobile else \
        (lambda b: f'model.{10 + b}.conv_block.{c}.weight')
    try:
        widths = ([sd['model.1.weight'].shape[0], sd['model.4.weight'].shape[0], sd['model.7.weight'].shape[0]]
                  + [sd[inner_key(b)].shape[0] for b in range(n)]
                  + [sd[f'model.{10 + n}.weight'].shape[1], sd[f'model.{13 + n}.weight'].shape[1]])
        input_nc, output_nc = sd['model.1.weight'].shape[1], sd[f'model.{17 + n}.weight'].shape[0]
    except KeyError as e:
        raise ConversionError(f'netG={netG!r}: the state dict lacks {e.args[0]} (keys: {_describe_keys(sd)})') from None
    norm = 'batch' if 'model.2.running_mean' in sd else 'instance'
    ngf = widths[0]
    full = rules.resnet_full_widths(ngf, n)
    if not sub and tuple(widths) != full:
        raise ConversionError(f'netG={netG!r}: the state dict\'s per-layer widths {widths} are not those of a full '
                              f'generator with ngf={ngf} ({list(full)}); a compressed sub-network loads with '
                              'netG="sub_mobile_resnet_9blocks"')
    return ResnetGenerator(input_nc=int(input_nc), output_nc=int(output_nc), ngf=int(ngf), n_blocks=n,
                           widths=None if tuple(widths) == full else tuple(int(w) for w in widths), mobile=mobile,
                           norm=norm, dropout_rate=dropout_rate, padding_type=padding_type, clamp_input=clamp)


def infer_nlayer(sd: dict) -> NLayerDiscriminator:
    if 'model.0.weight' not in sd or sd['model.0.weight'].ndim != 4:
        raise ConversionError(f'netD="n_layers": this state dict is not a PatchGAN discriminator (keys: '
                              f'{_describe_keys(sd)})')
    convs = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r'model\.(\d+)\.weight', k))
                   and sd[k].ndim == 4)
    n_layers = len(convs) - 2
    if n_layers < 1 or convs != [0] + [2 + 3 * i for i in range(n_layers + 1)]:
        raise ConversionError(f'netD="n_layers": conv layers at model.{convs}; a PatchGAN has model.0, model.2, '
                              'model.5, ... (every third index)')
    norm = 'batch' if 'model.3.running_mean' in sd else 'instance' if 'model.2.bias' in sd else 'none'
    w = sd['model.0.weight']
    return NLayerDiscriminator(input_nc=int(w.shape[1]), ndf=int(w.shape[0]), n_layers=n_layers, norm=norm)


# --------------------------------------------------------------------------- both directions


def _shapes(module, x):
    return jax.eval_shape(lambda: module.init({'params': jax.random.key(0)}, x))


def generator_from_state_dict(sd: dict, netG: str, dropout_rate: float = 0., padding_type: Optional[str] = None):
    """``(generator, variables)``; ``padding_type`` None: 'zero' or 'reflect', as the keys say."""
    if netG not in NETGS:
        raise ConversionError(f'netG={netG!r} is not supported; expected one of {list(NETGS)}')
    gen = infer_resnet(sd, netG, dropout_rate, padding_type)
    shapes = _shapes(gen, np.zeros((1, 16, 16, gen.input_nc), np.float32))
    variables = table_lib.from_state_dict(sd, resnet_table(gen), shapes, what=f'netG={netG!r}',
                                          ignore=_is_bn_counter)
    return gen, variables


def generator_to_state_dict(gen: ResnetGenerator, variables: dict) -> dict:
    table = resnet_table(gen)
    return table_lib.to_state_dict(variables, table, buffers=_bn_buffers(table))


def discriminator_from_state_dict(sd: dict, netD: str = 'n_layers'):
    if netD not in NETDS:
        raise ConversionError(f'netD={netD!r} is not supported; expected one of {list(NETDS)}')
    disc = infer_nlayer(sd)
    shapes = _shapes(disc, np.zeros((1, 64, 64, disc.input_nc), np.float32))
    return disc, table_lib.from_state_dict(sd, nlayer_table(disc), shapes, what=f'netD={netD!r}',
                                           ignore=_is_bn_counter)


def discriminator_to_state_dict(disc: NLayerDiscriminator, variables: dict) -> dict:
    table = nlayer_table(disc)
    return table_lib.to_state_dict(variables, table, buffers=_bn_buffers(table))
