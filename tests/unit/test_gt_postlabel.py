"""labeling.gt.postlabel: the post-label logic without S3 (the handler tests cover the I/O)."""

from __future__ import annotations

import json

from labeling.gt import contracts as gt_contracts
from labeling.gt import postlabel as gt_postlabel

PAYLOAD = "s3://bucket-a/out/job-1/annotations/consolidation-request/iteration-2/2026-01-31_12:00:00.json"


def _content(opacity: bool) -> str:
    return json.dumps({"annotation": json.dumps({"labels": [{"name": "Opacity", "present": opacity}]})})


def test_report_location_rule():
    report = "consolidation-report/iteration-2/2026-01-31_12:00:00.json"
    assert gt_postlabel.report_location(PAYLOAD, "s3://bucket-b/gt/job-1/annotations") == (
        "bucket-b", f"gt/job-1/annotations/{report}")
    assert gt_postlabel.report_location(PAYLOAD, "s3://bucket-b") == ("bucket-b", report)
    # No (or no usable) outputConfig: next to GT's consolidation-request folder, in the payload's bucket.
    for output_config in (None, "not-a-uri"):
        assert gt_postlabel.report_location(PAYLOAD, output_config) == (
            "bucket-a", f"out/job-1/annotations/{report}")
    assert gt_postlabel.report_location("s3://bucket-a/x/batch.json") == (
        "bucket-a", "x/consolidation-report/batch.json")


def test_consolidate_payload_is_pure_and_fetches_through_the_callable():
    objects = gt_contracts.parse_payload([
        {"datasetObjectId": "a", "dataObject": {"labels": ["Opacity"]}, "annotations": [
            {"workerId": "w1", "annotationData": {"content": _content(True)}},
            {"workerId": "w2", "annotationData": {"s3Uri": "s3://bucket-a/w2.json"}},
            {"workerId": "w3", "annotationData": {"content": _content(False)}},
        ]},
    ])
    fetched = []
    responses, report = gt_postlabel.consolidate_payload(
        objects, "chest", None, fetch=lambda uri: fetched.append(uri) or _content(True))
    assert fetched == ["s3://bucket-a/w2.json"]
    [item] = responses
    label = item["consolidatedAnnotation"]["content"]["chest"]["labels"][0]
    assert label["name"] == "Opacity" and label["present"] is True and 0.5 < label["confidence"] < 1
    assert report["labelNames"] == ["Opacity"] and report["labelNamesSource"] == "dataObject.labels"
    assert report["errors"] == [] and report["consolidation"]["items"] == 1
    json.dumps(report, allow_nan=False)


def test_label_categories_win_and_no_names_at_all_is_reported_per_object():
    objects = gt_contracts.parse_payload([{"datasetObjectId": "a", "dataObject": {"labels": ["X"]}, "annotations": [
        {"workerId": "w1", "annotationData": {"content": json.dumps({"labels": []})}}]}])
    responses, report = gt_postlabel.consolidate_payload(objects, "chest", ["Opacity"])
    assert report["labelNames"] == ["Opacity"] and report["labelNamesSource"] == "labelCategories"
    assert len(responses) == 1

    bare = gt_contracts.parse_payload([{"datasetObjectId": "a", "annotations": [
        {"workerId": "w1", "annotationData": {"content": json.dumps({"labels": []})}}]}])
    responses, report = gt_postlabel.consolidate_payload(bare, "chest", None)
    assert responses == [] and report["errors"][0]["datasetObjectId"] == "a"
    assert "no label names" in report["errors"][0]["reason"]


def test_series_object_consolidates_per_slice_with_the_lines_slice_order():
    def answer(instance: str) -> str:
        roi = {"label": "Nodule", "shape": "ellipse", "points": [[10, 10], [20, 20]], "instance": instance}
        return json.dumps({"annotation": json.dumps({"labels": [{"name": "Nodule", "present": True}], "rois": [roi]})})

    objects = gt_contracts.parse_payload([
        {"datasetObjectId": "s1", "dataObject": {"labels": ["Nodule"], "level": "series", "instances": ["a", "b", "c"],
                                                "rows": 64, "columns": 64, "frames": 3},
         "annotations": [{"workerId": w, "annotationData": {"content": answer(i)}}
                         for w, i in (("w1", "b"), ("w2", "b"), ("w3", "c"))]},
    ])
    [item], report = gt_postlabel.consolidate_payload(objects, "ct", None, fetch=lambda uri: "")
    content = item["consolidatedAnnotation"]["content"]["ct"]
    assert [(r["instance"], r["frame"]) for r in content["rois"]] == [("b", 0)]  # c's lone ROI: 1 of 3
    assert content["agreement"]["slices"]["neighbour_pairs"] == 2  # b and c are neighbours in the line's order
    assert report["errors"] == []
