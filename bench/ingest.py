"""Ingest benchmark: our `upload` against simple per-file and ZIP-batch uploaders, whole processes.

    .venv/bin/python bench/ingest.py [--instances 1000] [--rounds 3] [--clients 2,4,8]

Variants, each run on an EMPTY Orthanc with the same files (≈128 KiB synthetic DX instances,
256×256 16-bit, from ``devkit.synth``), each as its own process (``python bench/ingest.py
--client NAME``, or ``python -m labeling upload`` for ours), timed from start to exit — start-up
and imports included, since that is what a user waits for:

* ``naive``        — one request per file, sequential, a NEW HTTP connection each time: what
                     Orthanc's own ``ImportDicomFiles.py`` sample does;
* ``parallel-N``   — N threads, one keep-alive session each, one request per file (best N shown);
* ``zip-batch``    — the simplest batching client: ZIP archives of 50 files (stored, not
                     compressed), 2 threads, one ``POST /instances`` each (Orthanc >= 1.8.2);
* ``ours``         — ``python -m labeling upload DIR --report FILE`` (validation, ZIP bodies,
                     per-file outcomes checked in the report).

Emptying Orthanc between variants: with the benchmark's own stack (the default) the database is
recreated (``LocalStack.reset_database``: stop Orthanc, drop + create the database, wipe the
storage, start) — a few seconds, and unlike ``DELETE /patients/{id}`` it leaves no background work
that would slow the next variant. With ``ORTHANC_URL`` set, that Orthanc is used and emptied by
deleting its patients (it must hold nothing you want to keep: the benchmark asks for ``--yes``).

The machine is shared and noisy: the variants run ``--rounds`` times, interleaved (the order
rotates each round); medians and min–max are reported, with Orthanc + PostgreSQL CPU per instance
(the server's share is the ceiling: on 2 cores it takes most of the CPU whatever the client does),
the CPU other programs used meanwhile, and the load average.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional
from urllib.parse import urlparse

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from labeling.orthanc.connection import OrthancConnection  # noqa: E402

if TYPE_CHECKING:
    from labeling.orthanc.local_stack import LocalStack
# labeling.orthanc.local_stack and labeling.orthanc.client are imported where used: a baseline client's
# process (--client) loads no more than a plain script would (requests, http.client).

GOAL_VS_PARALLEL = 1.1
GOAL_VS_ZIP = 0.95


# ---------------------------------------------------------------------------------------------
# data


def dataset(instances: int, cache: Path) -> tuple[Path, list[Path]]:
    """``instances`` synthetic files (cached between runs); devkit.synth, else plain pydicom."""
    folder = cache / f"ingest-{instances}-256-v2"
    ready = cache / f"ingest-{instances}-256-v2.ready"  # outside the folder: `upload` must see only DICOM
    if not ready.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        print(f"generating {instances} instances into {folder} ...", flush=True)
        started = time.perf_counter()
        try:
            from devkit.synth import generate_dataset
        except ImportError:
            _pydicom_dataset(folder, instances)
        else:
            # Two studies per patient (one image each, synth's layout): mostly new resources per
            # instance, the index's heavier case.
            generate_dataset(folder, patients=(instances + 1) // 2, studies_per_patient=2, size=256,
                             seed=7, progress=False)
        ready.write_text("")
        print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
    files = sorted(folder.rglob("*.dcm"))
    if len(files) not in (instances, instances + 1):  # synth makes whole patients: N rounded up to even
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
        from labeling.orthanc.client import OrthancClient

        with OrthancClient.from_connection(self.conn) as client:
            for patient in client._json("GET", "/patients"):
                client.delete("patients", patient, missing_ok=True)
        time.sleep(2)  # let Orthanc's deferred file removal settle before timing again

    def count(self) -> int:
        from labeling.orthanc.client import OrthancClient

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


def _sessions(conn: OrthancConnection) -> Callable[[], requests.Session]:
    local = threading.local()

    def session() -> requests.Session:
        if getattr(local, "session", None) is None:
            local.session = requests.Session()
            local.session.auth = (conn.username, conn.password)
        return local.session

    return session


def parallel(clients: int) -> Callable[[OrthancConnection, list[Path]], None]:
    """N threads, each with its own keep-alive session, one request per file."""

    def run(conn: OrthancConnection, files: list[Path]) -> None:
        session = _sessions(conn)

        def send(path: Path) -> None:
            answer = session().post(f"{conn.url}/instances", data=path.read_bytes(),
                                    headers={"Content-Type": "application/dicom"}, timeout=60)
            if answer.status_code != 200:
                raise RuntimeError(f"parallel: {path}: HTTP {answer.status_code}")

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(send, files))

    return run


def zip_batch(conn: OrthancConnection, files: list[Path], batch: int = 50, threads: int = 2) -> None:
    """ZIP archives of ``batch`` files (stored), ``threads`` in flight, one POST each."""
    import zipfile

    session = _sessions(conn)

    def send(chunk: list[Path]) -> None:
        body = io.BytesIO()
        with zipfile.ZipFile(body, "w", compression=zipfile.ZIP_STORED) as archive:
            for path in chunk:
                archive.write(path, path.name)
        answer = session().post(f"{conn.url}/instances", data=body.getvalue(),
                                headers={"Content-Type": "application/zip"}, timeout=120)
        if answer.status_code != 200 or len(answer.json()) != len(chunk):
            raise RuntimeError(f"zip-batch: HTTP {answer.status_code}, {len(answer.json())} answers for {len(chunk)}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, [files[i:i + batch] for i in range(0, len(files), batch)]))


CLIENTS: dict[str, Callable[[OrthancConnection, list[Path]], None]] = {
    "naive": naive, "zip-batch": zip_batch, **{f"parallel-{n}": parallel(n) for n in range(1, 17)},
}


def command(name: str, folder: Path, report: Path) -> list[str]:
    """The process a variant runs (connection from ORTHANC_* in its environment)."""
    if name == "ours":
        return [sys.executable, "-m", "labeling", "upload", str(folder), "--report", str(report)]
    return [sys.executable, str(Path(__file__).resolve()), "--client", name, "--folder", str(folder)]


def check_ours(report: Path, files: list[Path]) -> None:
    """Per-file outcomes intact: every file stored, each one reported."""
    data = json.loads(report.read_text())
    totals = data["totals"]
    if totals["stored"] != len(files) or totals["files"] != len(files):
        raise SystemExit(f"ours: report totals {totals}, expected {len(files)} stored")


# ---------------------------------------------------------------------------------------------
# CPU accounting: who used the machine during a run


TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs, /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


def process_cpu_s(pid: int, with_children: bool = False) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def server_cpu_s(stack: Optional[LocalStack]) -> Optional[float]:
    """CPU seconds of our Orthanc and PostgreSQL (postmaster + backends, live and exited)."""
    if stack is None:
        return None
    info = stack.status()
    if not info.orthanc_pid or not info.postgres_pid:
        return None
    total = process_cpu_s(info.orthanc_pid) + process_cpu_s(info.postgres_pid, with_children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == info.postgres_pid:
                total += process_cpu_s(int(entry.name))
    return total


def wait_for_quiet(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (at most ``max_wait`` s) until other programs use < ``threshold`` CPUs; return their load."""
    deadline = time.monotonic() + max_wait
    while True:
        busy0, own0, t0 = machine_busy_s(), time.process_time(), time.monotonic()
        time.sleep(1.0)
        load = (machine_busy_s() - busy0 - (time.process_time() - own0)) / (time.monotonic() - t0)
        if load < threshold or time.monotonic() >= deadline:
            return load


# ---------------------------------------------------------------------------------------------
# runner


@dataclass
class Run:
    seconds: float
    server_ms: Optional[float]   # Orthanc + PostgreSQL CPU per instance
    others: float                # CPUs used by other programs during the run (noise)


def measure(target: Target, name: str, folder: Path, files: list[Path], quiet_wait: float) -> Run:
    target.reset()
    if quiet_wait > 0:
        wait_for_quiet(quiet_wait)
    report = Path(tempfile.mkdtemp(prefix="bench-ingest-")) / "report.json"
    env = dict(os.environ, ORTHANC_URL=target.conn.url, ORTHANC_USERNAME=target.conn.username,
               ORTHANC_PASSWORD=target.conn.password, PYTHONPATH=str(REPO_ROOT))
    busy0, server0 = machine_busy_s(), server_cpu_s(target.stack)
    started = time.perf_counter()
    done = subprocess.run(command(name, folder, report), env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    busy1, server1 = machine_busy_s(), server_cpu_s(target.stack)
    try:
        if done.returncode != 0:
            raise SystemExit(f"{name}: exit {done.returncode}: {done.stderr.strip()[-400:]}")
        if name == "ours":
            check_ours(report, files)
    finally:
        shutil.rmtree(report.parent, ignore_errors=True)
    stored = target.count()
    if stored != len(files):
        raise SystemExit(f"{name}: Orthanc holds {stored} instances after the run, expected {len(files)}")
    server = None if server0 is None or server1 is None else server1 - server0
    others = max(0.0, (busy1 - busy0) - (server or 0.0) - client_cpu_s(done)) / elapsed
    run = Run(elapsed, None if server is None else 1000 * server / len(files), others)
    server_text = "" if run.server_ms is None else f"server {run.server_ms:4.1f} ms/inst  "
    print(f"  {name:<12} {len(files) / elapsed:7.1f} inst/s  ({elapsed:5.1f} s)  {server_text}"
          f"other programs {run.others:4.2f} CPUs  load {os.getloadavg()[0]:.1f}", flush=True)
    return run


def client_cpu_s(done: subprocess.CompletedProcess) -> float:
    """CPU seconds of the finished child (this process's reaped-children counters)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    previous, client_cpu_s.last = getattr(client_cpu_s, "last", 0.0), total  # type: ignore[attr-defined]
    return total - previous


def spread(runs: list[Run], instances: int) -> str:
    rates = [instances / run.seconds for run in runs]
    return f"{statistics.median(rates):7.1f} {min(rates):7.1f}-{max(rates):<7.1f}"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=1000, help="number of instances (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per variant (default 3)")
    parser.add_argument("--clients", default="2,4,8", help="N for the parallel per-file variant (default 2,4,8)")
    parser.add_argument("--cache", type=Path, default=REPO_ROOT / ".local" / "bench",
                        help="where the generated files are kept between runs")
    parser.add_argument("--quiet-wait", type=float, default=10.0, metavar="S",
                        help="before each run wait up to S s for other programs to go idle (default 10)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--yes", action="store_true", help="with ORTHANC_URL: allow deleting every patient")
    parser.add_argument("--client", choices=sorted(CLIENTS), help=argparse.SUPPRESS)  # one variant's process
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        from labeling.orthanc.connection import connection_from_args

        CLIENTS[args.client](connection_from_args(argparse.Namespace()), sorted(args.folder.rglob("*.dcm")))
        return 0
    if args.instances < 1 or args.rounds < 1:
        parser.error("--instances and --rounds must be at least 1")
    clients = [int(n) for n in args.clients.split(",") if n.strip()]

    folder, files = dataset(args.instances, args.cache)
    size_kib = sum(p.stat().st_size for p in files) / len(files) / 1024
    print(f"{len(files)} instances, {size_kib:.0f} KiB each, in {folder}; {os.cpu_count()} CPUs; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (shared machine)", flush=True)

    from labeling.orthanc.local_stack import LocalStack

    workdir: Optional[Path] = None
    if os.environ.get("ORTHANC_URL"):
        if not args.yes:
            parser.error("ORTHANC_URL is set: every patient of that Orthanc is deleted between variants; "
                         "pass --yes to allow it, or unset ORTHANC_URL to use a private stack")
        from labeling.orthanc.connection import connection_from_args
        target = Target(connection_from_args(argparse.Namespace()), None)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-stack-"))
        stack = LocalStack(workdir)
        stack.up(timeout=90)
        target = Target(stack.connection(), stack)
        print(f"private Orthanc {target.conn.url} (work dir {workdir})", flush=True)

    names = ["naive", *(f"parallel-{n}" for n in clients), "zip-batch", "ours"]
    runs: dict[str, list[Run]] = {name: [] for name in names}
    try:
        for round_number in range(args.rounds):
            shift = round_number % len(names)
            print(f"round {round_number + 1}/{args.rounds}", flush=True)
            for name in names[shift:] + names[:shift]:
                runs[name].append(measure(target, name, folder, files, args.quiet_wait))
    finally:
        if workdir is not None:
            LocalStack(workdir).down()
            shutil.rmtree(workdir, ignore_errors=True)

    n = len(files)
    median = {name: statistics.median(n / run.seconds for run in result) for name, result in runs.items()}
    best_parallel = max((f"parallel-{c}" for c in clients), key=median.get)
    print(f"\n{'variant':<12} {'median':>7} {'min-max':^15}  inst/s, whole process   server CPU   other CPUs")
    for name, result in runs.items():
        server = [r.server_ms for r in result if r.server_ms is not None]
        server_text = f"{statistics.median(server):5.1f} ms/inst" if server else "      -      "
        print(f"{name:<12} {spread(result, n)}                  {server_text}   "
              f"{statistics.median(r.others for r in result):4.2f}")
    vs_parallel = median["ours"] / median[best_parallel]
    vs_zip = median["ours"] / median["zip-batch"]
    vs_naive = median["ours"] / median["naive"]
    server_ms = statistics.median(r.server_ms for r in runs["ours"] if r.server_ms is not None) if target.stack else None
    print(f"\nours / {best_parallel} = {vs_parallel:.2f} (goal >= {GOAL_VS_PARALLEL}); ours / zip-batch = "
          f"{vs_zip:.2f} (goal >= {GOAL_VS_ZIP}); ours / naive = {vs_naive:.2f}; medians of {args.rounds} "
          f"interleaved rounds; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (shared machine)")
    if server_ms:
        print(f"server ceiling: Orthanc + PostgreSQL use {server_ms:.1f} ms CPU per instance; on "
              f"{os.cpu_count()} CPUs no client can exceed {1000 * (os.cpu_count() or 1) / server_ms:.0f} inst/s")
    if args.json:
        args.json.write_text(json.dumps({
            "instances": n, "kib_per_instance": round(size_kib, 1), "cpus": os.cpu_count(),
            "runs": {name: [vars(run) for run in result] for name, result in runs.items()},
            "median_rate": {name: round(rate, 1) for name, rate in median.items()},
            "best_parallel": best_parallel, "ratio_vs_best_parallel": round(vs_parallel, 3),
            "ratio_vs_zip_batch": round(vs_zip, 3), "ratio_vs_naive": round(vs_naive, 3),
            "load_average": os.getloadavg(),
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
