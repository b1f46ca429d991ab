"""The image-to-image training iterations, with pmap semantics: a per-device body under
``jax.jit(jax.shard_map(...))``, gradients and batch-norm statistics averaged with ``pmean``.
Each is gan-compression's ``optimize_parameters`` of one model, in its order.

**pix2pix** (``Pix2PixModel``)::

    fake = G(A)                                   (train mode: dropout, batch statistics)
    D step: 0.5 * [gan(D(A | fake), False) + gan(D(A | B), True)]   (fake constant)
    G step: lambda_gan * gan(D'(A | fake), True, for G) + lambda_recon * L1(fake, B)

where ``D'`` is the discriminator *after* its step and ``fake`` the same forward pass (G runs
once: its gradient is pulled back through that pass). Every D call is in train mode, so a batch
norm in D updates its statistics three times per iteration, as the original's does.

**CycleGAN** (``CycleGANModel``): generators G_A: A -> B and G_B: B -> A, discriminators D_A
(on B) and D_B (on A), unconditional::

    fake_B = G_A(A), rec_A = G_B(fake_B), fake_A = G_B(B), rec_B = G_A(fake_A)
    idt_A = G_A(B), idt_B = G_B(A)                               (lambda_identity > 0)
    G step (both): gan(D_A(fake_B)) + gan(D_B(fake_A)) + lambda_A L1(rec_A, A) + lambda_B L1(rec_B, B)
                   + lambda_identity (lambda_B L1(idt_A, B) + lambda_A L1(idt_B, A))
    D step (both, after G's): 0.5 [gan(D_A(B), True) + gan(D_A(pool_B(fake_B)), False)], same for D_B

with one Adam over both generators and one over both discriminators, as the original. The
image pools hold generated images of the **global** batch (gathered from every device, queried
with one key, each device taking its own rows back), so a data-parallel run keeps the single
pool of the original.

**GauGAN** (``SPADEModel``, SPADE generator and multi-scale discriminator)::

    G step: fake = G(seg); D((seg | fake) ++ (seg | real))  (fake and real in one D batch)
            lambda_gan hinge_G(fake) + lambda_feat FM(fake, real) + lambda_vgg VGG(fake, real)
    D step (after G's): fake = G'(seg) again (train mode, no gradient); D on both again;
            hinge(fake, False) + hinge(real, True)         (no 0.5)

TTUR by default: G lr / 2, D lr * 2, betas (0, 0.9). G's synchronized batch norm becomes batch
statistics over the whole global batch when the generator is built with ``axis_name=AXIS``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Union

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from anycost_jax import sharding
from anycost_jax.losses import img2img as losses
from anycost_jax.models.img2img.spade import semantic_input
from anycost_jax.sharding import AXIS

Schedule = Union[float, Callable[[jax.Array], jax.Array]]
RECONS = ('l1', 'l2', 'smooth_l1')
POOL_STREAM = 0x706f6f6c  # 'pool': the image pools' random stream, apart from the per-device keys


@flax.struct.dataclass
class Img2ImgState:
    """One family's training state. ``g_*`` / ``d_*`` are one network's trees (pix2pix, GauGAN) or
    ``{'A': ..., 'B': ...}`` (CycleGAN); ``*_stats`` are the non-parameter collections (batch-norm
    statistics, spectral-norm vectors; ``{}`` without them); ``pools`` CycleGAN's image pools."""
    step: jax.Array
    rng: jax.Array
    g_params: Any
    g_stats: Any
    d_params: Any
    d_stats: Any
    g_opt_state: Any
    d_opt_state: Any
    pools: Any = None



def _check_gan_mode(mode: str) -> None:
    if mode not in losses.GAN_MODES:
        raise ValueError(f'gan_mode={mode!r} is not one of {losses.GAN_MODES}')


@dataclasses.dataclass(frozen=True)
class Pix2PixConfig:
    gan_mode: str = 'hinge'  # gan-compression's default
    lambda_gan: float = 1.
    lambda_recon: float = 100.
    recon: str = 'l1'

    def __post_init__(self):
        _check_gan_mode(self.gan_mode)
        if self.recon not in RECONS:
            raise ValueError(f'recon={self.recon!r}; expected one of {RECONS}')


@dataclasses.dataclass(frozen=True)
class CycleGANConfig:
    """The original's defaults: LSGAN, cycle weights 10, identity 0.5 (of the cycle weights), pools of 50."""
    gan_mode: str = 'lsgan'
    lambda_A: float = 10.
    lambda_B: float = 10.
    lambda_identity: float = 0.5
    pool_size: int = 50

    def __post_init__(self):
        _check_gan_mode(self.gan_mode)
        if self.pool_size < 0:
            raise ValueError(f'pool_size={self.pool_size} must be >= 0 (0: no pool)')
        if min(self.lambda_A, self.lambda_B, self.lambda_identity) < 0:
            raise ValueError(f'CycleGAN loss weights must be >= 0: {self}')


@dataclasses.dataclass(frozen=True)
class GauGANConfig:
    gan_mode: str = 'hinge'
    lambda_gan: float = 1.
    lambda_feat: float = 10.
    lambda_vgg: float = 10.

    def __post_init__(self):
        _check_gan_mode(self.gan_mode)


def adam(lr: Schedule, beta1: float = 0.5, beta2: float = 0.999) -> optax.GradientTransformation:
    """torch.optim.Adam(lr, betas=(beta1, beta2)): eps 1e-8 added to sqrt(v), as optax does."""
    return optax.adam(lr, b1=beta1, b2=beta2, eps=1e-8)


def ttur(lr: float, schedule: Callable[[float], Schedule] = lambda lr: lr, use: bool = True,
         beta1: float = 0., beta2: float = 0.9):
    """GauGAN's optimizers ``(g_tx, d_tx)``: with TTUR (the default) G at lr / 2 and D at 2 lr, betas
    (0, 0.9); without, both at lr with ``(beta1, beta2)``. ``schedule(lr)`` makes each rate's schedule."""
    if use:
        return adam(schedule(lr / 2), 0., 0.9), adam(schedule(lr * 2), 0., 0.9)
    return adam(schedule(lr), beta1, beta2), adam(schedule(lr), beta1, beta2)


def linear_decay(lr: float, steps_per_epoch: int, n_epochs: int, n_epochs_decay: int) -> Callable:
    """The original's 'linear' policy: ``lr`` for ``n_epochs`` epochs, then linearly to
    ``lr / (n_epochs_decay + 1)`` over ``n_epochs_decay`` more, stepped once per epoch."""
    def schedule(count):
        epoch = count // steps_per_epoch
        return lr * (1. - jnp.maximum(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1))
    return schedule


def split_variables(variables: dict):
    """Flax variables -> (params, every other collection)."""
    return variables['params'], {k: v for k, v in variables.items() if k != 'params'}


def create_state(rng, g_vars: dict, d_vars: dict, g_tx, d_tx, pools=None) -> Img2ImgState:
    """``g_vars`` / ``d_vars``: one network's variables, or ``{'A': ..., 'B': ...}`` of two (CycleGAN)."""
    def split(v):
        if set(v) == {'A', 'B'}:
            (pa, sa), (pb, sb) = split_variables(v['A']), split_variables(v['B'])
            return {'A': pa, 'B': pb}, {'A': sa, 'B': sb}
        return split_variables(v)
    g_params, g_stats = split(g_vars)
    d_params, d_stats = split(d_vars)
    return Img2ImgState(step=jnp.zeros((), jnp.int32), rng=rng, g_params=g_params, g_stats=g_stats,
                        d_params=d_params, d_stats=d_stats, g_opt_state=g_tx.init(g_params),
                        d_opt_state=d_tx.init(d_params), pools=pools)


def recon_loss(fake, real, kind: str = 'l1'):
    """torch's L1Loss / MSELoss / SmoothL1Loss (beta 1), means."""
    d = fake - real
    if kind == 'l1':
        return jnp.mean(jnp.abs(d))
    if kind == 'l2':
        return jnp.mean(jnp.square(d))
    a = jnp.abs(d)
    return jnp.mean(jnp.where(a < 1, 0.5 * a * a, a - 0.5))


def _run(module, params, stats, x, **kw):
    """``module`` in train mode, its non-parameter collections mutable: ``(out, new stats)``."""
    out, new = module.apply({'params': params, **stats}, x, train=True, mutable=list(stats), **kw)
    return out, {**stats, **new}


def _update(tx, grads, opt_state, params):
    """One optimizer step on the device-averaged gradients (of per-device copies: see sharding.varying)."""
    updates, opt_state = tx.update(jax.lax.pmean(grads, AXIS), opt_state, params)
    return optax.apply_updates(params, updates), opt_state


class _Steps:
    """What every family's iteration shares: the per-device key, the compiled program (traces
    counted: one compilation for every step), batch sharding and replication."""
    batch_keys: tuple = ('A', 'B')
    n_extra_args: int = 0  # replicated arguments after the batch (a frozen teacher's variables)

    def __init__(self, mesh, gen, disc, cfg, g_tx, d_tx):
        self.mesh, self.gen, self.disc, self.cfg = mesh, gen, disc, cfg
        self.g_tx, self.d_tx = g_tx, d_tx
        self.traces = 0

    @staticmethod
    def device_key(state):
        return jax.random.fold_in(jax.random.fold_in(state.rng, state.step), jax.lax.axis_index(AXIS))

    def body(self, state, batch):
        raise NotImplementedError

    def program(self):
        """``fn(state, batch, *extra) -> (state, metrics)`` (``batch`` split over ``data``, ``extra`` the
        replicated :attr:`n_extra_args` arguments); donates the state."""
        def counted(state, batch, *extra):  # runs once per trace, i.e. once per compilation
            self.traces += 1
            missing = [k for k in self.batch_keys if k not in batch]
            if missing:
                raise KeyError(f'{type(self).__name__} needs batch keys {self.batch_keys}; missing {missing}')
            return self.body(state, batch, *extra)
        in_specs = (P(), P(AXIS)) + (P(),) * self.n_extra_args
        return sharding.per_device_program(counted, self.mesh, in_specs, (P(), P()), donate_argnums=0,
                                           out_shardings=sharding.replicated(self.mesh))

    def shard_batch(self, local_batch):
        return sharding.shard(local_batch, self.mesh)

    def replicate(self, tree):
        return sharding.replicate(tree, self.mesh)


class Pix2PixSteps(_Steps):
    """The pix2pix iteration for generator ``gen`` and discriminator ``disc`` (conditional: it sees
    input and output concatenated on channels)."""

    def body(self, state: Img2ImgState, batch):
        cfg, a, b = self.cfg, batch['A'], batch['B']
        key = self.device_key(state)

        def g_forward(params):
            return _run(self.gen, params, state.g_stats, a, rngs={'dropout': key})

        fake, g_vjp, g_stats = jax.vjp(g_forward, sharding.varying(state.g_params), has_aux=True)

        def d_loss(params):
            pred_fake, stats = _run(self.disc, params, state.d_stats,
                                    jnp.concatenate([a, jax.lax.stop_gradient(fake)], axis=-1))
            pred_real, stats = _run(self.disc, params, stats, jnp.concatenate([a, b], axis=-1))
            lf, lr = losses.gan_loss(pred_fake, False, cfg.gan_mode), losses.gan_loss(pred_real, True, cfg.gan_mode)
            return 0.5 * (lf + lr), (stats, {'D_fake': lf, 'D_real': lr})

        (_, (d_stats, d_metrics)), d_grads = jax.value_and_grad(d_loss, has_aux=True)(
            sharding.varying(state.d_params))
        d_params, d_opt_state = _update(self.d_tx, d_grads, state.d_opt_state, state.d_params)

        def g_loss(fake):
            pred, stats = _run(self.disc, d_params, d_stats, jnp.concatenate([a, fake], axis=-1))
            gan = losses.gan_loss(pred, True, cfg.gan_mode, for_discriminator=False) * cfg.lambda_gan
            recon = recon_loss(fake, b, cfg.recon) * cfg.lambda_recon
            return gan + recon, (stats, {'G_gan': gan, 'G_recon': recon})

        (_, (d_stats, g_metrics)), d_fake = jax.value_and_grad(g_loss, has_aux=True)(fake)
        g_grads, = g_vjp(d_fake)
        g_params, g_opt_state = _update(self.g_tx, g_grads, state.g_opt_state, state.g_params)
        state = state.replace(
            step=state.step + 1, g_params=g_params, g_opt_state=g_opt_state, d_params=d_params,
            d_opt_state=d_opt_state,
            # every device's statistics of its share of the batch, averaged so the replicas agree
            g_stats=jax.lax.pmean(g_stats, AXIS), d_stats=jax.lax.pmean(d_stats, AXIS))
        return state, jax.lax.pmean({**d_metrics, **g_metrics}, AXIS)


def _global_pool_query(pool, images, key):
    """Queries one pool with the global batch (every device's ``images`` gathered in device
    order, the same ``key`` everywhere) and returns this device's rows of the answer."""
    n, me = images.shape[0], jax.lax.axis_index(AXIS)
    # a gather as a psum of disjoint rows: its result is the same on every device (all_gather's is
    # typed per-device), so the pool stays one replicated value
    rows = jnp.zeros((n * jax.lax.axis_size(AXIS), *images.shape[1:]), images.dtype)
    everything = jax.lax.psum(jax.lax.dynamic_update_slice_in_dim(rows, images, me * n, 0), AXIS)
    out, pool = losses.pool_query(pool, everything, key)
    return jax.lax.dynamic_slice_in_dim(out, me * n, n), pool


class CycleGANSteps(_Steps):
    """The CycleGAN iteration: ``gen`` serves as G_A and G_B, ``disc`` as D_A and D_B (one
    architecture each, two parameter sets in the state's ``{'A', 'B'}`` trees)."""

    def init_pools(self, image_shape) -> dict:
        return {k: losses.pool_init(self.cfg.pool_size, image_shape) for k in ('A', 'B')}

    def body(self, state: Img2ImgState, batch):
        cfg, real_a, real_b = self.cfg, batch['A'], batch['B']
        key = self.device_key(state)
        k_drop = jax.random.split(key, 6)
        # the pools' key is the same on every device (they answer for the global batch): its own stream
        k_pool_a, k_pool_b = jax.random.split(jax.random.fold_in(jax.random.fold_in(state.rng, POOL_STREAM), state.step))

        def g_loss(g_params):
            stats, calls = dict(state.g_stats), iter(k_drop)

            def g(side, x):
                out, stats[side] = _run(self.gen, g_params[side], stats[side], x, rngs={'dropout': next(calls)})
                return out

            # the original's call order (it matters to batch norm statistics)
            fake_b = g('A', real_a)
            rec_a = g('B', fake_b)
            fake_a = g('B', real_b)
            rec_b = g('A', fake_a)
            m = {}
            if cfg.lambda_identity > 0:
                m['G_idt_A'] = recon_loss(g('A', real_b), real_b) * cfg.lambda_B * cfg.lambda_identity
                m['G_idt_B'] = recon_loss(g('B', real_a), real_a) * cfg.lambda_A * cfg.lambda_identity
            d_stats = dict(state.d_stats)
            for side, fake in (('A', fake_b), ('B', fake_a)):  # D_A judges B images, D_B A images
                pred, d_stats[side] = _run(self.disc, state.d_params[side], d_stats[side], fake)
                m[f'G_{side}'] = losses.gan_loss(pred, True, cfg.gan_mode, for_discriminator=False)
            m['G_cycle_A'] = recon_loss(rec_a, real_a) * cfg.lambda_A
            m['G_cycle_B'] = recon_loss(rec_b, real_b) * cfg.lambda_B
            return sum(m.values()), (stats, d_stats, fake_a, fake_b, m)

        (_, (g_stats, d_stats, fake_a, fake_b, g_metrics)), g_grads = jax.value_and_grad(g_loss, has_aux=True)(
            sharding.varying(state.g_params))
        g_params, g_opt_state = _update(self.g_tx, g_grads, state.g_opt_state, state.g_params)

        pooled_b, pool_b = _global_pool_query(state.pools['B'], jax.lax.stop_gradient(fake_b), k_pool_b)
        pooled_a, pool_a = _global_pool_query(state.pools['A'], jax.lax.stop_gradient(fake_a), k_pool_a)

        def d_loss(d_params):
            stats, m = dict(d_stats), {}
            for side, real, fake in (('A', real_b, pooled_b), ('B', real_a, pooled_a)):
                pred_real, stats[side] = _run(self.disc, d_params[side], stats[side], real)
                pred_fake, stats[side] = _run(self.disc, d_params[side], stats[side], fake)
                m[f'D_{side}'] = losses.discriminator_loss(pred_real, pred_fake, cfg.gan_mode)
            return m['D_A'] + m['D_B'], (stats, m)

        (_, (d_stats, d_metrics)), d_grads = jax.value_and_grad(d_loss, has_aux=True)(sharding.varying(state.d_params))
        d_params, d_opt_state = _update(self.d_tx, d_grads, state.d_opt_state, state.d_params)
        state = state.replace(
            step=state.step + 1, g_params=g_params, g_opt_state=g_opt_state, d_params=d_params,
            d_opt_state=d_opt_state, g_stats=jax.lax.pmean(g_stats, AXIS), d_stats=jax.lax.pmean(d_stats, AXIS),
            pools={'A': pool_a, 'B': pool_b})
        return state, jax.lax.pmean({**g_metrics, **d_metrics}, AXIS)


class GauGANSteps(_Steps):
    """The GauGAN iteration: ``gen`` a SPADE generator, ``disc`` the multi-scale discriminator (on
    seg | image), ``vgg`` a function images -> the five VGG19 feature maps (``None``: ``lambda_vgg``
    must be 0). The batch holds ``label`` (int class ids [N, H, W]), ``instance`` (instance ids, with
    ``use_instance``) and ``image`` (the real image); the generator's input, one-hot classes (+
    instance edges), is made on the device (:func:`anycost_jax.models.img2img.semantic_input`)."""

    def __init__(self, mesh, gen, disc, cfg: GauGANConfig, g_tx, d_tx, vgg: Optional[Callable] = None, *,
                 n_classes: int, use_instance: bool = False):
        if cfg.lambda_vgg and vgg is None:
            raise ValueError(f'lambda_vgg={cfg.lambda_vgg} needs VGG19 features (vgg=...); pass them, or set '
                             'lambda_vgg=0')
        super().__init__(mesh, gen, disc, cfg, g_tx, d_tx)
        self.vgg, self.n_classes, self.use_instance = vgg, n_classes, use_instance
        self.batch_keys = ('label', 'instance', 'image') if use_instance else ('label', 'image')

    def _discriminate(self, d_params, d_stats, seg, fake, real):
        """D on fake and real in one batch (as the original), split back: ``(fake outs, real outs, stats)``."""
        both = jnp.concatenate([jnp.concatenate([seg, fake], -1), jnp.concatenate([seg, real], -1)], 0)
        outs, d_stats = _run(self.disc, d_params, d_stats, both)
        n = seg.shape[0]
        return jax.tree.map(lambda t: t[:n], outs), jax.tree.map(lambda t: t[n:], outs), d_stats

    def body(self, state: Img2ImgState, batch):
        cfg, real = self.cfg, batch['image']
        seg = semantic_input(batch['label'], self.n_classes, batch['instance'] if self.use_instance else None)

        def g_loss(g_params):
            fake, g_stats = _run(self.gen, g_params, state.g_stats, seg)
            pred_fake, pred_real, d_stats = self._discriminate(state.d_params, state.d_stats, seg, fake, real)
            m = {'G_gan': losses.gan_loss(pred_fake, True, cfg.gan_mode, for_discriminator=False) * cfg.lambda_gan,
                 'G_feat': losses.feature_matching_loss(pred_fake, pred_real) * cfg.lambda_feat}
            if cfg.lambda_vgg:
                m['G_vgg'] = losses.vgg_loss(self.vgg, fake, real) * cfg.lambda_vgg
            return sum(m.values()), (g_stats, d_stats, m)

        (_, (g_stats, d_stats, g_metrics)), g_grads = jax.value_and_grad(g_loss, has_aux=True)(
            sharding.varying(state.g_params))
        g_params, g_opt_state = _update(self.g_tx, g_grads, state.g_opt_state, state.g_params)

        # the D step draws a new fake from the updated generator, in train mode (statistics update again)
        fake, g_stats = _run(self.gen, g_params, g_stats, seg)
        fake = jax.lax.stop_gradient(fake)

        def d_loss(d_params):
            pred_fake, pred_real, stats = self._discriminate(d_params, d_stats, seg, fake, real)
            m = {'D_fake': losses.gan_loss(pred_fake, False, cfg.gan_mode),
                 'D_real': losses.gan_loss(pred_real, True, cfg.gan_mode)}
            return m['D_fake'] + m['D_real'], (stats, m)

        (_, (d_stats, d_metrics)), d_grads = jax.value_and_grad(d_loss, has_aux=True)(sharding.varying(state.d_params))
        d_params, d_opt_state = _update(self.d_tx, d_grads, state.d_opt_state, state.d_params)
        state = state.replace(
            step=state.step + 1, g_params=g_params, g_opt_state=g_opt_state, d_params=d_params,
            d_opt_state=d_opt_state, g_stats=jax.lax.pmean(g_stats, AXIS), d_stats=jax.lax.pmean(d_stats, AXIS))
        return state, jax.lax.pmean({**g_metrics, **d_metrics}, AXIS)


# ---------------------------------------------------------------------------- GAN Compression


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """GAN Compression's distiller options (``distillers/base_resnet_distiller.py``): ``paired`` is the
    aligned mode (D sees input | output, the reconstruction is to the real target); unpaired, the
    reconstruction is to the teacher's output (pseudo-pairs) and D sees outputs only. The upstream
    scripts set e.g. CycleGAN horse2zebra lambda_recon 10, lambda_distill 0.01, lsgan."""
    gan_mode: str = 'hinge'
    lambda_gan: float = 1.
    lambda_recon: float = 100.
    lambda_distill: float = 1.
    recon: str = 'l1'
    paired: bool = True

    def __post_init__(self):
        _check_gan_mode(self.gan_mode)
        if self.recon not in RECONS:
            raise ValueError(f'recon={self.recon!r}; expected one of {RECONS}')


class DistillSteps(_Steps):
    """One iteration of GAN Compression's ``ResnetDistiller.optimize_parameters``::

        T = teacher(A) (eval mode, frozen), S = student(A) (train mode), one forward each
        D loss: 0.5 [gan(D(fake), False) + gan(D(real), True)], fake = (A |) S, real = (A |) B
        G loss (D *before* its update, as the original steps both optimizers at the end):
            lambda_gan gan(D(fake), True) + lambda_recon recon(S, B or T)
            + lambda_distill sum_i MSE(adapter_i(S_i), T_i)

    ``gen`` is the student, ``teacher`` the teacher (its variables are the program's third argument,
    replicated and never updated), ``adapters`` the :class:`anycost_jax.losses.distill_img2img.Adapters`;
    the state's ``g_params`` is ``{'student': ..., 'adapters': ...}`` (one optimizer over both, as the
    original's).

    ``sample_widths(key, step) -> int [L]``: once-for-all supernet training (``ResnetSupernet``):
    every device draws its own sub-network each step (its own key), run as masks, so one compiled
    program serves every configuration; the adapters read the masked activations (dead channels
    zero), which is the original's ``SuperConv2d`` on the sliced ones."""
    n_extra_args = 1

    def __init__(self, mesh, gen, teacher, disc, adapters, cfg: DistillConfig, g_tx, d_tx, mapping_layers,
                 sample_widths: Optional[Callable] = None):
        super().__init__(mesh, gen, disc, cfg, g_tx, d_tx)
        self.teacher, self.adapters, self.mapping_layers = teacher, adapters, tuple(mapping_layers)
        self.sample_widths = sample_widths

    def body(self, state: Img2ImgState, batch, teacher_vars):
        from anycost_jax.losses import distill_img2img as distill
        cfg, a, b = self.cfg, batch['A'], batch['B']
        key = self.device_key(state)
        t_out, t_new = self.teacher.apply(teacher_vars, a, train=False, mutable=['intermediates'])
        t_out = jax.lax.stop_gradient(t_out)
        t_acts = jax.lax.stop_gradient(distill.activations(t_new['intermediates'], self.mapping_layers))

        # supernet training: this device's sub-network, as traced widths (masks)
        kw = {} if self.sample_widths is None else {'widths': self.sample_widths(jax.random.fold_in(key, 1), state.step)}

        def g_forward(g_params):
            mutable = list(state.g_stats) + ['intermediates']
            out, new = self.gen.apply({'params': g_params['student'], **state.g_stats}, a, train=True,
                                      mutable=mutable, rngs={'dropout': key}, **kw)
            s_acts = distill.activations(new.pop('intermediates'), self.mapping_layers)
            total, per = distill.distill_loss(self.adapters.apply({'params': g_params['adapters']}, s_acts), t_acts)
            return (out, total), ({**state.g_stats, **new}, per)

        (fake, distill_total), g_vjp, (g_stats, per_layer) = jax.vjp(
            g_forward, sharding.varying(state.g_params), has_aux=True)

        def d_in(x):
            return jnp.concatenate([a, x], axis=-1) if cfg.paired else x

        def d_loss(params):
            pred_fake, stats = _run(self.disc, params, state.d_stats, d_in(jax.lax.stop_gradient(fake)))
            pred_real, stats = _run(self.disc, params, stats, d_in(b))
            lf, lr = losses.gan_loss(pred_fake, False, cfg.gan_mode), losses.gan_loss(pred_real, True, cfg.gan_mode)
            return 0.5 * (lf + lr), (stats, {'D_fake': lf, 'D_real': lr})

        (_, (d_stats, d_metrics)), d_grads = jax.value_and_grad(d_loss, has_aux=True)(
            sharding.varying(state.d_params))

        def g_loss(fake):  # D's parameters before its update
            pred, stats = _run(self.disc, state.d_params, d_stats, d_in(fake))
            gan = losses.gan_loss(pred, True, cfg.gan_mode, for_discriminator=False) * cfg.lambda_gan
            recon = recon_loss(fake, b if cfg.paired else t_out, cfg.recon) * cfg.lambda_recon
            return gan + recon, (stats, {'G_gan': gan, 'G_recon': recon})

        (_, (d_stats, g_metrics)), d_fake = jax.value_and_grad(g_loss, has_aux=True)(fake)
        g_grads, = g_vjp((d_fake, sharding.varying(jnp.asarray(cfg.lambda_distill, distill_total.dtype))))
        d_params, d_opt_state = _update(self.d_tx, d_grads, state.d_opt_state, state.d_params)
        g_params, g_opt_state = _update(self.g_tx, g_grads, state.g_opt_state, state.g_params)
        metrics = {**d_metrics, **g_metrics, 'G_distill': distill_total * cfg.lambda_distill,
                   **{f'G_distill{i}': v for i, v in enumerate(per_layer)}}
        state = state.replace(
            step=state.step + 1, g_params=g_params, g_opt_state=g_opt_state, d_params=d_params,
            d_opt_state=d_opt_state, g_stats=jax.lax.pmean(g_stats, AXIS), d_stats=jax.lax.pmean(d_stats, AXIS))
        return state, jax.lax.pmean(metrics, AXIS)
