"""Why GAN Slimming's gamma learning rate 0.1 blows up on a small teacher: the curvature of its loss in the gammas.

GAN Slimming updates the norm scales (gammas) by SGD with momentum ``mu`` 0.5 at ``lr_gamma``, then
soft-thresholds them by ``rho * lr_gamma``. On a quadratic with curvature ``lam``, heavy-ball SGD is
stable only while ``lr_gamma * lam < 2 (1 + mu)`` (= 3). This measures, for a trained teacher (any
``--config`` GAN Slimming accepts, ``--config.teacher`` set), the largest eigenvalue ``lam`` of the
Hessian of ``beta * L_percep(G(x), T(x))`` in the gammas (power iteration on Hessian-vector products,
at the start of slimming: every gamma 1, so G = T) at several input sizes (the teacher's convs run at
any size: the upstream's 256 px against the shapes' 32 px), and prints ``lr_gamma * lam`` for the
given rates. It also prints how many steps the proximal step alone needs to zero a gamma of 1
(``1 / (rho * lr_gamma)``), the other way the gammas collapse.

    python -m benchmarks.gs_gamma --config=configs/shapes_img2img.py:gs32 --teacher runs/compression/teacher \\
        --sizes 32,64,128 --lr_gamma 0.1,0.01,0.001 --rho 2
"""
from __future__ import annotations

import argparse
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np

from anycost_jax.data import procedural_img2img  # noqa: F401  (registers the procedural data)
from anycost_jax.losses import slimming as losses
from anycost_jax.models import vgg as vgg_lib
from anycost_jax.models.img2img import gs as gs_lib
from anycost_jax.train import gan_slimming


def _split(params):
    mask = gs_lib.gamma_mask(params)
    leaves, tree = jax.tree.flatten(params)
    flags = jax.tree.leaves(mask)
    gammas = [p for p, m in zip(leaves, flags) if m]

    def join(gs):
        it = iter(gs)
        return jax.tree.unflatten(tree, [next(it) if m else p for p, m in zip(leaves, flags)])
    return gammas, join


def top_eigenvalue(gen, params, x, beta: float, iters: int = 12, seed: int = 0) -> tuple[float, float]:
    """``(lam_max, |grad|)`` of ``beta * L_percep(G_gamma(x), G(x))`` in the gammas at the given params."""
    vgg = vgg_lib.vgg16_variables()
    t_feats = jax.lax.stop_gradient(losses.vgg_features(vgg, gen.apply({'params': params}, x)))
    gammas, join = _split(params)

    def loss(gs, t_feats):  # arguments, not closed-over constants: XLA would constant-fold the Grams
        out = gen.apply({'params': join(gs)}, x)
        return beta * losses.perceptual_loss(losses.vgg_features(vgg, out), t_feats)[0]

    grad_fn = jax.grad(loss)
    hvp = jax.jit(lambda gs, v, t: jax.jvp(lambda g: grad_fn(g, t), (gs,), (v,))[1])
    v = [jax.random.normal(jax.random.key(seed + i), g.shape) for i, g in enumerate(gammas)]
    lam = 0.
    for _ in range(iters):
        n = jnp.sqrt(sum(jnp.sum(a * a) for a in v))
        v = [a / n for a in v]
        hv = hvp(gammas, v, t_feats)
        lam = float(sum(jnp.sum(a * b) for a, b in zip(v, hv)))
        v = hv
    g = jax.jit(grad_fn)(gammas, t_feats)
    return lam, float(jnp.sqrt(sum(jnp.sum(a * a) for a in g)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', required=True, help='path[:arg] of a GAN Slimming config')
    p.add_argument('--teacher', required=True)
    p.add_argument('--sizes', default='32,64,128')
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--lr_gamma', default='0.1,0.01,0.001')
    p.add_argument('--rho', type=float, default=2.)
    p.add_argument('--momentum', type=float, default=0.5)
    args = p.parse_args(argv)
    path, _, arg = args.config.partition(':')
    spec = importlib.util.spec_from_file_location('cfg', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    config = mod.get_config(arg)
    config.teacher = args.teacher
    gen, v = gan_slimming.load_teacher(config)
    inputs, _ = gan_slimming._train_inputs(config, np.arange(args.batch))
    rates = [float(r) for r in args.lr_gamma.split(',')]
    bound = 2 * (1 + args.momentum)
    print(f'teacher {args.teacher}: GS ngf {gen.ngf}, {gen.n_blocks} blocks; heavy-ball bound lr*lam < {bound}')
    for size in (int(s) for s in args.sizes.split(',')):
        x = jax.image.resize(jnp.asarray(inputs, jnp.float32) / 127.5 - 1, (args.batch, size, size, 3), 'nearest')
        lam, g = top_eigenvalue(gen, v['params'], x, config.beta)
        print(f'{size:4d} px: lam_max {lam:10.3f}, |grad| {g:.2e}; ' +
              ', '.join(f'lr {r:g}: lr*lam {r * lam:8.3f}{" UNSTABLE" if r * lam >= bound else ""}' for r in rates))
    for r in rates:
        print(f'lr_gamma {r:g}, rho {args.rho:g}: the proximal step alone zeroes a gamma of 1 in '
              f'{1 / (args.rho * r):.0f} steps (at the initial rate)')


if __name__ == '__main__':
    main()
