"""Latency of the image-to-image generators per config: sliced vs masked, optionally vs the original.

For a MobileNet-ResNet supernet (``--ngf``, 9 blocks, random weights) at ``--size`` px and every
config of ``--configs`` (GAN Compression's config strings; ``full`` is always timed), this times:

* ``sliced``: ``jax.jit`` of ``gen.apply(v, x, config=c)`` with ``c`` static: only the
  sub-network is computed (what an exported, compressed model runs);
* ``masked``: ``jax.jit`` of ``gen.apply(v, x, widths=w)`` with ``w`` traced: one program for all
  configs, always at full cost (what supernet training runs);
* optionally ``original``: gan-compression's ``SubMobileResnetGenerator`` (the exported
  sub-network, ``torch.no_grad()``, eval mode) with the same weights, in a subprocess
  (``--original_repo`` a gan-compression checkout, ``--original_python`` a Python with torch).

Protocol (as ``benchmarks/generator.py``): the first call (compilation) and ``--warmup`` calls
untimed, then ``--repeats`` timed calls ending in ``jax.block_until_ready``; medians in ms;
``--rounds`` alternates ours and the original and pools the rounds. Columns: ``GMACs``
(torchprofile 0.0.1's count, gan-compression's figures), ``MAC red.`` = MACs(full) / MACs(config),
``speed-up`` = latency(full) / latency(config) of the same variant, ``ours/orig`` = sliced /
original (below 1: ours is faster).

    python -m benchmarks.img2img                                   # ngf 64, 256 px, horse2zebra's config
    python -m benchmarks.img2img --configs 16_16_32_16_32_32_16_16,32_32_48_32_48_48_16_16 --batch 4
    python -m benchmarks.img2img --original_repo /path/to/gan-compression --original_python /work/refenv/bin/python

``--teacher resnet|mobile_resnet`` (``--teacher_ngf``) also times the uncompressed teacher GAN
Compression starts from and adds ``T MAC red.`` / ``T speed-up``: each exported sub-generator's MAC
reduction and realized latency speed-up against that teacher (the papers' compression ratios are
against the full ResNet, ngf 64), ``--no_masked`` skipping the masked program:

    python -m benchmarks.img2img --ngf 48 --teacher resnet --no_masked \
        --configs 48_32_48_40_40_48_32_24,32_32_40_32_40_40_16_16,16_16_32_16_32_32_16_16,32_32_32_32_32_32_16_16
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from anycost_jax import convert, macs
from anycost_jax.elastic import img2img as rules
from anycost_jax.models.img2img import MobileResnetGenerator
from anycost_jax.models.img2img import resnet as resnet_lib

_ORIGINAL_SNIPPET = r'''
import json, sys, time, torch
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec['repo'])
torch.set_num_threads(spec['threads'])
from configs import decode_config
from models.modules.resnet_architecture.sub_mobile_resnet_generator import SubMobileResnetGenerator
from torch import nn
out = {}
for cfg, path in spec['models'].items():
    net = SubMobileResnetGenerator(3, 3, decode_config(cfg), norm_layer=nn.InstanceNorm2d, n_blocks=9)
    net.load_state_dict(torch.load(path))
    net.eval()
    x = torch.rand(spec['batch'], 3, spec['size'], spec['size']) * 2 - 1
    times = []
    with torch.no_grad():
        for i in range(spec['warmup'] + 1 + spec['repeats']):
            t = time.perf_counter(); net(x); dt = time.perf_counter() - t
            if i > spec['warmup']:
                times.append(dt)
    out[cfg] = times
json.dump(out, open(spec['out'], 'w'))
'''


def _time(fn, x, warmup: int, repeats: int):
    start = time.perf_counter()
    jax.block_until_ready(fn(x))
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        jax.block_until_ready(fn(x))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append(time.perf_counter() - start)
    return compile_s, times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--ngf', type=int, default=64)
    p.add_argument('--size', type=int, default=256)
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--configs', default='16_16_32_16_32_32_16_16')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--rounds', type=int, default=1)
    p.add_argument('--no_masked', action='store_true')
    p.add_argument('--original_repo')
    p.add_argument('--original_python', default=sys.executable)
    p.add_argument('--json')
    p.add_argument('--teacher', choices=['resnet', 'mobile_resnet'])
    p.add_argument('--teacher_ngf', type=int, default=64)
    args = p.parse_args(argv)
    gen = MobileResnetGenerator(ngf=args.ngf, clamp_input=True)
    x = jax.random.uniform(jax.random.key(0), (args.batch, args.size, args.size, 3), minval=-1, maxval=1)
    variables = jax.jit(gen.init)(jax.random.key(1), x)
    full = '_'.join([str(args.ngf)] * 8)
    configs = [full] + [c for c in args.configs.split(',') if c and c != full]
    shape = jax.ShapeDtypeStruct((1, args.size, args.size, 3), jnp.float32)
    results = {c: {'gmacs': macs.count_macs(gen, shape, config=c) / 1e9, 'sliced': [], 'masked': [], 'original': []}
               for c in configs}
    fns = {c: jax.jit(lambda x, c=c: gen.apply(variables, x, config=c)) for c in configs}
    masked = jax.jit(lambda x, w: gen.apply(variables, x, widths=w))
    tmp = tempfile.mkdtemp(prefix='img2img-bench-')
    models = {}
    if args.original_repo:
        for c in configs:
            sub, sub_vars = resnet_lib.export(gen, variables, c)
            models[c] = os.path.join(tmp, f'{c}.pth')
            convert.save_img2img_generator(models[c], sub, sub_vars)
    threads = len(os.sched_getaffinity(0))
    for _ in range(args.rounds):
        for c in configs:
            comp, t = _time(fns[c], x, args.warmup, args.repeats)
            results[c]['sliced'] += t
            results[c]['compile_s'] = comp
            if not args.no_masked:
                w = jnp.asarray(rules.resnet_widths(c), jnp.int32)
                results[c]['masked'] += _time(lambda x: masked(x, w), x, args.warmup, args.repeats)[1]
        if args.original_repo:
            out = os.path.join(tmp, 'original.json')
            spec = dict(repo=os.path.abspath(args.original_repo), models=models, out=out, threads=threads,
                        batch=args.batch, size=args.size, warmup=args.warmup, repeats=args.repeats)
            subprocess.run([args.original_python, '-c', _ORIGINAL_SNIPPET, json.dumps(spec)], check=True)
            for c, t in json.load(open(out)).items():
                results[c]['original'] += t
    med = lambda t: 1e3 * float(np.median(t)) if t else float('nan')
    teacher = None
    if args.teacher:
        t_gen = resnet_lib.ResnetGenerator(ngf=args.teacher_ngf, mobile=args.teacher == 'mobile_resnet')
        t_vars = jax.jit(t_gen.init)(jax.random.key(2), x)
        t_fn = jax.jit(lambda x: t_gen.apply(t_vars, x))
        teacher = {'gmacs': macs.count_macs(t_gen, shape) / 1e9,
                   'ms': med(sum((_time(t_fn, x, args.warmup, args.repeats)[1] for _ in range(args.rounds)), []))}
        print(f'teacher {args.teacher} ngf {args.teacher_ngf}: {teacher["gmacs"]:.2f} GMACs, {teacher["ms"]:.1f} ms')
    base = results[full]
    print(f'MobileNet-ResNet ngf {args.ngf}, {args.size}px, batch {args.batch}, {threads} threads, '
          f'{args.rounds} round(s) x {args.repeats} repeats')
    print(f'{"config":>26} {"GMACs":>7} {"MAC red.":>8} {"sliced ms":>10} {"speed-up":>8} {"masked ms":>10} '
          f'{"orig ms":>9} {"orig sp-up":>10} {"ours/orig":>9}' + (f' {"T MAC red.":>10} {"T speed-up":>10}'
                                                                  if teacher else ''))
    for c in configs:
        r = results[c]
        r.update(sliced_ms=med(r['sliced']), masked_ms=med(r['masked']), original_ms=med(r['original']),
                 mac_reduction=base['gmacs'] / r['gmacs'])
        r['speedup'] = med(base['sliced']) / r['sliced_ms']
        r['original_speedup'] = med(base['original']) / r['original_ms'] if r['original'] else float('nan')
        r['ours_over_original'] = r['sliced_ms'] / r['original_ms'] if r['original'] else float('nan')
        print(f'{c:>26} {r["gmacs"]:7.2f} {r["mac_reduction"]:8.2f} {r["sliced_ms"]:10.1f} {r["speedup"]:8.2f} '
              f'{r["masked_ms"]:10.1f} {r["original_ms"]:9.1f} {r["original_speedup"]:10.2f} '
              f'{r["ours_over_original"]:9.2f}' + (f' {teacher["gmacs"] / r["gmacs"]:10.2f} '
                                                     f'{teacher["ms"] / r["sliced_ms"]:10.2f}' if teacher else ''))
        if teacher:
            r.update(teacher_mac_reduction=teacher['gmacs'] / r['gmacs'], teacher_speedup=teacher['ms'] / r['sliced_ms'])
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'args': vars(args), 'results': results, 'teacher': teacher}, f, indent=1)


if __name__ == '__main__':
    main()
