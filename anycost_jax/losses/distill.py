"""Distillation of a student generator from a frozen teacher's outputs.

Anycost's loss: MSE at every output resolution + LPIPS-VGG on images clamped to [-1, 1] and
bilinearly resized (``align_corners=True``) to at most 256, against the teacher's image
resized the same way.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from anycost_jax.models import lpips
from anycost_jax.nn.resize import resize_align_corners

Array = jax.Array


def teacher_pyramid(teacher_img: Array, resolutions: Sequence[int]) -> list[Array]:
    """The teacher's full-resolution image resized to each of ``resolutions``."""
    return [resize_align_corners(teacher_img, r) for r in resolutions]


def distillation_loss(student_rgbs: Sequence[Array], teacher_img: Array, use_lpips: bool = True) -> Array:
    """Sum over resolutions of MSE + LPIPS between the student's outputs and the resized teacher."""
    targets = teacher_pyramid(teacher_img, [r.shape[1] for r in student_rgbs])
    loss = sum(jnp.mean(jnp.square(s - t)) for s, t in zip(student_rgbs, targets))
    if use_lpips:
        loss = loss + sum(lpips.distance(lpips.prepare(s), lpips.prepare(t)).mean()
                          for s, t in zip(student_rgbs, targets))
    return loss
