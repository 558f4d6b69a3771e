"""ECS (clusters, services, task definitions) and ECR (the portal image).

Rules read resources through :mod:`components.checks.graph`; :data:`RULES` lists this module's.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from components.checks.graph import (
    Context, ECR_LIFECYCLE_POLICIES, ECR_REPOSITORIES, ECS_CLUSTERS, ECS_SERVICES, ECS_TASK_DEFINITIONS,
    LOAD_BALANCERS, PLACEHOLDER_SECRET, Rule, UNKNOWN, as_list, container_definitions, get, truthy,
)

SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|REGISTERED_USERS",
                         re.IGNORECASE)
# Names that carry a *reference* to a secret, not the secret.
SECRET_REFERENCE_NAME = re.compile(r"(_ARN|_ID|_NAME|_REF|_PATH|_FILE)$", re.IGNORECASE)
SECRET_VALUE = re.compile(
    re.escape(PLACEHOLDER_SECRET)
    + r"|AKIA[0-9A-Z]{16}"                      # AWS access key id
    + r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    + r"|[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"  # URL with user:password@
    + r"|\"[Pp]assword\"\s*:\s*\"[^\"]+\"")      # JSON with a password value


def env_secret_problems(owner: str, variables: Iterable[tuple[str, Any]]) -> list[str]:
    """Env vars that hold, or are named like, secret values (the value itself is never printed)."""
    problems = []
    for name, value in variables:
        text = "" if value is None else str(value)
        if SECRET_VALUE.search(text):
            problems.append(f"{owner}: env {name} holds a secret-looking value; inject it from "
                            f"Secrets Manager instead")
        elif (SECRET_NAME.search(name) and not SECRET_REFERENCE_NAME.search(name)
              and text.lower() not in ("", "true", "false") and not text.startswith("arn:")):
            problems.append(f"{owner}: env {name} looks like a secret; use ECS `secrets` / a Secrets "
                            f"Manager ARN instead of a plain value")
    return problems


def check_ecs_secrets_not_in_env(r: Any, ctx: Context) -> list[str]:
    """FSBP ECS.8: Secrets should not be passed as container environment variables."""
    problems = []
    for container in container_definitions(r):
        owner = f"{r.name}/{container.get('name', '?')}"
        pairs = [(str(e.get("name", "")), e.get("value")) for e in as_list(container.get("environment"))
                 if isinstance(e, Mapping)]
        problems.extend(env_secret_problems(owner, pairs))
    return problems


def check_ecs_no_privileged(r: Any, ctx: Context) -> list[str]:
    """FSBP ECS.4: ECS containers should run as non-privileged."""
    return [f"{r.name}/{c.get('name', '?')}: privileged is true"
            for c in container_definitions(r) if truthy(c.get("privileged"))]


def check_ecs_log_configuration(r: Any, ctx: Context) -> list[str]:
    """FSBP ECS.9: ECS task definitions should have a logging configuration."""
    containers = container_definitions(r)
    if not containers:
        return [f"{r.name}: no container definitions"]
    return [f"{r.name}/{c.get('name', '?')}: no logConfiguration.logDriver"
            for c in containers if not (c.get("logConfiguration") or {}).get("logDriver")]


def check_ecs_container_insights(r: Any, ctx: Context) -> list[str]:
    """FSBP ECS.12: ECS clusters should use Container Insights."""
    for setting in as_list(get(r, "settings")):
        if isinstance(setting, Mapping) and setting.get("name") == "containerInsights" \
                and setting.get("value") in ("enabled", "enhanced"):
            return []
    return [f"{r.name}: containerInsights is not enabled"]


def check_ecs_no_public_ip(r: Any, ctx: Context) -> list[str]:
    """FSBP ECS.2: ECS services should not have public IP addresses assigned automatically."""
    if truthy(get(r, "networkConfiguration", "assignPublicIp")):
        return [f"{r.name}: networkConfiguration.assignPublicIp is true (tasks belong in private subnets)"]
    return []


def check_ecs_private_subnets(r: Any, ctx: Context) -> list[str]:
    """docs/architecture.md floor ("private subnets for tasks"): a service's subnets are none of the subnets an
    internet-facing load balancer of the stack sits in (those are the public ones)."""
    subnets = {str(s) for s in as_list(get(r, "networkConfiguration", "subnets", allow_unknown=True))}
    if not subnets or UNKNOWN in subnets:
        return [] if subnets else [f"{r.name}: networkConfiguration.subnets is empty"]
    public: set[str] = set()
    for lb in ctx.resources:
        if lb.type in LOAD_BALANCERS and not truthy(get(lb, "internal", allow_unknown=True)):
            public.update(str(s) for s in as_list(get(lb, "subnets", allow_unknown=True)))
    shared = sorted(subnets & public)
    return [f"{r.name}: runs in {shared}, where an internet-facing load balancer sits (public subnets)"] \
        if shared else []


def check_ecs_fargate_platform(r: Any, ctx: Context) -> list[str]:
    """FSBP ECS.10: ECS Fargate services should run on the latest Fargate platform version."""
    version = get(r, "platformVersion")
    if version not in (None, "", "LATEST"):
        return [f"{r.name}: platformVersion pinned to {version!r}; use LATEST"]
    return []


def _is_fargate(r: Any, ctx: Context) -> bool:
    if get(r, "launchType") == "FARGATE":
        return True
    strategies = as_list(get(r, "capacityProviderStrategies"))
    return any(isinstance(s, Mapping) and str(s.get("capacityProvider", "")).startswith("FARGATE")
               for s in strategies)

def check_ecs_secrets_from_secrets_manager(r: Any, ctx: Context) -> list[str]:
    """docs/architecture.md floor ("secrets only in Secrets Manager"): every container ``secrets`` entry is a
    Secrets Manager ARN (optionally with a JSON key), never a literal or another store."""
    problems = []
    for container in container_definitions(r):
        for entry in as_list(container.get("secrets")):
            if not isinstance(entry, Mapping):
                continue
            source = str(entry.get("valueFrom", ""))
            if not re.match(r"arn:aws[a-z-]*:secretsmanager:", source):
                problems.append(f"{r.name}/{container.get('name', '?')}: secret {entry.get('name')} comes from "
                                f"{source.split(':secret:')[0][:40]!r}, not a Secrets Manager ARN")
    return problems

def check_ecr_scan_on_push(r: Any, ctx: Context) -> list[str]:
    """FSBP ECR.1: ECR private repositories should have image scanning configured (scan on push)."""
    if not truthy(get(r, "imageScanningConfiguration", "scanOnPush")):
        return [f"{r.name}: imageScanningConfiguration.scanOnPush is not true"]
    return []


def check_ecr_lifecycle_policy(r: Any, ctx: Context) -> list[str]:
    """FSBP ECR.3: ECR repositories should have at least one lifecycle policy configured."""
    if ctx.referrers(r, ECR_LIFECYCLE_POLICIES, "repository"):
        return []
    return [f"{r.name}: no LifecyclePolicy refers to this repository"]


RULES: tuple[Rule, ...] = (
    Rule("ecs-service-no-public-ip", "ECS services get no public IP",
         ECS_SERVICES, check_ecs_no_public_ip, "FSBP ECS.2"),
    Rule("ecs-service-private-subnets", "ECS services run in private subnets (not the load balancers' public ones)",
         ECS_SERVICES, check_ecs_private_subnets, "docs/architecture.md security posture", scope="stack"),
    Rule("ecs-fargate-latest-platform", "Fargate services on the LATEST platform version",
         ECS_SERVICES, check_ecs_fargate_platform, "FSBP ECS.10", severity="low", selects=_is_fargate),
    Rule("ecs-task-no-privileged", "ECS containers are not privileged",
         ECS_TASK_DEFINITIONS, check_ecs_no_privileged, "FSBP ECS.4"),
    Rule("ecs-secrets-not-in-env", "No secrets in ECS container environment (use `secrets`)",
         ECS_TASK_DEFINITIONS, check_ecs_secrets_not_in_env, "FSBP ECS.8", severity="critical"),
    Rule("ecs-task-log-configuration", "ECS containers log to a configured driver",
         ECS_TASK_DEFINITIONS, check_ecs_log_configuration, "FSBP ECS.9", severity="medium"),
    Rule("ecs-container-insights", "ECS clusters use Container Insights",
         ECS_CLUSTERS, check_ecs_container_insights, "FSBP ECS.12", severity="low"),
    Rule("ecs-secrets-from-secrets-manager", "ECS secrets come from Secrets Manager ARNs",
         ECS_TASK_DEFINITIONS, check_ecs_secrets_from_secrets_manager, "docs/architecture.md security posture"),
    Rule("ecr-image-scan-on-push", "ECR repositories scan images on push",
         ECR_REPOSITORIES, check_ecr_scan_on_push, "FSBP ECR.1", severity="medium"),
    Rule("ecr-lifecycle-policy", "ECR repositories have a lifecycle policy",
         ECR_REPOSITORIES, check_ecr_lifecycle_policy, "FSBP ECR.3", scope="stack", severity="low"),
)
