"""The portal's answer rules (labeling/portal/answers.py validate_answer) and small pure helpers."""

from __future__ import annotations

import json

import pytest

from labeling.portal.jobs import Invalid, as_single_answer, item_agreement, validate_answer, validate_label_attribute
from labeling.contracts.schema import LabelSchema

SCHEMA = LabelSchema.from_dict({
    "name": "t", "task_type": "classification+roi",
    "labels": [{"name": "Opacity", "shapes": ["rectangle"]}, {"name": "Device"}]})
CLASSIFICATION = LabelSchema.from_dict({"name": "c", "task_type": "classification", "labels": [{"name": "A"}]})


def labels(opacity: bool = True, device: bool = False) -> list[dict]:
    return [{"name": "Device", "present": device}, {"name": "Opacity", "present": opacity}]


def test_canonical_form_in_schema_order_from_any_wrapping():
    raw = {"labels": labels(), "rois": [{"label": "Opacity", "shape": "rectangle", "points": [[1, 2], [3, 4]],
                                         "extra": "ignored"}], "image": {"rows": 8, "columns": 8}}
    expected = {"labels": [{"name": "Opacity", "present": True}, {"name": "Device", "present": False}],
                "rois": [{"label": "Opacity", "shape": "rectangle", "points": [[1.0, 2.0], [3.0, 4.0]]}],
                "image": {"rows": 8, "columns": 8, "frame": 0}}
    for form in (raw, json.dumps(raw), {"annotation": json.dumps(raw)}):
        assert validate_answer(SCHEMA, form) == expected


@pytest.mark.parametrize("raw,match", [
    ({"labels": labels()[:1]}, "no present/absent answer for \\['Opacity'\\]"),
    ({"labels": labels() + [{"name": "Nodule", "present": True}]}, "unknown label 'Nodule'"),
    ({"labels": [{"name": "opacity", "present": True}]}, "did you mean 'Opacity'"),
    ({"labels": [{"name": "Opacity", "present": "yes"}, labels()[0]]}, "expected true or false"),
    ({"labels": labels(), "rois": [{"label": "Opacity", "shape": "ellipse", "points": [[0, 0], [1, 1]]}]},
     "'ellipse' is not allowed for label 'Opacity'"),
    ({"labels": labels(), "rois": [{"label": "Opacity", "shape": "rectangle", "points": [[0, 0]]}]}, "points"),
    ({"labels": labels(), "rois": [{"label": "Opacity", "shape": "rectangle",
                                    "points": [[0, 0], [float("nan"), 1]]}]}, "points"),
    ("{not json", "not valid JSON"),
    ([1, 2], "expected an object"),
])
def test_bad_answers_name_the_field(raw, match):
    with pytest.raises(Invalid, match=match):
        validate_answer(SCHEMA, raw)


def test_classification_schema_refuses_rois_and_image_must_match():
    with pytest.raises(Invalid, match="classification only"):
        validate_answer(CLASSIFICATION, {"labels": [{"name": "A", "present": True}],
                                         "rois": [{"label": "A", "shape": "point", "points": [[1, 1]]}]})
    with pytest.raises(Invalid, match="image.rows"):
        validate_answer(SCHEMA, {"labels": labels(), "image": {"rows": 9, "columns": 8}},
                        image={"rows": 8, "columns": 8})
    # A pre-label may leave labels unanswered.
    assert validate_answer(SCHEMA, {"labels": labels()[:1]}, require_all=False)["labels"] == \
        [{"name": "Device", "present": False}]


def test_agreement_is_the_lower_of_labels_and_rois():
    assert item_agreement({"agreement": {"labels": 0.9, "rois_mean_iou": 0.4}}) == 0.4
    assert item_agreement({"agreement": {"labels": -0.2, "rois_mean_iou": None}}) == -0.2
    assert item_agreement({"agreement": {"labels": None, "rois_mean_iou": None}}) is None


def test_single_answer_from_consolidated_drops_confidences():
    content = {"labels": [{"name": "A", "present": True, "confidence": 0.8}],
               "rois": [{"label": "A", "shape": "point", "points": [[1, 2]], "confidence": 1.0}],
               "image": {"rows": 4, "columns": 4, "frame": 0}, "annotators": 2, "agreement": {}}
    assert as_single_answer(content) == {"labels": [{"name": "A", "present": True}],
                                         "rois": [{"label": "A", "shape": "point", "points": [[1, 2]]}],
                                         "image": {"rows": 4, "columns": 4, "frame": 0}}
    assert as_single_answer(None) is None


@pytest.mark.parametrize("name", ["source", "labels", "x-metadata", "y-ref", "", "a b", "x" * 128])
def test_label_attribute_rules(name):
    with pytest.raises(Invalid):
        validate_label_attribute(name)


def test_series_roi_keeps_its_instance_and_frame_and_drops_self_confidence():
    raw = {"labels": labels(), "rois": [{"label": "Opacity", "shape": "rectangle", "points": [[1, 2], [3, 4]],
                                         "instance": "slice-7", "frame": 2, "confidence": 0.4}]}
    (roi,) = validate_answer(SCHEMA, raw)["rois"]
    assert roi == {"label": "Opacity", "shape": "rectangle", "points": [[1.0, 2.0], [3.0, 4.0]],
                   "instance": "slice-7", "frame": 2}


def test_uncertain_counts_as_answered_only_where_the_schema_offers_it():
    offered = LabelSchema.from_dict(dict(SCHEMA.to_dict(), uncertain=True))
    raw = {"labels": [{"name": "Device", "uncertain": True}, {"name": "Opacity", "present": False}]}
    assert validate_answer(offered, raw)["labels"] == [{"name": "Opacity", "present": False},
                                                       {"name": "Device", "uncertain": True}]
    with pytest.raises(Invalid, match="does not offer"):
        validate_answer(SCHEMA, raw)
    with pytest.raises(Invalid, match=r"present/absent/uncertain answer for \['Device'\]"):
        validate_answer(offered, {"labels": [{"name": "Opacity", "present": False}]})
    # an ROI of an uncertain label is not a contradiction (only "absent" with an ROI is)
    roi = {"label": "Opacity", "shape": "rectangle", "points": [[1, 1], [3, 3]]}
    assert validate_answer(offered, {"labels": [{"name": "Opacity", "uncertain": True},
                                                {"name": "Device", "present": False}], "rois": [roi]})["rois"]
