"""GAN Compression's intermediate-feature distillation (Li et al. 2020, Sec. 3.2): a learnable 1x1
conv (an *adapter*) per mapping layer lifts the student's activation to the teacher's width, and
the loss is ``sum_i MSE(adapter_i(student_i), teacher_i)``.

Mapping layers (``mapping_layers``): for the ResNet generators, the original's ``model.9``,
``model.12``, ``model.15``, ``model.18`` of a 9-block network: the input of the residual stack and
the outputs of blocks 3, 6 and 9, i.e. our sown ``residual_in``, ``block2_out``, ``block5_out``,
``block8_out`` (:class:`anycost_jax.models.img2img.ResnetGenerator`).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from anycost_jax.nn.conv import Conv2d

Array = jax.Array


def resnet_mapping_layers(n_blocks: int) -> tuple[str, ...]:
    """The sown names the ResNet distillation reads (the original's, for its 9-block networks)."""
    if n_blocks != 9:
        raise ValueError(f'n_blocks={n_blocks}: GAN Compression distills 9-block ResNet generators (its mapping '
                         'layers model.9 / 12 / 15 / 18 are those of resnet_9blocks)')
    return ('residual_in', 'block2_out', 'block5_out', 'block8_out')


def activations(intermediates: dict, names: Sequence[str]) -> list[Array]:
    """The sown activations ``names`` from a generator's ``intermediates`` collection, in order."""
    missing = [n for n in names if n not in intermediates]
    if missing:
        raise KeyError(f'the generator sowed {sorted(intermediates)}, not {missing}')
    return [intermediates[n][0] for n in names]


class Adapters(nn.Module):
    """One 1x1 conv (with bias) per mapping layer: student width -> teacher width. Elastic on the
    input side: a narrower student activation uses the kernel's first input channels (the
    original's ``SuperConv2d`` adapters of supernet training)."""
    student_widths: Sequence[int]
    teacher_widths: Sequence[int]

    @nn.compact
    def __call__(self, acts: Sequence[Array]) -> list[Array]:
        if len(acts) != len(self.student_widths):
            raise ValueError(f'{len(acts)} activations for {len(self.student_widths)} adapters')
        return [Conv2d(s, t, 1, name=f'adapter{i}')(a)
                for i, (a, s, t) in enumerate(zip(acts, self.student_widths, self.teacher_widths))]


def distill_loss(adapted: Sequence[Array], teacher: Sequence[Array]) -> tuple[Array, list[Array]]:
    """``(sum of the layers' MSEs, each layer's MSE)``; the teacher's activations are constants."""
    per = [jnp.mean(jnp.square(a - jax.lax.stop_gradient(t))) for a, t in zip(adapted, teacher)]
    return sum(per), per

