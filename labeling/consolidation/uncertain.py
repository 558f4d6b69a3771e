"""What an annotator's "uncertain" counts as: the schema's ``uncertain_policy``, applied here only.

An answer may mark a label *uncertain* (``{"name": …, "uncertain": true}``, a schema with
``uncertain: true``; :mod:`labeling.contracts.answer`). The answer is stored as given; the policy
applies when consolidating, in :func:`votes`, which every consolidation path (the portal's per-item
:func:`.job.consolidate_item`, close-job's and GT's post-label Lambda's :func:`.job.consolidate_job`)
reads its label votes from, so all of them decide alike:

* ``ignore`` (default; CheXpert's U-Ignore): no vote. The label counts as not answered by that worker;
  a label nobody answered decides as :mod:`.consistency` says.
* ``absent`` (U-Zeros): an absent vote, like the worker's "absent".
* ``present`` (U-Ones): a present vote, like the worker's "present".

(Irvin et al., "CheXpert: A Large Chest Radiograph Dataset with Uncertainty Labels and Expert
Comparison", AAAI 2019.) A vote from an uncertain answer weighs
as any vote of that worker in Dawid–Skene, and the consistency rule applies to it as to any vote:
under ``absent``, an ROI that an uncertain annotator drew for the label survives only when the label
is consolidated present.

Whatever the policy, the consolidated content says how many answers were uncertain for each label
(``uncertain_answers`` on the label's entry, left out when none was), so a reviewer sees it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from labeling.contracts.answer import DEFAULT_UNCERTAIN_POLICY, UNCERTAIN_POLICIES, check_uncertain_policy

from .inputs import ParsedAnswer

__all__ = ["DEFAULT_UNCERTAIN_POLICY", "UNCERTAIN_POLICIES", "check_uncertain_policy", "uncertain_counts", "votes"]

_VOTE = {"absent": False, "present": True}


def votes(answer: ParsedAnswer, policy: str) -> Mapping[str, bool]:
    """The worker's present/absent votes per label under ``policy`` (the module's rules)."""
    if not answer.uncertain or policy == "ignore":
        return answer.labels
    return {**answer.labels, **dict.fromkeys(answer.uncertain, _VOTE[policy])}


def uncertain_counts(answers: Sequence[ParsedAnswer], names: Sequence[str]) -> list[int]:
    """Per label of ``names``: how many of one object's answers marked it uncertain."""
    if not any(answer.uncertain for answer in answers):
        return [0] * len(names)
    counts = dict.fromkeys(names, 0)
    for answer in answers:
        for name in answer.uncertain:
            counts[name] += 1
    return [counts[name] for name in names]
