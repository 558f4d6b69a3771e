"""Portal end to end in Chromium: two annotators label the same items through the real pages, the
job consolidates, the review queue shows the disagreement, a reviewer decides, the admin exports the
output manifest and writes DICOM SR back into Orthanc (parsed with highdicom).

Everything real on loopback: the session's Orthanc + PostgreSQL (tests/integration/conftest.py's
stack fixtures), ``python -m labeling portal migrate`` and ``serve`` as a subprocess
(:func:`labeling.portal.local.start_local_portal`), the viewer bundle from ``build/viewer``.
A screenshot of the task page is saved to ``build/screenshots/portal-task.png``.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import highdicom as hd
import httpx
import pydicom
import pytest

from devkit import synth
from labeling.orthanc.local_stack import REPO_ROOT
from labeling.gt.output_manifest import read_output_manifest
from labeling.portal.local import add_user, portal_env
from labeling.dicom.sr import read_annotation_sr
from tests.browser.conftest import SCREENSHOTS
from tests.browser.portal_pages import login, portal  # noqa: F401 - the fixture
from tests.browser.viewer_driver import ViewerDriver

pytestmark = pytest.mark.browser

SCHEMA = {"name": "portal-e2e", "task_type": "classification+roi",
          "labels": [{"name": "Opacity", "shapes": ["rectangle", "ellipse"]},
                     {"name": "Device", "shapes": ["polygon", "rectangle"]},
                     {"name": "Effusion", "shapes": ["rectangle"]}],
          "instructions": "Answer every label; outline each opacity.", "annotators_per_item": 2}
PASSWORD = "e2e password 123"
SIZE = 256


def _login(browser: Any, url: str, name: str) -> Any:
    return login(browser, url, name, PASSWORD)


def _label_item(page: Any, answers: dict[str, bool], box: tuple | None, screenshot: Path | None = None,
                label: str = "Opacity", prefetch: bool = False) -> int:
    page.wait_for_function("() => document.body.dataset.state === 'labeling'", timeout=30_000)
    item = int(page.evaluate("() => document.body.dataset.item"))
    driver = ViewerDriver(page)
    driver.wait_rendered()
    for name, present in answers.items():
        driver.set_label(name, present)
    if box:
        driver.draw_rectangle(label, box[0], box[1])
        rois = driver.answer()["rois"]
        assert rois and rois[-1]["label"] == label
    assert driver.validate() == []
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
    if prefetch:  # the next image was fetched in the background, before Submit
        page.wait_for_function("() => !!document.body.dataset.prefetched", timeout=30_000)
    before = int(page.evaluate("() => Number(document.body.dataset.submitted || 0)"))
    page.click("#submit")
    page.wait_for_function(f"() => Number(document.body.dataset.submitted || 0) > {before}", timeout=30_000)
    return item


def test_two_annotators_review_export_sr(browser, portal, local_stack, client, tmp_path):  # noqa: F811
    url = portal
    env = {**os.environ, **portal_env(local_stack.workdir)}
    tag = secrets.token_hex(3)
    names = {role: f"e2e-{role}-{tag}" for role in ("admin", "ann1", "ann2", "reviewer")}
    for key, name in names.items():
        add_user(local_stack.workdir, name, {"admin": "admin", "reviewer": "reviewer"}.get(key, "annotator"), PASSWORD)

    # Two synthetic chest radiographs (devkit/synth.py), as `make demo` loads them.
    params = synth.make_params(patients=2, studies_per_patient=1, size=SIZE, seed=int(tag, 16))
    for patient in range(2):
        synth.write_image(params, tmp_path / "synth", (patient, 0))
    ids = [client.upload(path.read_bytes()).instance_id for path in sorted((tmp_path / "synth").rglob("*.dcm"))]
    assert len(set(ids)) == 2
    manifest = tmp_path / "manifest.jsonl"
    labels = [label["name"] for label in SCHEMA["labels"]]
    manifest.write_text("".join(json.dumps({"source": i, "labels": labels, "task_type": SCHEMA["task_type"],
                                            "schema": SCHEMA["name"]}) + "\n" for i in ids))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    job = f"e2e-{tag}"
    created = subprocess.run([sys.executable, "-m", "labeling", "portal", "job", "create", "--name", job,
                              "--manifest", str(manifest), "--schema", str(schema), "--agreement-threshold", "0.6"],
                             env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    job_id = int(created.stdout.split("(id ", 1)[1].split(")", 1)[0])

    # --- two annotators, same two items: agree on the first, disagree on the second
    ann1 = _login(browser, url, names["ann1"])
    ann1.click(f"tr[data-job='{job}'] a.button")
    first = _label_item(ann1, {"Opacity": True, "Device": False, "Effusion": False}, ((60, 70), (140, 150)),
                        screenshot=SCREENSHOTS / "portal-task.png", prefetch=True)
    prefetched = ann1.evaluate("() => document.body.dataset.prefetched")
    second = _label_item(ann1, {"Opacity": True, "Device": False, "Effusion": False}, ((150, 60), (200, 110)))
    ann1.wait_for_function("() => document.body.dataset.state === 'done'")
    assert first != second
    # The image fetched before Submit was the second one, and the viewer then read it from the browser's
    # cache (Resource Timing: transferSize 0 for a cache hit).
    second_url = f"/api/items/{second}/image"
    assert prefetched.endswith(second_url)
    loads = ann1.evaluate("(url) => performance.getEntriesByType('resource').filter((e) => e.name.endsWith(url))"
                          ".map((e) => [e.initiatorType, e.transferSize])", second_url)
    assert [kind for kind, _ in loads][:1] == ["fetch"] and loads[0][1] > 10_000, loads
    viewer_loads = [size for kind, size in loads[1:] if kind == "xmlhttprequest"]
    assert viewer_loads and all(size == 0 for size in viewer_loads), loads

    ann2 = _login(browser, url, names["ann2"])
    ann2.goto(f"{url}/jobs/{job_id}/label")
    assert _label_item(ann2, {"Opacity": True, "Device": False, "Effusion": False}, ((62, 71), (141, 152))) == first
    assert _label_item(ann2, {"Opacity": False, "Device": False, "Effusion": True}, ((40, 170), (110, 215)),
                       label="Effusion") == second
    ann2.wait_for_function("() => document.body.dataset.state === 'done'")
    assert not ann1.errors and not ann2.errors
    assert (SCREENSHOTS / "portal-task.png").stat().st_size > 10_000

    # --- review queue: the disagreement (and only it) is there; the reviewer accepts an edit
    reviewer = _login(browser, url, names["reviewer"])
    reviewer.goto(f"{url}/review")
    rows = reviewer.eval_on_selector_all("tr.review-item", "rows => rows.map(r => Number(r.dataset.item))")
    assert second in rows and first not in rows
    reviewer.click(f"tr.review-item[data-item='{second}'] a.button")
    reviewer.wait_for_function("() => document.body.dataset.state === 'reviewing'", timeout=30_000)
    driver = ViewerDriver(reviewer)
    driver.wait_rendered()
    assert names["ann1"] in reviewer.content() and names["ann2"] in reviewer.content()
    reviewer.screenshot(path=str(SCREENSHOTS / "portal-review.png"), full_page=True)
    driver.set_label("Opacity", True)
    driver.set_label("Effusion", True)
    driver.set_label("Device", False)
    reviewer.click("#save-edit")
    reviewer.wait_for_function("() => document.body.dataset.state === 'decided'")
    assert not reviewer.errors

    # --- admin: job page shows the progress; export, then SR into Orthanc
    admin = _login(browser, url, names["admin"])
    admin.goto(f"{url}/jobs/{job_id}")
    assert "answers 4 / 4" in admin.content() and "done 2" in admin.content()
    admin.click("#export")
    admin.wait_for_function("() => document.body.dataset.lastAction === 'export'")
    assert "Wrote 2 line(s)" in admin.inner_text("#result")  # said in words
    exported = json.loads(admin.get_attribute("#result", "data-result"))
    assert exported["written"] == 2 and exported["left_out_review"] == 0
    admin.click("#sr")
    admin.wait_for_function("() => document.body.dataset.lastAction === 'sr'", timeout=60_000)
    assert "No errors" in admin.inner_text("#result")
    stored = json.loads(admin.get_attribute("#result", "data-result"))
    assert not stored["errors"] and len(stored["stored"]) == 2

    records = read_output_manifest(Path(exported["destination"]))
    by_source = {r.source: r for r in records}
    assert by_source[ids[0]].labels == {"Opacity": True, "Device": False, "Effusion": False}
    assert by_source[ids[0]].rois and by_source[ids[0]].rois[0]["label"] == "Opacity"
    assert by_source[ids[1]].labels == {"Opacity": True, "Device": False, "Effusion": True}
    with httpx.Client(base_url=url) as http:  # the download route is not open to anonymous clients
        assert http.get(f"/api/jobs/{job_id}/output.manifest").status_code == 401

    for item_id, sr_id in stored["stored"].items():
        ds = pydicom.dcmread(io.BytesIO(client.instance_file(sr_id)))
        report = hd.sr.Comprehensive3DSR.from_dataset(ds)
        assert report.SOPInstanceUID == ds.SOPInstanceUID
        back = read_annotation_sr(ds)
        text = str(ds)
        assert names["ann1"] in text and names["ann2"] in text
        if int(item_id) == second:
            assert names["reviewer"] in text
            assert {e["name"]: e["present"] for e in back["labels"]} == {"Opacity": True, "Device": False,
                                                                         "Effusion": True}
    for page in (ann1, ann2, reviewer, admin):
        page.context.close()
