"""Series items: one de-identified slice of an item, to those who may see the item (labeling/portal/series.py)."""

from __future__ import annotations

from fastapi import APIRouter, Path as PathParam, Request
from fastapi.responses import Response

from labeling.portal import series
from labeling.portal.deps import ID, get_portal, in_thread
from labeling.portal.images import IMAGE_CACHE_CONTROL

router = APIRouter(tags=["images"])


@router.get("/api/items/{item_id}/instances/{instance_id}",
            responses={200: {"content": {"application/dicom": {}}}})
async def slice_image(request: Request, item_id: int = ID(),
                      instance_id: str = PathParam(max_length=64, description="the slice's Orthanc instance ID")
                      ) -> Response:
    # As the image route (one request per slice, hundreds per series): one hop to a thread, and there
    # the session, user and item in one statement.
    return await in_thread(_slice, request, item_id, instance_id)


def _slice(request: Request, item_id: int, instance_id: str) -> Response:
    portal = get_portal(request)
    found = portal.item_read(request, item_id, "geometry", missing_ok=True)
    instance = series.check_slice(item_id, found, instance_id)
    # The one image store: the same de-identification (and UID mapping) for every slice of the series.
    return Response(portal.images.get(instance).read_bytes(), media_type="application/dicom",
                    headers={"Cache-Control": IMAGE_CACHE_CONTROL})
