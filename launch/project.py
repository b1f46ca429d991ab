r"""Projects images into a generator's w+ space (optimisation, as the original tools/project.py).

  python launch/project.py --generator=anycost-ffhq-config-f.pt --images=faces/ --output=projected
  python launch/project.py --generator=runs/demo/generator --images=a.png,b.png --output=out \
      --optimizer=adam --lr=0.01 --steps=200 --random_subgenerators
  python launch/project.py --generator=... --images=faces/ --output=out --encoder=encoder_ffhq.pt \
      --encoder_reg_weight=1

``--images`` takes files and folders (their .png/.jpg/.jpeg/.webp/.bmp files, sorted); each image
is centre-cropped to a square and resized to the generator's resolution (unreadable ones are
skipped with a warning that counts them; none readable is an error). For every image
``<name>`` the output folder gets ``<name>.npy`` (its w+ latent, float32 [n_style, style_dim],
the layout of the original's assets/demo/projected_latents) and ``<name>_projection.png``
(target | projection). A progress bar shows the losses.
"""
import os

import numpy as np
from absl import app, flags

from anycost_jax import cli, convert, render
from anycost_jax.editing import projection


flags.DEFINE_string('generator', None, f'The generator: {cli.GENERATOR_SOURCES}.', required=True)
flags.DEFINE_list('images', None, 'Image files and/or folders of images.', required=True)
flags.DEFINE_string('output', 'projected', 'Output folder.')
flags.DEFINE_integer('steps', 100, 'Optimiser steps (the original\'s n_iter).')
flags.DEFINE_enum('optimizer', 'lbfgs', projection.OPTIMIZERS, 'Optimiser.')
flags.DEFINE_float('lr', None, 'Learning rate (default: 0.001 for Adam, 1 for L-BFGS).')
flags.DEFINE_float('mse_weight', 1., 'Weight of the pixel MSE.')
flags.DEFINE_float('lpips_weight', 1., 'Weight of LPIPS-VGG (0: pixels only, much faster).')
flags.DEFINE_integer('lpips_res', 256, 'LPIPS compares images resized to this size (at most the resolution).')
flags.DEFINE_string('encoder', None, 'Encoder checkpoint (original .pt or ours): initialises w+ from its prediction.')
flags.DEFINE_float('encoder_reg_weight', 0., 'Keep w+ close to the encoder\'s prediction (needs --encoder).')
flags.DEFINE_bool('random_subgenerators', False, 'Render a random sub-generator each step.')
flags.DEFINE_enum('subgenerator_mode', 'uniform', projection.SUBGENERATOR_MODES, 'How widths are drawn.')
flags.DEFINE_integer('batch_size', 1, 'Images projected together (L-BFGS shares one line search per batch).')
flags.DEFINE_integer('seed', 0, 'Seed of the sub-generator draws.')
flags.DEFINE_integer('scale', 0, '<name>_projection.png: ' + render.SCALE_HELP)
FLAGS = flags.FLAGS


def list_images(entries) -> list[str]:
    return cli.image_files(entries, '--images')


def load_encoder(path):
    load = getattr(convert, 'load_encoder', None)
    if load is None:
        raise app.UsageError('--encoder needs anycost_jax.convert.load_encoder, which this installation lacks')
    return load(path)


def main(argv):
    del argv
    if FLAGS.encoder_reg_weight > 0 and not FLAGS.encoder:
        raise app.UsageError('--encoder_reg_weight needs --encoder')
    render.png_scale(1, FLAGS.scale)
    files = list_images(FLAGS.images)
    names = [os.path.splitext(os.path.basename(f))[0] for f in files]
    if len(set(names)) != len(names):
        raise app.UsageError(f'--images: two files share a name ({sorted(n for n in names if names.count(n) > 1)}); '
                             f'their outputs would overwrite each other')
    gen, variables = convert.load_generator(FLAGS.generator)
    encoder = load_encoder(FLAGS.encoder) if FLAGS.encoder else None
    images = projection.load_images(files, gen.top_res)
    names = [n for f, n in zip(files, names) if f in images]
    files, targets = list(images), np.stack(list(images.values()))
    os.makedirs(FLAGS.output, exist_ok=True)
    for start in range(0, len(files), FLAGS.batch_size):
        batch = slice(start, start + FLAGS.batch_size)
        result = projection.project(
            gen, variables, targets[batch], steps=FLAGS.steps, optimizer=FLAGS.optimizer, lr=FLAGS.lr,
            mse_weight=FLAGS.mse_weight, lpips_weight=FLAGS.lpips_weight, lpips_res=FLAGS.lpips_res,
            encoder=encoder, encoder_reg_weight=FLAGS.encoder_reg_weight,
            random_subgenerators=FLAGS.random_subgenerators, subgenerator_mode=FLAGS.subgenerator_mode,
            seed=FLAGS.seed + start)
        first, last = result.losses[0], result.losses[-1]
        for name, w, target, image in zip(names[batch], result.w_plus, targets[batch], result.images):
            np.save(os.path.join(FLAGS.output, f'{name}.npy'), w.astype(np.float32))
            pair = np.concatenate([render.to_uint8(target), render.to_uint8(image)], axis=1)
            render.save_png(os.path.join(FLAGS.output, f'{name}_projection.png'), pair, FLAGS.scale)
            print(f'{name}: loss {first["loss"]:.4f} -> {last["loss"]:.4f} '
                  f'(lpips {last["lpips"]:.4f}, mse {last["mse"]:.4f}; batch mean)')
    print(f'wrote {len(files)} latent(s) and projection(s) to {os.path.abspath(FLAGS.output)}')


if __name__ == '__main__':
    cli.run(main, outputs=('output',))
