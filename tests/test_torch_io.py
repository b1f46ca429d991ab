"""Tests for anycost_jax.convert.torch_io (torch.save files without PyTorch).

Fixture provenance
------------------
``fixtures/torch_saved.pt``, ``fixtures/torch_saved_legacy.pt`` and
``fixtures/torch_saved_expected.npz`` were generated with real PyTorch 2.13
(CPU) by ``fixtures/make_torch_io_fixture.py`` (run in a torch environment;
the project itself must not depend on torch), which builds a dict with:

* ``'g_ema'``: an OrderedDict of float32 tensors -- ``conv.weight`` (2, 3, 3, 3)
  from ``torch.randn`` with seed 0; ``linear.weight_t``, a (3, 5) random tensor
  transposed and saved as the non-contiguous view; ``base`` =
  ``arange(24).reshape(4, 6) * 0.5 - 3``; ``bias_slice`` = ``base[1:3, 2:5]``
  and ``every_other`` = ``base[:, ::2]``, views sharing base's storage
  (storage offset 8, and stride 2);
* ``'half'`` float16, ``'steps'`` int64 (incl. +-2**40/2**62), ``'mask'`` bool,
  ``'scalar'`` a 0-d float32 tensor 3.25, ``'bf16'`` bfloat16, ``'u16'``
  uint16 (written by torch with ``_rebuild_tensor_v3``), ``'param'`` an
  ``nn.Parameter`` of [0.25, 0.75];
* ``'nested'`` = ``[1, [2.5, 'x', None], (3, tensor([7., 8.]))]``,
  ``'iteration'`` = 123456, ``'name'`` = 'anycost-ffhq-config-f';
* ``'args'`` = ``argparse.Namespace(size=1024, channel_multiplier=2, n_mlp=8,
  name='anycost-ffhq')``.

``torch_saved.pt`` is ``torch.save(ckpt, path)`` (zip format; torch named
the archive folder ``torch_saved/``); ``torch_saved_legacy.pt`` is the same
dict without ``'u16'`` saved with ``_use_new_zipfile_serialization=False``.
The npz holds ``tensor.numpy()`` of every tensor, keyed ``g_ema.<name>``,
``half``, ``steps``, ``mask``, ``scalar``, ``u16``, ``param``,
``nested_tensor`` and ``bf16_as_float32`` (bfloat16 widened by torch, exact).

Separately (not in these tests, which must run without torch), files written
by ``save_torch_file`` were checked to load in torch 2.13 with
``torch.load(path)`` (``weights_only=True``) and with ``mmap=True``.
"""

import collections
import io
import os
import pickle
import struct
import tarfile
import zipfile

import ml_dtypes
import numpy as np
import pytest

from anycost_jax.convert.torch_io import (TorchFileError, UnpickledObject, load_torch_file,
                                          save_torch_file)

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
ZIP_FIXTURE = os.path.join(FIXTURES, 'torch_saved.pt')
LEGACY_FIXTURE = os.path.join(FIXTURES, 'torch_saved_legacy.pt')


@pytest.fixture(scope='module')
def expected():
    with np.load(os.path.join(FIXTURES, 'torch_saved_expected.npz')) as data:
        return dict(data)


def assert_same_array(actual, wanted):
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == wanted.dtype
    assert actual.shape == wanted.shape
    np.testing.assert_array_equal(actual, wanted)


# ---------------------------------------------------------------------------
# Files written by real torch
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('path', [ZIP_FIXTURE, LEGACY_FIXTURE], ids=['zip', 'legacy'])
def test_loads_file_written_by_torch(path, expected):
    ckpt = load_torch_file(path)

    assert type(ckpt['g_ema']) is collections.OrderedDict
    assert list(ckpt['g_ema']) == ['conv.weight', 'linear.weight_t', 'base', 'bias_slice',
                                   'every_other']
    for name, tensor in ckpt['g_ema'].items():
        assert_same_array(tensor, expected[f'g_ema.{name}'])
        assert tensor.flags.c_contiguous and tensor.flags.writeable

    for key in ('half', 'steps', 'mask', 'scalar', 'param'):
        assert_same_array(ckpt[key], expected[key])
    assert ckpt['scalar'].shape == () and ckpt['scalar'] == 3.25
    assert ckpt['steps'][1, 2] == -(2 ** 62)

    # bfloat16 stays bfloat16 (ml_dtypes), exactly.
    assert ckpt['bf16'].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(ckpt['bf16'].astype(np.float32), expected['bf16_as_float32'])

    nested = ckpt['nested']
    assert nested[:2] == [1, [2.5, 'x', None]]
    assert type(nested[2]) is tuple and nested[2][0] == 3
    assert_same_array(nested[2][1], expected['nested_tensor'])
    assert ckpt['iteration'] == 123456
    assert ckpt['name'] == 'anycost-ffhq-config-f'

    # The Namespace is not rebuilt (nothing outside the allow-list runs) but
    # its fields are all there.
    args = ckpt['args']
    assert isinstance(args, UnpickledObject)
    assert (args.module, args.name) == ('argparse', 'Namespace')
    assert args.state == {'size': 1024, 'channel_multiplier': 2, 'n_mlp': 8,
                          'name': 'anycost-ffhq'}


def test_loads_untyped_storage_tensor_from_torch(expected):
    # uint16 is written by torch as _rebuild_tensor_v3 over an UntypedStorage.
    assert_same_array(load_torch_file(ZIP_FIXTURE)['u16'], expected['u16'])


def test_views_of_one_storage_load_as_independent_arrays():
    g_ema = load_torch_file(ZIP_FIXTURE)['g_ema']
    before = g_ema['base'].copy()
    g_ema['bias_slice'][:] = 0
    np.testing.assert_array_equal(g_ema['base'], before)


def test_fixtures_are_tiny():
    names = ('torch_saved.pt', 'torch_saved_legacy.pt', 'torch_saved_expected.npz')
    assert sum(os.path.getsize(os.path.join(FIXTURES, name)) for name in names) < 50_000


# ---------------------------------------------------------------------------
# save -> load round trips
# ---------------------------------------------------------------------------

def round_trip(obj, tmp_path):
    path = tmp_path / 'ckpt.pt'
    save_torch_file(obj, path)
    return load_torch_file(path)


@pytest.mark.parametrize('dtype', [
    np.float32, np.float64, np.float16, ml_dtypes.bfloat16, np.complex64, np.complex128,
    np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_, np.uint16, np.uint32,
    np.uint64, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2,
], ids=lambda d: np.dtype(d).name)
def test_round_trip_dtypes(dtype, tmp_path):
    array = (np.arange(12).reshape(3, 4) % 7).astype(dtype)
    assert_same_array(round_trip({'x': array}, tmp_path)['x'], array)


@pytest.mark.parametrize('make', [
    lambda a: a.T,
    lambda a: a[1:, ::2],
    lambda a: a[::-1, 1],
    lambda a: np.asfortranarray(a),
    lambda a: a[0, 0, ...],           # 0-d
    lambda a: a[:0],                  # empty
    lambda a: np.broadcast_to(a[:1], (5, 4)),
    lambda a: a.astype('>f4'),        # non-native byte order
], ids=['transposed', 'strided', 'negative-stride', 'fortran', 'scalar', 'empty',
        'broadcast', 'big-endian'])
def test_round_trip_layouts(make, tmp_path):
    array = make(np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5)
    loaded = round_trip({'x': array}, tmp_path)['x']
    np.testing.assert_array_equal(loaded, array)
    assert loaded.shape == array.shape and loaded.dtype == np.float32
    assert loaded.flags.c_contiguous


def test_round_trip_containers_and_scalars(tmp_path):
    obj = {
        'ordered': collections.OrderedDict([('b', 1), ('a', 2)]),
        'plain': {'x': None, 3: 'int key', (1, 2): 'tuple key'},
        'list': [True, False, 0, 255, 256, 65535, 65536, -1, 2 ** 31, -(2 ** 31) - 1,
                 2 ** 100, -(2 ** 100), 1.5, float('inf'), 'üñí', ''],
        'tuples': [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4, 5)],
        'bytes': [b'', b'\x00\xff raw'],
        'empty': [{}, [], collections.OrderedDict()],
    }
    loaded = round_trip(obj, tmp_path)
    assert loaded == obj
    assert type(loaded['ordered']) is collections.OrderedDict
    assert list(loaded['ordered']) == ['b', 'a']
    assert type(loaded['plain']) is dict
    assert [type(t) for t in loaded['tuples']] == [tuple] * 5


def test_numpy_scalars_and_dtypes(tmp_path):
    loaded = round_trip({'s': np.float32(2.5), 'i': np.int64(7), 'd': np.dtype(np.float16)},
                        tmp_path)
    assert loaded == {'s': 2.5, 'i': 7, 'd': np.dtype(np.float16)}
    assert type(loaded['s']) is float and type(loaded['i']) is int


def test_array_like_objects_are_saved_as_tensors(tmp_path):
    class ArrayLike:  # e.g. jax.Array
        shape, dtype = (2,), np.dtype(np.float32)

        def __array__(self, dtype=None, copy=None):
            return np.array([1.0, 2.0], np.float32)

    assert_same_array(round_trip({'x': ArrayLike()}, tmp_path)['x'],
                      np.array([1.0, 2.0], np.float32))


def test_same_array_is_saved_once(tmp_path):
    # More than 256 tensors exercises the long memo opcodes.
    obj = {f't{i}': np.full(2, i, np.float32) for i in range(300)}
    obj['again'] = obj['t299']
    path = tmp_path / 'ckpt.pt'
    save_torch_file(obj, path)
    with zipfile.ZipFile(path) as archive:
        assert sum(name.startswith('archive/data/') for name in archive.namelist()) == 300
    loaded = load_torch_file(path)
    assert loaded['again'] is loaded['t299']
    assert loaded['t299'][0] == 299


def test_written_archive_matches_torch_layout(tmp_path):
    path = tmp_path / 'ckpt.pt'
    save_torch_file({'a': np.ones(3, np.float32), 'b': np.zeros((2, 2), np.int64)}, path)
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert names[0] == 'archive/data.pkl'
        assert {'archive/version', 'archive/byteorder', 'archive/data/0',
                'archive/data/1'} <= set(names)
        for info in archive.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            # Data starts 64-byte aligned, which torch.load(mmap=True) needs.
            name_len, extra_len = struct.unpack('<HH', raw[info.header_offset + 26:
                                                           info.header_offset + 30])
            assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0


def test_custom_archive_name(tmp_path):
    path = tmp_path / 'ckpt.pt'
    save_torch_file({'a': np.ones(2)}, path, archive_name='ckpt')
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist()[0] == 'ckpt/data.pkl'
    np.testing.assert_array_equal(load_torch_file(path)['a'], np.ones(2))
    with pytest.raises(ValueError, match='archive_name'):
        save_torch_file({}, path, archive_name='a/b')


def test_loaded_placeholders_are_written_back(tmp_path):
    ckpt = load_torch_file(ZIP_FIXTURE)
    again = round_trip(ckpt, tmp_path)
    assert (again['args'].module, again['args'].name) == ('argparse', 'Namespace')
    assert again['args'].state == ckpt['args'].state
    np.testing.assert_array_equal(again['g_ema']['bias_slice'], ckpt['g_ema']['bias_slice'])


@pytest.mark.parametrize('obj, error, where', [
    ({'x': [object()]}, TypeError, r"obj\['x'\]\[0\]"),
    ({'x': np.array(['text'])}, TypeError, 'dtype'),
    ({'x': np.array([None], dtype=object)}, TypeError, 'dtype'),
    ({'x': {1, 2}}, TypeError, 'set'),
])
def test_save_rejects_unsupported_values(obj, error, where, tmp_path):
    with pytest.raises(error, match=where):
        save_torch_file(obj, tmp_path / 'ckpt.pt')


def test_save_rejects_cycles(tmp_path):
    cyclic = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match='circular'):
        save_torch_file({'x': cyclic}, tmp_path / 'ckpt.pt')


# ---------------------------------------------------------------------------
# Safety: nothing outside the allow-list is executed
# ---------------------------------------------------------------------------

def zip_with_records(path, records):
    with zipfile.ZipFile(path, 'w') as archive:
        for name, data in records.items():
            archive.writestr(name, data)


def test_unknown_globals_are_recorded_not_executed(tmp_path):
    victim = tmp_path / 'victim.txt'
    victim.write_text('still here')

    class Malicious:
        def __reduce__(self):
            return os.remove, (str(victim),)

    path = tmp_path / 'evil.pt'
    zip_with_records(path, {'evil/data.pkl': pickle.dumps({'payload': Malicious()}, protocol=2)})
    loaded = load_torch_file(path)

    assert victim.exists()
    payload = loaded['payload']
    assert isinstance(payload, UnpickledObject)
    assert payload.name == 'remove' and payload.module in ('os', 'posix', 'nt')
    assert payload.args == (str(victim),)


# ---------------------------------------------------------------------------
# Clear errors
# ---------------------------------------------------------------------------

def saved_records(tmp_path):
    path = tmp_path / 'good.pt'
    save_torch_file({'w': np.arange(64, dtype=np.float32)}, path)
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_missing_file(tmp_path):
    path = tmp_path / 'stylegan2-ffhq-config-f.pt'
    with pytest.raises(FileNotFoundError) as info:
        load_torch_file(path)
    assert str(path) in str(info.value)
    assert 'Anycost' in str(info.value) and '.pt' in str(info.value)


@pytest.mark.parametrize('content, message', [
    (b'garbage bytes, not a checkpoint', r"starts with b'garbage bytes, n'"),
    (b'', 'empty'),
    (b'<!DOCTYPE html><html>quota exceeded</html>', 'HTML'),
    (b'version https://git-lfs.github.com/spec/v1\n', 'git lfs pull'),
    (pickle.dumps({'a': 1}, protocol=2), 'not a torch.save checkpoint'),
])
def test_not_a_torch_file(content, message, tmp_path):
    path = tmp_path / 'ckpt.pt'
    path.write_bytes(content)
    with pytest.raises(TorchFileError, match=message) as info:
        load_torch_file(path)
    assert str(path) in str(info.value)


def test_truncated_zip(tmp_path):
    path = tmp_path / 'ckpt.pt'
    path.write_bytes(open(ZIP_FIXTURE, 'rb').read()[:2000])
    with pytest.raises(TorchFileError, match='truncated'):
        load_torch_file(path)


def test_missing_storage_record(tmp_path):
    records = saved_records(tmp_path)
    del records['archive/data/0']
    path = tmp_path / 'ckpt.pt'
    zip_with_records(path, records)
    with pytest.raises(TorchFileError, match="'archive/data/0' is missing"):
        load_torch_file(path)


def test_short_storage_record(tmp_path):
    records = saved_records(tmp_path)
    records['archive/data/0'] = records['archive/data/0'][:100]
    path = tmp_path / 'ckpt.pt'
    zip_with_records(path, records)
    with pytest.raises(TorchFileError, match=r"'archive/data/0' holds 100 bytes .* 256"):
        load_torch_file(path)


def test_corrupted_storage_record(tmp_path):
    path = tmp_path / 'ckpt.pt'
    save_torch_file({'w': np.arange(64, dtype=np.float32)}, path)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as archive:
        info = archive.getinfo('archive/data/0')
    raw[info.header_offset + 200] ^= 0xFF  # inside the data: the CRC no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises(TorchFileError, match="'archive/data/0' cannot be read"):
        load_torch_file(path)


def test_zip_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / 'ckpt.pt'
    zip_with_records(path, {'readme.txt': b'hello'})
    with pytest.raises(TorchFileError, match='no <prefix>/data.pkl'):
        load_torch_file(path)
    zip_with_records(path, {'m/data.pkl': b'', 'm/constants.pkl': b''})
    with pytest.raises(TorchFileError, match='TorchScript'):
        load_torch_file(path)


def test_truncated_legacy_file(tmp_path):
    path = tmp_path / 'ckpt.pt'
    path.write_bytes(open(LEGACY_FIXTURE, 'rb').read()[:-50])
    with pytest.raises(TorchFileError, match='cut short'):
        load_torch_file(path)


def test_tar_format_is_explained(tmp_path):
    path = tmp_path / 'ckpt.pt'
    with tarfile.open(path, 'w') as archive:
        info = tarfile.TarInfo('sys_info')
        info.size = 3
        archive.addfile(info, io.BytesIO(b'abc'))
    with pytest.raises(TorchFileError, match=r'torch < 0\.1\.10.*torch>=1\.6'):
        load_torch_file(path)
