"""Input side of consolidation: one object's worker answers, parsed and validated.

A worker answer is the single-annotator label shape of ARCHITECTURE.md ("The label shape")::

    {"labels": [{"name": "Opacity", "present": true}, ...],
     "rois":   [{"label": "Opacity", "shape": "rectangle", "points": [[x0, y0], [x1, y1]]}, ...],
     "image":  {"rows": 2048, "columns": 2048, "frame": 0}}

It may arrive as a mapping, as its JSON text, or wrapped the way the viewer submits it
(``{"annotation": "<json text>"}``, GT's ``annotationData.content``); :func:`parse_worker_content`
unwraps all three.

Validation is strict and every failure raises :class:`ConsolidationError`, which names the item,
the worker and the field (``labels[1].name``, ``rois[0].points`` ...), so the post-label Lambda can
report one bad object and still consolidate the others.

Rules (documented here once):

* ``labels``: optional list; each entry a mapping with ``name`` (one of the schema's label names,
  matched exactly) and ``present`` (a JSON boolean). A name may appear once per answer. A schema
  label the worker did not list is *not answered* by that worker (it does not count as absent).
* ``rois``: optional list; each entry a mapping with ``label`` (a schema label name), ``shape``
  (``rectangle``/``ellipse``: exactly two points, opposite corners of the box; ``polygon``: at least
  three points; ``point``: exactly one point) and ``points`` (``[x, y]`` pairs of finite numbers,
  booleans rejected). Other keys are ignored.
* ROIs of **series and multi-frame tasks** (issue 14) also say where they were drawn: ``instance``
  (the Orthanc instance ID of the slice, a non-empty string) and ``frame`` (0-based frame number in
  that instance, an integer >= 0; default 0 when ``instance`` is given). Both absent: the ROI is on
  the task's one image (``image.frame``), as before. ``frame`` without ``instance`` is refused (a
  frame of which instance?). Checked by :func:`parse_roi_reference`. The answer's ``labels`` are
  then series-level labels (same shape as an image's).
* ``image``: optional mapping; ``rows`` and ``columns`` positive integers, ``frame`` a
  non-negative integer (default 0). Workers of one object must agree on ``rows``/``columns``/``frame``
  (otherwise they did not annotate the same image).
* Worker ids are non-empty strings, unique within an object; an object needs at least one answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

SHAPES: Final = ("rectangle", "ellipse", "polygon", "point")
"""ROI shapes of the label-shape contract, in canonical order (same as ``labeling.schema.SHAPES``)."""

_POINT_COUNT: Final = {"rectangle": (2, 2), "ellipse": (2, 2), "polygon": (3, None), "point": (1, 1)}


class ConsolidationError(ValueError):
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
        super().__init__(f"{where}: {field}: {reason}")

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
    """All answers for one object (``item_id`` is GT's ``datasetObjectId`` or the portal's item key)."""

    item_id: str
    answers: Sequence[WorkerAnswer]

    @classmethod
    def from_pairs(cls, item_id: str, pairs: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> ItemAnswers:
        """Build from ``{worker_id: content}`` or ``[(worker_id, content), ...]``."""
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        return cls(str(item_id), tuple(WorkerAnswer(w, c) for w, c in items))


@dataclass(frozen=True)
class Roi:
    """A validated ROI: ``points`` is a float array of shape (n, 2) in image pixels (x, y)."""

    label: str
    shape: str
    points: Any  # numpy array (n, 2); typed Any to keep numpy out of the signature
    instance: str | None = None  # series/multi-frame tasks: Orthanc instance ID of the slice
    frame: int | None = None     # 0-based frame in ``instance``
    bbox: tuple[float, float, float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lo, hi = self.points.min(axis=0), self.points.max(axis=0)
        object.__setattr__(self, "bbox", (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])))

    def box(self) -> tuple[float, float, float, float]:
        """Axis-aligned bounding box (xmin, ymin, xmax, ymax)."""
        return self.bbox


@dataclass(frozen=True)
class ParsedAnswer:
    """A validated worker answer: ``labels`` maps label name -> present; ``rois`` in input order."""

    worker_id: str
    labels: dict[str, bool]
    rois: tuple[Roi, ...]
    image: dict[str, int] | None = None


@dataclass(frozen=True)
class ParsedItem:
    item_id: str
    answers: tuple[ParsedAnswer, ...]
    image: dict[str, int] | None = field(default=None)


def parse_worker_content(content: Any, *, item_id: str | None = None,
                         worker_id: str | None = None) -> Mapping[str, Any]:
    """The answer mapping inside ``content``: a mapping, its JSON text, or ``{"annotation": <either>}``."""
    if type(content) is dict and ("labels" in content or "rois" in content):
        return content
    value = content
    for _ in range(3):  # JSON text -> {"annotation": JSON text} -> answer mapping
        if isinstance(value, (str, bytes, bytearray)):
            try:
                value = json.loads(value)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ConsolidationError(item_id, "content", f"not valid JSON ({exc})",
                                         worker_id=worker_id) from exc
            continue
        if _is_map(value) and "annotation" in value and not (
                "labels" in value or "rois" in value):
            value = value["annotation"]
            continue
        break
    if not _is_map(value):
        raise ConsolidationError(item_id, "content",
                                 f"expected an object with labels/rois/image, got {type(value).__name__}",
                                 worker_id=worker_id)
    return value


def _is_map(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _is_list(value: Any) -> bool:
    t = type(value)
    return t is list or t is tuple or (isinstance(value, Sequence) and not isinstance(value, (str, bytes)))


_NUMBER_TYPES: Final = (int, float)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def _parse_points(raw: Any, shape: str, err) -> Any:
    if not _is_list(raw):
        raise err("expected a list of [x, y] pairs")
    lo, hi = _POINT_COUNT[shape]
    if len(raw) < lo or (hi is not None and len(raw) > hi):
        want = f"exactly {lo}" if lo == hi else f"at least {lo}"
        raise err(f"a {shape} needs {want} point(s), got {len(raw)}")
    # fast path: plain lists of int/float pairs (bool is not int here: type() is exact)
    if all(type(pt) in (list, tuple) and len(pt) == 2 and type(pt[0]) in _NUMBER_TYPES
           and type(pt[1]) in _NUMBER_TYPES for pt in raw):
        out = np.array(raw, dtype=float)
        if np.isfinite(out).all():
            return out
    out = np.empty((len(raw), 2), dtype=float)
    for i, pt in enumerate(raw):
        if not isinstance(pt, Sequence) or isinstance(pt, (str, bytes)) or len(pt) != 2:
            raise err(f"point {i} is not an [x, y] pair: {pt!r}")
        x, y = _number(pt[0]), _number(pt[1])
        if x is None or y is None:
            raise err(f"point {i} has a non-numeric or non-finite coordinate: {pt!r}")
        out[i] = (x, y)
    return out


def _parse_image(raw: Any, err) -> dict[str, int] | None:
    if raw is None:
        return None
    if type(raw) is dict:  # fast path for the common, complete case
        rows, cols, frame = raw.get("rows"), raw.get("columns"), raw.get("frame", 0)
        if (type(rows) is int and type(cols) is int and type(frame) is int
                and rows >= 1 and cols >= 1 and frame >= 0):
            return {"rows": rows, "columns": cols, "frame": frame}
    if not _is_map(raw):
        raise err("image", f"expected an object, got {type(raw).__name__}")
    out: dict[str, int] = {}
    for key, minimum in (("rows", 1), ("columns", 1), ("frame", 0)):
        if key not in raw or raw[key] is None:
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise err(f"image.{key}", f"expected an integer >= {minimum}, got {value!r}")
        out[key] = int(value)
    if out and "frame" not in out:
        out["frame"] = 0
    return out or None


def parse_roi_reference(entry: Mapping[str, Any], err) -> tuple[str | None, int | None]:
    """``(instance, frame)`` of one ROI entry (see the module docstring); ``err(field, reason)``
    builds the error for the ROI's ``instance``/``frame`` field."""
    instance, frame = entry.get("instance"), entry.get("frame")
    if instance is None and frame is None:
        return None, None
    if instance is None:
        raise err("frame", f"frame {frame!r} given without instance (the Orthanc instance ID it belongs to)")
    if type(instance) is not str or not instance.strip():
        raise err("instance", f"expected the Orthanc instance ID (a non-empty string), got {instance!r}")
    if frame is None:
        return instance, 0
    if type(frame) is not int or frame < 0:
        raise err("frame", f"expected a 0-based frame number (an integer >= 0), got {frame!r}")
    return instance, frame


def parse_answer(answer: WorkerAnswer, label_names: Sequence[str], *, item_id: str,
                 label_set: frozenset[str] | None = None) -> ParsedAnswer:
    """Validate one worker's answer against the schema's label names (raises ConsolidationError)."""
    worker_id = answer.worker_id
    if not isinstance(worker_id, str) or not worker_id:
        raise ConsolidationError(item_id, "workerId", f"expected a non-empty string, got {worker_id!r}")

    def err(field_name: str, reason: str) -> ConsolidationError:
        return ConsolidationError(item_id, field_name, reason, worker_id=worker_id)

    names = label_set if label_set is not None else frozenset(label_names)

    def unknown(field_name: str, name: Any) -> ConsolidationError:
        hint = ""
        if isinstance(name, str):
            folded = [n for n in label_names if n.casefold() == name.casefold()]
            if folded:
                hint = f" (did you mean {folded[0]!r}? names match exactly)"
        return err(field_name, f"unknown label {name!r}{hint}; schema labels: {list(label_names)}")

    data = parse_worker_content(answer.content, item_id=item_id, worker_id=worker_id)

    labels: dict[str, bool] = {}
    raw_labels = data.get("labels")
    if raw_labels is not None:
        if not _is_list(raw_labels):
            raise err("labels", f"expected a list, got {type(raw_labels).__name__}")
        for i, entry in enumerate(raw_labels):
            if not _is_map(entry):
                raise err(f"labels[{i}]", f"expected an object, got {type(entry).__name__}")
            name = entry.get("name")
            if type(name) is not str or name not in names:
                raise unknown(f"labels[{i}].name", name)
            if name in labels:
                raise err(f"labels[{i}].name", f"label {name!r} answered twice")
            present = entry.get("present")
            if present is not True and present is not False:
                raise err(f"labels[{i}].present", f"expected true or false, got {present!r}")
            labels[name] = present

    rois: list[Roi] = []
    raw_rois = data.get("rois")
    if raw_rois is not None:
        if not _is_list(raw_rois):
            raise err("rois", f"expected a list, got {type(raw_rois).__name__}")
        for i, entry in enumerate(raw_rois):
            if not _is_map(entry):
                raise err(f"rois[{i}]", f"expected an object, got {type(entry).__name__}")
            label = entry.get("label")
            if type(label) is not str or label not in names:
                raise unknown(f"rois[{i}].label", label)
            shape = entry.get("shape")
            if type(shape) is not str or shape not in _POINT_COUNT:
                raise err(f"rois[{i}].shape", f"unknown shape {shape!r}; expected one of {list(SHAPES)}")
            points = _parse_points(entry.get("points"), shape,
                                   lambda reason, i=i: err(f"rois[{i}].points", reason))
            if "instance" in entry or "frame" in entry:
                instance, frame = parse_roi_reference(entry, lambda key, reason, i=i: err(f"rois[{i}].{key}", reason))
                rois.append(Roi(label, shape, points, instance, frame))
            else:
                rois.append(Roi(label, shape, points))

    image = _parse_image(data.get("image"), err)
    return ParsedAnswer(worker_id, labels, tuple(rois), image)


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
        p = parse_answer(answer, label_names, item_id=item_id, label_set=label_set)
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
    return ParsedItem(item_id, tuple(parsed), image)
