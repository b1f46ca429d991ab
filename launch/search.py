r"""Evolutionary search of flexible sub-generators under MAC budgets.

  python launch/search.py --checkpoint=anycost-ffhq-config-f-flexible.pt \
      --budgets=101e9,58e9,15e9 --output=configs.json --plot=tradeoff.png
  python launch/search.py --checkpoint=model_dir --budgets=0.5,0.25   # fractions of the full MACs

For every budget, evolves per-layer widths and an output resolution (see anycost_jax.search)
scored by their distance to the full generator (LPIPS-VGG by default, both images at
--eval_res) on --n_samples held-out z, and writes the best configuration of each budget as
``{name: {"channels", "res", "macs", "dist"}}`` (the original's assets/evolve_configs format).
Also scores every uniform ratio x resolution on the same z: they are printed next to the
searched ones and drawn with them by --plot. Every generation is reported before and after it is
scored, with the best candidate so far and an ETA for the budget.
"""
import os
import sys

from absl import app, flags

from anycost_jax import cli, convert, macs, search
from anycost_jax.eval.consistency import ConsistencyEvaluator

flags.DEFINE_string('checkpoint', None, f'The generator: {cli.GENERATOR_SOURCES}.')
flags.DEFINE_list('budgets', None, 'MAC budgets, e.g. "101e9,58e9"; values <= 1 are fractions of the full MACs.')
flags.DEFINE_integer('population', 50, 'Population size.')
flags.DEFINE_integer('iterations', 20, 'Generations after the initial population.')
flags.DEFINE_float('parent_ratio', 0.25, 'Fraction of the population kept as parents.')
flags.DEFINE_float('mutation_ratio', 0.5, 'Fraction of the population made by mutation (the rest: crossover).')
flags.DEFINE_float('mutate_prob', 0.1, 'Probability of redrawing each layer width (and the resolution).')
flags.DEFINE_integer('max_retries', 1000, 'Draws allowed per candidate before giving up on the budget.')
flags.DEFINE_bool('seed_uniform', True, 'Start from the uniform configurations that fit the budget.')
flags.DEFINE_list('resolutions', None, 'Output resolutions searched (default: the trained ones; the four highest '
                  'for a generator that does not record them).')
flags.DEFINE_integer('min_channel', 8, 'Smallest width of a layer.')
flags.DEFINE_integer('divided_by', 1, 'Widths are rounded up to a multiple of this.')
flags.DEFINE_enum('metric', 'lpips', search.METRICS, 'Distance to the full generator.')
flags.DEFINE_integer('n_samples', 200, 'Held-out z the distance averages over.')
flags.DEFINE_integer('batch_size', 16, 'Images per generator call.')
flags.DEFINE_integer('eval_res', 256, 'Both images are resized to this resolution before comparing.')
flags.DEFINE_integer('seed', 0, 'Seeds the evolution and the held-out z.')
flags.DEFINE_string('output', 'searched_configs.json', 'JSON file of the best configuration per budget.')
flags.DEFINE_string('plot', None, 'Optional PNG of distance vs MACs (searched and uniform configurations).')
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not FLAGS.checkpoint:
        raise app.UsageError(f'--checkpoint is required ({cli.GENERATOR_SOURCES})')
    if not FLAGS.budgets:
        raise app.UsageError('--budgets is required, e.g. --budgets=101e9,58e9 or --budgets=0.5,0.25')
    gen, variables = convert.load_generator(FLAGS.checkpoint)
    space = search.SearchSpace(gen, [int(r) for r in FLAGS.resolutions] if FLAGS.resolutions else None,
                               FLAGS.min_channel, FLAGS.divided_by)
    full_macs = macs.generator_macs(gen)
    try:
        budgets = search.parse_budgets(FLAGS.budgets, full_macs)
    except ValueError as e:
        raise cli.UserError(f'--budgets={",".join(FLAGS.budgets)}: {e}') from None
    names = [search.budget_name(b) for b in budgets]
    if len(set(names)) != len(names):
        raise cli.UserError(f'--budgets={",".join(FLAGS.budgets)}: two budgets are both named '
                            f'{sorted(n for n in names if names.count(n) > 1)[0]}; pass distinct budgets')
    for budget in budgets:  # a budget that nothing fits fails now, not after the searches before it
        space.feasible(budget)
    print(f'generator: resolution {gen.resolution}, widths {gen.full_channels()}, {full_macs / 1e9:.3f} GMACs; '
          f'searching resolutions {list(space.resolutions)}, widths per layer {space.choices}')

    evaluator = ConsistencyEvaluator(gen, variables, FLAGS.n_samples, FLAGS.batch_size, FLAGS.seed,
                                     FLAGS.eval_res, use_lpips='lpips' in FLAGS.metric)
    # A bar over the sample batches where someone watches: the first generation (it compiles) can take minutes.
    fitness = search.consistency_fitness(evaluator, FLAGS.metric, progress=sys.stderr.isatty())
    cache: dict = {}
    results = {}
    for i, (name, budget) in enumerate(zip(names, budgets)):
        def report(p: search.Progress, tag=f'[{name}, budget {i + 1}/{len(budgets)}]'):
            if p.population is None:
                print(f'{tag} {p.describe()}', flush=True)
                return
            best = p.population[0]
            eta = f', ETA {search.format_seconds(p.eta)}' if p.eta is not None else ''
            print(f'{tag} generation {p.generation}/{p.iterations}: best {FLAGS.metric} {best.dist:.5f} '
                  f'({best.macs / 1e9:.4f} GMACs @{best.res}), {len(cache)} scored, '
                  f'{search.format_seconds(p.elapsed)}{eta}', flush=True)

        results[name] = search.evolve(
            space, budget, fitness, population=FLAGS.population, iterations=FLAGS.iterations,
            parent_ratio=FLAGS.parent_ratio, mutation_ratio=FLAGS.mutation_ratio, mutate_prob=FLAGS.mutate_prob,
            seed=FLAGS.seed, max_retries=FLAGS.max_retries, seed_uniform=FLAGS.seed_uniform, cache=cache,
            progress=report)

    print('scoring the uniform configurations', flush=True)
    uniform = search.uniform_points(space, fitness, cache=cache)
    print(f'\n{"name":>8} {"budget":>14} {"MACs":>14} {"res":>5} {FLAGS.metric:>10}   '
          f'{"best uniform within budget":>28}  channels')
    for name, r in results.items():
        b = r.best
        base = search.best_under(uniform, r.budget)
        base_txt = f'{base[0]} {base[1].dist:.5f}' if base else 'none'
        print(f'{name:>8} {r.budget:>14,} {b.macs:>14,} {b.res:>5} {b.dist:>10.5f}   {base_txt:>28}  '
              f'{list(b.channels)}')
    print('\nuniform configurations:')
    for label, c in uniform.items():
        print(f'{label:>12} {c.macs:>14,} {c.dist:>10.5f}')

    search.save_json(FLAGS.output, results)
    print(f'wrote {os.path.abspath(FLAGS.output)}')
    if FLAGS.plot:
        search.plot_tradeoff(FLAGS.plot, {n: r.best for n, r in results.items()}, uniform,
                             title=f'{gen.resolution}px generator: searched vs uniform', ylabel=FLAGS.metric)
        print(f'wrote {os.path.abspath(FLAGS.plot)}')


if __name__ == '__main__':
    cli.run(main, outputs=('output', 'plot'))
