"""Export: the GT-format output manifest and DICOM SR write-back (docs/architecture.md, data flow).

* :func:`export_manifest` writes one line per finished item through
  :func:`labeling.gt.output_manifest.output_line` (the input manifest line + ``<attr>`` +
  ``<attr>-metadata``, the same writer the GT path uses) to a local path (atomic) or ``s3://bucket/key``
  (``put_object`` with ``aws:kms`` when a key is given, else the bucket's default encryption).
  Items still waiting for review are left out unless ``include_review`` (then their consolidated
  label is written), and counted in the result either way.
* :func:`export_sr` stores one TID 1500 SR per finished item into Orthanc through
  :mod:`labeling.dicom.sr`; observers are the item's annotators and, when one decided, the reviewer.
  The SR's SOP Instance UID is derived from the job, the item and the final label, so exporting
  again stores nothing new unless the label changed (Orthanc answers ``AlreadyStored``).
"""

from __future__ import annotations

import io
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlalchemy.orm import Session

from labeling.gt.output_manifest import output_line, write_output_manifest
from labeling.portal import series
from labeling.portal.jobs import Invalid, item_answers
from labeling.portal.models import Item, Job, User
from labeling.portal.names import EXPORT_PREFIX

_S3 = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(?P<key>[^\s]+)")


@dataclass
class ExportResult:
    destination: str
    written: int
    left_out_review: int
    left_out_open: int
    left_out_excluded: int = 0
    lines: list[dict[str, Any]] = field(default_factory=list, repr=False)


def manifest_lines(session: Session, job: Job, *, include_review: bool = False) -> ExportResult:
    items = session.scalars(select(Item).where(Item.job_id == job.id).order_by(Item.position)).all()
    result = ExportResult("", 0, 0, 0)
    for item in items:
        content = item.final
        if item.state == "review":
            result.left_out_review += 0 if include_review else 1
            content = item.consolidated if include_review else None
        elif item.state == "open":
            result.left_out_open += 1
        elif content is None:
            result.left_out_excluded += 1  # a reviewer excluded it (e.g. flagged unreadable)
        if content is None:
            continue
        created = item.reviewed_at or None
        result.lines.append(output_line(item.line, job.label_attribute, content, job.name, created=created))
    result.written = len(result.lines)
    return result


def export_manifest(session: Session, job: Job, destination: str, *, include_review: bool = False,
                    s3_client: Any = None, kms_key_id: Optional[str] = None) -> ExportResult:
    result = manifest_lines(session, job, include_review=include_review)
    result.destination = destination
    if destination.startswith("s3://"):
        match = _S3.fullmatch(destination)
        if not match:
            raise Invalid(f"export destination {destination!r}: expected s3://<bucket>/<key>")
        with tempfile.TemporaryDirectory() as tmp:
            local = write_output_manifest(Path(tmp) / "output.manifest", result.lines)
            extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms"}
            if kms_key_id:
                extra["SSEKMSKeyId"] = kms_key_id
            if s3_client is None:
                import boto3

                s3_client = boto3.client("s3")
            s3_client.put_object(Bucket=match["bucket"], Key=match["key"], Body=local.read_bytes(),
                                 ContentType="application/jsonlines", **extra)
    else:
        write_output_manifest(destination, result.lines)
    return result


@dataclass
class SrResult:
    stored: dict[int, str] = field(default_factory=dict)   # item id -> Orthanc instance id of the SR
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


def export_sr(session: Session, job: Job, orthanc: Any, *,
              progress: Optional[Callable[[int, int], None]] = None) -> SrResult:
    from labeling.dicom.sr import Observer, build_annotation_sr, store_sr

    items = [item for item in session.scalars(select(Item).where(Item.job_id == job.id, Item.state == "done")
                                              .order_by(Item.position)) if item.final is not None]  # not excluded
    result = SrResult()
    for index, item in enumerate(items, start=1):
        try:
            observers = [Observer.person(name, login=name) for name, _, _ in item_answers(session, item)]
            if item.reviewed_by is not None:
                reviewer = session.get(User, item.reviewed_by)
                if reviewer is not None:
                    observers.append(Observer.person(reviewer.name, login=reviewer.name))
            digest = json.dumps(item.final, sort_keys=True)

            def options(study_uid: str) -> dict[str, Any]:
                return dict(instance_number=item.position, description=f"Labels of portal job {job.name}"[:64],
                            series_instance_uid=generate_uid(entropy_srcs=["portal-sr-series", job.name, study_uid]),
                            sop_instance_uid=generate_uid(entropy_srcs=["portal-sr", job.name, str(item.id), digest]))

            if series.is_series(item.geometry):  # ROIs on their slices (labeling/portal/series.py)
                sr = series.item_sr(orthanc, item.geometry, item.final, observers, options)
            else:
                source = pydicom.dcmread(io.BytesIO(orthanc.instance_file(item.source)), stop_before_pixels=True)
                sr = build_annotation_sr(source, item.final, observers, **options(str(source.StudyInstanceUID)))
            item.sr_instance = store_sr(orthanc, sr)
            result.stored[item.id] = item.sr_instance
        except Exception as exc:  # noqa: BLE001 - one bad item must not stop the others; reported
            result.errors.append(f"item {item.id} ({item.source}): {exc}")
        if progress:
            progress(index, len(items))
    return result


def export_destination(settings: Any, job: Job) -> str:
    """Where the portal exports a job: ``s3://<PORTAL_EXPORT_BUCKET>/portal-exports/<job>/output.manifest``,
    else under ``PORTAL_CACHE_DIR/exports/``."""
    if settings.export_bucket:
        return f"s3://{settings.export_bucket}/{EXPORT_PREFIX}{job.name}/output.manifest"
    return str(Path(settings.cache_dir) / "exports" / job.name / "output.manifest")


def manifest_text(session: Session, job: Job) -> str:
    """The output manifest as JSON Lines (the download), without writing it anywhere."""
    return "".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"
                   for line in manifest_lines(session, job).lines)
