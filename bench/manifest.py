"""Manifest benchmark: our ``/tools/find`` builder against a naive one-GET-per-instance builder.

Same Orthanc, same data, same query (``--modality DX``), same output: both builders must produce
the identical manifest (checked), so only the way they read Orthanc differs.

* ours — :func:`labeling.manifest.build_manifest`: three ``POST /tools/find`` with ``Expand``
  (instances, series, studies; sent together), plus SOP class reads only for series whose Modality
  does not tell (none here);
* naive N+1 — what a first script does (the AWS sample lists instances, then reads each one):
  ``GET /instances``, then per instance ``GET /instances/{id}`` and ``GET /instances/{id}/
  simplified-tags`` to learn its Modality, SOP class, study date and UIDs, filtering client-side;
* naive lean — the same with only the tags ``GET`` per instance (the cheapest N+1 possible), shown
  so the ratio is not flattered by the baseline's second request.

Data: ``--instances`` (default 5,000) synthetic DX chest images from :mod:`labeling.synth` at
``--size`` px (default 64, so the upload is quick), plus pydicom's sample files (CT, MR, SR, SEG,
RT dose… the query must skip them), uploaded once and cached under ``.local/bench-manifest``.
Each builder runs ``--repeats`` times, interleaved; the median is reported, with lines/s and the
ratio naive / ours (goal ≥ 3×).

Orthanc: the one named by ``ORTHANC_URL`` / ``ORTHANC_USERNAME`` / ``ORTHANC_PASSWORD`` when set,
otherwise a private Orthanc 1.10 + PostgreSQL (:class:`labeling.local_stack.LocalStack`) started in a
temporary work directory and stopped at the end (``--keep-stack`` leaves it running).

Run: ``.venv/bin/python bench/manifest.py [--instances 5000] [--size 64] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402

from labeling.connection import OrthancConnection  # noqa: E402
from labeling.manifest import (  # noqa: E402
    Candidate,
    ManifestLine,
    build_manifest,
    modality_exclusion,
    parse_filters,
    sop_class_exclusion,
)
from labeling.schema import load_schema  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".local" / "bench-manifest"
SCHEMA = REPO / "schemas" / "chest-xray.yaml"
SEED = 5150  # synth seed of the bench data: its patients are SYN5150-*
MODALITY = "DX"


# ------------------------------------------------------------------------------- the data


def dataset_dirs(instances: int, size: int) -> tuple[Path, Path]:
    """Generate (once) the synthetic set and the pydicom samples; return their folders."""
    from labeling.samples import copy_samples
    from labeling.synth import generate_dataset

    patients = (instances + 1) // 2  # two studies (one image each) per patient
    synth = CACHE / f"synth-{instances}-{size}px-seed{SEED}"
    if not (synth / "ground_truth.jsonl").exists():
        print(f"generating {instances} synthetic {MODALITY} images ({size} px) into {synth} …", flush=True)
        generate_dataset(synth, patients=patients, studies_per_patient=2, size=size, seed=SEED, modality=MODALITY, progress=sys.stderr.isatty(), force=True)
    samples = CACHE / "pydicom-samples"
    if not (samples / "samples.json").exists():
        copy_samples(samples, force=True)
    return synth, samples


def upload_all(conn: OrthancConnection, folders: list[Path]) -> dict[str, int]:
    """Upload the folders with the project's uploader (``labeling.upload``), or, where that
    module is missing, POST each file from 4 keep-alive clients.

    Orthanc answers ``AlreadyStored`` for what it has, so a rerun costs little.
    """
    try:
        from labeling.upload import upload_paths
    except ImportError:
        return _post_each(conn, folders)
    from labeling.orthanc_client import OrthancClient

    with OrthancClient.from_connection(conn) as client:
        report = upload_paths(client, folders)
    totals = {name: n for name, n in report.totals.items() if n}
    print(f"uploaded with labeling.upload in {report.elapsed_s:.1f} s: {totals}", flush=True)
    if not report.ok:
        print(f"  not stored: {[(p.path, p.reason) for p in report.problems()][:5]} …", flush=True)
    return totals


def _post_each(conn: OrthancConnection, folders: list[Path]) -> dict[str, int]:
    files = sorted(p for folder in folders for p in folder.rglob("*") if p.is_file() and p.suffix != ".json"
                   and p.name != "ground_truth.jsonl")
    local = threading.local()
    outcome: dict[str, int] = {}
    lock = threading.Lock()

    def post(path: Path) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.auth = (conn.username, conn.password)
        response = session.post(f"{conn.url}/instances", data=path.read_bytes(), timeout=60)
        status = (response.json().get("Status", "?") if response.ok and response.headers.get(
            "content-type", "").startswith("application/json") else f"HTTP {response.status_code}")
        with lock:
            outcome[status] = outcome.get(status, 0) + 1

    started = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(post, files))
    print(f"uploaded {len(files)} files in {time.perf_counter() - started:.1f} s: {outcome}", flush=True)
    return outcome


# ------------------------------------------------------------------------ the two builders


def ours(conn: OrthancConnection, *, check_all: bool = False) -> tuple[list[ManifestLine], dict[str, int]]:
    from labeling.orthanc_client import OrthancClient

    schema = load_schema(SCHEMA)
    client = OrthancClient.from_connection(conn)
    try:
        result = build_manifest(client, schema_name=schema.name, labels=schema.label_names,
                                task_type=schema.task_type, filters=parse_filters(modalities=[MODALITY]),
                                check_all_sop_classes=check_all)
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()
    return result.lines, dict(result.requests)


def naive(conn: OrthancConnection, *, lean: bool = False) -> tuple[list[ManifestLine], dict[str, int]]:
    """List every instance, read each one (and its tags), filter and sort client-side."""
    schema = load_schema(SCHEMA)
    session = requests.Session()  # keep-alive: the naive builder is not handicapped by TCP setup
    session.auth = (conn.username, conn.password)
    count = 0

    def get(path: str) -> Any:
        nonlocal count
        count += 1
        response = session.get(f"{conn.url}{path}", timeout=60)
        response.raise_for_status()
        return response.json()

    candidates = []
    for instance_id in get("/instances"):
        if not lean:
            get(f"/instances/{instance_id}")  # what the sample's script reads first
        tags = get(f"/instances/{instance_id}/simplified-tags")
        modality = str(tags.get("Modality", "")).upper()
        if modality != MODALITY or modality_exclusion(modality) or sop_class_exclusion(tags.get("SOPClassUID")):
            continue
        candidates.append(Candidate(
            instance_id=instance_id, modality=modality or None,
            study_uid=tags.get("StudyInstanceUID"), series_uid=tags.get("SeriesInstanceUID"),
            sop_uid=tags.get("SOPInstanceUID"), study_date=tags.get("StudyDate") or None,
            patient_id=tags.get("PatientID"), series_number=_int(tags.get("SeriesNumber")),
            instance_number=_int(tags.get("InstanceNumber")), frames=_int(tags.get("NumberOfFrames")),
        ))
    candidates.sort(key=Candidate.sort_key)
    lines = [c.to_line(schema.name, schema.label_names, schema.task_type) for c in candidates]
    return lines, {"get": count}


def _int(value: Any) -> Optional[int]:
    try:
        return int(float(str(value).strip()))
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------- running


def timed(fn: Callable[[], tuple[list[ManifestLine], dict[str, int]]]) -> tuple[float, list[ManifestLine], dict[str, int]]:
    started = time.perf_counter()
    lines, requests_made = fn()
    return time.perf_counter() - started, lines, requests_made


def orthanc_facts(conn: OrthancConnection) -> tuple[str, int]:
    session = requests.Session()
    session.auth = (conn.username, conn.password)
    system = session.get(f"{conn.url}/system", timeout=30).json()
    stats = session.get(f"{conn.url}/statistics", timeout=30).json()
    backend = system.get("DatabaseBackendPlugin") or "SQLite"
    index = "PostgreSQL" if "PostgreSQL" in str(backend) else str(backend)
    return f"Orthanc {system.get('Version')} + {index} index", int(stats.get("CountInstances", 0))


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=5000, help="synthetic DX instances (default 5000)")
    ap.add_argument("--size", type=int, default=64, help="synthetic image side in px (default 64)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each builder (median reported)")
    ap.add_argument("--keep-stack", action="store_true", help="leave the private Orthanc running")
    ap.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers as JSON")
    args = ap.parse_args(argv)

    stack = None
    if os.environ.get("ORTHANC_URL"):
        from labeling.connection import connection_from_args

        conn = connection_from_args(argparse.Namespace())
    else:
        from labeling.local_stack import LocalStack

        workdir = Path(tempfile.mkdtemp(prefix="bench-manifest-"))
        print(f"starting a private Orthanc + PostgreSQL in {workdir} …", flush=True)
        stack = LocalStack(workdir)
        stack.up()
        conn = stack.connection()
    try:
        synth, samples = dataset_dirs(args.instances, args.size)
        upload_all(conn, [synth, samples])
        server, total = orthanc_facts(conn)
        print(f"\n{server} at {conn.url}: {total} instances "
              f"({args.instances} synthetic {MODALITY} at {args.size} px, pydicom samples, anything else there)")
        print(f"query: --modality {MODALITY}; {platform.node()}, {os.cpu_count()} CPUs; "
              f"{args.repeats} interleaved runs each, median\n", flush=True)

        runs: dict[str, list[float]] = {"ours": [], "naive": [], "naive-lean": []}
        outputs: dict[str, list[ManifestLine]] = {}
        requests_made: dict[str, dict[str, int]] = {}
        builders = {"ours": lambda: ours(conn), "naive": lambda: naive(conn),
                    "naive-lean": lambda: naive(conn, lean=True)}
        ours(conn)  # warm-up: Orthanc's and PostgreSQL's caches, the same for every later run
        for repeat in range(args.repeats):
            for name, fn in builders.items():
                seconds, lines, made = timed(fn)
                runs[name].append(seconds)
                outputs.setdefault(name, lines)
                requests_made[name] = made
                print(f"  run {repeat + 1}: {name:<10} {seconds:7.2f} s  {len(lines)} lines", flush=True)
        check_s, check_lines, check_made = timed(lambda: ours(conn, check_all=True))

        same = all(outputs[name] == outputs["ours"] for name in outputs)
        lines = len(outputs["ours"])
        median = {name: statistics.median(times) for name, times in runs.items()}
        print(f"\n{'builder':<34}{'requests':>10}{'median s':>10}{'lines/s':>10}{'vs ours':>9}")
        rows = [("ours: 3 x /tools/find + Expand", "ours"), ("naive N+1: 2 GET per instance", "naive"),
                ("naive lean: 1 GET per instance", "naive-lean")]
        for label, name in rows:
            n_requests = sum(requests_made[name].values())
            print(f"{label:<34}{n_requests:>10}{median[name]:>10.2f}{lines / median[name]:>10.0f}"
                  f"{median[name] / median['ours']:>8.1f}x")
        print(f"{'ours + --check-sop-class (1 run)':<34}{sum(check_made.values()):>10}{check_s:>10.2f}"
              f"{len(check_lines) / check_s:>10.0f}{check_s / median['ours']:>8.1f}x")
        ratio = median["naive"] / median["ours"]
        print(f"\nratio naive / ours = {ratio:.1f}x (goal >= 3x); naive lean / ours = "
              f"{median['naive-lean'] / median['ours']:.1f}x; identical manifests: {'yes' if same else 'NO'}")
        if args.json:
            args.json.write_text(json.dumps({
                "server": server, "instances_in_orthanc": total, "lines": lines, "median_s": median,
                "runs_s": runs, "requests": requests_made, "check_sop_class_s": check_s,
                "ratio_naive_over_ours": ratio, "identical": same,
            }, indent=2) + "\n")
        return 0 if same else 1
    finally:
        if stack is not None and not args.keep_stack:
            stack.down()


if __name__ == "__main__":
    raise SystemExit(main())
