"""Real-world sample DICOM files (`python -m devkit samples --out DIR`).

Copies the DICOM files that ship inside the installed pydicom package (its test data) into one
folder, so the data plane (upload to Orthanc, viewer decoding, manifest, de-identification) meets
the variety of real files: compressed transfer syntaxes (PS3.5 A.4: JPEG baseline and extended,
JPEG lossless, JPEG-LS, JPEG 2000, RLE), big-endian and implicit VR encodings, deflate, multi-frame,
colour, palette, segmentation objects, and structured reports.

Only local files are used: ``get_testdata_files()`` with its default pattern matches the files
installed with pydicom (and any data package already on disk), never a download.

A file is copied, byte for byte, when it is

* a DICOM Part-10 file (PS3.10 7.1: preamble, ``DICM``, file meta with a Transfer Syntax UID)
  that pydicom reads completely;
* a composite instance: SOP Class, SOP Instance, Study Instance and Series Instance UIDs present
  (Orthanc indexes an instance by these; a DICOMDIR is not an instance);
* an image whose Pixel Data is sound without decoding it: native data at least as long as Rows x
  Columns x Samples x Bits Allocated x Frames requires, encapsulated data (PS3.5 A.4) whose
  fragments yield one non-empty frame per Number of Frames; or a structured report (SR), which the
  project also produces (TID 1500 write-back).

Anything else is skipped with a reason (logged, returned, counted by the command).

Several pydicom samples are one instance in several encodings and share a SOP Instance UID, and a
few lack a Study or Series Instance UID. By default files are copied verbatim: duplicates are
marked ``duplicate_of`` (Orthanc keeps the first one uploaded and answers ``AlreadyStored`` for
the others) and files without Study/Series UIDs are skipped. With ``distinct_uids`` (CLI
``--distinct-uids``) those files are copied too, re-written by pydicom in their own transfer
syntax with only the offending UIDs replaced (deterministic UIDs derived from the original UID
and the file name; Pixel Data bytes untouched), so every encoding can live in one Orthanc.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import pydicom
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID, MediaStorageDirectoryStorage, generate_uid

from labeling.outdir import OutputDirError, sigterm_as_interrupt, staged_output_dir

log = logging.getLogger(__name__)

MANIFEST_FILE: Final = "samples.json"
_REQUIRED_UIDS: Final = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_SR_CLASS_PREFIX: Final = "1.2.840.10008.5.1.4.1.1.88."  # PS3.4 Annex B: the SR storage classes
_PIXEL_KEYWORDS: Final = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class SampleFile:
    """One sample selected for copying; ``file`` is its name inside the output directory."""

    source: Path
    file: str
    kind: str  # "image" or "sr"
    modality: str
    sop_class_uid: str
    sop_class: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    transfer_syntax: str
    frames: int
    duplicate_of: str | None = None  # the first copied file with the same SOP Instance UID
    warning: str | None = None  # the first warning pydicom gave while reading it
    new_uids: tuple[tuple[str, str], ...] = ()  # (keyword, UID) replaced in the copy (distinct_uids)

    @property
    def verbatim(self) -> bool:
        """True when the copy is byte-identical to the source."""
        return not self.new_uids

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "source": str(self.source), "new_uids": dict(self.new_uids)}


@dataclass(frozen=True)
class SkippedFile:
    """A file not copied: ``reason`` is a short category, ``detail`` the specific problem."""

    source: Path
    reason: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.source), "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class SampleScan:
    files: tuple[SampleFile, ...]
    skipped: tuple[SkippedFile, ...]


def sample_sources() -> list[Path]:
    """pydicom's local test files (regular files only, sorted for a stable order)."""
    # The default pattern "**/*" only matches files on disk; a pattern matching the names of
    # pydicom's downloadable files would start downloads, which we never want here.
    return sorted(Path(p) for p in get_testdata_files() if Path(p).is_file())


def scan_samples(sources: Iterable[str | Path] | None = None, *, distinct_uids: bool = False) -> SampleScan:
    """Decide, for each source (default: :func:`sample_sources`), whether to copy it.

    ``distinct_uids``: also take duplicates and files lacking Study/Series UIDs, with new UIDs
    (see the module docstring).
    """
    paths = [Path(p) for p in sources] if sources is not None else sample_sources()
    root = _common_root(paths)
    files: list[SampleFile] = []
    skipped: list[SkippedFile] = []
    names: set[str] = set()
    first_by_uid: dict[str, str] = {}
    for path in paths:
        name = _output_name(path, root, names)
        result = inspect_file(path, name, allow_missing_study_series=distinct_uids)
        if isinstance(result, SkippedFile):
            log.info("skipping %s: %s: %s", path, result.reason, result.detail)
            skipped.append(result)
            continue
        names.add(result.file)
        first = first_by_uid.setdefault(result.sop_instance_uid, result.file)
        if first != result.file:
            result = dataclasses.replace(result, duplicate_of=first)
            if distinct_uids:
                result = _with_new_uid(result, "SOPInstanceUID", result.sop_instance_uid)
        files.append(result)
    return SampleScan(tuple(files), tuple(skipped))


def _with_new_uid(sample: SampleFile, keyword: str, original: str) -> SampleFile:
    # Derived, not random: rerunning gives the same UIDs, so a re-upload answers AlreadyStored.
    uid = str(generate_uid(entropy_srcs=[f"dicom-annotate samples|{keyword}|{original}|{sample.file}"]))
    changes = {"new_uids": (*sample.new_uids, (keyword, uid))}
    if keyword == "SOPInstanceUID":
        changes["sop_instance_uid"] = uid
    return dataclasses.replace(sample, **changes)


def inspect_file(
    path: Path, name: str | None = None, *, allow_missing_study_series: bool = False
) -> SampleFile | SkippedFile:
    """Read ``path`` and say whether it is a usable sample (see the module docstring).

    ``allow_missing_study_series``: accept an instance without Study/Series Instance UIDs and
    plan new ones for its copy (``new_uids``).
    """
    if not path.is_file():
        return SkippedFile(path, "not a file", "not a regular file")
    # pydicom warns (and logs) about odd values; a sample may be odd, the reason is recorded
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _inspect(path, name or path.name, allow_missing_study_series)
    for warning in caught:
        # pydicom keeps what it read before the end of a cut file, possibly nothing, and warns
        if "End of file reached" in str(warning.message):
            return SkippedFile(path, "truncated", str(warning.message).split(" found in file")[0])
    if isinstance(result, SampleFile) and caught:
        result = dataclasses.replace(result, warning=str(caught[0].message).splitlines()[0])
    return result


def _inspect(path: Path, name: str, allow_missing_study_series: bool) -> SampleFile | SkippedFile:
    try:
        ds = pydicom.dcmread(path)  # force=False: a file without the Part-10 header fails
    except InvalidDicomError:
        return SkippedFile(path, "not DICOM Part-10", "no 'DICM' prefix or file meta (PS3.10 7.1)")
    except Exception as exc:  # noqa: BLE001 - any failure to read is a reason to skip
        return SkippedFile(path, "unreadable", f"{type(exc).__name__}: {exc}")

    transfer_syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if not transfer_syntax:
        return SkippedFile(path, "no transfer syntax", "file meta lacks Transfer Syntax UID (PS3.10 7.1)")
    if ds.get("SOPClassUID") == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in ds:
        return SkippedFile(path, "DICOMDIR", "media storage directory, not an instance")
    missing = [keyword for keyword in _REQUIRED_UIDS if not ds.get(keyword)]
    replaceable = allow_missing_study_series and not {"SOPClassUID", "SOPInstanceUID"} & set(missing)
    if missing and not replaceable:
        return SkippedFile(path, "missing UIDs", f"no {', '.join(missing)}")
    sop_class = UID(str(ds.SOPClassUID))
    has_pixels = any(keyword in ds for keyword in _PIXEL_KEYWORDS)
    if has_pixels:
        problem = _pixel_data_problem(ds, UID(str(transfer_syntax)))
        if problem:
            return SkippedFile(path, "pixel data damaged", problem)
        kind = "image"
    elif sop_class.startswith(_SR_CLASS_PREFIX):
        kind = "sr"
    else:
        return SkippedFile(path, "no pixel data", f"not an image nor a structured report ({_uid_name(sop_class)})")

    if not missing:
        # The upload command's check, so that the sample set loads cleanly (Orthanc refuses the same).
        from labeling.orthanc.dicom_file import InvalidDicom, validate_dicom
        try:
            validate_dicom(path.read_bytes())
        except InvalidDicom as exc:
            return SkippedFile(path, "malformed encoding", str(exc))

    syntax = UID(str(transfer_syntax))
    sample = SampleFile(
        source=path,
        file=name,
        kind=kind,
        modality=str(ds.get("Modality", "") or ""),
        sop_class_uid=str(sop_class),
        sop_class=_uid_name(sop_class),
        sop_instance_uid=str(ds.SOPInstanceUID),
        transfer_syntax_uid=str(syntax),
        transfer_syntax=_uid_name(syntax),
        frames=_frames(ds) if kind == "image" else 0,
    )
    for keyword in missing:  # only Study/Series UIDs get here
        sample = _with_new_uid(sample, keyword, str(ds.SOPInstanceUID))
    return sample


def _pixel_data_problem(ds: Dataset, transfer_syntax: UID) -> str | None:
    """Why the pixel data cannot be right, or None; checked without decoding (no codecs needed)."""
    try:
        frames = _frames(ds)
        if "PixelData" not in ds:
            return None  # float pixel data: native by definition, checked by pydicom on read
        data = ds.PixelData
        if transfer_syntax.is_encapsulated:
            # PS3.5 A.4: an offset table item then fragments; one frame per item unless the
            # offset table says otherwise. generate_frames raises on a malformed item.
            found = list(generate_frames(data, number_of_frames=frames))
            if len(found) != frames or not all(found):
                return f"{len(found)} encapsulated frame(s) for Number of Frames {frames}"
            return None
        expected = get_expected_length(ds, unit="bytes")
        if len(data) < expected:
            return f"native pixel data is {len(data)} bytes, {expected} expected"
        return None
    except Exception as exc:  # noqa: BLE001 - a bad header value is a damaged image too
        return f"{type(exc).__name__}: {exc}"


def _frames(ds: Dataset) -> int:
    value = ds.get("NumberOfFrames", 1)
    frames = int(value) if value not in (None, "") else 1
    if frames < 1:
        raise ValueError(f"Number of Frames is {frames}")
    return frames


def _uid_name(uid: UID) -> str:
    return uid.name if uid.is_valid and uid.name != str(uid) else str(uid)


def _common_root(paths: list[Path]) -> Path | None:
    """The deepest folder holding every path: output names are relative to it."""
    try:
        return Path(os.path.commonpath([str(p.parent) for p in paths]))
    except ValueError:  # no paths, or a mix of absolute and relative ones
        return None


def _output_name(path: Path, root: Path | None, taken: set[str]) -> str:
    """A flat, unique ``.dcm`` name: subfolders of pydicom's data (DICOMDIR trees) joined by ``__``."""
    try:
        parts = path.relative_to(root).parts if root else (path.name,)
    except ValueError:
        parts = (path.name,)
    name = "__".join(parts)
    if not name.lower().endswith(".dcm"):
        name += ".dcm"  # uploaders and viewers pick files by this suffix
    candidate, counter = name, 2
    while candidate in taken:
        candidate = f"{name[:-4]}-{counter}.dcm"
        counter += 1
    return candidate


def copy_samples(
    out_dir: str | Path,
    *,
    force: bool = False,
    distinct_uids: bool = False,
    scan: SampleScan | None = None,
) -> list[SampleFile]:
    """Copy the usable samples into ``out_dir`` and write ``samples.json``; return what was copied.

    Copies are byte for byte, except files given new UIDs (``distinct_uids``; see the module
    docstring). ``scan`` defaults to ``scan_samples(distinct_uids=distinct_uids)``. The directory
    appears complete or not at all; a non-empty ``out_dir`` is refused unless ``force``
    (:class:`OutputDirError`).
    """
    scan = scan if scan is not None else scan_samples(distinct_uids=distinct_uids)
    with staged_output_dir(out_dir, force=force) as staging:
        for sample in scan.files:
            if sample.verbatim:
                shutil.copyfile(sample.source, staging / sample.file)
            else:
                _write_with_new_uids(sample, staging / sample.file)
        manifest = {
            "generator": "python -m devkit samples",
            "pydicom": pydicom.__version__,
            "files": [sample.to_dict() for sample in scan.files],
            "skipped": [skip.to_dict() for skip in scan.skipped],
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return list(scan.files)


def _write_with_new_uids(sample: SampleFile, target: Path) -> None:
    """Re-write ``sample`` with its ``new_uids``, keeping its transfer syntax and pixel bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # already recorded on the SampleFile
        ds = pydicom.dcmread(sample.source)
        for keyword, uid in sample.new_uids:
            setattr(ds, keyword, uid)
            if keyword == "SOPInstanceUID":
                ds.file_meta.MediaStorageSOPInstanceUID = uid
        # pydicom writes in the dataset's original encoding (its file meta transfer syntax);
        # encapsulated Pixel Data is written as read, never re-compressed.
        ds.save_as(target, enforce_file_format=True)


# --- CLI -------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``samples`` to the ``python -m labeling`` command line (see labeling/cli.py)."""
    parser = subparsers.add_parser(
        "samples",
        description=(
            "Copy the DICOM files shipped with pydicom (JPEG, JPEG-LS, JPEG 2000, RLE, deflate, "
            "big endian, multi-frame, colour, SEG, SR) into DIR, byte for byte, for loading real-world "
            f"variety into the data plane. Files that are not usable instances are skipped with a reason; "
            f"DIR/{MANIFEST_FILE} lists both."
        ),
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR",
        help="output directory (created; must be empty unless --force)",
    )
    parser.add_argument(
        "--distinct-uids", action="store_true",
        help="also copy files sharing a SOP Instance UID or lacking Study/Series UIDs, with new UIDs, "
        "so one Orthanc can hold every encoding (default: verbatim copies only)",
    )
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out directory")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The ``samples`` command: 0 on success, 2 with one error line for a bad --out."""
    scan = scan_samples(distinct_uids=args.distinct_uids)
    try:
        with sigterm_as_interrupt():
            copied = copy_samples(args.out, force=args.force, scan=scan)
    except OutputDirError as exc:
        print(f"samples: error: --out {exc}", file=sys.stderr)
        return 2
    _print_report(Path(args.out), copied, scan.skipped)
    return 0


def _print_report(out: Path, copied: list[SampleFile], skipped: tuple[SkippedFile, ...]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{len(copied)} sample files copied to {out}")
    table.add_column("file", overflow="fold")
    table.add_column("modality")
    table.add_column("transfer syntax")  # the pydicom keyword: short, and greppable
    table.add_column("frames", justify="right")
    table.add_column("note", overflow="fold")
    for sample in copied:
        table.add_row(
            sample.file,
            sample.modality or "-",
            UID(sample.transfer_syntax_uid).keyword or sample.transfer_syntax_uid,
            str(sample.frames) if sample.kind == "image" else sample.kind.upper(),
            _note(sample),
        )
    console.print(table)

    syntaxes = Counter(sample.transfer_syntax for sample in copied)
    console.print("transfer syntaxes: " + "; ".join(f"{name} x{n}" for name, n in sorted(syntaxes.items())))
    duplicates = sum(1 for sample in copied if sample.duplicate_of and sample.verbatim)
    if duplicates:
        console.print(
            f"{duplicates} files repeat another file's SOP Instance UID: Orthanc keeps the first "
            "uploaded (--distinct-uids gives them their own)"
        )

    by_reason: dict[str, list[SkippedFile]] = {}
    for skip in skipped:
        by_reason.setdefault(skip.reason, []).append(skip)
    summary = Table(title=f"{len(skipped)} files skipped")
    summary.add_column("reason")
    summary.add_column("count", justify="right")
    summary.add_column("examples (detail)", overflow="fold")
    for reason, skips in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        shown = "; ".join(f"{s.source.name} ({s.detail})" for s in skips[:2])
        more = f"; +{len(skips) - 2} more" if len(skips) > 2 else ""
        summary.add_row(reason, str(len(skips)), shown + more)
    console.print(summary)
    console.print(f"every copied and skipped file, with reasons: {out / MANIFEST_FILE}")


def _note(sample: SampleFile) -> str:
    if sample.new_uids:
        return "new " + ", ".join(keyword.replace("InstanceUID", "") for keyword, _ in sample.new_uids) + " UID"
    if sample.duplicate_of:
        return f"same UID as {sample.duplicate_of}"
    return ""
