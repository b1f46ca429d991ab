"""Losses and regularizers, pure functions on NHWC arrays.

* :mod:`.gan`: adversarial losses and their regularizers (R1, path length);
* :mod:`.distill`: distillation of a student generator from a teacher's outputs.

Perceptual networks (LPIPS-VGG) are models: :mod:`anycost_jax.models.lpips`.
"""
