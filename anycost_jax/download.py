"""Downloads into the local cache (``$ANYCOST_CACHE``, default ``~/.cache/anycost_jax``).

One mechanism for every file the package fetches (original checkpoints, the FID Inception
weights): :func:`cache_path` names a URL's file in the cache, :func:`cached` fetches it once.
Downloads are streamed with progress on stderr, written under a unique partial name and renamed
into place only when complete (and, when a sha256 prefix is expected, only when it matches),
so an interrupted or corrupt download never leaves a file a later call would trust.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.parse
import urllib.request
from typing import Optional


def cache_dir() -> str:
    return os.environ.get('ANYCOST_CACHE', os.path.join(os.path.expanduser('~'), '.cache', 'anycost_jax'))


def url_basename(url: str) -> str:
    """The file name at the end of ``url``'s path ('download' if it has none)."""
    return os.path.basename(urllib.parse.urlparse(url).path) or 'download'


def cache_path(url: str, name: Optional[str] = None, folder: Optional[str] = None) -> str:
    """Where :func:`cached` keeps ``url``.

    Args:
      url: the URL.
      name: the file name; default ``<sha256(url)[:12]>-<basename>``, which keeps URLs that end in
        the same file name apart.
      folder: the folder; default :func:`cache_dir`.
    Returns:
      The local path (which may not exist yet).
    """
    if name is None:
        name = f'{hashlib.sha256(url.encode()).hexdigest()[:12]}-{url_basename(url)}'
    return os.path.join(cache_dir() if folder is None else os.path.expanduser(os.fspath(folder)), name)


def cached(url: str, dest: Optional[str] = None, *, expected_sha256: Optional[str] = None, advice: str = '') -> str:
    """Downloads ``url`` unless ``dest`` exists, and returns ``dest``.

    Args:
      url: the URL.
      dest: the local path; default :func:`cache_path` of ``url``.
      expected_sha256, advice: as for :func:`download`.
    Returns:
      ``dest``.
    """
    dest = cache_path(url) if dest is None else dest
    if not os.path.exists(dest):
        download(url, dest, expected_sha256=expected_sha256, advice=advice)
    return dest


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: str, *, expected_sha256: Optional[str] = None, advice: str = '') -> None:
    """Streams ``url`` to ``dest`` atomically.

    ``expected_sha256``: a hex prefix the contents must start with (checked before the file
    appears). ``advice`` ends the error raised when the download fails (what the user can do).
    """
    folder = os.path.dirname(os.path.abspath(dest))
    os.makedirs(folder, exist_ok=True)
    # A unique partial name: concurrent downloads of the same URL must not write into one file.
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(dest) + '.', suffix='.partial', dir=folder)
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, os.fdopen(fd, 'wb') as f:
            total = int(resp.headers.get('Content-Length') or 0)
            done = 0
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                h.update(chunk)
                done += len(chunk)
                pct = f' {100 * done / total:5.1f}%' if total else ''
                print(f'\rdownloading {url}: {done / 2 ** 20:.1f} MiB{pct}', end='', file=sys.stderr, flush=True)
            print(file=sys.stderr)
        if total and done != total:
            raise OSError(f'download of {url} stopped after {done} of {total} bytes')
    except BaseException as e:  # keep no partial file behind
        if os.path.exists(tmp):
            os.remove(tmp)
        if not isinstance(e, Exception):  # KeyboardInterrupt etc.: clean up, then let it through
            raise
        raise OSError(f'could not download {url} ({e}). {advice}'.strip()) from e
    if expected_sha256 is not None and not h.hexdigest().startswith(expected_sha256):
        os.remove(tmp)
        raise OSError(f'the file downloaded from {url} is corrupt: its sha256 is {h.hexdigest()[:16]}..., '
                      f'expected {expected_sha256}...; nothing was cached, try again')
    os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared
    os.replace(tmp, dest)
