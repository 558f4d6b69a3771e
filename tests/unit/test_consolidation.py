"""Consolidation library (labeling/consolidation): labels, ROIs, agreement, errors — on simulated
annotators with a known truth (devkit/simulate.py) and on hand-computed examples."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from labeling.consolidation import (
    ConsolidationError,
    ItemAnswers,
    JobReport,
    WorkerAnswer,
    consolidate_item,
    consolidate_job,
    dawid_skene_binary,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    linear_sum_assignment,
    majority_vote,
    parse_worker_content,
    shape_iou,
)
from labeling.consolidation.inputs import Roi
from devkit.simulate import SimWorker, simulate_job, to_crowd_frame, worker_pool

NAMES = ["Opacity", "Device", "Effusion"]
IMAGE = {"rows": 1000, "columns": 1000, "frame": 0}


def answer(labels: dict[str, bool] | None = None, rois: list | None = None, image=IMAGE) -> dict:
    out: dict = {"labels": [{"name": n, "present": p} for n, p in (labels or {}).items()]}
    out["rois"] = rois or []
    if image is not None:
        out["image"] = image
    return out


def rect(label, x0, y0, x1, y1):
    return {"label": label, "shape": "rectangle", "points": [[x0, y0], [x1, y1]]}


def predictions(result, job) -> np.ndarray:
    return np.array([[lab["present"] for lab in result.items[i]["labels"]] for i in job.item_ids()])


def confidences(result, job) -> np.ndarray:
    return np.array([[lab["confidence"] for lab in result.items[i]["labels"]] for i in job.item_ids()])


# --- labels: Dawid–Skene -------------------------------------------------------------------------


def test_dawid_skene_beats_majority_vote_when_one_worker_is_bad():
    workers = [SimWorker("a", 0.9, 0.9), SimWorker("b", 0.85, 0.88), SimWorker("c", 0.88, 0.85),
               SimWorker("d", 0.9, 0.85), SimWorker("bad", 0.3, 0.4)]
    job = simulate_job(2000, NAMES, workers, prevalence=0.4, seed=11)
    result = consolidate_job(job.items, NAMES)
    ds_acc = (predictions(result, job) == job.truth).mean()
    mv_acc = ((job.answers.sum(axis=1) >= 2) == job.truth).mean()
    assert ds_acc > mv_acc + 0.025, (ds_acc, mv_acc)
    assert ds_acc > 0.92
    q = result.report.workers
    assert min(q, key=lambda w: q[w].accuracy) == "bad"
    for w in workers:  # estimated sensitivity/specificity close to the simulated ones
        for name in NAMES:
            assert abs(q[w.worker_id].labels[name].sensitivity - w.sensitivity) < 0.08
            assert abs(q[w.worker_id].labels[name].specificity - w.specificity) < 0.08
    assert all(result.report.labels[n].method == "dawid-skene" for n in NAMES)


def test_confidence_is_calibrated_on_data_from_the_model():
    pool = worker_pool(12, accuracy=(0.6, 0.95), seed=3)
    job = simulate_job(4000, NAMES, pool, prevalence={"Opacity": 0.3, "Device": 0.1, "Effusion": 0.5},
                       seed=5)
    result = consolidate_job(job.items, NAMES)
    conf = confidences(result, job).ravel()
    right = (predictions(result, job) == job.truth).ravel()
    edges = [0.5, 0.7, 0.9, 0.99, 1.0001]
    accs, ece = [], 0.0
    for lo, hi in zip(edges, edges[1:]):
        sel = (conf >= lo) & (conf < hi)
        assert sel.sum() > 100, (lo, hi, sel.sum())
        accs.append(right[sel].mean())
        ece += sel.mean() * abs(right[sel].mean() - conf[sel].mean())
    assert accs == sorted(accs), accs          # more confident -> more often right
    assert ece < 0.03, ece
    assert accs[-1] > 0.99


def test_majority_vote_fallback_when_em_is_label_switched():
    job = simulate_job(500, ["Opacity"], worker_pool(6, accuracy=(0.8, 0.9), seed=1), seed=2)
    task, worker, ans = to_crowd_frame(job, "Opacity")
    # counts carried from a (bogus) earlier job claiming every worker answers the opposite
    bogus = np.tile([0.0, 500.0, 0.0, 500.0], (6, 1))
    res = dawid_skene_binary(task, worker, ans, 500, 6, init_counts=bogus)
    assert res.method == "majority-vote" and "chance" in res.reason
    mv = majority_vote(task, ans, 500)
    np.testing.assert_allclose(res.posterior, mv)
    assert ((res.posterior > 0.5) == job.truth[:, 0]).mean() > 0.9


def test_no_overlap_uses_prior_model():
    # every object answered by one worker: nothing to learn about workers
    job = simulate_job(300, ["Opacity"], worker_pool(4, seed=1), annotators_per_item=1, seed=4)
    result = consolidate_job(job.items, ["Opacity"])
    assert result.report.labels["Opacity"].method == "prior-model"
    conf = confidences(result, job).ravel()
    np.testing.assert_allclose(conf, 2 / 3, atol=1e-4)
    assert (predictions(result, job)[:, 0] == job.answers[:, 0, 0]).all()  # answers kept


# --- single-worker rule ----------------------------------------------------------------------------


def test_single_unknown_worker_keeps_answer_with_prior_accuracy():
    item = ItemAnswers("x-1", [WorkerAnswer("solo", answer({"Opacity": True, "Device": False}))])
    out = consolidate_item(item, NAMES)
    labels = {lab["name"]: lab for lab in out["labels"]}
    assert labels["Opacity"]["present"] is True and labels["Opacity"]["confidence"] == 0.6667
    assert labels["Device"]["present"] is False and labels["Device"]["confidence"] == 0.6667
    # Effusion not answered by anyone: prior 1/2 -> absent at 0.5
    assert labels["Effusion"]["present"] is False and labels["Effusion"]["confidence"] == 0.5
    assert out["annotators"] == 1 and out["agreement"]["labels"] is None


def test_single_worker_object_uses_the_workers_estimated_quality():
    pool = [SimWorker("good", 0.95, 0.97), SimWorker("ok", 0.8, 0.8), SimWorker("meh", 0.7, 0.75)]
    job = simulate_job(1500, ["Opacity"], pool, prevalence=0.05, seed=8)
    lone_yes = ItemAnswers("lone-yes", [WorkerAnswer("good", answer({"Opacity": True}))])
    lone_no = ItemAnswers("lone-no", [WorkerAnswer("meh", answer({"Opacity": False}))])
    result = consolidate_job([*job.items, lone_yes, lone_no], ["Opacity"])
    g = result.report.workers["good"].labels["Opacity"]
    m = result.report.workers["meh"].labels["Opacity"]
    yes = result.items["lone-yes"]["labels"][0]
    no = result.items["lone-no"]["labels"][0]
    # a rare finding reported by a lone reader stays present (uniform prior), confidence from quality
    assert yes["present"] is True
    assert yes["confidence"] == pytest.approx(g.sensitivity / (g.sensitivity + 1 - g.specificity), abs=1e-3)
    assert yes["confidence"] > 0.9
    assert no["present"] is False
    assert no["confidence"] == pytest.approx(m.specificity / (m.specificity + 1 - m.sensitivity), abs=1e-3)
    assert result.items["lone-yes"]["annotators"] == 1


def test_consolidate_item_with_job_state_matches_the_job():
    pool = worker_pool(8, seed=2)
    job = simulate_job(800, NAMES, pool, seed=9)
    result = consolidate_job(job.items, NAMES)
    state = JobReport.from_dict(json.loads(json.dumps(result.report.to_dict())))
    for item in job.items[:25]:
        single = consolidate_item(item, NAMES, job_state=state)
        assert single["labels"] == result.items[item.item_id]["labels"]
        assert single["agreement"] == result.items[item.item_id]["agreement"]


def test_job_state_carries_worker_counts_into_the_next_job():
    pool = [SimWorker("a", 0.95, 0.95), *worker_pool(5, accuracy=(0.75, 0.85), seed=3)]
    first = consolidate_job(simulate_job(3000, ["Opacity"], pool, seed=1).items, ["Opacity"])
    assert abs(first.report.workers["a"].labels["Opacity"].sensitivity - 0.95) < 0.04
    small = simulate_job(30, ["Opacity"], pool, seed=2, item_prefix="next-")
    cold = consolidate_job(small.items, ["Opacity"])
    warm = consolidate_job(small.items, ["Opacity"], job_state=first.report)
    est = lambda r: r.report.workers["a"].labels["Opacity"].sensitivity  # noqa: E731
    assert abs(est(warm) - 0.95) < abs(est(cold) - 0.95)
    assert warm.report.workers["a"].labels["Opacity"].answers == cold.report.workers["a"].labels["Opacity"].answers
    assert warm.report.workers["a"].labels["Opacity"].tp > first.report.workers["a"].labels["Opacity"].tp


# --- ROIs -------------------------------------------------------------------------------------------

SHAPES_BY_LABEL = {"Opacity": "rectangle", "Device": "polygon", "Effusion": "ellipse", "Nodule": "point"}


def _best_match(truth_roi, out_rois):
    cands = [o for o in out_rois if o["label"] == truth_roi["label"]]
    if truth_roi["shape"] == "point":
        d = [math.dist(o["points"][0], truth_roi["points"][0]) for o in cands]
        return min(d) if d else math.inf
    t = Roi(truth_roi["label"], truth_roi["shape"], np.array(truth_roi["points"], dtype=float))
    ious = [shape_iou(t, Roi(o["label"], o["shape"], np.array(o["points"], dtype=float)))
            for o in cands]
    return max(ious) if ious else 0.0


def test_roi_fusion_recovers_truth_within_tolerance():
    names = list(SHAPES_BY_LABEL)
    pool = [SimWorker(f"w{i}", 1.0, 1.0, roi_jitter=0.04, roi_miss=0.0, roi_extra=0.0) for i in range(5)]
    job = simulate_job(150, names, pool, prevalence=0.5, roi_shapes=SHAPES_BY_LABEL, seed=21)
    result = consolidate_job(job.items, names)
    fused = {s: [] for s in SHAPES_BY_LABEL.values()}
    single = []
    for i, item in enumerate(job.items):
        out = result.items[item.item_id]["rois"]
        assert len(out) == len(job.truth_rois[i])            # nothing lost, nothing invented
        assert all(o["confidence"] == 1.0 for o in out)
        for t in job.truth_rois[i]:
            fused[t["shape"]].append(_best_match(t, out))
            if t["shape"] == "rectangle":                    # one worker's own box, for comparison
                single.append(_best_match(t, item.answers[0].content["rois"]))
    diag = math.hypot(2048, 2048)
    assert min(fused["rectangle"]) > 0.85 and np.mean(fused["rectangle"]) > 0.93
    assert min(fused["ellipse"]) > 0.85 and np.mean(fused["ellipse"]) > 0.93
    assert min(fused["polygon"]) > 0.6 and np.mean(fused["polygon"]) > 0.85  # medoid: one drawn contour
    assert max(fused["point"]) < 0.01 * diag
    assert np.mean(fused["rectangle"]) > np.mean(single) + 0.02  # averaging beats one worker
    assert 0.8 < result.report.agreement["rois_mean_iou"] < 1.0


def test_roi_missed_and_extra_shapes_follow_the_support_rule():
    names = ["Opacity", "Effusion"]
    shapes = {"Opacity": "rectangle", "Effusion": "ellipse"}
    pool = [SimWorker(f"w{i}", 0.95, 0.95, roi_jitter=0.03, roi_miss=0.15, roi_extra=0.2)
            for i in range(6)]
    job = simulate_job(300, names, pool, prevalence=0.4, roi_shapes=shapes, seed=33)
    result = consolidate_job(job.items, names)
    found = kept = good = 0
    total = 0
    for i, item in enumerate(job.items):
        out = result.items[item.item_id]["rois"]
        kept += len(out)
        assert all(o["confidence"] >= 2 / 3 - 1e-4 for o in out)   # >= 2 of 3 workers
        good += sum(1 for o in out if any(
            t["label"] == o["label"] and _best_match(t, [o]) > 0.7 for t in job.truth_rois[i]))
        for t in job.truth_rois[i]:
            total += 1
            found += _best_match(t, out) > 0.7
    assert good / kept > 0.97, (good, kept)   # spurious single-worker shapes dropped
    # a true ROI is kept when >= 2 of 3 drew it: P = 0.905 with P(draw) = 0.95 * 0.85
    assert found / total > 0.85, (found, total)


def test_roi_clustering_by_hand():
    a = answer({"Opacity": True}, [rect("Opacity", 100, 100, 200, 200), rect("Opacity", 600, 600, 700, 700)])
    b = answer({"Opacity": True}, [rect("Opacity", 110, 100, 210, 200)])
    c = answer({"Opacity": True}, [rect("Opacity", 104, 96, 196, 204), rect("Opacity", 800, 50, 900, 90)])
    out = consolidate_item(ItemAnswers.from_pairs("hand-1", {"a": a, "b": b, "c": c}), NAMES)
    assert out["rois"] == [{"label": "Opacity", "shape": "rectangle",
                            "points": [[104.667, 98.667], [202.0, 201.333]], "confidence": 1.0}]
    iou_ab = (90 * 100) / (110 * 100)
    assert out["agreement"]["rois_mean_iou"] is not None and 0.8 < out["agreement"]["rois_mean_iou"] < iou_ab
    # two workers: no majority possible, so every shape is kept with its share
    out2 = consolidate_item(ItemAnswers.from_pairs("hand-2", {"a": a, "b": b}), NAMES)
    assert [r["confidence"] for r in out2["rois"]] == [1.0, 0.5]
    # a different label or shape is never merged
    d = answer({"Opacity": True}, [{"label": "Device", "shape": "rectangle", "points": [[100, 100], [200, 200]]}])
    e = answer({"Opacity": True}, [{"label": "Opacity", "shape": "ellipse", "points": [[100, 100], [200, 200]]}])
    out3 = consolidate_item(ItemAnswers.from_pairs("hand-3", {"a": a, "d": d, "e": e}), NAMES)
    assert out3["rois"] == []   # each drawn by one worker of three


def test_points_and_polygons_by_hand():
    poly1 = [[0, 0], [100, 0], [100, 100], [0, 100]]
    poly2 = [[5, 0], [105, 0], [105, 100], [5, 100]]
    poly3 = [[0, 5], [100, 5], [100, 105], [0, 105]]
    mk = lambda poly, pt: answer(rois=[{"label": "Device", "shape": "polygon", "points": poly},  # noqa: E731
                                       {"label": "Device", "shape": "point", "points": [pt]}])
    item = ItemAnswers.from_pairs("p", {"a": mk(poly1, [500, 500]), "b": mk(poly2, [510, 500]),
                                        "c": mk(poly3, [600, 900])})
    out = consolidate_item(item, NAMES)
    polys = [r for r in out["rois"] if r["shape"] == "polygon"]
    points = [r for r in out["rois"] if r["shape"] == "point"]
    assert len(polys) == 1 and polys[0]["points"] == poly1 and polys[0]["confidence"] == 1.0  # medoid
    # 2 % of the 1000x1000 diagonal = 28 px: a and b match, c is too far and alone
    assert points == [{"label": "Device", "shape": "point", "points": [[505.0, 500.0]], "confidence": 0.6667}]


def test_shape_iou_exact_and_rasterised():
    r1 = Roi("x", "rectangle", np.array([[0.0, 0.0], [10.0, 10.0]]))
    r2 = Roi("x", "rectangle", np.array([[10.0, 10.0], [5.0, 0.0]]))   # corners in any order
    assert shape_iou(r1, r2) == pytest.approx(0.5)
    e1 = Roi("x", "ellipse", np.array([[0.0, 0.0], [100.0, 100.0]]))
    e2 = Roi("x", "ellipse", np.array([[0.0, 0.0], [100.0, 50.0]]))
    # e2 is not inside e1, compare with a fine rasterisation
    fine = shape_iou(e1, e2, grid=1024)
    assert shape_iou(e1, e2) == pytest.approx(fine, abs=0.015)
    sq = Roi("x", "polygon", np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]]))
    tri = Roi("x", "polygon", np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]))
    assert shape_iou(sq, tri, grid=256) == pytest.approx(0.5, abs=0.01)
    far = Roi("x", "polygon", np.array([[50.0, 50.0], [60.0, 50.0], [60.0, 60.0]]))
    assert shape_iou(sq, far) == 0.0


def test_hungarian_matches_brute_force():
    rng = np.random.default_rng(0)
    for n, m in [(1, 1), (2, 3), (3, 3), (4, 2), (5, 5), (3, 6)]:
        for _ in range(20):
            cost = rng.random((n, m)).round(2)
            rows, cols = linear_sum_assignment(cost)
            assert len(rows) == min(n, m) and len(set(cols)) == len(cols)
            got = cost[rows, cols].sum()
            if n <= m:
                best = min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
            else:
                best = min(sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))
            assert got == pytest.approx(best)


# --- agreement -------------------------------------------------------------------------------------


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971) style example as tabulated on Wikipedia: 10 subjects, 14 raters, 5 categories
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
                      [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
                      [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(table) == pytest.approx(0.2099, abs=1e-4)


def test_krippendorff_alpha_textbook_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 observers x 12 units
    # example with missing values; nominal alpha = 0.743
    obs = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
           [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
           [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
           [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]
    counts = np.zeros((12, 5))
    for row in obs:
        for u, v in enumerate(row):
            if v is not None:
                counts[u, v - 1] += 1
    assert krippendorff_alpha_nominal(counts) == pytest.approx(0.743, abs=5e-4)


def test_agreement_small_binary_example_by_hand():
    # obj-1: 3 of 3 say present; obj-2: 1 of 3. P = (1, 1/3), p_present = 4/6, P_e = 5/9,
    # kappa = (2/3 - 5/9) / (4/9) = 0.25; per object 1.0 and -0.5; alpha = 1 - 5*2/16 = 0.375
    items = [ItemAnswers.from_pairs("obj-1", {w: answer({"Opacity": True}) for w in "abc"}),
             ItemAnswers.from_pairs("obj-2", {"a": answer({"Opacity": True}),
                                              "b": answer({"Opacity": False}),
                                              "c": answer({"Opacity": False})})]
    result = consolidate_job(items, ["Opacity"])
    agreement = result.report.agreement
    assert agreement["labels_fleiss_kappa"] == pytest.approx(0.25)
    assert agreement["labels_krippendorff_alpha"] == pytest.approx(0.375)
    assert result.items["obj-1"]["agreement"]["labels"] == pytest.approx(1.0)
    assert result.items["obj-2"]["agreement"]["labels"] == pytest.approx(-0.5)
    assert result.report.labels["Opacity"].fleiss_kappa == pytest.approx(0.25)


def test_all_agree_on_everything():
    items = [ItemAnswers.from_pairs(f"o{i}", {w: answer({"Opacity": False}) for w in "abc"}) for i in range(3)]
    result = consolidate_job(items, ["Opacity"])
    assert result.report.agreement["labels_fleiss_kappa"] is None   # undefined: no variation
    assert all(result.items[f"o{i}"]["agreement"]["labels"] == 1.0 for i in range(3))
    assert all(result.items[f"o{i}"]["labels"][0]["present"] is False for i in range(3))


# --- output shape and input forms -------------------------------------------------------------------


def test_output_has_the_label_shape():
    item = ItemAnswers.from_pairs("s-1", {
        "a": answer({"Device": True, "Opacity": True}, [rect("Opacity", 1, 2, 30, 40)]),
        "b": json.dumps({"annotation": json.dumps(answer({"Opacity": True}, [rect("Opacity", 2, 2, 31, 40)]))}),
        "c": json.dumps(answer({"Opacity": False})),
    })
    out = consolidate_item(item, NAMES)
    assert set(out) == {"labels", "rois", "image", "annotators", "agreement"}
    assert [lab["name"] for lab in out["labels"]] == NAMES          # one per schema label, in order
    assert all(set(lab) == {"name", "present", "confidence"} for lab in out["labels"])
    assert all(isinstance(lab["present"], bool) and 0.5 <= lab["confidence"] <= 1 for lab in out["labels"])
    assert out["image"] == IMAGE and out["annotators"] == 3
    assert set(out["agreement"]) == {"labels", "rois_mean_iou"}
    assert out["rois"][0]["label"] == "Opacity" and out["rois"][0]["confidence"] == 0.6667
    json.dumps(out)  # JSON-serialisable


def test_json_text_answers_give_the_same_result():
    pool = worker_pool(5, seed=4)
    as_dicts = simulate_job(200, NAMES, pool, roi_shapes={"Opacity": "rectangle"}, seed=6)
    as_json = simulate_job(200, NAMES, pool, roi_shapes={"Opacity": "rectangle"}, seed=6, as_json=True)
    assert isinstance(as_json.items[0].answers[0].content, str)
    assert consolidate_job(as_dicts.items, NAMES).items == consolidate_job(as_json.items, NAMES).items


def test_parse_worker_content_forms():
    body = answer({"Opacity": True})
    assert parse_worker_content(body) == body
    assert parse_worker_content(json.dumps(body)) == body
    assert parse_worker_content({"annotation": json.dumps(body)}) == body
    assert parse_worker_content(json.dumps({"annotation": json.dumps(body)})) == body


# --- errors -----------------------------------------------------------------------------------------

BAD_CASES = [
    ({"labels": [{"name": "opacity", "present": True}]}, "labels[0].name", "did you mean 'Opacity'"),
    ({"labels": [{"name": "Opacity", "present": "yes"}]}, "labels[0].present", "true or false"),
    ({"labels": [{"name": "Opacity", "present": True}, {"name": "Opacity", "present": False}]},
     "labels[1].name", "twice"),
    ({"rois": [{"label": "Opacity", "shape": "rectangle", "points": [[1, 2]]}]}, "rois[0].points",
     "exactly 2"),
    ({"rois": [{"label": "Opacity", "shape": "polygon", "points": [[1, 2], [3, "4"], [5, 6]]}]},
     "rois[0].points", "point 1"),
    ({"rois": [{"label": "Opacity", "shape": "point", "points": [[float("nan"), 2]]}]}, "rois[0].points",
     "non-finite"),
    ({"rois": [{"label": "Opacity", "shape": "circle", "points": [[1, 2]]}]}, "rois[0].shape", "circle"),
    ({"rois": [{"label": "Tumour", "shape": "point", "points": [[1, 2]]}]}, "rois[0].label", "Tumour"),
    ({"rois": "nope"}, "rois", "list"),
    ({"labels": [], "image": {"rows": 0, "columns": 10}}, "image.rows", ">= 1"),
    ("{not json", "content", "JSON"),
    (["a", "list"], "content", "expected an object"),
]


@pytest.mark.parametrize(("content", "field", "words"), BAD_CASES)
def test_bad_input_names_item_worker_and_field(content, field, words):
    item = ItemAnswers.from_pairs("bad-7", {"good": answer({"Opacity": True}), "sloppy": content})
    with pytest.raises(ConsolidationError) as info:
        consolidate_item(item, NAMES)
    err = info.value
    assert (err.item_id, err.worker_id, err.field) == ("bad-7", "sloppy", field)
    assert words in str(err) and "bad-7" in str(err) and field in str(err)


def test_item_level_errors():
    with pytest.raises(ConsolidationError, match="no worker answers") as info:
        consolidate_item(ItemAnswers("empty", []), NAMES)
    assert info.value.item_id == "empty"
    with pytest.raises(ConsolidationError, match="twice") as info:
        consolidate_item(ItemAnswers("dup", [WorkerAnswer("a", answer()), WorkerAnswer("a", answer())]), NAMES)
    assert info.value.field == "workerId"
    with pytest.raises(ConsolidationError, match="differs") as info:
        consolidate_item(ItemAnswers.from_pairs("img", {"a": answer(), "b": answer(image={"rows": 5, "columns": 5})}),
                         NAMES)
    assert info.value.field == "image"
    with pytest.raises(ValueError):
        consolidate_job([], ["A", "A"])


def test_bad_objects_do_not_drop_the_others():
    job = simulate_job(60, NAMES, worker_pool(5, seed=1), seed=3)
    bad1 = ItemAnswers.from_pairs("bad-1", {"a": answer({"Nope": True})})
    bad2 = ItemAnswers.from_pairs("bad-2", {"a": answer(rois=[{"label": "Opacity", "shape": "point"}])})
    mixed = [*job.items[:30], bad1, *job.items[30:], bad2, job.items[0]]  # + a repeated id
    result = consolidate_job(mixed, NAMES)
    assert [e.item_id for e in result.errors] == ["bad-1", "bad-2", job.items[0].item_id]
    assert [e.field for e in result.errors] == ["labels[0].name", "rois[0].points", "datasetObjectId"]
    assert list(result.items) == job.item_ids()
    assert result.items == consolidate_job(job.items, NAMES).items
    assert result.report.errors == 3 and result.report.items == 60
    assert all(e.to_dict()["message"] for e in result.errors)


def test_missing_label_answers_are_not_counted_as_absent():
    items = [ItemAnswers.from_pairs("m", {"a": answer({"Opacity": True, "Device": True}),
                                          "b": answer({"Opacity": True}),
                                          "c": answer({"Opacity": True})})]
    out = consolidate_job(items, NAMES).items["m"]
    device = next(lab for lab in out["labels"] if lab["name"] == "Device")
    assert device["present"] is True   # one "present" answer, two workers silent on Device


# --------------------------------------------------------------------------- errors across processes


def _raise_consolidation_error(item_id: str) -> None:
    from labeling.consolidation import ConsolidationError

    raise ConsolidationError(item_id, "rois[2].points", "outside the image", worker_id="w7")


def test_consolidation_error_survives_a_process_boundary():
    """A worker process's ConsolidationError arrives whole (multiprocessing pickles it): the same
    class, item, worker, field, reason and message, not a TypeError from unpickling."""
    import concurrent.futures
    import pickle

    from labeling.consolidation import ConsolidationError

    original = ConsolidationError("item-1", "labels[0].present", "not a boolean", worker_id=None)
    again = pickle.loads(pickle.dumps(original))
    assert (type(again), again.to_dict()) == (ConsolidationError, original.to_dict())
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
        with pytest.raises(ConsolidationError) as info:
            pool.submit(_raise_consolidation_error, "item-2").result(timeout=60)
    assert info.value.to_dict() == {"item_id": "item-2", "worker_id": "w7", "field": "rois[2].points",
                                    "reason": "outside the image",
                                    "message": "item 'item-2', worker 'w7': rois[2].points: outside the image"}
