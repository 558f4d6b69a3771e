"""The PyTorch DLC images come from the SageMaker SDK's image table (training/dlc_images.json)."""

from __future__ import annotations

import json

import pytest

from training import dlc


def test_data_file_keeps_its_provenance_and_the_sdk_entries():
    table = dlc.image_table()
    provenance = table["_provenance"]
    assert "sagemaker-core" in provenance["source"] and "pytorch.json" in provenance["source"]
    assert len(provenance["source_sha256"]) == 64
    for scope, repository in (("training", "pytorch-training"), ("inference", "pytorch-inference")):
        entry = table[scope]
        assert entry["repository"] == repository
        assert set(entry["processors"]) == {"cpu", "gpu"}
        assert entry["registries"]["us-east-1"] == "763104351884"
        assert all(len(account) == 12 and account.isdigit() for account in entry["registries"].values())


def test_uris_are_built_like_the_sdk_from_the_table():
    table = dlc.image_table()
    version, py = table["training"]["version"], table["training"]["py_versions"][-1]
    assert dlc.TRAINING_IMAGE.uri("us-east-1", gpu=True) == \
        f"763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:{version}-gpu-{py}"
    assert dlc.INFERENCE_IMAGE.uri("me-south-1", gpu=False).startswith(
        f"{table['inference']['registries']['me-south-1']}.dkr.ecr.me-south-1.amazonaws.com/pytorch-inference:")


def test_region_without_a_container_is_a_clear_error():
    with pytest.raises(ValueError, match="region 'xx-nowhere-1': the SageMaker SDK lists no PyTorch training"):
        dlc.registry_account("xx-nowhere-1")


def test_update_extracts_the_chosen_versions_unchanged(tmp_path, monkeypatch):
    sdk = {scope: {"processors": ["cpu", "gpu"], "versions": {
        "9.9.0": {"py_versions": ["py399"], "repository": f"pytorch-{scope}", "registries": {"us-east-1": "111122223333"}},
    }} for scope in ("training", "inference")}
    source = tmp_path / "pytorch.json"
    source.write_text(json.dumps(sdk))
    target = tmp_path / "dlc_images.json"
    monkeypatch.setattr(dlc, "DATA_FILE", target)
    dlc.image_table.cache_clear()
    try:
        assert dlc.main(["--update", str(source), "--training", "9.9.0", "--inference", "9.9.0"]) == 0
        assert dlc.TRAINING_IMAGE.uri("us-east-1", gpu=False) == \
            "111122223333.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:9.9.0-cpu-py399"
        assert dlc.main(["--update", str(source), "--training", "1.0.0", "--inference", "9.9.0"]) == 2
    finally:
        dlc.image_table.cache_clear()
