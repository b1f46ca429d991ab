"""The search engine's resumable parts: evolution checkpointed every generation (a search killed
midway resumes to the same result) and brute force (enumerate, shuffle, shard, resume, merge)."""
import itertools
import json

import numpy as np
import pytest

from anycost_jax import search

CHOICES = ((8, 6, 4), (8, 6, 4), (8, 4), (8, 6, 4, 2))  # 72 configurations


class _ConfigSpace:
    """A ResNet-like space of 4 entries whose MACs are their sum: fast, no network."""
    choices = CHOICES

    def candidate(self, config):
        config = tuple(int(c) for c in config)
        return search.ConfigCandidate(config, sum(config))

    def enumerate(self):
        return itertools.product(*self.choices)

    def feasible(self, budget):
        if self.cheapest().macs > budget:
            raise ValueError(f'budget {budget} is below the smallest configuration')
        return self

    def seeds(self, budget):
        return [self.candidate([max(e) for e in self.choices]), self.cheapest()]

    def cheapest(self):
        return self.candidate([min(e) for e in self.choices])

    def random(self, rng):
        return self.candidate([e[rng.integers(len(e))] for e in self.choices])

    def mutate(self, parent, rng, prob):
        return self.candidate([e[rng.integers(len(e))] if rng.random() < prob else c
                               for c, e in zip(parent.config, self.choices)])

    def crossover(self, a, b, rng):
        return self.candidate([x if p else y for x, y, p in zip(a.config, b.config, rng.random(4) < .5)])


def _fitness(candidates):
    # a landscape with its optimum inside the space, not at a corner
    return [float(abs(c[0] - 6) + 0.5 * abs(c[1] - 4) + 0.1 * c[2] - 0.2 * c[3]) for c in (x.config for x in candidates)]


class _Killed(Exception):
    pass


def _killing(after_calls):
    calls = []

    def fitness(candidates):
        if len(calls) == after_calls:
            raise _Killed
        calls.append(len(candidates))
        return _fitness(candidates)
    return fitness, calls


KW = dict(population=8, iterations=6, mutate_prob=0.5, seed=3)


def test_evolution_killed_midway_resumes_to_the_same_result(tmp_path):
    space = _ConfigSpace()
    straight = search.evolve(space, 22, _fitness, **KW)
    path = str(tmp_path / 'evo.pkl')
    fitness, calls = _killing(3)  # dies while scoring generation 3 (or later, if one had nothing new)
    with pytest.raises(_Killed):
        search.evolve(space, 22, fitness, state_path=path, **KW)
    assert len(calls) == 3
    again, calls2 = _killing(-1)
    resumed = search.evolve(space, 22, again, state_path=path, **KW)
    assert resumed.best == straight.best
    assert [[c.config for c in g] for g in resumed.history] == [[c.config for c in g] for g in straight.history]
    assert [c.config for c in resumed.evaluated] == [c.config for c in straight.evaluated]
    # what was scored before the kill is not scored again: the resumed run scored only the rest
    assert sum(calls) + sum(calls2) == len(straight.evaluated)
    # a finished search returns its result without scoring anything
    never, calls3 = _killing(0)
    assert search.evolve(space, 22, never, state_path=path, **KW).best == straight.best
    with pytest.raises(ValueError, match='other settings \\(budget: 22 there, 23 now\\)'):
        search.evolve(space, 23, _fitness, state_path=path, **KW)


def test_brute_force_shards_resume_and_merge_to_the_exhaustive_best(tmp_path):
    space = _ConfigSpace()
    everything = [space.candidate(c) for c in space.enumerate()]
    fits = [c.scored(d) for c, d in zip(everything, _fitness(everything)) if c.macs <= 22]
    want = min(fits, key=lambda c: (c.dist, c.macs, c.config))
    paths = [str(tmp_path / f'shard-{i}-of-3.jsonl') for i in range(3)]
    # shard 1 is killed after its second chunk, then resumed: nothing is scored twice
    fitness, calls = _killing(2)
    with pytest.raises(_Killed):
        search.brute_force(space, 22, fitness, paths[1], shard=1, num_shards=3, seed=5, chunk=4)
    assert calls == [4, 4]
    with pytest.raises(ValueError, match='shards \\[0, 2\\] of 3 have no progress file'):
        search.merge_brute_force(paths[1:2], space, 22)
    again, calls2 = _killing(-1)
    rows1 = search.brute_force(space, 22, again, paths[1], shard=1, num_shards=3, seed=5, chunk=4)
    assert sum(calls) + sum(calls2) == sum(r['dist'] is not None for r in rows1)
    for i in (0, 2):
        search.brute_force(space, 22, _fitness, paths[i], shard=i, num_shards=3, seed=5, chunk=4)
    shards = [set(map(tuple, (json.loads(l)['config'] for l in open(p).read().splitlines()[1:]))) for p in paths]
    assert sum(map(len, shards)) == len(everything) == len(set.union(*shards))  # a partition of the space
    assert len(shards[0]) == 24 and shards[0] != set(everything[:24])  # shuffled before the split
    result = search.merge_brute_force(paths, space, 22)
    assert (result.best.config, result.best.dist) == (want.config, want.dist)
    assert len(result.evaluated) == len(fits)
    # a torn last line (a kill while writing) is dropped and the configuration scored again
    with open(paths[0], 'a') as f:
        f.write('{"config": [8, 8')
    n_before = len(open(paths[0]).read().splitlines())
    search.brute_force(space, 22, _killing(0)[0], paths[0], shard=0, num_shards=3, seed=5)
    assert len(open(paths[0]).read().splitlines()) == n_before - 1
    # a larger budget scores only what it newly admits, then merges
    fitness, calls = _killing(-1)
    for i in range(3):
        search.brute_force(space, 26, fitness, paths[i], shard=i, num_shards=3, seed=5, chunk=100)
    assert sum(calls) == sum(c.macs in (23, 24, 25, 26) for c in everything)
    assert search.merge_brute_force(paths, space, 26).best.macs <= 26
    with pytest.raises(ValueError, match='configurations within 30 MACs were skipped by a run of a smaller budget'):
        search.merge_brute_force(paths, space, 30)
    with pytest.raises(ValueError, match='records another brute-force search \\(seed: 5 there, 6 now\\)'):
        search.brute_force(space, 22, _fitness, paths[0], shard=0, num_shards=3, seed=6)
    with pytest.raises(ValueError, match='shard 3 is not in \\[0, 3\\)'):
        search.brute_force(space, 22, _fitness, str(tmp_path / 'x.jsonl'), shard=3, num_shards=3)
