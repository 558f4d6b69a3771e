"""The label-schema file format (labeling/contracts/schema.py): what it accepts, what it rejects and how."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labeling.contracts.schema import (
    SHAPES,
    Label,
    LabelSchema,
    Required,
    SchemaError,
    load_schema,
)

REPO = Path(__file__).resolve().parents[2]
DEMO_SCHEMA = REPO / "schemas" / "chest-xray.yaml"


def minimal(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "test",
        "task_type": "classification+roi",
        "labels": [{"name": "Opacity"}, {"name": "Device"}],
    }
    doc.update(overrides)
    return doc


def error_of(doc: Any) -> str:
    with pytest.raises(SchemaError) as info:
        LabelSchema.from_dict(doc, source="s.yaml")
    return str(info.value)


def test_demo_schema_loads_with_its_three_labels() -> None:
    schema = load_schema(DEMO_SCHEMA)
    assert schema.label_names == ("Opacity", "Device", "Effusion")
    assert schema.task_type == "classification+roi"
    assert schema.annotators_per_item == 3
    assert schema.required.labels is True
    assert all(label.description for label in schema.labels)
    assert schema.instructions.strip()


def test_defaults_are_filled_in() -> None:
    schema = LabelSchema.from_dict(minimal())
    assert schema.instructions == ""
    assert schema.annotators_per_item == 3
    assert schema.required == Required(labels=True)
    assert schema.labels[0] == Label(name="Opacity", description="", shapes=SHAPES)


def test_round_trip_through_dict_yaml_and_json(tmp_path: Path) -> None:
    schema = load_schema(DEMO_SCHEMA)
    assert LabelSchema.from_dict(schema.to_dict()) == schema
    as_json = tmp_path / "chest.json"
    as_json.write_text(json.dumps(schema.to_dict()), encoding="utf-8")
    assert load_schema(as_json) == schema


def test_shapes_keep_the_order_given() -> None:
    schema = LabelSchema.from_dict(minimal(labels=[{"name": "Device", "shapes": ["polygon", "rectangle"]}]))
    assert schema.labels[0].shapes == ("polygon", "rectangle")


def test_html_characters_in_names_are_kept_verbatim() -> None:
    name = '<b>Mass & "nodule"</b>'
    schema = LabelSchema.from_dict(minimal(labels=[{"name": name, "description": "<i>x</i>"}]))
    assert schema.label_names == (name,)
    assert schema.to_dict()["labels"][0]["name"] == name


def test_label_lookup_is_case_insensitive() -> None:
    schema = LabelSchema.from_dict(minimal())
    assert schema.label("opacity").name == "Opacity"
    with pytest.raises(KeyError):
        schema.label("Effusion")


@pytest.mark.parametrize("policy", ["ignore", "absent", "present"])
def test_uncertain_policy_with_uncertain_true(policy: str, tmp_path: Path) -> None:
    """CheXpert's U-Ignore / U-Zeros / U-Ones as a schema setting; the canonical document (what a
    portal job stores) carries it, and YAML and JSON files read alike."""
    schema = LabelSchema.from_dict(minimal(uncertain=True, uncertain_policy=policy))
    assert (schema.uncertain, schema.uncertain_policy) == (True, policy)
    assert schema.to_dict()["uncertain_policy"] == policy and LabelSchema.from_dict(schema.to_dict()) == schema
    (tmp_path / "s.yaml").write_text(f"name: t\ntask_type: classification\nlabels: [{{name: A}}]\n"
                                     f"uncertain: true\nuncertain_policy: {policy}\n", encoding="utf-8")
    assert load_schema(tmp_path / "s.yaml").uncertain_policy == policy


def test_uncertain_policy_defaults_to_ignore_and_stays_out_of_schemas_without_uncertain() -> None:
    assert LabelSchema.from_dict(minimal(uncertain=True)).uncertain_policy == "ignore"
    assert LabelSchema.from_dict(minimal(uncertain=True)).to_dict()["uncertain_policy"] == "ignore"
    plain = LabelSchema.from_dict(minimal())
    assert plain.uncertain_policy == "ignore" and "uncertain_policy" not in plain.to_dict()
    # a job stored before the setting existed reads back as today's behaviour
    assert LabelSchema.from_dict({**minimal(), "uncertain": True}).uncertain_policy == "ignore"


def test_64_character_name_is_accepted() -> None:
    assert LabelSchema.from_dict(minimal(labels=[{"name": "x" * 64}])).label_names == ("x" * 64,)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (minimal(labels=[]), "s.yaml: labels: must contain at least one label"),
        (minimal(labels=[{"name": "Opacity"}, {"name": "OPACITY"}]), "s.yaml: labels[1].name: duplicate label 'OPACITY'"),
        (minimal(labels=[{"name": "x" * 65}]), "s.yaml: labels[0].name: label name is 65 characters long; at most 64"),
        (minimal(labels=[{"name": "Bad\x07name"}]), "s.yaml: labels[0].name: label name contains control character U+0007"),
        (minimal(labels=[{"name": "two\nlines"}]), "s.yaml: labels[0].name: label name contains control character U+000A"),
        (minimal(labels=[{"name": "Opacity "}]), "s.yaml: labels[0].name: label name 'Opacity ' has leading or trailing"),
        (minimal(labels=[{"name": ""}]), "s.yaml: labels[0].name: must not be empty"),
        (minimal(labels=[{"name": False}]), "s.yaml: labels[0].name: must be a string, got boolean false (quote it in YAML)"),
        (minimal(labels=[{"description": "no name"}]), "s.yaml: labels[0].name: missing required key"),
        (minimal(labels=[{"name": "A", "colour": "red"}]), "s.yaml: labels[0].colour: unknown key 'colour'"),
        (minimal(labels=[{"name": "A", "shapes": ["circle"]}]), "s.yaml: labels[0].shapes[0]: unknown shape 'circle'"),
        (minimal(labels=[{"name": "A", "shapes": ["point", "point"]}]), "s.yaml: labels[0].shapes[1]: duplicate shape 'point'"),
        (minimal(labels=[{"name": "A", "shapes": []}]), "s.yaml: labels[0].shapes: must name at least one shape"),
        (minimal(labels="Opacity"), "s.yaml: labels: must be a list of labels, got string 'Opacity'"),
        (minimal(task_type="segmentation"), "s.yaml: task_type: unknown task type 'segmentation'"),
        (minimal(labls=[]), "s.yaml: labls: unknown key 'labls'"),
        (minimal(annotators_per_item=0), "s.yaml: annotators_per_item: must be at least 1, got 0"),
        (minimal(annotators_per_item=True), "s.yaml: annotators_per_item: must be an integer, got boolean true"),
        (minimal(annotators_per_item="3"), "s.yaml: annotators_per_item: must be an integer"),
        (minimal(required={"labels": "yes"}), "s.yaml: required.labels: must be true or false"),
        (minimal(required={"rois": True}), "s.yaml: required.rois: unknown key 'rois'"),
        (minimal(instructions=["read this"]), "s.yaml: instructions: must be a string"),
        ({"task_type": "roi", "labels": [{"name": "A"}]}, "s.yaml: name: missing required key"),
        (["not", "a", "mapping"], "s.yaml: (top level): must be a mapping, got a list"),
        (minimal(uncertain_policy="absent"),
         "s.yaml: uncertain_policy: only allowed with 'uncertain: true' (annotators cannot answer uncertain otherwise)"),
        (minimal(uncertain=False, uncertain_policy="ignore"), "s.yaml: uncertain_policy: only allowed with 'uncertain: true'"),
        (minimal(uncertain=True, uncertain_policy="zeros"),
         "s.yaml: uncertain_policy: must be one of 'ignore', 'absent', 'present', got string 'zeros'"),
        (minimal(uncertain=True, uncertain_policy=None), "s.yaml: uncertain_policy: must be one of 'ignore', 'absent', "
         "'present', got nothing (null)"),
        (minimal(uncertain=True, uncertain_policy=True), "s.yaml: uncertain_policy: must be one of"),
    ],
)
def test_each_rejected_case_names_the_key(doc: Any, expected: str) -> None:
    assert error_of(doc).startswith(expected)


def test_schema_error_is_a_value_error_with_one_line() -> None:
    with pytest.raises(ValueError) as info:
        LabelSchema.from_dict(minimal(labels=[]))
    assert isinstance(info.value, SchemaError)
    assert "\n" not in str(info.value)


def test_error_from_a_file_names_the_file_and_the_first_spelling(tmp_path: Path) -> None:
    path = tmp_path / "chest.yaml"
    path.write_text(
        "name: chest\ntask_type: roi\nlabels:\n  - name: opacity\n  - name: Device\n  - name: Opacity\n",
        encoding="utf-8",
    )
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert str(info.value) == (
        f"{path}: labels[2].name: duplicate label 'Opacity' (same as labels[0] 'opacity'; "
        "names are case-insensitive)"
    )


def test_yaml_no_becomes_false_and_the_message_says_to_quote_it(tmp_path: Path) -> None:
    path = tmp_path / "yes-no.yaml"
    path.write_text("name: q\ntask_type: classification\nlabels:\n  - name: No\n", encoding="utf-8")
    with pytest.raises(SchemaError, match=r"labels\[0\]\.name: must be a string, got boolean false \(quote it"):
        load_schema(path)


def test_duplicate_yaml_keys_are_rejected_not_silently_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nname: b\ntask_type: roi\nlabels: [{name: A}]\n", encoding="utf-8")
    with pytest.raises(SchemaError, match=r"dup\.yaml: invalid YAML: line 2 column 1: duplicate key 'name'"):
        load_schema(path)


def test_duplicate_json_keys_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text('{"name": "a", "name": "b", "task_type": "roi", "labels": [{"name": "A"}]}', encoding="utf-8")
    with pytest.raises(SchemaError, match=r"dup\.json: invalid JSON: duplicate key 'name'"):
        load_schema(path)


def test_syntax_errors_give_the_position(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(SchemaError, match=r"bad\.yaml: invalid YAML: line \d+ column \d+"):
        load_schema(bad_yaml)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"name": }', encoding="utf-8")
    with pytest.raises(SchemaError, match=r"bad\.json: invalid JSON: line 1 column 10"):
        load_schema(bad_json)


def test_missing_file_is_a_schema_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(SchemaError, match=r"absent\.yaml: cannot read file"):
        load_schema(path)
