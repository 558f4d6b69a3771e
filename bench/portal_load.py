"""Portal capacity, before and after, in one run: N annotators label on loopback against the previous
commit's portal (``--baseline-ref``, default ``main``: a ``git worktree`` in a temp dir) and this
tree's, at each ``--think`` time (default 0 and 2 s), interleaved so both see the same machine.

    .venv/bin/python bench/portal_load.py [--annotators 50] [--duration 30] [--images 100]
                                          [--think 0 2] [--baseline-ref main] [--stack-workdir DIR]
                                          [--client lean|httpx]

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

The load client shares the machine with the portal, PostgreSQL and Orthanc, whereas real annotators'
browsers run elsewhere: every CPU millisecond it spends per request is taken from the portal and caps
what think 0 can show. So the default client (``lean``) is raw HTTP/1.1 on asyncio: one keep-alive
connection per annotator, request heads built from parts made once per login, bodies framed by
Content-Length or chunked coding. ``--client httpx`` sends the same requests through httpx, as the
earlier figures were measured; each run prints its client's CPU per request, so the two compare.
Either way a request counts as an error when it gets no answer, a non-2xx status, or a 2xx body that
is not what the route promises (a task or ``done``; a DICOM file; ``stored`` for that assignment).

Printed per run: answers/s; per endpoint count, p50, p95, max (ms) and errors; CPU milliseconds per
request of the portal (all its processes), of PostgreSQL (all its processes: fewer round trips show
here) and of this client (its own process: what it took from the machine), and portal+PostgreSQL CPU
per answer, from psutil — less sensitive to a shared machine than answers/s; the load average before
and after. Then the goals: think-0 answers/s ≥ 2× baseline; at think 2 s p95 < 300 ms and 0 errors.
The machine may be shared: both variants' figures come from the same run, and the load average is
printed with each.
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
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, NamedTuple, Optional

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
ANSWER_BODY = json.dumps({"annotation": ANSWER}).encode()
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


class TransportError(Exception):
    """A request that got no HTTP answer: refused, reset, closed early, timed out or unparsable."""

    def __init__(self, message: str, nothing_received: bool = False) -> None:
        super().__init__(message)
        self.nothing_received = nothing_received  # the server closed a kept-alive connection before answering


class Reply(NamedTuple):
    status: int
    body: bytes


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection, one request at a time (RFC 9112): the answer's head is
    parsed once, its body framed by Content-Length or chunked transfer coding, or by the close."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = bytearray()
        self.waiter: Optional[asyncio.Future] = None
        self.usable = True  # may carry another request
        self._expect()

    def _expect(self) -> None:
        """The parse state of the next answer."""
        self.status: Optional[int] = None
        self.length: Optional[int] = None
        self.chunked = False
        self.body_start = self.position = 0  # where the body starts; chunked: where the next chunk starts
        self.parts: list[bytes] = []
        self.cookies: list[bytes] = []  # Set-Cookie values of the current answer

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.usable = False
        self._eof()

    def eof_received(self) -> None:
        self.usable = False
        self._eof()

    def _eof(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        if self.status is not None and self.length is None and not self.chunked:  # close-delimited body
            self._finish(bytes(self.buffer[self.body_start:]))
        else:
            self._fail(TransportError("connection closed before the whole answer",
                                      nothing_received=self.status is None and not self.buffer))

    def send(self, data: bytes) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self._expect()
        self.timer = loop.call_later(self.timeout, self._fail, TransportError(f"no answer in {self.timeout:g} s"))
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            self._fail(TransportError(f"bytes the client did not ask for: {bytes(self.buffer[:80])!r}"))
            return
        try:
            self._parse()
        except (ValueError, IndexError) as exc:
            self._fail(TransportError(f"malformed answer: {exc}"))

    def _parse(self) -> None:
        buffer = self.buffer
        if self.status is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > 65536:
                    raise ValueError("head over 64 KiB")
                return
            lines = bytes(buffer[:end]).split(b"\r\n")
            version, code = lines[0].split(b" ", 2)[:2]
            if not version.startswith(b"HTTP/1."):
                raise ValueError(f"status line {lines[0][:80]!r}")
            self.status = int(code)
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    self.length = int(value)
                elif name == b"transfer-encoding":
                    self.chunked = value.strip().lower().endswith(b"chunked")
                elif name == b"connection" and value.strip().lower() == b"close":
                    self.usable = False
                elif name == b"set-cookie":
                    self.cookies.append(value.strip())
            if self.chunked:
                self.length = None  # RFC 9112 §6.3: chunked wins over a Content-Length
            elif self.length is None and (self.status in (204, 304) or 100 <= self.status < 200):
                self.length = 0
            self.body_start = self.position = end + 4
        if self.chunked:
            self._chunks()
        elif self.length is not None and len(buffer) - self.body_start >= self.length:
            if len(buffer) - self.body_start > self.length:
                raise ValueError("more bytes than its Content-Length")
            self._finish(bytes(buffer[self.body_start:]))

    def _chunks(self) -> None:
        buffer = self.buffer
        while True:
            eol = buffer.find(b"\r\n", self.position)
            if eol < 0:
                return
            size = int(bytes(buffer[self.position:eol]).split(b";", 1)[0], 16)
            if size == 0:  # the last chunk, then trailer lines up to an empty one
                end = buffer.find(b"\r\n\r\n", eol) if buffer[eol + 2:eol + 4] != b"\r\n" else eol
                if end < 0:
                    return
                self._finish(b"".join(self.parts))
                return
            if len(buffer) < eol + 2 + size + 2:
                return
            if buffer[eol + 2 + size:eol + 4 + size] != b"\r\n":
                raise ValueError("chunk not followed by CRLF")
            self.parts.append(bytes(buffer[eol + 2:eol + 2 + size]))
            self.position = eol + 4 + size

    def _finish(self, body: bytes) -> None:
        self.buffer.clear()
        self.timer.cancel()
        if not self.usable and self.transport is not None:
            self.transport.close()
        self.waiter.set_result(Reply(self.status, body))

    def _fail(self, exc: TransportError) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.abort()
        if self.waiter is not None and not self.waiter.done():
            self.timer.cancel()
            self.waiter.set_exception(exc)


class LeanClient:
    """An annotator's browser, without the client library's cost: raw HTTP/1.1 on one keep-alive
    connection (a new one only when the server closed it), a cookie jar (name → value; a cookie set
    to expire is dropped), and request heads built from parts made once per login."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port, self.timeout = parsed.hostname, parsed.port or 80, timeout
        self.root = parsed.path.rstrip("/")
        self.csrf: Optional[str] = None
        self.jar: dict[bytes, bytes] = {}
        self.connection: Optional[_Connection] = None
        self.connections = 0  # opened: one per annotator while keep-alive holds
        self._head_tail(b"")

    def _head_tail(self, csrf: bytes) -> None:
        host = b"Host: %s:%d\r\n" % (self.host.encode(), self.port)
        cookie = b"Cookie: " + b"; ".join(b"%s=%s" % item for item in self.jar.items()) + b"\r\n" if self.jar else b""
        self.tail = host + cookie
        self.tail_csrf = host + cookie + (b"X-CSRF-Token: " + csrf + b"\r\n" if csrf else b"")
        self._csrf = csrf

    async def request(self, method: str, path: str, body: bytes = b"", content_type: str = "application/json",
                      csrf: bool = False) -> Reply:
        if self.csrf is not None and self.csrf.encode() != self._csrf:
            self._head_tail(self.csrf.encode())
        head = b"%s %s%s HTTP/1.1\r\n" % (method.encode(), self.root.encode(), path.encode())
        head += self.tail_csrf if csrf else self.tail
        if body:
            head += b"Content-Type: %s\r\nContent-Length: %d\r\n" % (content_type.encode(), len(body))
        elif method != "GET":
            head += b"Content-Length: 0\r\n"
        data = head + b"\r\n" + body
        for attempt in (0, 1):
            connection = self.connection
            reused = connection is not None and connection.usable
            if not reused:
                connection = self.connection = await self._connect()
            try:
                reply = await connection.send(data)
            except TransportError as exc:
                self.connection = None
                if reused and exc.nothing_received and attempt == 0:
                    continue  # the server closed an idle connection as we wrote: once more, on a new one
                raise
            if connection.cookies:
                self._store(connection.cookies)
            return reply
        raise AssertionError("unreachable")

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self.timeout), self.host, self.port), self.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise TransportError(f"connect to {self.host}:{self.port}: {exc!r}") from exc
        self.connections += 1
        return connection

    def _store(self, cookies: list[bytes]) -> None:
        for cookie in cookies:
            pair, *attributes = cookie.split(b";")
            name, _, value = pair.strip().partition(b"=")
            expired = any(a.strip().lower().replace(b" ", b"") in (b"max-age=0",) for a in attributes)
            if expired or value in (b"", b'""'):
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        self._head_tail(self._csrf)

    async def aclose(self) -> None:
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.close()
        self.connection = None


class HttpxClient:
    """The same calls through httpx (``--client httpx``): how the earlier figures were measured."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.client = httpx.AsyncClient(base_url=url, timeout=timeout, limits=httpx.Limits(max_connections=2))
        self.csrf: Optional[str] = None

    async def request(self, method: str, path: str, body: bytes = b"", content_type: str = "application/json",
                      csrf: bool = False) -> Reply:
        headers = {"X-CSRF-Token": self.csrf} if csrf and self.csrf else {}
        if body:
            headers["Content-Type"] = content_type
        try:
            response = await self.client.request(method, path, content=body or None, headers=headers)
        except httpx.HTTPError as exc:
            raise TransportError(repr(exc)) from exc
        return Reply(response.status_code, response.content)

    async def aclose(self) -> None:
        await self.client.aclose()


CLIENTS = {"lean": LeanClient, "httpx": HttpxClient}


class Recorder:
    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.samples: dict[str, str] = {}

    def error(self, name: str, sample: str) -> None:
        self.errors[name] += 1
        self.samples.setdefault(name, sample)

    async def call(self, name: str, request: Awaitable[Reply], check: Callable[[bytes], Any]) -> Any:
        """Time one request; its checked body, or None after counting an error: no answer, not 2xx, or
        a 2xx whose body ``check`` refuses (raises ValueError, KeyError or TypeError)."""
        start = time.perf_counter()
        try:
            reply = await request
        except TransportError as exc:
            self.error(name, str(exc))
            return None
        self.times[name].append((time.perf_counter() - start) * 1000.0)
        if not 200 <= reply.status < 300:
            self.error(name, f"{reply.status} {reply.body[:120]!r}")
            return None
        try:
            return check(reply.body)
        except (ValueError, KeyError, TypeError) as exc:
            self.error(name, f"{reply.status} with an unexpected body ({exc}): {reply.body[:120]!r}")
            return None


def json_object(body: bytes) -> dict:
    value = json.loads(body)
    if not isinstance(value, dict):
        raise TypeError("not a JSON object")
    return value


def check_task(body: bytes) -> dict:
    """``POST next``: a task (its assignment and image) or ``done``."""
    task = json_object(body)
    if task.get("done") is True:
        return task
    if not isinstance(task["assignment_id"], int) or not str(task["image_url"]).startswith("/"):
        raise ValueError("assignment_id not an integer or image_url not a path")
    return task


def check_dicom(body: bytes) -> bool:
    """``GET image``: a DICOM file (PS3.10 §7.1: the preamble, then ``DICM``)."""
    if body[128:132] != b"DICM":
        raise ValueError("not a DICOM file (no DICM at byte 128)")
    return True


def check_stored(assignment_id: int) -> Callable[[bytes], bool]:
    """``POST answer``: stored, for this assignment."""
    def check(body: bytes) -> bool:
        stored = json_object(body)
        if stored.get("stored") is not True or stored.get("assignment_id") != assignment_id:
            raise ValueError(f"not stored for assignment {assignment_id}")
        return True
    return check


def check_health(body: bytes) -> bool:
    if json_object(body).get("status") != "ok":
        raise ValueError("status not ok")
    return True


async def login(url: str, name: str, client_class: type, password: str = PASSWORD) -> Any:
    """Log in as a browser does (the form's CSRF token bound to a pre-login cookie, the session cookie);
    the client keeps the cookies and the CSRF token of ``/api/me`` for its state-changing calls."""
    client = client_class(url)
    page = await client.request("GET", "/login")
    marker = b'name="csrf_token" value="'
    if page.status != 200 or marker not in page.body:
        raise RuntimeError(f"login {name}: GET /login answered {page.status} without a CSRF token")
    token = page.body.split(marker, 1)[1].split(b'"', 1)[0].decode()
    form = urllib.parse.urlencode({"username": name, "password": password, "csrf_token": token}).encode()
    response = await client.request("POST", "/login", form, "application/x-www-form-urlencoded")
    if response.status >= 400:
        raise RuntimeError(f"login {name}: HTTP {response.status}")
    me = await client.request("GET", "/api/me")
    if me.status != 200:
        raise RuntimeError(f"login {name}: GET /api/me answered {me.status}")
    client.csrf = json_object(me.body)["csrf"]
    return client


async def annotator(client: Any, job_ids: list[int], first: int, stop_at: float, rec: Recorder,
                    cycles: list[int], think: float) -> None:
    current = first
    if think > 0:  # people do not start in the same millisecond: arrivals spread over one think time
        await asyncio.sleep(random.uniform(0.0, think))
    while time.perf_counter() < stop_at:
        job = job_ids[current % len(job_ids)]
        task = await rec.call("POST next", client.request("POST", f"/api/jobs/{job}/next", csrf=True), check_task)
        if task is None:
            continue
        if task.get("done"):
            current += 1
            if current - first > len(job_ids):
                return  # nothing left anywhere
            continue
        await rec.call("GET image", client.request("GET", task["image_url"]), check_dicom)
        await rec.call("POST answer", client.request("POST", f"/api/assignments/{task['assignment_id']}/answer",
                                                     ANSWER_BODY, csrf=True),
                       check_stored(task["assignment_id"]))
        cycles[0] += 1
        if think > 0:
            await asyncio.sleep(min(think * random.uniform(0.5, 1.5), max(0.0, stop_at - time.perf_counter())))


async def reference(url: str, stop_at: float, rec: Recorder, client_class: type) -> None:
    client = client_class(url)
    try:
        while time.perf_counter() < stop_at:
            await rec.call("GET healthz", client.request("GET", "/healthz"), check_health)
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def run_load(url: str, job_ids: list[int], names: list[str], duration: float, think: float,
                   client_class: type, portal: psutil.Process, postgres: Optional[psutil.Process] = None) -> dict:
    rec = Recorder()
    cycles = [0]
    sessions = []
    for start in range(0, len(names), 8):  # argon2 is memory-hard: a few logins at a time
        sessions += await asyncio.gather(*(login(url, name, client_class) for name in names[start:start + 8]))
    me = psutil.Process()
    cpu_before, db_before, load_before = portal_cpu(portal), tree_cpu(postgres), os.getloadavg()[0]
    client_before = own_cpu(me)
    start = time.perf_counter()
    stop_at = start + duration
    try:
        await asyncio.gather(reference(url, stop_at, rec, client_class),
                             *(annotator(client, job_ids, n // 2, stop_at, rec, cycles, think)
                               for n, client in enumerate(sessions)))
    finally:
        for client in sessions:
            await client.aclose()
    elapsed = time.perf_counter() - start
    client_cpu = own_cpu(me) - client_before
    cpu, db = portal_cpu(portal) - cpu_before, tree_cpu(postgres) - db_before
    requests = max(sum(len(v) for v in rec.times.values()) + sum(rec.errors.values()), 1)
    answers = max(cycles[0], 1)
    return {"rec": rec, "answers_per_s": cycles[0] / elapsed, "elapsed": elapsed,
            "cpu_ms_per_request": 1000.0 * cpu / requests, "db_ms_per_request": 1000.0 * db / requests,
            "client_ms_per_request": 1000.0 * client_cpu / requests,
            "server_ms_per_answer": 1000.0 * (cpu + db) / answers, "load": (load_before, os.getloadavg()[0])}


def own_cpu(process: psutil.Process) -> float:
    """User + system CPU seconds of this process (the load client) alone, not its children."""
    times = process.cpu_times()
    return times.user + times.system


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


def spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


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
        return asyncio.run(run_load(url, job_ids, names, args.duration, think, CLIENTS[args.client],
                                    psutil.Process(process.pid), postgres))
    finally:
        stop(process)


def report(label: str, result: dict) -> dict[str, float]:
    rec: Recorder = result["rec"]
    print(f"\n{label}: {result['answers_per_s']:.1f} answers/s; CPU per request: portal {result['cpu_ms_per_request']:.2f} ms, "
          f"PostgreSQL {result['db_ms_per_request']:.2f} ms, this client {result['client_ms_per_request']:.3f} ms; "
          f"portal+PostgreSQL {result['server_ms_per_answer']:.1f} ms per answer; "
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
            "cpu": result["cpu_ms_per_request"], "db": result["db_ms_per_request"],
            "client": result["client_ms_per_request"], "server_per_answer": result["server_ms_per_answer"]}


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
    parser.add_argument("--client", choices=sorted(CLIENTS), default="lean",
                        help="load generator: lean (raw HTTP/1.1, default) or httpx (the earlier figures' client)")
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
              f"baseline {args.baseline_ref} ({variants[0].workers} worker(s)) vs ours ({variants[1].workers}), "
              f"{args.client} client; {os.cpu_count()} CPUs shared by the portal, PostgreSQL, Orthanc, this client "
              f"and other users", 
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
    columns = {"answers_per_s": ("answers/s", 1), "cpu": ("portal ms/req", 2), "db": ("PostgreSQL ms/req", 2),
               "client": ("client ms/req", 3), "server_per_answer": ("portal+PG ms/answer", 1),
               "worst_p95": ("worst p95 ms", 1)}
    print(f"  {'variant':9s} {'think':>5s} " + " ".join(f"{title:>23s}" for title, _ in columns.values())
          + f" {'errors':>6s}")
    for think in args.think:
        for variant in variants:
            runs = results[(variant.name, think)]
            cells = " ".join(f"{spread([r[key] for r in runs], digits):>23s}" for key, (_, digits) in columns.items())
            print(f"  {variant.name:9s} {think:5g} {cells} {sum(r['errors'] for r in runs):6d}")

    def median(name: str, think: float, key: str) -> float:
        return statistics.median(r[key] for r in results[(name, think)])

    ok = True
    def ratio(think: float, key: str) -> float:
        return median("ours", think, key) / max(median("baseline", think, key), 1e-9)

    for think in args.think:
        print(f"think {think:g} s, CPU ours / baseline (medians): per request portal {ratio(think, 'cpu'):.2f}, "
              f"PostgreSQL {ratio(think, 'db'):.2f}; "
              f"portal+PostgreSQL per answer {ratio(think, 'server_per_answer'):.2f}")
    if 0.0 in args.think:
        speedup = ratio(0.0, "answers_per_s")
        met = speedup >= 2.0
        ok &= met
        print(f"think 0: ours / baseline answers/s (medians) = {speedup:.2f} (goal ≥ 2): {'MET' if met else 'NOT MET'}")
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
