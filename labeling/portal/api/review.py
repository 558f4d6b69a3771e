"""Review (admins, reviewers): the queue, one item's answers and flags, the decision."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from labeling.portal import jobs as J
from labeling.portal.deps import ID, get_portal, role, tx

router = APIRouter(tags=["review"])
reviewer = role("admin", "reviewer")


class ReviewIn(BaseModel):
    action: str = Field(pattern="^(accept|edit|exclude|reopen)$",
                        description="accept the consolidated label, edit (answer required), exclude from the "
                                    "export, or reopen a wrongly flagged item for annotators")
    answer: Any = None


@router.get("/api/review")
def queue(request: Request, _: Any = Depends(reviewer)) -> list[dict[str, Any]]:
    portal = get_portal(request)
    with tx(request) as session:
        return [{"item_id": i.id, "job_id": i.job_id, "position": i.position, "agreement": i.agreement,
                 "page": portal.url(f"/review/{i.id}")} for i in J.review_queue(session)]


@router.get("/api/review/{item_id}")
def item(request: Request, item_id: int = ID(), principal: Any = Depends(reviewer)) -> dict[str, Any]:
    with tx(request) as session:
        return J.review_detail(session, J.get_item_for(session, item_id, principal.user), principal.user)


@router.post("/api/review/{item_id}")
def decide(request: Request, body: ReviewIn, item_id: int = ID(), principal: Any = Depends(reviewer)) -> dict[str, Any]:
    with tx(request) as session:
        decided = J.review_decide(session, J.get_item_for(session, item_id, principal.user), principal.user,
                                  body.action, body.answer)
        return {"item_id": decided.id, "state": decided.state, "final": decided.final}
