"""Simulated annotators with a known truth: for consolidation tests, benchmarks and the demo.

Generative model (the Dawid–Skene model consolidation assumes, plus ROI noise):

* Each object has a true present/absent per label, drawn with the label's ``prevalence``.
* Each object is answered by ``annotators_per_item`` distinct workers drawn uniformly from the
  pool (optionally ``weights``).
* A worker answers "present" with probability ``sensitivity`` when the label is present and
  ``1 - specificity`` when absent (per label, if given as a mapping), independently of the others.
* ROIs (labels listed in ``roi_shapes``, on a ``roi_share`` of the objects): every present label
  has one or two true ROIs of the label's shape (any shape of the registry,
  ``labeling.contracts.shapes``: its points follow from its point count). A worker who answers
  "present" draws each true ROI with probability ``1 - roi_miss``, jittered: each box corner moved
  by a normal error with standard deviation ``roi_jitter`` x the finding's size (width, height); an
  outline of more than two points (a polygon) shifted as a whole by that error and each vertex by
  half of it; a shape without area (a point) by a quarter of it (a point marks a location more
  precisely than an outline traces an extent); if the label is absent (a false positive) the
  worker draws one spurious ROI; independently, with probability ``roi_extra`` a worker adds one
  spurious ROI of a label it answered "present". A worker answering "absent" draws
  nothing for that label.

``simulate_job(...)`` returns a :class:`SimJob` holding the answers as
``labeling.consolidation.ItemAnswers`` (content in the single-annotator label shape of
docs/architecture.md, optionally as the JSON text the viewer submits) and the truth.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labeling.consolidation.inputs import ItemAnswers, WorkerAnswer
from labeling.contracts.shapes import SHAPE_REGISTRY, ShapeSpec


@dataclass(frozen=True)
class SimWorker:
    """A simulated annotator; ``sensitivity``/``specificity`` are a number or ``{label: number}``."""

    worker_id: str
    sensitivity: float | Mapping[str, float] = 0.9
    specificity: float | Mapping[str, float] = 0.9
    roi_jitter: float = 0.03
    roi_miss: float = 0.1
    roi_extra: float = 0.05

    def rate(self, which: str, label: str) -> float:
        value = getattr(self, which)
        if isinstance(value, Mapping):
            return float(value[label])
        return float(value)


@dataclass
class SimJob:
    """Simulated answers and the truth they were drawn from."""

    items: list[ItemAnswers]
    label_names: list[str]
    truth: np.ndarray                      # (n_items, n_labels) bool
    truth_rois: list[list[dict[str, Any]]]  # per item, label-shape ROI dicts
    workers: list[SimWorker]
    assignment: np.ndarray                 # (n_items, K) worker indices
    answers: np.ndarray                    # (n_items, K, n_labels) bool
    image: dict[str, int] = field(default_factory=dict)

    def item_ids(self) -> list[str]:
        return [it.item_id for it in self.items]


POLYGON_VERTICES = 12
"""Vertices of a drawn outline whose point count is open (a polygon), within the shape's bounds."""


def _truth_points(rng: np.random.Generator, spec: ShapeSpec, x0: float, y0: float, w: float,
                  h: float) -> list[list[float]]:
    """Points of a finding in the box ``(x0, y0, w, h)`` for any registered shape, from its point count
    (:class:`labeling.contracts.shapes.ShapeSpec`): one point at the centre; exactly two as the box's
    opposite corners (rectangle, ellipse); otherwise that many vertices (an open count:
    :data:`POLYGON_VERTICES`) around the ellipse the box holds, each at 85-100 % of its radius."""
    if spec.max_points == 1:
        return [[x0 + w / 2, y0 + h / 2]]
    if spec.min_points == spec.max_points == 2:
        return [[x0, y0], [x0 + w, y0 + h]]
    n = spec.max_points or max(POLYGON_VERTICES, spec.min_points)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = rng.uniform(0.85, 1.0, size=n)
    xs = x0 + w / 2 + r * np.cos(t) * w / 2
    ys = y0 + h / 2 + r * np.sin(t) * h / 2
    return [[float(x), float(y)] for x, y in zip(xs, ys)]


def _truth_roi(rng: np.random.Generator, label: str, shape: str, rows: int, cols: int) -> dict:
    spec = SHAPE_REGISTRY.get(shape)
    if spec is None:
        raise ValueError(f"unknown shape {shape!r}; the registered ones are {', '.join(SHAPE_REGISTRY)}")
    w = rng.uniform(0.05, 0.25) * cols
    h = rng.uniform(0.05, 0.25) * rows
    x0 = rng.uniform(0, cols - w)
    y0 = rng.uniform(0, rows - h)
    pts = _truth_points(rng, spec, x0, y0, w, h)
    return {"label": label, "shape": shape, "points": [[float(x), float(y)] for x, y in pts],
            "_size": (w, h)}


def _jitter(rng: np.random.Generator, roi: dict, jitter: float, image: tuple[int, int]) -> dict:
    return jitter_roi(rng, roi, jitter, size=roi["_size"], image=image)


def jitter_roi(rng: np.random.Generator, roi: dict, jitter: float,
               size: tuple[float, float] | None = None, image: tuple[int, int] | None = None) -> dict:
    """A worker's copy of ``roi``: points moved by noise proportional to the ROI's ``size`` (w, h;
    default the points' bounding box), a polygon shifted as a whole plus per-vertex noise.

    ``image`` (rows, columns): points are clamped to the image, as the viewer clamps a drawing
    (the label contract rejects points outside it)."""
    pts = np.array(roi["points"], dtype=float)
    if size is None:
        span = pts.max(axis=0) - pts.min(axis=0)
        size = (max(float(span[0]), 1.0), max(float(span[1]), 1.0))
    w, h = size
    spec = SHAPE_REGISTRY[roi["shape"]]
    if len(pts) > 2:  # an outline (polygon): traced as a whole
        shift = rng.normal(0, jitter, size=2) * (w, h)
        pts = pts + shift + rng.normal(0, jitter / 2, size=pts.shape) * (w, h)
    elif not spec.area:  # a location (point): marked more precisely than an extent
        pts = pts + rng.normal(0, jitter / 4, size=pts.shape) * (w, h)
    else:
        pts = pts + rng.normal(0, jitter, size=pts.shape) * (w, h)
    if image is not None:
        pts = np.clip(pts, 0.0, (float(image[1]), float(image[0])))
    return {"label": roi["label"], "shape": roi["shape"],
            "points": [[round(float(x), 2), round(float(y), 2)] for x, y in pts]}


def _public(roi: dict) -> dict:
    return {k: v for k, v in roi.items() if not k.startswith("_")}


def _draw_verdicts(rng: np.random.Generator, n_items: int, names: Sequence[str], workers: Sequence[SimWorker],
                   K: int, prevalence: float | Mapping[str, float],
                   weights: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The truth (n_items, L), each item's K workers (n_items, K) and their present/absent answers
    (n_items, K, L), drawn in this order from ``rng``."""
    prev = np.array([prevalence[n] if isinstance(prevalence, Mapping) else prevalence for n in names])
    truth = rng.random((n_items, len(names))) < prev
    # K distinct workers per object: the K smallest of W random keys (Gumbel trick for weights).
    keys = rng.random((n_items, len(workers)))
    if weights is not None:
        wts = np.asarray(weights, dtype=float)
        keys = -np.log(keys) / (wts / wts.sum())
    assignment = np.argsort(keys, axis=1)[:, :K]
    sens = np.array([[w.rate("sensitivity", n) for n in names] for w in workers])
    spec = np.array([[w.rate("specificity", n) for n in names] for w in workers])
    p_yes = np.where(truth[:, None, :], sens[assignment], 1.0 - spec[assignment])
    answers = rng.random((n_items, K, len(names))) < p_yes
    return truth, assignment, answers


def _draw_truth_rois(rng: np.random.Generator, truth: Sequence[bool], roi_idx: Sequence[tuple[int, str, str]],
                     rows: int, cols: int) -> list[dict]:
    """One item's true ROIs: one or two per present label that has a shape."""
    rois: list[dict] = []
    for j, name, shape in roi_idx:
        if truth[j]:
            for _ in range(1 + int(rng.random() < 0.3)):
                rois.append(_truth_roi(rng, name, shape, rows, cols))
    return rois


def _draw_worker_rois(rng: np.random.Generator, worker: SimWorker, said: Sequence[bool], truth: Sequence[bool],
                      truth_rois: Sequence[dict], roi_idx: Sequence[tuple[int, str, str]],
                      rows: int, cols: int) -> list[dict]:
    """One worker's ROIs on one item (the module docstring's misses, jitter, false and extra ROIs)."""
    rois: list[dict] = []
    for j, name, shape in roi_idx:
        if not said[j]:
            continue
        if truth[j]:
            for r in truth_rois:
                if r["label"] == name and rng.random() >= worker.roi_miss:
                    rois.append(_jitter(rng, r, worker.roi_jitter, (rows, cols)))
        else:
            rois.append(_public(_truth_roi(rng, name, shape, rows, cols)))
    said_rois = [(n, s) for j, n, s in roi_idx if said[j]]
    if said_rois and rng.random() < worker.roi_extra:
        n, s = said_rois[int(rng.integers(len(said_rois)))]
        rois.append(_public(_truth_roi(rng, n, s, rows, cols)))
    return rois


def simulate_job(
    n_items: int,
    label_names: Sequence[str],
    workers: Sequence[SimWorker],
    *,
    annotators_per_item: int = 3,
    prevalence: float | Mapping[str, float] = 0.3,
    roi_shapes: Mapping[str, str] | None = None,
    roi_share: float = 1.0,
    image: tuple[int, int] = (2048, 2048),
    weights: Sequence[float] | None = None,
    seed: int = 0,
    as_json: bool = False,
    item_prefix: str = "obj-",
) -> SimJob:
    """Draw a job (see the module docstring). ``roi_shapes`` maps a label to the shape its ROIs use.

    The draws come from one generator in a fixed order (verdicts, which items get ROIs, then per item
    its true ROIs and each worker's), so a seed always gives the same job."""
    rng = np.random.default_rng(seed)
    names = list(label_names)
    K = annotators_per_item
    if not 1 <= K <= len(workers):
        raise ValueError("annotators_per_item must be between 1 and the number of workers")
    truth, assignment, answers = _draw_verdicts(rng, n_items, names, workers, K, prevalence, weights)

    rows, cols = image
    image_d = {"rows": int(rows), "columns": int(cols), "frame": 0}
    roi_shapes = dict(roi_shapes or {})
    for label, shape in roi_shapes.items():
        if shape not in SHAPE_REGISTRY:
            raise ValueError(f"roi_shapes[{label!r}]: unknown shape {shape!r}; the registered ones are "
                             f"{', '.join(SHAPE_REGISTRY)}")
    roi_idx = [(j, n, roi_shapes[n]) for j, n in enumerate(names) if n in roi_shapes]
    with_rois = (rng.random(n_items) < roi_share) if roi_idx else np.zeros(n_items, dtype=bool)

    items: list[ItemAnswers] = []
    truth_rois: list[list[dict]] = []
    for i, (said_i, assigned_i) in enumerate(zip(answers.tolist(), assignment.tolist())):
        t_rois = _draw_truth_rois(rng, truth[i], roi_idx, rows, cols) if with_rois[i] else []
        truth_rois.append([_public(r) for r in t_rois])
        item_answers = []
        for said, worker in zip(said_i, (workers[w] for w in assigned_i)):
            content: dict[str, Any] = {
                "labels": [{"name": name, "present": verdict} for name, verdict in zip(names, said)],
                "rois": (_draw_worker_rois(rng, worker, said, truth[i], t_rois, roi_idx, rows, cols)
                         if with_rois[i] else []),
                "image": image_d,
            }
            payload: Any = json.dumps({"annotation": json.dumps(content)}) if as_json else content
            item_answers.append(WorkerAnswer(worker.worker_id, payload))
        items.append(ItemAnswers(f"{item_prefix}{i}", tuple(item_answers)))
    return SimJob(items, names, truth, truth_rois, list(workers), assignment, answers, image_d)


def worker_pool(n: int, *, accuracy: tuple[float, float] = (0.6, 0.95), seed: int = 0,
                prefix: str = "w", **kwargs: Any) -> list[SimWorker]:
    """``n`` workers with sensitivity and specificity drawn independently from ``accuracy``'s range."""
    rng = np.random.default_rng(seed)
    lo, hi = accuracy
    return [SimWorker(f"{prefix}{i}", sensitivity=float(rng.uniform(lo, hi)),
                      specificity=float(rng.uniform(lo, hi)), **kwargs) for i in range(n)]


def to_crowd_frame(job: SimJob, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(task index, worker index, 0/1 answer) arrays of one label, e.g. for crowd-kit's DataFrame."""
    j = job.label_names.index(label)
    n, K = job.assignment.shape
    task = np.repeat(np.arange(n), K)
    worker = job.assignment.reshape(-1)
    answer = job.answers[:, :, j].reshape(-1).astype(int)
    return task, worker, answer
