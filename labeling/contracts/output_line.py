"""One output-manifest line: Ground Truth's output format, parsed and serialised once.

An output-manifest line (AWS docs, "Output data": custom labeling workflow output; both labeling
backends write it, ``docs/architecture.md`` "The label shape") is the input manifest line plus two
keys::

    "<attr>":          the consolidated content {"labels": [...], "rois": [...], "image": {...},
                       "annotators": K, "agreement": {...}}  (the post-label Lambda's answer,
                       labeling/gt/postlabel.py, unwrapped by GT from consolidatedAnnotation.content)
    "<attr>-metadata": {"type", "job-name" | "job_name", "human-annotated", "creation-date",
                        "confidence"?, ...}

Reading rules for a line (the file-level rules are :mod:`labeling.gt.output_manifest`'s)
=====================================================================================
* **Label attribute**: given, or inferred when a line has exactly one ``<attr>`` with an
  ``<attr>-metadata`` object beside it (a failed line has only the metadata; its prefix counts).
  Several candidates, or none, is an error asking for ``label_attribute``.
* **Metadata**: parsed by :func:`labeling.gt.contracts.parse_output_manifest_metadata` (both
  ``job-name``/``job_name`` spellings, ISO 8601 ``creation-date`` with or without an offset,
  ``confidence`` within 0..1).
* **Failed objects**: GT writes a line for an object it could not label, with ``failure-reason``
  in its metadata and no ``<attr>``: :func:`parse_output_line` returns a :class:`FailedLine`.
* **Content**: an answer of the label contract (:func:`labeling.contracts.answer.parse_answer`:
  label names, ``present`` booleans, confidences within 0..1, ROI shapes and point counts, finite
  coordinates inside the image, image geometry), against the line's ``labels`` (the schema's label
  names) when the line has them, else against the names the content itself uses, and against the
  line's recorded ``rows``/``columns``/``frames`` when it has them. The content must
  carry ``labels`` or ``rois``; ``annotators`` (a count) and ``agreement`` (an object) are optional.
* **Source**: ``source`` (an Orthanc instance ID, this project's manifests) or ``source-ref``
  (an ``s3://`` URI, GT's own convention); at least one.

Every problem raises :class:`OutputManifestError` whose message starts with ``where`` (the file
reader passes ``<file>:<line>``) and names the key.

Writing: :func:`output_line` builds one line (input line + content + metadata, the metadata spelled
the way GT writes it: ``job-name``, ``human-annotated: "yes"|"no"``, ``creation-date``); the metadata
``confidence`` is the mean of the per-label confidences when the content carries them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional, Union

from labeling.contracts.answer import names_used, parse_answer
from labeling.contracts.errors import ContractError
from labeling.contracts.manifest_line import recorded_geometry
from labeling.gt.contracts import OutputMetadata, parse_output_manifest_metadata

METADATA_SUFFIX = "-metadata"
OUTPUT_TYPE = "groundtruth/custom"
"""``<attr>-metadata.type`` GT writes for a custom workflow; the portal writes the same."""


class OutputManifestError(ValueError):
    """An output manifest line is invalid; the message starts ``<file>:<line>:``."""


@dataclass(frozen=True)
class OutputRecord:
    """One labelled image of an output manifest.

    ``labels`` maps label name -> present; ``label_confidence`` holds the per-label confidences
    the content carries; ``rois`` are the content's ROI dicts (``label``, ``shape``, ``points`` as
    float pairs, ``confidence`` when given); ``image`` is ``{rows, columns, frame}`` or ``{}``;
    ``confidence`` is the metadata's. ``line`` is the whole JSON line, unchanged.
    """

    source: Optional[str]
    source_ref: Optional[str]
    line: dict[str, Any]
    labels: dict[str, bool]
    label_confidence: dict[str, float]
    rois: list[dict[str, Any]]
    image: dict[str, int]
    confidence: Optional[float]
    label_attribute: str = ""
    line_number: int = 0
    metadata: Optional[OutputMetadata] = None
    annotators: Optional[int] = None
    agreement: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``source`` or, failing that, ``source-ref``: what names the image."""
        return self.source if self.source is not None else str(self.source_ref)

    @property
    def job_name(self) -> Optional[str]:
        return self.metadata.job_name if self.metadata else None

    @property
    def human_annotated(self) -> Optional[bool]:
        return self.metadata.human_annotated if self.metadata else None

    @property
    def content(self) -> dict[str, Any]:
        """The ``<attr>`` content as written in the line."""
        return self.line[self.label_attribute]

    def answer(self) -> dict[str, Any]:
        """The content in the label shape (labels with confidence, rois, image), for SR / the viewer."""
        labels = []
        for name, present in self.labels.items():
            entry: dict[str, Any] = {"name": name, "present": present}
            if name in self.label_confidence:
                entry["confidence"] = self.label_confidence[name]
            labels.append(entry)
        return {"labels": labels, "rois": [dict(r) for r in self.rois], "image": dict(self.image)}


@dataclass(frozen=True)
class FailedLine:
    """A line GT wrote for an object it could not label (``failure-reason`` in the metadata)."""

    line_number: int
    source: Optional[str]
    source_ref: Optional[str]
    reason: str


def infer_label_attribute(line: Mapping[str, Any]) -> Optional[str]:
    """The one ``<attr>`` of a line with ``<attr>-metadata`` beside it; None when not exactly one."""
    candidates = [key[: -len(METADATA_SUFFIX)] for key, value in line.items()
                  if key.endswith(METADATA_SUFFIX) and len(key) > len(METADATA_SUFFIX)
                  and isinstance(value, Mapping)]
    return candidates[0] if len(candidates) == 1 else None


def _source(line: Mapping[str, Any], where: str) -> tuple[Optional[str], Optional[str]]:
    source, ref = line.get("source"), line.get("source-ref")
    if source is None and ref is None:
        raise OutputManifestError(f"{where}: needs 'source' (an Orthanc instance id) or 'source-ref' "
                                  f"(an s3:// URI); got keys {sorted(line)}")
    if source is not None and (not isinstance(source, str) or not source):
        raise OutputManifestError(f"{where}: source: {source!r} is not a non-empty string")
    if ref is not None and (not isinstance(ref, str) or not ref.startswith("s3://")):
        raise OutputManifestError(f"{where}: source-ref: {ref!r} is not an s3:// URI")
    return source, ref


def parse_output_line(line: Any, *, label_attribute: Optional[str] = None, where: str = "<line>",
                      line_number: int = 0) -> Union[OutputRecord, FailedLine]:
    """One parsed output-manifest line (a JSON object or its text); see the module rules."""
    if isinstance(line, (str, bytes, bytearray)):
        try:
            line = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            raise OutputManifestError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(line, dict):
        raise OutputManifestError(f"{where}: expected a JSON object, got {type(line).__name__}")
    attr = label_attribute or infer_label_attribute(line)
    if attr is None:
        metas = sorted(k for k in line if k.endswith(METADATA_SUFFIX))
        raise OutputManifestError(
            f"{where}: cannot tell the label attribute: expected exactly one '<attr>-metadata' object, "
            f"found {metas or 'none'} (give label_attribute / --label-attribute)")
    source, ref = _source(line, where)
    meta_key = attr + METADATA_SUFFIX
    meta = line.get(meta_key)
    if isinstance(meta, Mapping) and ("failure-reason" in meta or "failure_reason" in meta):
        reason = meta.get("failure-reason", meta.get("failure_reason"))
        return FailedLine(line_number, source, ref, str(reason))
    if attr not in line:
        raise OutputManifestError(f"{where}: no {attr!r} key (the label attribute) and no failure-reason "
                                  f"in {meta_key!r}")
    if meta is None:
        raise OutputManifestError(f"{where}: no {meta_key!r} key beside {attr!r}")
    try:
        metadata = parse_output_manifest_metadata(meta)
    except ValueError as exc:
        raise OutputManifestError(f"{where}: {meta_key}: {exc}") from None

    content = line[attr]
    if not isinstance(content, Mapping):
        raise OutputManifestError(f"{where}: {attr}: expected an object with labels/rois/image, "
                                  f"got {type(content).__name__}")
    if "labels" not in content and "rois" not in content:
        raise OutputManifestError(f"{where}: {attr}: has neither 'labels' nor 'rois' "
                                  f"(keys {sorted(content)}); not the label shape")
    schema_names = line.get("labels")
    names = (list(schema_names) if isinstance(schema_names, list)
             and all(isinstance(n, str) for n in schema_names) and schema_names else names_used(content))
    try:
        geometry = recorded_geometry(line)
    except ContractError as exc:
        raise OutputManifestError(f"{where}: {exc}") from None
    try:
        parsed = parse_answer(content, names, geometry=geometry)
    except ContractError as exc:
        raise OutputManifestError(f"{where}: {attr}.{exc}") from None
    annotators = content.get("annotators")
    if annotators is not None and (isinstance(annotators, bool) or not isinstance(annotators, int)
                                   or annotators < 0):
        raise OutputManifestError(f"{where}: {attr}.annotators: {annotators!r} is not a count")
    agreement = content.get("agreement")
    if agreement is not None and not isinstance(agreement, Mapping):
        raise OutputManifestError(f"{where}: {attr}.agreement: expected an object, got "
                                  f"{type(agreement).__name__}")
    return OutputRecord(
        source=source, source_ref=ref, line=line, labels=dict(parsed.labels),
        label_confidence=dict(parsed.label_confidence), rois=[roi.to_dict() for roi in parsed.rois],
        image=parsed.image.to_dict() if parsed.image is not None else {},
        confidence=metadata.confidence, label_attribute=attr, line_number=line_number,
        metadata=metadata, annotators=annotators, agreement=dict(agreement or {}))


# ------------------------------------------------------------------------------------- writing

def _mean_confidence(content: Mapping[str, Any]) -> Optional[float]:
    values = [e["confidence"] for e in content.get("labels") or ()
              if isinstance(e, Mapping) and isinstance(e.get("confidence"), (int, float))
              and not isinstance(e.get("confidence"), bool)]
    return round(sum(values) / len(values), 4) if values else None


def output_line(input_line: Mapping[str, Any], attr: str, consolidated: Mapping[str, Any], job_name: str,
                human_annotated: bool = True, created: Optional[datetime] = None) -> dict[str, Any]:
    """One output-manifest line: the input line + ``attr`` content + ``attr-metadata`` (GT's spelling)."""
    if not isinstance(attr, str) or not attr or attr.endswith(METADATA_SUFFIX):
        raise ValueError(f"label attribute {attr!r} must be a non-empty name not ending in '-metadata'")
    if attr in input_line or attr + METADATA_SUFFIX in input_line:
        raise ValueError(f"label attribute {attr!r} is already a key of the input line")
    if not isinstance(job_name, str) or not job_name:
        raise ValueError(f"job name {job_name!r} is not a non-empty string")
    when = (created or datetime.now(timezone.utc)).astimezone(timezone.utc)
    metadata: dict[str, Any] = {
        "type": OUTPUT_TYPE,
        "job-name": job_name,
        "human-annotated": "yes" if human_annotated else "no",
        "creation-date": when.strftime("%Y-%m-%dT%H:%M:%S.%f%z"),
    }
    confidence = _mean_confidence(consolidated)
    if confidence is not None:
        metadata["confidence"] = confidence
    line = {**dict(input_line), attr: json.loads(json.dumps(consolidated, allow_nan=False)),
            attr + METADATA_SUFFIX: metadata}
    return line
