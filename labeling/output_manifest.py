"""Output manifests: the one reader (and writer) of GT-format output manifests from either backend.

Both labeling backends — SageMaker Ground Truth's custom workflow and the portal — write the same
*output manifest* (ARCHITECTURE.md, "The label shape"): JSON Lines, one line per image, the input
manifest line plus two keys::

    "<attr>":          the consolidated content {"labels": [...], "rois": [...], "image": {...},
                       "annotators": K, "agreement": {...}}  (the post-label Lambda's answer,
                       labeling/gt_postlabel.py, unwrapped by GT from consolidatedAnnotation.content)
    "<attr>-metadata": {"type", "job-name" | "job_name", "human-annotated", "creation-date",
                        "confidence"?, ...}

Training, the portal's export check, the SR write-back and the notebook all read through
:func:`read_output_manifest`; the portal export writes through :func:`output_line` and
:func:`write_output_manifest`.

Reading rules (documented once, here)
=====================================
* **Label attribute**: given, or inferred when a line has exactly one ``<attr>`` with an
  ``<attr>-metadata`` object beside it (a failed line has only the metadata; its prefix counts).
  Several candidates, or none, is an error asking for ``label_attribute``. Every line of a file must
  use the same attribute.
* **Metadata**: parsed by :func:`labeling.gt_contracts.parse_output_manifest_metadata` (one parser:
  both ``job-name``/``job_name`` spellings, ISO 8601 ``creation-date`` with or without an offset,
  ``confidence`` within 0..1).
* **Failed objects**: GT writes a line for an object it could not label, with ``failure-reason``
  in its metadata and no ``<attr>``. Such a line is not malformed; :func:`scan_output_manifest`
  returns it in ``failed`` and :func:`read_output_manifest` leaves it out.
* **Content**: validated with the consolidation library's answer parser
  (:func:`labeling.consolidation.inputs.parse_answer`: label names, ``present`` booleans, ROI shapes
  and point counts, finite coordinates, image geometry), against the line's ``labels`` (the schema's
  label names, labeling/manifest.py) when the line has them, else against the names the content
  itself uses. The content must carry ``labels`` or ``rois``. ``confidence`` (per label, per ROI),
  ``annotators`` and ``agreement`` are optional; a confidence must be a number within 0..1.
* **Source**: ``source`` (an Orthanc instance ID, this project's manifests) or ``source-ref``
  (an ``s3://`` URI, GT's own convention); at least one.

Every problem raises :class:`OutputManifestError` whose message starts ``<file>:<line>:`` (1-based,
as an editor shows them) and names the key. Blank lines are skipped.

Writing
=======
:func:`output_line` builds one line (input line + content + metadata, the metadata spelled the way
GT writes it: ``job-name``, ``human-annotated: "yes"|"no"``, ``creation-date``); the metadata
``confidence`` is the mean of the per-label confidences when the content carries them.
:func:`write_output_manifest` writes lines atomically (a temporary file in the same folder, renamed
into place), so a failed export leaves no partial file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union

from labeling.consolidation.inputs import ConsolidationError, WorkerAnswer, parse_answer
from labeling.gt_contracts import OutputMetadata, parse_output_manifest_metadata
from labeling.outdir import atomic_file

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


@dataclass(frozen=True)
class OutputManifest:
    records: list[OutputRecord]
    failed: list[FailedLine]
    label_attribute: Optional[str]


# --------------------------------------------------------------------------------------- reading

def _where(name: str, number: int) -> str:
    return f"{name}:{number}"


def _lines(path_or_lines: Union[str, os.PathLike, Iterable[Any]]) -> tuple[str, Iterable[tuple[int, Any]]]:
    """``(display name, (line number, raw line | parsed dict))``."""
    if isinstance(path_or_lines, (str, os.PathLike)):
        path = Path(path_or_lines)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise OutputManifestError(f"{path}: cannot read the output manifest: {reason}") from None
        return str(path), enumerate(text.splitlines(), start=1)
    return "<lines>", enumerate(path_or_lines, start=1)


def infer_label_attribute(line: Mapping[str, Any]) -> Optional[str]:
    """The one ``<attr>`` of a line with ``<attr>-metadata`` beside it; None when not exactly one."""
    candidates = [key[: -len(METADATA_SUFFIX)] for key, value in line.items()
                  if key.endswith(METADATA_SUFFIX) and len(key) > len(METADATA_SUFFIX)
                  and isinstance(value, Mapping)]
    return candidates[0] if len(candidates) == 1 else None


def _confidence(value: Any, where: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise OutputManifestError(f"{where}: confidence {value!r} is not a number within 0..1")
    return float(value)


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


def _content_names(content: Mapping[str, Any]) -> list[str]:
    names: dict[str, None] = {}
    for key, field_name in (("labels", "name"), ("rois", "label")):
        entries = content.get(key)
        if isinstance(entries, list):
            for entry in entries:
                if isinstance(entry, Mapping) and isinstance(entry.get(field_name), str):
                    names.setdefault(entry[field_name], None)
    return list(names)


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
             and all(isinstance(n, str) for n in schema_names) and schema_names else _content_names(content))
    try:
        parsed = parse_answer(WorkerAnswer("consolidated", dict(content)), names,
                              item_id=source if source is not None else ref)
    except ConsolidationError as exc:
        raise OutputManifestError(f"{where}: {attr}.{exc.field}: {exc.reason}") from None

    label_confidence: dict[str, float] = {}
    for i, entry in enumerate(content.get("labels") or ()):
        conf = _confidence(entry.get("confidence"), f"{where}: {attr}.labels[{i}]")
        if conf is not None:
            label_confidence[entry["name"]] = conf
    rois: list[dict[str, Any]] = []
    for i, (raw, roi) in enumerate(zip(content.get("rois") or (), parsed.rois)):
        out: dict[str, Any] = {"label": roi.label, "shape": roi.shape,
                               "points": [[float(x), float(y)] for x, y in roi.points]}
        conf = _confidence(raw.get("confidence"), f"{where}: {attr}.rois[{i}]")
        if conf is not None:
            out["confidence"] = conf
        rois.append(out)
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
        label_confidence=label_confidence, rois=rois, image=dict(parsed.image or {}),
        confidence=metadata.confidence, label_attribute=attr, line_number=line_number,
        metadata=metadata, annotators=annotators, agreement=dict(agreement or {}))


def scan_output_manifest(path_or_lines: Union[str, os.PathLike, Iterable[Any]],
                         label_attribute: Optional[str] = None) -> OutputManifest:
    """Every labelled record and every failed line; raises OutputManifestError on the first bad line.

    ``path_or_lines``: a file path, or an iterable of lines (JSON text or already parsed dicts).
    """
    name, numbered = _lines(path_or_lines)
    records: list[OutputRecord] = []
    failed: list[FailedLine] = []
    attr = label_attribute
    for number, raw in numbered:
        if isinstance(raw, (str, bytes, bytearray)):
            if not raw.strip():
                continue
            try:
                raw = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise OutputManifestError(f"{_where(name, number)}: not valid JSON ({exc})") from None
        where = _where(name, number)
        if isinstance(raw, Mapping):
            if attr is None:
                attr = infer_label_attribute(raw)
            elif label_attribute is None and attr + METADATA_SUFFIX not in raw \
                    and infer_label_attribute(raw) is not None:
                # an inferred attribute must be every line's: one job per file
                raise OutputManifestError(
                    f"{where}: label attribute {infer_label_attribute(raw)!r} differs from {attr!r} "
                    "of the lines before (one job per file)")
        result = parse_output_line(raw, label_attribute=attr, where=where, line_number=number)
        (failed if isinstance(result, FailedLine) else records).append(result)  # type: ignore[arg-type]
    return OutputManifest(records, failed, attr)


def read_output_manifest(path_or_lines: Union[str, os.PathLike, Iterable[Any]],
                         label_attribute: Optional[str] = None) -> list[OutputRecord]:
    """The labelled records of an output manifest (failed lines left out); see the module rules."""
    return scan_output_manifest(path_or_lines, label_attribute).records


# --------------------------------------------------------------------------------------- writing

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


def write_output_manifest(path: Union[str, os.PathLike], lines: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``lines`` as JSON Lines, atomically (temporary file in the same folder, then rename)."""
    out = Path(path)
    text = "".join(json.dumps(dict(line), ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
                   for line in lines)
    with atomic_file(out, "w", encoding="utf-8") as handle:
        handle.write(text)
    return out
