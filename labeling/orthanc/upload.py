"""Upload DICOM files, folders and ZIP archives into Orthanc: ``python -m labeling upload PATH...``.

How it is fast: Orthanc accepts a ZIP archive as the body of ``POST /instances`` and answers one
entry per stored instance (Orthanc >= 1.8.2). Small files are therefore packed, uncompressed, into
in-memory ZIP bodies of about :data:`DEFAULT_BATCH_SIZE` files, sent by a couple of workers; this
saves one HTTP exchange per file, which is what a per-file uploader pays on top of Orthanc's own
processing. Files larger than :data:`LARGE_FILE_BYTES` go one per request.

How per-file outcomes stay exact: every file is validated here first (rejected ones never leave
the machine) and its Orthanc instance ID is computed locally — Orthanc's IDs are SHA-1 hashes of
``PatientID|StudyInstanceUID|SeriesInstanceUID|SOPInstanceUID`` (Orthanc Book, "Orthanc
identifiers"). Orthanc's answer for a ZIP body is matched to the files by that ID. A file without
a match (Orthanc skipped it as unreadable, or our ID differs from Orthanc's) and every file of a
batch that Orthanc refused as a whole are sent again one by one, so each file gets Orthanc's own
verdict. Re-sending is safe: ``POST /instances`` is idempotent (``AlreadyStored``).

How it survives an Orthanc restart: a request that gets no answer (or 502/503/504) is repeated
with backoff for as long as Orthanc has been unreachable for less than ``--deadline`` seconds;
after that the files are reported failed. Orthanc stores an instance in one database transaction,
so a rejected or interrupted file leaves nothing partial behind. A file that Orthanc stored during
an attempt whose answer was lost is answered ``AlreadyStored`` on the retry and reported
"already stored" with ``attempts`` > 1.

Never stricter than Orthanc: the local checks refuse only what Orthanc certainly refuses (an empty
file, an unreadable one, truncated data, bytes that are no DICOM data set at all, a data set without
the UIDs Orthanc indexes by). A data set without the Part 10 header (no preamble/``DICM``), which
DCMTK still reads, is sent like any other file and Orthanc judges it.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import os
import random
import struct
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
from labeling.orthanc.connection import add_connection_arguments, connection_from_args
from labeling.orthanc.client import OrthancClient, OrthancError, UploadResult

DEFAULT_WORKERS = 2
DEFAULT_BATCH_SIZE = 50
DEFAULT_DEADLINE_S = 120.0
LARGE_FILE_BYTES = 4 * 1024 * 1024      # above this a file goes alone, as application/dicom
MAX_BATCH_BYTES = 16 * 1024 * 1024      # bounds the memory of one in-flight ZIP body
SERVER_ERROR_RETRIES = 2                # a 500 is usually deterministic: try twice more, then fall back
MAX_RETRY_SLEEP_S = 1.0                 # short, so the upload resumes soon after Orthanc is back
DEFAULT_EXCLUDES = ("*.json", "*.jsonl")  # sidecars of datasets (synth, samples) in folders and ZIPs

Outcome = Literal["stored", "already_stored", "rejected", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("stored", "already_stored", "rejected", "failed")

DICM_OFFSET = 128  # PS3.10 §7.1: 128-byte preamble, then the four bytes "DICM"
PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # (Float/Double)PixelData
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF
# PS3.5 7.1.2: explicit-VR elements with a 2-byte reserved field and a 4-byte length.
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
                      b"UT", b"UV"})


# ---------------------------------------------------------------------------------------------
# sources: what the user named, expanded into files and archive members


@dataclass(frozen=True)
class Source:
    """One file to upload: a file on disk, or a member of a ZIP archive (``archive.zip!member``)."""

    index: int
    display: str
    path: Path
    member: Optional[str] = None
    size: int = 0
    problem: Optional[str] = None  # found while listing (missing path, unreadable archive...)


NO_SUCH_PATH = "no such file or directory"


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _excluded(name: str, excludes: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in excludes)


def discover(paths: Iterable[str | os.PathLike], *,
             excludes: Sequence[str] = DEFAULT_EXCLUDES) -> tuple[list[Source], int]:
    """Expand ``paths`` into sources, in a stable order; return ``(sources, skipped_count)``.

    Folders are walked recursively in name order, skipping hidden entries and names matching
    ``excludes``; ``.zip`` files (named or found in folders) are opened and each member becomes a
    source. A path named twice is uploaded once. Problems (a missing path, an unreadable archive)
    become sources with ``problem`` set, so they are reported like any rejected file.
    """
    found: list[tuple[str, Path, Optional[str], int, Optional[str]]] = []
    seen: set[str] = set()
    skipped = 0

    def add_file(display: str, path: Path) -> None:
        key = os.path.realpath(path)
        if key in seen:
            return
        seen.add(key)
        if path.suffix.lower() == ".zip":
            found.extend(_archive_members(display, path, excludes))
            return
        try:
            size = path.stat().st_size
        except OSError as exc:
            found.append((display, path, None, 0, f"cannot read: {exc.strerror}"))
            return
        found.append((display, path, None, size, None))

    for raw in paths:
        display = os.fspath(raw)
        path = Path(display)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
                for name in sorted(files):
                    if _is_hidden(name) or _excluded(name, excludes):
                        skipped += 1
                        continue
                    add_file(os.path.join(root, name), Path(root, name))
        elif path.exists():
            add_file(display, path)
        else:
            found.append((display, path, None, 0, NO_SUCH_PATH))
    return [Source(i, d, p, m, s, e) for i, (d, p, m, s, e) in enumerate(found)], skipped


def _archive_members(display: str, path: Path, excludes: Sequence[str]):
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        return [(display, path, None, 0, f"not a readable ZIP archive ({exc})")]
    members = []
    for info in infos:
        parts = info.filename.split("/")
        if info.is_dir() or any(_is_hidden(p) for p in parts if p) or _excluded(parts[-1], excludes):
            continue
        problem = "encrypted ZIP member" if info.flag_bits & 0x1 else None
        members.append((f"{display}!{info.filename}", path, info.filename, info.file_size, problem))
    return members


class SourceReader:
    """Reads file contents; keeps each archive open once and serialises reads of one archive."""

    def __init__(self) -> None:
        self._archives: dict[Path, tuple[zipfile.ZipFile, threading.Lock]] = {}
        self._lock = threading.Lock()

    def read(self, source: Source) -> bytes:
        if source.member is None:
            return source.path.read_bytes()
        with self._lock:
            if source.path not in self._archives:
                self._archives[source.path] = (zipfile.ZipFile(source.path), threading.Lock())
            archive, lock = self._archives[source.path]
        with lock:
            return archive.read(source.member)

    def close(self) -> None:
        with self._lock:
            for archive, _ in self._archives.values():
                archive.close()
            self._archives.clear()


# ---------------------------------------------------------------------------------------------
# validation: reject what Orthanc would refuse, before sending it


class InvalidDicom(ValueError):
    """The bytes are not a complete DICOM Part 10 file; the message says what is wrong."""


@dataclass(frozen=True)
class DicomIdentity:
    """The UIDs Orthanc indexes an instance by, and the instance ID it will give it."""

    patient_id: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str

    @property
    def orthanc_id(self) -> str:
        return orthanc_instance_id(self.patient_id, self.study_uid, self.series_uid, self.sop_instance_uid)


def orthanc_hash(text: str) -> str:
    """Orthanc's resource ID format: SHA-1 in five dash-separated groups of 8 hex digits."""
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def orthanc_instance_id(patient_id: str, study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
    """The ID Orthanc gives an instance (Orthanc Book, "Orthanc identifiers")."""
    return orthanc_hash(f"{patient_id}|{study_uid}|{series_uid}|{sop_instance_uid}")


def validate_dicom(data: bytes) -> DicomIdentity:
    """Check that ``data`` is a complete DICOM Part 10 file Orthanc can index; return its identity.

    1. 128-byte preamble and ``DICM`` (PS3.10 §7.1); 2. every element's length, down to the pixel
    data and its encapsulated fragments, fits in the file — pydicom alone accepts a truncated file
    silently, Orthanc (DCMTK) refuses it; 3. the three UIDs Orthanc requires are present
    (PS3.3 C.7.2.1, C.7.3.1, C.12.1).

    The common case (a plain encoding, ASCII identifiers) is read by the length walk itself, which
    costs a fraction of a pydicom parse — client CPU competes with Orthanc on a small machine.
    Anything unusual (deflated data set, odd VR bytes, non-ASCII PatientID, missing transfer
    syntax) is parsed by pydicom (``stop_before_pixels``) and then walked with its encoding.
    """
    if not data:
        raise InvalidDicom("empty file")
    if len(data) < DICM_OFFSET + 4 or data[DICM_OFFSET:DICM_OFFSET + 4] != b"DICM":
        return _headerless_identity(data)
    identity = _fast_identity(data)
    return identity if identity is not None else _pydicom_identity(data)


def _headerless_identity(data: bytes) -> DicomIdentity:
    """A data set without the PS3.10 header (preamble, ``DICM``, group 0002): DCMTK, hence Orthanc,
    still reads one, guessing its encoding — so does pydicom (``force``). Refused only when no data
    set with the UIDs Orthanc indexes by comes out; the encoding is a guess, so no length walk."""
    import pydicom  # here, not at the top: numpy + pydicom cost every command's start-up ~0.5 s

    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        values = {name: str(dataset.get(name, "") or "").rstrip("\0 ") for name in CAPTURED_TAGS.values()}
    except Exception:  # pydicom raises many types on garbage; any of them means "no data set"
        values = {}
    if not all(values.get(keyword) for keyword, _ in REQUIRED_UIDS):
        raise InvalidDicom("not a DICOM file: no PS3.10 header ('DICM' after a 128-byte preamble) and "
                           "no DICOM data set with the UIDs Orthanc indexes by")
    return _identity(values)


class _Unusual(Exception):
    """The fast path met something it leaves to pydicom."""


# Transfer syntaxes whose data set encoding differs from explicit VR little endian (PS3.5 A.1-A.5).
IMPLICIT_LITTLE = "1.2.840.10008.1.2"
EXPLICIT_BIG = "1.2.840.10008.1.2.2"
DEFLATED = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"})
CAPTURED_TAGS = {0x00100020: "PatientID", 0x0020000D: "StudyInstanceUID",
                 0x0020000E: "SeriesInstanceUID", 0x00080018: "SOPInstanceUID"}
REQUIRED_UIDS = (("StudyInstanceUID", "(0020,000D)"), ("SeriesInstanceUID", "(0020,000E)"),
                 ("SOPInstanceUID", "(0008,0018)"))


def _fast_identity(data: bytes) -> Optional[DicomIdentity]:
    start, syntax = _read_meta(data)
    if not syntax or syntax in DEFLATED:
        return None
    captured: dict[str, bytes] = {}
    try:
        _check_elements(data, start, len(data), syntax == IMPLICIT_LITTLE, syntax != EXPLICIT_BIG,
                        depth=0, capture=captured)
    except _Unusual:
        return None
    try:
        values = {name: raw.decode("ascii").rstrip("\0 ") for name, raw in captured.items()}
    except UnicodeDecodeError:
        return None  # a PatientID in another character set: pydicom decodes it (PS3.5 6.1)
    return _identity(values)


def _pydicom_identity(data: bytes) -> DicomIdentity:
    import pydicom

    try:
        dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        syntax = dataset.file_meta.get("TransferSyntaxUID")
    except Exception as exc:  # pydicom raises many types on garbage; any of them means "unreadable"
        raise InvalidDicom(f"unreadable DICOM header ({type(exc).__name__}: {exc})") from None
    if not syntax:
        raise InvalidDicom("File Meta Information has no TransferSyntaxUID (0002,0010)")
    if not syntax.is_deflated:  # a deflated data set is zlib data: Orthanc's inflater checks it
        # The declared encoding, as DCMTK reads it: Orthanc refuses a file that declares explicit
        # VR but holds implicit VR (pydicom would guess and accept it).
        try:
            _check_elements(data, _read_meta(data)[0], len(data), syntax.is_implicit_VR,
                            syntax.is_little_endian, depth=0)
        except _Unusual as exc:
            raise InvalidDicom(f"malformed: {exc}") from None
    try:
        values = {name: str(dataset.get(name, "") or "").rstrip("\0 ") for name in CAPTURED_TAGS.values()}
    except Exception as exc:
        raise InvalidDicom(f"unreadable identifying attributes ({type(exc).__name__}: {exc})") from None
    return _identity(values)


def _identity(values: dict[str, str]) -> DicomIdentity:
    for keyword, tag in REQUIRED_UIDS:
        if not values.get(keyword):
            raise InvalidDicom(f"missing {keyword} {tag}, which Orthanc needs to index the instance")
    return DicomIdentity(values.get("PatientID", ""), values["StudyInstanceUID"],
                         values["SeriesInstanceUID"], values["SOPInstanceUID"])


_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


def _read_meta(data: bytes) -> tuple[int, Optional[str]]:
    """(offset of the data set, Transfer Syntax UID) — group 0002 is explicit VR little endian."""
    pos = DICM_OFFSET + 4
    syntax = None
    size = len(data)
    while pos + 8 <= size:
        if _U16.unpack_from(data, pos)[0] != 0x0002:
            break
        element = _U16.unpack_from(data, pos + 2)[0]
        if data[pos + 4:pos + 6] in LONG_VRS:
            length = _U32.unpack_from(data, pos + 8)[0] if pos + 12 <= size else 0
            header = 12
        else:
            length = _U16.unpack_from(data, pos + 6)[0]
            header = 8
        if element == 0x0010:
            syntax = data[pos + header:pos + header + length].decode("ascii", "replace").rstrip("\0 ")
        pos += header + length
    return pos, syntax


def _check_elements(data: bytes, pos: int, end: int, implicit: bool, little: bool, depth: int,
                    capture: Optional[dict[str, bytes]] = None) -> int:
    """Walk data elements from ``pos`` to ``end`` (or a delimiter); raise InvalidDicom if cut short.

    Only tags and lengths are read (PS3.5 §7.1, §7.5): cheap, and it finds truncation anywhere —
    in the header, in the pixel data, or in encapsulated fragments (PS3.5 A.4). ``capture`` collects
    the raw values of :data:`CAPTURED_TAGS` at the top level.
    """
    order = "<" if little else ">"
    tag_struct = struct.Struct(order + "HH")
    u16 = struct.Struct(order + "H")
    u32 = struct.Struct(order + "I")
    while pos < end:
        if pos + 8 > end:
            raise InvalidDicom(f"truncated: incomplete element header at byte {pos} of {len(data)}")
        group, element = tag_struct.unpack_from(data, pos)
        tag = (group << 16) | element
        if tag == ITEM_END or tag == SEQUENCE_END:
            return pos + 8  # delimiter of the enclosing item or sequence
        if tag == ITEM:
            raise InvalidDicom(f"malformed: item tag outside a sequence at byte {pos}")
        vr = b""
        if implicit:
            length = u32.unpack_from(data, pos + 4)[0]
            header = 8
        else:
            vr = data[pos + 4:pos + 6]
            if vr in LONG_VRS:
                if pos + 12 > end:
                    raise InvalidDicom(f"truncated: incomplete element header at byte {pos} of {len(data)}")
                length = u32.unpack_from(data, pos + 8)[0]
                header = 12
            elif vr.isalpha() and vr.isupper():
                length = u16.unpack_from(data, pos + 6)[0]
                header = 8
            else:
                raise _Unusual(f"element ({group:04X},{element:04X}) at byte {pos} has no valid VR")
        pos += header
        if length == UNDEFINED_LENGTH:
            if tag in PIXEL_DATA_TAGS:
                pos = _check_items(data, pos, end, implicit=True, little=little, depth=depth,
                                   fragments=True, delimited=True)
            else:  # a sequence (SQ, or UN/implicit with undefined length, PS3.5 6.2.2)
                pos = _check_items(data, pos, end, implicit=implicit or vr == b"UN", little=little,
                                   depth=depth, fragments=False, delimited=True)
            continue
        if pos + length > end:
            what = "pixel data" if tag in PIXEL_DATA_TAGS else f"element ({group:04X},{element:04X})"
            raise InvalidDicom(f"truncated: {what} declares {length} bytes at byte {pos} but only "
                               f"{end - pos} remain")
        if capture is not None and tag in CAPTURED_TAGS:
            capture[CAPTURED_TAGS[tag]] = data[pos:pos + length]
        if vr == b"SQ" or (implicit and length and _is_defined_length_sequence(data, pos, order)):
            _check_items(data, pos, pos + length, implicit=implicit, little=little, depth=depth,
                         fragments=False, delimited=False)
        pos += length
    return pos


def _is_defined_length_sequence(data: bytes, pos: int, order: str) -> bool:
    """In implicit VR the VR is unknown: a value starting with an item tag is treated as a sequence."""
    if pos + 4 > len(data):
        return False
    group, element = struct.unpack_from(order + "HH", data, pos)
    return (group << 16 | element) == ITEM


def _check_items(data: bytes, pos: int, end: int, *, implicit: bool, little: bool, depth: int,
                 fragments: bool, delimited: bool) -> int:
    """Walk the items of a sequence or of encapsulated pixel data.

    ``delimited``: undefined length, so a sequence delimiter must come before ``end``; otherwise
    the items fill exactly up to ``end`` (a defined-length sequence).
    """
    if depth > 32:
        raise InvalidDicom("malformed: sequences nested more than 32 deep")
    order = "<" if little else ">"
    while pos < end:
        if pos + 8 > end:
            raise InvalidDicom(f"truncated: incomplete item header at byte {pos} of {len(data)}")
        group, element, length = struct.unpack_from(order + "HHI", data, pos)
        tag = (group << 16) | element
        pos += 8
        if tag == SEQUENCE_END:
            return pos
        if tag != ITEM:
            raise InvalidDicom(f"malformed: expected an item at byte {pos - 8}, found "
                               f"({group:04X},{element:04X})")
        if length == UNDEFINED_LENGTH:
            if fragments:
                raise InvalidDicom(f"malformed: pixel data fragment of undefined length at byte {pos - 8}")
            pos = _check_elements(data, pos, end, implicit, little, depth + 1)
            continue
        if pos + length > end:
            what = "pixel data fragment" if fragments else "sequence item"
            raise InvalidDicom(f"truncated: {what} declares {length} bytes at byte {pos} but only "
                               f"{end - pos} remain")
        if not fragments:
            _check_elements(data, pos, pos + length, implicit, little, depth + 1)
        pos += length
    if not delimited:
        return pos
    what = "encapsulated pixel data" if fragments else "sequence"
    raise InvalidDicom(f"truncated: {what} has no end delimiter (file ends at byte {len(data)})")


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
    conn = connection_from_args(args)
    # pydicom's warnings about odd values would break the progress display; what matters for a
    # file is its outcome line (and Orthanc's verdict), so they are silenced in this command.
    import pydicom

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    client = OrthancClient.from_connection(conn, pool_size=args.workers + 1)
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
