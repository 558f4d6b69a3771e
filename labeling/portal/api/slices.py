"""Series items: one de-identified slice of an item, to those who may see the item (labeling/portal/series.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path as PathParam, Request
from fastapi.responses import Response

from labeling.portal import series
from labeling.portal.deps import ID, get_portal, role, tx

router = APIRouter(tags=["images"])


@router.get("/api/items/{item_id}/instances/{instance_id}",
            responses={200: {"content": {"application/dicom": {}}}})
def slice_image(request: Request, item_id: int = ID(),
                instance_id: str = PathParam(max_length=64, description="the slice's Orthanc instance ID"),
                principal: Any = Depends(role())) -> Response:
    with tx(request) as session:
        instance = series.slice_for(session, item_id, instance_id, principal.user)
    # The one image store: the same de-identification (and UID mapping) for every slice of the series.
    return Response(get_portal(request).images.get(instance).read_bytes(), media_type="application/dicom",
                    headers={"Cache-Control": "private, max-age=3600"})
