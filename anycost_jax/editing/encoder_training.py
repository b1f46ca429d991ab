"""Training a ResNet-50 encoder (images -> w+) on samples of a frozen generator.

The original repository ships trained encoders but no training script; its README and
``models/__init__.py`` say only that they are trained with an LPIPS-VGG loss ("to keep
consistent with optimization-based projection"). This is our design, in the spirit of that
projection (``tools/project.py``) and of in-domain encoders (arXiv:2004.00049):

* **data**: z ~ N(0, I) -> w = mapping(z) (with ``mixing_prob``, two w's crossed over at a
  random layer, so the encoder also sees w+ codes) -> the frozen full generator renders the
  target with its stored constant noise, clamped to [-1, 1]. No real images are needed.
* **encoder**: the target, bilinearly resized (``align_corners=True``) to the encoder's input
  (``input_size``: by default the generator's resolution, between 32 and the original's 256),
  gives w+ = fc(ResNet-50(x)) + mean_latent; ``mean_latent`` is the generator's mean w (a
  constant), and the fc layer starts near zero, so training starts from the mean face.
* **loss** (per image, averaged over the batch): ``lpips_weight`` x LPIPS-VGG of the
  reconstruction vs the target, both resized to ``min(lpips_res, resolution)`` and clamped,
  + ``mse_weight`` x pixel MSE at the generator's resolution, + ``latent_weight`` x MSE between
  the predicted w+ and the true one. The reconstruction comes from the frozen generator; with
  ``sub_generator_prob`` it is a random uniform-ratio sub-generator (channel masks: the same
  compiled step) so the codes also suit the cheap previews, as project.py's ``--optimize_sub_g``.
* **optimizer**: Adam on the encoder's ``params``; BatchNorm runs in training mode and updates
  its running statistics (``batch_stats``). One device (the first local one): the encoder is
  small next to the generator's training, and the step is a single jitted program.

Checkpoints: the whole train state (Orbax, :class:`anycost_jax.checkpoint.Checkpointer`)
under ``workdir/checkpoints`` every ``save_every`` steps, so a rerun with the same workdir
resumes; and the encoder as a model directory ``workdir/encoder`` (``convert.load_encoder``
reads it), written at every save and at the end. ``workdir/encoder_config.json`` keeps the first
start's config and the generator's parameter digest: a resume that changes :data:`RESUME_KEYS`
(the batch, the losses, the architecture, the generator) is refused, as the generator trainer's.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm.auto import tqdm

from anycost_jax import elastic, modeldir
from anycost_jax import workdir as workdir_lib
from anycost_jax.models.encoder import INPUT_SIZE, ResNet50Encoder, with_mean_latent
from anycost_jax.models import generator as generator_lib
from anycost_jax.models.generator import Generator
from anycost_jax.models import lpips as lpips_lib
from anycost_jax.models.resnet import RESNET50_STAGES
from anycost_jax.nn.resize import resize_align_corners

ENCODER_DIR = 'encoder'
CHECKPOINT_DIR = 'checkpoints'
CONFIG_FILE = 'encoder_config.json'
# What a resume must keep: everything but the run's length, its saving period and the learning rate.
RESUME_KEYS = ('batch_size', 'lpips_res', 'lpips_weight', 'mse_weight', 'latent_weight', 'mixing_prob',
               'sub_generator_prob', 'seed', 'input_size', 'stage_sizes', 'width', 'generator_digest')
MIN_INPUT_SIZE = 32  # ResNet-50's stride: a 32 px input reaches the pooling as 1x1


def input_size_for(gen: Generator) -> int:
    """The encoder input for ``gen``'s images: its resolution, at least :data:`MIN_INPUT_SIZE` and at
    most the original's 256 (upsampling a small generator's images to 256 would make ResNet-50 cost
    64x more at 32 px for nothing: the pixels are not there)."""
    return int(min(INPUT_SIZE, max(MIN_INPUT_SIZE, gen.top_res)))


FC_INIT_SCALE = 0.1  # the fresh fc starts small: first predictions stay near mean_latent


@dataclasses.dataclass(frozen=True)
class EncoderTrainConfig:
    steps: int = 100_000
    batch_size: int = 8
    lr: float = 1e-4
    lpips_res: int = 256          # LPIPS at min(lpips_res, generator resolution), as the original's losses
    lpips_weight: float = 1.
    mse_weight: float = 1.
    latent_weight: float = 0.     # > 0: also regress the true w+ (cheap, helps early training)
    mixing_prob: float = 0.       # probability that a sample's w+ mixes two w's
    sub_generator_prob: float = 0.
    save_every: int = 1000
    seed: int = 0
    input_size: int = 0           # 0: sized to the generator (input_size_for); 256 is the original's
    stage_sizes: Sequence[int] = RESNET50_STAGES  # smaller only for tests
    width: int = 64

    def __post_init__(self):
        object.__setattr__(self, 'stage_sizes', tuple(self.stage_sizes))  # hashable: the step is cached per config

    def check(self, gen: Generator) -> None:
        for name in ('steps', 'batch_size', 'save_every', 'lpips_res'):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise ValueError(f'{name}={getattr(self, name)!r} must be a positive integer')
        if self.input_size and (int(self.input_size) != self.input_size or self.input_size < MIN_INPUT_SIZE):
            raise ValueError(f'input_size={self.input_size!r}: ResNet-50 downsamples 32x, so it takes images of at '
                             f'least {MIN_INPUT_SIZE} px; pass e.g. input_size={MIN_INPUT_SIZE}, or 0 to size it '
                             f'to the generator')
        for name in ('mixing_prob', 'sub_generator_prob'):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f'{name}={getattr(self, name)} must be a probability in [0, 1]')
        if min(self.lpips_weight, self.mse_weight, self.latent_weight) < 0 or not (
                self.lpips_weight or self.mse_weight or self.latent_weight):
            raise ValueError('loss weights must be non-negative and not all zero')
        if self.lpips_weight:
            lpips_lib.check_resolution(min(self.lpips_res, gen.top_res), 'the LPIPS resolution')
        if gen.widths is not None or gen.output_res is not None:
            raise ValueError('train the encoder on the full generator, not an exported sub-generator')


def init_encoder(gen: Generator, g_variables: dict, config: EncoderTrainConfig, rng) -> tuple:
    """A fresh encoder for ``gen`` with ``mean_latent`` = the generator's mean w (numpy variables)."""
    enc = ResNet50Encoder(gen.n_style, gen.style_dim, config.input_size, tuple(config.stage_sizes), config.width)
    variables = jax.device_get(enc.init_variables(rng))
    fc = variables['params']['resnet']['fc']
    fc['kernel'], fc['bias'] = fc['kernel'] * np.float32(FC_INIT_SCALE), np.zeros_like(fc['bias'])
    return enc, with_mean_latent(variables, mean_w(gen, g_variables))


def mean_w(gen: Generator, g_variables: dict, n_sample: int = 10_000) -> np.ndarray:
    return np.asarray(generator_lib.mean_w(gen, g_variables, n_sample))


def sample_w_plus(gen: Generator, g_params: dict, key, batch: int, mixing_prob: float):
    """True w+ codes [B, n_style, style_dim]: one w per sample, or two crossed over at a random layer."""
    k_z, k_mix, k_idx = jax.random.split(key, 3)
    w = gen.apply({'params': g_params}, jax.random.normal(k_z, (batch, 2, gen.style_dim)), method=Generator.style)
    cut = jax.random.randint(k_idx, (batch,), 1, gen.n_style)
    cut = jnp.where(jax.random.uniform(k_mix, (batch,)) < mixing_prob, cut, gen.n_style)
    first = jnp.arange(gen.n_style)[None, :, None] < cut[:, None, None]
    return jnp.where(first, w[:, :1], w[:, 1:2])


def reconstruction_loss(recon, target, w_pred, w_true, config: EncoderTrainConfig, lpips_fn, lpips_res: int):
    """``(total, terms)``: the weighted sum of batch-mean LPIPS (both images clamped and resized to
    ``lpips_res``; ``lpips_fn(a, b) -> [N]``), pixel MSE and w+ MSE. ``target`` is already clamped."""
    terms = {'mse': jnp.mean(jnp.square(recon - target)), 'latent': jnp.mean(jnp.square(w_pred - w_true))}
    total = config.mse_weight * terms['mse'] + config.latent_weight * terms['latent']
    if config.lpips_weight:
        a = resize_align_corners(jnp.clip(recon, -1, 1), lpips_res)
        terms['lpips'] = lpips_fn(a, resize_align_corners(target, lpips_res)).mean()
        total = total + config.lpips_weight * terms['lpips']
    return total, terms


def optimizer(config: EncoderTrainConfig):
    return optax.adam(config.lr)


@functools.lru_cache(maxsize=8)
def make_step(gen: Generator, enc: ResNet50Encoder, config: EncoderTrainConfig):
    """``step(state, g_variables, lpips_params) -> (state, metrics)``, jitted, donating the state.

    Cached, so calling :func:`train_encoder` again in one process (e.g. to resume) reuses the program.
    """
    tx = optimizer(config)
    lpips_module = lpips_lib.vgg()[0]
    full = np.array(gen.full_channels(), np.int32)
    lpips_res = min(config.lpips_res, gen.top_res)

    def render(g_variables, w_plus, widths=None):
        return gen.apply(g_variables, w_plus, input_is_style=True, channel_masks=widths, noise_mode='const')

    def step(state, g_variables, lpips_params):
        key, k_w, k_sub, k_ratio = jax.random.split(state['rng'], 4)
        w_true = sample_w_plus(gen, g_variables['params'], k_w, config.batch_size, config.mixing_prob)
        target = jax.lax.stop_gradient(jnp.clip(render(g_variables, w_true), -1, 1))
        x = resize_align_corners(target, config.input_size)
        widths = None
        if config.sub_generator_prob > 0:  # masks: one program whatever is drawn
            sub, _ = elastic.sample(k_ratio, gen.resolution, full, 'uniform', channel_max=gen.channel_max)
            widths = jnp.where(jax.random.uniform(k_sub) < config.sub_generator_prob, sub, full)

        def loss_fn(params):
            w_pred, updates = enc.apply({'params': params, 'batch_stats': state['batch_stats'],
                                         'stats': state['stats']}, x, train=True, mutable=['batch_stats'])
            recon = render(g_variables, w_pred, widths)
            lpips_fn = lambda a, b: lpips_module.apply(lpips_params, a, b).reshape(a.shape[0])
            total, terms = reconstruction_loss(recon, target, w_pred, w_true, config, lpips_fn, lpips_res)
            return total, (terms, updates['batch_stats'])

        (total, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
        updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
        new = {**state, 'params': optax.apply_updates(state['params'], updates), 'batch_stats': batch_stats,
               'opt_state': opt_state, 'step': state['step'] + 1, 'rng': key}
        return new, {'loss': total, **terms}

    return jax.jit(step, donate_argnums=0)


def encoder_variables(state: dict) -> dict:
    return {'params': state['params'], 'batch_stats': state['batch_stats'], 'stats': state['stats']}


def _initial_state(gen, g_variables, config, tx, init) -> tuple:
    key_init, key_train = jax.random.split(jax.random.key(config.seed))  # (the test recomputes key_init)
    if init is None:
        enc, variables = init_encoder(gen, g_variables, config, key_init)
    else:
        enc, variables = init
        if (enc.n_style, enc.style_dim) != (gen.n_style, gen.style_dim):
            raise ValueError(f'the initial encoder predicts [{enc.n_style}, {enc.style_dim}] codes; the generator '
                             f'takes [{gen.n_style}, {gen.style_dim}]')
        if enc.input_size != config.input_size or tuple(enc.stage_sizes) != tuple(config.stage_sizes) or \
                enc.width != config.width:
            config = dataclasses.replace(config, input_size=enc.input_size, stage_sizes=tuple(enc.stage_sizes),
                                         width=enc.width)
    # One program builds the state (optimizer zeros included): each eager op would compile on its own.
    state = jax.jit(lambda v, key: {'params': v['params'], 'batch_stats': v['batch_stats'], 'stats': v['stats'],
                                    'opt_state': tx.init(v['params']), 'step': jnp.zeros((), jnp.int32),
                                    'rng': key})(variables, key_train)
    return enc, state, config


def train_encoder(gen: Generator, g_variables: dict, workdir: str, config: Optional[EncoderTrainConfig] = None,
                  init: Optional[tuple] = None, progress: bool = True, **overrides):
    """Trains an encoder for ``gen`` (frozen) and returns ``(encoder, variables, history)``.

    ``config`` (or keyword overrides of :class:`EncoderTrainConfig`) sets the run; ``init`` is an
    optional ``(ResNet50Encoder, variables)`` to start from (e.g. ``convert.load_encoder`` of an
    original ``.pt``), else the trunk starts from scratch (no ImageNet weights offline). A
    workdir holding checkpoints resumes from the latest one. ``history``: per step of this call,
    the dict of float losses (``loss``, ``lpips``, ``mse``, ``latent``).
    """
    from anycost_jax.checkpoint import Checkpointer
    config = dataclasses.replace(config or EncoderTrainConfig(), **overrides)
    config.check(gen)
    if not config.input_size:
        config = dataclasses.replace(config, input_size=input_size_for(gen))
    if 'noise' not in g_variables:
        raise ValueError("g_variables lack the 'noise' collection (the generator's constant noise); pass the full "
                         "variables of convert.load_generator")
    enc, state, config = _initial_state(gen, g_variables, config, optimizer(config), init)
    run = ml_collections.ConfigDict({**dataclasses.asdict(config), 'generator_digest': modeldir.params_digest(
        g_variables)})
    workdir_lib.write_config(run, workdir, RESUME_KEYS, filename=CONFIG_FILE)  # a changed run is refused here
    ckpt = Checkpointer(os.path.join(workdir, CHECKPOINT_DIR), keep=2)
    restored = ckpt.restore(state)
    if restored is not None:
        state, _, start = restored
        if progress:
            print(f'resuming encoder training from step {start} in {workdir}')
    # Fields the step does not read are normalized, so a resumed run with more steps reuses the program.
    step_fn = make_step(gen, enc, dataclasses.replace(config, steps=1, save_every=1, seed=0))
    # One device (the first); fresh and restored states alike committed to it, so both hit one program.
    device = jax.local_devices()[0]
    state = jax.device_put(state, device)
    g_variables = jax.device_put(g_variables, device)
    lpips_params = lpips_lib.vgg()[1]  # an argument, not a constant baked into the program

    def save():
        ckpt.save(int(state['step']), state, {'config': json.loads(json.dumps(dataclasses.asdict(config),
                                                                              default=list))})
        modeldir.save(os.path.join(workdir, ENCODER_DIR), enc, jax.device_get(encoder_variables(state)))

    history = []
    start = int(state['step'])
    with tqdm(range(start, config.steps), initial=start, total=config.steps, desc='encoder',
              disable=not progress) as bar:
        for i in bar:
            state, metrics = step_fn(state, g_variables, lpips_params)
            metrics = {k: float(v) for k, v in metrics.items()}
            if not np.isfinite(metrics['loss']):
                raise FloatingPointError(f'encoder training diverged at step {i + 1}: {metrics}; lower --lr')
            history.append(metrics)
            bar.set_postfix({k: f'{v:.4f}' for k, v in metrics.items()})
            if (i + 1) % config.save_every == 0:
                save()
    if not ckpt.all_steps() or ckpt.latest_step() != int(state['step']):
        save()
    ckpt.close()
    return enc, jax.device_get(encoder_variables(state)), history
