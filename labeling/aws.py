"""The one wrapper for boto3 calls made by the CLIs (``labeling gt``, ``training sagemaker``).

A failed call becomes :class:`AwsError` whose one-line message names the call and AWS's error code
and message; :func:`cli_errors` prints it (or a bad-input error) as one line instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable


class AwsError(Exception):
    """An AWS call failed: the message names the call; the CLIs exit with code 1."""


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


def cli_errors(bad_input: type[Exception], prog: str,
               command_attr: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a sub-command: ``bad_input`` prints ``<prog> <command>: error: …`` and exits 2, an
    :class:`AwsError` prints ``… AWS error: …`` and exits 1 — one line each, no traceback."""

    def decorate(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        def wrapper(args: argparse.Namespace) -> int:
            command = f"{prog} {getattr(args, command_attr)}"
            try:
                return func(args)
            except bad_input as exc:
                print(f"{command}: error: {exc}", file=sys.stderr)
                return 2
            except AwsError as exc:
                print(f"{command}: AWS error: {exc}", file=sys.stderr)
                return 1
        return wrapper
    return decorate
