"""An answer in the label shape: label verdicts, ROIs and the image, parsed and validated once.

The label shape (``docs/architecture.md``, "The label shape") is what one annotator submits (GT's
``annotationData.content``, the portal's stored answer) and, with the consolidation fields, the
``<attr>`` content of a Ground Truth output-manifest line (AWS docs, "Output data" → custom
workflow: the post-annotation Lambda's ``consolidatedAnnotation.content``)::

    {"labels": [{"name": "Opacity", "present": true, "confidence": 0.93}, ...],
     "rois":   [{"label": "Opacity", "shape": "rectangle", "points": [[x0, y0], [x1, y1]],
                 "confidence": 0.67}, ...],
     "image":  {"rows": 2048, "columns": 2048, "frame": 0}}

It may arrive as a mapping, as its JSON text, or wrapped the way the viewer submits it
(``{"annotation": "<json text>"}``); :func:`unwrap_answer` unwraps all three.

Rules (documented here once; every failure is one :class:`ContractError` naming the field):

* ``labels``: optional list; each entry a mapping with ``name`` (one of the schema's label names,
  matched exactly), ``present`` (a JSON boolean) and an optional ``confidence`` (a number within
  0..1). A name may appear once per answer. A schema label the answer does not list is *not
  answered* (it does not count as absent).
* **Uncertain** (a schema with ``uncertain: true``, issue 12): an entry ``{"name": …, "uncertain":
  true}`` with no ``present`` says the annotator looked and cannot tell. It is kept apart
  (:attr:`Answer.uncertain`) and stored as given; what it counts as is decided when consolidating,
  by the schema's ``uncertain_policy`` (:data:`UNCERTAIN_POLICIES`, applied only by
  :mod:`labeling.consolidation.uncertain`): by default *no vote* (the label not answered by that
  worker; a label nobody answered decides as :mod:`labeling.consolidation.consistency` says).
  ``uncertain`` is a JSON boolean; ``true`` together with ``present`` is refused (one choice per
  label). Whether a schema offers it is the caller's check (the portal's; GT's worker template offers it
  only when the task's manifest line carries the schema's ``uncertain_policy``, :mod:`labeling.gt.prelabel`).
* ``rois``: optional list of at most :data:`MAX_ROIS_PER_ANSWER`; each entry a mapping with
  ``label`` (a schema label name), ``shape`` (a name of the shape registry,
  :mod:`labeling.contracts.shapes`, which fixes the point counts), ``points`` (``[x, y]`` pairs of
  finite numbers, booleans rejected) and an optional ``confidence`` (0..1). Other keys are ignored.
* ROIs of **series and multi-frame tasks** (issue 14; ``manifest --level series``) also say where
  they were drawn: ``instance`` (the Orthanc instance ID of the slice, a non-empty string) and
  ``frame`` (0-based frame number in that instance, an integer >= 0; default 0 when ``instance`` is
  given). Both absent: the ROI is on the task's one image (``image.frame``), as before. ``frame``
  without ``instance`` is refused (a frame of which instance?); with a recorded geometry the frame
  must be below its ``frames``. Checked by :func:`parse_roi_reference`. The answer's ``labels`` are then series-level labels (same shape).
* ``image``: optional mapping; ``rows`` and ``columns`` positive integers, ``frame`` a non-negative
  integer (default 0).
* **Inside the image**: when the size is known (the recorded geometry given to :func:`parse_answer`,
  else the answer's own ``image.rows``/``image.columns``), every point lies within
  ``x in [0, columns]``, ``y in [0, rows]`` (image pixels, PS3.3 C.18.6.1.1: the top-left corner of
  the top-left pixel is 0,0, so the far edges are ``columns`` and ``rows``). With a recorded
  geometry the answer's size must equal it and its frame lie within its frames.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Optional

import numpy as np

from labeling.contracts.errors import ContractError
from labeling.contracts.geometry import AnswerImage, ImageGeometry
from labeling.contracts.shapes import MAX_ROIS_PER_ANSWER, SHAPE_REGISTRY, SHAPES

UNCERTAIN_POLICIES: Final = ("ignore", "absent", "present")
"""What an "uncertain" answer counts as in consolidation (a schema's ``uncertain_policy``): no vote,
an absent vote, a present vote: the U-Ignore, U-Zeros and U-Ones policies of CheXpert (Irvin et al.,
"CheXpert: A Large Chest Radiograph Dataset with Uncertainty Labels and Expert Comparison", AAAI 2019)."""
DEFAULT_UNCERTAIN_POLICY: Final = "ignore"


def check_uncertain_policy(policy: Any) -> str:
    """``policy`` when it is one of :data:`UNCERTAIN_POLICIES`; ContractError naming the choices otherwise."""
    if not isinstance(policy, str) or policy not in UNCERTAIN_POLICIES:
        raise ContractError("uncertain_policy", f"{policy!r} is not one of {', '.join(map(repr, UNCERTAIN_POLICIES))}")
    return policy


_NUMBER_TYPES: Final = (int, float)


@dataclass(frozen=True)
class LabelVerdict:
    """One image-level answer: label ``name`` is ``present`` or not, with an optional confidence."""

    name: str
    present: bool
    confidence: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "present": self.present}
        if self.confidence is not None:
            out["confidence"] = self.confidence
        return out


@dataclass(frozen=True)
class Roi:
    """A validated ROI: ``points`` is a float array of shape (n, 2) in image pixels (x, y)."""

    label: str
    shape: str
    points: Any  # numpy array (n, 2); typed Any to keep numpy out of the signature
    confidence: Optional[float] = field(default=None, compare=False)
    instance: Optional[str] = None  # series/multi-frame tasks: Orthanc instance ID of the slice
    frame: Optional[int] = None     # 0-based frame in ``instance``
    bbox: tuple[float, float, float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lo, hi = self.points.min(axis=0), self.points.max(axis=0)
        object.__setattr__(self, "bbox", (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])))

    def box(self) -> tuple[float, float, float, float]:
        """Axis-aligned bounding box (xmin, ymin, xmax, ymax)."""
        return self.bbox

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "shape": self.shape,
                               "points": [[float(x), float(y)] for x, y in self.points]}
        if self.confidence is not None:
            out["confidence"] = self.confidence
        if self.instance is not None:
            out.update(instance=self.instance, frame=self.frame)
        return out


@dataclass(frozen=True)
class Answer:
    """A validated answer: ``labels`` maps label name -> present (input order), ``rois`` in input
    order, ``image`` when the answer says which image it saw; per-label confidences apart."""

    labels: dict[str, bool]
    rois: tuple[Roi, ...]
    image: Optional[AnswerImage] = None
    label_confidence: dict[str, float] = field(default_factory=dict)
    uncertain: tuple[str, ...] = ()  # labels the annotator marked uncertain: no vote (module rules)

    @property
    def verdicts(self) -> tuple[LabelVerdict, ...]:
        return tuple(LabelVerdict(name, present, self.label_confidence.get(name))
                     for name, present in self.labels.items())

    def to_dict(self, order: Optional[Sequence[str]] = None) -> dict[str, Any]:
        """The label shape; ``order`` (the schema's names) sorts the labels, else input order
        (uncertain entries after the verdicts)."""
        entries = [v.to_dict() for v in self.verdicts] + [{"name": n, "uncertain": True} for n in self.uncertain]
        if order is not None:
            rank = {name: i for i, name in enumerate(order)}
            entries.sort(key=lambda e: rank.get(e["name"], len(rank)))
        out: dict[str, Any] = {"labels": entries, "rois": [r.to_dict() for r in self.rois]}
        if self.image is not None:
            out["image"] = self.image.to_dict()
        return out


def unwrap_answer(content: Any) -> Mapping[str, Any]:
    """The answer mapping inside ``content``: a mapping, its JSON text, or ``{"annotation": <either>}``."""
    if type(content) is dict and ("labels" in content or "rois" in content):
        return content
    value = content
    for _ in range(3):  # JSON text -> {"annotation": JSON text} -> answer mapping
        if isinstance(value, (str, bytes, bytearray)):
            try:
                value = json.loads(value)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ContractError("content", f"not valid JSON ({exc})") from None
            continue
        if _is_map(value) and "annotation" in value and not ("labels" in value or "rois" in value):
            value = value["annotation"]
            continue
        break
    if not _is_map(value):
        raise ContractError("content", f"expected an object with labels/rois/image, got {type(value).__name__}")
    return value


def names_used(data: Mapping[str, Any]) -> list[str]:
    """The label names an answer mapping itself uses (labels' ``name``, ROIs' ``label``), first-seen order;
    what to validate against when no schema is at hand (SR, an output line without ``labels``)."""
    names: dict[str, None] = {}
    for key, field_name in (("labels", "name"), ("rois", "label")):
        entries = data.get(key)
        if isinstance(entries, list):
            for entry in entries:
                if isinstance(entry, Mapping) and isinstance(entry.get(field_name), str):
                    names.setdefault(entry[field_name], None)
    return list(names)


def parse_confidence(value: Any, field_name: str) -> Optional[float]:
    """None, or a finite number within 0..1 as a float; ContractError otherwise."""
    if value is None:
        return None
    # the range test alone: NaN fails it, and an int too large for a float is compared exactly
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ContractError(field_name, f"{value!r} is not a number within 0..1")
    return float(value)


def parse_answer(content: Any, label_names: Sequence[str], *, label_set: Optional[frozenset[str]] = None,
                 geometry: Optional[ImageGeometry] = None) -> Answer:
    """Validate an answer (any form :func:`unwrap_answer` takes) against the schema's label names and,
    when given, the image's recorded ``geometry``; raises :class:`ContractError` (see the module rules)."""
    data = unwrap_answer(content)
    names = label_set if label_set is not None else frozenset(label_names)

    def unknown(field_name: str, name: Any) -> ContractError:
        hint = ""
        if isinstance(name, str):
            folded = [n for n in label_names if n.casefold() == name.casefold()]
            if folded:
                hint = f" (did you mean {folded[0]!r}? names match exactly)"
        return ContractError(field_name, f"unknown label {name!r}{hint}; schema labels: {list(label_names)}")

    labels: dict[str, bool] = {}
    uncertain: list[str] = []
    label_confidence: dict[str, float] = {}
    raw_labels = data.get("labels")
    if raw_labels is not None:
        if not _is_list(raw_labels):
            raise ContractError("labels", f"expected a list, got {type(raw_labels).__name__}")
        for i, entry in enumerate(raw_labels):
            if not _is_map(entry):
                raise ContractError(f"labels[{i}]", f"expected an object, got {type(entry).__name__}")
            name = entry.get("name")
            if type(name) is not str or name not in names:
                raise unknown(f"labels[{i}].name", name)
            if name in labels or name in uncertain:
                raise ContractError(f"labels[{i}].name", f"label {name!r} answered twice")
            unsure = entry.get("uncertain", False)
            if unsure is not True and unsure is not False:
                raise ContractError(f"labels[{i}].uncertain", f"expected true or false, got {unsure!r}")
            if unsure:
                if "present" in entry:
                    raise ContractError(f"labels[{i}]", f"label {name!r} is both uncertain and present="
                                        f"{entry['present']!r}; give one choice")
                uncertain.append(name)
                continue
            present = entry.get("present")
            if present is not True and present is not False:
                raise ContractError(f"labels[{i}].present", f"expected true or false, got {present!r}")
            labels[name] = present
            confidence = entry.get("confidence")
            if confidence is not None:
                label_confidence[name] = parse_confidence(confidence, f"labels[{i}].confidence")

    image = AnswerImage.parse(data.get("image"))
    if geometry is not None:
        (image or AnswerImage()).check_against(geometry)
        bounds: Optional[tuple[int, int]] = (geometry.columns, geometry.rows)
    elif image is not None and image.rows is not None and image.columns is not None:
        bounds = (image.columns, image.rows)
    else:
        bounds = None

    rois: list[Roi] = []
    raw_rois = data.get("rois")
    if raw_rois is not None:
        if not _is_list(raw_rois):
            raise ContractError("rois", f"expected a list, got {type(raw_rois).__name__}")
        if len(raw_rois) > MAX_ROIS_PER_ANSWER:
            raise ContractError("rois", f"{len(raw_rois)} ROIs; at most {MAX_ROIS_PER_ANSWER} per answer")
        for i, entry in enumerate(raw_rois):
            rois.append(_parse_roi(entry, i, names, unknown, bounds, geometry.frames if geometry else None))
    return Answer(labels, tuple(rois), image, label_confidence, tuple(uncertain))


def _parse_roi(entry: Any, i: int, names: frozenset[str], unknown: Any,
               bounds: Optional[tuple[int, int]], frames: Optional[int] = None) -> Roi:
    if not _is_map(entry):
        raise ContractError(f"rois[{i}]", f"expected an object, got {type(entry).__name__}")
    label = entry.get("label")
    if type(label) is not str or label not in names:
        raise unknown(f"rois[{i}].label", label)
    shape = entry.get("shape")
    if type(shape) is not str or shape not in SHAPE_REGISTRY:
        raise ContractError(f"rois[{i}].shape", f"unknown shape {shape!r}; expected one of {list(SHAPES)}")
    points = parse_points(entry.get("points"), shape, f"rois[{i}].points")
    confidence = entry.get("confidence")
    if confidence is not None:
        confidence = parse_confidence(confidence, f"rois[{i}].confidence")
    instance, frame = parse_roi_reference(entry, i)
    if frame is not None and frames is not None and frame >= frames:
        raise ContractError(f"rois[{i}].frame", f"frame {frame} is outside the task's {frames} frame(s) (0-based)")
    roi = Roi(label, shape, points, confidence, instance, frame)
    if bounds is not None:
        columns, rows = bounds
        x0, y0, x1, y1 = roi.bbox
        if x0 < 0 or y0 < 0 or x1 > columns or y1 > rows:
            k = next(k for k, (x, y) in enumerate(points) if not (0 <= x <= columns and 0 <= y <= rows))
            raise ContractError(f"rois[{i}].points", f"point {k} ({points[k][0]:g}, {points[k][1]:g}) lies "
                                f"outside the {columns}x{rows} image (x in [0, {columns}], y in [0, {rows}])")
    return roi


def parse_roi_reference(entry: Mapping[str, Any], i: int) -> tuple[Optional[str], Optional[int]]:
    """``(instance, frame)`` of ROI ``i`` (see the module rules); ``(None, None)`` for an image task."""
    instance, frame = entry.get("instance"), entry.get("frame")
    if instance is None and frame is None:
        return None, None
    if instance is None:
        raise ContractError(f"rois[{i}].frame",
                            f"frame {frame!r} given without instance (the Orthanc instance ID it belongs to)")
    if type(instance) is not str or not instance.strip():
        raise ContractError(f"rois[{i}].instance",
                            f"expected the Orthanc instance ID (a non-empty string), got {instance!r}")
    if frame is None:
        return instance, 0
    if type(frame) is not int or frame < 0:
        raise ContractError(f"rois[{i}].frame", f"expected a 0-based frame number (an integer >= 0), got {frame!r}")
    return instance, frame


def parse_points(raw: Any, shape: str, field_name: str) -> Any:
    """``[[x, y], ...]`` as a float array (n, 2), checked against the shape's point counts."""
    if not _is_list(raw):
        raise ContractError(field_name, "expected a list of [x, y] pairs")
    problem = SHAPE_REGISTRY[shape].count_problem(len(raw))
    if problem:
        raise ContractError(field_name, problem)
    # fast path: plain lists of int/float pairs (bool is not int here: type() is exact)
    if all(type(pt) in (list, tuple) and len(pt) == 2 and type(pt[0]) in _NUMBER_TYPES
           and type(pt[1]) in _NUMBER_TYPES for pt in raw):
        try:
            out = np.array(raw, dtype=float)
        except OverflowError:  # an int beyond float range: the loop below names the point
            out = None
        if out is not None and np.isfinite(out).all():
            return out
    out = np.empty((len(raw), 2), dtype=float)
    for i, pt in enumerate(raw):
        if not isinstance(pt, Sequence) or isinstance(pt, (str, bytes)) or len(pt) != 2:
            raise ContractError(field_name, f"point {i} is not an [x, y] pair: {pt!r}")
        x, y = _number(pt[0]), _number(pt[1])
        if x is None or y is None:
            raise ContractError(field_name, f"point {i} has a non-numeric or non-finite coordinate: {pt!r}")
        out[i] = (x, y)
    return out


def _is_map(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _is_list(value: Any) -> bool:
    t = type(value)
    return t is list or t is tuple or (isinstance(value, Sequence) and not isinstance(value, (str, bytes)))


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        out = float(value)
    except OverflowError:
        return None
    return out if math.isfinite(out) else None
