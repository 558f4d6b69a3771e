"""Ingest benchmark: our `upload` against simple per-file and ZIP-batch uploaders, whole processes.

    .venv/bin/python bench/ingest.py [--instances 1000] [--rounds 3] [--clients 2,4,8]
        [--servers base,pgasync,...] [--ours-workers 4] [--no-naive] [--json FILE]

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

Where the limit is. Each run records the whole-process wall time and the CPU seconds (utime +
stime from ``/proc``, before/after) of Orthanc, of PostgreSQL (postmaster and every backend, live or
exited) and of the client process tree, plus what the rest of the machine used meanwhile. The
summary gives, per variant, CPU ms per instance of each, the share of the machine's cores the
server used (server CPU / (wall × cores)) and the share everything used: when the server's CPU per
instance is the same whatever the client and the cores are busy, no client can go faster than
cores / server CPU per instance, and the summary says how close each comes to that ceiling.

Server settings (``--servers base,conn2,...``, :data:`SERVER_CONFIGS`): every client runs on the
first; ``ours`` also runs on each of the others, in the same interleaved rounds, so a setting is
judged against the same noise. The settings are applied through the project's one configuration
generator (:mod:`labeling.orthanc.config`) and, for PostgreSQL, ``ALTER ROLE`` on Orthanc's user.

The machine is shared and noisy: the variants run ``--rounds`` times, interleaved (the order
rotates each round); medians and min–max are reported, with the load average.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import urlparse

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from labeling.orthanc.connection import OrthancConnection  # noqa: E402

from ingest_server import (CPUS, SERVER_CONFIGS, ServerConfig, bench_stack_class,  # noqa: E402 - beside this file
                           children_cpu_s, machine_busy_s, machine_iowait_s, pressure_s, server_config,
                           server_cpu_s, wait_for_quiet)

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


class Target:
    """An Orthanc to upload into, and how to empty it between variants."""

    def __init__(self, conn: OrthancConnection, stack: Optional[LocalStack]) -> None:
        self.conn = conn
        self.stack = stack

    def reset(self, server: ServerConfig) -> None:
        if self.stack is not None:
            self.stack.configure(server)  # type: ignore[attr-defined]
            self.stack.reset_database()
            return
        if server != SERVER_CONFIGS["base"]:
            raise SystemExit("server settings can be switched only on the benchmark's own stack")
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
    """The process a variant runs (connection from ORTHANC_* in its environment); ``ours-wN`` is
    ours with ``--workers N``."""
    if name == "ours" or name.startswith("ours-w"):
        workers = ["--workers", name.removeprefix("ours-w")] if name != "ours" else []
        return [sys.executable, "-m", "labeling", "upload", str(folder), "--report", str(report), *workers]
    return [sys.executable, str(Path(__file__).resolve()), "--client", name, "--folder", str(folder)]


def check_ours(report: Path, files: list[Path]) -> None:
    """Per-file outcomes intact: every file stored, each one reported."""
    data = json.loads(report.read_text())
    totals = data["totals"]
    if totals["stored"] != len(files) or totals["files"] != len(files):
        raise SystemExit(f"ours: report totals {totals}, expected {len(files)} stored")


# ---------------------------------------------------------------------------------------------
# runner


@dataclass(frozen=True)
class Variant:
    client: str            # a CLIENTS name or "ours"
    server: str            # a SERVER_CONFIGS name (or several joined by +)
    reference: bool = True  # on the first --servers entry, where every client runs

    @property
    def name(self) -> str:
        return self.client if self.reference else f"{self.client}@{self.server}"


@dataclass
class Run:
    seconds: float                 # whole process, start to exit
    orthanc_s: Optional[float]     # CPU seconds of Orthanc during the run (own stack only)
    postgres_s: Optional[float]    # CPU seconds of PostgreSQL
    client_s: float                # CPU seconds of the client process and its children
    others_s: float                # CPU seconds everything else on the machine used meanwhile
    iowait_s: float                # CPU seconds idle waiting for the disk (fsync, commits), machine-wide
    server_wait_s: Optional[float] = None  # Orthanc + PostgreSQL threads: runnable, waiting for a CPU
    cpu_pressure_s: Optional[float] = None  # machine: time some task waited for a CPU (PSI)
    io_pressure_s: Optional[float] = None   # machine: time some task waited for I/O (PSI)

    @property
    def server_s(self) -> Optional[float]:
        return None if self.orthanc_s is None or self.postgres_s is None else self.orthanc_s + self.postgres_s

    def share(self, cpu_s: float) -> float:
        """``cpu_s`` as a share of the cores during the run: 1.0 = every core busy throughout."""
        return cpu_s / (self.seconds * CPUS)


def measure(target: Target, variant: Variant, folder: Path, files: list[Path], quiet_wait: float) -> Run:
    target.reset(server_config(variant.server))
    if quiet_wait > 0:
        wait_for_quiet(quiet_wait)
    report = Path(tempfile.mkdtemp(prefix="bench-ingest-")) / "report.json"
    env = dict(os.environ, ORTHANC_URL=target.conn.url, ORTHANC_USERNAME=target.conn.username,
               ORTHANC_PASSWORD=target.conn.password, PYTHONPATH=str(REPO_ROOT))
    # Snapshots right around the child: the reset's own children (psql, the Orthanc it stopped)
    # were reaped before, so the children counter's difference is the client's alone.
    server0, own0, busy0, client0 = server_cpu_s(target.stack), time.process_time(), machine_busy_s(), children_cpu_s()
    iowait0, cpu_p0, io_p0 = machine_iowait_s(), pressure_s("cpu"), pressure_s("io")
    started = time.perf_counter()
    done = subprocess.run(command(variant.client, folder, report), env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    client1, busy1, own1, server1 = children_cpu_s(), machine_busy_s(), time.process_time(), server_cpu_s(target.stack)
    iowait, cpu_p1, io_p1 = machine_iowait_s() - iowait0, pressure_s("cpu"), pressure_s("io")
    try:
        if done.returncode != 0:
            raise SystemExit(f"{variant.name}: exit {done.returncode}: {done.stderr.strip()[-400:]}")
        if variant.client.startswith("ours"):
            check_ours(report, files)
    finally:
        shutil.rmtree(report.parent, ignore_errors=True)
    stored = target.count()
    if stored != len(files):
        raise SystemExit(f"{variant.name}: Orthanc holds {stored} instances after the run, expected {len(files)}")
    both = server0 is not None and server1 is not None
    orthanc = server1.orthanc - server0.orthanc if both else None  # type: ignore[union-attr]
    postgres = server1.postgres - server0.postgres if both else None  # type: ignore[union-attr]
    client = client1 - client0
    others = max(0.0, (busy1 - busy0) - (orthanc or 0.0) - (postgres or 0.0) - client - (own1 - own0))
    run = Run(elapsed, orthanc, postgres, client, others, iowait,
              server1.waited - server0.waited if both else None,  # type: ignore[union-attr]
              None if cpu_p0 is None or cpu_p1 is None else cpu_p1 - cpu_p0,
              None if io_p0 is None or io_p1 is None else io_p1 - io_p0)
    n = len(files)
    server_text = "" if run.server_s is None else (
        f"orthanc {1000 * run.orthanc_s / n:4.1f} pg {1000 * run.postgres_s / n:4.1f} "  # type: ignore[operator]
        f"client {1000 * client / n:4.1f} ms/inst  server {run.share(run.server_s):4.0%} of {CPUS} cores, "
        f"waited {1000 * run.server_wait_s / n:5.1f} ms/inst for a CPU  ")  # type: ignore[operator]
    print(f"  {variant.name:<16} {n / elapsed:7.1f} inst/s ({elapsed:5.1f} s)  {server_text}"
          f"others {others / elapsed:4.2f} CPUs  {_pressure_text(run)}  load {os.getloadavg()[0]:.1f}", flush=True)
    return run


def _pressure_text(run: Run) -> str:
    if run.cpu_pressure_s is None or run.io_pressure_s is None:
        return f"iowait {run.iowait_s / run.seconds:4.2f}"
    return f"PSI cpu {run.cpu_pressure_s / run.seconds:4.0%} io {run.io_pressure_s / run.seconds:4.0%}"


def _psi_text(row: dict[str, Any]) -> str:
    if "cpu_pressure" not in row:
        return f", disk wait {row['iowait_cpus']:.2f} CPUs"
    return f"; some task waited for a CPU {row['cpu_pressure']:.0%} of the time, for I/O {row['io_pressure']:.0%}"


def summarize(runs: dict[Variant, list[Run]], n: int) -> dict[str, dict[str, Any]]:
    """Per variant: rate (median, min, max), CPU ms per instance of each party, core shares."""
    out: dict[str, dict[str, Any]] = {}
    for variant, result in runs.items():
        rates = [n / run.seconds for run in result]
        row: dict[str, Any] = {
            "rate": round(median(rates), 1), "rate_min": round(min(rates), 1), "rate_max": round(max(rates), 1),
            "wall_s": round(median([run.seconds for run in result]), 2),
            "client_ms": round(median([1000 * run.client_s / n for run in result]), 2),
            "others_cpus": round(median([run.others_s / run.seconds for run in result]), 2),
            "iowait_cpus": round(median([run.iowait_s / run.seconds for run in result]), 2),
        }
        if all(run.cpu_pressure_s is not None and run.io_pressure_s is not None for run in result):
            row["cpu_pressure"] = round(median([run.cpu_pressure_s / run.seconds for run in result]), 3)  # type: ignore[operator]
            row["io_pressure"] = round(median([run.io_pressure_s / run.seconds for run in result]), 3)  # type: ignore[operator]
        if all(run.server_s is not None for run in result):
            row.update({
                "orthanc_ms": round(median([1000 * run.orthanc_s / n for run in result]), 2),  # type: ignore[operator]
                "postgres_ms": round(median([1000 * run.postgres_s / n for run in result]), 2),  # type: ignore[operator]
                "server_share": round(median([run.share(run.server_s) for run in result]), 3),  # type: ignore[arg-type]
                "all_share": round(median([run.share(run.server_s + run.client_s + run.others_s)  # type: ignore[operator]
                                            for run in result]), 3),
            })
            row["server_ms"] = round(row["orthanc_ms"] + row["postgres_ms"], 2)
            row["server_wait_ms"] = round(median([1000 * run.server_wait_s / n for run in result]), 2)  # type: ignore[operator]
            # No client can exceed the rate at which the server's CPU per instance fills the cores.
            row["server_ceiling"] = round(1000 * CPUS / row["server_ms"], 1)
            row["of_ceiling"] = round(row["rate"] / row["server_ceiling"], 3)
        out[variant.name] = row
    return out


def print_summary(table: dict[str, dict[str, Any]]) -> None:
    print(f"\n{'variant':<16} {'inst/s':>7} {'min-max':^15} {'wall s':>6}  {'Orthanc':>7} {'PG':>5} "
          f"{'client':>6}  ms CPU/inst   {'server':>6} {'all':>5} share of {CPUS} cores   "
          f"{'others':>6} {'iowait':>6} CPUs  ceiling inst/s")
    for name, row in table.items():
        server = (f"{row['orthanc_ms']:7.2f} {row['postgres_ms']:5.2f} {row['client_ms']:6.2f}"
                  f"               {row['server_share']:6.0%} {row['all_share']:5.0%}"
                  if "server_ms" in row else f"{'-':>7} {'-':>5} {row['client_ms']:6.2f}               "
                                            f"{'-':>6} {'-':>5}")
        ceiling = (f"{row['server_ceiling']:7.1f} ({row['of_ceiling']:.0%} of it)" if "server_ms" in row else "")
        print(f"{name:<16} {row['rate']:7.1f} {row['rate_min']:7.1f}-{row['rate_max']:<7.1f} {row['wall_s']:6.1f}  "
              f"{server}                    {row['others_cpus']:6.2f} {row['iowait_cpus']:6.2f}       {ceiling}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=1000, help="number of instances (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per variant (default 3)")
    parser.add_argument("--clients", default="2,4,8", help="N for the parallel per-file variant (default 2,4,8)")
    parser.add_argument("--servers", default="base",
                        help="server settings, comma-separated: every client runs on the first, ours also on "
                             f"each other ({', '.join(f'{k}: {v.what}' for k, v in SERVER_CONFIGS.items())}; "
                             "several joined by + apply together; default base)")
    parser.add_argument("--no-naive", action="store_true", help="leave out the naive client (the slowest)")
    parser.add_argument("--ours-workers", default="", metavar="N,...",
                        help="also run ours with --workers N (variant ours-wN), on the first server settings")
    parser.add_argument("--cache", type=Path, default=REPO_ROOT / ".local" / "bench",
                        help="where the generated files are kept between runs")
    parser.add_argument("--quiet-wait", type=float, default=10.0, metavar="S",
                        help="before each run wait up to S s for other programs to go idle (default 10)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--yes", action="store_true", help="with ORTHANC_URL: allow deleting every patient")
    parser.add_argument("--client", choices=sorted(CLIENTS), help=argparse.SUPPRESS)  # one variant's process
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    return parser


def _private_or_given_target(args: argparse.Namespace, parser: argparse.ArgumentParser,
                             servers: list[str]) -> tuple[Target, Optional[Path]]:
    """The Orthanc to measure: ``ORTHANC_URL``'s (with ``--yes``) or a private stack started in a new work
    directory (returned, for the caller to tear down)."""
    if os.environ.get("ORTHANC_URL"):
        if not args.yes:
            parser.error("ORTHANC_URL is set: every patient of that Orthanc is deleted between variants; "
                         "pass --yes to allow it, or unset ORTHANC_URL to use a private stack")
        if servers != ["base"]:
            parser.error("--servers: only base with ORTHANC_URL (the settings are switched on our own stack)")
        from labeling.orthanc.connection import connection_from_args
        return Target(connection_from_args(argparse.Namespace()), None), None
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-stack-"))
    stack = bench_stack_class()(workdir)
    stack.up(timeout=90)
    target = Target(stack.connection(), stack)
    print(f"private Orthanc {target.conn.url} (work dir {workdir})", flush=True)
    return target, workdir


def _run_rounds(args: argparse.Namespace, target: Target, workdir: Optional[Path], variants: list[Variant],
                folder: Path, files: list[Path]) -> dict[Variant, list[Run]]:
    """Every variant once per round, the order rotated each round; the private stack torn down after."""
    runs: dict[Variant, list[Run]] = {variant: [] for variant in variants}
    try:
        for round_number in range(args.rounds):
            shift = round_number % len(variants)
            print(f"round {round_number + 1}/{args.rounds}", flush=True)
            for variant in variants[shift:] + variants[:shift]:
                runs[variant].append(measure(target, variant, folder, files, args.quiet_wait))
    finally:
        if workdir is not None:
            from labeling.orthanc.local_stack import LocalStack

            LocalStack(workdir).down()
            shutil.rmtree(workdir, ignore_errors=True)
    return runs


def _print_limits(table: dict[str, dict[str, Any]], names: list[str]) -> None:
    """Where the limit is: server CPU per instance and the share of the cores, per variant in ``names``."""
    print("where the limit is: server CPU per instance (Orthanc + PostgreSQL) and the share of the "
          f"{CPUS} cores it used; the ceiling = {CPUS} cores / server CPU per instance")
    for name in names:
        row = table[name]
        print(f"  {name:<12} server {row['server_ms']:.2f} ms/inst (Orthanc {row['orthanc_ms']:.2f}, PostgreSQL "
              f"{row['postgres_ms']:.2f}), client {row['client_ms']:.2f}; server used {row['server_share']:.0%} "
              f"of the cores, everything {row['all_share']:.0%}; server threads waited {row['server_wait_ms']:.1f} "
              f"ms/inst for a CPU{_psi_text(row)}; {row['rate']:.0f} inst/s = "
              f"{row['of_ceiling']:.0%} of its ceiling {row['server_ceiling']:.0f}")


def _report(args: argparse.Namespace, table: dict[str, dict[str, Any]], clients: list[int], servers: list[str],
            extra_ours: list[str]) -> tuple[str, dict[str, float]]:
    """Print the ratios of ours to the baselines and where the limit is: (best parallel variant, ratios)."""
    best_parallel = max((f"parallel-{c}" for c in clients), key=lambda name: table[name]["rate"])
    ours = table["ours"]["rate"]
    ratios = {"vs_best_parallel": ours / table[best_parallel]["rate"], "vs_zip_batch": ours / table["zip-batch"]["rate"]}
    if "naive" in table:
        ratios["vs_naive"] = ours / table["naive"]["rate"]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nours / {best_parallel} = {ratios['vs_best_parallel']:.2f} (goal >= {GOAL_VS_PARALLEL}); ours / "
          f"zip-batch = {ratios['vs_zip_batch']:.2f} (goal >= {GOAL_VS_ZIP})"
          + (f"; ours / naive = {ratios['vs_naive']:.2f}" if "vs_naive" in ratios else "")
          + f"; whole processes, server settings {servers[0]}, medians of {args.rounds} interleaved rounds; "
          f"load average {load} (shared machine)")
    for name in extra_ours:
        print(f"{name} / {best_parallel} = {table[name]['rate'] / table[best_parallel]['rate']:.2f}; {name} / zip-batch "
              f"= {table[name]['rate'] / table['zip-batch']['rate']:.2f}")
    for name in (s for s in servers[1:]):
        key = f"ours@{name}"
        print(f"ours@{name} / ours (on {servers[0]}) = {table[key]['rate'] / ours:.2f}  ({server_config(name).what})")
    if "server_ms" in table["ours"]:
        _print_limits(table, ["ours", *extra_ours, best_parallel, "zip-batch"])
    return best_parallel, ratios


def main(argv: Optional[list[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.client:
        from labeling.orthanc.connection import connection_from_args

        CLIENTS[args.client](connection_from_args(argparse.Namespace()), sorted(args.folder.rglob("*.dcm")))
        return 0
    if args.instances < 1 or args.rounds < 1:
        parser.error("--instances and --rounds must be at least 1")
    clients = [int(n) for n in args.clients.split(",") if n.strip()]
    servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in servers if any(part not in SERVER_CONFIGS for part in name.split("+"))]
    if unknown or not servers:
        parser.error(f"--servers: {', '.join(unknown) or 'empty'}: choose from {', '.join(SERVER_CONFIGS)}")

    folder, files = dataset(args.instances, args.cache)
    size_kib = sum(p.stat().st_size for p in files) / len(files) / 1024
    print(f"{len(files)} instances, {size_kib:.0f} KiB each, in {folder}; {CPUS} CPUs; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (shared machine)", flush=True)

    target, workdir = _private_or_given_target(args, parser, servers)

    baselines = ([] if args.no_naive else ["naive"]) + [f"parallel-{n}" for n in clients] + ["zip-batch"]
    extra_ours = [f"ours-w{int(n)}" for n in args.ours_workers.split(",") if n.strip()]
    variants = ([Variant(name, servers[0]) for name in baselines + ["ours", *extra_ours]]
                + [Variant("ours", s, reference=False) for s in servers[1:]])
    runs = _run_rounds(args, target, workdir, variants, folder, files)

    n = len(files)
    table = summarize(runs, n)
    print_summary(table)
    best_parallel, ratios = _report(args, table, clients, servers, extra_ours)
    if args.json:
        args.json.write_text(json.dumps({
            "instances": n, "kib_per_instance": round(size_kib, 1), "cpus": CPUS, "rounds": args.rounds,
            "servers": {name: server_config(name).what for name in servers},
            "runs": {variant.name: [vars(run) for run in result] for variant, result in runs.items()},
            "summary": table, "best_parallel": best_parallel,
            "ratios": {key: round(value, 3) for key, value in ratios.items()},
            "load_average": os.getloadavg(),
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
