"""What every launcher in ``launch/`` shares: routine mistakes as one line, and the sources a
generator may be loaded from.

:func:`run` is ``absl.app.run`` for a launcher. A flag that does not parse, an
``app.UsageError``, a :class:`UserError`, or a ``ValueError`` / ``OSError`` (what the library
raises for bad input: a missing file, a value out of range, a file that is not what it should
be) prints ``error: <message>`` on one line and exits with status 2, without absl's flag help.
Any other exception is a bug and keeps its traceback (``--verbosity=1`` keeps it for these too).
A failed run removes the output folders it created and left empty.

Generators load through :func:`anycost_jax.convert.load_generator`, the one resolver of
:data:`GENERATOR_SOURCES` (a training workdir included).

Libraries' INFO lines (Orbax logs every phase of a restore) are kept out of a launcher's output
unless ``--verbosity`` is given (:func:`quiet_libraries`). ``TF_CPP_MIN_LOG_LEVEL`` is set here,
at import, before anything imports TensorFlow, which reads it once; TensorFlow 2.21's oneDNN
notice is printed before its C++ logging starts and ignores it.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn, Sequence

from absl import app, flags, logging


def _verbosity_requested(argv: Sequence[str]) -> bool:
    return any(a.split('=')[0] in ('--verbosity', '-v') for a in argv[1:])


if not _verbosity_requested(sys.argv):
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')  # 1: TensorFlow's C++ INFO lines off, warnings kept

USAGE_STATUS = 2
GENERATOR_SOURCES = 'an original .pt, our model directory, a training workdir (e.g. runs/demo) or an http(s) URL'


class UserError(Exception):
    """A mistake in a launcher's arguments: reported as one line, without a traceback."""


# What users cause: the library reports bad input as ValueError / OSError (FileNotFoundError included).
ROUTINE = (UserError, app.UsageError, ValueError, OSError)


def one_line(error) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return '; '.join(lines) or type(error).__name__


def fail(error) -> NoReturn:
    """Prints ``error: <error>`` on one line to stderr and exits with :data:`USAGE_STATUS`."""
    print(f'error: {one_line(error)}', file=sys.stderr, flush=True)
    sys.exit(USAGE_STATUS)


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl's flag parsing, a bad flag as one line (absl prints two and exits with 1)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(e)


# Libraries whose INFO records only narrate their internals (Orbax: a dozen lines per restore;
# JAX: the backends it could not open).
# Training progress is INFO too, from this package and from clu's writers, so those stay.
QUIET_LIBRARIES = ('orbax', 'tensorflow', 'tensorflow_datasets', 'etils', 'jax')


class _QuietLibraries:
    """A logging filter: INFO and below from :data:`QUIET_LIBRARIES` dropped, everything else kept."""

    def __init__(self, libraries: Sequence[str] = QUIET_LIBRARIES):
        self.parts = tuple(f'{os.sep}{name}{os.sep}' for name in libraries)

    def filter(self, record) -> bool:
        return record.levelno >= logging.converter.STANDARD_WARNING or not any(
            p in record.pathname for p in self.parts)


def quiet_libraries(argv: Sequence[str] = ()) -> None:
    """Drops the INFO records of :data:`QUIET_LIBRARIES` from absl's handler, unless ``--verbosity``
    is in ``argv``; their warnings and errors, and everyone else's INFO, stay."""
    if _verbosity_requested(argv):
        return
    handler = logging.get_absl_handler()
    if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
        handler.addFilter(_QuietLibraries())


def _new_folders(paths: Sequence[str]) -> list[str]:
    """Of ``paths`` and their parent folders, those that do not exist yet, deepest first."""
    new = []
    for path in paths:
        if not path or '://' in path:
            continue
        path = os.path.abspath(os.path.expanduser(path))
        while not os.path.exists(path) and path not in new:
            new.append(path)
            path = os.path.dirname(path)
    return sorted(new, key=len, reverse=True)


def _remove_empty(folders: Sequence[str]) -> None:
    for folder in folders:  # deepest first: a parent empties once its new child is gone
        if os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)


def guard(main: Callable, outputs: Sequence[str] = ()) -> Callable:
    """``main`` with routine mistakes reported by :func:`fail`; on any failure, the folders of the
    flags named in ``outputs`` (folders, or files whose folders the run makes) that the run
    created and left empty are removed."""

    def guarded(argv):
        new = _new_folders([flags.FLAGS[name].value for name in outputs])
        quiet_libraries(sys.argv)
        try:
            return main(argv)
        except BaseException as e:
            if isinstance(e, SystemExit) and not e.code:
                raise
            _remove_empty(new)
            if isinstance(e, ROUTINE) and logging.get_verbosity() < logging.DEBUG:
                fail(e)
            raise

    return guarded


def run(main: Callable, outputs: Sequence[str] = ()) -> None:
    """``app.run(main)`` for a launcher (see the module docstring); ``outputs``: as :func:`guard`."""
    app.run(guard(main, outputs), flags_parser=parse_flags)


IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp', '.bmp')


def image_files(entries: Sequence[str], flag: str) -> list[str]:
    """The image files of ``entries`` (files, or folders read non-recursively and sorted), for the
    launcher flag ``flag`` that named them (errors say which)."""
    files = []
    for entry in entries:
        if os.path.isdir(entry):
            found = sorted(os.path.join(entry, f) for f in os.listdir(entry) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise FileNotFoundError(f'{flag}: folder {entry!r} has no {"/".join(IMAGE_EXTENSIONS)} images')
            files += found
        elif os.path.isfile(entry):
            files.append(entry)
        else:
            raise FileNotFoundError(f'{flag}: {entry!r} is neither a file nor a folder')
    if not files:
        raise UserError(f'{flag}: no input files given')
    return files
