"""GT pre-annotation Lambda: turn one manifest line (``dataObject``) into the worker's ``taskInput``.

Thin adapter over :mod:`labeling.gt_contracts`. For now the manifest line goes to the template
unchanged; the Ground Truth issue adds the Orthanc fetch, de-identification and staging (the
environment already names ORTHANC_URL, ORTHANC_SECRET_ARN, STAGING_BUCKET and DEIDENTIFY for it).
"""

from __future__ import annotations

from typing import Any

from labeling import gt_contracts

try:  # Powertools comes from the dependency layer; plain logging keeps local runs and tests working.
    from aws_lambda_powertools import Logger

    logger = Logger()
except ImportError:  # pragma: no cover - depends on the environment
    import logging

    logger = logging.getLogger("prelabel")
    logger.setLevel(logging.INFO)


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Return ``{"taskInput": <the manifest line>, "isHumanAnnotationRequired": true}``.

    A malformed event is logged and re-raised: GT then marks that data object as failed.
    """
    try:
        request = gt_contracts.parse_prelabel_event(event)
    except ValueError as exc:
        # Log the reason only: the event itself may carry identifiers that do not belong in logs.
        logger.error("rejected pre-annotation event: %s", exc)
        raise
    return gt_contracts.prelabel_response(request.task_input(), human_required=True)
