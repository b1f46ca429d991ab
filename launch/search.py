r"""Searches sub-networks under MAC budgets: Anycost generators (--checkpoint) or a GAN Compression
supernet (--workdir).

Anycost (flexible widths x resolution of a StyleGAN2 generator):

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

GAN Compression (a ``supernet`` stage's workdir; anycost_jax.train.gan_compression_search):

  python launch/search.py --workdir=runs/h2z_supernet --budget=3e9                 # evolution
  python launch/search.py --workdir=runs/e2s_supernet --budget=4.9e9 --method=brute_force \
      --num_shards=4 --shard=0          # one job per shard; the last to finish merges (or --merge)
  python launch/search.py --workdir=runs/h2z_supernet --config_str=16_16_24_16_32_24_16_16  # export one

--measure is the fitness (a gan_compression_search.FITNESS name, default LPIPS to the teacher), on
--split ('holdout': the training examples the supernet stage held out). The found sub-network is
exported to --output (default WORKDIR/searched/<budget>) as a model directory, its gan-compression
``.pth`` and a JSON; the search's progress is kept under WORKDIR/searched, so a search started
again goes on where it stopped (evolution: to the same result).
"""
import os
import sys

from absl import app, flags

from anycost_jax import cli, convert, macs, search
from anycost_jax.eval.consistency import ConsistencyEvaluator

flags.DEFINE_string('checkpoint', None, f'Anycost: the generator: {cli.GENERATOR_SOURCES}.')
flags.DEFINE_list('budgets', None, 'Anycost: MAC budgets, e.g. "101e9,58e9"; values <= 1 are fractions of the full '
                  'MACs.')
flags.DEFINE_string('workdir', None, "GAN Compression: a gan_compression 'supernet' stage's workdir.")
flags.DEFINE_float('budget', None, 'GAN Compression: the MAC budget at the supernet\'s resolution, e.g. 3e9.')
flags.DEFINE_enum('method', 'evolution', ['evolution', 'brute_force'], 'GAN Compression: the search.')
flags.DEFINE_string('measure', 'teacher/lpips', 'GAN Compression: the fitness (gan_compression_search.FITNESS).')
flags.DEFINE_string('split', 'holdout', "GAN Compression: 'holdout' (the supernet's held-out training examples) "
                    'or a split of the dataset.')
flags.DEFINE_string('search_space', None, 'GAN Compression: a narrower space than the trained one.')
flags.DEFINE_integer('num_shards', None, 'GAN Compression brute force: shards (default: one per JAX process).')
flags.DEFINE_integer('shard', None, 'GAN Compression brute force: this job\'s shard (with --num_shards).')
flags.DEFINE_bool('merge', False, 'GAN Compression brute force: only merge the shards\' results and export.')
flags.DEFINE_string('config_str', None, 'GAN Compression: export this configuration (no search).')
flags.DEFINE_integer('population', None, 'Population size (default: Anycost 50, GAN Compression 100).')
flags.DEFINE_integer('iterations', None, 'Generations after the initial population (default: 20, 500).')
flags.DEFINE_float('parent_ratio', 0.25, 'Fraction of the population kept as parents.')
flags.DEFINE_float('mutation_ratio', 0.5, 'Fraction of the population made by mutation (the rest: crossover).')
flags.DEFINE_float('mutate_prob', None, 'Probability of redrawing each layer width (and the resolution) '
                   '(default: 0.1, 0.2).')
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
flags.DEFINE_string('output', None, 'Anycost: JSON file of the best configuration per budget (default '
                    'searched_configs.json); GAN Compression: the model directory of the found sub-network.')
flags.DEFINE_string('plot', None, 'Optional PNG of distance vs MACs (searched and uniform configurations).')
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if FLAGS.workdir and FLAGS.checkpoint:
        raise app.UsageError('pass --checkpoint (an Anycost generator) or --workdir (a GAN Compression supernet), '
                             'not both')
    if FLAGS.workdir:
        return search_supernet()
    if not FLAGS.checkpoint:
        raise app.UsageError(f'--checkpoint (Anycost: {cli.GENERATOR_SOURCES}) or --workdir (a GAN Compression '
                             'supernet stage) is required')
    FLAGS.output = FLAGS.output or 'searched_configs.json'
    for name, default in (('population', 50), ('iterations', 20), ('mutate_prob', 0.1)):
        if FLAGS[name].value is None:
            FLAGS[name].value = default
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


def search_supernet():
    from anycost_jax.train import gan_compression_search as gcs
    if FLAGS.config_str:
        out = gcs.export_config(FLAGS.workdir, FLAGS.config_str, FLAGS.output)
        print(f'exported {FLAGS.config_str} to {out} (+ .pth, .json)')
        return
    if FLAGS.budget is None:
        raise app.UsageError('--budget is required with --workdir, e.g. --budget=3e9 (MACs)')
    if (FLAGS.shard is None) != (FLAGS.num_shards is None):
        raise app.UsageError('--shard and --num_shards go together (one job per shard)')
    kw = {k: FLAGS[k].value for k in ('population', 'iterations', 'mutate_prob') if FLAGS[k].value is not None}

    def report(*args):
        if isinstance(args[0], search.Progress):
            p = args[0]
            best = '' if p.population is None else f', best {p.population[0].config_str} {p.population[0].dist:.5f}'
            print(f'{p.describe()}{best}', flush=True)
        else:
            print(f'brute force: {args[0]}/{args[1]} configurations of this shard', flush=True)
    result, out = gcs.search_supernet(
        FLAGS.workdir, FLAGS.budget, method=FLAGS.method, measure=FLAGS.measure, split=FLAGS.split,
        output=FLAGS.output, seed=FLAGS.seed, search_space=FLAGS.search_space, num_shards=FLAGS.num_shards,
        shard=FLAGS.shard, merge=FLAGS.merge, progress=report, parent_ratio=FLAGS.parent_ratio,
        mutation_ratio=FLAGS.mutation_ratio, **(kw if FLAGS.method == 'evolution' else {}))
    if result is None:
        print(f'shard {FLAGS.shard} of {FLAGS.num_shards} done; the others are not: run them, then this with --merge')
        return
    b = result.best
    print(f'best within {FLAGS.budget:,.0f} MACs: {b.config_str}, {b.macs:,} MACs, {FLAGS.measure} {b.dist:.5f}')
    print(f'wrote {out} (model directory), {out}.pth, {out}.json')


if __name__ == '__main__':
    cli.run(main, outputs=('output', 'plot'))
