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

from anycost_jax import modeldir
from anycost_jax.convert import table as table_lib
from anycost_jax.convert.table import ConversionError
from anycost_jax.elastic import img2img as rules
from anycost_jax.models.img2img.discriminators import NLayerDiscriminator
from anycost_jax.models.img2img.gs import GSGenerator
from anycost_jax.models.img2img.resnet import ResnetGenerator
from anycost_jax.models.img2img.resnet import MobileResnetGenerator
from anycost_jax.models.img2img.spade import MobileSPADEGenerator, MultiscaleDiscriminator, SPADEGenerator
from anycost_jax.models.img2img.unet import UnetGenerator
from anycost_jax.models.vgg import VGG19, VGG19_CONV_INDICES

GENERATOR_CLASSES = (ResnetGenerator, MobileResnetGenerator, SPADEGenerator, MobileSPADEGenerator, UnetGenerator,
                     GSGenerator)  # GAN Slimming's (its .pth files: convert.gs)
DISCRIMINATOR_CLASSES = (NLayerDiscriminator, MultiscaleDiscriminator)
for _cls in GENERATOR_CLASSES + DISCRIMINATOR_CLASSES:  # our model directories can hold them
    modeldir.register(_cls)

# netG -> (mobile, clamp_input, blocks (None: any), sub-network: widths free)
RESNET_NETGS = {
    'resnet_9blocks': (False, True, 9, False),
    'resnet_6blocks': (False, True, 6, False),
    'mobile_resnet_9blocks': (True, False, 9, False),
    'super_mobile_resnet_9blocks': (True, True, 9, False),
    'sub_mobile_resnet_9blocks': (True, True, 9, True),
    'legacy_sub_mobile_resnet_9blocks': (True, True, 9, True),
}
# netG -> (mobile, sub-network: widths free)
SPADE_NETGS = {'spade': (False, False), 'mobile_spade': (True, False), 'super_mobile_spade': (True, False),
               'sub_mobile_spade': (True, True)}
UNET_NETGS = {'unet_256': 8, 'unet_128': 7}  # netG -> num_downs
NETGS = tuple(RESNET_NETGS) + tuple(SPADE_NETGS) + tuple(UNET_NETGS)
NETDS = ('n_layers', 'multi_scale')
SPADE_REQUIRED = ('crop_size', 'num_upsampling_layers')  # the weights do not fix them
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


def _spectral_conv(tk: str, ours: tuple, bias: bool) -> list:
    """torch's spectral_norm: ``weight_orig`` (the unnormalized kernel) and the power-iteration vectors."""
    out = [(f'{tk}.weight_orig', ('params', *ours, 'kernel'), 'conv'),
           (f'{tk}.weight_u', ('spectral', *ours, 'u'), 'same'), (f'{tk}.weight_v', ('spectral', *ours, 'v'), 'same')]
    return out + ([(f'{tk}.bias', ('params', *ours, 'bias'), 'same')] if bias else [])


def _spade_norm(tk: str, ours: tuple, gen: SPADEGenerator) -> list:
    t = []
    if gen.param_free_norm == 'batch':
        t += [(f'{tk}.param_free_norm.running_mean', ('batch_stats', *ours, 'param_free_norm', 'mean'), 'same'),
              (f'{tk}.param_free_norm.running_var', ('batch_stats', *ours, 'param_free_norm', 'var'), 'same')]
    t += _conv(f'{tk}.mlp_shared.0', (*ours, 'mlp_shared'), True)
    for part in ('mlp_gamma', 'mlp_beta'):
        if gen.mobile:
            t += _conv(f'{tk}.{part}.conv.0', (*ours, part, 'dw'), True)
            t += _conv(f'{tk}.{part}.conv.2', (*ours, part, 'pw'), True)
        else:
            t += _conv(f'{tk}.{part}', (*ours, part), True)
    return t


def spade_table(gen: SPADEGenerator) -> list:
    t = _conv('fc', ('fc',), True)
    stats_in = 16 * gen.ngf
    for name, out in zip(gen.blocks, rules.spade_block_out(gen.ngf, gen.num_upsampling_layers)):
        learned = stats_in != out
        conv = (lambda tk, ours, bias: _spectral_conv(tk, ours, bias)) if gen.spectral else _conv
        for c in ('conv_0', 'conv_1') + (('conv_s',) if learned else ()):
            t += conv(f'{name}.{c}', (name, c), c != 'conv_s')
        for n in ('norm_0', 'norm_1') + (('norm_s',) if learned else ()):
            t += _spade_norm(f'{name}.{n}', (name, n), gen)
        stats_in = out
    return t + _conv('conv_img', ('conv_img',), True)


def _unet_prefix(i: int) -> str:
    return 'model.model' if i == 0 else 'model.model.1' + '.model.3' * (i - 1) + '.model'


def unet_table(gen: UnetGenerator) -> list:
    n, bias = gen.num_downs, gen.norm == 'instance'
    t = _conv('model.model.0', ('down0',), bias) + _conv('model.model.3', ('up0',), True, 'conv_transpose')
    for i in range(1, n):
        p = _unet_prefix(i)
        t += _conv(f'{p}.1', (f'down{i}',), bias)
        if i < n - 1:
            t += _norm(f'{p}.2', (f'down_norm{i}',), gen.norm) if gen.norm == 'batch' else []
            up, up_norm = 5, 6
        else:
            up, up_norm = 3, 4
        t += _conv(f'{p}.{up}', (f'up{i}',), bias, 'conv_transpose')
        t += _norm(f'{p}.{up_norm}', (f'up_norm{i}',), gen.norm) if gen.norm == 'batch' else []
    return t


def multiscale_table(disc: MultiscaleDiscriminator) -> list:
    t = []
    for i in range(disc.num_D):
        d = f'discriminator_{i}'
        t += _conv(f'{d}.model0.0', (d, 'model0'), True)
        for n in range(1, disc.n_layers):
            if disc.norm == 'spectralinstance':
                t += _spectral_conv(f'{d}.model{n}.0.0', (d, f'model{n}'), False)
            else:
                t += _conv(f'{d}.model{n}.0.0', (d, f'model{n}'), False)
        t += _conv(f'{d}.model{disc.n_layers}.0', (d, f'model{disc.n_layers}'), True)
    return t


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


def infer_spade(sd: dict, netG: str, crop_size: Optional[int] = None, num_upsampling_layers: Optional[str] = None,
                aspect_ratio: float = 1.0) -> SPADEGenerator:
    mobile, sub = SPADE_NETGS[netG]
    if 'fc.weight' not in sd or 'head_0.conv_0.weight' not in sd and 'head_0.conv_0.weight_orig' not in sd:
        raise ConversionError(f'netG={netG!r}: this state dict is not a SPADE generator (keys: {_describe_keys(sd)})')
    missing = [k for k, v in (('crop_size', crop_size), ('num_upsampling_layers', num_upsampling_layers)) if v is None]
    if missing:
        raise ConversionError(f'netG={netG!r}: pass {", ".join(missing)} (the weights do not fix '
                              f'{"them" if len(missing) > 1 else "it"}): the training options, e.g. '
                              'crop_size=512, aspect_ratio=2.0, num_upsampling_layers="more" for GauGAN on Cityscapes')
    is_mobile = 'head_0.norm_0.mlp_gamma.conv.0.weight' in sd
    if is_mobile != mobile:
        names = [k for k, v in SPADE_NETGS.items() if v[0] == is_mobile]
        raise ConversionError(f'netG={netG!r} expects a {"mobile" if mobile else "dense"} SPADE generator, but the '
                              f'state dict holds a {"mobile" if is_mobile else "dense"} one; pass netG= one of {names}')
    if ('up_4.conv_0.weight' in sd or 'up_4.conv_0.weight_orig' in sd) != (num_upsampling_layers == 'most'):
        raise ConversionError(f'num_upsampling_layers={num_upsampling_layers!r} does not fit the state dict, which '
                              f'{"has" if "up_4.conv_0.weight" in sd else "has no"} block up_4 (only "most" has it)')
    spectral = 'head_0.conv_0.weight_orig' in sd
    weight = (lambda k: sd[f'{k}.weight_orig']) if spectral else (lambda k: sd[f'{k}.weight'])
    label_nc, fc = sd['fc.weight'].shape[1], sd['fc.weight'].shape[0]
    norm = 'batch' if 'head_0.norm_0.param_free_norm.running_mean' in sd else 'instance'
    ngf = (sd['head_0.norm_0.param_free_norm.running_mean'].shape[0] if norm == 'batch' else fc) // 16
    blocks = rules.spade_blocks(num_upsampling_layers)
    try:
        widths = [fc]
        for b in blocks:
            widths += [weight(f'{b}.conv_0').shape[0], sd[f'{b}.norm_0.mlp_shared.0.weight'].shape[0]]
    except KeyError as e:
        raise ConversionError(f'netG={netG!r}: the state dict lacks {e.args[0]} (keys: {_describe_keys(sd)})') from None
    full = rules.spade_full_widths(ngf, num_upsampling_layers)
    if not sub and tuple(widths) != full:
        raise ConversionError(f'netG={netG!r}: the state dict\'s per-layer widths {widths} are not those of a full '
                              f'generator with ngf={ngf} ({list(full)}); a compressed sub-network loads with '
                              'netG="sub_mobile_spade"')
    return SPADEGenerator(label_nc=int(label_nc), crop_size=int(crop_size), ngf=int(ngf), aspect_ratio=aspect_ratio,
                          num_upsampling_layers=num_upsampling_layers, mobile=mobile, spectral=spectral,
                          param_free_norm=norm,
                          widths=None if tuple(widths) == full else tuple(int(w) for w in widths))


def infer_unet(sd: dict, netG: str, dropout_rate: float = 0.) -> UnetGenerator:
    n = UNET_NETGS[netG]
    if 'model.model.0.weight' not in sd or 'model.model.1.model.1.weight' not in sd:
        raise ConversionError(f'netG={netG!r}: this state dict is not a U-Net generator (keys: {_describe_keys(sd)})')
    depth = 1  # levels: the outermost one, then each whose down conv is in the state dict
    while f'{_unet_prefix(depth)}.1.weight' in sd:
        depth += 1
    if depth != n:
        raise ConversionError(f'netG={netG!r} has {n} levels, the state dict {depth}; pass '
                              f'netG={next((k for k, v in UNET_NETGS.items() if v == depth), "unet_<size>")!r}')
    w0 = sd['model.model.0.weight']
    norm = 'batch' if 'model.model.1.model.2.running_mean' in sd else 'instance'
    return UnetGenerator(input_nc=int(w0.shape[1]), output_nc=int(sd['model.model.3.weight'].shape[1]),
                         ngf=int(w0.shape[0]), num_downs=n, norm=norm, dropout_rate=dropout_rate)


def infer_multiscale(sd: dict) -> MultiscaleDiscriminator:
    num_d = len({k.split('.')[0] for k in sd if re.match(r'discriminator_\d+\.', k)})
    if not num_d or 'discriminator_0.model0.0.weight' not in sd:
        raise ConversionError(f'netD="multi_scale": this state dict is not a multi-scale discriminator (keys: '
                              f'{_describe_keys(sd)})')
    n_layers = len({k.split('.')[1] for k in sd if k.startswith('discriminator_0.model')}) - 1
    spectral = 'discriminator_0.model1.0.0.weight_orig' in sd
    w = sd['discriminator_0.model0.0.weight']
    return MultiscaleDiscriminator(input_nc=int(w.shape[1]), ndf=int(w.shape[0]), n_layers=n_layers, num_D=num_d,
                                   norm='spectralinstance' if spectral else 'instance')


# --------------------------------------------------------------------------- both directions


def _shapes(module, x):
    return jax.eval_shape(lambda: module.init({'params': jax.random.key(0)}, x))


HPARAMS = {'resnet': ('dropout_rate', 'padding_type'), 'spade': ('crop_size', 'num_upsampling_layers', 'aspect_ratio'),
           'unet': ('dropout_rate',)}


def generator_hparams(netG: str) -> tuple[str, ...]:
    """The keyword arguments ``netG`` takes (what its weights do not fix)."""
    return HPARAMS['spade' if netG in SPADE_NETGS else 'unet' if netG in UNET_NETGS else 'resnet']


def generator_from_state_dict(sd: dict, netG: str, **hparams):
    """``(generator, variables)``. ResNet ``hparams``: ``dropout_rate`` (0), ``padding_type`` (None:
    'zero' or 'reflect', as the keys say); SPADE: ``crop_size`` and ``num_upsampling_layers``
    (required), ``aspect_ratio`` (1.0)."""
    if netG not in NETGS:
        raise ConversionError(f'netG={netG!r} is not supported; expected one of {list(NETGS)}')
    unknown = sorted(set(hparams) - set(generator_hparams(netG)))
    if unknown:
        raise ConversionError(f'unknown hyper-parameters {unknown} for netG={netG!r}; it takes '
                              f'{list(generator_hparams(netG))} (the rest is read from the weights)')
    if netG in SPADE_NETGS:
        gen = infer_spade(sd, netG, **hparams)
        example, table = np.zeros((1, *gen.output_size, gen.label_nc), np.float32), spade_table(gen)
    elif netG in UNET_NETGS:
        gen = infer_unet(sd, netG, **hparams)
        side = 2 ** gen.num_downs
        example, table = np.zeros((1, side, side, gen.input_nc), np.float32), unet_table(gen)
    else:
        gen = infer_resnet(sd, netG, **hparams)
        example, table = np.zeros((1, 16, 16, gen.input_nc), np.float32), resnet_table(gen)
    variables = table_lib.from_state_dict(sd, table, _shapes(gen, example), what=f'netG={netG!r}',
                                          ignore=_is_bn_counter)
    return gen, variables


def _table_of(module) -> list:
    if isinstance(module, SPADEGenerator):
        return spade_table(module)
    if isinstance(module, ResnetGenerator):
        return resnet_table(module)
    if isinstance(module, UnetGenerator):
        return unet_table(module)
    if isinstance(module, MultiscaleDiscriminator):
        return multiscale_table(module)
    if isinstance(module, NLayerDiscriminator):
        return nlayer_table(module)
    raise ConversionError(f'no gan-compression format for {type(module).__name__}')


def generator_to_state_dict(gen, variables: dict) -> dict:
    table = _table_of(gen)
    return table_lib.to_state_dict(variables, table, buffers=_bn_buffers(table))


def discriminator_from_state_dict(sd: dict, netD: str = 'n_layers'):
    if netD not in NETDS:
        raise ConversionError(f'netD={netD!r} is not supported; expected one of {list(NETDS)}')
    disc = infer_nlayer(sd) if netD == 'n_layers' else infer_multiscale(sd)
    shapes = _shapes(disc, np.zeros((1, 64, 64, disc.input_nc), np.float32))
    return disc, table_lib.from_state_dict(sd, _table_of(disc), shapes, what=f'netD={netD!r}',
                                           ignore=_is_bn_counter)


def discriminator_to_state_dict(disc, variables: dict) -> dict:
    return generator_to_state_dict(disc, variables)


# --------------------------------------------------------------------------- VGG19 (the perceptual loss)


def vgg19_table() -> list:
    t = []
    for i in VGG19_CONV_INDICES:
        t += _conv(f'features.{i}', (f'conv{i}',), True)
    return t


def _beyond_relu5_1(key: str) -> bool:
    """torchvision's vgg19 keys the loss does not use: the convs after relu5_1 and the classifier."""
    if key.startswith('classifier.'):
        return True
    m = re.match(r'features\.(\d+)\.', key)
    return bool(m) and int(m.group(1)) > VGG19_CONV_INDICES[-1]


def vgg19_from_state_dict(sd: dict):
    """``(VGG19(), variables)`` from torchvision's ``vgg19`` state dict (e.g. ``vgg19-dcbb9e9d.pth``)."""
    if 'features.0.weight' not in sd or tuple(sd['features.0.weight'].shape) != (64, 3, 3, 3):
        raise ConversionError(f'expected torchvision\'s vgg19 state dict (features.0.weight of shape (64, 3, 3, 3)); '
                              f'keys: {_describe_keys(sd)}')
    vgg = VGG19()
    shapes = _shapes(vgg, np.zeros((1, 32, 32, 3), np.float32))
    return vgg, table_lib.from_state_dict(sd, vgg19_table(), shapes, what='torchvision vgg19',
                                          ignore=_beyond_relu5_1)
