"""Ground Truth and the training notebook under Pulumi mocks: GT role, Lambdas, annotation bucket, template, notebook."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from components.config import ConfigError
from components.notebook import (
    MAX_LIFECYCLE_SCRIPT_B64, NOTEBOOK_PLATFORM_PYTHONS, lifecycle_script_b64, notebook_pythons,
)
from components.packaging import ROOT
from components.checks.offline import ACCOUNT_ID, PLACEHOLDER_SECRET, _mock_state, Recording, run_program, stack_config_values
from tests.unit.programs import BYO_PRIVATE, byo_variant_values, program
from labeling.gt import names as gt_names
from labeling.gt.contracts import MAX_TEMPLATE_CHARS

GT_NAME_MARKERS = ("SageMaker", "sagemaker", "Sagemaker", "GtRecipe", "LabelingFunction")


def _prefix(rec: Recording) -> str:
    return f"da-{rec.stack}-labeling"


def _one(rec: Recording, suffix: str):
    return rec.named(f"{_prefix(rec)}-{suffix}")


def _policy(rec: Recording, suffix: str) -> dict:
    return json.loads(_one(rec, suffix).inputs["policy"])


def _statements(policy: dict) -> list[dict]:
    return policy["Statement"]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _functions(rec: Recording) -> dict[str, object]:
    return {f: _one(rec, f) for f in ("prelabel", "postlabel")}


@pytest.fixture(scope="module")
def variant() -> Recording:
    """dev with a bring-your-own VPC (known subnet ids) and non-default labeling settings."""
    return program("dev", config=byo_variant_values())


# ------------------------------------------------------------------------------------ IAM
@pytest.mark.parametrize("suffix, service", [("gt-role", "sagemaker.amazonaws.com"),
                                              ("sagemaker-role", "sagemaker.amazonaws.com"),
                                              ("prelabel-role", "lambda.amazonaws.com"),
                                              ("postlabel-role", "lambda.amazonaws.com")])
def test_service_roles_trust_exactly_as_the_service_documents(recording, suffix, service):
    # SageMaker documents confused-deputy conditions for training/processing/inference/Studio only,
    # Lambda none for execution roles: a condition the service does not send breaks AssumeRole.
    trust = json.loads(_one(recording, suffix).inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement == {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}


def test_ground_truth_role_invokes_exactly_the_two_lambdas(recording):
    statements = _statements(_policy(recording, "gt-policy"))
    invoked = [s for s in statements if "lambda:InvokeFunction" in _as_list(s["Action"])]
    assert len(invoked) == 1
    expected = {recording.outputs["prelabelLambdaArn"], recording.outputs["postlabelLambdaArn"]}
    assert set(_as_list(invoked[0]["Resource"])) == expected
    assert len(expected) == 2
    # No other statement grants any lambda action.
    assert not [a for s in statements for a in _as_list(s["Action"]) if a.startswith("lambda:")
                and s is not invoked[0]]


def test_ground_truth_role_touches_only_the_annotation_bucket_key_and_its_logs(recording):
    bucket_arn = f"arn:aws:s3:::{recording.outputs['annotationBucket']}"
    for statement in _statements(_policy(recording, "gt-policy")):
        actions = _as_list(statement["Action"])
        resources = _as_list(statement["Resource"])
        if any(a.startswith("s3:") for a in actions):
            assert all(r in (bucket_arn, f"{bucket_arn}/*") for r in resources), statement
        if any(a.startswith("kms:") for a in actions):
            assert resources == [recording.outputs["kmsKeyArn"]]
        if any(a.startswith("logs:") for a in actions):
            assert all("/aws/sagemaker/LabelingJobs" in r for r in resources)


@pytest.mark.parametrize("suffix", ["gt-policy", "sagemaker-policy", "prelabel-policy", "postlabel-policy"])
def test_labeling_policies_have_no_wildcard_actions(recording, suffix):
    for statement in _statements(_policy(recording, suffix)):
        assert statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"]):
            assert action != "*" and not action.endswith(":*") and "*" not in action, (suffix, action)


def test_deidentification_salt_is_a_kms_secret_named_by_arn_only(recording):
    salt = recording.named(f"{_prefix(recording)}-deid-salt-secret")
    assert salt.inputs["kmsKeyId"] == recording.outputs["kmsKeyArn"]
    salt_arn = _mock_state(salt.type, salt.name, salt.inputs, "us-east-1")["arn"]
    env = _one(recording, "prelabel").inputs["environment"]["variables"]
    assert env["DEIDENTIFY_SALT_SECRET_ARN"] == salt_arn and "DEIDENTIFY_SALT" not in env
    assert env["STAGING_KMS_KEY_ID"] == recording.outputs["kmsKeyArn"]
    (version,) = [r for r in recording.of_type("aws:secretsmanager/secretVersion:SecretVersion")
                  if r.name == f"{_prefix(recording)}-deid-salt-value"]
    assert "4dabf18193072939515e22adb298388d" in version.inputs["secretString"]  # stays a Pulumi secret


def test_no_full_access_managed_policies_on_labeling_roles(recording):
    roles = [r for r in recording.of_type("aws:iam/role:Role") if r.name.startswith(_prefix(recording))]
    assert len(roles) == 4  # GT, SageMaker execution, two Lambdas
    for role in roles:
        assert not any("FullAccess" in arn for arn in role.inputs.get("managedPolicyArns") or [])
    for attachment in recording.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
        assert "FullAccess" not in attachment.inputs["policyArn"]


def test_lambda_roles_read_only_the_orthanc_and_salt_secrets(recording):
    salt = recording.named(f"{_prefix(recording)}-deid-salt-secret")
    salt_arn = _mock_state(salt.type, salt.name, salt.inputs, "us-east-1")["arn"]
    secret = recording.outputs["orthancAdminSecretArn"]
    for function in ("prelabel", "postlabel"):
        statements = _statements(_policy(recording, f"{function}-policy"))
        secret_statements = [s for s in statements if any(a.startswith("secretsmanager:")
                                                          for a in _as_list(s["Action"]))]
        assert [_as_list(s["Action"]) for s in secret_statements] == [["secretsmanager:GetSecretValue"]]
        assert _as_list(secret_statements[0]["Resource"]) == [secret, salt_arn]
        logs = [s for s in statements if any(a.startswith("logs:") for a in _as_list(s["Action"]))]
        assert all(f"/aws/lambda/{_one(recording, function).inputs['name']}" in r
                   for s in logs for r in _as_list(s["Resource"]))


def test_sagemaker_execution_role_pulls_only_dlc_images_and_passes_only_itself(recording):
    statements = _statements(_policy(recording, "sagemaker-policy"))
    pulls = [s for s in statements if "ecr:BatchGetImage" in _as_list(s["Action"])]
    assert all(":763104351884:repository/" in r for s in pulls for r in _as_list(s["Resource"]))
    (passrole,) = [s for s in statements if "iam:PassRole" in _as_list(s["Action"])]
    assert passrole["Resource"] == recording.outputs["sagemakerExecutionRoleArn"]
    assert passrole["Condition"]["StringEquals"]["iam:PassedToService"] == "sagemaker.amazonaws.com"


def test_sagemaker_execution_role_may_deploy_endpoints_and_put_its_metrics(recording):
    # `python -m training sagemaker deploy|delete|status` and the notebook's idle-stop metric.
    statements = _statements(_policy(recording, "sagemaker-policy"))
    arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT_ID}"
    (endpoints,) = [s for s in statements if s.get("Sid") == "Endpoints"]
    assert set(endpoints["Resource"]) == {f"{arn}:endpoint/*", f"{arn}:endpoint-config/*"}
    assert {"sagemaker:CreateEndpoint", "sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpoint",
            "sagemaker:DescribeEndpointConfig", "sagemaker:UpdateEndpoint",
            "sagemaker:DeleteEndpoint"} <= set(endpoints["Action"])
    (metrics,) = [s for s in statements if "cloudwatch:PutMetricData" in _as_list(s["Action"])]
    namespaces = metrics["Condition"]["StringLike"]["cloudwatch:namespace"]
    assert "dicom-annotate/Notebook" in namespaces and "*" not in namespaces


# -------------------------------------------------------------------------------- Lambdas
def test_lambdas_runtime_handler_tracing_and_encrypted_environment(recording):
    for function in _functions(recording).values():
        inputs = function.inputs
        assert inputs["runtime"] == "python3.12"
        assert inputs["handler"] == "handler.lambda_handler"
        assert inputs["tracingConfig"] == {"mode": "Active"}
        assert inputs["kmsKeyArn"] == recording.outputs["kmsKeyArn"]
        assert inputs["layers"] and inputs["layers"][0].startswith("arn:aws:lambda:")
        assert inputs["memorySize"] == 1024 and inputs["timeout"] == 60


def test_lambda_names_let_ground_truth_invoke_them(recording):
    for function in _functions(recording).values():
        name = function.inputs["name"]
        assert "SageMaker" in name and any(m in name for m in GT_NAME_MARKERS)
        assert len(name) <= 64
    assert recording.outputs["prelabelLambdaArn"].endswith("SageMaker-prelabel")


def test_lambda_environment_names_orthanc_without_secret_values(recording):
    for function in _functions(recording).values():
        env = function.inputs["environment"]["variables"]
        assert set(env) == {"ORTHANC_URL", "ORTHANC_SECRET_ARN", "STAGING_BUCKET", "DEIDENTIFY",
                            "STAGING_KMS_KEY_ID", "DEIDENTIFY_SALT_SECRET_ARN", "POWERTOOLS_SERVICE_NAME"}
        assert set(env) <= gt_names.ALL  # the names the Lambda code reads (tests/unit/test_gt_names.py)
        assert env["ORTHANC_URL"] == recording.outputs["orthancInternalUrl"]
        assert env["ORTHANC_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
        assert env["STAGING_BUCKET"] == recording.outputs["annotationBucket"]
        assert env["DEIDENTIFY"] == "true"
        assert not any(PLACEHOLDER_SECRET in str(v) for v in env.values())


def test_lambdas_sit_in_the_private_subnets_with_the_orthanc_client_sg(variant):
    for function in _functions(variant).values():
        vpc = function.inputs["vpcConfig"]
        assert vpc["subnetIds"] == BYO_PRIVATE
        assert len(vpc["securityGroupIds"]) == 2
    own_sg = _one(variant, "lambda-sg").inputs
    assert not own_sg.get("ingress")
    assert own_sg["egress"] and all(rule["fromPort"] == 443 for rule in own_sg["egress"])


def test_deidentify_false_reaches_the_lambdas(variant):
    for function in _functions(variant).values():
        assert function.inputs["environment"]["variables"]["DEIDENTIFY"] == "false"


def test_each_lambda_has_its_own_encrypted_log_group_with_retention(recording):
    retention = 30 if recording.stack == "dev" else 365
    for name, function in _functions(recording).items():
        group = _one(recording, f"{name}-logs").inputs
        assert group["name"] == f"/aws/lambda/{function.inputs['name']}"
        assert group["retentionInDays"] == retention
        assert group["kmsKeyId"] == recording.outputs["kmsKeyArn"]
        assert function.inputs["loggingConfig"]["logGroup"] == group["name"]


def test_sagemaker_may_invoke_each_lambda_from_this_account_only(recording):
    permissions = [p for p in recording.of_type("aws:lambda/permission:Permission")
                   if p.name.startswith(_prefix(recording))]
    assert {p.inputs["function"] for p in permissions} == {
        f.inputs["name"] for f in _functions(recording).values()}
    for permission in permissions:
        assert permission.inputs["principal"] == "sagemaker.amazonaws.com"
        assert permission.inputs["action"] == "lambda:InvokeFunction"
        assert permission.inputs["sourceAccount"] == ACCOUNT_ID


# ------------------------------------------------------------------------- bucket + template
def test_annotation_bucket_meets_the_floor(recording):
    sse = _one(recording, "annotations-sse").inputs["rules"][0]
    assert sse["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms", "kmsMasterKeyId": recording.outputs["kmsKeyArn"]}
    assert _one(recording, "annotations-versioning").inputs["versioningConfiguration"]["status"] == "Enabled"
    block = _one(recording, "annotations-public-access-block").inputs
    assert all(block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                  "restrictPublicBuckets"))
    policy = json.loads(_one(recording, "annotations-policy").inputs["policy"])
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in policy["Statement"])


def test_annotation_bucket_cors_admits_the_gt_worker_portal(recording, variant):
    (rule,) = _one(recording, "annotations-cors").inputs["corsRules"]
    assert rule["allowedOrigins"] == ["https://*.labeling.us-east-1.sagemaker.aws"]
    assert sorted(rule["allowedMethods"]) == ["GET", "HEAD"]
    assert "Access-Control-Allow-Origin" in rule["exposeHeaders"]
    assert rule["maxAgeSeconds"] > 0
    (custom,) = _one(variant, "annotations-cors").inputs["corsRules"]
    assert custom["allowedOrigins"] == ["https://abc123.labeling.us-east-1.sagemaker.aws"]


def test_worker_template_is_uploaded_encrypted_and_within_gt_limit(recording):
    template = _one(recording, "worker-template").inputs
    assert len(template["content"]) < MAX_TEMPLATE_CHARS
    assert "<crowd-form>" in template["content"] and 'name="annotation"' in template["content"]
    assert template["serverSideEncryption"] == "aws:kms"
    assert template["kmsKeyId"] == recording.outputs["kmsKeyArn"]
    assert recording.outputs["workerTemplateS3Uri"] == (
        f"s3://{recording.outputs['annotationBucket']}/{template['key']}")


# ----------------------------------------------------------------------------------- notebook
def test_notebook_is_private_encrypted_without_root_or_direct_internet(recording):
    notebook = _one(recording, "notebook").inputs
    assert notebook["directInternetAccess"] == "Disabled"
    assert notebook["rootAccess"] == "Disabled"
    assert notebook["kmsKeyId"] == recording.outputs["kmsKeyArn"]
    assert notebook["roleArn"] == recording.outputs["sagemakerExecutionRoleArn"]
    assert notebook["platformIdentifier"].startswith("notebook-al2023")
    assert notebook["instanceMetadataServiceConfiguration"] == {"minimumInstanceMetadataServiceVersion": "2"}
    assert notebook["lifecycleConfigName"] == _one(recording, "notebook-lifecycle").inputs["name"]
    assert notebook["name"] == recording.outputs["notebookInstanceName"]
    assert len(notebook["securityGroups"]) == 1
    sg = _one(recording, "notebook-sg").inputs
    assert not sg.get("ingress") and all(rule["fromPort"] == 443 for rule in sg["egress"])


def test_notebook_runs_in_the_first_private_subnet(variant):
    assert _one(variant, "notebook").inputs["subnetId"] == BYO_PRIVATE[0]


def _lifecycle(rec: Recording, hook: str) -> str:
    return base64.b64decode(_one(rec, "notebook-lifecycle").inputs[hook]).decode()


def test_lifecycle_installs_requirements_and_stops_when_idle(recording, variant):
    on_start = _lifecycle(recording, "onStart")
    assert "IDLE_MINUTES=60\n" in on_start
    assert "pip install" in on_start and "dicom-annotate-idle-stop" in on_start
    assert "IDLE_MINUTES=45\n" in _lifecycle(variant, "onStart")
    for hook in ("onCreate", "onStart"):
        script = _lifecycle(recording, hook)
        assert "__IDLE_MINUTES__" not in script and "__TRAINING_REQUIREMENTS__" not in script
        assert PLACEHOLDER_SECRET not in script
        assert len(_one(recording, "notebook-lifecycle").inputs[hook]) <= MAX_LIFECYCLE_SCRIPT_B64
        subprocess.run(["bash", "-n"], input=script, text=True, check=True)  # valid shell once rendered
    # The idle check and the project copy are Python inside heredocs: they must at least compile.
    idle_check = on_start.split("<<'IDLE_EOF'\n", 1)[1].split("\nIDLE_EOF\n", 1)[0]
    compile(idle_check, "dicom-annotate-idle-stop", "exec")
    assert "stop_notebook_instance" in idle_check
    assert "put_metric_data" in idle_check and '"dicom-annotate/Notebook"' in idle_check
    copy = on_start.split("<<'CODE_EOF'", 1)[1].split("\nCODE_EOF\n", 1)[0].split("\n", 1)[1]
    compile(copy, "project-copy", "exec")


def test_notebook_gets_the_cpu_torch_build_before_the_training_requirements(recording):
    on_start = _lifecycle(recording, "onStart")
    requirements = on_start.split("<<'REQUIREMENTS_EOF'\n", 1)[1].split("\nREQUIREMENTS_EOF\n", 1)[0].splitlines()
    assert requirements[:2] == ["--extra-index-url https://download.pytorch.org/whl/cpu", "torch==2.13.0+cpu"]
    training = [line for line in (ROOT / "training" / "requirements.txt").read_text().splitlines()
                if line and not line.startswith("#")]
    assert requirements[2:] == training and not any(line.startswith("torch") for line in training)
    # The same release the CI venv installs. The constraint names no "+cpu": PyPI serves no local
    # version, so a fresh machine without the CPU wheel on disk must still resolve it.
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()


def test_idle_check_interpreters_match_the_platform_the_stack_sets(recording):
    platform = _one(recording, "notebook").inputs["platformIdentifier"]
    candidates = NOTEBOOK_PLATFORM_PYTHONS[platform]
    on_start = _lifecycle(recording, "onStart")
    assert f"for candidate in {' '.join(candidates)}; do" in on_start
    with pytest.raises(ValueError, match="notebook platform 'notebook-al1-v1': no known Python"):
        notebook_pythons("notebook-al1-v1")


def test_on_start_fails_the_start_when_no_interpreter_has_boto3(recording, tmp_path):
    # Run the script's interpreter choice with candidates that lack boto3: it must exit non-zero
    # with the reason on stderr (CloudWatch Logs: /aws/sagemaker/NotebookInstances).
    on_start = _lifecycle(recording, "onStart")
    choice = on_start.split("IDLE_PYTHON=\"\"\n", 1)[1].split("\nif command -v crond", 1)[0]
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 1\n")  # an interpreter whose `import boto3` fails
    fake.chmod(0o755)
    platform = _one(recording, "notebook").inputs["platformIdentifier"]
    script = "IDLE_PYTHON=\"\"\n" + choice.replace(" ".join(NOTEBOOK_PLATFORM_PYTHONS[platform]), str(fake))
    result = subprocess.run(["bash", "-c", script + "\necho reached"], capture_output=True, text=True)
    assert result.returncode == 1 and "reached" not in result.stdout
    assert "no Python with boto3" in result.stderr


def test_idle_stop_failures_raise_an_alarm(recording):
    alarm = _one(recording, "notebook-idle-stop-alarm").inputs
    assert (alarm["namespace"], alarm["metricName"]) == ("dicom-annotate/Notebook", "IdleStopBroken")
    assert alarm["dimensions"] == {"NotebookInstanceName": recording.outputs["notebookInstanceName"]}
    assert alarm["treatMissingData"] == "notBreaching" and alarm["threshold"] == 1


def test_project_code_and_notebook_are_copied_onto_the_instance(recording):
    code = _one(recording, "notebook-code").inputs
    assert code["key"] == "notebook/dicom-annotate.zip" and code["serverSideEncryption"] == "aws:kms"
    assets = code["source"].assets
    assert "training/notebooks/walkthrough.ipynb" in assets and "labeling/__init__.py" in assets
    assert "devkit/synth.py" in assets  # the walkthrough synthesises data when given no manifest
    assert not [a for a in assets if "__pycache__" in a]
    bucket = recording.outputs["annotationBucket"]
    assert f'"s3://{bucket}/notebook/dicom-annotate.zip"' in _lifecycle(recording, "onStart")


def test_oversized_lifecycle_script_is_refused(tmp_path):
    script = tmp_path / "big.sh"
    script.write_text("#!/bin/bash\n__TRAINING_REQUIREMENTS__\n")
    with pytest.raises(ValueError, match="base64"):
        lifecycle_script_b64(script, {"__TRAINING_REQUIREMENTS__": "x" * 20_000})


def test_lifecycle_placeholder_without_a_value_is_refused(tmp_path):
    script = tmp_path / "on-start.sh"
    script.write_text("#!/bin/bash\nX=__IDLE_MINUTES__ Y=__NEW_SETTING__\n")
    with pytest.raises(ValueError, match="placeholders without a value: __NEW_SETTING__"):
        lifecycle_script_b64(script, {"__IDLE_MINUTES__": "60"})


def test_invalid_idle_minutes_is_a_config_error():
    values = stack_config_values("dev")
    values["dicom-annotate:notebookIdleMinutes"] = 2
    with pytest.raises(ConfigError, match="notebookIdleMinutes"):
        program("dev", config=values)


# ------------------------------------------------------------------------------------ outputs
def test_labeling_outputs_present_and_not_secret(recording):
    for key in ("annotationBucket", "groundTruthRoleArn", "sagemakerExecutionRoleArn", "prelabelLambdaArn",
                "postlabelLambdaArn", "workerTemplateS3Uri", "notebookInstanceName"):
        assert recording.outputs.get(key), key
        assert key not in recording.secret_outputs
        assert PLACEHOLDER_SECRET not in str(recording.outputs[key])
    assert recording.outputs["workerTemplateS3Uri"].startswith("s3://")


# ---------------------------------------------------------------------------- Lambda layer
def test_up_without_the_lambda_layer_stops_but_preview_and_the_offline_plan_warn(tmp_path, monkeypatch):
    import pulumi

    from components import config as stack_config, packaging

    monkeypatch.setattr(packaging, "LAYER_DIR", tmp_path / "lambda-layer")
    # The program itself, as `pulumi up` runs it (no offline allowances, not a preview): stops.
    with pytest.raises(packaging.LambdaLayerMissing, match=r"run `make lambda-layer` before `pulumi up`"):
        run_program("dev", strict=True)
    # A preview, or the offline harness: a marker layer and a warning (and a plan note).
    monkeypatch.setattr(pulumi.runtime, "is_dry_run", lambda: True)
    assert "python/LAYER_NOT_BUILT" in packaging.dependency_layer_archive().assets
    monkeypatch.setattr(pulumi.runtime, "is_dry_run", lambda: False)
    with pytest.raises(packaging.LambdaLayerMissing):
        packaging.dependency_layer_archive()
    with stack_config.offline_run():
        assert "python/LAYER_NOT_BUILT" in packaging.dependency_layer_archive().assets
    # Built: the real directory, whatever the mode.
    (tmp_path / "lambda-layer" / "python" / "pydicom").mkdir(parents=True)
    (tmp_path / "lambda-layer" / "python" / "pydicom" / "__init__.py").write_text("")
    assert packaging.dependency_layer_archive().path == str(tmp_path / "lambda-layer")


def test_offline_plan_notes_whether_the_layer_is_built(recording):
    from components import packaging

    noted = any("lambda-layer is not built" in note for note in recording.notes)
    assert noted == (not packaging.layer_built())
