"""The shipped GT worker template, rendered by ``labeling gt render``, driven in Chromium.

The page comes from one loopback origin; the viewer bundle and the staged (de-identified) DICOM file
from another, as on GT (worker portal page, CloudFront asset location, presigned S3 URL).
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labeling.cli import main
from labeling.contracts.answer import parse_answer
from labeling.contracts.manifest_line import ManifestLine
from labeling.contracts.schema import load_schema
from labeling.gt import contracts as gt_contracts
from labeling.gt.postlabel import consolidate_payload
from labeling.gt.prelabel import Prelabeler, PrelabelSettings
from tests.browser.conftest import SCREENSHOTS
from tests.browser.viewer_driver import ViewerDriver

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SCHEMA = load_schema(REPO / "schemas" / "chest-xray.yaml")
XSS = "<img src=x onerror=alert(1)>"
TOL = 1.5  # image pixels; the 256-px image is shown at ~2.5 screen px per image px


def _render(work_dir: Path, asset_server: Any, name: str, task_input: dict[str, Any]) -> str:
    task_file = work_dir / f"{name}.task.json"
    task_file.write_text(json.dumps({"taskInput": task_input, "isHumanAnnotationRequired": True}))
    out = work_dir / "pages" / f"{name}.html"
    template = REPO / "labeling" / "gt" / "worker_template.liquid.html"
    assert main(["gt", "render", "--template", str(template), "--task-input", str(task_file), "--out", str(out),
                 "--asset-base", asset_server.url("/data"),
                 "--viewer-base-url", asset_server.url("/viewer/")]) == 0
    return f"/pages/{out.name}"


def _task(staged: dict[str, Any], labels: list[str], **extra: Any) -> dict[str, Any]:
    # What labeling/gt/prelabel.py returns for a `source` line (the bucket/key map to --asset-base).
    return {"image": f"s3://annotations/{staged['name']}", "source": "0a9b4f3c-1d2e3f40-5a6b7c8d-9e0f1a2b-3c4d5e6f",
            "labels": labels, "task_type": SCHEMA.task_type, "schema": SCHEMA.name,
            "instructions": SCHEMA.instructions,
            "image_geometry": {"rows": staged["rows"], "columns": staged["columns"], "frames": 1}, **extra}


def _open(page: Any, page_server: Any, path: str) -> ViewerDriver:
    page.goto(page_server.url(path))
    driver = ViewerDriver(page)
    driver.wait_rendered()
    return driver


def _close(actual: list[list[float]], expected: list[list[float]], tol: float = TOL) -> bool:
    return len(actual) == len(expected) and all(
        abs(a[0] - e[0]) <= tol and abs(a[1] - e[1]) <= tol for a, e in zip(actual, expected))


def test_template_draws_rois_ticks_labels_and_submits_the_label_shape(
        page, page_server, asset_server, work_dir, staged_synthetic):
    path = _render(work_dir, asset_server, "gt", _task(staged_synthetic, list(SCHEMA.label_names)))
    driver = _open(page, page_server, path)

    # Instructions come from the task, as text.
    assert SCHEMA.instructions.splitlines()[0] in page.inner_text(".da-instructions")

    driver.draw_rectangle("Effusion", (40.5, 150.5), (100.5, 210.5))
    driver.draw_ellipse("Opacity", (150.5, 60.5), (190.5, 120.5))
    driver.draw_polygon("Device", [(120.5, 20.5), (140.5, 20.5), (140.5, 90.5), (120.5, 90.5)])
    driver.set_label("Device", True)
    driver.set_label("Effusion", True)
    driver.set_label("Opacity", True)
    assert driver.validate() == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "gt-template.png"), full_page=True)

    answer = driver.submit_gt_form()
    assert answer is not None, f"submit was blocked: {driver.form_errors()}"
    assert answer["image"] == {"rows": 256, "columns": 256, "frame": 0}
    assert answer["labels"] == [{"name": "Opacity", "present": True}, {"name": "Device", "present": True},
                                {"name": "Effusion", "present": True}]
    rois = answer["rois"]
    assert [(r["label"], r["shape"]) for r in rois] == [
        ("Effusion", "rectangle"), ("Opacity", "ellipse"), ("Device", "polygon")]
    assert _close(rois[0]["points"], [[40.5, 150.5], [100.5, 210.5]]), rois[0]
    assert _close(rois[1]["points"], [[150.5, 60.5], [190.5, 120.5]]), rois[1]
    xs = [p[0] for p in rois[2]["points"]]
    ys = [p[1] for p in rois[2]["points"]]
    assert len(rois[2]["points"]) >= 4
    assert abs(min(xs) - 120.5) <= TOL and abs(max(xs) - 140.5) <= TOL
    assert abs(min(ys) - 20.5) <= TOL and abs(max(ys) - 90.5) <= TOL
    assert page.log.page_errors == [] and page.log.dialogs == []
    assert "orthanc" not in page.content().lower()  # no Orthanc URL or credentials reach the page
    assert page.locator("input[data-da-value='uncertain']").count() == 0  # chest-xray offers no "uncertain"


def test_submit_is_blocked_with_a_message_while_a_required_answer_is_missing(
        page, page_server, asset_server, work_dir, staged_synthetic):
    path = _render(work_dir, asset_server, "gt-missing", _task(staged_synthetic, list(SCHEMA.label_names)))
    driver = _open(page, page_server, path)
    driver.set_label("Opacity", False)
    driver.set_label("Device", False)
    assert driver.submit_gt_form() is None
    errors = driver.form_errors()
    assert errors == ['Answer "Effusion": present or absent.']
    assert page.locator("#da-errors").is_visible()
    assert page.input_value("#da-annotation") == ""
    # A region on a finding marked absent is refused too; answering everything consistently submits.
    driver.draw_rectangle("Device", (10.5, 10.5), (30.5, 30.5))  # drawn while Device is "absent"
    driver.set_label("Effusion", False)
    assert driver.submit_gt_form() is None
    assert any("Device" in e and "absent" in e for e in driver.form_errors())
    driver.set_label("Device", True)
    answer = driver.submit_gt_form()
    assert answer is not None and [r["label"] for r in answer["rois"]] == ["Device"]
    assert page.locator("#da-errors li").count() == 0


def test_a_hostile_label_name_stays_text(page, page_server, asset_server, work_dir, staged_synthetic):
    labels = ["Opacity", XSS]
    path = _render(work_dir, asset_server, "gt-xss", _task(staged_synthetic, labels, instructions=f"Beware {XSS}"))
    driver = _open(page, page_server, path)
    driver.set_label(XSS, True)
    driver.draw_rectangle(XSS, (50.5, 50.5), (90.5, 90.5))
    page.wait_for_timeout(300)
    assert page.log.dialogs == [], page.log.dialogs
    assert page.locator("img").count() == 0          # no element was created from the name
    assert XSS in page.inner_text("[data-da-labels]")  # shown as its characters
    assert XSS in page.inner_text(".da-instructions")
    assert XSS in page.inner_text(".da-rois") or page.locator(f"select[data-da-roi-index='0']").input_value() == XSS
    svg_text = page.eval_on_selector_all("svg text, svg tspan", "ns => ns.map(n => n.textContent).join(' ')")
    assert XSS in svg_text  # the region's label drawn on the image, as text
    driver.set_label("Opacity", False)
    answer = driver.submit_gt_form()
    assert answer["labels"] == [{"name": "Opacity", "present": False}, {"name": XSS, "present": True}]
    assert answer["rois"][0]["label"] == XSS
    assert page.log.dialogs == [] and page.log.page_errors == []


def test_schema_object_and_model_prelabel_reach_the_viewer(page, page_server, asset_server, work_dir, staged_synthetic):
    # A task input carrying the schema document (labeling/contracts/schema.py to_dict) and a model's pre-label.
    prelabel = {"labels": [{"name": "Opacity", "present": True, "confidence": 0.93},
                           {"name": "Device", "present": False, "confidence": 0.88},
                           {"name": "Effusion", "present": False, "confidence": 0.7}],
                "rois": [{"label": "Opacity", "shape": "ellipse", "points": [[150.5, 60.5], [190.5, 120.5]]}],
                "model": "densenet121 v3"}
    task = _task(staged_synthetic, list(SCHEMA.label_names), schema=SCHEMA.to_dict(), prelabel=prelabel)
    driver = _open(page, page_server, _render(work_dir, asset_server, "gt-prelabel", task))
    assert "(pre-label 93%)" in page.inner_text("[data-da-labels]")
    # Shapes come from the schema: Opacity may not be drawn as a polygon.
    driver.select_tool("polygon")
    disabled = page.eval_on_selector_all("select[data-da-roi-label] option:disabled", "os => os.map(o => o.value)")
    assert disabled == ["Opacity"]
    answer = driver.submit_gt_form()
    assert answer is not None, driver.form_errors()
    assert answer["rois"] == prelabel["rois"]
    assert answer["labels"] == [{"name": l["name"], "present": l["present"]} for l in prelabel["labels"]]


def test_a_schema_offering_uncertain_reaches_the_gt_page_through_prelabel_and_render_serve(
        page, work_dir, staged_synthetic, viewer_build):
    # The manifest line of a schema that offers "uncertain" (it carries uncertain_policy), through the
    # pre-label step (a source-ref line: nothing to stage), previewed with `gt render --serve`.
    schema = dataclasses.replace(SCHEMA, uncertain=True, uncertain_policy="absent")
    line = ManifestLine(source="0a9b4f3c-1d2e3f40-5a6b7c8d-9e0f1a2b-3c4d5e6f", labels=schema.label_names,
                        task_type=schema.task_type, schema=schema.name,
                        uncertain_policy=schema.line_uncertain_policy).to_dict()
    data_object = {**{k: v for k, v in line.items() if k != "source"},
                   "source-ref": f"s3://annotations/{staged_synthetic['name']}", "instructions": schema.instructions}
    response = Prelabeler(PrelabelSettings(orthanc_url=None, secret_arn=None, bucket=None), s3=None).handle(
        {"version": "2018-10-16", "labelingJobArn": "arn:aws:sagemaker:us-east-1:1:labeling-job/j",
         "dataObject": data_object})
    task_file = work_dir / "gt-uncertain.task.json"
    task_file.write_text(json.dumps(response))
    process = subprocess.Popen([sys.executable, "-m", "labeling", "gt", "render", "--template",
                                str(REPO / "labeling" / "gt" / "worker_template.liquid.html"), "--task-input",
                                str(task_file), "--viewer-dir", str(viewer_build), "--asset-dir",
                                str(work_dir / "data"), "--serve", "120"],
                               cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        line_out = process.stdout.readline()
        assert line_out.startswith("preview: open http://127.0.0.1:"), line_out
        page.goto(line_out.split()[2])
        driver = ViewerDriver(page)
        driver.wait_rendered()
        names = list(schema.label_names)
        radios = page.locator("input[data-da-value='uncertain']")
        assert radios.count() == len(names)  # one per finding, as in the portal's viewer
        assert driver.submit_gt_form() is None
        assert driver.form_errors()[0] == f'Answer "{names[0]}": present or absent (or uncertain).'
        radios.nth(0).click()                   # Opacity: uncertain
        driver.set_label(names[1], False)       # Device: absent
        driver.set_label(names[2], True)        # Effusion: present, outlined
        driver.draw_rectangle(names[2], (40.5, 150.5), (100.5, 210.5))
        assert driver.validate() == []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "gt-template-uncertain.png"), full_page=True)
        answer = driver.submit_gt_form()
        assert answer is not None, driver.form_errors()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
    assert answer["labels"] == [{"name": names[0], "uncertain": True}, {"name": names[1], "present": False},
                                {"name": names[2], "present": True}]
    parsed = parse_answer(answer, names)  # the label shape GT stores and the post-label Lambda reads
    assert parsed.uncertain == (names[0],) and parsed.labels == {names[1]: False, names[2]: True}
    assert [r.label for r in parsed.rois] == [names[2]]
    assert page.log.page_errors == [] and page.log.dialogs == []
    # GT's post-label step applies the line's policy to it: under "absent" two uncertain answers are two absent votes.
    sure = {**answer, "labels": [{"name": names[0], "present": True}, *answer["labels"][1:]]}
    objects = gt_contracts.parse_payload([{"datasetObjectId": "0", "dataObject": data_object, "annotations": [
        {"workerId": w, "annotationData": {"content": json.dumps({"annotation": json.dumps(a)})}}
        for w, a in (("w1", answer), ("w2", answer), ("w3", sure))]}])
    [item], report = consolidate_payload(objects, "job", None)
    opacity = item["consolidatedAnnotation"]["content"]["job"]["labels"][0]
    assert (opacity["present"], opacity["uncertain_answers"], report["uncertainPolicy"]) == (False, 2, "absent")
