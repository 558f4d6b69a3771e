"""labeling/gt/viewer_assets.py: the built viewer's files, SRI and the filled-in GT worker template."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from labeling.gt import viewer_assets
from labeling.gt.contracts import MAX_TEMPLATE_CHARS
from labeling.gt.viewer_assets import ViewerAssetsError


def _build(tmp_path: Path) -> Path:
    build = tmp_path / "viewer"
    build.mkdir()
    (build / "viewer.js").write_bytes(b"window.x = 1;\n")
    (build / "decodeImageFrameWorker.js").write_bytes(b"self.y = 2;\n")
    (build / "openjpegwasm_decode.wasm").write_bytes(b"\0asm\1\0\0\0")
    (build / "build-info.json").write_text("{}")
    return build


def _sha384(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def test_asset_files_lists_what_the_browser_fetches_with_content_types(tmp_path):
    build = _build(tmp_path)
    files = viewer_assets.asset_files(build)
    assert [(key, ctype) for key, _, ctype in files] == [
        ("decodeImageFrameWorker.js", "text/javascript; charset=utf-8"),
        ("openjpegwasm_decode.wasm", "application/wasm"),
        ("viewer.js", "text/javascript; charset=utf-8"),
    ]
    assert all(path.is_file() and path.parent == build for _, path, _ in files)


def test_asset_files_refuses_an_unknown_file(tmp_path):
    build = _build(tmp_path)
    (build / "notes.txt").write_text("x")
    with pytest.raises(ViewerAssetsError, match="notes.txt"):
        viewer_assets.asset_files(build)


def test_sri_is_sha384_of_the_file(tmp_path):
    build = _build(tmp_path)
    assert viewer_assets.sri(build_dir=build) == _sha384(b"window.x = 1;\n")
    assert viewer_assets.sri("decodeImageFrameWorker.js", build) == _sha384(b"self.y = 2;\n")
    with pytest.raises(ViewerAssetsError, match="make viewer"):
        viewer_assets.sri("missing.js", build)


def test_missing_build_says_make_viewer(tmp_path):
    for call in (lambda: viewer_assets.asset_files(tmp_path), lambda: viewer_assets.sri(build_dir=tmp_path),
                 lambda: viewer_assets.render_worker_template("https://cdn.example/v/", tmp_path)):
        with pytest.raises(ViewerAssetsError, match="run `make viewer`"):
            call()


def test_render_worker_template_fills_base_url_and_integrity(tmp_path):
    build = _build(tmp_path)
    text = viewer_assets.render_worker_template("https://d111.cloudfront.net/viewer/abc", build)
    integrity = _sha384(b"window.x = 1;\n")
    assert ('<script type="module" src="https://d111.cloudfront.net/viewer/abc/viewer.js" '
            f'integrity="{integrity}" crossorigin="anonymous"></script>') in text
    assert viewer_assets.BASE_URL_PLACEHOLDER not in text and viewer_assets.SRI_PLACEHOLDER not in text
    # The ROI tools come from the shape registry (labeling/contracts/shapes.py).
    assert viewer_assets.ROI_TOOLS_PLACEHOLDER not in text
    assert "zoom (Z), rectangle (R), ellipse (E), polygon (F), point (O);" in text
    assert len(text) < MAX_TEMPLATE_CHARS
    # Still a Liquid template: GT fills the task per worker.
    assert "{{ task.input.image | grant_read_access }}" in text
    assert 'name="annotation"' in text and "<crowd-form>" in text


@pytest.mark.parametrize("url", ["", "ftp://x/", "https://x/\"onload=alert(1)", "https://a b/", "javascript:alert(1)"])
def test_bad_base_urls_are_refused(tmp_path, url):
    with pytest.raises(ViewerAssetsError, match="asset base URL"):
        viewer_assets.render_worker_template(url, _build(tmp_path))


def test_template_text_without_placeholders_is_unchanged(tmp_path):
    assert viewer_assets.fill_template("<p>{{ x }}</p>", "https://x/", tmp_path / "none") == "<p>{{ x }}</p>"


def test_the_shipped_template_fits_gt_limit_and_loads_no_other_script():
    text = viewer_assets.WORKER_TEMPLATE.read_text(encoding="utf-8")
    assert len(text) < MAX_TEMPLATE_CHARS // 4
    srcs = [part.split('"', 1)[0] for part in text.split('src="')[1:]]
    assert srcs == ["https://assets.crowd.aws/crowd-html-elements.js", "__DA_VIEWER_BASE_URL__viewer.js"]
    assert "innerHTML" not in text and "ORTHANC" not in text.upper().replace("ORTHANC INSTANCE", "")


def test_the_real_build_when_present_is_complete():
    if not (viewer_assets.VIEWER_BUILD_DIR / "viewer.js").is_file():
        pytest.fail("build/viewer is missing: run `make viewer`", pytrace=False)
    keys = {key for key, _, _ in viewer_assets.asset_files()}
    assert {"viewer.js", "decodeImageFrameWorker.js", "charlswasm_decode.wasm", "openjpegwasm_decode.wasm",
            "libjpegturbowasm_decode.wasm"} <= keys
