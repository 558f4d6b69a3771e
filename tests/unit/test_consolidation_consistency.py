"""The one self-consistency rule (labeling/consolidation/consistency.py): a label's ROIs follow its
consolidated present/absent; an unanswered label is present exactly when an ROI of it survives. The
portal's path (consolidate_item), the job path (consolidate_job) and GT's post-label Lambda agree."""

from __future__ import annotations

import json

from labeling.gt import contracts as gt_contracts
from labeling.gt import postlabel as gt_postlabel
from labeling.consolidation import ItemAnswers, consolidate_item, consolidate_job
from labeling.consolidation.consistency import contradictions, reconcile

NAMES = ["Opacity", "Device"]
RECT = {"label": "Opacity", "shape": "rectangle", "points": [[2, 2], [20, 20]]}


def _answer(opacity: bool, rois=()):
    return {"labels": [{"name": "Opacity", "present": opacity}, {"name": "Device", "present": False}],
            "rois": list(rois), "image": {"rows": 32, "columns": 32, "frame": 0}}


def _consistent(content):
    absent = {e["name"] for e in content["labels"] if not e["present"]}
    return not any(r["label"] in absent for r in content["rois"])


def test_one_one_split_never_exports_absent_with_its_rectangle():
    item = ItemAnswers.from_pairs("x", {"a": _answer(True, [RECT]), "b": _answer(False)})
    single = consolidate_item(item, NAMES)
    job = consolidate_job([item], NAMES).items["x"]
    objects = gt_contracts.parse_payload([{"datasetObjectId": "x", "dataObject": {"labels": NAMES}, "annotations": [
        {"workerId": w, "annotationData": {"content": json.dumps({"annotation": json.dumps(a)})}}
        for w, a in (("a", _answer(True, [RECT])), ("b", _answer(False)))]}])
    responses, _ = gt_postlabel.consolidate_payload(objects, "chest", NAMES)
    lambda_content = responses[0]["consolidatedAnnotation"]["content"]["chest"]
    for content in (single, job, lambda_content):
        opacity = next(e for e in content["labels"] if e["name"] == "Opacity")
        assert _consistent(content), content
        assert opacity["present"] is False and content["rois"] == []
    decisions = [[(e["name"], e["present"]) for e in c["labels"]] for c in (single, job, lambda_content)]
    assert decisions[0] == decisions[1] == decisions[2]  # confidences differ: one object vs the job's EM


def test_agreeing_present_keeps_the_fused_rectangle():
    other = dict(RECT, points=[[3, 3], [21, 21]])
    content = consolidate_item(ItemAnswers.from_pairs("x", {"a": _answer(True, [RECT]), "b": _answer(True, [other])}),
                               NAMES)
    assert [r["label"] for r in content["rois"]] == ["Opacity"] and _consistent(content)


def test_roi_only_answers_make_their_label_present():
    item = ItemAnswers.from_pairs("x", {"a": {"rois": [RECT]}, "b": {"rois": [dict(RECT, points=[[2, 2], [19, 19]])]}})
    content = consolidate_item(item, NAMES)
    opacity = next(e for e in content["labels"] if e["name"] == "Opacity")
    assert opacity["present"] is True and opacity["confidence"] == content["rois"][0]["confidence"]
    assert next(e for e in content["labels"] if e["name"] == "Device")["present"] is False


def test_reconcile_and_contradictions_directly():
    rois = [dict(RECT, confidence=0.5), {"label": "Device", "shape": "point", "points": [[1, 1]], "confidence": 1.0}]
    present, conf, kept = reconcile(NAMES, [False, False], [0.5, 0.9], rois, answered=[True, False])
    assert present == [False, True] and conf == [0.5, 1.0] and [r["label"] for r in kept] == ["Device"]
    assert contradictions({"Opacity": False, "Device": True}, ["Device", "Opacity", "Opacity"]) == [1, 2]


def _without_uncertain_counts(content):
    return dict(content, labels=[{k: v for k, v in e.items() if k != "uncertain_answers"} for e in content["labels"]])


def test_uncertain_is_no_vote_in_every_consolidation_path():
    """Under the default policy (ignore) an annotator's "uncertain" (labeling/contracts/answer.py)
    counts as that label not answered: one 'present' + one 'uncertain' decides as the 'present'
    alone, in the portal's, the job's and GT's path (only the uncertain count differs); all-uncertain
    decides as nobody answered (an ROI makes it present). Other policies: test_consolidation_uncertain.py."""
    unsure = {"labels": [{"name": "Opacity", "uncertain": True}, {"name": "Device", "present": False}],
              "rois": [], "image": {"rows": 32, "columns": 32, "frame": 0}}
    device_only = {"labels": [{"name": "Device", "present": False}], "rois": [],
                   "image": {"rows": 32, "columns": 32, "frame": 0}}
    with_unsure = ItemAnswers.from_pairs("x", {"a": _answer(True, [RECT]), "b": unsure})
    without = ItemAnswers.from_pairs("x", {"a": _answer(True, [RECT]), "b": device_only})
    for consolidate in (lambda item: consolidate_item(item, NAMES),
                        lambda item: consolidate_job([item], NAMES).items["x"]):
        assert _without_uncertain_counts(consolidate(with_unsure)) == consolidate(without)
        assert consolidate(with_unsure)["labels"][0]["uncertain_answers"] == 1
        opacity = next(e for e in consolidate(with_unsure)["labels"] if e["name"] == "Opacity")
        assert opacity["present"] is True
    objects = gt_contracts.parse_payload([{"datasetObjectId": "x", "dataObject": {"labels": NAMES}, "annotations": [
        {"workerId": w, "annotationData": {"content": json.dumps(a)}}
        for w, a in (("a", _answer(True, [RECT])), ("b", unsure))]}])
    responses, _ = gt_postlabel.consolidate_payload(objects, "chest", NAMES)
    labels = responses[0]["consolidatedAnnotation"]["content"]["chest"]["labels"]
    assert next(e for e in labels if e["name"] == "Opacity")["present"] is True
    all_unsure = ItemAnswers.from_pairs("x", {"a": dict(unsure, rois=[RECT]), "b": unsure})
    content = consolidate_item(all_unsure, NAMES)
    assert next(e for e in content["labels"] if e["name"] == "Opacity")["present"] is True and _consistent(content)
