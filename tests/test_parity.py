"""Parity with the original PyTorch implementation (see tests/parity.py for the reference data).

The fixture was made by running the original code (native ops, CPU) on a 32x32 model whose
parameters were all drawn at random (biases, noise strengths and modulation biases non-zero),
saving it with torch.save and recording its outputs. Tolerance: 1e-4 relative max error.
"""
import os

import jax
import pytest

from tests import parity

FIX = os.path.join(os.path.dirname(__file__), 'fixtures')
PT, NPZ = os.path.join(FIX, 'original_tiny.pt'), os.path.join(FIX, 'original_tiny_expected.npz')
TOL = 1e-4


@pytest.fixture(autouse=True)
def _highest_precision():
    with jax.default_matmul_precision('highest'):
        yield


def test_generator_matches_original_every_width_and_resolution():
    errors = dict(parity.generator_errors(PT, NPZ))
    assert len(errors) > 40  # 4 ratios x 4 targets (sliced, masked, intermediate rgbs) + flexible + mixing
    bad = {k: e for k, e in errors.items() if e > TOL}
    assert not bad, bad


def test_discriminators_match_original_every_resolution():
    errors = dict(parity.discriminator_errors(PT, NPZ))
    assert {k.split()[0] for k in errors} == {'d_mod', 'd_multi', 'd_plain'}
    bad = {k: e for k, e in errors.items() if e > TOL}
    assert not bad, bad
