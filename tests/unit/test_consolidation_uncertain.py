"""The schema's uncertain_policy, applied by the consolidation library only
(labeling/consolidation/uncertain.py): "ignore" is no vote, "absent"/"present" a vote of that kind
(CheXpert's U-Ignore / U-Zeros / U-Ones), the same in the portal's per-item path (consolidate_item),
close-job's Dawid–Skene (consolidate_job) and GT's post-label Lambda (consolidate_payload); every
label entry says how many answers were uncertain; the answers themselves are never changed."""

from __future__ import annotations

import copy
import json

import pytest

from labeling.consolidation import ItemAnswers, Settings, consolidate_item, consolidate_job
from labeling.gt import contracts as gt_contracts
from labeling.gt import postlabel as gt_postlabel

NAMES = ["Opacity", "Device"]
IMAGE = {"rows": 32, "columns": 32, "frame": 0}
RECT = {"label": "Opacity", "shape": "rectangle", "points": [[2, 2], [20, 20]]}
RECT2 = {"label": "Opacity", "shape": "rectangle", "points": [[3, 3], [21, 21]]}
POLICIES = ("ignore", "absent", "present")


def answer(opacity, rois=(), device=False):
    """One annotator's answer; ``opacity`` is True, False, "uncertain" or None (not answered)."""
    labels = [{"name": "Device", "present": device}]
    if opacity == "uncertain":
        labels.insert(0, {"name": "Opacity", "uncertain": True})
    elif opacity is not None:
        labels.insert(0, {"name": "Opacity", "present": opacity})
    return {"labels": labels, "rois": list(rois), "image": IMAGE}


def as_policy(content, policy):
    """The answer an annotator would have given had ``policy`` been their own choice: the reference
    the library must equal (no vote = the entry left out)."""
    out = copy.deepcopy(content)
    kept = []
    for entry in out["labels"]:
        if entry.get("uncertain"):
            if policy == "ignore":
                continue
            entry = {"name": entry["name"], "present": policy == "present"}
        kept.append(entry)
    out["labels"] = kept
    return out


def opacity(content):
    return next(e for e in content["labels"] if e["name"] == "Opacity")


def stripped(content):
    """``content`` without the uncertain counts (what differs from the rewritten reference)."""
    return dict(content, labels=[{k: v for k, v in e.items() if k != "uncertain_answers"} for e in content["labels"]])


SPLIT = {"a": answer(True, [RECT]), "b": answer(False), "c": answer("uncertain", [RECT2])}
ALL_UNSURE = {"a": answer("uncertain"), "b": answer("uncertain"), "c": answer("uncertain")}


# ------------------------------------------------------------------------------ one item (portal)

@pytest.mark.parametrize("policy, present, confidence, rois", [
    ("ignore", False, 0.5, 0),        # 1-1 tie: a finding is not asserted without a majority
    ("absent", False, 0.6667, 0),     # 2 absent of 3
    ("present", True, 0.6667, 1),     # 2 present of 3: a's and c's rectangles fuse and survive
])
def test_one_one_split_with_an_uncertain_third(policy, present, confidence, rois):
    item = ItemAnswers.from_pairs("x", SPLIT)
    content = consolidate_item(item, NAMES, uncertain_policy=policy)
    assert opacity(content)["present"] is present and opacity(content)["confidence"] == confidence
    assert opacity(content)["uncertain_answers"] == 1
    assert len(content["rois"]) == rois and "uncertain_answers" not in content["labels"][1]
    reference = ItemAnswers.from_pairs("x", {w: as_policy(a, policy) for w, a in SPLIT.items()})
    assert stripped(content) == consolidate_item(reference, NAMES)


@pytest.mark.parametrize("policy, present, confidence", [
    ("ignore", False, 0.5),   # nobody answered: the label's prior (1/2 without a job state)
    ("absent", False, 0.8889),
    ("present", True, 0.8889),
])
def test_all_uncertain(policy, present, confidence):
    content = consolidate_item(ItemAnswers.from_pairs("x", ALL_UNSURE), NAMES, uncertain_policy=policy)
    assert (opacity(content)["present"], opacity(content)["confidence"]) == (present, confidence)
    assert opacity(content)["uncertain_answers"] == 3


def test_all_uncertain_with_an_roi_follows_the_consistency_rule():
    """ignore: nobody voted, so surviving ROIs make the label present; absent: the votes rule and the
    ROIs of an absent label are dropped (labeling/consolidation/consistency.py)."""
    pairs = {"a": answer("uncertain", [RECT]), "b": answer("uncertain", [RECT2])}
    ignored = consolidate_item(ItemAnswers.from_pairs("x", pairs), NAMES)
    zeros = consolidate_item(ItemAnswers.from_pairs("x", pairs), NAMES, uncertain_policy="absent")
    assert opacity(ignored)["present"] is True and len(ignored["rois"]) == 1
    assert opacity(zeros)["present"] is False and zeros["rois"] == []


def test_the_answers_are_not_changed_and_the_settings_carry_the_policy():
    originals = copy.deepcopy(SPLIT)
    for policy in POLICIES:
        consolidate_item(ItemAnswers.from_pairs("x", SPLIT), NAMES, uncertain_policy=policy)
        consolidate_job([ItemAnswers.from_pairs("x", SPLIT)], NAMES, uncertain_policy=policy)
    assert SPLIT == originals
    by_settings = consolidate_item(ItemAnswers.from_pairs("x", SPLIT), NAMES, settings=Settings(uncertain_policy="present"))
    assert by_settings == consolidate_item(ItemAnswers.from_pairs("x", SPLIT), NAMES, uncertain_policy="present")


def test_no_uncertain_answer_no_count_and_a_bad_policy_is_refused():
    content = consolidate_item(ItemAnswers.from_pairs("x", {"a": answer(True), "b": answer(True)}), NAMES,
                               uncertain_policy="absent")
    assert all("uncertain_answers" not in e for e in content["labels"])
    for bad in ("zeros", "", None):
        with pytest.raises(ValueError, match="uncertain_policy: .* is not one of 'ignore', 'absent', 'present'"):
            Settings(uncertain_policy=bad)
    with pytest.raises(ValueError, match="uncertain_policy: 'U-Ones'"):
        consolidate_job([ItemAnswers.from_pairs("x", SPLIT)], NAMES, uncertain_policy="U-Ones")


# ---------------------------------------------------------------------- a job (Dawid–Skene)

def job_items():
    """Eight items three workers agree on, then the split and the all-uncertain item: enough overlap
    for Dawid–Skene to rate the workers."""
    items = [ItemAnswers.from_pairs(f"agree{i}", {w: answer(i % 2 == 0, device=i % 3 == 0) for w in "abc"})
             for i in range(8)]
    return items + [ItemAnswers.from_pairs("split", SPLIT), ItemAnswers.from_pairs("unsure", ALL_UNSURE)]


def rewritten(items, policy):
    return [ItemAnswers(i.item_id, tuple(type(a)(a.worker_id, as_policy(a.content, policy)) for a in i.answers))
            for i in items]


@pytest.mark.parametrize("policy", POLICIES)
def test_dawid_skene_counts_uncertain_as_the_policy_says(policy):
    result = consolidate_job(job_items(), NAMES, uncertain_policy=policy)
    reference = consolidate_job(rewritten(job_items(), policy), NAMES)
    assert not result.errors
    assert {k: stripped(v) for k, v in result.items.items()} == reference.items  # EM saw the same votes
    assert opacity(result.items["split"])["uncertain_answers"] == 1
    assert opacity(result.items["unsure"])["uncertain_answers"] == 3
    summary = result.report.labels["Opacity"]
    assert summary.uncertain == 4 and result.report.labels["Device"].uncertain == 0
    assert summary.answers == 8 * 3 + 2 + (0 if policy == "ignore" else 4)
    assert result.report.settings["uncertain_policy"] == policy
    assert result.report.workers["c"].labels["Opacity"].answers == 8 + (0 if policy == "ignore" else 2)
    unsure = opacity(result.items["unsure"])["present"]
    assert unsure is {"ignore": False, "absent": False, "present": True}[policy]
    if policy != "ignore":  # a 2-1 vote of workers rated equally good
        assert opacity(result.items["split"])["present"] is (policy == "present")


def test_a_job_report_from_before_the_policy_still_loads():
    report = consolidate_job(job_items(), NAMES).report.to_dict()
    for summary in report["labels"].values():
        del summary["uncertain"]
    del report["settings"]["uncertain_policy"]
    from labeling.consolidation import JobReport
    assert JobReport.from_dict(report).labels["Opacity"].uncertain == 0


# ---------------------------------------------------------------- GT's post-label Lambda

def payload(pairs_by_object, policy=None):
    objects = []
    for object_id, pairs in pairs_by_object.items():
        data_object = {"source": object_id, "labels": NAMES, **({"uncertain_policy": policy} if policy else {})}
        objects.append({"datasetObjectId": object_id, "dataObject": data_object, "annotations": [
            {"workerId": w, "annotationData": {"content": json.dumps({"annotation": json.dumps(a)})}}
            for w, a in pairs.items()]})
    return gt_contracts.parse_payload(objects)


@pytest.mark.parametrize("policy", POLICIES)
def test_gt_postlabel_applies_the_manifest_lines_policy_as_the_portal_does(policy):
    by_object = {i.item_id: {a.worker_id: a.content for a in i.answers} for i in job_items()}
    responses, report = gt_postlabel.consolidate_payload(payload(by_object, policy), "chest")
    lambda_items = {r["datasetObjectId"]: r["consolidatedAnnotation"]["content"]["chest"] for r in responses}
    assert report["uncertainPolicy"] == policy and report["errorCount"] == 0
    assert report["consolidation"]["labels"]["Opacity"]["uncertain"] == 4
    assert lambda_items == consolidate_job(job_items(), NAMES, uncertain_policy=policy).items  # close-job's result
    # the portal's per-item path decides the split item as the Lambda does on it alone
    alone, _ = gt_postlabel.consolidate_payload(payload({"split": SPLIT}, policy), "chest")
    single = consolidate_item(ItemAnswers.from_pairs("split", SPLIT), NAMES, uncertain_policy=policy)
    lambda_split = alone[0]["consolidatedAnnotation"]["content"]["chest"]
    assert [(e["name"], e["present"], e.get("uncertain_answers")) for e in lambda_split["labels"]] == \
        [(e["name"], e["present"], e.get("uncertain_answers")) for e in single["labels"]]
    assert lambda_split["rois"] == single["rois"]


def test_gt_postlabel_without_a_policy_ignores_and_refuses_a_bad_or_mixed_one():
    _, report = gt_postlabel.consolidate_payload(payload({"split": SPLIT}), "chest")
    assert report["uncertainPolicy"] == "ignore"
    objects = payload({"x": SPLIT, "y": SPLIT, "z": SPLIT}, "absent")
    objects[1].data_object["uncertain_policy"] = "present"
    objects[2].data_object["uncertain_policy"] = "sometimes"
    responses, report = gt_postlabel.consolidate_payload(objects, "chest")
    assert [r["datasetObjectId"] for r in responses] == ["x"]  # the others are reported, not dropped silently
    reasons = {e["datasetObjectId"]: e["reason"] for e in report["errors"]}
    assert reasons["y"] == ("dataObject.uncertain_policy: 'present' differs from 'absent' of datasetObjectId 'x'; "
                            "one job has one schema")
    assert reasons["z"] == "dataObject.uncertain_policy: 'sometimes' is not one of 'ignore', 'absent', 'present'"
