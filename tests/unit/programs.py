"""The Pulumi program under mocks, run once per distinct configuration for the whole test session.

Each run costs ~0.5 s; the same stack settings used to be run again by several test modules.
:func:`program` memoises by (stack, settings, viewer build): tests must treat the recording as
read-only (copy.deepcopy it to change it). Runs that raise are not cached, so an error test
always runs the program.

Every run publishes the same tiny fake viewer build (:data:`FAKE_VIEWER_FILES`) unless a test
passes its own: the recordings then do not depend on whether ``make viewer`` ran (and no run copies
the real 7 MB build), and the viewer tests assert on bytes they know.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Optional

import pytest

from components.checks.offline import Recording, run_program, stack_config_values

# The portal-import probe of test_portal_component, started at collection (conftest.py).
PORTAL_PROBE_KEY = pytest.StashKey[subprocess.Popen]()

# A certificate and the host it covers for the "dev with HTTPS" variant (placeholders: the offline
# harness accepts them and notes them; pulumi preview/up refuse them).
CERT = stack_config_values("prod")["dicom-annotate:certificateArn"]
PORTAL_DOMAIN = stack_config_values("prod")["dicom-annotate:portalDomain"]

_RUNS: dict[str, Recording] = {}

# A viewer build: the bundle, its decode worker, a WebAssembly decoder, and a file that stays local.
FAKE_VIEWER_FILES = {
    "viewer.js": "export const mount = () => 'fake viewer';\n",
    "decodeImageFrameWorker.js": "self.onmessage = () => {};\n",
    "openjpegwasm_decode.wasm": "\0asm\x01\0\0\0",
    "build-info.json": '{"esbuild": "0.28"}\n',   # stays local: never uploaded
}
_FAKE_BUILD: list[Path] = []


def write_viewer_build(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in FAKE_VIEWER_FILES.items():
        (directory / name).write_text(text)
    return directory


def fake_viewer_build() -> Path:
    """The session's fake viewer build (written once, read-only to the tests)."""
    if not _FAKE_BUILD:
        _FAKE_BUILD.append(write_viewer_build(Path(tempfile.mkdtemp(prefix="fake-viewer-")) / "viewer"))
    return _FAKE_BUILD[0]


def program(stack: str, config: Optional[dict[str, Any]] = None,
            viewer_build_dir: Optional[Path] = None, **options: Any) -> Recording:
    """``run_program`` with the same arguments, memoised; ``config=None`` is the stack's YAML,
    ``viewer_build_dir=None`` the session's :func:`fake_viewer_build`."""
    values = stack_config_values(stack) if config is None else dict(config)
    viewer_build_dir = viewer_build_dir or fake_viewer_build()
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


# Variants shared by several test modules: each is one program run for the whole session.
MODALITIES = ["203.0.113.0/24", "198.51.100.7/32"]
BYO_VPC = "vpc-0a1b2c3d4e5f60718"
BYO_PUBLIC = ["subnet-0a0a0a0a0a0a0a0a0", "subnet-0b0b0b0b0b0b0b0b0"]
BYO_PRIVATE = ["subnet-0c1c1c1c1c1c1c1c1", "subnet-0d2d2d2d2d2d2d2d2"]
OFFICE_CIDRS = ["203.0.113.0/24", "198.51.100.7/32"]
MIRROR_IMAGE = ("123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub/orthancteam/orthanc:25.1.1"
                "@sha256:" + "cd" * 32)


def _with(stack: str, **settings: Any) -> dict[str, Any]:
    values = stack_config_values(stack)
    values.update({f"dicom-annotate:{k}": v for k, v in settings.items()})
    return values


def prod_variant_values() -> dict[str, Any]:
    """prod with the DICOM NLB for two modality CIDRs, and without the portal."""
    return _with("prod", dicomNlb=True, dicomAllowedCidrs=MODALITIES, portalEnabled=False)


def dev_variant_values() -> dict[str, Any]:
    """dev with NAT per AZ, no flow logs, the plain-HTTP ALB open to two CIDRs, Orthanc from an ECR mirror."""
    return _with("dev", natGateways="one-per-az", flowLogs=False, albIngressCidrs=OFFICE_CIDRS,
                 orthancImage=MIRROR_IMAGE)


def byo_variant_values() -> dict[str, Any]:
    """dev on a brought VPC that has its own S3 and DNS endpoints, with non-default labeling settings."""
    return _with("dev", vpcId=BYO_VPC, publicSubnetIds=BYO_PUBLIC, privateSubnetIds=BYO_PRIVATE,
                 interfaceEndpoints=True, s3GatewayEndpoint=False, interfaceEndpointPrivateDns=False,
                 deidentify=False, notebookIdleMinutes=45,
                 gtWorkerOrigins=["https://abc123.labeling.us-east-1.sagemaker.aws"])
