"""Latency of the jitted Anycost generator: sliced vs masked sub-generators, optionally vs the original.

For every config ``ratio@target_res`` (``--configs``) and batch size (``--batch``) this times,
on random-init weights of ``Generator(--resolution)`` (config-f: channel multiplier 2, style dim
512, 8-layer mapping; z input, so the mapping network is included; the stored const noise):

* ``sliced``: ``jax.jit`` of ``gen.apply(v, z, channel_ratio=r, target_res=t)`` with ``r`` and
  ``t`` static, so the parameters are sliced and XLA only computes the sub-generator (one
  compiled program per config);
* ``masked``: ``jax.jit`` of ``gen.apply(v, z, channel_masks=widths, target_res=t)`` with the
  int widths as a traced array: one compiled program per (target_res, batch) serves every
  ratio, but it always computes at full width (skip with ``--no_masked``);
* optionally ``original``: the original PyTorch generator (native ops, ``torch.no_grad()``,
  ``set_uniform_channel_ratio`` + ``target_res``, ``randomize_noise=False``) in a subprocess,
  with the *same* weights and batch.

Protocol, identical for every variant: the first call (compilation for ours, reported as
``compile s``) and ``--warmup`` further calls are untimed, then ``--repeats`` timed calls, each
ending with ``jax.block_until_ready`` (the original is synchronous on CPU); the table shows the
median in milliseconds. ``--rounds R`` repeats the whole measurement R times, alternating ours
and the original, and pools the runs of every round before taking the median: on a machine
shared with other jobs this keeps load drifts from favouring either side.

Columns: ``GMACs`` as the paper counts them (``anycost_jax.macs.generator_macs`` at this batch);
``MAC red.`` = MACs(full) / MACs(config) and ``speed-up`` = latency(full) / latency(config), where
*full* is ratio 1.0 at ``target_res = --resolution`` with the same batch and variant (always
timed, added if absent from ``--configs``); ``orig ms`` is the original's median and
``ours/orig`` = sliced / original latency (below 1: ours is faster).

Threads: XLA uses every core this process may run on (``os.sched_getaffinity``); the original
gets as many torch threads (``--threads`` overrides the torch side). Prefix the command with
``taskset -c 0`` for a single-core comparison.

Run from the repository root::

    python -m benchmarks.generator                                # 1024 config-f, the preview configs
    python -m benchmarks.generator --configs 1@1024,0.75@1024,0.5@1024,0.25@1024 --batch 1 4
    python -m benchmarks.generator --resolution 256 --repeats 20 --json out.json
    source /work/ref/env.sh   # here: FORCE_NATIVE=1 and the PYTHONPATH the original checkout needs
    python -m benchmarks.generator --original_repo /work/ref --original_python /work/refenv/bin/python \
        --rounds 3 --json out.json

``--original_repo`` is a checkout of the original code; it must import ``models.anycost_gan`` and
``models.dynamic_channel`` under the inherited environment (its ``models/__init__`` imports
torchvision, so that, or a stub, must be importable). The weights are written with
:func:`anycost_jax.convert.save_original` to a temporary ``.pt`` and loaded there with
``torch.load`` + ``load_state_dict``; ``FORCE_NATIVE=1`` is set so that the native (pure PyTorch)
ops run. ``--json out.json`` saves the table (every median, speed-up and ratio) and the settings.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

from anycost_jax import convert, elastic
from anycost_jax.macs import generator_macs
from anycost_jax.models.generator import Generator

PREVIEW_CONFIGS = '1@256,0.5@256,0.25@128,0.25@64'

# Runs in the user's torch interpreter; imports the user-supplied original checkout.
_ORIGINAL_SNIPPET = r'''
import json, os, sys, time
os.environ['FORCE_NATIVE'] = '1'
a = json.loads(sys.argv[1])
sys.path.insert(0, a['repo'])
import torch
torch.set_num_threads(a['threads'])
from models.anycost_gan import Generator
from models.dynamic_channel import set_uniform_channel_ratio
g = Generator(a['resolution'], style_dim=a['style_dim'], n_mlp=a['n_mlp'],
              channel_multiplier=a['channel_multiplier'], channel_max=a['channel_max'])
g.load_state_dict(torch.load(a['checkpoint'])['g_ema'])
g.eval()
out = []
with torch.no_grad():
    for ratio, target_res, batch in a['configs']:
        set_uniform_channel_ratio(g, ratio)
        z = torch.randn(batch, 1, a['style_dim'], generator=torch.Generator().manual_seed(0))
        run = lambda: g(z, randomize_noise=False, target_res=target_res)[0]
        for _ in range(1 + a['warmup']):
            run()
        times = []
        for _ in range(a['repeats']):
            t = time.perf_counter()
            run()
            times.append((time.perf_counter() - t) * 1e3)
        out.append(times)
with open(a['out'], 'w') as f:
    json.dump({'ms': out, 'torch': torch.__version__, 'threads': torch.get_num_threads()}, f)
'''


def parse_configs(text: str) -> list[tuple[float, int]]:
    configs = []
    for item in text.split(','):
        ratio, res = item.strip().split('@')
        configs.append((float(ratio), int(res)))
    return configs


def time_runs(fn, warmup: int, repeats: int) -> tuple[float, list[float]]:
    """(first call in s, ``repeats`` timed calls in ms); the ``warmup`` calls after the first are untimed."""
    t = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append((time.perf_counter() - t) * 1e3)
    return first, times


def run_original(args, gen, ckpt: str, cases, threads) -> dict:
    """Times ``cases`` with the original code on the weights in ``ckpt``: {'ms': [[runs] per case], ...}."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'out.json')
        spec = dict(repo=os.path.abspath(args.original_repo), checkpoint=ckpt, out=out, threads=threads,
                    resolution=gen.resolution, style_dim=gen.style_dim, n_mlp=gen.n_mlp,
                    channel_multiplier=gen.channel_multiplier, channel_max=gen.channel_max,
                    configs=[list(c) for c in cases], warmup=args.warmup, repeats=args.repeats)
        env = dict(os.environ, FORCE_NATIVE='1')
        subprocess.run([args.original_python, '-c', _ORIGINAL_SNIPPET, json.dumps(spec)], check=True, env=env,
                       stdout=subprocess.DEVNULL)  # the original prints its "using native op" notice
        with open(out) as f:
            return json.load(f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--resolution', type=int, default=1024)
    p.add_argument('--configs', default=PREVIEW_CONFIGS, help='comma-separated ratio@target_res')
    p.add_argument('--batch', type=int, nargs='+', default=[1])
    p.add_argument('--repeats', type=int, default=10)
    p.add_argument('--warmup', type=int, default=2, help='untimed calls after the first (compiling) one')
    p.add_argument('--rounds', type=int, default=1,
                   help="alternate ours / the original this many times; medians pool every round's runs")
    p.add_argument('--no_masked', action='store_true', help='skip the masked variant')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', help='write the results here')
    p.add_argument('--original_repo', help='checkout of the original PyTorch Anycost GAN')
    p.add_argument('--original_python', default=sys.executable, help='python with torch for --original_repo')
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: cores available to XLA)')
    args = p.parse_args(argv)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    threads = args.threads or cores
    gen = Generator(args.resolution)
    variables = gen.init_variables(jax.random.PRNGKey(args.seed))
    full_cfg = (1.0, args.resolution)
    configs = parse_configs(args.configs)
    configs = configs + [full_cfg] * (full_cfg not in configs)
    cases = [(r, t, b) for b in args.batch for r, t in configs]

    @functools.partial(jax.jit, static_argnames=('ratio', 'target_res'))
    def sliced(v, z, ratio, target_res):
        return gen.apply(v, z, channel_ratio=ratio, target_res=target_res)

    @functools.partial(jax.jit, static_argnames=('target_res',))
    def masked(v, z, widths, target_res):
        return gen.apply(v, z, channel_masks=widths, target_res=target_res)

    rows = [dict(ratio=r, target_res=t, batch=b, macs=generator_macs(gen, channel_ratio=r, target_res=t, batch=b))
            for r, t, b in cases]
    meta = dict(resolution=args.resolution, repeats=args.repeats, warmup=args.warmup, rounds=args.rounds,
                xla_cores=cores, jax=jax.__version__, device=str(jax.devices()[0]),
                cpu=platform.processor() or platform.machine())
    times = {key: [[] for _ in cases] for key in ('sliced', 'masked', 'original')}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, 'generator.pt')
        if args.original_repo:
            convert.save_original(ckpt, gen, variables)
        # Every round times all cases with ours, then with the original: on a shared machine,
        # alternating keeps slow drifts of the load from favouring either side.
        for rnd in range(args.rounds):
            for i, (ratio, target_res, batch) in enumerate(cases):
                z = jax.random.normal(jax.random.PRNGKey(args.seed + 1), (batch, gen.style_dim))
                first, runs = time_runs(lambda: sliced(variables, z, ratio=ratio, target_res=target_res),
                                        args.warmup, args.repeats)
                rows[i].setdefault('compile_s', first)  # the first round's first call compiles
                times['sliced'][i] += runs
                if not args.no_masked:
                    widths = jnp.asarray(elastic.uniform_channels(gen.resolution, ratio, gen.full_channels()))
                    times['masked'][i] += time_runs(lambda: masked(variables, z, widths, target_res=target_res),
                                                    args.warmup, args.repeats)[1]
                print(f'  round {rnd + 1}: ours {ratio}@{target_res} batch {batch}', file=sys.stderr, flush=True)
            if args.original_repo:
                orig = run_original(args, gen, ckpt, cases, threads)
                meta.update(torch=orig['torch'], torch_threads=orig['threads'])
                for i, runs in enumerate(orig['ms']):
                    times['original'][i] += runs
                print(f'  round {rnd + 1}: original done', file=sys.stderr, flush=True)

    for key, per_case in times.items():
        for row, runs in zip(rows, per_case):
            if runs:
                row[f'{key}_ms'] = statistics.median(runs)
    full = {r['batch']: r for r in rows if (r['ratio'], r['target_res']) == full_cfg}
    for row in rows:
        ref = full[row['batch']]
        row['mac_reduction'] = ref['macs'] / row['macs']
        for key in ('sliced', 'masked', 'original'):
            if f'{key}_ms' in row:
                row[f'{key}_speedup'] = ref[f'{key}_ms'] / row[f'{key}_ms']
        if 'original_ms' in row:
            row['ours_over_original'] = row['sliced_ms'] / row['original_ms']
    print_table(rows, meta)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(settings=meta, results=rows), f, indent=1)


def print_table(rows, meta):
    cols = [('ratio', 5, '{:.2f}', 'ratio'), ('target_res', 6, '{}', 'target'), ('batch', 5, '{}', 'batch'),
            ('macs', 8, '{:.2f}', 'GMACs'), ('mac_reduction', 8, '{:.2f}', 'MAC red.'),
            ('compile_s', 9, '{:.1f}', 'compile s'), ('sliced_ms', 9, '{:.1f}', 'sliced ms'),
            ('sliced_speedup', 8, '{:.2f}', 'speed-up'), ('masked_ms', 9, '{:.1f}', 'masked ms'),
            ('masked_speedup', 8, '{:.2f}', 'speed-up'), ('original_ms', 9, '{:.1f}', 'orig ms'),
            ('original_speedup', 8, '{:.2f}', 'speed-up'), ('ours_over_original', 9, '{:.2f}', 'ours/orig')]
    cols = [c for c in cols if c[0] in rows[0]]
    print(' '.join(h.rjust(w) for _, w, _, h in cols))
    for row in rows:
        print(' '.join(f.format(row[k] / 1e9 if k == 'macs' else row[k]).rjust(w) for k, w, f, _ in cols))
    extra = f", torch {meta['torch']} with {meta['torch_threads']} threads" if 'torch' in meta else ''
    print(f"Generator({meta['resolution']}) on {meta['device']} ({meta['xla_cores']} cores), jax {meta['jax']}{extra}; "
          f"median of {meta['rounds']}x{meta['repeats']} runs after {meta['warmup']} warm-up calls; speed-up and "
          f"MAC reduction relative to ratio 1.0 @ {meta['resolution']}")


if __name__ == '__main__':
    main()
