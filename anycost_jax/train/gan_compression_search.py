"""GAN Compression after the supernet: the search under a MAC budget, the export of what it finds,
and the pipeline steps that train nothing (``config.method`` 'search' and 'export').

:func:`search_supernet` searches a ``supernet`` stage's workdir with the shared engine
(:mod:`anycost_jax.search`): ``method='evolution'`` (``evolution_search.py``: population 100,
parent ratio 0.25, mutation ratio 0.5, mutate probability 0.2, 500 generations, the first
population drawn with the supernet's sampling weights; checkpointed every generation, so a search
started again goes on to the result an uninterrupted one gives) or ``'brute_force'`` (``search.py``:
every configuration, shuffled by the seed, split into ``num_shards`` shards, one per JAX process or
one per job with ``shard``; each shard's results appended to its progress file as they come, keyed
by config string; a merge reads every shard's file and picks the best within the budget). The
fitness is any :data:`FITNESS` entry, lower is better, ``fitness(candidates) -> list[float]``:
the quality measures of :mod:`anycost_jax.eval.img2img_quality` here ('teacher/lpips' ...), FID /
mIoU where :func:`register_fitness` adds them. It runs on the training examples the supernet
stage held out (``holdout_examples``), or a split of the dataset.

The found sub-network is exported as our model directory, the original's compressed ``.pth``
(``sub_mobile_resnet_9blocks``) and a JSON of its config, MACs and score; :func:`export_config`
does the same for a configuration given as a string (the original's ``export.py``).

In a pipeline (:mod:`anycost_jax.train.config_lib`), ``search`` reads ``config.supernet`` (a stage
reference), ``config.budget``, ``search_method``, ``measure``, ``search_split`` and the evolution's
settings, and leaves the sub-network in its step's ``generator/``; ``export`` takes
``config.searched`` (a search step or a ``finetune`` stage) and writes ``generator/``,
``compressed_net_G.pth`` and ``summary.md``: teacher / largest / searched / smallest and every
uniform configuration of the supernet with their MACs, parameters, CPU latency and quality against
the ground truth and the teacher (:func:`summary`).
"""
from __future__ import annotations

import functools
import glob
import json
import logging
import os
from typing import Callable, Optional

import jax
import numpy as np

from anycost_jax import convert, macs, modeldir, render
from anycost_jax import search as search_lib
from anycost_jax import workdir as workdir_lib
from anycost_jax.eval import img2img_quality as quality_lib
from anycost_jax.models.img2img import resnet
from anycost_jax.train import gan_compression as gc
from anycost_jax.train import img2img

log = logging.getLogger(__name__)

# evolution_search.py's defaults
SEARCH_DEFAULTS = dict(population=100, iterations=500, parent_ratio=0.25, mutation_ratio=0.5, mutate_prob=0.2)
SEARCH_METHODS = ('evolution', 'brute_force')
SEARCHED = gc.SEARCHED  # WORKDIR/searched/<budget name>: the found sub-networks
DONE_FILE = 'task.json'  # a search / export step's result, written last: the step is done
COMPRESSED_PTH = 'compressed_net_G.pth'
SUMMARY_FILE = 'summary.md'


# ---------------------------------------------------------------------------- fitness registry

# name -> make(gen, variables, config, split) -> fitness(candidates) -> list[float] (lower is better);
# gen / variables: the supernet, config: its stage's config, split: 'holdout' or a split of the dataset
FITNESS: dict[str, Callable] = {}


def register_fitness(name: str, make: Callable) -> None:
    """Makes ``measure=name`` search with ``make(gen, variables, config, split)``'s fitness (e.g. FID,
    mIoU: negate what is better higher)."""
    FITNESS[name] = make


def _quality_fitness(gen, variables, config, split, measure):
    reference = measure.partition('/')[0]
    teacher = gc.load_teacher(config) if reference == 'teacher' else None
    if reference == 'real' and not gc.paired(config):
        raise ValueError(f'measure {measure!r} needs paired data; {config.dataset} is unpaired: use teacher/...')
    return quality_lib.config_fitness(gen, variables, search_batches(config, split, teacher), measure)


for _ref in ('real', 'teacher'):
    for _m in quality_lib.MEASURES:
        register_fitness(f'{_ref}/{_m}', functools.partial(_quality_fitness, measure=f'{_ref}/{_m}'))


def make_fitness(measure: str, gen, variables, config, split: str):
    if measure not in FITNESS:
        raise ValueError(f'measure {measure!r} is not one of {sorted(FITNESS)} (others: '
                         'gan_compression_search.register_fitness)')
    return FITNESS[measure](gen, variables, config, split)


def search_batches(config, split: str, teacher) -> list[tuple]:
    """The search's held-out batches: ``split`` 'holdout' is the training examples the stage kept out
    (``holdout_examples``), any other name a split of the dataset."""
    dcfg = gc.data_config(config)
    if split != 'holdout':
        return gc.heldout_batches(config, split, config.eval_batch_size, teacher)
    if not config.holdout_examples:
        raise ValueError('the supernet trained on every training example (config.holdout_examples=0): train it '
                         "with --config.holdout_examples=N to search on held-out training examples, or pass "
                         "split='test' (the test split)")
    _, held = gc.split_holdout(img2img.source_of(dcfg, dcfg.train_split), config.holdout_examples)
    return gc.heldout_batches(config, dcfg.train_split, min(config.eval_batch_size, config.holdout_examples),
                              teacher, source=held)


# ---------------------------------------------------------------------------- search and export


def open_supernet(workdir: str, image_size=None, search_space=None, weighted_sample=None):
    """``(config, gen, variables, space)`` of a ``supernet`` stage's workdir; ``search_space`` may narrow
    the trained space (a name or the lists)."""
    config = workdir_lib.read_config(workdir)
    if config.get('family') != 'gan_compression' or config.method != 'supernet':
        raise ValueError(f'{workdir} holds a {config.get("family")} {config.get("method")!r} run; the search '
                         "takes a gan_compression 'supernet' stage's workdir")
    gen, variables = convert.load_img2img_generator(os.path.join(workdir, workdir_lib.GENERATOR))
    space = search_lib.ResnetSpace(gen, search_space or config.search_space, image_size or config.resolution,
                                   config.weighted_sample if weighted_sample is None else weighted_sample,
                                   config.weight_strategy)
    return config, gen, variables, space


def _fname(measure: str) -> str:
    return measure.replace('/', '-')


def search_supernet(workdir: str, budget: float, *, method: str = 'evolution', measure: str = 'teacher/lpips',
                    split: str = 'holdout', output: Optional[str] = None, image_size: Optional[int] = None,
                    seed: int = 0, search_space=None, state_dir: Optional[str] = None,
                    num_shards: Optional[int] = None, shard: Optional[int] = None, merge: bool = False,
                    partial: bool = False, cache: Optional[dict] = None, progress=None, **evolve_kw):
    """Searches the supernet trained in ``workdir`` for the sub-network of at most ``budget`` MACs with
    the best ``measure``, and exports it.

    Args:
      workdir: a ``supernet`` stage's workdir (its ``config.json`` and exported ``generator/``).
      budget: MACs at ``image_size`` (default: the config's resolution).
      method: 'evolution' or 'brute_force'.
      measure: a :data:`FITNESS` name, e.g. '<real|teacher>/<l1|psnr|lpips>'.
      split: 'holdout' (the training examples the stage kept out) or a split of the dataset.
      output: the found sub-network's model directory (default ``WORKDIR/searched/<budget name>``);
        its gan-compression ``.pth`` is written as ``<output>.pth``, the search's best as ``<output>.json``.
      search_space: a narrower space than the trained one (a name or the lists).
      state_dir: where the progress is kept (default ``WORKDIR/searched``): the evolution's checkpoint
        ``<budget>-<measure>.evolution.pkl``, brute force's ``brute_force-<measure>-seed<seed>/
        shard-<i>-of-<n>.jsonl`` (budget-free: a larger budget re-scores nothing).
      num_shards, shard: brute force's split (default: one shard per JAX process); with several
        processes every one searches its shard and process 0 merges; with separate jobs each runs
        its shard, and the one that completes the set merges (or ``merge=True`` later).
      merge: brute force: only merge the shards' files (``partial``: even if incomplete).
      seed, cache, progress, evolve_kw: :func:`anycost_jax.search.evolve`'s (defaults: :data:`SEARCH_DEFAULTS`).
    Returns:
      ``(search.SearchResult, output)``, or ``(None, None)`` while other brute-force shards run.
    """
    if method not in SEARCH_METHODS:
        raise ValueError(f'search method {method!r} is not one of {SEARCH_METHODS}')
    config, gen, variables, space = open_supernet(workdir, image_size, search_space)
    budget = int(budget)
    space.feasible(budget)  # before any data is read
    name = search_lib.budget_name(budget)
    state_dir = state_dir or os.path.join(workdir, SEARCHED)
    if method == 'evolution':
        fitness = make_fitness(measure, gen, variables, config, split)
        result = search_lib.evolve(space, budget, fitness, seed=seed, cache=cache, progress=progress,
                                   state_path=os.path.join(state_dir, f'{name}-{_fname(measure)}.evolution.pkl'),
                                   **{**SEARCH_DEFAULTS, **evolve_kw})
    else:
        multi = num_shards is None and jax.process_count() > 1
        num_shards = jax.process_count() if num_shards is None else num_shards
        shard = jax.process_index() if shard is None else shard
        folder = os.path.join(state_dir, f'brute_force-{_fname(measure)}-seed{seed}')
        paths = [os.path.join(folder, f'shard-{i}-of-{num_shards}.jsonl') for i in range(num_shards)]
        if not merge:
            fitness = make_fitness(measure, gen, variables, config, split)
            search_lib.brute_force(space, budget, fitness, paths[shard], seed=seed, shard=shard,
                                   num_shards=num_shards, fitness_name=measure, progress=progress)
        if multi:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices('brute_force')
        elif not merge and not partial and not _complete(paths):
            log.info('brute force: shard %d of %d done; the others are not yet: run them (then this again, or '
                     'with merge=True) to merge', shard, num_shards)
            return None, None
        result = search_lib.merge_brute_force([p for p in paths if os.path.exists(p)], space, budget,
                                              partial=partial)
    output = output or os.path.join(workdir, SEARCHED, name)
    _export(gen, variables, result.best.config_str, output, {name: result})
    log.info('searched %s: %s, %d MACs, %s %.5f; exported to %s', workdir, result.best.config_str, result.best.macs,
             measure, result.best.dist, output)
    return result, output


def _complete(paths) -> bool:
    """Whether every shard's progress file records all of its shard."""
    for p in paths:
        if not os.path.exists(p):
            return False
        header, rows = search_lib._read_records(p)
        if len({tuple(r['config']) for r in rows}) < header['shard_size']:
            return False
    return True


def _export(gen, variables, config_str: str, output: str, results: dict) -> None:
    """Every process calls it (the model directory's save synchronizes them); process 0 writes the files."""
    sub, sub_vars = resnet.export(gen, variables, config_str)
    modeldir.save(output, sub, sub_vars)
    if jax.process_index() == 0:
        convert.save_img2img_generator(output.rstrip('/') + '.pth', sub, sub_vars)
        search_lib.save_json(output.rstrip('/') + '.json', results)


def export_config(workdir: str, config_str: str, output: Optional[str] = None, image_size=None) -> str:
    """The supernet of ``workdir`` at ``config_str`` (checked against its search space) as a model
    directory, ``<output>.pth`` and ``<output>.json`` (default ``WORKDIR/searched/<config_str>``)."""
    _, gen, variables, space = open_supernet(workdir, image_size)
    c = space.parse(config_str)
    output = output or os.path.join(workdir, SEARCHED, c.config_str)
    _export(gen, variables, c.config_str, output, {c.config_str: c})
    return output


# ---------------------------------------------------------------------------- pipeline steps


def add_task_fields(c) -> None:
    """The fields of the search and export steps (and of a pipeline's shared config)."""
    c.supernet = ''                    # search: the supernet stage's workdir
    c.budget = 0.                      # search: MACs at the supernet's resolution
    c.search_method = 'evolution'      # or 'brute_force'
    c.measure = 'teacher/lpips'        # a gan_compression_search.FITNESS name
    c.search_split = 'holdout'         # the supernet's held-out training examples, or a split
    for k, v in SEARCH_DEFAULTS.items():
        c[k] = v
    c.num_shards = 0                   # brute force: 0 = one shard per JAX process
    c.summary_examples = 64            # export: test examples of the summary's quality columns (0: none)


def check_task(config, workdir: str) -> None:
    del workdir
    if config.method == 'search':
        if not config.supernet:
            raise ValueError("config.supernet is empty: the search step needs a supernet stage's workdir")
        if config.search_method not in SEARCH_METHODS:
            raise ValueError(f'config.search_method={config.search_method!r} is not one of {SEARCH_METHODS}')
        if not config.budget > 0:
            raise ValueError(f'config.budget={config.budget} must be a positive number of MACs, e.g. 3e9')
        if config.measure not in FITNESS:
            raise ValueError(f'config.measure={config.measure!r} is not one of {sorted(FITNESS)}: FID and mIoU are '
                             'there once their evaluation registers them (gan_compression_search.register_fitness); '
                             'until then search with a quality measure, e.g. --config.stage.search.measure='
                             'teacher/lpips')
    elif not config.searched:
        raise ValueError('config.searched is empty: the export step needs a search step or finetune stage')


def run_task(config, workdir: str):
    """Runs a ``search`` or ``export`` step in ``workdir`` (going on from its progress files); None."""
    os.makedirs(workdir, exist_ok=True)
    if config.method == 'search':
        kw = {k: config[k] for k in SEARCH_DEFAULTS}
        result, _ = search_supernet(config.supernet, config.budget, method=config.search_method,
                                    measure=config.measure, split=config.search_split, seed=config.seed,
                                    output=os.path.join(workdir, workdir_lib.GENERATOR), state_dir=workdir,
                                    num_shards=config.num_shards or None, progress=_log_progress, **kw)
        if result is not None:
            _done(workdir, {'config_str': result.best.config_str, 'macs': result.best.macs,
                            'dist': result.best.dist, 'measure': config.measure, 'budget': int(config.budget)})
        return None
    gen, variables = convert.load_img2img_generator(gc._run_part(config.searched, workdir_lib.GENERATOR))
    modeldir.save(os.path.join(workdir, workdir_lib.GENERATOR), gen, variables)
    if jax.process_index() == 0:
        convert.save_img2img_generator(os.path.join(workdir, COMPRESSED_PTH), gen, variables)
    table = summary(config, gen, variables) if config.supernet else None
    if table is not None and jax.process_index() == 0:
        with open(os.path.join(workdir, SUMMARY_FILE), 'w') as f:
            f.write(table + '\n')
        print(table, flush=True)
    _done(workdir, {'searched': config.searched, 'macs': _macs(gen, variables, config.resolution)})
    return None


def _log_progress(*args) -> None:
    """The search's reports in the training log: each generation scored (evolution), every 100
    configurations (brute force)."""
    if isinstance(args[0], search_lib.Progress):
        p = args[0]
        if p.population is not None:
            best = p.population[0]
            log.info('search %s; best %s (%d MACs) %.5f', p.describe(), best.config_str, best.macs, best.dist)
    elif args[0] % 100 == 0 or args[0] == args[1]:
        log.info('brute force: %d of %d configurations of this shard', *args)


def _done(workdir: str, info: dict) -> None:
    if jax.process_index() == 0:
        with open(os.path.join(workdir, DONE_FILE + '.tmp'), 'w') as f:
            json.dump(info, f, indent=1)
        os.replace(os.path.join(workdir, DONE_FILE + '.tmp'), os.path.join(workdir, DONE_FILE))


def task_done(config, workdir: str) -> bool:
    del config
    return os.path.isfile(os.path.join(workdir, DONE_FILE))


def export_task(config, stage_dir: str, workdir: str) -> None:
    """The pipeline's root gets the last step's sub-generator (and its ``.pth`` and summary)."""
    del config
    gen, variables = convert.load_img2img_generator(os.path.join(stage_dir, workdir_lib.GENERATOR))
    modeldir.save(os.path.join(workdir, workdir_lib.GENERATOR), gen, variables)
    for name in (COMPRESSED_PTH, SUMMARY_FILE):
        if os.path.isfile(os.path.join(stage_dir, name)) and jax.process_index() == 0:
            with open(os.path.join(stage_dir, name), 'rb') as f, open(os.path.join(workdir, name), 'wb') as g:
                g.write(f.read())


# ---------------------------------------------------------------------------- the summary table


def _macs(gen, variables, size: int) -> int:
    del variables
    return macs.count_macs(gen, jax.ShapeDtypeStruct((1, size, size, gen.input_nc), np.float32))


def latency_ms(gen, variables, size: int, batch: int = 1, repeats: int = 20) -> float:
    """Median CPU (or device) milliseconds of one jitted forward of a ``batch`` at ``size`` px, after
    compilation and two warm-up calls."""
    fn = jax.jit(lambda x: gen.apply(variables, x))
    x = jax.random.uniform(jax.random.key(0), (batch, size, size, gen.input_nc), minval=-1, maxval=1)
    for _ in range(2):  # compilation and a first warm-up; render.latency_ms adds one more
        jax.block_until_ready(fn(x))
    return render.latency_ms(fn, x, repeats=repeats)


def summary_rows(supernet: str, searched=None, label: str = 'searched', examples: int = 64) -> list[dict]:
    """Teacher, the supernet's largest configuration, ``searched`` (an exported sub-network ``(gen,
    variables)``, measured as it is), every uniform configuration and the smallest:
    ``[{'name', 'config', 'macs', 'params', 'latency_ms', '<real|teacher>/<measure>'...}]``, quality on the
    first ``examples`` test examples (0: none), the supernet's configurations exported dense and timed."""
    sconfig, gen, variables, space = open_supernet(supernet)
    teacher = gc.load_teacher(sconfig)
    largest, smallest = (tuple(f(e) for e in space.choices) for f in (max, min))
    nets = [('teacher', '', *teacher)]
    for name, c in [('largest', largest)] + [(f'uniform {w}', (w,) * 8) for w in space.uniform_widths()[::-1]
                                            if (w,) * 8 not in (largest, smallest)] + [('smallest', smallest)]:
        nets.append((name, '_'.join(map(str, c)), *resnet.export(gen, variables, c)))
    if searched is not None:
        nets.insert(2, (label, '_'.join(map(str, _config_of(searched[0]))), *searched))
    batches = None
    if examples:
        batches = gc.heldout_batches(sconfig, sconfig.test_split, min(examples, sconfig.eval_batch_size), teacher)
        batches = batches[:max(1, examples // len(batches[0][0]))]
    rows = []
    for name, cs, g, v in nets:
        row = {'name': name, 'config': cs, 'macs': _macs(g, v, sconfig.resolution),
               'params': int(sum(np.size(a) for a in jax.tree.leaves(v['params']))),
               'latency_ms': latency_ms(g, v, sconfig.resolution)}
        if batches:
            row.update(quality_lib.quality(lambda x: img2img._apply(g)(v, x), batches))
        rows.append(row)
    return rows


def format_summary(rows: list[dict], budget: Optional[float] = None) -> str:
    """A Markdown table of :func:`summary_rows`."""
    measures = [k for k in rows[0] if '/' in k]
    head = ['', 'config', 'MMACs', 'params', 'CPU ms'] + measures
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        cells = [r['name'], r['config'] or '(full)', f'{r["macs"] / 1e6:.2f}', f'{r["params"]:,}',
                 f'{r["latency_ms"]:.2f}'] + [f'{r[m]:.2f}' if m.endswith('psnr') else f'{r[m]:.4f}' for m in measures]
        lines.append('| ' + ' | '.join(cells) + ' |')
    text = '\n'.join(lines)
    if budget:
        text = f'budget {budget / 1e6:.2f} MMACs\n\n' + text
    return text


def _config_of(gen) -> tuple:
    """The 8-entry config of an exported ResNet sub-network (its widths at the entries' layers)."""
    from anycost_jax.elastic import img2img as rules
    idx, factors = rules.resnet_entry_layout(gen.n_blocks)
    entries = {}
    for i, f, w in zip(idx, factors, gen.full_widths):
        entries.setdefault(i, w // f)
    return tuple(entries[i] for i in range(8))


def summary(config, gen, variables) -> str:
    """The export step's table (:func:`summary_rows` of ``config.supernet``, ``gen`` as the searched
    sub-network, 'fine-tuned' when ``config.searched`` is a finetune stage)."""
    source = config.searched
    fine = workdir_lib.is_stage(source) and workdir_lib.read_config(source).get('method') == 'finetune'
    rows = summary_rows(config.supernet, (gen, variables), 'fine-tuned' if fine else 'searched',
                        config.summary_examples)
    return format_summary(rows, config.get('budget'))
