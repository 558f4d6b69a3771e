"""training.sagemaker: requests checked against the SageMaker service model (botocore Stubber), S3 in moto."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from labeling import stack_outputs
from training import sagemaker as sm
from training import source_archive

REGION = "eu-west-1"
KMS = f"arn:aws:kms:{REGION}:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ROLE = "arn:aws:iam::123456789012:role/dicom-annotate-dev-sagemaker"
BUCKET = "dicom-annotate-dev-annotations"
OUTPUTS = {"annotationBucket": BUCKET, "sagemakerExecutionRoleArn": ROLE, "kmsKeyArn": KMS,
           "orthancUrl": "https://example.invalid/orthanc"}
ROOT = Path(__file__).resolve().parents[2]


def _arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:123456789012:{kind}/{name}"


def _outputs_file(tmp_path: Path, **extra) -> str:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({**OUTPUTS, **extra}))
    return str(path)


def _manifest(tmp_path: Path, job_name="labeling-job/chest-batch-1", lines=None) -> Path:
    meta = {"type": "groundtruth/custom", "job-name": job_name, "human-annotated": "yes",
            "creation-date": "2026-01-31T12:00:00.000000"}
    lines = lines if lines is not None else [
        {"source": f"id-{i}", "labels": ["Opacity"], "chest": {"labels": [{"name": "Opacity", "present": i % 2 == 0}]},
         "chest-metadata": meta} for i in range(4)]
    path = tmp_path / "output.manifest"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _cli(argv: list[str]) -> int:
    from training.cli import main

    return main(argv)


@pytest.fixture()
def sagemaker_stub(monkeypatch):
    """A real botocore SageMaker client behind a Stubber; every call is checked against the service model."""
    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    stubber = Stubber(client)
    clients = {"sagemaker": client}

    def fake_client(service, region):
        assert region == REGION
        return clients[service]

    monkeypatch.setattr(sm, "_client", fake_client)
    with stubber:
        yield stubber, clients
    stubber.assert_no_pending_responses()


# ----------------------------------------------------------------------------------- archive

def test_source_archive_is_deterministic_and_complete():
    first, second = sm.build_source_archive(), sm.build_source_archive()
    assert first == second and sm.source_key(first) == sm.source_key(second)
    assert gzip.decompress(first)  # a real gzip stream
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert {"requirements.txt", "sagemaker_train.py", "inference.py", "training/__init__.py",
                "training/sagemaker_entry.py", "training/inference.py", "labeling/gt/output_manifest.py",
                "labeling/consolidation/inputs.py"} <= set(names)
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith("tests/")]
        assert {m.mtime for m in members} == {source_archive.ARCHIVE_MTIME} and {m.uid for m in members} == {0}
        assert tar.extractfile("requirements.txt").read() == (ROOT / "training/requirements.txt").read_bytes()


def _fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "training").mkdir(parents=True)
    (root / "labeling").mkdir()
    (root / "training/__init__.py").write_text("")
    (root / "labeling/__init__.py").write_text("")
    (root / "training/requirements.txt").write_text("requests\n")
    (root / "training/sagemaker_entry.py").write_text(
        "import json, os, sys\n"
        "from labeling import VALUE\n"
        "out = os.path.join(os.environ['SM_MODEL_DIR'], 'model.json')\n"
        "json.dump({'argv': sys.argv[1:], 'value': VALUE}, open(out, 'w'))\n"
        "sys.exit(0)\n")
    (root / "labeling/__init__.py").write_text("VALUE = 42\n")
    (root / "training/inference.py").write_text(
        "def model_fn(d): return 'model from ' + d\n"
        "def input_fn(b, t): return b\n"
        "def predict_fn(x, m): return x\n"
        "def output_fn(p, a): return p\n")
    return root


def test_archive_bytes_depend_on_content_only(tmp_path):
    root = _fake_root(tmp_path)
    first = sm.build_source_archive(root)
    for path in root.rglob("*"):
        os.utime(path, (1_900_000_000, 1_900_000_000))
    (root / "training" / "__pycache__").mkdir()
    (root / "training" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    (root / "training" / "notebooks").mkdir()
    (root / "training" / "notebooks" / "walkthrough.py").write_text("# %%\n")
    assert sm.build_source_archive(root) == first  # times, caches and notebooks leave it unchanged
    (root / "labeling" / "__init__.py").write_text("VALUE = 43\n")
    changed = sm.build_source_archive(root)
    assert changed != first and sm.source_key(changed) != sm.source_key(first)


def test_the_launcher_runs_the_entry_and_ships_the_code_with_the_model(tmp_path):
    archive = sm.build_source_archive(_fake_root(tmp_path))
    code, model = tmp_path / "opt-ml-code", tmp_path / "opt-ml-model"
    model.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(code, filter="data")
    # as the training toolkit runs a Python program: `python <program> <hyperparameters>` in the code dir
    env = {**os.environ, "SM_MODEL_DIR": str(model), "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, sm.LAUNCHER, "--epochs", "3", "--label-attribute", "chest"],
                          cwd=code, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads((model / "model.json").read_text()) == {
        "argv": ["--epochs", "3", "--label-attribute", "chest"], "value": 42}
    assert (model / "code/inference.py").is_file() and (model / "code/training/inference.py").is_file()
    assert (model / "code/requirements.txt").read_text() == "requests\n"
    # as the inference toolkit loads SAGEMAKER_PROGRAM from /opt/ml/model/code
    probe = ("import importlib, sys; sys.path.insert(0, sys.argv[1]); m = importlib.import_module('inference'); "
             "print(m.model_fn('/opt/ml/model'), [f.__name__ for f in (m.input_fn, m.predict_fn, m.output_fn)])")
    done = subprocess.run([sys.executable, "-c", probe, str(model / "code")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "model from /opt/ml/model ['input_fn', 'predict_fn', 'output_fn']"


def test_the_launcher_passes_a_failing_entry_on(tmp_path):
    root = _fake_root(tmp_path)
    (root / "training/sagemaker_entry.py").write_text("raise SystemExit('no manifest channel')\n")
    code = tmp_path / "code"
    with tarfile.open(fileobj=io.BytesIO(sm.build_source_archive(root))) as tar:
        tar.extractall(code, filter="data")
    done = subprocess.run([sys.executable, sm.LAUNCHER], cwd=code, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SM_MODEL_DIR": str(tmp_path / "model")})
    assert done.returncode == 1 and "no manifest channel" in done.stderr
    assert not (tmp_path / "model").exists()


def test_an_archive_without_the_entry_point_is_refused(tmp_path):
    root = _fake_root(tmp_path)
    (root / "training/sagemaker_entry.py").unlink()
    with pytest.raises(sm.SageMakerCliError, match="sagemaker_entry.py: missing"):
        sm.build_source_archive(root)


# ---------------------------------------------------------------------------------- images

def test_image_uris_follow_the_region_and_instance_family():
    # Tags as the SageMaker SDK builds them from its pytorch.json (training/dlc_images.json).
    assert sm.TRAINING_IMAGE.uri("eu-west-1", gpu=False) == \
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.8.0-cpu-py312"
    assert sm.INFERENCE_IMAGE.uri("af-south-1", gpu=True) == \
        "626614931356.dkr.ecr.af-south-1.amazonaws.com/pytorch-inference:2.6.0-gpu-py312"
    assert sm.TRAINING_IMAGE.uri("cn-north-1", gpu=False).startswith("727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/")
    assert [sm.is_gpu_instance(t) for t in ("ml.g5.xlarge", "ml.p4d.24xlarge", "ml.m5.xlarge", "ml.c5.2xlarge")] == \
        [True, True, False, False]
    assert [sm.has_local_nvme(t) for t in ("ml.m5.xlarge", "ml.m5d.xlarge", "ml.g4dn.xlarge", "ml.g5.2xlarge",
                                           "ml.c5n.xlarge", "ml.p3.2xlarge")] == [False, True, True, True, False, False]


# ----------------------------------------------------------------------------------- train

@mock_aws
def test_train_uploads_the_archive_and_manifest_with_kms_and_creates_the_job(tmp_path, sagemaker_stub, capsys,
                                                                             monkeypatch):
    stubber, clients = sagemaker_stub
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    clients["s3"] = s3
    manifest = _manifest(tmp_path)
    archive = sm.build_source_archive()
    source_uri = f"s3://{BUCKET}/{sm.source_key(archive)}"
    expected = sm.training_job_request(
        outputs=OUTPUTS, region=REGION, job_name="chest-run-1", source_uri=source_uri,
        manifest_uri=f"s3://{BUCKET}/training/chest-run-1/manifest/output.manifest",
        images_uri=f"s3://{BUCKET}/chest-batch-1/", label_attribute="chest", epochs=5,
        hyperparameters={"batch-size": "8"}, instance_type="ml.m5.xlarge", volume_gb=30,
        max_runtime=3600, spot=False, max_wait=None, image=None)
    arn = f"arn:aws:sagemaker:{REGION}:123456789012:training-job/chest-run-1"
    stubber.add_response("create_training_job", {"TrainingJobArn": arn}, expected)

    code = _cli(["sagemaker", "train", "--stack-outputs", _outputs_file(tmp_path), "--manifest", str(manifest),
                 "--job-name", "chest-run-1", "--epochs", "5", "--hyperparameter", "batch-size=8",
                 "--max-runtime", "3600"])
    out = capsys.readouterr()
    assert code == 0 and out.out.strip() == arn
    assert "4 labelled lines, 0 failed (label attribute 'chest')" in out.err

    stored = s3.get_object(Bucket=BUCKET, Key=sm.source_key(archive))
    assert stored["Body"].read() == archive and stored["ServerSideEncryption"] == "aws:kms"
    assert stored["SSEKMSKeyId"] == KMS
    uploaded = s3.get_object(Bucket=BUCKET, Key="training/chest-run-1/manifest/output.manifest")
    assert uploaded["Body"].read() == manifest.read_bytes() and uploaded["ServerSideEncryption"] == "aws:kms"

    params = expected["HyperParameters"]
    assert json.loads(params["sagemaker_program"]) == "sagemaker_train.py"
    assert json.loads(params["sagemaker_submit_directory"]) == source_uri
    assert params["label-attribute"] == "chest" and params["epochs"] == "5"
    assert [c["ChannelName"] for c in expected["InputDataConfig"]] == ["manifest", "images"]
    assert expected["OutputDataConfig"]["KmsKeyId"] == KMS and expected["ResourceConfig"]["VolumeKmsKeyId"] == KMS
    assert "VpcConfig" not in expected and "EnableManagedSpotTraining" not in expected


def test_gpu_spot_vpc_request_is_valid_for_the_service_model(tmp_path, sagemaker_stub, monkeypatch):
    stubber, clients = sagemaker_stub
    outputs = {**OUTPUTS, "trainingSubnetIds": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"],
               "trainingSecurityGroupId": "sg-0123456789abcdef0"}
    request = sm.training_job_request(
        outputs=outputs, region=REGION, job_name="gpu-run", source_uri=f"s3://{BUCKET}/src.tar.gz",
        manifest_uri=f"s3://{BUCKET}/m.manifest", images_uri=f"s3://{BUCKET}/imgs/", label_attribute=None,
        epochs=None, hyperparameters={}, instance_type="ml.g5.xlarge", volume_gb=50, max_runtime=7200,
        spot=True, max_wait=None, image=None)
    assert request["AlgorithmSpecification"]["TrainingImage"].endswith(sm.TRAINING_IMAGE.gpu_tag)
    assert request["VpcConfig"] == {"SecurityGroupIds": ["sg-0123456789abcdef0"],
                                    "Subnets": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"]}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400}
    assert request["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/training/gpu-run/checkpoints/"
    assert "VolumeKmsKeyId" not in request["ResourceConfig"]  # g5: local NVMe, encrypted by the hardware
    stubber.add_response("create_training_job", {"TrainingJobArn": _arn("training-job", "x")}, request)
    clients["sagemaker"].create_training_job(**request)  # the Stubber validates it against the model


def test_requests_are_checked_against_the_service_model_before_any_network():
    """Why the Stubber tests mean something: botocore rejects a malformed request client-side."""
    from botocore.exceptions import ParamValidationError

    client = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    good = sm.training_job_request(
        outputs=OUTPUTS, region=REGION, job_name="x", source_uri=f"s3://{BUCKET}/s.tar.gz",
        manifest_uri=f"s3://{BUCKET}/m", images_uri=f"s3://{BUCKET}/i/", label_attribute="a", epochs=1,
        hyperparameters={}, instance_type="ml.m5.xlarge", volume_gb=30, max_runtime=60, spot=False, max_wait=None,
        image=None)
    bad = {**good, "ResourceConfig": {**good["ResourceConfig"], "InstanceCount": "one"}}
    with pytest.raises(ParamValidationError, match="InstanceCount"):
        client.create_training_job(**bad)


def test_train_dry_run_prints_the_request_and_creates_no_client(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sm, "_client", lambda *a: pytest.fail("dry run created an AWS client"))
    code = _cli(["sagemaker", "train", "--stack-outputs", _outputs_file(tmp_path), "--manifest",
                 str(_manifest(tmp_path)), "--job-name", "dry", "--dry-run", "--instance-type", "ml.g4dn.xlarge"])
    out = capsys.readouterr()
    assert code == 0 and "nothing uploaded" in out.err
    printed = json.loads(out.out)
    request = printed["create_training_job"]
    assert request["TrainingJobName"] == "dry" and request["RoleArn"] == ROLE
    assert request["InputDataConfig"][1]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/chest-batch-1/"
    assert request["AlgorithmSpecification"]["TrainingImage"].endswith(sm.TRAINING_IMAGE.gpu_tag)
    assert printed["upload"][0]["uri"] == f"s3://{BUCKET}/{sm.source_key(sm.build_source_archive())}"


@pytest.mark.parametrize("argv_extra, lines, message", [
    ([], [{"source": "a", "chest": {"labels": [{"name": "X", "present": "yes"}]},
           "chest-metadata": {"type": "groundtruth/custom", "job-name": "j"}}], "output.manifest:1: chest.labels[0].present"),
    ([], [{"source": "a", "chest-metadata": {"failure-reason": "timeout"}}], "no labelled line"),
    (["--hyperparameter", "batch size=8"], None, "--hyperparameter"),
    (["--hyperparameter", "sagemaker_program=x"], None, "--hyperparameter"),
    (["--job-name", "bad_name"], None, "--job-name"),
    (["--images", "https://example.com/x"], None, "--images"),
])
def test_train_bad_input_exits_2_with_one_line(tmp_path, capsys, monkeypatch, argv_extra, lines, message):
    monkeypatch.setattr(sm, "_client", lambda *a: pytest.fail("no AWS call on bad input"))
    manifest = _manifest(tmp_path, lines=lines)
    code = _cli(["sagemaker", "train", "--stack-outputs", _outputs_file(tmp_path), "--manifest", str(manifest),
                 *argv_extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.startswith("sagemaker train: error: ") and err.count("\n") == 1


def test_images_must_be_given_when_the_manifest_names_several_jobs(tmp_path, capsys):
    meta = {"type": "groundtruth/custom", "human-annotated": "yes"}
    lines = [{"source": f"s{i}", "a": {"labels": [{"name": "X", "present": True}]},
              "a-metadata": {**meta, "job-name": f"job-{i}"}} for i in range(2)]
    code = _cli(["sagemaker", "train", "--stack-outputs", _outputs_file(tmp_path), "--manifest",
                 str(_manifest(tmp_path, lines=lines)), "--dry-run"])
    assert code == 2 and "give --images" in capsys.readouterr().err


@pytest.mark.parametrize("outputs, message", [
    ({"annotationBucket": BUCKET, "kmsKeyArn": KMS}, "missing stack output sagemakerExecutionRoleArn"),
    ({**OUTPUTS, "kmsKeyArn": "[secret]"}, "kmsKeyArn"),
    ({**OUTPUTS, "trainingSubnetIds": "subnet-1"}, "trainingSubnetIds"),
])
def test_bad_stack_outputs_are_named(tmp_path, capsys, outputs, message):
    path = tmp_path / "o.json"
    path.write_text(json.dumps(outputs))
    code = _cli(["sagemaker", "status", "--stack-outputs", str(path), "--training-job", "j", "--dry-run"])
    assert code == 2 and message in capsys.readouterr().err


def test_stack_outputs_come_from_pulumi_for_a_stack_name(monkeypatch, capsys):
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps(OUTPUTS), stderr="")

    monkeypatch.setattr(stack_outputs.subprocess, "run", fake_run)
    assert _cli(["sagemaker", "status", "--stack", "dev", "--endpoint-name", "ep", "--dry-run"]) == 0
    assert calls == [["pulumi", "stack", "output", "--json", "--stack", "dev"]]
    assert json.loads(capsys.readouterr().out) == {"describe_endpoint": {"EndpointName": "ep"}}

    monkeypatch.setattr(stack_outputs.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 255, stdout="", stderr="error: no stack named 'dev' found"))
    assert _cli(["sagemaker", "status", "--stack", "dev", "--endpoint-name", "ep"]) == 2
    assert "no stack named 'dev'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- deploy

def _not_found(stubber, operation, message):
    stubber.add_client_error(operation, service_error_code="ValidationException", service_message=message,
                             http_status_code=400)


def test_deploy_creates_model_config_and_endpoint(tmp_path, sagemaker_stub, capsys):
    stubber, _ = sagemaker_stub
    model_data = f"s3://{BUCKET}/training/run-1/output/run-1/output/model.tar.gz"
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    stubber.add_response("describe_training_job", {
        "TrainingJobName": "run-1", "TrainingJobArn": _arn("training-job", "run-1"),
        "TrainingJobStatus": "Completed", "SecondaryStatus": "Completed", "ModelArtifacts": {"S3ModelArtifacts": model_data},
        "AlgorithmSpecification": {"TrainingInputMode": "File"}, "ResourceConfig": {
            "InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600}, "CreationTime": now}, {"TrainingJobName": "run-1"})
    expected = sm.deploy_requests(outputs=OUTPUTS, region=REGION, name="chest-ep", model_data=model_data,
                                  instance_type="ml.m5.large", count=1, image=None)
    container = expected["create_model"]["PrimaryContainer"]
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Image"].endswith("pytorch-inference:2.6.0-cpu-py312")
    assert expected["create_endpoint_config"]["KmsKeyId"] == KMS
    stubber.add_response("create_model", {"ModelArn": _arn("model", "m")}, expected["create_model"])
    stubber.add_response("create_endpoint_config", {"EndpointConfigArn": _arn("endpoint-config", "c")},
                         expected["create_endpoint_config"])
    _not_found(stubber, "describe_endpoint", 'Could not find endpoint "chest-ep".')
    stubber.add_response("create_endpoint", {"EndpointArn": _arn("endpoint", "chest-ep")}, expected["create_endpoint"])
    code = _cli(["sagemaker", "deploy", "--stack-outputs", _outputs_file(tmp_path), "--training-job", "run-1",
                 "--endpoint-name", "chest-ep"])
    assert code == 0 and capsys.readouterr().out.strip() == _arn("endpoint", "chest-ep")


def test_deploy_updates_an_existing_endpoint(tmp_path, sagemaker_stub, capsys):
    stubber, _ = sagemaker_stub
    model_data = f"s3://{BUCKET}/m/model.tar.gz"
    expected = sm.deploy_requests(outputs=OUTPUTS, region=REGION, name="run-2", model_data=model_data,
                                  instance_type="ml.g5.xlarge", count=2, image=None)
    assert "KmsKeyId" not in expected["create_endpoint_config"]  # local NVMe instance storage
    stubber.add_response("create_model", {"ModelArn": _arn("model", "m")}, expected["create_model"])
    stubber.add_response("create_endpoint_config", {"EndpointConfigArn": _arn("endpoint-config", "c")}, expected["create_endpoint_config"])
    stubber.add_response("describe_endpoint", {
        "EndpointName": "run-2", "EndpointArn": _arn("endpoint", "run-2"), "EndpointConfigName": "old",
        "EndpointStatus": "InService", "CreationTime": datetime(2026, 1, 1), "LastModifiedTime": datetime(2026, 1, 1)},
        {"EndpointName": "run-2"})
    stubber.add_response("update_endpoint", {"EndpointArn": _arn("endpoint", "run-2")},
                         {"EndpointName": "run-2", "EndpointConfigName": "run-2"})
    code = _cli(["sagemaker", "deploy", "--stack-outputs", _outputs_file(tmp_path), "--training-job", "run-2",
                 "--model-data", model_data, "--instance-type", "ml.g5.xlarge", "--instance-count", "2"])
    assert code == 0 and capsys.readouterr().out.strip() == _arn("endpoint", "run-2")


def test_deploy_refuses_a_job_that_did_not_complete(tmp_path, sagemaker_stub, capsys):
    stubber, _ = sagemaker_stub
    stubber.add_response("describe_training_job", {
        "TrainingJobName": "run-3", "TrainingJobArn": _arn("training-job", "x"), "TrainingJobStatus": "Failed",
        "SecondaryStatus": "Failed", "ModelArtifacts": {"S3ModelArtifacts": "s3://b/x"},
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600}, "CreationTime": datetime(2026, 1, 1)},
        {"TrainingJobName": "run-3"})
    code = _cli(["sagemaker", "deploy", "--stack-outputs", _outputs_file(tmp_path), "--training-job", "run-3"])
    assert code == 2 and "status Failed" in capsys.readouterr().err


def test_aws_errors_exit_3_naming_the_call(tmp_path, sagemaker_stub, capsys):
    stubber, _ = sagemaker_stub
    stubber.add_client_error("describe_training_job", service_error_code="AccessDeniedException",
                             service_message="not authorized", http_status_code=403)
    code = _cli(["sagemaker", "deploy", "--stack-outputs", _outputs_file(tmp_path), "--training-job", "run-4"])
    err = capsys.readouterr().err
    assert code == 3 and "describe_training_job run-4: AccessDeniedException: not authorized" in err


# ------------------------------------------------------------------------------ delete, status

def test_delete_removes_endpoint_config_and_model(tmp_path, sagemaker_stub, capsys):
    stubber, _ = sagemaker_stub
    when = datetime(2026, 1, 1)
    stubber.add_response("describe_endpoint", {
        "EndpointName": "ep", "EndpointArn": _arn("endpoint", "ep"), "EndpointConfigName": "cfg", "EndpointStatus": "InService",
        "CreationTime": when, "LastModifiedTime": when}, {"EndpointName": "ep"})
    stubber.add_response("describe_endpoint_config", {
        "EndpointConfigName": "cfg", "EndpointConfigArn": _arn("endpoint-config", "cfg"), "CreationTime": when,
        "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "model-a",
                                "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]},
        {"EndpointConfigName": "cfg"})
    stubber.add_response("delete_endpoint", {}, {"EndpointName": "ep"})
    stubber.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "cfg"})
    stubber.add_response("delete_model", {}, {"ModelName": "model-a"})
    assert _cli(["sagemaker", "delete", "--stack-outputs", _outputs_file(tmp_path), "--endpoint-name", "ep"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "deleted endpoint ep", "deleted endpoint config cfg", "deleted model model-a"]


def test_status_prints_job_and_endpoint(tmp_path, sagemaker_stub, capsys):
    stubber, _ = sagemaker_stub
    when = datetime(2026, 1, 1)
    stubber.add_response("describe_training_job", {
        "TrainingJobName": "run-5", "TrainingJobArn": _arn("training-job", "x"), "TrainingJobStatus": "InProgress",
        "SecondaryStatus": "Training", "ModelArtifacts": {"S3ModelArtifacts": ""},
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600}, "CreationTime": when,
        "FinalMetricDataList": [{"MetricName": "validation:macro_auroc", "Value": 0.93, "Timestamp": when}]},
        {"TrainingJobName": "run-5"})
    stubber.add_response("describe_endpoint", {
        "EndpointName": "ep", "EndpointArn": _arn("endpoint", "ep"), "EndpointConfigName": "cfg", "EndpointStatus": "Creating",
        "CreationTime": when, "LastModifiedTime": when}, {"EndpointName": "ep"})
    assert _cli(["sagemaker", "status", "--stack-outputs", _outputs_file(tmp_path), "--training-job", "run-5",
                 "--endpoint-name", "ep"]) == 0
    out = capsys.readouterr().out
    assert "InProgress" in out and "Training" in out and '"validation:macro_auroc": 0.93' in out and "Creating" in out


def test_the_training_cli_offers_the_sagemaker_command():
    done = subprocess.run([sys.executable, "-m", "training", "sagemaker", "train", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--manifest" in done.stdout and "--dry-run" in done.stdout
