"""``python -m labeling gt``: render, create-job, status, fetch-output (no network: moto + Stubber)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber

from labeling.gt import cli as gt
from labeling.gt import jobs as gt_jobs
from labeling.gt import render as gt_render
from labeling.cli import main
from labeling.gt.contracts import MAX_TEMPLATE_CHARS

XSS = "<img src=x onerror=alert(1)>"
REGION = "eu-west-1"
ACCOUNT = "123456789012"
BUCKET = "da-dev-annotations"
KMS = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
WORKTEAM = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/radiologists"
OUTPUTS = {
    "annotationBucket": BUCKET,
    "groundTruthRoleArn": f"arn:aws:iam::{ACCOUNT}:role/da-dev-gt",
    "prelabelLambdaArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:da-dev-SageMaker-prelabel",
    "postlabelLambdaArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:da-dev-SageMaker-postlabel",
    "workerTemplateS3Uri": f"s3://{BUCKET}/templates/worker.liquid.html",
    "kmsKeyArn": KMS,
    "orthancUrl": "https://orthanc.example",
}
SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "chest-xray.yaml"
LABELS = ["Opacity", "Device", "Effusion"]

TEMPLATE = """<html><body>
<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form>
  <img src="{{ task.input['source-ref'] | grant_read_access }}">
  {% for label in task.input.labels %}<span class="label">{{ label }}</span>{% endfor %}
  <div id="json" data-labels='{{ task.input.labels | to_json }}'></div>
  <p id="raw">{{ task.input.trusted | skip_autoescape }}</p>
  <p id="once">{{ task.input.amp | escape_once }}</p>
  <input type="hidden" name="annotation" value="">
</crowd-form>
</body></html>
"""


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _task_input(tmp_path: Path) -> Path:
    return _write(tmp_path / "task.json", json.dumps({
        "source-ref": f"s3://{BUCKET}/jobs/j1/staged/a b.dcm", "labels": [XSS, "Device"],
        "trusted": "<b>bold</b>", "amp": "&amp; &"}))


def _manifest(tmp_path: Path, lines: int = 2) -> Path:
    return _write(tmp_path / "manifest.jsonl", "".join(
        json.dumps({"source": f"{i:08x}-11111111-22222222-33333333-44444444", "labels": LABELS,
                    "task_type": "classification+roi", "schema": "chest-xray"}) + "\n"
        for i in range(lines)))


def _outputs(tmp_path: Path, **changes) -> Path:
    data = {**OUTPUTS, **changes}
    data = {k: v for k, v in data.items() if v is not None}
    return _write(tmp_path / "outputs.json", json.dumps(data))


def _create_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["gt", "create-job", "--stack-outputs", str(_outputs(tmp_path)), "--manifest",
            str(_manifest(tmp_path)), "--schema", str(SCHEMA), "--job-name", "chest-batch-1",
            "--workteam-arn", WORKTEAM, *extra]


# ---------------------------------------------------------------------------------------- render
def test_render_escapes_labels_and_emulates_gt_filters(tmp_path):
    template = _write(tmp_path / "t.liquid.html", TEMPLATE)
    out = tmp_path / "out.html"
    assert main(["gt", "render", "--template", str(template), "--task-input", str(_task_input(tmp_path)),
                 "--out", str(out)]) == 0
    html = out.read_text()
    assert XSS not in html
    assert '<span class="label">&lt;img src=x onerror=alert(1)&gt;</span>' in html
    assert f'src="https://{BUCKET}.s3.amazonaws.com/jobs/j1/staged/a%20b.dcm"' in html
    assert "data-labels='[&#34;&lt;img" in html or "data-labels='[&quot;&lt;img" in html
    assert '<p id="raw"><b>bold</b></p>' in html
    assert '<p id="once">&amp; &amp;</p>' in html
    # The crowd-form stand-in replaces GT's elements script and records the submission.
    assert "assets.crowd.aws" not in html.replace("crowd-html-elements.js replaced", "")
    assert 'id="gt-crowd-form-stand-in"' in html
    assert "window.__submitted = content" in html and "customElements.define('crowd-form'" in html
    assert html.index("gt-crowd-form-stand-in") < html.index("</body>")


def test_render_asset_base_and_prelabel_response(tmp_path):
    template = _write(tmp_path / "t.html", "<img src=\"{{ task.input['source-ref'] | grant_read_access }}\">")
    task = _write(tmp_path / "resp.json", json.dumps({
        "taskInput": {"source-ref": f"s3://{BUCKET}/k/x.dcm"}, "isHumanAnnotationRequired": True}))
    out = tmp_path / "o.html"
    assert main(["gt", "render", "--template", str(template), "--task-input", str(task), "--out", str(out),
                 "--asset-base", "http://127.0.0.1:8000/assets/"]) == 0
    html = out.read_text()
    assert 'src="http://127.0.0.1:8000/assets/k/x.dcm"' in html
    assert html.rstrip().endswith("</script>")  # no </body>: appended at the end


def test_grant_read_access_leaves_non_s3_alone():
    assert gt_render.grant_read_access_url("https://example.org/a.png") == "https://example.org/a.png"
    assert gt_render.grant_read_access_url("s3://b-ucket/a/b.dcm") == "https://b-ucket.s3.amazonaws.com/a/b.dcm"


def test_render_refuses_a_template_over_gt_limit(tmp_path, capsys):
    template = _write(tmp_path / "big.html", "x" * (MAX_TEMPLATE_CHARS + 1))
    assert main(["gt", "render", "--template", str(template), "--task-input", str(_task_input(tmp_path)),
                 "--out", str(tmp_path / "o.html")]) == 2
    err = capsys.readouterr().err
    assert str(template) in err and "128,000" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.html").exists()


@pytest.mark.parametrize("content, expected", [("[1, 2]", "must be a JSON object"), ("{", "not valid JSON")])
def test_render_bad_task_input(tmp_path, capsys, content, expected):
    template = _write(tmp_path / "t.html", "x")
    task = _write(tmp_path / "task.json", content)
    assert main(["gt", "render", "--template", str(template), "--task-input", str(task),
                 "--out", str(tmp_path / "o.html")]) == 2
    err = capsys.readouterr().err
    assert str(task) in err and expected in err


def test_render_liquid_syntax_error_is_one_line(tmp_path, capsys):
    template = _write(tmp_path / "t.html", "{% if %}")
    assert main(["gt", "render", "--template", str(template), "--task-input", str(_task_input(tmp_path)),
                 "--out", str(tmp_path / "o.html")]) == 2
    err = capsys.readouterr().err
    assert str(template) in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------ create-job
def _no_aws(monkeypatch):
    def boom(*_a, **_k):
        raise AssertionError("no AWS client may be created")
    monkeypatch.setattr(gt_jobs, "_client", boom)


def test_create_job_dry_run_builds_the_request_and_touches_nothing(tmp_path, monkeypatch, capsys):
    _no_aws(monkeypatch)
    assert main(_create_args(tmp_path, "--dry-run", "--task-time-limit", "900")) == 0
    request = json.loads(capsys.readouterr().out)
    prefix = f"s3://{BUCKET}/jobs/chest-batch-1"
    assert request["LabelingJobName"] == request["LabelAttributeName"] == "chest-batch-1"
    assert request["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"] == f"{prefix}/manifest.jsonl"
    assert request["OutputConfig"] == {"S3OutputPath": f"{prefix}/output/", "KmsKeyId": KMS}
    assert request["RoleArn"] == OUTPUTS["groundTruthRoleArn"]
    assert request["LabelCategoryConfigS3Uri"] == f"{prefix}/label-categories.json"
    human = request["HumanTaskConfig"]
    assert human["WorkteamArn"] == WORKTEAM
    assert human["UiConfig"] == {"UiTemplateS3Uri": OUTPUTS["workerTemplateS3Uri"]}
    assert human["PreHumanTaskLambdaArn"] == OUTPUTS["prelabelLambdaArn"]
    assert human["AnnotationConsolidationConfig"] == {
        "AnnotationConsolidationLambdaArn": OUTPUTS["postlabelLambdaArn"]}
    assert human["NumberOfHumanWorkersPerDataObject"] == 3  # schema's annotators_per_item
    assert human["TaskTimeLimitInSeconds"] == 900
    assert human["TaskAvailabilityLifetimeInSeconds"] == gt_jobs.DEFAULT_TASK_AVAILABILITY_S
    assert human["MaxConcurrentTaskCount"] == gt_jobs.DEFAULT_MAX_CONCURRENT_TASKS
    assert "chest-xray" in human["TaskTitle"] and len(human["TaskTitle"]) <= 128
    assert 0 < len(human["TaskDescription"]) <= 255
    # The request is what botocore accepts for the operation.
    client = boto3.client("sagemaker", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_response("create_labeling_job", {"LabelingJobArn": "arn:x"}, request)
        client.create_labeling_job(**request)


def test_create_job_workers_override(tmp_path, monkeypatch, capsys):
    _no_aws(monkeypatch)
    assert main(_create_args(tmp_path, "--dry-run", "--workers-per-object", "5")) == 0
    assert json.loads(capsys.readouterr().out)["HumanTaskConfig"]["NumberOfHumanWorkersPerDataObject"] == 5


def test_create_job_uploads_manifest_and_calls_the_api(tmp_path, monkeypatch, capsys):
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        stub = Stubber(sagemaker)
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:labeling-job/chest-batch-1"
        stub.add_response("create_labeling_job", {"LabelingJobArn": arn}, {
            "LabelingJobName": "chest-batch-1", "LabelAttributeName": "chest-batch-1",
            "InputConfig": {"DataSource": {"S3DataSource": {
                "ManifestS3Uri": f"s3://{BUCKET}/jobs/chest-batch-1/manifest.jsonl"}}},
            "OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/jobs/chest-batch-1/output/", "KmsKeyId": KMS},
            "RoleArn": OUTPUTS["groundTruthRoleArn"],
            "LabelCategoryConfigS3Uri": f"s3://{BUCKET}/jobs/chest-batch-1/label-categories.json",
            "HumanTaskConfig": ANY, "Tags": ANY})
        regions = []

        def client(service, region):
            regions.append(region)
            return {"s3": s3, "sagemaker": sagemaker}[service]

        monkeypatch.setattr(gt_jobs, "_client", client)
        with stub:
            assert main(_create_args(tmp_path)) == 0
            stub.assert_no_pending_responses()
        assert capsys.readouterr().out.strip() == arn
        assert regions == [REGION, REGION]  # from prelabelLambdaArn
        body = s3.get_object(Bucket=BUCKET, Key="jobs/chest-batch-1/manifest.jsonl")["Body"].read()
        assert body == (tmp_path / "manifest.jsonl").read_bytes()
        categories = json.loads(s3.get_object(
            Bucket=BUCKET, Key="jobs/chest-batch-1/label-categories.json")["Body"].read())
        assert [c["label"] for c in categories["labels"]] == LABELS


def test_create_job_api_error_exits_3(tmp_path, monkeypatch, capsys):
    s3 = boto3.client("s3", region_name=REGION)
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    s3_stub, sm_stub = Stubber(s3), Stubber(sagemaker)
    s3_stub.add_response("put_object", {}, None)
    s3_stub.add_response("put_object", {}, None)
    sm_stub.add_client_error("create_labeling_job", "ResourceInUse", "job exists")
    monkeypatch.setattr(gt_jobs, "_client", lambda service, region: {"s3": s3, "sagemaker": sagemaker}[service])
    with s3_stub, sm_stub:
        assert main(_create_args(tmp_path)) == 3
    assert "ResourceInUse: job exists" in capsys.readouterr().err


def test_create_job_missing_stack_output_is_named(tmp_path, monkeypatch, capsys):
    _no_aws(monkeypatch)
    args = _create_args(tmp_path, "--dry-run")
    _outputs(tmp_path, postlabelLambdaArn=None)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "postlabelLambdaArn" in err and "outputs.json" in err and len(err.strip().splitlines()) == 1


def test_create_job_bad_manifest_line_is_named(tmp_path, monkeypatch, capsys):
    _no_aws(monkeypatch)
    args = _create_args(tmp_path, "--dry-run")
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(manifest.read_text() + "{not json\n")
    assert main(args) == 2
    assert "manifest.jsonl:3" in capsys.readouterr().err


def test_create_job_manifest_labels_must_match_schema(tmp_path, monkeypatch, capsys):
    _no_aws(monkeypatch)
    args = _create_args(tmp_path, "--dry-run")
    _write(tmp_path / "manifest.jsonl", json.dumps({"source": "a", "labels": ["Other"],
                                                    "task_type": "roi", "schema": "chest-xray"}) + "\n")
    assert main(args) == 2
    assert "manifest.jsonl:1: labels" in capsys.readouterr().err


def test_create_job_manifest_uncertain_policy_must_match_schema(tmp_path, monkeypatch, capsys):
    """GT's post-label Lambda counts "uncertain" as the lines say (dataObject.uncertain_policy): a
    manifest built for another version of the schema is refused before anything is uploaded."""
    _no_aws(monkeypatch)
    args = _create_args(tmp_path, "--dry-run")
    line = {"source": "a", "labels": ["Opacity", "Device", "Effusion"], "task_type": "classification+roi",
            "schema": "chest-xray", "uncertain_policy": "present"}
    _write(tmp_path / "manifest.jsonl", json.dumps(line) + "\n")
    assert main(args) == 2
    assert ("manifest.jsonl:1: uncertain_policy: 'present' differs from schema 'chest-xray''s 'ignore'; "
            "rebuild the manifest with this schema") in capsys.readouterr().err
    del line["uncertain_policy"]  # no key: "ignore", the shipped schema's (it offers no "uncertain")
    _write(tmp_path / "manifest.jsonl", json.dumps(line) + "\n")
    assert main(args) == 0


@pytest.mark.parametrize("name", ["chest-metadata", "bad_name", "x-", "source"])
def test_create_job_rejects_bad_job_names(tmp_path, monkeypatch, capsys, name):
    _no_aws(monkeypatch)
    args = _create_args(tmp_path, "--dry-run")
    args[args.index("--job-name") + 1] = name
    assert main(args) == 2
    assert "--job-name" in capsys.readouterr().err


def test_create_job_missing_required_flag_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["gt", "create-job", "--manifest", "m.jsonl"])
    assert exc.value.code == 2
    assert "--stack-outputs" in capsys.readouterr().err


# ----------------------------------------------------------------------- status, fetch-output
def _describe_response(output_uri=None, status="Completed"):
    response = {
        "LabelingJobStatus": status,
        "LabelCounters": {"TotalLabeled": 2, "HumanLabeled": 2, "MachineLabeled": 0,
                          "FailedNonRetryableError": 1, "Unlabeled": 0},
        "CreationTime": dt.datetime(2024, 1, 1), "LastModifiedTime": dt.datetime(2024, 1, 2),
        "JobReferenceCode": "ref", "LabelingJobName": "chest-batch-1",
        "LabelingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:labeling-job/chest-batch-1",
        "LabelAttributeName": "chest-batch-1",
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": f"s3://{BUCKET}/m"}}},
        "OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/o/"},
        "RoleArn": OUTPUTS["groundTruthRoleArn"],
        "HumanTaskConfig": {"WorkteamArn": WORKTEAM, "UiConfig": {"UiTemplateS3Uri": f"s3://{BUCKET}/t"},
                            "PreHumanTaskLambdaArn": OUTPUTS["prelabelLambdaArn"],
                            "TaskTitle": "t", "TaskDescription": "d",
                            "NumberOfHumanWorkersPerDataObject": 3, "TaskTimeLimitInSeconds": 3600,
                            "AnnotationConsolidationConfig": {
                                "AnnotationConsolidationLambdaArn": OUTPUTS["postlabelLambdaArn"]}},
        "FailureReason": "one object failed" if status == "Failed" else None,
    }
    if output_uri:
        response["LabelingJobOutput"] = {"OutputDatasetS3Uri": output_uri}
    return {k: v for k, v in response.items() if v is not None}


def test_status_prints_a_table(monkeypatch, capsys):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    stub = Stubber(sagemaker)
    stub.add_response("describe_labeling_job", _describe_response(status="Failed"),
                      {"LabelingJobName": "chest-batch-1"})
    monkeypatch.setattr(gt_jobs, "_client", lambda service, region: sagemaker)
    with stub:
        assert main(["gt", "status", "--job-name", "chest-batch-1"]) == 0
    out = capsys.readouterr().out
    assert "Failed" in out and "one object failed" in out
    assert any(line.startswith("failed") and line.rstrip().endswith("1") for line in out.splitlines())


def test_status_unknown_job_exits_1(monkeypatch, capsys):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    stub = Stubber(sagemaker)
    stub.add_client_error("describe_labeling_job", "ResourceNotFound", "no such job")
    monkeypatch.setattr(gt_jobs, "_client", lambda service, region: sagemaker)
    with stub:
        assert main(["gt", "status", "--job-name", "nope"]) == 3
    assert "ResourceNotFound" in capsys.readouterr().err


def _output_lines():
    meta = {"type": "groundtruth/custom", "human-annotated": "yes",
            "creation-date": "2024-01-02T03:04:05.123456", "confidence": 0.9}
    return [
        {"source": "a", "chest-batch-1": {"labels": []}, "chest-batch-1-metadata": {**meta, "job-name": "labeling-job/chest-batch-1"}},
        {"source": "b", "chest-batch-1": {"labels": []}, "chest-batch-1-metadata": {**meta, "job_name": "labeling-job/chest-batch-1"}},
        {"source": "c", "chest-batch-1-metadata": {"failure-reason": "ClientError: timeout"}},
    ]


def _fetch(monkeypatch, tmp_path, lines_text: str):
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        key = "jobs/chest-batch-1/output/chest-batch-1/manifests/output/output.manifest"
        s3.put_object(Bucket=BUCKET, Key=key, Body=lines_text.encode())
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        stub = Stubber(sagemaker)
        stub.add_response("describe_labeling_job", _describe_response(f"s3://{BUCKET}/{key}"),
                          {"LabelingJobName": "chest-batch-1"})
        monkeypatch.setattr(gt_jobs, "_client", lambda service, region: {"s3": s3, "sagemaker": sagemaker}[service])
        with stub:
            return main(["gt", "fetch-output", "--job-name", "chest-batch-1",
                         "--out", str(tmp_path / "out" / "output.manifest"), "--parents"])


def test_fetch_output_downloads_and_counts(tmp_path, monkeypatch, capsys):
    text = "".join(json.dumps(line) + "\n" for line in _output_lines())
    assert _fetch(monkeypatch, tmp_path, text) == 0
    assert (tmp_path / "out" / "output.manifest").read_text() == text
    out = capsys.readouterr().out
    assert "3 lines, 2 labelled, 1 failed, 0 invalid" in out


def test_fetch_output_reports_invalid_metadata(tmp_path, monkeypatch, capsys):
    lines = _output_lines()
    del lines[1]["chest-batch-1-metadata"]["job_name"]
    text = "".join(json.dumps(line) + "\n" for line in lines) + "not json\n"
    assert _fetch(monkeypatch, tmp_path, text) == 1
    captured = capsys.readouterr()
    assert "4 lines, 1 labelled, 1 failed, 2 invalid" in captured.out
    assert ":2: chest-batch-1-metadata: job-name" in captured.err and ":4:" in captured.err


def test_fetch_output_without_output_yet(monkeypatch, capsys, tmp_path):
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    stub = Stubber(sagemaker)
    stub.add_response("describe_labeling_job", _describe_response(status="InProgress"),
                      {"LabelingJobName": "chest-batch-1"})
    monkeypatch.setattr(gt_jobs, "_client", lambda service, region: sagemaker)
    with stub:
        assert main(["gt", "fetch-output", "--job-name", "chest-batch-1", "--out", str(tmp_path / "o")]) == 3
    assert "no output manifest yet (status InProgress)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ help
@pytest.mark.parametrize("argv", [["gt", "--help"], ["gt", "render", "--help"], ["gt", "create-job", "--help"],
                                  ["gt", "status", "--help"], ["gt", "fetch-output", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_gt_is_registered():
    from labeling.cli import COMMAND_MODULES

    assert "labeling.gt.cli" in COMMAND_MODULES


def _fake_viewer_build(tmp_path: Path) -> tuple[Path, str]:
    build = tmp_path / "viewer-build"
    build.mkdir()
    (build / "viewer.js").write_bytes(b"export const v = 1;\n")
    import base64
    import hashlib
    return build, "sha384-" + base64.b64encode(hashlib.sha384(b"export const v = 1;\n").digest()).decode()


def test_the_shipped_worker_template_renders_a_prelabel_task(tmp_path):
    # The template the stack uploads, fed what the pre-label Lambda returns: the staged image
    # becomes a presigned-style URL, a hostile label stays text, the form records its answer,
    # the viewer bundle is loaded from the asset URL with the SRI of the build.
    template = Path(gt.__file__).with_name("worker_template.liquid.html")
    build, integrity = _fake_viewer_build(tmp_path)
    task = {"taskInput": {"image": "s3://annotations/job-1/abc.dcm", "source": "abc",
                          "labels": ["Opacity", "<img src=x onerror=alert(1)>"],
                          "image_geometry": {"rows": 256, "columns": 256, "frames": 1}}}
    task_file = _write(tmp_path / "task.json", json.dumps(task))
    out = tmp_path / "page.html"
    assert main(["gt", "render", "--template", str(template), "--task-input", str(task_file),
                 "--out", str(out), "--viewer-dir", str(build),
                 "--viewer-base-url", "https://d111.cloudfront.net/viewer/v1"]) == 0
    page = out.read_text()
    assert 'data-image-url="https://annotations.s3.amazonaws.com/job-1/abc.dcm"' in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
    assert 'name="annotation"' in page and "gt-crowd-form-stand-in" in page
    assert "256 × 256 px" in page
    assert (f'<script type="module" src="https://d111.cloudfront.net/viewer/v1/viewer.js" '
            f'integrity="{integrity}" crossorigin="anonymous"></script>') in page
    assert "__DA_VIEWER" not in page and "data-prelabel=" not in page  # no prelabel in this task
    assert "data-uncertain=" not in page and "present or absent" in page  # its schema offers no "uncertain"


def test_the_template_offers_uncertain_when_the_task_carries_an_uncertain_policy(tmp_path):
    # What the pre-label Lambda passes on from a line whose schema offers "uncertain" (tests/browser drives it).
    template = Path(gt.__file__).with_name("worker_template.liquid.html")
    build, _ = _fake_viewer_build(tmp_path)
    task_file = _write(tmp_path / "task.json", json.dumps({"image": "s3://b/k.dcm", "labels": ["A"],
                                                           "uncertain_policy": "ignore"}))
    out = tmp_path / "page.html"
    assert main(["gt", "render", "--template", str(template), "--task-input", str(task_file),
                 "--out", str(out), "--viewer-dir", str(build)]) == 0
    page = out.read_text()
    assert 'data-uncertain="true"' in page and "present, absent or uncertain" in page


def test_render_default_viewer_url_is_the_local_build(tmp_path):
    template = Path(gt.__file__).with_name("worker_template.liquid.html")
    build, integrity = _fake_viewer_build(tmp_path)
    task_file = _write(tmp_path / "task.json", json.dumps({"image": "s3://b/k.dcm", "labels": ["A"],
                                                           "prelabel": {"labels": [{"name": "A", "present": True}]}}))
    out = tmp_path / "page.html"
    assert main(["gt", "render", "--template", str(template), "--task-input", str(task_file),
                 "--out", str(out), "--viewer-dir", str(build)]) == 0
    page = out.read_text()
    assert f'src="{build.resolve().as_uri()}/viewer.js" integrity="{integrity}"' in page
    assert "data-prelabel='{&#34;labels&#34;" in page or "data-prelabel='{&quot;labels&quot;" in page


def test_render_without_a_viewer_build_says_make_viewer(tmp_path, capsys):
    template = Path(gt.__file__).with_name("worker_template.liquid.html")
    task_file = _write(tmp_path / "task.json", json.dumps({"image": "s3://b/k.dcm", "labels": ["A"]}))
    assert main(["gt", "render", "--template", str(template), "--task-input", str(task_file),
                 "--out", str(tmp_path / "o.html"), "--viewer-dir", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "make viewer" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.html").exists()


def test_render_serve_previews_the_example_task_with_one_command(tmp_path):
    """The README's example: page, viewer build and the staged DICOM file from one loopback server,
    bounded in time; the page declares UTF-8."""
    import signal
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    repo = Path(gt.__file__).resolve().parents[2]
    build, _ = _fake_viewer_build(tmp_path)
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "CT_small.dcm").write_bytes(b"DICM-ish")
    process = subprocess.Popen([sys.executable, "-m", "labeling", "gt", "render", "--template",
                                str(repo / "labeling" / "gt" / "worker_template.liquid.html"), "--task-input",
                                str(repo / "examples" / "gt-task-input.json"), "--viewer-dir", str(build),
                                "--asset-dir", str(assets), "--serve", "60"],
                               cwd=repo, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("preview: open http://127.0.0.1:") and "stops in 60 s or on Ctrl-C" in line
        url = line.split()[2]
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert page.startswith('<meta charset="utf-8">') and "128 × 128 px" in page
        assert f'src="{url}viewer/viewer.js"' in page and f'data-image-url="{url}assets/CT_small.dcm"' in page
        assert urllib.request.urlopen(f"{url}viewer/viewer.js", timeout=10).read() == b"export const v = 1;\n"
        assert urllib.request.urlopen(f"{url}assets/CT_small.dcm", timeout=10).read() == b"DICM-ish"
        with pytest.raises(urllib.error.HTTPError) as outside:
            urllib.request.urlopen(f"{url}assets/%2e%2e/%2e%2e/%2e%2e/etc/passwd", timeout=10)
        assert outside.value.code == 404
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C stops it cleanly
        rest, _ = process.communicate(timeout=20)
    assert process.returncode == 0 and "preview: stopped" in rest


def test_render_needs_out_or_serve(tmp_path, capsys):
    task_file = _write(tmp_path / "task.json", json.dumps({"image": "s3://b/k.dcm", "labels": ["A"]}))
    assert main(["gt", "render", "--template", str(Path(gt.__file__).with_name("worker_template.liquid.html")),
                 "--task-input", str(task_file)]) == 2
    assert capsys.readouterr().err.strip() == "gt render: error: give --out HTML_FILE, --serve, or both"


# ------------------------------------------------------------------------------- series tasks
HOSTILE_ID = "x' onmouseover='alert(1)\" <img src=x onerror=alert(2)>&amp;"


def _data_attributes(page: str, element_id: str) -> dict[str, str]:
    """The attributes of one element as a browser reads them (entities decoded)."""
    from html.parser import HTMLParser

    found: dict[str, str] = {}

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            values = dict(attrs)
            if values.get("id") == element_id:
                found.update({k: v or "" for k, v in attrs})

    Parser().feed(page)
    return found


def _series_task(slices: list[dict], **extra) -> dict:
    # What labeling/gt/prelabel.py returns for a series line: the single-image keys plus level and slices.
    return {"image": slices[0]["image"], "source": "5e1ab7c3-00000000-00000000-00000000-00000000",
            "level": "series", "labels": ["Nodule"], "task_type": "classification+roi", "schema": "ct-nodule",
            "image_geometry": {"rows": 96, "columns": 96, "frames": len(slices)}, "slices": slices, **extra}


def test_the_shipped_template_hands_a_series_to_the_viewer_with_every_slice_granted(tmp_path):
    template = Path(gt.__file__).with_name("worker_template.liquid.html")
    build, _ = _fake_viewer_build(tmp_path)
    ids = [f"{i:08x}-11111111-22222222-33333333-44444444" for i in range(3)]
    slices = [{"image": f"s3://staging/job-1/{i}.dcm", "instance": i, "frame": 0} for i in ids]
    slices.append({"image": "s3://staging/job-1/odd name+.dcm", "instance": HOSTILE_ID, "frame": 7})
    task_file = _write(tmp_path / "task.json", json.dumps({"taskInput": _series_task(slices)}))
    out = tmp_path / "page.html"
    assert main(["gt", "render", "--template", str(template), "--task-input", str(task_file), "--out", str(out),
                 "--viewer-dir", str(build), "--asset-base", "https://staging.example/presigned"]) == 0
    page = out.read_text()
    attributes = _data_attributes(page, "da-task")
    assert json.loads(attributes["data-slices"]) == [
        {"url": f"https://staging.example/presigned/job-1/{i}.dcm", "instance": i, "frame": 0} for i in ids] + [
        {"url": "https://staging.example/presigned/job-1/odd%20name%2B.dcm", "instance": HOSTILE_ID, "frame": 7}]
    # The hostile ID stayed inside the attribute: no markup, no extra attribute came out of it.
    assert "<img src=x" not in page and "onmouseover" not in attributes
    assert set(attributes) == {"id", "hidden", "data-image-url", "data-labels", "data-schema", "data-task-type",
                               "data-instructions", "data-slices"}
    assert "De-identified DICOM series: 4 slices" in page and "of 96 × 96 px" in page


def test_a_multiframe_task_says_frames_and_a_single_image_task_has_no_slices(tmp_path):
    template = Path(gt.__file__).with_name("worker_template.liquid.html")
    build, _ = _fake_viewer_build(tmp_path)
    mf = "0a9b4f3c-1d2e3f40-5a6b7c8d-9e0f1a2b-3c4d5e6f"
    frames = [{"image": f"s3://staging/job-1/{mf}.dcm", "instance": mf, "frame": f} for f in range(5)]
    for name, task, expect in [("mf", _series_task(frames, level="multiframe"), "multi-frame image: 5 frames"),
                               ("one", {"image": "s3://b/k.dcm", "labels": ["A"]}, "De-identified DICOM image")]:
        task_file = _write(tmp_path / f"{name}.json", json.dumps(task))
        out = tmp_path / f"{name}.html"
        assert main(["gt", "render", "--template", str(template), "--task-input", str(task_file), "--out", str(out),
                     "--viewer-dir", str(build)]) == 0
        page = out.read_text()
        assert expect in page
        slices = _data_attributes(page, "da-task").get("data-slices")
        assert (json.loads(slices) if slices else None) == (
            [{"url": f"https://staging.s3.amazonaws.com/job-1/{mf}.dcm", "instance": mf, "frame": f} for f in range(5)]
            if name == "mf" else None)


def test_render_serve_previews_the_series_example_from_a_synth_folder(tmp_path):
    """The README's series example: examples/gt-series-task-input.json is the pre-label answer for the
    series `synth --series 1 --slices 24 --size 64 --seed 0 --prevalence 1` writes; --asset-dir serves
    each staged key <orthanc id>.dcm from the file with that Orthanc instance ID."""
    import subprocess
    import sys
    import urllib.request

    from devkit.synth_series import generate_series_dataset

    repo = Path(gt.__file__).resolve().parents[2]
    example = repo / "examples" / "gt-series-task-input.json"
    synth = tmp_path / "series"
    generate_series_dataset(synth, series=1, slices=24, size=64, seed=0, prevalence=1.0, progress=False)
    truth = json.loads((synth / "ground_truth.jsonl").read_text().splitlines()[0])
    task = json.loads(example.read_text())["taskInput"]
    assert [s["instance"] for s in task["slices"]] == list(reversed(truth["instances"]))  # manifest order: z up
    files = {i: next(synth.rglob(f"{sop}.dcm")) for i, sop in zip(truth["instances"], truth["sop_instance_uids"])}
    build, _ = _fake_viewer_build(tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "labeling", "gt", "render", "--template",
                                str(repo / "labeling" / "gt" / "worker_template.liquid.html"), "--task-input",
                                str(example), "--viewer-dir", str(build), "--asset-dir", str(synth), "--serve", "60"],
                               cwd=repo, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("preview: open http://127.0.0.1:"), line
        url = line.split()[2]
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        slices = json.loads(_data_attributes(page, "da-task")["data-slices"])
        assert [s["instance"] for s in slices] == [s["instance"] for s in task["slices"]]
        for s in (slices[0], slices[11], slices[-1]):
            assert s["url"] == f"{url}assets/ct-series-preview/{s['instance']}.dcm"
            assert urllib.request.urlopen(s["url"], timeout=10).read() == files[s["instance"]].read_bytes()
    finally:
        process.terminate()
        process.communicate(timeout=20)


def test_render_asset_dir_names_the_slices_it_cannot_serve(tmp_path, capsys):
    assets = tmp_path / "assets"
    (assets / "job").mkdir(parents=True)
    ids = [f"{i:08x}-11111111-22222222-33333333-44444444" for i in range(5)]
    (assets / "job" / f"{ids[0]}.dcm").write_bytes(b"x")
    (assets / "job" / "junk.dcm").write_bytes(b"not DICOM")  # looked at, skipped
    slices = [{"image": f"s3://staging/job/{i}.dcm", "instance": i, "frame": 0} for i in ids]
    task_file = _write(tmp_path / "task.json", json.dumps(_series_task(slices)))
    build, _ = _fake_viewer_build(tmp_path)
    assert main(["gt", "render", "--template", str(Path(gt.__file__).with_name("worker_template.liquid.html")),
                 "--task-input", str(task_file), "--viewer-dir", str(build), "--asset-dir", str(assets),
                 "--serve", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no file for 4 of the task's 5 images" in err
    assert f"s3://staging/job/{ids[1]}.dcm" in err and "and 1 more" in err and ids[0] not in err


def test_a_200_slice_page_beyond_128000_characters_renders_gt_counts_the_template(tmp_path):
    # GT's 128,000-character limit is on the template it is given, not the page it renders per task:
    # a series page with presigned URLs (~1,400 characters each with a session token) is far larger.
    ids = [f"{i:08x}-11111111-22222222-33333333-44444444" for i in range(200)]
    slices = [{"image": f"s3://staging/job/{i}.dcm", "instance": i, "frame": 0} for i in ids]
    task_file = _write(tmp_path / "task.json", json.dumps(_series_task(slices)))
    build, _ = _fake_viewer_build(tmp_path)
    out = tmp_path / "page.html"
    presigned = "https://staging.s3.eu-west-1.amazonaws.com/p" + "X" * 1300
    assert main(["gt", "render", "--template", str(Path(gt.__file__).with_name("worker_template.liquid.html")),
                 "--task-input", str(task_file), "--viewer-dir", str(build), "--asset-base", presigned,
                 "--out", str(out)]) == 0
    page = out.read_text()
    assert len(page) > 2 * MAX_TEMPLATE_CHARS
    assert len(json.loads(_data_attributes(page, "da-task")["data-slices"])) == 200


def test_render_refuses_a_task_input_no_lambda_could_return(tmp_path, capsys):
    from labeling.gt.contracts import MAX_PRELABEL_RESPONSE_BYTES, prelabel_response_problem

    mf = "0a9b4f3c-1d2e3f40-5a6b7c8d-9e0f1a2b-3c4d5e6f"
    frame = {"image": f"s3://staging/job/{mf}.dcm", "instance": mf, "frame": 0}
    def task(frames: int) -> dict:
        return _series_task([{**frame, "frame": f} for f in range(frames)], level="multiframe")

    def size(frames: int) -> int:  # the Lambda's answer, compact UTF-8 JSON
        return len(json.dumps({"taskInput": task(frames), "isHumanAnnotationRequired": True},
                              separators=(",", ":")).encode())

    lo, hi = 1, 100_000  # the most frames whose answer fits, by bisection on the refusal
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if prelabel_response_problem(task(mid)) is None else (lo, mid - 1)
    assert size(lo) <= MAX_PRELABEL_RESPONSE_BYTES < size(lo + 1)  # refused exactly above Lambda's limit
    too_big = task(lo + 1)
    task_file = _write(tmp_path / "task.json", json.dumps(too_big))
    assert main(["gt", "render", "--template", str(Path(gt.__file__).with_name("worker_template.liquid.html")),
                 "--task-input", str(task_file), "--out", str(tmp_path / "o.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(task_file) in err and "6,291,556 a Lambda may return" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.html").exists()
