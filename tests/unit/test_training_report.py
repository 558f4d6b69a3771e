"""training.report (metrics against scikit-learn and hand counts, HTML escaping) and
training.active (uncertainty measures, pre-labels)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from training.active import prelabel, uncertainty
from training.report import calibration, compute_metrics, write_report


def test_metrics_match_sklearn_and_hand_counts():
    y = np.array([[1, 0], [0, 0], [1, 1], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    p = np.array([[0.9, 0.2], [0.4, 0.3], [0.6, 0.8], [0.7, 0.4], [0.2, 0.1], [0.1, 0.9]], dtype=np.float32)
    w = np.ones_like(y)
    w[1, 1] = 0  # label B unknown for image 1
    m = compute_metrics(["A", "B"], y, p, w, n_train=10)
    assert m["auroc"]["A"] == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]), abs=1e-6)
    known = w[:, 1] > 0
    assert m["auroc"]["B"] == pytest.approx(roc_auc_score(y[known, 1], p[known, 1]), abs=1e-6)
    assert m["macro_auroc"] == pytest.approx((m["auroc"]["A"] + m["auroc"]["B"]) / 2, abs=1e-6)
    assert m["average_precision"]["A"] == pytest.approx(average_precision_score(y[:, 0], p[:, 0]), abs=1e-6)
    # A at 0.5: predicted present = images 0, 2, 3 → TP 0, 2; FP 3; FN 4; TN 1, 5
    assert m["per_label"]["A"]["confusion"] == {"tp": 2, "fp": 1, "tn": 2, "fn": 1}
    assert m["f1"]["A"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert m["per_label"]["B"]["n"] == 5
    assert m["n_train"] == 10 and m["n_val"] == 6


def test_single_class_label_has_no_auroc_and_macro_skips_it():
    y = np.array([[1, 0], [0, 0], [1, 0]], dtype=np.float32)
    p = np.array([[0.8, 0.1], [0.2, 0.3], [0.7, 0.2]], dtype=np.float32)
    m = compute_metrics(["A", "B"], y, p, np.ones_like(y), n_train=3)
    assert m["auroc"]["B"] is None and m["macro_auroc"] == pytest.approx(1.0)
    json.dumps(m, allow_nan=False)  # no NaN in metrics.json


def test_calibration_ece_and_brier():
    y = np.array([0, 0, 1, 1], dtype=float)
    perfect = calibration(y, np.array([0.0, 0.0, 1.0, 1.0]))
    assert perfect["ece"] == 0 and perfect["brier"] == 0
    flat = calibration(y, np.array([0.5, 0.5, 0.5, 0.5]))
    assert flat["brier"] == pytest.approx(0.25) and flat["ece"] == pytest.approx(0.0)
    wrong = calibration(y, np.array([0.95, 0.95, 0.05, 0.05]))
    assert wrong["ece"] == pytest.approx(0.95) and sum(b["count"] for b in wrong["bins"]) == 4


def test_report_files_and_escaped_label_names(tmp_path):
    rng = np.random.default_rng(0)
    y = (rng.random((20, 2)) < 0.5).astype(np.float32)
    p = np.clip(y * 0.6 + rng.random((20, 2)) * 0.4, 0, 1).astype(np.float32)
    history = [{"epoch": 1, "train_loss": 0.7, "val_loss": 0.6, "val_macro_auroc": 0.8, "seconds": 1.0},
               {"epoch": 2, "train_loss": 0.5, "val_loss": 0.5, "val_macro_auroc": None, "seconds": 2.0}]
    write_report(tmp_path, ["<script>alert(1)</script>", "Device"], y, p, np.ones_like(y), n_train=30,
                 history=history, best_epoch=1)
    page = (tmp_path / "report.html").read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for name in ("roc.png", "training_curves.png", "calibration.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"auroc", "macro_auroc", "n_train", "n_val"} <= set(metrics)


def pred(*probs: float) -> dict:
    return {"source": "x", "model": {"name": "m", "version": "v1"},
            "labels": [{"name": f"L{i}", "present": p >= 0.5, "confidence": p if p >= 0.5 else 1 - p,
                        "probability": p} for i, p in enumerate(probs)]}


def test_uncertainty_measures():
    assert uncertainty(pred(0.5, 0.5)) == pytest.approx(1.0)
    assert uncertainty(pred(0.0, 1.0)) == pytest.approx(0.0, abs=1e-9)
    # margin looks at the least certain label; entropy averages
    one_unsure, all_mild = pred(0.5, 0.01, 0.99), pred(0.3, 0.7, 0.3)
    assert uncertainty(one_unsure, "margin") > uncertainty(all_mild, "margin")
    assert uncertainty(one_unsure, "entropy") < uncertainty(all_mild, "entropy")
    with pytest.raises(ValueError, match="strategy"):
        uncertainty(pred(0.5), "random")


def test_prelabel_is_the_label_shape_with_the_model():
    out = prelabel(pred(0.8, 0.1))
    assert out["model"] == "m v1" and out["rois"] == []
    assert out["labels"] == [{"name": "L0", "present": True, "confidence": 0.8},
                             {"name": "L1", "present": False, "confidence": pytest.approx(0.9)}]
