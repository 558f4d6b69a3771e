"""Jobs: creation from a manifest with its checks, lookup, state, and the list a user sees (rules:
:mod:`labeling.portal.jobs`)."""

from __future__ import annotations

import copy
import re
from typing import Any, Mapping, Optional, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from labeling.contracts.ids import validate_instance_id
from labeling.contracts.manifest_line import GEOMETRY_KEYS
from labeling.contracts.schema import LabelSchema
from labeling.manifest.build import KNOWN_KEYS, ManifestLine
from labeling.portal.answers import validate_answer
from labeling.portal.errors import Conflict, Invalid, NotFound
from labeling.portal.models import Item, Job, User


JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]{0,62}")
LABEL_ATTRIBUTE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_]{0,126}")


def validate_label_attribute(name: str) -> str:
    """GT's rules for a label attribute name (≤127 chars, not ``*-ref``/``*-metadata``), and no clash
    with a manifest key (the output line is the input line plus this key)."""
    if not LABEL_ATTRIBUTE.fullmatch(name) or name.endswith(("-ref", "-metadata")) or name in KNOWN_KEYS:
        raise Invalid(f"label attribute {name!r}: letters, digits, '-' or '_', at most 127 characters, "
                      "not ending in -ref or -metadata, and not a manifest key")
    return name


def check_source(number: int, source: str) -> str:
    """A manifest line's ``source`` must be an Orthanc instance ID (before it goes near a URL or path)."""
    try:
        return validate_instance_id(source)
    except ValueError:
        raise Invalid(f"manifest line {number}: 'source' {source!r} is not an Orthanc instance ID") from None


def _prelabel_answer(schema: LabelSchema, raw: Any, where: str,
                     geometry: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """A manifest line's ``prelabel`` (label shape + model/confidence keys) → one answer for the viewer."""
    if not isinstance(raw, Mapping):
        raise Invalid(f"{where}: 'prelabel' must be an object in the label shape")
    answer = {key: raw[key] for key in ("labels", "rois", "image") if key in raw}
    try:
        return validate_answer(schema, answer, image=geometry, require_all=False)
    except Invalid as exc:
        raise Invalid(f"{where}: 'prelabel': {exc.message}") from None


def create_job(session: Session, *, name: str, schema: LabelSchema, lines: Sequence[ManifestLine],
               geometry: Mapping[str, Mapping[str, Any]], label_attribute: Optional[str] = None,
               annotators_per_item: Optional[int] = None, lease_seconds: int = 900,
               agreement_threshold: float = 0.6) -> Job:
    """A job over ``lines`` (a manifest built for ``schema``); nothing is written when a line is bad.

    ``geometry`` maps every line's source to its image geometry as read from Orthanc
    (:func:`labeling.portal.geometry.read_geometry` + ``require_all``): a job is only created over
    instances Orthanc has, and answers are later checked against that geometry."""
    if not JOB_NAME.fullmatch(name or ""):
        raise Invalid(f"job name {name!r}: 1-63 letters, digits or '-', starting with a letter or digit")
    if session.scalar(select(Job.id).where(Job.name == name)) is not None:
        raise Conflict(f"job {name!r} already exists")
    if not lines:
        raise Invalid("manifest: no lines")
    attr = validate_label_attribute(label_attribute or name)
    k = annotators_per_item or schema.annotators_per_item
    if k < 1:
        raise Invalid(f"annotators per item: must be at least 1, got {k}")
    if lease_seconds < 1:
        raise Invalid(f"lease: must be at least 1 second, got {lease_seconds}")
    if not -1.0 <= agreement_threshold <= 1.0:
        raise Invalid(f"agreement threshold: {agreement_threshold} is outside -1..1")
    names = list(schema.label_names)
    unknown = [line.source for line in lines if line.source not in geometry]
    if unknown:
        raise Invalid(f"manifest: {len(unknown)} instance(s) without a recorded geometry (not read from Orthanc): "
                      f"{', '.join(unknown[:5])}")
    job = Job(name=name, label_attribute=attr, schema=schema.to_dict(), annotators_per_item=k,
              lease_seconds=lease_seconds, agreement_threshold=agreement_threshold, state="active")
    session.add(job)
    session.flush()
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        where = f"manifest line {number}"
        check_source(number, line.source)
        if line.source in seen:
            raise Invalid(f"{where}: duplicate source {line.source!r}")
        seen.add(line.source)
        if list(line.labels) != names:
            raise Invalid(f"{where}: labels {list(line.labels)} differ from the schema's ({schema.name!r}: {names})")
        # the job's schema decides what "uncertain" counts as; a line that says otherwise was built for another
        policy_problem = schema.line_policy_problem(line.uncertain_policy) if line.uncertain_policy else None
        if policy_problem:
            raise Invalid(f"{where}: {policy_problem}")
        data = line.to_dict()
        if attr in data or f"{attr}-metadata" in data:
            raise Invalid(f"{where}: already carries {attr!r}; choose another label attribute")
        for key in GEOMETRY_KEYS:  # a line's own geometry must be what Orthanc has
            if key in data and data[key] != geometry[line.source].get(key):
                raise Invalid(f"{where}: {key} {data[key]} but Orthanc's instance has {geometry[line.source].get(key)}")
        if "prelabel" in data:
            _prelabel_answer(schema, data["prelabel"], where, geometry[line.source])
        session.add(Item(job_id=job.id, position=number, source=line.source, line=data, open_slots=k,
                         state="open", geometry=dict(geometry[line.source])))
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id}: no such job")
    return job


def job_schema(job: Job) -> LabelSchema:
    return schema_of(job.id, job.name, job.schema)


_SCHEMAS: dict[int, tuple[dict[str, Any], LabelSchema]] = {}  # job id → (its schema's content, parsed)


def schema_of(job_id: Optional[int], job_name: str, schema: dict[str, Any]) -> LabelSchema:
    """A job's schema, parsed once per job and content (each answer is checked against it): a changed
    content is parsed again; the cache holds the jobs of one process (cleared past 1,000)."""
    cached = _SCHEMAS.get(job_id) if job_id is not None else None
    if cached is not None and cached[0] == schema:
        return cached[1]
    parsed = LabelSchema.from_dict(schema, source=f"job {job_name}")
    if job_id is not None:
        if len(_SCHEMAS) >= 1000:
            _SCHEMAS.clear()
        _SCHEMAS[job_id] = (copy.deepcopy(schema), parsed)
    return parsed


def set_job_state(session: Session, job: Job, state: str) -> Job:
    if job.state == "closed":
        raise Conflict(f"job {job.name!r} is closed")
    if state not in ("active", "paused"):
        raise Invalid(f"job state {state!r}: expected active or paused (close with close_job)")
    job.state = state
    return job


def list_jobs(session: Session, user: User) -> list[Job]:
    query = select(Job).order_by(Job.id)
    if user.role == "annotator":
        query = query.where(Job.state != "closed")
    return list(session.scalars(query))
