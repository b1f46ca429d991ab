"""Training step time, images/s and peak memory per stage and resolution; masked vs sliced anycost.

For every stage (``--stages``) at every resolution (``--resolution``) this builds the step
programs of :mod:`anycost_jax.train.anycost_steps` (``jax.jit(jax.shard_map(...))`` over all devices,
global batch ``--batch``) on random-init weights (``Generator`` / discriminator with
``--channel_multiplier``, style dim ``--style_dim``, ``--n_mlp`` mapping layers) and random
"real" images, and times them:

* ``stylegan2``: full width, one resolution, single-resolution ``Discriminator``; lazy R1 and
  path length regularization (``pl_weight=2``);
* ``multires``: ``n_res = 4`` output resolutions trained (fewer below 64: the multi-resolution
  D takes at most ``log2(res) - 2``), 2 sampled per step, the unconditioned
  ``DiscriminatorMultiRes``, distillation (weight 2) from a frozen full-width teacher: MSE,
  plus LPIPS-VGG with ``--lpips``; lazy R1;
* ``anycost``: ``multires`` plus uniform elastic channels (``channel_mode='uniform'``) and the
  architecture-conditioned ``DiscriminatorMultiRes``: the *masked* program, one compiled step
  that serves every sampled width, computing at full width with channel masks;
* ``sliced@r`` (with ``anycost``, one per ``--ratios`` r): the ``multires`` stage on the dense
  sub-generator that :func:`anycost_jax.elastic.export` cuts at uniform ratio r (``channel_mode``
  None, unconditioned D, full-width teacher): what training one statically sliced width costs,
  i.e. the baseline a per-width compiled program would give. ``multires`` is always measured
  when ``anycost`` is, as the reference.
* ``<stage>+bf16`` (with ``--bf16_from_res R``): the stage with the G and D blocks at
  resolution >= R computing in bfloat16 (``config.bf16_from_res``); compare with ``<stage>``.
* ``orig <stage>`` (with ``--original_repo``, for the three stages): the original PyTorch
  code's training iteration of that stage on the same model, step settings and batch, in its
  own interpreter (``--original_python``, native ops): ``benchmarks/original_train_step.py``
  rebuilds one iteration of its ``tools/train_gan.py`` from the original's modules, losses,
  Adam (betas 0, 0.99) and ``accumulate`` EMA, with its own random init (LPIPS, with
  ``--lpips``, on random VGG features: nothing is downloaded). It draws what the original draws:
  ``n_sampled_res`` resolutions evaluated (ours evaluates D at all ``n_res`` and masks), one
  uniform width per step computed sliced (ours: masked at full width), R1 on one resolution.

Protocol, identical for every case: each (stage, resolution) runs in a fresh subprocess (so that
its peak memory is its own; ``--in_process`` runs all in this process instead). The first call of
each program compiles it and is untimed (``compile s`` = the sum of these first calls, one
execution each included); then ``--warmup`` untimed iterations, then ``--repeats`` timed
iterations, each ``d_step`` then ``g_step`` (one training iteration), each call ending with
``jax.block_until_ready``. The regularization programs are timed the same way on their own
(``--warmup`` + ``--repeats`` calls); the R1 program draws its resolution itself (it evaluates
every trained resolution and masks, so its cost does not depend on the draw). Medians are reported.
The original is timed the same way (its first calls untimed, then ``--warmup`` and ``--repeats``),
each of its stages right after ours; ``--rounds R`` runs the whole list R times, ours and the
original alternating, and pools every round's runs before the medians: on a machine shared with
other jobs this keeps load drifts from favouring either side. The original's cost varies with
its draws (width, resolutions, style mixing), ours does not: its median is that of the draws.

Columns: ``d ms`` / ``g ms`` / ``iter ms`` (= d + g per iteration; medians of each); ``img/s`` =
batch / median iteration; ``R1 ms`` and ``PL ms`` (path length, stylegan2 only) per regularization
call; ``amort ms`` = iter + R1 / d_reg_every (16) + PL / g_reg_every (8), the average iteration
with lazy regularization; ``compile s``; peak memory in MiB: the device's ``peak_bytes_in_use``
(``memory_stats()``, GPU/TPU: header ``dev MiB``) where available, else the process's maximum
resident set size (``getrusage``, CPU: header ``RSS MiB``, which includes the Python process and
XLA's compiler); ``vs multires`` = iter / the ``multires`` iteration at the same resolution (of
the same code); ``ours/orig`` = our img/s / the original's, ``amort o/o`` = the original's
amortized iteration / ours (both > 1 where ours is faster).

Threads: XLA:CPU uses every core this process may run on; the original gets as many torch threads
(``--threads`` overrides it); prefix ``taskset -c 0`` for one core.

Run from the repository root::

    python -m benchmarks.train_step                                        # CPU-sized: 64 px, multiplier 2
    python -m benchmarks.train_step --resolution 32 --channel_multiplier 0.25 --batch 8 --repeats 2
    python -m benchmarks.train_step --resolution 256 1024 --batch 32 --lpips --json train_step.json   # GPU
    python -m benchmarks.train_step --resolution 256 --batch 32 --stages anycost --bf16_from_res 64   # GPU, bf16
    python -m benchmarks.train_step --ratios --rounds 2 --original_repo /path/to/anycost-gan \
        --original_python /path/to/python-with-torch                       # ours vs the original

``--original_repo`` is a checkout of the original code: it must import ``models.anycost_gan``,
``models.dynamic_channel``, ``utils.losses`` and ``utils.train_utils`` (and ``lpips`` with
``--lpips``, where the original's LPIPS-VGG needs every trained resolution >= 16 px: it pools
four times, so at 64 px, where n_res = 4 trains 8 px, its distillation stages fail).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

from anycost_jax import elastic
from anycost_jax.models.discriminator import Discriminator, DiscriminatorMultiRes
from anycost_jax.models.generator import Generator
from anycost_jax.train import anycost_steps as st
from benchmarks import torch_original

STAGES = ('stylegan2', 'multires', 'anycost')
MAX_N_RES, N_SAMPLED_RES, DISTILL_WEIGHT, PL_WEIGHT, LR = 4, 2, 2., 2., 0.002
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORIGINAL_SCRIPT = os.path.join(torch_original.HERE, 'original_train_step.py')
# The StepConfig fields the original's iteration is built from (the rest of its spec comes from args).
ORIGINAL_SETTINGS = ('n_res', 'n_sampled_res', 'mixing_prob', 'r1_gamma', 'd_reg_every', 'pl_weight', 'g_reg_every',
                     'pl_batch_shrink', 'pl_decay', 'distill_weight', 'channel_mode', 'min_channel', 'divided_by',
                     'conditioned_d', 'ema_beta')


def n_res_for(resolution: int) -> int:
    """Resolutions trained by the multi-resolution stages (the multi-resolution D takes log2(res) - 2 at most)."""
    return min(MAX_N_RES, elastic.log2_resolution(resolution) - 2)


def cases_for(args) -> list[tuple[str, int]]:
    """(case, resolution) in run order; ``multires`` is added as the reference of ``anycost``."""
    stages = list(args.stages)
    if 'anycost' in stages and 'multires' not in stages:
        stages.insert(stages.index('anycost'), 'multires')
    names = []
    for s in stages:
        names.append(s)
        if args.bf16_from_res:
            names.append(s + '+bf16')
        if s == 'anycost':
            names += [f'sliced@{r:g}' for r in args.ratios]
    return [(name, res) for res in args.resolution for name in names]


def step_config(case: str, resolution: int, args) -> st.StepConfig:
    """The step settings of one case (``<stage>+bf16`` has its stage's, ``sliced@r`` the multires ones)."""
    if case == 'stylegan2' or case == 'stylegan2+bf16':
        return st.StepConfig(pl_weight=PL_WEIGHT)
    n_res = n_res_for(resolution)
    anycost = case.removesuffix('+bf16') == 'anycost'
    return st.StepConfig(n_res=n_res, n_sampled_res=min(N_SAMPLED_RES, n_res), distill_weight=DISTILL_WEIGHT,
                         use_lpips=args.lpips, channel_mode='uniform' if anycost else None, conditioned_d=anycost)


def build(case: str, resolution: int, args):
    """(steps, state, batch, teacher_params or None, StepConfig) of one case, placed on the mesh."""
    cfg = step_config(case, resolution, args)
    case, bf16 = case.removesuffix('+bf16'), case.endswith('+bf16')
    bf16_from_res = args.bf16_from_res if bf16 else None
    gen = Generator(resolution, style_dim=args.style_dim, n_mlp=args.n_mlp,
                    channel_multiplier=args.channel_multiplier, channel_max=args.channel_max, bf16_from_res=bf16_from_res)
    g_vars = gen.init_variables(jax.random.key(args.seed))
    n_res = cfg.n_res
    if case == 'stylegan2':
        disc = Discriminator(resolution, channel_multiplier=args.channel_multiplier, channel_max=args.channel_max, bf16_from_res=bf16_from_res)
    else:
        disc = DiscriminatorMultiRes(resolution, n_res=n_res, modulate=cfg.conditioned_d,
                                     channel_multiplier=args.channel_multiplier, channel_max=args.channel_max, bf16_from_res=bf16_from_res)
    teacher, teacher_params, student, s_vars = None, None, gen, g_vars
    if cfg.distill_weight > 0:
        teacher, teacher_params = gen, g_vars['params']
    if case.startswith('sliced@'):
        student, s_vars = elastic.export(gen, g_vars, channel_ratio=float(case.split('@')[1]))
    d_vars = disc.init_variables(jax.random.key(args.seed + 1))
    if args.batch % jax.device_count():
        raise ValueError(f'--batch {args.batch} is not divisible by the {jax.device_count()} devices')
    mesh = jax.make_mesh((jax.device_count(),), (st.AXIS,))
    g_tx, d_tx = st.adam(LR), st.adam(LR)
    steps = st.Steps(mesh, student, disc, cfg, g_tx, d_tx, teacher=teacher)
    state = steps.replicate(st.create_state(jax.random.key(args.seed + 2), s_vars, d_vars, g_tx, d_tx))
    x = jax.random.uniform(jax.random.key(args.seed + 3), (args.batch, resolution, resolution, 3),
                           minval=-1, maxval=1)
    reals = tuple(np.asarray(jax.image.resize(x, (args.batch, resolution >> i, resolution >> i, 3), 'linear'))
                  for i in range(n_res))
    # Process-local slice of the global batch (all of it on one host).
    per_host = args.batch // jax.process_count()
    lo = jax.process_index() * per_host
    batch = steps.shard_batch(tuple(r[lo:lo + per_host] for r in reals))
    return steps, state, batch, (steps.replicate(teacher_params) if teacher_params is not None else None), cfg


def peak_memory() -> tuple[float, str]:
    """(MiB, source): the device's peak_bytes_in_use where reported, else the process's max RSS."""
    stats = jax.devices()[0].memory_stats() or {}
    if 'peak_bytes_in_use' in stats:
        return stats['peak_bytes_in_use'] / 2 ** 20, 'device'
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2 ** 20 if sys.platform == 'darwin' else 2 ** 10), 'rss'


def run_case(case: str, resolution: int, args) -> dict:
    """Times one case in this process (see the module docstring for the protocol); raw runs, see ``summarize``."""
    t = time.perf_counter()
    steps, state, batch, teacher, cfg = build(case, resolution, args)
    setup_s = time.perf_counter() - t
    progs = steps.programs()
    extra = {'d_step': (), 'g_step': (teacher,), 'd_reg_step': (), 'g_reg_step': ()}
    names = [n for n in ('d_step', 'g_step', 'd_reg_step', 'g_reg_step') if n in progs]

    def call(name):
        nonlocal state
        t0 = time.perf_counter()
        state, metrics = progs[name](state, batch, *extra[name])
        jax.block_until_ready((state, metrics))
        return (time.perf_counter() - t0) * 1e3

    compile_s = {n: call(n) / 1e3 for n in names}  # first calls: compilation (+ one execution)
    for _ in range(args.warmup):
        call('d_step'), call('g_step')
    d_runs, g_runs = [], []
    for _ in range(args.repeats):
        d_runs.append(call('d_step'))
        g_runs.append(call('g_step'))
    reg = {}
    for name in ('d_reg_step', 'g_reg_step'):
        if name in progs:
            for _ in range(args.warmup):
                call(name)
            reg[name] = [call(name) for _ in range(args.repeats)]
    row = dict(impl='ours', case=case, resolution=resolution, batch=args.batch, n_res=cfg.n_res, setup_s=setup_s,
               compile_s=sum(compile_s.values()), compile_s_per_program=compile_s, d_runs=d_runs, g_runs=g_runs,
               r1_runs=reg.get('d_reg_step'), pl_runs=reg.get('g_reg_step'),
               d_reg_every=cfg.d_reg_every, g_reg_every=cfg.g_reg_every)
    row['peak_mib'], row['memory_source'] = peak_memory()
    row['device'] = f'{jax.device_count()}x {jax.devices()[0].device_kind}'
    row['jax'] = jax.__version__
    return row


def run_original(case: str, resolution: int, args, rnd: int = 0) -> dict:
    """The original's iteration of stage ``case`` (benchmarks/original_train_step.py), raw runs like ``run_case``.

    Its cost depends on its draws (width, resolutions): round ``rnd`` seeds them with ``--seed + rnd``, so
    that every round adds new draws.
    """
    cfg = step_config(case, resolution, args)
    spec = dict(stage=case, resolution=resolution, batch=args.batch, style_dim=args.style_dim, n_mlp=args.n_mlp,
                channel_multiplier=args.channel_multiplier, channel_max=args.channel_max, lr=LR,
                lpips=args.lpips, warmup=args.warmup, repeats=args.repeats, seed=args.seed + rnd,
                threads=args.threads or torch_original.xla_cores(),
                **{k: getattr(cfg, k) for k in ORIGINAL_SETTINGS})
    try:
        out = torch_original.run(args.original_python, [ORIGINAL_SCRIPT], args.original_repo, spec)
    except torch_original.OriginalFailed as e:
        return dict(impl='original', case=case, resolution=resolution, error=str(e))
    return dict(out, impl='original', case=case, resolution=resolution, batch=args.batch, n_res=cfg.n_res,
                d_reg_every=cfg.d_reg_every, g_reg_every=cfg.g_reg_every, memory_source='rss')


def summarize(row: dict) -> dict:
    """Adds the medians, images/s and the amortized iteration to a row of raw runs."""
    row['iter_runs'] = [d + g for d, g in zip(row['d_runs'], row['g_runs'])]
    row['d_ms'], row['g_ms'] = statistics.median(row['d_runs']), statistics.median(row['g_runs'])
    row['iter_ms'] = statistics.median(row['iter_runs'])
    row['images_per_s'] = row['batch'] / (row['iter_ms'] / 1e3)
    row['amortized_ms'] = row['iter_ms']
    for runs, key, every in (('r1_runs', 'r1_ms', 'd_reg_every'), ('pl_runs', 'pl_ms', 'g_reg_every')):
        if row.get(runs):
            row[key] = statistics.median(row[runs])
            row['amortized_ms'] += row[key] / row[every]
    return row


def pool(rows: list[dict]) -> dict:
    """One row from the same case's rows of several rounds: runs concatenated, first compile, max memory."""
    ok = [r for r in rows if 'error' not in r]
    if not ok:
        return rows[0]
    out = dict(ok[0])
    for key in ('d_runs', 'g_runs', 'r1_runs', 'pl_runs'):
        if out.get(key):
            out[key] = [x for r in ok for x in r[key]]
    out['peak_mib'] = max(r['peak_mib'] for r in ok)
    out['rounds'] = len(ok)
    return summarize(out)


def run_isolated(case: str, resolution: int, argv: list[str]) -> dict:
    """``run_case`` in a fresh Python process (its own peak memory); a failure becomes an ``error`` row."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'row.json')
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get('PYTHONPATH')) if p))
        cmd = [sys.executable, '-m', 'benchmarks.train_step', *argv, '--_case', case, str(resolution), out]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode or not os.path.exists(out):
            tail = ' | '.join(proc.stdout.strip().splitlines()[-3:])
            return dict(impl='ours', case=case, resolution=resolution, error=f'exit {proc.returncode}: {tail}')
        with open(out) as f:
            return json.load(f)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--stages', nargs='+', choices=STAGES, default=list(STAGES))
    p.add_argument('--resolution', type=int, nargs='+', default=[64])
    p.add_argument('--channel_multiplier', type=float, default=2.)
    p.add_argument('--channel_max', type=int, default=512, help='widest layer (configs/demo.py: 64)')
    p.add_argument('--style_dim', type=int, default=512)
    p.add_argument('--n_mlp', type=int, default=8)
    p.add_argument('--batch', type=int, default=8, help='global batch (over all devices)')
    p.add_argument('--ratios', type=float, nargs='*', default=[0.75, 0.5, 0.25],
                   help='uniform widths of the sliced baselines (none: skip them)')
    p.add_argument('--bf16_from_res', type=int, default=0,
                   help='also run every stage with G/D blocks at >= this resolution in bfloat16 (case "+bf16")')
    p.add_argument('--lpips', action='store_true', help='distillation with LPIPS-VGG too (as in training)')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--warmup', type=int, default=1, help='untimed iterations after the compiling first calls')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--in_process', action='store_true', help='no subprocess per case (peak memory then cumulative)')
    p.add_argument('--json', help='write the results here')
    p.add_argument('--original_repo', help='checkout of the original PyTorch Anycost GAN: also time its iteration per stage')
    p.add_argument('--original_python', default=sys.executable, help='python with torch for --original_repo')
    p.add_argument('--threads', type=int, default=None, help='torch threads of the original (default: cores XLA uses)')
    p.add_argument('--rounds', type=int, default=1,
                   help="run every case this many times, ours and the original alternating; medians pool the rounds' runs")
    p.add_argument('--_case', nargs=3, metavar=('CASE', 'RES', 'OUT'), help=argparse.SUPPRESS)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    for r in args.ratios:
        elastic.check_ratio(r)
    if args._case:  # a child of run_isolated
        case, res, out = args._case
        with open(out, 'w') as f:
            json.dump(run_case(case, int(res), args), f)
        return
    # Every round runs all cases, each of ours followed by the original's same stage: on a shared
    # machine, interleaving keeps slow drifts of the load from favouring either side.
    runs = {}
    for rnd in range(args.rounds):
        for case, res in cases_for(args):
            print(f'  round {rnd + 1}: {case} @ {res}', file=sys.stderr, flush=True)
            row = run_case(case, res, args) if args.in_process else run_isolated(case, res, argv)
            runs.setdefault(('ours', case, res), []).append(row)
            if args.original_repo and case in STAGES:
                print(f'  round {rnd + 1}: original {case} @ {res}', file=sys.stderr, flush=True)
                runs.setdefault(('original', case, res), []).append(run_original(case, res, args, rnd))
        rows, meta = results(runs, args)
        if args.json:  # after every round, so that a long run stopped early keeps its finished rounds
            with open(args.json, 'w') as f:
                json.dump(dict(settings=dict(meta, rounds_done=rnd + 1), results=rows), f, indent=1)
    print_table(rows, meta)


def results(runs: dict, args) -> tuple[list[dict], dict]:
    """(rows, settings) from {(impl, case, res): [raw row per round]}: pooled medians and ratios."""
    rows = [pool(list(r)) for r in runs.values()]
    for row in rows:
        if 'error' in row:
            continue
        same_res = {(r['impl'], r['case']): r for r in rows if r['resolution'] == row['resolution'] and 'error' not in r}
        ref = same_res.get((row['impl'], 'multires'))
        if ref:
            row['vs_multires'] = row['iter_ms'] / ref['iter_ms']
        orig = same_res.get(('original', row['case'])) if row['impl'] == 'ours' else None
        if orig:  # > 1: ours is faster
            row['ours_over_original'] = row['images_per_s'] / orig['images_per_s']
            row['amortized_ours_over_original'] = orig['amortized_ms'] / row['amortized_ms']
    ok = [r for r in rows if 'error' not in r and r['impl'] == 'ours']
    orig = [r for r in rows if 'error' not in r and r['impl'] == 'original']
    meta = dict(stages=args.stages, channel_multiplier=args.channel_multiplier, channel_max=args.channel_max, style_dim=args.style_dim,
                n_mlp=args.n_mlp, batch=args.batch, lpips=args.lpips, repeats=args.repeats, warmup=args.warmup,
                rounds=args.rounds, isolated=not args.in_process, device=ok[0]['device'] if ok else None,
                jax=ok[0]['jax'] if ok else jax.__version__, cpu=platform.processor() or platform.machine(),
                xla_cores=torch_original.xla_cores())
    if orig:
        meta.update(original_repo=os.path.abspath(args.original_repo), torch=orig[0]['torch'],
                    torch_threads=orig[0]['threads'])
    return rows, meta


def print_table(rows, meta):
    mem = {r.get('memory_source') for r in rows if 'error' not in r}
    mem_head = 'dev MiB' if mem == {'device'} else 'RSS MiB' if mem == {'rss'} else 'peak MiB'
    cols = [('case', 14, '{}', 'stage'), ('resolution', 4, '{}', 'res'), ('n_res', 5, '{}', 'n_res'),
            ('d_ms', 8, '{:.1f}', 'd ms'), ('g_ms', 8, '{:.1f}', 'g ms'), ('iter_ms', 8, '{:.1f}', 'iter ms'),
            ('images_per_s', 7, '{:.1f}', 'img/s'), ('r1_ms', 8, '{:.1f}', 'R1 ms'), ('pl_ms', 8, '{:.1f}', 'PL ms'),
            ('amortized_ms', 8, '{:.1f}', 'amort ms'), ('compile_s', 9, '{:.1f}', 'compile s'),
            ('peak_mib', 8, '{:.0f}', mem_head), ('vs_multires', 11, '{:.2f}', 'vs multires')]
    if any('ours_over_original' in r for r in rows):
        cols += [('ours_over_original', 9, '{:.2f}', 'ours/orig'), ('amortized_ours_over_original', 10, '{:.2f}', 'amort o/o')]
    print(' '.join(h.rjust(w) for _, w, _, h in cols))
    for row in rows:
        label = row['case'] if row.get('impl', 'ours') == 'ours' else 'orig ' + row['case']
        if 'error' in row:
            print(f"{label:>14} {row['resolution']:>4} failed: {row['error']}")
            continue
        print(' '.join((label if k == 'case' else f.format(row[k]) if row.get(k) is not None else '-').rjust(w)
                       for k, w, f, _ in cols))
    mem_note = {'device': "peak_bytes_in_use of the device", 'rss': 'max RSS of the process'}
    distill = 'MSE + LPIPS' if meta['lpips'] else 'MSE'
    original = ''
    if 'torch' in meta:
        original = (f"; orig = the original's iteration (native ops), torch {meta['torch']} with "
                    f"{meta['torch_threads']} threads; ours/orig = img/s ratio (> 1: ours faster), amort o/o = "
                    f"the same for the amortized iteration")
    print(f"{meta['device']} ({meta['xla_cores']} host cores), jax {meta['jax']}; global batch {meta['batch']}, "
          f"channel multiplier {meta['channel_multiplier']:g}, distillation {distill}; "
          f"median of {meta['rounds']}x{meta['repeats']} runs after {meta['warmup']} warm-up; memory: "
          f"{', '.join(mem_note[m] for m in sorted(mem)) or '-'}"
          f"{' per case (subprocess)' if meta['isolated'] else ' (cumulative, in process)'}; "
          f"anycost = masked (every width, one program), sliced@r = dense exported sub-generator{original}")


if __name__ == '__main__':
    main()
