"""Jobs, assignment with leases, answers, consolidation, review and progress (the portal's domain).

Every function takes an open SQLAlchemy session inside a transaction (see :func:`db.transaction`)
and the acting user; authorization that depends on data (is this assignment yours? is this item
assigned to you?) is checked here, so every entry point — pages, JSON API, CLI — gets the same rules.

Rules, documented once:

* **Assignment** (:func:`next_task`): an annotator's live lease on the job is returned first (a
  reload does not burn an item). Otherwise expired unanswered leases of the job are deleted (their
  slot returns to the item), then the first item by manifest position that is ``open``, has a free
  slot and was never assigned to this annotator is locked ``FOR UPDATE SKIP LOCKED`` (concurrent
  annotators take different items without waiting), its ``open_slots`` decremented and a lease of
  ``job.lease_seconds`` created. When every candidate is locked by someone else, the same query runs
  once more without SKIP LOCKED: it waits for those assignments to commit and re-checks the slots
  they left, so "nothing left" is only answered when nothing is. UNIQUE(item, user) backs "never the same item twice".
* **Blind**: an annotator only ever receives the item, the image and a pre-label; answers of others
  are returned only to reviewers and admins (:func:`review_detail`).
* **Answers** (:func:`submit_answer`): validated with the label contract's parser
  (:func:`labeling.contracts.answer.parse_answer`: the same checks the post-label Lambda applies)
  plus the schema's rules (ROI shapes allowed per label, every label answered when required, no ROIs
  for a classification-only schema). An expired lease is refused (409): the slot may be someone
  else's by now.
* **Consolidation**: when an item has K answers, :func:`labeling.consolidation.consolidate_item`
  (the portal path of the same library GT's post-label Lambda uses) with the job's last
  :class:`JobReport` as ``job_state``. The item's agreement is the lower of its label agreement (its
  contribution to Fleiss' kappa) and its ROIs' mean IoU, where present. At or above the job's
  threshold the consolidated label is final; below it the item goes to the review queue. Closing a
  job consolidates every answered item with :func:`consolidate_job` (Dawid–Skene over the whole
  job), keeps the job report, and consolidates items left with fewer than K answers.
* **Review** (:func:`review_decide`): accept the consolidated label, or replace it with an edited
  answer (validated like any answer; confidences 1.0, the reviewer's decision).
* **Consistency**: a label's ROIs follow its present/absent, by the consolidation library's one rule
  (:mod:`labeling.consolidation.consistency`): consolidated content (hence "accept") is reconciled
  there, and a single answer (annotator or reviewer edit) marking a label absent while drawing an ROI
  of it is refused.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from sqlalchemy import bindparam, delete, exists, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value

from labeling.consolidation import ItemAnswers, JobReport, WorkerAnswer, consolidate_item, consolidate_job
from labeling.consolidation.consistency import contradictions
from labeling.contracts.answer import parse_answer
from labeling.contracts.errors import ContractError
from labeling.contracts.geometry import ImageGeometry
from labeling.contracts.ids import validate_instance_id
from labeling.contracts.manifest_line import GEOMETRY_KEYS
from labeling.manifest.build import KNOWN_KEYS, ManifestLine
from labeling.portal.models import FLAG_REASONS, SKIPPED, Assignment, Item, Job, JsonType, User, utcnow
from labeling.contracts.schema import LabelSchema

JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]{0,62}")
LABEL_ATTRIBUTE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_]{0,126}")


def answered():
    """The SQL condition of an assignment that carries an answer (not open, skipped or flagged)."""
    return (Assignment.submitted_at.is_not(None)) & Assignment.flag.is_(None)


class PortalError(Exception):
    """A request the portal refuses; ``status`` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(PortalError):
    status = 404


class Forbidden(PortalError):
    status = 403


class Conflict(PortalError):
    status = 409


class Invalid(PortalError):
    status = 422


# ---------------------------------------------------------------------------------------------
# jobs


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
            raise Invalid(f"{where}: labels {list(line.labels)} differ from schema {schema.name!r}'s {names}")
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
    return LabelSchema.from_dict(job.schema, source=f"job {job.name}")


def set_job_state(session: Session, job: Job, state: str) -> Job:
    if job.state == "closed":
        raise Conflict(f"job {job.name!r} is closed")
    if state not in ("active", "paused"):
        raise Invalid(f"job state {state!r}: expected active or paused (close with close_job)")
    job.state = state
    return job


# ---------------------------------------------------------------------------------------------
# assignment


def expire_leases(session: Session, job_id: int, now: dt.datetime) -> int:
    """Delete expired unanswered leases of a job and give their slots back; returns how many."""
    expired = session.execute(
        delete(Assignment).where(Assignment.job_id == job_id, Assignment.submitted_at.is_(None),
                                 Assignment.lease_expires_at < now).returning(Assignment.item_id)
    ).scalars().all()
    for item_id in expired:
        session.execute(update(Item).where(Item.id == item_id).values(open_slots=Item.open_slots + 1))
    return len(expired)


def current_lease(session: Session, job_id: int, user: User, now: dt.datetime) -> Optional[Assignment]:
    return session.scalars(
        select(Assignment).where(Assignment.job_id == job_id, Assignment.user_id == user.id,
                                 Assignment.submitted_at.is_(None), Assignment.lease_expires_at >= now)
        .order_by(Assignment.id).limit(1)).first()


# The one rule of an item "open to an annotator" (one they may still be given): open, a free slot,
# and never assigned to them (leased, answered, skipped or flagged). SQL over ``items i`` with the
# parameters :job and :user; the lease statement, next_task, "n of N" and the progress all use it.
OPEN_TO_ANNOTATOR = ("i.job_id = :job AND i.state = 'open' AND i.open_slots > 0 AND NOT EXISTS "
                     "(SELECT 1 FROM assignments a WHERE a.item_id = i.id AND a.user_id = :user)")
_ITEM_I = aliased(Item, name="i")


def open_to_annotator(job_id: int, user_id: int):
    """:data:`OPEN_TO_ANNOTATOR` as a condition on ``_ITEM_I`` (the ``items i`` of an ORM query)."""
    return text(OPEN_TO_ANNOTATOR).bindparams(job=job_id, user=user_id)


# The common case of ``next`` in one statement: the job (active), the annotator's live lease, else the
# first free item (locked SKIP LOCKED, its slot taken, a lease inserted), with what the task needs — the
# job's name and schema, the item, "n of N" and the likely next item to prefetch. The final SELECT sees
# the snapshot before the CTE's writes, hence ``i.id <> lease.item_id``. No row: the job is not active,
# or nothing is free without waiting or sweeping → the general path (next_task).
_LEASE_AND_FETCH = text("""
WITH job AS (SELECT id, name, schema, lease_seconds FROM jobs WHERE id = :job AND state = 'active'),
cur AS (
  SELECT id, item_id, lease_expires_at FROM assignments
  WHERE EXISTS (SELECT 1 FROM job) AND job_id = :job AND user_id = :user AND submitted_at IS NULL
    AND lease_expires_at >= :now
  ORDER BY id LIMIT 1),
pick AS (
  SELECT i.id FROM items i
  WHERE EXISTS (SELECT 1 FROM job) AND NOT EXISTS (SELECT 1 FROM cur) AND {open}
  ORDER BY i.position LIMIT 1 FOR UPDATE OF i SKIP LOCKED),
taken AS (
  UPDATE items SET open_slots = items.open_slots - 1 FROM pick WHERE items.id = pick.id RETURNING items.id),
ins AS (
  INSERT INTO assignments (job_id, item_id, user_id, leased_at, lease_expires_at)
  SELECT :job, taken.id, :user, :now, :now + make_interval(secs => job.lease_seconds) FROM taken, job
  RETURNING id, item_id, lease_expires_at),
lease AS (SELECT id, item_id, lease_expires_at FROM cur UNION ALL SELECT id, item_id, lease_expires_at FROM ins)
SELECT lease.id, lease.item_id, lease.lease_expires_at, it.source, it.line, it.geometry,
  job.name AS job_name, job.schema AS job_schema,
  (SELECT count(*) FROM assignments a
   WHERE a.job_id = :job AND a.user_id = :user AND a.submitted_at IS NOT NULL) AS finished,
  (SELECT count(*) FROM items i WHERE {open} AND i.id <> lease.item_id) AS available,
  up.id AS upcoming_item, up.source AS upcoming
FROM lease JOIN items it ON it.id = lease.item_id CROSS JOIN job
LEFT JOIN LATERAL (
  SELECT i.id, i.source FROM items i WHERE {open} AND i.id <> lease.item_id
  ORDER BY i.position LIMIT 1) up ON true
""".format(open=OPEN_TO_ANNOTATOR))


@dataclass(frozen=True)
class JobRef:
    """What a task names of its job (the fast path reads these without loading the Job row)."""

    id: int
    name: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class Task:
    """A leased item and what the annotator's page needs about it."""

    assignment_id: int
    item_id: int
    lease_expires_at: dt.datetime
    source: str
    line: dict[str, Any]
    geometry: Optional[dict[str, Any]]
    position: int
    total: int
    upcoming: Optional[str]  # the source of the item the annotator would most likely get next
    submitted: bool = False
    upcoming_item: Optional[int] = None  # that item's id (the browser prefetches its image)


def lease_and_fetch(session: Session, job_id: int, user: User,
                    now: Optional[dt.datetime] = None) -> tuple[JobRef, Optional[Task]]:
    """:func:`next_task` + the task's data: one statement in the common case, else the general path
    (which also says why a job that is missing or not active gives no task)."""
    now = now or utcnow()
    if user.role != "annotator":
        raise Forbidden("only annotators take labeling tasks")
    row = session.execute(_LEASE_AND_FETCH, {"job": job_id, "user": user.id, "now": now}).first()
    if row is not None:
        return JobRef(job_id, row.job_name, row.job_schema), Task(
            row.id, row.item_id, row.lease_expires_at, row.source, row.line, row.geometry,
            int(row.finished) + 1, int(row.finished) + 1 + int(row.available), row.upcoming,
            upcoming_item=row.upcoming_item)
    job = get_job(session, job_id)
    ref = JobRef(job.id, job.name, job.schema)
    lease = next_task(session, job, user, now)
    return ref, (None if lease is None else task_of(session, job, user, lease))


def task_of(session: Session, job: Job, user: User, assignment: Assignment) -> Task:
    item = session.get(Item, assignment.item_id)
    assert item is not None
    position, upcoming = queue_position(session, job, user)
    return Task(assignment.id, item.id, assignment.lease_expires_at, item.source, item.line, item.geometry,
                position["position"], position["total"], upcoming and upcoming[1], assignment.submitted_at is not None,
                upcoming_item=upcoming and upcoming[0])


SWEEP_INTERVAL_S = 15.0
_last_sweep: dict[int, dt.datetime] = {}  # job id → last expiry sweep in this process


def next_task(session: Session, job: Job, user: User, now: Optional[dt.datetime] = None) -> Optional[Assignment]:
    """The annotator's live lease, or a newly leased item; None when nothing is left for them.

    Expired leases are swept at most every SWEEP_INTERVAL_S per job and process, and always before
    answering "nothing left" (a DELETE per request was most of the cost of ``next`` under load)."""
    now = now or utcnow()
    if user.role != "annotator":
        raise Forbidden("only annotators take labeling tasks")
    if job.state != "active":
        raise Conflict(f"job {job.name!r} is {job.state}")
    lease = current_lease(session, job.id, user, now)
    if lease is not None:
        return lease
    last = _last_sweep.get(job.id)
    swept = last is None or abs((now - last).total_seconds()) >= SWEEP_INTERVAL_S
    if swept:
        expire_leases(session, job.id, now)
        _last_sweep[job.id] = now
    query = select(_ITEM_I).where(open_to_annotator(job.id, user.id)).order_by(_ITEM_I.position).limit(1)
    item = session.scalars(query.with_for_update(skip_locked=True)).first()
    if item is None and not swept:
        expire_leases(session, job.id, now)
        _last_sweep[job.id] = now
        item = session.scalars(query.with_for_update(skip_locked=True)).first()
    if item is None:
        # Every candidate may just be locked by other annotators' assignments in flight: wait for
        # them (milliseconds) and re-check their free slots, rather than answer "nothing left".
        item = session.scalars(query.with_for_update()).first()
    if item is None:
        return None
    item.open_slots -= 1
    lease = Assignment(job_id=job.id, item_id=item.id, user_id=user.id, leased_at=now,
                       lease_expires_at=now + dt.timedelta(seconds=job.lease_seconds))
    session.add(lease)
    session.flush()
    return lease


def get_assignment(session: Session, assignment_id: int, user: User, *, lock: bool = False) -> Assignment:
    """The user's own assignment; anyone else's is reported as missing (no probing of other ids)."""
    query = select(Assignment).where(Assignment.id == assignment_id, Assignment.user_id == user.id)
    if lock:
        query = query.with_for_update()
    assignment = session.scalars(query).first()
    if assignment is None:
        raise NotFound(f"assignment {assignment_id}: not found")
    return assignment


def can_view_item(session: Session, item: Item, user: User) -> bool:
    """Reviewers and admins see every item; an annotator only items assigned to them (leased or answered)."""
    if user.role in ("admin", "reviewer"):
        return True
    return session.scalar(select(Assignment.id).where(Assignment.item_id == item.id,
                                                      Assignment.user_id == user.id).limit(1)) is not None


def item_source_for(session: Session, item_id: int, user: User, *, prefetch: bool = False) -> str:
    """The Orthanc ID of an item the user may see (the image route): one statement. ``prefetch``: the
    caller checked a prefetch token for this item (offered as the annotator's likely next item), so an
    annotator may read it while it is still open, before it is leased to them."""
    query = select(Item.source).where(Item.id == item_id)
    if prefetch:
        query = query.where(Item.state == "open")
    elif user.role not in ("admin", "reviewer"):
        query = query.where(exists().where(Assignment.item_id == Item.id, Assignment.user_id == user.id))
    source = session.scalar(query)
    if source is None:
        raise NotFound(f"item {item_id}: not found")
    return source


def get_item_for(session: Session, item_id: int, user: User) -> Item:
    item = session.get(Item, item_id)
    if item is None or not can_view_item(session, item, user):
        # Same answer for "missing" and "not yours": ids of other jobs' items are not confirmed.
        raise NotFound(f"item {item_id}: not found")
    return item


# ---------------------------------------------------------------------------------------------
# answers


def validate_answer(schema: LabelSchema, raw: Any, *, image: Optional[Mapping[str, Any]] = None,
                    require_all: bool = True) -> dict[str, Any]:
    """One annotator's answer checked against the schema and, when ``image`` gives ``rows`` and
    ``columns`` (the item's geometry recorded from Orthanc at job creation, :func:`item_geometry`),
    against the image by the label contract (:func:`labeling.contracts.answer.parse_answer`: image
    size, frame in range, ROI points inside, bounded ROIs and points); an ROI of a label the answer
    marks absent is refused (:mod:`labeling.consolidation.consistency`). Returns the canonical label
    shape, with ``image`` filled in from the geometry when the answer left it out."""
    names = list(schema.label_names)
    geometry = None
    if image and image.get("rows") and image.get("columns"):
        # a consolidated image names its frame, not the frame count: frames up to it are allowed
        frames = image.get("frames") or int(image.get("frame") or 0) + 1
        geometry = ImageGeometry(int(image["rows"]), int(image["columns"]), int(frames))
    try:
        parsed = parse_answer(raw, names, geometry=geometry)
    except ContractError as exc:
        raise Invalid(f"answer: {exc}") from None
    if parsed.rois and not schema.has_rois:
        raise Invalid(f"answer: rois: schema {schema.name!r} is classification only")
    for index, roi in enumerate(parsed.rois):
        allowed = schema.label(roi.label).shapes
        if roi.shape not in allowed:
            raise Invalid(f"answer: rois[{index}].shape: {roi.shape!r} is not allowed for label "
                          f"{roi.label!r} (allowed: {', '.join(allowed)})")
    for index in contradictions(parsed.labels, [roi.label for roi in parsed.rois]):
        label = parsed.rois[index].label
        raise Invalid(f"answer: rois[{index}]: an ROI of {label!r}, which this answer marks absent "
                      f"(mark {label!r} present or remove the ROI)")
    if parsed.uncertain and not schema.uncertain:
        raise Invalid(f"answer: labels: {list(parsed.uncertain)} answered 'uncertain', which schema "
                      f"{schema.name!r} does not offer (present or absent)")
    if require_all and schema.has_classification and schema.required.labels:
        missing = [name for name in names if name not in parsed.labels and name not in parsed.uncertain]
        if missing:
            raise Invalid(f"answer: labels: no {'present/absent/uncertain' if schema.uncertain else 'present/absent'} "
                          f"answer for {missing}")
    out: dict[str, Any] = {
        # schema order; an uncertain label keeps its entry (no vote in consolidation, shown to reviewers)
        "labels": [{"name": n, "present": parsed.labels[n]} if n in parsed.labels else {"name": n, "uncertain": True}
                   for n in names if n in parsed.labels or n in parsed.uncertain],
        # the contract's ROI form, less the annotator's own confidence (consolidation sets that);
        # a series answer's instance/frame stay with each ROI
        "rois": [{k: v for k, v in r.to_dict().items() if k != "confidence"} for r in parsed.rois],
    }
    if parsed.image is not None:
        out["image"] = parsed.image.to_dict()
    elif geometry is not None:
        out["image"] = {"rows": geometry.rows, "columns": geometry.columns, "frame": 0}
    return out


def item_geometry(item: Item) -> Optional[dict[str, Any]]:
    """The geometry answers are checked against: recorded from Orthanc at job creation, else (jobs
    created before revision 0002) the manifest line's own geometry keys, if any."""
    return item.geometry or ({k: item.line[k] for k in GEOMETRY_KEYS if k in item.line} or None)


@dataclass(frozen=True)
class SubmitResult:
    assignment_id: int
    item_id: int
    item_state: str
    consolidated: bool


# Store an answer and count the item's answers, this one included, in one statement: run after the
# item's row lock was taken, so its snapshot sees every answer committed before (READ COMMITTED).
_STORE_ANSWER = text("""
WITH stored AS (UPDATE assignments SET answer = :answer, submitted_at = :now WHERE id = :id RETURNING id)
SELECT (SELECT count(*) FROM stored) + count(*) FROM assignments
WHERE item_id = :item AND submitted_at IS NOT NULL AND flag IS NULL AND id <> :id
""").bindparams(bindparam("answer", type_=JsonType))


def submit_answer(session: Session, assignment_id: int, user: User, raw: Any,
                  now: Optional[dt.datetime] = None) -> SubmitResult:
    """Store the annotator's answer to their open lease; consolidate the item when it has K answers.
    The assignment and its item are locked and read with their job in one statement."""
    now = now or utcnow()
    found = session.execute(
        select(Assignment, Item, Job).join(Item, Item.id == Assignment.item_id).join(Job, Job.id == Assignment.job_id)
        .where(Assignment.id == assignment_id, Assignment.user_id == user.id)
        .with_for_update(of=[Assignment, Item]).execution_options(populate_existing=True)).first()
    if found is None:
        raise NotFound(f"assignment {assignment_id}: not found")
    assignment, item, job = found
    if assignment.submitted_at is not None:
        raise Conflict(f"assignment {assignment_id}: already answered")
    if job.state == "closed":
        raise Conflict(f"job {job.name!r} is closed")
    if assignment.lease_expires_at < now:
        session.delete(assignment)
        session.execute(update(Item).where(Item.id == assignment.item_id).values(open_slots=Item.open_slots + 1))
        raise Conflict(f"assignment {assignment_id}: the lease expired at "
                       f"{assignment.lease_expires_at.isoformat()}; take the next task")
    answer = validate_answer(job_schema(job), raw, image=item_geometry(item))
    count = session.execute(_STORE_ANSWER, {"answer": answer, "now": now, "id": assignment.id,
                                            "item": item.id}).scalar_one()
    set_committed_value(assignment, "answer", answer)
    set_committed_value(assignment, "submitted_at", now)
    consolidated = False
    if count >= job.annotators_per_item and item.state == "open":
        consolidate_now(session, job, item)
        consolidated = True
    return SubmitResult(assignment.id, item.id, item.state, consolidated)


def _open_assignment(session: Session, assignment_id: int, user: User) -> Assignment:
    assignment = get_assignment(session, assignment_id, user, lock=True)
    if assignment.submitted_at is not None:
        raise Conflict(f"assignment {assignment_id}: already answered, skipped or flagged")
    if get_job(session, assignment.job_id).state == "closed":
        raise Conflict("the job is closed")
    return assignment


def skip_task(session: Session, assignment_id: int, user: User, now: Optional[dt.datetime] = None) -> Assignment:
    """Give the item back: its slot returns to other annotators, and this one never gets it again."""
    assignment = _open_assignment(session, assignment_id, user)
    assignment.submitted_at, assignment.flag = now or utcnow(), SKIPPED
    session.execute(update(Item).where(Item.id == assignment.item_id).values(open_slots=Item.open_slots + 1))
    return assignment


MAX_COMMENT = 1000


def flag_task(session: Session, assignment_id: int, user: User, reason: str, comment: str = "",
              now: Optional[dt.datetime] = None) -> Item:
    """Flag the image (FLAG_REASONS): it leaves every annotator's queue and waits for review with the reason."""
    if reason not in FLAG_REASONS:
        raise Invalid(f"flag reason {reason!r}: expected one of {', '.join(FLAG_REASONS)}")
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT:
        raise Invalid(f"flag comment: at most {MAX_COMMENT} characters, got {len(comment)}")
    if reason == "other" and not comment:
        raise Invalid("flag comment: say what is wrong when the reason is 'other'")
    assignment = _open_assignment(session, assignment_id, user)
    assignment.submitted_at, assignment.flag, assignment.comment = now or utcnow(), reason, comment or None
    item = session.scalars(select(Item).where(Item.id == assignment.item_id).with_for_update().execution_options(populate_existing=True)).one()
    if item.state == "open":
        item.state = "review"
    return item


def flags_by_item(session: Session, item_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Flags raised on the items (one query): item id → [annotator, reason key and text, comment]."""
    rows = session.execute(
        select(Assignment.item_id, User.name, Assignment.flag, Assignment.comment)
        .join(User, User.id == Assignment.user_id)
        .where(Assignment.item_id.in_(list(item_ids)), Assignment.flag.is_not(None), Assignment.flag != SKIPPED)
        .order_by(Assignment.submitted_at)).all() if item_ids else []
    out: dict[int, list[dict[str, Any]]] = {}
    for item_id, name, flag, comment in rows:
        out.setdefault(item_id, []).append(
            {"annotator": name, "reason": flag, "text": FLAG_REASONS.get(flag, flag), "comment": comment})
    return out


def item_flags(session: Session, item: Item) -> list[dict[str, Any]]:
    """Flags raised on an item: annotator, reason key and text, comment (for reviewers)."""
    return flags_by_item(session, [item.id]).get(item.id, [])


# ---------------------------------------------------------------------------------------------
# consolidation


def item_answers(session: Session, item: Item) -> list[tuple[str, dict[str, Any], Assignment]]:
    rows = session.execute(
        select(User.name, Assignment).join(User, User.id == Assignment.user_id)
        .where(Assignment.item_id == item.id, answered())
        .order_by(Assignment.submitted_at, Assignment.id)).all()
    return [(name, a.answer, a) for name, a in rows]


def item_agreement(content: Mapping[str, Any]) -> Optional[float]:
    agreement = content.get("agreement") or {}
    values = [v for v in (agreement.get("labels"), agreement.get("rois_mean_iou")) if v is not None]
    return min(values) if values else None


def _apply(job: Job, item: Item, content: dict[str, Any]) -> None:
    item.consolidated = content
    item.agreement = item_agreement(content)
    if item.agreement is not None and item.agreement < job.agreement_threshold:
        item.state, item.final = "review", None
    else:
        item.state, item.final = "done", content


def consolidate_now(session: Session, job: Job, item: Item) -> dict[str, Any]:
    answers = item_answers(session, item)
    if not answers:
        raise Conflict(f"item {item.id}: no answers to consolidate")
    state = JobReport.from_dict(job.report) if job.report else None
    content = consolidate_item(ItemAnswers(str(item.id), tuple(WorkerAnswer(n, a) for n, a, _ in answers)),
                               list(job_schema(job).label_names), job_state=state)
    _apply(job, item, content)
    return content


def close_job(session: Session, job: Job, now: Optional[dt.datetime] = None) -> dict[str, Any]:
    """Close a job: drop open leases, consolidate the whole job (Dawid–Skene), finish partial items."""
    now = now or utcnow()
    if job.state == "closed":
        raise Conflict(f"job {job.name!r} is already closed")
    job.state = "closed"
    job.closed_at = now
    session.execute(delete(Assignment).where(Assignment.job_id == job.id, Assignment.submitted_at.is_(None)))
    items = session.scalars(select(Item).where(Item.job_id == job.id).order_by(Item.position)
                            .with_for_update()).all()
    by_item: dict[int, list[tuple[str, dict[str, Any], Assignment]]] = {}
    for name, assignment in session.execute(  # every answer of the job in one query
            select(User.name, Assignment).join(User, User.id == Assignment.user_id)
            .where(Assignment.job_id == job.id, answered())
            .order_by(Assignment.submitted_at, Assignment.id)).all():
        by_item.setdefault(assignment.item_id, []).append((name, assignment.answer, assignment))
    answered_items = [(item, by_item[item.id]) for item in items if item.id in by_item]
    summary = {"items": len(items), "answered": len(answered_items), "consolidated_at_close": 0, "errors": []}
    if not answered_items:
        return summary
    result = consolidate_job([ItemAnswers(str(item.id), tuple(WorkerAnswer(n, a) for n, a, _ in ans))
                              for item, ans in answered_items], list(job_schema(job).label_names))
    job.report = result.report.to_dict()
    summary["errors"] = [str(e) for e in result.errors]
    for item, _ in answered_items:
        if item.state == "open" and str(item.id) in result.items:
            _apply(job, item, result.items[str(item.id)])
            summary["consolidated_at_close"] += 1
    return summary


# ---------------------------------------------------------------------------------------------
# review


def review_count(session: Session) -> int:
    """How many items wait for review (the dashboard's figure): one COUNT, no rows loaded."""
    return session.scalar(select(func.count(Item.id)).where(Item.state == "review")) or 0


def review_queue(session: Session, job_id: Optional[int] = None) -> list[Item]:
    query = select(Item).where(Item.state == "review").order_by(Item.job_id, Item.position)
    if job_id is not None:
        query = query.where(Item.job_id == job_id)
    return list(session.scalars(query))


def review_detail(session: Session, item: Item, user: User) -> dict[str, Any]:
    if user.role not in ("admin", "reviewer"):
        raise Forbidden("only reviewers and admins see the answers of annotators")
    return {"item_id": item.id, "job_id": item.job_id, "position": item.position, "state": item.state,
            "agreement": item.agreement, "consolidated": item.consolidated, "final": item.final,
            "flags": item_flags(session, item),
            "answers": [{"annotator": name, "answer": answer} for name, answer, _ in item_answers(session, item)]}


def review_decide(session: Session, item: Item, reviewer: User, action: str,
                  answer: Any = None, now: Optional[dt.datetime] = None) -> Item:
    if reviewer.role not in ("admin", "reviewer"):
        raise Forbidden("only reviewers and admins decide reviews")
    # populate_existing: the caller loaded this row before the lock; decide on what the lock sees
    item = session.scalars(select(Item).where(Item.id == item.id).with_for_update().execution_options(populate_existing=True)).one()
    if item.state != "review":
        raise Conflict(f"item {item.id}: not waiting for review (state {item.state})")
    job = get_job(session, item.job_id)
    if action == "accept":
        if item.consolidated is None:
            raise Conflict(f"item {item.id}: nothing consolidated to accept (it was flagged); edit or exclude it")
        final = dict(item.consolidated)
    elif action == "edit":
        edited = validate_answer(job_schema(job), answer, image=item_geometry(item))
        unsure = [e["name"] for e in edited["labels"] if e.get("uncertain")]
        if unsure:  # the final label goes to the output manifest, which says present or absent
            raise Invalid(f"answer: labels: {unsure} left uncertain; a review decides present or absent")
        consolidated = item.consolidated or {}
        final = {"labels": [dict(e, confidence=1.0) for e in edited["labels"]],
                 "rois": [dict(r, confidence=1.0) for r in edited["rois"]],
                 "image": edited.get("image") or consolidated.get("image"),
                 "annotators": consolidated.get("annotators"),
                 "agreement": consolidated.get("agreement")}
        final = {k: v for k, v in final.items() if v is not None}
    elif action == "exclude":
        final = None  # not exported: the export counts it as excluded
    elif action == "reopen":
        # The flag was wrong: the item goes back to the annotators' queue; the flags become skips, so
        # their slots return to others (the flagging annotators are not offered it again).
        returned = session.execute(
            update(Assignment).where(Assignment.item_id == item.id, Assignment.flag.is_not(None),
                                     Assignment.flag != SKIPPED).values(flag=SKIPPED).returning(Assignment.id)
        ).scalars().all()
        item.open_slots += len(returned)
        item.state = "open"
        item.reviewed_by, item.reviewed_at = reviewer.id, now or utcnow()
        return item
    else:
        raise Invalid(f"review action {action!r}: expected accept, edit, exclude or reopen")
    item.final = final
    item.state = "done"
    item.reviewed_by = reviewer.id
    item.reviewed_at = now or utcnow()
    return item


# ---------------------------------------------------------------------------------------------
# progress


def _rate(durations: list[float], first: Optional[dt.datetime], last: Optional[dt.datetime]) -> dict[str, Any]:
    count = len(durations)
    hours = max(((last - first).total_seconds() if first and last else 0.0), 60.0) / 3600.0
    return {"submitted": count,
            "items_per_hour": round(count / hours, 2) if count else 0.0,
            "median_seconds": round(statistics.median(durations), 1) if durations else None}


def queue_position(session: Session, job: Job, user: User) -> tuple[dict[str, int], Optional[tuple[int, str]]]:
    """"n of N" for an annotator holding a lease — n = items they finished + 1, N = n + items still
    open to them — and the id and source of the item they would most likely get next (to prefetch its
    image): one statement."""
    open_to_me = open_to_annotator(job.id, user.id)
    finished = (select(func.count(Assignment.id)).where(
        Assignment.job_id == job.id, Assignment.user_id == user.id, Assignment.submitted_at.is_not(None))
        .scalar_subquery())
    available = select(func.count(_ITEM_I.id)).where(open_to_me).scalar_subquery()
    first_open = select(_ITEM_I.id).where(open_to_me).order_by(_ITEM_I.position).limit(1).scalar_subquery()
    source_of = select(Item.source).where(Item.id == first_open).scalar_subquery()
    done, left, item_id, source = session.execute(select(finished, available, first_open, source_of)).one()
    return {"position": int(done) + 1, "total": int(done) + 1 + int(left)}, \
        (None if item_id is None else (int(item_id), source))


def annotator_progress(session: Session, job: Job, user: User) -> dict[str, Any]:
    rows = session.execute(select(Assignment.leased_at, Assignment.submitted_at).where(
        Assignment.job_id == job.id, Assignment.user_id == user.id, answered())).all()
    durations = [(s - l).total_seconds() for l, s in rows]
    first = min((l for l, _ in rows), default=None)
    last = max((s for _, s in rows), default=None)
    remaining = session.scalar(select(func.count(_ITEM_I.id)).where(open_to_annotator(job.id, user.id))) or 0
    return {"annotator": user.name, **_rate(durations, first, last), "available": remaining,
            "finished": len(rows)}


def item_agreements(session: Session, job: Job) -> list[float]:
    """The per-item agreement of a job's consolidated items (the job page's mean and histogram)."""
    return list(session.scalars(select(Item.agreement).where(Item.job_id == job.id, Item.agreement.is_not(None))))


def job_progress(session: Session, job: Job, agreements: Optional[Sequence[float]] = None) -> dict[str, Any]:
    """Counts, answers, leases, agreement and per-annotator throughput; ``agreements``: the job's
    :func:`item_agreements` when the caller has them already."""
    states = dict(session.execute(select(Item.state, func.count(Item.id)).where(Item.job_id == job.id)
                                  .group_by(Item.state)).all())
    total = sum(states.values())
    rows = session.execute(
        select(User.name, Assignment.leased_at, Assignment.submitted_at).join(User, User.id == Assignment.user_id)
        .where(Assignment.job_id == job.id, answered())).all()
    per: dict[str, list[tuple[dt.datetime, dt.datetime]]] = {}
    for name, leased, submitted in rows:
        per.setdefault(name, []).append((leased, submitted))
    annotators = []
    for name in sorted(per):
        pairs = per[name]
        annotators.append({"annotator": name, **_rate([(s - l).total_seconds() for l, s in pairs],
                                                      min(l for l, _ in pairs), max(s for _, s in pairs))})
    leased = session.scalar(select(func.count(Assignment.id)).where(
        Assignment.job_id == job.id, Assignment.submitted_at.is_(None))) or 0
    if agreements is None:
        agreements = item_agreements(session, job)
    report_agreement = (job.report or {}).get("agreement") or {}
    return {
        "job": job.name, "job_id": job.id, "state": job.state, "annotators_per_item": job.annotators_per_item,
        "items": total, "open": states.get("open", 0), "review": states.get("review", 0),
        "done": states.get("done", 0), "answers": len(rows), "answers_needed": total * job.annotators_per_item,
        "leased": leased,
        "agreement": {"items_mean": round(sum(agreements) / len(agreements), 4) if agreements else None,
                      "labels_fleiss_kappa": report_agreement.get("labels_fleiss_kappa"),
                      "rois_mean_iou": report_agreement.get("rois_mean_iou"),
                      "threshold": job.agreement_threshold},
        "annotators": annotators,
    }


def list_jobs(session: Session, user: User) -> list[Job]:
    query = select(Job).order_by(Job.id)
    if user.role == "annotator":
        query = query.where(Job.state != "closed")
    return list(session.scalars(query))


def as_single_answer(content: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    """A consolidated ``<attr>`` content reduced to one answer (for the viewer's ``initialAnswer``)."""
    if not content:
        return None
    out = {"labels": [{"name": e["name"], "present": e["present"]} for e in content.get("labels", [])],
           "rois": [{"label": r["label"], "shape": r["shape"], "points": r["points"]}
                    for r in content.get("rois", [])]}
    if content.get("image"):
        out["image"] = content["image"]
    return out


def prelabel_for(line: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    """A manifest line's ``prelabel`` as the viewer's initial answer."""
    raw = line.get("prelabel")
    if not isinstance(raw, Mapping):
        return None
    return as_single_answer({"labels": [e for e in raw.get("labels", []) if isinstance(e, Mapping)],
                             "rois": [r for r in raw.get("rois", []) if isinstance(r, Mapping)],
                             "image": raw.get("image")})


def find_user(session: Session, name: str) -> Optional[User]:
    return session.scalars(select(User).where(User.name == name)).first()


def add_user(session: Session, name: str, role: str, password_hash: Optional[str]) -> User:
    from labeling.portal.models import ROLES

    if role not in ROLES:
        raise Invalid(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@+\-]{0,127}", name or ""):
        raise Invalid(f"user name {name!r}: letters, digits and . _ @ + - (at most 128 characters)")
    if find_user(session, name) is not None:
        raise Conflict(f"user {name!r} already exists")
    user = User(name=name, role=role, password_hash=password_hash, active=True)
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"user {name!r} already exists") from None
    return user

