r"""Renders the anycost grid and samples from a generator checkpoint.

  python launch/generate.py --checkpoint=anycost-ffhq-config-f.pt --outdir=out --seeds=0-3
  python launch/generate.py --checkpoint=runs/demo --outdir=out   # a training workdir
  python launch/generate.py --init_random --resolution=64 --outdir=out   # no checkpoint needed

Writes ``grid_seed{S}.png`` (rows: channel ratios 1, 0.75, 0.5, 0.25, labelled; columns: the resolutions
the generator was trained at; one z and the stored noise per grid) and ``sample_seed{S}.png`` for the chosen
sub-generator (``--channel_ratio`` or ``--channels``, ``--target_res``; enlarged to at least 128 px
unless ``--scale`` says otherwise), and prints each
configuration's MACs and jitted latency at the requested batch.
"""
import os

import jax
from absl import app, flags

from anycost_jax import cli, convert, elastic, render
from anycost_jax.models import Generator

flags.DEFINE_string('checkpoint', None, f'The generator: {cli.GENERATOR_SOURCES}.')
flags.DEFINE_bool('init_random', False, 'Use a randomly initialized generator instead of a checkpoint.')
flags.DEFINE_integer('resolution', 256, 'With --init_random: output resolution.')
flags.DEFINE_float('channel_multiplier', 2, 'With --init_random: channel multiplier.')
flags.DEFINE_integer('style_dim', 512, 'With --init_random: latent size.')
flags.DEFINE_integer('n_mlp', 8, 'With --init_random: mapping layers.')
flags.DEFINE_integer('init_seed', 0, 'With --init_random: parameter seed.')
flags.DEFINE_string('outdir', 'out', 'Where the PNGs go.')
flags.DEFINE_string('seeds', '0', 'Latent seeds: "0,3,5" or "0-7".')
flags.DEFINE_float('truncation', 1., 'Truncation toward the average w, in [0, 1] (1 = none).')
flags.DEFINE_float('channel_ratio', None, f'Uniform width of the sample: one of {elastic.RATIOS}.')
flags.DEFINE_list('channels', None, 'Per-layer widths of the sample (flexible), comma separated.')
flags.DEFINE_integer('target_res', None, 'Output resolution of the sample (default: full).')
flags.DEFINE_integer('cell', 256, 'Grid cell size in pixels (cells are enlarged nearest neighbour).')
flags.DEFINE_integer('scale', 0, 'sample_seed*.png: ' + render.SCALE_HELP)
flags.DEFINE_bool('grid', True, 'Write the anycost grid.')
flags.DEFINE_integer('repeats', 5, 'Timed runs per configuration (median reported).')
FLAGS = flags.FLAGS


def load(flags_) -> tuple:
    if flags_.checkpoint:
        return convert.load_generator(flags_.checkpoint)
    gen = Generator(flags_.resolution, style_dim=flags_.style_dim, n_mlp=flags_.n_mlp,
                    channel_multiplier=flags_.channel_multiplier)
    return gen, convert.add_mean_style(gen, gen.init_variables(jax.random.key(flags_.init_seed)))


def main(argv):
    del argv
    if FLAGS.init_random == (FLAGS.checkpoint is not None):
        raise app.UsageError('pass exactly one of --checkpoint=PATH_OR_URL and --init_random')
    # Fail before loading or compiling anything.
    if FLAGS.channel_ratio is not None:
        elastic.check_ratio(FLAGS.channel_ratio)
    render.check_truncation(FLAGS.truncation)
    render.png_scale(1, FLAGS.scale)
    seeds = render.parse_seeds(FLAGS.seeds)
    gen, variables = load(FLAGS)
    z = render.z_from_seeds(seeds, gen.style_dim)
    print(f'generator: resolution {gen.resolution}, widths {gen.full_channels()}, '
          f'{sum(a.size for a in jax.tree.leaves(variables["params"])) / 1e6:.2f}M parameters')

    sample_cfg = render.SubConfig(
        channel_ratio=FLAGS.channel_ratio if FLAGS.channels is None else None,
        channels=tuple(int(c) for c in FLAGS.channels) if FLAGS.channels else None,
        target_res=FLAGS.target_res or gen.top_res)
    if sample_cfg.channel_ratio is None and sample_cfg.channels is None:
        sample_cfg = render.SubConfig(channel_ratio=1.0, target_res=sample_cfg.target_res)
    # Validate the sample's arguments before any compilation.
    gen.resolve_channels(sample_cfg.channel_ratio, sample_cfg.channels)
    gen.check_target_res(sample_cfg.target_res)
    if FLAGS.target_res:
        elastic.warn_untrained(gen, [FLAGS.target_res], '--target_res')

    configs = [sample_cfg]
    rows = render.grid_configs(gen) if FLAGS.grid else []
    configs += [c for row in rows for c in row if c != sample_cfg]
    print(f'{"config":>16} {"GMACs":>8} {"latency ms":>11}  (batch {len(seeds)}, median of {FLAGS.repeats})')
    for cfg in configs:
        fn = render.renderer(gen, cfg, FLAGS.truncation)
        ms = render.latency_ms(fn, variables, z, repeats=FLAGS.repeats)
        print(f'{cfg.label(gen):>16} {render.config_macs(gen, cfg) / 1e9:8.3f} {ms:11.2f}')

    samples = render.to_uint8(render.renderer(gen, sample_cfg, FLAGS.truncation)(variables, z))
    os.makedirs(FLAGS.outdir, exist_ok=True)
    for s, img in zip(seeds, samples):
        render.save_png(os.path.join(FLAGS.outdir, f'sample_seed{s}.png'), img, FLAGS.scale)
    if rows:
        grids = render.anycost_grid(gen, variables, z, rows, cell=FLAGS.cell, truncation=FLAGS.truncation)
        for s, img in zip(seeds, grids):
            render.save_png(os.path.join(FLAGS.outdir, f'grid_seed{s}.png'), img)
    print(f'wrote {len(seeds)} sample(s){" and grid(s)" if rows else ""} to {os.path.abspath(FLAGS.outdir)}')


if __name__ == '__main__':
    cli.run(main, outputs=('outdir',))
