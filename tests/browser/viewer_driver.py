"""Playwright helpers that drive the dicom-annotate viewer like an annotator (reused by portal E2E tests).

The viewer (viewer/src/viewer.js) marks its root ``.da-viewer`` with ``data-da-status`` =
``loading`` | ``rendered`` | ``error`` (``data-da-error`` then holds the message) and exposes its
handle on the root element as ``root.daViewer`` (getAnswer, validate, getViewState, imageToClient).
Drawing uses real mouse events at page coordinates computed from image pixels (x = column,
y = row, pixel centres at +0.5), so what is tested is what a user does; Cornerstone ignores a click
that follows another within its 400 ms double-click guard, hence the pause between shapes.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

Point = Sequence[float]

DOUBLE_CLICK_GUARD_MS = 450


class ViewerLoadError(AssertionError):
    """The viewer reported IMAGE_LOAD_ERROR (or could not start)."""


class ViewerDriver:
    def __init__(self, page: Any, root: str = ".da-viewer") -> None:
        self.page = page
        self.root = root

    # ------------------------------------------------------------------------------ state
    def wait_rendered(self, timeout_ms: int = 30_000) -> None:
        """Wait until the image is rendered (IMAGE_RENDERED); raise ViewerLoadError on a load error."""
        self.page.wait_for_function(
            """(sel) => { const r = document.querySelector(sel);
                          return r && (r.dataset.daStatus === 'rendered' || r.dataset.daStatus === 'error'); }""",
            arg=self.root, timeout=timeout_ms)
        status = self.page.eval_on_selector(self.root, "r => [r.dataset.daStatus, r.dataset.daError || '']")
        if status[0] != "rendered":
            raise ViewerLoadError(f"viewer did not render the image: {status[1]}")

    def call(self, method: str, *args: Any) -> Any:
        return self.page.eval_on_selector(self.root, f"(r, args) => r.daViewer.{method}(...args)", list(args))

    def answer(self) -> dict[str, Any]:
        return self.call("getAnswer")

    def validate(self) -> list[str]:
        return self.call("validate")

    def state(self) -> dict[str, Any]:
        return self.call("getViewState")

    def to_client(self, point: Point) -> tuple[float, float]:
        x, y = self.call("imageToClient", [float(point[0]), float(point[1])])
        return float(x), float(y)

    # ------------------------------------------------------------------------------ tools
    def select_tool(self, tool: str) -> None:
        """``windowlevel``, ``pan``, ``zoom``, ``rectangle``, ``ellipse``, ``polygon`` or ``point``."""
        self.page.click(f"{self.root} [data-da-tool='{tool}']")

    def select_roi_label(self, label: str) -> None:
        self.page.select_option(f"{self.root} select[data-da-roi-label]", value=label)

    def action(self, action: str) -> None:
        """``invert``, ``flipH``, ``flipV``, ``rotate``, ``reset``, ``undo`` or ``delete``."""
        self.page.click(f"{self.root} [data-da-action='{action}']")

    def drag(self, points: Sequence[Point], steps: int = 8) -> None:
        """Press at the first image point, move through the others, release (whatever tool is active)."""
        self._drag(points, steps)

    def _drag(self, points: Sequence[Point], steps: int = 8) -> None:
        mouse = self.page.mouse
        start = self.to_client(points[0])
        mouse.move(*start)
        mouse.down()
        for point in points[1:]:
            mouse.move(*self.to_client(point), steps=steps)
        mouse.up()
        self.page.wait_for_timeout(DOUBLE_CLICK_GUARD_MS)

    def draw_rectangle(self, label: str, corner0: Point, corner1: Point) -> None:
        self.select_tool("rectangle")
        self.select_roi_label(label)
        self._drag([corner0, corner1])

    def draw_ellipse(self, label: str, corner0: Point, corner1: Point) -> None:
        """An ellipse inscribed in the box (EllipticalROI draws from the centre out to a corner)."""
        self.select_tool("ellipse")
        self.select_roi_label(label)
        centre = ((corner0[0] + corner1[0]) / 2, (corner0[1] + corner1[1]) / 2)
        self._drag([centre, corner1])

    def draw_polygon(self, label: str, vertices: Sequence[Point]) -> None:
        """A closed freehand polygon through the vertices (dragged edge by edge, back to the start)."""
        self.select_tool("polygon")
        self.select_roi_label(label)
        self._drag([*vertices, vertices[0]], steps=12)

    def draw_point(self, label: str, point: Point) -> None:
        self.select_tool("point")
        self.select_roi_label(label)
        self.page.mouse.click(*self.to_client(point))
        self.page.wait_for_timeout(DOUBLE_CLICK_GUARD_MS)

    def drag_window_level(self, dx: float, dy: float) -> None:
        """Drag with the window/level tool from the image centre by (dx, dy) CSS pixels."""
        self.select_tool("windowlevel")
        image = self.state()["image"]
        x, y = self.to_client((image["columns"] / 2, image["rows"] / 2))
        mouse = self.page.mouse
        mouse.move(x, y)
        mouse.down()
        mouse.move(x + dx, y + dy, steps=10)
        mouse.up()

    # ----------------------------------------------------------------------------- labels
    def _label_index(self, name: str) -> int:
        names = self.page.eval_on_selector_all(f"{self.root} [data-da-label]", "rows => rows.map(r => r.dataset.daLabel)")
        if name not in names:
            raise AssertionError(f"label {name!r} is not shown; labels are {names}")
        return names.index(name)

    def set_label(self, name: str, present: Optional[bool]) -> None:
        """Tick ``present`` or ``absent`` for a label (None clears the answer)."""
        index = self._label_index(name)
        for value, wanted in (("present", present is True), ("absent", present is False)):
            box = self.page.locator(f"{self.root} input[data-da-label-index='{index}'][data-da-value='{value}']")
            if box.is_checked() != wanted:
                box.click()

    # ----------------------------------------------------------------------------- GT form
    def submit_gt_form(self) -> Optional[dict[str, Any]]:
        """Click the crowd-form stand-in's Submit; the answer GT would store, or None when blocked."""
        self.page.evaluate("() => { window.__submitted = undefined; }")
        self.page.click("crowd-form button[type='submit']")
        submitted = self.page.evaluate("() => window.__submitted === undefined ? null : window.__submitted")
        if submitted is None:
            return None
        return json.loads(submitted["annotation"])

    def form_errors(self) -> list[str]:
        return self.page.eval_on_selector_all("#da-errors li", "items => items.map(i => i.textContent)")


def write_page(work_dir: Any, name: str, html: str) -> str:
    """Write a page under the page server's ``/pages/`` and return its path."""
    (work_dir / "pages" / name).write_text(html, encoding="utf-8")
    return f"/pages/{name}"


def mount_page_html(viewer_url: str, image_url: Optional[str], options: dict[str, Any]) -> str:
    """A bare page that mounts the viewer as the portal does (no GT form); the handle lands in
    ``window.__daViewer``, a start failure in ``window.__mountError``. ``image_url`` None: the
    options carry the series form (``slices``) instead."""
    opts = json.dumps(options).replace("<", "\\u003c")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>viewer test</title>
<script type="module" src="{viewer_url}" crossorigin="anonymous"></script></head>
<body><div id="host"></div>
<script type="module">
  const options = {opts};
  if ({json.dumps(image_url)} !== null) options.imageUrl = {json.dumps(image_url)};
  window.DicomAnnotateViewer.mount(document.getElementById('host'), options)
    .then((v) => {{ window.__daViewer = v; }}, (e) => {{ window.__mountError = String(e.message || e); }});
</script></body></html>"""
