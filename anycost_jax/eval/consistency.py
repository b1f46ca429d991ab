"""Output consistency between sub-generators and the full generator.

For one ``z`` (and the same noise), a sub-generator's image is compared with the full
generator's image: LPIPS-VGG and MSE, and the agreement of attribute predictions.

**Common resolution.** Both images are clamped to [-1, 1] and resized to ``eval_res`` (default
256) with bilinear ``align_corners=True`` interpolation, up or down, whatever the
sub-generator's resolution. That is what the original measures consistency with: its
``metrics/eval_encoder.py`` ('consist-lpips' / 'consist-mse' between sub- and full-generator
outputs) and ``metrics/attribute_consistency.py`` both pass the two images through
``adaptive_resize(img.clamp(-1, 1), 256)``; and 256 is the scale every LPIPS number of the
original is taken at (training distillation and projection shrink to at most 256). So a
256-pixel preview of a 1024 generator is compared with the full image shrunk to 256, and a
lower-resolution preview is upsampled to 256 (its missing detail counts against it, as it
should for a preview shown at the final size). MSE is the mean over pixels and channels of
the squared difference at ``eval_res`` (``nn.MSELoss`` of the two resized images).

**Evaluation form.** Sub-generators run in the masked form (``channel_masks``: widths are data,
shapes stay full), so one compiled program per output resolution serves every width
configuration; the full generator's reference image comes from the same program with the full
widths, so the full generator compared with itself gives an MSE of exactly 0 (and an LPIPS of 0 up
to rounding: the two VGG passes of an optimized program need not round alike, ~1e-16). ``trace_counts`` records how
many programs were built per resolution.

Samples are fixed by ``seed``: sample ``i`` is ``z ~ N(0, I)`` from ``fold_in(z_key, i)``, drawn
once (padded to whole batches; the padding is weighted out), so every configuration is measured
on the same z and noise, whatever the batch size.
"""
from __future__ import annotations

import collections
import math
from typing import Callable, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from anycost_jax import elastic
from anycost_jax.eval.ppl import draw_noise
from anycost_jax.models import generator as generator_lib
from anycost_jax.models.generator import Generator
from anycost_jax.render import SubConfig, grid_configs
from anycost_jax.models import lpips as lpips_lib
from anycost_jax.nn.resize import resize_align_corners

Array = jax.Array
EVAL_RES = 256
NOISE_MODES = ('const', 'random')
# (channels or None for the full widths, output resolution or None for the top one)
Config = tuple[Optional[Sequence[int]], Optional[int]]


def predictions(logits) -> np.ndarray:
    """Binary attribute predictions [N, A] from logits [N, A] (positive: > 0) or [N, A, 2]
    (argmax over the pair, as the original's attribute predictor is read; ties pick index 0,
    like ``logit > 0`` on a single logit)."""
    logits = np.asarray(logits)
    if logits.ndim == 2:
        return logits > 0
    if logits.ndim == 3 and logits.shape[-1] == 2:
        return np.argmax(logits, -1) == 1
    raise ValueError(f'attribute logits must be [N, A] or [N, A, 2], got shape {logits.shape}')


class ConsistencyEvaluator:
    """Measures sub-generators against the full generator on fixed z (see the module docstring).

    ``truncation`` < 1 truncates toward ``truncation_style`` (default: the variables'
    ``stats/w_avg``, else the mean w of 10,000 z drawn from ``seed``). ``noise_mode='const'``
    uses the generator's stored noise; ``'random'`` draws one noise per batch (fixed by
    ``seed``), shared by every configuration and by all images of the batch (the original's
    ``make_noise()`` in its attribute consistency).
    """

    def __init__(self, gen: Generator, variables: dict, n_samples: int = 1000, batch_size: int = 16, seed: int = 0,
                 eval_res: int = EVAL_RES, truncation: float = 1., truncation_style=None,
                 noise_mode: str = 'const', use_lpips: bool = True):
        if int(n_samples) != n_samples or n_samples < 1 or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f'n_samples and batch_size must be positive integers, got {n_samples!r}, '
                             f'{batch_size!r}')
        if noise_mode not in NOISE_MODES:
            raise ValueError(f'noise_mode={noise_mode!r} is not supported; expected one of {NOISE_MODES}')
        if int(eval_res) != eval_res or eval_res < 1:
            raise ValueError(f'eval_res={eval_res!r} must be a positive integer')
        if use_lpips:
            lpips_lib.check_resolution(eval_res, f'eval_res={eval_res}')
        self.gen = gen
        self.variables = jax.device_put(variables)  # once, not with every call (they may be numpy)
        self.n_samples, self.batch_size, self.seed = int(n_samples), int(batch_size), seed
        self.eval_res, self.truncation = int(eval_res), truncation
        self.noise_mode, self.use_lpips = noise_mode, use_lpips
        self.full = list(gen.full_channels())
        self.n_batches = math.ceil(n_samples / batch_size)
        key_z, key_noise, key_mean = jax.random.split(jax.random.key(seed), 3)
        # One key per sample: the samples do not depend on the batch size.
        index = jnp.arange(self.n_batches * batch_size)
        z = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key_z, i), (gen.style_dim,)))(index)
        self.z = z.reshape(self.n_batches, batch_size, gen.style_dim)
        self.weights = (np.arange(self.n_batches * batch_size) < n_samples).reshape(self.n_batches, batch_size)
        self._noise_key = key_noise
        if truncation < 1 and truncation_style is None:
            truncation_style = generator_lib.mean_w(
                gen, {'params': self.variables['params'], 'stats': variables.get('stats', {})}, 10_000, key_mean)
        self.truncation_style = None if truncation_style is None else jnp.asarray(truncation_style)
        self.trace_counts: collections.Counter = collections.Counter()
        self._programs: dict[int, Callable] = {}
        self._mse = jax.jit(self._mse_fn)

    # ------------------------------------------------------------------ configurations

    def resolve(self, channels: Optional[Sequence[int]] = None, res: Optional[int] = None) -> tuple[np.ndarray, int]:
        """``(widths int32[L], res)`` for a configuration; ``None`` means full width / top resolution.

        ``channels`` may list every elastic layer or only those up to ``res``; layers above
        ``res`` do not run, so they are filled with the full widths.
        """
        res = int(self.gen.check_target_res(res))
        if channels is None:
            return np.asarray(self.full, np.int32), res
        channels = [int(c) for c in channels]
        n_used = 2 * (res.bit_length() - 2)  # two elastic layers per resolution from 4
        if n_used <= len(channels) < len(self.full):
            channels = channels + self.full[len(channels):]
        return np.asarray(elastic.check_channels(channels, self.full), np.int32), res

    def sub_config(self, cfg: SubConfig) -> tuple[np.ndarray, int]:
        widths = self.gen.resolve_channels(cfg.channel_ratio, cfg.channels)
        return self.resolve(widths, cfg.target_res)

    # ------------------------------------------------------------------ compiled pieces

    def program(self, res: int) -> Callable:
        """The jitted ``(variables, z, widths, noise, truncation_style) -> images [N, e, e, 3]`` at ``res``
        (clamped and resized to ``eval_res``)."""
        if res not in self._programs:
            gen, truncation, eval_res = self.gen, self.truncation, self.eval_res

            def render(variables, z, widths, noise, truncation_style):
                self.trace_counts[res] += 1  # runs only while tracing: counts the programs built
                img = gen.apply(variables, z, channel_masks=widths, target_res=res, truncation=truncation,
                                truncation_style=truncation_style, noise=noise)
                return resize_align_corners(jnp.clip(img, -1, 1), eval_res)

            self._programs[res] = jax.jit(render)
        return self._programs[res]

    def images(self, batch: int, widths: np.ndarray, res: int) -> Array:
        noise = draw_noise(self.gen, jax.random.fold_in(self._noise_key, batch)) \
            if self.noise_mode == 'random' else None
        return self.program(res)(self.variables, self.z[batch], jnp.asarray(widths, jnp.int32), noise,
                                 self.truncation_style)

    @staticmethod
    def _mse_fn(a, b):
        return jnp.square(a - b).mean((1, 2, 3))

    # ------------------------------------------------------------------ metrics

    def evaluate(self, configs: Sequence[Config], progress: bool = False) -> list[dict[str, float]]:
        """``[{'lpips': ..., 'mse': ...}]`` for each ``(channels, res)``, averaged over the samples.

        Batches are the outer loop: the full generator's image of a batch is rendered once and
        compared with every configuration. Without LPIPS (``use_lpips=False``) 'lpips' is NaN.
        """
        resolved = [self.resolve(*c) for c in configs]
        top = self.resolve(None, None)
        sums = np.zeros((len(resolved), 2))
        for b in tqdm(range(self.n_batches), desc='consistency', disable=not progress):
            weight = jnp.asarray(self.weights[b], jnp.float32)
            target = self.images(b, *top)
            parts = []
            for widths, res in resolved:
                img = self.images(b, widths, res)
                lp = (lpips_lib.lpips(img, target) * weight).sum() if self.use_lpips else jnp.float32(np.nan)
                parts.append(jnp.stack([lp, (self._mse(img, target) * weight).sum()]))
            if parts:
                sums += np.asarray(jnp.stack(parts), np.float64)
        return [{'lpips': float(s[0] / self.n_samples), 'mse': float(s[1] / self.n_samples)} for s in sums]

    def attribute_agreement(self, classifier: Callable[[Array], Array], configs: Sequence[Config],
                            progress: bool = False) -> list[np.ndarray]:
        """Per configuration, the fraction of samples [A] on which every attribute's prediction
        agrees between the sub-generator's and the full generator's image (the original's
        per-attribute accuracy). ``classifier`` maps images [N, eval_res, eval_res, 3] in [-1, 1]
        to logits [N, A] or [N, A, 2]."""
        resolved = [self.resolve(*c) for c in configs]
        top = self.resolve(None, None)
        sums: list[Optional[np.ndarray]] = [None] * len(resolved)
        for b in tqdm(range(self.n_batches), desc='attribute consistency', disable=not progress):
            weight = self.weights[b].astype(np.float64)[:, None]
            full_pred = predictions(classifier(self.images(b, *top)))
            for i, (widths, res) in enumerate(resolved):
                pred = predictions(classifier(self.images(b, widths, res)))
                if pred.shape != full_pred.shape:
                    raise ValueError(f'classifier gave {pred.shape} predictions for a sub-generator and '
                                     f'{full_pred.shape} for the full generator')
                agree = ((pred == full_pred) * weight).sum(0)
                sums[i] = agree if sums[i] is None else sums[i] + agree
        return [s / self.n_samples for s in sums]


# ---------------------------------------------------------------------- convenience wrappers


def labelled(gen: Generator, configs: Union[Mapping[str, SubConfig], Sequence[SubConfig]]) -> dict[str, SubConfig]:
    """``{label: SubConfig}``; a list is labelled with ``SubConfig.label`` (repeated labels, e.g.
    several flexible configs at one resolution, get ``#2``, ``#3``... suffixes)."""
    if isinstance(configs, Mapping):
        return dict(configs)
    configs = list(configs)
    return dict(zip(elastic.unique_labels([cfg.label(gen) for cfg in configs]), configs))


def uniform_configs(gen: Generator, ratios: Sequence[float] = elastic.RATIOS[::-1],
                    resolutions: Optional[Sequence[int]] = None) -> dict[str, SubConfig]:
    """Every uniform ratio x resolution (:func:`anycost_jax.render.grid_configs`, ratio-major), labelled
    ``0.5x@256``."""
    return labelled(gen, [c for row in grid_configs(gen, ratios, resolutions) for c in row])


def consistency(gen: Generator, variables: dict, configs: Union[Mapping[str, SubConfig], Sequence[SubConfig]],
                n_samples: int = 1000, batch_size: int = 16, seed: int = 0, eval_res: int = EVAL_RES,
                truncation: float = 1., noise_mode: str = 'const', use_lpips: bool = True,
                progress: bool = True) -> dict[str, dict[str, float]]:
    """``{label: {'lpips': ..., 'mse': ...}}``: each sub-generator against the full generator on
    ``n_samples`` z fixed by ``seed``, with the stored (const) noise, both images at ``eval_res``."""
    configs = labelled(gen, configs)
    ev = ConsistencyEvaluator(gen, variables, n_samples, batch_size, seed, eval_res, truncation,
                              noise_mode=noise_mode, use_lpips=use_lpips)
    results = ev.evaluate([ev.sub_config(c) for c in configs.values()], progress=progress)
    return dict(zip(configs, results))


def attribute_consistency(gen: Generator, variables: dict, classifier: Callable[[Array], Array],
                          configs: Union[Mapping[str, SubConfig], Sequence[SubConfig]], n_samples: int = 10_000,
                          batch_size: int = 16, seed: int = 0, eval_res: int = EVAL_RES, truncation: float = 0.5,
                          noise_mode: str = 'random', progress: bool = True) -> dict[str, dict]:
    """``{label: {'mean': float, 'per_attribute': [A]}}``: attribute agreement with the full generator.

    As the original's ``metrics/attribute_consistency.py``: truncation 0.5 toward the mean w,
    one random noise per batch shared by both generators, both images clamped and resized to 256
    (bilinear, ``align_corners=True``), a binary prediction per attribute, and per attribute the
    fraction of samples whose predictions agree. ``mean`` averages that over attributes, i.e. the
    fraction of (sample, attribute) pairs that agree; identical outputs give 1.
    """
    configs = labelled(gen, configs)
    ev = ConsistencyEvaluator(gen, variables, n_samples, batch_size, seed, eval_res, truncation,
                              noise_mode=noise_mode, use_lpips=False)
    per_attr = ev.attribute_agreement(classifier, [ev.sub_config(c) for c in configs.values()], progress=progress)
    return {label: {'mean': float(a.mean()), 'per_attribute': a.tolist()} for label, a in zip(configs, per_attr)}
