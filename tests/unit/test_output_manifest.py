"""labeling.gt.output_manifest: the one reader/writer of GT-format output manifests (both backends)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from labeling.gt import contracts as gt_contracts
from labeling.gt import postlabel as gt_postlabel
from labeling.gt.output_manifest import (
    FailedLine,
    OutputManifestError,
    output_line,
    parse_output_line,
    read_output_manifest,
    scan_output_manifest,
    write_output_manifest,
)

LABELS = ["Opacity", "Device", "Effusion"]
INPUT = {"source": "0a1b2c3d-4e5f6a7b-8c9d0e1f-2a3b4c5d-6e7f8a9b", "labels": LABELS,
         "task_type": "classification+roi", "schema": "chest", "sop_instance_uid": "1.2.3.4"}


def _content(**over):
    content = {
        "labels": [{"name": "Opacity", "present": True, "confidence": 0.93},
                   {"name": "Device", "present": False, "confidence": 0.88},
                   {"name": "Effusion", "present": False}],
        "rois": [{"label": "Opacity", "shape": "rectangle", "points": [[10, 20.5], [30, 40]], "confidence": 0.67},
                 {"label": "Device", "shape": "polygon", "points": [[1, 1], [5, 1], [3, 4]]},
                 {"label": "Effusion", "shape": "ellipse", "points": [[50, 60], [70, 90]]},
                 {"label": "Device", "shape": "point", "points": [[8.25, 9.75]]}],
        "image": {"rows": 128, "columns": 96, "frame": 0},
        "annotators": 3, "agreement": {"labels": 0.81, "rois_mean_iou": 0.72},
    }
    content.update(over)
    return content


def _meta(**over):
    meta = {"type": "groundtruth/custom", "job-name": "chest-batch-1", "human-annotated": "yes",
            "creation-date": "2026-01-31T12:00:00+0000", "confidence": 0.9}
    meta.update(over)
    return meta


def _line(attr="chest-batch-1", content=None, meta=None, **input_over):
    return {**INPUT, **input_over, attr: content if content is not None else _content(),
            f"{attr}-metadata": meta if meta is not None else _meta()}


def _write(tmp_path: Path, lines, name="output.manifest") -> Path:
    path = tmp_path / name
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def test_reads_the_label_shape_with_every_field(tmp_path):
    [record] = read_output_manifest(_write(tmp_path, [_line()]))
    assert record.source == INPUT["source"] and record.source_ref is None
    assert record.label_attribute == "chest-batch-1" and record.line_number == 1
    assert record.labels == {"Opacity": True, "Device": False, "Effusion": False}
    assert record.label_confidence == {"Opacity": 0.93, "Device": 0.88}
    assert [r["shape"] for r in record.rois] == ["rectangle", "polygon", "ellipse", "point"]
    assert record.rois[0] == {"label": "Opacity", "shape": "rectangle", "points": [[10.0, 20.5], [30.0, 40.0]],
                              "confidence": 0.67}
    assert "confidence" not in record.rois[1]
    assert record.image == {"rows": 128, "columns": 96, "frame": 0}
    assert record.confidence == 0.9 and record.job_name == "chest-batch-1" and record.human_annotated is True
    assert record.annotators == 3 and record.agreement["rois_mean_iou"] == 0.72
    assert record.line["sop_instance_uid"] == "1.2.3.4"
    answer = record.answer()
    assert answer["labels"][0] == {"name": "Opacity", "present": True, "confidence": 0.93}
    assert answer["rois"][3]["points"] == [[8.25, 9.75]]


def test_both_job_name_spellings_and_gt_naive_timestamps():
    gt_meta = {"type": "groundtruth/custom", "job_name": "labeling-job/chest-batch-1", "human-annotated": "yes",
               "creation-date": "2026-01-31T12:00:00.123456"}
    a, b = read_output_manifest([json.dumps(_line()), _line(meta=gt_meta)])
    assert a.job_name == "chest-batch-1" and b.job_name == "labeling-job/chest-batch-1"
    assert b.confidence is None and b.metadata.creation_date == datetime(2026, 1, 31, 12, 0, 0, 123456)


def test_a_real_gt_custom_task_line_with_source_ref():
    # As GT writes it for a custom workflow: the input line (here source-ref), the Lambda's content under
    # the attribute, and GT's own metadata (job_name with the labeling-job/ prefix, naive timestamp).
    text = ('{"source-ref":"s3://bucket-a/jobs/j1/images/img-1.dcm","cxr":{"labels":[{"name":"Opacity",'
            '"present":true,"confidence":0.75}],"rois":[],"image":{"rows":512,"columns":512,"frame":0},'
            '"annotators":2,"agreement":{"labels":null,"rois_mean_iou":null}},"cxr-metadata":{"type":'
            '"groundtruth/custom","job-name":"labeling-job/j1","human-annotated":"yes","creation-date":'
            '"2026-02-01T08:15:30.912000"}}')
    [record] = read_output_manifest([text])
    assert record.source is None and record.source_ref == "s3://bucket-a/jobs/j1/images/img-1.dcm"
    assert record.key == record.source_ref and record.labels == {"Opacity": True}
    assert record.agreement == {"labels": None, "rois_mean_iou": None}


def test_postlabel_content_round_trips_through_gt_wrapping_and_the_reader():
    """What the post-label Lambda answers, wrapped the way GT writes it, reads back unchanged."""
    def answer(worker, opacity, box):
        return {"workerId": worker, "annotationData": {"content": json.dumps({"annotation": json.dumps({
            "labels": [{"name": "Opacity", "present": opacity}, {"name": "Device", "present": False}],
            "rois": [{"label": "Opacity", "shape": "rectangle", "points": box}],
            "image": {"rows": 64, "columns": 64, "frame": 0}})})}}

    data_objects = {f"obj-{i}": {"source": f"orthanc-{i}", "labels": ["Opacity", "Device"]} for i in range(3)}
    payload = [{"datasetObjectId": oid, "dataObject": obj, "annotations": [
        answer("w1", True, [[10, 10], [20, 20]]), answer("w2", True, [[11, 10], [21, 20]]),
        answer("w3", i == 0, [[10, 11], [20, 21]])]} for i, (oid, obj) in enumerate(data_objects.items())]
    responses, report = gt_postlabel.consolidate_payload(gt_contracts.parse_payload(payload), "chest")
    assert report["errors"] == [] and len(responses) == 3

    lines = []
    for response in responses:  # GT: input line + content[attr] + its metadata
        content = response["consolidatedAnnotation"]["content"]
        lines.append({**data_objects[response["datasetObjectId"]], **content,
                      "chest-metadata": {"type": "groundtruth/custom", "job-name": "labeling-job/chest",
                                         "human-annotated": "yes", "creation-date": "2026-02-01T08:15:30.912000"}})
    records = read_output_manifest(lines)
    assert [r.source for r in records] == ["orthanc-0", "orthanc-1", "orthanc-2"]
    for record, response in zip(records, responses):
        content = response["consolidatedAnnotation"]["content"]["chest"]
        assert record.labels == {e["name"]: e["present"] for e in content["labels"]}
        assert record.label_confidence == {e["name"]: e["confidence"] for e in content["labels"]}
        assert record.rois == content["rois"] and record.image == content["image"]
        assert record.annotators == 3
    assert all(r.labels["Opacity"] for r in records)  # 2 of 3 said present everywhere


def test_output_line_and_writer_round_trip(tmp_path):
    created = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    content = _content()
    line = output_line(INPUT, "portal-job-7", content, "portal-job-7", human_annotated=True, created=created)
    assert line["portal-job-7-metadata"] == {
        "type": "groundtruth/custom", "job-name": "portal-job-7", "human-annotated": "yes",
        "creation-date": "2026-03-04T05:06:07.000000+0000", "confidence": round((0.93 + 0.88) / 2, 4)}
    assert list(line)[:len(INPUT)] == list(INPUT)  # input keys first, unchanged
    out = write_output_manifest(tmp_path / "sub" / "out.manifest", [line, output_line(
        {**INPUT, "source": "other"}, "portal-job-7", _content(labels=[{"name": "Device", "present": True}]),
        "portal-job-7", human_annotated=False, created=created)])
    assert [p.name for p in out.parent.iterdir()] == ["out.manifest"]  # no temporary file left
    first, second = read_output_manifest(out)
    assert first.labels == {"Opacity": True, "Device": False, "Effusion": False}
    assert first.metadata.creation_date == created and first.confidence == 0.905
    assert second.labels == {"Device": True} and second.human_annotated is False and second.confidence is None


def test_writer_leaves_nothing_when_a_line_cannot_be_written(tmp_path):
    target = tmp_path / "out.manifest"
    target.write_text("old\n")
    with pytest.raises(ValueError):
        write_output_manifest(target, [_line(), {"bad": float("nan")}])
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.manifest"]


def test_output_line_refuses_an_attribute_that_collides():
    with pytest.raises(ValueError, match="-metadata"):
        output_line(INPUT, "x-metadata", _content(), "job")
    with pytest.raises(ValueError, match="already a key"):
        output_line(INPUT, "labels", _content(), "job")


def test_failed_lines_are_returned_apart_and_left_out_by_read(tmp_path):
    failed = {**INPUT, "source": "s-failed", "chest-batch-1-metadata": {"failure-reason": "ClientError: timeout"}}
    path = _write(tmp_path, [failed, "", _line()])
    scan = scan_output_manifest(path)
    assert scan.label_attribute == "chest-batch-1"
    assert scan.failed == [FailedLine(1, "s-failed", None, "ClientError: timeout")]
    assert [r.line_number for r in scan.records] == [3]
    assert len(read_output_manifest(path)) == 1


@pytest.mark.parametrize("line, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (_line(source=None), "needs 'source'"),
    ({k: v for k, v in _line().items() if k != "source"}, "needs 'source'"),
    (_line(meta=_meta(type="")), "chest-batch-1-metadata: type"),
    ({**_line(meta={"type": "groundtruth/custom"})}, "job-name"),
    (_line(meta=_meta(confidence=1.5)), "confidence"),
    (_line(meta=_meta(**{"creation-date": "yesterday"})), "creation-date"),
    (_line(content=["x"]), "expected an object with labels/rois/image"),
    (_line(content={"image": {"rows": 1, "columns": 1}}), "neither 'labels' nor 'rois'"),
    (_line(content=_content(labels=[{"name": "Opacity", "present": "yes"}])), "labels[0].present"),
    (_line(content=_content(labels=[{"name": "Nodule", "present": True}])), "labels[0].name"),
    (_line(content=_content(labels=[{"name": "Opacity", "present": True, "confidence": 2}])), "labels[0].confidence"),
    (_line(content=_content(rois=[{"label": "Opacity", "shape": "rectangle", "points": [[1, 2]]}])), "rois[0].points"),
    (_line(content=_content(rois=[{"label": "Opacity", "shape": "polygon", "points": [[1, 2], [3, 4]]}])), "rois[0].points"),
    (_line(content=_content(rois=[{"label": "Opacity", "shape": "circle", "points": [[1, 2], [3, 4]]}])), "rois[0].shape"),
    (_line(content=_content(rois=[{"label": "Opacity", "shape": "point", "points": [["1", 2]]}])), "rois[0].points"),
    (_line(content=_content(rois=[{"label": "Opacity", "shape": "point", "points": [[1, 2]],
                                   "confidence": -0.1}])), "rois[0].confidence"),
    (_line(content=_content(image={"rows": 0, "columns": 5})), "image.rows"),
    (_line(content=_content(annotators=-1)), "annotators"),
    (_line(content=_content(agreement=[0.5])), "agreement"),
    ({**INPUT, "chest-batch-1": _content()}, "no 'chest-batch-1-metadata' key beside 'chest-batch-1'"),
])
def test_a_malformed_line_is_rejected_with_file_line_and_key(tmp_path, line, message):
    path = _write(tmp_path, [_line(), line])
    with pytest.raises(OutputManifestError) as info:
        read_output_manifest(path)
    text = str(info.value)
    assert text.startswith(f"{path}:2: ") and message in text, text


def test_missing_attribute_without_failure_reason_is_an_error():
    with pytest.raises(OutputManifestError, match=r"<lines>:1: no 'chest' key"):
        read_output_manifest([{**INPUT, "chest-metadata": _meta()}])


def test_attribute_inference_and_an_explicit_attribute():
    with pytest.raises(OutputManifestError, match=r"<lines>:1: cannot tell the label attribute.*found none"):
        read_output_manifest([{**INPUT, "chest": _content()}])
    two = {**_line(), "other": _content(), "other-metadata": _meta()}
    with pytest.raises(OutputManifestError, match="give label_attribute"):
        read_output_manifest([two])
    [record] = read_output_manifest([two], label_attribute="other")
    assert record.label_attribute == "other"
    # an inferred attribute must be every line's
    with pytest.raises(OutputManifestError, match=r"<lines>:2: .*one job per file"):
        read_output_manifest([_line(), _line(attr="another-job")])
    # a wrong explicit attribute names the line and the key
    with pytest.raises(OutputManifestError, match=r"<lines>:1: no 'nope' key"):
        read_output_manifest([_line()], label_attribute="nope")


def test_labels_outside_the_line_schema_are_checked_and_without_a_schema_the_content_names_count():
    lone = {"source": "x", "a": {"labels": [{"name": "Anything", "present": True}],
                                 "rois": [{"label": "Else", "shape": "point", "points": [[1, 1]]}]},
            "a-metadata": _meta()}
    [record] = read_output_manifest([lone])
    assert record.labels == {"Anything": True} and record.rois[0]["label"] == "Else" and record.image == {}
    with pytest.raises(OutputManifestError, match="rois\\[0\\].label"):
        read_output_manifest([{**lone, "labels": ["Anything"]}])


def test_unreadable_file_is_named(tmp_path):
    with pytest.raises(OutputManifestError, match="missing.manifest: cannot read"):
        read_output_manifest(tmp_path / "missing.manifest")


def test_parse_output_line_accepts_text():
    record = parse_output_line(json.dumps(_line()), where="f:9", line_number=9)
    assert record.line_number == 9 and record.labels["Opacity"] is True


def test_scan_collecting_problems_counts_every_line_instead_of_stopping():
    """``problems``: the fetch-output tally; bad lines are collected with their place, a line with
    neither the attribute nor its metadata is a failed object, the good lines are still read."""
    from labeling.gt.output_manifest import scan_output_manifest

    meta = {"type": "groundtruth/custom", "human-annotated": "yes", "job-name": "labeling-job/j",
            "creation-date": "2024-01-02T03:04:05.123456"}
    lines = [json.dumps({"source": "a", "j": {"labels": []}, "j-metadata": meta}),
             "not json",
             json.dumps({"source": "b"}),
             json.dumps({"source": "c", "j": {"labels": []}}),
             ""]
    problems: list[str] = []
    scan = scan_output_manifest(lines, "j", problems=problems, name="out.manifest")
    assert [r.source for r in scan.records] == ["a"]
    assert [(f.line_number, f.source) for f in scan.failed] == [(3, "b")]
    assert [p.split(":")[:2] for p in problems] == [["out.manifest", "2"], ["out.manifest", "4"]]
    with pytest.raises(OutputManifestError, match=r"^out.manifest:2: not valid JSON"):
        scan_output_manifest(lines, "j", name="out.manifest")
