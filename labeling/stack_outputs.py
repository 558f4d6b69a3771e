"""The Pulumi stack outputs a command needs, read once: ``--stack-outputs FILE`` or ``--stack NAME``.

``FILE`` is what ``pulumi stack output --json`` prints, saved; ``NAME`` runs that command (from the
repository root, where ``Pulumi.yaml`` is). The GT ``create-job`` command and training's SageMaker
commands read their outputs through :func:`load_stack_outputs`; each names the keys it needs.
Secret outputs print as ``"[secret]"`` without ``--show-secrets``: such a value is refused, never used.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]


class StackOutputsError(ValueError):
    """The stack outputs cannot be read or lack a key; the message starts with the file or stack."""


@dataclass(frozen=True)
class StackOutputs:
    """``values``: the required outputs (non-empty strings); ``data``: every output, as read;
    ``where``: the file or ``stack NAME``, to prefix messages about optional outputs."""

    values: dict[str, str]
    data: Mapping[str, Any]
    where: str


def load_stack_outputs(required: Sequence[str], *, path: Optional[str] = None,
                       stack: Optional[str] = None) -> StackOutputs:
    """Read the outputs from ``path`` or, failing that, ``pulumi stack output --json --stack stack``."""
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise StackOutputsError(f"{path}: cannot read stack outputs: {reason}") from None
        where = str(path)
    elif stack:
        try:
            done = subprocess.run(["pulumi", "stack", "output", "--json", "--stack", stack], cwd=REPO_ROOT,
                                  capture_output=True, text=True, timeout=120, check=False)
        except FileNotFoundError:
            raise StackOutputsError("--stack: the pulumi CLI is not installed; pass --stack-outputs FILE "
                                    "(`pulumi stack output --json` saved elsewhere)") from None
        if done.returncode != 0:
            raise StackOutputsError(f"--stack {stack}: `pulumi stack output --json` failed: "
                                    f"{(done.stderr or done.stdout).strip()[:300]}")
        text, where = done.stdout, f"stack {stack}"
    else:
        raise StackOutputsError("give --stack NAME or --stack-outputs FILE")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StackOutputsError(f"{where}:{exc.lineno}: stack outputs are not valid JSON ({exc.msg})") from None
    if not isinstance(data, Mapping):
        raise StackOutputsError(f"{where}: stack outputs must be a JSON object (pulumi stack output --json)")
    missing = [key for key in required if key not in data]
    if missing:
        raise StackOutputsError(f"{where}: missing stack output {', '.join(missing)} "
                                "(is this `pulumi stack output --json` of the right stack?)")
    values: dict[str, str] = {}
    for key in required:
        value = data[key]
        if not isinstance(value, str) or not value or value == "[secret]":
            raise StackOutputsError(f"{where}: stack output {key}: {value!r} is not a usable string")
        values[key] = value
    return StackOutputs(values, data, where)
