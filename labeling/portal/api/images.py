"""Images: the de-identified DICOM file of an item, to those who may see it."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from labeling.portal.deps import ID, get_portal, in_thread
from labeling.portal.images import IMAGE_CACHE_CONTROL

router = APIRouter(tags=["images"])


@router.get("/api/items/{item_id}/image", responses={200: {"content": {"application/dicom": {}}}})
async def image(request: Request, item_id: int = ID(),
                x_prefetch_token: Optional[str] = Header(default=None, max_length=200,
                                                         description="the token of a task's `prefetch` (annotators)")
                ) -> Response:
    # One hop to a thread for the whole route (a dependency would take a second one).
    return await in_thread(_image, request, item_id, x_prefetch_token)


def _image(request: Request, item_id: int, x_prefetch_token: Optional[str]) -> Response:
    portal = get_portal(request)
    # Authenticated with the item in one statement, outside a transaction (no BEGIN/COMMIT).
    source = portal.item_read(request, item_id, "source", x_prefetch_token)
    # Read here, in the route's thread: one image (~0.1–10 MB) in memory is cheaper than
    # FileResponse's chunked reads, each another hop to the thread pool.
    return Response(portal.images.get(source).read_bytes(), media_type="application/dicom",
                    headers={"Cache-Control": IMAGE_CACHE_CONTROL})
