"""Resources the components refactoring moved keep their deployed identity (Pulumi aliases).

Under mocks nothing is replaced, so the test checks what the engine would do: every resource now
under the Platform, a FargateService, Ground Truth or the training notebook carries, explicitly or
inherited from its parent, an alias to the URN it had when the Orthanc component, the portal or the
LabelingBundle declared it (components/moved.py; tools/mock_recording.py compares whole runs).
"""

from __future__ import annotations

import pytest

from components.checks.offline import engine_view

# Where each new parent's children lived before: (new qualified-type segment, old one).
MOVES = (
    ("dicom-annotate:platform:Platform", "dicom-annotate:orthanc:OrthancService"),
    ("dicom-annotate:orthanc:OrthancService$dicom-annotate:fargate:FargateService",
     "dicom-annotate:orthanc:OrthancService"),
    ("dicom-annotate:portal:Portal$dicom-annotate:fargate:FargateService", "dicom-annotate:portal:Portal"),
    ("dicom-annotate:ground_truth:GroundTruth", "dicom-annotate:labeling:LabelingBundle"),
    ("dicom-annotate:notebook:TrainingNotebook", "dicom-annotate:labeling:LabelingBundle"),
)


def _old_urn(urn: str) -> str | None:
    kind = urn.split("::")[2]
    for new, old in MOVES:
        if kind.startswith(new + "$"):
            parts = urn.split("::")
            parts[2] = old + kind[len(new):]
            return "::".join(parts)
    return None


def test_every_moved_custom_resource_is_aliased_to_its_old_urn(recording):
    moved = 0
    for resource in engine_view(recording):
        old = _old_urn(resource["urn"])
        if old is None:
            continue
        moved += 1
        assert old in resource["aliases"], f"{resource['name']}: no alias to {old} (pulumi up would replace it)"
    # dev: database, ALB, cluster, Orthanc's service pieces, Ground Truth, the notebook; prod adds the portal's.
    assert moved >= (80 if recording.stack == "dev" else 95)


@pytest.mark.parametrize("name", ["da-dev-orthanc-db", "da-dev-orthanc-alb", "da-dev-orthanc-service",
                                  "da-dev-labeling-annotations-bucket", "da-dev-labeling-notebook"])
def test_the_database_alb_and_service_keep_their_names(recordings, name):
    resource = next(r for r in engine_view(recordings["dev"]) if r["name"] == name)
    assert _old_urn(resource["urn"]) in resource["aliases"]


def _compare_tool():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "tools" / "mock_recording.py"
    spec = importlib.util.spec_from_file_location("mock_recording", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compare


def _resource(urn: str, aliases=(), **inputs) -> dict:
    kind, name = urn.split("::")[2].split("$")[-1], urn.rsplit("::", 1)[1]
    return {"type": kind, "name": name, "custom": True, "inputs": inputs, "urn": urn, "aliases": list(aliases)}


OLD = "urn:pulumi:dev::dicom-annotate::dicom-annotate:orthanc:OrthancService$aws:rds/instance:Instance::db"
NEW = "urn:pulumi:dev::dicom-annotate::dicom-annotate:platform:Platform$aws:rds/instance:Instance::db"


@pytest.mark.parametrize("after, harmful, words", [
    (_resource(OLD, engine="postgres"), False, None),
    (_resource(NEW, [OLD], engine="postgres"), False, "moved, aliased db"),
    (_resource(NEW, engine="postgres"), True, "MOVED WITHOUT ALIAS"),
    (_resource(OLD, engine="mysql"), True, "inputs changed aws:rds/instance:Instance db: engine"),
])
def test_the_recording_comparison_flags_what_pulumi_up_would_replace(after, harmful, words):
    lines, found = _compare_tool()({"dev": [_resource(OLD, engine="postgres")]}, {"dev": [after]})
    assert found is harmful
    assert (lines == []) if words is None else any(words in line for line in lines), lines
