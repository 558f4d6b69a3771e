"""Minimum-cost bipartite assignment (the Hungarian method), pure Python, for small matrices.

Kuhn, H. W. (1955). "The Hungarian method for the assignment problem". Naval Research Logistics
Quarterly 2:83–97; this is the O(n^2 m) shortest-augmenting-path form with row/column potentials
(as in Jonker & Volgenant 1987). It gives the same optimum as ``scipy.optimize.linear_sum_assignment``
(checked in the tests), without making SciPy a runtime dependency of the Lambda: ROI matching only
ever sees a handful of shapes per object and label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def linear_sum_assignment(cost: Sequence[Sequence[float]]) -> tuple[list[int], list[int]]:
    """Rows and columns of a minimum-cost assignment of ``min(n_rows, n_cols)`` pairs.

    ``cost`` is a rectangular matrix of finite numbers (a list of lists or a 2-D numpy array).
    Returns ``(rows, cols)`` sorted by row, like SciPy's function of the same name.
    """
    a = [[float(x) for x in row] for row in cost]
    n_rows = len(a)
    n_cols = len(a[0]) if n_rows else 0
    if n_rows == 0 or n_cols == 0:
        return [], []
    if any(len(row) != n_cols for row in a):
        raise ValueError("cost matrix must be rectangular")
    if any(not math.isfinite(x) for row in a for x in row):
        raise ValueError("cost matrix must be finite")
    transposed = n_rows > n_cols
    if transposed:
        a = [list(col) for col in zip(*a)]
    n, m = len(a), len(a[0])
    inf = math.inf
    u = [0.0] * (n + 1)
    v = [0.0] * (m + 1)
    p = [0] * (m + 1)      # p[j]: row (1-based) assigned to column j; p[0] the row being inserted
    way = [0] * (m + 1)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = [inf] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0 = p[j0]
            row = a[i0 - 1]
            delta = inf
            j1 = 0
            ui0 = u[i0]
            for j in range(1, m + 1):
                if not used[j]:
                    cur = row[j - 1] - ui0 - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    pairs = [(p[j] - 1, j - 1) for j in range(1, m + 1) if p[j] != 0]
    if transposed:
        pairs = [(c, r) for r, c in pairs]
    pairs.sort()
    return [r for r, _ in pairs], [c for _, c in pairs]
