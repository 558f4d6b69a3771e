"""Consolidation: several annotators' answers for an object -> one label with confidence.

Pure Python + numpy (no SciPy, no framework); used by the Ground Truth post-annotation Lambda, the
portal and training. Input per object: the workers' answers in the single-annotator label shape of
docs/architecture.md (validated by the label contract, :mod:`labeling.contracts.answer`), with
worker ids, and the image's recorded geometry when known; plus the schema's label names. Output per object: the ``<attr>``
content of the label shape::

    {"labels": [{"name", "present", "confidence", "uncertain_answers"?}, ...one per schema label, schema order],
     "rois":   [{"label", "shape", "points", "confidence"}, ...],
     "image":  {...}, "annotators": K,
     "agreement": {"labels": float | None, "rois_mean_iou": float | None}}

and per job a :class:`JobReport` (worker qualities, per-label method and agreement, job agreement).

Public API::

    consolidate_job(items, label_names, *, roi_iou_threshold=None, settings=None, job_state=None,
                    uncertain_policy=None)
        -> JobResult(items={item_id: content}, errors=[ConsolidationError], report=JobReport)
    consolidate_item(item, label_names, *, roi_iou_threshold=None, settings=None, job_state=None,
                     uncertain_policy=None)
        -> content  (raises ConsolidationError)
    ItemAnswers(item_id, [WorkerAnswer(worker_id, content), ...], geometry=None); ItemAnswers.from_pairs(...)
    parse_worker_content(content)  # mapping | JSON text | {"annotation": JSON text}
    JobReport.to_dict() / JobReport.from_dict(d)  # persist, then pass back as job_state

Method, in brief (details and reasons in each module's docstring):

* **Uncertain answers** (:mod:`.uncertain`, the one place): an answer's "uncertain" counts as the
  schema's ``uncertain_policy`` says — no vote (default), an absent vote or a present vote
  (CheXpert's U-Ignore / U-Zeros / U-Ones) — in every path below; each label's entry says how many
  answers were uncertain (``uncertain_answers``, left out when none was).
* **Labels** (:mod:`.classification`): each label is a binary problem solved by Dawid–Skene EM
  (Dawid & Skene 1979, "Maximum likelihood estimation of observer error-rates using the EM
  algorithm") over all objects of the job, with per-worker 2x2 confusion matrices, Dirichlet
  smoothing, a class prior, majority-vote initialisation, a log-likelihood stopping rule, and a
  majority-vote fallback when EM degenerates (non-finite values, or a no-better-than-chance,
  label-switched solution). This is the family of algorithm SageMaker Ground Truth's built-in
  classification consolidation uses (GT docs, "Annotation consolidation": "a variant of the
  Expectation Maximization approach ... estimates parameters for each worker and uses Bayesian
  inference to estimate the true class"). ``present`` is ``P(present) > 0.5``; ``confidence`` is
  the posterior probability of the consolidated answer.
* **Single-worker objects** (one answer for a label): the answer is kept as given — nobody can
  outvote it, and GT likewise reports a lone worker's answer — and its confidence is the posterior
  ``P(answer is right)`` under a *uniform* class prior with that worker's estimated sensitivity and
  specificity for the label: ``sens / (sens + 1 - spec)`` for "present" and
  ``spec / (spec + 1 - sens)`` for "absent". The estimates come from the worker's answers on
  objects shared with other workers in this job (plus ``job_state``); a worker with none gets the
  prior accuracy 2/3 (from the Dirichlet prior), hence confidence 0.667. A uniform prior, not the
  label's prevalence, so a rare finding reported by a lone reader is not silently turned into
  "absent". A confidence below 0.5 means the worker is estimated worse than chance on that label.
  An object nobody answered for a label gets ``present = prior > 0.5`` with the prior's confidence.
* **ROIs** (:mod:`.rois`): match by IoU within (label, shape) groups — exact for rectangles,
  rasterised for ellipses and polygons, distance for points — with the Hungarian method, fuse
  (coordinate mean; polygon medoid), confidence = cluster size / K, keep clusters drawn by at least
  ceil(K/2) workers. Series and multi-frame tasks (ROIs with ``instance``/``frame``,
  :mod:`.slices`): the same rules within each slice, never across slices.
* **Consistency** (:mod:`.consistency`, the one place): a label's ROIs follow its consolidated
  present/absent (ROIs of an absent label are dropped); a label nobody answered is present exactly
  when an ROI of it survives.
* **Agreement** (:mod:`.agreement`): Fleiss' kappa (Fleiss 1971) and Krippendorff's nominal alpha
  (Krippendorff 2011) per label and pooled over all labels for the job; per object, its
  contribution to the job's Fleiss kappa; ROIs: mean IoU of matched shape pairs.
"""

from __future__ import annotations

from .agreement import chance_agreement, fleiss_kappa, krippendorff_alpha_nominal, unit_agreement
from .assignment import linear_sum_assignment
from .classification import BinaryResult, dawid_skene_binary, majority_vote, posterior_fixed
from .inputs import (
    SHAPES,
    ConsolidationError,
    ItemAnswers,
    WorkerAnswer,
    parse_item,
    parse_worker_content,
)
from .uncertain import UNCERTAIN_POLICIES
from .job import (
    DEFAULT_SETTINGS,
    JobReport,
    JobResult,
    LabelQuality,
    LabelSummary,
    Settings,
    WorkerQuality,
    consolidate_item,
    consolidate_job,
)
from .rois import box_iou, shape_iou

__all__ = [
    "DEFAULT_SETTINGS", "SHAPES", "BinaryResult", "ConsolidationError", "ItemAnswers", "JobReport",
    "JobResult", "LabelQuality", "LabelSummary", "Settings", "WorkerAnswer", "WorkerQuality",
    "box_iou", "chance_agreement", "consolidate_item", "consolidate_job", "dawid_skene_binary",
    "fleiss_kappa", "krippendorff_alpha_nominal", "linear_sum_assignment", "majority_vote",
    "parse_item", "parse_worker_content", "posterior_fixed", "shape_iou", "unit_agreement", "UNCERTAIN_POLICIES",
]
