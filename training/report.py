"""Evaluation report: metrics per label, plots, ``metrics.json`` and a self-contained ``report.html``.

Per label, over the images whose label is known (loss weight > 0):

* **AUROC** (area under the ROC curve, scikit-learn ``roc_auc_score``) and **average precision**
  (area under the precision-recall curve, ``average_precision_score``); undefined (``null``) when
  the evaluated images hold only one class of the label. ``macro_auroc`` is their unweighted mean
  over the labels where it is defined.
* **F1 and the confusion matrix at the threshold 0.5** on the predicted probability. 0.5 is fixed,
  not tuned: a threshold picked on the validation set would make the F1 reported on that same set
  optimistic. The Youden-J threshold (max sensitivity + specificity - 1) is reported for
  information, marked as tuned on the evaluated set.
* **Calibration**: reliability diagram over 10 equal-width probability bins (count, mean
  predicted probability, observed frequency per bin), expected calibration error
  ECE = sum_b (n_b / N) |freq_b - mean_pred_b| (Naeini et al. 2015), and the Brier score
  (mean squared error of the probability).

``metrics.json`` holds at least the keys other tools rely on: ``auroc`` ({label: float|null}),
``macro_auroc``, ``n_train``, ``n_val``. Plots are PNGs (matplotlib, Agg backend) beside it, and
``report.html`` embeds them (data URIs) so the one file can be opened or mailed alone; all text
from the data (label names, model name) is HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

THRESHOLD = 0.5
CALIBRATION_BINS = 10


def _finite(x: float) -> Optional[float]:
    return None if x is None or not math.isfinite(x) else float(round(x, 6))


def auroc_per_label(target: np.ndarray, prob: np.ndarray, weight: np.ndarray) -> list[float]:
    """AUROC per label over the known images (NaN when only one class is present)."""
    from sklearn.metrics import roc_auc_score

    out = []
    for j in range(target.shape[1]):
        known = weight[:, j] > 0
        y = target[known, j]
        if y.size == 0 or y.min() == y.max():
            out.append(float("nan"))
        else:
            out.append(float(roc_auc_score(y, prob[known, j])))
    return out


def macro(values: Sequence[float]) -> float:
    """Mean of the defined values (NaN when none is)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def calibration(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Reliability bins, ECE and Brier score of one label (module docstring)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        mean_p = float(p[sel].mean()) if n else None
        freq = float(y[sel].mean()) if n else None
        if n:
            ece += n / max(len(y), 1) * abs(freq - mean_p)
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": n,
                     "mean_predicted": _finite(mean_p) if n else None,
                     "observed": _finite(freq) if n else None})
    brier = float(np.mean((p - y) ** 2)) if len(y) else float("nan")
    return {"bins": rows, "ece": _finite(ece if len(y) else float("nan")), "brier": _finite(brier)}


def label_metrics(y: np.ndarray, p: np.ndarray, threshold: float = THRESHOLD) -> dict[str, Any]:
    """Every per-label number of the report, for one label's known images."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    tn = int(np.sum(~pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else float("nan")
    both = y.size > 0 and y.min() != y.max()
    auroc = float(roc_auc_score(y, p)) if both else float("nan")
    ap = float(average_precision_score(y, p)) if both and y.sum() > 0 else float("nan")
    youden = float("nan")
    if both:
        fpr, tpr, thr = roc_curve(y, p)
        k = int(np.argmax(tpr - fpr))
        youden = float(min(thr[k], 1.0))
    return {
        "n": int(y.size), "positives": int(y.sum()),
        "auroc": _finite(auroc), "average_precision": _finite(ap),
        "threshold": threshold, "f1": _finite(f1),
        "sensitivity": _finite(tp / (tp + fn)) if (tp + fn) else None,
        "specificity": _finite(tn / (tn + fp)) if (tn + fp) else None,
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        "youden_threshold_tuned_on_this_set": _finite(youden),
        "calibration": calibration(y.astype(float), p.astype(float)),
    }


def compute_metrics(labels: Sequence[str], target: np.ndarray, prob: np.ndarray, weight: np.ndarray, *,
                    n_train: int, extra: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """``metrics.json``'s content for predictions ``prob`` (N, L) of targets ``target`` (N, L)."""
    per_label = {}
    for j, name in enumerate(labels):
        known = weight[:, j] > 0
        per_label[name] = label_metrics(target[known, j], prob[known, j])
    auroc = {name: per_label[name]["auroc"] for name in labels}
    metrics: dict[str, Any] = {
        "auroc": auroc,
        "macro_auroc": _finite(macro([v if v is not None else float("nan") for v in auroc.values()])),
        "average_precision": {name: per_label[name]["average_precision"] for name in labels},
        "macro_average_precision": _finite(macro([per_label[n]["average_precision"] or float("nan")
                                                  for n in labels])),
        "f1": {name: per_label[name]["f1"] for name in labels},
        "threshold": THRESHOLD,
        "threshold_rule": "fixed 0.5 on the predicted probability (not tuned on the evaluated images)",
        "n_train": int(n_train),
        "n_val": int(target.shape[0]),
        "labels": list(labels),
        "per_label": per_label,
    }
    if extra:
        metrics.update(extra)
    return metrics


# --- plots -----------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def plot_roc(path: Path, labels: Sequence[str], target: np.ndarray, prob: np.ndarray, weight: np.ndarray) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    for j, name in enumerate(labels):
        known = weight[:, j] > 0
        y, p = target[known, j], prob[known, j]
        if y.size and y.min() != y.max():
            fpr, tpr, _ = roc_curve(y, p)
            ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title("ROC, validation images")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_history(path: Path, history: Sequence[Mapping[str, Any]], best_epoch: Optional[int]) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="training loss")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("BCE loss")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h["val_macro_auroc"] if h["val_macro_auroc"] is not None else np.nan for h in history],
             "g:", label="validation macro AUROC")
    ax2.set_ylabel("macro AUROC")
    ax2.set_ylim(0, 1.02)
    if best_epoch is not None:
        ax.axvline(best_epoch, color="grey", lw=0.8, ls="--")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper right")
    ax.set_title("Training curves (dashed line: kept checkpoint)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_calibration(path: Path, metrics: Mapping[str, Any]) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfectly calibrated")
    for name in metrics["labels"]:
        bins = [b for b in metrics["per_label"][name]["calibration"]["bins"] if b["count"]]
        ece = metrics["per_label"][name]["calibration"]["ece"]
        ax.plot([b["mean_predicted"] for b in bins], [b["observed"] for b in bins], "o-",
                label=f"{name} (ECE {ece if ece is not None else float('nan'):.3f})")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title("Reliability diagram, validation images")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --- html ------------------------------------------------------------------------------------

PLOTS = (("roc.png", "ROC curves"), ("training_curves.png", "Loss and validation AUROC per epoch"),
         ("calibration.png", "Calibration"))


def _fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.3f}"
    return html.escape(str(x))


def render_html(metrics: Mapping[str, Any], out_dir: Path, *, title: str = "Model evaluation") -> str:
    """The report page: summary, per-label table, confusion, the plots inlined as data URIs."""
    esc = html.escape
    rows = []
    for name in metrics["labels"]:
        m = metrics["per_label"][name]
        c = m["confusion"]
        rows.append(
            "<tr>" + "".join(f"<td>{v}</td>" for v in (
                esc(name), m["n"], m["positives"], _fmt(m["auroc"]), _fmt(m["average_precision"]),
                _fmt(m["f1"]), _fmt(m["sensitivity"]), _fmt(m["specificity"]),
                f"{c['tp']} / {c['fp']} / {c['tn']} / {c['fn']}",
                _fmt(m["calibration"]["ece"]), _fmt(m["calibration"]["brier"]),
                _fmt(m["youden_threshold_tuned_on_this_set"]))) + "</tr>")
    images = []
    for file, caption in PLOTS:
        path = out_dir / file
        if path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            images.append(f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
                          f"<figcaption>{esc(caption)} ({esc(file)})</figcaption></figure>")
    facts = {
        "model": metrics.get("model", {}).get("name") if isinstance(metrics.get("model"), Mapping) else None,
        "macro AUROC (validation)": metrics.get("macro_auroc"),
        "training images": metrics.get("n_train"), "validation images": metrics.get("n_val"),
        "training patients": metrics.get("n_train_patients"),
        "validation patients": metrics.get("n_val_patients"),
        "kept epoch": metrics.get("best_epoch"), "epochs run": metrics.get("epochs_run"),
        "training time (s)": metrics.get("training_seconds"), "device": metrics.get("device"),
        "threshold": metrics.get("threshold_rule"),
    }
    summary = "".join(f"<tr><th>{esc(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in facts.items() if v is not None)
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = ("label", "images", "positives", "AUROC", "avg precision", "F1 @0.5", "sensitivity",
            "specificity", "TP / FP / TN / FN", "ECE", "Brier", "Youden threshold*")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #f4f4f4; text-align: left; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; }}
img {{ max-width: 520px; }}
</style></head><body>
<h1>{esc(title)}</h1>
<p>Evaluated on the validation images: patients never seen in training. Generated {esc(generated)}.</p>
<table>{summary}</table>
<h2>Per label</h2>
<table><tr>{''.join(f'<th>{esc(h)}</th>' for h in head)}</tr>{''.join(rows)}</table>
<p>* Youden threshold: tuned on these same images, so for information only; F1, sensitivity,
specificity and the confusion counts use the fixed threshold 0.5.</p>
<h2>Plots</h2>
{''.join(images)}
</body></html>
"""


def write_report(out_dir: str | Path, labels: Sequence[str], target: np.ndarray, prob: np.ndarray,
                 weight: np.ndarray, *, n_train: int, history: Sequence[Mapping[str, Any]] = (),
                 best_epoch: Optional[int] = None, extra: Optional[Mapping[str, Any]] = None,
                 title: str = "Model evaluation") -> dict[str, Any]:
    """Compute the metrics, write the PNGs, ``metrics.json`` and ``report.html``; return the metrics."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(labels, target, prob, weight, n_train=n_train, extra=extra)
    if history:
        metrics["history"] = list(history)
        plot_history(out / "training_curves.png", history, best_epoch)
    plot_roc(out / "roc.png", labels, target, prob, weight)
    plot_calibration(out / "calibration.png", metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    (out / "report.html").write_text(render_html(metrics, out, title=title), encoding="utf-8")
    return metrics
