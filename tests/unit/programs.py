"""The Pulumi program under mocks, run once per distinct configuration for the whole test session.

Each run costs ~0.5 s; the same stack settings used to be run again by several test modules.
:func:`program` memoises by (stack, settings, viewer build): tests must treat the recording as
read-only (copy.deepcopy it to change it). Runs that raise are not cached, so an error test
always runs the program.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from components.offline import Recording, run_program, stack_config_values

# A certificate and the host it covers for the "dev with HTTPS" variant (placeholders: the offline
# harness accepts them and notes them; pulumi preview/up refuse them).
CERT = stack_config_values("prod")["dicom-annotate:certificateArn"]
PORTAL_DOMAIN = stack_config_values("prod")["dicom-annotate:portalDomain"]

_RUNS: dict[str, Recording] = {}


def program(stack: str, config: Optional[dict[str, Any]] = None,
            viewer_build_dir: Optional[Path] = None, **options: Any) -> Recording:
    """``run_program`` with the same arguments, memoised; ``config=None`` is the stack's YAML."""
    values = stack_config_values(stack) if config is None else dict(config)
    key = json.dumps([stack, values, str(viewer_build_dir), options], sort_keys=True, default=str)
    if key not in _RUNS:
        _RUNS[key] = run_program(stack, config=values, viewer_build_dir=viewer_build_dir, **options)
    return _RUNS[key]


def dev_https_values(**extra: Any) -> dict[str, Any]:
    """dev with a certificate (allowHttp off) and the portal's domain: the same edge as prod."""
    values = stack_config_values("dev")
    values.pop("dicom-annotate:allowHttp")
    values["dicom-annotate:certificateArn"] = CERT
    values["dicom-annotate:portalDomain"] = PORTAL_DOMAIN
    values.update({f"dicom-annotate:{k}": v for k, v in extra.items()})
    return values
