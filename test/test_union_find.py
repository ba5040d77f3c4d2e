"""The one union-find numbering the compiled kernels share (proposals, merge, objects)."""
from __future__ import annotations

import numpy as np

from movseg_core._union_find import find, set_ids


def test_sets_are_numbered_in_order_of_their_smallest_element_whatever_the_roots():
    # sets {0, 3, 5} (root 5), {1} (root 1), {2, 4} (root 2); root 5 sits above its members
    parent = np.array([3, 1, 2, 5, 2, 5], np.int32)
    ids, n = set_ids(parent, 6)
    assert n == 3
    assert ids.tolist() == [0, 1, 2, 0, 2, 0]
    assert find(parent, 0) == 5 and parent[0] in (3, 5)  # path halving keeps the root


def test_a_strided_parent_column_and_int64_parents_give_the_same_ids():
    st = np.array([[3, 1], [1, 1], [2, 2], [5, 1], [2, 1], [5, 3]], np.int32)  # parent, size (graph_segment)
    ids_col, n_col = set_ids(st[:, 0], 6)
    ids_64, n_64 = set_ids(np.array([3, 1, 2, 5, 2, 5], np.int64), 6)
    assert n_col == n_64 == 3 and ids_col.tolist() == ids_64.tolist() == [0, 1, 2, 0, 2, 0]
