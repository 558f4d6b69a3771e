"""GT custom-workflow contracts (docs/architecture.md, "Contracts"): parsing and building, pure logic."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from labeling.gt import contracts as gt

JOB = "arn:aws:sagemaker:us-east-1:123456789012:labeling-job/chest-1"
ANSWER = {"labels": [{"name": "Opacity", "present": True}, {"name": "Device", "present": False}],
          "rois": [{"label": "Opacity", "shape": "rectangle", "points": [[1.5, 2.5], [30.0, 40.0]]}],
          "image": {"rows": 2048, "columns": 2048, "frame": 0}}


def _content(answer=ANSWER) -> str:
    # What <crowd-form> submits: named fields as a JSON string, the field itself a JSON string.
    return json.dumps({"annotation": json.dumps(answer)})


def prelabel_event(**data_object):
    return {"version": "2018-10-16", "labelingJobArn": JOB, "dataObject": data_object}


def postlabel_event(**overrides):
    event = {"version": "2018-10-16", "labelingJobArn": JOB, "labelCategories": None,
             "labelAttributeName": "chest", "roleArn": "arn:aws:iam::123456789012:role/gt",
             "payload": {"s3Uri": "s3://annotations-bucket/jobs/chest-1/annotations/consolidation-request/iteration-1/x.json"},
             "outputConfig": "s3://annotations-bucket/jobs/chest-1/annotations"}
    event.update(overrides)
    return event


# ------------------------------------------------------------------------------ pre-annotation
def test_prelabel_event_with_source_keeps_the_manifest_line():
    parsed = gt.parse_prelabel_event(prelabel_event(labels=["Opacity", "Device"], source="1.2.3-abc",
                                                    schema="chest-xray"))
    assert parsed.source == "1.2.3-abc" and parsed.source_ref is None
    assert parsed.labeling_job_arn == JOB
    assert parsed.task_input() == {"source": "1.2.3-abc", "labels": ["Opacity", "Device"], "schema": "chest-xray"}
    assert list(parsed.task_input())[0] == "source"


def test_prelabel_event_with_source_ref():
    parsed = gt.parse_prelabel_event({"version": "2018-10-16", "labelingJobArn": JOB,
                                      "dataObject": {"labels": ["A"], "source-ref": "s3://bucket-1/img/a.png"}})
    assert parsed.source_ref == "s3://bucket-1/img/a.png"
    assert list(parsed.task_input()) == ["source-ref", "labels"]


@pytest.mark.parametrize("event, message", [
    ({"version": "2018-10-16"}, "dataObject"),
    ({"version": "2018-10-16", "dataObject": {"labels": ["A"]}}, "needs 'source'"),
    ({"version": "2018-10-16", "dataObject": {"source": ""}}, "dataObject.source"),
    ({"version": "2018-10-16", "dataObject": {"source": 42}}, "dataObject.source"),
    ({"version": "2018-10-16", "dataObject": {"source-ref": "https://x/y"}}, "source-ref"),
    ({"version": "2018-10-16", "dataObject": {"source": "a", "source-ref": "s3://bkt/k"}}, "both"),
    ({"version": "2018-10-16", "labelingJobArn": 7, "dataObject": {"source": "a"}}, "labelingJobArn"),
    (["not", "a", "dict"], "event"),
])
def test_bad_prelabel_events_name_the_problem(event, message):
    with pytest.raises(ValueError, match=message):
        gt.parse_prelabel_event(event)


def test_prelabel_response_uses_a_real_boolean():
    response = gt.prelabel_response({"source": "x"})
    assert response == {"taskInput": {"source": "x"}, "isHumanAnnotationRequired": True}
    assert json.dumps(response).endswith('"isHumanAnnotationRequired": true}')
    assert gt.prelabel_response({"source": "x"}, human_required=0)["isHumanAnnotationRequired"] is False
    with pytest.raises(ValueError):
        gt.prelabel_response("x")


@pytest.mark.parametrize("version", ["2018-10-06", "2031-01-01", None, 7])
def test_other_versions_and_extra_fields_are_accepted_and_noted(version):
    """``version`` is internal to GT (AWS docs): another value must not lose a data object or a batch."""
    pre = gt.parse_prelabel_event({"version": version, "dataObject": {"source": "x"}, "newField": 1})
    post_event = postlabel_event(version=version, anotherNewField={"a": 1}, roleArn=["not", "used"])
    del post_event["labelCategories"]
    post = gt.parse_postlabel_event(post_event)
    assert pre.source == "x" and post.label_categories is None and post.role_arn is None
    for parsed, extra in ((pre, "newField"), (post, "anotherNewField")):
        assert any("is not the documented '2018-10-16'" in note for note in parsed.notes)
        assert any(extra in note for note in parsed.notes)
    assert gt.parse_prelabel_event(prelabel_event(source="x")).notes == ()


# ----------------------------------------------------------------------------- post-annotation
def test_postlabel_event_with_null_label_categories():
    parsed = gt.parse_postlabel_event(postlabel_event())
    assert parsed.label_categories is None
    assert parsed.label_attribute_name == "chest"
    assert parsed.payload_s3_uri.startswith("s3://annotations-bucket/")
    assert parsed.role_arn.endswith(":role/gt") and parsed.kms_key_id is None


def test_postlabel_event_with_categories():
    parsed = gt.parse_postlabel_event(postlabel_event(labelCategories=["Opacity", "Device"], kmsKeyId="k"))
    assert parsed.label_categories == ("Opacity", "Device") and parsed.kms_key_id == "k"


@pytest.mark.parametrize("overrides, message", [
    ({"labelAttributeName": ""}, "labelAttributeName"),
    ({"labelAttributeName": "chest-metadata"}, "-metadata"),
    ({"labelCategories": "Opacity"}, "labelCategories"),
    ({"labelCategories": [1, 2]}, "labelCategories"),
    ({"payload": None}, "payload"),
    ({"payload": {"s3uri": "s3://b-1/k"}}, "payload.s3Uri"),
    ({"payload": {"s3Uri": "/local/file.json"}}, "payload.s3Uri"),
])
def test_bad_postlabel_events_name_the_problem(overrides, message):
    with pytest.raises(ValueError, match=message):
        gt.parse_postlabel_event(postlabel_event(**overrides))


def test_payload_inline_and_s3_answers_in_both_spellings():
    objects = gt.parse_payload([{
        "datasetObjectId": "0", "dataObject": {"source": "abc"},
        "annotations": [
            {"workerId": "w1", "annotationData": {"content": _content()}},
            {"workerId": "w2", "annotationData": {"s3Uri": "s3://bucket-1/answers/w2.json"}},
            {"workerId": "w3", "annotationData": {"s3uri": "s3://bucket-1/answers/w3.json"}},
        ]}])
    (obj,) = objects
    assert obj.error is None and obj.dataset_object_id == "0" and obj.data_object == {"source": "abc"}
    w1, w2, w3 = obj.annotations
    assert json.loads(w1.content["annotation"]) == ANSWER and w1.s3_uri is None
    assert (w2.worker_id, w2.s3_uri, w2.content) == ("w2", "s3://bucket-1/answers/w2.json", None)
    assert w3.s3_uri == "s3://bucket-1/answers/w3.json"


def test_malformed_objects_are_reported_without_dropping_the_others():
    objects = gt.parse_payload([
        {"datasetObjectId": "0", "annotations": [{"workerId": "w1", "annotationData": {"content": _content()}}]},
        "not an object",
        {"annotations": []},
        {"datasetObjectId": "3", "annotations": "nope"},
        {"datasetObjectId": "4", "annotations": [
            {"workerId": "w1", "annotationData": {"content": "{not json"}},
            {"workerId": "w2", "annotationData": {"content": "[1, 2]"}},
            {"workerId": "w3", "annotationData": {}},
            {"workerId": "w4", "annotationData": {"content": _content()}},
        ]},
    ])
    assert [o.index for o in objects] == [0, 1, 2, 3, 4]
    assert objects[0].error is None
    assert "payload[1]" in objects[1].error
    assert "datasetObjectId" in objects[2].error
    assert "payload[3].annotations" in objects[3].error
    bad_json, not_object, no_data, good = objects[4].annotations
    assert "not valid JSON" in bad_json.error and "payload[4].annotations[0]" in bad_json.error
    assert "JSON object" in not_object.error
    assert "s3Uri" in no_data.error
    assert good.error is None and good.worker_id == "w4"


def test_payload_that_is_not_a_list_raises():
    with pytest.raises(ValueError, match="payload"):
        gt.parse_payload({"datasetObjectId": "0"})


def test_resolve_answers_fetches_s3_answers_and_reports_failures():
    obj = gt.parse_payload([{"datasetObjectId": "7", "annotations": [
        {"workerId": "w1", "annotationData": {"content": _content()}},
        {"workerId": "w2", "annotationData": {"s3Uri": "s3://bucket-1/w2.json"}},
        {"workerId": "w3", "annotationData": {"s3uri": "s3://bucket-1/missing.json"}},
        {"workerId": "w4", "annotationData": {"content": "oops"}},
    ]}])[0]
    stored = {"s3://bucket-1/w2.json": _content({"labels": [], "rois": [], "image": {}}).encode()}

    def fetch(uri):
        return stored[uri]

    answers, errors = gt.resolve_answers(obj, fetch)
    assert [a.worker_id for a in answers] == ["w1", "w2"]
    assert json.loads(answers[1].content["annotation"]) == {"labels": [], "rois": [], "image": {}}
    assert len(errors) == 2 and any("missing.json" in e for e in errors)


def test_consolidation_response_shape_and_validation():
    assert gt.consolidation_response("3", "chest", {"labels": []}) == {
        "datasetObjectId": "3", "consolidatedAnnotation": {"content": {"chest": {"labels": []}}}}
    with pytest.raises(ValueError, match="datasetObjectId"):
        gt.consolidation_response("", "chest", {})
    with pytest.raises(ValueError, match="content"):
        gt.consolidation_response("3", "chest", {"x": float("nan")})
    with pytest.raises(ValueError, match="content"):
        gt.consolidation_response("3", "chest", ["not", "a", "dict"])


@pytest.mark.parametrize("uri, parts", [
    ("s3://my-bucket/a/b.json", ("my-bucket", "a/b.json")),
    ("s3://my.bucket.1/k", ("my.bucket.1", "k")),
])
def test_split_s3_uri(uri, parts):
    assert gt.split_s3_uri(uri) == parts


@pytest.mark.parametrize("uri", ["s3://bucket", "s3://Bucket/k", "https://b/k", None, "s3:///k"])
def test_split_s3_uri_rejects(uri):
    with pytest.raises(ValueError):
        gt.split_s3_uri(uri)


# ----------------------------------------------------------------------------- output manifest
def test_output_metadata_accepts_both_job_name_spellings():
    hyphen = gt.parse_output_manifest_metadata({
        "type": "groundtruth/custom", "job-name": "chest-1", "human-annotated": "yes",
        "creation-date": "2026-01-31T12:00:00+0000", "confidence": 0.9, "class-name": "x"})
    underscore = gt.parse_output_manifest_metadata({
        "type": "groundtruth/custom", "job_name": "chest-1", "human-annotated": "no",
        "creation-date": "2018-10-18T22:18:13.527256"})
    assert hyphen.job_name == underscore.job_name == "chest-1"
    assert hyphen.human_annotated is True and underscore.human_annotated is False
    assert hyphen.creation_date == datetime(2026, 1, 31, 12, tzinfo=timezone(timedelta(0)))
    assert underscore.creation_date.tzinfo is None
    assert hyphen.confidence == 0.9 and hyphen.extra == {"class-name": "x"}


@pytest.mark.parametrize("meta, message", [
    ({"job-name": "j"}, "type"),
    ({"type": "groundtruth/custom"}, "job-name"),
    ({"type": "t", "job-name": "a", "job_name": "b"}, "both"),
    ({"type": "t", "job-name": "a", "human-annotated": "maybe"}, "human-annotated"),
    ({"type": "t", "job-name": "a", "creation-date": "yesterday"}, "creation-date"),
    ({"type": "t", "job-name": "a", "confidence": 1.5}, "confidence"),
    ({"type": "t", "job-name": "a", "confidence": True}, "confidence"),
])
def test_bad_output_metadata_names_the_key(meta, message):
    with pytest.raises(ValueError, match=message):
        gt.parse_output_manifest_metadata(meta)


# ----------------------------------------------------------------------------------- template
def test_worker_template_fits_and_submits_the_annotation_field():
    text = (Path(gt.__file__).parent / "worker_template.liquid.html").read_text(encoding="utf-8")
    assert len(text) < gt.MAX_TEMPLATE_CHARS
    assert "<crowd-form>" in text and "</crowd-form>" in text
    assert 'name="annotation"' in text
    # The image reaches the worker only as a short-lived URL of the staged, de-identified copy.
    assert "task.input.image | grant_read_access" in text and "task.input.source" not in text
    assert "s.image | grant_read_access" in text  # and each slice of a series task, the same way
    # Autoescape only protects HTML contexts: no Liquid output inside script text.
    script = text[text.rindex("<script type=\"module\">"):]
    assert "{{" not in script
