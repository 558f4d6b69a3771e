"""The label contract (labeling/contracts): shape registry, answers, geometry, manifest and output lines."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from labeling import consolidation
from labeling.contracts import schema
from labeling.contracts import (MAX_POINTS_PER_ROI, MAX_ROIS_PER_ANSWER, SHAPE_REGISTRY, SHAPES, AnswerImage,
                                ContractError, ImageGeometry, LabelVerdict, parse_answer, unwrap_answer)
from labeling.contracts.ids import validate_instance_id
from labeling.contracts.manifest_line import ManifestError, ManifestLine
from labeling.contracts.output_line import FailedLine, OutputManifestError, output_line, parse_output_line

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["Opacity", "Device"]
ANSWER = {
    "labels": [{"name": "Opacity", "present": True, "confidence": 0.9}, {"name": "Device", "present": False}],
    "rois": [{"label": "Opacity", "shape": "rectangle", "points": [[0.0, 0.0], [96.0, 128.0]]},
             {"label": "Opacity", "shape": "ellipse", "points": [[10.5, 20.0], [30.0, 40.25]], "confidence": 0.5},
             {"label": "Device", "shape": "polygon", "points": [[1.0, 1.0], [5.0, 1.0], [3.0, 4.0]]},
             {"label": "Device", "shape": "point", "points": [[95.5, 127.5]]}],
    "image": {"rows": 128, "columns": 96, "frame": 0},
}


# ---------------------------------------------------------------------------------- registry

def test_the_registry_is_the_one_list_of_shapes():
    assert SHAPES == ("rectangle", "ellipse", "polygon", "point")
    assert schema.SHAPES is SHAPES and consolidation.SHAPES is SHAPES
    counts = {name: (spec.min_points, spec.max_points) for name, spec in SHAPE_REGISTRY.items()}
    assert counts == {"rectangle": (2, 2), "ellipse": (2, 2), "polygon": (3, None), "point": (1, 1)}
    assert all(spec.meaning and spec.sr_graphic_type in ("POLYLINE", "ELLIPSE", "POINT")
               for spec in SHAPE_REGISTRY.values())


def _answer_js(expression: str) -> object:
    """``expression`` evaluated with viewer/src/answer.js imported as ``m`` (a pure module: no DOM)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to read viewer/src/answer.js; install Node.js 20")
    script = f"import(process.argv[1]).then((m) => console.log(JSON.stringify({expression})))"
    out = subprocess.run([node, "--input-type=module", "-e", script, str(ROOT / "viewer/src/answer.js")],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def _viewer_table() -> dict:
    return _answer_js("{points: m.SHAPE_POINTS, shapes: m.SHAPES, max: m.MAX_POINTS_PER_ROI}")


def test_the_viewer_clamps_a_drawing_to_the_image_so_the_contract_accepts_it():
    image = {"rows": 128, "columns": 96, "frame": 0}
    rois = _answer_js("[m.roiFromImagePoints('Opacity', 'rectangle', [[-3.2, 5], [120, 140.7]], "
                      f"{json.dumps(image)}), m.roiFromImagePoints('Device', 'point', [[-1, -1]], "
                      f"{json.dumps(image)})]")
    assert [r["points"] for r in rois] == [[[0, 5], [96, 128]], [[0, 0]]]
    assert parse_answer({"rois": rois, "image": image}, NAMES).to_dict()["rois"][0]["points"] == [[0, 5], [96, 128]]


def test_the_viewer_shape_table_matches_the_registry():
    table = _viewer_table()
    assert table["shapes"] == list(SHAPES)
    assert table["points"] == {name: [spec.min_points, spec.max_points] for name, spec in SHAPE_REGISTRY.items()}
    assert table["max"] == MAX_POINTS_PER_ROI


def test_the_viewer_tool_keys_match_the_registry():
    """The keys the GT template's help lists (the registry's) are the viewer's buttons and key help."""
    source = (ROOT / "viewer/src/viewer.js").read_text(encoding="utf-8")
    buttons = dict((name, key) for name, _, key in
                   re.findall(r"\['(\w+)', '([^']*)', '([^']*)'\]", source.split("const TOOL_BUTTONS", 1)[1]
                              .split("];", 1)[0]))
    key_help = source.split("const KEY_HELP", 1)[1].split(";\n", 1)[0]
    for name, spec in SHAPE_REGISTRY.items():
        assert buttons.get(name) == spec.key, name
        assert f"{spec.key} {name}" in key_help, name
    assert len({spec.key for spec in SHAPE_REGISTRY.values()}) == len(SHAPE_REGISTRY)


def test_a_new_registry_shape_reaches_the_gt_template_and_the_simulator(monkeypatch, tmp_path):
    """Adding a shape to the registry is all the template's tool help and the simulated annotators need."""
    from devkit.simulate import simulate_job, worker_pool
    from labeling.contracts import shapes
    from labeling.gt import viewer_assets
    from labeling.gt.contracts import MAX_TEMPLATE_CHARS

    build = tmp_path / "viewer"
    build.mkdir()
    (build / "viewer.js").write_text("window.x = 1;\n")
    hexagon = shapes.ShapeSpec("hexagon", 6, 6, "the six vertices of a hexagon", True, "POLYLINE", "X")
    monkeypatch.setitem(shapes._BY_NAME, "hexagon", hexagon)

    text = viewer_assets.render_worker_template("https://cdn.example/v/", build)
    assert "Tools: window/level (W), pan (P), zoom (Z), rectangle (R), ellipse (E), polygon (F), point (O), " \
           "hexagon (X);" in text
    assert viewer_assets.ROI_TOOLS_PLACEHOLDER not in text and len(text) < MAX_TEMPLATE_CHARS

    job = simulate_job(40, ["Mass", "Spot"], worker_pool(5), roi_shapes={"Mass": "hexagon", "Spot": "point"},
                       image=(200, 300), prevalence=0.6, seed=1)
    truth = [roi for rois in job.truth_rois for roi in rois if roi["shape"] == "hexagon"]
    drawn = [roi for item in job.items for answer in item.answers for roi in answer.content["rois"]
             if roi["shape"] == "hexagon"]
    assert truth and drawn
    assert {len(roi["points"]) for roi in truth + drawn} == {6}
    assert all(0 <= x <= 300 and 0 <= y <= 200 for roi in truth + drawn for x, y in roi["points"])
    with pytest.raises(ValueError, match="roi_shapes\\['Mass'\\]: unknown shape 'star'"):
        simulate_job(5, ["Mass"], worker_pool(3), roi_shapes={"Mass": "star"}, seed=1)


# ---------------------------------------------------------------------------------- answers

def test_an_answer_round_trips_through_parse_and_serialise():
    parsed = parse_answer(ANSWER, NAMES)
    assert parsed.verdicts == (LabelVerdict("Opacity", True, 0.9), LabelVerdict("Device", False))
    assert parsed.image == AnswerImage(128, 96, 0)
    assert parsed.to_dict() == ANSWER
    assert parse_answer(json.dumps({"annotation": json.dumps(parsed.to_dict())}), NAMES).to_dict() == ANSWER
    assert parse_answer(ANSWER, NAMES).to_dict(order=["Device", "Opacity"])["labels"][0]["name"] == "Device"


def test_points_on_the_far_edges_are_inside_the_image():
    answer = {"rois": [{"label": "Opacity", "shape": "point", "points": [[96, 128]]}],
              "image": {"rows": 128, "columns": 96}}
    assert parse_answer(answer, NAMES).rois[0].bbox == (96.0, 128.0, 96.0, 128.0)


def _roi(shape="point", points=((1, 2),), label="Opacity", **extra):
    return {"label": label, "shape": shape, "points": [list(p) for p in points], **extra}


@pytest.mark.parametrize("content, field, reason", [
    ("{oops", "content", "not valid JSON"),
    ([1], "content", "expected an object"),
    ({"labels": {}}, "labels", "expected a list"),
    ({"labels": ["Opacity"]}, "labels[0]", "expected an object"),
    ({"labels": [{"name": "opacity", "present": True}]}, "labels[0].name", "did you mean 'Opacity'"),
    ({"labels": [{"name": "Opacity", "present": True}] * 2}, "labels[1].name", "answered twice"),
    ({"labels": [{"name": "Opacity", "present": "yes"}]}, "labels[0].present", "expected true or false"),
    ({"labels": [{"name": "Opacity", "present": True, "confidence": 1.5}]}, "labels[0].confidence",
     "not a number within 0..1"),
    ({"rois": {}}, "rois", "expected a list"),
    ({"rois": [_roi()] * (MAX_ROIS_PER_ANSWER + 1)}, "rois", f"at most {MAX_ROIS_PER_ANSWER}"),
    ({"rois": [_roi(label="Nodule")]}, "rois[0].label", "unknown label 'Nodule'"),
    ({"rois": [_roi(shape="circle")]}, "rois[0].shape", "unknown shape 'circle'"),
    ({"rois": [_roi(shape="rectangle")]}, "rois[0].points", "exactly 2 point(s), got 1"),
    ({"rois": [_roi(shape="polygon", points=((0, 0), (1, 1)))]}, "rois[0].points", "at least 3"),
    ({"rois": [_roi(shape="polygon", points=((0, 0),) * (MAX_POINTS_PER_ROI + 1))]}, "rois[0].points",
     f"at most {MAX_POINTS_PER_ROI}"),
    ({"rois": [_roi(points=((True, 2),))]}, "rois[0].points", "non-numeric"),
    ({"rois": [_roi(points=((float("nan"), 2),))]}, "rois[0].points", "non-finite"),
    ({"rois": [_roi(points=((1, 2, 3),))]}, "rois[0].points", "not an [x, y] pair"),
    ({"rois": [_roi(points=((10**400, 2),))]}, "rois[0].points", "non-finite"),
    ({"labels": [{"name": "Opacity", "present": True, "confidence": 10**400}]}, "labels[0].confidence",
     "not a number within 0..1"),
    ({"labels": [{"name": "Opacity", "present": True, "confidence": float("nan")}]}, "labels[0].confidence",
     "not a number within 0..1"),
    ({"rois": [_roi(confidence=-0.1)]}, "rois[0].confidence", "not a number within 0..1"),
    ({"rois": [_roi(points=((-0.5, 2),))], "image": {"rows": 10, "columns": 10}}, "rois[0].points",
     "point 0 (-0.5, 2) lies outside the 10x10 image"),
    ({"rois": [_roi(points=((3, 10.01),))], "image": {"rows": 10, "columns": 10}}, "rois[0].points",
     "y in [0, 10]"),
    ({"labels": [], "image": []}, "image", "expected an object"),
    ({"labels": [], "image": {"rows": 0, "columns": 5}}, "image.rows", "expected an integer >= 1"),
    ({"labels": [], "image": {"rows": 5, "columns": 5, "frame": -1}}, "image.frame", "expected an integer >= 0"),
])
def test_each_broken_rule_is_one_error_naming_the_field(content, field, reason):
    with pytest.raises(ContractError) as info:
        parse_answer(content, NAMES)
    assert info.value.field == field and reason in info.value.reason, str(info.value)
    assert str(info.value) == f"{field}: {info.value.reason}"


@pytest.mark.parametrize("content, field, reason", [
    ({"labels": [], "image": {"rows": 64, "columns": 96}}, "image.rows", "64 but the image has 128"),
    ({"labels": [], "image": {"rows": 128, "columns": 95}}, "image.columns", "95 but the image has 96"),
    ({"labels": [], "image": {"rows": 128, "columns": 96, "frame": 2}}, "image.frame", "outside the image's 2 frame"),
    ({"rois": [_roi(points=((97, 1),))]}, "rois[0].points", "outside the 96x128 image"),
])
def test_an_answer_is_checked_against_the_recorded_geometry(content, field, reason):
    with pytest.raises(ContractError) as info:
        parse_answer(content, NAMES, geometry=ImageGeometry(128, 96, 2))
    assert info.value.field == field and reason in info.value.reason, str(info.value)


def test_unwrap_accepts_the_three_forms():
    inner = {"labels": [], "rois": []}
    assert unwrap_answer(inner) is inner
    assert unwrap_answer(json.dumps(inner)) == inner
    assert unwrap_answer({"annotation": json.dumps(inner)}) == inner


# ---------------------------------------------------------------------------------- geometry

def test_image_geometry_parses_and_names_the_bad_key():
    assert ImageGeometry.from_dict({"rows": 4, "columns": 5}).to_dict() == {"rows": 4, "columns": 5, "frames": 1}
    with pytest.raises(ContractError, match=r"^image_geometry\.columns: missing"):
        ImageGeometry.from_dict({"rows": 4})
    with pytest.raises(ContractError, match=r"^image_geometry\.frames: expected an integer >= 1, got True"):
        ImageGeometry.from_dict({"rows": 4, "columns": 5, "frames": True})


# ---------------------------------------------------------------------------------- manifest line

SOURCE = "0a9b4f3c-1d2e3f40-5a6b7c8d-9e0f1a2b-3c4d5e6f"
LINE = {"source": SOURCE, "labels": NAMES, "task_type": "classification+roi", "schema": "chest"}


def test_a_manifest_line_carries_the_geometry_and_round_trips():
    line = ManifestLine.from_dict({**LINE, "frames": 2, "rows": 128, "columns": 96})
    assert line.geometry == ImageGeometry(128, 96, 2)
    assert list(line.to_dict()) == ["source", "labels", "task_type", "schema", "rows", "columns", "frames"]
    assert ManifestLine.from_dict(json.loads(line.to_json())) == line


def test_a_manifest_line_without_geometry_is_read_as_before():
    line = ManifestLine.from_dict({**LINE, "frames": 1})
    assert line.geometry is None and "rows" not in line.to_dict()


@pytest.mark.parametrize("extra, message", [
    ({"rows": 128}, "'rows' and 'columns' go together"),
    ({"rows": 0, "columns": 5}, "'rows' must be a positive integer, got number 0"),
    ({"rows": 5, "columns": "5"}, "'columns' must be a positive integer, got string '5'"),
])
def test_bad_geometry_in_a_manifest_line_is_refused(extra, message):
    with pytest.raises(ManifestError, match=message):
        ManifestLine.from_dict({**LINE, **extra})


# ---------------------------------------------------------------------------------- output line

def test_an_output_line_round_trips():
    content = {**parse_answer(ANSWER, NAMES).to_dict(), "annotators": 3, "agreement": {"labels": 0.8}}
    line = output_line(LINE, "job", content, "job-1", created=datetime(2026, 1, 31, tzinfo=timezone.utc))
    record = parse_output_line(json.dumps(line))
    assert record.answer() == ANSWER and record.annotators == 3 and record.job_name == "job-1"
    assert record.confidence == 0.9 and record.label_attribute == "job"


def test_an_output_line_names_the_attribute_and_the_field():
    line = output_line(LINE, "job", {"labels": [], "rois": [_roi(points=((200, 1),))],
                                     "image": {"rows": 10, "columns": 10}}, "job-1")
    with pytest.raises(OutputManifestError, match=r"^f:3: job\.rois\[0\]\.points: point 0 \(200, 1\) lies outside"):
        parse_output_line(line, where="f:3")
    recorded = output_line({**LINE, "rows": 10, "columns": 20}, "job", {"labels": [], "rois": [_roi(points=((15, 1),))],
                                                                       "image": {"rows": 10, "columns": 15}}, "job-1")
    with pytest.raises(OutputManifestError, match=r"^<line>: job\.image\.columns: 15 but the image has 20"):
        parse_output_line(recorded)
    with pytest.raises(OutputManifestError, match=r"^<line>: columns: missing"):
        parse_output_line({**recorded, "columns": None})
    failed = {**LINE, "job-metadata": {"failure-reason": "timeout"}}
    assert parse_output_line(failed, line_number=4) == FailedLine(4, SOURCE, None, "timeout")


# ---------------------------------------------------------------------------------- ids

def test_the_orthanc_id_check_names_the_field():
    assert validate_instance_id(SOURCE) == SOURCE
    with pytest.raises(ValueError, match=r"^source: '\.\./x' is not an Orthanc instance ID"):
        validate_instance_id("../x", "source")


# ---------------------------------------------------------------------------------- users of the contract

def test_the_portal_checks_an_answer_against_the_manifest_lines_geometry():
    from labeling.contracts.manifest_line import GEOMETRY_KEYS
    from labeling.portal.jobs import Invalid, validate_answer
    from labeling.contracts.schema import LabelSchema

    label_schema = LabelSchema.from_dict({"name": "chest", "task_type": "classification+roi",
                                          "labels": [{"name": n} for n in NAMES]})
    line = ManifestLine.from_dict({**LINE, "rows": 128, "columns": 96, "frames": 1}).to_dict()
    recorded = {k: line[k] for k in GEOMETRY_KEYS if k in line}
    # The portal refuses ROIs of a label the same answer marks absent (consolidation/consistency.py).
    answer = {**ANSWER, "labels": [{"name": "Opacity", "present": True}, {"name": "Device", "present": True}]}
    assert validate_answer(label_schema, answer, image=recorded)["rois"][3]["points"] == [[95.5, 127.5]]
    with pytest.raises(Invalid, match=r"answer: image\.rows: 64 but the image has 128"):
        validate_answer(label_schema, {**answer, "image": {"rows": 64, "columns": 96}}, image=recorded)
    outside = {"labels": ANSWER["labels"], "rois": [_roi(points=((100, 1),))]}
    with pytest.raises(Invalid, match=r"answer: rois\[0\]\.points: point 0 \(100, 1\) lies outside the 96x128"):
        validate_answer(label_schema, outside, image=recorded)
    assert validate_answer(label_schema, outside)["rois"][0]["points"] == [[100.0, 1.0]]  # older lines: no geometry


def _gt_object(object_id, data_object, *points):
    answer = {"labels": [{"name": "Opacity", "present": True}],
              "rois": [{"label": "Opacity", "shape": "point", "points": [list(p)]} for p in points]}
    return {"datasetObjectId": object_id, "dataObject": {"labels": ["Opacity"], **data_object}, "annotations": [
        {"workerId": "w1", "annotationData": {"content": json.dumps({"annotation": json.dumps(answer)})}}]}


def test_gt_consolidation_checks_answers_against_the_data_objects_geometry():
    from labeling.gt import contracts as gt_contracts
    from labeling.gt import postlabel as gt_postlabel

    objects = gt_contracts.parse_payload([
        _gt_object("inside", {"rows": 10, "columns": 20}, (20, 10)),
        _gt_object("outside", {"rows": 10, "columns": 20}, (3, 11)),
        _gt_object("older-line", {}, (3, 11)),
        _gt_object("bad-geometry", {"rows": 10}, (1, 1)),
    ])
    responses, report = gt_postlabel.consolidate_payload(objects, "chest", None)
    assert [r["datasetObjectId"] for r in responses] == ["inside", "older-line"]
    reasons = {e["datasetObjectId"]: e["reason"] for e in report["errors"]}
    assert reasons == {"outside": "item 'outside', worker 'w1': rois[0].points: point 0 (3, 11) lies outside "
                                  "the 20x10 image (x in [0, 20], y in [0, 10])",
                       "bad-geometry": "dataObject.columns: missing"}


# ---------------------------------------------------------------------------------- uncertain

def test_uncertain_is_its_own_choice_kept_apart_from_the_verdicts():
    """Issue 12 item 3: present / absent / uncertain as one choice per label; uncertain is no vote."""
    content = {"labels": [{"name": "Opacity", "uncertain": True}, {"name": "Device", "present": False}]}
    parsed = parse_answer(content, NAMES)
    assert parsed.labels == {"Device": False} and parsed.uncertain == ("Opacity",)
    assert parsed.to_dict(order=NAMES)["labels"] == [{"name": "Opacity", "uncertain": True},
                                                     {"name": "Device", "present": False}]
    assert parse_answer(parsed.to_dict(), NAMES) == parsed
    assert parse_answer({"labels": [{"name": "Opacity", "present": True, "uncertain": False}]}, NAMES).uncertain == ()


@pytest.mark.parametrize("entry, field, reason", [
    ({"name": "Opacity", "uncertain": True, "present": True}, "labels[0]", "both uncertain and present"),
    ({"name": "Opacity", "uncertain": "yes"}, "labels[0].uncertain", "expected true or false"),
])
def test_a_bad_uncertain_entry_is_one_error(entry, field, reason):
    with pytest.raises(ContractError) as err:
        parse_answer({"labels": [entry]}, NAMES)
    assert err.value.field == field and reason in str(err.value)
    with pytest.raises(ContractError, match="answered twice"):
        parse_answer({"labels": [{"name": "Opacity", "uncertain": True}, {"name": "Opacity", "present": True}]}, NAMES)


def test_the_schema_offers_uncertain_only_when_it_says_so():
    base = {"name": "s", "task_type": "classification", "labels": [{"name": "Opacity"}]}
    assert schema.LabelSchema.from_dict(base).uncertain is False
    assert "uncertain" not in schema.LabelSchema.from_dict(base).to_dict()  # older documents unchanged
    offered = schema.LabelSchema.from_dict(dict(base, uncertain=True))
    assert offered.uncertain is True and schema.LabelSchema.from_dict(offered.to_dict()) == offered
    with pytest.raises(schema.SchemaError, match="uncertain: must be true or false"):
        schema.LabelSchema.from_dict(dict(base, uncertain="maybe"))
