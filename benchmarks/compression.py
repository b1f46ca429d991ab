"""One teacher compressed four ways: GAN Compression, GS-32, GS-8 and CRD, in one table.

The teacher is pix2pix on the embedded procedural ``labels2image`` task (``configs/shapes_img2img.py``)
with a plain ResNet generator (ngf 16, 9 blocks, instance norm, reflect padding) at 32 px. Why this
one: it is the only generator every method takes. GAN Slimming prunes the affine instance norms of
a plain (not MobileNet) ResNet; GAN Compression's distillation reads the activations of 9-block
ResNets (``resnet_mapping_layers``) and trains a supernet of the teacher's own architecture; CRD
takes a ResNet teacher and a MobileNet-ResNet student. Paired data gives a ground truth, so every
method is also scored against the real targets, not only against the teacher.

Each method is an entry of :data:`METHODS` that trains in ``WORKDIR/<name>`` and returns the model
directory of its exported, compressed generator:

* ``gan_compression``: a supernet (the teacher's architecture, every layer's width drawn from
  ``--gc_space``) distilled from the teacher with the last ``--holdout`` training scenes kept out,
  then the evolutionary search under the MAC budget on those held-out scenes (LPIPS to the
  teacher) and the export of the found sub-network (``WORKDIR/gan_compression/searched/``);
* ``gs32`` / ``gs8``: GAN Slimming (online teacher) with ``--gs_rho`` and ``--gs_lr_gamma``, then
  the extraction of the channels whose gamma is non-zero (``WORKDIR/gs32/extracted``). pix2pix's
  D is conditional (6 input channels) and GAN Slimming's sees the output alone, so its D starts
  from a seeded GAN Slimming discriminator (the upstream starts from the dense CycleGAN's D);
* ``crd``: CRD's pix2pix mode: a teacher of the same architecture and data trains online (CRD
  has no pretrained teacher) beside a MobileNet-ResNet student whose ngf is the widest within the
  budget. It runs where the ``crd`` family exists (``anycost_jax.train.trainer.FAMILIES``);
  elsewhere its row says why it did not run.

The budget is ``--budget`` x the teacher's MACs. Every stage resumes from its workdir and one
that finished is not run again, nor a finished search (its ``.json``): rerunning the command only
re-measures. Measured per exported model: MACs (torchprofile 0.0.1's count) and params, bytes
of its model directory on disk (float32 weights for GS-8 too: its 8-bit codes are not packed),
CPU latency at batch 1 (as ``benchmarks/img2img.py``: one untimed compiling call, ``--warmup``
untimed calls, the median of ``--repeats``), L1 / PSNR / LPIPS (:mod:`anycost_jax.eval.img2img_quality`)
against the ground truth and the teacher on the test split (never trained on nor searched on),
and the training's (and search's) wall and CPU seconds, summed over the invocations that worked on it
(``WORKDIR/timings/<method>.json``; CPU: this process's, children included; the machine is shared, so
wall time depends on its load, reported with the table).

    python -m benchmarks.compression --workdir runs/compression --quick          # minutes: plumbing only
    python -m benchmarks.compression --workdir runs/compression --teacher_steps 600 --steps 300  # the README's
    python -m benchmarks.compression --workdir runs/compression_rho4 --methods gs32,gs8 --gs_rho 4

(A GS run resumes only with its own config: another rho needs another workdir; link the finished
``teacher/`` and ``gan_compression/`` into it to reuse them.)

GAN Slimming's defaults here are gamma SGD at 0.001 (the upstream's 0.1 diverges on a 32 px teacher:
``benchmarks/gs_gamma.py``) and rho 8, which at 300 steps prunes to about half the teacher's MACs.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from anycost_jax import macs, modeldir
from anycost_jax import workdir as workdir_lib
from anycost_jax.eval import img2img_quality as quality_lib
from anycost_jax.models.img2img import MobileResnetGenerator
from anycost_jax.models.img2img import gs as gs_lib
from anycost_jax.train import gan_compression, gan_slimming, trainer
from benchmarks.img2img import _time

from configs import shapes_img2img

# the fields of the shapes config every method's config copies (data, D, schedule granularity)
DATA_FIELDS = ('dataset', 'test_split', 'resolution', 'aspect_ratio', 'train_examples', 'test_examples',
               'batch_size', 'ndf', 'n_layers_D', 'log_every', 'sample_every', 'checkpoint_every', 'n_samples',
               'eval_batch_size', 'seed')
TEACHER_NET = dict(netG='resnet', ngf=16, n_blocks=9)


@dataclasses.dataclass(frozen=True)
class Settings:
    teacher_steps: int
    steps: int             # every method's training steps
    train_examples: int
    test_examples: int
    batch_size: int
    holdout: int
    population: int
    iterations: int


FULL = Settings(teacher_steps=2000, steps=1000, train_examples=2000, test_examples=64, batch_size=8, holdout=64,
                population=30, iterations=10)
QUICK = Settings(teacher_steps=4, steps=2, train_examples=32, test_examples=8, batch_size=8, holdout=8,
                 population=4, iterations=1)


# ---------------------------------------------------------------------------- configs


def teacher_config(s: Settings):
    c = shapes_img2img.get_config('labels2image')
    c.name = 'compression_teacher'
    for k, v in TEACHER_NET.items():
        c[k] = v
    c.train_examples, c.test_examples, c.batch_size = s.train_examples, s.test_examples, s.batch_size
    c.num_steps = s.teacher_steps
    c.eval_batch_size = min(8, s.test_examples)
    spe = max(1, s.train_examples // s.batch_size)  # half constant, half decaying, as the shapes demo
    c.n_epochs = c.n_epochs_decay = max(1, -(-s.teacher_steps // spe) // 2)
    c.log_every = c.sample_every = c.checkpoint_every = max(1, min(500, s.teacher_steps))
    return c


def _copy_data(c, t, s: Settings, name: str):
    for k in DATA_FIELDS:
        c[k] = t[k]
    c.name, c.num_steps = name, s.steps
    c.log_every = c.sample_every = c.checkpoint_every = max(1, min(250, s.steps))
    return c


def _epochs(s: Settings, train_examples: int) -> int:
    return max(1, -(-s.steps // max(1, train_examples // s.batch_size)))


def gc_config(t, s: Settings, teacher_dir: str, space: str):
    c = _copy_data(gan_compression.base_config('supernet'), t, s, 'compression_gc_supernet')
    c.teacher, c.student_ngf, c.search_space = teacher_dir, t.ngf, space
    c.holdout_examples = s.holdout
    n = _epochs(s, t.train_examples - s.holdout)
    c.n_epochs, c.n_epochs_decay = -(-n // 2), n // 2
    return c


def gs_config(t, s: Settings, teacher_dir: str, disc_dir: str, bits: int, rho: float, lr_gamma: float):
    c = _copy_data(gan_slimming.base_config('slim'), t, s, f'compression_gs{bits}')
    c.teacher, c.teacher_netG, c.discriminator = teacher_dir, 'resnet_9blocks', disc_dir
    c.quant_bits, c.rho, c.lr_gamma = bits, rho, lr_gamma
    c.n_epochs = _epochs(s, t.train_examples)  # the cosine schedules end with the run
    return c


def crd_config(t, s: Settings, student_ngf: int):
    from anycost_jax.train import crd  # only where the family exists (see crd_available)
    c = _copy_data(crd.base_config('pix2pix'), t, s, 'compression_crd')
    for k, v in TEACHER_NET.items():
        c[k] = v
    c.student_netG, c.student_ngf, c.crd_patch = 'mobile_resnet', student_ngf, 4  # 64 patches, as 32 px at 256
    n = _epochs(s, t.train_examples)
    c.n_epochs, c.n_epochs_decay = -(-n // 2), n // 2
    return c


# ---------------------------------------------------------------------------- the methods


@dataclasses.dataclass
class Context:
    root: str
    settings: Settings
    teacher: object          # the teacher's config
    teacher_dir: str
    budget: int              # MACs
    args: argparse.Namespace


@dataclasses.dataclass(frozen=True)
class Method:
    """A compression method: ``available()`` -> None or why it cannot run here; ``run(ctx)`` -> the model
    directory of its exported generator and a short description of what it found."""
    name: str
    run: Callable[[Context], tuple[str, str]]
    available: Callable[[], Optional[str]] = lambda: None


def _train(config, workdir: str) -> None:
    if not workdir_lib.finished(workdir, config.num_steps):
        trainer.train_and_evaluate(config, workdir)


def run_gc(ctx: Context):
    wd = os.path.join(ctx.root, 'gan_compression')
    _train(gc_config(ctx.teacher, ctx.settings, ctx.teacher_dir, ctx.args.gc_space), wd)
    from anycost_jax import search as search_lib
    out = os.path.join(wd, gan_compression.SEARCHED, search_lib.budget_name(ctx.budget))
    if not os.path.isfile(out + '.json'):
        s = ctx.settings
        gan_compression.search_supernet(wd, ctx.budget, output=out, population=s.population,
                                        iterations=s.iterations)
    best = next(iter(json.load(open(out + '.json')).values()))  # the found sub-network's JSON
    return out, f"searched config {best['config_str']}"


def _gs_disc(ctx: Context) -> str:
    path = os.path.join(ctx.root, 'gs_discriminator')
    if not modeldir.is_modeldir(path):
        d = gs_lib.discriminator(3, ctx.teacher.ndf)
        r = ctx.teacher.resolution
        modeldir.save(path, d, jax.jit(d.init)(jax.random.key(ctx.teacher.seed), jnp.zeros((1, r, r, 3))))
    return path


def run_gs(bits: int):
    def run(ctx: Context):
        wd = os.path.join(ctx.root, f'gs{bits}')
        a = ctx.args
        _train(gs_config(ctx.teacher, ctx.settings, ctx.teacher_dir, _gs_disc(ctx), bits, a.gs_rho, a.gs_lr_gamma), wd)
        info = json.load(open(os.path.join(wd, gan_slimming.EXTRACTED + '.json')))
        return os.path.join(wd, gan_slimming.EXTRACTED), f"rho {a.gs_rho}, lr_gamma {a.gs_lr_gamma}, widths " \
            f"{'_'.join(map(str, info['widths']))}"
    return run


def crd_available() -> Optional[str]:
    if 'crd' not in trainer.FAMILIES:
        return 'not available on this checkout (no `crd` family in anycost_jax.train.trainer.FAMILIES)'
    return None


def crd_student_ngf(resolution: int, n_blocks: int, budget: int, widest: int) -> int:
    """The widest MobileNet-ResNet student (ngf a multiple of 2, at most the teacher's) within ``budget`` MACs."""
    x = jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32)
    fits = [n for n in range(2, widest + 1, 2)
            if macs.count_macs(MobileResnetGenerator(ngf=n, n_blocks=n_blocks), x) <= budget]
    if not fits:
        raise ValueError(f'no MobileNet-ResNet student fits {budget} MACs; raise --budget')
    return fits[-1]


def run_crd(ctx: Context):
    t = ctx.teacher
    ngf = crd_student_ngf(t.resolution, t.n_blocks, ctx.budget, t.ngf)
    wd = os.path.join(ctx.root, 'crd')
    _train(crd_config(t, ctx.settings, ngf), wd)
    return os.path.join(wd, workdir_lib.GENERATOR), f'MobileNet-ResNet student ngf {ngf}; its teacher trained online'


METHODS = {
    'gan_compression': Method('gan_compression', run_gc),
    'gs32': Method('gs32', run_gs(32)),
    'gs8': Method('gs8', run_gs(8)),
    'crd': Method('crd', run_crd, crd_available),
}


# ---------------------------------------------------------------------------- measuring


def _cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def measure(path: str, batches, resolution: int, warmup: int, repeats: int) -> dict:
    """MACs, params, bytes, latency and quality of the generator saved in ``path``."""
    gen, v = modeldir.load(path)
    x1 = jnp.zeros((1, resolution, resolution, 3), jnp.float32)
    fn = jax.jit(lambda x: gen.apply(v, x))
    _, times = _time(fn, x1, warmup, repeats)
    scores = quality_lib.quality(fn, batches)
    return {'model': path, 'generator': type(gen).__name__,
            'macs': macs.count_macs(gen, jax.ShapeDtypeStruct(x1.shape, jnp.float32)),
            'params': int(sum(np.size(a) for a in jax.tree.leaves(v.get('params', {})))),
            'bytes': dir_bytes(path), 'latency_ms': 1e3 * float(np.median(times)), **scores}


COLUMNS = (('method', 'method', '{}'), ('MACs (M)', 'macs', '{:.2f}'), ('params (K)', 'params', '{:.1f}'),
           ('disk (KB)', 'bytes', '{:.1f}'), ('CPU ms', 'latency_ms', '{:.2f}'),
           ('real L1', 'real/l1', '{:.4f}'), ('real PSNR', 'real/psnr', '{:.2f}'),
           ('real LPIPS', 'real/lpips', '{:.4f}'), ('teacher L1', 'teacher/l1', '{:.4f}'),
           ('teacher PSNR', 'teacher/psnr', '{:.2f}'), ('teacher LPIPS', 'teacher/lpips', '{:.4f}'),
           ('train wall s', 'wall_s', '{:.0f}'), ('train CPU s', 'cpu_s', '{:.0f}'), ('notes', 'notes', '{}'))
SCALE = {'macs': 1e-6, 'params': 1e-3, 'bytes': 1e-3}


def markdown(rows: list[dict]) -> str:
    lines = ['| ' + ' | '.join(h for h, _, _ in COLUMNS) + ' |', '|' + '---|' * len(COLUMNS)]
    for r in rows:
        cells = []
        for _, key, fmt in COLUMNS:
            if key not in r:
                cells.append('')
            elif isinstance(r[key], (int, float)):
                cells.append(fmt.format(r[key] * SCALE.get(key, 1)))
            else:
                cells.append(str(r[key]))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


# ---------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--workdir', required=True, help='every run lives here; a rerun resumes / reuses them')
    p.add_argument('--quick', action='store_true', help='a few steps each: checks the plumbing, not the methods')
    p.add_argument('--methods', default=','.join(METHODS))
    p.add_argument('--budget', type=float, default=0.5, help="the MAC budget as a fraction of the teacher's")
    p.add_argument('--teacher_steps', type=int)
    p.add_argument('--steps', type=int, help="each method's training steps")
    p.add_argument('--population', type=int, help="GAN Compression's search: candidates per generation")
    p.add_argument('--iterations', type=int, help="GAN Compression's search: generations after the first")
    p.add_argument('--gc_space', default='|'.join(['16,12,8,4'] * 8))
    p.add_argument('--gs_rho', type=float, default=8.)
    p.add_argument('--gs_lr_gamma', type=float, default=0.001)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--repeats', type=int, default=20)
    p.add_argument('--output', help='the table as <output>.md and <output>.json (default WORKDIR/compression)')
    args = p.parse_args(argv)
    names = [m for m in args.methods.split(',') if m]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise SystemExit(f'--methods: {unknown} are not among {list(METHODS)}')
    s = QUICK if args.quick else FULL
    s = dataclasses.replace(s, **{k: getattr(args, k) for k in ('teacher_steps', 'steps', 'population', 'iterations')
                                if getattr(args, k)})
    root = workdir_lib.absolute(args.workdir)
    t = teacher_config(s)
    teacher_dir = os.path.join(root, 'teacher')
    timings = {}

    def timed(name, fn):
        # accumulated over the invocations that worked on it (a resumed or reused run adds its own part);
        # one file per method, so that invocations running different methods side by side do not clash
        path = os.path.join(root, 'timings', name + '.json')
        prev = json.load(open(path)) if os.path.isfile(path) else {'wall_s': 0., 'cpu_s': 0.}
        wall0, cpu0 = time.perf_counter(), _cpu_s()
        out = fn()
        timings[name] = {'wall_s': prev['wall_s'] + time.perf_counter() - wall0, 'cpu_s': prev['cpu_s'] + _cpu_s() - cpu0}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            json.dump(timings[name], f)
        return out

    timed('teacher', lambda: _train(t, teacher_dir))
    rows = [{'method': 'teacher', **timings['teacher'], 'notes': 'pix2pix ResNet ngf 16, 9 blocks'}]
    teacher_gen, teacher_vars = modeldir.load(os.path.join(teacher_dir, workdir_lib.GENERATOR))
    x = jax.ShapeDtypeStruct((1, t.resolution, t.resolution, 3), jnp.float32)
    budget = int(args.budget * macs.count_macs(teacher_gen, x))
    gc_view = gc_config(t, s, teacher_dir, args.gc_space)
    batches = gan_compression.heldout_batches(gc_view, t.test_split, t.eval_batch_size, (teacher_gen, teacher_vars))
    paths = {'teacher': os.path.join(teacher_dir, workdir_lib.GENERATOR)}
    for name in names:
        m, row = METHODS[name], {'method': name}
        why = m.available()
        if why:
            rows.append({**row, 'notes': why})
            continue
        ctx = Context(root, s, t, teacher_dir, budget, args)
        paths[name], row['notes'] = timed(name, lambda: m.run(ctx))
        rows.append({**row, **timings[name]})
    for row in rows:
        if row['method'] in paths:
            row.update(measure(paths[row['method']], batches, t.resolution, args.warmup, args.repeats))
    head = (f"{'--quick' if args.quick else 'full'}: teacher {s.teacher_steps} steps, methods {s.steps} steps, "
            f"batch {s.batch_size}, {s.train_examples} training scenes, {s.test_examples} test scenes at "
            f"{t.resolution} px; budget {args.budget} x teacher = {budget / 1e6:.2f}M MACs; "
            f"{len(os.sched_getaffinity(0))} CPU threads, load average {os.getloadavg()[0]:.1f} at the end")
    table = markdown(rows)
    print(head)
    print(table)
    out = args.output or os.path.join(root, 'compression')
    with open(out + '.md', 'w') as f:
        f.write(head + '\n\n' + table + '\n')
    result = {'settings': dataclasses.asdict(s), 'args': vars(args), 'budget_macs': budget, 'header': head,
              'rows': rows, 'command': ' '.join(sys.argv)}
    with open(out + '.json', 'w') as f:
        json.dump(result, f, indent=1, default=str)
    return result


if __name__ == '__main__':
    main()
