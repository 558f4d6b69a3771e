"""Model-assisted pre-labels and an uncertainty-first order for the next labeling job
(``python -m training order``).

Input: a manifest of the images to label next (any manifest :func:`labeling.manifest.format.read_manifest`
reads; the label attribute and ``-metadata`` of a previous job are dropped from each line, so an
output manifest can serve too) and the predictions of ``python -m training predict``.

Output: the same lines, each with a ``prelabel`` key (the label shape of docs/architecture.md
with ``present`` + ``confidence`` per label, ``rois: []``, and ``"model": "<name> <version>"``),
which the portal and the GT template pass to the viewer as the annotator's initial answer, sorted
**most uncertain first** (uncertainty sampling, Lewis & Gale 1994; Settles 2009 "Active Learning
Literature Survey" §3.1), so the labeling budget goes where the model learns most:

* ``entropy`` (default): the mean binary entropy of the labels' probabilities,
  ``H(p) = -p log2 p - (1-p) log2 (1-p)`` — 1 bit at p = 0.5, 0 at p ∈ {0, 1};
* ``margin``: ``1 - min_l |2 p_l - 1|``, the closeness to 0.5 of the *least* certain label (an
  image with one ambiguous finding outranks one that is mildly unsure everywhere).

Ties keep the manifest's order (a stable sort). Lines without a prediction go last, unchanged.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from labeling.cli import bad_input

STRATEGIES = ("entropy", "margin")


def _entropy(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def uncertainty(prediction: Mapping[str, Any], strategy: str = "entropy") -> float:
    """How unsure the model is about an image, in [0, 1] (module docstring)."""
    probs = [float(e["probability"]) for e in prediction["labels"]]
    if not probs:
        return 0.0
    if strategy == "entropy":
        return sum(_entropy(p) for p in probs) / len(probs)
    if strategy == "margin":
        return 1.0 - min(abs(2 * p - 1) for p in probs)
    raise ValueError(f"strategy: must be one of {', '.join(STRATEGIES)}, got {strategy!r}")


def prelabel(prediction: Mapping[str, Any]) -> dict[str, Any]:
    """The ``prelabel`` value of a manifest line: label shape + the model that produced it."""
    model = prediction["model"]
    out: dict[str, Any] = {
        "labels": [{"name": e["name"], "present": bool(e["present"]), "confidence": float(e["confidence"])}
                   for e in prediction["labels"]],
        "rois": [],
        "model": f"{model['name']} {model.get('version', '')}".strip(),
    }
    if prediction.get("image", {}).get("rows"):
        out["image"] = dict(prediction["image"])
    return out


def _without_job_output(extra: Mapping[str, Any]) -> dict[str, Any]:
    """Drop a previous job's ``<attr>`` + ``<attr>-metadata`` (and an old ``prelabel``)."""
    drop = {k for k in extra if k.endswith("-metadata")}
    drop |= {k[: -len("-metadata")] for k in drop}
    drop.add("prelabel")
    return {k: v for k, v in extra.items() if k not in drop}


def order_lines(lines: Sequence[Any], predictions: Sequence[Mapping[str, Any]], *, strategy: str = "entropy",
                limit: Optional[int] = None) -> tuple[list[Any], list[float]]:
    """``labeling.manifest.format.ManifestLine``s with pre-labels, most uncertain first, and their scores."""
    import dataclasses

    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    by_source = {p["source"]: p for p in predictions}
    scored: list[tuple[float, int, Any]] = []
    for index, line in enumerate(lines):
        extra = _without_job_output(line.extra)
        prediction = by_source.get(line.source)
        score = -1.0
        if prediction is not None:
            extra["prelabel"] = prelabel(prediction)
            score = uncertainty(prediction, strategy)
        scored.append((score, index, dataclasses.replace(line, extra=extra)))
    scored.sort(key=lambda t: (-t[0], t[1]))
    if limit is not None:
        scored = scored[:limit]
    return [t[2] for t in scored], [t[0] for t in scored]


def order_manifest(manifest: str | Path, predictions: str | Path, out: str | Path, *, strategy: str = "entropy",
                   limit: Optional[int] = None) -> dict[str, Any]:
    """Read, order, write (atomically); returns a small summary for printing."""
    from labeling.manifest.format import read_manifest, write_manifest
    from training.inference import read_predictions

    lines = read_manifest(manifest)
    preds = read_predictions(predictions)
    ordered, scores = order_lines(lines, preds, strategy=strategy, limit=limit)
    write_manifest(ordered, out)
    with_prelabel = sum(1 for s in scores if s >= 0)
    return {"lines": len(ordered), "with_prelabel": with_prelabel,
            "top_uncertainty": round(scores[0], 4) if scores else None, "strategy": strategy}


def register(subparsers: argparse._SubParsersAction) -> None:
    from labeling.cli import positive_int

    p = subparsers.add_parser(
        "order",
        description="Add a 'prelabel' (the model's answer) to each manifest line and sort the lines by "
                    "the model's uncertainty, most uncertain first, for the next labeling job.")
    p.add_argument("--manifest", type=Path, required=True, help="manifest of the images to label next")
    p.add_argument("--predictions", type=Path, required=True, help="predictions (python -m training predict)")
    p.add_argument("--out", type=Path, required=True, help="the ordered, pre-labeled manifest")
    p.add_argument("--strategy", choices=STRATEGIES, default="entropy", help="uncertainty measure (default entropy)")
    p.add_argument("--limit", type=positive_int, help="keep only the N most uncertain images")
    p.set_defaults(func=run_order)


def run_order(args: argparse.Namespace) -> int:
    try:
        summary = order_manifest(args.manifest, args.predictions, args.out, strategy=args.strategy,
                                 limit=args.limit)
    except (ValueError, OSError) as exc:
        raise bad_input(exc) from exc
    print(f"{summary['lines']} lines → {args.out} ({summary['with_prelabel']} pre-labeled, "
          f"{summary['strategy']} order, top uncertainty {summary['top_uncertainty']})")
    return 0
