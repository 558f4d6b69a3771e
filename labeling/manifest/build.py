"""Building a labeling manifest from Orthanc (``python -m labeling manifest``): the orchestration.

:func:`build_manifest` chooses how to read Orthanc (the manifest index, :mod:`labeling.manifest.index`,
or one find + bulk reads, :mod:`labeling.manifest.query`), sorts, groups series tasks
(:mod:`labeling.manifest.series`) and applies ``--limit``. The pieces:

* :mod:`labeling.manifest.format` — the manifest file (read/write, ``KNOWN_KEYS``, the line of the
  label contract);
* :mod:`labeling.manifest.filters` — the filters (``--modality``, ``--study-uid`` …);
* :mod:`labeling.manifest.exclusions` — the non-image exclusion tables;
* :mod:`labeling.manifest.query` — the Orthanc walk;
* :mod:`labeling.manifest.cli` — the command (flags, progress, summary, ``--report``).

This module also re-exports the manifest file and filter names the portal imports from here
(``read_manifest``, ``ManifestLine``, ``parse_filters`` …); new code imports them from their module.

Order and limit
---------------
Lines are sorted by study date (undated last), StudyInstanceUID, SeriesNumber, InstanceNumber
(numerically; missing last) and Orthanc ID, so the same query gives the same file. ``--limit N``
keeps the first N lines of that order.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Optional

from labeling.manifest.filters import FilterError, ManifestFilters, parse_filters  # noqa: F401 - re-exported
from labeling.manifest.format import (  # noqa: F401 - re-exported
    KNOWN_KEYS, ManifestError, ManifestLine, read_manifest, write_manifest)
from labeling.manifest.query import (
    BuildResult, Candidate, OrthancLike, Reporter, _Counted, _SilentReporter, find_candidates)

LEVELS: Final = ("instance", "series")
"""``--level``: one task per image instance, or one per series / multi-frame instance (README)."""


def build_manifest(
    client: OrthancLike,
    *,
    schema_name: str,
    labels: Sequence[str],
    task_type: str,
    filters: ManifestFilters = ManifestFilters(),
    limit: Optional[int] = None,
    include_phi: bool = False,
    check_all_sop_classes: bool = False,
    reporter: Optional[Reporter] = None,
    level: str = "instance",
    use_index: bool = False,
    index_file: Optional[Path] = None,
    uncertain_policy: Optional[str] = None,
) -> BuildResult:
    """Query Orthanc and return the manifest lines (non-images excluded, sorted, limited).

    ``client`` is an :class:`labeling.orthanc.client.OrthancClient` (or anything with its ``find``
    and ``request``, see :class:`OrthancLike`). Nothing is written: see :func:`write_manifest`.
    ``use_index``: list the whole server and match here, or replay the changes since the index
    saved in ``index_file`` (:mod:`labeling.manifest.index`); otherwise one find + bulk reads.
    ``uncertain_policy``: written on every line (the schema's :attr:`LabelSchema.line_uncertain_policy`).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    started = time.perf_counter()
    reporter = reporter or _SilentReporter()
    result = BuildResult(lines=[])
    orthanc = _Counted(client, result.requests)

    index = None
    if use_index:
        from labeling.manifest.index import find_candidates_indexed

        images, index = find_candidates_indexed(
            orthanc, str(getattr(client, "url", "")), filters, result, reporter,
            check_all_sop_classes=check_all_sop_classes, index_file=index_file)
        result.index = index.how
    else:
        images = find_candidates(orthanc, filters, result, reporter, check_all_sop_classes=check_all_sop_classes)
    images.sort(key=Candidate.sort_key)
    if level == "series":
        from labeling.manifest.series import series_lines

        result.lines = _with_policy(series_lines(orthanc, images, result, schema_name=schema_name, labels=labels,
                                                 task_type=task_type, include_phi=include_phi, reporter=reporter,
                                                 cache=index), uncertain_policy)
        if index is not None and index_file and index.changed:  # the file tags just read, for next time
            from labeling.manifest.index import save_index

            save_index(index, index_file)
        if limit is not None and len(result.lines) > limit:
            result.limited_out = len(result.lines) - limit
            result.lines = result.lines[:limit]
        result.seconds = time.perf_counter() - started
        return result
    if limit is not None and len(images) > limit:
        result.limited_out = len(images) - limit
        images = images[:limit]
    result.lines = _with_policy([c.to_line(schema_name, labels, task_type, include_phi=include_phi) for c in images],
                                uncertain_policy)
    result.seconds = time.perf_counter() - started
    return result


def _with_policy(lines: list[ManifestLine], uncertain_policy: Optional[str]) -> list[ManifestLine]:
    if uncertain_policy is None:
        return lines
    return [dataclasses.replace(line, uncertain_policy=uncertain_policy) for line in lines]
