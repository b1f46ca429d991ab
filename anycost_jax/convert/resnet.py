"""torchvision ResNet-50 state dicts <-> our encoder and attribute predictor variables.

The original's encoder checkpoints (``encoder_<config>.pt``) and attribute predictor
(``attribute_predictor.pt``) hold ``{'state_dict': ...}`` of a torchvision ``resnet50`` (the
encoder adds ``mean_latent``), possibly with DataParallel's ``module.`` prefix on every key.
One table per model (see :mod:`anycost_jax.convert.table`) drives both directions.
BatchNorm ``weight/bias`` become ``params`` ``scale/bias`` and ``running_mean/running_var`` become
``batch_stats`` ``mean/var``; ``num_batches_tracked`` is ignored on import and written as 0 on
export (torch only reads it when ``momentum=None``). The architecture is read off the shapes:
blocks per stage, stem width, ``n_style`` / ``style_dim`` (fc rows / ``mean_latent`` length),
or the number of attributes (fc rows / 2).
"""
from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np

from anycost_jax.convert import table as table_lib
from anycost_jax.convert.table import ConversionError
from anycost_jax.models.encoder import INPUT_SIZE, AttributePredictor, ResNet50Encoder

ORIGINAL_URLS = {
    'encoder': 'https://hanlab18.mit.edu/projects/anycost-gan/files/encoder_{config}.pt',
    'attribute-predictor': 'https://hanlab18.mit.edu/projects/anycost-gan/files/attribute_predictor.pt',
}
_BN_LEAVES = (('weight', 'params', 'scale'), ('bias', 'params', 'bias'), ('running_mean', 'batch_stats', 'mean'),
              ('running_var', 'batch_stats', 'var'))
_COUNTER = '.num_batches_tracked'


# --------------------------------------------------------------------------- tables


def _conv_bn(tk_conv: str, tk_bn: str, ours: tuple, conv: str, bn: str) -> list:
    t = [(f'{tk_conv}.weight', ('params',) + ours + (conv, 'kernel'), 'conv')]
    return t + [(f'{tk_bn}.{tn}', (col,) + ours + (bn, name), 'same') for tn, col, name in _BN_LEAVES]


def resnet_table(stage_sizes, prefix: tuple = ('resnet',)) -> list:
    """``(torch key, our path, layout)`` of a torchvision ResNet (bottleneck) with an ``fc`` head."""
    t = _conv_bn('conv1', 'bn1', prefix, 'conv1', 'bn1')
    for i, n in enumerate(stage_sizes):
        for j in range(n):
            tk, ours = f'layer{i + 1}.{j}', prefix + (f'layer{i + 1}_{j}',)
            for c in (1, 2, 3):
                t += _conv_bn(f'{tk}.conv{c}', f'{tk}.bn{c}', ours, f'conv{c}', f'bn{c}')
            if j == 0:
                t += _conv_bn(f'{tk}.downsample.0', f'{tk}.downsample.1', ours, 'downsample_conv', 'downsample_bn')
    return t + [('fc.weight', ('params',) + prefix + ('fc', 'kernel'), 'linear'),
                ('fc.bias', ('params',) + prefix + ('fc', 'bias'), 'same')]


def encoder_table(enc: ResNet50Encoder) -> list:
    return resnet_table(enc.stage_sizes) + [('mean_latent', ('stats', 'mean_latent'), 'same')]


def predictor_table(pred: AttributePredictor) -> list:
    return resnet_table(pred.stage_sizes)


def _counters(table: list) -> list[str]:
    return [tk[:-len('.running_mean')] + _COUNTER for tk, _, _ in table if tk.endswith('.running_mean')]


# --------------------------------------------------------------------------- reading


def pick_state_dict(obj: Any, key: str, path: str) -> dict:
    """The state dict under ``key`` of a checkpoint, or a bare one; ``module.`` prefixes removed."""
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
        obj = obj[key]
    if not isinstance(obj, dict) or not any(str(k).endswith('fc.weight') for k in obj):
        keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise ConversionError(f'{path}: expected an original ResNet-50 checkpoint with key {key!r} (or a bare state '
                              f'dict) holding "fc.weight"; found {keys}')
    if all(k.startswith('module.') for k in obj):  # saved from DataParallel / DistributedDataParallel
        obj = {k[len('module.'):]: v for k, v in obj.items()}
    return obj


def infer_trunk(sd: dict, what: str) -> dict:
    """``stage_sizes`` and ``width`` of the torchvision ResNet a state dict holds."""
    for k in ('conv1.weight', 'fc.weight', 'layer1.0.conv1.weight'):
        if k not in sd:
            sample = ', '.join(sorted(sd)[:6]) or 'nothing'
            raise ConversionError(f'expected the state dict of {what} (a torchvision ResNet-50); key {k!r} is '
                                  f'missing (found: {sample}, ...)')
    blocks: dict[int, set] = {}
    for k in sd:
        m = re.match(r'layer(\d+)\.(\d+)\.', k)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    stages = sorted(blocks)
    if stages != list(range(1, len(stages) + 1)) or any(blocks[s] != set(range(len(blocks[s]))) for s in stages):
        raise ConversionError(f'{what}: the ResNet stages/blocks in the state dict are not contiguous: '
                              f'{ {s: sorted(b) for s, b in blocks.items()} }')
    return {'stage_sizes': tuple(len(blocks[s]) for s in stages), 'width': int(np.shape(sd['conv1.weight'])[0])}


def _from_state_dict(module, sd: dict, table: list, init_input) -> dict:
    """Strict conversion: every table key present, nothing else but BatchNorm step counters."""
    shapes = jax.eval_shape(lambda x: module.init({'params': jax.random.key(0)}, x), init_input)
    name = type(module).__name__
    return table_lib.from_state_dict(sd, table, shapes, what=f'{name}(stage_sizes={tuple(module.stage_sizes)})',
                                     ignore=lambda k: k.endswith(_COUNTER), shape_context=f' for {name}')


def _init_input(size: int = INPUT_SIZE):
    return jax.ShapeDtypeStruct((1, size, size, 3), np.float32)


def encoder_from_state_dict(sd: dict, enc: ResNet50Encoder | None = None):
    """``(ResNet50Encoder, variables)`` from the original encoder's state dict."""
    if enc is None:
        trunk = infer_trunk(sd, 'the original ResNet50Encoder')
        if 'mean_latent' not in sd:
            raise ConversionError("expected the original ResNet50Encoder's state dict: key 'mean_latent' is missing "
                                  "(an attribute predictor? use convert.load_attribute_predictor)")
        style_dim = int(np.shape(sd['mean_latent'])[0])
        rows = int(np.shape(sd['fc.weight'])[0])
        if rows % style_dim:
            raise ConversionError(f'fc.weight has {rows} rows, not a multiple of style_dim={style_dim} '
                                  f'(the length of mean_latent)')
        enc = ResNet50Encoder(n_style=rows // style_dim, style_dim=style_dim, **trunk)
    return enc, _from_state_dict(enc, sd, encoder_table(enc), _init_input(enc.input_size))


def predictor_from_state_dict(sd: dict, pred: AttributePredictor | None = None):
    """``(AttributePredictor, variables)`` from the original attribute predictor's state dict."""
    if pred is None:
        trunk = infer_trunk(sd, 'the original attribute predictor')
        rows = int(np.shape(sd['fc.weight'])[0])
        if rows % 2:
            raise ConversionError(f'fc.weight has {rows} rows; an attribute predictor has 2 logits per attribute')
        pred = AttributePredictor(n_attributes=rows // 2, **trunk)
    return pred, _from_state_dict(pred, sd, predictor_table(pred), _init_input())


# --------------------------------------------------------------------------- writing


def _to_state_dict(variables: dict, table: list) -> dict:
    return table_lib.to_state_dict(variables, table, buffers={k: np.array(0, np.int64) for k in _counters(table)},
                                   dtype=np.float32, hint='; pass the full variables (params, batch_stats and, for '
                                                          'an encoder, stats)')


def encoder_to_state_dict(enc: ResNet50Encoder, variables: dict) -> dict:
    """The original ``ResNet50Encoder.state_dict()`` (numpy values) of our encoder."""
    if enc.input_size != INPUT_SIZE:
        raise ConversionError(f'the original encoder only accepts {INPUT_SIZE}x{INPUT_SIZE} images; this one was '
                              f'built for {enc.input_size}')
    return _to_state_dict(variables, encoder_table(enc))


def predictor_to_state_dict(pred: AttributePredictor, variables: dict) -> dict:
    return _to_state_dict(variables, predictor_table(pred))


def state_dict_shapes(module) -> dict[str, tuple[int, ...]]:
    """``{torch key: torch shape}`` of the float tensors the original's state dict holds for ``module``."""
    size = module.input_size if isinstance(module, ResNet50Encoder) else INPUT_SIZE
    shapes = jax.eval_shape(lambda x: module.init({'params': jax.random.key(0)}, x), _init_input(size))
    table = encoder_table(module) if isinstance(module, ResNet50Encoder) else predictor_table(module)
    return table_lib.torch_shapes(table, shapes)
