"""``python -m labeling gt``: the SageMaker Ground Truth path from the command line.

Sub-commands
============
``render --template FILE --task-input JSON_FILE --out HTML_FILE [--asset-base URL] [--viewer-base-url URL]``
    Local preview of the worker task template, rendered the way GT renders it. First the viewer
    placeholders of the shipped template (``labeling/gt/worker_template.liquid.html``) are filled in
    as the stack does (:func:`labeling.gt.viewer_assets.fill_template`): ``--viewer-base-url`` is
    where ``viewer.js`` and its worker and codecs are served (default: the ``file://`` URL of
    ``--viewer-dir``, itself defaulting to ``build/viewer``; browsers load module scripts only over
    http(s), so serve that directory and pass its URL to use the page), and the SRI is that of
    ``<viewer-dir>/viewer.js`` (``make viewer`` first). Then: Liquid
    (python-liquid 2) with **autoescape on**, the context ``{"task": {"input": <task input>}}``, and
    GT's extra filters emulated:

    - ``grant_read_access``: GT swaps an ``s3://bucket/key`` URI for a short-lived presigned https
      URL. Locally: ``<asset-base>/<key>`` when ``--asset-base`` is given (e.g. a local server or
      the MinIO/moto endpoint serving the staging bucket), else the virtual-hosted S3 URL
      ``https://<bucket>.s3.amazonaws.com/<key>`` (unsigned; it works only for public objects).
      The key is URL-quoted (``/`` kept). Anything that is not an ``s3://`` URI is returned as is.
    - ``to_json``: ``json.dumps`` of the value (a missing key gives ``null``). Its output is autoescaped like any other value, as
      in GT (``categories='{{ task.input.labels | to_json }}'`` in an attribute is the GT idiom).
    - ``skip_autoescape``: marks the value as safe HTML (only for trusted content).
    - ``escape`` / ``escape_once``: python-liquid's built-ins (autoescape-aware).

    The task input file is the ``taskInput`` object the pre-annotation Lambda returns; a whole
    pre-annotation response (``{"taskInput": {...}, "isHumanAnnotationRequired": ...}``) is unwrapped.

    ``<crowd-form>`` stand-in: GT's ``crowd-html-elements.js`` is not loaded (its ``<script>`` tag is
    replaced by a comment, so the page works offline); an inline script is injected before
    ``</body>`` (or at the end) that defines ``crowd-form`` and ``crowd-button`` custom elements.
    ``crowd-form`` adds a Submit button unless the form holds a ``crowd-button form-action="submit"``
    or a submit ``<button>``; on submit it dispatches a cancelable ``submit`` event on itself (the
    template's own listeners run, e.g. to fill a hidden field), then collects the **named** fields
    inside it (``input``/``select``/``textarea``; a checkbox gives ``true``/``false``, a radio group
    the checked value, anything else its ``value``) into an object: ``window.__submitted`` is that
    object, ``window.__submittedContent`` the JSON string GT would store as
    ``annotationData.content``, and a ``crowd-form-submitted`` event fires on ``window``. A template
    longer than GT's limit (:data:`labeling.gt.contracts.MAX_TEMPLATE_CHARS`) is refused.

``create-job --stack-outputs JSON_FILE --manifest FILE --schema FILE --job-name NAME --workteam-arn ARN``
    Validates the manifest (:func:`labeling.manifest.build.read_manifest`, each line's ``schema`` and
    ``labels`` must match the schema) and the schema, then uploads the manifest to
    ``s3://<annotationBucket>/jobs/<job>/manifest.jsonl`` and the schema's labels as a GT label
    category config to ``…/jobs/<job>/label-categories.json`` (SSE-KMS with ``kmsKeyArn``), and
    calls ``sagemaker.create_labeling_job`` (see :func:`build_create_request`): the label attribute
    is the job name, the output goes to ``s3://<bucket>/jobs/<job>/output/``. The stack outputs
    file is ``pulumi stack output --json``. ``--region`` defaults to the region of
    ``prelabelLambdaArn`` (GT must run where its Lambdas are). ``--dry-run`` prints the request as
    JSON and touches nothing (no AWS client is even created).

``status --job-name NAME``
    ``describe_labeling_job``: status, label counters, failure reason, output location.

``fetch-output --job-name NAME --out FILE``
    Downloads the job's output manifest (``LabelingJobOutput.OutputDatasetS3Uri``) to FILE and
    checks every line with the one output-line reader
    (:func:`labeling.contracts.output_line.parse_output_line`: metadata with ``job-name`` or
    ``job_name``, content in the label shape): a valid line counts as labelled; a line with
    ``failure-reason`` in its metadata, or with neither ``<attr>`` nor ``<attr>-metadata``, as failed
    (GT writes those for objects it could not label); any other line as invalid, with its problem.

Exit codes (README, "Errors and exit codes"): 0 done; 1 invalid output-manifest lines; 2 bad input (one
line naming the file, the line or the key); 3 AWS refused or could not be reached.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from labeling.aws import AwsError, aws_call
from labeling.cli import bad_input_errors, one_line_errors, positive_int
from labeling.contracts.output_line import FailedLine, OutputManifestError, parse_output_line
from labeling.gt.contracts import MAX_TEMPLATE_CHARS, split_s3_uri
from labeling.outdir import atomic_file
from labeling.stack_outputs import StackOutputsError, load_stack_outputs as read_stack_outputs

# Stack outputs (``__main__.py``) create-job needs.
REQUIRED_STACK_OUTPUTS = (
    "annotationBucket", "groundTruthRoleArn", "prelabelLambdaArn", "postlabelLambdaArn",
    "workerTemplateS3Uri", "kmsKeyArn",
)

DEFAULT_TASK_TIME_LIMIT_S = 3600                 # GT: 30 .. 28,800 s
DEFAULT_TASK_AVAILABILITY_S = 10 * 24 * 3600     # GT: up to 864,000 s (public), 365 days (private)
DEFAULT_MAX_CONCURRENT_TASKS = 1000              # GT: 1 .. 5,000
_JOB_NAME_RE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")  # CreateLabelingJob LabelingJobName
_CROWD_ELEMENTS_SCRIPT_RE = re.compile(
    r"<script[^>]*\bsrc=[\"']https://assets\.crowd\.aws/crowd-html-elements\.js[\"'][^>]*>\s*</script>",
    re.I)


class GtError(Exception):
    """A bad input: one line naming the file, line or key; exit code 2."""


# ======================================================================================= render

CROWD_FORM_STAND_IN = """<script id="gt-crowd-form-stand-in">
/* Local stand-in for GT's <crowd-form> (python -m labeling gt render): collects the named fields on
   submit into window.__submitted (object) and window.__submittedContent (the JSON string GT stores
   as annotationData.content). */
(function () {
  function collect(form) {
    var out = {};
    var fields = form.querySelectorAll('input[name], select[name], textarea[name]');
    Array.prototype.forEach.call(fields, function (el) {
      var type = (el.type || '').toLowerCase();
      if (type === 'checkbox') { out[el.name] = !!el.checked; }
      else if (type === 'radio') { if (el.checked) { out[el.name] = el.value; }
                                   else if (!(el.name in out)) { out[el.name] = null; } }
      else if (type === 'submit' || type === 'button') { return; }
      else { out[el.name] = el.value; }
    });
    return out;
  }
  function submit(form) {
    var event = new Event('submit', {cancelable: true});
    if (!form.dispatchEvent(event)) { return null; }
    var content = collect(form);
    window.__submitted = content;
    window.__submittedContent = JSON.stringify(content);
    window.dispatchEvent(new CustomEvent('crowd-form-submitted', {detail: content}));
    return content;
  }
  if (!customElements.get('crowd-form')) {
    customElements.define('crowd-form', class extends HTMLElement {
      connectedCallback() {
        var self = this;
        if (this.__standIn) { return; }
        this.__standIn = true;
        this.addEventListener('click', function (e) {
          var t = e.target.closest('crowd-button[form-action="submit"], button[type="submit"], input[type="submit"]');
          if (t && self.contains(t)) { e.preventDefault(); submit(self); }
        });
        if (!this.querySelector('crowd-button[form-action="submit"], button[type="submit"], input[type="submit"]')) {
          var button = document.createElement('button');
          button.type = 'submit';
          button.id = 'crowd-form-submit';
          button.textContent = 'Submit';
          this.appendChild(button);
        }
      }
      submit() { return submit(this); }
    });
  }
  if (!customElements.get('crowd-button')) {
    customElements.define('crowd-button', class extends HTMLElement {
      connectedCallback() {
        if (!this.hasAttribute('role')) { this.setAttribute('role', 'button'); }
        if (!this.hasAttribute('tabindex')) { this.setAttribute('tabindex', '0'); }
        this.style.cursor = 'pointer';
      }
    });
  }
})();
</script>
"""


def grant_read_access_url(uri: Any, asset_base: Optional[str] = None) -> Any:
    """The local stand-in for GT's ``grant_read_access`` (see the module docstring)."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        return uri
    try:
        bucket, key = split_s3_uri(uri, "grant_read_access")
    except ValueError:
        return uri
    quoted = urllib.parse.quote(key, safe="/")
    if asset_base:
        return f"{asset_base.rstrip('/')}/{quoted}"
    return f"https://{bucket}.s3.amazonaws.com/{quoted}"


def _to_json(value: Any) -> str:
    """GT's ``to_json``; a missing key (Liquid ``Undefined``) gives ``null`` rather than an error."""
    from liquid import Undefined

    if isinstance(value, Undefined):
        value = None
    return json.dumps(value, ensure_ascii=False)


def render_template(template_text: str, task_input: Mapping[str, Any], *,
                    asset_base: Optional[str] = None, source: str = "<template>") -> str:
    """Render a GT worker template locally; raises :class:`GtError` for an oversize/bad template."""
    if len(template_text) > MAX_TEMPLATE_CHARS:
        raise GtError(f"{source}: template is {len(template_text):,} characters; Ground Truth "
                      f"accepts at most {MAX_TEMPLATE_CHARS:,} (load large code from the asset location)")
    from liquid import Environment, Markup
    from liquid.exceptions import LiquidError

    env = Environment(autoescape=True)
    env.filters["grant_read_access"] = lambda value: grant_read_access_url(value, asset_base)
    env.filters["to_json"] = _to_json
    env.filters["skip_autoescape"] = lambda value: Markup("" if value is None else str(value))
    try:
        html = env.from_string(template_text).render(task={"input": dict(task_input)})
    except LiquidError as exc:
        raise GtError(f"{source}: Liquid error: {' '.join(str(exc).split())}") from None
    return inject_crowd_form_stand_in(html)


def inject_crowd_form_stand_in(html: str) -> str:
    """Drop GT's crowd-html-elements.js and add the stand-in script before ``</body>`` (or at the end)."""
    html = _CROWD_ELEMENTS_SCRIPT_RE.sub(
        "<!-- crowd-html-elements.js replaced by the local stand-in (labeling gt render) -->", html)
    index = html.lower().rfind("</body>")
    if index < 0:
        return html.rstrip("\n") + "\n" + CROWD_FORM_STAND_IN
    return html[:index] + CROWD_FORM_STAND_IN + html[index:]


def _read_json(path: str, what: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise GtError(f"{path}: cannot read {what}: {reason}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GtError(f"{path}:{exc.lineno}: {what} is not valid JSON ({exc.msg})") from None


def _cmd_render(args: argparse.Namespace) -> int:
    try:
        template_text = Path(args.template).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise GtError(f"{args.template}: cannot read template: {reason}") from None
    task_input = _read_json(args.task_input, "task input")
    if isinstance(task_input, Mapping) and isinstance(task_input.get("taskInput"), Mapping):
        task_input = task_input["taskInput"]  # a whole pre-annotation response
    if not isinstance(task_input, Mapping):
        raise GtError(f"{args.task_input}: task input must be a JSON object (the taskInput), "
                      f"got {type(task_input).__name__}")
    from labeling.gt.viewer_assets import VIEWER_BUILD_DIR, ViewerAssetsError, default_base_url, fill_template

    if args.out is None and args.serve is None:
        raise GtError("give --out HTML_FILE, --serve, or both")
    server = _PreviewServer(args.viewer_dir or VIEWER_BUILD_DIR, args.asset_dir) if args.serve is not None else None
    viewer_base = args.viewer_base_url or (server.url("/viewer/") if server else default_base_url(args.viewer_dir))
    asset_base = args.asset_base or (server.url("/assets") if server and args.asset_dir else None)
    try:
        template_text = fill_template(template_text, viewer_base, args.viewer_dir, source=args.template)
        html = with_charset(render_template(template_text, task_input, asset_base=asset_base,
                                            source=args.template))
        if args.out is not None:
            try:
                Path(args.out).write_text(html, encoding="utf-8")
            except OSError as exc:
                raise GtError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
            print(f"rendered {args.template} → {args.out} ({len(html):,} characters)")
    except (ViewerAssetsError, GtError) as exc:
        if server:
            server.close()
        raise GtError(str(exc)) from None
    if server:
        server.serve(html, seconds=args.serve)
    return 0


def with_charset(html: str) -> str:
    """The preview page declares UTF-8 (GT's page does; without it "256 × 256" shows as "256 Ã— 256")."""
    if re.search(r"<meta[^>]+charset", html[:4096], re.I):
        return html
    head = re.search(r"<head[^>]*>", html, re.I)
    tag = '<meta charset="utf-8">'
    return html[:head.end()] + tag + html[head.end():] if head else tag + "\n" + html


class _PreviewServer:
    """``gt render --serve``: the page at ``/``, the viewer build at ``/viewer/``, ``--asset-dir`` at
    ``/assets/``; on 127.0.0.1 only, for a bounded time (or until Ctrl-C)."""

    def __init__(self, viewer_dir: Path, asset_dir: Optional[Path]) -> None:
        import http.server

        roots = {"/viewer/": Path(viewer_dir).resolve()}
        if asset_dir is not None:
            if not Path(asset_dir).is_dir():
                raise GtError(f"--asset-dir {asset_dir}: not a directory")
            roots["/assets/"] = Path(asset_dir).resolve()
        self.page = b""
        preview = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def translate_path(self, path: str) -> str:
                clean = urllib.parse.unquote(path.split("?", 1)[0])
                for prefix, root in roots.items():
                    if clean.startswith(prefix):
                        target = (root / clean[len(prefix):]).resolve()
                        if target == root or root in target.parents:  # never outside the root
                            return str(target)
                return ""

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] not in ("/", "/index.html") and not self.translate_path(self.path):
                    self.send_error(404)
                    return
                if self.path.split("?", 1)[0] in ("/", "/index.html"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(preview.page)))
                    self.end_headers()
                    self.wfile.write(preview.page)
                    return
                super().do_GET()

            def log_message(self, *args: Any) -> None:  # keep the terminal for the one status line
                pass

        Handler.extensions_map = {**Handler.extensions_map, ".js": "text/javascript", ".mjs": "text/javascript",
                                  ".wasm": "application/wasm", ".dcm": "application/dicom"}
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._serving = False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def serve(self, html: str, seconds: float) -> None:
        import threading

        self.page = html.encode("utf-8")
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        self._serving = True
        print(f"preview: open {self.url('/')} (127.0.0.1 only; stops in {seconds:.0f} s or on Ctrl-C)",
              flush=True)
        try:
            thread.join(timeout=seconds)
        except KeyboardInterrupt:
            pass
        finally:
            self.close()
        print("preview: stopped")

    def close(self) -> None:
        if self._serving:
            self._server.shutdown()
            self._serving = False
        self._server.server_close()


# =================================================================================== create-job

def load_stack_outputs(path: str) -> dict[str, str]:
    """The ``pulumi stack output --json`` file, with every key create-job needs present."""
    try:
        out = read_stack_outputs(REQUIRED_STACK_OUTPUTS, path=path).values
        split_s3_uri(out["workerTemplateS3Uri"], "workerTemplateS3Uri")
    except StackOutputsError as exc:
        raise GtError(str(exc)) from None
    except ValueError as exc:
        raise GtError(f"{path}: stack output {exc}") from None
    return out


def validate_job_name(name: str) -> str:
    from labeling.manifest.build import KNOWN_KEYS

    if not _JOB_NAME_RE.fullmatch(name):
        raise GtError(f"--job-name: {name!r} must be 1-63 letters, digits and hyphens, starting and "
                      "ending with a letter or digit (GT LabelingJobName)")
    if name.endswith("-metadata"):
        raise GtError(f"--job-name: {name!r} must not end in '-metadata' (it is the label attribute "
                      "name; GT writes '<attr>-metadata' itself)")
    if name in KNOWN_KEYS:
        raise GtError(f"--job-name: {name!r} is a manifest key; the label attribute must differ")
    return name


def label_category_config(schema: Any) -> dict[str, Any]:
    """GT's label category configuration file for the schema's labels."""
    return {"document-version": "2018-11-28",
            "labels": [{"label": name} for name in schema.label_names]}


def _region_of_arn(arn: str) -> Optional[str]:
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 and parts[0] == "arn" and parts[3] else None


def _task_description(schema: Any) -> str:
    first = next((line.strip() for line in schema.instructions.splitlines() if line.strip()), "")
    text = first or f"Label DICOM images: {', '.join(schema.label_names)}"
    return text if len(text) <= 255 else text[:254] + "…"


def build_create_request(*, outputs: Mapping[str, str], schema: Any, job_name: str, workteam_arn: str,
                         workers: int, task_time_limit: int, availability: int,
                         max_concurrent: int) -> dict[str, Any]:
    """The ``create_labeling_job`` keyword arguments (no AWS call)."""
    bucket = outputs["annotationBucket"]
    prefix = f"s3://{bucket}/jobs/{job_name}"
    title = f"Label {schema.name} images"
    return {
        "LabelingJobName": job_name,
        "LabelAttributeName": job_name,
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": f"{prefix}/manifest.jsonl"}}},
        "OutputConfig": {"S3OutputPath": f"{prefix}/output/", "KmsKeyId": outputs["kmsKeyArn"]},
        "RoleArn": outputs["groundTruthRoleArn"],
        "LabelCategoryConfigS3Uri": f"{prefix}/label-categories.json",
        "HumanTaskConfig": {
            "WorkteamArn": workteam_arn,
            "UiConfig": {"UiTemplateS3Uri": outputs["workerTemplateS3Uri"]},
            "PreHumanTaskLambdaArn": outputs["prelabelLambdaArn"],
            "TaskTitle": title[:128],
            "TaskDescription": _task_description(schema),
            "TaskKeywords": ["DICOM", "medical imaging", "image classification"],
            "NumberOfHumanWorkersPerDataObject": workers,
            "TaskTimeLimitInSeconds": task_time_limit,
            "TaskAvailabilityLifetimeInSeconds": availability,
            "MaxConcurrentTaskCount": max_concurrent,
            "AnnotationConsolidationConfig": {
                "AnnotationConsolidationLambdaArn": outputs["postlabelLambdaArn"]},
        },
        "Tags": [{"Key": "project", "Value": "dicom-annotate"}],
    }


def _check_manifest(path: str, schema: Any) -> list[Any]:
    from labeling.manifest.build import ManifestError, read_manifest

    try:
        lines = read_manifest(path)
    except ManifestError as exc:
        raise GtError(str(exc)) from None
    if not lines:
        raise GtError(f"{path}: the manifest is empty; nothing to label")
    for number, line in enumerate(lines, start=1):
        if line.schema != schema.name:
            raise GtError(f"{path}:{number}: schema: {line.schema!r} is not the schema's name {schema.name!r}")
        if tuple(line.labels) != tuple(schema.label_names):
            raise GtError(f"{path}:{number}: labels: {list(line.labels)} differ from the schema's "
                          f"{list(schema.label_names)}")
    return lines


def _client(service: str, region: Optional[str]) -> Any:
    """A boto3 client (tests replace this function)."""
    import boto3

    return boto3.client(service, region_name=region)


def _cmd_create_job(args: argparse.Namespace) -> int:
    from labeling.contracts.schema import SchemaError, load_schema

    job_name = validate_job_name(args.job_name)
    outputs = load_stack_outputs(args.stack_outputs)
    try:
        schema = load_schema(args.schema)
    except SchemaError as exc:
        raise GtError(str(exc)) from None
    lines = _check_manifest(args.manifest, schema)
    if not args.workteam_arn.startswith("arn:") or ":workteam/" not in args.workteam_arn:
        raise GtError(f"--workteam-arn: {args.workteam_arn!r} is not a SageMaker workteam ARN")
    if not 30 <= args.task_time_limit <= 28_800:
        raise GtError(f"--task-time-limit: {args.task_time_limit} is outside GT's 30..28800 seconds")
    if args.max_concurrent_tasks > 5000:
        raise GtError(f"--max-concurrent-tasks: {args.max_concurrent_tasks} is above GT's 5000")
    workers = args.workers_per_object or schema.annotators_per_item
    request = build_create_request(
        outputs=outputs, schema=schema, job_name=job_name, workteam_arn=args.workteam_arn,
        workers=workers, task_time_limit=args.task_time_limit,
        availability=args.task_availability_lifetime, max_concurrent=args.max_concurrent_tasks)
    if args.dry_run:
        print(json.dumps(request, indent=2, ensure_ascii=False))
        print(f"dry run: {len(lines)} manifest lines; nothing uploaded, no job created", file=sys.stderr)
        return 0

    region = args.region or _region_of_arn(outputs["prelabelLambdaArn"])
    s3 = _client("s3", region)
    bucket = outputs["annotationBucket"]
    sse = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": outputs["kmsKeyArn"]}
    manifest_key = split_s3_uri(request["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"])[1]
    categories_key = split_s3_uri(request["LabelCategoryConfigS3Uri"])[1]
    aws_call(f"upload s3://{bucket}/{manifest_key}", s3.put_object, Bucket=bucket, Key=manifest_key,
              Body=Path(args.manifest).read_bytes(), ContentType="application/jsonl", **sse)
    aws_call(f"upload s3://{bucket}/{categories_key}", s3.put_object, Bucket=bucket, Key=categories_key,
              Body=json.dumps(label_category_config(schema), ensure_ascii=False).encode("utf-8"),
              ContentType="application/json", **sse)
    sagemaker = _client("sagemaker", region)
    response = aws_call(f"create_labeling_job {job_name}", sagemaker.create_labeling_job, **request)
    print(response["LabelingJobArn"])
    return 0


# ======================================================================= status, fetch-output

def _describe(job_name: str, region: Optional[str]) -> dict[str, Any]:
    validate_job_name(job_name)
    sagemaker = _client("sagemaker", region)
    return aws_call(f"describe_labeling_job {job_name}", sagemaker.describe_labeling_job,
                     LabelingJobName=job_name)


def _cmd_status(args: argparse.Namespace) -> int:
    job = _describe(args.job_name, args.region)
    counters = job.get("LabelCounters") or {}
    rows = [
        ("job", job.get("LabelingJobName", args.job_name)),
        ("status", job.get("LabelingJobStatus", "?")),
        ("created", str(job.get("CreationTime", ""))),
        ("last modified", str(job.get("LastModifiedTime", ""))),
        ("labelled (total)", counters.get("TotalLabeled", 0)),
        ("  by humans", counters.get("HumanLabeled", 0)),
        ("  by machine", counters.get("MachineLabeled", 0)),
        ("failed", counters.get("FailedNonRetryableError", 0)),
        ("unlabelled", counters.get("Unlabeled", 0)),
        ("failure reason", job.get("FailureReason") or "-"),
        ("output manifest", (job.get("LabelingJobOutput") or {}).get("OutputDatasetS3Uri") or "-"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


def check_output_manifest(text: str, attribute: str, source: str = "<output>") -> dict[str, Any]:
    """Classify the lines of an output manifest (see the module docstring) with the one line reader,
    :func:`labeling.contracts.output_line.parse_output_line`, counting bad lines instead of stopping."""
    counts = {"lines": 0, "labelled": 0, "failed": 0, "invalid": 0}
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        counts["lines"] += 1
        try:
            line: Any = json.loads(raw)
        except ValueError:
            line = raw  # the reader reports it, with the line number
        if isinstance(line, dict) and attribute not in line and f"{attribute}-metadata" not in line:
            counts["failed"] += 1  # no label and no metadata: GT could not label the object
            continue
        try:
            result = parse_output_line(line, label_attribute=attribute, where=f"{source}:{number}",
                                       line_number=number)
        except OutputManifestError as exc:
            counts["invalid"] += 1
            problems.append(str(exc))
            continue
        counts["failed" if isinstance(result, FailedLine) else "labelled"] += 1
    return {**counts, "problems": problems}


def _cmd_fetch_output(args: argparse.Namespace) -> int:
    job = _describe(args.job_name, args.region)
    uri = (job.get("LabelingJobOutput") or {}).get("OutputDatasetS3Uri")
    if not uri:
        raise AwsError(f"job {args.job_name} has no output manifest yet "
                       f"(status {job.get('LabelingJobStatus', '?')})")
    bucket, key = split_s3_uri(uri, "LabelingJobOutput.OutputDatasetS3Uri")
    s3 = _client("s3", args.region)
    body = aws_call(f"download {uri}", s3.get_object, Bucket=bucket, Key=key)["Body"].read()
    out = Path(args.out)
    try:
        with atomic_file(out) as handle:
            handle.write(body)
    except OSError as exc:
        raise GtError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
    attribute = job.get("LabelAttributeName") or args.job_name
    report = check_output_manifest(body.decode("utf-8", errors="replace"), attribute, uri)
    print(f"{uri} → {args.out}: {report['lines']} lines, {report['labelled']} labelled, "
          f"{report['failed']} failed, {report['invalid']} invalid")
    for problem in report["problems"][:5]:
        print(problem, file=sys.stderr)
    return 1 if report["invalid"] else 0


# ========================================================================================= CLI

_run = bad_input_errors(GtError)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("gt",
                                   description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    one_line_errors(parser)
    sub = parser.add_subparsers(dest="gt_command", metavar="GT_COMMAND", required=True)

    p = sub.add_parser("render", help="render the worker template locally (GT filters, crowd-form stand-in)")
    one_line_errors(p)
    p.add_argument("--template", required=True, help="Liquid worker template (≤ 128,000 characters)")
    p.add_argument("--task-input", required=True, metavar="JSON_FILE",
                   help="the taskInput object (or a whole pre-annotation response)")
    p.add_argument("--out", metavar="HTML_FILE", help="write the rendered page here")
    p.add_argument("--serve", nargs="?", type=float, const=600.0, metavar="SECONDS",
                   help="serve the page, the viewer build and --asset-dir on 127.0.0.1 and print the URL "
                        "to open; stops after SECONDS (default 600) or on Ctrl-C")
    p.add_argument("--asset-dir", type=Path, metavar="DIR",
                   help="with --serve: grant_read_access maps s3://bucket/KEY to DIR/KEY (e.g. the "
                        "staged DICOM file of the task input)")
    p.add_argument("--asset-base", metavar="URL",
                   help="grant_read_access maps s3://bucket/KEY to URL/KEY (default: "
                        "https://BUCKET.s3.amazonaws.com/KEY)")
    p.add_argument("--viewer-base-url", metavar="URL",
                   help="where viewer.js, its worker and codecs are served (default: --serve's own URL, "
                        "else the file:// URL of --viewer-dir, which browsers refuse for module scripts)")
    p.add_argument("--viewer-dir", type=Path, metavar="DIR",
                   help="the viewer build whose viewer.js the SRI is computed from (default: build/viewer)")
    p.set_defaults(func=_run(_cmd_render))

    p = sub.add_parser("create-job", help="create a labeling job from the stack outputs")
    one_line_errors(p)
    p.add_argument("--stack-outputs", required=True, metavar="JSON_FILE",
                   help="output of `pulumi stack output --json`")
    p.add_argument("--manifest", required=True, metavar="FILE",
                   help="the labeling manifest (python -m labeling manifest), uploaded to the annotation bucket")
    p.add_argument("--schema", required=True, metavar="FILE",
                   help="label schema the manifest was built with (e.g. schemas/chest-xray.yaml)")
    p.add_argument("--job-name", required=True, help="also the label attribute name")
    p.add_argument("--workteam-arn", required=True, metavar="ARN", help="the private work team that labels")
    p.add_argument("--workers-per-object", type=positive_int, metavar="K",
                   help="workers per image (default: the schema's annotators_per_item)")
    p.add_argument("--task-time-limit", type=positive_int, default=DEFAULT_TASK_TIME_LIMIT_S, metavar="S",
                   help=f"seconds a worker has per task (default {DEFAULT_TASK_TIME_LIMIT_S})")
    p.add_argument("--task-availability-lifetime", type=positive_int, default=DEFAULT_TASK_AVAILABILITY_S,
                   metavar="S", help=f"seconds a task stays offered (default {DEFAULT_TASK_AVAILABILITY_S})")
    p.add_argument("--max-concurrent-tasks", type=positive_int, default=DEFAULT_MAX_CONCURRENT_TASKS,
                   metavar="N", help=f"default {DEFAULT_MAX_CONCURRENT_TASKS}")
    p.add_argument("--dry-run", action="store_true", help="print the request as JSON; touch nothing")
    p.add_argument("--region", help="default: the region of prelabelLambdaArn")
    p.set_defaults(func=_run(_cmd_create_job))

    p = sub.add_parser("status", help="a labeling job's status and counters")
    p.add_argument("--job-name", required=True, help="the labeling job (create-job's --job-name)")
    p.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    p.set_defaults(func=_run(_cmd_status))

    p = sub.add_parser("fetch-output", help="download and check a job's output manifest")
    p.add_argument("--job-name", required=True, help="the labeling job (create-job's --job-name)")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the output manifest")
    p.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    p.set_defaults(func=_run(_cmd_fetch_output))
