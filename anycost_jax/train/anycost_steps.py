"""The Anycost (StyleGAN2) step programs, with pmap semantics: per-device bodies under ``jax.jit(jax.shard_map(...))``.

Every device holds the whole (replicated) state and its own slice of the global batch. It
draws its own latents, noise, sub-networks (channel masks) and training resolutions from
``fold_in(step_rng, axis_index('data'))``, so one compiled program serves every draw, and
gradients are averaged with ``pmean`` over the ``data`` axis, which keeps the replicas equal.
A device draws one sub-network per minibatch-stddev group of D (4 images), as the original
draws one per GPU of 4 images, so a step averages as many widths as it has groups.

Four programs per stage, as the original alternates them:
* ``d_step``: logistic loss on the sampled resolutions; reals are paired with a randomly drawn
  architecture code, fakes with the code of the sub-network that made them;
* ``d_reg_step``: lazy R1 (``gamma / 2 * R1 * d_reg_every``) on one resolution drawn per step;
* ``g_step``: non-saturating loss through D on the sampled resolutions, plus distillation
  from the frozen full-width teacher (same z, mixing index and noise); then the EMA update,
  unless path length regularization follows in this iteration;
* ``g_reg_step``: lazy path length regularization (stage 0 only), then the EMA update.

The regularizers run on iterations ``i`` (0-based) with ``(i + 1) % every == 0``
(:meth:`StepConfig.r1_due`, :meth:`StepConfig.pl_due`), as the original counts from 1; the
EMA is updated once per iteration.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from anycost_jax import elastic, sharding, xla_cpu
from anycost_jax.sharding import AXIS
from anycost_jax.models.discriminator import STDDEV_GROUP
from anycost_jax.models.generator import Generator
from anycost_jax.losses import distill, gan


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    rng: jax.Array
    g_params: Any
    g_noise: Any  # G's stored noise buffers (used at evaluation, never trained)
    d_params: Any
    ema_params: Any
    g_opt_state: Any
    d_opt_state: Any
    mean_path_length: jax.Array


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """The static knobs of the step programs (built from the experiment ConfigDict)."""
    n_res: int = 1                   # output resolutions trained (highest n_res)
    n_sampled_res: int = 1           # of which this many are drawn per step
    mixing_prob: float = 0.9
    r1_gamma: float = 10.
    d_reg_every: int = 16
    pl_weight: float = 0.            # path length weight (2 in stage 0, else 0)
    g_reg_every: int = 8
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    distill_weight: float = 0.       # 0: no teacher
    use_lpips: bool = True
    channel_mode: Optional[str] = None  # None (full width), 'uniform', 'flexible' or 'sandwich'
    min_channel: int = 8
    divided_by: int = 1
    conditioned_d: bool = False
    ema_beta: float = 0.999
    teacher_is_ema: bool = False     # distill from this run's own EMA generator (in-place distillation)

    def __post_init__(self):
        if not 1 <= self.n_sampled_res <= self.n_res:
            raise ValueError(f'n_sampled_res={self.n_sampled_res} must be in [1, n_res={self.n_res}]')
        if self.channel_mode not in (None,) + elastic.SAMPLING_MODES:
            raise ValueError(f'channel_mode={self.channel_mode!r}; expected None, uniform, flexible or sandwich')
        if self.conditioned_d and self.channel_mode is None:
            raise ValueError('conditioned_d needs elastic channels (channel_mode)')

    @classmethod
    def from_config(cls, config, global_batch: int) -> 'StepConfig':
        """The knobs of an experiment ConfigDict (:mod:`anycost_jax.train.config_lib`)."""
        pl = config.path_regularize if config.g_reg_every > 0 else 0.
        return cls(
            n_res=config.n_res, n_sampled_res=config.n_sampled_res, mixing_prob=config.mixing_prob,
            r1_gamma=config.r1, d_reg_every=config.d_reg_every, pl_weight=pl,
            g_reg_every=max(config.g_reg_every, 1), pl_batch_shrink=config.path_batch_shrink,
            distill_weight=config.distill_weight, use_lpips=config.use_lpips, channel_mode=config.channel_mode,
            min_channel=config.min_channel, divided_by=config.divided_by, conditioned_d=config.conditioned_d,
            ema_beta=ema_beta(global_batch, config.half_life_kimg), teacher_is_ema=config.teacher == 'ema')

    def r1_due(self, iteration):
        """Whether iteration ``iteration`` (0-based; an int or a traced step) runs lazy R1."""
        return self.d_reg_every > 0 and (iteration + 1) % self.d_reg_every == 0

    def pl_due(self, iteration):
        """Whether iteration ``iteration`` runs lazy path length regularization."""
        return self.pl_weight > 0 and self.g_reg_every > 0 and (iteration + 1) % self.g_reg_every == 0


def ema_beta(global_batch: int, half_life_kimg: float) -> float:
    """EMA decay per step for a half-life in thousands of images (the original's formula)."""
    return 0.5 ** (global_batch / (half_life_kimg * 1000.))


def adam(lr: float) -> optax.GradientTransformation:
    return optax.adam(lr, b1=0., b2=0.99, eps=1e-8)


def create_state(rng, g_vars, d_vars, g_tx, d_tx) -> TrainState:
    # The EMA starts as a *copy*: the state is donated, and one buffer must not be donated twice.
    ema = jax.tree.map(lambda a: jnp.array(a, copy=True), g_vars['params'])
    return TrainState(step=jnp.zeros((), jnp.int32), rng=rng, g_params=g_vars['params'],
                      g_noise=g_vars.get('noise', {}), d_params=d_vars['params'], ema_params=ema,
                      g_opt_state=g_tx.init(g_vars['params']), d_opt_state=d_tx.init(d_vars['params']),
                      mean_path_length=jnp.zeros((), jnp.float32))


class Steps:
    """Builds the four per-device step programs for one stage."""

    def __init__(self, mesh, gen: Generator, disc, cfg: StepConfig, g_tx, d_tx, teacher: Optional[Generator] = None):
        self.mesh, self.gen, self.disc, self.cfg = mesh, gen, disc, cfg
        self.g_tx, self.d_tx = g_tx, d_tx
        self.teacher = teacher if cfg.distill_weight > 0 else None
        if cfg.distill_weight > 0 and teacher is None:
            raise ValueError('distill_weight > 0 needs a teacher generator')
        self.full = gen.full_channels()
        self.resolutions = gen.output_resolutions[::-1][:cfg.n_res]  # highest first, like the data
        self.traces = collections.Counter()  # program name -> times traced (= compiled)

    # ------------------------------------------------------------------ per-device helpers

    def _keys(self, state: TrainState, tag: int, n: int):
        key = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), tag)
        return jax.random.split(jax.random.fold_in(key, jax.lax.axis_index(AXIS)), n)

    def subnetworks(self, key, batch: int):
        """(widths int32[batch, L] or None, architecture codes [batch, K] or None) for one device's batch.

        One sub-network per minibatch-stddev group of D: D's statistics group ``g`` holds samples
        ``g, g + n_groups, ...`` (the original's ``view(group, -1)``), so sample ``i`` takes draw
        ``i % n_groups`` and every group sees a single architecture, as in the original.
        """
        if self.cfg.channel_mode is None:
            return None, None
        n_groups = batch // min(batch, STDDEV_GROUP)
        draw = lambda k: elastic.sample(k, self.gen.resolution, self.full, self.cfg.channel_mode,
                                        self.cfg.min_channel, self.cfg.divided_by, self.gen.channel_max)
        widths, ratio_idx = jax.vmap(draw)(jax.random.split(key, n_groups))
        member = jnp.arange(batch) % n_groups
        widths, ratio_idx = widths[member], ratio_idx[member]
        return widths, (elastic.arch_code(ratio_idx) if self.cfg.conditioned_d else None)

    def _latents(self, key, batch: int):
        """z [B, 2, D] and an inject index (n_style, i.e. no mixing, with prob 1 - mixing_prob)."""
        kz, km, ki = jax.random.split(key, 3)
        z = jax.random.normal(kz, (batch, 2, self.gen.style_dim))
        n = self.gen.n_style
        mix = jax.random.uniform(km) < self.cfg.mixing_prob
        return z, jnp.where(mix, jax.random.randint(ki, (), 1, n), n)

    def _selected(self, key):
        """Boolean [n_res]: the resolutions trained this step."""
        order = jax.random.permutation(key, self.cfg.n_res)
        return jnp.zeros(self.cfg.n_res, bool).at[order[:self.cfg.n_sampled_res]].set(True)

    def _render(self, g_params, noise, z, inject, widths, noise_key, gen=None):
        """Every trained resolution's RGB output, highest first."""
        gen = gen or self.gen
        _, rgbs = gen.apply({'params': g_params, 'noise': noise}, z, channel_masks=widths, inject_index=inject,
                            noise_mode='random', rngs={'noise': noise_key}, return_rgbs=True)
        return rgbs[::-1][:self.cfg.n_res]

    def _d(self, d_params, x, arch):
        args = (arch,) if self.cfg.conditioned_d else ()
        return self.disc.apply({'params': d_params}, x, *args)

    # ------------------------------------------------------------------ bodies

    def _d_body(self, state: TrainState, reals):
        k_lat, k_arch, k_real_arch, k_res, k_noise = self._keys(state, 0, 5)
        batch = reals[0].shape[0]
        z, inject = self._latents(k_lat, batch)
        widths, arch = self.subnetworks(k_arch, batch)
        _, real_arch = self.subnetworks(k_real_arch, batch)
        fakes = jax.lax.stop_gradient(self._render(state.g_params, state.g_noise, z, inject, widths, k_noise))
        selected = self._selected(k_res)

        def loss_fn(d_params):
            total, real_acc, fake_acc = 0., 0., 0.
            for i in range(self.cfg.n_res):
                def at_res(dp, i=i):
                    real_logits = self._d(dp, reals[i], real_arch)
                    fake_logits = self._d(dp, fakes[i], arch)
                    return (gan.d_logistic_loss(real_logits, fake_logits), (real_logits > 0).mean(),
                            (fake_logits < 0).mean())
                # Masked on CPU (every resolution's D runs), a real branch elsewhere: xla_cpu.select.
                l, ra, fa = xla_cpu.select(selected[i], at_res, d_params)
                total, real_acc, fake_acc = total + l, real_acc + ra, fake_acc + fa
            n = self.cfg.n_sampled_res
            return total, {'d_loss': total, 'd_real_acc': real_acc / n, 'd_fake_acc': fake_acc / n}

        grads, metrics = jax.grad(loss_fn, has_aux=True)(sharding.varying(state.d_params))
        grads = jax.lax.pmean(grads, AXIS)
        updates, d_opt = self.d_tx.update(grads, state.d_opt_state, state.d_params)
        state = state.replace(d_params=optax.apply_updates(state.d_params, updates), d_opt_state=d_opt)
        return state, jax.lax.pmean(metrics, AXIS)

    def _d_reg_body(self, state: TrainState, reals):
        k_arch, k_res = self._keys(state, 1, 2)
        _, arch = self.subnetworks(k_arch, reals[0].shape[0])  # the original regularizes reals with the fakes' code
        # One resolution, drawn per step (the same on every device: the key ignores the device).
        key = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), 5)
        which = jax.random.randint(key, (), 0, self.cfg.n_res)

        def loss_fn(d_params):
            r1 = 0.
            for i in range(self.cfg.n_res):  # see _d_body
                r1 = r1 + xla_cpu.select(which == i, lambda dp, i=i: gan.r1_penalty(
                    self._d, dp, reals[i], arch), d_params)
            return self.cfg.r1_gamma / 2 * r1 * self.cfg.d_reg_every, r1

        grads, r1 = jax.grad(loss_fn, has_aux=True)(sharding.varying(state.d_params))
        grads = jax.lax.pmean(grads, AXIS)
        updates, d_opt = self.d_tx.update(grads, state.d_opt_state, state.d_params)
        state = state.replace(d_params=optax.apply_updates(state.d_params, updates), d_opt_state=d_opt)
        return state, {'r1': jax.lax.pmean(r1, AXIS)}

    def _apply_g(self, state: TrainState, grads, update_ema=True):
        """The G update; then the EMA, where ``update_ema`` (a bool, possibly traced) says so."""
        grads = jax.lax.pmean(grads, AXIS)
        updates, g_opt = self.g_tx.update(grads, state.g_opt_state, state.g_params)
        params = optax.apply_updates(state.g_params, updates)
        beta = self.cfg.ema_beta
        ema = jax.tree.map(lambda e, p: beta * e + (1 - beta) * p, state.ema_params, params)
        if update_ema is not True:
            ema = jax.tree.map(lambda new, old: jnp.where(update_ema, new, old), ema, state.ema_params)
        return state.replace(g_params=params, g_opt_state=g_opt, ema_params=ema)

    def _g_body(self, state: TrainState, reals, teacher_params):
        k_lat, k_arch, k_res, k_noise = self._keys(state, 2, 4)
        batch = reals[0].shape[0]
        z, inject = self._latents(k_lat, batch)
        widths, arch = self.subnetworks(k_arch, batch)
        selected = self._selected(k_res)
        teacher_img = None
        if self.teacher is not None:  # same z, mixing index and noise, full width
            if self.cfg.teacher_is_ema:  # the EMA lives in the (donated) state: never pass it separately
                teacher_params = state.ema_params
            teacher_img = self.teacher.apply({'params': teacher_params, 'noise': {}}, z, inject_index=inject,
                                             noise_mode='random', rngs={'noise': k_noise})
            teacher_img = jax.lax.stop_gradient(teacher_img)

        def loss_fn(g_params):
            rgbs = self._render(g_params, state.g_noise, z, inject, widths, k_noise)
            adv = 0.
            for i in range(self.cfg.n_res):
                adv = adv + xla_cpu.select(selected[i], lambda x: gan.g_nonsaturating_loss(
                    self._d(state.d_params, x, arch)), rgbs[i])  # see _d_body
            metrics = {'g_loss': adv}
            total = adv
            if teacher_img is not None:
                d_loss = distill.distillation_loss(rgbs[::-1], teacher_img, self.cfg.use_lpips)
                total = total + self.cfg.distill_weight * d_loss
                metrics['distill_loss'] = d_loss
            return total, metrics

        grads, metrics = jax.grad(loss_fn, has_aux=True)(sharding.varying(state.g_params))
        # The iteration's one EMA update comes after path length regularization where that runs.
        state = self._apply_g(state, grads, update_ema=jnp.logical_not(self.cfg.pl_due(state.step)))
        state = state.replace(step=state.step + 1)  # the G step closes an iteration
        return state, jax.lax.pmean(metrics, AXIS)

    def _g_reg_body(self, state: TrainState, reals):
        k_lat, k_noise, k_pl = self._keys(state, 3, 3)
        batch = max(1, reals[0].shape[0] // self.cfg.pl_batch_shrink)
        z, inject = self._latents(k_lat, batch)
        gen = self.gen

        def loss_fn(g_params):
            v = {'params': g_params, 'noise': state.g_noise}
            _, wplus = gen.apply(v, z, inject_index=inject, noise_mode='random', rngs={'noise': k_noise},
                                 return_styles=True)
            synth = lambda w: gen.apply(v, w, input_is_style=True, noise_mode='random', rngs={'noise': k_noise})
            pen, new_mean, lengths = gan.path_length_penalty(synth, wplus, state.mean_path_length, k_pl,
                                                                self.cfg.pl_decay)
            return self.cfg.pl_weight * self.cfg.g_reg_every * pen, (pen, new_mean, lengths.mean())

        grads, (pen, new_mean, length) = jax.grad(loss_fn, has_aux=True)(sharding.varying(state.g_params))
        state = self._apply_g(state, grads)
        state = state.replace(mean_path_length=jax.lax.pmean(new_mean, AXIS))
        return state, jax.lax.pmean({'path_loss': pen, 'path_length': length}, AXIS)

    # ------------------------------------------------------------------ placement

    def shard_batch(self, local_batch):
        """This process's slice of the global batch -> global arrays split over ``data``."""
        return sharding.shard(local_batch, self.mesh)

    def replicate(self, tree):
        """A pytree (the state, teacher parameters) on every device: :func:`anycost_jax.sharding.replicate`."""
        return sharding.replicate(tree, self.mesh)

    # ------------------------------------------------------------------ compiled programs

    def _wrap(self, body, name: str, n_extra: int = 0):
        """jit(shard_map(body)): state replicated, batch split over ``data``; state donated."""
        in_specs = (P(), P(AXIS)) + (P(),) * n_extra

        def counted(*args):  # runs once per trace, i.e. once per compilation
            self.traces[name] += 1
            return body(*args)

        # Outputs pinned to the exact sharding of replicate(): an equivalent spec spelled
        # differently (P(None, None) vs P()) would miss the cache and recompile on the next call.
        return sharding.per_device_program(counted, self.mesh, in_specs, (P(), P()), donate_argnums=0,
                                           out_shardings=sharding.replicated(self.mesh))

    @property
    def waits_for_results(self) -> bool:
        """Whether each program waits for its results (:func:`anycost_jax.xla_cpu.needs_blocking_dispatch`)."""
        return xla_cpu.needs_blocking_dispatch(self.mesh)

    def programs(self) -> dict:
        """``{name: fn(state, reals[, teacher_params]) -> (state, metrics)}``; ``g_step`` advances the step.

        """
        out = {'d_step': self._wrap(self._d_body, 'd_step'), 'g_step': self._wrap(self._g_body, 'g_step', 1),
               'd_reg_step': self._wrap(self._d_reg_body, 'd_reg_step')}
        if self.cfg.pl_weight > 0:
            out['g_reg_step'] = self._wrap(self._g_reg_body, 'g_reg_step')
        return out
