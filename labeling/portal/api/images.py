"""Images: the de-identified DICOM file of an item, to those who may see it."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from labeling.portal.deps import ID, get_portal

router = APIRouter(tags=["images"])


@router.get("/api/items/{item_id}/image", responses={200: {"content": {"application/dicom": {}}}})
def image(request: Request, item_id: int = ID(),
          x_prefetch_token: Optional[str] = Header(default=None, max_length=200,
                                                   description="the token of a task's `prefetch` (annotators)")
          ) -> Response:
    portal = get_portal(request)
    # Authenticated here, in this route's worker thread (a dependency would take a second hop), with
    # the item in the same statement, outside a transaction (no BEGIN/COMMIT).
    source = portal.image_source(request, item_id, x_prefetch_token)
    # Read here, in the endpoint's worker thread: one image (~0.1–10 MB) in memory is cheaper than
    # FileResponse's chunked reads, each another hop to the thread pool.
    return Response(portal.images.get(source).read_bytes(), media_type="application/dicom",
                    headers={"Cache-Control": "private, max-age=3600"})
