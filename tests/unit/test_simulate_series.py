"""Synthetic series -> simulated annotators -> consolidation on slices: the consolidated answer
finds the ground truth (labels per series, ROIs on the largest slice of each nodule)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labeling.consolidation import consolidate_job, shape_iou
from labeling.consolidation.inputs import Roi
from devkit.simulate import SimWorker
from devkit.simulate_series import largest_cross_sections, simulate_series_job
from devkit.synth_series import generate_series_dataset


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("sim") / "ct"
    generate_series_dataset(out, series=8, slices=16, size=64, seed=21, prevalence=0.6, progress=False)
    return [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]


def roi(entry: dict) -> Roi:
    return Roi(entry["label"], entry["shape"], np.array(entry["points"], dtype=float))


def test_consolidated_series_match_the_truth(records):
    assert {r["labels"][0]["present"] for r in records} == {True, False}
    workers = [SimWorker(f"w{i}", sensitivity=0.95, specificity=0.95, roi_jitter=0.03, roi_miss=0.05)
               for i in range(5)]
    items = simulate_series_job(records, workers, annotators_per_item=3, slice_slip=0.1, seed=3)
    result = consolidate_job(items, ["Nodule"])
    assert not result.errors
    right = found = total = 0
    for record in records:
        content = result.items[record["source"]]
        right += content["labels"][0]["present"] == record["labels"][0]["present"]
        for truth in largest_cross_sections(record).values():
            total += 1
            same_slice = [r for r in content["rois"] if (r["instance"], r["frame"]) == (truth["instance"], truth["frame"])]
            found += any(shape_iou(roi(r), roi(truth)) >= 0.5 for r in same_slice)
    assert right >= len(records) - 1
    assert total >= 5 and found >= 0.75 * total
    # every consolidated ROI names a slice of its own task
    for record in records:
        for r in result.items[record["source"]]["rois"]:
            assert r["instance"] in record["instances"]


def test_slice_slips_cost_support_not_correctness(records):
    workers = [SimWorker(f"w{i}", sensitivity=1.0, specificity=1.0, roi_jitter=0.0, roi_miss=0.0) for i in range(3)]
    perfect = consolidate_job(simulate_series_job(records, workers, slice_slip=0.0), ["Nodule"])
    slipped = consolidate_job(simulate_series_job(records, workers, slice_slip=1.0), ["Nodule"])
    n_truth = sum(len(largest_cross_sections(r)) for r in records)
    assert sum(len(perfect.items[r["source"]]["rois"]) for r in records) == n_truth
    assert perfect.report.agreement["rois_mean_iou"] == 1.0
    # everybody on a neighbour slice (two choices, three workers: two at least agree on one): one
    # ROI per nodule survives, on a neighbour, never moved onto the slice nobody drew on
    assert sum(len(slipped.items[r["source"]]["rois"]) for r in records) == n_truth
    for record in records:
        kept = {(r["instance"], r["frame"]) for r in slipped.items[record["source"]]["rois"]}
        for truth in largest_cross_sections(record).values():
            assert (truth["instance"], truth["frame"]) not in kept
