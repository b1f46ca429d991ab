"""Every metric for a grid of sub-generators: the one entry point of ``launch/evaluate.py`` and of
the trainer's periodic evaluation.

A *grid* is ``{label: SubConfig}`` (uniform ratio or per-layer widths, and an output resolution;
labels like ``0.5x@256``). :func:`evaluate` returns ``{label: {metric: value}}`` with

* ``macs``: multiply-accumulates of one image (:mod:`anycost_jax.macs`);
* ``fid``: FID against real statistics at the config's resolution (:mod:`.fid`; one pass over
  shared z for every config, features sharded over all devices and processes);
* ``lpips`` / ``mse`` (metric ``consistency``): distance to the full generator's image on the same
  z and noise, both at 256 px (:mod:`.consistency`);
* ``ppl``: W-space endpoint PPL (:mod:`.ppl`); configs below 16 px have none (LPIPS-VGG needs 16).

Real statistics come from ``stats``: a path with ``{res}`` in it (one ``.npz`` per resolution).
A missing file is computed from ``dataset`` through the input pipeline and saved there, so it
is made once; with no dataset it is an error that says how to make it.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Mapping, Optional, Sequence

import jax

from anycost_jax import macs
from anycost_jax.eval import consistency
from anycost_jax.models.generator import Generator
from anycost_jax.render import SubConfig

PPL_MIN_RES = 16


@dataclasses.dataclass
class Settings:
    """How much work each metric does (defaults: the original's / the literature's sizes)."""
    n_fid: int = 50_000
    n_ppl: int = 100_000
    n_consistency: int = 1000
    batch_size: Optional[int] = None     # None: FID picks from memory; the LPIPS metrics use 16
    seed: int = 0
    stats: Optional[str] = None          # real statistics, e.g. 'stats/ffhq_{res}.npz'
    dataset: Any = None                  # makes missing statistics files: a dataset name or source (fid.real_stats)
    data_dir: Optional[str] = None
    manual_dir: Optional[str] = None
    # Read real images at this size and resize them (the pipeline's pyramid) to each evaluated resolution, as the
    # multi-resolution discriminator sees them (None: read each resolution from the dataset).
    source_resolution: Optional[int] = None
    consistency_res: int = 256           # both images are compared at this size
    inception: Optional[str] = None      # pytorch-fid weights: a file or URL (None: download once, cached)
    extractor: Any = None                # a fid.FeatureExtractor to use instead (e.g. another feature net)
    progress: bool = True


_EXTRACTORS: dict = {}


def feature_extractor(settings: Settings):
    """``settings.extractor``, or the FID Inception (built once per weights file and reused)."""
    from anycost_jax.eval import fid
    if settings.extractor is not None:
        return settings.extractor
    if settings.inception not in _EXTRACTORS:
        _EXTRACTORS[settings.inception] = fid.FeatureExtractor(weights=settings.inception)
    return _EXTRACTORS[settings.inception]


# Every uniform ``ratio x resolution`` (default: the four highest resolutions), labelled ``0.5x@256``.
grid = consistency.uniform_configs


def check_metrics(metrics: Sequence[str]) -> list[str]:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f'unknown metrics {unknown}; expected any of {", ".join(METRICS)}')
    if not metrics:
        raise ValueError(f'no metric asked for; expected any of {", ".join(METRICS)}')
    return list(dict.fromkeys(metrics))


def stats_path(pattern: str, res: int) -> str:
    if '{res}' not in pattern:
        raise ValueError(f'stats={pattern!r} must contain "{{res}}" (one statistics file per resolution), '
                         f'e.g. stats/ffhq_{{res}}.npz')
    return os.path.expanduser(pattern.format(res=res))


def real_statistics(settings: Settings, resolutions: Sequence[int]) -> dict:
    """``{res: FIDStats}``, loading ``settings.stats`` files or making (and saving) the missing ones."""
    from anycost_jax.eval import fid
    if not settings.stats:
        raise ValueError('FID needs real statistics: pass stats="DIR/NAME_{res}.npz" (made from the dataset '
                         'on first use when a dataset is given)')
    out = {}
    for res in sorted(set(resolutions)):
        path = stats_path(settings.stats, res)
        if os.path.exists(path):
            out[res] = fid.load_stats(path, resolution=res)
            continue
        if settings.dataset is None:
            raise FileNotFoundError(f'no real statistics at {path}; give the dataset to make them (launch/evaluate.py '
                                    f'--dataset=NAME, or the training config\'s dataset) or {fid.STATS_HINT}')
        stats = fid.real_stats(settings.dataset, res, settings.n_fid, settings.batch_size,
                               source_resolution=settings.source_resolution, data_dir=settings.data_dir,
                               manual_dir=settings.manual_dir, seed=settings.seed,
                               name=settings.dataset if isinstance(settings.dataset, str) else None,
                               extractor=feature_extractor(settings), progress=settings.progress)
        if jax.process_index() == 0:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            stats.save(path)
        out[res] = stats
    return out


def _res(gen: Generator, cfg: SubConfig) -> int:
    return cfg.target_res or gen.top_res


def _macs(gen, variables, configs, settings):
    return {k: {'macs': float(macs.generator_macs(gen, c.channel_ratio, c.channels, _res(gen, c)))}
            for k, c in configs.items()}


def _fid(gen, variables, configs, settings):
    from anycost_jax.eval import fid
    res_of = {k: _res(gen, c) for k, c in configs.items()}
    reals = real_statistics(settings, res_of.values())
    fakes = fid.fake_features(gen, variables, list(configs.values()), settings.n_fid, settings.batch_size,
                              settings.seed, extractor=feature_extractor(settings), progress=settings.progress)
    return {k: {'fid': f.fid(reals[res_of[k]])} for k, f in zip(configs, fakes)}


def _consistency(gen, variables, configs, settings):
    dist = consistency.consistency(gen, variables, dict(configs), settings.n_consistency, settings.batch_size or 16,
                                   settings.seed, eval_res=settings.consistency_res, progress=settings.progress)
    return {k: {'lpips': float(d['lpips']), 'mse': float(d['mse'])} for k, d in dist.items()}


def _ppl(gen, variables, configs, settings):
    from anycost_jax.eval import ppl
    return {k: {'ppl': ppl.compute_ppl(gen, variables, settings.n_ppl, settings.batch_size or 16, seed=settings.seed,
                                       channel_ratio=c.channel_ratio, channels=c.channels, target_res=c.target_res,
                                       progress=settings.progress)
                if _res(gen, c) >= PPL_MIN_RES else None}
            for k, c in configs.items()}


# The one metric registry: name -> fn(gen, variables, configs, settings) -> {label: {scalar: value}},
# used by launch/evaluate.py and the trainer's periodic evaluation alike.
METRICS: dict[str, Callable] = {'macs': _macs, 'fid': _fid, 'consistency': _consistency, 'ppl': _ppl}
BUILTIN = tuple(METRICS)


def register(name: str, fn: Callable) -> None:
    """Adds a metric ``fn(gen, variables, configs, settings) -> {label: {scalar: value}}`` (every
    process calls it; values may be None where a config has none)."""
    if name in BUILTIN:
        raise ValueError(f'metric {name!r} is built in; register another name')
    METRICS[name] = fn


def unregister(name: str) -> None:
    if name in BUILTIN:
        raise ValueError(f'metric {name!r} is built in and cannot be removed')
    METRICS.pop(name, None)


def evaluate(gen: Generator, variables: dict, metrics: Sequence[str], configs: Mapping[str, SubConfig],
             settings: Optional[Settings] = None) -> dict[str, dict[str, Optional[float]]]:
    """``{label: {metric: value}}`` for every config (see the module docstring for the metrics)."""
    settings = settings or Settings()
    metrics = check_metrics(metrics)
    if not configs:
        raise ValueError('no sub-generator configs to evaluate')
    for c in configs.values():  # every argument error before any work
        gen.resolve_channels(c.channel_ratio, c.channels)
        gen.check_target_res(c.target_res)
    results: dict[str, dict] = {k: {} for k in configs}
    for m in metrics:
        for k, row in METRICS[m](gen, variables, configs, settings).items():
            results[k].update(row)
    return results


def columns(results: Mapping[str, Mapping]) -> list[str]:
    order = ('macs', 'fid', 'lpips', 'mse', 'ppl')
    present = {m for row in results.values() for m in row}
    return [m for m in order if m in present]


def format_table(results: Mapping[str, Mapping]) -> str:
    """A fixed-width table: one row per config, one column per metric (MACs in G / M)."""
    cols = columns(results)
    width = max([len('config')] + [len(k) for k in results]) + 2

    def cell(m, v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return '-'
        if m == 'macs':
            return f'{v / 1e9:.3f}G' if v >= 1e8 else f'{v / 1e6:.2f}M'
        return f'{v:.4g}'
    lines = ['config'.ljust(width) + ''.join(c.rjust(11) for c in cols)]
    for k, row in results.items():
        lines.append(k.ljust(width) + ''.join(cell(c, row.get(c)).rjust(11) for c in cols))
    return '\n'.join(lines)


def scalars(results: Mapping[str, Mapping], prefix: str = 'eval') -> dict[str, float]:
    """Flat ``{prefix/metric/label: value}`` for TensorBoard (missing values left out)."""
    return {f'{prefix}/{m}/{k}': float(v) for k, row in results.items() for m, v in row.items() if v is not None}
