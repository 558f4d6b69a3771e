"""The viewer bundle mounted on a bare page (as the portal mounts it): codecs, view state, pre-labels.

Compressed transfer syntaxes come from pydicom's own test files (shipped with pydicom, no download),
decoded in the browser by the bundle's worker and wasm codecs, and compared with pydicom's decode
(pylibjpeg / pyjpegls in the test dependencies).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from tests.browser.viewer_driver import ViewerDriver, ViewerLoadError, mount_page_html, write_page

pytestmark = pytest.mark.browser

SCHEMA = {"labels": [{"name": "Opacity", "shapes": ["ellipse", "rectangle"]},
                     {"name": "Device", "shapes": ["polygon", "rectangle"]},
                     {"name": "Nodule", "shapes": ["point"]}],
          "instructions": "Mark what you see.", "required": {"labels": True}}

# (pydicom test file, transfer syntax it must have, lossless?)
SAMPLES = [
    ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50", False),        # JPEG baseline (YBR_FULL_422 colour)
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80", True),  # JPEG-LS lossless
    ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91", False),                  # JPEG 2000
    ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5", True),                  # RLE lossless
    ("CT_small.dcm", "1.2.840.10008.1.2.1", True),                      # explicit VR little endian
]


def _mount(page: Any, page_server: Any, asset_server: Any, work_dir: Path, name: str, image: str,
           options: dict[str, Any] | None = None) -> ViewerDriver:
    html = mount_page_html(asset_server.url("/viewer/viewer.js"), asset_server.url(f"/data/{image}"),
                           {"schema": SCHEMA, **(options or {})})
    page.goto(page_server.url(write_page(work_dir, f"{name}.html", html)))
    driver = ViewerDriver(page)
    driver.wait_rendered()
    return driver


def _near(actual: list[list[float]], expected: list[list[float]], tol: float = 1.5) -> bool:
    return len(actual) == len(expected) and all(
        abs(a - e) <= tol for p, q in zip(actual, expected) for a, e in zip(p, q))


def _canvas_std(page: Any) -> float:
    png = page.locator(".da-viewport").screenshot()
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    return float(pixels.std())


@pytest.mark.parametrize("filename, syntax, lossless", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_transfer_syntaxes_decode_and_render(page, page_server, asset_server, work_dir, filename, syntax, lossless):
    source = get_testdata_file(filename, download=False)
    assert source, f"pydicom test file {filename} is not installed"
    ds = pydicom.dcmread(source)
    assert ds.file_meta.TransferSyntaxUID == syntax
    shutil.copy(source, work_dir / "data" / filename)

    driver = _mount(page, page_server, asset_server, work_dir, f"ts-{filename}", filename)
    stats = driver.call("pixelStats")
    assert (stats["rows"], stats["columns"]) == (ds.Rows, ds.Columns)
    expected = ds.pixel_array if stats["color"] else apply_modality_lut(ds.pixel_array, ds)
    expected = np.asarray(expected, dtype=float)
    if lossless:
        assert stats["min"] == expected.min() and stats["max"] == expected.max()
        assert abs(stats["mean"] - expected.mean()) < 1e-6 * max(1.0, abs(expected.mean()))
    else:  # two lossy decoders may differ by rounding, not by content
        assert abs(stats["mean"] - expected.mean()) <= 2.0
    assert _canvas_std(page) > 5.0, "the rendered viewport is blank"
    assert page.log.page_errors == []


@pytest.mark.parametrize("image", ["broken.dcm", "missing.dcm"])
def test_an_undecodable_or_missing_image_is_a_load_error_not_a_hang(page, page_server, asset_server, work_dir, image):
    (work_dir / "data" / "broken.dcm").write_bytes(b"DICM" * 64)
    html = mount_page_html(asset_server.url("/viewer/viewer.js"), asset_server.url(f"/data/{image}"),
                           {"schema": SCHEMA})
    page.goto(page_server.url(write_page(work_dir, f"load-error-{image}.html", html)))
    with pytest.raises(ViewerLoadError):
        ViewerDriver(page).wait_rendered()
    page.wait_for_function("() => window.__mountError !== undefined")
    assert page.inner_text("[data-da-message]").strip()


def test_window_level_invert_flip_rotate_reset_and_undo(page, page_server, asset_server, work_dir, staged_synthetic):
    driver = _mount(page, page_server, asset_server, work_dir, "state", staged_synthetic["name"])
    before = driver.state()
    assert before["voiRange"]["upper"] > before["voiRange"]["lower"]
    assert not before["invert"] and not before["flipHorizontal"] and before["rotation"] == 0

    driver.drag_window_level(80, 40)
    after = driver.state()["voiRange"]
    assert after != before["voiRange"], "window/level drag did not change the VOI range"
    page.keyboard.press("i")
    page.keyboard.press("h")
    driver.action("flipV")
    driver.action("rotate")
    state = driver.state()
    assert (state["invert"], state["flipHorizontal"], state["flipVertical"], state["rotation"]) == (True, True, True, 90)
    # Image coordinates stay image coordinates on a rotated, flipped view.
    driver.draw_rectangle("Opacity", (30.5, 40.5), (80.5, 70.5))
    assert _near(driver.answer()["rois"][0]["points"], [[30.5, 40.5], [80.5, 70.5]])
    page.keyboard.press("0")  # reset
    reset = driver.state()
    assert not reset["invert"] and not reset["flipHorizontal"] and reset["rotation"] == 0
    assert reset["voiRange"] == pytest.approx(before["voiRange"])

    # Presets: the file's window and the full range are offered and applied to the original values.
    options = page.eval_on_selector_all("select[data-da-preset] option", "os => os.map(o => o.textContent)")
    assert any(o.startswith("Full range") for o in options)
    page.select_option("select[data-da-preset]", index=options.index(next(o for o in options if o.startswith("Full"))))
    full = driver.state()["voiRange"]
    stats = driver.call("pixelStats")
    assert full == {"lower": stats["min"], "upper": stats["max"]}, "full range is not on the original values"
    ds = pydicom.dcmread(staged_synthetic["path"])
    original = apply_modality_lut(ds.pixel_array, ds)
    assert (stats["min"], stats["max"]) == (original.min(), original.max()) and stats["max"] > 255  # 12-bit data
    assert full != reset["voiRange"]

    # Moving a corner of the region (with the window/level tool active) is undoable.
    driver.select_tool("windowlevel")
    driver.drag([(80.5, 70.5), (100.5, 90.5)])
    assert _near(driver.answer()["rois"][0]["points"], [[30.5, 40.5], [100.5, 90.5]])
    page.keyboard.press("Control+z")
    assert _near(driver.answer()["rois"][0]["points"], [[30.5, 40.5], [80.5, 70.5]])

    # Undo: the drawn region, then the automatic "present" it set.
    driver.set_label("Device", False)
    assert len(driver.answer()["rois"]) == 1
    page.keyboard.press("Control+z")  # un-answers Device
    assert driver.answer()["labels"][1] == {"name": "Device", "present": False}
    assert any("Device" in p for p in driver.validate())
    page.keyboard.press("Control+z")  # removes the rectangle and its automatic "Opacity present"
    answer = driver.answer()
    assert answer["rois"] == [] and answer["labels"][0]["present"] is False
    assert any("Opacity" in p for p in driver.validate())


def test_points_polygons_initial_answer_and_read_only_overlays(page, page_server, asset_server, work_dir,
                                                               staged_synthetic):
    initial = {"labels": [{"name": "Opacity", "present": True, "confidence": 0.9},
                          {"name": "Device", "present": False}, {"name": "Nodule", "present": True}],
               "rois": [{"label": "Opacity", "shape": "ellipse", "points": [[20.5, 30.5], [60.5, 90.5]]},
                        {"label": "Device", "shape": "polygon", "points": [[100, 100], [140, 100], [120, 150]]}],
               "image": {"rows": 256, "columns": 256, "frame": 0}}
    overlay = {"labels": [{"name": "Opacity", "present": True}],
               "rois": [{"label": "Opacity", "shape": "rectangle", "points": [[10, 10], [50, 50]]}]}
    driver = _mount(page, page_server, asset_server, work_dir, "initial", staged_synthetic["name"],
                    {"initialAnswer": initial, "overlays": [{"name": "reader 2", "answer": overlay}]})
    answer = driver.answer()
    assert answer["rois"] == initial["rois"]  # round trip through Cornerstone, exact to 0.01 px
    assert [l["present"] for l in answer["labels"]] == [True, False, True]
    assert "reader 2" in page.inner_text("[data-da-overlays]")
    # The region of the Device marked absent is reported; answering Device present fixes that.
    assert any("Device" in p and "absent" in p for p in driver.validate())
    driver.set_label("Device", True)
    assert driver.validate() == []
    driver.draw_point("Nodule", (200.5, 210.5))
    rois = driver.answer()["rois"]
    assert rois[-1]["label"] == "Nodule" and rois[-1]["shape"] == "point"
    assert all(abs(a - e) <= 1.5 for a, e in zip(rois[-1]["points"][0], [200.5, 210.5]))
    assert len(rois) == 3  # the overlay is not part of this annotator's answer

    page.goto("about:blank")
    driver = _mount(page, page_server, asset_server, work_dir, "readonly", staged_synthetic["name"],
                    {"initialAnswer": initial, "readOnly": True})
    assert page.locator("[data-da-tool='rectangle']").count() == 0
    assert page.locator("input[data-da-label-index]").first.is_disabled()
    assert driver.answer()["rois"] == initial["rois"]


def test_uncertain_is_a_third_keyboard_choice_when_the_schema_offers_it(page, page_server, asset_server, work_dir,
                                                                      staged_synthetic):
    """Issue 12 item 3: present / absent / uncertain, one radio group per label, Y / N / ? on the
    highlighted finding; the answer carries {name, uncertain: true} (labeling/contracts/answer.py)."""
    driver = _mount(page, page_server, asset_server, work_dir, "uncertain", staged_synthetic["name"],
                    {"schema": dict(SCHEMA, uncertain=True)})
    assert page.locator("input[data-da-value='uncertain']").count() == len(SCHEMA["labels"])
    page.keyboard.press("?")  # Opacity
    page.keyboard.press("n")  # Device
    assert any("Nodule" in p and "uncertain" in p for p in driver.validate())
    page.keyboard.press("y")  # Nodule
    answer = driver.answer()
    assert answer["labels"] == [{"name": "Opacity", "uncertain": True}, {"name": "Device", "present": False},
                                {"name": "Nodule", "present": True}]
    assert page.locator("input[data-da-value='uncertain']").first.is_checked() and driver.validate() == []
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")  # undo reaches the uncertain choice too
    assert driver.answer()["labels"][0] == {"name": "Opacity", "present": False}
    plain = _mount(page, page_server, asset_server, work_dir, "certain", staged_synthetic["name"])
    page.keyboard.press("?")  # not offered: nothing answered
    assert page.locator("input[data-da-value='uncertain']").count() == 0
    assert plain.answer()["labels"][0] == {"name": "Opacity", "present": False} and plain.validate()
