"""What ``python -m labeling upload PATH...`` sends: the paths named, expanded into files and ZIP
archive members (``archive.zip!member``), and a reader of their bytes.

Folders are walked in name order, hidden entries and :data:`DEFAULT_EXCLUDES` skipped; a problem
found while listing (a missing path, an unreadable archive) becomes a source with ``problem`` set,
reported like any rejected file (:mod:`labeling.orthanc.upload`).
"""

from __future__ import annotations

import fnmatch
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

DEFAULT_EXCLUDES = ("*.json", "*.jsonl")  # sidecars of datasets (synth, samples) in folders and ZIPs


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
