"""Job- and item-level consolidation: worker answers in, label-shape ``<attr>`` content out."""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from . import agreement as agr
from .classification import PRIOR_MODEL, BinaryResult, dawid_skene_binary, posterior_fixed
from .inputs import ConsolidationError, ItemAnswers, ParsedItem, parse_item
from .consistency import reconcile
from .rois import worker_order_for
from .slices import consolidate_item_rois, is_slice_item, slice_agreement
from .uncertain import DEFAULT_UNCERTAIN_POLICY, check_uncertain_policy, uncertain_counts, votes


@dataclass(frozen=True)
class Settings:
    """Tunable parameters (defaults are the documented ones).

    ``alpha_correct``/``alpha_wrong``: Dirichlet pseudo-counts on each worker's confusion-matrix
    rows (diagonal / off-diagonal); their ratio is the prior accuracy of an unknown worker (2/3).
    ``prior_smoothing``: Laplace pseudo-count on each class of a label's prior. ``tol`` and
    ``max_iter``: EM stopping rule. ROI parameters: see :mod:`labeling.consolidation.rois`.
    ``uncertain_policy``: what an "uncertain" answer counts as (the schema's; :mod:`.uncertain`).
    """

    alpha_correct: float = 2.0
    alpha_wrong: float = 1.0
    prior_smoothing: float = 1.0
    tol: float = 1e-7
    max_iter: int = 100
    roi_iou_threshold: float = 0.5
    point_distance: float = 0.02
    point_distance_px: float = 20.0
    roi_min_support: int | None = None
    raster_grid: int = 64
    uncertain_policy: str = DEFAULT_UNCERTAIN_POLICY

    @property
    def prior_accuracy(self) -> float:
        return self.alpha_correct / (self.alpha_correct + self.alpha_wrong)

    def __post_init__(self) -> None:
        if not (self.alpha_correct > self.alpha_wrong > 0):
            raise ValueError("Settings: need alpha_correct > alpha_wrong > 0")
        if not (0.0 < self.roi_iou_threshold <= 1.0):
            raise ValueError("Settings: roi_iou_threshold must be in (0, 1]")
        if self.max_iter < 1 or self.tol <= 0:
            raise ValueError("Settings: need max_iter >= 1 and tol > 0")
        if self.roi_min_support is not None and self.roi_min_support < 1:
            raise ValueError("Settings: roi_min_support must be >= 1")
        if self.raster_grid < 8:
            raise ValueError("Settings: raster_grid must be >= 8")
        check_uncertain_policy(self.uncertain_policy)  # a ContractError, hence a ValueError


DEFAULT_SETTINGS = Settings()


@dataclass
class LabelQuality:
    """One worker on one label: smoothed sensitivity/specificity and the expected confusion counts
    (soft counts from answers on objects with >= 2 answers, plus counts carried from ``job_state``)."""

    sensitivity: float
    specificity: float
    tp: float = 0.0
    fn: float = 0.0
    tn: float = 0.0
    fp: float = 0.0
    answers: int = 0

    def counts(self) -> list[float]:
        return [self.tp, self.fn, self.tn, self.fp]


@dataclass
class WorkerQuality:
    """A worker's estimated quality: per label, and ``accuracy`` overall — the smoothed share of
    expected-correct rated answers over all labels, ``(tp + tn + a_c) / (rated + a_c + a_w)``."""

    worker_id: str
    accuracy: float
    answers: int
    labels: dict[str, LabelQuality] = field(default_factory=dict)


@dataclass
class LabelSummary:
    """Job-level facts about one label."""

    name: str
    method: str                 # "dawid-skene" | "majority-vote" | "prior-model" | "none"
    reason: str | None
    iterations: int
    converged: bool
    prior: float                # estimated P(present)
    present_share: float        # share of objects consolidated as present
    answers: int
    fleiss_kappa: float | None
    krippendorff_alpha: float | None
    uncertain: int = 0          # answers that marked the label uncertain (counted in ``answers`` as votes
                                #   unless the policy is "ignore"; :mod:`.uncertain`)


@dataclass
class JobReport:
    """The per-job consolidation report (JSON-able via :meth:`to_dict`; reload with :meth:`from_dict`
    and pass as ``job_state`` to carry worker qualities into the next job or the portal's items)."""

    label_names: list[str]
    items: int
    errors: int
    annotators_mean: float | None
    labels: dict[str, LabelSummary]
    workers: dict[str, WorkerQuality]
    agreement: dict[str, float | int | None]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobReport:
        labels = {k: LabelSummary(**v) for k, v in data.get("labels", {}).items()}
        workers = {}
        for k, v in data.get("workers", {}).items():
            v = dict(v)
            v["labels"] = {n: LabelQuality(**q) for n, q in v.get("labels", {}).items()}
            workers[k] = WorkerQuality(**v)
        return cls(
            label_names=list(data.get("label_names", [])), items=int(data.get("items", 0)),
            errors=int(data.get("errors", 0)), annotators_mean=data.get("annotators_mean"),
            labels=labels, workers=workers, agreement=dict(data.get("agreement", {})),
            settings=dict(data.get("settings", {})),
        )


@dataclass
class JobResult:
    """``items``: item id -> consolidated ``<attr>`` content, in input order, bad items left out;
    ``errors``: one :class:`ConsolidationError` per bad item; ``report``: the job report."""

    items: dict[str, dict[str, Any]]
    errors: list[ConsolidationError]
    report: JobReport


def _settings(settings: Settings | None, roi_iou_threshold: float | None,
              uncertain_policy: str | None) -> Settings:
    s = settings or DEFAULT_SETTINGS
    if roi_iou_threshold is not None:
        s = replace(s, roi_iou_threshold=roi_iou_threshold)
    if uncertain_policy is not None:
        s = replace(s, uncertain_policy=uncertain_policy)
    return s


def _check_label_names(label_names: Sequence[str]) -> list[str]:
    if isinstance(label_names, str) or not isinstance(label_names, Sequence):
        raise ValueError("label_names must be a sequence of strings")
    names = list(label_names)
    if not names:
        raise ValueError("label_names must not be empty")
    for n in names:
        if not isinstance(n, str) or not n:
            raise ValueError(f"label name {n!r} is not a non-empty string")
    if len(set(names)) != len(names):
        raise ValueError(f"label_names has duplicates: {names}")
    return names


def _r(x: float | None, nd: int = 4) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), nd)


def _single_answer_posterior(y: np.ndarray, sens: np.ndarray, spec: np.ndarray) -> np.ndarray:
    """P(present | one answer) under a uniform class prior (the single-worker rule)."""
    p_yes = sens / (sens + (1.0 - spec))
    p_no = (1.0 - sens) / ((1.0 - sens) + spec)
    return np.where(y, p_yes, p_no)


@dataclass
class _Arrays:
    """Per label: answer arrays (object index, worker index, 0/1)."""

    obj: list[np.ndarray]
    wk: list[np.ndarray]
    y: list[np.ndarray]


def _flatten(parsed: Sequence[ParsedItem], names: Sequence[str], worker_index: dict[str, int],
             policy: str) -> tuple[_Arrays, np.ndarray]:
    """Every label vote as arrays per label; an "uncertain" answer votes as ``policy`` says."""
    lab_index = {n: j for j, n in enumerate(names)}.__getitem__
    objs: list[int] = []
    wks: list[int] = []
    labs: list[int] = []
    ys: list[bool] = []
    annotators = np.empty(len(parsed), dtype=np.int64)
    for i, item in enumerate(parsed):
        annotators[i] = len(item.answers)
        for a in item.answers:
            w = worker_index.get(a.worker_id)
            if w is None:
                w = worker_index[a.worker_id] = len(worker_index)
            answer_votes = votes(a, policy)
            n_l = len(answer_votes)
            objs.extend([i] * n_l)
            wks.extend([w] * n_l)
            labs.extend(map(lab_index, answer_votes))
            ys.extend(answer_votes.values())
    obj = np.array(objs, dtype=np.intp)
    wk = np.array(wks, dtype=np.intp)
    lab = np.array(labs, dtype=np.intp)
    y = np.array(ys, dtype=bool)
    order = np.argsort(lab, kind="stable")
    bounds = np.searchsorted(lab[order], np.arange(len(names) + 1))
    parts = [order[bounds[j]:bounds[j + 1]] for j in range(len(names))]
    arrays = _Arrays(obj=[obj[p] for p in parts], wk=[wk[p] for p in parts], y=[y[p] for p in parts])
    return arrays, annotators


def _carried_counts(job_state: JobReport | None, name: str, worker_ids: Sequence[str]) -> np.ndarray | None:
    if job_state is None:
        return None
    out = np.zeros((len(worker_ids), 4))
    for w, wid in enumerate(worker_ids):
        q = job_state.workers.get(wid)
        if q is not None and name in q.labels:
            out[w] = q.labels[name].counts()
    return out if out.any() else None


def _label_block(
    names: Sequence[str], arrays: _Arrays, n_obj: int, fit: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[BinaryResult]]:
    """Posterior, vote counts (ones, n) per object x label, using ``fit(j) -> BinaryResult``."""
    L = len(names)
    post = np.empty((n_obj, L))
    ones = np.zeros((n_obj, L))
    n = np.zeros((n_obj, L))
    results = []
    for j in range(L):
        obj, wk, y = arrays.obj[j], arrays.wk[j], arrays.y[j]
        res = fit(j)
        q = res.posterior.copy()
        n_j = np.bincount(obj, minlength=n_obj).astype(float)
        ones_j = np.bincount(obj, weights=y.astype(float), minlength=n_obj)
        single = n_j[obj] == 1
        if single.any():
            w = wk[single]
            q[obj[single]] = _single_answer_posterior(y[single], res.sensitivity[w], res.specificity[w])
        none = n_j == 0
        if none.any():
            q[none] = res.prior
        post[:, j] = q
        ones[:, j] = ones_j
        n[:, j] = n_j
        results.append(res)
    return post, ones, n, results


def _agreements(ones: np.ndarray, n: np.ndarray, p_e: float | None) -> np.ndarray:
    p_i = agr.unit_agreement(agr.binary_counts(ones.ravel(), n.ravel())).reshape(ones.shape)
    with np.errstate(invalid="ignore"):
        valid = ~np.isnan(p_i)
        cnt = valid.sum(axis=1)
        p_obj = np.where(cnt > 0, np.nansum(p_i, axis=1) / np.maximum(cnt, 1), np.nan)
    return agr.object_agreement(p_obj, p_e)


def _item_content(names: Sequence[str], present: list[bool], conf: list[float], rois: list[dict],
                  image: dict | None, annotators: int, label_agreement: float | None,
                  roi_ious: list[float], answered: Sequence[bool], uncertain: Sequence[int]) -> dict[str, Any]:
    present, conf, rois = reconcile(names, present, conf, rois, answered)  # the one consistency rule
    return {
        # uncertain_answers: how many answers said "uncertain" (whatever they counted as), for reviewers
        "labels": [{"name": n, "present": p, "confidence": round(c, 4), **({"uncertain_answers": u} if u else {})}
                   for n, p, c, u in zip(names, present, conf, uncertain)],
        "rois": rois,
        "image": dict(image) if image else {},
        "annotators": annotators,
        "agreement": {
            "labels": _r(label_agreement),
            "rois_mean_iou": _r(sum(roi_ious) / len(roi_ious)) if roi_ious else None,
        },
    }


def _with_slices(content: dict[str, Any], item: ParsedItem, s: Settings) -> dict[str, Any]:
    """A series item's content gets ``agreement.slices`` (:func:`.slices.slice_agreement`, on the
    ROIs kept after the consistency rule); an image item's is returned unchanged."""
    if is_slice_item(item):
        content["agreement"]["slices"] = slice_agreement(item, content["rois"], slice_order=item.slice_order,
                                                         iou_threshold=s.roi_iou_threshold)
    return content


def _roi_kwargs(s: Settings) -> dict[str, Any]:
    return dict(iou_threshold=s.roi_iou_threshold, point_distance=s.point_distance,
                point_distance_px=s.point_distance_px, min_support=s.roi_min_support,
                grid=s.raster_grid)


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector (restored on exit).

    Parsing a job allocates hundreds of thousands of small long-lived objects; each allocation burst
    triggers generation-2 collections that re-traverse all of them (measured: about +30 % to +100 %
    wall time at 100k objects). Nothing here creates reference cycles, so pausing is safe. The
    switch is process-wide: another thread allocating meanwhile just sees fewer collections.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def consolidate_job(
    items: Iterable[ItemAnswers],
    label_names: Sequence[str],
    *,
    roi_iou_threshold: float | None = None,
    settings: Settings | None = None,
    job_state: JobReport | None = None,
    uncertain_policy: str | None = None,
) -> JobResult:
    """Consolidate every object of a job; a bad object becomes an entry of ``errors``, never an exception.

    Labels: per-label binary Dawid–Skene EM over all objects of the job (worker matrices learnt
    jointly), see :mod:`.classification`; ROIs: per object, see :mod:`.rois`; agreement: see
    :mod:`.agreement`. ``job_state`` (an earlier :class:`JobReport`) adds its workers' confusion
    counts to this job's priors. ``uncertain_policy`` (the schema's; overrides ``settings``'): what an
    "uncertain" answer counts as, :mod:`.uncertain`. Raises ``ValueError`` only for bad
    ``label_names``/settings.
    """
    with _gc_paused():
        return _consolidate_job(items, label_names, settings=_settings(settings, roi_iou_threshold, uncertain_policy),
                                job_state=job_state)


def _consolidate_job(items: Iterable[ItemAnswers], label_names: Sequence[str], *, settings: Settings,
                     job_state: JobReport | None) -> JobResult:
    s = settings
    names = _check_label_names(label_names)
    parsed, errors = _parse_items(items, names)
    uncertain = [uncertain_counts(item.answers, names) for item in parsed]

    worker_index: dict[str, int] = {}
    arrays, annotators = _flatten(parsed, names, worker_index, s.uncertain_policy)
    worker_ids = list(worker_index)
    n_obj, n_w = len(parsed), len(worker_ids)

    def fit(j: int) -> BinaryResult:
        return dawid_skene_binary(
            arrays.obj[j], arrays.wk[j], arrays.y[j], n_obj, n_w,
            alpha_correct=s.alpha_correct, alpha_wrong=s.alpha_wrong,
            prior_smoothing=s.prior_smoothing, tol=s.tol, max_iter=s.max_iter,
            init_counts=_carried_counts(job_state, names[j], worker_ids),
        )

    post, ones, n, results = _label_block(names, arrays, n_obj, fit)
    present = post > 0.5
    conf = np.where(present, post, 1.0 - post)
    workers = _worker_qualities(names, arrays, results, worker_ids, job_state, s)
    accuracy = {wid: q.accuracy for wid, q in workers.items()}

    # agreement
    pooled = agr.binary_counts(ones.ravel(), n.ravel())
    p_e = agr.chance_agreement(pooled)
    obj_agreement = _agreements(ones, n, p_e)
    label_summaries = _label_summaries(names, arrays, results, ones, n, present, n_obj, uncertain)
    out, all_ious = _item_outputs(parsed, names, annotators, present, conf, obj_agreement, n, accuracy, s,
                                  uncertain)

    report = JobReport(
        label_names=names, items=n_obj, errors=len(errors),
        annotators_mean=_r(float(annotators.mean())) if n_obj else None,
        labels=label_summaries, workers=workers,
        agreement={
            "labels_fleiss_kappa": _r(agr.fleiss_kappa(pooled)),
            "labels_krippendorff_alpha": _r(agr.krippendorff_alpha_nominal(pooled)),
            "labels_chance_agreement": _r(p_e, 6),
            "rois_mean_iou": _r(sum(all_ious) / len(all_ious)) if all_ious else None,
            "rois_matched_pairs": len(all_ious),
        },
        settings=asdict(s),
    )
    return JobResult(out, errors, report)


def _parse_items(items: Iterable[ItemAnswers], names: list[str],
                 ) -> tuple[list[ParsedItem], list[ConsolidationError]]:
    """The objects that parse, in order, and one error per object that does not (a repeated item
    id included): one bad object never drops the others."""
    label_set = frozenset(names)
    parsed: list[ParsedItem] = []
    errors: list[ConsolidationError] = []
    seen: set[str] = set()
    for item in items:
        item_id = getattr(item, "item_id", None)
        try:
            if item_id in seen:
                raise ConsolidationError(item_id, "datasetObjectId", "item id appears twice in the job")
            p = parse_item(item, names, label_set)
        except ConsolidationError as exc:
            errors.append(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - one bad object must not drop the others
            errors.append(ConsolidationError(item_id, "item", f"cannot read: {exc!r}"))
            continue
        seen.add(item_id)
        parsed.append(p)
    return parsed, errors


def _worker_qualities(names: Sequence[str], arrays: _Arrays, results: Sequence[BinaryResult],
                      worker_ids: Sequence[str], job_state: JobReport | None,
                      s: Settings) -> dict[str, WorkerQuality]:
    """Each worker's per-label sensitivity/specificity and confusion counts (this job's plus those
    ``job_state`` carries) and an overall accuracy with the Beta prior of ``s``."""
    a_c, a_w = s.alpha_correct, s.alpha_wrong
    n_w = len(worker_ids)
    workers: dict[str, WorkerQuality] = {}
    answers_per_worker = np.zeros((len(names), n_w), dtype=np.int64)
    for j in range(len(names)):
        answers_per_worker[j] = np.bincount(arrays.wk[j], minlength=n_w)
    for w, wid in enumerate(worker_ids):
        per_label: dict[str, LabelQuality] = {}
        correct = rated = 0.0
        for j, name in enumerate(names):
            if answers_per_worker[j, w] == 0:
                continue
            res = results[j]
            c = res.counts[w].copy()
            if job_state is not None and wid in job_state.workers and name in job_state.workers[wid].labels:
                c += job_state.workers[wid].labels[name].counts()
            per_label[name] = LabelQuality(
                sensitivity=_r(res.sensitivity[w], 6), specificity=_r(res.specificity[w], 6),
                tp=_r(c[0], 4), fn=_r(c[1], 4), tn=_r(c[2], 4), fp=_r(c[3], 4),
                answers=int(answers_per_worker[j, w]))
            correct += c[0] + c[2]
            rated += c.sum()
        workers[wid] = WorkerQuality(wid, _r((correct + a_c) / (rated + a_c + a_w), 6),
                                     int(answers_per_worker[:, w].sum()), per_label)
    return workers


def _label_summaries(names: Sequence[str], arrays: _Arrays, results: Sequence[BinaryResult], ones: np.ndarray,
                     n: np.ndarray, present: np.ndarray, n_obj: int,
                     uncertain: Sequence[Sequence[int]]) -> dict[str, LabelSummary]:
    """Per label: how it was fitted, its prior, the share judged present, the agreement and how many
    answers were uncertain."""
    label_summaries: dict[str, LabelSummary] = {}
    uncertain_totals = [sum(column) for column in zip(*uncertain)] if uncertain else [0] * len(names)
    for j, name in enumerate(names):
        res = results[j]
        counts_j = agr.binary_counts(ones[:, j], n[:, j])
        label_summaries[name] = LabelSummary(
            name=name, method=res.method if len(arrays.y[j]) else "none", reason=res.reason,
            iterations=res.iterations, converged=res.converged, prior=_r(res.prior, 6),
            present_share=_r(float(present[:, j].mean()) if n_obj else 0.0, 6),
            answers=int(len(arrays.y[j])),
            fleiss_kappa=_r(agr.fleiss_kappa(counts_j)),
            krippendorff_alpha=_r(agr.krippendorff_alpha_nominal(counts_j)),
            uncertain=int(uncertain_totals[j]))
    return label_summaries


def _item_outputs(parsed: Sequence[ParsedItem], names: Sequence[str], annotators: np.ndarray,
                  present: np.ndarray, conf: np.ndarray, obj_agreement: np.ndarray, n: np.ndarray,
                  accuracy: Mapping[str, float], s: Settings,
                  uncertain: Sequence[Sequence[int]]) -> tuple[dict[str, dict[str, Any]], list[float]]:
    """Each object's consolidated content (labels, fused ROIs, agreement) and every matched ROI
    pair's IoU; a lone annotator's ROIs get that worker's accuracy as confidence."""
    out: dict[str, dict[str, Any]] = {}
    present_l = present.tolist()
    conf_l = conf.tolist()
    agree_l = obj_agreement.tolist()
    all_ious: list[float] = []
    rk = _roi_kwargs(s)
    for i, item in enumerate(parsed):
        k = int(annotators[i])
        rois: list[dict] = []
        ious: list[float] = []
        if any(a.rois for a in item.answers):
            single_conf = s.prior_accuracy
            if k == 1:
                single_conf = accuracy.get(item.answers[0].worker_id, s.prior_accuracy)
            rois, ious = consolidate_item_rois(item, names, worker_order_for(item, accuracy),
                                               annotators=k, single_worker_confidence=single_conf, **rk)
            all_ious.extend(ious)
        a = agree_l[i]
        out[item.item_id] = _with_slices(_item_content(names, present_l[i], conf_l[i], rois, item.image, k,
                                                       None if a != a else a, ious, (n[i] > 0).tolist(),
                                                       uncertain[i]), item, s)
    return out, all_ious


def consolidate_item(
    item: ItemAnswers,
    label_names: Sequence[str],
    *,
    roi_iou_threshold: float | None = None,
    settings: Settings | None = None,
    job_state: JobReport | None = None,
    uncertain_policy: str | None = None,
) -> dict[str, Any]:
    """Consolidate one object on its own (the portal's path); raises :class:`ConsolidationError`.

    No EM is run on a single object: each answer is weighed with its worker's sensitivity and
    specificity for the label from ``job_state`` (a worker known there but not for this label: its
    overall accuracy for both; an unknown worker: the prior accuracy 2/3), with the label's prior
    from ``job_state`` (else 1/2). Without ``job_state`` this is a majority vote whose confidence
    grows with the vote margin (2 of 3: 0.667, 3 of 3: 0.889). Single answers follow the
    single-worker rule; per-object label agreement uses ``job_state``'s chance agreement when
    given, else the object's own. ``uncertain_policy`` as for :func:`consolidate_job`.
    """
    s = _settings(settings, roi_iou_threshold, uncertain_policy)
    names = _check_label_names(label_names)
    p = parse_item(item, names, frozenset(names))
    worker_index: dict[str, int] = {}
    arrays, annotators = _flatten([p], names, worker_index, s.uncertain_policy)
    worker_ids = list(worker_index)
    a0 = s.prior_accuracy

    def quality(wid: str, name: str) -> tuple[float, float]:
        q = job_state.workers.get(wid) if job_state is not None else None
        if q is None:
            return a0, a0
        lq = q.labels.get(name)
        if lq is None:
            return q.accuracy, q.accuracy
        return lq.sensitivity, lq.specificity

    def fit(j: int) -> BinaryResult:
        name = names[j]
        sens = np.array([quality(w, name)[0] for w in worker_ids]) if worker_ids else np.zeros(0)
        spec = np.array([quality(w, name)[1] for w in worker_ids]) if worker_ids else np.zeros(0)
        prior = 0.5
        if job_state is not None and name in job_state.labels:
            prior = min(max(job_state.labels[name].prior, 1e-6), 1 - 1e-6)
        obj, wk, y = arrays.obj[j], arrays.wk[j], arrays.y[j]
        q = posterior_fixed(obj, y, 1, sens[wk], spec[wk], prior)
        return BinaryResult(q, prior, sens, spec, np.zeros((len(worker_ids), 4)),
                            np.zeros(len(worker_ids)), PRIOR_MODEL, None, 0, True, float("nan"))

    post, ones, n, _ = _label_block(names, arrays, 1, fit)
    present = post > 0.5
    conf = np.where(present, post, 1.0 - post)
    p_e = None
    if job_state is not None:
        p_e = job_state.agreement.get("labels_chance_agreement")
    if p_e is None:
        p_e = agr.chance_agreement(agr.binary_counts(ones.ravel(), n.ravel()))
    a = float(_agreements(ones, n, p_e)[0])
    k = int(annotators[0])
    rois: list[dict] = []
    ious: list[float] = []
    if any(ans.rois for ans in p.answers):
        acc = ({wid: q.accuracy for wid, q in job_state.workers.items()} if job_state else {})
        single_conf = acc.get(p.answers[0].worker_id, a0) if k == 1 else a0
        rois, ious = consolidate_item_rois(p, names, worker_order_for(p, acc), annotators=k,
                                           single_worker_confidence=single_conf, **_roi_kwargs(s))
    return _with_slices(_item_content(names, present[0].tolist(), conf[0].tolist(), rois, p.image, k,
                                      None if a != a else a, ious, (n[0] > 0).tolist(),
                                      uncertain_counts(p.answers, names)), p, s)


__all__ = [
    "DEFAULT_SETTINGS", "JobReport", "JobResult", "LabelQuality", "LabelSummary", "Settings",
    "WorkerQuality", "consolidate_item", "consolidate_job",
]
