"""A tracing-time record of the operations a network runs, for counting MACs.

Layers call :func:`record` with static facts about each costly operation (the number of output
elements, the multiply-adds per output element, the kind). Outside :func:`recording` that is a
no-op; inside it, tracing the network once (``jax.eval_shape``) collects the list, from which
:mod:`anycost_jax.macs` applies a counting convention. The facts are what the operation
computes; which of them a convention counts (e.g. a norm without affine parameters) is the
counter's business, not the layer's.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Iterator, Optional

_RECORDS: contextvars.ContextVar[Optional[list]] = contextvars.ContextVar('anycost_jax_profile', default=None)


@dataclasses.dataclass(frozen=True)
class Op:
    """One traced operation.

    ``kind``: 'conv' (any convolution, transposed included), 'linear', 'instance_norm',
    'batch_norm', 'mean' (averaging such as pooling), 'mul' (an element-wise product that
    torchprofile counts), 'leaky_relu'. ``out`` elements, ``per_output`` multiply-adds each
    (convolutions and linear layers, as torchprofile reads them: input channels per group times
    kernel taps). ``affine``: norms only, whether they have a learned scale. ``inplace``: the
    original computes it in place (``nn.LeakyReLU(0.2, True)``, a different traced operator).
    ``path``: the module path.
    """
    kind: str
    out: int
    per_output: int = 1
    affine: bool = False
    path: str = ''
    inplace: bool = False


def record(kind: str, out: int, per_output: int = 1, affine: bool = False, path: str = '',
           inplace: bool = False) -> None:
    records = _RECORDS.get()
    if records is not None:
        records.append(Op(kind, int(out), int(per_output), bool(affine), path, bool(inplace)))


@contextlib.contextmanager
def recording() -> Iterator[list]:
    """Collects the :class:`Op` s recorded while the block runs (nested blocks record separately)."""
    records: list = []
    token = _RECORDS.set(records)
    try:
        yield records
    finally:
        _RECORDS.reset(token)
