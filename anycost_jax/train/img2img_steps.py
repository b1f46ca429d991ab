"""The pix2pix training iteration, with pmap semantics: a per-device body under
``jax.jit(jax.shard_map(...))``, gradients and batch-norm statistics averaged with ``pmean``.

One iteration is gan-compression's ``Pix2PixModel.optimize_parameters``, in its order::

    fake = G(A)                                   (train mode: dropout, batch statistics)
    D step: 0.5 * [gan(D(A | fake), False) + gan(D(A | B), True)]   (fake constant)
    G step: lambda_gan * gan(D'(A | fake), True, for G) + lambda_recon * L1(fake, B)

where ``D'`` is the discriminator *after* its step and ``fake`` the same forward pass (G runs
once: its gradient is pulled back through that pass). Every D call is in train mode, so a batch
norm in D updates its statistics three times per iteration, as the original's does. Adam
(``lr``, betas (0.5, 0.999)) for both, as the original.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Union

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from anycost_jax import sharding
from anycost_jax.losses import img2img as losses
from anycost_jax.sharding import AXIS

Schedule = Union[float, Callable[[jax.Array], jax.Array]]


@flax.struct.dataclass
class Pix2PixState:
    step: jax.Array
    rng: jax.Array
    g_params: Any
    g_stats: Any  # G's batch-norm statistics ({} without batch norm)
    d_params: Any
    d_stats: Any
    g_opt_state: Any
    d_opt_state: Any


@dataclasses.dataclass(frozen=True)
class Pix2PixConfig:
    gan_mode: str = 'hinge'  # gan-compression's default
    lambda_gan: float = 1.
    lambda_recon: float = 100.
    recon: str = 'l1'

    def __post_init__(self):
        if self.gan_mode not in losses.GAN_MODES:
            raise ValueError(f'gan_mode={self.gan_mode!r} is not one of {losses.GAN_MODES}')
        if self.recon not in ('l1', 'l2', 'smooth_l1'):
            raise ValueError(f'recon={self.recon!r}; expected l1, l2 or smooth_l1')


def adam(lr: Schedule, beta1: float = 0.5) -> optax.GradientTransformation:
    """torch.optim.Adam(lr, betas=(beta1, 0.999)): eps 1e-8 added to sqrt(v), as optax does."""
    return optax.adam(lr, b1=beta1, b2=0.999, eps=1e-8)


def linear_decay(lr: float, steps_per_epoch: int, n_epochs: int, n_epochs_decay: int) -> Callable:
    """The original's 'linear' policy: ``lr`` for ``n_epochs`` epochs, then linearly to
    ``lr / (n_epochs_decay + 1)`` over ``n_epochs_decay`` more, stepped once per epoch."""
    def schedule(count):
        epoch = count // steps_per_epoch
        return lr * (1. - jnp.maximum(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1))
    return schedule


def _split(variables: dict):
    return variables['params'], {k: v for k, v in variables.items() if k != 'params'}


def create_state(rng, g_vars: dict, d_vars: dict, g_tx, d_tx) -> Pix2PixState:
    g_params, g_stats = _split(g_vars)
    d_params, d_stats = _split(d_vars)
    return Pix2PixState(step=jnp.zeros((), jnp.int32), rng=rng, g_params=g_params, g_stats=g_stats,
                        d_params=d_params, d_stats=d_stats, g_opt_state=g_tx.init(g_params),
                        d_opt_state=d_tx.init(d_params))


def _recon(fake, real, kind: str):
    d = fake - real
    if kind == 'l1':
        return jnp.mean(jnp.abs(d))
    if kind == 'l2':
        return jnp.mean(jnp.square(d))
    a = jnp.abs(d)  # smooth L1 (beta 1), as torch
    return jnp.mean(jnp.where(a < 1, 0.5 * a * a, a - 0.5))


class Pix2PixSteps:
    """Builds the per-device pix2pix iteration for generator ``gen`` and discriminator ``disc``
    (conditional: it sees input and output concatenated on channels)."""

    def __init__(self, mesh, gen, disc, cfg: Pix2PixConfig, g_tx, d_tx):
        self.mesh, self.gen, self.disc, self.cfg = mesh, gen, disc, cfg
        self.g_tx, self.d_tx = g_tx, d_tx
        self.traces = 0

    def _d(self, params, stats, x):
        out, new = self.disc.apply({'params': params, **stats}, x, train=True, mutable=list(stats))
        return out, {**stats, **new}

    def body(self, state: Pix2PixState, batch):
        cfg, a, b = self.cfg, batch['A'], batch['B']
        key = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), jax.lax.axis_index(AXIS))

        def g_forward(params):
            out, new = self.gen.apply({'params': params, **state.g_stats}, a, train=True,
                                      mutable=list(state.g_stats), rngs={'dropout': key})
            return out, {**state.g_stats, **new}

        # gradients with respect to per-device copies, averaged below (see sharding.varying)
        fake, g_vjp, g_stats = jax.vjp(g_forward, sharding.varying(state.g_params), has_aux=True)

        def d_loss(params):
            fake_ab = jnp.concatenate([a, jax.lax.stop_gradient(fake)], axis=-1)
            pred_fake, stats = self._d(params, state.d_stats, fake_ab)
            pred_real, stats = self._d(params, stats, jnp.concatenate([a, b], axis=-1))
            lf, lr = losses.gan_loss(pred_fake, False, cfg.gan_mode), losses.gan_loss(pred_real, True, cfg.gan_mode)
            return 0.5 * (lf + lr), (stats, {'D_fake': lf, 'D_real': lr})

        (_, (d_stats, d_metrics)), d_grads = jax.value_and_grad(d_loss, has_aux=True)(
            sharding.varying(state.d_params))
        d_updates, d_opt_state = self.d_tx.update(jax.lax.pmean(d_grads, AXIS), state.d_opt_state, state.d_params)
        d_params = optax.apply_updates(state.d_params, d_updates)

        def g_loss(fake):
            pred, stats = self._d(d_params, d_stats, jnp.concatenate([a, fake], axis=-1))
            gan = losses.gan_loss(pred, True, cfg.gan_mode, for_discriminator=False) * cfg.lambda_gan
            recon = _recon(fake, b, cfg.recon) * cfg.lambda_recon
            return gan + recon, (stats, {'G_gan': gan, 'G_recon': recon})

        (_, (d_stats, g_metrics)), d_fake = jax.value_and_grad(g_loss, has_aux=True)(fake)
        g_grads, = g_vjp(d_fake)
        g_updates, g_opt_state = self.g_tx.update(jax.lax.pmean(g_grads, AXIS), state.g_opt_state, state.g_params)
        state = state.replace(
            step=state.step + 1, g_params=optax.apply_updates(state.g_params, g_updates), g_opt_state=g_opt_state,
            d_params=d_params, d_opt_state=d_opt_state,
            # every device's statistics of its share of the batch, averaged so the replicas agree
            g_stats=jax.lax.pmean(g_stats, AXIS), d_stats=jax.lax.pmean(d_stats, AXIS))
        return state, jax.lax.pmean({**d_metrics, **g_metrics}, AXIS)

    def program(self):
        """``fn(state, batch) -> (state, metrics)`` (``batch``: ``{'A', 'B'}`` split over ``data``); donates the state."""
        def counted(state, batch):  # runs once per trace, i.e. once per compilation
            self.traces += 1
            return self.body(state, batch)
        return sharding.per_device_program(counted, self.mesh, (P(), P(AXIS)), (P(), P()), donate_argnums=0,
                                           out_shardings=sharding.replicated(self.mesh))

    def shard_batch(self, local_batch):
        return sharding.shard(local_batch, self.mesh)

    def replicate(self, tree):
        return sharding.replicate(tree, self.mesh)
