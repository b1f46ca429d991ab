"""Dependencies point one way (DESIGN.md): launch -> train | eval | editing | search ->
models | losses | elastic | data | convert -> nn. Read from the source, so a new upward import
fails here rather than in a reviewer's head."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, 'anycost_jax')
TOP = ('train', 'eval', 'editing', 'search')
# What each part of the package must not import (by its first component under anycost_jax).
FORBIDDEN = {
    'nn': set(TOP) | {'models', 'losses', 'elastic', 'data', 'convert', 'macs', 'checkpoint', 'workdir',
                      'modeldir', 'download', 'render', 'sharding'},
    'models': set(TOP) | {'losses', 'data', 'convert', 'checkpoint', 'workdir', 'modeldir', 'download'},
    'losses': set(TOP) | {'data', 'convert', 'checkpoint', 'workdir', 'modeldir', 'download'},
    'elastic': set(TOP) | {'losses', 'data', 'convert', 'checkpoint', 'workdir', 'modeldir', 'download'},
    'data': set(TOP) | {'models', 'losses', 'elastic', 'convert', 'checkpoint', 'workdir', 'modeldir'},
    'convert': set(TOP) | {'losses', 'data', 'checkpoint'},
    'macs': set(TOP) | {'data', 'convert', 'checkpoint', 'workdir', 'modeldir', 'download'},
    'sharding': set(TOP) | {'models', 'losses', 'elastic', 'data', 'convert'},
    'checkpoint': set(TOP) | {'models', 'losses', 'elastic', 'data', 'convert'},
    'workdir': set(TOP) | {'models', 'losses', 'elastic', 'data', 'convert'},
    'modeldir': set(TOP) | {'losses', 'data', 'convert'},
    'eval': {'train', 'editing', 'search'},
    'search': {'train', 'editing'},
    'editing': {'train', 'search'},
}


def _modules():
    for dirpath, _, files in os.walk(PKG):
        for f in files:
            if f.endswith('.py'):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, PKG)
                yield rel, path


def _imports(path):
    """Every anycost_jax submodule (first component) this file imports, anywhere in it."""
    tree = ast.parse(open(path).read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f'{node.module}.{a.name}' for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for n in names:
            parts = n.split('.')
            if parts[0] in ('launch', 'configs', 'tests', 'benchmarks'):
                out.add(parts[0])
            elif parts[0] == 'anycost_jax' and len(parts) > 1:
                out.add(parts[1])
    return out


@pytest.mark.parametrize('rel,path', sorted(_modules()))
def test_no_module_imports_upward(rel, path):
    part = rel.split(os.sep)[0].removesuffix('.py')
    imported = _imports(path)
    assert not imported & {'launch', 'configs', 'tests', 'benchmarks'}, f'{rel} imports a launcher, config or test'
    bad = sorted(imported & FORBIDDEN.get(part, set()))
    assert not bad, f'anycost_jax/{rel} ({part}) imports {bad}, which sit above it'
