"""Browser-tier fixtures: loopback HTTP servers, staged DICOM files, Debian's Chromium via Playwright.

Two origins, as in Ground Truth: the *page* server (127.0.0.1:<port A>) serves the rendered worker
template and test pages; the *asset* server (127.0.0.1:<port B>, another origin) serves the viewer
build (``build/viewer``, like the stack's CloudFront asset location) and the staged DICOM files
(like the presigned S3 URLs), both with CORS. So the tests exercise the cross-origin bundle (SRI
with ``crossorigin``), the decode worker started from a blob: URL, and CORS image fetches.

The viewer must be built first (``make viewer``; ``make test`` does it): a missing build fails
the tests with that instruction, it does not skip them.
"""

from __future__ import annotations

import http.server
import mimetypes
import shutil
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from labeling.dicom.deidentify import DEV_SALT, deidentify
from labeling.gt.viewer_assets import VIEWER_BUILD_DIR

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SCREENSHOTS = REPO / "build" / "screenshots"

CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".wasm": "application/wasm",
                 ".dcm": "application/dicom", ".html": "text/html; charset=utf-8",
                 ".json": "application/json", ".css": "text/css; charset=utf-8"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.path).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.browser)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files from ``mounts`` (URL prefix → directory) with explicit MIME types and CORS."""

    mounts: dict[str, Path] = {}
    cors = False

    def translate_path(self, path: str) -> str:
        path = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        for prefix, root in self.mounts.items():
            if path.startswith(prefix):
                rel = Path(path[len(prefix):].lstrip("/"))
                if ".." in rel.parts:
                    return str(root / "__forbidden__")
                return str(root / rel)
        return str(Path("/nonexistent") / path.lstrip("/"))

    def guess_type(self, path: Any) -> str:
        return CONTENT_TYPES.get(Path(str(path)).suffix.lower()) or mimetypes.guess_type(str(path))[0] \
            or "application/octet-stream"

    def end_headers(self) -> None:
        if self.cors:
            self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args: Any) -> None:  # keep pytest output quiet
        pass


@dataclass
class Server:
    origin: str
    mounts: dict[str, Path]
    httpd: http.server.ThreadingHTTPServer = field(repr=False)

    def url(self, path: str) -> str:
        return self.origin + path


def _serve(mounts: dict[str, Path], cors: bool) -> Server:
    handler = type("Handler", (_Handler,), {"mounts": mounts, "cors": cors})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True, name="browser-test-http").start()
    return Server(f"http://127.0.0.1:{httpd.server_address[1]}", mounts, httpd)


@pytest.fixture(scope="session")
def viewer_build() -> Path:
    if not (VIEWER_BUILD_DIR / "viewer.js").is_file():
        pytest.fail(f"{VIEWER_BUILD_DIR}/viewer.js is missing: run `make viewer` first", pytrace=False)
    return VIEWER_BUILD_DIR


@pytest.fixture(scope="session")
def work_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="da-browser-"))
    (path / "data").mkdir()
    (path / "pages").mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def staged_synthetic(work_dir: Path) -> dict[str, Any]:
    """One synthetic chest image, de-identified as the pre-label step stages it.

    Returns ``{"path", "name", "rows", "columns", "truth"}`` (truth: synth's ground-truth record).
    """
    from devkit import synth

    params = synth.make_params(patients=1, studies_per_patient=1, size=256, seed=11)
    raw = work_dir / "raw"
    truth = synth.write_image(params, raw, (0, 0))
    source = next(raw.rglob("*.dcm"))
    staged = work_dir / "data" / "synthetic.dcm"
    staged.write_bytes(deidentify(source.read_bytes(), salt=DEV_SALT))
    return {"path": staged, "name": staged.name, "rows": 256, "columns": 256, "truth": truth}


@pytest.fixture(scope="session")
def asset_server(viewer_build: Path, work_dir: Path) -> Iterator[Server]:
    server = _serve({"/viewer/": viewer_build, "/data/": work_dir / "data"}, cors=True)
    yield server
    server.httpd.shutdown()


@pytest.fixture(scope="session")
def page_server(work_dir: Path) -> Iterator[Server]:
    server = _serve({"/pages/": work_dir / "pages"}, cors=False)
    yield server
    server.httpd.shutdown()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (Debian's chromium package)", pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class PageLog:
    """What a page did that a test may assert on: JS dialogs, uncaught errors, console errors."""

    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log = PageLog()

    def on_dialog(dialog: Any) -> None:
        log.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda exc: log.page_errors.append(str(exc)))
    page.on("console", lambda msg: log.console_errors.append(msg.text) if msg.type == "error" else None)
    page.log = log
    yield page
    context.close()
