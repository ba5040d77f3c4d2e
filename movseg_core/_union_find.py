"""Union-find over a 1-D parent forest, shared by the compiled kernels (numba, cached on disk).

``parent``: 1-D int array, ``parent[r] == r`` at the roots. numba-jitted helpers can be called from
other jitted functions (:mod:`movseg_core._proposals_numba`, :mod:`movseg_core.objects`).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def find(parent, i):  # noqa: ANN001, ANN201
    """Root of ``i`` in ``parent``, halving the path on the way."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True, nogil=True)
def set_ids(parent, n):  # noqa: ANN001, ANN201
    """Elements 0..n-1 of ``parent`` -> (their set ids, int32 (n,); the number of sets S).

    Sets are numbered 0..S-1 in the order of their smallest element. Compresses ``parent``.
    """
    ids = np.full(n, -1, np.int32)
    count = 0
    for r in range(n):
        root = find(parent, r)
        if ids[root] < 0:
            ids[root] = count
            count += 1
        ids[r] = ids[root]
    return ids, count
