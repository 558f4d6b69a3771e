"""IAM: policies, managed-policy attachments and trust.

Rules read resources through :mod:`components.checks.graph`; :data:`RULES` lists this module's.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from components.checks.graph import (
    Context, IAM_ATTACHMENTS, IAM_POLICY_HOLDERS, IAM_ROLES, Rule, as_list,
    get, parse_json, statements,
)


def _policy_documents(r: Any) -> list[tuple[str, Any]]:
    if r.type in IAM_ROLES:
        docs = []
        for i, inline in enumerate(as_list(get(r, "inlinePolicies"))):
            if isinstance(inline, Mapping):
                docs.append((f"{r.name}/inline[{inline.get('name', i)}]",
                             parse_json(r, inline.get("policy"), f"inlinePolicies[{i}].policy")))
        return docs
    return [(r.name, parse_json(r, get(r, "policy", allow_unknown=True), "policy"))]


def check_iam_no_wildcard_admin(r: Any, ctx: Context) -> list[str]:
    """FSBP IAM.1: IAM policies should not allow full "*" administrative privileges."""
    problems = []
    for owner, document in _policy_documents(r):
        for statement in statements(document):
            if statement.get("Effect") != "Allow":
                continue
            actions = set(as_list(statement.get("Action")))
            resources = set(as_list(statement.get("Resource")))
            if actions & {"*", "*:*"} and "*" in resources:
                problems.append(f"{owner}: allows Action * on Resource *")
            elif "NotAction" in statement and "*" in resources:
                problems.append(f"{owner}: Allow with NotAction on Resource * grants near-admin rights")
    return problems


FULL_ACCESS_POLICY = re.compile(r"FullAccess|AdministratorAccess|PowerUserAccess|IAMFullAccess", re.IGNORECASE)


def check_iam_no_full_access(r: Any, ctx: Context) -> list[str]:
    """docs/architecture.md floor / FSBP IAM.21-style least privilege: no ``*FullAccess`` managed policies."""
    arns = [*as_list(get(r, "managedPolicyArns")), *as_list(get(r, "policyArn")), *as_list(get(r, "policyArns"))]
    return [f"{r.name}: attaches {arn}; write a least-privilege policy instead"
            for arn in arns if isinstance(arn, str) and FULL_ACCESS_POLICY.search(arn.rsplit("/", 1)[-1])]


def check_iam_trust_no_wildcard(r: Any, ctx: Context) -> list[str]:
    """Project floor: a role's trust policy names its principals (no ``*``), or anyone could assume it."""
    document = parse_json(r, get(r, "assumeRolePolicy", allow_unknown=True), "assumeRolePolicy")
    problems = []
    for statement in statements(document):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        if isinstance(principal, Mapping):
            values = [v for vals in principal.values() for v in as_list(vals)]
        else:
            values = as_list(principal)
        if "*" in values:
            problems.append(f"{r.name}: trust policy allows Principal *")
    return problems


RULES: tuple[Rule, ...] = (
    Rule("iam-no-wildcard-admin", "No IAM policy allows * on *",
         IAM_POLICY_HOLDERS, check_iam_no_wildcard_admin, "FSBP IAM.1", severity="critical"),
    Rule("iam-no-full-access-managed-policies", "No *FullAccess / admin managed policies attached",
         IAM_ROLES + IAM_ATTACHMENTS, check_iam_no_full_access, "docs/architecture.md security posture"),
    Rule("iam-role-trust-no-wildcard-principal", "Role trust policies name their principals",
         IAM_ROLES, check_iam_trust_no_wildcard, "docs/architecture.md security posture", severity="critical"),
)
