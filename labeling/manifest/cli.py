"""``python -m labeling manifest``: the command (flags, progress, summary, ``--report``).

``python -m labeling manifest --schema FILE [filters] --out FILE`` builds the manifest with
:func:`labeling.manifest.build.build_manifest` and writes it with
:func:`labeling.manifest.format.write_manifest`.

Exit codes
----------
0 written; 1 Orthanc or file error; 2 bad arguments (one line naming the flag) or no image instance
matched (the message says what was excluded); 3 Orthanc unreachable.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from labeling.cli import BadInput, add_progress_argument, positive_int
from labeling.manifest.build import LEVELS, build_manifest
from labeling.manifest.filters import FilterError, ManifestFilters, parse_filters
from labeling.manifest.format import write_manifest
from labeling.manifest.query import BuildResult


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``manifest`` to ``python -m labeling`` (see labeling/cli.py)."""
    from labeling.orthanc.connection import add_connection_arguments

    parser = subparsers.add_parser(
        "manifest",
        description=(
            "Query Orthanc and write one JSON line per image instance: "
            '{"source": <Orthanc instance ID>, "labels": [...], "task_type": ..., "schema": ..., '
            "plus modality, study/series/SOP instance UIDs and frames} (--level series: one line per "
            "series, slices ordered, or per multi-frame instance). Non-image objects (SR, KO, "
            "PR, RT, SEG, waveforms, documents…) are excluded and counted. Lines are sorted by study "
            "date, study UID, series number, instance number. Exit 0: written; 1: Orthanc or file "
            "error; 2: bad arguments or no image matched; 3: Orthanc unreachable."
        ),
    )
    parser.add_argument("--schema", required=True, type=Path, metavar="FILE",
                        help="label schema file (YAML/JSON, see labeling/contracts/schema.py), e.g. schemas/chest-xray.yaml")
    parser.add_argument("--out", required=True, metavar="FILE", help="manifest to write ('-' for stdout)")
    filters = parser.add_argument_group("filters (all must match; none: every image in Orthanc)")
    filters.add_argument("--modality", action="append", default=[], metavar="CODE",
                         help="series Modality, repeatable or comma-separated (e.g. DX,CR)")
    filters.add_argument("--study-uid", action="append", default=[], metavar="UID",
                         help="StudyInstanceUID (repeatable)")
    filters.add_argument("--series-uid", action="append", default=[], metavar="UID",
                         help="SeriesInstanceUID (repeatable)")
    filters.add_argument("--patient-id", metavar="ID",
                         help="PatientID; Orthanc wildcards * and ? allowed (e.g. 'SYN7-*')")
    filters.add_argument("--study-date-from", metavar="DATE", help="first StudyDate, YYYYMMDD or YYYY-MM-DD")
    filters.add_argument("--study-date-to", metavar="DATE", help="last StudyDate (inclusive)")
    filters.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                         help="Orthanc instance metadata equal to VALUE (repeatable; matched on the "
                              "metadata read with the instances: Orthanc 1.10 cannot search metadata)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="write at most N lines (the first N in order)")
    parser.add_argument("--level", choices=LEVELS, default="instance",
                        help="instance (default): one line per image; series: one line per series, slices "
                             "ordered along the normal, plus one per multi-frame instance (README, 'Series tasks')")
    parser.add_argument("--include-phi", action="store_true",
                        help="also write patient_id and study_date (left out by default: PHI)")
    parser.add_argument("--check-sop-class", action="store_true",
                        help="read every instance's SOP class, also in series whose Modality says "
                             "image (DX, CT, MR...); costs Orthanc ~40%% more per instance read")
    parser.add_argument("--index-cache", type=Path, metavar="FILE",
                        help="the manifest index of this Orthanc (default: $MANIFEST_INDEX_FILE, which "
                             "local up's orthanc.env sets to the stack's folder, else ~/.cache/dicom-annotate/"
                             "manifest-index/<hash of the URL>.json): the next build replays only "
                             "Orthanc's changes since")
    parser.add_argument("--no-index-cache", action="store_true",
                        help="neither read nor write the manifest index: a full build")
    parser.add_argument("--report", type=Path, metavar="FILE", help="write a JSON report (counts, exclusions, timings)")
    add_progress_argument(parser, old_flag="--quiet")
    add_connection_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``python -m labeling manifest``: query, write, summarise; returns the exit code."""
    from labeling.orthanc.connection import ConnectionError_, orthanc_client_from_args
    from labeling.contracts.schema import SchemaError, load_schema

    try:
        filters = parse_filters(
            modalities=args.modality, study_uids=args.study_uid, series_uids=args.series_uid,
            patient_id=args.patient_id, study_date_from=args.study_date_from,
            study_date_to=args.study_date_to, metadata=args.metadata,
        )
    except FilterError as exc:
        raise BadInput(str(exc)) from None
    try:
        schema = load_schema(args.schema)
    except SchemaError as exc:
        raise BadInput(f"--schema: {exc}") from None
    try:
        client = orthanc_client_from_args(args)
    except ConnectionError_ as exc:
        raise BadInput(str(exc)) from None

    from labeling.orthanc.client import OrthancError

    console = _stderr_console()
    use_index, index_file = choose_index(filters, client.url, args.index_cache, args.no_index_cache)
    try:
        client.system(retries=0)  # unreachable: fail now, with the CLI's hint and exit 3
        with _RichReporter(console, enabled=args.progress) as reporter:
            result = build_manifest(
                client, schema_name=schema.name, labels=schema.label_names, task_type=schema.task_type,
                filters=filters, limit=args.limit, include_phi=args.include_phi,
                check_all_sop_classes=args.check_sop_class, reporter=reporter,
                use_index=use_index, index_file=index_file, level=getattr(args, "level", "instance"),
                uncertain_policy=schema.line_uncertain_policy,
            )
    except OrthancError as exc:
        if exc.status is None or exc.status in (401, 403):
            raise  # the CLI's one line for an unreachable or refusing service (exit 3)
        _say(console, f"manifest: cannot query Orthanc at {client.url}: {exc}", "red")
        return 1
    except Exception as exc:  # noqa: BLE001 - one clear line for any Orthanc failure, not a traceback
        _say(console, f"manifest: cannot query Orthanc at {client.url}: {exc}", "red")
        return 1
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()

    for warning in result.warnings:
        _say(console, f"warning: {warning}", "yellow")
    report = _report(args, schema.name, filters, client.url, result)
    if not result.lines:
        described = _describe_filters(filters)
        _say(console, "manifest: no image instance matches the filters"
             + (f" ({described})" if described else "")
             + f"; {result.matched} instances matched the query, "
             + _exclusion_sentence(result) + "; nothing written", "red")
        _write_report(args, report, console)
        return 2
    try:
        written = write_manifest(result.lines, args.out)
    except OSError as exc:
        _say(console, f"manifest: cannot write {args.out}: {exc.strerror or exc}", "red")
        return 1
    report["written"] = written
    _print_summary(console, result, written, args.out)
    if _write_report(args, report, console):
        return 1
    return 0


def choose_index(filters: ManifestFilters, url: str, index_cache: Optional[Path],
                 no_index_cache: bool) -> tuple[bool, Optional[Path]]:
    """(use the index, its file): the index when one is saved, or when the query would read most of
    the server anyway; a find when it names a few studies, series or patients and none is saved."""
    from labeling.manifest.index import default_index_file

    if no_index_cache:
        return not filters.selective, None
    index_file = index_cache or default_index_file(url)
    return (not filters.selective or index_file.exists()), index_file


def _describe_filters(filters: ManifestFilters) -> str:
    """The filters as flags, e.g. ``--modality DX,CR, --metadata Origin=RestApi``."""
    parts = []
    for key, value in filters.to_dict().items():
        if isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in value.items())
        if value:
            parts.append(f"--{key.replace('_', '-')} {value}")
    return ", ".join(parts)


def _exclusion_sentence(result: BuildResult) -> str:
    total = sum(result.excluded.values())
    if not total:
        return "none of them excluded as non-image"
    reasons = "; ".join(f"{reason}: {count}" for reason, count in result.excluded.most_common())
    return f"{total} excluded as non-image ({reasons})"


def _print_summary(console: Any, result: BuildResult, written: int, out: str) -> None:
    requests = ", ".join(f"{n} {kind}" for kind, n in sorted(result.requests.items()))
    _say(console, f"matched {result.matched} instances; {_exclusion_sentence(result)}")
    if result.metadata_mismatch:
        _say(console, f"--metadata: {result.metadata_mismatch} images did not match")
    if result.limited_out:
        _say(console, f"--limit: {result.limited_out} more matching images left out")
    if result.series_flags:
        flags = ", ".join(f"{code}: {n}" for code, n in result.series_flags.most_common())
        _say(console, f"--level series: flagged tasks ({flags}); see each line's flags", "yellow")
    where = "stdout" if out == "-" else out
    _say(console, f"wrote {written} lines to {where} in {result.seconds:.2f} s ({requests} requests)", "green")


def _report(args: argparse.Namespace, schema_name: str, filters: ManifestFilters, url: str,
            result: BuildResult) -> dict[str, Any]:
    return {
        "out": args.out,
        "schema": schema_name,
        "orthanc_url": url,
        "filters": filters.to_dict(),
        "limit": args.limit,
        "include_phi": args.include_phi,
        "matched": result.matched,
        "excluded": {
            "total": sum(result.excluded.values()),
            "by_reason": dict(result.excluded.most_common()),
            "examples": result.excluded_examples,
        },
        "metadata_mismatch": result.metadata_mismatch,
        "unknown_sop_class": result.unknown_sop_class,
        "vanished": result.vanished,
        "images": result.images,
        "limited_out": result.limited_out,
        "written": 0,
        "requests": dict(result.requests),
        "index": result.index,
        "level": getattr(args, "level", "instance"),
        "series_flags": dict(result.series_flags.most_common()),
        "warnings": result.warnings,
        "seconds": round(result.seconds, 3),
    }


def _write_report(args: argparse.Namespace, report: Mapping[str, Any], console: Any) -> bool:
    """Write ``--report``; True on failure (already printed)."""
    if not args.report:
        return False
    try:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        _say(console, f"manifest: cannot write --report {args.report}: {exc.strerror or exc}", "red")
        return True
    return False


def _say(console: Any, text: str, style: Optional[str] = None) -> None:
    """Print ``text`` as is: file names, IDs and Orthanc messages may hold ``[...]``, which rich
    would otherwise read as markup."""
    console.print(text, style=style, markup=False, highlight=False)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


class _RichReporter:
    """Progress on stderr: a spinner per phase, a bar for per-instance work (rich)."""

    def __init__(self, console: Any, *, enabled: bool) -> None:
        self._console = console
        self._enabled = enabled and console.is_terminal
        self._progress: Any = None
        self._task: Any = None
        self._lock = threading.Lock()

    def __enter__(self) -> _RichReporter:
        if self._enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(), console=self._console,
                                      transient=True)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def phase(self, text: str, total: Optional[int] = None) -> None:
        if self._progress is None:
            return
        with self._lock:
            if self._task is not None:
                self._progress.update(self._task, visible=False)
            self._task = self._progress.add_task(text, total=total)

    def advance(self, count: int = 1) -> None:
        if self._progress is None or self._task is None:
            return
        with self._lock:
            self._progress.advance(self._task, count)


