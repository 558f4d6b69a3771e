"""Manifest benchmark: our builder against simple one-GET-per-instance builders, same Orthanc.

Every builder must write the identical manifest (checked), so only the way they read Orthanc
differs:

* ours — :func:`labeling.manifest.build.build_manifest` with the manifest index
  (:mod:`labeling.manifest.index`), a full build: ``GET /studies``, ``/series``, ``/instances``
  with ``expand`` (paged, concurrent), filters matched client-side, then the changes log replayed
  and the ID lists compared;
* ours, find — the path used for queries that name a few studies/series/patients: one
  Series-level ``POST /tools/find`` with ``Expand`` then ``POST /tools/bulk-content`` reads;
* naive N+1 — what a first script does (the AWS sample lists instances, then reads each one):
  ``GET /instances``, then per instance ``GET /instances/{id}`` and ``GET /instances/{id}/
  simplified-tags`` on one keep-alive session, filtering client-side;
* naive lean — the same with only the tags ``GET`` per instance (the cheapest N+1 there is);
* simple concurrent — naive lean with ``--threads`` (default 4) requests in flight: the best
  simple client, so "never slower than a simple client" is checked against it too.

Then the **incremental** build: the index is saved, ``--new-percent`` (default 1 %) more
instances are stored, and the rebuild from the saved index is timed against a full build,
interleaved (goal: >= 10x cheaper); the added instances are deleted again at the end.

Two data shapes, because Orthanc's cost is per resource and ours reads three levels:

* ``xray`` (the headline, ``--instances`` default 5,000): synthetic DX chest images from
  :mod:`devkit.synth` at ``--size`` px (default 64, so the upload is quick) — one image per
  series and per study, the worst case for us (as many series and studies to read as images) —
  plus pydicom's sample files (CT, MR, SR, SEG, RT dose… that the query must skip);
  query ``--modality DX``;
* ``ct``: the same pixels filed as CT-like series of ``--series-size`` (default 100) images, one
  series per study, plus the pydicom samples; query ``--modality CT``. Here ours also builds
  ``--level series`` (one line per series, slices ordered: from the index, full and incremental,
  and by the find path, whose manifests must match).

Each builder runs ``--repeats`` times (default 3), interleaved, after one warm-up run of ours; the
median and min–max are reported with lines/s and the ratio naive / ours (goal ≥ 3×), with the load
average before and after (these machines are shared: a busy one is said so).

Orthanc: by default a private Orthanc 1.10 + PostgreSQL (:class:`labeling.orthanc.local_stack.LocalStack`)
in a temporary work directory, emptied between the two scenarios (so each naive run lists only its
own scenario's instances) and stopped at the end (``--keep-stack`` leaves it). With
``ORTHANC_URL`` / ``ORTHANC_USERNAME`` / ``ORTHANC_PASSWORD`` set, that server is used as it is
(nothing is deleted; the naive builders then also read whatever else it holds). Generated files are
cached under ``.local/bench-manifest``.

Run: ``.venv/bin/python bench/manifest.py [--scenario xray|ct|both] [--instances 5000]
[--size 64] [--series-size 100] [--repeats 3] [--new-percent 1] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402

from labeling.orthanc.connection import OrthancConnection  # noqa: E402
from labeling.manifest.build import build_manifest  # noqa: E402
from labeling.manifest.exclusions import modality_exclusion, sop_class_exclusion  # noqa: E402
from labeling.manifest.filters import parse_filters  # noqa: E402
from labeling.manifest.format import ManifestLine  # noqa: E402
from labeling.manifest.query import Candidate  # noqa: E402
from labeling.contracts.schema import load_schema  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".local" / "bench-manifest"
SCHEMA = REPO / "schemas" / "chest-xray.yaml"
SEED = 5150  # synth seed of the bench data: its patients are SYN5150-*
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SHARED_KEYWORDS = (  # patient, study and series attributes synth writes (devkit/synth.py)
    "PatientName", "PatientBirthDate", "PatientSex", "PatientAge", "StudyDate", "StudyTime",
    "StudyID", "AccessionNumber", "StudyDescription", "SeriesDate", "SeriesTime",
    "SeriesDescription", "BodyPartExamined", "ViewPosition",
)
SETTLE_TIMEOUT_S = 240.0

Builder = Callable[[], tuple[list[ManifestLine], dict[str, int]]]


# ------------------------------------------------------------------------------- the data


def xray_dir(instances: int, size: int) -> Path:
    """Generate (once) the synthetic DX set: two studies of one image per patient."""
    from devkit.synth import generate_dataset

    synth = CACHE / f"synth-{instances}-{size}px-seed{SEED}"
    if not (synth / "ground_truth.jsonl").exists():
        print(f"generating {instances} synthetic DX images ({size} px) into {synth} …", flush=True)
        generate_dataset(synth, patients=(instances + 1) // 2, studies_per_patient=2, size=size, seed=SEED,
                         modality="DX", progress=sys.stderr.isatty(), force=True)
    return synth


def extra_dir(instances: int, size: int) -> Path:
    """Generate (once) the extra DX images stored for the incremental build (another seed)."""
    from devkit.synth import generate_dataset

    synth = CACHE / f"extra-{instances}-{size}px-seed{SEED + 1}"
    if not (synth / "ground_truth.jsonl").exists():
        generate_dataset(synth, patients=max(1, (instances + 1) // 2), studies_per_patient=2, size=size,
                         seed=SEED + 1, modality="DX", progress=False, force=True)
    return synth


def ct_dir(xray: Path, series_size: int) -> Path:
    """The synthetic images re-filed (once) as CT-like series of ``series_size`` images each.

    Only identifiers change (new deterministic UIDs, CT Image Storage, Modality CT, instance
    numbers 1..n) and the patient, study and series attributes, copied from the group's first
    image so that every image of a study agrees (Orthanc keeps a study's tags from its first
    instance; the naive builder reads each file's own).
    """
    import pydicom
    from pydicom.uid import generate_uid

    out = CACHE / f"{xray.name}-ct{series_size}"
    done = out.parent / f"{out.name}.done"  # beside the folder: the uploader takes every file in it
    if done.exists():
        return out
    files = sorted(xray.rglob("*.dcm"))
    print(f"filing {len(files)} images as CT series of {series_size} into {out} …", flush=True)
    shared: dict[str, Any] = {}
    for index, path in enumerate(files):
        group, position = divmod(index, series_size)
        ds = pydicom.dcmread(path)
        if position == 0:
            shared = {k: ds.get(k) for k in SHARED_KEYWORDS if k in ds}
        for keyword, value in shared.items():
            setattr(ds, keyword, value)

        def uid(kind: str, number: int) -> str:
            return str(generate_uid(entropy_srcs=[f"bench-manifest {xray.name} ct {series_size} {kind} {number}"]))

        ds.PatientID = f"BENCHCT-{xray.name}-{group:05d}"
        ds.StudyInstanceUID = uid("study", group)
        ds.SeriesInstanceUID = uid("series", group)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid("sop", index)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        ds.Modality = "CT"
        ds.SeriesNumber = 1
        ds.InstanceNumber = position + 1
        target = out / f"{group:05d}" / f"{position:04d}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)
    done.write_text("ok\n")
    return out


def samples_dir() -> Path:
    from devkit.samples import copy_samples

    samples = CACHE / "pydicom-samples"
    if not (samples / "samples.json").exists():
        copy_samples(samples, force=True)
    return samples


def upload_all(conn: OrthancConnection, folders: list[Path]) -> int:
    """Upload with the project's uploader (``labeling.orthanc.upload``); Orthanc answers ``AlreadyStored``
    for what it has, so a rerun costs little. Returns the number of newly stored instances."""
    from labeling.orthanc.client import OrthancClient
    from labeling.orthanc.upload import upload_paths

    with OrthancClient.from_connection(conn) as client:
        report = upload_paths(client, folders)
    totals = {name: n for name, n in report.totals.items() if n}
    print(f"uploaded with labeling.orthanc.upload in {report.elapsed_s:.1f} s: {totals}", flush=True)
    for problem in report.problems()[:3]:
        print(f"  not stored: {Path(problem.path).name}: {problem.reason}", flush=True)
    return totals.get("stored", 0)


def wait_until_settled(conn: OrthancConnection, stable_age_s: float, quiet_s: float = 10.0) -> None:
    """Wait until Orthanc has marked the new resources stable and stopped logging changes.

    ``StableAge`` seconds (60 in our generated config) after a series' last instance, Orthanc
    marks it, its study and its patient stable, one change each: thousands of index writes that
    would otherwise land in the middle of the timed runs.
    """
    from labeling.orthanc.client import OrthancClient

    started = time.monotonic()
    print(f"waiting for Orthanc to settle (StableAge {stable_age_s:.0f} s) …", flush=True)
    # OrthancClient retries: Orthanc closes idle keep-alive connections after KeepAliveTimeout (1 s)
    with OrthancClient.from_connection(conn) as client:
        return _poll_changes(client, stable_age_s, quiet_s, started)


def _poll_changes(client: Any, stable_age_s: float, quiet_s: float, started: float) -> None:
    last, since = None, started
    while time.monotonic() - started < SETTLE_TIMEOUT_S:
        current = client.request("GET", "/changes", params={"last": ""}).json().get("Last")
        now = time.monotonic()
        if current != last:
            last, since = current, now
        elif now - started >= stable_age_s + 5 and now - since >= quiet_s:
            print(f"Orthanc settled after {now - started:.0f} s", flush=True)
            return
        time.sleep(1)
    print(f"Orthanc still logging changes after {SETTLE_TIMEOUT_S:.0f} s; timing anyway", flush=True)


# ------------------------------------------------------------------------ the builders


def ours(conn: OrthancConnection, modality: str, *, use_index: bool = True, index_file: Optional[Path] = None,
         expect: Optional[str] = None, level: str = "instance") -> tuple[list[ManifestLine], dict[str, int]]:
    from labeling.orthanc.client import OrthancClient

    schema = load_schema(SCHEMA)
    with OrthancClient.from_connection(conn) as client:
        result = build_manifest(client, schema_name=schema.name, labels=schema.label_names,
                                task_type=schema.task_type, filters=parse_filters(modalities=[modality]),
                                use_index=use_index, index_file=index_file, level=level)
    if expect and result.index != expect:
        raise SystemExit(f"expected a {expect} index build, got {result.index}")
    return result.lines, dict(result.requests)


def naive(conn: OrthancConnection, modality: str, *, lean: bool = False,
          threads: int = 1) -> tuple[list[ManifestLine], dict[str, int]]:
    """List every instance, read each one (and its tags), filter and sort client-side."""
    from concurrent.futures import ThreadPoolExecutor

    schema = load_schema(SCHEMA)
    session = requests.Session()  # keep-alive: the naive builder is not handicapped by TCP setup
    session.auth = (conn.username, conn.password)
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=threads))
    count = 0

    def get(path: str) -> Any:
        nonlocal count
        count += 1
        response = session.get(f"{conn.url}{path}", timeout=60)
        response.raise_for_status()
        return response.json()

    def read(instance_id: str) -> tuple[str, Any]:
        if not lean:
            get(f"/instances/{instance_id}")  # what the sample's script reads first
        return instance_id, get(f"/instances/{instance_id}/simplified-tags")

    candidates = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        answers = list(pool.map(read, get("/instances")))
    for instance_id, tags in answers:
        found = str(tags.get("Modality", "")).upper()
        if found != modality or modality_exclusion(found) or sop_class_exclusion(tags.get("SOPClassUID")):
            continue
        candidates.append(Candidate(
            instance_id=instance_id, modality=found or None,
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


def orthanc_facts(conn: OrthancConnection) -> tuple[str, int]:
    from labeling.orthanc.client import OrthancClient

    with OrthancClient.from_connection(conn) as client:
        system, stats = client.system(), client.statistics()
    index = "PostgreSQL" if "PostgreSQL" in str(system.get("DatabaseBackendPlugin")) else "SQLite"
    return f"Orthanc {system.get('Version')} + {index} index", int(stats.get("CountInstances", 0))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed_rounds(builders: dict[str, Builder], repeats: int) -> tuple[dict[str, list[float]], dict, dict]:
    """Run every builder ``repeats`` times, interleaved; (times, first outputs, request counts)."""
    runs: dict[str, list[float]] = {key: [] for key in builders}
    outputs: dict[str, list[ManifestLine]] = {}
    made: dict[str, dict[str, int]] = {}
    for repeat in range(repeats):
        for key, build in builders.items():
            started = time.perf_counter()
            lines, made[key] = build()
            runs[key].append(time.perf_counter() - started)
            outputs.setdefault(key, lines)
            print(f"  run {repeat + 1}: {key:<12} {runs[key][-1]:7.2f} s  {len(lines)} lines", flush=True)
    return runs, outputs, made


def spread(times: list[float]) -> str:
    return f"{statistics.median(times):8.2f} {min(times):6.2f}-{max(times):<6.2f}"


def run_scenario(conn: OrthancConnection, name: str, folders: list[Path], modality: str, args: argparse.Namespace,
                 shape: str, extra: Path) -> dict[str, Any]:
    if upload_all(conn, folders):
        wait_until_settled(conn, args.stable_age)
    server, total = orthanc_facts(conn)
    before = load()
    print(f"\n== {name}: {server}, {total} instances stored ({shape}); query --modality {modality}; "
          f"{args.repeats} interleaved runs each; load average {before} (shared machine)", flush=True)
    builders: dict[str, Builder] = {
        "ours": lambda: ours(conn, modality, expect="full"),
        "ours-find": lambda: ours(conn, modality, use_index=False),
        "naive": lambda: naive(conn, modality),
        "naive-lean": lambda: naive(conn, modality, lean=True),
        "concurrent": lambda: naive(conn, modality, lean=True, threads=args.threads),
    }
    series = modality == "CT"  # series tasks (--level series) on the CT shape: one line per series
    if series:
        builders["ours-series"] = lambda: ours(conn, modality, expect="full", level="series")
        builders["find-series"] = lambda: ours(conn, modality, use_index=False, level="series")
    builders["ours"]()  # warm-up: Orthanc's and PostgreSQL's caches, the same for every later run
    runs, outputs, made = timed_rounds(builders, args.repeats)
    same = all(outputs[key] == outputs["ours"] for key in outputs if not key.endswith("-series"))
    if series:
        same = same and outputs["ours-series"] == outputs["find-series"]
    lines = len(outputs["ours"])
    median = {key: statistics.median(times) for key, times in runs.items()}
    print(f"\n{'builder':<44}{'requests':>9}{'median s':>9} {'min-max':<13}{'lines/s':>8}{'vs ours':>9}")
    rows = [("ours: index, full build (3 listings)", "ours"),
            ("ours: 1 find + bulk-content reads", "ours-find"),
            ("naive N+1: 2 GET per instance", "naive"),
            ("naive lean: 1 GET per instance", "naive-lean"),
            (f"simple concurrent: 1 GET/instance, {args.threads} threads", "concurrent")]
    if series:
        rows += [("ours --level series: index, full build", "ours-series"),
                 ("ours --level series: find path", "find-series")]
    for label, key in rows:
        print(f"{label:<44}{sum(made[key].values()):>9}{spread(runs[key])}{lines / median[key]:>8.0f}"
              f"{median[key] / median['ours']:>8.1f}x")
    ratio = median["naive"] / median["ours"]
    best_simple = min(median[k] for k in ("naive", "naive-lean", "concurrent"))
    print(f"{name}: naive N+1 / ours = {ratio:.1f}x (goal >= 3x); best simple client / ours = "
          f"{best_simple / median['ours']:.1f}x (goal >= 1x); identical manifests: {'yes' if same else 'NO'}; "
          f"load average before {before}, after {load()}", flush=True)
    if series:
        print(f"{name}: naive N+1 / ours --level series = {median['naive'] / median['ours-series']:.1f}x (the N+1 walk "
              "reads every instance's tags, which is what ordering a series needs)", flush=True)
    incremental = run_incremental(conn, modality, args, extra, series=series)
    return {"server": server, "instances_in_orthanc": total, "lines": lines, "median_s": median,
            "runs_s": runs, "requests": made, "ratio_naive_over_ours": ratio,
            "ratio_best_simple_over_ours": best_simple / median["ours"], "identical": same and incremental["identical"],
            "incremental": incremental, "load_average": os.getloadavg()}


def run_incremental(conn: OrthancConnection, modality: str, args: argparse.Namespace, extra: Path,
                    series: bool = False) -> dict[str, Any]:
    """Save the index, store ``--new-percent`` more instances, time rebuild-from-index vs full
    (with ``series``, also at ``--level series``: the saved index then holds the file tags too)."""
    from labeling.orthanc.client import OrthancClient

    with tempfile.TemporaryDirectory(prefix="bench-manifest-index-") as tmp:
        base = Path(tmp) / "base.json"
        ours(conn, modality, index_file=base)
        base_series = Path(tmp) / "base-series.json"
        if series:
            ours(conn, modality, index_file=base_series, level="series")
        files = sorted(extra.rglob("*.dcm"))
        with OrthancClient.from_connection(conn) as client:
            added = [client.upload(path.read_bytes()).instance_id for path in files]
        wait_until_settled(conn, args.stable_age)
        before = load()
        print(f"\n== incremental: {len(added)} new instances stored; rebuild from the saved index vs a full "
              f"build, {args.repeats} interleaved runs; load average {before}", flush=True)
        work = Path(tmp) / "index.json"

        def incremental() -> tuple[list[ManifestLine], dict[str, int]]:
            shutil.copyfile(base, work)  # each run starts from the index saved before the new instances
            return ours(conn, modality, index_file=work, expect="incremental")

        def incremental_series() -> tuple[list[ManifestLine], dict[str, int]]:
            shutil.copyfile(base_series, work)
            return ours(conn, modality, index_file=work, expect="incremental", level="series")

        builders: dict[str, Builder] = {"full": lambda: ours(conn, modality, expect="full"), "incremental": incremental}
        if series:
            builders["full-series"] = lambda: ours(conn, modality, expect="full", level="series")
            builders["incr-series"] = incremental_series
        try:
            runs, outputs, made = timed_rounds(builders, args.repeats)
        finally:
            with OrthancClient.from_connection(conn) as client:
                for instance_id in added:
                    client.delete("instances", instance_id, missing_ok=True)
    ratio = statistics.median(runs["full"]) / statistics.median(runs["incremental"])
    same = outputs["full"] == outputs["incremental"]
    for key in builders:
        print(f"  {key:<12}{sum(made[key].values()):>9} requests {dict(made[key])} {spread(runs[key])}")
    print(f"incremental: full / incremental = {ratio:.1f}x (goal >= 10x); identical manifests: "
          f"{'yes' if same else 'NO'}; load average before {before}, after {load()}", flush=True)
    out = {"new_instances": len(added), "runs_s": runs, "requests": made, "ratio_full_over_incremental": ratio,
           "identical": same}
    if series:
        out["ratio_series_full_over_incremental"] = (statistics.median(runs["full-series"])
                                                     / statistics.median(runs["incr-series"]))
        out["identical"] = same and outputs["full-series"] == outputs["incr-series"]
        print(f"incremental --level series: full / incremental = {out['ratio_series_full_over_incremental']:.1f}x; "
              f"identical manifests: {'yes' if outputs['full-series'] == outputs['incr-series'] else 'NO'}", flush=True)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", choices=("xray", "ct", "both"), default="both")
    ap.add_argument("--instances", type=int, default=5000, help="synthetic images (default 5000)")
    ap.add_argument("--size", type=int, default=64, help="synthetic image side in px (default 64)")
    ap.add_argument("--series-size", type=int, default=100, help="images per series in the ct scenario")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each builder (median reported)")
    ap.add_argument("--stable-age", type=float, default=60.0,
                    help="Orthanc's StableAge in seconds (ours: 60): how long to let it settle after an upload")
    ap.add_argument("--threads", type=int, default=4, help="requests in flight for the simple concurrent client")
    ap.add_argument("--new-percent", type=float, default=1.0,
                    help="instances added before the incremental rebuild, in %% of --instances (default 1)")
    ap.add_argument("--keep-stack", action="store_true", help="leave the private Orthanc running")
    ap.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers as JSON")
    args = ap.parse_args(argv)

    stack = None
    if os.environ.get("ORTHANC_URL"):
        from labeling.orthanc.connection import connection_from_args

        conn = connection_from_args(argparse.Namespace())
    else:
        from labeling.orthanc.local_stack import LocalStack

        workdir = Path(tempfile.mkdtemp(prefix="bench-manifest-"))
        print(f"starting a private Orthanc + PostgreSQL in {workdir} …", flush=True)
        stack = LocalStack(workdir)
        stack.up()
        conn = stack.connection()
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
    results: dict[str, Any] = {}
    try:
        xray = xray_dir(args.instances, args.size)
        samples = samples_dir()
        extra = extra_dir(max(1, round(args.instances * args.new_percent / 100)), args.size)
        if args.scenario in ("xray", "both"):
            results["xray"] = run_scenario(conn, "xray", [xray, samples], "DX", args,
                                           "1 DX image per series and per study, + pydicom samples", extra)
        if args.scenario in ("ct", "both"):
            ct = ct_dir(xray, args.series_size)
            if stack is not None and results:
                stack.reset_database()  # each naive run lists only its own scenario's instances
            results["ct"] = run_scenario(conn, "ct", [ct, samples], "CT", args,
                                         f"{args.series_size} CT images per series, + pydicom samples",
                                         ct_dir(extra, args.series_size))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return 0 if all(r["identical"] for r in results.values()) else 1
    finally:
        if stack is not None and not args.keep_stack:
            stack.down()
            shutil.rmtree(stack.workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
