"""Simulated annotators on series tasks, drawn from ``synth --series`` ground truth.

For consolidation tests, benchmarks and (later) the demo. The model, per task and worker:

* The series-level label ``Nodule``: "present" with probability ``sensitivity`` when the series has
  nodules, ``1 - specificity`` when not (the :class:`devkit.simulate.SimWorker` rates).
* A worker answering "present" on a series with nodules outlines each nodule (probability
  ``1 - roi_miss``) **once**, with an ellipse on the slice where its cross-section is largest — what
  ``schemas/ct-nodule.yaml`` asks — or, with probability ``slice_slip``, on a neighbouring slice
  (one before or after, where the nodule also shows): the disagreement the per-slice rule of
  :mod:`labeling.consolidation.slices` keeps visible. The outline is jittered as in
  :func:`devkit.simulate.jitter_roi`.
* A worker answering "present" on a series without nodules draws one spurious circle on a random
  slice; "absent" draws nothing.

Answers are the label shape with ``instance``/``frame`` on each ROI; item IDs are the tasks'
manifest ``source`` (the ground truth's ``source``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from labeling.consolidation.inputs import ItemAnswers, WorkerAnswer
from devkit.simulate import SimWorker, jitter_roi


def largest_cross_sections(record: Mapping[str, Any]) -> dict[int, dict]:
    """Per nodule index: its ground-truth ROI with the widest circle (ties: the first slice)."""
    best: dict[int, dict] = {}
    for roi in record["rois"]:
        width = roi["points"][1][0] - roi["points"][0][0]
        current = best.get(roi["nodule"])
        if current is None or width > current["points"][1][0] - current["points"][0][0]:
            best[roi["nodule"]] = roi
    return best


def _slot(record: Mapping[str, Any], roi: Mapping[str, Any]) -> int:
    """The slice index (InstanceNumber order) of a ground-truth ROI."""
    if record["level"] == "multiframe":
        return int(roi["frame"])
    return record["instances"].index(roi["instance"])


def _where(record: Mapping[str, Any], slot: int) -> dict[str, Any]:
    if record["level"] == "multiframe":
        return {"instance": record["instances"][0], "frame": slot}
    return {"instance": record["instances"][slot], "frame": 0}


def simulate_series_answer(rng: np.random.Generator, record: Mapping[str, Any], worker: SimWorker, *,
                           slice_slip: float = 0.1) -> dict[str, Any]:
    """One worker's answer to the task of ground-truth ``record`` (see the module docstring)."""
    label = record["labels"][0]["name"]
    truth = bool(record["labels"][0]["present"])
    p_yes = worker.rate("sensitivity", label) if truth else 1.0 - worker.rate("specificity", label)
    present = bool(rng.random() < p_yes)
    rois: list[dict] = []
    slices = record["image"]["frames"]
    if present and truth:
        by_slot = {(_slot(record, r), r["nodule"]): r for r in record["rois"]}
        for nodule, roi in sorted(largest_cross_sections(record).items()):
            if rng.random() < worker.roi_miss:
                continue
            slot = _slot(record, roi)
            if rng.random() < slice_slip:
                neighbours = [s for s in (slot - 1, slot + 1) if (s, nodule) in by_slot]
                if neighbours:
                    slot = neighbours[int(rng.integers(len(neighbours)))]
                    roi = by_slot[(slot, nodule)]
            rois.append({**jitter_roi(rng, roi, worker.roi_jitter,
                                    image=(record["image"]["rows"], record["image"]["columns"])),
                         **_where(record, slot)})
    elif present:
        size = record["image"]["columns"]
        cx, cy, r = rng.uniform(0.3, 0.7) * size, rng.uniform(0.3, 0.7) * size, rng.uniform(2, 6)
        rois.append({"label": label, "shape": "ellipse", "points": [[cx - r, cy - r], [cx + r, cy + r]],
                     **_where(record, int(rng.integers(slices)))})
    return {"labels": [{"name": label, "present": present}], "rois": rois,
            "image": {"rows": record["image"]["rows"], "columns": record["image"]["columns"]}}


def simulate_series_job(records: Sequence[Mapping[str, Any]], workers: Sequence[SimWorker], *,
                        annotators_per_item: int = 3, slice_slip: float = 0.1, seed: int = 0) -> list[ItemAnswers]:
    """``annotators_per_item`` distinct workers (uniformly drawn) answer each record's task."""
    if not 1 <= annotators_per_item <= len(workers):
        raise ValueError("annotators_per_item must be between 1 and the number of workers")
    if not 0 <= slice_slip <= 1:
        raise ValueError(f"slice_slip must be within 0..1, got {slice_slip}")
    rng = np.random.default_rng(seed)
    items = []
    for record in records:
        chosen = rng.choice(len(workers), size=annotators_per_item, replace=False)
        items.append(ItemAnswers(record["source"], tuple(
            WorkerAnswer(workers[w].worker_id, simulate_series_answer(rng, record, workers[w], slice_slip=slice_slip))
            for w in chosen)))
    return items
