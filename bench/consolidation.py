"""Consolidation benchmark: time and accuracy against crowd-kit's Dawid–Skene and majority vote.

Simulated job (devkit/simulate.py, known truth): by default 100,000 objects x 3 workers (drawn
from a pool of 30 with sensitivity/specificity uniform in [0.55, 0.95]) x 3 labels (prevalence 0.3,
0.1, 0.5), and ROIs (rectangle, polygon) on 10 % of the objects. Prints:

* the wall time of ``consolidate_job`` end to end (parsing the answer dicts, EM for every label,
  worker qualities, agreement, ROI matching, the output dicts) — on the answers without their ROIs
  (classification only) and with them — and of the EM core alone (arrays in);
* per label: accuracy against the truth of ours, crowd-kit ``DawidSkene`` (same answers, fitted per
  label, binary) and majority vote (ties -> absent), crowd-kit's time;
* ratios: accuracy differences in percentage points and crowd-kit time / our time.

Run: ``.venv/bin/python bench/consolidation.py [--items N] [--json] [--no-crowdkit]``.
crowd-kit is a test-only dependency; without it the crowd-kit columns say "n/a".
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from labeling.consolidation import (  # noqa: E402
    ItemAnswers,
    WorkerAnswer,
    consolidate_job,
    dawid_skene_binary,
    majority_vote,
)
from devkit.simulate import SimJob, SimWorker, simulate_job, to_crowd_frame, worker_pool  # noqa: E402

LABELS = ("Opacity", "Device", "Effusion")
PREVALENCE = {"Opacity": 0.3, "Device": 0.1, "Effusion": 0.5}
ROI_SHAPES = {"Opacity": "rectangle", "Effusion": "polygon"}


def best_of(repeat: int, fn):
    """(fastest wall time over ``repeat`` runs, the last result)."""
    best, result = float("inf"), None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=30, help="size of the worker pool")
    ap.add_argument("--annotators", type=int, default=3, help="workers per object")
    ap.add_argument("--roi-share", type=float, default=0.1, help="share of objects with ROIs")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="pass answers as GT's JSON text")
    ap.add_argument("--no-crowdkit", action="store_true")
    ap.add_argument("--repeat", type=int, default=1,
                    help="time every step this many times and report the fastest (a shared machine)")
    return ap.parse_args(argv)


def _simulate(args: argparse.Namespace) -> tuple[SimJob, list[SimWorker]]:
    """The simulated job and its worker pool, with one line saying what was drawn."""
    t0 = time.perf_counter()
    pool = worker_pool(args.workers, accuracy=(0.55, 0.95), seed=args.seed)
    job = simulate_job(args.items, LABELS, pool, annotators_per_item=args.annotators,
                       prevalence=PREVALENCE, roi_shapes=ROI_SHAPES, roi_share=args.roi_share,
                       seed=args.seed, as_json=args.json)
    t_sim = time.perf_counter() - t0
    n_roi_items = sum(1 for it in job.truth_rois if it)
    print(f"simulated {args.items} objects x {args.annotators} workers (pool {args.workers}) x {len(LABELS)} "
          f"labels, ROIs on {args.roi_share:.0%} ({n_roi_items} objects with true ROIs) "
          f"in {t_sim:.1f}s; answers as {'JSON text' if args.json else 'dicts'}; "
          f"times: fastest of {args.repeat}")
    return job, pool


def _time_consolidation(args: argparse.Namespace, job: SimJob) -> tuple[float | None, float, np.ndarray]:
    """``consolidate_job`` timed without the ROIs (dict answers only) and with them: (labels-only time
    or None, labels + ROIs time, predicted present/absent per item and label)."""
    n = args.items
    t_labels = None
    if not args.json:  # the same answers without their ROIs: the classification-only job
        bare = [ItemAnswers(it.item_id, tuple(WorkerAnswer(a.worker_id, {k: v for k, v in a.content.items()
                                                                        if k != "rois"})
                                              for a in it.answers)) for it in job.items]
        t_labels, _ = best_of(args.repeat, lambda: consolidate_job(bare, LABELS))
        del bare
        print(f"consolidate_job, labels only: {t_labels:.2f}s ({n / t_labels:,.0f} objects/s)")

    t_ours, result = best_of(args.repeat, lambda: consolidate_job(job.items, LABELS))
    pred = np.array([[lab["present"] for lab in result.items[i]["labels"]] for i in job.item_ids()])
    print(f"consolidate_job, labels + ROIs: {t_ours:.2f}s  (errors: {len(result.errors)}; "
          f"{n / t_ours:,.0f} objects/s)")
    print(f"job agreement: {result.report.agreement}")
    return t_labels, t_ours, pred


def _time_core(args: argparse.Namespace, job: SimJob, pool: list[SimWorker]) -> tuple[float, dict[str, np.ndarray]]:
    """The EM core alone on arrays, per label: (total time, predicted present per label)."""
    t_core = 0.0
    core_pred = {}
    for label in LABELS:
        task, worker, answer = to_crowd_frame(job, label)
        t, res = best_of(args.repeat, lambda: dawid_skene_binary(task, worker, answer, args.items, len(pool)))
        t_core += t
        core_pred[label] = res.posterior > 0.5
    print(f"EM core only (3 labels, arrays in): {t_core:.2f}s")
    return t_core, core_pred


def _crowdkit(args: argparse.Namespace):
    """(pandas, crowd-kit's DawidSkene), or None when not wanted or not installed."""
    if args.no_crowdkit:
        return None
    try:
        import pandas as pd
        from crowdkit.aggregation import DawidSkene
    except ImportError as exc:
        print(f"crowd-kit not available ({exc}); its columns are n/a")
        return None
    return pd, DawidSkene


def _accuracy_table(args: argparse.Namespace, job: SimJob, pred: np.ndarray, core_pred: dict[str, np.ndarray],
                    ck) -> tuple[dict[str, float], float]:
    """Print accuracy per label (ours, crowd-kit, majority vote) and the mean row: (mean accuracies,
    crowd-kit's total time)."""
    n = args.items
    print()
    print(f"{'label':<10} {'ours':>8} {'crowdkit':>9} {'MV':>8} {'ours-ck pp':>11} {'ours-MV pp':>11} "
          f"{'ck time s':>10}")
    tot = {"ours": 0.0, "ck": 0.0, "mv": 0.0}
    t_ck_total = 0.0
    for j, label in enumerate(LABELS):
        truth = job.truth[:, j]
        task, worker, answer = to_crowd_frame(job, label)
        acc_ours = float((pred[:, j] == truth).mean())
        assert np.array_equal(pred[:, j], core_pred[label]), "job path and EM core disagree"
        acc_mv = float(((majority_vote(task, answer, n) > 0.5) == truth).mean())
        acc_ck = None
        t_ck = None
        if ck is not None:
            pd, DawidSkene = ck
            df = pd.DataFrame({"task": task, "worker": worker, "label": answer})
            t_ck, agg = best_of(args.repeat, lambda: DawidSkene(n_iter=100).fit_predict(df))
            t_ck_total += t_ck
            acc_ck = float((agg.sort_index().to_numpy().astype(bool) == truth).mean())
            tot["ck"] += acc_ck / len(LABELS)
        tot["ours"] += acc_ours / len(LABELS)
        tot["mv"] += acc_mv / len(LABELS)
        print(f"{label:<10} {acc_ours:8.4f} "
              f"{(f'{acc_ck:.4f}' if acc_ck is not None else 'n/a'):>9} {acc_mv:8.4f} "
              f"{(f'{100 * (acc_ours - acc_ck):+.2f}' if acc_ck is not None else 'n/a'):>11} "
              f"{100 * (acc_ours - acc_mv):+11.2f} {(f'{t_ck:.2f}' if t_ck is not None else 'n/a'):>10}")
    ck_mean = f"{tot['ck']:.4f}" if ck else "n/a"
    ck_diff = f"{100 * (tot['ours'] - tot['ck']):+.2f}" if ck else "n/a"
    ck_time = f"{t_ck_total:.2f}" if ck else "n/a"
    print(f"{'mean':<10} {tot['ours']:8.4f} {ck_mean:>9} {tot['mv']:8.4f} {ck_diff:>11} "
          f"{100 * (tot['ours'] - tot['mv']):+11.2f} {ck_time:>10}")
    return tot, t_ck_total


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    job, pool = _simulate(args)
    t_labels, t_ours, pred = _time_consolidation(args, job)
    t_core, core_pred = _time_core(args, job, pool)
    ck = _crowdkit(args)
    tot, t_ck_total = _accuracy_table(args, job, pred, core_pred, ck)
    print()
    if t_labels is not None:
        print(f"time: ours labels only {t_labels:.2f}s (budget 30 s: {t_labels / 30:.1%} of it)")
    print(f"time: ours labels + ROIs {t_ours:.2f}s (budget 30 s: {t_ours / 30:.1%} of it); "
          f"EM core {t_core:.2f}s" + (f"; crowd-kit DS {t_ck_total:.2f}s; crowd-kit / ours-core "
                                       f"{t_ck_total / t_core:.1f}x, crowd-kit / ours-end-to-end "
                                       f"{t_ck_total / t_ours:.1f}x" if ck else ""))
    ok = t_ours < 30 and (t_labels or 0) < 30 and tot["ours"] > tot["mv"] and (not ck or tot["ours"] >= tot["ck"] - 0.005)
    print("criteria (< 30 s, accuracy > MV, >= crowd-kit - 0.5 pp):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
