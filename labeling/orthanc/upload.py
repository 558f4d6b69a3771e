"""Upload DICOM files, folders and ZIP archives into Orthanc: ``python -m labeling upload PATH...``.

How it is fast: Orthanc accepts a ZIP archive as the body of ``POST /instances`` and answers one
entry per stored instance (Orthanc >= 1.8.2). Small files are therefore packed, uncompressed, into
in-memory ZIP bodies of about :data:`DEFAULT_BATCH_SIZE` files, sent by a couple of workers; this
saves one HTTP exchange per file, which is what a per-file uploader pays on top of Orthanc's own
processing. Files larger than :data:`LARGE_FILE_BYTES` go one per request.

How per-file outcomes stay exact: every file is checked first and its Orthanc instance ID computed
locally (:mod:`labeling.orthanc.dicom_file`; rejected files never leave the machine). Orthanc's
answer for a ZIP body is matched to the files by that ID. A file without a match (Orthanc skipped it as unreadable, or our ID differs from Orthanc's) and every file of a
batch that Orthanc refused as a whole are sent again one by one, so each file gets Orthanc's own
verdict. Re-sending is safe: ``POST /instances`` is idempotent (``AlreadyStored``).

How it survives an Orthanc restart: a request that gets no answer (or 502/503/504) is repeated
with backoff for as long as Orthanc has been unreachable for less than ``--deadline`` seconds;
after that the files are reported failed. Orthanc stores an instance in one database transaction,
so a rejected or interrupted file leaves nothing partial behind. A file that Orthanc stored during
an attempt whose answer was lost is answered ``AlreadyStored`` on the retry and reported
"already stored" with ``attempts`` > 1.

Never stricter than Orthanc: see :mod:`labeling.orthanc.dicom_file`. What is sent comes from
:mod:`labeling.orthanc.sources` (files, folders, ZIP members).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import threading
import time
import warnings
import zipfile
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal, Optional, Sequence

from labeling.cli import EXIT_FAILED, EXIT_OK, BadInput, add_progress_argument, positive_int
from labeling.orthanc.connection import add_connection_arguments, orthanc_client_from_args
from labeling.orthanc.client import OrthancClient, OrthancError, UploadResult
from labeling.contracts.ids import orthanc_hash, orthanc_instance_id  # noqa: F401 - re-exported for devkit
from labeling.orthanc.dicom_file import DicomIdentity, InvalidDicom, validate_dicom
from labeling.orthanc.sources import DEFAULT_EXCLUDES, NO_SUCH_PATH, Source, SourceReader, discover

DEFAULT_WORKERS = 2
DEFAULT_BATCH_SIZE = 50
DEFAULT_DEADLINE_S = 120.0
LARGE_FILE_BYTES = 4 * 1024 * 1024      # above this a file goes alone, as application/dicom
MAX_BATCH_BYTES = 16 * 1024 * 1024      # bounds the memory of one in-flight ZIP body
SERVER_ERROR_RETRIES = 2                # a 500 is usually deterministic: try twice more, then fall back
MAX_RETRY_SLEEP_S = 1.0                 # short, so the upload resumes soon after Orthanc is back

Outcome = Literal["stored", "already_stored", "rejected", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("stored", "already_stored", "rejected", "failed")


# ---------------------------------------------------------------------------------------------
# outcomes and report


@dataclass
class FileOutcome:
    """What happened to one file; the ``--report`` JSON has one of these per file."""

    path: str
    outcome: Outcome
    instance_id: Optional[str] = None
    sop_instance_uid: Optional[str] = None
    reason: Optional[str] = None
    attempts: int = 0
    size: int = 0
    index: int = -1

    @property
    def ok(self) -> bool:
        return self.outcome in ("stored", "already_stored")

    def to_json(self) -> dict:
        return {"path": self.path, "outcome": self.outcome, "instance_id": self.instance_id,
                "sop_instance_uid": self.sop_instance_uid, "reason": self.reason,
                "attempts": self.attempts, "size": self.size}


@dataclass
class UploadReport:
    outcomes: list[FileOutcome]
    elapsed_s: float
    skipped: int = 0
    orthanc_url: str = ""

    @property
    def totals(self) -> dict[str, int]:
        counts = {name: 0 for name in OUTCOMES}
        for item in self.outcomes:
            counts[item.outcome] += 1
        counts["files"] = len(self.outcomes)
        return counts

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.outcomes)

    @property
    def instances_per_s(self) -> float:
        done = sum(1 for item in self.outcomes if item.ok)
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def problems(self) -> list[FileOutcome]:
        return [item for item in self.outcomes if not item.ok]

    def to_json(self) -> dict:
        return {"orthanc_url": self.orthanc_url, "totals": self.totals,
                "skipped_by_exclude": self.skipped, "elapsed_s": round(self.elapsed_s, 3),
                "instances_per_s": round(self.instances_per_s, 1),
                "files": [item.to_json() for item in self.outcomes]}


# ---------------------------------------------------------------------------------------------
# batching


@dataclass
class Batch:
    sources: list[Source]
    per_file: bool = False  # one large file, sent as application/dicom


def plan_batches(sources: Iterable[Source], *, batch_size: int = DEFAULT_BATCH_SIZE,
                 max_batch_bytes: int = MAX_BATCH_BYTES,
                 large_file_bytes: int = LARGE_FILE_BYTES) -> list[Batch]:
    """Group sources, in order, into ZIP batches of at most ``batch_size`` files / ``max_batch_bytes``.

    Large files (and every file when ``batch_size`` is 1) become single per-file batches.
    """
    batches: list[Batch] = []
    current: list[Source] = []
    current_bytes = 0
    for source in sources:
        if batch_size <= 1 or source.size > large_file_bytes:
            batches.append(Batch([source], per_file=True))
            continue
        if current and (len(current) >= batch_size or current_bytes + source.size > max_batch_bytes):
            batches.append(Batch(current))
            current, current_bytes = [], 0
        current.append(source)
        current_bytes += source.size
    if current:
        batches.append(Batch(current))
    return batches


def build_zip(members: Sequence[tuple[str, bytes]]) -> bytes:
    """An uncompressed ZIP body: DICOM pixel data hardly compresses and Orthanc's CPU is the limit."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, data in members:
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# sending with a deadline


class OutageClock:
    """Measures how long Orthanc has been unreachable, shared by all workers.

    A failed request keeps being retried while the outage is younger than ``deadline`` seconds;
    once it is older, every failing request gives up at once (so a dead server costs one deadline,
    not one per file). Any success ends the outage.
    """

    def __init__(self, deadline: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline = deadline
        self._clock = clock
        self._since: Optional[float] = None
        self._lock = threading.Lock()

    def failed(self) -> bool:
        """Record a failure; True while it is still worth retrying."""
        with self._lock:
            now = self._clock()
            if self._since is None:
                self._since = now
            return now - self._since < self.deadline

    def succeeded(self) -> None:
        with self._lock:
            self._since = None

    def elapsed(self) -> float:
        with self._lock:
            return 0.0 if self._since is None else self._clock() - self._since


class SendFailed(Exception):
    def __init__(self, error: OrthancError, attempts: int, gave_up: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts
        self.gave_up = gave_up  # True: Orthanc stayed unreachable past the deadline

    def __reduce__(self):  # picklable, as its OrthancError is
        return (type(self), (self.error, self.attempts, self.gave_up))


@dataclass
class _Prepared:
    source: Source
    data: bytes
    identity: DicomIdentity
    attempts: int = 0


@dataclass
class _Job:
    """A packed batch: its checked files and the ZIP body (``None``: send the files one by one)."""

    items: list[_Prepared]
    body: Optional[bytes]


class Uploader:
    """Uploads sources with ``workers`` threads; calls ``on_outcome`` as each file is settled."""

    def __init__(self, client: OrthancClient, *, workers: int = DEFAULT_WORKERS,
                 deadline: float = DEFAULT_DEADLINE_S, batch_size: int = DEFAULT_BATCH_SIZE,
                 on_outcome: Optional[Callable[[FileOutcome], None]] = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.client = client
        self.workers = workers
        self.batch_size = batch_size
        self.on_outcome = on_outcome
        self._sleep = sleep
        self._outage = OutageClock(deadline, clock)
        self._reader = SourceReader()
        self._outcomes: list[FileOutcome] = []
        self._lock = threading.Lock()
        self._cancelled = threading.Event()

    def run(self, sources: Sequence[Source]) -> list[FileOutcome]:
        """Upload everything; return one outcome per source, in source order.

        The calling thread reads, checks and packs the batches while ``workers`` threads send them,
        up to ``workers`` packed batches ahead: Orthanc always has a body to work on instead of
        waiting while a worker prepares its next one. On an exception in the calling thread
        (Ctrl-C) the batches not yet sent are dropped; only the requests in flight finish.
        """
        slots = threading.BoundedSemaphore(2 * self.workers)  # in flight + packed ahead: bounded memory
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="upload")
        futures = []
        try:
            for batch in plan_batches(sources, batch_size=self.batch_size):
                job = self._pack(batch)
                if job is None:
                    continue
                slots.acquire()
                future = pool.submit(self._send_job, job)
                future.add_done_callback(lambda _: slots.release())
                futures.append(future)
            for future in futures:
                future.result()
        except BaseException:
            self._cancelled.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._reader.close()
        return sorted(self._outcomes, key=lambda item: item.index)

    # -- one batch ----------------------------------------------------------------------------

    def _settle(self, outcome: FileOutcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def _prepare(self, source: Source) -> Optional[_Prepared]:
        """Read and validate; settle the file as rejected (and return None) if it is not DICOM."""
        if source.problem:
            self._reject(source, source.problem)
            return None
        try:
            data = self._reader.read(source)
        except (OSError, zipfile.BadZipFile, RuntimeError) as exc:  # RuntimeError: encrypted member
            self._reject(source, f"cannot read: {getattr(exc, 'strerror', None) or exc}")
            return None
        try:
            identity = validate_dicom(data)
        except InvalidDicom as exc:
            self._reject(source, str(exc), size=len(data))
            return None
        return _Prepared(source, data, identity)

    def _reject(self, source: Source, reason: str, size: Optional[int] = None, **extra) -> None:
        self._settle(FileOutcome(source.display, "rejected", reason=reason, index=source.index,
                                 size=source.size if size is None else size, **extra))

    def _pack(self, batch: Batch) -> Optional["_Job"]:
        """Read and check a batch's files (settling the rejected ones) and build its ZIP body."""
        prepared = [item for item in map(self._prepare, batch.sources) if item is not None]
        if not prepared:
            return None
        if batch.per_file or len(prepared) == 1:
            return _Job(prepared, None)
        return _Job(prepared, build_zip([(f"{i:05d}.dcm", item.data) for i, item in enumerate(prepared)]))

    def _send_job(self, job: "_Job") -> None:
        if self._cancelled.is_set():
            return
        if job.body is None:
            for item in job.items:
                self._send_one(item)
            return
        try:
            results, attempts = self._send(self.client.upload_zip, job.body)
        except SendFailed as failure:
            for item in job.items:
                item.attempts += failure.attempts
            if failure.gave_up:
                for item in job.items:
                    self._fail(item, failure)
                return
            results = []  # Orthanc refused the body as a whole: every file gets its own request
        else:
            for item in job.items:
                item.attempts += attempts
        waiting: dict[str, deque[_Prepared]] = defaultdict(deque)
        for item in job.items:
            waiting[item.identity.orthanc_id].append(item)
        for result in results:
            queue = waiting.get(result.instance_id)
            if queue:
                self._store(queue.popleft(), result)
        for queue in waiting.values():
            for item in queue:  # no answer for it: Orthanc skipped it, or our ID differs
                self._send_one(item)

    def _send_one(self, item: _Prepared) -> None:
        try:
            result, attempts = self._send(self.client.upload, item.data)
        except SendFailed as failure:
            item.attempts += failure.attempts
            status = failure.error.status
            if status is not None and status < 500:  # 4xx, or 200 with a "FilteredOut" status
                self._reject(item.source, f"Orthanc refused it: {failure.error.message}",
                             size=len(item.data), attempts=item.attempts,
                             sop_instance_uid=item.identity.sop_instance_uid)
            else:
                self._fail(item, failure)
            return
        item.attempts += attempts
        self._store(item, result)

    def _store(self, item: _Prepared, result: UploadResult) -> None:
        outcome: Outcome = "stored" if result.status == "Success" else "already_stored"
        self._settle(FileOutcome(item.source.display, outcome, instance_id=result.instance_id,
                                 sop_instance_uid=item.identity.sop_instance_uid,
                                 attempts=item.attempts, size=len(item.data), index=item.source.index))

    def _fail(self, item: _Prepared, failure: SendFailed) -> None:
        if failure.gave_up:
            reason = (f"Orthanc unreachable for {self._outage.deadline:.0f} s (--deadline): "
                      f"{failure.error.message}")
        else:
            reason = str(failure.error)
        self._settle(FileOutcome(item.source.display, "failed", reason=reason,
                                 sop_instance_uid=item.identity.sop_instance_uid,
                                 attempts=item.attempts, size=len(item.data), index=item.source.index))

    # -- retrying -----------------------------------------------------------------------------

    def _send(self, call: Callable, body: bytes):
        """``call(body)`` until it answers; returns ``(result, attempts)`` or raises SendFailed."""
        attempts = 0
        server_errors = 0
        while True:
            attempts += 1
            try:
                result = call(body, retries=0)
            except OrthancError as error:
                if error.transient:
                    if not self._outage.failed():
                        raise SendFailed(error, attempts, gave_up=True) from None
                elif error.status is not None and error.status >= 500 and server_errors < SERVER_ERROR_RETRIES:
                    server_errors += 1
                else:
                    raise SendFailed(error, attempts, gave_up=False) from None
                self._sleep(min(MAX_RETRY_SLEEP_S, 0.05 * 2 ** min(attempts, 6)) * (0.5 + random.random()))
                continue
            self._outage.succeeded()
            return result, attempts


def upload_paths(client: OrthancClient, paths: Sequence[str | os.PathLike], *,
                 workers: int = DEFAULT_WORKERS, deadline: float = DEFAULT_DEADLINE_S,
                 batch_size: int = DEFAULT_BATCH_SIZE, excludes: Sequence[str] = DEFAULT_EXCLUDES,
                 on_outcome: Optional[Callable[[FileOutcome], None]] = None,
                 discovered: Optional[tuple[list[Source], int]] = None) -> UploadReport:
    """Discover ``paths`` (unless ``discovered`` already holds :func:`discover`'s result) and upload
    them; the library entry point behind the ``upload`` command."""
    started = time.perf_counter()
    sources, skipped = discovered if discovered is not None else discover(paths, excludes=excludes)
    uploader = Uploader(client, workers=workers, deadline=deadline, batch_size=batch_size,
                        on_outcome=on_outcome)
    outcomes = uploader.run(sources)
    return UploadReport(outcomes, time.perf_counter() - started, skipped=skipped, orthanc_url=client.url)


# ---------------------------------------------------------------------------------------------
# CLI


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "upload",
        description="Upload DICOM files, folders (recursively) and .zip archives into Orthanc. "
                    "Every file is checked first (empty, unreadable, truncated files and bytes that "
                    "are no DICOM data set are rejected without being sent; Orthanc judges the rest); "
                    "small files travel in ZIP bodies of --batch-size files.",
        epilog="Exit status: 0 when every file is stored or already stored; 1 when some file was "
               "rejected or failed (each is listed); 2 when there is nothing to upload (no file, or "
               "none is DICOM); 3 when Orthanc cannot be reached. Folder walks skip hidden entries and "
               f"names matching --exclude (default: {' '.join(DEFAULT_EXCLUDES)}).")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="DICOM file, folder or .zip archive")
    parser.add_argument("--workers", type=positive_int, default=DEFAULT_WORKERS,
                        help=f"parallel requests (default {DEFAULT_WORKERS}; Orthanc's CPU is the limit)")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                        help=f"files per ZIP request (default {DEFAULT_BATCH_SIZE}; 1 = one request per file)")
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S, metavar="S",
                        help="give up on a file once Orthanc has been unreachable for S seconds "
                             f"(default {DEFAULT_DEADLINE_S:.0f})")
    parser.add_argument("--report", type=Path, metavar="FILE", help="write a JSON report of every file")
    parser.add_argument("--exclude", action="append", metavar="GLOB",
                        help="skip file names matching GLOB in folders and archives (repeatable; "
                             "replaces the default)")
    parser.add_argument("--list", action="store_true", help="list every file, not only problems")
    add_progress_argument(parser)
    add_connection_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn)

    err = Console(stderr=True, highlight=False)
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    # The input is checked before any connection: an empty folder or a mistyped path is bad input
    # (exit 2), whether or not the stack is up.
    excludes = DEFAULT_EXCLUDES if args.exclude is None else tuple(p for p in args.exclude if p)
    discovered = discover(args.paths, excludes=excludes)
    _check_input(args.paths, discovered[0])
    client = orthanc_client_from_args(args, pool_size=args.workers + 1)
    # pydicom's warnings about odd values would break the progress display; what matters for a
    # file is its outcome line (and Orthanc's verdict), so they are silenced in this command.
    import pydicom

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    client.system(retries=0)  # unreachable: fail now with the hint, not after a deadline per file

    progress = Progress(TextColumn("upload"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=err, transient=True, disable=not (args.progress and err.is_terminal))
    task = progress.add_task("upload", total=None, rate="")
    started = time.perf_counter()
    done = [0]

    progress.update(task, total=len(discovered[0]))

    def settled(outcome: FileOutcome) -> None:
        done[0] += 1
        rate = done[0] / max(1e-6, time.perf_counter() - started)
        progress.update(task, advance=1, rate=f"{rate:.0f} files/s")
        if not outcome.ok or args.list:
            progress.console.print(_outcome_line(outcome), markup=False, soft_wrap=True)

    try:
        with progress:
            report = upload_paths(client, args.paths, workers=args.workers, deadline=args.deadline,
                                  batch_size=args.batch_size, excludes=excludes,
                                  on_outcome=settled, discovered=discovered)
    finally:
        client.close()
    out.print(_summary_line(report), markup=False, soft_wrap=True)
    if args.report:
        try:
            args.report.write_text(json.dumps(report.to_json(), indent=2) + "\n")
        except OSError as exc:
            raise BadInput(f"--report {args.report}: cannot write ({exc.strerror})") from None
    totals = report.totals
    if totals["rejected"] == totals["files"]:
        raise BadInput(f"nothing uploaded: all {totals['files']} files were rejected (listed above)")
    return EXIT_OK if report.ok else EXIT_FAILED


def _check_input(paths: Sequence[str], sources: Sequence[Source]) -> None:
    """Refuse an upload with nothing to send: no file at all, or only paths that do not exist."""
    if not sources:
        raise BadInput(f"nothing to upload: no file in {' '.join(map(str, paths))} "
                       "(hidden entries and --exclude matches are skipped)")
    missing = [s.display for s in sources if s.problem == NO_SUCH_PATH]
    if len(missing) == len(sources):
        raise BadInput(f"nothing to upload: {' '.join(missing)}: {NO_SUCH_PATH}")


def _outcome_line(item: FileOutcome) -> str:
    return f"{item.outcome.replace('_', ' ')} {item.path}: {item.reason or item.instance_id or ''}"


def _summary_line(report: UploadReport) -> str:
    """One line: the counts that are not zero, the time and the rate."""
    totals = report.totals
    counts = ", ".join(f"{totals[key]} {key.replace('_', ' ')}" for key in OUTCOMES if totals[key])
    extra = f", {report.skipped} skipped by --exclude" if report.skipped else ""
    return (f"upload: {totals['files']} files: {counts or 'none'}{extra} in {report.elapsed_s:.1f} s "
            f"({report.instances_per_s:.0f} instances/s) into {report.orthanc_url}")
