"""The label-schema file format, defined once.

A label schema tells a labeling job which labels exist, which ROI shapes an annotator may draw for
each, what the annotators read before they start, and how many annotators see each item. Both
labeling backends (portal and Ground Truth) and training read schemas through this module only.

File format (YAML or JSON; JSON is chosen by a ``.json`` suffix, anything else is read as YAML)::

    name: chest-xray                      # str, required
    task_type: classification+roi         # "classification" | "roi" | "classification+roi"
    labels:                               # non-empty list, names unique (case-insensitive)
      - name: Opacity                     # str, 1..64 characters, no control characters
        description: Focal airspace ...   # str, optional
        shapes: [ellipse, rectangle]      # optional subset of rectangle/ellipse/polygon/point
    instructions: Mark every ...          # str, optional (default "")
    annotators_per_item: 3                # int >= 1, optional (default 3)
    required: {labels: true}              # optional; labels: every label must be answered
    uncertain: false                      # optional; true: "uncertain" is a third choice per label
    uncertain_policy: ignore              # optional, only with uncertain: true (default "ignore"): what
                                          #   consolidation counts an "uncertain" answer as: "ignore" no
                                          #   vote, "absent" an absent vote, "present" a present vote
                                          #   (CheXpert's U-Ignore / U-Zeros / U-Ones; contracts/answer.py)

The label names are the ``labels[].name`` values of the label shape in docs/architecture.md ("The label
shape"): an annotation carries one ``{"name", "present"}`` entry per schema label, in schema order,
and each ROI's ``label`` is a schema label name whose ``shapes`` list contains the ROI's ``shape`` (a
name of the shape registry, :mod:`labeling.contracts.shapes`, which says what its points mean).

Names are kept verbatim, HTML characters included: escaping is the renderer's job (the GT template
is Liquid with autoescape, the portal escapes too), and a name changed here would no longer match
the labels already stored in manifests.

Every validation failure raises :class:`SchemaError` with one message of the form
``<source>: <key path>: <what is wrong>``, e.g.
``schemas/chest.yaml: labels[2].name: duplicate label 'Opacity' (same as labels[0] 'opacity'; names
are case-insensitive)``.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

import yaml

from labeling.contracts.answer import DEFAULT_UNCERTAIN_POLICY, UNCERTAIN_POLICIES
from labeling.contracts.errors import describe_value
from labeling.contracts.manifest_line import TASK_TYPES
from labeling.contracts.shapes import SHAPES  # the shape registry's names, in canonical order

__all__ = ["DEFAULT_ANNOTATORS_PER_ITEM", "MAX_LABEL_NAME_LENGTH", "SHAPES", "TASK_TYPES", "UNCERTAIN_POLICIES",
           "Label", "LabelSchema", "Required", "SchemaError", "describe_value", "load_schema"]

MAX_LABEL_NAME_LENGTH: Final = 64
DEFAULT_ANNOTATORS_PER_ITEM: Final = 3

_TOP_LEVEL_KEYS: Final = (
    "name", "task_type", "labels", "instructions", "annotators_per_item", "required", "uncertain",
    "uncertain_policy",
)
_LABEL_KEYS: Final = ("name", "description", "shapes")
_REQUIRED_KEYS: Final = ("labels",)


class SchemaError(ValueError):
    """A label schema is invalid; the message names the source, the key path and the problem."""


@dataclass(frozen=True)
class Label:
    """One schema label: a finding an annotator marks present/absent and may outline.

    ``shapes`` are the ROI shapes allowed for this label: a subset of :data:`SHAPES`, in the
    order the schema file gives them (all four, in canonical order, when the file omits it).
    """

    name: str
    description: str = ""
    shapes: tuple[str, ...] = SHAPES

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "shapes": list(self.shapes)}


@dataclass(frozen=True)
class Required:
    """What an annotator must answer before submitting.

    ``labels``: every schema label needs an explicit present/absent answer.
    """

    labels: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.labels}


@dataclass(frozen=True)
class LabelSchema:
    """A validated label schema (see the module docstring for the file format)."""

    name: str
    task_type: str
    labels: tuple[Label, ...]
    instructions: str = ""
    annotators_per_item: int = DEFAULT_ANNOTATORS_PER_ITEM
    required: Required = field(default_factory=Required)
    uncertain: bool = False  # annotators may answer a label "uncertain"
    uncertain_policy: str = DEFAULT_UNCERTAIN_POLICY  # what consolidation counts "uncertain" as

    @property
    def label_names(self) -> tuple[str, ...]:
        """Label names in schema order: the order of ``labels`` in every annotation."""
        return tuple(label.name for label in self.labels)

    @property
    def line_uncertain_policy(self) -> str | None:
        """What a manifest line built for this schema carries as ``uncertain_policy`` (None: no key,
        the schema does not offer "uncertain"); :mod:`labeling.contracts.manifest_line`."""
        return self.uncertain_policy if self.uncertain else None

    def line_policy_problem(self, line_policy: str | None) -> str | None:
        """Why a manifest line's ``uncertain_policy`` (None: the line has none, which reads as
        ``ignore``) does not fit this schema, or None when it does: a line built for another
        version of the schema would be consolidated differently by GT's post-label Lambda."""
        if (line_policy or DEFAULT_UNCERTAIN_POLICY) == self.uncertain_policy:
            return None
        return (f"uncertain_policy: {line_policy or DEFAULT_UNCERTAIN_POLICY!r} differs from schema {self.name!r}'s "
                f"{self.uncertain_policy!r}; rebuild the manifest with this schema")

    @property
    def has_classification(self) -> bool:
        return self.task_type in ("classification", "classification+roi")

    @property
    def has_rois(self) -> bool:
        return self.task_type in ("roi", "classification+roi")

    def label(self, name: str) -> Label:
        """The label called ``name`` (case-insensitive, as uniqueness is); KeyError if none."""
        wanted = name.casefold()
        for label in self.labels:
            if label.name.casefold() == wanted:
                return label
        raise KeyError(name)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<schema>") -> LabelSchema:
        """Validate a parsed schema document; ``source`` prefixes every error message."""
        return _parse_schema(data, source)

    def to_dict(self) -> dict[str, Any]:
        """The canonical document (defaults filled in); ``from_dict(to_dict())`` is identity."""
        return {
            "name": self.name,
            "task_type": self.task_type,
            "labels": [label.to_dict() for label in self.labels],
            "instructions": self.instructions,
            "annotators_per_item": self.annotators_per_item,
            "required": self.required.to_dict(),
            # only when offered: schemas without it keep their canonical document unchanged
            **({"uncertain": True, "uncertain_policy": self.uncertain_policy} if self.uncertain else {}),
        }


def load_schema(path: str | Path) -> LabelSchema:
    """Read and validate the schema file at ``path`` (YAML, or JSON for a ``.json`` suffix).

    Unreadable files and syntax errors are reported as :class:`SchemaError` too, so a caller
    handles one exception type.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SchemaError(f"{source}: cannot read file: {reason}") from exc
    data = _parse_text(text, source, as_json=Path(path).suffix.lower() == ".json")
    return _parse_schema(data, source)


# --- parsing ---------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping,
)


def _parse_text(text: str, source: str, *, as_json: bool) -> Any:
    if as_json:
        def reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            keys = [k for k, _ in pairs]
            for k in keys:
                if keys.count(k) > 1:
                    raise SchemaError(f"{source}: invalid JSON: duplicate key {k!r}")
            return dict(pairs)

        try:
            return json.loads(text, object_pairs_hook=reject_duplicates)
        except json.JSONDecodeError as exc:
            raise SchemaError(
                f"{source}: invalid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from exc
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SchemaError(f"{source}: invalid YAML: {_yaml_problem(exc)}") from exc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1} column {mark.column + 1}: {problem}"
    return problem


def _parse_schema(data: Any, source: str) -> LabelSchema:
    ctx = _Context(source)
    doc = ctx.mapping(data, "", _TOP_LEVEL_KEYS)
    for key in ("name", "task_type", "labels"):
        if key not in doc:
            ctx.fail(key, "missing required key")

    name = ctx.text(doc["name"], "name", allow_empty=False)
    task_type = ctx.text(doc["task_type"], "task_type", allow_empty=False)
    if task_type not in TASK_TYPES:
        ctx.fail("task_type", f"unknown task type {task_type!r}; expected one of {_or(TASK_TYPES)}")

    labels = _parse_labels(ctx, doc["labels"])
    instructions = ctx.text(doc.get("instructions", ""), "instructions", allow_empty=True)

    annotators = doc.get("annotators_per_item", DEFAULT_ANNOTATORS_PER_ITEM)
    # bool is an int subclass; `annotators_per_item: true` is a mistake, not 1.
    if isinstance(annotators, bool) or not isinstance(annotators, int):
        ctx.fail("annotators_per_item", f"must be an integer, got {describe_value(annotators)}")
    if annotators < 1:
        ctx.fail("annotators_per_item", f"must be at least 1, got {annotators}")

    required = Required()
    if "required" in doc:
        req = ctx.mapping(doc["required"], "required", _REQUIRED_KEYS)
        if "labels" in req:
            if not isinstance(req["labels"], bool):
                ctx.fail("required.labels", f"must be true or false, got {describe_value(req['labels'])}")
            required = Required(labels=req["labels"])

    uncertain = doc.get("uncertain", False)
    if not isinstance(uncertain, bool):
        ctx.fail("uncertain", f"must be true or false, got {describe_value(uncertain)}")
    policy = doc.get("uncertain_policy", DEFAULT_UNCERTAIN_POLICY)
    if "uncertain_policy" in doc:
        if not uncertain:  # a policy for answers nobody can give is a mistake, not a no-op
            ctx.fail("uncertain_policy", "only allowed with 'uncertain: true' (annotators cannot answer "
                     "uncertain otherwise)")
        if not isinstance(policy, str) or policy not in UNCERTAIN_POLICIES:
            ctx.fail("uncertain_policy", f"must be one of {_or(UNCERTAIN_POLICIES)}, got {describe_value(policy)}")

    return LabelSchema(
        name=name,
        task_type=task_type,
        labels=labels,
        instructions=instructions,
        annotators_per_item=annotators,
        required=required,
        uncertain=uncertain,
        uncertain_policy=policy,
    )


def _parse_labels(ctx: _Context, raw: Any) -> tuple[Label, ...]:
    if not isinstance(raw, list):
        ctx.fail("labels", f"must be a list of labels, got {describe_value(raw)}")
    if not raw:
        ctx.fail("labels", "must contain at least one label")
    labels: list[Label] = []
    first_seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        path = f"labels[{index}]"
        entry = ctx.mapping(item, path, _LABEL_KEYS)
        if "name" not in entry:
            ctx.fail(f"{path}.name", "missing required key")
        name = _label_name(ctx, entry["name"], f"{path}.name")
        folded = name.casefold()
        if folded in first_seen:
            first = first_seen[folded]
            ctx.fail(
                f"{path}.name",
                f"duplicate label {name!r} (same as labels[{first}] {raw[first]['name']!r}; "
                "names are case-insensitive)",
            )
        first_seen[folded] = index
        description = ctx.text(entry.get("description", ""), f"{path}.description", allow_empty=True)
        shapes = _parse_shapes(ctx, entry["shapes"], f"{path}.shapes") if "shapes" in entry else SHAPES
        labels.append(Label(name=name, description=description, shapes=shapes))
    return tuple(labels)


def _label_name(ctx: _Context, raw: Any, path: str) -> str:
    name = ctx.text(raw, path, allow_empty=False)
    if len(name) > MAX_LABEL_NAME_LENGTH:
        ctx.fail(path, f"label name is {len(name)} characters long; at most {MAX_LABEL_NAME_LENGTH} allowed")
    for position, char in enumerate(name):
        # Category Cc: C0/C1 controls, newline and tab included; they break form fields and CSV.
        if unicodedata.category(char) == "Cc":
            ctx.fail(path, f"label name contains control character U+{ord(char):04X} at position {position}")
    if name != name.strip():
        # "Opacity " and "Opacity" would look identical to an annotator yet differ in manifests.
        ctx.fail(path, f"label name {name!r} has leading or trailing whitespace")
    return name


def _parse_shapes(ctx: _Context, raw: Any, path: str) -> tuple[str, ...]:
    if not isinstance(raw, list):
        ctx.fail(path, f"must be a list of shapes, got {describe_value(raw)}")
    if not raw:
        ctx.fail(path, f"must name at least one shape of {_or(SHAPES)} (omit the key to allow all)")
    seen: set[str] = set()
    for index, shape in enumerate(raw):
        item_path = f"{path}[{index}]"
        if not isinstance(shape, str):
            ctx.fail(item_path, f"must be a string, got {describe_value(shape)}")
        if shape not in SHAPES:
            ctx.fail(item_path, f"unknown shape {shape!r}; expected one of {_or(SHAPES)}")
        if shape in seen:
            ctx.fail(item_path, f"duplicate shape {shape!r}")
        seen.add(shape)
    return tuple(raw)  # order kept as written: a viewer may offer the first shape first


class _Context:
    """Carries the source name so every check raises a complete ``SchemaError`` message."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> NoReturn:
        where = path or "(top level)"
        raise SchemaError(f"{self.source}: {where}: {problem}")

    def mapping(self, raw: Any, path: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(raw, Mapping):
            self.fail(path, f"must be a mapping, got {describe_value(raw)}")
        for key in raw:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                self.fail(where, f"unknown key {key!r}; allowed keys are {_or(allowed)}")
        return raw

    def text(self, raw: Any, path: str, *, allow_empty: bool) -> str:
        if not isinstance(raw, str):
            hint = " (quote it in YAML)" if isinstance(raw, (bool, int, float)) or raw is None else ""
            self.fail(path, f"must be a string, got {describe_value(raw)}{hint}")
        if not allow_empty and not raw.strip():
            self.fail(path, "must not be empty")
        return raw


def _or(options: tuple[str, ...]) -> str:
    return ", ".join(repr(o) for o in options)



def load_schema_text(text: str, source: str) -> LabelSchema:
    """Parse and validate schema text (YAML, hence also JSON) — an upload; ``source`` names it in errors."""
    return _parse_schema(_parse_text(text, source, as_json=False), source)
