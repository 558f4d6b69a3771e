"""ROI consolidation: match shapes across workers, fuse each match, score it by support.

Rules (the "why" of each is beside it):

* **Groups.** Shapes are matched only with shapes of the same ``label`` *and* ``shape`` type. Two
  workers outlining one finding with a rectangle and a polygon produce two separate ROIs (fusing
  different geometries has no faithful answer); a schema that allows several shapes for a label
  should expect this.
* **Similarity.** Rectangles: exact intersection-over-union (Jaccard index) of the boxes, as GT's
  built-in bounding-box consolidation uses. Ellipses (the ellipse inscribed in the two-corner box)
  and polygons (even-odd rule): IoU of their masks rasterised on a ``grid x grid`` lattice
  (default 64 x 64) spanning the union of the two bounding boxes — exact up to the lattice, about
  one percentage point of IoU, and cheap; disjoint bounding boxes short-cut to 0. Points: distance;
  two points match when at most ``point_distance`` x the image diagonal apart (default 2 %:
  ~58 px on a 2048 x 2048 image), or ``point_distance_px`` pixels when the image size is unknown.
* **Matching into clusters** (one shape per worker per cluster). Workers are taken in order of
  decreasing estimated quality (then input order); the first worker's shapes open clusters; each
  next worker's shapes are assigned to existing clusters by the Hungarian method (minimum-cost
  assignment, :mod:`.assignment`) on the *mean* similarity to the cluster's members. A pair is
  admissible when that mean IoU is >= ``iou_threshold`` (points: mean distance <= the threshold);
  the assignment first maximises the number of admissible pairs, then their total similarity.
  Shapes left unassigned open new clusters.
* **Fusion.** Rectangle and ellipse: the coordinate-wise mean of the members' normalised boxes
  (min/max corners); point: the mean point; polygon: the *medoid* — the member with the highest
  mean IoU to the other members (ties: the earliest, i.e. best-rated, worker) — which keeps a contour
  a person actually drew (averaging vertex lists needs a correspondence that freehand contours do not
  have).
* **Confidence** = cluster size / K, K = the number of workers who answered the object (a worker
  who drew nothing votes "no ROI here"). For a single-worker object the confidence is that worker's
  estimated overall accuracy, or the prior accuracy for an unknown worker (the same rule as labels).
* **Keep rule.** A cluster is kept when at least ``min_support`` workers drew it; the default is
  ``ceil(K / 2)``: a majority-or-tie for K >= 3 (2 of 3, 2 of 4, 3 of 5), and every shape (with
  its confidence) when K <= 2, where no majority can be formed without discarding all
  disagreement. ROIs are kept independently of the consolidated image-level label answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from labeling.contracts.answer import Roi
from labeling.contracts.shapes import SHAPES

from .assignment import linear_sum_assignment
from .inputs import ParsedItem
_FORBIDDEN = 1e3


@dataclass
class RoiCluster:
    """Shapes of different workers judged to be the same finding (members in worker order)."""

    label: str
    shape: str
    members: list[tuple[str, Roi]] = field(default_factory=list)
    pair_ious: list[float] = field(default_factory=list)
    points: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.members)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two boxes (xmin, ymin, xmax, ymax)."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    inter = max(ix, 0.0) * max(iy, 0.0)
    union = area_a + area_b - inter
    if union <= 0.0:
        return 1.0 if tuple(a) == tuple(b) else 0.0
    return inter / union


def _mask(roi: Roi, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Boolean mask of ``roi`` at the lattice points (xs[None, :], ys[:, None])."""
    if roi.shape == "rectangle":
        x0, y0, x1, y1 = roi.box()
        return ((xs >= x0) & (xs <= x1))[None, :] & ((ys >= y0) & (ys <= y1))[:, None]
    if roi.shape == "ellipse":
        x0, y0, x1, y1 = roi.box()
        rx, ry = (x1 - x0) / 2.0, (y1 - y0) / 2.0
        if rx <= 0 or ry <= 0:
            return np.zeros((len(ys), len(xs)), dtype=bool)
        dx = ((xs - (x0 + rx)) / rx) ** 2
        dy = ((ys - (y0 + ry)) / ry) ** 2
        return (dx[None, :] + dy[:, None]) <= 1.0
    if roi.shape == "polygon":
        # Even-odd rule, scanline form: a lattice point is inside when a ray from it towards +x
        # crosses an odd number of edges. For each (edge, row) crossing at x_at, the columns with
        # x < x_at are flipped: count crossings per (row, first column not flipped) and take
        # suffix sums -> O(edges x rows + rows x columns) instead of their product.
        pa = roi.points
        pb = np.concatenate([pa[1:], pa[:1]])
        keep = pa[:, 1] != pb[:, 1]
        xa, ya, xb, yb = (v[keep][:, None] for v in (pa[:, 0], pa[:, 1], pb[:, 0], pb[:, 1]))
        gy = ys[None, :]
        crosses = (ya > gy) != (yb > gy)                       # (E, rows)
        e_idx, r_idx = np.nonzero(crosses)
        x_at = (xa[e_idx, 0] + (ys[r_idx] - ya[e_idx, 0]) * (xb[e_idx, 0] - xa[e_idx, 0])
                / (yb[e_idx, 0] - ya[e_idx, 0]))
        k = np.searchsorted(xs, x_at, side="left")             # columns 0..k-1 have x < x_at
        n_cols = len(xs)
        cnt = np.bincount(r_idx * (n_cols + 1) + k, minlength=len(ys) * (n_cols + 1))
        cnt = cnt.reshape(len(ys), n_cols + 1)
        suffix = np.cumsum(cnt[:, ::-1], axis=1)[:, ::-1]      # suffix[r, j] = crossings with k >= j
        return (suffix[:, 1:] & 1).astype(bool)
    raise ValueError(f"no area for shape {roi.shape!r}")


def shape_iou(a: Roi, b: Roi, *, grid: int = 64) -> float:
    """IoU of two area shapes (exact for two rectangles, rasterised otherwise; see module docs)."""
    ba, bb = a.box(), b.box()
    if a.shape == "rectangle" and b.shape == "rectangle":
        return box_iou(ba, bb)
    if ba[2] < bb[0] or bb[2] < ba[0] or ba[3] < bb[1] or bb[3] < ba[1]:
        return 0.0
    x0, y0 = min(ba[0], bb[0]), min(ba[1], bb[1])
    x1, y1 = max(ba[2], bb[2]), max(ba[3], bb[3])
    if x1 <= x0 or y1 <= y0:
        return 1.0 if ba == bb else 0.0
    xs = x0 + (np.arange(grid) + 0.5) * (x1 - x0) / grid
    ys = y0 + (np.arange(grid) + 0.5) * (y1 - y0) / grid
    ma, mb = _mask(a, xs, ys), _mask(b, xs, ys)
    union = np.count_nonzero(ma | mb)
    if union == 0:
        return 0.0
    return np.count_nonzero(ma & mb) / union


def _fuse(cluster: RoiCluster, sim) -> np.ndarray:
    rois = [roi for _, roi in cluster.members]
    if cluster.shape in ("rectangle", "ellipse"):
        boxes = np.array([roi.box() for roi in rois])
        b = boxes.mean(axis=0)
        return np.array([[b[0], b[1]], [b[2], b[3]]])
    if cluster.shape == "point":
        return np.mean([roi.points[0] for roi in rois], axis=0)[None, :]
    # polygon: medoid by mean IoU to the other members
    if len(rois) == 1:
        return rois[0].points
    best, best_score = 0, -1.0
    for i in range(len(rois)):
        score = sum(sim(rois[i], rois[j]) for j in range(len(rois)) if j != i) / (len(rois) - 1)
        if score > best_score + 1e-12:
            best, best_score = i, score
    return rois[best].points


def cluster_group(shapes_by_worker: Sequence[tuple[str, Sequence[Roi]]], *, iou_threshold: float,
                  point_threshold: float, grid: int = 64) -> list[RoiCluster]:
    """Cluster one (label, shape) group; ``shapes_by_worker`` in processing (quality) order."""
    if not shapes_by_worker:
        return []
    first = next((rois for _, rois in shapes_by_worker if rois), None)
    if first is None:
        return []
    label, shape = first[0].label, first[0].shape
    cache: dict[tuple[int, int], float] = {}

    def sim(a: Roi, b: Roi) -> float:
        key = (id(a), id(b)) if id(a) < id(b) else (id(b), id(a))
        value = cache.get(key)
        if value is None:
            if shape == "point":
                value = float(math.dist(a.points[0], b.points[0]))  # a distance, not an IoU
            else:
                value = shape_iou(a, b, grid=grid)
            cache[key] = value
        return value

    def affinity(roi: Roi, cluster: RoiCluster) -> tuple[bool, float]:
        """(admissible, normalised similarity in [0, 1])."""
        values = [sim(roi, m) for _, m in cluster.members]
        mean = sum(values) / len(values)
        if shape == "point":
            if point_threshold <= 0:
                return mean == 0.0, 1.0
            return mean <= point_threshold, max(0.0, 1.0 - mean / point_threshold)
        return mean >= iou_threshold, mean

    clusters: list[RoiCluster] = []
    for worker_id, rois in shapes_by_worker:
        if not rois:
            continue
        if clusters:
            cost = []
            admissible = []
            for roi in rois:
                row, adm = [], []
                for cluster in clusters:
                    ok, value = affinity(roi, cluster)
                    adm.append(ok)
                    row.append(1.0 - value if ok else _FORBIDDEN)
                cost.append(row)
                admissible.append(adm)
            rows, cols = linear_sum_assignment(cost)
            assigned = {r: c for r, c in zip(rows, cols) if admissible[r][c]}
        else:
            assigned = {}
        # join in a fixed order so that pair IoUs are recorded before the cluster grows
        for r, roi in enumerate(rois):
            c = assigned.get(r)
            if c is None:
                clusters.append(RoiCluster(label, shape, [(worker_id, roi)]))
                continue
            cluster = clusters[c]
            if shape != "point":
                cluster.pair_ious.extend(sim(roi, m) for _, m in cluster.members)
            cluster.members.append((worker_id, roi))
    for cluster in clusters:
        cluster.points = _fuse(cluster, sim)
    return clusters


def consolidate_rois(
    item: ParsedItem,
    label_names: Sequence[str],
    worker_order: Sequence[str],
    *,
    annotators: int,
    single_worker_confidence: float,
    iou_threshold: float = 0.5,
    point_distance: float = 0.02,
    point_distance_px: float = 20.0,
    min_support: int | None = None,
    grid: int = 64,
) -> tuple[list[dict], list[float]]:
    """Consolidated ROIs of one object (label-shape dicts) and the IoUs of its matched pairs.

    ``worker_order`` lists the object's workers best first (see the module docstring).
    """
    by_worker = {a.worker_id: a for a in item.answers}
    order = [w for w in worker_order if w in by_worker]
    order += [a.worker_id for a in item.answers if a.worker_id not in order]
    groups: dict[tuple[str, str], dict[str, list[Roi]]] = {}
    for w in order:
        for roi in by_worker[w].rois:
            groups.setdefault((roi.label, roi.shape), {}).setdefault(w, []).append(roi)
    if not groups:
        return [], []
    image = item.image or {}
    if image.get("rows") and image.get("columns"):
        point_threshold = point_distance * math.hypot(image["rows"], image["columns"])
    else:
        point_threshold = point_distance_px
    support = min_support if min_support is not None else math.ceil(annotators / 2)
    label_rank = {name: i for i, name in enumerate(label_names)}
    shape_rank = {s: i for i, s in enumerate(SHAPES)}
    out: list[tuple[tuple, dict]] = []
    ious: list[float] = []
    for (label, shape), per_worker in groups.items():
        clusters = cluster_group([(w, per_worker[w]) for w in order if w in per_worker],
                                 iou_threshold=iou_threshold, point_threshold=point_threshold,
                                 grid=grid)
        for cluster in clusters:
            ious.extend(cluster.pair_ious)
            if cluster.size < support:
                continue
            confidence = (single_worker_confidence if annotators == 1
                          else min(1.0, cluster.size / annotators))
            pts = [[round(float(x), 3), round(float(y), 3)] for x, y in cluster.points]
            box = (float(cluster.points[:, 0].min()), float(cluster.points[:, 1].min()))
            key = (label_rank[label], shape_rank[shape], -cluster.size, box)
            out.append((key, {"label": label, "shape": shape, "points": pts,
                              "confidence": round(confidence, 4)}))
    out.sort(key=lambda kv: kv[0])
    return [roi for _, roi in out], ious


def worker_order_for(item: ParsedItem, accuracy: Mapping[str, float]) -> list[str]:
    """The object's workers, best estimated accuracy first (unknown workers last, input order)."""
    indexed = list(enumerate(a.worker_id for a in item.answers))
    indexed.sort(key=lambda iw: (-accuracy.get(iw[1], -1.0), iw[0]))
    return [w for _, w in indexed]
