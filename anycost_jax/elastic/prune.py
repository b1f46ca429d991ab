"""Pruning a generator to a narrower one by the L1 norm of its filters: GAN Compression's
"pre-distillation" initialization of a student from a trained teacher
(``utils/weight_transfer.load_pretrained_weight``).

Layer by layer in the network's order, each conv keeps the ``k`` output filters of largest L1 norm
(over the input channels it keeps and the kernel window), **ordered by that norm, largest first**
(the original's ``topk``), and the next layer keeps the matching input channels. The residual
stream's channels are chosen once, by the second downsampling conv, and every block writes back
into them (its second conv's outputs are those indices, not a new choice); the head keeps all its
outputs. Parameters are our NHWC layout (kernels ``[kh, kw, in, out]``, depthwise ``[kh, kw, 1, C]``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    if k > len(scores):
        raise ValueError(f'cannot keep {k} of {len(scores)} channels: the narrower network must not be wider')
    return np.argsort(-scores, kind='stable')[:k]


def _conv(p: dict, in_idx: np.ndarray, width: Optional[int] = None, out_idx: Optional[np.ndarray] = None):
    """One conv (``kernel`` [kh, kw, in, out], optional ``bias``): keep inputs ``in_idx`` and the ``width``
    outputs of largest L1 norm (or exactly ``out_idx``; neither: all). Returns (params, output indices)."""
    kernel = np.asarray(p['kernel'])[:, :, in_idx, :]
    if out_idx is None:
        out_idx = np.arange(kernel.shape[-1]) if width is None else _topk(np.abs(kernel).sum((0, 1, 2)), width)
    out = {'kernel': kernel[..., out_idx]}
    if 'bias' in p:
        out['bias'] = np.asarray(p['bias'])[out_idx]
    return out, out_idx


def _separable(p: dict, in_idx, width=None, out_idx=None):
    dw = {'kernel': np.asarray(p['dw']['kernel'])[..., in_idx], 'bias': np.asarray(p['dw']['bias'])[in_idx]}
    pw, out_idx = _conv(p['pw'], in_idx, width, out_idx)
    return {'dw': dw, 'pw': pw}, out_idx


def l1_prune_resnet(params: dict, widths, n_blocks: int, mobile: bool) -> dict:
    """The parameters of a ResNet / MobileNet-ResNet generator (``params``, its 'params' collection) cut
    to per-layer ``widths`` (``elastic.img2img.resnet_full_widths(ngf, n_blocks)`` of the narrower
    one) as ``load_pretrained_weight`` does. Instance norms have no parameters to carry; a batch-norm
    generator is refused (the original's transfer does not carry running statistics either)."""
    if any('norm' in k and v for k, v in params.items() if isinstance(v, dict)):
        raise ValueError('L1 pruning carries conv filters only; this generator has normalization parameters '
                         '(batch norm?), which the original pre-distillation does not transfer')
    out, idx = {}, np.arange(3)
    for i, name in enumerate(('stem', 'down1', 'down2')):
        out[name], idx = _conv(params[name], idx, widths[i])
    residual = idx
    conv = _separable if mobile else _conv
    for b in range(n_blocks):
        p = params[f'block{b}']
        c1, inner = conv(p['conv1'], residual, widths[3 + b])
        c2, _ = conv(p['conv2'], inner, out_idx=residual)
        out[f'block{b}'] = {**{k: v for k, v in p.items() if k not in ('conv1', 'conv2')}, 'conv1': c1, 'conv2': c2}
    idx = residual
    for j, name in enumerate(('up1', 'up2')):
        out[name], idx = _conv(params[name], idx, widths[3 + n_blocks + j])
    out['head'], _ = _conv(params['head'], idx)
    for k, v in params.items():  # parameter-free entries (e.g. empty norm scopes) stay as they are
        out.setdefault(k, v)
    return out
