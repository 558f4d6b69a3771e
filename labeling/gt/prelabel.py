"""The GT pre-annotation step: one manifest line → a staged, de-identified image and the ``taskInput``.

``lambda_src/prelabel/handler.py`` is a thin adapter over :class:`Prelabeler`; the AWS clients and the
Orthanc client factory are injected so this module is testable with moto and a fake Orthanc.

Per data object (docs/architecture.md, "Contracts"):

- ``source-ref`` (an ``s3://`` URI): passed through as the image URI; nothing is fetched or staged.
- ``source`` (an Orthanc instance ID, five groups of 8 lower-case hex digits joined by ``-``): the ID
  is validated; the object is staged at ``s3://<STAGING_BUCKET>/<job name>/<orthanc id>.dcm`` (job
  name = the last path segment of ``labelingJobArn``). Staging is idempotent: when that key already
  exists (``head_object``) nothing is fetched or uploaded again and the image geometry is read back
  from the object's metadata. Otherwise the Orthanc credentials are read from Secrets Manager
  (``ORTHANC_SECRET_ARN``, JSON ``{"username", "password"}``, cached per container), the file is
  fetched from ``ORTHANC_URL`` (``/instances/{id}/file``), de-identified when ``DEIDENTIFY`` is true
  (the default; :mod:`labeling.dicom.deidentify`, salt ``DEIDENTIFY_SALT``) and written with SSE:
  ``aws:kms`` with ``STAGING_KMS_KEY_ID`` when set, else the bucket's default encryption.
- The answer's ``taskInput``: ``{"image": "s3://…", "source": id, "labels", "task_type", "schema",
  "instructions", "prelabel" and "uncertain_policy" (when present), "image_geometry": {"rows", "columns",
  "frames"}}`` with ``isHumanAnnotationRequired: true``. The line's ``uncertain_policy`` (written only for a
  schema that offers "uncertain") is what makes the worker template offer that third choice.

Series and multi-frame tasks (a line with ``level`` ``series`` or ``multiframe``, ``manifest --level
series``; :meth:`Prelabeler.handle_series`): one task → every slice staged as above (each instance once,
a few in parallel, each idempotent), and ``taskInput`` = the image keys plus ``"level"``, ``"slices":
[{"image": "s3://…", "instance": id, "frame": f}, …]`` in the line's order, ``"image"`` = the first
slice and ``"image_geometry"`` = the first slice's rows/columns with ``frames`` = the number of slices.
GT's limits bound a task: each manifest line (GT's ``dataObject``) at most 100,000 characters and no
attribute above 20,000 (AWS docs, "Input data",
https://docs.aws.amazon.com/sagemaker/latest/dg/sms-data-input.html); a series line's ``instances``
(47 characters per slice) reaches that at about 425 slices. :func:`series_size_problem` says which
limit a line breaks; ``gt create-job`` refuses such a manifest before GT would, and the pre-label
answers it with ``isHumanAnnotationRequired: false`` and the reason (split the series, or label it
in the portal), as for a missing instance.

Failures: an unknown instance (Orthanc 404) is logged and answered with
``isHumanAnnotationRequired: false`` and ``taskInput.error`` — GT then sends that object to no worker
and it gets no label; the other objects of the job are unaffected. Orthanc unreachable, 5xx or any
other error (bad credentials) is logged and raised, so GT retries and finally fails that data object.
A malformed event or a badly formatted ID raises ValueError naming the bad value.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import pydicom

from labeling.gt import contracts as gt_contracts
from labeling.gt import names as N
from labeling.orthanc.connection import SERVICE_RETRIES, resolve_connection
from labeling.contracts.answer import check_uncertain_policy
from labeling.contracts.errors import ContractError
from labeling.contracts.geometry import ImageGeometry
from labeling.contracts.ids import ORTHANC_ID, validate_instance_id  # noqa: F401 - re-exported
from labeling.dicom.deidentify import (
    DEV_SALT, burned_in_annotation, deidentify_dataset, read_salt, salt_setting,
)
from labeling.orthanc.client import OrthancClient, OrthancError

SERIES_LEVELS = ("series", "multiframe")
GT_MAX_LINE_CHARS = 100_000      # AWS docs, "Input data": one manifest line (a data object)
GT_MAX_ATTRIBUTE_CHARS = 20_000  # ... and any one attribute of it
STAGING_PARALLEL = 4
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

_log = logging.getLogger(__name__)


def job_name(labeling_job_arn: Optional[str]) -> str:
    """``arn:aws:sagemaker:…:labeling-job/<name>`` → ``<name>`` (the staging prefix)."""
    name = (labeling_job_arn or "").rsplit("/", 1)[-1] if labeling_job_arn and "/" in labeling_job_arn else ""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9\-]{0,62}", name):
        raise ValueError(f"labelingJobArn: {labeling_job_arn!r} does not end in '/<labeling job name>'")
    return name


def staging_key(labeling_job_arn: Optional[str], instance_id: str) -> str:
    """The staged object's key: ``<job name>/<orthanc id>.dcm`` (same input → same key)."""
    return f"{job_name(labeling_job_arn)}/{validate_instance_id(instance_id)}.dcm"


def series_size_problem(line: Mapping[str, Any]) -> Optional[str]:
    """Which of GT's data-object limits (module docstring) a manifest line breaks, in one sentence
    saying what to do; None when it fits. Sizes are counted as GT counts them: JSON characters."""
    size = len(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
    slices = len(line.get("instances") or ()) if isinstance(line.get("instances"), list) else 0
    advice = "split the series into shorter ranges, or label it in the portal, which has no such limit"
    if size > GT_MAX_LINE_CHARS:
        return (f"the line is {size:,} characters ({slices} slices), above Ground Truth's {GT_MAX_LINE_CHARS:,} "
                f"per data object; {advice}")
    for key, value in line.items():
        length = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        if length > GT_MAX_ATTRIBUTE_CHARS:
            return (f"its {key!r} is {length:,} characters ({slices} slices), above Ground Truth's "
                    f"{GT_MAX_ATTRIBUTE_CHARS:,} per attribute; {advice}")
    return None


def line_uncertain_policy(data_object: Mapping[str, Any]) -> Optional[str]:
    """The line's ``uncertain_policy``, None when it has none. A line carries it exactly when its schema
    offers "uncertain" (:mod:`labeling.contracts.manifest_line`): the task input passes it on so the worker
    template offers the viewer's third choice; the post-label Lambda applies it. ValueError naming the key
    when it is not a policy."""
    if data_object.get("uncertain_policy") is None:
        return None
    try:
        return check_uncertain_policy(data_object["uncertain_policy"])
    except ContractError as exc:
        raise ValueError(f"dataObject.{exc}") from None


def _flag(name: str, raw: Optional[str], default: bool) -> bool:
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}: {raw!r} is not a boolean (true/false)")


@dataclass(frozen=True)
class PrelabelSettings:
    orthanc_url: Optional[str]
    secret_arn: Optional[str]
    bucket: Optional[str]
    deidentify: bool = True
    salt: bytes = DEV_SALT
    kms_key_id: Optional[str] = None
    # In AWS the salt is a secret of its own (never a plain environment value): read at first use.
    salt_secret_arn: Optional[str] = None

    def __repr__(self) -> str:  # the salt is a secret: never in logs
        return (f"PrelabelSettings(orthanc_url={self.orthanc_url!r}, secret_arn={self.secret_arn!r}, "
                f"bucket={self.bucket!r}, deidentify={self.deidentify}, salt='***', kms_key_id={self.kms_key_id!r})")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "PrelabelSettings":
        salt = environ.get(N.DEIDENTIFY_SALT, "")
        salt_secret_arn = environ.get(N.DEIDENTIFY_SALT_SECRET_ARN) or None
        deidentify = _flag(N.DEIDENTIFY, environ.get(N.DEIDENTIFY), True)
        if not salt and not salt_secret_arn and deidentify:
            _log.warning("%s is not set: using the fixed development salt; replacement UIDs are then reproducible "
                         "by anyone. Set a per-deployment secret salt in production.", N.DEIDENTIFY_SALT)
        return cls(orthanc_url=environ.get(N.ORTHANC_URL) or None,
                   secret_arn=environ.get(N.ORTHANC_SECRET_ARN) or None,
                   bucket=environ.get(N.STAGING_BUCKET) or None,
                   deidentify=deidentify,
                   salt=salt_setting(salt),
                   kms_key_id=environ.get(N.STAGING_KMS_KEY_ID) or None,
                   salt_secret_arn=salt_secret_arn)

    def require(self, *names: str) -> None:
        env = {"orthanc_url": N.ORTHANC_URL, "secret_arn": N.ORTHANC_SECRET_ARN, "bucket": N.STAGING_BUCKET}
        missing = [env[n] for n in names if not getattr(self, n)]
        if missing:
            raise ValueError(f"pre-label settings: {', '.join(missing)} not set in the environment")


def geometry(ds: pydicom.Dataset) -> dict[str, int]:
    return ImageGeometry.from_dataset(ds).to_dict()


def _is_not_found(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NoSuchKey", "NotFound") or status == 404


class Prelabeler:
    """One per Lambda container: holds the settings, the AWS clients and the cached Orthanc client."""

    def __init__(self, settings: PrelabelSettings, *, s3: Any, secrets: Any = None,
                 orthanc_factory: Optional[Callable[..., Any]] = None,
                 logger: Any = None) -> None:
        self.settings = settings
        self.s3 = s3
        self.secrets = secrets
        self.orthanc_factory = orthanc_factory or OrthancClient
        self.log = logger or _log
        self._orthanc: Any = None
        self._salt: Optional[bytes] = None

    # -- collaborators -----------------------------------------------------------------------

    def salt(self) -> bytes:
        """The de-identification salt: from its own secret when configured (AWS), else the setting."""
        if self._salt is None:
            self._salt = read_salt(self.settings.salt_secret_arn, self.settings.salt, self.secrets)
        return self._salt

    def orthanc(self) -> Any:
        """The Orthanc client, built once per container with the credentials from Secrets Manager."""
        if self._orthanc is None:
            self.settings.require("orthanc_url", "secret_arn")
            conn = resolve_connection(self.settings.orthanc_url, secret_arn=self.settings.secret_arn,
                                      secrets_client=self.secrets)
            # A shorter wait than other services: a Lambda has a short timeout, and GT retries the object.
            self._orthanc = self.orthanc_factory(conn.url, conn.username, conn.password,
                                                 timeout=20.0, retries=SERVICE_RETRIES)
        return self._orthanc

    # -- the step ----------------------------------------------------------------------------

    def handle(self, event: Any) -> dict[str, Any]:
        request = gt_contracts.parse_prelabel_event(event)
        for note in request.notes:
            self.log.warning("pre-annotation event: %s", note)
        data_object = request.data_object
        line_uncertain_policy(data_object)  # a bad value is refused before anything is staged
        if request.source_ref is not None:
            return gt_contracts.prelabel_response(
                self._task_input(data_object, request.source_ref, {"source-ref": request.source_ref}))
        if data_object.get("level") in SERIES_LEVELS:
            return self.handle_series(request)
        instance_id = validate_instance_id(request.source)
        self.settings.require("bucket")
        uri, dims = self._staged(request.labeling_job_arn, instance_id)
        if dims is None:
            message = f"Orthanc has no instance {instance_id} (HTTP 404); the object is not labelled"
            self.log.error("pre-label: %s", message)
            return gt_contracts.prelabel_response({"source": instance_id, "error": message}, human_required=False)
        return gt_contracts.prelabel_response(self._task_input(data_object, uri, {"source": instance_id}, dims))

    def _staged(self, labeling_job_arn: Optional[str], instance_id: str) -> tuple[str, Optional[dict[str, int]]]:
        """(s3 URI, geometry) of one staged instance, staging it first when needed; geometry None when
        Orthanc has no such instance. Other Orthanc errors raise (GT retries the object)."""
        key = staging_key(labeling_job_arn, instance_id)
        uri = f"s3://{self.settings.bucket}/{key}"
        dims = self._staged_geometry(key)
        if dims is not None:
            self.log.info("pre-label: %s already staged; not uploaded again", uri)
            return uri, dims
        try:
            data = self.orthanc().instance_file(instance_id)
        except OrthancError as exc:
            if exc.status == 404:
                return uri, None
            what = "unreachable" if exc.status is None else f"answered HTTP {exc.status}"
            self.log.error("pre-label: Orthanc %s for instance %s (%s); raising so GT retries the object",
                           what, instance_id, exc)
            raise
        return uri, self._stage(key, instance_id, data)

    def handle_series(self, request: Any) -> dict[str, Any]:
        """A series or multi-frame task: every slice staged, the task input lists them (module docstring)."""
        data_object = request.data_object
        source = validate_instance_id(request.source)  # a series ID has the instance ID's form
        level = data_object["level"]
        instances = data_object.get("instances")
        if not isinstance(instances, list) or not instances:
            raise ValueError(f"dataObject.instances: a {level} task must list its Orthanc instance IDs")
        ids = [validate_instance_id(i) for i in instances]
        if level == "multiframe":
            frames = data_object.get("frames")
            if ids != [source] or isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
                raise ValueError(f"dataObject: a multiframe task has instances == [source] and frames >= 1, "
                                 f"got {instances[:3]} and {frames!r}")
            slices = [(source, frame) for frame in range(frames)]
        else:
            slices = [(i, 0) for i in ids]
        too_large = series_size_problem(data_object)
        if too_large:
            message = f"{level} {source}: {too_large}"
            self.log.error("pre-label: %s", message)
            return gt_contracts.prelabel_response({"source": source, "error": message}, human_required=False)
        self.settings.require("bucket")
        unique = list(dict.fromkeys(i for i, _ in slices))
        with ThreadPoolExecutor(max_workers=STAGING_PARALLEL) as pool:
            staged = dict(zip(unique, pool.map(lambda i: self._staged(request.labeling_job_arn, i), unique)))
        missing = [i for i in unique if staged[i][1] is None]
        if missing:
            message = (f"Orthanc has no instance {missing[0]} (HTTP 404)" + (f" nor {len(missing) - 1} more"
                       if len(missing) > 1 else "") + f" of {level} {source}; the object is not labelled")
            self.log.error("pre-label: %s", message)
            return gt_contracts.prelabel_response({"source": source, "error": message}, human_required=False)
        first = staged[slices[0][0]]
        dims = {**first[1], "frames": len(slices)}  # type: ignore[dict-item]
        self.log.info("pre-label: %s %s: %d slices staged", level, source, len(unique))
        task = self._task_input(data_object, first[0], {"source": source, "level": level}, dims)
        task["slices"] = [{"image": staged[i][0], "instance": i, "frame": f} for i, f in slices]
        return gt_contracts.prelabel_response(task)

    @staticmethod
    def _task_input(data_object: Mapping[str, Any], image: str, source: Mapping[str, Any],
                    dims: Optional[Mapping[str, int]] = None) -> dict[str, Any]:
        task = {"image": image, **source, "labels": list(data_object.get("labels") or []),
                "task_type": data_object.get("task_type"), "schema": data_object.get("schema")}
        if data_object.get("instructions") is not None:
            task["instructions"] = data_object["instructions"]
        if data_object.get("prelabel") is not None:
            # Model-assisted pre-labels (training's `prelabel` manifest key) become the viewer's initial answer.
            task["prelabel"] = data_object["prelabel"]
        policy = line_uncertain_policy(data_object)
        if policy is not None:
            task["uncertain_policy"] = policy
        if dims is not None:
            task["image_geometry"] = dict(dims)
        return task

    def _staged_geometry(self, key: str) -> Optional[dict[str, int]]:
        """The geometry of an already staged object, or None when nothing is staged under ``key``."""
        try:
            head = self.s3.head_object(Bucket=self.settings.bucket, Key=key)
        except Exception as exc:  # botocore ClientError; only "absent" is expected here
            if _is_not_found(exc):
                return None
            raise
        meta = head.get("Metadata") or {}
        try:
            return {"rows": int(meta["rows"]), "columns": int(meta["columns"]), "frames": int(meta["frames"])}
        except (KeyError, ValueError):
            # Staged by something else: read the header back instead of uploading again.
            body = self.s3.get_object(Bucket=self.settings.bucket, Key=key)["Body"].read()
            return geometry(pydicom.dcmread(io.BytesIO(body), stop_before_pixels=True))

    def _stage(self, key: str, instance_id: str, data: bytes) -> dict[str, int]:
        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=not self.settings.deidentify)
        except Exception as exc:  # noqa: BLE001 - pydicom raises several types for a bad file
            raise ValueError(f"instance {instance_id}: Orthanc's file is not readable DICOM ({exc})") from None
        if self.settings.deidentify:
            if burned_in_annotation(ds):
                self.log.warning("pre-label: instance %s declares BurnedInAnnotation=YES; its pixels are "
                                 "not cleaned by the Basic Profile", instance_id)
            deidentify_dataset(ds, salt=self.salt())
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            body = out.getvalue()
        else:
            body = data
        dims = geometry(ds)
        extra: dict[str, Any] = {}
        if self.settings.kms_key_id:
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.settings.kms_key_id}
        self.s3.put_object(Bucket=self.settings.bucket, Key=key, Body=body, ContentType="application/dicom",
                           Metadata={**{k: str(v) for k, v in dims.items()},
                                     "deidentified": "true" if self.settings.deidentify else "false"},
                           **extra)
        self.log.info("pre-label: staged instance %s at s3://%s/%s (de-identified: %s)", instance_id,
                      self.settings.bucket, key, self.settings.deidentify)
        return dims
