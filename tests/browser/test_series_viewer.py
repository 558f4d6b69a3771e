"""The viewer's series form (issue 14): a 40-slice synthetic CT series and its multi-frame twin.

Data: ``synth_series`` (one CT series of single-frame slices with nodules of known position, plus
an Enhanced CT multi-frame instance holding the same 40 frames), served from the asset server like
the staged files of a task. Slices are given in the order ``manifest --level series`` gives them
(increasing z, which is the reverse of InstanceNumber for these head-to-feet axial slices).
What a reader does is what is driven: the wheel, keys, the mouse drawing ROIs, the ROI list, cine.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_modality_lut

from tests.browser.conftest import SCREENSHOTS
from tests.browser.viewer_driver import ViewerDriver, mount_page_html, write_page

pytestmark = pytest.mark.browser

SLICES = 40
SIZE = 128
SCHEMA = {"labels": [{"name": "Nodule", "shapes": ["ellipse", "rectangle", "point"]},
                     {"name": "Artefact", "shapes": ["rectangle", "polygon"]}],
          "instructions": "Scroll through the series; outline each nodule on its slice.",
          "required": {"labels": True}}


@pytest.fixture(scope="module")
def series(work_dir: Path) -> dict[str, Any]:
    """{"slices": series form in manifest order, "frames": the multi-frame instance's, "truth",
    "files": instance ID → staged path, "k_of": manifest index → InstanceNumber - 1}."""
    from devkit.synth_series import generate_series_dataset

    raw = work_dir / "series-raw"
    generate_series_dataset(raw, series=1, slices=SLICES, size=SIZE, seed=3, prevalence=1.0, progress=False)
    lines = [json.loads(line) for line in (raw / "ground_truth.jsonl").read_text().splitlines()]
    truth = next(t for t in lines if t["level"] == "series")
    mf_truth = next(t for t in lines if t["level"] == "multiframe")
    staged = work_dir / "data" / "series"
    staged.mkdir(exist_ok=True)
    paths = {p.stem: p for p in raw.rglob("*.dcm")}
    files = {}
    for instance, sop in zip(truth["instances"] + mf_truth["instances"],
                             truth["sop_instance_uids"] + mf_truth["sop_instance_uids"]):
        files[instance] = shutil.copy(paths[sop], staged / f"{instance}.dcm")
    url = lambda instance: f"/data/series/{instance}.dcm"  # noqa: E731 (resolved against the asset server)
    k_of = list(reversed(range(SLICES)))  # manifest order: increasing z = decreasing InstanceNumber
    slices = [{"url": url(truth["instances"][k]), "instance": truth["instances"][k], "frame": 0} for k in k_of]
    mf = mf_truth["instances"][0]
    frames = [{"url": url(mf), "instance": mf, "frame": f} for f in range(SLICES)]
    return {"slices": slices, "frames": frames, "truth": truth, "mf_truth": mf_truth, "files": files, "k_of": k_of}


def _absolute(asset_server: Any, slices: list[dict]) -> list[dict]:
    return [{**s, "url": asset_server.url(s["url"])} for s in slices]


def _mount(page: Any, page_server: Any, asset_server: Any, work_dir: Path, name: str, slices: list[dict],
           **options: Any) -> ViewerDriver:
    html = mount_page_html(asset_server.url("/viewer/viewer.js"), None,
                           {"schema": SCHEMA, "slices": _absolute(asset_server, slices), **options})
    page.goto(page_server.url(write_page(work_dir, f"{name}.html", html)))
    driver = ViewerDriver(page)
    driver.wait_rendered()
    return driver


def _slice(driver: ViewerDriver) -> dict[str, Any]:
    return driver.state()["slice"]


def _indicator(page: Any) -> str:
    return page.inner_text("[data-da-slice]").strip()


def _wait_index(page: Any, index: int) -> None:
    page.wait_for_function("(i) => document.querySelector('.da-viewer').dataset.daSliceIndex === String(i)",
                           arg=index, timeout=10_000)


def _wait_all_loaded(page: Any, count: int) -> None:
    page.wait_for_function("(n) => document.querySelector('.da-viewer').daViewer.getViewState().slice.loaded === n",
                           arg=count, timeout=60_000)


def _viewport_png(page: Any) -> bytes:
    return page.locator(".da-viewport").screenshot()


def _gray(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def _near(actual: list[list[float]], expected: list[list[float]], tol: float = 1.5) -> bool:
    return len(actual) == len(expected) and all(
        abs(a - e) <= tol for p, q in zip(actual, expected) for a, e in zip(p, q))


def _hu(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=float)


def test_scroll_draw_on_two_slices_list_jumps_and_cine(page, page_server, asset_server, work_dir, series):
    slices, truth, k_of = series["slices"], series["truth"], series["k_of"]
    driver = _mount(page, page_server, asset_server, work_dir, "series", slices)
    assert _indicator(page) == f"1 / {SLICES}"
    _wait_all_loaded(page, SLICES)  # the rest load in the background
    assert "loaded" not in page.inner_text("[data-da-loaded]")

    # The slice shown is the slice asked for: its decoded values are that file's (pydicom).
    def shows(index: int) -> None:
        expected = _hu(series["files"][slices[index]["instance"]])
        stats = driver.call("pixelStats")
        assert abs(stats["mean"] - expected.mean()) < 1e-3 and stats["min"] == expected.min()

    shows(0)
    before = _gray(_viewport_png(page))
    box = page.locator(".da-viewport").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 120)
    _wait_index(page, 1)
    assert _indicator(page) == f"2 / {SLICES}"
    shows(1)
    assert np.abs(_gray(_viewport_png(page)) - before).mean() > 0.5, "the rendered slice did not change"
    page.mouse.wheel(0, -120)
    _wait_index(page, 0)

    # Keys: PgDn/→ step a slice, End/Home jump; ↑/↓ still choose the finding (with findings listed).
    page.keyboard.press("PageDown")
    page.keyboard.press("PageDown")
    page.keyboard.press("ArrowRight")
    _wait_index(page, 3)
    page.keyboard.press("End")
    _wait_index(page, SLICES - 1)
    assert _indicator(page) == f"{SLICES} / {SLICES}"
    page.keyboard.press("PageUp")
    _wait_index(page, SLICES - 2)
    page.keyboard.press("Home")
    _wait_index(page, 0)
    page.keyboard.press("ArrowDown")
    assert _slice(driver)["index"] == 0
    assert page.locator("[data-da-label='Artefact'].da-current").count() == 1

    # A nodule's largest cross-section (ground truth), and another slice far from it.
    rois = [r for r in truth["rois"] if r["nodule"] == 0]
    biggest = max(rois, key=lambda r: r["points"][1][0] - r["points"][0][0])
    a = k_of.index(truth["instances"].index(biggest["instance"]))
    b = (a + SLICES // 2) % SLICES
    driver.call("goToSlice", a)
    _wait_index(page, a)
    driver.draw_ellipse("Nodule", *biggest["points"])
    driver.call("goToSlice", b)
    _wait_index(page, b)
    driver.draw_rectangle("Artefact", (10.5, 12.5), (40.5, 30.5))
    _shot(page, "series-slice-b-rectangle.png")
    answer = driver.answer()
    first, second = answer["rois"]
    assert (first["label"], first["shape"], first["instance"], first["frame"]) == \
        ("Nodule", "ellipse", slices[a]["instance"], 0)
    assert _near(first["points"], biggest["points"])
    assert (second["label"], second["shape"], second["instance"], second["frame"]) == \
        ("Artefact", "rectangle", slices[b]["instance"], 0)
    assert _near(second["points"], [[10.5, 12.5], [40.5, 30.5]])
    assert answer["image"] == {"rows": SIZE, "columns": SIZE, "frame": 0}
    # Each region is drawn on its own slice only (Cornerstone's SVG layer).
    page.wait_for_function("() => document.querySelectorAll('.da-viewport svg rect, .da-viewport svg path').length"
                           " > 0", timeout=15_000)
    assert page.locator(".da-viewport svg ellipse").count() == 0

    # The list shows each region's slice; a click there goes to it.
    items = page.inner_text("[data-da-rois]")
    assert f"slice {a + 1}" in items and f"slice {b + 1}" in items
    page.click("[data-da-roi-goto='0']")
    _wait_index(page, a)
    assert _indicator(page) == f"{a + 1} / {SLICES}"
    # Cornerstone draws the annotation layer after the slice's render: wait for it.
    page.wait_for_function("() => document.querySelectorAll('.da-viewport svg ellipse').length === 1",
                           timeout=15_000)
    _shot(page, "series-slice-a-nodule.png")

    # Series-level labels are the answer's labels; drawing set Nodule and Artefact present.
    assert [(l["name"], l["present"]) for l in answer["labels"]] == [("Nodule", True), ("Artefact", True)]
    assert driver.validate() == []

    # Cine: it advances at its frame rate (wrapping at the end), and stops.
    page.fill("[data-da-fps]", "20")
    page.dispatch_event("[data-da-fps]", "change")
    start = _slice(driver)["index"]
    page.click("[data-da-cine]")
    page.wait_for_timeout(1200)
    playing = _slice(driver)
    assert playing["playing"] and playing["fps"] == 20
    moved = (playing["index"] - start) % SLICES
    assert moved >= 5, f"cine moved {moved} slices in 1.2 s at 20 fps"
    page.keyboard.press("c")
    stopped = _slice(driver)
    assert not stopped["playing"]
    page.wait_for_timeout(300)
    assert _slice(driver)["index"] == stopped["index"]
    assert page.log.page_errors == []


def test_multiframe_instance_scrolls_frame_by_frame(page, page_server, asset_server, work_dir, series):
    frames, mf = series["frames"], series["frames"][0]["instance"]
    driver = _mount(page, page_server, asset_server, work_dir, "multiframe", frames)
    assert _indicator(page) == f"1 / {SLICES}"
    # Frame f holds the pixels of the single-frame slice with InstanceNumber f + 1, and its rescale
    # (in the Pixel Value Transformation functional group, which pydicom's apply_modality_lut does not
    # read) is that slice's: so the slice file gives the expected values.
    means = set()
    for f in (0, 1, 17, SLICES - 1):
        driver.call("goToSlice", f)
        _wait_index(page, f)
        stats = driver.call("pixelStats")
        expected = _hu(series["files"][series["truth"]["instances"][f]])
        assert abs(stats["mean"] - expected.mean()) < 1e-3 and (stats["min"], stats["max"]) == \
            (expected.min(), expected.max()), f"frame {f} is not the file's frame {f}"
        means.add(round(stats["mean"], 3))
    assert len(means) == 4
    page.keyboard.press("Home")
    _wait_index(page, 0)
    page.keyboard.press("ArrowRight")
    _wait_index(page, 1)
    page.keyboard.press("PageDown")
    _wait_index(page, 2)
    driver.draw_point("Nodule", (64.5, 60.5))
    roi = driver.answer()["rois"][0]
    assert (roi["instance"], roi["frame"], roi["shape"]) == (mf, 2, "point")
    _wait_all_loaded(page, SLICES)
    _shot(page, "multiframe-frame-3.png")
    assert page.log.page_errors == []


def test_initial_answer_and_overlays_land_on_their_slices(page, page_server, asset_server, work_dir, series):
    slices = series["slices"]
    on_30 = {"label": "Nodule", "shape": "ellipse", "points": [[40.5, 50.5], [60.5, 70.5]],
             "instance": slices[30]["instance"], "frame": 0}
    on_0 = {"label": "Artefact", "shape": "rectangle", "points": [[5, 5], [20, 25]],
            "instance": slices[0]["instance"], "frame": 0}
    nowhere = {"label": "Nodule", "shape": "point", "points": [[3, 3]], "instance": "not-in-this-series", "frame": 0}
    initial = {"labels": [{"name": "Nodule", "present": True}, {"name": "Artefact", "present": True}],
               "rois": [on_30, on_0, nowhere], "image": {"rows": SIZE, "columns": SIZE, "frame": 0}}
    overlay = {"labels": [{"name": "Nodule", "present": True}],
               "rois": [{**on_30, "shape": "rectangle", "points": [[38, 48], [62, 72]]}]}
    driver = _mount(page, page_server, asset_server, work_dir, "series-initial", slices,
                    initialAnswer=initial, overlays=[{"name": "reader 2", "answer": overlay}])
    assert "not a slice of this series" in page.inner_text("[data-da-message]")
    # Before slice 30 was ever shown, its region is in the answer as given.
    assert driver.answer()["rois"] == [on_30, on_0]
    assert page.locator(".da-viewport svg ellipse").count() == 0
    driver.call("goToSlice", 30)
    _wait_index(page, 30)
    page.wait_for_function("() => document.querySelectorAll('.da-viewport svg ellipse').length === 1")
    assert driver.answer()["rois"] == [on_30, on_0]  # round trip through Cornerstone on slice 30
    assert driver.validate() == []
    _shot(page, "series-initial-slice-31.png")

    # Bad series input is one clear error naming the entry.
    error = page.evaluate("""(slices) => window.DicomAnnotateViewer.mount(document.createElement('div'),
        {schema: {labels: ['Nodule']}, slices: [slices[0], {url: slices[1].url}]})
        .then(() => '', (e) => String(e.message))""", _absolute(asset_server, slices))
    assert "slices[1].instance" in error


def test_a_slice_that_cannot_be_loaded_is_reported_not_dropped(page, page_server, asset_server, work_dir, series):
    (work_dir / "data" / "series" / "broken.dcm").write_bytes(b"DICM" * 64)
    slices = series["slices"][:4] + [{"url": "/data/series/broken.dcm", "instance": "broken", "frame": 0}]
    driver = _mount(page, page_server, asset_server, work_dir, "series-broken", slices)
    page.wait_for_function("() => { const s = document.querySelector('.da-viewer').daViewer.getViewState().slice;"
                           " return s.loaded + s.failed === 5; }", timeout=30_000)
    assert (_slice(driver)["loaded"], _slice(driver)["failed"]) == (4, 1)
    assert "1 failed" in page.inner_text("[data-da-loaded]")
    assert any(p.startswith("Slice 5 could not be loaded") for p in driver.validate())
    page.keyboard.press("End")
    page.wait_for_function("() => document.querySelector('[data-da-message]').textContent.includes('Slice 5')")
    _shot(page, "series-broken-slice.png")
