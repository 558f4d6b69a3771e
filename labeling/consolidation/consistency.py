"""The one self-consistency rule between a label's present/absent and its ROIs.

A rectangle around an opacity and "Opacity absent" in the same answer contradict each other; an
output manifest must never carry both (issue 12: a 1–1 split exported exactly that). The rule,
stated once and applied here only — by :func:`reconcile` to every consolidated object (GT's
post-label Lambda, the portal at K answers, at job close and on review accept) and by
:func:`contradictions` to every single answer the portal accepts (annotator or reviewer edit):

* **The label decision rules; its ROIs follow.** When at least one worker answered a label's
  present/absent for the object, the consolidated ``present`` (Dawid–Skene / vote) stands, and
  consolidated ROIs of a label consolidated *absent* are dropped. A single answer that marks a label
  absent and draws an ROI for it is refused.
* **Nobody answered the label** (an ROI-only task, a label left out, or answered "uncertain"
  under the default ``ignore`` policy, which makes it no vote — :mod:`.uncertain`): it is ``present`` exactly
  when a consolidated ROI of it survives, with the highest such ROI's confidence; otherwise the
  label's prior decides as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def reconcile(names: Sequence[str], present: list[bool], confidence: list[float], rois: list[dict[str, Any]],
              answered: Sequence[bool]) -> tuple[list[bool], list[float], list[dict[str, Any]]]:
    """``(present, confidence, rois)`` of one consolidated object made consistent by the rule above.

    ``answered[j]``: whether any worker gave a present/absent answer for ``names[j]`` on this object.
    """
    present, confidence = list(present), list(confidence)
    best: dict[str, float] = {}
    for roi in rois:
        best[roi["label"]] = max(best.get(roi["label"], 0.0), float(roi.get("confidence", 0.0)))
    for j, name in enumerate(names):
        if not answered[j] and name in best:
            present[j], confidence[j] = True, best[name]
    absent = {name for j, name in enumerate(names) if not present[j]}
    return present, confidence, [roi for roi in rois if roi["label"] not in absent]


def contradictions(labels: Mapping[str, bool], roi_labels: Iterable[str]) -> list[int]:
    """Indexes of ROIs whose label the same answer marks absent (the rule's single-answer form)."""
    return [index for index, label in enumerate(roi_labels) if labels.get(label) is False]
