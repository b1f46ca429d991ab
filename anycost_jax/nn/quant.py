"""Linear fake quantization with a straight-through gradient (GAN Slimming's ``LinQuantSteOp``).

``fake_quant(x, signed, nbits, max_val)`` is ``round(x / s) * s`` with ``s = max_val / int_max``,
``int_max = 2^(nbits-1) - 1`` signed and ``2^nbits`` unsigned (as the original: an unsigned
8-bit code runs 0..256, so ``max_val`` itself is representable), rounding half to even (torch's
``round``). Its gradient is the identity (straight-through); ``max_val`` gets none (the original
reads it with ``.item()``). What GAN Slimming's quantized convs apply:

* weights: signed, per tensor, ``max_val = max |W|`` (:func:`quantize_weight`);
* inputs of every conv but the first: clamped to ``[0, input_max]`` (torch's clamp gradient: 1
  inside the closed interval, 0 outside), then unsigned with ``max_val = input_max`` = 4
  (:func:`quantize_input`). The clamp also cuts the negative values of the residual stream.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
SUPPORTED_BITS = tuple(range(2, 17))  # a signed code needs int_max >= 1; float32 holds 16-bit codes exactly
FLOAT_BITS = 32  # GS-32: no quantization
ACT_MAX = 4.0


def check_bits(nbits) -> int | None:
    """``None`` for float (``nbits`` None or 32), else ``nbits`` checked against :data:`SUPPORTED_BITS`."""
    if nbits is None or nbits == FLOAT_BITS:
        return None
    if int(nbits) != nbits or int(nbits) not in SUPPORTED_BITS:
        raise ValueError(f'quantization to {nbits!r} bits is not supported: pass an integer in [{SUPPORTED_BITS[0]}, '
                         f'{SUPPORTED_BITS[-1]}] (GAN Slimming uses 8), or 32 / None for float (GS-32)')
    return int(nbits)


def int_max(signed: bool, nbits: int) -> int:
    return 2 ** (nbits - 1) - 1 if signed else 2 ** nbits


@jax.custom_vjp
def _ste_round(x: Array, scale: Array) -> Array:
    return jnp.round(x / scale) * scale


def _ste_fwd(x, scale):
    return _ste_round(x, scale), None


def _ste_bwd(_, g):
    return g, None


_ste_round.defvjp(_ste_fwd, _ste_bwd)


def fake_quant(x: Array, signed: bool, nbits: int, max_val) -> Array:
    """``LinQuantSteOp.apply(x, signed, nbits, max_val)``: quantized values, identity gradient."""
    nbits = check_bits(nbits)
    if nbits is None:
        raise ValueError('fake_quant needs a bit width; float (32) means: do not call it')
    # float32 scale, as torch divides a float32 tensor by the Python scalar in float32
    scale = jax.lax.stop_gradient(jnp.asarray(max_val, jnp.float32) / int_max(signed, nbits))
    return _ste_round(x, scale)


def quantize_weight(w: Array, nbits: int) -> Array:
    """Signed, symmetric, per tensor: ``max_val = max |W|`` (no gradient through it)."""
    max_val = jax.lax.stop_gradient(jnp.max(jnp.abs(w)))
    # an all-zero kernel (the original asserts max_val > 0): quantizes to itself
    max_val = jnp.where(max_val > 0, max_val, 1.)
    return fake_quant(w, True, nbits, max_val)


def clamp_like_torch(x: Array, lo: float, hi: float) -> Array:
    """``x.clamp(lo, hi)`` with torch's gradient: 1 on ``[lo, hi]`` (ends included), 0 outside."""
    inside = (x >= lo) & (x <= hi)
    return jnp.where(inside, x, jax.lax.stop_gradient(jnp.clip(x, lo, hi)))


def quantize_input(x: Array, nbits: int, input_max: float = ACT_MAX) -> Array:
    """Unsigned activations: clamp to ``[0, input_max]``, then ``input_max / 2^nbits`` steps."""
    return fake_quant(clamp_like_torch(x, 0., input_max), False, nbits, input_max)
