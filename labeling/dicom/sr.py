"""Annotations as DICOM Structured Reports: TID 1500 Measurement Report, built and read with highdicom.

Both labeling backends write consolidated annotations back into Orthanc as DICOM SR so that
OHIF / 3D Slicer users see them next to the image; training writes model predictions the same way
(the model as a device observer). :func:`build_annotation_sr` turns one answer in the label shape
(docs/architecture.md, "The label shape": consolidated or one annotator's) into a **Comprehensive 3D SR**
instance (PS3.3 A.35.13; highdicom's ``Comprehensive3DSR``, which also carries 2D ``SCOORD``
content), :func:`store_sr` posts it to Orthanc, :func:`read_annotation_sr` turns an SR back into the
label shape.

Encoding (PS3.16 TID 1500 "Measurement Report"; one place documents it, here)
==============================================================================
* **Document**: title ``(126000, DCM, "Imaging Measurement Report")``, procedure reported
  ``(363679005, SCT, "Imaging procedure")``. The SR joins the source image's study (patient and
  study attributes copied from the source by highdicom) in a new series; the source instance is
  listed in the Current Requested Procedure Evidence Sequence.
* **Observer context** (TID 1001/1002, at the root, one entry per observer, in the order given):
  a *person* (TID 1003: Person Observer Name = the annotator's or reviewer's name, Login Name =
  their worker id / user name when given) or a *device* (TID 1004: Device Observer UID — a UID
  derived deterministically from the model name and version, so one model version is always the
  same device —, Device Observer Name = the model name, Model Name = ``"<name> <version>"``).
* **Label codes**: a schema label is the coded concept ``(<code>, 99DA, <label name>)``. ``99DA``
  is a private coding scheme designator (PS3.16 8.2: local designators start with ``99``); the code
  value is the name itself when it is 1–16 characters of ``[A-Za-z0-9._-]`` (SH), else ``L`` + 15
  hex digits of its SHA-256. The code meaning is the name with ``\\`` (not allowed in LO) replaced
  by ``/``; the exact name travels in the group's Tracking Identifier (TEXT, UT), which is what
  :func:`read_annotation_sr` reads.
* **Image-level findings** (the label shape's ``labels``): one TID 1501 "Measurement and
  Qualitative Evaluation Group" per label, Tracking Identifier = the label name (fresh Tracking
  UID), Finding = the label code, referencing the source image (Source SOP Class/Instance UID and,
  for multi-frame images, the frame), with one *qualitative evaluation* (TID 1501 row 12):
  concept = the label code, value ``(52101004, SCT, "Present")`` or ``(272519000, SCT, "Absent")``.
  A label answered *uncertain* (``{"name", "uncertain": true}``, :mod:`labeling.contracts.answer`) is
  not stated: it gets no group, as a label the answer does not list (consolidated content always
  says present or absent; a single annotator's or an edited answer may carry it). An answer with
  nothing else to report is refused like an empty one.
* **ROIs** (the label shape's ``rois``): one TID 1410 "Planar ROI Measurements and Qualitative
  Evaluations" group per ROI, Tracking Identifier = the ROI's label, Finding = the label code,
  Image Region = an ``SCOORD`` on the source image (and frame), graphic type by PS3.3 C.18.6.1.2:

  ============  ========================================================================
  rectangle     ``POLYLINE``, closed: the 4 corners then the first again (5 pairs), starting at
                the label shape's first corner and visiting its opposite corner third
  ellipse       ``ELLIPSE``: 4 pairs, the major axis' end points then the minor axis' (the
                box's horizontal and vertical diameters through its centre, the longer first;
                each pair in the direction of the label shape's corners)
  polygon       ``POLYLINE``, closed: the vertices, then the first again (2D SCOORD has no
                ``POLYGON``; that graphic type exists only in SCOORD3D)
  point         ``POINT``: one pair
  ============  ========================================================================

  Coordinates are copied unchanged: the label shape's image pixels (x = column, y = row, origin at
  the top-left corner of the top-left pixel, pixel centres at +0.5) are exactly SCOORD's
  (column, row) convention (PS3.3 C.18.6.1.1: the TLHC of the TLHC pixel is 0.0\\0.0).
* **Series and multi-frame tasks** (:func:`build_series_sr`): each ROI's SCOORD references the
  slice it was drawn on (the answer's ``rois[i].instance``, an Orthanc instance ID mapped to its
  SOP Class/Instance UID) and, for a multi-frame instance, Referenced Frame Number =
  ``rois[i].frame`` + 1; the answer's ``labels`` are series-level findings, written as the same
  TID 1501 qualitative evaluations without a source image; every given instance is evidence.
* **Confidence** (optional, per label and per ROI): a NUM measurement in the group,
  ``(111012, DCM, "Certainty of Finding")`` in percent (``%``, 0–100), the concept and unit the
  CAD templates (TID 4000 family) use for a finding's certainty. Read back divided by 100.
* The label shape's ``image.rows``/``image.columns`` are the source image's Rows/Columns (not
  repeated in the SR); ``image.frame`` (0-based) is the referenced frame number − 1. Consolidation
  statistics (``annotators``, ``agreement``) are not encoded: they describe the labeling job, and
  stay in the output manifest.

Reading (:func:`read_annotation_sr`) accepts what this module writes and other TID 1500 SRs on the
same lines: label names from the Tracking Identifier (else the Finding's code meaning); a closed
``POLYLINE`` of 4 axis-aligned corners is a rectangle (so a 4-vertex polygon drawn exactly as an
axis-aligned box reads back as that rectangle: the same region), any other closed ``POLYLINE`` a
polygon; open polylines and ``MULTIPOINT`` are skipped with a note; ``CIRCLE`` and rotated ellipses
become their bounding box. Person names are written with a trailing ``^`` when they have no
component separator (PS3.5 6.2.1.2: one family-name component, disambiguated) and read back
without it.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import highdicom as hd
import numpy as np
import pydicom
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from labeling.contracts.answer import Answer, names_used, parse_answer, unwrap_answer
from labeling.contracts.errors import ContractError
from labeling.contracts.geometry import ImageGeometry
from labeling.contracts.shapes import SHAPE_REGISTRY

CODING_SCHEME = "99DA"
"""Private coding scheme designator of schema labels (PS3.16 8.2: local designators start with 99)."""

PRESENT = codes.SCT.Present     # (52101004, SCT, "Present")
ABSENT = codes.SCT.Absent       # (272519000, SCT, "Absent")
CERTAINTY = codes.DCM.CertaintyOfFinding  # (111012, DCM, "Certainty of Finding")
PERCENT = codes.UCUM.Percent
PROCEDURE = hd.sr.CodedConcept("363679005", "SCT", "Imaging procedure")
DEVICE_UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's prefix; deterministic per model+version
DEFAULT_SERIES_NUMBER = 9901
DEFAULT_MANUFACTURER = "dicom-annotate"

_SAFE_CODE = re.compile(r"[A-Za-z0-9._-]{1,16}")


class SRError(ValueError):
    """An answer or a source that cannot become (or come back from) an SR; the message says which part."""


@dataclass(frozen=True)
class Observer:
    """Who made the observations: a person (annotator, reviewer) or a device (a model)."""

    kind: str                      # "person" | "device"
    name: str                      # person's name, or the model's name
    login: Optional[str] = None    # person: worker id / user name
    version: Optional[str] = None  # device: model version
    manufacturer: Optional[str] = None

    @classmethod
    def person(cls, name: str, login: Optional[str] = None) -> "Observer":
        return cls("person", name, login=login)

    @classmethod
    def device(cls, name: str, version: Optional[str] = None, manufacturer: Optional[str] = None) -> "Observer":
        return cls("device", name, version=version, manufacturer=manufacturer)

    @property
    def device_uid(self) -> str:
        """Deterministic Device Observer UID: one per model name + version."""
        return generate_uid(prefix=DEVICE_UID_PREFIX, entropy_srcs=["device", self.name, self.version or ""])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name}
        for key in ("login", "version", "manufacturer"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out

    def context(self) -> hd.sr.ObserverContext:
        if self.kind == "person":
            return hd.sr.ObserverContext(
                observer_type=codes.DCM.Person,
                observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                    name=self.name if "^" in self.name else self.name + "^", login_name=self.login))
        if self.kind == "device":
            model = f"{self.name} {self.version}" if self.version else self.name
            return hd.sr.ObserverContext(
                observer_type=codes.DCM.Device,
                observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                    uid=self.device_uid, name=self.name, model_name=model,
                    manufacturer_name=self.manufacturer))
        raise SRError(f"observer {self.name!r}: kind {self.kind!r} is not 'person' or 'device'")


def label_code(name: str) -> hd.sr.CodedConcept:
    """The coded concept of a schema label (see the module docstring)."""
    if not isinstance(name, str) or not name:
        raise SRError(f"label name {name!r} is not a non-empty string")
    value = name if _SAFE_CODE.fullmatch(name) else "L" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:15]
    return hd.sr.CodedConcept(value, CODING_SCHEME, name.replace("\\", "/"))


# -------------------------------------------------------------------------------------- geometry

def roi_graphic(shape: str, points: Sequence[Sequence[float]]) -> tuple[str, np.ndarray]:
    """``(graphic type, (n, 2) column/row array)`` of one ROI of the label shape; the graphic type is
    the shape registry's (:data:`labeling.contracts.shapes.SHAPE_REGISTRY`), the points are made here."""
    spec = SHAPE_REGISTRY.get(shape)
    if spec is None:
        raise SRError(f"unknown ROI shape {shape!r}")
    p = np.asarray(points, dtype=float)
    if shape == "rectangle":
        (x0, y0), (x1, y1) = p
        graphic = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
    elif shape == "ellipse":
        (x0, y0), (x1, y1) = p
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        horizontal = np.array([[x0, cy], [x1, cy]])
        vertical = np.array([[cx, y0], [cx, y1]])
        graphic = np.vstack((horizontal, vertical) if abs(x1 - x0) >= abs(y1 - y0) else (vertical, horizontal))
    elif shape == "polygon":
        graphic = np.vstack([p, p[:1]])
    elif shape == "point":
        graphic = p[:1]
    else:
        raise SRError(f"ROI shape {shape!r} has no SR graphic yet (labeling/dicom/sr.py: roi_graphic)")
    return spec.sr_graphic_type, graphic


def _float32_text(value: float) -> float:
    """Graphic Data is FL (float32, PS3.3 C.18.6.1.1): the shortest decimal that is the same float32,
    so 12.34 written comes back as 12.34, not 12.340000152587891."""
    return float(repr(np.float32(value)).removeprefix("np.float32(").removesuffix(")"))


def _floats(array: np.ndarray) -> list[list[float]]:
    return [[_float32_text(x), _float32_text(y)] for x, y in np.asarray(array, dtype=float).reshape(-1, 2)]


def shape_from_graphic(graphic_type: str, data: np.ndarray) -> Optional[tuple[str, list[list[float]]]]:
    """The label shape's ``(shape, points)`` for an SCOORD, or None when it has no equivalent."""
    p = np.asarray(data, dtype=float).reshape(-1, 2)
    if graphic_type == "POINT":
        return "point", _floats(p[:1])
    if graphic_type == "POLYGON":  # SCOORD3D-style data written by others
        if len(p) > 1 and np.array_equal(p[0], p[-1]):
            p = p[:-1]
        return ("polygon", _floats(p)) if len(p) >= 3 else None
    if graphic_type == "POLYLINE":
        closed = len(p) == 5 and np.array_equal(p[0], p[-1])
        if closed:
            c = p[:4]
            xs, ys = c[:, 0], c[:, 1]
            axis_aligned = all((c[i][0] == c[(i + 1) % 4][0]) != (c[i][1] == c[(i + 1) % 4][1]) for i in range(4))
            if axis_aligned and len(set(xs)) == 2 and len(set(ys)) == 2:
                return "rectangle", _floats([c[0], c[2]])
        if len(p) >= 4 and np.array_equal(p[0], p[-1]):
            return "polygon", _floats(p[:-1])
        return None
    if graphic_type == "ELLIPSE" and len(p) == 4:
        a, b = p[:2], p[2:]
        centre = a.mean(axis=0)
        if np.allclose(a[:, 1], a[0, 1]) and np.allclose(b[:, 0], b[0, 0]):
            horizontal, vertical = a, b
        elif np.allclose(a[:, 0], a[0, 0]) and np.allclose(b[:, 1], b[0, 1]):
            horizontal, vertical = b, a
        else:  # rotated: its bounding box
            u, v = (a[1] - a[0]) / 2, (b[1] - b[0]) / 2
            half = np.sqrt(u ** 2 + v ** 2)
            return "ellipse", _floats([centre - half, centre + half])
        return "ellipse", _floats(np.array([[horizontal[0][0], vertical[0][1]],
                                            [horizontal[1][0], vertical[1][1]]]))
    if graphic_type == "CIRCLE" and len(p) == 2:
        r = float(np.hypot(*(p[1] - p[0])))
        return "ellipse", _floats([p[0] - r, p[0] + r])
    return None


# ---------------------------------------------------------------------------------------- build

# Patient/study attributes the SR copies from its source; all Type 2 in the SR IOD (PS3.3 C.7.1.1,
# C.7.2.1), so an empty value is valid where the source (e.g. a de-identified image) lacks them.
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                 "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _with_type2_attributes(source: pydicom.Dataset) -> pydicom.Dataset:
    """``source`` with the Type 2 attributes highdicom copies present (empty when missing); a copy."""
    missing = [key for key in _TYPE2_COPIED if key not in source]
    if not missing:
        return source
    copy = pydicom.Dataset()  # a new element dict sharing the elements: the caller's dataset is left alone
    for element in source:
        copy.add(element)
    if hasattr(source, "file_meta"):
        copy.file_meta = source.file_meta
    for key in missing:
        setattr(copy, key, "")
    return copy


def _check_answer(answer: Any, source: pydicom.Dataset) -> tuple[Answer, Mapping[str, Any]]:
    """Validate with the label contract (one set of shape rules), against the source's geometry:
    the answer's size must be the source's Rows/Columns, its frame one of its frames, its points inside."""
    frames = int(getattr(source, "NumberOfFrames", 1) or 1)
    rows, columns = getattr(source, "Rows", None), getattr(source, "Columns", None)
    geometry = ImageGeometry(int(rows), int(columns), frames) if rows and columns else None
    try:
        data = unwrap_answer(answer)
        parsed = parse_answer(data, names_used(data), geometry=geometry)
        if geometry is None and parsed.image is not None and parsed.image.frame >= frames:
            raise ContractError("image.frame", f"frame {parsed.image.frame} is outside the image's "
                                               f"{frames} frame(s) (0-based)")
    except ContractError as exc:
        raise SRError(f"answer: {exc}") from None
    return parsed, data


def _certainty(confidence: Any) -> list[hd.sr.Measurement]:
    if confidence is None:
        return []
    return [hd.sr.Measurement(name=CERTAINTY, value=round(float(confidence) * 100, 6), unit=PERCENT)]


def build_annotation_sr(source: pydicom.Dataset, answer: Mapping[str, Any], observers: Sequence[Observer], *,
                        series_number: int = DEFAULT_SERIES_NUMBER, instance_number: int = 1,
                        description: str = "Annotations", series_instance_uid: Optional[str] = None,
                        sop_instance_uid: Optional[str] = None,
                        manufacturer: str = DEFAULT_MANUFACTURER) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 Comprehensive 3D SR of ``answer`` on ``source`` (see the module docstring).

    ``source``: the annotated instance (pixel data not needed: read it with ``stop_before_pixels``).
    ``answer``: the label shape (a mapping, its JSON, or ``{"annotation": JSON}``). ``observers``:
    at least one. Raises :class:`SRError` naming the part that is wrong.
    """
    for key in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"):
        if not getattr(source, key, None):
            raise SRError(f"source dataset: no {key}")
    if not observers:
        raise SRError("observers: at least one person or device is needed (observer context)")
    parsed, data = _check_answer(answer, source)
    frames = int(getattr(source, "NumberOfFrames", 1) or 1)
    frame = parsed.image.frame if parsed.image is not None else 0
    placed = next((i for i, roi in enumerate(parsed.rois) if roi.instance is not None), None)
    if placed is not None:  # it would be written onto ``source`` whatever slice it names
        raise SRError(f"answer: rois[{placed}].instance: a series answer (ROIs on named slices); "
                      "write it with build_series_sr")
    image = (str(source.SOPClassUID), str(source.SOPInstanceUID), [frame + 1] if frames > 1 else None)
    return _document([source], data, parsed, observers, label_image=image, roi_images=[image] * len(parsed.rois),
                     series_number=series_number, instance_number=instance_number, description=description,
                     series_instance_uid=series_instance_uid, sop_instance_uid=sop_instance_uid,
                     manufacturer=manufacturer)


ImageRef = tuple[str, str, Optional[list[int]]]  # SOP Class UID, SOP Instance UID, frame numbers (1-based)


def _measurement_groups(data: Mapping[str, Any], parsed: Any, label_image: Optional[ImageRef],
                        roi_images: Sequence[ImageRef], algorithm: Optional[Any]) -> list[Any]:
    """One TID 1501 group per label (on ``label_image``, or none: series-level), then one TID 1410
    group per ROI on ``roi_images[i]`` (the module docstring's encoding)."""
    groups: list[Any] = []
    for entry in data.get("labels") or ():
        name = entry["name"]
        if name not in parsed.labels:  # answered "uncertain": not stated, so no finding (module docstring)
            continue
        code = label_code(name)
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=name),
            finding_type=code, algorithm_id=algorithm,
            source_images=[hd.sr.SourceImageForMeasurementGroup(*label_image)] if label_image else None,
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(
                name=code, value=PRESENT if parsed.labels[name] else ABSENT)],
            measurements=_certainty(entry.get("confidence")) or None))
    for entry, roi, (sop_class, sop_uid, frame_numbers) in zip(data.get("rois") or (), parsed.rois, roi_images):
        graphic_type, graphic = roi_graphic(roi.shape, roi.points)
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=roi.label),
            referenced_region=hd.sr.ImageRegion(
                graphic_type=graphic_type, graphic_data=graphic,
                source_image=hd.sr.SourceImageForRegion(sop_class, sop_uid, frame_numbers)),
            finding_type=label_code(roi.label), algorithm_id=algorithm,
            measurements=_certainty(entry.get("confidence")) or None))
    return groups


def _document(sources: Sequence[pydicom.Dataset], data: Mapping[str, Any], parsed: Any,
              observers: Sequence[Observer], *,
              label_image: Optional[ImageRef], roi_images: Sequence[ImageRef], series_number: int,
              instance_number: int, description: str, series_instance_uid: Optional[str],
              sop_instance_uid: Optional[str], manufacturer: str) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 document: label groups referencing ``label_image`` (none: a series-level
    finding), ROI ``i`` on ``roi_images[i]``; ``sources`` are the evidence."""
    context = hd.sr.ObservationContext()
    for observer in observers:
        context.extend(observer.context())
    device = next((o for o in observers if o.kind == "device"), None)
    algorithm = hd.sr.AlgorithmIdentification(device.name, device.version or "unversioned") if device else None

    groups = _measurement_groups(data, parsed, label_image, roi_images, algorithm)
    if not groups:
        raise SRError("answer: no labels and no rois; nothing to report")

    evidence = [_with_type2_attributes(source) for source in sources]
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=PROCEDURE,
                                     imaging_measurements=groups)
    try:
        sr = hd.sr.Comprehensive3DSR(
            evidence=evidence, content=report, series_instance_uid=series_instance_uid or generate_uid(),
            series_number=series_number, sop_instance_uid=sop_instance_uid or generate_uid(),
            instance_number=instance_number, manufacturer=manufacturer, is_complete=True,
            series_description=description)
    except (ValueError, TypeError, AttributeError) as exc:
        raise SRError(f"highdicom refused the SR: {exc}") from None
    # Names may be non-ASCII: declare UTF-8 (PS3.5 6.1.2.3, ISO_IR 192) for the SR's text values.
    sr.SpecificCharacterSet = "ISO_IR 192"
    return sr


def _series_bounds(sources: Mapping[str, pydicom.Dataset]) -> pydicom.Dataset:
    """Check that ``sources`` are usable instances of one study; return their common size (Rows,
    Columns, the largest NumberOfFrames) as the bounds of an answer's points, empty for a mixed-size
    series (not checked here)."""
    if not sources:
        raise SRError("sources: at least one instance of the series is needed")
    for instance_id, source in sources.items():
        for key in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"):
            if not getattr(source, key, None):
                raise SRError(f"sources[{instance_id!r}]: no {key}")
    studies = {str(source.StudyInstanceUID) for source in sources.values()}
    if len(studies) > 1:
        raise SRError(f"sources: {len(studies)} different studies; a series SR joins one study")
    sizes = {(getattr(source, "Rows", None), getattr(source, "Columns", None)) for source in sources.values()}
    bounds = pydicom.Dataset()
    if len(sizes) == 1 and None not in next(iter(sizes)):
        bounds.Rows, bounds.Columns = next(iter(sizes))
        bounds.NumberOfFrames = max(int(getattr(s, "NumberOfFrames", 1) or 1) for s in sources.values())
    return bounds


def _series_roi_images(rois: Sequence[Any], sources: Mapping[str, pydicom.Dataset]) -> list[ImageRef]:
    """The image each ROI is drawn on: its ``instance`` (or the only source) and, in a multi-frame
    instance, its 1-based frame number."""
    only = next(iter(sources)) if len(sources) == 1 else None
    images: list[ImageRef] = []
    for i, roi in enumerate(rois):
        instance_id = roi.instance or only
        if instance_id is None:
            raise SRError(f"answer: rois[{i}].instance: required in a series answer (which slice was it drawn on?)")
        source = sources.get(instance_id)
        if source is None:
            raise SRError(f"answer: rois[{i}].instance: {instance_id!r} is not one of the {len(sources)} sources given")
        frames = int(getattr(source, "NumberOfFrames", 1) or 1)
        frame = roi.frame or 0
        if frame >= frames:
            raise SRError(f"answer: rois[{i}].frame {frame} is outside instance {instance_id!r}'s "
                          f"{frames} frame(s) (0-based)")
        images.append((str(source.SOPClassUID), str(source.SOPInstanceUID), [frame + 1] if frames > 1 else None))
    return images


def build_series_sr(sources: Mapping[str, pydicom.Dataset], answer: Mapping[str, Any],
                    observers: Sequence[Observer], *, series_number: int = DEFAULT_SERIES_NUMBER,
                    instance_number: int = 1, description: str = "Annotations",
                    series_instance_uid: Optional[str] = None, sop_instance_uid: Optional[str] = None,
                    manufacturer: str = DEFAULT_MANUFACTURER) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 SR of a series or multi-frame task's answer (issue 14).

    ``sources``: Orthanc instance ID -> that instance's header (``stop_before_pixels``), for every
    instance the answer's ROIs name (``rois[i].instance``) — pass the whole series to list it all as
    evidence. Each ROI's SCOORD references its own slice (SOP Class/Instance UID) and, for a
    multi-frame instance, Referenced Frame Number = ``frame`` + 1 (PS3.3 C.18.6.1.1 / PS3.16 TID
    1410). The answer's ``labels`` are series-level findings: TID 1501 qualitative evaluations with
    no single source image (the evidence lists the series). All sources must share one study.
    """
    bounds = _series_bounds(sources)
    if not observers:
        raise SRError("observers: at least one person or device is needed (observer context)")
    parsed, data = _check_answer(answer, bounds)
    images = _series_roi_images(parsed.rois, sources)
    return _document(list(sources.values()), data, parsed, observers, label_image=None, roi_images=images,
                     series_number=series_number, instance_number=instance_number, description=description,
                     series_instance_uid=series_instance_uid, sop_instance_uid=sop_instance_uid,
                     manufacturer=manufacturer)


# ---------------------------------------------------------------------------------------- store

def sr_bytes(sr: pydicom.Dataset) -> bytes:
    """The SR as a DICOM Part-10 file."""
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def store_sr(client: Any, sr: pydicom.Dataset) -> str:
    """POST the SR to Orthanc (``/instances``, :meth:`labeling.orthanc.client.OrthancClient.upload`);
    returns its Orthanc instance ID (re-storing the same SOP Instance UID answers the same ID)."""
    return client.upload(sr_bytes(sr)).instance_id


# ----------------------------------------------------------------------------------------- read

def _group_label(group: Any) -> str:
    identifier = group.tracking_identifier
    if identifier:
        return str(identifier)
    if group.finding_type is not None:
        return str(group.finding_type.meaning)
    raise SRError(f"measurement group {group.tracking_uid}: no tracking identifier and no finding")


def _group_confidence(group: Any) -> Optional[float]:
    for measurement in group.get_measurements(name=CERTAINTY):
        value = float(measurement.value)
        unit = measurement.unit
        return round(value / 100 if unit is not None and unit.value == "%" else value, 6)
    return None


def _frame_numbers(numbers: Any) -> list[int]:
    """A Referenced Frame Number value (absent, one number or several; 1-based) as a list."""
    if numbers is None:
        return []
    return [int(n) for n in (numbers if isinstance(numbers, (list, tuple, MultiValue)) else [numbers])]


@dataclass
class _References:
    """The images an SR's groups reference (SOP Instance UID → SOP Class UID) and their 0-based frames."""

    images: dict[str, str]
    frames: set[int]

    def note(self, item: Any) -> None:
        """Record one Referenced SOP Sequence item (a Source image or an ROI's SELECTED FROM image)."""
        self.images[str(item.ReferencedSOPInstanceUID)] = str(item.ReferencedSOPClassUID)
        self.frames.update(n - 1 for n in _frame_numbers(getattr(item, "ReferencedFrameNumber", None)))


def _measurement_report(ds: pydicom.Dataset) -> hd.sr.MeasurementReport:
    try:
        sr = hd.sr.Comprehensive3DSR.from_dataset(ds, copy=True) if not isinstance(ds, hd.sr.Comprehensive3DSR) \
            else ds
        report = sr.content
        if not isinstance(report, hd.sr.MeasurementReport):
            report = hd.sr.MeasurementReport.from_sequence([sr])
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise SRError(f"not a TID 1500 measurement report: {exc}") from None
    return report


def _read_observers(report: hd.sr.MeasurementReport) -> list[dict[str, Any]]:
    """The observer contexts (TID 1002) as :meth:`Observer.to_dict` entries."""
    observers: list[dict[str, Any]] = []
    for ctx in report.get_observer_contexts():
        attrs = ctx.observer_identifying_attributes
        if ctx.observer_type == codes.DCM.Person:
            observers.append(Observer.person(str(attrs.name).rstrip("^"), login=attrs.login_name).to_dict())
        else:
            observers.append({"kind": "device", "name": attrs.name or attrs.uid, "uid": attrs.uid,
                              **({"model_name": attrs.model_name} if attrs.model_name else {}),
                              **({"manufacturer": attrs.manufacturer_name} if attrs.manufacturer_name else {})})
    return observers


def _with_confidence(entry: dict[str, Any], group: Any) -> dict[str, Any]:
    confidence = _group_confidence(group)
    if confidence is not None:
        entry["confidence"] = confidence
    return entry


def _read_labels(report: hd.sr.MeasurementReport, references: _References,
                 skipped: list[str]) -> list[dict[str, Any]]:
    """The image-level findings (TID 1501 groups with a Present/Absent evaluation)."""
    labels: list[dict[str, Any]] = []
    for group in report.get_image_measurement_groups():
        name = _group_label(group)
        for image in group.source_images or ():
            references.note(image.ReferencedSOPSequence[0])
        values = [e.value for e in group.get_qualitative_evaluations() if e.value in (PRESENT, ABSENT)]
        if not values:
            skipped.append(f"group {name!r}: no Present/Absent evaluation")
            continue
        labels.append(_with_confidence({"name": name, "present": values[0] == PRESENT}, group))
    return labels


def _read_rois(report: hd.sr.MeasurementReport, references: _References, skipped: list[str], *,
               roi_references: bool) -> list[dict[str, Any]]:
    """The ROIs (TID 1410 groups with a 2D image region) in the label shape."""
    rois: list[dict[str, Any]] = []
    for group in report.get_planar_roi_measurement_groups():
        name = _group_label(group)
        region = group.roi
        if region is None or not isinstance(region, hd.sr.ImageRegion):
            skipped.append(f"ROI group {name!r}: no 2D image region (segmentation or 3D region)")
            continue
        image = region.ContentSequence[0].ReferencedSOPSequence[0]  # the SELECTED FROM image item
        references.note(image)
        graphic_type = region.graphic_type.value
        converted = shape_from_graphic(graphic_type, region.value)
        if converted is None:
            skipped.append(f"ROI group {name!r}: {graphic_type} with {len(region.value)} points has no "
                           "label-shape equivalent")
            continue
        shape, points = converted
        roi: dict[str, Any] = {"label": name, "shape": shape, "points": points}
        if roi_references:
            numbers = _frame_numbers(getattr(image, "ReferencedFrameNumber", None))
            roi.update(sop_instance_uid=str(image.ReferencedSOPInstanceUID),
                       frame=numbers[0] - 1 if numbers else 0)
        rois.append(_with_confidence(roi, group))
    return rois


def read_annotation_sr(ds: pydicom.Dataset, source: Optional[pydicom.Dataset] = None, *,
                       roi_references: bool = False) -> dict[str, Any]:
    """An SR (TID 1500) back in the label shape, plus ``observers`` and ``references``.

    ``{"labels": [{name, present, confidence?}], "rois": [{label, shape, points, confidence?}],
    "image": {"frame", "rows"?, "columns"?}, "observers": [Observer.to_dict()],
    "references": [{"sop_class_uid", "sop_instance_uid"}], "skipped": [reasons]}``. Rows/columns
    come from ``source`` when it is given. ``roi_references``: each ROI also gets the
    ``sop_instance_uid`` and 0-based ``frame`` its SCOORD references (series SRs, :func:`build_series_sr`).
    """
    report = _measurement_report(ds)
    observers = _read_observers(report)
    references = _References(images={}, frames=set())
    skipped: list[str] = []
    labels = _read_labels(report, references, skipped)
    rois = _read_rois(report, references, skipped, roi_references=roi_references)
    image_info: dict[str, int] = {"frame": min(references.frames) if references.frames else 0}
    if source is not None:
        image_info = {"rows": int(source.Rows), "columns": int(source.Columns), **image_info}
    return {"labels": labels, "rois": rois, "image": image_info, "observers": observers,
            "references": [{"sop_class_uid": c, "sop_instance_uid": u} for u, c in references.images.items()],
            "skipped": skipped}
