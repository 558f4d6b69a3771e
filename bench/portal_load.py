"""Portal capacity, before and after, in one run: N annotators label on loopback against the previous
commit's portal (``--baseline-ref``, default ``main``: a ``git worktree`` in a temp dir) and this
tree's, at each ``--think`` time (default 0 and 2 s), interleaved so both see the same machine.

    .venv/bin/python bench/portal_load.py [--annotators 50] [--duration 30] [--images 100]
                                          [--think 0 2] [--baseline-ref main] [--stack-workdir DIR]

Setup (not measured) per run: a fresh database per variant on one local stack (Orthanc + PostgreSQL;
``--stack-workdir`` reuses a running one), migrated by that variant's own ``portal migrate``; users and
``annotators / 2`` jobs (K=2) over the same ``--images`` small DX instances, made by that variant's own
code; ``portal serve`` from that variant's tree with the worker count its own ``portal up`` uses
(its ``labeling.portal.local.local_workers()``, 1 where it has none). Every annotator logs in with its own cookie
jar, then loops for ``--duration`` seconds:

    POST /api/jobs/{id}/next → GET /api/items/{id}/image → POST /api/assignments/{id}/answer

pausing ``--think`` seconds (±50 %) after each answer, and starting after a random part of one think
time (50 annotators do not start in the same millisecond). Think 0 is a closed loop: it measures the
saturation throughput (answers/s). One more client polls ``GET /healthz`` as a reference.

Printed per run: answers/s; per endpoint count, p50, p95, max (ms) and errors (non-2xx or transport);
CPU milliseconds per request of the portal (all its processes) and of PostgreSQL (all its processes:
fewer round trips show here), from psutil — less sensitive to a shared machine than answers/s; the
load average before and after. Then the
goals: think-0 answers/s ≥ 2× baseline; at think 2 s p95 < 300 ms and 0 errors. The machine may be
shared: both variants' figures come from the same run, and the load average is printed with each.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from labeling.orthanc.local_stack import LocalStack, free_port  # noqa: E402
from labeling.orthanc.client import OrthancClient  # noqa: E402
from labeling.portal.local import portal_env, wait_healthy  # noqa: E402

SCHEMA = {"name": "bench", "task_type": "classification+roi",
          "labels": [{"name": "Opacity", "shapes": ["rectangle", "ellipse"]}, {"name": "Device"},
                     {"name": "Effusion"}], "annotators_per_item": 2}
PASSWORD = "bench password 123"
ANSWER = {"labels": [{"name": "Opacity", "present": True}, {"name": "Device", "present": False},
                     {"name": "Effusion", "present": False}],
          "rois": [{"label": "Opacity", "shape": "rectangle", "points": [[4.0, 4.0], [40.0, 40.0]]}]}
ENDPOINTS = ("POST next", "GET image", "POST answer", "GET healthz")

# Run inside a variant's tree (its own labeling package): users and jobs, by that version's API.
SETUP = r"""
import inspect, json, sys
try:  # the package layout since the regroup (issue 11) ...
    from labeling.manifest.build import ManifestLine
    from labeling.contracts.schema import LabelSchema
except ImportError:  # ... and before it (a baseline may predate it)
    from labeling.manifest import ManifestLine
    from labeling.schema import LabelSchema
from labeling.portal import jobs as J
from labeling.portal.db import make_engine, session_factory, transaction
from labeling.portal.security import hash_password
from labeling.portal.settings import PortalSettings
args = json.load(sys.stdin)
settings = PortalSettings.from_env()
schema = LabelSchema.from_dict(args["schema"])
lines = [ManifestLine(source=i, labels=schema.label_names, task_type=schema.task_type, schema=schema.name)
         for i in args["ids"]]
extra = {}
if "geometry" in inspect.signature(J.create_job).parameters:  # this tree records image geometry
    from labeling.portal.geometry import checked_geometry
    from labeling.portal.images import orthanc_client_for
    extra["geometry"] = checked_geometry(orthanc_client_for(settings), args["ids"])
engine = make_engine(settings, pool_size=1, max_overflow=0)
hashed = hash_password(args["password"])
ids = []
with transaction(session_factory(engine)) as session:
    for name in args["names"]:
        J.add_user(session, name, "annotator", hashed)
    for n in range(args["jobs"]):
        ids.append(J.create_job(session, name=f"{args['tag']}-{n:03d}", schema=schema, lines=lines,
                                annotators_per_item=2, lease_seconds=600, **extra).id)
engine.dispose()
print(json.dumps(ids))
"""


def dicom(size: int, number: int, study: str, series: str) -> bytes:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName = f"BENCH{number:04d}", "Bench^Patient"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.Modality, ds.InstanceNumber = "DX", number
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.random.default_rng(number).integers(0, 4096, (size, size), dtype=np.uint16).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@dataclass
class Variant:
    name: str
    tree: Path
    workers: int
    logs: Path
    env: dict[str, str] = field(default_factory=dict)

    def cli(self, *argv: str, stdin: Optional[str] = None, code: Optional[str] = None) -> str:
        command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "labeling", "portal", *argv]
        done = subprocess.run(command, cwd=self.tree, env=self.env, input=stdin, capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(argv) or 'setup'} failed: {done.stderr.strip()[-800:]}")
        return done.stdout


def default_workers(variant: Variant) -> int:
    """The uvicorn workers that variant's ``portal up`` would start on this machine."""
    try:
        return int(variant.cli(code="from labeling.portal.local import local_workers; print(local_workers())"))
    except (RuntimeError, ValueError):
        return 1


class Recorder:
    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.samples: dict[str, str] = {}

    async def call(self, name: str, request) -> httpx.Response | None:
        start = time.perf_counter()
        try:
            response = await request
        except httpx.HTTPError as exc:
            self.errors[name] += 1
            self.samples.setdefault(name, repr(exc))
            return None
        self.times[name].append((time.perf_counter() - start) * 1000.0)
        if response.status_code >= 300:
            self.errors[name] += 1
            self.samples.setdefault(name, f"{response.status_code} {response.text[:120]}")
        return response


async def login(url: str, name: str) -> tuple[httpx.AsyncClient, dict[str, str]]:
    client = httpx.AsyncClient(base_url=url, timeout=30.0, limits=httpx.Limits(max_connections=2))
    page = await client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = await client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token})
    if response.status_code >= 400:
        raise RuntimeError(f"login {name}: HTTP {response.status_code}")
    return client, {"X-CSRF-Token": (await client.get("/api/me")).json()["csrf"]}


async def annotator(client: httpx.AsyncClient, headers: dict[str, str], job_ids: list[int], first: int,
                    stop_at: float, rec: Recorder, cycles: list[int], think: float) -> None:
    current = first
    if think > 0:  # people do not start in the same millisecond: arrivals spread over one think time
        await asyncio.sleep(random.uniform(0.0, think))
    while time.perf_counter() < stop_at:
        job = job_ids[current % len(job_ids)]
        response = await rec.call("POST next", client.post(f"/api/jobs/{job}/next", headers=headers))
        if response is None or response.status_code != 200:
            continue
        task = response.json()
        if task.get("done"):
            current += 1
            if current - first > len(job_ids):
                return  # nothing left anywhere
            continue
        await rec.call("GET image", client.get(task["image_url"]))
        await rec.call("POST answer", client.post(f"/api/assignments/{task['assignment_id']}/answer",
                                                  headers=headers, json={"annotation": ANSWER}))
        cycles[0] += 1
        if think > 0:
            await asyncio.sleep(min(think * random.uniform(0.5, 1.5), max(0.0, stop_at - time.perf_counter())))


async def reference(url: str, stop_at: float, rec: Recorder) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        while time.perf_counter() < stop_at:
            await rec.call("GET healthz", client.get("/healthz"))
            await asyncio.sleep(0.05)


async def run_load(url: str, job_ids: list[int], names: list[str], duration: float, think: float,
                   portal: psutil.Process, postgres: Optional[psutil.Process] = None) -> dict:
    rec = Recorder()
    cycles = [0]
    sessions = []
    for start in range(0, len(names), 8):  # argon2 is memory-hard: a few logins at a time
        sessions += await asyncio.gather(*(login(url, name) for name in names[start:start + 8]))
    cpu_before, db_before, load_before = portal_cpu(portal), tree_cpu(postgres), os.getloadavg()[0]
    start = time.perf_counter()
    stop_at = start + duration
    try:
        await asyncio.gather(reference(url, stop_at, rec),
                             *(annotator(client, headers, job_ids, n // 2, stop_at, rec, cycles, think)
                               for n, (client, headers) in enumerate(sessions)))
    finally:
        for client, _ in sessions:
            await client.aclose()
    elapsed = time.perf_counter() - start
    cpu, db = portal_cpu(portal) - cpu_before, tree_cpu(postgres) - db_before
    requests = sum(len(v) for v in rec.times.values()) + sum(rec.errors.values())
    return {"rec": rec, "answers_per_s": cycles[0] / elapsed, "elapsed": elapsed,
            "cpu_ms_per_request": 1000.0 * cpu / max(requests, 1), "db_ms_per_request": 1000.0 * db / max(requests, 1),
            "cpu_ms_per_answer": 1000.0 * cpu / max(cycles[0], 1), "load": (load_before, os.getloadavg()[0])}


def tree_cpu(process: Optional[psutil.Process]) -> float:
    """User + system CPU seconds of a process and its children, the exited ones included (a
    PostgreSQL backend of a closed connection counts in its postmaster's children times)."""
    if process is None:
        return 0.0
    own = process.cpu_times()
    return portal_cpu(process) + own.children_user + own.children_system


def portal_cpu(process: psutil.Process) -> float:
    """User + system CPU seconds of the portal and its worker processes."""
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def start_portal(variant: Variant) -> tuple[str, subprocess.Popen]:
    port = free_port()
    variant.env["PORTAL_PORT"] = str(port)
    log = open(variant.logs / f"portal-{variant.name}.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "labeling", "portal", "serve", "--workers", str(variant.workers)],
                               cwd=variant.tree, env=variant.env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, 90, variant.logs / f"portal-{variant.name}.log")
    except Exception:
        stop(process)
        raise
    return url, process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def one_run(variant: Variant, ids: list[str], args: argparse.Namespace, think: float,
            postgres: Optional[psutil.Process]) -> dict:
    tag = f"bench-{variant.name}-{secrets.token_hex(3)}"
    names = [f"{tag}-{n:03d}" for n in range(args.annotators)]
    job_ids = json.loads(variant.cli(code=SETUP, stdin=json.dumps({
        "ids": ids, "names": names, "jobs": max(1, args.annotators // 2), "tag": tag, "schema": SCHEMA,
        "password": PASSWORD})))
    url, process = start_portal(variant)
    try:
        return asyncio.run(run_load(url, job_ids, names, args.duration, think, psutil.Process(process.pid), postgres))
    finally:
        stop(process)


def report(label: str, result: dict) -> dict[str, float]:
    rec: Recorder = result["rec"]
    print(f"\n{label}: {result['answers_per_s']:.1f} answers/s; CPU per request: portal {result['cpu_ms_per_request']:.2f} ms, "
          f"PostgreSQL {result['db_ms_per_request']:.2f} ms (portal {result['cpu_ms_per_answer']:.1f} ms per answer); "
          f"load average {result['load'][0]:.2f} → {result['load'][1]:.2f}")
    print(f"  {'endpoint':14s} {'count':>7s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s} {'errors':>7s}")
    worst = 0.0
    for name in ENDPOINTS:
        values = rec.times.get(name, [])
        if not values:
            print(f"  {name:14s} {0:7d}")
            continue
        p95 = pct(values, 0.95)
        if name != "GET healthz":
            worst = max(worst, p95)
        print(f"  {name:14s} {len(values):7d} {statistics.median(values):8.1f} {p95:8.1f} {max(values):8.1f} "
              f"{rec.errors.get(name, 0):7d}")
    for name, sample in rec.samples.items():
        print(f"  first error on {name}: {sample}")
    return {"answers_per_s": result["answers_per_s"], "worst_p95": worst, "errors": sum(rec.errors.values()),
            "cpu": result["cpu_ms_per_request"], "db": result["db_ms_per_request"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per run (default 30)")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=256, help="image rows/columns (default 256: 128 KiB)")
    parser.add_argument("--think", type=float, nargs="+", default=[0.0, 2.0],
                        help="think times in seconds, each run for both variants (default: 0 2)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per variant and think time, alternating which goes first (default 3)")
    parser.add_argument("--baseline-ref", default="main", help="git ref of the baseline portal (default: main)")
    parser.add_argument("--stack-workdir", type=Path, help="use this running local stack")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="portal-load-"))
    own = args.stack_workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="portal-load-stack-")) if own else args.stack_workdir
    baseline_tree = scratch / "baseline"
    stack = LocalStack(workdir)
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(baseline_tree), args.baseline_ref],
                   check=True, capture_output=True)
    try:
        if own:
            print(f"starting a private local stack in {workdir} ...", flush=True)
            stack.up(timeout=120)
        base_env = {**os.environ, **portal_env(workdir)}
        variants = [Variant("baseline", baseline_tree, 1, scratch), Variant("ours", REPO, 1, scratch)]
        postgres = psutil.Process(stack.status().postgres_pid)
        for variant in variants:
            variant.env = {**base_env, "PORTAL_DB_NAME": f"bench_{variant.name}_{secrets.token_hex(3)}",
                           "PORTAL_CACHE_DIR": str(scratch / f"cache-{variant.name}")}
            variant.workers = default_workers(variant)
            variant.env["PORTAL_WORKERS"] = str(variant.workers)
            variant.cli("migrate")
        from pydicom.uid import generate_uid

        study, series = generate_uid(), generate_uid()
        with OrthancClient.from_connection(stack.connection()) as orthanc:
            ids = [orthanc.upload(dicom(args.size, n, study, series)).instance_id for n in range(args.images)]
        print(f"{args.annotators} annotators, {args.duration:.0f} s per run, {args.images} images of {args.size}², "
              f"baseline {args.baseline_ref} ({variants[0].workers} worker(s)) vs ours ({variants[1].workers}); "
              f"{os.cpu_count()} CPUs shared by the portal, PostgreSQL, Orthanc, this client and other users",
              flush=True)
        results: dict[tuple[str, float], list[dict[str, float]]] = defaultdict(list)
        for think in args.think:
            for round_ in range(args.repeat):
                for variant in (variants if round_ % 2 == 0 else variants[::-1]):  # ABBA: drift hits both
                    result = one_run(variant, ids, args, think, postgres)
                    results[(variant.name, think)].append(
                        report(f"{variant.name}, think {think:g} s, run {round_ + 1}", result))
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline_tree)], capture_output=True)
        if own:
            stack.down()
            shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\nmedian [min-max] of {args.repeat} run(s) each:")
    print(f"  {'variant':9s} {'think':>5s} {'answers/s':>20s} {'portal ms/req':>20s} {'PostgreSQL ms/req':>20s} "
          f"{'worst p95 ms':>22s} {'errors':>6s}")
    for think in args.think:
        for variant in variants:
            runs = results[(variant.name, think)]
            cells = [spread([r[key] for r in runs]) for key in ("answers_per_s", "cpu", "db", "worst_p95")]
            print(f"  {variant.name:9s} {think:5g} {cells[0]:>20s} {cells[1]:>20s} {cells[2]:>20s} {cells[3]:>22s} "
                  f"{sum(r['errors'] for r in runs):6d}")

    def median(name: str, think: float, key: str) -> float:
        return statistics.median(r[key] for r in results[(name, think)])

    ok = True
    for think in args.think:
        print(f"think {think:g} s, CPU per request ours / baseline (medians): "
              f"portal {median('ours', think, 'cpu') / max(median('baseline', think, 'cpu'), 1e-9):.2f}, "
              f"PostgreSQL {median('ours', think, 'db') / max(median('baseline', think, 'db'), 1e-9):.2f}")
    if 0.0 in args.think:
        ratio = median("ours", 0.0, "answers_per_s") / max(median("baseline", 0.0, "answers_per_s"), 1e-9)
        met = ratio >= 2.0
        ok &= met
        print(f"think 0: ours / baseline answers/s (medians) = {ratio:.2f} (goal ≥ 2): {'MET' if met else 'NOT MET'}")
    for think in args.think:
        if think > 0:
            worst = max(r["worst_p95"] for r in results[("ours", think)])
            errors = sum(r["errors"] for r in results[("ours", think)])
            met = worst < 300.0 and errors == 0
            ok &= met
            print(f"think {think:g} s: ours worst p95 over the runs {worst:.1f} ms, {errors} errors "
                  f"(goal < 300 ms, 0 errors): {'MET' if met else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
