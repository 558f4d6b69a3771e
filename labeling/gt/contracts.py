"""The Ground Truth custom-workflow contracts, parsed and built in one place (docs/architecture.md, "Contracts").

GT calls a pre-annotation Lambda once per data object and a post-annotation (consolidation) Lambda
once per batch; the portal backend speaks the same shapes. Everything here is stdlib-only and pure:
the Lambda adapters in ``lambda_src/`` parse with these functions, do their I/O, and build their
answers with them.

- Pre-annotation event ``{"version", "labelingJobArn", "dataObject": {"source" | "source-ref", ...}}``
  → :func:`parse_prelabel_event`; answer with :func:`prelabel_response`.
- Post-annotation event ``{"version", "labelingJobArn", "labelCategories" (may be null),
  "labelAttributeName", "roleArn", "payload": {"s3Uri"}, ...}`` → :func:`parse_postlabel_event`;
  the payload file (a JSON array) → :func:`parse_payload`; answer with one
  :func:`consolidation_response` per object.
- Output manifest ``<attr>-metadata`` → :func:`parse_output_manifest_metadata`.

Only what the handlers use is validated: ``version`` is "a version number used internally by
Ground Truth" (AWS, "Processing data in a custom labeling workflow with AWS Lambda"), so another
value, a missing one and keys this module does not know are accepted and listed in the parsed
event's ``notes`` for the handler to log. Malformed input that is used raises :class:`ValueError`
with a message naming the offending key, except inside a payload, where one bad object or one bad worker answer is reported on that item (``error``) so
the caller can skip it without dropping the others.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

GT_EVENT_VERSION = "2018-10-16"
"""The event version AWS documents for custom-workflow Lambdas (others are accepted and noted)."""

PRELABEL_KEYS = frozenset({"version", "labelingJobArn", "dataObject"})
POSTLABEL_KEYS = frozenset({"version", "labelingJobArn", "labelCategories", "labelAttributeName", "roleArn",
                            "payload", "outputConfig", "kmsKeyId"})

MAX_TEMPLATE_CHARS = 128_000
"""GT rejects a worker task template longer than this: ``UiTemplate.Content``, "Maximum length of
128000" (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UiTemplate.html). It counts
the template GT is given (its Liquid source), not the page GT renders from it per task, which for a
series task grows with each slice's presigned URL; a pre-check counts the same."""

MAX_PRELABEL_RESPONSE_BYTES = 6_291_556
"""The largest pre-annotation answer (``{"taskInput", "isHumanAnnotationRequired"}``, UTF-8 JSON) GT can
receive: the Lambda is invoked synchronously, "the maximum payload size is 6 MB"
(https://docs.aws.amazon.com/lambda/latest/dg/API_Invoke.html); counted as the 6,291,556 bytes Lambda's
"payload size exceeded" error names — above 6 MiB, so never stricter than Lambda, and measured on
compact JSON, never larger than what the runtime sends. A series task's answer is ~180 bytes a slice.
GT's own limit on the *input* is the data object (manifest line): see :mod:`labeling.gt.prelabel`."""


def prelabel_response_problem(task_input: Mapping[str, Any]) -> Optional[str]:
    """Why a pre-annotation Lambda could not return ``task_input`` (too large), or None."""
    size = len(json.dumps({"taskInput": task_input, "isHumanAnnotationRequired": True}, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8"))
    if size <= MAX_PRELABEL_RESPONSE_BYTES:
        return None
    slices = task_input.get("slices")
    count = f" ({len(slices)} slices)" if isinstance(slices, list) else ""
    return (f"the pre-annotation answer would be {size:,} bytes{count}, above the {MAX_PRELABEL_RESPONSE_BYTES:,} "
            f"a Lambda may return; split the series")

class GtError(Exception):
    """A bad input to ``python -m labeling gt``: one line naming the file, line or key; exit code 2."""


_S3_URI = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(?P<key>.+)", re.S)


def split_s3_uri(uri: Any, where: str = "s3Uri") -> tuple[str, str]:
    """``s3://bucket/key`` → ``(bucket, key)``; ValueError naming ``where`` otherwise."""
    match = _S3_URI.fullmatch(uri) if isinstance(uri, str) else None
    if not match:
        raise ValueError(f"{where}: {uri!r} is not an s3://bucket/key URI")
    return match["bucket"], match["key"]


def _require_mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _version_and_notes(event: Mapping[str, Any], known: frozenset[str]) -> tuple[str, tuple[str, ...]]:
    """The event's ``version`` (any value accepted) and notes on what differs from AWS's samples."""
    version = event.get("version")
    notes = []
    if version != GT_EVENT_VERSION:
        notes.append(f"version {version!r} is not the documented {GT_EVENT_VERSION!r}; parsed as it")
    extra = sorted(str(key) for key in event if key not in known)
    if extra:
        notes.append(f"fields not used here: {', '.join(extra)}")
    return str(version) if version is not None else "", tuple(notes)


def _lenient_str(event: Mapping[str, Any], key: str, notes: list[str]) -> Optional[str]:
    """A string the handler uses only for its report: a wrong type is noted and dropped, not fatal."""
    value = event.get(key)
    if value is not None and not isinstance(value, str):
        notes.append(f"{key}: expected a string, got {type(value).__name__}; ignored")
        return None
    return value


def _optional_str(event: Mapping[str, Any], key: str) -> Optional[str]:
    value = event.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key}: expected a string or null, got {type(value).__name__}")
    return value


# ---------------------------------------------------------------------------------- pre-annotation
@dataclass(frozen=True)
class PrelabelEvent:
    """One pre-annotation call: the manifest line GT hands over as ``dataObject``."""

    version: str
    labeling_job_arn: Optional[str]
    data_object: Mapping[str, Any]
    notes: tuple[str, ...] = ()

    @property
    def source(self) -> Optional[str]:
        return self.data_object.get("source")

    @property
    def source_ref(self) -> Optional[str]:
        return self.data_object.get("source-ref")

    def task_input(self) -> dict[str, Any]:
        """The manifest line unchanged (source or source-ref first, then its other keys)."""
        first = "source" if self.source is not None else "source-ref"
        return {first: self.data_object[first],
                **{k: v for k, v in self.data_object.items() if k != first}}


def parse_prelabel_event(event: Any) -> PrelabelEvent:
    """Validate a pre-annotation event; ValueError with the offending key otherwise."""
    event = _require_mapping(event, "event")
    version, notes = _version_and_notes(event, PRELABEL_KEYS)
    data_object = _require_mapping(event.get("dataObject"), "dataObject")
    source, source_ref = data_object.get("source"), data_object.get("source-ref")
    if source is None and source_ref is None:
        raise ValueError("dataObject: needs 'source' (an Orthanc instance id or text) or 'source-ref' "
                         f"(an s3:// URI); got keys {sorted(data_object)}")
    if source is not None and source_ref is not None:
        # A manifest line names its object once; two would leave the worker looking at one or the other.
        raise ValueError("dataObject: has both 'source' and 'source-ref'; a manifest line carries one")
    if source is not None and (not isinstance(source, str) or not source.strip()):
        raise ValueError(f"dataObject.source: {source!r} is not a non-empty string")
    if source_ref is not None:
        split_s3_uri(source_ref, "dataObject.source-ref")
    return PrelabelEvent(version=version, labeling_job_arn=_optional_str(event, "labelingJobArn"),
                         data_object=dict(data_object), notes=notes)


def prelabel_response(task_input: Mapping[str, Any], human_required: bool = True) -> dict[str, Any]:
    """The pre-annotation answer; ``isHumanAnnotationRequired`` must be a JSON boolean, not a string."""
    _require_mapping(task_input, "taskInput")
    return {"taskInput": dict(task_input), "isHumanAnnotationRequired": bool(human_required)}


# --------------------------------------------------------------------------------- post-annotation
@dataclass(frozen=True)
class PostlabelEvent:
    """One post-annotation (consolidation) call for a batch of data objects."""

    version: str
    labeling_job_arn: Optional[str]
    label_categories: Optional[tuple[str, ...]]
    label_attribute_name: str
    role_arn: Optional[str]
    payload_s3_uri: str
    output_config: Optional[str] = None
    kms_key_id: Optional[str] = None
    notes: tuple[str, ...] = ()


def parse_postlabel_event(event: Any) -> PostlabelEvent:
    """Validate a post-annotation event; ``labelCategories`` may be null (custom workflows)."""
    event = _require_mapping(event, "event")
    version, first_notes = _version_and_notes(event, POSTLABEL_KEYS)
    notes = list(first_notes)
    attribute = event.get("labelAttributeName")
    if not isinstance(attribute, str) or not attribute.strip():
        raise ValueError(f"labelAttributeName: {attribute!r} is not a non-empty string")
    if attribute.endswith("-metadata"):
        raise ValueError(f"labelAttributeName: {attribute!r} must not end in '-metadata' "
                         "(GT writes that key itself)")
    categories = event.get("labelCategories")
    if categories is not None:
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise ValueError(f"labelCategories: expected a list of strings or null, got {categories!r}")
        categories = tuple(categories)
    payload = _require_mapping(event.get("payload"), "payload")
    payload_uri = payload.get("s3Uri")
    split_s3_uri(payload_uri, "payload.s3Uri")
    return PostlabelEvent(
        version=version,
        labeling_job_arn=_lenient_str(event, "labelingJobArn", notes),
        label_categories=categories,
        label_attribute_name=attribute,
        role_arn=_lenient_str(event, "roleArn", notes),
        payload_s3_uri=payload_uri,
        output_config=_lenient_str(event, "outputConfig", notes),
        kms_key_id=_lenient_str(event, "kmsKeyId", notes),
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class WorkerAnnotation:
    """One worker's answer: inline ``content`` (parsed), or an ``s3_uri`` for the caller to fetch."""

    worker_id: Optional[str]
    content: Optional[dict[str, Any]] = None
    s3_uri: Optional[str] = None
    error: Optional[str] = None


@dataclass(frozen=True)
class PayloadObject:
    """One data object of the payload; ``error`` is set (and annotations empty) when it is malformed."""

    index: int
    dataset_object_id: Optional[str]
    data_object: Mapping[str, Any] = field(default_factory=dict)
    annotations: tuple[WorkerAnnotation, ...] = ()
    error: Optional[str] = None


def parse_annotation_content(text: Any, where: str = "annotationData.content") -> dict[str, Any]:
    """A worker's form submission: a JSON object carried as a string (``{"annotation": "..."}``)."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    if not isinstance(text, str):
        raise ValueError(f"{where}: expected a JSON string, got {type(text).__name__}")
    try:
        content = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(content, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(content).__name__}")
    return content


def _parse_annotation(raw: Any, where: str) -> WorkerAnnotation:
    if not isinstance(raw, Mapping):
        return WorkerAnnotation(None, error=f"{where}: expected a JSON object")
    worker = raw.get("workerId")
    worker = worker if isinstance(worker, str) else None
    data = raw.get("annotationData")
    if not isinstance(data, Mapping):
        return WorkerAnnotation(worker, error=f"{where}.annotationData: expected a JSON object")
    if "content" in data:
        try:
            return WorkerAnnotation(worker, content=parse_annotation_content(
                data["content"], f"{where}.annotationData.content"))
        except ValueError as exc:
            return WorkerAnnotation(worker, error=str(exc))
    # GT documents both spellings for answers it stored in S3 instead of inline.
    uri = data.get("s3Uri", data.get("s3uri"))
    try:
        split_s3_uri(uri, f"{where}.annotationData.s3Uri")
    except ValueError as exc:
        return WorkerAnnotation(worker, error=str(exc))
    return WorkerAnnotation(worker, s3_uri=uri)


def parse_payload(objects: Any) -> list[PayloadObject]:
    """Parse the payload file (a JSON array); a malformed object or answer is reported, not raised.

    Only a payload that is not a list at all raises ValueError: then nothing can be consolidated.
    """
    if not isinstance(objects, list):
        raise ValueError(f"payload: expected a JSON array of data objects, got {type(objects).__name__}")
    parsed: list[PayloadObject] = []
    for index, raw in enumerate(objects):
        where = f"payload[{index}]"
        if not isinstance(raw, Mapping):
            parsed.append(PayloadObject(index, None, error=f"{where}: expected a JSON object"))
            continue
        object_id = raw.get("datasetObjectId")
        if not isinstance(object_id, str) or not object_id:
            parsed.append(PayloadObject(index, None, error=f"{where}.datasetObjectId: {object_id!r} "
                                                           "is not a non-empty string"))
            continue
        data_object = raw.get("dataObject") if isinstance(raw.get("dataObject"), Mapping) else {}
        annotations = raw.get("annotations")
        if not isinstance(annotations, list):
            parsed.append(PayloadObject(index, object_id, data_object,
                                        error=f"{where}.annotations: expected a JSON array"))
            continue
        parsed.append(PayloadObject(index, object_id, data_object, tuple(
            _parse_annotation(a, f"{where}.annotations[{i}]") for i, a in enumerate(annotations))))
    return parsed


@dataclass(frozen=True)
class WorkerAnswer:
    worker_id: Optional[str]
    content: dict[str, Any]


def resolve_answers(obj: PayloadObject, fetch: Callable[[str], Any]) -> tuple[list[WorkerAnswer], list[str]]:
    """Every usable answer of ``obj`` (``fetch(s3_uri)`` reads the S3-stored ones) and the errors.

    ``fetch`` may raise; the answer is then reported as an error and the others are kept.
    """
    answers: list[WorkerAnswer] = []
    errors: list[str] = []
    for i, annotation in enumerate(obj.annotations):
        if annotation.error:
            errors.append(annotation.error)
        elif annotation.content is not None:
            answers.append(WorkerAnswer(annotation.worker_id, annotation.content))
        else:
            where = f"payload[{obj.index}].annotations[{i}] ({annotation.s3_uri})"
            try:
                answers.append(WorkerAnswer(annotation.worker_id,
                                            parse_annotation_content(fetch(annotation.s3_uri), where)))
            except Exception as exc:  # noqa: BLE001 - an unreadable answer must not drop the others
                errors.append(f"{where}: {exc}")
    return answers, errors


def consolidation_response(dataset_object_id: str, label_attribute_name: str,
                           content: Mapping[str, Any]) -> dict[str, Any]:
    """One element of the post-annotation answer (GT writes ``content`` into the output manifest)."""
    if not isinstance(dataset_object_id, str) or not dataset_object_id:
        raise ValueError(f"datasetObjectId: {dataset_object_id!r} is not a non-empty string")
    if not isinstance(label_attribute_name, str) or not label_attribute_name:
        raise ValueError(f"labelAttributeName: {label_attribute_name!r} is not a non-empty string")
    content = dict(_require_mapping(content, "content"))
    try:
        json.dumps(content, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"content: not serialisable as strict JSON ({exc})") from None
    return {"datasetObjectId": dataset_object_id,
            "consolidatedAnnotation": {"content": {label_attribute_name: content}}}


# ------------------------------------------------------------------------------- output manifest
@dataclass(frozen=True)
class OutputMetadata:
    """``<attr>-metadata`` of an output manifest line."""

    type: str
    job_name: str
    human_annotated: Optional[bool] = None
    creation_date: Optional[datetime] = None
    confidence: Optional[float] = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _spelled(meta: Mapping[str, Any], name: str) -> Any:
    """``meta[name]`` under either spelling (``job-name`` / ``job_name``); a conflict is an error."""
    hyphen, underscore = name, name.replace("-", "_")
    if hyphen in meta and underscore in meta and meta[hyphen] != meta[underscore]:
        raise ValueError(f"{hyphen}: given as both {hyphen!r} ({meta[hyphen]!r}) and "
                         f"{underscore!r} ({meta[underscore]!r})")
    return meta.get(hyphen, meta.get(underscore))


def parse_output_manifest_metadata(meta: Any) -> OutputMetadata:
    """Parse GT's ``<attr>-metadata``; both ``job-name`` and ``job_name`` spellings are accepted."""
    meta = _require_mapping(meta, "metadata")
    kind = meta.get("type")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"type: {kind!r} is not a non-empty string (e.g. 'groundtruth/custom')")
    job_name = _spelled(meta, "job-name")
    if not isinstance(job_name, str) or not job_name:
        raise ValueError(f"job-name: {job_name!r} is not a non-empty string")
    human = _spelled(meta, "human-annotated")
    if human is not None:
        if human not in ("yes", "no", True, False):
            raise ValueError(f"human-annotated: {human!r} is not 'yes' or 'no'")
        human = human in ("yes", True)
    created = _spelled(meta, "creation-date")
    if created is not None:
        try:
            # GT writes naive microsecond timestamps; the portal writes +0000 offsets; both are ISO 8601.
            created = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"creation-date: {created!r} is not an ISO 8601 timestamp") from None
    confidence = meta.get("confidence")
    if confidence is not None:
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) \
                or not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence: {confidence!r} is not a number within 0..1")
        confidence = float(confidence)
    known = {"type", "job-name", "job_name", "human-annotated", "human_annotated", "creation-date",
             "creation_date", "confidence"}
    return OutputMetadata(type=kind, job_name=job_name, human_annotated=human, creation_date=created,
                          confidence=confidence, extra={k: v for k, v in meta.items() if k not in known})
