"""Runs code against a checkout of the original PyTorch Anycost GAN, in the torch interpreter.

The benchmarks compare our programs with the original ones. The original lives outside this
repository (``--original_repo``) and needs PyTorch, which our environment does not have, so it
runs in a separate interpreter (``--original_python``): the code is given a JSON spec as its only
argument (with ``repo`` and ``out`` added here), imports the original from ``spec['repo']`` and
writes its result as JSON to ``spec['out']``. ``FORCE_NATIVE=1`` is set, so the original uses its
native (pure PyTorch) ops instead of building its CUDA extensions.

Nothing here imports torch or the original: this module only starts the process and reads back.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


class OriginalFailed(RuntimeError):
    """The torch-side process exited non-zero or wrote no result; the message ends with its output's tail."""


def xla_cores() -> int:
    """Cores this process (and so XLA:CPU) may run on; the original gets as many torch threads by default."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


def run(python: str, code: list[str], repo: str, spec: dict) -> dict:
    """Runs ``python *code SPEC_JSON`` and returns the JSON it wrote to ``spec['out']``.

    ``code`` is ``['-c', source]`` or ``[script_path]``; ``repo`` the original checkout.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'out.json')
        spec = dict(spec, repo=os.path.abspath(repo), out=out)
        env = dict(os.environ, FORCE_NATIVE='1')
        # The original prints its "using native op" notice on stdout: keep only the tail for errors.
        proc = subprocess.run([python, *code, json.dumps(spec)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if proc.returncode or not os.path.exists(out):
            tail = ' | '.join(proc.stdout.strip().splitlines()[-3:])
            raise OriginalFailed(f'{python} exited {proc.returncode}: {tail}')
        with open(out) as f:
            return json.load(f)
