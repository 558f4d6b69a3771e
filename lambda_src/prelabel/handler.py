"""GT pre-annotation Lambda: turn one manifest line (``dataObject``) into the worker's ``taskInput``.

Thin adapter over :mod:`labeling.gt.prelabel` (fetch from Orthanc, de-identify, stage in S3; see
that module for the key rule and the failure behaviour). Settings come from the environment, under the
names of :mod:`labeling.gt.names` (``PrelabelSettings.from_env``); AWS endpoints are overridable the standard boto3 way
(``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL_SECRETS_MANAGER``).
"""

from __future__ import annotations

import os
from typing import Any, Optional

import boto3

from labeling.gt import prelabel as gt_prelabel

try:  # Powertools comes from the dependency layer; plain logging keeps local runs and tests working.
    from aws_lambda_powertools import Logger

    logger = Logger()
except ImportError:  # pragma: no cover - depends on the environment
    import logging

    logger = logging.getLogger("prelabel")
    logger.setLevel(logging.INFO)

_prelabeler: Optional[gt_prelabel.Prelabeler] = None


def _get_prelabeler() -> gt_prelabel.Prelabeler:
    """One per execution environment (clients and the Orthanc credentials are reused); rebuilt if the
    environment's settings change (tests)."""
    global _prelabeler
    settings = gt_prelabel.PrelabelSettings.from_env()
    if _prelabeler is None or _prelabeler.settings != settings:
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        _prelabeler = gt_prelabel.Prelabeler(
            settings, s3=boto3.client("s3", region_name=region),
            secrets=boto3.client("secretsmanager", region_name=region), logger=logger)
    return _prelabeler


def reset() -> None:
    """Forget the cached clients and credentials (tests)."""
    global _prelabeler
    _prelabeler = None


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Return ``{"taskInput": {...}, "isHumanAnnotationRequired": <bool>}`` for one data object.

    A malformed event or source ID is logged and re-raised (GT marks that data object as failed); so
    is an unreachable Orthanc (GT retries). An unknown instance ID answers
    ``isHumanAnnotationRequired: false`` with the error in ``taskInput``.
    """
    try:
        return _get_prelabeler().handle(event)
    except ValueError as exc:
        # Log the reason only: the event itself may carry identifiers that do not belong in logs.
        logger.error("rejected pre-annotation event: %s", exc)
        raise
