"""Memory of CRD's RKD angle loss and its gradient: ours (Gram identity) against the original's
formulation (the N x N x D normalized difference vectors, then their inner products).

Protocol: ``jax.jit(jax.value_and_grad(loss)).lower(...).compile().memory_analysis()`` on the
backend this runs on (no timing, so the machine's load does not matter): XLA's temporary buffer
bytes for one image's items, rows (N = H items of 3W values) and 32x32 patches (N = H W / 1024
items of 3072 values) at ``--resolution``.

    python benchmarks/crd_angle_memory.py --resolution 256
"""
import argparse

import jax
import jax.numpy as jnp

from anycost_jax.losses import crd


def original_angles(e):
    d = e[None, :, :] - e[:, None, :]
    n = d / jnp.maximum(jnp.linalg.norm(d, axis=-1, keepdims=True), crd.EPS)
    return jnp.einsum('ijd,ikd->ijk', n, n)


def original_loss(s, t):
    return crd.smooth_l1(original_angles(s), jax.lax.stop_gradient(original_angles(t)))


def temp_mib(fn, n, d):
    x = jax.ShapeDtypeStruct((n, d), jnp.float32)
    return jax.jit(jax.value_and_grad(fn)).lower(x, x).compile().memory_analysis().temp_size_in_bytes / 2 ** 20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--resolution', type=int, default=256)
    r = ap.parse_args().resolution
    print(f'backend {jax.default_backend()}, {r} px; XLA temp MiB of value_and_grad of the angle loss')
    print('| items | N | D | ours | original formulation |')
    print('| --- | --- | --- | --- | --- |')
    for name, n, d in (('rows', r, 3 * r), ('32x32 patches', (r // 32) ** 2, 3 * 32 * 32)):
        print(f'| {name} | {n} | {d} | {temp_mib(crd.rkd_angle, n, d):.1f} | {temp_mib(original_loss, n, d):.1f} |')


if __name__ == '__main__':
    main()
