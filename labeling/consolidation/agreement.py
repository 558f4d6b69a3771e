"""Inter-annotator agreement: Fleiss' kappa, Krippendorff's alpha (nominal), per-object agreement.

All functions take a *count matrix*: one row per unit (an object's label), one column per category
(absent, present — or any nominal categories), ``counts[u, c]`` = how many annotators put unit
``u`` in category ``c``. Units may have different numbers of annotators; units with fewer than two
cannot show (dis)agreement and are left out ("pairable" units, as in Krippendorff).

* Fleiss, J. L. (1971). "Measuring nominal scale agreement among many raters". Psychological
  Bulletin 76(5):378–382. ``kappa = (P_bar - P_e) / (1 - P_e)`` where ``P_i`` is the share of
  agreeing annotator pairs on unit ``i``, ``P_bar`` their mean and ``P_e = sum_c p_c^2`` the chance
  agreement from the pooled category shares ``p_c``. With a varying number of annotators per unit
  we use the usual generalisation (``P_i`` per unit with its own ``n_i``; ``p_c`` over all
  pairable assignments).
* Krippendorff, K. (2011). "Computing Krippendorff's Alpha-Reliability". Annenberg School for
  Communication, University of Pennsylvania. Nominal alpha from the coincidence matrix:
  ``alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k``.

Both are *undefined* (None here) when the pooled answers show no variation at all (``P_e = 1``;
every annotator gave the same category to every unit).

Per-object agreement (the ``agreement.labels`` field of a consolidated object) is the object's
contribution to the job's Fleiss kappa: ``(P_obj - P_e) / (1 - P_e)`` with ``P_obj`` the mean of
``P_i`` over the object's pairable labels and ``P_e`` the job's chance agreement. Averaged over
objects with the same annotators and labels, it gives the job's kappa exactly. It is 1 for full
agreement and can go below -1 for an object whose annotators split on every label in a job where
chance agreement is high. If ``P_e = 1`` (no variation at all in the job) the chance correction is
undefined; an object then reports 1.0, its observed agreement, which is necessarily perfect.
"""

from __future__ import annotations

import numpy as np


def _pairable(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2:
        raise ValueError("counts must be a 2-D array (units x categories)")
    n = counts.sum(axis=1)
    keep = n >= 2
    return counts[keep], n[keep]


def unit_agreement(counts: np.ndarray) -> np.ndarray:
    """Fleiss' ``P_i`` per unit (share of agreeing annotator pairs); NaN where fewer than 2 answers."""
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = ((counts * (counts - 1.0)).sum(axis=1)) / (n * (n - 1.0))
    return np.where(n >= 2, p, np.nan)


def chance_agreement(counts: np.ndarray) -> float | None:
    """Fleiss' ``P_e = sum_c p_c^2`` over pairable units; None if there is none."""
    c, n = _pairable(counts)
    total = n.sum()
    if total == 0:
        return None
    p = c.sum(axis=0) / total
    return float((p * p).sum())


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa (1971) of a units x categories count matrix; None when undefined."""
    c, n = _pairable(counts)
    if len(n) == 0:
        return None
    p_i = ((c * (c - 1.0)).sum(axis=1)) / (n * (n - 1.0))
    p_bar = float(p_i.mean())
    p_e = chance_agreement(c)
    if p_e is None or p_e >= 1.0 - 1e-12:
        return None
    return (p_bar - p_e) / (1.0 - p_e)


def krippendorff_alpha_nominal(counts: np.ndarray) -> float | None:
    """Krippendorff's alpha for nominal data (2011), from a units x values count matrix."""
    c, m = _pairable(counts)
    if len(m) == 0:
        return None
    # sum over c != k of o_ck, per unit: (m_u^2 - sum_c n_uc^2) / (m_u - 1)
    disagree = float(((m * m - (c * c).sum(axis=1)) / (m - 1.0)).sum())
    n_c = c.sum(axis=0)
    n = float(n_c.sum())
    expected = n * n - float((n_c * n_c).sum())
    if expected <= 0.0:
        return None
    return 1.0 - (n - 1.0) * disagree / expected


def object_agreement(p_obj: np.ndarray, p_e: float | None) -> np.ndarray:
    """Per-object kappa contribution ``(P_obj - P_e) / (1 - P_e)``; NaN where ``P_obj`` is NaN.

    See the module docstring for the convention when ``P_e`` is 1 or unknown.
    """
    p_obj = np.asarray(p_obj, dtype=float)
    if p_e is None or p_e >= 1.0 - 1e-12:
        return np.where(np.isnan(p_obj), np.nan, np.where(p_obj >= 1.0 - 1e-12, 1.0, np.nan))
    return (p_obj - p_e) / (1.0 - p_e)


def binary_counts(ones: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Count matrix (units x [absent, present]) from per-unit "present" votes and answers."""
    ones = np.asarray(ones, dtype=float)
    n = np.asarray(n, dtype=float)
    return np.stack([n - ones, ones], axis=-1)
