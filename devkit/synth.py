"""Synthetic chest-radiograph DICOM dataset with ground truth (`python -m devkit synth`).

What it makes: several patients, each with one or more studies; every study holds one series with
one frontal chest image (PA or AP view). Images are DX (PS3.3 A.26 "Digital X-Ray Image IOD",
SOP class Digital X-Ray Image Storage - For Presentation) by default or CR (PS3.3 A.2 "Computed
Radiography Image IOD"), 16 bits allocated, 12 or 14 bits stored, unsigned, MONOCHROME2, written
as DICOM Part-10 files (PS3.10) in Explicit VR Little Endian (PS3.5 A.2).

The image is a chest-like picture (body, two dark lung fields, brighter mediastinum, heart and
spine, faint curved rib bands, noise) with three findings drawn independently, each present with
its own prevalence:

* ``Opacity``  - one or two soft Gaussian blobs inside a lung field;
                 ROI: one ``ellipse`` per blob, box = centre +/- 2 sigma on each axis.
* ``Device``   - a bright thin tube (central line from the shoulder, or nasogastric tube down the
                 midline), drawn along a polyline;
                 ROI: one ``polygon`` outlining the drawn tube (the polyline offset by the tube's
                 half-width + 1 px on both sides), so the polygon has a real area and IoU works.
* ``Effusion`` - a haze rising towards one lung base (costophrenic angle);
                 ROI: one ``rectangle`` over that lung base; the haze is zero outside it.

The ground truth is written aside, never into the DICOM files: ``ground_truth.jsonl`` has one line
per image in the label shape of docs/architecture.md ("The label shape"): ``labels`` (one
``{"name", "present"}`` per finding, in :data:`devkit.synth_plan.FINDINGS` order), ``rois``
(``label``, ``shape``, ``points`` in image pixels: x = column, y = row, origin at the frame's
top-left corner, so pixel (c, r) has its centre at (c + 0.5, r + 0.5)) and ``image`` (rows,
columns, frame 0).

Where each part lives: the parameters and plans in :mod:`devkit.synth_plan`, the pixels in
:mod:`devkit.synth_draw`, the DICOM file and ground-truth record in :mod:`devkit.synth_dicom`; this
module writes the dataset and is the ``synth`` command.

Determinism: every random draw comes from a NumPy generator seeded by (seed, patient, study), and
every UID from :func:`pydicom.uid.generate_uid` with ``entropy_srcs`` built from the parameters that
change the content (seed, size, modality, bits stored, prevalences) plus the patient/study index.
The same parameters give byte-identical files and the same UIDs (so Orthanc answers
``AlreadyStored`` on a re-upload); a different seed gives different UIDs. The number of patients
does not enter the UIDs: patient 7 of a 20-patient run is patient 7 of a 250-patient run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import inspect
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeling import __version__
from labeling.cli import add_progress_argument
from labeling.outdir import OutputDirError, sigterm_as_interrupt, staged_output_dir
from devkit.synth_plan import (
    BITS_STORED_CHOICES, DEFAULT_PREVALENCE, FINDINGS, GROUND_TRUTH_FILE, MAX_PATIENTS, MAX_SIZE,
    MAX_STUDIES_PER_PATIENT, MIN_SIZE, MODALITIES, ROI_SHAPES, SCHEMA_PATH, SUMMARY_FILE, _check_int,
    make_params, plan_patient, plan_study, StudyInfo, SynthParams)
from devkit.synth_draw import render_image
from devkit.synth_dicom import build_dataset, ground_truth_record
from devkit.synth_plan import MANUFACTURER, _check_probability, _uid  # noqa: F401 - for devkit.synth_series

# --- the dataset -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`generate_dataset` wrote."""

    out_dir: Path
    params: SynthParams
    patients: int
    studies: int
    images: int
    present: dict[str, int]  # images with each finding
    rois: dict[str, int]  # ROIs of each finding
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The content of ``dataset.json`` (no timings: the file is deterministic too)."""
        return {
            "generator": "python -m devkit synth",
            "version": __version__,
            "parameters": self.params.to_dict(),
            "schema": SCHEMA_PATH,
            "label_names": list(FINDINGS),
            "roi_shapes": dict(ROI_SHAPES),
            "layout": "<PatientID>/<StudyInstanceUID>/<SOPInstanceUID>.dcm",
            "ground_truth": GROUND_TRUTH_FILE,
            "counts": {
                "patients": self.patients,
                "studies": self.studies,
                "series": self.studies,
                "images": self.images,
            },
            "labels": {
                name: {
                    "present": self.present[name],
                    "absent": self.images - self.present[name],
                    "rois": self.rois[name],
                    "observed_prevalence": round(self.present[name] / self.images, 4),
                }
                for name in FINDINGS
            },
        }


def iter_studies(params: SynthParams) -> Iterator[StudyInfo]:
    """Every study of the dataset, in (patient, study) order."""
    for p in range(params.patients):
        patient = plan_patient(params, p)
        for k in range(patient.studies):
            yield plan_study(params, patient, k)


def write_image(params: SynthParams, root: Path, job: tuple[int, int]) -> dict[str, Any]:
    """Render and write image (patient, study) under ``root``; return its ground-truth record.

    Self-contained (plans from indices) so worker processes need nothing but the parameters.
    """
    patient_index, study_index = job
    study = plan_study(params, plan_patient(params, patient_index), study_index)
    pixels = render_image(study.plan)
    path = root / study.relative_path
    path.parent.mkdir(parents=True, exist_ok=True)
    build_dataset(study, pixels, params).save_as(path, enforce_file_format=True)
    return ground_truth_record(study)


def default_workers() -> int:
    """One worker per CPU this process may use, at most 8 (writing files does not scale further)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def generate_dataset(
    out_dir: str | Path,
    *,
    force: bool = False,
    progress: bool = True,
    workers: int | None = None,
    **options: Any,
) -> DatasetSummary:
    """Write the synthetic dataset into ``out_dir`` and return its summary.

    ``options`` are the dataset's parameters, as :func:`devkit.synth_plan.make_params` takes them
    (one signature for both): ``patients``, ``studies_per_patient`` (an exact count or an inclusive
    ``(min, max)`` range drawn per patient), ``size``, ``seed``, ``prevalence`` (one probability for
    every finding or a ``{finding: p}`` mapping; unnamed findings keep the default), ``modality``,
    ``bits_stored``.
    ``workers`` processes render in parallel (default :func:`default_workers`; 1 = in this process);
    the output does not depend on it.
    Raises ValueError (``OutputDirError`` for ``out_dir``) with a message naming the bad input, TypeError
    for a parameter that does not exist; nothing is left in ``out_dir`` on failure.
    """
    started = time.perf_counter()
    unknown = sorted(set(options) - set(inspect.signature(make_params).parameters))
    if unknown:
        raise TypeError(f"generate_dataset: no parameter {', '.join(unknown)}")
    params = make_params(**options)
    workers = default_workers() if workers is None else workers
    _check_int("workers", workers, 1, 256)
    jobs = [(p, k) for p in range(params.patients) for k in range(plan_patient(params, p).studies)]
    present = dict.fromkeys(FINDINGS, 0)
    rois = dict.fromkeys(FINDINGS, 0)
    with staged_output_dir(out_dir, force=force) as staging:
        with _records(params, staging, jobs, workers) as records, _progress(progress, len(jobs)) as advance:
            with open(staging / GROUND_TRUTH_FILE, "w", encoding="utf-8") as truth:
                for record in records:  # in job order, whatever the number of workers
                    truth.write(json.dumps(record, separators=(",", ":")) + "\n")
                    for label in record["labels"]:
                        present[label["name"]] += label["present"]
                    for roi in record["rois"]:
                        rois[roi["label"]] += 1
                    advance()
        summary = DatasetSummary(
            out_dir=Path(out_dir),
            params=params,
            patients=params.patients,
            studies=len(jobs),
            images=len(jobs),
            present=present,
            rois=rois,
            seconds=0.0,
        )
        (staging / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return dataclasses.replace(summary, seconds=time.perf_counter() - started)


@contextmanager
def _records(
    params: SynthParams, root: Path, jobs: list[tuple[int, int]], workers: int
) -> Iterator[Iterator[dict[str, Any]]]:
    """Ground-truth records of ``jobs`` in order, written by this process or a process pool."""
    write = functools.partial(write_image, params, root)
    if workers == 1 or len(jobs) < 2 * workers:  # a pool costs more than it saves on a few images
        yield map(write, jobs)
        return
    # fork where there is one: workers inherit the imported modules instead of re-importing them;
    # the pool is created before any progress-bar thread exists, so forking is safe.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        yield pool.map(write, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("synth", total=total)
        yield lambda: bar.advance(task)


# --- CLI -------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``synth`` to the ``python -m labeling`` command line (see labeling/cli.py)."""
    from devkit import synth_series  # it imports this module: only once this one is loaded

    parser = subparsers.add_parser(
        "synth",
        description=(
            "Generate synthetic frontal chest radiographs (DX or CR, 16-bit MONOCHROME2, Explicit "
            "VR Little Endian) for patients with one or more studies, with the findings "
            f"{', '.join(FINDINGS)} drawn at the given prevalences. Files go to "
            "OUT/<PatientID>/<StudyUID>/<SOPUID>.dcm; the ground truth (label shape of "
            f"docs/architecture.md) to OUT/{GROUND_TRUTH_FILE}, a summary to OUT/{SUMMARY_FILE}. "
            "The same options give the same files and UIDs."
        ),
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR",
        help="output directory (created; must be empty unless --force)",
    )
    parser.add_argument(
        "--patients", type=_int_in(1, MAX_PATIENTS), default=20, metavar="N",
        help="number of patients (default 20)",
    )
    parser.add_argument(
        "--studies-per-patient", type=_studies_range, default=(2, 2), metavar="N|MIN-MAX",
        help="studies per patient, exact or a range drawn per patient (default 2)",
    )
    parser.add_argument(
        "--size", type=_int_in(MIN_SIZE, MAX_SIZE), default=None, metavar="PX",
        help=f"pixels per side, {MIN_SIZE}..{MAX_SIZE} (default 256; with --series at most "
        f"{synth_series.MAX_SERIES_SIZE}, default {synth_series.DEFAULT_SERIES_SIZE})",
    )
    parser.add_argument(
        "--seed", type=_int_in(0, 2**63 - 1), default=0,
        help="random seed; same seed, same files and UIDs (default 0)",
    )
    parser.add_argument(
        "--prevalence", type=_prevalence_arg, action="append", default=[], metavar="P|NAME=P",
        help=f"probability of a finding per image: P for all, or NAME=P for one of {', '.join(FINDINGS)}; "
        f"repeatable (default {DEFAULT_PREVALENCE} each)",
    )
    parser.add_argument("--modality", type=str.upper, choices=MODALITIES, default="DX", help="DX (default) or CR")
    parser.add_argument(
        "--bits-stored", type=int, choices=BITS_STORED_CHOICES, default=12,
        help="BitsStored, 12 (default) or 14",
    )
    parser.add_argument(
        "--workers", type=_int_in(1, 256), default=None, metavar="N",
        help=f"processes rendering in parallel (default: CPUs, at most 8; here {default_workers()}); same output",
    )
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out directory")
    add_progress_argument(parser)
    ct = parser.add_argument_group("CT series instead of radiographs (devkit/synth_series.py; uses --out, "
                                   "--size, --seed, --force and one unnamed --prevalence P for nodules)")
    ct.add_argument("--series", type=_int_in(1, synth_series.MAX_SERIES), metavar="N",
                    help="write N CT-like chest series with nodules, plus one multi-frame (Enhanced CT) instance")
    ct.add_argument("--slices", type=_int_in(synth_series.MIN_SLICES, synth_series.MAX_SLICES),
                    default=synth_series.DEFAULT_SLICES, metavar="K",
                    help=f"slices per series (default {synth_series.DEFAULT_SLICES})")
    ct.add_argument("--multiframe-from", choices=synth_series.MULTIFRAME_SOURCES, default="first",
                    help="the series the multi-frame instance copies: the first (default), or the first with a "
                         "nodule, so its ground truth has ROIs on frames (the first when none has)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The ``synth`` command: returns 0, or 2 with one error line on stderr for bad input."""
    with sigterm_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return _run_series(args) if args.series is not None else _run_chest(args)
    except OutputDirError as exc:
        print(f"synth: error: --out {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"synth: error: {exc}", file=sys.stderr)
        return 2


def _run_chest(args: argparse.Namespace) -> int:
    prevalence: dict[str, float] = {}
    for name, value in args.prevalence:
        if name is None:
            prevalence.update(dict.fromkeys(FINDINGS, value))
        else:
            prevalence[name] = value
    summary = generate_dataset(
        args.out,
        patients=args.patients,
        studies_per_patient=args.studies_per_patient,
        size=256 if args.size is None else args.size,
        seed=args.seed,
        prevalence=prevalence or DEFAULT_PREVALENCE,
        modality=args.modality,
        bits_stored=args.bits_stored,
        force=args.force,
        progress=args.progress,
        workers=args.workers,
    )
    _print_summary(summary)
    return 0


def _run_series(args: argparse.Namespace) -> int:
    from devkit import synth_series

    if any(name is not None for name, _ in args.prevalence):
        raise ValueError("--prevalence: with --series give one probability P (for nodules), not NAME=P")
    summary = synth_series.generate_series_dataset(
        args.out, series=args.series, slices=args.slices,
        size=synth_series.DEFAULT_SERIES_SIZE if args.size is None else args.size, seed=args.seed,
        prevalence=args.prevalence[-1][1] if args.prevalence else synth_series.DEFAULT_NODULE_PREVALENCE,
        multiframe_from=args.multiframe_from, force=args.force, progress=args.progress)
    print(f"{summary.series} series ({summary.images} images, {summary.multiframe} multi-frame) with "
          f"{summary.nodules} nodules in {summary.out_dir}; ground truth: {summary.out_dir / GROUND_TRUTH_FILE} "
          f"({summary.seconds:.1f} s)")
    return 0


def _print_summary(summary: DatasetSummary) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{summary.images} images, {summary.patients} patients, {summary.studies} studies in {summary.out_dir}"
    )
    table.add_column("finding")
    table.add_column("present", justify="right")
    table.add_column("prevalence", justify="right")
    table.add_column("ROIs", justify="right")
    table.add_column("ROI shape")
    for name in FINDINGS:
        n = summary.present[name]
        asked = summary.params.prevalence[name]
        prevalence = f"{n / summary.images:.2f} (asked {asked:.2f})"
        table.add_row(name, str(n), prevalence, str(summary.rois[name]), ROI_SHAPES[name])
    console = Console()
    console.print(table)
    console.print(f"ground truth: {summary.out_dir / GROUND_TRUTH_FILE}  ({summary.seconds:.1f} s)")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _studies_range(text: str) -> tuple[int, int]:
    parse = _int_in(1, MAX_STUDIES_PER_PATIENT)
    low_text, sep, high_text = text.partition("-")
    low = parse(low_text)
    high = parse(high_text) if sep else low
    if low > high:
        raise argparse.ArgumentTypeError(f"range {text!r} is empty (minimum > maximum)")
    return low, high


def _prevalence_arg(text: str) -> tuple[str | None, float]:
    name, sep, value_text = text.rpartition("=")
    canonical: str | None = None
    if sep:
        matches = [f for f in FINDINGS if f.casefold() == name.strip().casefold()]
        if not matches:
            raise argparse.ArgumentTypeError(
                f"unknown finding {name!r} in {text!r}; expected one of {', '.join(FINDINGS)}"
            )
        canonical = matches[0]
    try:
        value = float(value_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: probability must be a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: probability must be between 0 and 1")
    return canonical, value
