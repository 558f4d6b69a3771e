"""Ingest benchmark: our `upload` against a naive and a parallel per-file uploader, same Orthanc, same files.

    .venv/bin/python bench/ingest.py [--instances 2000] [--rounds 2] [--clients 2,4,8]

Variants, each run on an EMPTY Orthanc with the same files (≈128 KiB synthetic DX instances,
256×256 16-bit, from ``labeling.synth``):

* ``naive``        — one request per file, sequential, a NEW HTTP connection each time: what
                     Orthanc's own ``ImportDicomFiles.py`` sample does;
* ``parallel-N``   — N threads, one keep-alive session each, one request per file (best N shown);
* ``ours``         — ``python -m labeling upload DIR`` run in this process (``labeling.cli.main``,
                     the CLI's code path: validation, ZIP bodies, per-file outcomes, report).

Emptying Orthanc between variants: with the benchmark's own stack (the default) the database is
recreated (``LocalStack.reset_database``: stop Orthanc, drop + create the database, wipe the
storage, start) — a few seconds, and unlike ``DELETE /patients/{id}`` it leaves no background work
that would slow the next variant. With ``ORTHANC_URL`` set, that Orthanc is used and emptied by
deleting its patients (it must hold nothing you want to keep: the benchmark asks for ``--yes``).

The machine is shared and noisy, so every variant runs ``--rounds`` times (alternating order) and
the best rate of each is compared. Orthanc's own processing is the ceiling: on 2 cores it takes
most of the CPU whatever the client does.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlparse

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from labeling.connection import OrthancConnection  # noqa: E402
from labeling.local_stack import LocalStack  # noqa: E402
from labeling.orthanc_client import OrthancClient  # noqa: E402

GOAL_VS_NAIVE = 1.8
GOAL_VS_PARALLEL = 1.1


# ---------------------------------------------------------------------------------------------
# data


def dataset(instances: int, cache: Path) -> tuple[Path, list[Path]]:
    """``instances`` synthetic files (cached between runs); labeling.synth, else plain pydicom."""
    folder = cache / f"ingest-{instances}-256"
    ready = cache / f"ingest-{instances}-256.ready"  # outside the folder: `upload` must see only DICOM
    if not ready.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        print(f"generating {instances} instances into {folder} ...", flush=True)
        started = time.perf_counter()
        try:
            from labeling.synth import generate_dataset
        except ImportError:
            _pydicom_dataset(folder, instances)
        else:
            generate_dataset(folder, patients=instances, studies_per_patient=1, size=256, seed=7,
                             progress=False)
        ready.write_text("")
        print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
    files = sorted(folder.rglob("*.dcm"))
    if len(files) != instances:
        raise SystemExit(f"{folder}: expected {instances} .dcm files, found {len(files)}; delete it")
    return folder, files


def _pydicom_dataset(folder: Path, count: int) -> None:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    for i in range(count):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = "BENCH", study, series, "OT"
        ds.Rows = ds.Columns = 256
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 0, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = np.random.default_rng(i).integers(0, 4096, (256, 256), dtype=np.uint16).tobytes()
        ds.save_as(folder / f"{i:06d}.dcm", enforce_file_format=True)


# ---------------------------------------------------------------------------------------------
# the Orthanc under test


class Target:
    """An Orthanc to upload into, and how to empty it between variants."""

    def __init__(self, conn: OrthancConnection, stack: Optional[LocalStack]) -> None:
        self.conn = conn
        self.stack = stack

    def reset(self) -> None:
        if self.stack is not None:
            self.stack.reset_database()
            return
        with OrthancClient.from_connection(self.conn) as client:
            for patient in client._json("GET", "/patients"):
                client.delete("patients", patient, missing_ok=True)
        time.sleep(2)  # let Orthanc's deferred file removal settle before timing again

    def count(self) -> int:
        with OrthancClient.from_connection(self.conn) as client:
            return int(client.statistics()["CountInstances"])


# ---------------------------------------------------------------------------------------------
# uploaders


def naive(conn: OrthancConnection, files: list[Path]) -> None:
    """ImportDicomFiles.py's way: read a file, open a connection, POST it, close; next file."""
    url = urlparse(conn.url)
    token = base64.b64encode(f"{conn.username}:{conn.password}".encode()).decode()
    headers = {"Content-Type": "application/dicom", "Authorization": f"Basic {token}"}
    for path in files:
        body = path.read_bytes()
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        try:
            connection.request("POST", "/instances", body=body, headers=headers)
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"naive: {path}: HTTP {answer.status}")
        finally:
            connection.close()


def parallel(clients: int) -> Callable[[OrthancConnection, list[Path]], None]:
    """N threads, each with its own keep-alive session, one request per file."""

    def run(conn: OrthancConnection, files: list[Path]) -> None:
        local = threading.local()

        def send(path: Path) -> None:
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
                session.auth = (conn.username, conn.password)
            answer = session.post(f"{conn.url}/instances", data=path.read_bytes(),
                                  headers={"Content-Type": "application/dicom"}, timeout=60)
            if answer.status_code != 200:
                raise RuntimeError(f"parallel: {path}: HTTP {answer.status_code}")

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(send, files))

    return run


def ours(folder: Path) -> Callable[[OrthancConnection, list[Path]], None]:
    """`python -m labeling upload FOLDER --report FILE` in this process, default settings."""

    def run(conn: OrthancConnection, files: list[Path]) -> None:
        from labeling.cli import main

        report = Path(tempfile.mkdtemp(prefix="bench-ingest-")) / "report.json"
        saved = {k: os.environ.get(k) for k in ("ORTHANC_URL", "ORTHANC_USERNAME", "ORTHANC_PASSWORD")}
        os.environ.update(ORTHANC_URL=conn.url, ORTHANC_USERNAME=conn.username, ORTHANC_PASSWORD=conn.password)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                code = main(["upload", str(folder), "--report", str(report)])
            totals = json.loads(report.read_text())["totals"]
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            shutil.rmtree(report.parent, ignore_errors=True)
        if code != 0 or totals["stored"] != len(files):
            raise RuntimeError(f"ours: exit {code}, totals {totals}")

    return run


# ---------------------------------------------------------------------------------------------
# runner


@dataclass
class Result:
    name: str
    rates: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return max(self.rates)


def measure(target: Target, name: str, upload: Callable, files: list[Path]) -> float:
    target.reset()
    started = time.perf_counter()
    upload(target.conn, files)
    elapsed = time.perf_counter() - started
    stored = target.count()
    if stored != len(files):
        raise SystemExit(f"{name}: Orthanc holds {stored} instances after the run, expected {len(files)}")
    rate = len(files) / elapsed
    print(f"  {name:<12} {rate:7.1f} inst/s  ({elapsed:5.1f} s)", flush=True)
    return rate


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=2000, help="number of instances (default 2000)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per variant; the best counts (default 2)")
    parser.add_argument("--clients", default="2,4,8", help="N for the parallel per-file variant (default 2,4,8)")
    parser.add_argument("--cache", type=Path, default=REPO_ROOT / ".local" / "bench",
                        help="where the generated files are kept between runs")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--yes", action="store_true", help="with ORTHANC_URL: allow deleting every patient")
    args = parser.parse_args(argv)
    if args.instances < 1 or args.rounds < 1:
        parser.error("--instances and --rounds must be at least 1")
    clients = [int(n) for n in args.clients.split(",") if n.strip()]

    folder, files = dataset(args.instances, args.cache)
    size_kib = sum(p.stat().st_size for p in files) / len(files) / 1024
    print(f"{len(files)} instances, {size_kib:.0f} KiB each, in {folder}; {os.cpu_count()} CPUs", flush=True)

    workdir: Optional[Path] = None
    if os.environ.get("ORTHANC_URL"):
        if not args.yes:
            parser.error("ORTHANC_URL is set: every patient of that Orthanc is deleted between variants; "
                         "pass --yes to allow it, or unset ORTHANC_URL to use a private stack")
        from labeling.connection import connection_from_args
        target = Target(connection_from_args(argparse.Namespace()), None)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-stack-"))
        stack = LocalStack(workdir)
        stack.up(timeout=90)
        target = Target(stack.connection(), stack)
        print(f"private Orthanc {target.conn.url} (work dir {workdir})", flush=True)

    variants: list[tuple[str, Callable]] = [("naive", naive)]
    variants += [(f"parallel-{n}", parallel(n)) for n in clients]
    variants += [("ours", ours(folder))]
    results = {name: Result(name) for name, _ in variants}
    try:
        for round_number in range(args.rounds):
            order = variants if round_number % 2 == 0 else list(reversed(variants))
            print(f"round {round_number + 1}/{args.rounds}", flush=True)
            for name, upload in order:
                results[name].rates.append(measure(target, name, upload, files))
    finally:
        if workdir is not None:
            LocalStack(workdir).down()
            shutil.rmtree(workdir, ignore_errors=True)

    best_parallel = max((results[f"parallel-{n}"] for n in clients), key=lambda r: r.best)
    ours_rate, naive_rate = results["ours"].best, results["naive"].best
    vs_naive, vs_parallel = ours_rate / naive_rate, ours_rate / best_parallel.best
    print("\nbest of each (instances/s):")
    for result in results.values():
        print(f"  {result.name:<12} {result.best:7.1f}   rounds: {', '.join(f'{r:.1f}' for r in result.rates)}")
    print(f"\nours / naive          = {vs_naive:.2f}  (goal >= {GOAL_VS_NAIVE}: "
          f"{'met' if vs_naive >= GOAL_VS_NAIVE else 'NOT met'})")
    print(f"ours / {best_parallel.name:<14} = {vs_parallel:.2f}  (goal >= {GOAL_VS_PARALLEL}: "
          f"{'met' if vs_parallel >= GOAL_VS_PARALLEL else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps({
            "instances": len(files), "kib_per_instance": round(size_kib, 1), "cpus": os.cpu_count(),
            "rates": {r.name: r.rates for r in results.values()},
            "best": {r.name: round(r.best, 1) for r in results.values()},
            "best_parallel": best_parallel.name,
            "ratio_vs_naive": round(vs_naive, 3), "ratio_vs_best_parallel": round(vs_parallel, 3),
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
