"""GT post-annotation Lambda: read the workers' answers for a batch and return one label per object.

Thin adapter over :mod:`labeling.gt_contracts`. Until the consolidation module lands this is an
honest pass-through: each label is ``{"annotations": [{workerId, content}, ...], "annotators": N}``,
with no agreement or confidence invented. A malformed object or unreadable answer is logged and
skipped; the other objects are still returned.

The payload (and any answer GT stored in S3 instead of inline) is read with this function's own
execution role. The event's ``roleArn`` exists for cross-account set-ups and is deliberately not
assumed: the labeling bucket is in this account and the role already has read access to it.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import boto3

from labeling import gt_contracts

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


def lambda_handler(event: Any, context: Any) -> list[dict[str, Any]]:
    try:
        request = gt_contracts.parse_postlabel_event(event)
        objects = gt_contracts.parse_payload(json.loads(_read_s3(request.payload_s3_uri)))
    except ValueError as exc:
        logger.error("rejected post-annotation event: %s", exc)
        raise
    response = []
    for obj in objects:
        if obj.error:
            logger.error("skipped data object: %s", obj.error)
            continue
        answers, errors = gt_contracts.resolve_answers(obj, _read_s3)
        for error in errors:
            logger.error("skipped worker answer of %s: %s", obj.dataset_object_id, error)
        if not answers:
            # No usable answer: leaving the object out lets GT record it as failed, not as labelled.
            logger.error("skipped data object %s: no usable worker answer", obj.dataset_object_id)
            continue
        response.append(gt_contracts.consolidation_response(
            obj.dataset_object_id, request.label_attribute_name,
            gt_contracts.unconsolidated_content(answers)))
    logger.info("post-annotation: %d of %d objects returned", len(response), len(objects))
    return response
