"""Images: the de-identified DICOM file of an item, to those who may see it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from labeling.portal import jobs as J
from labeling.portal.deps import ID, get_portal, role, tx

router = APIRouter(tags=["images"])


@router.get("/api/items/{item_id}/image", responses={200: {"content": {"application/dicom": {}}}})
def image(request: Request, item_id: int = ID(), principal: Any = Depends(role())) -> Response:
    with tx(request) as session:
        source = J.item_source_for(session, item_id, principal.user)
    # Read here, in the endpoint's worker thread: one image (~0.1–10 MB) in memory is cheaper than
    # FileResponse's chunked reads, each another hop to the thread pool.
    return Response(get_portal(request).images.get(source).read_bytes(), media_type="application/dicom",
                    headers={"Cache-Control": "private, max-age=3600"})
