"""The one wrapper for boto3 calls made by the CLIs (``labeling gt``, ``training sagemaker``).

A failed call becomes :class:`AwsError` whose one-line message names the call and AWS's error code
and message; the CLI (labeling/cli.py) prints it as one line and exits 3 (a service refusing).
"""

from __future__ import annotations

from typing import Any, Callable


class AwsError(Exception):
    """An AWS call failed: the message names the call; the CLIs exit with code 3."""


def aws_call(what: str, call: Callable[..., Any], **kwargs: Any) -> Any:
    """``call(**kwargs)``, with botocore's errors turned into :class:`AwsError` naming ``what``."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise AwsError(f"{what}: {error.get('Code', 'error')}: {error.get('Message', exc)}") from None
    except BotoCoreError as exc:
        raise AwsError(f"{what}: {exc}") from None
