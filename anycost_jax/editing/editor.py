"""The browser editor: attribute sliders over saved latents with an anycost preview.

What the original's Qt ``demo.py`` does, as a small standard-library HTTP server on
127.0.0.1 plus one static page (``static/editor.html``): pick a latent (saved w+ ``.npy``
files, latents sampled from seeds, or an uploaded image projected on the fly), move
attribute sliders, see the edit re-rendered by a cheap sub-generator (channel ratio and
output resolution chosen on the page), then *Finalize* with the full generator. The page
shows the generator time of every render and the round trip the browser saw.

Every (ratio, resolution) renders through its own jitted program, compiled at start
(:meth:`Editor.warmup`), so the first slider move costs a render, not a compilation.
The page keeps at most one preview request in flight and sends only the newest slider
state when it returns, so a moving slider never queues stale renders; the server also
answers a request that is already older than a newer one without rendering it.

JSON API (all POST bodies and answers are JSON; images are base64 PNG):
  GET  /api/info                 generator, latents, directions, widths, resolutions, defaults
  POST /api/select   {latent}    the latent's input image (if known) and its full render
  POST /api/render   {latent, strengths, channel_ratio, target_res, client, seq}   a preview
  POST /api/finalize {latent, strengths}                                   the full generator
  POST /api/upload?name=N   raw image bytes -> {job}; GET /api/job?id=J -> progress, then {latent}
                             (listed as N without its extension)
"""
from __future__ import annotations

import base64
import dataclasses
import errno
import functools
import glob
import io
import json
import os
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from http import server as http_server
from importlib import resources
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from tqdm import tqdm

from anycost_jax import convert, download, elastic, render
from anycost_jax.editing import directions as directions_lib
from anycost_jax.modeldir import params_digest
from anycost_jax.models.generator import Generator

# The original demo: a slider at its end moves w by 0.6 x the direction. Used for directions that
# carry no range of their own (the original's boundary file); computed ones carry theirs
# (directions.Directions.max_strength: 3 std of the sampled w along them, saved in their .npz).
MAX_STRENGTH = directions_lib.SLIDER_MAX_VALUE
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')
MAX_UPLOAD_BYTES = 32 << 20


class EditorError(ValueError):
    """A bad request: answered with HTTP 400 and the message."""


@dataclasses.dataclass
class Latent:
    name: str
    w_plus: np.ndarray                      # [n_style, style_dim] float32
    original: Optional[np.ndarray] = None   # the input image (uint8 HWC) it was projected from, if known


# --------------------------------------------------------------------------- latents


def seed_latents(gen: Generator, variables: dict, seeds: Sequence[int], truncation: float = 1.) -> list[Latent]:
    """One w+ per seed: w = mapping(z), truncated toward ``stats/w_avg``, repeated over the layers."""
    z = render.z_from_seeds(seeds, gen.style_dim)
    w = np.asarray(gen.apply(variables, z, method=Generator.style))
    if truncation < 1:
        if 'stats' not in variables:
            raise ValueError('truncation < 1 needs variables with stats/w_avg (convert.load_generator adds it)')
        w_avg = np.asarray(variables['stats']['w_avg'])
        w = w_avg + truncation * (w - w_avg)
    return [Latent(f'seed {s}', np.repeat(w[i][None], gen.n_style, 0).astype(np.float32))
            for i, s in enumerate(seeds)]


def _as_w_plus(arr: np.ndarray, gen: Generator, path: str) -> np.ndarray:
    arr = np.asarray(arr, np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[-1] != gen.style_dim or arr.shape[0] not in (1, gen.n_style):
        raise ValueError(f'{path}: latent of shape {arr.shape}; this generator takes w [{gen.style_dim}] or w+ '
                         f'[(1,) {gen.n_style}, {gen.style_dim}] (is it from another generator?)')
    return np.repeat(arr, gen.n_style, 0) if arr.shape[0] == 1 else arr


def _rgb(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert('RGB'))


def _input_image(stem: str) -> Optional[np.ndarray]:
    """``NAME.png|jpg|jpeg`` beside ``NAME.npy``, else the left half of launch/project.py's
    ``NAME_projection.png`` (target | projection), else None."""
    for suffix in IMAGE_SUFFIXES:
        if os.path.exists(stem + suffix):
            return _rgb(stem + suffix)
    if os.path.exists(stem + '_projection.png'):
        pair = _rgb(stem + '_projection.png')
        if pair.shape[1] == 2 * pair.shape[0]:
            return pair[:, :pair.shape[0]]
    return None


def folder_latents(folder: str, gen: Generator,
                   warn: Callable[[str], Any] = lambda m: print(m, file=sys.stderr, flush=True)) -> list[Latent]:
    """Every ``*.npy`` w / w+ in ``folder`` (sorted), with its input image when one is beside it.

    A latent that cannot be read or does not fit ``gen`` is skipped, an unreadable input image
    left out, each counted in one ``warn``: one bad file does not cost the folder. Raises if no
    latent is usable.
    """
    paths = sorted(glob.glob(os.path.join(folder, '*.npy')))
    if not paths:
        raise FileNotFoundError(f'--latents={folder!r} holds no .npy latent; write some with launch/project.py '
                                f'or leave --latents out to sample latents from seeds')
    out, bad_latents, bad_images = [], [], []
    for p in paths:
        stem = os.path.splitext(p)[0]
        try:
            w_plus = _as_w_plus(np.load(p), gen, p)
        except (OSError, ValueError) as e:  # not a .npy, or a latent of another generator
            bad_latents.append(str(e) if str(e).startswith(p) else f'{p}: {e}')
            continue
        try:
            image = _input_image(stem)
        except (OSError, ValueError) as e:
            bad_images.append(f'{stem}: {e}')
            image = None
        out.append(Latent(os.path.basename(stem), w_plus, image))
    if not out:
        raise ValueError(f'--latents={folder!r}: none of its {len(paths)} latents is usable: {bad_latents[0]}')
    for bad, what in ((bad_latents, f'skipped {len(bad_latents)} of {len(paths)} latents'),
                      (bad_images, f'showing {len(bad_images)} latents without their input image')):
        if bad:
            more = f' and {len(bad) - 1} more' if len(bad) > 1 else ''
            warn(f'warning: {what}, which cannot be read: {bad[0]}{more}')
    return out


# --------------------------------------------------------------------------- directions


def color_directions(gen: Generator, variables: dict, cache: Optional[str] = None, n_samples: int = 10000,
                     batch_size: int = 100, **kwargs) -> dict[str, np.ndarray]:
    """Color directions of the procedural demo model, computed once and cached in ``cache`` (with
    their slider range: loaded or computed, they give the same sliders).

    The default cache lives in the download cache, named by the parameters' hash, so another
    generator never picks up these directions (v2: the color attributes measure shapes and
    background apart, and the colors are conditioned on the background brightness). 10000
    samples (not the original's 500000 for faces) take seconds for the demo model: its colors
    are easy to separate.
    """
    cache = cache or os.path.join(download.cache_dir(), f'directions-colors-v2-{params_digest(variables)}.npz')
    if os.path.exists(cache):
        return directions_lib.load_boundaries(cache)
    found = directions_lib.compute_color_directions(gen, variables, n_samples=n_samples, batch_size=batch_size,
                                                    **kwargs)
    os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
    directions_lib.save_directions(cache, found)
    print(f'cached the color directions in {cache}')
    return found


# --------------------------------------------------------------------------- rendering


@functools.lru_cache(maxsize=64)
def style_renderer(gen: Generator, channel_ratio: Optional[float], target_res: Optional[int]) -> Callable:
    """A jitted ``(variables, w_plus [N, n_style, style_dim]) -> images`` for one sub-generator."""
    def fn(variables, w_plus):
        return gen.apply(variables, w_plus, input_is_style=True, channel_ratio=channel_ratio,
                         target_res=target_res, noise_mode='const')
    return jax.jit(fn)


def png_base64(img: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format='PNG')
    return base64.b64encode(buf.getvalue()).decode('ascii')


class Editor:
    """Editing state and the JSON API; HTTP-free so it can be tested and reused from a notebook."""

    def __init__(self, gen: Generator, variables: dict, directions: dict[str, np.ndarray], latents: list[Latent],
                 *, preview_ratio: float = 0.25, preview_res: Optional[int] = None,
                 max_strength: Optional[float] = None, n_layers: Optional[int] = None,
                 project_kwargs: Optional[dict] = None):
        if not latents:
            raise ValueError('the editor needs at least one latent')
        elastic.check_ratio(preview_ratio)
        self.gen, self.variables = gen, jax.tree.map(jnp.asarray, variables)
        self.directions = {k: np.asarray(v, np.float32).reshape(-1) for k, v in directions.items()}
        for k, v in self.directions.items():
            if v.shape != (gen.style_dim,):
                raise ValueError(f'direction {k!r} has {v.size} entries; this generator has style_dim '
                                 f'{gen.style_dim} (directions from another model?)')
        self.latents = list(latents)
        # The page offers the trained resolutions (the preview defaults to the highest one at most half
        # the full one); an untrained --preview_res still works, with a warning, and is offered too.
        trained = gen.trained_output_resolutions
        if preview_res is None:
            preview_res = max([r for r in trained if r <= gen.top_res // 2], default=gen.top_res)
        self.preview = (preview_ratio, gen.check_target_res(preview_res))
        elastic.warn_untrained(gen, [preview_res], 'preview resolution')
        self.resolutions = sorted(set(trained) | {preview_res}, reverse=True)
        # None: the directions' own range (directions.Directions), else the original demo's.
        self.max_strength = max_strength or getattr(directions, 'max_strength', None) or MAX_STRENGTH
        self.n_layers = n_layers or directions_lib.N_STYLE_TO_CHANGE
        self.project_kwargs = dict(project_kwargs or {})
        self._render_lock = threading.Lock()   # one render at a time: latencies are not contended
        self._state_lock = threading.Lock()
        self._newest_seq: dict[str, int] = {}
        self.jobs: dict[int, dict] = {}
        self.renders = 0                      # generator calls made for /api/render (tests count them)
        self._macs: dict = {}

    # ------------------------------------------------------------------ rendering

    def configs(self) -> list[tuple[float, int]]:
        return [(r, res) for r in elastic.RATIOS for res in self.resolutions]

    def warmup(self, configs: Optional[Sequence[tuple[float, Optional[int]]]] = None, progress: bool = True) -> None:
        """Compiles the full render and the given (default: every) (ratio, resolution) preview."""
        w = self.latents[0].w_plus[None]
        configs = [(None, None)] + list(self.configs() if configs is None else configs)
        for ratio, res in tqdm(configs, desc='compiling renders', disable=not progress):
            jax.block_until_ready(style_renderer(self.gen, ratio, res)(self.variables, w))

    def warmup_in_background(self) -> threading.Thread:
        """Compiles the previews not yet compiled in a daemon thread, so the server can start at once."""
        thread = threading.Thread(target=self.warmup, kwargs=dict(progress=False), daemon=True)
        thread.start()
        return thread

    def render(self, w_plus: np.ndarray, channel_ratio: Optional[float] = None,
               target_res: Optional[int] = None) -> tuple[np.ndarray, float]:
        """One image (uint8 HWC) and the generator's wall time in ms (dispatch to ready array)."""
        fn = style_renderer(self.gen, channel_ratio, target_res)
        with self._render_lock:
            t = time.perf_counter()
            img = jax.block_until_ready(fn(self.variables, jnp.asarray(w_plus[None], jnp.float32)))
            ms = 1e3 * (time.perf_counter() - t)
        return render.to_uint8(img)[0], ms

    def edited(self, latent: int, strengths: dict) -> np.ndarray:
        """The latent's w+ moved along each direction by ``strength * max_strength`` (strength in [-1, 1])."""
        w = self.latents[latent].w_plus
        scaled = {k: float(v) * self.max_strength for k, v in strengths.items() if float(v) != 0}
        if not scaled:
            return w
        return np.asarray(directions_lib.apply_edits(w[None], self.directions, scaled, n_layers=self.n_layers))[0]

    # ------------------------------------------------------------------ JSON API

    def info(self) -> dict:
        return {
            'generator': {'resolution': self.gen.top_res, 'style_dim': self.gen.style_dim,
                          'n_style': self.gen.n_style},
            'latents': [{'name': l.name, 'has_original': l.original is not None} for l in self.latents],
            'directions': list(self.directions),
            'ratios': sorted(elastic.RATIOS, reverse=True),
            'resolutions': self.resolutions,
            'preview': {'channel_ratio': self.preview[0], 'target_res': self.preview[1]},
            'max_strength': self.max_strength,
            'can_project': bool(self.project_kwargs.get('steps', 0)),
        }

    def _check_latent(self, req: dict) -> int:
        i = req.get('latent', 0)
        if not isinstance(i, int) or not 0 <= i < len(self.latents):
            raise EditorError(f'latent must be an index in [0, {len(self.latents)}), got {i!r}')
        return i

    def _check_strengths(self, req: dict) -> dict:
        s = req.get('strengths') or {}
        if not isinstance(s, dict):
            raise EditorError('strengths must be an object {direction: value in [-1, 1]}')
        unknown = sorted(set(s) - set(self.directions))
        if unknown:
            raise EditorError(f'unknown directions {unknown}; known: {list(self.directions)}')
        for k, v in s.items():
            if not isinstance(v, (int, float)) or not -1 <= v <= 1:
                raise EditorError(f'strength of {k!r} must be a number in [-1, 1], got {v!r}')
        return s

    def select(self, req: dict) -> dict:
        i = self._check_latent(req)
        img, ms = self.render(self.latents[i].w_plus)
        orig = self.latents[i].original
        return {'latent': i, 'image': png_base64(img), 'ms': ms,
                'original': png_base64(orig) if orig is not None else None}

    def render_request(self, req: dict, final: bool = False) -> dict:
        i, strengths = self._check_latent(req), self._check_strengths(req)
        if final:
            ratio, res = None, None
        else:
            ratio = req.get('channel_ratio', self.preview[0])
            res = req.get('target_res', self.preview[1])
            if ratio not in elastic.RATIOS:
                raise EditorError(f'channel_ratio must be one of {elastic.RATIOS}, got {ratio!r}')
            if res not in self.gen.output_resolutions:
                raise EditorError(f'target_res must be one of {self.gen.output_resolutions}, got {res!r}')
            seq, client = req.get('seq'), req.get('client')
            if isinstance(seq, int) and isinstance(client, str):
                with self._state_lock:  # per page: a reloaded page starts counting again
                    if seq < self._newest_seq.get(client, -1):  # a newer slider state arrived: skip this one
                        return {'stale': True, 'seq': seq}
                    self._newest_seq[client] = seq
        t = time.perf_counter()
        img, ms = self.render(self.edited(i, strengths), ratio, res)
        if not final:
            self.renders += 1
        return {'image': png_base64(img), 'ms': ms, 'server_ms': 1e3 * (time.perf_counter() - t),
                'channel_ratio': ratio or 1.0, 'target_res': res or self.gen.top_res, 'seq': req.get('seq'),
                'final': final, 'macs': self.macs(ratio, res), 'full_macs': self.macs(None, None)}

    def macs(self, channel_ratio: Optional[float], target_res: Optional[int]) -> int:
        """MACs of one image at that sub-generator: what the page shows beside the measured time,
        because on a small generator a call's fixed cost (dispatch, ~0.1-0.2 ms on a CPU) is a large
        part of its time, and the time falls much less than the computation does."""
        key = (channel_ratio, target_res)
        if key not in self._macs:
            self._macs[key] = int(render.config_macs(self.gen, render.SubConfig(channel_ratio, target_res=target_res)))
        return self._macs[key]

    # ------------------------------------------------------------------ uploads

    def upload(self, data: bytes, name: Optional[str] = None) -> dict:
        """Starts projecting an uploaded image in a background thread; poll :meth:`job`. The latent
        is named after the uploaded file's ``name`` (without folders and extension), else ``upload J``."""
        if not self.project_kwargs.get('steps', 0):
            raise EditorError('uploads are off: start the editor with --project_steps > 0')
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except Exception as e:  # PIL raises several types for bad bytes
            raise EditorError(f'the upload is not an image PIL can read: {e}') from None
        with self._state_lock:
            job_id = len(self.jobs)
            self.jobs[job_id] = {'step': 0, 'steps': self.project_kwargs['steps'], 'done': False, 'error': None}
        stem = os.path.splitext(os.path.basename((name or '').replace('\\', '/')))[0].strip()
        threading.Thread(target=self._project, args=(job_id, data, stem or f'upload {job_id}'), daemon=True).start()
        return {'job': job_id}

    def _project(self, job_id: int, data: bytes, name: str) -> None:
        from anycost_jax.editing import projection
        job = self.jobs[job_id]
        try:
            with tempfile.TemporaryDirectory() as tmp:  # load_image reads a path: same crop/resize as the CLI
                path = os.path.join(tmp, 'upload.png')
                with open(path, 'wb') as f:
                    f.write(data)
                target = projection.load_image(path, self.gen.top_res)

            def callback(step, w_plus, terms):
                job.update(step=int(step) + 1, loss=terms.get('loss'))

            result = projection.project(self.gen, self.variables, target[None], progress=False, callback=callback,
                                        **self.project_kwargs)
            original = render.to_uint8(target)
            with self._state_lock:
                self.latents.append(Latent(name, np.asarray(result.w_plus[0], np.float32), original))
                job.update(done=True, latent=len(self.latents) - 1, step=job['steps'])
        except Exception as e:  # reported to the page; the server keeps running
            traceback.print_exc()
            job.update(done=True, error=f'{type(e).__name__}: {e}')

    def job(self, job_id: int) -> dict:
        if job_id not in self.jobs:
            raise EditorError(f'no job {job_id}')
        return dict(self.jobs[job_id])


# --------------------------------------------------------------------------- HTTP


def page() -> bytes:
    return resources.files('anycost_jax.editing').joinpath('static', 'editor.html').read_bytes()


def make_server(editor: Optional[Editor], host: str = '127.0.0.1', port: int = 0) -> http_server.ThreadingHTTPServer:
    """A threading HTTP server for ``editor`` (port 0: a free one; see ``server.server_address``).

    It listens at once: a busy port is an ``EditorError`` before anything slow. ``editor`` may be
    None, set as ``server.editor`` before serving (:func:`serve` does), so that a launcher can take
    the port before it loads the generator.
    """
    html = page()

    class Handler(http_server.BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header('Content-Type', ctype)
            self.send_header('Content-Length', str(len(body)))
            self.send_header('Cache-Control', 'no-store')
            self.end_headers()
            self.wfile.write(body)

        def _json(self, fn) -> None:
            try:
                out, code = fn(), 200
            except EditorError as e:
                out, code = {'error': str(e)}, 400
            except Exception as e:  # a bug: say so on the page and keep serving
                traceback.print_exc()
                out, code = {'error': f'{type(e).__name__}: {e}'}, 500
            self._send(code, json.dumps(out).encode(), 'application/json')

        def _body(self) -> bytes:
            n = int(self.headers.get('Content-Length') or 0)
            if n > MAX_UPLOAD_BYTES:
                raise EditorError(f'request of {n} bytes is over the {MAX_UPLOAD_BYTES} byte limit')
            return self.rfile.read(n)

        def _json_body(self) -> dict:
            try:
                req = json.loads(self._body() or b'{}')
            except json.JSONDecodeError as e:
                raise EditorError(f'the body is not JSON: {e}') from None
            if not isinstance(req, dict):
                raise EditorError('the body must be a JSON object')
            return req

        def do_GET(self):  # noqa: N802 (http.server's naming)
            editor = self.server.editor
            url = urllib.parse.urlparse(self.path)
            if url.path in ('/', '/index.html'):
                self._send(200, html, 'text/html; charset=utf-8')
            elif url.path == '/api/info':
                self._json(editor.info)
            elif url.path == '/api/job':
                query = urllib.parse.parse_qs(url.query)
                self._json(lambda: editor.job(int(query.get('id', ['-1'])[0])))
            else:
                self._send(404, b'not found', 'text/plain')

        def do_POST(self):  # noqa: N802
            editor = self.server.editor
            query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            routes = {'/api/select': lambda: editor.select(self._json_body()),
                      '/api/render': lambda: editor.render_request(self._json_body()),
                      '/api/finalize': lambda: editor.render_request(self._json_body(), final=True),
                      '/api/upload': lambda: editor.upload(self._body(), query.get('name', [None])[0])}
            route = routes.get(urllib.parse.urlparse(self.path).path)
            if route is None:
                self._send(404, b'not found', 'text/plain')
            else:
                self._json(route)

        def log_message(self, fmt, *args):  # one line per request would drown the terminal while sliding
            pass

    try:
        server = http_server.ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise EditorError(f'--port={port}: {host}:{port} is already in use (another editor still running?); '
                              f'pass --port=0 to pick a free port, or another --port') from None
        raise
    server.editor = editor
    return server


def url_of(server: http_server.ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    if host in ('0.0.0.0', '::', ''):  # listening everywhere: this machine reaches it as localhost
        host = 'localhost'
    return f'http://{host}:{port}/'


# --------------------------------------------------------------------------- the launcher's editor


def load_editor(generator: str, *, latents: Optional[str] = None, seeds: Sequence[int] = range(8),
                truncation: float = 0.7, boundaries: Optional[str] = None, directions_cache: Optional[str] = None,
                attributes: Optional[Sequence[str]] = None, max_strength: Optional[float] = None,
                preview_ratio: float = 0.25, preview_res: Optional[int] = None, project_steps: int = 50,
                project_optimizer: str = 'lbfgs', project_sub_g: bool = True, encoder: Optional[str] = None,
                compile_cache: Optional[str] = None) -> Editor:
    """An :class:`Editor` as launch/editor.py builds it.

    Args:
      generator: as :func:`convert.load_generator` (a training workdir too).
      latents: a folder of .npy w+ (see :func:`folder_latents`); None: sample them from ``seeds``
        with ``truncation``.
      boundaries: the original boundary .pt or our .npz (path or URL); None: the procedural demo
        model's color directions (:func:`color_directions`, cached in ``directions_cache``).
      attributes: only these directions, in this order (default: all; for the original's boundary
        file the demo's seven sliders).
      max_strength: a slider at its end moves w by this x the unit direction (default: the
        directions' own range, else :data:`MAX_STRENGTH`, the original demo's).
      preview_ratio, preview_res: the initial preview sub-generator.
      project_steps, project_optimizer, project_sub_g, encoder: projection of uploaded images
        (``encoder``: a converted encoder initializing it).
      compile_cache: the persistent XLA compilation cache (None: $JAX_COMPILATION_CACHE_DIR if set,
        else the download cache's xla/; '': none).
    Raises:
      EditorError: an attribute that is not among the directions.
    """
    render.check_truncation(truncation)
    elastic.check_ratio(preview_ratio)  # before loading anything
    cache = compile_cache
    if cache is None and not os.environ.get('JAX_COMPILATION_CACHE_DIR'):
        cache = os.path.join(download.cache_dir(), 'xla')
    if cache:
        jax.config.update('jax_compilation_cache_dir', cache)
    gen, variables = convert.load_generator(generator)
    if boundaries:
        directions = directions_lib.load_boundaries(boundaries)
    else:
        directions = color_directions(gen, variables, directions_cache)
    names = attributes
    if names is None and all(v in directions for v in directions_lib.DEMO_DIRECTIONS.values()):
        names = list(directions_lib.DEMO_DIRECTIONS)  # the original's boundary file: the demo's seven sliders
    if names:
        try:
            directions = directions_lib.select(directions, names)
        except KeyError as e:
            raise EditorError(f'--attributes: {e.args[0]}') from None
    found = folder_latents(latents, gen) if latents else seed_latents(gen, variables, seeds, truncation)
    project_kwargs = dict(steps=project_steps, optimizer=project_optimizer, random_subgenerators=project_sub_g)
    if encoder:
        project_kwargs['encoder'] = convert.load_encoder(encoder)
    return Editor(gen, variables, directions, found, preview_ratio=preview_ratio, preview_res=preview_res,
                  max_strength=max_strength, project_kwargs=project_kwargs)


def serve(editor: Editor, host: str = '127.0.0.1', port: int = 0, warmup: bool = True,
          log: Callable[[str], Any] = functools.partial(print, flush=True),
          server: Optional[http_server.ThreadingHTTPServer] = None) -> None:
    """Serves ``editor`` until Ctrl-C, logging its URL once it listens.

    Args:
      warmup: compile the initial preview and the full render first (the other widths and
        resolutions in the background), so the first slider move and Finalize wait for none.
      server: one of :func:`make_server` (host and port are then its own).
    """
    if server is None:
        server = make_server(editor, host, port)  # before the warm-up: a busy port fails at once
    server.editor = editor
    try:
        if warmup:
            editor.warmup([editor.preview])
            editor.warmup_in_background()  # while the page loads
        log(f'anycost editor: {len(editor.latents)} latents, {len(editor.directions)} directions; open '
            f'{url_of(server)}  (Ctrl-C to stop)')
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
