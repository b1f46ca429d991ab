"""Read and write PyTorch checkpoint files (``torch.save``) without PyTorch.

The original Anycost GAN publishes its weights as ``.pt`` files written by
``torch.save``.  This module reads those files -- and writes files in the same
format -- with only the standard library and numpy, so the JAX port never has
to depend on, or import, PyTorch.

Formats
-------
* **zip format** (default since torch 1.6; read and written).  A zip archive
  with a single top-level folder ``<prefix>/`` (any name) holding
  ``data.pkl`` -- a protocol-2 pickle of the object tree whose tensors refer to
  their storages through pickle "persistent ids" -- one record
  ``data/<key>`` per storage with the raw element bytes, and small
  bookkeeping records (``version``, ``byteorder``, ...).
* **legacy format** (torch < 1.6, or ``_use_new_zipfile_serialization=False``;
  read only).  Consecutive pickles -- magic number, protocol version, system
  info, the object tree, the list of storage keys -- followed by each storage
  as an int64 element count and the raw element bytes.
* The even older tar format (torch < 0.1.10) is rejected with an explanation.

Tensors and dtypes
------------------
A tensor loads as a C-contiguous ``numpy.ndarray`` with its original shape:
the view described by (storage offset, shape, strides) is taken on the storage
and then copied, so a slice or a transposed tensor comes out with the values
torch shows and never aliases another array.  ``nn.Parameter`` loads as its
plain array; ``requires_grad``, hooks and the device are dropped.
Supported dtypes: float64/32/16, bfloat16, complex128/64, int64/32/16/8,
uint8/16/32/64, bool and the float8 variants.  **bfloat16 and float8 stay
exact**: they use the ``ml_dtypes`` scalar types (a dependency of jax) rather
than being widened to float32, so ``jax.numpy.asarray`` takes them as they are.

Safety
------
Plain ``pickle`` imports and calls whatever a file names.  The loader
resolves only a fixed set of globals (torch's tensor rebuild functions,
storage and dtype names, ``OrderedDict``, a few builtins, numpy's array
reconstruction) to pure-numpy code.  Every other global -- an
``argparse.Namespace`` of training options, a user class, ``os.system`` --
becomes an inert :class:`UnpickledObject` that records the arguments and state
it was given and runs no code, so such checkpoints still load.
"""

import io
import os
import pickle
import reprlib
import struct
import sys
import zipfile
import zlib
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import ml_dtypes
import numpy as np

__all__ = ['load_torch_file', 'save_torch_file', 'TorchFileError', 'UnpickledObject']

# First pickle in a legacy file and the protocol version that follows it.
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001
# torch aligns every zip record to 64 bytes so that storages can be mmapped.
_ALIGNMENT = 64


class TorchFileError(ValueError):
    """The file is not a ``torch.save`` checkpoint this module can read."""


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _DType:
    torch_name: str      # attribute of the torch module: torch.<torch_name>
    numpy: np.dtype
    storage: str | None  # legacy typed-storage class torch.<storage>, if any


# Dtypes that have a legacy storage class are written by torch as
# ``_rebuild_tensor_v2(torch.<X>Storage, ...)``; newer ones (uint16+, float8)
# as ``_rebuild_tensor_v3(UntypedStorage, ..., torch.<dtype>)``.  Mirror that
# so files written here load in any torch version that knows the dtype.
_DTYPES = tuple(_DType(name, np.dtype(np_type), storage) for name, np_type, storage in (
    ('float64', np.float64, 'DoubleStorage'),
    ('float32', np.float32, 'FloatStorage'),
    ('float16', np.float16, 'HalfStorage'),
    ('bfloat16', ml_dtypes.bfloat16, 'BFloat16Storage'),
    ('complex128', np.complex128, 'ComplexDoubleStorage'),
    ('complex64', np.complex64, 'ComplexFloatStorage'),
    ('int64', np.int64, 'LongStorage'),
    ('int32', np.int32, 'IntStorage'),
    ('int16', np.int16, 'ShortStorage'),
    ('int8', np.int8, 'CharStorage'),
    ('uint8', np.uint8, 'ByteStorage'),
    ('bool', np.bool_, 'BoolStorage'),
    ('uint16', np.uint16, None),
    ('uint32', np.uint32, None),
    ('uint64', np.uint64, None),
    ('float8_e4m3fn', ml_dtypes.float8_e4m3fn, None),
    ('float8_e5m2', ml_dtypes.float8_e5m2, None),
    ('float8_e4m3fnuz', ml_dtypes.float8_e4m3fnuz, None),
    ('float8_e5m2fnuz', ml_dtypes.float8_e5m2fnuz, None),
    ('float8_e8m0fnu', ml_dtypes.float8_e8m0fnu, None),
))
_DTYPE_BY_TORCH_NAME = {d.torch_name: d for d in _DTYPES}
_DTYPE_BY_NUMPY = {d.numpy: d for d in _DTYPES}
_DTYPE_BY_STORAGE = {d.storage: d for d in _DTYPES if d.storage}


# ---------------------------------------------------------------------------
# Stand-ins for globals we refuse to import
# ---------------------------------------------------------------------------

class UnpickledObject:
    """Inert stand-in for a class or function named by a checkpoint.

    ``load_torch_file`` never imports or runs anything outside a fixed
    allow-list.  For any other global it makes a subclass of this class with
    the class attributes ``module`` and ``name``; "calling" or instantiating
    it just records what the pickle passed:

    * ``args`` / ``kwargs`` -- constructor or call arguments,
    * ``state`` -- what pickle would have given ``__setstate__`` (for most
      classes, such as ``argparse.Namespace``, the instance ``__dict__``, so
      ``ckpt['args'].state['size']``).

    The pickled attributes are deliberately not exposed as attributes of the
    stand-in: a field called ``name`` or ``state`` would be shadowed.
    ``save_torch_file`` writes these objects back as the original global, so a
    loaded checkpoint round-trips (torch then needs ``weights_only=False`` or
    ``torch.serialization.add_safe_globals`` for it, as for the original).
    """

    module = ''
    name = ''

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        # pickle gets here via NEWOBJ (``cls.__new__(cls, *args)``) or via
        # REDUCE (``cls(*args)``); record the arguments in both cases.
        self.__dict__.update(args=args, kwargs=kwargs, state=None, _called=False)
        return self

    def __init__(self, *args, **kwargs):
        # Only REDUCE calls the class itself; remember it so that
        # save_torch_file can re-emit the same opcode.
        self._called = True

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return (f'<UnpickledObject {self.module}.{self.name} args={reprlib.repr(self.args)} '
                f'state={reprlib.repr(self.state)}>')


def _placeholder_class(module, name):
    return type('UnpickledObject', (UnpickledObject,), {
        'module': module,
        'name': name,
        '__module__': __name__,
        '__qualname__': f'UnpickledObject[{module}.{name}]',
    })


# ---------------------------------------------------------------------------
# Pure-numpy replacements for the globals a checkpoint may name
# ---------------------------------------------------------------------------

# Returned by the storage loader during the first pass over a legacy file,
# before the storage bytes (stored after the pickle) have been read.
_PENDING = object()


@dataclass(frozen=True)
class _StorageType:
    """What ``torch.<X>Storage`` resolves to: the element dtype of its data."""
    module: str
    name: str
    dtype: np.dtype | None  # None: a storage type we cannot decode


def _storage_type(module, name):
    if name == 'UntypedStorage':  # raw bytes; _rebuild_tensor_v3 says the dtype
        return _StorageType(module, name, np.dtype(np.uint8))
    entry = _DTYPE_BY_STORAGE.get(name)
    return _StorageType(module, name, entry.numpy if entry else None)


def _tensor_from_storage(storage, storage_offset, size, stride, metadata=None):
    """Materialise the view (offset, size, stride) of a 1-D storage array."""
    if storage is _PENDING:
        return _PENDING
    if not isinstance(storage, np.ndarray):
        raise TorchFileError(f'tensor refers to {storage!r} instead of a storage')
    size = tuple(int(n) for n in size)
    stride = tuple(int(s) for s in stride)
    offset = int(storage_offset)
    if len(size) != len(stride) or min(size + stride + (offset,), default=0) < 0:
        raise TorchFileError(f'invalid tensor layout: offset={offset} size={size} stride={stride}')
    if 0 in size:
        return np.empty(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        # as_strided does no bounds checking: refuse rather than read
        # outside the buffer.
        raise TorchFileError(
            f'tensor with offset={offset} size={size} stride={stride} needs {last + 1} elements '
            f'but its storage holds {storage.size}; the checkpoint is corrupted')
    # as_strided rebuilds its result from the __array_interface__ type string,
    # which ml_dtypes types do not survive (float8_e5m2 claims '<f1').  Stride
    # over same-width raw bits instead and reinterpret the contiguous copy.
    itemsize = storage.itemsize
    bits = np.dtype(f'u{itemsize}') if itemsize in (1, 2, 4, 8) else np.dtype(f'V{itemsize}')
    view = np.lib.stride_tricks.as_strided(
        storage.view(bits)[offset:], shape=size, strides=[s * itemsize for s in stride],
        writeable=False)
    array = view.copy().view(storage.dtype)  # C-contiguous private copy
    # torch stores lazily negated / conjugated tensors as the raw data plus a flag.
    if metadata and metadata.get('neg'):
        array = np.negative(array)
    if metadata and metadata.get('conj'):
        array = np.conjugate(array)
    return array


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _tensor_from_storage(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _tensor_from_storage(storage, storage_offset, size, stride, metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    # The storage is untyped (bytes); offset and strides count elements of `dtype`.
    if storage is _PENDING:
        return _PENDING
    if not isinstance(dtype, np.dtype):
        raise TorchFileError(f'tensor dtype {_global_name(dtype)} is not supported')
    if storage.nbytes % dtype.itemsize:
        raise TorchFileError(f'storage of {storage.nbytes} bytes is not a whole number of {dtype}')
    return _tensor_from_storage(storage.view(dtype), storage_offset, size, stride, metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    return data  # a Parameter is just its tensor here


def _rebuild_from_type_v2(func, new_type, args, state):
    # Used for tensor subclasses and tensors carrying Python attributes; the
    # subclass and the attributes are dropped, the plain tensor is kept.
    return func(*args)


def _rebuild_device_tensor(data, dtype, device, requires_grad):
    return np.asarray(data, dtype=dtype if isinstance(dtype, np.dtype) else None)


def _device(*args):
    # torch.device('cuda', 0) -> 'cuda:0'; there are no devices here.
    return ':'.join(str(a) for a in args if a is not None)


def _codecs_encode(text, encoding='utf-8'):
    # Protocol 2 pickles bytes as _codecs.encode(<latin-1 text>, 'latin1').
    # str.encode only accepts text encodings, nothing else is reachable.
    return text.encode(encoding)


def _global_name(obj):
    if isinstance(obj, type) and issubclass(obj, UnpickledObject):
        return f'{obj.module}.{obj.name}'
    return repr(obj)


_SAFE_GLOBALS = {
    ('collections', 'OrderedDict'): OrderedDict,
    ('collections', 'Counter'): Counter,
    ('builtins', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('builtins', 'complex'): complex,
    ('builtins', 'bytes'): bytes,
    ('builtins', 'bytearray'): bytearray,
    ('_codecs', 'encode'): _codecs_encode,
    ('torch', 'Size'): tuple,
    ('torch', 'device'): _device,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_tensor_v3'): _rebuild_tensor_v3,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    ('torch._utils', '_rebuild_device_tensor_from_cpu_tensor'): _rebuild_device_tensor,
    ('torch._utils', '_rebuild_device_tensor_from_numpy'): _rebuild_device_tensor,
    ('torch._tensor', '_rebuild_from_type_v2'): _rebuild_from_type_v2,
    # numpy arrays and scalars pickled into a checkpoint.  Their
    # reconstruction only builds arrays from bytes; object arrays get their
    # elements from this same restricted unpickler.
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('numpy.core.multiarray', '_reconstruct'): np.empty(0).__reduce__()[0],
    ('numpy._core.multiarray', '_reconstruct'): np.empty(0).__reduce__()[0],
    ('numpy.core.multiarray', 'scalar'): np.float64(0).__reduce__()[0],
    ('numpy._core.multiarray', 'scalar'): np.float64(0).__reduce__()[0],
}
# Names that moved; pickle's own find_class would apply these fixes, ours
# must do it itself.
_MODULE_RENAMES = {'__builtin__': 'builtins', 'torch.tensor': 'torch._tensor'}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals from an allow-list and storages via a callback.

    ``load_storage(key, dtype, numel)`` returns the 1-D numpy array holding the
    storage ``key``.
    """

    def __init__(self, file, load_storage):
        # utf-8 is torch.load's default; it only matters for Python 2 strings.
        super().__init__(file, encoding='utf-8')
        self._load_storage = load_storage
        self._placeholders = {}

    def find_class(self, module, name):
        module = _MODULE_RENAMES.get(module, module)
        found = _SAFE_GLOBALS.get((module, name))
        if found is not None:
            return found
        if module in ('torch', 'torch.cuda', 'torch.storage') and name.endswith('Storage'):
            return _storage_type(module, name)
        if module == 'torch' and name in _DTYPE_BY_TORCH_NAME:
            return _DTYPE_BY_TORCH_NAME[name].numpy
        # Anything else is never imported: hand out an inert stand-in, the
        # same class object for every reference to the same global.
        key = (module, name)
        if key not in self._placeholders:
            self._placeholders[key] = _placeholder_class(module, name)
        return self._placeholders[key]

    def persistent_load(self, pid):
        kind = pid[0] if isinstance(pid, tuple) and pid else None
        kind = kind.decode('ascii') if isinstance(kind, bytes) else kind
        if kind == 'storage' and len(pid) in (5, 6):
            # zip: (typename, storage_type, key, location, numel)
            # legacy: the same plus view_metadata (view_key, offset, numel) or None
            storage_type, key, _location, numel = pid[1:5]
            if not isinstance(storage_type, _StorageType):
                raise TorchFileError(f'storage type {_global_name(storage_type)} is not a torch storage')
            if storage_type.dtype is None:
                raise TorchFileError(f'storage type {storage_type.module}.{storage_type.name} '
                                     '(e.g. a quantized tensor) is not supported')
            key = key.decode('ascii') if isinstance(key, bytes) else str(key)
            storage = self._load_storage(key, storage_type.dtype, int(numel))
            view = pid[5] if len(pid) == 6 else None
            if view is not None and storage is not _PENDING:
                _view_key, offset, view_numel = view
                storage = storage[offset:offset + view_numel]
            return storage
        if kind == 'module' and len(pid) >= 2:
            # Legacy files of whole nn.Modules name the module class here
            # (already a stand-in); its source code is ignored.
            return pid[1]
        raise pickle.UnpicklingError(f'unsupported persistent id {reprlib.repr(pid)}')


# What unpickling malformed bytes can raise.
_UNPICKLING_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
                      IndexError, AttributeError, struct.error)


def _unpickle(file, load_storage, what):
    try:
        return _RestrictedUnpickler(file, load_storage).load()
    except TorchFileError:
        raise
    except _UNPICKLING_ERRORS as e:
        raise TorchFileError(f'{what} cannot be unpickled ({type(e).__name__}: {e}); the file '
                             'is corrupted or uses a feature load_torch_file does not support') from e


def _no_storage(key, dtype, numel):
    raise TorchFileError('unexpected tensor storage in a legacy header pickle')


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

def load_torch_file(path):
    """Load a file written by ``torch.save`` into plain Python and numpy objects.

    Tensors become C-contiguous ``numpy.ndarray`` (bfloat16/float8 as
    ``ml_dtypes`` types); dicts, OrderedDicts, lists, tuples and scalars are
    kept; ``torch.Size`` becomes a tuple, ``torch.device`` its string and
    torch dtypes ``numpy.dtype``.  Any other class or function in the file is
    not executed: it becomes an :class:`UnpickledObject`.

    Raises ``FileNotFoundError`` if ``path`` does not exist and
    :class:`TorchFileError` if it is not a readable torch.save file.
    """
    path = os.fspath(path)
    try:
        with open(path, 'rb') as f:
            head = f.read(512)
    except FileNotFoundError:
        raise FileNotFoundError(
            f'checkpoint file not found: {path!r}; expected an original Anycost GAN `.pt` file '
            'written by torch.save (download the released checkpoint first)') from None
    try:
        if head.startswith(b'PK'):
            return _load_zip(path)
        if head[257:262] == b'ustar':
            raise TorchFileError(
                'this is a tar archive: the torch.save format of torch < 0.1.10, which is not '
                'supported; load it with torch and re-save it with torch>=1.6 `torch.save(obj, path)`')
        if head.startswith(b'\x80'):  # pickle PROTO opcode: maybe a legacy torch.save stream
            return _load_legacy(path)
        raise TorchFileError(_not_torch_message(head, os.path.getsize(path)))
    except TorchFileError as e:
        # Helpers describe the problem; name the file once, here.
        e.args = (f'{path}: {e}',)
        raise


def _not_torch_message(head, size):
    if not head:
        return 'the file is empty; expected a checkpoint written by torch.save'
    message = ('not a torch.save checkpoint: expected a zip archive (starting with '
               "b'PK\\x03\\x04', torch >= 1.6) or a legacy torch.save pickle (starting with "
               f"b'\\x80'), but the file ({size} bytes) starts with {head[:16]!r}")
    # Common ways a download goes wrong.
    if head.lstrip()[:1] == b'<':
        message += '; this looks like an HTML/XML page, so the download probably failed'
    elif head.startswith(b'version https://git-lfs'):
        message += '; this is a Git LFS pointer, run `git lfs pull` to fetch the real file'
    return message


def _load_zip(path):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise TorchFileError(
            f'the file starts like a zip archive (torch.save format) but cannot be opened ({e}); '
            'it is probably truncated or corrupted (e.g. an interrupted download or save)') from e
    with archive:
        pickle_name = _find_data_pickle(archive)
        prefix = pickle_name[:-len('data.pkl')]
        # Storages are in the byte order of the machine that saved them; files
        # without the record predate it and are little-endian.
        byteorder = b'little'
        if prefix + 'byteorder' in archive.namelist():
            byteorder = _read_record(archive, prefix + 'byteorder').strip()
        swap = byteorder.decode('ascii', 'replace') != sys.byteorder

        storages = {}

        def load_storage(key, dtype, numel):
            if key not in storages:
                record = f'{prefix}data/{key}'
                raw = _read_record(archive, record)
                if len(raw) < numel * dtype.itemsize:
                    raise TorchFileError(
                        f'storage record {record!r} holds {len(raw)} bytes but '
                        f'{numel} x {dtype} = {numel * dtype.itemsize} bytes are expected; '
                        'the checkpoint is truncated or corrupted')
                array = np.frombuffer(raw, dtype=dtype, count=numel)
                storages[key] = array.byteswap() if swap else array
            return storages[key]

        data = _read_record(archive, pickle_name)
        return _unpickle(io.BytesIO(data), load_storage, f'record {pickle_name!r}')


def _find_data_pickle(archive):
    names = archive.namelist()
    if any(name.endswith('/constants.pkl') for name in names):
        raise TorchFileError(
            'this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint; '
            'load it with torch.jit.load and torch.save its state_dict()')
    candidates = [name for name in names
                  if name == 'data.pkl' or (name.endswith('/data.pkl') and name.count('/') == 1)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise TorchFileError(
            'this zip archive is not a torch.save checkpoint: it has no '
            f'<prefix>/data.pkl record (records: {reprlib.repr(names)})')
    raise TorchFileError(f'the archive has several data.pkl records {candidates}; which one holds '
                         'the checkpoint is ambiguous')


def _read_record(archive, name):
    try:
        return archive.read(name)
    except KeyError:
        raise TorchFileError(f'record {name!r} is missing from the zip archive; the '
                             'checkpoint is incomplete or corrupted') from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        raise TorchFileError(f'record {name!r} cannot be read ({e}); the checkpoint is '
                             'truncated or corrupted') from e


def _load_legacy(path):
    with open(path, 'rb') as f:
        try:
            magic = _RestrictedUnpickler(f, _no_storage).load()
        except _UNPICKLING_ERRORS:  # TorchFileError is a ValueError
            magic = None
        if magic != _LEGACY_MAGIC_NUMBER:
            raise TorchFileError(
                'a pickle file but not a torch.save checkpoint: it does not start with the '
                'magic number of the legacy torch.save format, and it is not a zip archive '
                '(the format since torch 1.6)')
        version = _unpickle(f, _no_storage, 'legacy protocol version')
        if version != _LEGACY_PROTOCOL_VERSION:
            raise TorchFileError(f'unsupported legacy torch.save protocol version {version!r}')
        sys_info = _unpickle(f, _no_storage, 'legacy sys_info')
        little = sys_info.get('little_endian', True) if isinstance(sys_info, dict) else True
        swap = little != (sys.byteorder == 'little')

        # The storage bytes follow the object pickle, and their sizes depend
        # on dtypes only that pickle names.  So: a first pass only collects
        # (dtype, numel) per storage key, then the bytes are read, then a
        # second pass builds the objects from the real storages.
        tree_start = f.tell()
        found = {}

        def discover(key, dtype, numel):
            found.setdefault(key, dtype)
            return _PENDING

        where = 'legacy object pickle'
        _unpickle(f, discover, where)
        keys = _unpickle(f, _no_storage, 'legacy storage key list')

        storages = {}
        for key in keys:
            key = key.decode('ascii') if isinstance(key, bytes) else str(key)
            if key not in found:
                raise TorchFileError(f'storage {key!r} has data but no tensor refers to it')
            dtype = found[key]
            header = f.read(8)
            if len(header) == 8:
                (numel,) = struct.unpack('<q' if little else '>q', header)
                raw = f.read(numel * dtype.itemsize)
            if len(header) < 8 or len(raw) < numel * dtype.itemsize:
                raise TorchFileError(f'data of storage {key!r} is cut short; the checkpoint '
                                     'is truncated')
            array = np.frombuffer(raw, dtype=dtype)
            storages[key] = array.byteswap() if swap else array

        def load_storage(key, dtype, numel):
            if key not in storages:
                raise TorchFileError(f'data of storage {key!r} is missing')
            return storages[key]

        f.seek(tree_start)
        return _unpickle(f, load_storage, where)


# ---------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------

def save_torch_file(obj, path, *, archive_name='archive'):
    """Write ``obj`` in torch.save's zip format, readable by ``torch.load``.

    ``obj`` may nest dicts (any ``Mapping``; ``OrderedDict`` stays an
    OrderedDict), lists, tuples, str, bytes, int, float, bool and None, with
    arrays as tensors: ``numpy.ndarray`` or anything exposing ``__array__``,
    ``shape`` and ``dtype`` (e.g. ``jax.Array``) in any dtype listed in this
    module's docstring.  numpy scalars are written as Python scalars and
    ``numpy.dtype`` as the matching torch dtype.  The file loads with
    ``torch.load(path)`` including the default ``weights_only=True``, unless it
    holds :class:`UnpickledObject` values from a loaded checkpoint, which are
    written back as the globals they stand for.

    Each array gets its own storage written C-contiguous, so views of one
    buffer are saved as independent tensors; the same array object appearing
    twice is saved once and loads as one object.  Records are 64-byte aligned
    like torch's, so ``torch.load(..., mmap=True)`` works too.
    """
    if not archive_name or '/' in archive_name or '\\' in archive_name:
        raise ValueError(f'archive_name must be a plain folder name, got {archive_name!r}')
    pickler = _TorchPickler()
    data_pkl = pickler.dump(obj)
    records = [
        ('data.pkl', data_pkl),
        ('.format_version', b'1'),
        ('.storage_alignment', str(_ALIGNMENT).encode()),
        # Storages are written in this machine's byte order, as torch does.
        ('byteorder', sys.byteorder.encode()),
        *((f'data/{key}', array) for key, array in pickler.storages),
        ('version', b'3\n'),
    ]
    with open(path, 'wb') as raw, zipfile.ZipFile(raw, 'w', zipfile.ZIP_STORED) as archive:
        for name, payload in records:
            _write_aligned_record(archive, raw, f'{archive_name}/{name}', payload)


def _write_aligned_record(archive, raw, name, payload):
    if isinstance(payload, np.ndarray):
        # Write the array's bytes without an extra copy (bool/bfloat16 have
        # no buffer format, their uint8 view does).
        payload = memoryview(payload.reshape(-1).view(np.uint8))
    info = zipfile.ZipInfo(name)  # fixed 1980 timestamp: reproducible files
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = len(payload)
    # Pad the local header's extra field (id 'FB', as torch does) so the data
    # starts on a 64-byte boundary.  zipfile appends a 20-byte zip64 field to
    # the local header under exactly this condition.
    zip64 = info.file_size * 1.05 > zipfile.ZIP64_LIMIT
    header_size = 30 + len(name.encode('utf-8')) + 4 + (20 if zip64 else 0)
    padding = -(raw.tell() + header_size) % _ALIGNMENT
    info.extra = b'FB' + struct.pack('<H', padding) + b'Z' * padding
    with archive.open(info, 'w') as record:
        record.write(payload)


class _TorchPickler:
    """Emits a protocol-2 pickle the way torch.save lays it out.

    The stdlib pickler cannot be used: it insists on importing the globals it
    writes (``torch._utils._rebuild_tensor_v2``, ``torch.FloatStorage``...).
    Writing opcodes directly also keeps to those that torch's
    ``weights_only`` unpickler accepts.
    """

    def __init__(self):
        self.storages = []    # [(key, contiguous array)] -> data/<key> records
        self._out = io.BytesIO()
        self._memo = {}       # id(array) -> (memo index, array kept alive so the id stays unique)
        self._open = set()    # ids of containers being written, to detect cycles

    def dump(self, obj):
        self._write(pickle.PROTO + b'\x02')
        self._save(obj, 'obj')
        self._write(pickle.STOP)
        return self._out.getvalue()

    def _write(self, data):
        self._out.write(data)

    def _save(self, obj, where):
        if obj is None:
            self._write(pickle.NONE)
        elif isinstance(obj, bool):
            self._write(pickle.NEWTRUE if obj else pickle.NEWFALSE)
        elif isinstance(obj, int):
            self._save_int(obj, where)
        elif isinstance(obj, float):
            self._write(pickle.BINFLOAT + struct.pack('>d', obj))
        elif isinstance(obj, str):
            self._save_str(obj)
        elif isinstance(obj, bytes):
            # As the stdlib does for protocol 2 (and torch allows):
            # _codecs.encode(<latin-1 text>, 'latin1').
            self._save_global('_codecs', 'encode')
            self._save_str(obj.decode('latin-1'))
            self._save_str('latin1')
            self._write(pickle.TUPLE2 + pickle.REDUCE)
        elif isinstance(obj, np.generic):
            self._save(obj.item(), where)
        elif isinstance(obj, np.dtype):
            entry = _DTYPE_BY_NUMPY.get(obj)
            if entry is None:
                raise TypeError(f'{where}: numpy dtype {obj} has no torch equivalent')
            self._save_global('torch', entry.torch_name)
        elif isinstance(obj, np.ndarray) or all(
                hasattr(obj, attr) for attr in ('__array__', 'shape', 'dtype')):
            self._save_tensor(obj, where)
        elif isinstance(obj, type) and issubclass(obj, UnpickledObject):
            self._save_global(obj.module, obj.name)
        elif isinstance(obj, UnpickledObject):
            self._save_placeholder(obj, where)
        elif isinstance(obj, (Mapping, list, tuple)):
            if id(obj) in self._open:
                raise ValueError(f'{where}: circular reference cannot be saved')
            self._open.add(id(obj))
            if isinstance(obj, Mapping):
                self._save_dict(obj, where)
            elif isinstance(obj, list):
                self._save_list(obj, where)
            else:
                self._save_tuple(obj, where)
            self._open.discard(id(obj))
        else:
            raise TypeError(f'{where}: cannot save objects of type {type(obj).__qualname__} '
                            'in a torch checkpoint')

    def _save_int(self, value, where):
        if 0 <= value < 0x100:
            self._write(pickle.BININT1 + bytes([value]))
        elif 0 <= value < 0x10000:
            self._write(pickle.BININT2 + struct.pack('<H', value))
        elif -0x80000000 <= value < 0x80000000:
            self._write(pickle.BININT + struct.pack('<i', value))
        else:
            encoded = pickle.encode_long(value)
            if len(encoded) > 255:  # LONG4 is not accepted by weights_only loading
                raise OverflowError(f'{where}: integer too large to save')
            self._write(pickle.LONG1 + bytes([len(encoded)]) + encoded)

    def _save_str(self, text):
        encoded = text.encode('utf-8', 'surrogatepass')
        self._write(pickle.BINUNICODE + struct.pack('<I', len(encoded)) + encoded)

    def _save_global(self, module, name):
        if '\n' in module or '\n' in name:
            raise ValueError(f'invalid global name {module!r}.{name!r}')
        self._write(pickle.GLOBAL + f'{module}\n{name}\n'.encode('utf-8'))

    def _save_dict(self, mapping, where):
        if isinstance(mapping, OrderedDict):
            self._save_global('collections', 'OrderedDict')
            self._write(pickle.EMPTY_TUPLE + pickle.REDUCE)
        else:
            self._write(pickle.EMPTY_DICT)
        if mapping:
            self._write(pickle.MARK)
            for key, value in mapping.items():
                self._save(key, f'{where} key {key!r}')
                self._save(value, f'{where}[{key!r}]')
            self._write(pickle.SETITEMS)

    def _save_list(self, items, where):
        self._write(pickle.EMPTY_LIST)
        if items:
            self._write(pickle.MARK)
            for i, item in enumerate(items):
                self._save(item, f'{where}[{i}]')
            self._write(pickle.APPENDS)

    def _save_tuple(self, items, where):
        if not items:
            self._write(pickle.EMPTY_TUPLE)
            return
        if len(items) > 3:
            self._write(pickle.MARK)
        for i, item in enumerate(items):
            self._save(item, f'{where}[{i}]')
        self._write({1: pickle.TUPLE1, 2: pickle.TUPLE2, 3: pickle.TUPLE3}.get(len(items), pickle.TUPLE))

    def _save_placeholder(self, obj, where):
        if obj.kwargs:
            raise TypeError(f'{where}: {obj.module}.{obj.name} was built with keyword arguments, '
                            'which protocol 2 cannot express')
        self._save_global(obj.module, obj.name)
        self._save_tuple(tuple(obj.args), f'{where}.args')
        self._write(pickle.REDUCE if obj._called else pickle.NEWOBJ)
        if obj.state is not None:
            self._save(obj.state, f'{where}.state')
            self._write(pickle.BUILD)

    def _save_tensor(self, obj, where):
        if id(obj) in self._memo:  # same object again: reference it, like torch's memo does
            index = self._memo[id(obj)][0]
            self._write(pickle.BINGET + bytes([index]) if index < 256
                        else pickle.LONG_BINGET + struct.pack('<I', index))
            return
        array = np.asarray(obj)
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder('='))
        entry = _DTYPE_BY_NUMPY.get(array.dtype)
        if entry is None:
            raise TypeError(f'{where}: cannot save arrays of dtype {array.dtype}; supported: '
                            + ', '.join(str(d.numpy) for d in _DTYPES))
        if not array.flags.c_contiguous:
            array = array.copy(order='C')
        key = str(len(self.storages))
        self.storages.append((key, array))

        # _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)
        # or _rebuild_tensor_v3(..., hooks, dtype) for dtypes without a legacy
        # storage class, whose storage is untyped and sized in bytes.
        v3 = entry.storage is None
        self._save_global('torch._utils', '_rebuild_tensor_v3' if v3 else '_rebuild_tensor_v2')
        self._write(pickle.MARK)
        self._write(pickle.MARK)
        self._save_str('storage')
        if v3:
            self._save_global('torch.storage', 'UntypedStorage')
        else:
            self._save_global('torch', entry.storage)
        self._save_str(key)
        self._save_str('cpu')
        self._save_int(array.nbytes if v3 else array.size, where)
        self._write(pickle.TUPLE + pickle.BINPERSID)
        self._save_int(0, where)
        self._save_tuple(array.shape, where)
        self._save_tuple(_contiguous_strides(array.shape), where)
        self._write(pickle.NEWFALSE)
        self._save_dict(OrderedDict(), where)
        if v3:
            self._save_global('torch', entry.torch_name)
        self._write(pickle.TUPLE + pickle.REDUCE)

        index = len(self._memo)
        self._write(pickle.BINPUT + bytes([index]) if index < 256
                    else pickle.LONG_BINPUT + struct.pack('<I', index))
        self._memo[id(obj)] = (index, obj)


def _contiguous_strides(shape):
    # torch's rule: empty and size-1 dimensions count as 1.
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))
