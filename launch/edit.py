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
import functools
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from anycost_jax import convert, elastic, render  # noqa: E402
from anycost_jax.editing import directions as dirs  # noqa: E402

CLASSIFIERS = {'colors': dirs.color_attributes}

flags.DEFINE_string('generator', None, 'Original .pt, our model directory, or an http(s) URL.', required=True)
flags.DEFINE_string('latent', None, 'A w+ .npy ([n_style, style_dim] or [1, n_style, style_dim]).')
flags.DEFINE_integer('seed', None, 'Instead of --latent: the w of this seed\'s z.')
flags.DEFINE_float('truncation', 1., 'With --seed: truncation toward the mean w.')
flags.DEFINE_string('boundaries', None, 'Boundary file or URL (original .pt or our .npz).')
flags.DEFINE_bool('compute_directions', False, 'Compute directions with --classifier instead of --boundaries.')
flags.DEFINE_enum('classifier', 'colors', list(CLASSIFIERS), 'Classifier for --compute_directions.')
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
FLAGS = flags.FLAGS


def parse_edits(items) -> dict[str, float]:
    edits = {}
    for item in (part for entry in items for part in entry.split(',') if part.strip()):
        name, sep, value = item.rpartition('=')
        try:
            edits[name.strip()] = float(value)
        except ValueError:
            raise app.UsageError(f'--edit={item!r}: expected name=strength, e.g. smiling=0.5') from None
        if not sep or not name.strip():
            raise app.UsageError(f'--edit={item!r}: expected name=strength, e.g. smiling=0.5')
    return edits


@functools.lru_cache(maxsize=8)
def w_renderer(gen, channel_ratio, target_res):
    """A jitted ``(variables, w_plus) -> images`` for one static sub-generator."""
    return jax.jit(lambda v, w: gen.apply(v, w, input_is_style=True, channel_ratio=channel_ratio,
                                          target_res=target_res, noise_mode='const'))


def initial_latent(gen, variables) -> np.ndarray:
    if (FLAGS.latent is None) == (FLAGS.seed is None):
        raise app.UsageError('pass exactly one of --latent=FILE.npy and --seed=N')
    if FLAGS.latent:
        w = np.load(FLAGS.latent).astype(np.float32)
        if w.shape[-2:] != (gen.n_style, gen.style_dim) or w.ndim not in (2, 3):
            raise app.UsageError(f'{FLAGS.latent} has shape {w.shape}; this generator needs w+ '
                                 f'[{gen.n_style}, {gen.style_dim}]')
        return w.reshape(1, gen.n_style, gen.style_dim)
    z = render.z_from_seeds([FLAGS.seed], gen.style_dim)
    _, w = gen.apply(variables, z, truncation=FLAGS.truncation, return_styles=True)
    return np.asarray(w)


def load_directions(gen, variables):
    if FLAGS.compute_directions == (FLAGS.boundaries is not None):
        raise app.UsageError('pass exactly one of --boundaries=FILE_OR_URL and --compute_directions')
    if FLAGS.boundaries:
        return dirs.load_boundaries(FLAGS.boundaries)
    found, accuracy = dirs.compute_directions(gen, variables, CLASSIFIERS[FLAGS.classifier], n_samples=FLAGS.n_samples,
                                              batch_size=FLAGS.batch_size, top_fraction=FLAGS.top_fraction,
                                              return_accuracy=True)
    for name, acc in accuracy.items():
        print(f'direction {name!r}: held-out SVM accuracy {acc:.3f}')
    if FLAGS.save_directions:
        dirs.save_directions(FLAGS.save_directions, found)
    return found


def main(argv):
    del argv
    edits = parse_edits(FLAGS.edit)
    if not edits:
        raise app.UsageError('no --edit given: pass e.g. --edit=smiling=0.5')
    elastic.check_ratio(FLAGS.channel_ratio)
    gen, variables = convert.load_generator(FLAGS.generator)
    res = FLAGS.resolution or gen.top_res
    gen._check_target_res(res)  # fail before any compilation
    w = initial_latent(gen, variables)
    directions = load_directions(gen, variables)
    for name in edits:
        dirs.resolve_direction(directions, name)
    strengths = {k: dirs.slider_strength(v) if FLAGS.slider_units else v for k, v in edits.items()}
    edited = dirs.apply_edits(w, directions, strengths, n_layers=FLAGS.n_layers)

    full, sub = w_renderer(gen, None, None), w_renderer(gen, FLAGS.channel_ratio, res)
    os.makedirs(FLAGS.output, exist_ok=True)
    for tag, latent in (('before', w), ('after', edited)):
        a = render.to_uint8(full(variables, jnp.asarray(latent)))[0]
        b = render.resize(render.to_uint8(sub(variables, jnp.asarray(latent)))[0], gen.top_res)
        render.save_png(os.path.join(FLAGS.output, f'{tag}.png'), np.concatenate([a, b], axis=1))
    latent = jnp.asarray(edited)
    full_ms = render.latency_ms(full, variables, latent, repeats=FLAGS.repeats)
    sub_ms = render.latency_ms(sub, variables, latent, repeats=FLAGS.repeats)
    print(f'full generator ({gen.top_res}px): {full_ms:.2f} ms; {FLAGS.channel_ratio}x@{res}: {sub_ms:.2f} ms')
    np.save(os.path.join(FLAGS.output, 'edited.npy'), np.asarray(edited[0], np.float32))
    print(f'wrote before.png, after.png and edited.npy to {os.path.abspath(FLAGS.output)}')


if __name__ == '__main__':
    app.run(main)
