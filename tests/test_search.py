"""Evolutionary search: budgets, determinism, one compile per resolution, the JSON and the plot,
against uniform configurations on a synthetic fitness, and launch/search.py end to end."""
import dataclasses
import itertools
import json
import math
import os
import subprocess
import sys

import jax
import pytest
from PIL import Image

from anycost_jax import convert, elastic, macs, search
from anycost_jax.eval.consistency import ConsistencyEvaluator
from anycost_jax.models import Generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = Generator(16, style_dim=16, n_mlp=1, channel_multiplier=1 / 64)  # widths 64, 64, 32, 32, 16, 16
FULL_MACS = macs.generator_macs(GEN)
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(scope='module')
def space():
    return search.SearchSpace(GEN)


def synthetic_fitness(candidates):
    """A smooth stand-in for LPIPS: width lost per layer, weighted toward the early layers, plus a
    penalty per halving of the resolution (layers above the resolution do not count)."""
    full = GEN.full_channels()
    out = []
    for c in candidates:
        n = 2 * (int(math.log2(c.res)) - 1)
        lost = sum((1 - ch / f) * (len(full) - l) for l, (ch, f) in enumerate(zip(c.channels[:n], full[:n])))
        out.append(lost / 10 + 0.3 * math.log2(16 // c.res))
    return out


def test_space_follows_the_flexible_channel_space(space):
    flex = elastic.FlexibleSpace(16, GEN.full_channels())
    for l, choices in enumerate(space.choices):
        assert choices == sorted({int(flex.widths[l, k]) for k in range(4) if flex.valid[l, k]})
    assert space.choices[-1] == [8, 12, 16]  # 0.25 * 16 = 4 is lifted to min_channel 8
    assert space.resolutions == (4, 8, 16)
    assert search.SearchSpace(GEN, [16, 8], divided_by=8).choices[-1] == [8, 16]


def test_every_candidate_fits_the_budget(space):
    budget = int(0.3 * FULL_MACS)
    result = search.evolve(space, budget, synthetic_fitness, population=12, iterations=4, seed=0)
    seen = [c for gen in result.history for c in gen] + result.evaluated + result.frontier + [result.best]
    uniform = [elastic.uniform_channels(16, r, GEN.full_channels()) for r in elastic.RATIOS]  # the seeds
    allowed = [set(choices) | {u[l] for u in uniform} for l, choices in enumerate(space.choices)]
    assert len(result.evaluated) > 12
    for c in seen:
        assert c.macs <= budget
        assert c.macs == macs.count_generator_macs(16, c.channels, 16, 1, c.res,
                                                   channel_multiplier=GEN.channel_multiplier)
        assert all(ch in a for ch, a in zip(c.channels, allowed))
    # Elitism: the best sub-network survives to the last generation (layers above its resolution
    # do not run, so only its key has to match).
    assert result.best.key == result.history[-1][0].key and result.best.dist == result.history[-1][0].dist
    assert [c.macs for c in result.frontier] == sorted(c.macs for c in result.frontier)
    assert all(a.dist > b.dist for a, b in zip(result.frontier, result.frontier[1:]))


def test_search_is_deterministic_from_the_seed(space):
    kw = dict(population=8, iterations=3, seed_uniform=False)
    a = search.evolve(space, int(0.4 * FULL_MACS), synthetic_fitness, seed=3, **kw)
    b = search.evolve(space, int(0.4 * FULL_MACS), synthetic_fitness, seed=3, **kw)
    c = search.evolve(space, int(0.4 * FULL_MACS), synthetic_fitness, seed=4, **kw)
    assert a.history == b.history and a.best == b.best
    assert a.history != c.history


def test_search_beats_the_best_uniform_config_under_the_budget(space):
    uniform = search.uniform_points(space, synthetic_fitness)
    assert len(uniform) == 4 * 3
    for fraction in (0.5, 0.25, 0.1):
        budget = int(fraction * FULL_MACS)
        label, base = search.best_under(uniform, budget)
        # Without the uniform configs in the initial population: evolution alone must get there.
        result = search.evolve(space, budget, synthetic_fitness, population=16, iterations=8, seed=0,
                               seed_uniform=False)
        assert result.best.macs <= budget
        assert result.best.dist <= base.dist, (fraction, label, base, result.best)
        # With the uniform seeds (the default) it holds by construction, whatever the fitness.
        inverted = lambda cs: [-d for d in synthetic_fitness(cs)]  # noqa: E731 rewards cutting widths
        seeded = search.evolve(space, budget, inverted, population=4, iterations=1, seed=0)
        assert seeded.best.dist <= search.best_under(search.uniform_points(space, inverted), budget)[1].dist


def test_budgets_too_small_are_reported(space):
    cheapest = space.smallest(4).macs
    with pytest.raises(ValueError, match='below the cheapest candidate'):
        search.evolve(space, cheapest - 1, synthetic_fitness, population=4, iterations=0)
    # Only the very smallest candidate fits at 16: random draws (1 in 2304) keep missing it.
    only16 = search.SearchSpace(GEN, [16])
    with pytest.raises(RuntimeError, match='no random candidate within the budget'):
        search.evolve(only16, only16.smallest(16).macs, synthetic_fitness, population=4, iterations=0,
                      seed_uniform=False, max_retries=5)


def test_budget_helpers():
    assert search.parse_budgets(['0.5', 2e6, '1e9'], 4_000_000) == [2_000_000, 2_000_000, 1_000_000_000]
    with pytest.raises(ValueError):
        search.parse_budgets(['-1'], 10)
    assert [search.budget_name(b) for b in (100.7e9, 101e9, 1.5e9, 2.49e6, 40e3, 512)] == \
        ['101G', '101G', '1.5G', '2.49M', '40K', '512']


def test_masked_evaluation_compiles_once_per_resolution_json_and_plot(tmp_path):
    variables = GEN.init_variables(jax.random.key(0))
    space = search.SearchSpace(GEN, [8, 16])
    ev = ConsistencyEvaluator(GEN, variables, n_samples=2, batch_size=2, eval_res=16, use_lpips=False)
    fitness = search.consistency_fitness(ev, 'mse')
    results = search.search(space, [int(0.6 * FULL_MACS), int(0.2 * FULL_MACS)], fitness, population=6,
                            iterations=2, seed=0)
    n_scored = len({c.key for r in results.values() for c in r.evaluated})
    assert n_scored > 6
    assert ev.trace_counts == {8: 1, 16: 1}  # every width as data: one program per resolution

    data = search.save_json(str(tmp_path / 'configs.json'), results)
    with open(tmp_path / 'configs.json') as f:
        assert json.load(f) == data
    assert list(data) == ['2.98M', '995K']
    for name, entry in data.items():
        assert sorted(entry) == ['channels', 'dist', 'macs', 'res']
        assert isinstance(entry['res'], int) and isinstance(entry['macs'], int) and isinstance(entry['dist'], float)
        assert len(entry['channels']) == 6 and all(isinstance(c, int) for c in entry['channels'])
        assert entry['macs'] == macs.generator_macs(GEN, channels=entry['channels'], target_res=entry['res'])
        assert entry['macs'] <= results[name].budget

    uniform = search.uniform_points(space, fitness)
    path = search.plot_tradeoff(str(tmp_path / 'tradeoff.png'), data, uniform)
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_MAGIC
    assert Image.open(path).size == (700, 450)


def test_launch_search_end_to_end(tmp_path):
    variables = GEN.init_variables(jax.random.key(1))
    convert.save_model(str(tmp_path / 'tiny'), GEN, variables)
    out, plot = tmp_path / 'configs.json', tmp_path / 'tradeoff.png'
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'launch', 'search.py'), f'--checkpoint={tmp_path / "tiny"}',
         '--budgets=0.5,1500000', '--population=4', '--iterations=1', '--n_samples=2', '--batch_size=2',
         '--resolutions=8,16', '--eval_res=16', '--metric=mse', f'--output={out}', f'--plot={plot}'],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert sorted(data) == ['1.5M', '2.49M']  # written with sorted keys, like the original's JSON
    for entry, budget in ((data['2.49M'], FULL_MACS // 2), (data['1.5M'], 1_500_000)):
        assert entry['macs'] <= budget and entry['res'] in (8, 16)
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert 'generation 1/1' in proc.stdout and 'best uniform within budget' in proc.stdout
    # Progress: a line before the first generation is scored (it compiles), then each one with an ETA.
    lines = proc.stdout.splitlines()
    first = next(i for i, l in enumerate(lines) if 'generation 0/1' in l)
    assert '[2.49M, budget 1/2] generation 0/1: ' in lines[first] and 'candidates to score' in lines[first]
    assert 'best mse' in lines[first + 1] and 'ETA' in lines[first + 1]
    assert all('ETA' in l for l in lines[first + 1:first + 4])  # the second budget's candidates are all cached
    # The table: name, budget, MACs, res, distance, best uniform label and distance, channels.
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.split()[:1] in
            (['2.49M'], ['1.5M'])}
    assert sorted(rows) == ['1.5M', '2.49M']
    for name, row in rows.items():
        assert float(row[4]) == pytest.approx(data[name]['dist'], abs=1e-5)
        assert float(row[4]) <= float(row[6])  # never worse than the best uniform config that fits


class _ToySpace:
    """A space with no generator: a width per layer from per-layer lists, MACs = the sum of widths."""

    @dataclasses.dataclass(frozen=True)
    class Point:
        widths: tuple
        macs: int
        dist: float = math.nan

        key = property(lambda self: self.widths)
        order = property(lambda self: self.widths)

        def scored(self, dist):
            return dataclasses.replace(self, dist=float(dist))

        def to_json(self):
            return {'config': '_'.join(map(str, self.widths)), 'macs': self.macs, 'dist': self.dist}

    choices = ([4, 8, 16], [4, 8, 16], [2, 4])

    def point(self, widths):
        return self.Point(tuple(widths), sum(widths))

    def feasible(self, budget):
        if self.cheapest().macs > budget:
            raise ValueError('nothing fits')
        return self

    def seeds(self, budget):
        return [self.point([c[k] for c in self.choices]) for k in (0, 1)]

    def cheapest(self):
        return self.point([c[0] for c in self.choices])

    def random(self, rng):
        return self.point([c[rng.integers(len(c))] for c in self.choices])

    def mutate(self, parent, rng, prob):
        return self.point([c[rng.integers(len(c))] if rng.random() < prob else w
                           for w, c in zip(parent.widths, self.choices)])

    def crossover(self, a, b, rng):
        return self.point([x if p else y for x, y, p in zip(a.widths, b.widths, rng.random(3) < 0.5)])


def test_the_engine_searches_any_space(tmp_path):
    space = _ToySpace()
    fitness = lambda cs: [abs(c.widths[0] - 8) + abs(c.widths[1] - 16) - c.widths[2] for c in cs]  # noqa: E731
    results = search.search(space, [30], fitness, population=8, iterations=10, mutate_prob=0.5, seed=0)
    best = results['30'].best
    assert best.widths == (8, 16, 4) and best.macs == 28 and best.dist == -4
    assert search.save_json(str(tmp_path / 'toy.json'), results) == {'30': {'config': '8_16_4', 'macs': 28,
                                                                            'dist': -4.0}}
    with pytest.raises(ValueError, match='nothing fits'):
        search.evolve(space, 9, fitness)
    path = search.plot_points(str(tmp_path / 'toy.png'), {'30': best}, {'seed': space.seeds(30)[0].scored(1.)})
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_MAGIC


def test_the_engine_reports_every_generation_with_an_eta(monkeypatch):
    space = _ToySpace()
    clock = itertools.count(0, 2)  # every read of the clock: 2 s later
    monkeypatch.setattr(search.time, 'perf_counter', lambda: float(next(clock)))
    scored = []

    def fitness(cs):
        scored.append(len(cs))
        return [abs(c.widths[0] - 8) + abs(c.widths[1] - 16) - c.widths[2] for c in cs]
    reports = []
    search.evolve(space, 30, fitness, population=8, iterations=3, mutate_prob=0.5, seed=0, progress=reports.append)
    # Before and after each generation's scoring, in order, before the first score is known too.
    assert [(p.generation, p.population is None) for p in reports] == [(g, b) for g in range(4) for b in (True, False)]
    assert [p.to_score for p in reports[::2] if p.to_score] == scored  # the fitness is called for what is new
    assert reports[0].eta is None and reports[0].to_score == scored[0] and reports[0].iterations == 3
    assert all(p.eta is not None and p.eta >= 0 for p in reports[1:])
    assert reports[-1].eta == 0  # nothing left
    assert reports[1].elapsed > reports[0].elapsed and reports[1].population[0].dist == min(
        c.dist for c in reports[1].population)
    # The ETA: the time per candidate so far times the most the generations left can score (all but 2 parents).
    after0 = reports[1]
    assert after0.eta == pytest.approx(after0.elapsed / scored[0] * 3 * (8 - 2))
    assert 'generation 0/3: ' in reports[0].describe() and 'ETA' not in reports[0].describe()
    assert 'ETA ' in reports[2].describe()
    assert search.format_seconds(42) == '42s' and search.format_seconds(365) == '6m05s'
    assert search.format_seconds(7380) == '2h03m'
