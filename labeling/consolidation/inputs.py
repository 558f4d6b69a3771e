"""Input side of consolidation: one object's worker answers, parsed and validated.

A worker answer is the single-annotator label shape; its parsing and validation rules live in the
label contract, :mod:`labeling.contracts.answer` (documented there once). This module adds what is
consolidation's own:

* every contract failure becomes a :class:`ConsolidationError`, which names the item, the worker and
  the field (``labels[1].name``, ``rois[0].points`` ...), so the post-label Lambda can report one bad
  object and still consolidate the others;
* workers of one object must agree on ``image`` ``rows``/``columns``/``frame`` (otherwise they did
  not annotate the same image), and fit the image's recorded geometry when the item carries it
  (:attr:`ItemAnswers.geometry`, from the manifest line);
* worker ids are non-empty strings, unique within an object; an object needs at least one answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labeling.contracts.answer import Roi, parse_answer as parse_contract_answer, unwrap_answer
from labeling.contracts.errors import ContractError
from labeling.contracts.geometry import ImageGeometry
from labeling.contracts.shapes import SHAPES

__all__ = ["SHAPES", "ConsolidationError", "ItemAnswers", "ParsedAnswer", "ParsedItem", "Roi", "WorkerAnswer",
           "parse_answer", "parse_item", "parse_worker_content"]


class ConsolidationError(ContractError):
    """One object's input cannot be consolidated.

    ``item_id`` names the object (GT's ``datasetObjectId``), ``worker_id`` the answer (None when the
    problem is not one worker's), ``field`` the offending key path inside that answer (e.g.
    ``rois[2].points``) and ``reason`` what is wrong. ``str()`` gives all of them in one line.
    """

    def __init__(self, item_id: str | None, field: str, reason: str, *, worker_id: str | None = None):
        self.item_id = item_id
        self.worker_id = worker_id
        self.field = field
        self.reason = reason
        where = f"item {item_id!r}"
        if worker_id is not None:
            where += f", worker {worker_id!r}"
        ValueError.__init__(self, f"{where}: {field}: {reason}")

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "worker_id": self.worker_id, "field": self.field,
                "reason": self.reason, "message": str(self)}

    def __reduce__(self):  # picklable across processes despite the keyword-only argument
        return (_rebuild_error, (self.item_id, self.field, self.reason, self.worker_id))


def _rebuild_error(item_id: str | None, field: str, reason: str,
                   worker_id: str | None) -> ConsolidationError:
    return ConsolidationError(item_id, field, reason, worker_id=worker_id)


@dataclass(frozen=True)
class WorkerAnswer:
    """One worker's answer for one object: ``content`` in any form :func:`parse_worker_content` takes."""

    worker_id: str
    content: Any


@dataclass(frozen=True)
class ItemAnswers:
    """All answers for one object (``item_id`` is GT's ``datasetObjectId`` or the portal's item key);
    ``geometry``: the image's recorded geometry (its manifest line's), which every answer must fit;
    ``slice_order``: a series task's ordered instance IDs (its manifest line's ``instances``), which
    the per-slice agreement uses to find neighbouring slices (:func:`.slices.slice_agreement`)."""

    item_id: str
    answers: Sequence[WorkerAnswer]
    geometry: ImageGeometry | None = None
    slice_order: Sequence[str] = ()

    @classmethod
    def from_pairs(cls, item_id: str, pairs: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> ItemAnswers:
        """Build from ``{worker_id: content}`` or ``[(worker_id, content), ...]``."""
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        return cls(str(item_id), tuple(WorkerAnswer(w, c) for w, c in items))


@dataclass(frozen=True)
class ParsedAnswer:
    """A validated worker answer: ``labels`` maps label name -> present; ``rois`` in input order;
    ``uncertain`` the labels marked uncertain (what they count as: :mod:`.uncertain`)."""

    worker_id: str
    labels: dict[str, bool]
    rois: tuple[Roi, ...]
    image: dict[str, int] | None = None
    uncertain: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedItem:
    item_id: str
    answers: tuple[ParsedAnswer, ...]
    image: dict[str, int] | None = field(default=None)
    slice_order: tuple[str, ...] = ()


def parse_worker_content(content: Any, *, item_id: str | None = None,
                         worker_id: str | None = None) -> Mapping[str, Any]:
    """The answer mapping inside ``content`` (:func:`labeling.contracts.answer.unwrap_answer`)."""
    try:
        return unwrap_answer(content)
    except ContractError as exc:
        raise ConsolidationError(item_id, exc.field, exc.reason, worker_id=worker_id) from None


def parse_answer(answer: WorkerAnswer, label_names: Sequence[str], *, item_id: str,
                 label_set: frozenset[str] | None = None, geometry: ImageGeometry | None = None) -> ParsedAnswer:
    """Validate one worker's answer against the schema's label names (raises ConsolidationError)."""
    worker_id = answer.worker_id
    if not isinstance(worker_id, str) or not worker_id:
        raise ConsolidationError(item_id, "workerId", f"expected a non-empty string, got {worker_id!r}")
    try:
        parsed = parse_contract_answer(answer.content, label_names, label_set=label_set, geometry=geometry)
    except ContractError as exc:
        raise ConsolidationError(item_id, exc.field, exc.reason, worker_id=worker_id) from None
    image = parsed.image.to_dict() if parsed.image is not None else None
    return ParsedAnswer(worker_id, parsed.labels, parsed.rois, image, parsed.uncertain)


def parse_item(item: ItemAnswers, label_names: Sequence[str],
               label_set: frozenset[str] | None = None) -> ParsedItem:
    """Validate every answer of one object; raises ConsolidationError naming the item."""
    if not isinstance(item, ItemAnswers):
        raise ConsolidationError(getattr(item, "item_id", None), "item",
                                 f"expected ItemAnswers, got {type(item).__name__}")
    item_id = item.item_id
    answers = item.answers
    if not answers:
        raise ConsolidationError(item_id, "annotations", "no worker answers")
    parsed: list[ParsedAnswer] = []
    seen: set[str] = set()
    image: dict[str, int] | None = None
    image_from: str | None = None
    for answer in answers:
        if type(answer) is not WorkerAnswer and not isinstance(answer, WorkerAnswer):
            raise ConsolidationError(item_id, "annotations",
                                     f"expected WorkerAnswer, got {type(answer).__name__}")
        p = parse_answer(answer, label_names, item_id=item_id, label_set=label_set, geometry=item.geometry)
        if p.worker_id in seen:
            raise ConsolidationError(item_id, "workerId", "worker answered this object twice",
                                     worker_id=p.worker_id)
        seen.add(p.worker_id)
        if p.image is not None:
            if image is None:
                image, image_from = p.image, p.worker_id
            elif any(image.get(k) != p.image.get(k) for k in ("rows", "columns", "frame")
                     if k in image and k in p.image):
                raise ConsolidationError(
                    item_id, "image",
                    f"image geometry {p.image} differs from worker {image_from!r}'s {image}",
                    worker_id=p.worker_id)
        parsed.append(p)
    return ParsedItem(item_id, tuple(parsed), image, tuple(item.slice_order or ()))
