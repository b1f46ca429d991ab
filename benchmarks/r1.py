"""The lazy R1 regularizer's gradient: forward-over-reverse (ours) against reverse-over-reverse.

``anycost_jax.losses.gan.r1_penalty`` takes the gradient of ``mean |dD/dx|^2`` with respect to D's
parameters as a JVP of the parameter gradient along the input gradient (a custom VJP). The
baseline is what autodiff of the same penalty does: ``jax.grad`` of a function that itself calls
``jax.grad`` (reverse over reverse). Both are timed in the same process on the same D, weights and
batch, on random-init weights of the multi-resolution D (``DiscriminatorMultiRes``, unconditioned,
as the multires stage trains it) at each ``--configs`` entry ``res:channel_multiplier:channel_max:n_res``.

Protocol: both programs are jitted and compiled untimed, checked to agree (max relative
difference printed), then ``--rounds`` rounds alternate the two variants, each ``--repeats``
timed calls ending with ``jax.block_until_ready``; the table shows the medians over every round
and the ratio baseline / ours (> 1: ours faster). Alternating rounds keeps a load drift on a
shared machine from favouring either side; the ratio is the number to read.

Run from the repository root::

    python -m benchmarks.r1                                  # the demo's D and the 32 px x0.25 one
    python -m benchmarks.r1 --configs 64:2:512:4 --repeats 3 # the train_step default (slow on CPU)
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from anycost_jax.losses import gan
from anycost_jax.models.discriminator import DiscriminatorMultiRes


def reverse_over_reverse(apply, params, x):
    """The baseline: autodiff of the penalty (the gradient of a gradient)."""
    def penalty(p):
        g = jax.grad(lambda v: apply(p, v).sum())(x)
        return jnp.square(g).reshape(g.shape[0], -1).sum(1).mean()
    return jax.grad(penalty)(params)


def forward_over_reverse(apply, params, x):
    return jax.grad(lambda p: gan.r1_penalty(apply, p, x))(params)


def max_rel_diff(a, b) -> float:
    diffs = jax.tree.map(lambda u, v: float(jnp.max(jnp.abs(u - v)) / (jnp.max(jnp.abs(u)) + 1e-30)), a, b)
    return max(jax.tree.leaves(diffs))


def run_config(spec: str, batch: int, repeats: int, rounds: int, seed: int) -> dict:
    res, mult, cmax, n_res = spec.split(':')
    res, mult, cmax, n_res = int(res), float(mult), int(cmax), int(n_res)
    disc = DiscriminatorMultiRes(res, n_res=n_res, modulate=False, channel_multiplier=mult, channel_max=cmax)
    params = disc.init_variables(jax.random.key(seed))['params']
    x = jax.random.uniform(jax.random.key(seed + 1), (batch, res, res, 3), minval=-1, maxval=1)
    apply = lambda p, v: disc.apply({'params': p}, v)
    variants = {'reverse-over-reverse': jax.jit(lambda p, v: reverse_over_reverse(apply, p, v)),
                'ours (forward-over-reverse)': jax.jit(lambda p, v: forward_over_reverse(apply, p, v))}
    outs, compile_s = {}, {}
    for name, fn in variants.items():
        t = time.perf_counter()
        outs[name] = jax.block_until_ready(fn(params, x))
        compile_s[name] = time.perf_counter() - t
    diff = max_rel_diff(*outs.values())
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            for _ in range(repeats):
                t = time.perf_counter()
                jax.block_until_ready(fn(params, x))
                times[name].append(time.perf_counter() - t)
    med = {name: float(np.median(ts)) * 1e3 for name, ts in times.items()}
    base, ours = med['reverse-over-reverse'], med['ours (forward-over-reverse)']
    return {'config': spec, 'batch': batch, 'ms': med, 'compile_s': compile_s, 'ratio': base / ours,
            'max_rel_diff': diff}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--configs', nargs='+', default=['16:0.03125:64:2', '32:0.25:512:3'],
                   help='res:channel_multiplier:channel_max:n_res (default: configs/demo.py, the 32 px x0.25 D)')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    print(f'{jax.device_count()}x {jax.devices()[0].platform}, jax {jax.__version__}, batch {args.batch}, '
          f'median of {args.rounds}x{args.repeats} calls per variant, rounds alternating')
    print(f'{"D config":>18} {"rev-over-rev ms":>16} {"ours ms":>9} {"ratio":>6} {"max rel diff":>13}')
    for spec in args.configs:
        r = run_config(spec, args.batch, args.repeats, args.rounds, args.seed)
        print(f'{spec:>18} {r["ms"]["reverse-over-reverse"]:16.1f} {r["ms"]["ours (forward-over-reverse)"]:9.1f} '
              f'{r["ratio"]:6.2f} {r["max_rel_diff"]:13.1e}')


if __name__ == '__main__':
    main()
