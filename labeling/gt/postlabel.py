"""GT post-annotation logic: a parsed payload batch → the contract's answer list and a report.

Pure (no boto3, no logging): the Lambda adapter ``lambda_src/postlabel/handler.py`` reads the
payload, passes a ``fetch(s3_uri) -> bytes`` for answers GT stored in S3, logs the errors returned
here, and writes the report to :func:`report_location`.

Rules (documented once, here):

* **Label names**: the event's ``labelCategories`` when it is a non-empty list; else the union of
  every data object's ``labels`` (the manifest line carries the schema's label names, see
  labeling/manifest/build.py), in first-seen order; else — neither present — the names seen in the
  workers' answers (``labels[].name`` then ``rois[].label``), in first-seen order. In the last case
  no answer can name an unknown label, and a label nobody ticked is absent from the output.
* **Errors**: a malformed object (``PayloadObject.error``) and an object the library rejects
  (:class:`ConsolidationError`, e.g. a label name outside the schema) are left out of the answer and
  listed in ``errors``; the other objects are still answered. An unreadable or unparsable *worker
  answer* (bad JSON, missing S3 object) is dropped and listed; the object is consolidated from its
  remaining answers (``annotators`` counts those), or left out when none remains.
* **Geometry**: a data object that records its image's ``rows``/``columns`` (``frames``), the
  manifest line's keys, has every answer checked against them (size, frame, points inside the
  image: :func:`labeling.contracts.answer.parse_answer`); a bad recorded geometry leaves the object
  out. Objects without them (older manifests) are consolidated as before.
* **Uncertain answers** count as the data objects' ``uncertain_policy`` says (the manifest line's key,
  written from a schema with ``uncertain: true``; ``ignore`` when absent): the same policy, applied by
  the same library code (:mod:`labeling.consolidation.uncertain`), as the portal's for that schema.
  An object with a value outside ``ignore``/``absent``/``present``, or with another policy than the
  batch's first object, is left out with an error (one job has one schema).
* All objects of the batch go to :func:`labeling.consolidation.consolidate_job` in one call, so
  Dawid–Skene learns the workers' confusion over the whole batch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

from labeling.gt import contracts as gt_contracts
from labeling.consolidation import ConsolidationError, ItemAnswers, consolidate_job, parse_worker_content
from labeling.consolidation import WorkerAnswer as ConsolidationAnswer
from labeling.contracts.answer import DEFAULT_UNCERTAIN_POLICY, names_used
from labeling.contracts.errors import ContractError
from labeling.contracts.geometry import ImageGeometry
from labeling.contracts.manifest_line import recorded_geometry, recorded_uncertain_policy

REPORT_FOLDER = "consolidation-report"


@dataclass(frozen=True)
class PostlabelError:
    """One thing left out: ``level`` is ``object`` (the whole object) or ``answer`` (one worker's)."""

    dataset_object_id: Optional[str]
    level: str
    reason: str
    worker_id: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return {"datasetObjectId": self.dataset_object_id, "level": self.level,
                "workerId": self.worker_id, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.level} of datasetObjectId {self.dataset_object_id!r}: {self.reason}"


def _names_in(values: Iterable[Any], seen: dict[str, None]) -> None:
    for value in values:
        if isinstance(value, str) and value:
            seen.setdefault(value, None)


def resolve_label_names(label_categories: Optional[Sequence[str]],
                        objects: Sequence[gt_contracts.PayloadObject],
                        answers: Mapping[str, Sequence[gt_contracts.WorkerAnswer]]) -> tuple[list[str], str]:
    """``(label names, where they came from)`` by the rule in the module docstring."""
    if label_categories:
        return list(dict.fromkeys(label_categories)), "labelCategories"
    seen: dict[str, None] = {}
    for obj in objects:
        labels = obj.data_object.get("labels") if not obj.error else None
        if isinstance(labels, list):
            _names_in(labels, seen)
    if seen:
        return list(seen), "dataObject.labels"
    for object_answers in answers.values():
        for answer in object_answers:
            try:
                data = parse_worker_content(answer.content)
            except ConsolidationError:
                continue  # consolidate_job reports it on the object
            _names_in(names_used(data), seen)
    return list(seen), "answers"


def consolidate_payload(
    objects: Sequence[gt_contracts.PayloadObject],
    label_attribute_name: str,
    label_categories: Optional[Sequence[str]] = None,
    *,
    fetch: Optional[Callable[[str], Any]] = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Consolidate one batch: ``(responses in payload order, report dict)``.

    ``fetch(s3_uri)`` reads an answer GT stored in S3 (without it such answers are errors). The
    report is JSON-able: ``objects``/``consolidated``/``failed`` counts, ``labelNames`` and their
    ``labelNamesSource``, ``uncertainPolicy``, ``errors`` (one entry per object or answer left out) and
    ``consolidation`` (the library's ``JobReport.to_dict()``; null when nothing could be consolidated).
    """
    errors: list[PostlabelError] = []
    answers: dict[str, list[gt_contracts.WorkerAnswer]] = {}
    geometries: dict[str, Optional[ImageGeometry]] = {}  # the manifest line's rows/columns/frames, if any
    slice_orders: dict[str, tuple] = {}
    order: list[str] = []
    policy: Optional[tuple[str, str]] = None  # (the batch's uncertain_policy, the object it came from)

    def no_fetch(uri: str) -> Any:
        raise ValueError("no S3 reader given")

    for obj in objects:
        if obj.error:
            errors.append(PostlabelError(obj.dataset_object_id, "object", obj.error))
            continue
        usable, answer_errors = gt_contracts.resolve_answers(obj, fetch or no_fetch)
        errors.extend(PostlabelError(obj.dataset_object_id, "answer", e) for e in answer_errors)
        if not usable:
            errors.append(PostlabelError(obj.dataset_object_id, "object", "no usable worker answer"))
            continue
        if obj.dataset_object_id in answers:
            errors.append(PostlabelError(obj.dataset_object_id, "object",
                                         "datasetObjectId appears twice in the payload"))
            continue
        try:
            geometries[obj.dataset_object_id] = recorded_geometry(obj.data_object)
            # a series task's slice order: agreement.slices finds findings drawn on neighbouring slices
            slice_orders[obj.dataset_object_id] = tuple(obj.data_object.get("instances") or ()) \
                if obj.data_object.get("level") in ("series", "multiframe") else ()
            object_policy = recorded_uncertain_policy(obj.data_object)
            if policy is None:
                policy = (object_policy, obj.dataset_object_id)
            elif object_policy != policy[0]:
                raise ContractError("uncertain_policy", f"{object_policy!r} differs from {policy[0]!r} of "
                                    f"datasetObjectId {policy[1]!r}; one job has one schema")
        except ContractError as exc:
            errors.append(PostlabelError(obj.dataset_object_id, "object", f"dataObject.{exc}"))
            continue
        answers[obj.dataset_object_id] = usable
        order.append(obj.dataset_object_id)

    names, names_source = resolve_label_names(label_categories, objects, answers)
    responses: list[dict[str, Any]] = []
    job_report: Optional[dict[str, Any]] = None
    if order and not names:
        errors.extend(PostlabelError(i, "object", "no label names: labelCategories is null, no "
                                     "dataObject.labels and no label named in any answer") for i in order)
    elif order:
        items = [ItemAnswers(i, tuple(ConsolidationAnswer(a.worker_id, a.content) for a in answers[i]),
                             geometries[i], slice_orders[i]) for i in order]
        result = consolidate_job(items, names, uncertain_policy=policy[0] if policy else None)
        errors.extend(PostlabelError(e.item_id, "object", str(e), worker_id=e.worker_id)
                      for e in result.errors)
        for item_id in order:
            if item_id in result.items:
                responses.append(gt_contracts.consolidation_response(
                    item_id, label_attribute_name, result.items[item_id]))
        job_report = result.report.to_dict()

    report = {
        "labelAttributeName": label_attribute_name,
        "labelNames": names,
        "labelNamesSource": names_source,
        "uncertainPolicy": policy[0] if policy else DEFAULT_UNCERTAIN_POLICY,
        "objects": len(objects),
        "consolidated": len(responses),
        "failed": len(objects) - len(responses),
        "errorCount": len(errors),
        "errors": [e.to_dict() for e in errors],
        "consolidation": job_report,
    }
    return responses, report


_ITERATION = re.compile(r"^iteration-\d+$")
_S3_PREFIX = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?", re.S)


def report_location(payload_s3_uri: str, output_config: Optional[str] = None, *,
                    now: Optional[datetime] = None) -> tuple[str, str]:
    """``(bucket, key)`` of the batch's consolidation report; deterministic per payload file.

    Base: ``outputConfig`` (GT's ``s3://bucket/<prefix>/<job>/annotations``) when it is an S3 URI;
    else the folder GT put the payload in, cut before ``/consolidation-request/`` when present
    (so it lands next to GT's ``consolidation-request`` folder), else the payload's folder.
    Key: ``<base prefix>/consolidation-report/<iteration-N>/<payload file stem>.json``; the
    ``iteration-N`` folder is the payload key's one (left out when it has none). GT calls the
    Lambda once per batch, each with its own payload file, so one report per batch, and a retried
    batch overwrites its own report. A payload key without a file name falls back to a UTC
    timestamp (``now``).
    """
    payload_bucket, payload_key = gt_contracts.split_s3_uri(payload_s3_uri, "payload.s3Uri")
    parts = payload_key.split("/")
    folders, file_name = parts[:-1], parts[-1]
    iteration = next((p for p in reversed(folders) if _ITERATION.match(p)), None)
    stem = file_name[:-5] if file_name.endswith(".json") else file_name
    if not stem:
        stem = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H-%M-%S-%fZ")

    bucket, prefix = payload_bucket, None
    match = _S3_PREFIX.fullmatch(output_config) if isinstance(output_config, str) else None
    if match:
        bucket, prefix = match["bucket"], match["prefix"] or ""
    if prefix is None:
        prefix = "/".join(folders[:folders.index("consolidation-request")]
                          if "consolidation-request" in folders else folders)
    key = "/".join(p for p in (prefix.strip("/"), REPORT_FOLDER, iteration, f"{stem}.json") if p)
    return bucket, key
