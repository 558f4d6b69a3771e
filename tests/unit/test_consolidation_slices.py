"""Series answers: ROI ``instance``/``frame`` in the contract, consolidation per slice
(labeling/consolidation/slices.py), image-level behaviour unchanged."""

from __future__ import annotations

import pytest

from labeling.consolidation import ConsolidationError, ItemAnswers, consolidate_item, consolidate_job, parse_item
from labeling.consolidation.inputs import WorkerAnswer, parse_answer
from labeling.contracts.answer import parse_answer as parse_contract_answer
from labeling.contracts.errors import ContractError
from labeling.contracts.geometry import ImageGeometry
from labeling.consolidation.slices import consolidate_slice_rois, is_slice_item, slice_agreement

NAMES = ["Nodule"]
BOX = [[10, 10], [20, 20]]


def roi(instance=None, frame=None, points=BOX, shape="ellipse"):
    out = {"label": "Nodule", "shape": shape, "points": points}
    if instance is not None:
        out["instance"] = instance
    if frame is not None:
        out["frame"] = frame
    return out


def answer(*rois, present=True):
    return {"labels": [{"name": "Nodule", "present": present}], "rois": list(rois)}


def test_roi_reference_parsed_and_frame_defaults_to_zero():
    parsed = parse_answer(WorkerAnswer("w1", answer(roi("inst-a", 3), roi("inst-b"), roi())), NAMES, item_id="s")
    assert [(r.instance, r.frame) for r in parsed.rois] == [("inst-a", 3), ("inst-b", 0), (None, None)]


def test_contract_round_trip_keeps_the_slice():
    parsed = parse_contract_answer(answer(roi("inst-a", 2), roi()), NAMES)
    assert [r.to_dict().get("instance") for r in parsed.rois] == ["inst-a", None]
    assert parsed.to_dict()["rois"][0] == {"label": "Nodule", "shape": "ellipse", "points": [[10.0, 10.0], [20.0, 20.0]],
                                           "instance": "inst-a", "frame": 2}
    assert "frame" not in parsed.to_dict()["rois"][1]
    with pytest.raises(ContractError, match=r"rois\[0\].frame: frame 2 is outside the task's 2 frame"):
        parse_contract_answer(answer(roi("mf", 2)), NAMES, geometry=ImageGeometry(64, 64, 2))
    assert parse_contract_answer(answer(roi("mf", 1)), NAMES, geometry=ImageGeometry(64, 64, 2)).rois[0].frame == 1


@pytest.mark.parametrize("entry, field, reason", [
    (roi(frame=2), "rois[0].frame", "frame 2 given without instance"),
    (roi("a", -1), "rois[0].frame", "expected a 0-based frame number (an integer >= 0), got -1"),
    (roi("a", True), "rois[0].frame", "got True"),
    (roi("a", "1"), "rois[0].frame", "got '1'"),
    (roi(""), "rois[0].instance", "expected the Orthanc instance ID (a non-empty string), got ''"),
    (roi(5), "rois[0].instance", "got 5"),
])
def test_bad_roi_reference_names_the_field(entry, field, reason):
    with pytest.raises(ConsolidationError) as info:
        parse_answer(WorkerAnswer("w1", answer(entry)), NAMES, item_id="series-1")
    assert info.value.field == field and reason in info.value.reason
    assert "worker 'w1'" in str(info.value)


def consolidate(answers, **kw):
    item = parse_item(ItemAnswers.from_pairs("s", answers), NAMES)
    return consolidate_slice_rois(item, NAMES, list(answers), annotators=len(answers),
                                  single_worker_confidence=0.667, **kw)


def test_rois_match_only_on_the_same_slice():
    rois, ious = consolidate({"w1": answer(roi("a")), "w2": answer(roi("a")), "w3": answer(roi("b"))})
    # same pixels on slice b, but another slice: one supporter of three, dropped
    assert rois == [{"label": "Nodule", "shape": "ellipse", "points": [[10.0, 10.0], [20.0, 20.0]],
                     "confidence": 0.6667, "instance": "a", "frame": 0}]
    assert ious == [1.0]


def test_frames_of_one_multiframe_instance_are_separate_slices():
    rois, _ = consolidate({"w1": answer(roi("mf", 4)), "w2": answer(roi("mf", 4)), "w3": answer(roi("mf", 5))})
    assert [(r["instance"], r["frame"]) for r in rois] == [("mf", 4)]


def test_neighbouring_slices_are_kept_per_slice_not_merged():
    answers = {"w1": answer(roi("s12")), "w2": answer(roi("s13")), "w3": answer(roi("s12", points=[[11, 11], [21, 21]]))}
    rois, ious = consolidate(answers)
    assert [(r["instance"], r["confidence"]) for r in rois] == [("s12", 0.6667)]
    assert rois[0]["points"] == [[10.5, 10.5], [20.5, 20.5]]  # fused within slice 12 only
    assert len(ious) == 1
    # with K = 2 every shape is kept (ceil(2/2) = 1): both slices, each its own ROI
    two, _ = consolidate({"w1": answer(roi("s12")), "w2": answer(roi("s13"))})
    assert [(r["instance"], r["confidence"]) for r in two] == [("s12", 0.5), ("s13", 0.5)]


def test_slice_order_lists_rois_anatomically():
    answers = {"w1": answer(roi("z"), roi("a")), "w2": answer(roi("z"), roi("a"))}
    by_id, _ = consolidate(answers)
    assert [r["instance"] for r in by_id] == ["a", "z"]
    ordered, _ = consolidate(answers, slice_order=["z", "a"])
    assert [r["instance"] for r in ordered] == ["z", "a"]


def test_consolidate_job_on_series_items_keeps_slice_references_and_series_labels():
    items = [
        ItemAnswers.from_pairs("series-1", {"w1": answer(roi("a1")), "w2": answer(roi("a1")),
                                            "w3": answer(roi("a2"), present=True)}),
        ItemAnswers.from_pairs("series-2", {"w1": answer(present=False), "w2": answer(present=False),
                                            "w3": answer(present=True)}),
        ItemAnswers.from_pairs("image-1", {"w1": answer(roi()), "w2": answer(roi()), "w3": answer(roi())}),
    ]
    result = consolidate_job(items, NAMES)
    assert not result.errors
    s1, s2, image = (result.items[k] for k in ("series-1", "series-2", "image-1"))
    assert [r["instance"] for r in s1["rois"]] == ["a1"]
    assert s1["labels"][0]["present"] is True and s2["labels"][0]["present"] is False
    assert s1["agreement"]["rois_mean_iou"] == 1.0  # per series: the matched pairs of its slices
    # image-level items: no slice keys, as before
    assert image["rois"] == [{"label": "Nodule", "shape": "ellipse", "points": [[10.0, 10.0], [20.0, 20.0]],
                              "confidence": 1.0}]
    single = consolidate_item(items[0], NAMES)
    assert single["rois"] == s1["rois"]


def test_slice_agreement_breaks_the_series_down_by_slice():
    item = parse_item(ItemAnswers.from_pairs("s", {"w1": answer(roi("a"), roi("b")), "w2": answer(roi("a")),
                                                   "w3": answer()}), NAMES)
    assert is_slice_item(item)
    rois, _ = consolidate_slice_rois(item, NAMES, ["w1", "w2", "w3"], annotators=3, single_worker_confidence=0.667)
    summary = slice_agreement(item, rois)
    assert summary["slices_drawn"] == 2 and summary["slices_kept"] == 1
    assert summary["per_slice"] == [{"instance": "a", "frame": 0, "workers": 2, "drawn": 2, "kept": 1},
                                    {"instance": "b", "frame": 0, "workers": 1, "drawn": 1, "kept": 0}]
    assert summary["neighbour_pairs"] == 0  # without the slice order, a and b are not known neighbours
    assert slice_agreement(item, rois, slice_order=["a", "b"])["neighbour_pairs"] == 1  # w2's a, w1's b
    assert slice_agreement(item, rois, slice_order=["a", "x", "b"])["neighbour_pairs"] == 0
    assert not is_slice_item(parse_item(ItemAnswers.from_pairs("i", {"w1": answer(roi())}), NAMES))


def test_neighbour_frames_of_a_multiframe_instance():
    item = parse_item(ItemAnswers.from_pairs("s", {"w1": answer(roi("mf", 4)), "w2": answer(roi("mf", 5)),
                                                   "w3": answer(roi("mf", 7))}), NAMES)
    assert slice_agreement(item, [])["neighbour_pairs"] == 1


def test_both_consolidation_paths_report_slice_agreement_with_the_slice_order():
    # two workers on slice b, one on its neighbour c (same box): kept apart, counted as a neighbour pair
    item = ItemAnswers("series-9", (WorkerAnswer("w1", answer(roi("b"))), WorkerAnswer("w2", answer(roi("b"))),
                                    WorkerAnswer("w3", answer(roi("c")))), slice_order=("a", "b", "c"))
    single = consolidate_item(item, NAMES)["agreement"]["slices"]
    whole = consolidate_job([item], NAMES).items["series-9"]["agreement"]["slices"]
    assert single == whole
    assert single["slices_drawn"] == 2 and single["slices_kept"] == 1 and single["neighbour_pairs"] == 2
    # without the order, b and c are not known to be neighbours
    unordered = consolidate_item(ItemAnswers("s", item.answers), NAMES)["agreement"]["slices"]
    assert unordered["neighbour_pairs"] == 0
    # an image item has no slice breakdown
    assert "slices" not in consolidate_item(ItemAnswers("img", (WorkerAnswer("w1", answer(roi())),)), NAMES)["agreement"]
