"""The original's image encoder (images -> w+) and CelebA attribute predictor, on ResNet-50.

**ResNet50Encoder** (the original ``models/encoder.py``): torchvision's ResNet-50 trunk, a fully
connected layer to ``n_style * style_dim``, viewed as ``[N, n_style, style_dim]``, plus
``mean_latent`` (the generator's average w, a constant buffer in the original). Input: NHWC
images in [-1, 1] of exactly ``input_size`` x ``input_size`` (256, which the original asserts);
no ImageNet normalization. The original's callers (``tools/project.py``,
``metrics/eval_encoder.py``) resize with ``adaptive_resize(img, 256)`` (bilinear,
``align_corners=True``) and do not clamp: :func:`encoder_input` does the same.

    enc, enc_vars = convert.load_encoder(path)
    w_plus = enc.apply(enc_vars, encoder_input(images))   # [N, n_style, style_dim]

Variables: ``params`` (trained), ``batch_stats`` (BatchNorm running statistics) and
``stats/mean_latent`` [style_dim]: a constant, in the ``stats`` collection like the generator's
``stats/w_avg``, so an optimizer over ``params`` never touches it and ``train=True`` (which
mutates only ``batch_stats``) leaves it alone. It is initialized to zeros; set it to the
generator's mean w (:func:`with_mean_latent`), as the original's constructor argument does.

**AttributePredictor** (``models.get_pretrained('attribute-predictor')``): torchvision
``resnet50`` with ``fc`` replaced by 80 outputs, read as ``[N, 40, 2]`` (``.view(-1, 40, 2)``,
a two-way logit per CelebA attribute in :data:`CELEBA_ATTRIBUTES` order; ``argmax == 1`` means
present). The original's metric (``metrics/attribute_consistency.py``) and direction extraction
(``tools/extract_edit_directions.py``) feed it ``clamp(-1, 1)`` then bilinear
``align_corners=True`` resize to 256, without normalization: :func:`predict_attributes`.
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from anycost_jax.models.resnet import RESNET50_STAGES, ResNet50
from anycost_jax.nn.resize import resize_align_corners

Array = jax.Array
INPUT_SIZE = 256
# CelebA's 40 attributes in the order of the predictor's outputs (the original's attr_list).
CELEBA_ATTRIBUTES = (
    '5_o_Clock_Shadow', 'Arched_Eyebrows', 'Attractive', 'Bags_Under_Eyes', 'Bald', 'Bangs', 'Big_Lips', 'Big_Nose',
    'Black_Hair', 'Blond_Hair', 'Blurry', 'Brown_Hair', 'Bushy_Eyebrows', 'Chubby', 'Double_Chin', 'Eyeglasses',
    'Goatee', 'Gray_Hair', 'Heavy_Makeup', 'High_Cheekbones', 'Male', 'Mouth_Slightly_Open', 'Mustache',
    'Narrow_Eyes', 'No_Beard', 'Oval_Face', 'Pale_Skin', 'Pointy_Nose', 'Receding_Hairline', 'Rosy_Cheeks',
    'Sideburns', 'Smiling', 'Straight_Hair', 'Wavy_Hair', 'Wearing_Earrings', 'Wearing_Hat', 'Wearing_Lipstick',
    'Wearing_Necklace', 'Wearing_Necktie', 'Young')


def _check_images(images, what: str) -> Array:
    images = jnp.asarray(images, jnp.float32)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f'{what} expects square NHWC RGB images [N, R, R, 3] in [-1, 1], got shape {images.shape}')
    return images


def encoder_input(images, size: int = INPUT_SIZE) -> Array:
    """Images in [-1, 1] at any square size -> the encoder's input, as the original's callers
    prepare it (bilinear ``align_corners=True`` resize to ``size``, no clamping)."""
    return resize_align_corners(_check_images(images, 'encoder_input'), size)


class ResNet50Encoder(nn.Module):
    """Images ``[N, 256, 256, 3]`` in [-1, 1] -> w+ ``[N, n_style, style_dim]`` (module docstring).

    ``input_size`` is 256 for the original's encoders (checked, as the original asserts); an
    encoder trained by us may use another size. ``stage_sizes`` / ``width`` shrink the trunk (tests).
    """
    n_style: int
    style_dim: int = 512
    input_size: int = INPUT_SIZE
    stage_sizes: Sequence[int] = RESNET50_STAGES
    width: int = 64
    precision: Optional[str] = None

    @nn.compact
    def __call__(self, images: Array, train: bool = False) -> Array:
        images = _check_images(images, 'ResNet50Encoder')
        if images.shape[1] != self.input_size:
            raise ValueError(f'ResNet50Encoder takes {self.input_size}x{self.input_size} images (as the original, '
                             f'which asserts it), got {images.shape[1]}x{images.shape[2]}; resize them first with '
                             f'anycost_jax.models.encoder.encoder_input(images, {self.input_size})')
        out = ResNet50(self.n_style * self.style_dim, self.stage_sizes, self.width, self.precision,
                       name='resnet')(images, train)
        mean = self.variable('stats', 'mean_latent', jnp.zeros, (self.style_dim,), jnp.float32).value
        # The buffer is a constant: no gradient reaches it even if it is passed as a parameter.
        return out.reshape(-1, self.n_style, self.style_dim) + jax.lax.stop_gradient(mean)[None, None]

    def init_variables(self, rng: Array, mean_latent=None) -> dict:
        """Initial variables (He-initialized trunk, torch-style fc); ``mean_latent`` defaults to zeros."""
        x = jnp.zeros((1, self.input_size, self.input_size, 3), jnp.float32)
        variables = _init(self, rng, x)
        return variables if mean_latent is None else with_mean_latent(variables, mean_latent)


def with_mean_latent(variables: dict, mean_latent) -> dict:
    """``variables`` with ``stats/mean_latent`` replaced (e.g. by a generator's ``stats/w_avg``)."""
    old = variables['stats']['mean_latent']
    new = np.asarray(mean_latent, np.float32).reshape(-1)
    if new.shape != np.shape(old):
        raise ValueError(f'mean_latent has {new.shape[0]} entries; the encoder expects style_dim={np.shape(old)[0]}')
    return {**variables, 'stats': {**variables['stats'], 'mean_latent': new}}


class AttributePredictor(nn.Module):
    """torchvision ResNet-50 with 2 logits per attribute: images -> ``[N, n_attributes, 2]``."""
    n_attributes: int = len(CELEBA_ATTRIBUTES)
    stage_sizes: Sequence[int] = RESNET50_STAGES
    width: int = 64
    precision: Optional[str] = None

    @nn.compact
    def __call__(self, images: Array, train: bool = False) -> Array:
        images = _check_images(images, 'AttributePredictor')
        out = ResNet50(2 * self.n_attributes, self.stage_sizes, self.width, self.precision, name='resnet')(images,
                                                                                                          train)
        return out.reshape(-1, self.n_attributes, 2)

    def init_variables(self, rng: Array) -> dict:
        return _init(self, rng, jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))


def _init(module, rng, x) -> dict:
    from anycost_jax.models.common import init_variables
    return init_variables(module, rng, x)


def predictor_input(images, size: int = INPUT_SIZE) -> Array:
    """Images in [-1, 1] (any square size, unclamped) -> the predictor's input, as the original's
    attribute metric: ``clamp(-1, 1)``, then bilinear ``align_corners=True`` resize to 256."""
    return resize_align_corners(jnp.clip(_check_images(images, 'predictor_input'), -1, 1), size)


@functools.partial(jax.jit, static_argnums=0)
def _predict(predictor: AttributePredictor, variables: dict, images: Array) -> Array:
    return predictor.apply(variables, predictor_input(images))


def predict_attributes(predictor: AttributePredictor, variables: dict, images) -> Array:
    """Attribute logits ``[N, 40, 2]`` of generator images in [-1, 1] at any resolution, exactly as
    the original's attribute consistency (``(logits.argmax(-1) == 1)`` is the prediction; see
    :func:`anycost_jax.eval.consistency.predictions`)."""
    return _predict(predictor, variables, images)


def attribute_classifier(predictor: AttributePredictor, variables: dict):
    """``images -> [N, 40, 2] logits`` for :meth:`ConsistencyEvaluator.attribute_agreement` and
    direction extraction: :func:`predict_attributes` with the variables bound."""
    variables = jax.device_put(variables)
    return lambda images: predict_attributes(predictor, variables, images)
