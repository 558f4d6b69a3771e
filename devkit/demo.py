"""``python -m devkit demo`` — the local loop behind ``make demo``, end to end and unattended.

Runs the same commands a user would type, in order, against a private local stack:

1. data plane: ``local up`` → ``synth`` (chest-radiograph-like DX with ground truth) → ``samples``
   (pydicom's real-world files) → ``upload`` → ``manifest``;
2. labeling: the portal starts next to Orthanc (``portal migrate`` + ``serve`` on loopback), a job is
   created from the manifest and the label schema with K annotators per image, and K simulated
   annotators of known, different quality (:mod:`devkit.simulated_portal`) label every image
   through the portal's HTTP API — or people do, with ``--interactive``; the portal consolidates each
   image at K answers, a simulated reviewer accepts the low-agreement ones from the review queue;
3. results: ``portal export`` (output manifest, GT format) and ``portal sr`` (DICOM SR into Orthanc);
4. model: ``python -m training train`` (MONAI DenseNet121) → report; ``evaluate`` against the
   synthetic ground truth on the held-out patients; ``predict`` → ``writeback`` (SR with the model as
   observer) → ``order`` (pre-labeled, uncertainty-first manifest for the next job);
5. a CT-series job next to it (:mod:`devkit.demo_ct`): CT series with nodules → series manifest →
   portal job whose simulated annotators outline nodules on slices → per-slice consolidation → SRs
   on the right slices → a 3-D model trained and reported on the series labels (``--ct-series 0``
   leaves it out).

Rerunning reuses the stack, the data, the users and the job (Orthanc answers ``AlreadyStored``; the
annotators find nothing left to label) and trains again. The portal keeps running afterwards for a
look around; ``make demo-down`` stops it and the stack.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Callable, Mapping, Optional

from labeling.cli import positive_int
from labeling.manifest import INDEX_FILE_ENV
from labeling.orthanc.local_stack import DEFAULT_WORKDIR, LocalStack, LocalStackError
from devkit import demo_ct
from devkit.simulated_portal import SimulationError

DEMO_SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "chest-xray.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        description="Start PostgreSQL + Orthanc on loopback, generate and load a dataset, build a labeling "
                    "manifest, label it in the portal (simulated annotators, or people with --interactive), "
                    "export + SR, train and evaluate a model, write predictions back, and print where to look.")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"stack and data directory (default: {DEFAULT_WORKDIR})")
    parser.add_argument("--patients", type=int, default=40, help="synthetic patients (default: 40)")
    parser.add_argument("--size", type=int, default=256, help="synthetic image size in pixels (default: 256)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic dataset seed (default: 0)")
    parser.add_argument("--schema", type=Path, default=DEMO_SCHEMA, help="label schema for the manifest")
    parser.add_argument("--annotators", type=positive_int, default=3,
                        help="annotators per image (K) and simulated annotators (default: 3)")
    parser.add_argument("--portal-port", type=int, default=0,
                        help="portal port on 127.0.0.1 (default: a free port)")
    parser.add_argument("--interactive", action="store_true",
                        help="people label in the portal instead of simulated annotators; the demo waits "
                             "until every image has K answers and the review queue is empty")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="training epochs (default: the trainer's default)")
    parser.add_argument("--image-size", type=positive_int, default=None,
                        help="training input size in pixels (default: the trainer's default)")
    demo_ct.add_arguments(parser)
    parser.set_defaults(func=run)


def _step(title: str, argv: list[str], main: Callable[[list[str]], int], package: str = "labeling") -> int:
    print(f"\n== {title}: python -m {package} {' '.join(argv)}", flush=True)
    return main(argv)


def run(args: argparse.Namespace) -> int:
    from labeling.cli import main

    workdir = Path(args.workdir).resolve()
    data = workdir / "data"
    synth_dir = data / "synth"
    manifest = workdir / "manifest.jsonl"

    print(f"== local stack in {workdir}", flush=True)
    stack = LocalStack(workdir)
    try:
        info = stack.up()
    except LocalStackError as exc:
        print(f"error: {exc}")
        return 2
    print(f"Orthanc {info.url} ({'already running' if info.already_running else 'started'}), "
          f"PostgreSQL on 127.0.0.1:{info.postgres_port}")
    conn = stack.connection()
    data.mkdir(parents=True, exist_ok=True)  # after `up`: a fresh work dir is `up`'s to set up
    # The sub-commands read the connection the documented way: the variables of orthanc.env.
    os.environ.update(ORTHANC_URL=conn.url, ORTHANC_USERNAME=conn.username, ORTHANC_PASSWORD=conn.password)
    os.environ[INDEX_FILE_ENV] = str(stack.manifest_index_file)

    if not _make_data(args, data):
        return 2
    upload_report = workdir / "upload-report.json"
    upload_rc = _step("upload", ["upload", str(synth_dir), str(data / "samples"), "--report", str(upload_report)],
                      main)
    # A rejected sample (a syntax Orthanc 1.10 refuses) is listed by upload; the loop goes on.
    manifest_report = workdir / "manifest-report.json"
    if _step("manifest", ["manifest", "--schema", str(args.schema), "--modality", "DX",
                          "--out", str(manifest), "--report", str(manifest_report)], main) != 0:
        return 2

    try:
        labeled = _label_in_portal(args, workdir, manifest, synth_dir)
    except (LocalStackError, SimulationError) as exc:
        print(f"error: {exc}")
        return 2
    if labeled is None:
        return 2
    results = _train_and_write_back(args, workdir, manifest, synth_dir, labeled["output_manifest"])
    if results is None:
        return 2
    ct = None
    if args.ct_series and args.interactive:
        print("\n== CT-series job: left out with --interactive (python -m devkit demo runs it with simulated "
              "annotators; devkit/demo_ct.py lists its steps)")
    elif args.ct_series:
        try:
            ct = demo_ct.run_ct_job(args, workdir, labeled["url"], labeled["users_file"], _step, simulate_labeling)
        except (LocalStackError, SimulationError) as exc:
            print(f"error: {exc}")
            return 2
        if ct is None:
            return 2

    totals = json.loads(upload_report.read_text()).get("totals", {}) if upload_report.is_file() else {}
    _print_summary(info, conn.username, workdir, totals, upload_report, manifest, manifest_report, synth_dir,
                   labeled, results, ct)
    return 0 if upload_rc == 0 else upload_rc


def _make_data(args: argparse.Namespace, data: Path) -> bool:
    """The synthetic chest X-rays and pydicom's samples under ``data`` (reused when present)."""
    from devkit.cli import main as devkit_main

    synth_dir, samples_dir = data / "synth", data / "samples"
    if (synth_dir / "dataset.json").is_file():
        print(f"\n== synthetic dataset: reusing {synth_dir}")
    elif _step("synthetic dataset", ["synth", "--out", str(synth_dir), "--patients", str(args.patients),
                                     "--size", str(args.size), "--seed", str(args.seed)],
               devkit_main, "devkit") != 0:
        return False
    if samples_dir.is_dir() and any(samples_dir.iterdir()):
        print(f"\n== pydicom samples: reusing {samples_dir}")
    elif _step("pydicom samples", ["samples", "--out", str(samples_dir), "--distinct-uids"], devkit_main,
               "devkit") != 0:
        return False
    return True


def _print_summary(info, username: str, workdir: Path, totals: dict, upload_report: Path, manifest: Path,
                   manifest_report: Path, synth_dir: Path, labeled: dict, results: dict,
                   ct: Optional[dict]) -> None:
    """The closing block: where every result of the run is."""
    lines = sum(1 for _ in manifest.open())
    print("\n== done")
    print(f"Orthanc Explorer   {info.explorer_url}  (user {username}; password in {info.env_file})")
    print(f"connection         source {info.env_file}")
    print(f"uploaded           {totals}  report: {upload_report}")
    print(f"manifest           {manifest} ({lines} lines)  report: {manifest_report}")
    print(f"ground truth       {synth_dir / 'ground_truth.jsonl'}")
    print(f"labeling portal    {labeled['url']}/  (users and passwords: {labeled['users_file']})")
    print(f"labeling job       {labeled['job']}: {labeled['summary']}")
    print(f"output manifest    {labeled['output_manifest']}")
    print(f"model              {results['model_dir']}  (macro AUROC {results['macro_auroc']} on held-out "
          f"patients vs the consolidated labels; {results['truth_macro_auroc']} vs the ground truth)")
    print(f"report             {results['model_dir'] / 'report.html'}")
    print(f"predictions        {results['predictions']}  (SR per image in Orthanc, model as observer)")
    print(f"next job manifest  {results['next_manifest']}  (pre-labeled, most uncertain first)")
    if ct is not None:
        print(f"CT-series job      {ct['job']}: {ct['summary']}; output {ct['output_manifest']}")
        # A few held-out series (3 by default) make any AUROC luck: say so rather than print a bare 1.000.
        print(f"3-D series model   {ct['model_dir']}  (macro AUROC {_fmt(ct['macro_auroc'])} on "
              f"{ct['validation_series']} held-out series: too few to judge the model, this job exercises the "
              f"series path; series predictions {ct['predictions']} written back as SRs)")
        print(f"CT job time        {ct['seconds']:.0f} s of this run (synth, upload, labeling, SR, 3-D training)")
    print(f"stop everything    make demo-down   (or python -m labeling portal stop --workdir {workdir} && "
          f"python -m labeling local down --workdir {workdir})")


def _label_in_portal(args: argparse.Namespace, workdir: Path, manifest: Path, synth_dir: Path) -> Optional[dict]:
    """Portal up, users + job, labeling (simulated or people), review, export, SR. None on a failed step."""
    from labeling.cli import main
    from devkit import simulated_portal as simulated
    from labeling.portal.local import portal_env, prepare_demo, start_local_portal, stop_portal_in

    print("\n== labeling portal", flush=True)
    stop_portal_in(workdir)
    url, _ = start_local_portal(workdir, port=args.portal_port)
    demo = prepare_demo(workdir, manifest, args.schema, annotators=args.annotators)
    users = json.loads(Path(demo["users_file"]).read_text())
    job = demo["job"]
    os.environ.update(portal_env(workdir))  # `portal export|sr` below read the documented PORTAL_* variables
    print(f"portal {url}/ — job {job!r}, K={args.annotators}; users and passwords in {demo['users_file']}")

    admin = simulated.PortalUser(url, "admin", users["admin"]["password"])
    try:
        job_id = simulated.job_id(admin, job)

        def progress() -> dict:
            return admin.get(f"/api/jobs/{job_id}/progress")

        if args.interactive:
            print("label in your browser (log in as an annotator; reviewers see the review queue); waiting until "
                  "every image has K answers and nothing waits for review — Ctrl-C stops the demo", flush=True)
            def finished() -> bool:
                now = progress()
                return now["open"] == 0 and now["review"] == 0

            simulated.wait_until(finished, timeout=7 * 24 * 3600)
        else:
            simulate_labeling(url, workdir, users, job, simulated.truth_by_orthanc_id(synth_dir / "ground_truth.jsonl"),
                              args.annotators, progress)
        after = progress()
    finally:
        admin.close()

    output_manifest = workdir / "output.manifest"
    if _step("export", ["portal", "export", job, "--out", str(output_manifest)], main) != 0:
        return None
    if _step("DICOM SR into Orthanc", ["portal", "sr", job], main) != 0:
        return None
    agreement = after.get("agreement") or {}
    summary = (f"{after['done']}/{after['items']} images done, {after['answers']} answers, mean image agreement "
               f"{_fmt(agreement.get('items_mean'))} (review below {agreement.get('threshold')})")
    return {"url": url, "users_file": demo["users_file"], "job": job, "summary": summary,
            "output_manifest": output_manifest}


def simulate_labeling(url: str, workdir: Path, users: dict, job: str, truth: Mapping[str, Mapping],
                      annotators: int, progress: Callable[[], dict], answer_for: Optional[Callable] = None) -> None:
    """K simulated annotators label every item of ``job`` over HTTP (``truth``: ground truth by the
    item's source; ``answer_for``: as :func:`devkit.simulated_portal.annotate`'s), then the simulated
    reviewer accepts the review queue."""
    from concurrent.futures import ThreadPoolExecutor

    from rich.progress import Progress

    from devkit import simulated_portal as simulated
    from labeling.portal.local import portal_env

    names = sorted(n for n, e in users.items() if e["role"] == "annotator")[:annotators]
    workers = simulated.default_workers(names)
    print("simulated annotators (sensitivity/specificity): "
          + ", ".join(f"{w.worker_id} {w.sensitivity}/{w.specificity}" for w in workers), flush=True)
    sources = simulated.item_sources(portal_env(workdir), job)

    def truth_of_item(item_id: int) -> Mapping:
        try:
            return truth[sources[item_id]]
        except KeyError:
            raise SimulationError(f"portal item {item_id} is not in the synthetic dataset; "
                                  f"the simulated annotators only know its ground truth") from None

    before = progress()
    remaining = max(before["answers_needed"] - before["answers"], 0)
    with Progress() as bar, ThreadPoolExecutor(len(names)) as pool:
        task = bar.add_task("answers", total=remaining)
        futures = [pool.submit(simulated.annotate, url, simulated.SimulatedAnnotator(
                       w.worker_id, users[w.worker_id]["password"], w), job, truth_of_item, seed=i,
                       on_answer=lambda _name: bar.advance(task), answer_for=answer_for)
                   for i, w in enumerate(workers)]
        answered = {w.worker_id: f.result() for w, f in zip(workers, futures)}
    print(f"answers this run: {answered}")
    reviewed = simulated.review(url, "reviewer", users["reviewer"]["password"], job)
    print(f"simulated reviewer accepted {reviewed} low-agreement consolidations from the review queue")


def _train_and_write_back(args: argparse.Namespace, workdir: Path, manifest: Path, synth_dir: Path,
                          output_manifest: Path) -> Optional[dict]:
    """Train on the portal's output manifest, evaluate against the truth, predict, write back, order."""
    from labeling.gt.output_manifest import read_output_manifest
    from devkit.simulated_portal import orthanc_id_of
    from training.cli import main as training_main
    from devkit.demo_labels import synth_records, write_truth_manifest

    model_dir, cache = workdir / "model", workdir / "training-cache"
    hyper = [*(["--epochs", str(args.epochs)] if args.epochs else []),
             *(["--image-size", str(args.image_size)] if args.image_size else [])]
    # Confidence weighting: the consolidated confidences down-weight the labels annotators disagreed on.
    if _step("train", ["train", "--manifest", str(output_manifest), "--out", str(model_dir), "--force",
                       "--cache-dir", str(cache), "--confidence-weighting", *hyper], training_main, "training") != 0:
        return None
    # The consolidated labels carry the annotators' mistakes; the synthetic truth says how good the model is.
    records = read_output_manifest(output_manifest)
    labeled = {r.source for r in records}
    ids = {r["sop_instance_uid"]: orthanc_id_of(r) for r in synth_records(synth_dir)}
    truth_manifest = workdir / "truth.manifest"
    write_truth_manifest(synth_dir, truth_manifest, instance_ids={u: i for u, i in ids.items() if i in labeled},
                         label_attribute=records[0].label_attribute)
    truth_dir = workdir / "evaluation-vs-truth"
    if _step("evaluate against the ground truth", ["evaluate", "--model", str(model_dir), "--manifest",
                                                   str(truth_manifest), "--only-validation", "--out", str(truth_dir),
                                                   "--force", "--cache-dir", str(cache)],
             training_main, "training") != 0:
        return None
    predictions, next_manifest = workdir / "predictions.jsonl", workdir / "next-job.manifest.jsonl"
    if _step("predict", ["predict", "--model", str(model_dir), "--manifest", str(manifest), "--out",
                         str(predictions)], training_main, "training") != 0:
        return None
    if _step("write predictions back", ["writeback", "--predictions", str(predictions)], training_main,
             "training") != 0:
        return None
    if _step("pre-label + order the next job", ["order", "--manifest", str(manifest), "--predictions",
                                                str(predictions), "--out", str(next_manifest)],
             training_main, "training") != 0:
        return None
    metrics = json.loads((model_dir / "metrics.json").read_text())
    truth_metrics = json.loads((truth_dir / "metrics.json").read_text())
    return {"model_dir": model_dir, "macro_auroc": _fmt(metrics.get("macro_auroc")),
            "truth_macro_auroc": _fmt(truth_metrics.get("macro_auroc")), "predictions": predictions,
            "next_manifest": next_manifest}


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"
