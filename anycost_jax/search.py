"""Evolutionary search of sub-networks under a MAC budget: one engine, any search space.

The engine (:func:`evolve`, :func:`search`, the budget helpers, JSON and plot) knows nothing of
the model: it works on a :class:`Space` of :class:`SearchCandidate` objects, deterministic from
``seed`` (numpy's PCG64 draws every random choice):

* initial population: the space's ``seeds(budget)`` that fit the budget (``seed_uniform``; one
  per :attr:`~SearchCandidate.key`, and the first generation is larger than ``population`` if
  there are more of them), then random candidates. With the seeds and elitism, the result is
  never worse than the best seed within the budget (on the search's own samples);
* every generation: the population is scored, sorted by distance (ties: fewer MACs, then
  :attr:`~SearchCandidate.order`) and the best ``parent_ratio`` of it are kept;
  ``mutation_ratio`` of the next population are mutants of random parents (``space.mutate``
  with ``mutate_prob``), the rest children of two random parents (``space.crossover``);
* a candidate over the budget is drawn again, at most ``max_retries`` times, then a
  ``RuntimeError`` says so; ``space.feasible(budget)`` restricts the space to what can fit and
  raises ``ValueError`` when nothing does.

Scores are cached by :attr:`~SearchCandidate.key`, so elites and repeated children are never
measured twice. ``progress`` hears of every generation before and after it is scored
(:class:`Progress`, with an ETA), so a long search is never silent.

**Anycost** (:class:`AnycostSpace`, the first space): a candidate is one width per elastic layer
and an output resolution. Widths come from the flexible channel space the generator is trained
on (:class:`anycost_jax.elastic.FlexibleSpace`: ``RATIOS`` x full width, at least
``min_channel``, rounded up to ``divided_by``, never below the 0.25-uniform width);
resolutions default to the trained ones (:func:`anycost_jax.elastic.default_resolutions`; the four
highest when the generator does not say, as the original trains ``n_res=4``). MACs are counted
with :mod:`anycost_jax.macs` (the paper's torchprofile count). Seeds are every uniform
configuration (ratio x resolution); random candidates draw a resolution, then a width per layer,
uniformly; a mutant redraws every layer's width, and the resolution, with probability
``mutate_prob``; crossover takes each layer and the resolution from either parent with
probability 1/2. Resolutions whose cheapest candidate exceeds the budget are never drawn.

The fitness is a distance to the full generator (lower is better), by default LPIPS (optionally
plus MSE) on held-out z measured by :class:`anycost_jax.eval.consistency.ConsistencyEvaluator`,
which renders every width in one compiled program per resolution. A candidate's key is its
sub-network: layers above its resolution do not run, so they are not part of its identity.

**Image-to-image** (:class:`ResnetSpace`): a candidate is one of GAN Compression's 8-entry configs
of a ResNet / MobileNet-ResNet supernet (:class:`ConfigCandidate`, keyed by its entries), its MACs
counted at the config; the fitness is a quality measure of its outputs on held-out inputs
(:func:`anycost_jax.eval.img2img_quality.config_fitness`). :func:`anycost_jax.train.gan_compression.search_supernet`
runs it on a trained supernet with the original's settings and exports the result.

The original's searched configurations (``assets/evolve_configs/*.json``) are written as
``{name: {"channels": [...], "res": int, "macs": int, "dist": float}}``, named after the
budget (e.g. "101G" for a 101e9-MAC budget); :func:`to_json` writes the same schema.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import os
import pickle
import time
from typing import Any, Callable, Hashable, Iterable, Mapping, Optional, Protocol, Sequence, TypeVar

import numpy as np

from anycost_jax import elastic, macs
from anycost_jax.models.generator import Generator

METRICS = ('lpips', 'mse', 'lpips+mse')


# ---------------------------------------------------------------------- what a search space provides


class SearchCandidate(Protocol):
    """One point of a search space: its cost, its distance (NaN until scored) and identities."""
    macs: int
    dist: float

    @property
    def key(self) -> Hashable:
        """The sub-network's identity: candidates with equal keys are scored once."""

    @property
    def order(self) -> tuple:
        """Breaks ties between equal (distance, MACs), so that sorting is deterministic."""

    def scored(self, dist: float) -> 'SearchCandidate':
        """A copy with ``dist`` set."""

    def to_json(self) -> dict:
        """The candidate as JSON data (:func:`to_json`)."""


C = TypeVar('C', bound=SearchCandidate)
FitnessFn = Callable[[Sequence[Any]], Sequence[float]]


class Space(Protocol[C]):
    """A search space: what :func:`evolve` draws from. Every random choice uses the given numpy
    ``rng``, so a search is deterministic from its seed."""

    def feasible(self, budget: int) -> 'Space[C]':
        """The space restricted to what can fit ``budget`` (ValueError, saying why, if nothing can)."""

    def seeds(self, budget: int) -> Iterable[C]:
        """Candidates to start from (those over ``budget`` are dropped by the engine)."""

    def cheapest(self) -> C:
        """The least costly candidate (for error messages)."""

    def random(self, rng: np.random.Generator) -> C:
        """A random candidate."""

    def mutate(self, parent: C, rng: np.random.Generator, prob: float) -> C:
        """``parent`` with every choice redrawn with probability ``prob``."""

    def crossover(self, a: C, b: C, rng: np.random.Generator) -> C:
        """A child taking each choice from ``a`` or ``b``."""


@dataclasses.dataclass
class SearchResult:
    budget: int
    best: Any                 # a SearchCandidate
    history: list[list[Any]]  # every generation's population, best first
    evaluated: list[Any]      # every distinct sub-network scored by this run, in order
    frontier: list[Any]       # the Pareto-optimal (MACs, distance) points among ``evaluated``


@dataclasses.dataclass(frozen=True)
class Progress:
    """What :func:`evolve` reports before (``population`` None) and after scoring each generation."""
    generation: int
    iterations: int
    to_score: int                    # this generation's candidates not scored before
    population: Optional[list]       # scored, best first
    elapsed: float                   # seconds since the search started
    eta: Optional[float]             # seconds left (None until something was scored)

    def describe(self) -> str:
        """'generation 3/20: 12 candidates to score, 1m05s so far, ETA 6m30s'."""
        eta = '' if self.eta is None else f', ETA {format_seconds(self.eta)}'
        return (f'generation {self.generation}/{self.iterations}: {self.to_score} '
                f'candidate{"" if self.to_score == 1 else "s"} to score, {format_seconds(self.elapsed)} so far{eta}')


def format_seconds(seconds: float) -> str:
    """'42s', '6m05s', '2h03m'."""
    s = int(round(seconds))
    if s < 60:
        return f'{s}s'
    return f'{s // 60}m{s % 60:02d}s' if s < 3600 else f'{s // 3600}h{s % 3600 // 60:02d}m'


# ---------------------------------------------------------------------- the engine


def budget_name(budget: float) -> str:
    """'101G' for 1.01e11, '250M', '40K', like the original's configuration names."""
    for scale, suffix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'K')):
        if budget >= scale:
            return f'{budget / scale:.3g}{suffix}' if budget < 10 * scale else f'{round(budget / scale)}{suffix}'
    return str(int(budget))


def parse_budgets(values: Iterable, full_macs: int) -> list[int]:
    """MAC budgets from numbers or strings: values <= 1 are fractions of ``full_macs``."""
    out = []
    for v in values:
        x = float(v)
        if not x > 0:
            raise ValueError(f'budget {v!r} must be positive')
        out.append(int(x * full_macs) if x <= 1 else int(x))
    return out


def pareto_frontier(candidates: Iterable[C]) -> list[C]:
    """The candidates no other candidate beats in both MACs and distance, by increasing MACs."""
    frontier: list = []
    for c in sorted(candidates, key=lambda c: (c.macs, c.dist)):
        if not frontier or c.dist < frontier[-1].dist:
            frontier.append(c)
    return frontier


class _Scorer:
    """Scores candidates through ``fitness_fn`` with a cache keyed by sub-network."""

    def __init__(self, fitness_fn: FitnessFn, cache: Optional[dict] = None):
        self.fitness_fn = fitness_fn
        self.cache = {} if cache is None else cache

    def _todo(self, candidates: Sequence[C]) -> dict:
        todo: dict = {}
        for c in candidates:
            if c.key not in self.cache and c.key not in todo:
                todo[c.key] = c
        return todo

    def count_new(self, candidates: Sequence[C]) -> int:
        """How many distinct ``candidates`` are not scored yet."""
        return len(self._todo(candidates))

    def __call__(self, candidates: Sequence[C]) -> list[C]:
        todo = self._todo(candidates)
        if todo:
            dists = list(self.fitness_fn(list(todo.values())))
            if len(dists) != len(todo):
                raise ValueError(f'fitness_fn returned {len(dists)} values for {len(todo)} candidates')
            for k, d in zip(todo, dists):
                if not math.isfinite(float(d)):
                    raise FloatingPointError(f'fitness of {todo[k]} is {d}')
                self.cache[k] = float(d)
        return [c.scored(self.cache[c.key]) for c in candidates]


def _sort(population: Sequence[C]) -> list[C]:
    return sorted(population, key=lambda c: (c.dist, c.macs, c.order))


def evolve(space: Space[C], budget: int, fitness_fn: FitnessFn, *, population: int = 50, iterations: int = 20,
           parent_ratio: float = 0.25, mutation_ratio: float = 0.5, mutate_prob: float = 0.1, seed: int = 0,
           max_retries: int = 1000, seed_uniform: bool = True, cache: Optional[dict] = None,
           callback: Optional[Callable[[int, list[C]], None]] = None,
           progress: Optional[Callable[[Progress], None]] = None, state_path: Optional[str] = None) -> SearchResult:
    """Evolves candidates with at most ``budget`` MACs; ``iterations`` generations after the first.

    ``fitness_fn(candidates) -> distances`` (lower is better) is called once per generation
    with the candidates not scored before (``cache``, a dict keyed by the candidates' ``key``,
    may be shared between runs with the same fitness). ``seed_uniform`` starts from the space's
    seeds. ``callback(generation, population)`` sees every scored generation, best first;
    ``progress`` a :class:`Progress` before and after each generation is scored. Its ETA takes
    the time per candidate scored so far times the most the remaining generations can score
    (all but the parents, which are cached): an upper estimate once compilation is past.

    ``state_path``: a file the search checkpoints to before each generation is scored (the
    population to score, the random generator's state, the scores so far); a search started
    again with the same file and settings resumes there and ends with the same result as one
    never interrupted (:func:`load_evolution_state`). Settings that differ are refused.
    """
    budget = int(budget)
    if population < 2 or iterations < 0 or max_retries < 1:
        raise ValueError(f'need population >= 2, iterations >= 0 and max_retries >= 1; got {population}, '
                         f'{iterations}, {max_retries}')
    if not (0 <= parent_ratio <= 1 and 0 <= mutation_ratio <= 1 and 0 <= mutate_prob <= 1):
        raise ValueError('parent_ratio, mutation_ratio and mutate_prob must lie in [0, 1]')
    n_parents = max(1, int(round(parent_ratio * population)))
    n_mutants = min(population - n_parents, int(round(mutation_ratio * population)))
    n_children = population - n_parents - n_mutants
    space = space.feasible(budget)
    rng = np.random.default_rng(seed)
    settings = dict(budget=budget, population=population, iterations=iterations, parent_ratio=parent_ratio,
                    mutation_ratio=mutation_ratio, mutate_prob=mutate_prob, seed=seed, seed_uniform=seed_uniform)
    saved = load_evolution_state(state_path, settings) if state_path else None

    def draw(make: Callable[[], C], what: str) -> C:
        for _ in range(max_retries):
            c = make()
            if c.macs <= budget:
                return c
        raise RuntimeError(f'no {what} within the budget of {budget:,} MACs in {max_retries} draws (the cheapest '
                           f'candidate costs {space.cheapest().macs:,}); raise the budget, '
                           f'max_retries, or restrict the space')

    pop: list = []
    if saved is None and seed_uniform:
        seeds: dict = {}
        for c in space.seeds(budget):
            if c.macs <= budget:
                seeds.setdefault(c.key, c)
        pop = list(seeds.values())
    while saved is None and len(pop) < population:
        pop.append(draw(lambda: space.random(rng), 'random candidate'))

    scorer = _Scorer(fitness_fn, cache)
    history: list[list] = []
    evaluated: dict = {}
    first = 0
    if saved is not None:
        first, pop, history, evaluated = saved['generation'], saved['pop'], saved['history'], saved['evaluated']
        rng.bit_generator.state = saved['rng']
        scorer.cache.update(saved['cache'])
    start, n_scored = time.perf_counter(), 0

    def report(generation, to_score, scored_pop):
        if progress is None:
            return
        elapsed = time.perf_counter() - start
        left = (to_score if scored_pop is None else 0) + (iterations - generation) * (population - n_parents)
        eta = elapsed / n_scored * left if n_scored else None
        progress(Progress(generation, iterations, to_score, scored_pop, elapsed, eta))

    for generation in range(first, iterations + 1):
        if state_path:
            _save_evolution_state(state_path, dict(settings=settings, generation=generation, pop=pop, history=history,
                                                   evaluated=evaluated, rng=rng.bit_generator.state,
                                                   cache=scorer.cache))
        to_score = scorer.count_new(pop)
        report(generation, to_score, None)
        pop = _sort(scorer(pop))
        n_scored += to_score
        for c in pop:
            evaluated.setdefault(c.key, c)
        history.append(pop)
        report(generation, to_score, pop)
        if callback is not None:
            callback(generation, pop)
        if generation == iterations:
            break
        parents = pop[:n_parents]
        mutants = [draw(lambda: space.mutate(parents[rng.integers(n_parents)], rng, mutate_prob), 'mutant')
                   for _ in range(n_mutants)]

        def cross():
            i, j = rng.integers(n_parents), rng.integers(n_parents)
            return space.crossover(parents[i], parents[j], rng)

        children = [draw(cross, 'crossover child') for _ in range(n_children)]
        pop = parents + mutants + children
    if state_path and first <= iterations:  # finished: a run started again returns this at once
        _save_evolution_state(state_path, dict(settings=settings, generation=iterations + 1, pop=pop,
                                               history=history, evaluated=evaluated, rng=rng.bit_generator.state,
                                               cache=scorer.cache))
    evaluated_list = list(evaluated.values())
    best = _sort(evaluated_list)[0]
    return SearchResult(budget, best, history, evaluated_list, pareto_frontier(evaluated_list))


def _save_evolution_state(path: str, state: dict) -> None:
    """Pickled (candidates are plain dataclasses), written whole or not at all (temporary file + rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'  # hosts running the same search write the same state: each its own temporary
    with open(tmp, 'wb') as f:
        pickle.dump(state, f)
    os.replace(tmp, path)


def load_evolution_state(path: str, settings: Mapping[str, Any]) -> Optional[dict]:
    """The checkpoint :func:`evolve` wrote to ``path`` (None if there is none), refused (ValueError)
    when it was written by a search of other settings."""
    if not os.path.exists(path):
        return None
    with open(path, 'rb') as f:
        state = pickle.load(f)
    diff = {k: (state['settings'].get(k), v) for k, v in settings.items() if state['settings'].get(k) != v}
    if diff:
        raise ValueError(f'{path} checkpoints a search with other settings '
                         f'({", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())}); '
                         'run it with those settings to resume it, or delete the file to start afresh')
    return state


def search(space: Space, budgets: Sequence[int], fitness_fn: FitnessFn, *,
           names: Optional[Sequence[str]] = None, cache: Optional[dict] = None,
           **kwargs) -> dict[str, SearchResult]:
    """:func:`evolve` for every budget (one shared score cache); ``{name: result}`` with names
    from :func:`budget_name` unless given."""
    names = list(names) if names is not None else [budget_name(b) for b in budgets]
    if len(names) != len(budgets) or len(set(names)) != len(names):
        raise ValueError(f'need one distinct name per budget, got {names} for {list(budgets)}')
    cache = {} if cache is None else cache
    return {n: evolve(space, b, fitness_fn, cache=cache, **kwargs) for n, b in zip(names, budgets)}


# ---------------------------------------------------------------------- brute force, sharded and resumable

BRUTE_FORCE_HEADER = 'brute_force'


def shard_of(n: int, seed: int, shard: int, num_shards: int) -> np.ndarray:
    """Indices of ``shard`` of ``num_shards`` (numpy's ``array_split``) of ``n`` items shuffled by ``seed``:
    the shards share the costly and the cheap configurations alike, as the original's ``search.py``."""
    if not 0 <= shard < num_shards:
        raise ValueError(f'shard {shard} is not in [0, {num_shards}): pass 0 <= --shard < --num_shards')
    return np.array_split(np.random.default_rng(seed).permutation(n), num_shards)[shard]


def _read_records(path: str) -> tuple[dict, list[dict]]:
    """``(header, records)`` of a brute-force progress file; a last line torn by a kill is dropped
    (and the file rewritten without it), anything else unreadable is an error."""
    with open(path) as f:
        lines = f.read().split('\n')
    torn = lines and lines[-1] != ''  # a complete file ends with a newline
    rows = []
    for i, line in enumerate(lines[:-1] if torn else lines):
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise ValueError(f'{path}: line {i + 1} is not JSON; not a brute-force progress file?') from None
    if torn:
        with open(path + '.tmp', 'w') as f:
            f.write(''.join(json.dumps(r) + '\n' for r in rows))
        os.replace(path + '.tmp', path)
    if not rows or rows[0].get('kind') != BRUTE_FORCE_HEADER:
        raise ValueError(f'{path} is not a brute-force progress file (no header line)')
    return rows[0], rows[1:]


def brute_force(space, budget: int, fitness_fn: FitnessFn, progress_file: str, *, seed: int = 0, shard: int = 0,
                num_shards: int = 1, fitness_name: str = '', chunk: int = 8,
                progress: Optional[Callable[[int, int], None]] = None) -> list[dict]:
    """Scores every configuration of ``shard`` (of ``num_shards``) of ``space.enumerate()`` within ``budget``.

    The configurations are shuffled by ``seed`` and split (:func:`shard_of`); each is costed, and
    those within the budget are scored ``chunk`` at a time. Every result is appended to
    ``progress_file`` (JSON lines: a header, then ``{"config", "macs", "dist"}``; ``dist`` null when
    the configuration was over the budget of its run), flushed as it comes, so a killed run started
    again skips what is recorded, and a later run with a larger budget scores only what it newly
    admits (the original's ``--restore_pkl_path``). The header (``fitness_name``, seed, shards, the
    space's size) must match a file resumed. Returns the shard's records; :func:`merge_brute_force`
    reads every shard's file and picks the best.
    """
    budget = int(budget)
    space = space.feasible(budget)
    configs = list(space.enumerate())
    order = shard_of(len(configs), seed, shard, num_shards)
    header = {'kind': BRUTE_FORCE_HEADER, 'fitness': fitness_name, 'seed': seed, 'shard': shard,
              'num_shards': num_shards, 'space_size': len(configs), 'shard_size': len(order)}
    done: dict = {}
    if os.path.exists(progress_file):
        old, rows = _read_records(progress_file)
        diff = [f'{k}: {old.get(k)!r} there, {v!r} now' for k, v in header.items() if old.get(k) != v]
        if diff:
            raise ValueError(f'{progress_file} records another brute-force search ({"; ".join(diff)}); use its '
                             'settings to resume it, or another file')
        done = {tuple(r['config']): r for r in rows}
    else:
        os.makedirs(os.path.dirname(os.path.abspath(progress_file)), exist_ok=True)
        with open(progress_file, 'w') as f:
            f.write(json.dumps(header) + '\n')
    todo = [tuple(configs[i]) for i in order]
    todo = [c for c in todo if c not in done or (done[c]['dist'] is None and done[c]['macs'] <= budget)]
    finished = len(order) - len(todo)
    with open(progress_file, 'a') as f:
        def write(rows):
            nonlocal finished
            for r in rows:
                done[tuple(r['config'])] = r
                f.write(json.dumps(r) + '\n')
            f.flush()
            os.fsync(f.fileno())
            finished += len(rows)
            if progress is not None:
                progress(finished, len(order))

        def score(batch):
            dists = list(fitness_fn(batch))
            if len(dists) != len(batch):
                raise ValueError(f'fitness_fn returned {len(dists)} values for {len(batch)} candidates')
            bad = [(b, d) for b, d in zip(batch, dists) if not math.isfinite(float(d))]
            if bad:
                raise FloatingPointError(f'fitness of {bad[0][0]} is {bad[0][1]}')
            write([{'config': list(b.config), 'macs': int(b.macs), 'dist': float(d)} for b, d in zip(batch, dists)])

        batch: list = []
        for config in todo:
            c = space.candidate(config)
            if c.macs > budget:
                write([{'config': list(config), 'macs': int(c.macs), 'dist': None}])
                continue
            batch.append(c)
            if len(batch) == chunk:
                score(batch)
                batch = []
        if batch:
            score(batch)
    return [done[tuple(configs[i])] for i in order]


def merge_brute_force(paths: Sequence[str], space, budget: int, *, partial: bool = False) -> SearchResult:
    """The best configuration within ``budget`` over every shard's progress file (``paths``).

    Every shard of one search must be there and complete, else ValueError names what is
    missing (``partial``: merge what there is, e.g. to look at a search still running).
    Configurations recorded over the budget of their run but within ``budget`` are not scored: an
    error, unless ``partial``.
    """
    budget = int(budget)
    headers, records = [], {}
    for p in paths:
        h, rows = _read_records(p)
        headers.append((p, h))
        for r in rows:
            if r['dist'] is not None or tuple(r['config']) not in records:
                records[tuple(r['config'])] = r
    if not headers:
        raise ValueError('merge: no progress files')
    first = headers[0][1]
    for p, h in headers:
        for k in ('fitness', 'seed', 'num_shards', 'space_size'):
            if h[k] != first[k]:
                raise ValueError(f'merge: {p} has {k}={h[k]!r}, {headers[0][0]} {first[k]!r}: not one search')
    problems = []
    if not partial:
        shards = {h['shard'] for _, h in headers}
        missing = sorted(set(range(first['num_shards'])) - shards)
        if missing:
            problems.append(f'shards {missing} of {first["num_shards"]} have no progress file')
        if len(records) < first['space_size'] and not missing:
            problems.append(f'{len(records)} of {first["space_size"]} configurations recorded: a shard is '
                            'still running or was stopped; run it again to finish')
        unscored = [r for r in records.values() if r['dist'] is None and r['macs'] <= budget]
        if unscored:
            problems.append(f'{len(unscored)} configurations within {budget:,} MACs were skipped by a run of a '
                            'smaller budget; run the shards again with this budget')
        if problems:
            raise ValueError(f'merge: {"; ".join(problems)} (or merge what there is with partial=True)')
    scored = [ConfigCandidate(tuple(r['config']), int(r['macs']), float(r['dist']))
              for r in records.values() if r['dist'] is not None and r['macs'] <= budget]
    if not scored:
        raise ValueError(f'merge: no configuration within {budget:,} MACs is scored yet')
    scored = _sort(scored)
    return SearchResult(budget, scored[0], [scored], scored, pareto_frontier(scored))


def best_under(candidates: Mapping[str, C], budget: int) -> Optional[tuple[str, C]]:
    """The lowest-distance ``(label, candidate)`` within ``budget`` MACs, or None."""
    fits = [(label, c) for label, c in candidates.items() if c.macs <= budget]
    return min(fits, key=lambda lc: (lc[1].dist, lc[1].macs)) if fits else None


def to_json(results: Mapping[str, Any]) -> dict:
    """``{name: candidate.to_json()}`` of each result's best candidate (or of each candidate)."""
    return {name: (r.best if isinstance(r, SearchResult) else r).to_json() for name, r in results.items()}


def save_json(path: str, results: Mapping[str, Any]) -> dict:
    data = to_json(results)
    with open(path, 'w') as f:
        json.dump(data, f, indent=4, sort_keys=True)
    return data


def plot_points(path: str, searched: Mapping[str, Any], baseline: Mapping[str, Any], *,
                series: Optional[str] = None, baseline_label: str = 'baseline', title: Optional[str] = None,
                ylabel: str = 'distance') -> str:
    """Writes a PNG of distance vs MACs: the ``baseline`` points as lines through increasing MACs
    (one line per value of the field ``series``, if given) and the ``searched`` ones (stars,
    named, tagged ``@value`` of ``series``). Points are candidates or their JSON dicts. Uses
    matplotlib's Agg canvas directly, so no global backend is changed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def field(c, name):
        return c[name] if isinstance(c, Mapping) else getattr(c, name)

    def point(c):
        return field(c, 'macs'), field(c, 'dist'), None if series is None else field(c, series)

    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lines: dict[Any, list[tuple[float, float]]] = {}
    for c in baseline.values():
        m, d, s = point(c)
        lines.setdefault(s, []).append((m, d))
    for s in sorted(lines, reverse=True) if series is not None else lines:
        pts = sorted(lines[s])
        label = baseline_label if series is None else f'{baseline_label} @{s}'
        ax.plot([p[0] for p in pts], [p[1] for p in pts], 'o-', label=label, alpha=0.8)
    if searched:
        pts = [(name, *point(c)) for name, c in searched.items()]
        ax.plot([p[1] for p in pts], [p[2] for p in pts], '*', color='crimson', markersize=14, label='searched',
                linestyle='none')
        for name, m, d, s in pts:
            ax.annotate(name if series is None else f'{name}@{s}', (m, d), textcoords='offset points',
                        xytext=(5, 5), fontsize=8)
    ax.set_xscale('log')
    ax.set_xlabel('MACs')
    ax.set_ylabel(ylabel)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, format='png')
    return path


# ---------------------------------------------------------------------- Anycost: widths x resolution


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One sub-generator: full-length ``channels`` (one per elastic layer), ``res``, its MACs and
    distance to the full generator (NaN until scored)."""
    channels: tuple[int, ...]
    res: int
    macs: int
    dist: float = math.nan

    @property
    def key(self) -> tuple:
        """The sub-network's identity: the widths of the layers that run, and the resolution."""
        return tuple(self.channels[:2 * (int(self.res).bit_length() - 2)]), self.res  # 2 layers per res from 4

    @property
    def order(self) -> tuple:
        return self.res, self.channels

    def scored(self, dist: float) -> 'Candidate':
        return dataclasses.replace(self, dist=float(dist))

    def to_json(self) -> dict:
        return {'channels': [int(c) for c in self.channels], 'res': int(self.res), 'macs': int(self.macs),
                'dist': float(self.dist)}


class AnycostSpace:
    """Width choices per layer and output resolutions of one (full, not exported) generator."""

    def __init__(self, gen: Generator, resolutions: Optional[Sequence[int]] = None, min_channel: int = 8,
                 divided_by: int = 1):
        if gen.widths is not None or gen.output_res is not None:
            raise ValueError('search the full generator, not an exported sub-generator')
        self.gen = gen
        self.full = list(gen.full_channels())
        flex = elastic.FlexibleSpace(gen.resolution, self.full, min_channel, divided_by)
        self.choices = [sorted({int(flex.widths[l, k]) for k in range(len(elastic.RATIOS)) if flex.valid[l, k]})
                        for l in range(len(self.full))]
        explicit = resolutions is not None
        resolutions = elastic.default_resolutions(gen) if resolutions is None else resolutions
        for r in resolutions:
            gen.check_target_res(r)
        if explicit:
            elastic.warn_untrained(gen, resolutions)
        if not resolutions:
            raise ValueError('resolutions is empty')
        self.resolutions = tuple(sorted({int(r) for r in resolutions}))

    def candidate(self, channels: Sequence[int], res: int) -> Candidate:
        channels = tuple(int(c) for c in channels)
        return Candidate(channels, int(res), macs.generator_macs(self.gen, channels=channels, target_res=res))

    def smallest(self, res: int) -> Candidate:
        return self.candidate([c[0] for c in self.choices], res)

    def uniform(self, ratio: float, res: int) -> Candidate:
        """The uniform sub-generator at ``ratio`` (as ``channel_ratio`` computes it) and ``res``."""
        return self.candidate(elastic.uniform_channels(self.gen.resolution, ratio, self.full, self.gen.channel_max),
                              res)

    # -------------------------------------------------------------- the Space protocol

    def feasible(self, budget: int) -> 'AnycostSpace':
        """The space without the resolutions whose smallest candidate costs more than ``budget``."""
        cheapest = {r: self.smallest(r).macs for r in self.resolutions}
        fits = tuple(r for r in self.resolutions if cheapest[r] <= budget)
        if not fits:
            raise ValueError(f'budget {budget:,} MACs is below the cheapest candidate at every resolution '
                             f'({", ".join(f"{r}: {m:,}" for r, m in cheapest.items())})')
        out = copy.copy(self)
        out.resolutions = fits
        return out

    def seeds(self, budget: int) -> list[Candidate]:
        """Every uniform configuration (ratio x resolution)."""
        return [self.uniform(ratio, r) for r in self.resolutions for ratio in elastic.RATIOS]

    def cheapest(self) -> Candidate:
        return min((self.smallest(r) for r in self.resolutions), key=lambda c: c.macs)

    def random(self, rng: np.random.Generator) -> Candidate:
        res = self.resolutions[rng.integers(len(self.resolutions))]
        return self.candidate([c[rng.integers(len(c))] for c in self.choices], res)

    def mutate(self, parent: Candidate, rng: np.random.Generator, prob: float) -> Candidate:
        channels = [c[rng.integers(len(c))] if rng.random() < prob else old
                    for old, c in zip(parent.channels, self.choices)]
        res = self.resolutions[rng.integers(len(self.resolutions))] if rng.random() < prob else parent.res
        return self.candidate(channels, res)

    def crossover(self, a: Candidate, b: Candidate, rng: np.random.Generator) -> Candidate:
        pick = rng.random(len(self.full) + 1) < 0.5
        channels = [x if p else y for x, y, p in zip(a.channels, b.channels, pick)]
        return self.candidate(channels, a.res if pick[-1] else b.res)


SearchSpace = AnycostSpace  # the name launch/search.py and the tests use


def consistency_fitness(evaluator, metric: str = 'lpips', progress: bool = False) -> FitnessFn:
    """Fitness from a :class:`~anycost_jax.eval.consistency.ConsistencyEvaluator`: 'lpips', 'mse'
    or 'lpips+mse' against the full generator on the evaluator's held-out z (``progress``: a bar
    over its sample batches)."""
    if metric not in METRICS:
        raise ValueError(f'metric={metric!r} is not supported; expected one of {METRICS}')
    if 'lpips' in metric and not evaluator.use_lpips:
        raise ValueError(f'metric={metric!r} needs an evaluator built with use_lpips=True')

    def fitness(candidates: Sequence[Candidate]) -> list[float]:
        scores = evaluator.evaluate([(c.channels, c.res) for c in candidates], progress=progress)
        return [sum(s[m] for m in metric.split('+')) for s in scores]
    return fitness


def uniform_points(space: AnycostSpace, fitness_fn: FitnessFn, ratios: Sequence[float] = elastic.RATIOS,
                   resolutions: Optional[Sequence[int]] = None, cache: Optional[dict] = None) -> dict[str, Candidate]:
    """Every uniform ratio x resolution (default: the space's resolutions), scored: ``{'0.5x@256': ...}``."""
    resolutions = space.resolutions if resolutions is None else resolutions
    labels = {elastic.label(r, res): space.uniform(r, res) for res in resolutions for r in ratios}
    scored = _Scorer(fitness_fn, cache)(list(labels.values()))
    return dict(zip(labels, scored))


def plot_tradeoff(path: str, searched: Mapping[str, Candidate | dict], uniform: Mapping[str, Candidate | dict],
                  title: Optional[str] = None, ylabel: str = 'distance to the full generator') -> str:
    """:func:`plot_points` of searched sub-generators against the uniform ones, one line per resolution."""
    return plot_points(path, searched, uniform, series='res', baseline_label='uniform', title=title, ylabel=ylabel)


# ---------------------------------------------------------------------- image-to-image: ResNet supernets


@dataclasses.dataclass(frozen=True)
class ConfigCandidate:
    """One sub-network of a ResNet supernet: its 8 config entries (GAN Compression's config string),
    its MACs and distance (NaN until scored)."""
    config: tuple[int, ...]
    macs: int
    dist: float = math.nan

    @property
    def config_str(self) -> str:
        return '_'.join(str(c) for c in self.config)

    @property
    def key(self) -> tuple:
        return self.config

    @property
    def order(self) -> tuple:
        return self.config

    def scored(self, dist: float) -> 'ConfigCandidate':
        return dataclasses.replace(self, dist=float(dist))

    def to_json(self) -> dict:
        return {'config_str': self.config_str, 'macs': int(self.macs), 'dist': float(self.dist)}


class ResnetSpace:
    """GAN Compression's search space of a ResNet / MobileNet-ResNet supernet (``evolution_search.py``):
    each of the 8 config entries takes one of its candidates (:func:`anycost_jax.elastic.img2img.search_space`:
    a name such as 'channels-48', or the lists). MACs are :func:`anycost_jax.macs.count_macs` of the
    supernet at the config on one ``image_size`` input (the papers' torchprofile convention by
    default), counted once per config. Random candidates draw each entry uniformly, or with the
    original's weights (``weighted_sample`` > 1, as its first generation); a mutant redraws each
    entry with probability ``mutate_prob``; crossover takes each entry from either parent. Seeds:
    the largest and smallest configs and every uniform one (one width in every entry), so the
    search is never worse than those within the budget (the original starts from random ones).
    """

    def __init__(self, gen, space='channels-48', image_size=256, weighted_sample: float = 1.,
                 weight_strategy: str = 'arithmetic', convention: str = 'torchprofile-0.0.1'):
        import jax
        import jax.numpy as jnp
        from anycost_jax.elastic import img2img as rules
        if gen.widths is not None:
            raise ValueError('search the supernet (full widths), not an exported sub-network')
        self.gen, self.choices = gen, rules.search_space(space)
        try:
            rules.resolve_resnet_config(tuple(max(e) for e in self.choices), gen.full_widths)
        except ValueError as e:
            raise ValueError(f'search space {space!r} does not fit the supernet (ngf {gen.ngf}): {e}') from None
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.input = jax.ShapeDtypeStruct((1, h, w, gen.input_nc), jnp.float32)
        self.weights = [rules.sampling_weights(len(e), weighted_sample, weight_strategy) for e in self.choices]
        self.convention = convention
        self._macs: dict = {}

    def macs_of(self, config: Sequence[int]) -> int:
        config = tuple(int(c) for c in config)
        if config not in self._macs:
            self._macs[config] = macs.count_macs(self.gen, self.input, convention=self.convention,
                                                 config='_'.join(map(str, config)))
        return self._macs[config]

    def candidate(self, config: Sequence[int]) -> ConfigCandidate:
        config = tuple(int(c) for c in config)
        return ConfigCandidate(config, self.macs_of(config))

    def uniform_widths(self) -> list[int]:
        """The widths every entry offers (each a uniform config)."""
        return sorted(set.intersection(*(set(e) for e in self.choices)))

    def uniform(self, width: int) -> ConfigCandidate:
        if width not in self.uniform_widths():
            raise ValueError(f'width {width} is not offered by every entry; uniform widths: {self.uniform_widths()}')
        return self.candidate((width,) * len(self.choices))

    def enumerate(self) -> Iterable[tuple[int, ...]]:
        """Every configuration, in a fixed order (for :func:`brute_force`)."""
        return itertools.product(*self.choices)

    def parse(self, config_str: str) -> ConfigCandidate:
        """The candidate of a config string such as '48_32_40_40_32_48_16_24'; ValueError, naming the entry,
        for one outside the space."""
        try:
            config = tuple(int(c) for c in str(config_str).split('_'))
        except ValueError:
            config = ()
        if len(config) != len(self.choices):
            raise ValueError(f'config {config_str!r} is not {len(self.choices)} widths joined by "_", '
                             f'e.g. {self.cheapest().config_str!r}')
        for i, (c, entry) in enumerate(zip(config, self.choices)):
            if c not in entry:
                raise ValueError(f'config {config_str!r} is outside the search space: entry {i} is {c}, the space '
                                 f'offers {list(entry)} there')
        return self.candidate(config)

    # -------------------------------------------------------------- the Space protocol

    def feasible(self, budget: int) -> 'ResnetSpace':
        """The space itself; a budget below its smallest config fails, naming that config's MACs."""
        small = self.cheapest()
        if small.macs > budget:
            raise ValueError(f'budget {budget:,} MACs is below the smallest configuration {small.config_str} '
                             f'({small.macs:,} MACs)')
        return self

    def seeds(self, budget: int) -> list[ConfigCandidate]:
        del budget  # the engine drops those over it
        largest = self.candidate(tuple(max(e) for e in self.choices))
        return [largest, *(self.uniform(w) for w in self.uniform_widths()[::-1]), self.cheapest()]

    def cheapest(self) -> ConfigCandidate:
        return self.candidate(tuple(min(e) for e in self.choices))

    def random(self, rng: np.random.Generator) -> ConfigCandidate:
        def pick(entry, weights):
            p = None if weights is None else np.asarray(weights) / np.sum(weights)
            return entry[rng.choice(len(entry), p=p)]
        return self.candidate([pick(e, w) for e, w in zip(self.choices, self.weights)])

    def mutate(self, parent: ConfigCandidate, rng: np.random.Generator, prob: float) -> ConfigCandidate:
        return self.candidate([e[rng.integers(len(e))] if rng.random() < prob else old
                               for old, e in zip(parent.config, self.choices)])

    def crossover(self, a: ConfigCandidate, b: ConfigCandidate, rng: np.random.Generator) -> ConfigCandidate:
        pick = rng.random(len(self.choices)) < 0.5
        return self.candidate([x if p else y for x, y, p in zip(a.config, b.config, pick)])
