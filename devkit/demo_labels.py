"""Simulated-annotator labels for a synthetic dataset: an output manifest without people.

For the demo, the notebook and the measurements: each image of a ``python -m devkit synth``
dataset is "labeled" by ``annotators_per_item`` simulated workers of known quality
(:mod:`devkit.simulate`'s generative model: a worker says "present" with its sensitivity when
the finding is there, with 1 - specificity when not), conditioned on the image's ground truth
(``ground_truth.jsonl``); the answers are consolidated by :func:`labeling.consolidation.consolidate_job`
(Dawid–Skene) and written as GT-format output-manifest lines by
:func:`labeling.gt.output_manifest.output_line`. Training then sees exactly what it would see after a
real job: consolidated labels with confidences, including the annotators' mistakes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence


def synth_records(synth_dir: str | Path) -> list[dict[str, Any]]:
    """The ``ground_truth.jsonl`` lines of a synthetic dataset."""
    path = Path(synth_dir) / "ground_truth.jsonl"
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def simulated_output_lines(records: Sequence[Mapping[str, Any]], instance_id: Callable[[Mapping[str, Any]], str], *,
                           annotators: int = 5, annotators_per_item: int = 3,
                           accuracy: tuple[float, float] = (0.75, 0.95), seed: int = 0,
                           label_attribute: str = "chest-xray", job_name: str = "demo-simulated",
                           schema: str = "chest-xray") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(output-manifest lines, a summary with the consolidated labels' accuracy against the truth).

    ``instance_id(record)`` names each image as the manifest's ``source`` (its Orthanc id).
    """
    from labeling.consolidation import ItemAnswers, consolidate_job
    from labeling.gt.output_manifest import output_line
    from devkit.simulate import simulate_job, worker_pool

    names = [entry["name"] for entry in records[0]["labels"]]
    workers = worker_pool(annotators, accuracy=accuracy, seed=seed)
    items = []
    for i, record in enumerate(records):
        truth = {e["name"]: bool(e["present"]) for e in record["labels"]}
        # one object per image, its truth fixed by prevalence 1 or 0: the same generative model
        job = simulate_job(1, names, workers, annotators_per_item=annotators_per_item,
                           prevalence={n: 1.0 if truth[n] else 0.0 for n in names},
                           image=(record["image"]["rows"], record["image"]["columns"]), seed=seed * 100_003 + i)
        items.append(ItemAnswers(instance_id(record), job.items[0].answers))
    result = consolidate_job(items, names)
    if result.errors:
        raise ValueError(f"consolidation failed for {len(result.errors)} images: {result.errors[0]}")
    lines, correct, total = [], 0, 0
    for record, item in zip(records, items):
        content = result.items[item.item_id]
        truth = {e["name"]: bool(e["present"]) for e in record["labels"]}
        for entry in content["labels"]:
            correct += entry["present"] == truth[entry["name"]]
            total += 1
        line = {"source": item.item_id, "labels": names, "task_type": "classification", "schema": schema}
        lines.append(output_line(line, label_attribute, content, job_name))
    return lines, {"images": len(lines), "label_accuracy_vs_truth": round(correct / max(total, 1), 4),
                   "annotators": annotators, "annotators_per_item": annotators_per_item}


def write_simulated_manifest(synth_dir: str | Path, out: str | Path, *, instance_ids: Optional[Mapping[str, str]] = None,
                             **kwargs: Any) -> dict[str, Any]:
    """Write the simulated output manifest of a synth dataset; ``instance_ids`` maps each record's
    ``sop_instance_uid`` to its Orthanc id (default: the SOP Instance UID itself, for a directory
    of ``<uid>.dcm`` files)."""
    from labeling.gt.output_manifest import write_output_manifest

    records = synth_records(synth_dir)
    ids = dict(instance_ids or {})

    def instance_id(record: Mapping[str, Any]) -> str:
        uid = record["sop_instance_uid"]
        return ids.get(uid, uid) if instance_ids is not None else uid

    if instance_ids is not None:
        records = [r for r in records if r["sop_instance_uid"] in ids]
    lines, summary = simulated_output_lines(records, instance_id, **kwargs)
    write_output_manifest(out, lines)
    return summary


def link_images(synth_dir: str | Path, images_dir: str | Path) -> int:
    """A directory of ``<SOP Instance UID>.dcm`` symlinks to a synth dataset's files (``--images``)."""
    out = Path(images_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for record in synth_records(synth_dir):
        link = out / f"{record['sop_instance_uid']}.dcm"
        if not link.exists():
            link.symlink_to((Path(synth_dir) / record["file"]).resolve())
        n += 1
    return n


def write_truth_manifest(synth_dir: str | Path, out: str | Path, *, instance_ids: Optional[Mapping[str, str]] = None,
                         label_attribute: str = "chest-xray", schema: str = "chest-xray") -> int:
    """An output manifest holding the synthetic ground truth (no annotators): to evaluate a model
    against the truth (``python -m training evaluate --manifest <this>``) rather than against the
    consolidated labels, which carry the simulated annotators' mistakes."""
    from labeling.gt.output_manifest import output_line, write_output_manifest

    lines = []
    for record in synth_records(synth_dir):
        uid = record["sop_instance_uid"]
        if instance_ids is not None and uid not in instance_ids:
            continue
        names = [e["name"] for e in record["labels"]]
        content = {"labels": [{"name": e["name"], "present": bool(e["present"])} for e in record["labels"]],
                   "rois": list(record["rois"]), "image": dict(record["image"])}
        base = {"source": (instance_ids or {}).get(uid, uid), "labels": names, "task_type": "classification",
                "schema": schema}
        lines.append(output_line(base, label_attribute, content, "synthetic-ground-truth", human_annotated=False))
    write_output_manifest(out, lines)
    return len(lines)
