"""GT post-annotation Lambda: consolidate the workers' answers for a batch, one label per object.

Thin adapter: parsing is :mod:`labeling.gt.contracts`, the logic :mod:`labeling.gt.postlabel`
(which calls :func:`labeling.consolidation.consolidate_job` once for the batch); here only S3 I/O
and logging. Each answered object's content is in the label shape of docs/architecture.md. A malformed
object, an object the library rejects, or an unreadable worker answer is logged (one line naming the
datasetObjectId and why) and left out; the other objects are still returned.

A consolidation report per batch (counts, label names, errors, the library's JobReport) is written
to ``labeling.gt.postlabel.report_location`` (``<outputConfig or payload base>/consolidation-report/
<iteration-N>/<payload file stem>.json``), with SSE-KMS under the event's ``kmsKeyId`` when given.
A failed report write is logged and never fails the invocation.

The payload (and any answer GT stored in S3 instead of inline) is read, and the report written, with
this function's own execution role. The event's ``roleArn`` exists for cross-account set-ups and is
deliberately not assumed: the labeling bucket is in this account and the role already has access.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import boto3

from labeling.gt import contracts as gt_contracts
from labeling.gt import postlabel as gt_postlabel

try:  # Powertools comes from the dependency layer; plain logging keeps local runs and tests working.
    from aws_lambda_powertools import Logger

    logger = Logger()
except ImportError:  # pragma: no cover - depends on the environment
    import logging

    logger = logging.getLogger("postlabel")
    logger.setLevel(logging.INFO)


@functools.lru_cache(maxsize=1)
def _s3_client():
    # One client per execution environment, reused across invocations.
    return boto3.client("s3", region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))


def _read_s3(uri: str) -> bytes:
    bucket, key = gt_contracts.split_s3_uri(uri)
    return _s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()


def _write_report(request: gt_contracts.PostlabelEvent, report: dict[str, Any]) -> None:
    try:
        bucket, key = gt_postlabel.report_location(request.payload_s3_uri, request.output_config)
        body = json.dumps({"labelingJobArn": request.labeling_job_arn,
                           "payload": request.payload_s3_uri, **report}, default=str).encode()
        extra: dict[str, Any] = {}
        if request.kms_key_id:
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": request.kms_key_id}
        _s3_client().put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **extra)
        logger.info("consolidation report written to s3://%s/%s", bucket, key)
    except Exception as exc:  # noqa: BLE001 - the labels matter more than the report
        logger.error("could not write the consolidation report: %r", exc)


def lambda_handler(event: Any, context: Any) -> list[dict[str, Any]]:
    try:
        request = gt_contracts.parse_postlabel_event(event)
        objects = gt_contracts.parse_payload(json.loads(_read_s3(request.payload_s3_uri)))
    except ValueError as exc:
        logger.error("rejected post-annotation event: %s", exc)
        raise
    for note in request.notes:
        logger.warning("post-annotation event: %s", note)
    response, report = gt_postlabel.consolidate_payload(
        objects, request.label_attribute_name, request.label_categories, fetch=_read_s3)
    for error in report["errors"]:
        logger.error("skipped %s of datasetObjectId %s%s: %s", error["level"], error["datasetObjectId"],
                     f" (worker {error['workerId']})" if error["workerId"] else "", error["reason"])
    _write_report(request, report)
    logger.info("post-annotation: %d of %d objects consolidated (label names from %s: %s; uncertain_policy %s)",
                len(response), len(objects), report["labelNamesSource"], report["labelNames"],
                report["uncertainPolicy"])
    return response
