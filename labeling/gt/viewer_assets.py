"""The built viewer bundle (``make viewer`` → ``build/viewer/``) and the GT worker template that loads it.

The Cornerstone3D viewer (``viewer/``; API in ``viewer/src/viewer.js``) is too large to inline in a
Ground Truth template (GT accepts at most :data:`labeling.gt.contracts.MAX_TEMPLATE_CHARS`
characters), so the template loads ``viewer.js`` from an asset location — the stack's S3 bucket
behind CloudFront in AWS, a loopback server in tests — with Subresource Integrity (W3C SRI: the
``integrity="sha384-…"`` attribute plus ``crossorigin="anonymous"``, so the browser refuses a bundle
that was changed after the template was made). ``viewer.js`` itself checks the decode worker's
SHA-384, compiled in at build time, before starting it.

- :func:`asset_files` lists what must be uploaded beside each other under one prefix, with the
  content type each must be served with (``.wasm`` as ``application/wasm``, or browsers refuse
  streaming compilation).
- :func:`sri` is the integrity value of a built file.
- :func:`render_worker_template` fills the asset base URL, the SRI and the ROI tools of the shape
  registry (:func:`roi_tool_help`) into ``labeling/gt/worker_template.liquid.html``; the result is still a Liquid template (GT renders it per
  task) and is what the stack uploads as the worker template.
"""

from __future__ import annotations

import base64
import hashlib
import html
from pathlib import Path
from typing import Optional

from labeling.contracts.shapes import SHAPE_REGISTRY
from labeling.gt.contracts import MAX_TEMPLATE_CHARS

REPO_ROOT = Path(__file__).resolve().parents[2]
VIEWER_BUILD_DIR: Path = REPO_ROOT / "build" / "viewer"
WORKER_TEMPLATE: Path = Path(__file__).with_name("worker_template.liquid.html")

BUNDLE = "viewer.js"
BASE_URL_PLACEHOLDER = "__DA_VIEWER_BASE_URL__"
SRI_PLACEHOLDER = "__DA_VIEWER_SRI__"
ROI_TOOLS_PLACEHOLDER = "__DA_ROI_TOOLS__"

# Content types by suffix; what the asset location must answer with.
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".wasm": "application/wasm",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
}


class ViewerAssetsError(Exception):
    """The viewer build is missing or unusable, or a template cannot be filled in."""


def _build_dir(build_dir: Optional[Path]) -> Path:
    directory = Path(build_dir) if build_dir is not None else VIEWER_BUILD_DIR
    if not (directory / BUNDLE).is_file():
        raise ViewerAssetsError(f"{directory / BUNDLE}: the viewer bundle is not built; run `make viewer`")
    return directory


def asset_files(build_dir: Optional[Path] = None) -> list[tuple[str, Path, str]]:
    """``(relative key, local path, content type)`` for every file of the built viewer, sorted by key.

    Only files the browser fetches are listed (the bundle, the decode worker, the codecs); the
    build's ``build-info.json`` stays local.
    """
    directory = _build_dir(build_dir)
    out: list[tuple[str, Path, str]] = []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.name == "build-info.json":
            continue
        content_type = CONTENT_TYPES.get(path.suffix.lower())
        if content_type is None:
            raise ViewerAssetsError(f"{path}: unexpected file in the viewer build (no content type for "
                                    f"{path.suffix or 'a file without suffix'}); run `make viewer` again")
        out.append((path.relative_to(directory).as_posix(), path, content_type))
    return out


def sri(relpath: str = BUNDLE, build_dir: Optional[Path] = None) -> str:
    """The SRI integrity value (``sha384-<base64>``) of a built file."""
    directory = _build_dir(build_dir)
    path = directory / relpath
    if not path.is_file():
        raise ViewerAssetsError(f"{path}: no such file in the viewer build; run `make viewer`")
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode("ascii")


def normalize_base_url(asset_base_url: str) -> str:
    """The base URL with exactly one trailing ``/``; https, http (loopback tests) or file only."""
    url = (asset_base_url or "").strip()
    if not url.startswith(("https://", "http://", "file://")) or any(c in url for c in "\"'<> \n\t"):
        raise ViewerAssetsError(f"asset base URL {asset_base_url!r}: must be an http(s):// or file:// URL "
                                "without quotes, spaces or angle brackets")
    return url.rstrip("/") + "/"


def roi_tool_help() -> str:
    """The template's ROI tool list, one ``name (key)`` per registered shape in registry order, as HTML
    text: ``rectangle (R), ellipse (E), polygon (F), point (O)`` today."""
    return ", ".join(f"{html.escape(spec.name)} ({html.escape(spec.key)})" for spec in SHAPE_REGISTRY.values())


def fill_template(template_text: str, asset_base_url: str, build_dir: Optional[Path] = None,
                  source: str = str(WORKER_TEMPLATE)) -> str:
    """Replace the viewer placeholders in a worker template (text without them is returned as is)."""
    if not any(mark in template_text for mark in (BASE_URL_PLACEHOLDER, SRI_PLACEHOLDER, ROI_TOOLS_PLACEHOLDER)):
        return template_text
    base = html.escape(normalize_base_url(asset_base_url), quote=True)
    filled = (template_text.replace(BASE_URL_PLACEHOLDER, base)
              .replace(SRI_PLACEHOLDER, sri(BUNDLE, build_dir))
              .replace(ROI_TOOLS_PLACEHOLDER, roi_tool_help()))
    if len(filled) > MAX_TEMPLATE_CHARS:
        raise ViewerAssetsError(f"{source}: the filled-in template is {len(filled):,} characters; "
                                f"Ground Truth accepts at most {MAX_TEMPLATE_CHARS:,}")
    return filled


def render_worker_template(asset_base_url: str, build_dir: Optional[Path] = None) -> str:
    """The GT worker template (Liquid) with the viewer's base URL and SRI filled in."""
    return fill_template(WORKER_TEMPLATE.read_text(encoding="utf-8"), asset_base_url, build_dir)


def default_base_url(build_dir: Optional[Path] = None) -> str:
    """``file://`` URL of the local build (for ``gt render`` previews; serve it over http to use it)."""
    return (Path(build_dir) if build_dir is not None else VIEWER_BUILD_DIR).resolve().as_uri() + "/"
