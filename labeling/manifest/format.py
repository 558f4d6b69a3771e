"""The manifest file: one JSON line per data object to label; read, validated and written here.

A manifest is a SageMaker Ground Truth *input manifest* (AWS docs, "Input manifest files"); what GT
requires of it and why ``source`` holds the Orthanc instance ID are in
:mod:`labeling.contracts.manifest_line`.

One line is the label contract's :class:`labeling.contracts.manifest_line.ManifestLine` (every key,
its type and where it comes from are documented there once; re-exported here). Any key it does not
know is kept, in order, so a GT *output* manifest (the input line plus ``<attr>`` and
``<attr>-metadata``) survives ``read_manifest`` → ``write_manifest`` unchanged: the Ground Truth job,
the portal and training all read and write manifest files through this module.

Series tasks (``--level series``, issue 14): one line per series or multi-frame instance instead,
``source`` = the Orthanc series (or instance) ID, plus ``level``, ``instances``, ``geometry`` and
``flags`` (kept as unknown keys, in order); built by :mod:`labeling.manifest.series` from the same
walk, ordered by :mod:`labeling.dicom.series`; the README's "Series tasks" shows a line.

PHI. A manifest is internal: it points into Orthanc and goes to the labeling backend (GT reads it
from the project's bucket; the portal from its own store); annotators never see it, because the
pre-annotation step hands them a de-identified copy of the image only. Still, what identifies or
dates a person directly (PatientID, StudyDate) is left out unless ``--include-phi`` is given: the
study/series/SOP UIDs are what write-back (DICOM SR) and a train/test split by study need.

The query that builds a manifest from Orthanc is :mod:`labeling.manifest.query` (filters in
:mod:`labeling.manifest.filters`, non-image exclusions in :mod:`labeling.manifest.exclusions`),
assembled by :func:`labeling.manifest.build.build_manifest`; the command is
:mod:`labeling.manifest.cli`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from labeling.contracts.manifest_line import (  # noqa: F401 - the line format, re-exported
    GEOMETRY_KEYS, KNOWN_KEYS, OPTIONAL_KEYS, PHI_KEYS, REQUIRED_KEYS, ManifestError, ManifestLine)
from labeling.outdir import atomic_file


def write_manifest(lines: Iterable[ManifestLine], path: str | Path) -> int:
    """Write ``lines`` as a manifest at ``path`` (``-`` for stdout); returns the line count.

    A regular file appears whole or not at all: lines go to a temporary file in the same
    directory, which then replaces ``path`` (an interrupted run never leaves half a manifest for
    a job). Anything else that exists (``/dev/null``, a FIFO, ``/dev/stdout``) is written in
    place: renaming over a device node would replace the device itself.
    """
    if str(path) == "-":
        return _write_lines(lines, sys.stdout)
    target = Path(path)
    if target.exists() and not target.is_file():
        if target.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(target))
        with open(target, "w", encoding="utf-8", newline="\n") as out:
            return _write_lines(lines, out)
    with atomic_file(target, "w", encoding="utf-8", newline="\n") as out:
        count = _write_lines(lines, out)
        os.fsync(out.fileno())
    return count


def _write_lines(lines: Iterable[ManifestLine], out: Any) -> int:
    count = 0
    for line in lines:
        out.write(line.to_json() + "\n")
        count += 1
    out.flush()
    return count


def iter_manifest(path: str | Path, *, allow_duplicates: bool = False) -> Iterator[ManifestLine]:
    """Yield the lines of the manifest at ``path``, validating each as it is read.

    Raises :class:`ManifestError` ``<path>:<line>: <problem>`` on the first bad line: invalid
    UTF-8 or JSON, not an object, a missing or wrong key, an empty line (GT reads every line as
    an object), or a ``source`` already seen (one image labelled twice would be counted twice in
    training; ``allow_duplicates`` lifts that for concatenated output manifests).
    """
    name = str(path)
    seen: dict[str, int] = {}
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise ManifestError(f"{name}: cannot read file: {exc.strerror or exc}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{name}:{number}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ManifestError(f"{where}: not UTF-8 (byte {exc.start + 1}: {exc.reason})") from None
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]  # a BOM some editors add; harmless, but JSON forbids it
            if not text.strip():
                raise ManifestError(f"{where}: empty line; each line must be one JSON object")
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{where}: invalid JSON at column {exc.colno}: {exc.msg}") from None
            try:
                line = ManifestLine.from_dict(data)
            except ManifestError as exc:
                raise ManifestError(f"{where}: {exc}") from None
            if not allow_duplicates:
                if line.source in seen:
                    raise ManifestError(f"{where}: duplicate source {line.source!r} (first on line {seen[line.source]})")
                seen[line.source] = number
            yield line


def read_manifest(path: str | Path, *, allow_duplicates: bool = False) -> list[ManifestLine]:
    """All lines of the manifest at ``path`` (see :func:`iter_manifest` for the checks)."""
    return list(iter_manifest(path, allow_duplicates=allow_duplicates))
