"""What the admin does in the browser: jobs from an Orthanc query or an uploaded manifest with a schema
from ``schemas/`` or uploaded, users (local mode), and the job page's figures.

Job creation runs the same code as the CLI: the manifest builder (:func:`labeling.manifest.build.build_manifest`,
its filters validated by :func:`labeling.manifest.build.parse_filters`) for a query, then the instance check
and geometry (:mod:`labeling.portal.geometry`), then :func:`labeling.portal.jobs.create_job`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from labeling.consolidation import ItemAnswers, WorkerAnswer, consolidate_job
from labeling.orthanc.local_stack import REPO_ROOT
from labeling.manifest.build import FilterError, ManifestError, ManifestLine, build_manifest, parse_filters
from labeling.portal.series import checked_line_geometry
from labeling.portal.jobs import (Conflict, Invalid, NotFound, annotator_progress, answered, flags_by_item,
                                 job_progress, job_schema, list_jobs, review_queue)
from labeling.portal.models import ROLES, Assignment, Item, Job, Session as DbSession, User
from labeling.contracts.schema import LabelSchema, SchemaError, load_schema, load_schema_text

SCHEMA_DIR = REPO_ROOT / "schemas"
_SCHEMA_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,100}\.(?:ya?ml|json)")
QUERY_LIMIT = 100_000


def schema_files(directory: Path = SCHEMA_DIR) -> dict[str, LabelSchema]:
    """The label schemas shipped in ``schemas/`` (file name → schema); unreadable ones are left out."""
    out: dict[str, LabelSchema] = {}
    for path in sorted(directory.glob("*")):
        if _SCHEMA_FILE.fullmatch(path.name):
            try:
                out[path.name] = load_schema(path)
            except SchemaError:
                continue
    return out


def resolve_schema(*, schema: Optional[Mapping[str, Any]] = None, schema_file: Optional[str] = None,
                   schema_text: Optional[str] = None, directory: Path = SCHEMA_DIR) -> LabelSchema:
    """Exactly one of: a schema object, a file name in ``schemas/``, or uploaded YAML/JSON text."""
    given = [name for name, value in (("schema", schema), ("schema_file", schema_file),
                                      ("schema_text", schema_text)) if value]
    if len(given) != 1:
        raise Invalid("schema: give exactly one of schema, schema_file (from schemas/) or schema_text (upload)"
                      + (f"; got {', '.join(given)}" if given else ""))
    try:
        if schema is not None and given == ["schema"]:
            return LabelSchema.from_dict(dict(schema), source="schema")
        if schema_file:
            if not _SCHEMA_FILE.fullmatch(schema_file) or not (directory / schema_file).is_file():
                raise Invalid(f"schema_file {schema_file!r}: not one of {', '.join(schema_files(directory)) or 'none'}")
            return load_schema(directory / schema_file)
        return load_schema_text(schema_text or "", "uploaded schema")
    except SchemaError as exc:
        raise Invalid(str(exc)) from None


def manifest_from_query(orthanc: Any, schema: LabelSchema, query: Mapping[str, Any]) -> list[ManifestLine]:
    """The manifest builder's lines for the query's filters (the CLI's ``--modality`` etc.)."""

    def strings(key: str) -> list[str]:
        value = query.get(key) or []
        values = [value] if isinstance(value, str) else list(value)
        return [str(v).strip() for v in values if str(v).strip()]

    def one(key: str) -> Optional[str]:
        value = query.get(key)
        return str(value).strip() or None if value not in (None, "") else None

    try:
        filters = parse_filters(modalities=strings("modality"), study_uids=strings("study_uid"),
                                series_uids=strings("series_uid"), patient_id=one("patient_id"),
                                study_date_from=one("study_date_from"), study_date_to=one("study_date_to"))
    except (FilterError, ManifestError, ValueError) as exc:
        # The builder names its CLI flags (--study-date-from); the admin filled in form fields.
        raise Invalid("query: " + re.sub(r"--([a-z]+(?:-[a-z]+)*)", lambda m: m.group(1).replace("-", " "),
                                         str(exc))) from None
    limit = query.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= QUERY_LIMIT):
        raise Invalid(f"query: limit: an integer 1..{QUERY_LIMIT}, got {limit!r}")
    level = query.get("level") or "instance"
    if level not in ("instance", "series"):
        raise Invalid(f"query: level: 'instance' or 'series', got {level!r}")
    result = build_manifest(orthanc, schema_name=schema.name, labels=list(schema.label_names),
                            task_type=schema.task_type, filters=filters, limit=limit or QUERY_LIMIT, level=level,
                            uncertain_policy=schema.line_uncertain_policy)
    if not result.lines:
        given = describe_filters(filters)
        what = f"no image in Orthanc matches {given}" if given else "Orthanc has no image to label yet (upload some first)"
        raise Invalid(f"query: {what}; {result.matched} instance(s) matched, "
                      f"{sum(result.excluded.values())} of them non-image")
    return list(result.lines)


def describe_filters(filters: Any) -> str:
    """The filters an admin set, in words (``modality MR, patient id SYN-*``); empty when none."""
    given = []
    for key, value in filters.to_dict().items():
        if isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ",".join(value)
        if value:
            given.append(f"{key.replace('_', ' ')} {value}")
    return ", ".join(given)


# ------------------------------------------------------------------------------------ users

def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id}: no such user")
    return user


def update_user(session: Session, actor: User, user: User, *, role: Optional[str] = None,
                active: Optional[bool] = None) -> User:
    """Set a role or (de)activate; a disabled user's sessions end at once. Nobody locks themselves out."""
    if user.id == actor.id and (active is False or (role is not None and role != "admin")):
        raise Conflict("you cannot disable yourself or drop your own admin role")
    if role is not None:
        if role not in ROLES:
            raise Invalid(f"role {role!r}: expected one of {', '.join(ROLES)}")
        user.role = role
    if active is not None:
        user.active = active
        if not active:
            session.execute(delete(DbSession).where(DbSession.user_id == user.id))
    return user


def set_password(session: Session, user: User, password_hash: str) -> User:
    """Reset a local user's password; their open sessions end."""
    user.password_hash = password_hash
    session.execute(delete(DbSession).where(DbSession.user_id == user.id))
    return user


# ---------------------------------------------------------------------------- job figures

HISTOGRAM_EDGES = [round(-1.0 + 0.2 * i, 1) for i in range(11)]  # agreement is in -1..1


def agreement_histogram(values: Sequence[float]) -> list[dict[str, Any]]:
    """Counts of per-item agreement in bins of 0.2 over -1..1 (the last bin includes 1)."""
    counts = [0] * (len(HISTOGRAM_EDGES) - 1)
    for value in values:
        index = min(int((value + 1.0) / 0.2 + 1e-9), len(counts) - 1)
        counts[max(index, 0)] += 1
    return [{"from": HISTOGRAM_EDGES[i], "to": HISTOGRAM_EDGES[i + 1], "items": c} for i, c in enumerate(counts)]


def annotator_quality(session: Session, job: Job) -> dict[str, Any]:
    """Each annotator's sensitivity/specificity per label from a Dawid–Skene fit over the job's answers
    so far (the consolidation library's ``consolidate_job``; one query for the answers)."""
    rows = session.execute(
        select(Assignment.item_id, User.name, Assignment.answer).join(User, User.id == Assignment.user_id)
        .where(Assignment.job_id == job.id, answered()).order_by(Assignment.item_id, Assignment.id)).all()
    per_item: dict[int, list[WorkerAnswer]] = {}
    for item_id, name, answer in rows:
        per_item.setdefault(item_id, []).append(WorkerAnswer(name, answer))
    if not per_item:
        return {"annotators": [], "labels": []}
    schema = job_schema(job)
    names = list(schema.label_names)
    report = consolidate_job([ItemAnswers(str(i), tuple(a)) for i, a in per_item.items()], names,
                             uncertain_policy=schema.uncertain_policy).report
    annotators = []
    for name, quality in sorted(report.workers.items()):
        annotators.append({"annotator": name, "accuracy": quality.accuracy, "answers": quality.answers,
                           "labels": {label: {"sensitivity": q.sensitivity, "specificity": q.specificity}
                                      for label, q in quality.labels.items()}})
    return {"annotators": annotators, "labels": names}


def job_figures(session: Session, job: Job, agreements: Sequence[float]) -> dict[str, Any]:
    """The job page's histogram of ``agreements`` (:func:`~labeling.portal.jobs.item_agreements`, read
    once for the page) and the annotators' quality."""
    return {"histogram": agreement_histogram(agreements), "quality": annotator_quality(session, job)}


def prepare_job(orthanc: Any, *, schema: Optional[Mapping[str, Any]], schema_file: Optional[str],
                schema_text: Optional[str], manifest: Optional[Sequence[Mapping[str, Any]]],
                query: Optional[Mapping[str, Any]]) -> tuple[LabelSchema, list[ManifestLine], dict[str, Any]]:
    """A new job's schema, manifest lines (uploaded, or built from an Orthanc query) and the geometry of
    every instance, checked in Orthanc (missing ones refuse the job). Nothing is written; the caller
    stores the result with :func:`labeling.portal.jobs.create_job`."""
    resolved = resolve_schema(schema=schema, schema_file=schema_file, schema_text=schema_text)
    if (manifest is None) == (query is None):
        raise Invalid("give exactly one of manifest (uploaded lines) or query (Orthanc filters)")
    if query is not None:
        lines = manifest_from_query(orthanc, resolved, query)
    else:
        lines = []
        for number, line in enumerate(manifest or [], 1):
            try:
                lines.append(ManifestLine.from_dict(line))
            except ManifestError as exc:  # the line, as the admin's file numbers it (blank lines aside)
                raise Invalid(f"manifest line {number}: {exc}") from None
    return resolved, lines, checked_line_geometry(orthanc, lines)


def jobs_with_progress(session: Session, user: User) -> list[dict[str, Any]]:
    """The jobs ``user`` sees, each with its progress: the annotator's own (``mine``) or the job's."""
    if user.role == "annotator":
        return [{"job": job, "mine": annotator_progress(session, job, user)} for job in list_jobs(session, user)]
    return [{"job": job, "progress": job_progress(session, job)} for job in list_jobs(session, user)]


def review_overview(session: Session) -> tuple[list[Item], dict[int, str], dict[int, str]]:
    """The review queue, job names by id, and the flag reasons of flagged (unconsolidated) items."""
    items = review_queue(session)
    names = {job.id: job.name for job in session.scalars(select(Job))}
    flagged = flags_by_item(session, [item.id for item in items if item.consolidated is None])
    flags = {item_id: ", ".join(sorted({f["text"] for f in found})) for item_id, found in flagged.items()}
    return items, names, flags
