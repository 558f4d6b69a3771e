"""A series task in the shipped GT worker template, rendered by ``labeling gt render``, driven in Chromium.

Data: a synthetic 32-slice CT series (``devkit.synth_series``, nodules of known position), each slice
de-identified and staged as ``<orthanc instance id>.dcm`` the way the pre-label Lambda stages it
(labeling/gt/prelabel.py); the task input is the Lambda's series answer (``slices`` in manifest order,
increasing z). The page comes from one loopback origin, the viewer and the slices from another, as on
GT. A reader scrolls with the wheel and keys, draws on two slices and submits through the crowd-form
stand-in; the submitted content (what GT stores as ``annotationData.content``) must carry each region's
instance and frame and the series-level label. The same volume as one Enhanced CT multi-frame instance
is a ``multiframe`` task: its answer names the frame drawn on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labeling.cli import main
from labeling.contracts.answer import parse_answer
from labeling.contracts.schema import load_schema
from labeling.dicom.deidentify import DEV_SALT, deidentify
from tests.browser.conftest import SCREENSHOTS
from tests.browser.viewer_driver import ViewerDriver

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SCHEMA = load_schema(REPO / "schemas" / "ct-nodule.yaml")
SLICES = 32
SIZE = 96
HOSTILE_ID = "x' onmouseover='alert(1)\" <img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def staged_series(work_dir: Path) -> dict[str, Any]:
    """{"ids": Orthanc instance IDs in manifest order (increasing z), "truth": synth's series record}."""
    from devkit.synth_series import generate_series_dataset

    raw = work_dir / "gt-series-raw"
    generate_series_dataset(raw, series=1, slices=SLICES, size=SIZE, seed=5, prevalence=1.0, progress=False)
    truth, mf_truth = (json.loads(line) for line in (raw / "ground_truth.jsonl").read_text().splitlines())
    staged = work_dir / "data" / "gt-series"
    staged.mkdir()
    paths = {p.stem: p for p in raw.rglob("*.dcm")}
    for instance, sop in zip(truth["instances"] + mf_truth["instances"],
                             truth["sop_instance_uids"] + mf_truth["sop_instance_uids"]):
        (staged / f"{instance}.dcm").write_bytes(deidentify(paths[sop].read_bytes(), salt=DEV_SALT))
    # synth numbers slices head to feet (z decreasing); the manifest orders by increasing z
    return {"ids": list(reversed(truth["instances"])), "truth": truth, "multiframe": mf_truth["instances"][0]}


def _render(work_dir: Path, asset_server: Any, name: str, task_input: dict[str, Any]) -> str:
    task_file = work_dir / f"{name}.task.json"
    task_file.write_text(json.dumps({"taskInput": task_input, "isHumanAnnotationRequired": True}))
    out = work_dir / "pages" / f"{name}.html"
    assert main(["gt", "render", "--template", str(REPO / "labeling" / "gt" / "worker_template.liquid.html"),
                 "--task-input", str(task_file), "--out", str(out), "--asset-base", asset_server.url("/data"),
                 "--viewer-base-url", asset_server.url("/viewer/")]) == 0
    return f"/pages/{out.name}"


def _series_task(ids: list[str], keys: list[str], frames: list[int] | None = None,
                 level: str = "series") -> dict[str, Any]:
    # What labeling/gt/prelabel.py returns for a `manifest --level series` line (bucket/keys map to --asset-base).
    slices = [{"image": f"s3://staging/{key}", "instance": i, "frame": f}
              for i, key, f in zip(ids, keys, frames or [0] * len(ids))]
    return {"image": slices[0]["image"], "source": "5e1ab7c3-1d2e3f40-5a6b7c8d-9e0f1a2b-3c4d5e6f",
            "level": level, "labels": list(SCHEMA.label_names), "task_type": SCHEMA.task_type,
            "schema": SCHEMA.to_dict(), "instructions": SCHEMA.instructions,
            "image_geometry": {"rows": SIZE, "columns": SIZE, "frames": len(slices)}, "slices": slices}


def _wait_index(page: Any, index: int) -> None:
    page.wait_for_function("(i) => document.querySelector('.da-viewer').dataset.daSliceIndex === String(i)",
                           arg=index, timeout=10_000)


def _scroll_to(page: Any, driver: ViewerDriver, index: int) -> None:
    """The mouse wheel over the image, one slice per notch, as a reader scrolls."""
    box = page.locator(".da-viewport").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    while (current := driver.state()["slice"]["index"]) != index:
        page.mouse.wheel(0, 120 if index > current else -120)
        _wait_index(page, current + (1 if index > current else -1))


def _near(actual: list[list[float]], expected: list[list[float]], tol: float = 1.5) -> bool:
    return len(actual) == len(expected) and all(
        abs(a - e) <= tol for p, q in zip(actual, expected) for a, e in zip(p, q))


def test_series_task_scroll_draw_on_two_slices_and_submit(page, page_server, asset_server, work_dir, staged_series):
    ids, truth = staged_series["ids"], staged_series["truth"]
    path = _render(work_dir, asset_server, "gt-series", _series_task(ids, [f"gt-series/{i}.dcm" for i in ids]))
    page.goto(page_server.url(path))
    driver = ViewerDriver(page)
    driver.wait_rendered()
    assert f"De-identified DICOM series: {SLICES} slices" in page.inner_text(".da-image-info")
    assert page.inner_text("[data-da-slice]").strip() == f"1 / {SLICES}"

    # Keys and the wheel move through the stack.
    page.locator(".da-viewport").click(position={"x": 5, "y": 5})
    page.keyboard.press("PageDown")
    page.keyboard.press("PageDown")
    _wait_index(page, 2)
    page.keyboard.press("End")
    _wait_index(page, SLICES - 1)
    page.keyboard.press("Home")
    _wait_index(page, 0)

    # Slice a: the first nodule's largest cross-section (ground truth); slice b: far from it.
    rois = [r for r in truth["rois"] if r["nodule"] == 0]
    biggest = max(rois, key=lambda r: r["points"][1][0] - r["points"][0][0])
    a = ids.index(biggest["instance"])
    b = (a + SLICES // 2) % SLICES
    _scroll_to(page, driver, a)
    assert page.inner_text("[data-da-slice]").strip() == f"{a + 1} / {SLICES}"
    driver.draw_ellipse("Nodule", *biggest["points"])
    _scroll_to(page, driver, b)
    driver.draw_ellipse("Nodule", (20.5, 20.5), (34.5, 30.5))
    driver.set_label("Nodule", True)
    assert driver.validate() == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "gt-series-slice-b.png"), full_page=True)
    page.click("[data-da-roi-goto='0']")  # the region list jumps to the region's slice
    _wait_index(page, a)
    assert page.locator(".da-viewport svg ellipse").count() == 1  # slice a shows its own region only
    page.screenshot(path=str(SCREENSHOTS / "gt-series-slice-a.png"), full_page=True)

    answer = driver.submit_gt_form()
    assert answer is not None, f"submit was blocked: {driver.form_errors()}"
    assert answer["labels"] == [{"name": "Nodule", "present": True}]  # series-level
    assert answer["image"] == {"rows": SIZE, "columns": SIZE, "frame": 0}
    first, second = answer["rois"]
    assert (first["label"], first["shape"], first["instance"], first["frame"]) == ("Nodule", "ellipse", ids[a], 0)
    assert _near(first["points"], biggest["points"]), first
    assert (second["instance"], second["frame"]) == (ids[b], 0)
    assert _near(second["points"], [[20.5, 20.5], [34.5, 30.5]]), second
    # The crowd-form content GT would store is a valid answer of the label contract.
    content = page.evaluate("() => window.__submittedContent")
    parsed = parse_answer(json.loads(content), SCHEMA.label_names)
    assert [(r.instance, r.frame) for r in parsed.rois] == [(ids[a], 0), (ids[b], 0)]
    assert page.log.page_errors == [] and page.log.dialogs == []
    assert "orthanc" not in page.content().lower()


def test_a_hostile_instance_id_stays_data(page, page_server, asset_server, work_dir, staged_series):
    ids = staged_series["ids"][:3]
    keys = [f"gt-series/{i}.dcm" for i in ids]
    path = _render(work_dir, asset_server, "gt-series-hostile", _series_task([ids[0], HOSTILE_ID, ids[2]], keys))
    page.goto(page_server.url(path))
    driver = ViewerDriver(page)
    driver.wait_rendered()
    driver.call("goToSlice", 1)
    _wait_index(page, 1)
    driver.draw_ellipse("Nodule", (20.5, 20.5), (34.5, 30.5))
    driver.set_label("Nodule", True)
    answer = driver.submit_gt_form()
    assert answer is not None, driver.form_errors()
    assert [r["instance"] for r in answer["rois"]] == [HOSTILE_ID]  # back as its characters
    page.wait_for_timeout(300)
    assert page.log.dialogs == [] and page.log.page_errors == []
    assert page.locator("img").count() == 0


def test_a_multiframe_task_answers_the_frame_drawn_on(page, page_server, asset_server, work_dir, staged_series):
    mf = staged_series["multiframe"]
    task = _series_task([mf] * SLICES, [f"gt-series/{mf}.dcm"] * SLICES, frames=list(range(SLICES)),
                        level="multiframe")
    page.goto(page_server.url(_render(work_dir, asset_server, "gt-multiframe", task)))
    driver = ViewerDriver(page)
    driver.wait_rendered()
    assert f"multi-frame image: {SLICES} frames" in page.inner_text(".da-image-info")
    page.locator(".da-viewport").click(position={"x": 5, "y": 5})
    for _ in range(5):
        page.keyboard.press("ArrowRight")  # frame by frame
    _wait_index(page, 5)
    driver.draw_ellipse("Nodule", (20.5, 20.5), (34.5, 30.5))
    driver.set_label("Nodule", True)
    answer = driver.submit_gt_form()
    assert answer is not None, driver.form_errors()
    assert [(r["instance"], r["frame"]) for r in answer["rois"]] == [(mf, 5)]
    assert page.log.page_errors == [] and page.log.dialogs == []
