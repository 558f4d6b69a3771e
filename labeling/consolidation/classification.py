"""Binary Dawid–Skene EM for one label of a multi-label job, vectorised over all objects.

Model (Dawid & Skene 1979, "Maximum likelihood estimation of observer error-rates using the EM
algorithm", Applied Statistics 28(1):20–28), specialised to two classes — a label is *present* (z=1)
or *absent* (z=0) — which is how SageMaker Ground Truth's multi-label classification consolidation
treats each label (its docs: "a variant of the Expectation Maximization approach ... estimates
parameters for each worker and uses Bayesian inference to estimate the true class"):

* class prior ``pi = P(z=1)``;
* each worker ``w`` has a 2x2 confusion matrix, parametrised by its *sensitivity*
  ``P(y=1 | z=1)`` and *specificity* ``P(y=0 | z=0)``;
* answers are independent given the true class, so the posterior log-odds of an object is
  ``logit(pi) + sum over its answers of log P(y | z=1) - log P(y | z=0)``.

EM alternates the E-step (posterior ``q_i = P(z_i=1 | answers)``) and the M-step (expected confusion
counts per worker). Deviations from the 1979 maximum-likelihood recipe, all deliberate:

* **Smoothing (MAP EM).** Each confusion-matrix row gets Dirichlet pseudo-counts
  ``alpha_correct`` on the diagonal and ``alpha_wrong`` off it (default 2 and 1: the prior belief
  that a worker is right 2/3 of the time, i.e. better than chance, which also breaks EM's
  label-switching symmetry); the class prior gets a Laplace pseudo-count ``prior_smoothing`` on each
  class. A worker with little evidence stays near the prior instead of reaching 0 or 1.
* **Lone answers do not rate their worker.** Only answers on objects with >= 2 answers for the
  label enter the M-step's worker counts: a lone answer cannot be checked against anyone, and
  counting it lets EM "confirm" the worker by its own answers (a self-reinforcing fixed point at
  100 % accuracy). Lone answers are still consolidated in the E-step with the worker's estimated
  matrix (or the prior one) — see "single-worker objects" in ``labeling.consolidation``.
* **Initialisation** from the majority vote (posterior = share of "present" votes), as crowd-kit
  and the original paper do; then M-step first.
* **Stopping**: when the observed-data log-likelihood changes by less than ``tol`` per answer
  between iterations, or after ``max_iter`` iterations.
* **Fallback to majority vote** when EM degenerates: (a) a non-finite value appears; (b) the fitted
  workers are, on average (weighted by their rated answers), no better than chance — mean Youden's
  ``J = sensitivity + specificity - 1 <= 0`` — which is EM's label-switched solution (the workers'
  "present" read as "absent"). Then the decision is the majority vote and its confidence the
  posterior of the *symmetric prior worker model* (every worker right with probability
  ``alpha_correct / (alpha_correct + alpha_wrong)``, class prior 1/2), a monotone function of the
  vote margin; an exact tie gives 0.5 and "absent" (a finding is not asserted without a majority).
* **No overlap** (no object has two answers for the label): nothing can be learnt about the
  workers, so their matrices stay at the prior (plus counts carried from an earlier job, if given)
  and only the class prior is fitted (method ``"prior-model"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

DS: Final = "dawid-skene"
MV: Final = "majority-vote"
PRIOR_MODEL: Final = "prior-model"


@dataclass(frozen=True)
class BinaryResult:
    """Outcome of one label's consolidation.

    ``posterior[i]`` is ``P(present)`` for object ``i`` (0.5 for an object nobody answered when no
    prior is known); ``sensitivity``/``specificity`` per worker index; ``counts[w]`` the worker's
    expected confusion counts ``(tp, fn, tn, fp)`` from the rated answers (soft: weighted by the
    posterior), *without* the pseudo-counts; ``rated[w]`` how many answers rated the worker.
    """

    posterior: np.ndarray
    prior: float
    sensitivity: np.ndarray
    specificity: np.ndarray
    counts: np.ndarray
    rated: np.ndarray
    method: str
    reason: str | None
    iterations: int
    converged: bool
    log_likelihood: float


def _expit(x: np.ndarray) -> np.ndarray:
    """Logistic function, overflow-free: 1 / (1 + exp(-x)) = (1 + tanh(x / 2)) / 2."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


def vote_counts(obj: np.ndarray, answer: np.ndarray, n_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """Per object: (number of "present" votes, number of answers)."""
    n = np.bincount(obj, minlength=n_objects).astype(float)
    ones = np.bincount(obj, weights=answer.astype(float), minlength=n_objects)
    return ones, n


def majority_vote(obj: np.ndarray, answer: np.ndarray, n_objects: int, *,
                  accuracy: float = 2.0 / 3.0) -> np.ndarray:
    """Majority-vote posterior: symmetric worker model with the given accuracy, class prior 1/2.

    ``P(present) = expit((ones - zeros) * logit(accuracy))``: present wins iff it has more votes;
    an exact tie (or no vote) gives 0.5.
    """
    ones, n = vote_counts(obj, answer, n_objects)
    weight = np.log(accuracy / (1.0 - accuracy))
    return _expit((2.0 * ones - n) * weight)


def dawid_skene_binary(
    obj: np.ndarray,
    worker: np.ndarray,
    answer: np.ndarray,
    n_objects: int,
    n_workers: int,
    *,
    alpha_correct: float = 2.0,
    alpha_wrong: float = 1.0,
    prior_smoothing: float = 1.0,
    tol: float = 1e-7,
    max_iter: int = 100,
    init_counts: np.ndarray | None = None,
) -> BinaryResult:
    """Fit binary Dawid–Skene on one label's answers (see the module docstring).

    ``obj[a]``, ``worker[a]``, ``answer[a]`` describe answer ``a`` (object index, worker index,
    0/1). ``init_counts`` (``n_workers x 4``: tp, fn, tn, fp) are confusion counts carried over from
    earlier jobs; they are added to the Dirichlet pseudo-counts (crowd-kit's "addition" strategy).

    One function of ~110 lines on purpose: the E and M steps are closures over one fit's answer
    arrays (a dozen of them), and the loop, the final E step and the fall-back to majority vote read
    as the algorithm does in Dawid & Skene (1979) and crowd-kit; split apart, each piece would take
    those arrays as arguments and the algorithm would no longer be readable in one place.
    """
    if not (alpha_correct > 0 and alpha_wrong > 0 and alpha_correct > alpha_wrong):
        raise ValueError("smoothing needs alpha_correct > alpha_wrong > 0 (workers better than chance)")
    obj = np.asarray(obj, dtype=np.intp)
    worker = np.asarray(worker, dtype=np.intp)
    y = np.asarray(answer, dtype=bool)
    yf = y.astype(float)
    extra = (np.zeros((n_workers, 4)) if init_counts is None
             else np.asarray(init_counts, dtype=float).reshape(n_workers, 4))

    ones, n_per_obj = vote_counts(obj, y, n_objects)
    answered = n_per_obj > 0
    n_answered = int(answered.sum())
    rated_mask = n_per_obj[obj] >= 2
    wk_r, obj_r, y_r = worker[rated_mask], obj[rated_mask], yf[rated_mask]
    rated = np.bincount(wk_r, minlength=n_workers).astype(float)
    ones_r = np.bincount(wk_r, weights=y_r, minlength=n_workers)
    overlap = bool(rated_mask.any())

    # Initial posterior: share of "present" votes (majority-vote soft labels).
    q = np.where(answered, ones / np.maximum(n_per_obj, 1.0), 0.5)

    a_c, a_w = alpha_correct, alpha_wrong

    def m_step(q: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        qa = q[obj_r]
        pos = np.bincount(wk_r, weights=qa, minlength=n_workers)   # expected z=1 answers
        tp = np.bincount(wk_r, weights=qa * y_r, minlength=n_workers)
        fn = pos - tp
        fp = ones_r - tp
        tn = rated - pos - fp
        counts = np.stack([tp, fn, tn, fp], axis=1)
        c = counts + extra
        sens = (c[:, 0] + a_c) / (c[:, 0] + c[:, 1] + a_c + a_w)
        spec = (c[:, 2] + a_c) / (c[:, 2] + c[:, 3] + a_c + a_w)
        pi = (q[answered].sum() + prior_smoothing) / (n_answered + 2.0 * prior_smoothing)
        return pi, sens, spec, counts

    code = 2 * worker + y  # index into per-(worker, answer) lookup tables

    def e_step(pi: float, sens: np.ndarray, spec: np.ndarray) -> tuple[np.ndarray, float]:
        # per (worker, y): log P(y | z=0) and the log-likelihood ratio log P(y | z=1) - log P(y | z=0)
        tab0 = np.empty(2 * n_workers)
        tab0[0::2], tab0[1::2] = np.log(spec), np.log1p(-spec)
        tab1 = np.empty(2 * n_workers)
        tab1[0::2], tab1[1::2] = np.log1p(-sens), np.log(sens)
        s0 = np.log1p(-pi) + np.bincount(obj, weights=tab0[code], minlength=n_objects)
        odds = (np.log(pi) - np.log1p(-pi)) + np.bincount(obj, weights=(tab1 - tab0)[code],
                                                          minlength=n_objects)
        post = _expit(odds)
        # log P(answers_i) = s0 + log(1 + exp(odds)) = logaddexp(s0, s1)
        ll = float((s0 + np.logaddexp(0.0, odds))[answered].sum())
        return post, ll

    n_ans = max(len(y), 1)
    ll_prev = -np.inf
    converged = False
    iterations = 0
    pi, sens, spec, counts = m_step(q)
    for iterations in range(1, max_iter + 1):
        q, ll = e_step(pi, sens, spec)
        pi, sens, spec, counts = m_step(q)
        if not np.isfinite(ll):
            break
        if abs(ll - ll_prev) / n_ans < tol:
            converged = True
            break
        ll_prev = ll
    q, ll = e_step(pi, sens, spec)  # posterior consistent with the final parameters

    method, reason = (DS if overlap else PRIOR_MODEL), None
    finite = (np.isfinite(q).all() and np.isfinite(sens).all() and np.isfinite(spec).all()
              and np.isfinite(pi))
    if not finite:
        method, reason = MV, "EM produced non-finite values"
    elif overlap:
        weights = rated + extra.sum(axis=1)
        youden = float(np.average(sens + spec - 1.0, weights=weights)) if weights.sum() > 0 else 0.0
        if youden <= 0.0:
            method, reason = MV, (f"EM solution no better than chance (mean Youden J {youden:.3f}); "
                                  "label-switched or uninformative")
    if method == MV:
        accuracy = a_c / (a_c + a_w)
        q = majority_vote(obj, y, n_objects, accuracy=accuracy)
        pi = float((ones.sum() + prior_smoothing) / (n_per_obj.sum() + 2.0 * prior_smoothing))
        sens = np.full(n_workers, accuracy)
        spec = np.full(n_workers, accuracy)
        counts = np.zeros((n_workers, 4))
    return BinaryResult(
        posterior=q, prior=float(pi), sensitivity=sens, specificity=spec, counts=counts,
        rated=rated, method=method, reason=reason, iterations=iterations, converged=converged,
        log_likelihood=ll,
    )


def posterior_fixed(obj: np.ndarray, answer: np.ndarray, n_objects: int, sensitivity: np.ndarray,
                    specificity: np.ndarray, prior: float) -> np.ndarray:
    """E-step only: ``P(present)`` per object with given per-answer worker sensitivity/specificity.

    ``sensitivity[a]``/``specificity[a]`` belong to the worker who gave answer ``a``. Used for the
    single-item path (worker qualities from an earlier job, or the prior model).
    """
    y = np.asarray(answer, dtype=bool)
    sens = np.asarray(sensitivity, dtype=float)
    spec = np.asarray(specificity, dtype=float)
    l1 = np.where(y, np.log(sens), np.log1p(-sens))
    l0 = np.where(y, np.log1p(-spec), np.log(spec))
    s1 = np.log(prior) + np.bincount(obj, weights=l1, minlength=n_objects)
    s0 = np.log1p(-prior) + np.bincount(obj, weights=l0, minlength=n_objects)
    return _expit(s1 - s0)
