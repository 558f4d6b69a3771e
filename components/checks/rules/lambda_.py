"""Lambda functions and their permissions.

Rules read resources through :mod:`components.checks.graph`; :data:`RULES` lists this module's.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from components.checks.graph import Context, LAMBDAS, LAMBDA_PERMISSIONS, Rule, as_list, get, present
from components.checks.rules.ecs import env_secret_problems


def check_lambda_in_vpc(r: Any, ctx: Context) -> list[str]:
    """FSBP Lambda.3: Lambda functions should be in a VPC (private subnets, SG to Orthanc)."""
    if not as_list(get(r, "vpcConfig", "subnetIds", allow_unknown=True)) \
            or not as_list(get(r, "vpcConfig", "securityGroupIds", allow_unknown=True)):
        return [f"{r.name}: vpcConfig needs subnetIds and securityGroupIds"]
    return []


# Oldest runtimes accepted per language (Lambda's deprecation calendar, 2026).
LAMBDA_MIN_RUNTIME = {"python": (3, 12), "nodejs": (20,)}


def check_lambda_runtime(r: Any, ctx: Context) -> list[str]:
    """FSBP Lambda.2: Lambda functions should use supported runtimes (python3.12+, nodejs20.x+)."""
    if get(r, "packageType") == "Image":
        return []
    runtime = str(get(r, "runtime") or "")
    match = re.fullmatch(r"([a-z]+)(\d+(?:\.\d+)*)(?:\.x)?", runtime)
    if not match or match.group(1) not in LAMBDA_MIN_RUNTIME:
        return [f"{r.name}: runtime {runtime!r} is not a supported python/nodejs runtime"]
    version = tuple(int(p) for p in match.group(2).split("."))
    floor = LAMBDA_MIN_RUNTIME[match.group(1)]
    if version[:len(floor)] < floor:
        return [f"{r.name}: runtime {runtime} is older than {match.group(1)}{'.'.join(map(str, floor))}"]
    return []


def check_lambda_env_secrets(r: Any, ctx: Context) -> list[str]:
    """FSBP Lambda / docs/architecture.md floor: no secret values in Lambda environment variables
    (pass the secret's ARN and read it at run time)."""
    variables = get(r, "environment", "variables") or {}
    if not isinstance(variables, Mapping):
        return []
    return env_secret_problems(r.name, variables.items())


def check_lambda_tracing(r: Any, ctx: Context) -> list[str]:
    """AWSGuard lambda-function-tracing-enabled: X-Ray active tracing."""
    if get(r, "tracingConfig", "mode") != "Active":
        return [f"{r.name}: tracingConfig.mode is not Active"]
    return []


def check_lambda_permission(r: Any, ctx: Context) -> list[str]:
    """FSBP Lambda.1: Lambda function policies should prohibit public access; a service principal
    needs sourceArn or sourceAccount (confused deputy)."""
    principal = str(get(r, "principal") or "")
    if principal == "*":
        return [f"{r.name}: grants invoke to Principal *"]
    if principal.endswith(".amazonaws.com") and not (present(r, "sourceArn") or present(r, "sourceAccount")):
        return [f"{r.name}: service principal {principal} without sourceArn/sourceAccount"]
    return []


RULES: tuple[Rule, ...] = (
    Rule("lambda-inside-vpc", "Lambda functions run in the VPC",
         LAMBDAS, check_lambda_in_vpc, "FSBP Lambda.3", severity="medium"),
    Rule("lambda-runtime-supported", "Lambda runtimes are current (python3.12+)",
         LAMBDAS, check_lambda_runtime, "FSBP Lambda.2", severity="medium"),
    Rule("lambda-env-no-secrets", "No secrets in Lambda environment variables",
         LAMBDAS, check_lambda_env_secrets, "docs/architecture.md security posture", severity="critical"),
    Rule("lambda-tracing", "Lambda X-Ray tracing active",
         LAMBDAS, check_lambda_tracing, "AWSGuard lambda-function-tracing-enabled", severity="low"),
    Rule("lambda-function-public-access-prohibited", "Lambda permissions are not public",
         LAMBDA_PERMISSIONS, check_lambda_permission, "FSBP Lambda.1", severity="critical"),
)
