"""Health check and static files (the viewer bundle, the portal's own script and style)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse

from labeling.portal import jobs as J
from labeling.portal.core import HERE
from labeling.portal.db import ping
from labeling.portal.deps import get_portal

router = APIRouter()
PORTAL_FILES = {"portal.js": "text/javascript; charset=utf-8", "portal.css": "text/css; charset=utf-8",
                "favicon.svg": "image/svg+xml"}


@router.get("/healthz", tags=["health"])
def healthz(request: Request) -> JSONResponse:
    ok = ping(get_portal(request).engine)
    return JSONResponse({"status": "ok" if ok else "database unreachable"}, status_code=200 if ok else 503)


@router.get("/static/viewer/{name}", include_in_schema=False)
def viewer_static(request: Request, name: str) -> FileResponse:
    path, content_type = get_portal(request).viewer_file(name)
    return FileResponse(path, media_type=content_type, headers={"Cache-Control": "public, max-age=300"})


@router.get("/static/portal/{name}", include_in_schema=False)
def portal_static(name: str) -> FileResponse:
    if name not in PORTAL_FILES:
        raise J.NotFound("no such file")
    return FileResponse(HERE / "static" / name, media_type=PORTAL_FILES[name],
                        headers={"Cache-Control": "public, max-age=60"})


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    """Browsers ask for /favicon.ico unless a page names its icon (base.html does; this answers the
    others instead of a 404 in every log)."""
    return portal_static("favicon.svg")
