"""Jobs, assignment with leases, answers, consolidation, review and progress (the portal's domain): the
rules, and one import for them all. The code lives by concern in :mod:`.creation` (jobs),
:mod:`.leasing` (assignment, skip, flag), :mod:`.answers` (one answer's checks), :mod:`.answering`
(storing, consolidation, close), :mod:`.review`, :mod:`.progress`, :mod:`.accounts` and
:mod:`.errors`; callers use ``from labeling.portal import jobs as J``.

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

from labeling.portal.models import answered
from labeling.portal.errors import (
    PortalError, NotFound, Forbidden, Conflict, Invalid)
from labeling.portal.answers import (
    validate_answer, item_geometry, as_single_answer, prelabel_for)
from labeling.portal.creation import (
    JOB_NAME, LABEL_ATTRIBUTE, validate_label_attribute, check_source, create_job, get_job, job_schema,
    set_job_state, list_jobs)
from labeling.portal.leasing import (
    expire_leases, current_lease, OPEN_TO_ANNOTATOR, open_to_annotator, JobRef, Task, lease_and_fetch,
    task_of, SWEEP_INTERVAL_S, next_task, get_assignment, can_view_item, ITEM_READS, get_item_for,
    queue_position, skip_task, MAX_COMMENT, flag_task)
from labeling.portal.answering import (
    SubmitResult, submit_answer, submit_answer_on, item_answers, item_agreement, consolidate_now, close_job)
from labeling.portal.review import (
    flags_by_item, item_flags, review_count, review_queue, review_detail, review_decide)
from labeling.portal.progress import (
    annotator_progress, item_agreements, job_progress)
from labeling.portal.accounts import (
    find_user, add_user)

__all__ = [
    "answered", "PortalError", "NotFound", "Forbidden", "Conflict", "Invalid", "validate_answer",
    "item_geometry", "as_single_answer", "prelabel_for", "JOB_NAME", "LABEL_ATTRIBUTE",
    "validate_label_attribute", "check_source", "create_job", "get_job", "job_schema", "set_job_state",
    "list_jobs", "expire_leases", "current_lease", "OPEN_TO_ANNOTATOR", "open_to_annotator", "JobRef", "Task",
    "lease_and_fetch", "task_of", "SWEEP_INTERVAL_S", "next_task", "get_assignment", "can_view_item",
    "ITEM_READS", "get_item_for", "queue_position", "skip_task", "MAX_COMMENT", "flag_task",
    "SubmitResult", "submit_answer", "submit_answer_on", "item_answers", "item_agreement", "consolidate_now", "close_job",
    "flags_by_item", "item_flags", "review_count", "review_queue", "review_detail", "review_decide",
    "annotator_progress", "item_agreements", "job_progress", "find_user", "add_user"]
