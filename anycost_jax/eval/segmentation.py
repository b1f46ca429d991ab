"""Cityscapes mIoU of generated images, as GAN Compression computes it (``metric/cityscapes_mIoU.py``).

Per generated image (NHWC in [-1, 1], e.g. a pix2pix or GauGAN output for a Cityscapes label map):

1. to uint8 by truncation (``util.tensor2im``: ``uint8(clip((x + 1) / 2 * 255, 0, 255))``), then
   ``/ 255`` and the DRN's Cityscapes normalization (:data:`MEAN`, :data:`STD`);
2. DRN-D-105 (:class:`anycost_jax.models.drn.DRNSeg`): log-probabilities of the 19 classes at the
   image's size;
3. the *log-probabilities* (not the logits: the original resizes ``model(image)[0]``) resized to the
   ground truth's size, 2048x1024 for Cityscapes, each class as a float image with PIL's bilinear
   filter (:func:`pil_bilinear_weights`: PIL's own taps, which antialias when shrinking);
4. argmax over the classes, and a confusion histogram ``hist[label, prediction]`` against the gtFine
   *train ids* (0..18; any other value, 255 for the ignored classes, is left out).

The histograms of all images are summed; the IoU of class c is ``hist[c, c] / (row c + column c -
hist[c, c])`` (NaN for a class neither present nor predicted), and mIoU is their NaN-mean in percent.
The original rounds it to 2 decimals when it returns; :func:`miou_of_hist` does not (the search
compares candidates closer than that).

Steps 1-4 run as one compiled program per (image size, label size) on the device; only the
19 x 19 histogram comes back. :func:`miou_fitness` / :func:`config_fitness` make the search's fitness
(lower is better: minus the mIoU).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Iterable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from anycost_jax.eval.img2img import to_uint8  # the upstream's tensor2im, shared with FID

MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)
LABEL_SIZE = (1024, 2048)  # (height, width) of Cityscapes' gtFine maps, what the original resizes to
N_CLASSES = 19


def normalize(images_uint8):
    """The DRN's input: ``uint8 / 255``, minus the Cityscapes mean, over its std (float32, as torch)."""
    x = jnp.asarray(images_uint8, jnp.float32) / 255
    return (x - jnp.asarray(MEAN, jnp.float32)) / jnp.asarray(STD, jnp.float32)


@functools.lru_cache(maxsize=32)
def pil_bilinear_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices [n_out, k] int32, weights [n_out, k] float32)``: the taps of PIL's ``BILINEAR`` resize of
    one axis from ``n_in`` to ``n_out`` (``precompute_coeffs`` of Pillow's Resample.c: a triangle
    filter widened by the scale when shrinking, taps clipped to the image and renormalized).
    Unused taps have weight 0 (and index 0)."""
    scale = n_in / n_out
    filterscale = max(scale, 1.)
    support = filterscale  # the triangle's support (1) times filterscale
    k = int(math.ceil(support)) * 2 + 1
    idx, w = np.zeros((n_out, k), np.int32), np.zeros((n_out, k), np.float64)
    for j in range(n_out):
        center = (j + .5) * scale
        lo = max(int(center - support + .5), 0)
        hi = min(int(center + support + .5), n_in)
        taps = np.arange(lo, hi)
        ww = np.maximum(0., 1 - np.abs((taps - center + .5) / filterscale))
        if ww.sum():
            ww = ww / ww.sum()
        idx[j, :len(taps)], w[j, :len(taps)] = taps, ww
    return idx, w.astype(np.float32)


def _resize_axis(x, axis: int, n_out: int):
    n_in = x.shape[axis]
    if n_in == n_out:
        return x
    idx, w = pil_bilinear_weights(n_in, n_out)
    taps = jnp.take(x, jnp.asarray(idx.reshape(-1)), axis=axis)
    shape = list(x.shape)
    shape[axis:axis + 1] = [n_out, idx.shape[1]]
    taps = taps.reshape(shape)
    wshape = [1] * len(shape)
    wshape[axis], wshape[axis + 1] = idx.shape
    return jnp.sum(taps * jnp.asarray(w).reshape(wshape), axis=axis + 1)


def resize_pil_bilinear(x, size: tuple[int, int]):
    """``[..., H, W]`` float maps -> ``[..., h, w]`` as PIL's ``Image.fromarray(map).resize((w, h),
    BILINEAR)`` per map: the horizontal pass first, then the vertical one, as Pillow."""
    x = jnp.asarray(x, jnp.float32)
    return _resize_axis(_resize_axis(x, x.ndim - 1, size[1]), x.ndim - 2, size[0])


def confusion(pred, label, n_classes: int = N_CLASSES):
    """``hist[label, pred]`` (int32 [n, n]) of one prediction against its ground truth, labels outside
    ``[0, n)`` ignored (the original's ``fast_hist``)."""
    label = jnp.asarray(label).astype(jnp.int32)
    valid = (label >= 0) & (label < n_classes)
    index = jnp.where(valid, label * n_classes + pred.astype(jnp.int32), 0)
    return jnp.bincount(index.reshape(-1), weights=valid.reshape(-1).astype(jnp.int32),
                        length=n_classes * n_classes).astype(jnp.int32).reshape(n_classes, n_classes)


def miou_of_hist(hist) -> tuple[float, np.ndarray]:
    """``(mIoU in percent, IoU per class in percent)`` of a summed confusion histogram."""
    hist = np.asarray(hist, np.float64)
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist)) * 100
    if np.all(np.isnan(iou)):
        raise ValueError('mIoU: no pixel with a valid train id (all ignored); are these the gtFine train ids?')
    return float(np.nanmean(iou)), iou


class Segmenter:
    """The DRN of the protocol: ``histogram(images, labels)`` -> the summed confusion histogram.

    Args:
      model, variables: :class:`~anycost_jax.models.drn.DRNSeg` and its variables
        (:func:`anycost_jax.convert.drn.load_drn`).
      n_classes: the classes compared (the DRN's, 19 for Cityscapes).
    """

    def __init__(self, model, variables, n_classes: Optional[int] = None):
        self.model, self.variables = model, variables
        self.n_classes = n_classes or model.classes

    def log_probs(self, images):
        """Generated images NHWC in [-1, 1] -> the DRN's log-probabilities [N, H', W', classes]."""
        return self._log_probs(self.variables, jnp.asarray(images, jnp.float32))

    @functools.cached_property
    def _log_probs(self):
        return jax.jit(lambda v, x: self.model.apply(v, normalize(to_uint8(x))))

    @functools.cached_property
    def _hist(self):
        n = self.n_classes

        def one(v, image_and_label):
            image, label = image_and_label
            logp = self.model.apply(v, normalize(to_uint8(image[None])))[0]      # [h, w, C]
            maps = resize_pil_bilinear(jnp.moveaxis(logp, -1, 0), label.shape)    # [C, H, W]
            return confusion(jnp.argmax(maps, axis=0), label, n)

        # one image at a time: the resized maps of a 2048x1024 label are 160 MB each
        return jax.jit(lambda v, x, y: jnp.sum(jax.lax.map(functools.partial(one, v), (x, y)), axis=0))

    def histogram(self, images, labels) -> np.ndarray:
        """``hist[label, pred]`` (int64 [C, C]) summed over a batch: images NHWC in [-1, 1], labels
        [N, H, W] train ids at the ground truth's size (any size; Cityscapes' 1024 x 2048)."""
        images, labels = np.asarray(images, np.float32), np.asarray(labels)
        if images.ndim != 4 or labels.ndim != 3 or len(images) != len(labels):
            raise ValueError(f'expected images [N, H, W, 3] and train-id maps [N, H, W], got {images.shape} and '
                             f'{labels.shape}')
        return np.asarray(self._hist(self.variables, images, labels.astype(np.int32)), np.int64)


def miou(generate: Callable, batches: Iterable[tuple], segmenter: Segmenter) -> dict:
    """``{'miou': percent, 'iou': per-class percent, 'n_images'}`` of ``generate(x)`` over
    ``(x, train-id maps)`` batches."""
    hist, n = 0, 0
    for x, labels in batches:
        out = np.asarray(generate(x))
        hist = hist + segmenter.histogram(out, labels)
        n += len(out)
    if not n:
        raise ValueError('mIoU: no held-out images')
    value, iou = miou_of_hist(hist)
    return {'miou': value, 'iou': iou, 'n_images': n}


def miou_fitness(generate_for: Callable, batches: Sequence[tuple], segmenter: Segmenter) -> Callable:
    """A search fitness: ``fitness(candidates) -> [-mIoU]`` (lower is better), where
    ``generate_for(candidate)`` returns ``x -> images`` of that sub-generator and ``batches`` are held
    ``(x, train-id maps)`` (every candidate sees the same images)."""
    batches = list(batches)

    def fitness(candidates) -> list[float]:
        return [-miou(generate_for(c), batches, segmenter)['miou'] for c in candidates]
    return fitness


def config_fitness(gen, variables: dict, batches: Sequence[tuple], segmenter: Segmenter) -> Callable:
    """:func:`miou_fitness` for candidates (with an 8-entry ``config``) of the ResNet supernet ``gen``, run
    as masks (one compiled program for every configuration), as
    :func:`anycost_jax.eval.img2img_quality.config_fitness`."""
    from anycost_jax.elastic import img2img as rules
    apply = jax.jit(lambda v, x, w: gen.apply(v, x, widths=w))

    def generate_for(c):
        widths = rules.resnet_widths_of_entries(np.asarray(c.config, np.int32), gen.n_blocks)
        return lambda x: apply(variables, x, widths)
    return miou_fitness(generate_for, batches, segmenter)
