"""The one error type of the label contract, and how a wrong value is described in it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ContractError(ValueError):
    """A value breaks the label contract. ``field`` is the key path inside the value
    (``rois[2].points``, ``image.rows``), ``reason`` what is wrong; ``str()`` is ``<field>: <reason>``.

    Callers that know more context (the item, the worker, the file and line) wrap it: consolidation's
    ``ConsolidationError`` is a subclass, the output-manifest reader prefixes ``<file>:<line>:``.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")

    def __reduce__(self):  # picklable across processes (subclasses override with their own arguments)
        return (type(self), (self.field, self.reason))


def describe_value(value: Any, *, json: bool = False) -> str:
    """A short phrase for a wrong value, in YAML words (``json=False``) or JSON words.

    YAML users see ``No`` turn into ``false``: naming the type says so.
    """
    if value is None:
        return "null" if json else "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, Mapping):
        return "an object" if json else "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__
