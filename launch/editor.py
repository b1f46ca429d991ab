r"""The browser editor: attribute sliders with an anycost preview, then a full-cost render.

    python launch/editor.py                                  # runs/demo/generator, color sliders
    python launch/editor.py --generator=anycost-ffhq-config-f.pt --boundaries=boundary.pt \
        --latents=out/projected --preview_ratio=0.5 --preview_res=256
    python launch/editor.py --port=8000 --host=0.0.0.0       # reachable from other machines

Open the printed URL. Sliders move the latent along attribute directions (``--boundaries``: the
original's boundary file or our .npz, local or URL; ``--directions=colors``: color directions of
the procedural demo model, computed once and cached). The preview renders with the sub-generator
chosen on the page (width and resolution); *Finalize* renders with the full generator; both show
their latency. Latents: the ``.npy`` w+ files in ``--latents`` (``launch/project.py`` writes
them; ``NAME.png`` beside ``NAME.npy`` is shown as its input), or latents sampled from
``--seeds``; with ``--project_steps > 0`` the page also takes an uploaded image and projects it.
The port is taken first: a busy one fails at once (``--port=0`` picks a free one).
"""
import os

from absl import app, flags

from anycost_jax import cli, render
from anycost_jax.editing import editor as editor_lib

DEFAULT_GENERATOR = 'runs/demo/generator'
flags.DEFINE_string('generator', DEFAULT_GENERATOR, f'The generator: {cli.GENERATOR_SOURCES}.')
flags.DEFINE_string('latents', None, 'Folder of .npy w+ latents (default: sample latents from --seeds).')
flags.DEFINE_string('seeds', '0-7', 'Without --latents: seeds of the sampled latents ("0-7" or "1,5,9").')
flags.DEFINE_float('truncation', 0.7, 'Without --latents: truncation of the sampled latents, in [0, 1] (1 = none).')
flags.DEFINE_string('boundaries', None, 'Attribute directions: the original boundary .pt or our .npz (path or URL).')
flags.DEFINE_enum('directions', None, ['colors'], 'Instead of --boundaries: compute the demo model\'s color '
                  'directions (default when --boundaries is not given).')
flags.DEFINE_string('directions_cache', None, 'Where --directions=colors caches its result (default: the '
                    'download cache, named by the parameters\' hash).')
flags.DEFINE_list('attributes', None, 'Only these directions, in this order (default: all; for the original\'s '
                  'boundary file the demo\'s seven, "smiling,young,...").')
flags.DEFINE_float('max_strength', None, 'A slider at its end moves w by this x the unit direction (default: the '
                   'range stored with the directions: 3 std of the sampled w for computed ones, also in their '
                   f'.npz; {editor_lib.MAX_STRENGTH}, the original demo\'s, for a boundary .pt).')
flags.DEFINE_float('preview_ratio', 0.25, 'Initial preview width (changeable on the page).')
flags.DEFINE_integer('preview_res', None, 'Initial preview resolution (default: half the full one).')
flags.DEFINE_integer('project_steps', 50, 'Projection steps for uploaded images (0: no uploads).')
flags.DEFINE_enum('project_optimizer', 'lbfgs', ['lbfgs', 'adam'], 'Projection optimizer for uploads.')
flags.DEFINE_bool('project_sub_g', True, 'Project uploads through random sub-generators, so previews match.')
flags.DEFINE_string('encoder', None, 'Encoder (launch/convert.py output) to initialize upload projections.')
flags.DEFINE_bool('warmup', True, 'Compile the initial preview and the full render before serving (the other '
                  'widths and resolutions in the background).')
flags.DEFINE_string('compile_cache', None, 'Persistent XLA compilation cache, so a restart compiles nothing '
                    '(default: $JAX_COMPILATION_CACHE_DIR if set, else the download cache\'s xla/; "" turns it off).')
flags.DEFINE_string('host', '127.0.0.1', 'Interface to listen on (0.0.0.0: every interface).')
flags.DEFINE_integer('port', 8000, 'Port (0: pick a free one).')
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if FLAGS.boundaries and FLAGS.directions:
        raise app.UsageError('pass --boundaries or --directions, not both')
    if FLAGS.generator == DEFAULT_GENERATOR and not os.path.exists(DEFAULT_GENERATOR):
        raise app.UsageError(f'{DEFAULT_GENERATOR} does not exist: train the demo model first with '
                             f'"python launch/train.py --config=configs/demo.py --workdir=runs/demo" '
                             f'(under 10 minutes on a 2-core CPU), or pass --generator=PATH_OR_URL')
    seeds = render.parse_seeds(FLAGS.seeds)
    render.check_truncation(FLAGS.truncation)
    server = editor_lib.make_server(None, FLAGS.host, FLAGS.port)  # a busy port fails before the slow start
    try:
        editor = editor_lib.load_editor(
            FLAGS.generator, latents=FLAGS.latents, seeds=seeds, truncation=FLAGS.truncation,
            boundaries=FLAGS.boundaries, directions_cache=FLAGS.directions_cache, attributes=FLAGS.attributes,
            max_strength=FLAGS.max_strength, preview_ratio=FLAGS.preview_ratio, preview_res=FLAGS.preview_res,
            project_steps=FLAGS.project_steps, project_optimizer=FLAGS.project_optimizer,
            project_sub_g=FLAGS.project_sub_g, encoder=FLAGS.encoder, compile_cache=FLAGS.compile_cache)
    except BaseException:
        server.server_close()
        raise
    editor_lib.serve(editor, warmup=FLAGS.warmup, server=server)


if __name__ == '__main__':
    cli.run(main)
