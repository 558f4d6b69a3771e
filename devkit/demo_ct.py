"""The demo's CT-series job, next to the chest X-ray job (issue 14; ``python -m devkit demo``).

The same commands a user types, on the demo's stack and portal:
``synth --series`` (CT-like series with nodules of known position and size, plus one multi-frame
instance copied from the first series with a nodule, so its SRs carry Referenced Frame Numbers) → ``upload`` → ``manifest --level series`` (one task per series and per multi-frame instance)
→ a portal job (:func:`labeling.portal.local.prepare_demo`) → K simulated annotators who outline each
nodule on a slice (:mod:`devkit.simulate_series`) through the portal's HTTP API → consolidation per
slice, review → ``portal export`` + ``portal sr`` (SRs whose regions reference the slices drawn on) →
``training train`` on the series labels (a 3-D DenseNet121 on volumes resampled to ``--ct-volume``)
→ ``predict`` + ``writeback`` at series level. Kept small (few series and slices, a small grid, few
epochs) so it adds little to the demo; the time it took is printed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

from labeling.cli import positive_int

CT_SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "ct-nodule.yaml"
CT_JOB = "ct-nodule-demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("the CT-series job (devkit/demo_ct.py)")
    g.add_argument("--ct-series", type=int, default=10,
                   help="synthetic CT series, one patient each (default 10: with seed 0 both classes fall on "
                        "both sides of the split by patient; 0 leaves the CT job out)")
    g.add_argument("--ct-slices", type=positive_int, default=32, help="slices per CT series (default 32)")
    g.add_argument("--ct-epochs", type=positive_int, default=2, help="3-D training epochs (default 2)")
    g.add_argument("--ct-volume", default="32,48,48", metavar="D,H,W",
                   help="the grid series are resampled to for the 3-D model (default 32,48,48)")


def run_ct_job(args: argparse.Namespace, workdir: Path, url: str, users_file: str,
               step: Callable[..., int], simulate: Callable[..., None]) -> Optional[dict[str, Any]]:
    """The CT job end to end (module docstring); None when a step failed (it printed why)."""
    from devkit.cli import main as devkit_main
    from devkit.simulate_series import simulate_series_answer
    from devkit.simulated_portal import PortalUser, job_id
    from labeling.cli import main
    from labeling.portal.local import prepare_demo
    from training.cli import main as training_main

    started = time.perf_counter()
    ct_dir = workdir / "data" / "ct"
    manifest, output = workdir / "ct-manifest.jsonl", workdir / "ct-output.manifest"
    model_dir, predictions = workdir / "model-ct", workdir / "ct-predictions.jsonl"
    if (ct_dir / "ground_truth.jsonl").is_file():
        print(f"\n== synthetic CT series: reusing {ct_dir}")
    elif step("synthetic CT series", ["synth", "--series", str(args.ct_series), "--slices", str(args.ct_slices),
                                       # with seed 0: nodules in 5 of the 10 series and the multi-frame copy
                                       # (its SRs reference frames), and each class on both sides of the
                                       # split by patient even if one consolidated label went wrong
                                       "--size", "64", "--seed", str(args.seed), "--prevalence", "0.15",
                                       "--multiframe-from", "nodule",
                                       "--out", str(ct_dir)], devkit_main, "devkit") != 0:
        return None
    if step("upload CT", ["upload", str(ct_dir), "--report", str(workdir / "ct-upload-report.json")], main) != 0:
        return None
    # synth's CT patients only (pydicom's samples hold CT images the simulated annotators know nothing of)
    if step("series manifest", ["manifest", "--schema", str(CT_SCHEMA), "--modality", "CT", "--patient-id",
                                "SYNCT*", "--level", "series", "--out", str(manifest)], main) != 0:
        return None
    demo = prepare_demo(workdir, manifest, CT_SCHEMA, job_name=CT_JOB, annotators=args.annotators)
    users = json.loads(Path(users_file).read_text())
    truth = {record["source"]: record for record in map(json.loads, (ct_dir / "ground_truth.jsonl").open())}
    admin = PortalUser(url, "admin", users["admin"]["password"])
    try:
        jid = job_id(admin, demo["job"])
        progress = lambda: admin.get(f"/api/jobs/{jid}/progress")  # noqa: E731
        print(f"\n== CT job {CT_JOB!r}: {sum(1 for _ in manifest.open())} series tasks, K={args.annotators}")
        simulate(url, workdir, users, CT_JOB, truth, args.annotators, progress,
                 answer_for=lambda record, worker, rng: simulate_series_answer(rng, record, worker))
        after = progress()
    finally:
        admin.close()
    if step("export CT", ["portal", "export", CT_JOB, "--out", str(output)], main) != 0:
        return None
    if step("DICOM SR of the CT job (regions on their slices)", ["portal", "sr", CT_JOB], main) != 0:
        return None
    hyper = ["--epochs", str(args.ct_epochs), "--volume-size", args.ct_volume, "--batch-size", "4",
             "--cache-dir", str(workdir / "training-cache")]
    if step("train the 3-D series model", ["train", "--manifest", str(output), "--out", str(model_dir), "--force",
                                           *hyper], training_main, "training") != 0:
        return None
    if step("predict series", ["predict", "--model", str(model_dir), "--manifest", str(manifest), "--out",
                               str(predictions)], training_main, "training") != 0:
        return None
    if step("write series predictions back", ["writeback", "--predictions", str(predictions)], training_main,
            "training") != 0:
        return None
    metrics = json.loads((model_dir / "metrics.json").read_text())
    agreement = (after.get("agreement") or {}).get("items_mean")
    return {"job": CT_JOB, "summary": f"{after['done']}/{after['items']} series done, {after['answers']} answers, "
                                      f"mean agreement {agreement}",
            "output_manifest": output, "model_dir": model_dir, "macro_auroc": metrics.get("macro_auroc"),
            "validation_series": metrics.get("n_val"),
            "predictions": predictions, "seconds": time.perf_counter() - started}
