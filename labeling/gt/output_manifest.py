"""Output manifests: the one reader (and writer) of GT-format output manifest files from either backend.

One line is the label contract's :mod:`labeling.contracts.output_line` (format, line rules,
:class:`OutputRecord`, :func:`parse_output_line`, :func:`output_line`; re-exported here). Training,
the portal's export check, the SR write-back and the notebook read files through
:func:`read_output_manifest`; the portal export writes through :func:`output_line` and
:func:`write_output_manifest`.

File rules (documented once, here)
==================================
* Every line of a file must use the same label attribute (given, or inferred from the first line
  that has one): one job per file.
* Failed lines (GT's ``failure-reason``) are not malformed: :func:`scan_output_manifest` returns
  them in ``failed`` and :func:`read_output_manifest` leaves them out.
* Every problem raises :class:`OutputManifestError` whose message starts ``<file>:<line>:``
  (1-based, as an editor shows them) and names the key. Blank lines are skipped.
* :func:`write_output_manifest` writes lines atomically (a temporary file in the same folder,
  renamed into place), so a failed export leaves no partial file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from labeling.contracts.output_line import (METADATA_SUFFIX, OUTPUT_TYPE, FailedLine, OutputManifestError,
                                            OutputRecord, infer_label_attribute, output_line, parse_output_line)
from labeling.outdir import atomic_file

__all__ = ["METADATA_SUFFIX", "OUTPUT_TYPE", "FailedLine", "OutputManifest", "OutputManifestError", "OutputRecord",
           "infer_label_attribute", "output_line", "parse_output_line", "read_output_manifest",
           "scan_output_manifest", "write_output_manifest"]


@dataclass(frozen=True)
class OutputManifest:
    records: list[OutputRecord]
    failed: list[FailedLine]
    label_attribute: Optional[str]


# --------------------------------------------------------------------------------------- reading

def _where(name: str, number: int) -> str:
    return f"{name}:{number}"


def _lines(path_or_lines: Union[str, os.PathLike, Iterable[Any]],
           name: Optional[str] = None) -> tuple[str, Iterable[tuple[int, Any]]]:
    """``(display name, (line number, raw line | parsed dict))``."""
    if isinstance(path_or_lines, (str, os.PathLike)):
        path = Path(path_or_lines)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise OutputManifestError(f"{path}: cannot read the output manifest: {reason}") from None
        return name or str(path), enumerate(text.splitlines(), start=1)
    return name or "<lines>", enumerate(path_or_lines, start=1)


def scan_output_manifest(path_or_lines: Union[str, os.PathLike, Iterable[Any]],
                         label_attribute: Optional[str] = None, *,
                         problems: Optional[list[str]] = None, name: Optional[str] = None) -> OutputManifest:
    """Every labelled record and every failed line; raises OutputManifestError on the first bad line.

    ``path_or_lines``: a file path, or an iterable of lines (JSON text or already parsed dicts);
    ``name`` the file name messages start with (default: the path, or ``<lines>``).
    ``problems``: a list that collects each bad line's message instead (the line is skipped), and
    where a line with neither ``<attr>`` nor ``<attr>-metadata`` counts as failed: GT writes those for
    objects it could not label (``python -m labeling gt fetch-output`` counts a job's lines this way).
    """
    name, numbered = _lines(path_or_lines, name)
    records: list[OutputRecord] = []
    failed: list[FailedLine] = []
    attr = label_attribute
    for number, raw in numbered:
        where = _where(name, number)
        try:
            if isinstance(raw, (str, bytes, bytearray)):
                if not raw.strip():
                    continue
                try:
                    raw = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise OutputManifestError(f"{where}: not valid JSON ({exc})") from None
            if isinstance(raw, Mapping):
                if problems is not None and attr is not None and attr not in raw \
                        and attr + METADATA_SUFFIX not in raw:
                    failed.append(FailedLine(number, raw.get("source"), raw.get("source-ref"), "not labelled"))
                    continue
                if attr is None:
                    attr = infer_label_attribute(raw)
                elif label_attribute is None and attr + METADATA_SUFFIX not in raw \
                        and infer_label_attribute(raw) is not None:
                    # an inferred attribute must be every line's: one job per file
                    raise OutputManifestError(
                        f"{where}: label attribute {infer_label_attribute(raw)!r} differs from {attr!r} "
                        "of the lines before (one job per file)")
            result = parse_output_line(raw, label_attribute=attr, where=where, line_number=number)
        except OutputManifestError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
            continue
        (failed if isinstance(result, FailedLine) else records).append(result)  # type: ignore[arg-type]
    return OutputManifest(records, failed, attr)


def read_output_manifest(path_or_lines: Union[str, os.PathLike, Iterable[Any]],
                         label_attribute: Optional[str] = None) -> list[OutputRecord]:
    """The labelled records of an output manifest (failed lines left out); see the module rules."""
    return scan_output_manifest(path_or_lines, label_attribute).records


# --------------------------------------------------------------------------------------- writing

def write_output_manifest(path: Union[str, os.PathLike], lines: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``lines`` as JSON Lines, atomically (temporary file in the same folder, then rename)."""
    out = Path(path)
    text = "".join(json.dumps(dict(line), ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
                   for line in lines)
    with atomic_file(out, "w", encoding="utf-8") as handle:
        handle.write(text)
    return out
