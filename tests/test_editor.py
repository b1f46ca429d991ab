"""The browser editor: its JSON API over HTTP (fast, no browser), then the page in headless
Chromium driven by Playwright against launch/editor.py on a tiny generator."""
import base64
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.error
import urllib.request

import jax
import numpy as np
import pytest
from PIL import Image

from anycost_jax import convert, macs
from anycost_jax.editing import directions as directions_lib
from anycost_jax.editing import editor as editor_lib
from anycost_jax.models import Generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = os.environ.get('ANYCOST_CHROMIUM', '/usr/bin/chromium')
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync']
RES = 16  # outputs at 4, 8, 16
# Uploads: a token projection; the launcher below runs the same program, so the session's compilation cache
# (tests/conftest.py) compiles it once for both.
PROJECT = dict(steps=2, optimizer='adam', random_subgenerators=False)


@pytest.fixture(scope='module')
def tiny():
    gen = Generator(RES, style_dim=16, n_mlp=1, channel_multiplier=1 / 64)
    variables = convert.add_mean_style(gen, gen.init_variables(jax.random.key(0)), n_sample=256)
    rng = np.random.default_rng(0)
    directions = {name: rng.standard_normal(gen.style_dim).astype(np.float32) * 3 for name in ('red', 'blue')}
    return gen, variables, directions


@pytest.fixture(scope='module')
def server(tiny):
    gen, variables, directions = tiny
    latents = editor_lib.seed_latents(gen, variables, [0, 1], truncation=0.7)
    ed = editor_lib.Editor(gen, variables, directions, latents, preview_ratio=0.25, preview_res=8,
                           project_kwargs=PROJECT)
    srv = editor_lib.make_server(ed, '127.0.0.1', 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield ed, editor_lib.url_of(srv)
    srv.shutdown()
    srv.server_close()


def call(url, path, body=None, raw=None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url.rstrip('/') + path, data=data, method='GET' if data is None else 'POST')
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def png_bytes(img):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format='PNG')
    return buf.getvalue()


def decode(b64):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_api_renders_edits_at_any_cost(server, tiny):
    ed, url = server
    code, info = call(url, '/api/info')
    assert code == 200
    assert info['directions'] == ['red', 'blue'] and len(info['latents']) == 2
    assert info['ratios'] == [1.0, 0.75, 0.5, 0.25] and info['resolutions'] == [16, 8, 4]
    assert info['preview'] == {'channel_ratio': 0.25, 'target_res': 8}

    code, sel = call(url, '/api/select', {'latent': 1})
    assert code == 200 and sel['original'] is None  # sampled latents have no input image
    full = decode(sel['image'])
    assert full.shape == (RES, RES, 3)

    base = {'latent': 1, 'channel_ratio': 0.25, 'target_res': 8}
    _, plain = call(url, '/api/render', base)
    _, moved = call(url, '/api/render', {**base, 'strengths': {'red': 1.0}})
    a, b = decode(plain['image']), decode(moved['image'])
    assert a.shape == (8, 8, 3) and plain['target_res'] == 8 and plain['ms'] > 0
    # the page shows the computation the preview saves beside its time
    assert plain['macs'] == macs.generator_macs(ed.gen, channel_ratio=0.25, target_res=8)
    assert plain['full_macs'] == macs.generator_macs(ed.gen) > 2 * plain['macs']
    assert np.abs(a.astype(int) - b).max() > 0  # the slider changes the preview
    # The edit is w + strength * max_strength * direction on the latent's layers.
    w = ed.edited(1, {'red': 1.0})
    np.testing.assert_allclose(w - ed.latents[1].w_plus,
                               np.broadcast_to(ed.max_strength * tiny[2]['red'], w.shape), rtol=1e-5, atol=1e-5)

    # Full width at full resolution is what /api/finalize and the unedited select render.
    _, fin = call(url, '/api/finalize', {'latent': 1, 'strengths': {}})
    assert fin['final'] and fin['channel_ratio'] == 1.0 and fin['target_res'] == RES
    np.testing.assert_array_equal(decode(fin['image']), full)
    _, same = call(url, '/api/render', {**base, 'channel_ratio': 1.0, 'target_res': RES})
    np.testing.assert_array_equal(decode(same['image']), full)
    _, narrow = call(url, '/api/render', {**base, 'target_res': RES})
    assert np.abs(decode(narrow['image']).astype(int) - full).max() > 0  # 0.25x differs from the full width


def test_offers_only_the_trained_resolutions(tiny, caplog):
    gen, variables, directions = tiny
    trained = gen.clone(trained_resolutions=(16, 8))  # as a 16 px generator trained at 16 and 8 px is exported
    latents = editor_lib.seed_latents(trained, variables, [0])
    ed = editor_lib.Editor(trained, variables, directions, latents)
    assert ed.info()['resolutions'] == [16, 8] and ed.preview == (0.25, 8)
    assert {res for _, res in ed.configs()} == {16, 8}  # nothing untrained is compiled ahead of time
    with caplog.at_level('WARNING'):  # asked for explicitly: offered, with one warning line
        ed = editor_lib.Editor(trained, variables, directions, latents, preview_res=4)
    assert ed.info()['resolutions'] == [16, 8, 4] and ed.preview == (0.25, 4)
    assert [r.getMessage() for r in caplog.records if r.levelname == 'WARNING'] == [
        'preview resolution 4 px: not trained (this generator was trained at 16, 8 px), so expect no learned '
        'image there']


def test_api_drops_stale_requests_and_rejects_bad_ones(server):
    ed, url = server
    base = {'latent': 0, 'channel_ratio': 0.5, 'target_res': 4, 'client': 'tab-a'}
    n = ed.renders
    assert 'image' in call(url, '/api/render', {**base, 'seq': 5})[1]
    # An older request of the same page arriving late is answered without rendering.
    assert call(url, '/api/render', {**base, 'seq': 4})[1] == {'stale': True, 'seq': 4}
    assert 'image' in call(url, '/api/render', {**base, 'seq': 1, 'client': 'tab-b'})[1]  # pages are separate
    assert ed.renders == n + 2

    for body, message in [({'latent': 7}, 'latent must be an index'),
                          ({'strengths': {'green': 0.5}}, "unknown directions ['green']"),
                          ({'strengths': {'red': 3}}, 'in [-1, 1]'),
                          ({'channel_ratio': 0.3}, 'channel_ratio must be one of'),
                          ({'target_res': 32}, 'target_res must be one of')]:
        code, out = call(url, '/api/render', body)
        assert code == 400 and message in out['error'], (body, out)
    code, out = call(url, '/api/render', raw=b'{not json')
    assert code == 400 and 'not JSON' in out['error']
    code, out = call(url, '/api/upload', raw=b'not an image')
    assert code == 400 and 'not an image' in out['error']


@pytest.mark.slow
def test_api_projects_an_upload(server, tiny):
    ed, url = server
    img = np.zeros((24, 20, 3), np.uint8)
    img[:, :10] = (200, 40, 40)
    code, out = call(url, '/api/upload?name=' + urllib.parse.quote('my photo.png'), raw=png_bytes(img))
    assert code == 200
    for _ in range(600):
        code, job = call(url, f'/api/job?id={out["job"]}')
        if job['done']:
            break
        time.sleep(0.2)
    assert job['error'] is None and job['step'] == job['steps'] == 2
    i = job['latent']
    assert ed.latents[i].w_plus.shape == (tiny[0].n_style, tiny[0].style_dim)
    assert ed.latents[i].name == 'my photo'  # listed under the uploaded file's name
    code, sel = call(url, '/api/select', {'latent': i})
    original = decode(sel['original'])
    assert original.shape == (RES, RES, 3) and original[8, 2, 0] > 150  # the centre crop, resized
    assert call(url, '/api/job?id=99')[0] == 400


def test_folder_latents(tmp_path, tiny):
    gen = tiny[0]
    w = np.random.default_rng(1).standard_normal((gen.n_style, gen.style_dim)).astype(np.float32)
    np.save(tmp_path / 'b.npy', w[None])                # [1, n_style, style_dim], as the projector writes
    np.save(tmp_path / 'a.npy', w[0])                   # one w: repeated over the layers
    np.save(tmp_path / 'c.npy', w)
    Image.fromarray(np.full((RES, RES, 3), 9, np.uint8)).save(tmp_path / 'b.png')
    pair = np.concatenate([np.full((RES, RES, 3), 7, np.uint8), np.full((RES, RES, 3), 250, np.uint8)], axis=1)
    Image.fromarray(pair).save(tmp_path / 'c_projection.png')  # launch/project.py: target | projection
    latents = editor_lib.folder_latents(str(tmp_path), gen)
    assert [l.name for l in latents] == ['a', 'b', 'c']
    np.testing.assert_array_equal(latents[0].w_plus, np.repeat(w[:1], gen.n_style, 0))
    np.testing.assert_array_equal(latents[1].w_plus, w)
    assert latents[0].original is None and latents[1].original[0, 0, 0] == 9
    assert latents[2].original.shape == (RES, RES, 3) and (latents[2].original == 7).all()
    with pytest.raises(FileNotFoundError, match='launch/project.py'):
        editor_lib.folder_latents(str(tmp_path / 'missing'), gen)
    # Unreadable files among them: skipped (a latent) or left out (an input image), counted in one warning each.
    np.save(tmp_path / 'd.npy', np.zeros((3, 5)))                  # another generator's
    (tmp_path / 'e.npy').write_text('not a latent')
    (tmp_path / 'a.png').write_text('not an image')
    warnings = []
    latents = editor_lib.folder_latents(str(tmp_path), gen, warn=warnings.append)
    assert [l.name for l in latents] == ['a', 'b', 'c'] and latents[0].original is None
    assert len(warnings) == 2
    assert warnings[0].startswith('warning: skipped 2 of 5 latents, which cannot be read: ')
    assert 'd.npy: latent of shape' in warnings[0] and 'and 1 more' in warnings[0]
    assert warnings[1].startswith('warning: showing 1 latents without their input image, which cannot be read: ')
    assert 'a:' in warnings[1]
    only_bad = tmp_path / 'bad'
    only_bad.mkdir()
    np.save(only_bad / 'd.npy', np.zeros((3, 5)))
    with pytest.raises(ValueError, match="none of its 1 latents is usable: .*d.npy: latent of shape"):
        editor_lib.folder_latents(str(only_bad), gen)


def test_color_directions_are_cached(tmp_path, tiny, monkeypatch):
    gen, variables, _ = tiny
    cache = str(tmp_path / 'colors.npz')
    first = editor_lib.color_directions(gen, variables, cache, n_samples=200, progress=False)
    assert os.path.exists(cache) and sorted(first) == sorted(directions_lib.COLOR_ATTRIBUTES)
    for v in first.values():  # unit normals in W
        assert v.shape == (gen.style_dim,) and abs(np.linalg.norm(v) - 1) < 1e-4

    def fail(*a, **k):
        raise AssertionError('recomputed despite the cache')
    monkeypatch.setattr(directions_lib, 'compute_directions', fail)
    again = editor_lib.color_directions(gen, variables, cache)
    assert sorted(again) == sorted(first)
    for k in first:
        np.testing.assert_allclose(np.asarray(again[k]).reshape(-1), np.asarray(first[k]).reshape(-1))
    # The slider range is the directions' own (3 std of the sampled w along them), kept by the cache ...
    assert first.max_strength > 0 and again.max_strength == pytest.approx(first.max_strength, rel=1e-6)
    # ... and by a saved .npz: computed or loaded, the editor's sliders span the same range.
    saved = str(tmp_path / 'saved.npz')
    directions_lib.save_directions(saved, first)
    latents = editor_lib.seed_latents(gen, variables, [0])
    ranges = {editor_lib.Editor(gen, variables, d, latents).max_strength
              for d in (first, directions_lib.load_boundaries(saved), directions_lib.select(first, ['red']))}
    assert len(ranges) == 1 and ranges.pop() == pytest.approx(first.max_strength, rel=1e-6)
    # Directions without a range (the original's boundary .pt) keep the original demo's 0.6.
    assert editor_lib.Editor(gen, variables, dict(first), latents).max_strength == editor_lib.MAX_STRENGTH


def test_launcher_says_how_to_get_the_default_generator(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'editor.py')], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert 'runs/demo/generator does not exist' in proc.stderr and 'launch/train.py' in proc.stderr


def test_a_busy_port_fails_before_the_warmup(tiny):
    gen, variables, directions = tiny
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        port = busy.getsockname()[1]

        class Unwarmed(editor_lib.Editor):
            def warmup(self, *a, **k):
                raise AssertionError('warmed up before taking the port')
        ed = Unwarmed(gen, variables, directions, editor_lib.seed_latents(gen, variables, [0]))
        with pytest.raises(editor_lib.EditorError, match=f'127.0.0.1:{port} is already in use.*--port=0'):
            editor_lib.serve(ed, '127.0.0.1', port)
        # The launcher takes the port first: before the generator (here: none) is even looked for.
        proc = subprocess.run([sys.executable, os.path.join(ROOT, 'launch', 'editor.py'), '--generator=/nowhere',
                               f'--port={port}'], capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, JAX_PLATFORMS='cpu'))
    assert proc.returncode == 2
    assert re.fullmatch(f'error: --port={port}: 127.0.0.1:{port} is already in use .*pass --port=0 to pick a free '
                        f'port.*\n', proc.stderr), proc.stderr[-3000:]


# --------------------------------------------------------------------------- the page in Chromium


def chromium_or_fail():
    """The Playwright entry point, once the system Chromium is there.

    Outside CI a missing browser skips the test (the README's set-up installs Python packages
    only); under CI (``CI`` set, as ``.ci/run`` runs, which installs Chromium) it fails.
    """
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        why = (f'no Chromium at {CHROMIUM}: the editor test drives the page in headless Chromium. Install it '
               f'with "apt-get install -y chromium" (Debian/Ubuntu; .ci/run does this), or point '
               f'ANYCOST_CHROMIUM at a Chromium binary')
        if os.environ.get('CI', '').lower() in ('', '0', 'false'):
            pytest.skip(why)
        pytest.fail(why + ' (CI is set: the browser test is required there)')
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail('playwright is missing: pip install -e ".[test]" (never "playwright install": the test uses '
                    'the system Chromium)')
    return sync_playwright


@pytest.fixture(scope='module')
def launched(tiny, tmp_path_factory):
    """launch/editor.py on a saved tiny generator, with saved directions, on a free port."""
    gen, variables, directions = tiny
    tmp = tmp_path_factory.mktemp('editor')
    convert.save_model(str(tmp / 'generator'), gen, variables)
    directions_lib.save_directions(str(tmp / 'directions.npz'), directions)
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'launch', 'editor.py'), f'--generator={tmp / "generator"}',
         f'--boundaries={tmp / "directions.npz"}', '--seeds=0-2', '--port=0', '--preview_res=8',
         f'--project_steps={PROJECT["steps"]}', f'--project_optimizer={PROJECT["optimizer"]}',
         '--noproject_sub_g'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # blocks until the launcher prints its URL (or exits)
        lines.append(line)
        m = re.search(r'open (http://\S+)', line)
        if m:
            break
    else:
        proc.wait()
        pytest.fail('launch/editor.py exited before serving:\n' + ''.join(lines)[-3000:])
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # keep the pipe drained
    yield m.group(1)
    proc.terminate()
    proc.wait(timeout=30)


def test_page_in_headless_chromium(launched):
    sync_playwright = chromium_or_fail()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors = []
            page.on('pageerror', lambda e: errors.append(str(e)))
            page.goto(launched)
            page.wait_for_selector('body[data-ready="1"]', timeout=60_000)
            page.wait_for_function('document.getElementById("preview").dataset.seq !== undefined && '
                                   'document.body.dataset.busy === "0"')
            assert page.locator('#attributes input[type=range]').count() == 2
            assert page.input_value('#ratio') == '0.25' and page.input_value('#res') == '8'

            def preview_after(action):
                before = page.get_attribute('#preview', 'src'), page.get_attribute('#preview', 'data-seq')
                action()
                page.wait_for_function(f'document.getElementById("preview").dataset.seq !== "{before[1]}" && '
                                       f'document.body.dataset.busy === "0"')
                return before[0], page.get_attribute('#preview', 'src')

            def drag(value):  # what a slider move fires: an input event per position
                page.eval_on_selector('#attr-red', f'(el) => {{ el.value = {value}; '
                                      'el.dispatchEvent(new Event("input", {bubbles: true})); }')

            old, new = preview_after(lambda: drag(80))
            assert old != new
            assert float(page.inner_text('#preview-ms')) > 0 and float(page.inner_text('#preview-rtt')) >= 0
            assert page.evaluate('document.getElementById("preview").naturalWidth') == 8

            # A burst of 41 slider positions: at most one request in flight, and when it returns only
            # the newest state is sent, so a couple of renders cover the burst and the last one wins.
            sent = []
            page.on('request', lambda r: sent.append(r) if r.url.endswith('/api/render') else None)
            page.eval_on_selector('#attr-red', '(el) => { for (let v = -100; v <= 100; v += 5) { el.value = v; '
                                  'el.dispatchEvent(new Event("input", {bubbles: true})); } }')
            page.wait_for_function('document.body.dataset.busy === "0"')
            assert 1 <= len(sent) <= 3, len(sent)
            _, want = call(launched, '/api/render', {'latent': 0, 'strengths': {'red': 1.0, 'blue': 0.0},
                                                      'channel_ratio': 0.25, 'target_res': 8})
            assert page.get_attribute('#preview', 'src') == 'data:image/png;base64,' + want['image']

            # Another width: the preview changes.
            old, new = preview_after(lambda: page.select_option('#res', '16'))
            assert page.evaluate('document.getElementById("preview").naturalWidth') == 16
            old, new = preview_after(lambda: page.select_option('#ratio', '0.5'))
            assert old != new

            # Before any Finalize the final panel shows a placeholder text, not a broken image.
            assert page.is_visible('#final-placeholder') and not page.is_visible('#final')
            page.click('#finalize')
            page.wait_for_function('document.getElementById("final-ms").textContent !== "-"')
            assert page.is_visible('#final') and not page.is_visible('#final-placeholder')
            final_src, preview_src = page.get_attribute('#final', 'src'), page.get_attribute('#preview', 'src')
            assert final_src != preview_src  # 0.5x preview vs the full width, both at 16 px
            assert float(page.inner_text('#final-ms')) > 0 and float(page.inner_text('#final-rtt')) >= 0
            assert 'stale' not in (page.get_attribute('#final', 'class') or '')

            # Full width at full resolution: the preview equals the final render.
            preview_after(lambda: page.select_option('#ratio', '1'))
            assert page.get_attribute('#preview', 'src') == final_src

            # Moving a slider marks the final render stale; Reset clears it and zeroes the sliders.
            preview_after(lambda: drag(-40))
            assert 'stale' in page.get_attribute('#final', 'class')
            preview_after(lambda: page.click('#reset'))
            assert page.input_value('#attr-red') == '0' and page.get_attribute('#final', 'src') is None
            assert page.is_visible('#final-placeholder')

            # Upload an image: it is projected, added to the list and selected, and shown as the input.
            unedited = page.get_attribute('#input', 'src')
            page.set_input_files('#upload', files=[{'name': 'mine.png', 'mimeType': 'image/png',
                                                    'buffer': png_bytes(np.full((20, 20, 3), 200, np.uint8))}])
            page.wait_for_function('document.getElementById("latent").options.length === 4 && '
                                   'document.getElementById("input-title").textContent === "input" && '
                                   'document.body.dataset.busy === "0"', timeout=300_000)
            assert page.input_value('#latent') == '3' and page.get_attribute('#input', 'src') != unedited
            assert page.eval_on_selector('#latent', '(el) => el.options[el.selectedIndex].text') == 'mine'
            assert decode(page.get_attribute('#input', 'src').split(',')[1])[0, 0].tolist() == [200, 200, 200]
            assert not errors, errors
        finally:
            browser.close()


def test_load_editor_refuses_bad_arguments_before_loading():
    with pytest.raises(ValueError, match=r'--truncation=1.5 is outside \[0, 1\]'):
        editor_lib.load_editor('/nowhere', truncation=1.5)
    with pytest.raises(ValueError, match='channel_ratio=0.3 is not supported'):
        editor_lib.load_editor('/nowhere', preview_ratio=0.3)
