"""ROI consolidation for series and multi-frame tasks: match per slice (instance + frame).

A series task's answers put ``instance`` (Orthanc instance ID) and ``frame`` (0-based) on each ROI
(:mod:`.inputs`). Rules:

* **Per slice.** ROIs are matched only with ROIs drawn on the same ``(instance, frame)``: the
  image-level rules of :mod:`.rois` (same label and shape, IoU by the Hungarian method, fusion,
  confidence = cluster size / K, kept when drawn by at least ``ceil(K/2)`` workers) apply within
  each slice, with K = the number of workers who answered the *series* (a worker who drew nothing on
  a slice votes "no ROI here", as a worker who drew nothing on an image does). Each consolidated ROI
  keeps its slice's ``instance`` and ``frame``.
* **Neighbouring slices: kept per slice, never matched across.** The same nodule outlined by one
  annotator on slice 12 and by another on slice 13 gives two ROIs with one supporter each, which
  the keep rule drops for K >= 3. We accept that, because (1) an ROI is a region of one slice's
  pixels: a fused ROI must lie on one slice, and moving an annotator's outline to a slice they did
  not draw on would report something nobody saw there; (2) a finding spans several slices, and
  which slice shows it "best" is exactly what annotators disagree on — the instructions decide
  (``schemas/ct-nodule.yaml``: the slice where it is largest), and disagreement there is real
  disagreement that agreement numbers should show, not hide; (3) the series-level label (present /
  absent, Dawid–Skene as for images) is what carries "there is a nodule" regardless of the slice.
  Matching in 3D (balls or SEG volumes) is for a 3D ROI type, not for 2D outlines.
* **Agreement per series.** The item's ``agreement`` is the series': the labels' kappa contribution
  (as for an image) and ``rois_mean_iou`` over the matched pairs of all its slices;
  :func:`slice_agreement` breaks it down by slice and counts the neighbour-slice pairs the rule
  kept apart, so a reviewer can see when annotators drew one finding on different slices. Both
  consolidation paths (:func:`.job.consolidate_item`, :func:`.job.consolidate_job`) put it in the
  content as ``agreement.slices`` for a series item, with the item's ``slice_order``
  (:attr:`.inputs.ItemAnswers.slice_order`, the manifest line's ``instances``).

ROIs without ``instance`` in an answer that has some with it belong to the key ``(None, None)``:
the task's own image (``image.frame``); for an image task (no ROI has ``instance``) everything goes
to :func:`.rois.consolidate_rois` unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Optional

from .inputs import ParsedItem
from .rois import consolidate_rois, shape_iou

SliceKey = tuple[Optional[str], Optional[int]]


def is_slice_item(item: ParsedItem) -> bool:
    """True when some ROI of the item names its instance (a series or multi-frame task)."""
    return any(roi.instance is not None for answer in item.answers for roi in answer.rois)


def _slice_sort_key(key: SliceKey, order: dict[str, int]) -> tuple:
    instance, frame = key
    return (instance is not None, order.get(instance or "", len(order)), instance or "", frame or 0)


def consolidate_slice_rois(item: ParsedItem, label_names: Sequence[str], worker_order: Sequence[str], *,
                           annotators: int, single_worker_confidence: float,
                           slice_order: Sequence[str] = (), **roi_settings: Any) -> tuple[list[dict], list[float]]:
    """Consolidated ROIs of a series item (each with ``instance``/``frame``) and its matched IoUs.

    ``slice_order``: the task's ordered instance IDs (the manifest line's ``instances``), to list
    ROIs in anatomical order; instances not in it follow, by ID. ``roi_settings``: as
    :func:`.rois.consolidate_rois` (``iou_threshold``, ``point_distance``, ...).
    """
    keys: dict[SliceKey, None] = {}
    for answer in item.answers:
        for roi in answer.rois:
            keys.setdefault((roi.instance, roi.frame), None)
    order = {instance: i for i, instance in enumerate(slice_order)}
    out: list[dict] = []
    ious: list[float] = []
    for key in sorted(keys, key=lambda k: _slice_sort_key(k, order)):
        one_slice = replace(item, answers=tuple(
            replace(answer, rois=tuple(r for r in answer.rois if (r.instance, r.frame) == key))
            for answer in item.answers))
        rois, pair_ious = consolidate_rois(one_slice, label_names, worker_order, annotators=annotators,
                                           single_worker_confidence=single_worker_confidence, **roi_settings)
        ious += pair_ious
        if key[0] is not None:
            rois = [{**roi, "instance": key[0], "frame": key[1]} for roi in rois]
        out += rois
    return out, ious


def consolidate_item_rois(item: ParsedItem, label_names: Sequence[str], worker_order: Sequence[str], *,
                          annotators: int, single_worker_confidence: float,
                          **roi_settings: Any) -> tuple[list[dict], list[float]]:
    """Per slice for a series item (:func:`consolidate_slice_rois`), else image-level as before."""
    run = consolidate_slice_rois if is_slice_item(item) else consolidate_rois
    return run(item, label_names, worker_order, annotators=annotators,
               single_worker_confidence=single_worker_confidence, **roi_settings)


def _adjacent(a: SliceKey, b: SliceKey, order: dict[str, int]) -> bool:
    """Neighbouring slices: frames f and f +/- 1 of one instance, or consecutive instances of
    ``order`` (single-frame slices)."""
    if a[0] is None or b[0] is None:
        return False
    if a[0] == b[0]:
        return abs((a[1] or 0) - (b[1] or 0)) == 1
    return a[0] in order and b[0] in order and abs(order[a[0]] - order[b[0]]) == 1 and a[1] == b[1]


def slice_agreement(item: ParsedItem, consolidated_rois: Sequence[dict], *, slice_order: Sequence[str] = (),
                    iou_threshold: float = 0.5) -> dict[str, Any]:
    """Per-series ROI agreement by slice: ``slices_drawn`` (slices where any worker drew),
    ``slices_kept`` (slices with at least one consolidated ROI), ``per_slice``:
    ``[{"instance", "frame", "workers", "drawn", "kept"}]`` (workers who drew there, ROIs drawn,
    ROIs kept), and ``neighbour_pairs``: pairs of ROIs by different workers, same label and shape,
    on neighbouring slices (``slice_order``: the task's ordered instances; frames of one instance
    are neighbours by number) with IoU >= ``iou_threshold`` — likely one finding drawn on two
    slices, which the per-slice rule keeps apart (module docstring): a reviewer's cue."""
    stats: dict[SliceKey, dict[str, Any]] = {}
    for answer in item.answers:
        for roi in answer.rois:
            entry = stats.setdefault((roi.instance, roi.frame), {"workers": set(), "drawn": 0, "kept": 0})
            entry["workers"].add(answer.worker_id)
            entry["drawn"] += 1
    for roi in consolidated_rois:
        key = (roi.get("instance"), roi.get("frame"))
        if key in stats:
            stats[key]["kept"] += 1
    per_slice = [{"instance": k[0], "frame": k[1], "workers": len(v["workers"]), "drawn": v["drawn"],
                  "kept": v["kept"]} for k, v in sorted(stats.items(), key=lambda kv: _slice_sort_key(kv[0], {}))]
    order = {instance: i for i, instance in enumerate(slice_order)}
    drawn = [(answer.worker_id, roi) for answer in item.answers for roi in answer.rois if roi.shape != "point"]
    pairs = sum(1 for i, (wa, a) in enumerate(drawn) for wb, b in drawn[i + 1:]
                if wa != wb and (a.label, a.shape) == (b.label, b.shape)
                and _adjacent((a.instance, a.frame), (b.instance, b.frame), order)
                and shape_iou(a, b) >= iou_threshold)
    return {"slices_drawn": len(per_slice), "slices_kept": sum(1 for s in per_slice if s["kept"]),
            "per_slice": per_slice, "neighbour_pairs": pairs}
