"""SageMaker notebook instances.

Rules read resources through :mod:`components.checks.graph`; :data:`RULES` lists this module's.
"""

from __future__ import annotations

from typing import Any

from components.checks.graph import Context, NOTEBOOKS, Rule, get, present


def check_notebook_direct_internet(r: Any, ctx: Context) -> list[str]:
    """FSBP SageMaker.1 (no direct internet access, prod) and SageMaker.2 (in a custom VPC, always)."""
    problems = []
    if not present(r, "subnetId"):
        problems.append(f"{r.name}: no subnetId (must run in a private subnet)")
    if ctx.prod and get(r, "directInternetAccess") != "Disabled":
        problems.append(f"{r.name}: directInternetAccess is not Disabled in prod")
    return problems


def check_notebook_root_access(r: Any, ctx: Context) -> list[str]:
    """FSBP SageMaker.3: users should not have root access to notebook instances
    (lifecycle configurations still run as root)."""
    if get(r, "rootAccess") != "Disabled":
        return [f"{r.name}: rootAccess is not Disabled"]
    return []


def check_notebook_kms(r: Any, ctx: Context) -> list[str]:
    """AWSGuard sagemaker-notebook-instance-kms-key-configured: ML storage volume encrypted with a CMK."""
    if not present(r, "kmsKeyId"):
        return [f"{r.name}: kmsKeyId is not set"]
    return []


RULES: tuple[Rule, ...] = (
    Rule("sagemaker-notebook-no-direct-internet", "Notebook in a private subnet; no direct internet in prod",
         NOTEBOOKS, check_notebook_direct_internet, "FSBP SageMaker.1 / SageMaker.2"),
    Rule("sagemaker-notebook-root-access-disabled", "Notebook users have no root access",
         NOTEBOOKS, check_notebook_root_access, "FSBP SageMaker.3", severity="medium"),
    Rule("sagemaker-notebook-kms", "Notebook volume encrypted with the project KMS key",
         NOTEBOOKS, check_notebook_kms, "AWSGuard sagemaker-notebook-instance-kms-key-configured",
         severity="medium"),
)
