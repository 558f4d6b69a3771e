"""Portal load test: N concurrent annotators fetch tasks and images and submit answers, on loopback.

    .venv/bin/python bench/portal_load.py [--annotators 50] [--duration 60] [--images 100]
                                          [--stack-workdir DIR]

Setup (not measured): a private local stack (Orthanc + PostgreSQL; ``--stack-workdir`` reuses a
running one), ``--images`` small DX instances uploaded, the portal started as a subprocess with
``labeling.portal.local.start_local_portal`` (``portal serve``: one uvicorn process, loopback), one
annotator user per simulated annotator, and ``annotators / 2`` jobs over the same images with K=2.
Every annotator logs in with its own cookie jar, then loops for ``--duration`` seconds:

    POST /api/jobs/{id}/next → GET /api/items/{id}/image → POST /api/assignments/{id}/answer

optionally pausing ``--think`` seconds (±50 %) after each answer, as a person looking at the image
would; with the default 0 the loop never pauses, so latency = concurrency / throughput and the run
measures the portal's saturation point rather than what 50 people would see. It moves to the next
job when one has nothing left for it (so consolidation runs during the test too:
every second answer on an item triggers it). Meanwhile one extra client polls ``GET /healthz``
(a database round trip, nothing else) as the **baseline**: it runs under the same load, so the
ratio p95(endpoint) / p95(healthz) shows what the portal's own work adds to the bare cost of
serving a request here.

Printed: per endpoint count, p50, p95, max (ms), errors (non-2xx or transport errors), and the
ratio to the baseline; goal p95 < 300 ms and 0 errors. Bounded: loopback only, fixed duration.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labeling.local_stack import LocalStack  # noqa: E402
from labeling.manifest import ManifestLine  # noqa: E402
from labeling.orthanc_client import OrthancClient  # noqa: E402
from labeling.portal import jobs as J  # noqa: E402
from labeling.portal.db import make_engine, session_factory, transaction  # noqa: E402
from labeling.portal.geometry import checked_geometry  # noqa: E402
from labeling.portal.local import portal_env, start_local_portal, stop_local_portal  # noqa: E402
from labeling.portal.security import hash_password  # noqa: E402
from labeling.portal.settings import PortalSettings  # noqa: E402
from labeling.schema import LabelSchema  # noqa: E402

SCHEMA = {"name": "bench", "task_type": "classification+roi",
          "labels": [{"name": "Opacity", "shapes": ["rectangle", "ellipse"]}, {"name": "Device"},
                     {"name": "Effusion"}], "annotators_per_item": 2}
PASSWORD = "bench password 123"


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


def prepare(workdir: Path, args: argparse.Namespace) -> tuple[list[int], list[str]]:
    """Upload images, create users and jobs; returns (job ids, user names)."""
    from pydicom.uid import generate_uid

    stack = LocalStack(workdir)
    conn = stack.connection()
    study, series = generate_uid(), generate_uid()
    with OrthancClient.from_connection(conn) as orthanc:
        ids = [orthanc.upload(dicom(args.size, n, study, series)).instance_id for n in range(args.images)]
        geometry = checked_geometry(orthanc, ids)
    settings = PortalSettings.from_env(portal_env(workdir))
    engine = make_engine(settings, pool_size=2)
    factory = session_factory(engine)
    tag = secrets.token_hex(3)
    names = [f"bench-{tag}-{n:03d}" for n in range(args.annotators)]
    hashed = hash_password(PASSWORD)  # one hash for all: argon2 is deliberately slow
    schema = LabelSchema.from_dict(SCHEMA)
    lines = [ManifestLine(source=i, labels=schema.label_names, task_type=schema.task_type, schema=schema.name)
             for i in ids]
    job_ids = []
    with transaction(factory) as session:
        for name in names:
            J.add_user(session, name, "annotator", hashed)
        for n in range(max(1, args.annotators // 2)):
            job = J.create_job(session, name=f"bench-{tag}-{n:03d}", schema=schema, lines=lines,
                               geometry=geometry, annotators_per_item=2, lease_seconds=600)
            job_ids.append(job.id)
    engine.dispose()
    return job_ids, names


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


ANSWER = {"labels": [{"name": "Opacity", "present": True}, {"name": "Device", "present": False},
                     {"name": "Effusion", "present": False}],
          "rois": [{"label": "Opacity", "shape": "rectangle", "points": [[4.0, 4.0], [40.0, 40.0]]}]}


async def login(url: str, name: str) -> tuple[httpx.AsyncClient, dict[str, str]]:
    """A logged-in client (own cookie jar) and its CSRF header; not part of the measurement."""
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
        if think > 0:  # the time a person spends looking at the image, ±50 %
            await asyncio.sleep(min(think * random.uniform(0.5, 1.5), max(0.0, stop_at - time.perf_counter())))


async def baseline(url: str, stop_at: float, rec: Recorder) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        while time.perf_counter() < stop_at:
            await rec.call("GET healthz (baseline)", client.get("/healthz"))
            await asyncio.sleep(0.05)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


async def run_load(url: str, job_ids: list[int], names: list[str], duration: float,
                   think: float) -> tuple[Recorder, int, float]:
    rec = Recorder()
    cycles = [0]
    sessions = []
    for start in range(0, len(names), 8):  # argon2 is memory-hard: log in a few at a time
        sessions += await asyncio.gather(*(login(url, name) for name in names[start:start + 8]))
    start = time.perf_counter()
    stop_at = start + duration
    try:
        tasks = [annotator(client, headers, job_ids, n // 2, stop_at, rec, cycles, think)
                 for n, (client, headers) in enumerate(sessions)]
        await asyncio.gather(baseline(url, stop_at, rec), *tasks)
    finally:
        for client, _ in sessions:
            await client.aclose()
    return rec, cycles[0], time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=256, help="image rows/columns (default 256: 128 KiB)")
    parser.add_argument("--stack-workdir", type=Path, help="use this running local stack")
    parser.add_argument("--workers", type=int, default=1, help="portal worker processes (PORTAL_WORKERS)")
    parser.add_argument("--think", type=float, default=0.0,
                        help="seconds an annotator looks at each image before the next task (±50 %%; default 0: "
                             "a closed loop with no pause, i.e. the portal's saturation throughput)")
    args = parser.parse_args(argv)

    own = args.stack_workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="portal-load-")) if own else args.stack_workdir
    stack = LocalStack(workdir)
    process = None
    try:
        if own:
            print(f"starting a private local stack in {workdir} ...", flush=True)
            stack.up(timeout=120)
        os.environ["PORTAL_WORKERS"] = str(args.workers)
        url, process = start_local_portal(workdir)
        print(f"portal {url}; preparing {args.images} images, {args.annotators} annotators ...", flush=True)
        job_ids, names = prepare(workdir, args)
        print(f"load: {args.annotators} annotators for {args.duration:.0f} s over {len(job_ids)} jobs (K=2), "
              f"think time {args.think:g} s, {args.workers} portal worker(s)", flush=True)
        rec, cycles, elapsed = asyncio.run(run_load(url, job_ids, names, args.duration, args.think))
    finally:
        if process is not None:
            stop_local_portal(process)
        if own:
            stack.down()
            shutil.rmtree(workdir, ignore_errors=True)

    base = rec.times.get("GET healthz (baseline)", [])
    base_p95 = pct(base, 0.95) if base else float("nan")
    print(f"\n{cycles} labeling cycles in {elapsed:.1f} s ({cycles / elapsed:.1f} answers/s), "
          f"{os.cpu_count()} CPUs shared by portal, PostgreSQL, Orthanc and this client")
    print(f"{'endpoint':28s} {'count':>7s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s} {'errors':>7s} "
          f"{'p95/baseline':>13s}")
    total_errors = sum(rec.errors.values())
    worst = 0.0
    for name in ("POST next", "GET image", "POST answer", "GET healthz (baseline)"):
        values = rec.times.get(name, [])
        if not values:
            print(f"{name:28s} {'0':>7s}")
            continue
        p95 = pct(values, 0.95)
        if "baseline" not in name:
            worst = max(worst, p95)
        print(f"{name:28s} {len(values):7d} {statistics.median(values):8.1f} {p95:8.1f} {max(values):8.1f} "
              f"{rec.errors.get(name, 0):7d} {p95 / base_p95:13.2f}")
    for name, sample in rec.samples.items():
        print(f"  first error on {name}: {sample}")
    if rec.errors.get("login"):
        print(f"  login errors: {rec.errors['login']}")
    ok = worst < 300.0 and total_errors == 0
    print(f"\ngoal p95 < 300 ms and 0 errors: {'MET' if ok else 'NOT MET'} "
          f"(worst p95 {worst:.1f} ms, {total_errors} errors)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
