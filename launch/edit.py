r"""Edits a latent along attribute directions and previews it on a cheap sub-generator.

  python launch/edit.py --generator=anycost-ffhq-config-f.pt --latent=projected/ryan.npy \
      --boundaries=https://hanlab18.mit.edu/projects/anycost-gan/files/boundary_anycost-ffhq-config-f.pt \
      --edit=smiling=0.4 --edit=young=-0.3 --channel_ratio=0.5 --resolution=256 --output=edited
  python launch/edit.py --generator=runs/demo/generator --seed=3 --compute_directions --classifier=colors \
      --n_samples=20000 --save_directions=runs/demo/directions.npz --edit=red=2,blue=-1 --output=edited

The latent is a w+ ``.npy`` from launch/project.py (or the original's projected_latents), or the
w of ``--seed``'s z repeated over the layers. Directions come from a boundary file (the original's
``.pt`` or our ``.npz``; names like ``31_Smiling`` or the demo's ``smiling``) or are computed
with a classifier (``colors``: the procedural demo's color attributes). Each ``--edit`` is
``name=strength``: ``strength`` times the unit direction is added to the first ``--n_layers``
layers of w+ (with ``--slider_units`` strength is the original demo's slider value, -100..100,
scaled by 0.6 / 100). Writes ``before.png`` and ``after.png`` (full generator | the chosen
sub-generator, enlarged) and prints both renders' latency.
"""
from absl import flags

from anycost_jax import cli, elastic, render
from anycost_jax.editing import directions as dirs
from anycost_jax.editing import edit as edit_lib

flags.DEFINE_string('generator', None, f'The generator: {cli.GENERATOR_SOURCES}.', required=True)
flags.DEFINE_string('latent', None, 'A w+ .npy ([n_style, style_dim] or [1, n_style, style_dim]).')
flags.DEFINE_integer('seed', None, 'Instead of --latent: the w of this seed\'s z.')
flags.DEFINE_float('truncation', 1., 'With --seed: truncation toward the mean w, in [0, 1] (1 = none).')
flags.DEFINE_string('boundaries', None, 'Boundary file or URL (original .pt or our .npz).')
flags.DEFINE_bool('compute_directions', False, 'Compute directions with --classifier instead of --boundaries.')
flags.DEFINE_enum('classifier', 'colors', list(edit_lib.CLASSIFIERS), 'Classifier for --compute_directions.')
flags.DEFINE_integer('n_samples', 20000, 'With --compute_directions: sampled latents.')
flags.DEFINE_integer('batch_size', 64, 'With --compute_directions: batch of the sampling.')
flags.DEFINE_float('top_fraction', dirs.TOP_FRACTION, 'With --compute_directions: top/bottom fraction per attribute.')
flags.DEFINE_string('save_directions', None, 'With --compute_directions: write them to this .npz.')
flags.DEFINE_multi_string('edit', [], 'name=strength (repeatable, or comma separated).')
flags.DEFINE_bool('slider_units', False, 'Strengths are the original demo\'s slider values (-100..100).')
flags.DEFINE_integer('n_layers', dirs.N_STYLE_TO_CHANGE, 'Edit the first n layers of w+.')
flags.DEFINE_float('channel_ratio', 0.5, f'Preview sub-generator width, one of {elastic.RATIOS}.')
flags.DEFINE_integer('resolution', None, 'Preview sub-generator resolution (default: full).')
flags.DEFINE_string('output', 'edited', 'Output folder.')
flags.DEFINE_integer('repeats', 5, 'Timed renders (median reported).')
flags.DEFINE_integer('scale', 0, 'before.png / after.png: ' + render.SCALE_HELP)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    edit_lib.edit(FLAGS.generator, edit_lib.parse_edits(FLAGS.edit), FLAGS.output, latent=FLAGS.latent,
                  seed=FLAGS.seed, truncation=FLAGS.truncation, boundaries=FLAGS.boundaries,
                  classifier=FLAGS.classifier if FLAGS.compute_directions else None, n_samples=FLAGS.n_samples,
                  batch_size=FLAGS.batch_size, top_fraction=FLAGS.top_fraction,
                  save_directions=FLAGS.save_directions, slider_units=FLAGS.slider_units,
                  n_layers=FLAGS.n_layers, channel_ratio=FLAGS.channel_ratio, resolution=FLAGS.resolution,
                  repeats=FLAGS.repeats, scale=FLAGS.scale)


if __name__ == '__main__':
    cli.run(main, outputs=('output', 'save_directions'))
