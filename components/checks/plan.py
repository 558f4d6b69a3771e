"""The offline plan: ``python -m components.checks.plan --stack dev`` (``make plan STACK=dev``).

Runs the Pulumi program under mocks (:func:`components.checks.offline.run_program`) — no AWS account, no
Pulumi CLI — and prints:

(a) the stack's configuration warnings (:meth:`StackConfig.warnings`);
(b) every resource it would create, with its key settings and estimated monthly cost;
(c) the policy results of :mod:`components.checks.rules` (pass / fail / n/a per rule);
(d) the estimated monthly total from ``components/checks/prices.yaml`` (:mod:`components.checks.costs`),
    with the dominant items when it exceeds the stack's budget.

Exit status: 0, or 1 when any policy rule fails (2 for an invalid stack configuration).
``--json`` prints the same content as one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from components.checks import costs
from components.checks.graph import RuleResult, as_int, as_list, container_definitions, context_for_recording
from components.checks.offline import Recording, run_program, stack_config_values
from components.checks.rules import counts, evaluate_context
from components.config import ConfigError, StackConfig


# --------------------------------------------------------------------------- key settings per type


def _g(r: Any, *path: Any) -> Any:
    node: Any = r.inputs
    for key in path:
        if isinstance(node, Mapping):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return None
    return node


def _num(value: Any) -> str:
    n = as_int(value)
    return str(n) if n is not None else str(value)


def _kv(**items: Any) -> str:
    return ", ".join(f"{k.replace('_', '-')}={v}" for k, v in items.items() if v not in (None, "", []))


def _vpc(r: Any) -> str:
    return _kv(cidr=_g(r, "cidrBlock"), azs=_num(_g(r, "numberOfAvailabilityZones")),
               nat=_g(r, "natGateways", "strategy"))


def _rds(r: Any) -> str:
    return _kv(cls=_g(r, "instanceClass"), engine=f"{_g(r, 'engine')} {_g(r, 'engineVersion')}",
               multi_az=_g(r, "multiAz"), storage=f"{_num(_g(r, 'allocatedStorage'))} GB {_g(r, 'storageType') or ''}".strip(),
               backups=f"{_num(_g(r, 'backupRetentionPeriod'))} d", deletion_protection=_g(r, "deletionProtection"),
               encrypted=_g(r, "storageEncrypted"))


def _ecs_service(r: Any, recording: Recording) -> str:
    name = _g(r, "name") or r.name
    targets = [t for t in recording.of_type("aws:appautoscaling/target:Target")
               if str(_g(t, "resourceId") or "").endswith(f"/{name}")]
    scale = f"{_num(_g(targets[0], 'minCapacity'))}..{_num(_g(targets[0], 'maxCapacity'))}" if targets else None
    return _kv(desired=_num(_g(r, "desiredCount")), min_max=scale, launch=_g(r, "launchType"),
               public_ip=_g(r, "networkConfiguration", "assignPublicIp"))


def _task_definition(r: Any) -> str:
    images = [c.get("image") for c in container_definitions(r)]
    return _kv(cpu=_g(r, "cpu"), memory=_g(r, "memory"), arch=_g(r, "runtimePlatform", "cpuArchitecture"),
               image=", ".join(str(i) for i in images if i))


def _cluster(r: Any) -> str:
    insights = [s.get("value") for s in as_list(_g(r, "settings"))
                if isinstance(s, Mapping) and s.get("name") == "containerInsights"]
    return _kv(container_insights=insights[0] if insights else "off")


def _lb(r: Any) -> str:
    return _kv(type=_g(r, "loadBalancerType") or "application",
               scheme="internal" if _g(r, "internal") else "internet-facing",
               access_logs=_g(r, "accessLogs", "enabled"), deletion_protection=_g(r, "enableDeletionProtection"),
               drop_invalid_headers=_g(r, "dropInvalidHeaderFields"))


def _listener(r: Any) -> str:
    actions = [a.get("type") for a in as_list(_g(r, "defaultActions")) if isinstance(a, Mapping)]
    return _kv(listen=f"{_g(r, 'protocol')}:{_num(_g(r, 'port'))}", ssl_policy=_g(r, "sslPolicy"),
               action="/".join(str(a) for a in actions))


def _lambda(r: Any) -> str:
    return _kv(runtime=_g(r, "runtime"), memory=f"{_num(_g(r, 'memorySize'))} MB",
               timeout=f"{_num(_g(r, 'timeout'))} s", arch=",".join(as_list(_g(r, "architectures"))),
               tracing=_g(r, "tracingConfig", "mode"), vpc=bool(_g(r, "vpcConfig", "subnetIds")))


def _log_group(r: Any) -> str:
    return _kv(name=_g(r, "name"), retention=f"{_num(_g(r, 'retentionInDays'))} d", kms=bool(_g(r, "kmsKeyId")))


def _notebook(r: Any) -> str:
    return _kv(type=_g(r, "instanceType"), volume=f"{_num(_g(r, 'volumeSize'))} GB",
               internet=_g(r, "directInternetAccess"), root=_g(r, "rootAccess"),
               lifecycle=_g(r, "lifecycleConfigName"))


def _endpoint(r: Any) -> str:
    service = str(_g(r, "serviceName") or "").rsplit(".", 1)[-1]
    return _kv(type=_g(r, "vpcEndpointType"), service=service, azs=len(as_list(_g(r, "subnetIds"))) or None)


def _scaling_target(r: Any) -> str:
    return _kv(resource=_g(r, "resourceId"), min=_num(_g(r, "minCapacity")), max=_num(_g(r, "maxCapacity")))


def _scaling_policy(r: Any) -> str:
    config = _g(r, "targetTrackingScalingPolicyConfiguration") or {}
    metric = (config.get("predefinedMetricSpecification") or {}).get("predefinedMetricType")
    return _kv(type=_g(r, "policyType"), target=_num(config.get("targetValue")), metric=metric)


def _ingress(r: Any) -> str:
    source = _g(r, "referencedSecurityGroupId") or _g(r, "cidrIpv4") or _g(r, "cidrIpv6") or _g(r, "prefixListId")
    return _kv(port=f"{_g(r, 'ipProtocol')}/{_num(_g(r, 'fromPort'))}", source=source)


def _generic(r: Any) -> str:
    """Fallback: the first few scalar inputs (never tags or long documents)."""
    items = [(k, v) for k, v in sorted(r.inputs.items())
             if k not in ("tags", "tagsAll", "policy", "assumeRolePolicy", "description", "code")
             and isinstance(v, (str, int, float, bool)) and len(str(v)) <= 60]
    return ", ".join(f"{k}={_num(v)}" for k, v in items[:4])


def _security_group(r: Any) -> str:
    return _kv(description=_g(r, "description"), inline_ingress=len(as_list(_g(r, "ingress"))) or None)


def _sse(r: Any) -> str:
    rules = [x.get("applyServerSideEncryptionByDefault") or {} for x in as_list(_g(r, "rules"))
             if isinstance(x, Mapping)]
    return _kv(algorithm=",".join(str(x.get("sseAlgorithm")) for x in rules),
               bucket_key=",".join(str(x.get("bucketKeyEnabled")) for x in as_list(_g(r, "rules"))
                                   if isinstance(x, Mapping) and "bucketKeyEnabled" in x))


def _secret(r: Any) -> str:
    return _kv(kms=bool(_g(r, "kmsKeyId")), recovery=f"{_num(_g(r, 'recoveryWindowInDays'))} d")


def _distribution(r: Any) -> str:
    behavior = _g(r, "defaultCacheBehavior") or {}
    cert = _g(r, "viewerCertificate") or {}
    origins = [o for o in as_list(_g(r, "origins")) if isinstance(o, Mapping)]
    tls = cert.get("minimumProtocolVersion") or ("default cert" if cert.get("cloudfrontDefaultCertificate") else None)
    return _kv(viewers=behavior.get("viewerProtocolPolicy"), oac=all(o.get("originAccessControlId") for o in origins),
               tls=tls, price_class=_g(r, "priceClass"))


def _user_pool(r: Any) -> str:
    return _kv(tier=_g(r, "userPoolTier"), mfa=_g(r, "mfaConfiguration"),
               admin_only=_g(r, "adminCreateUserConfig", "allowAdminCreateUserOnly"),
               min_password=_num(_g(r, "passwordPolicy", "minimumLength")),
               threat_protection=_g(r, "userPoolAddOns", "advancedSecurityMode"))


def _listener_rule(r: Any) -> str:
    actions = sorted((a for a in as_list(_g(r, "actions")) if isinstance(a, Mapping)),
                     key=lambda a: a.get("order") or 0)
    paths = [v for c in as_list(_g(r, "conditions")) if isinstance(c, Mapping)
             for v in as_list((c.get("pathPattern") or {}).get("values"))]
    return _kv(paths=",".join(paths), actions="→".join(str(a.get("type")) for a in actions),
               priority=_num(_g(r, "priority")))


SUMMARIES: dict[str, Callable[..., str]] = {
    "aws:cloudfront/distribution:Distribution": _distribution,
    "aws:cognito/userPool:UserPool": _user_pool,
    "aws:lb/listenerRule:ListenerRule": _listener_rule,
    "aws:ec2/securityGroup:SecurityGroup": _security_group,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": _sse,
    "aws:s3/bucketVersioning:BucketVersioning": lambda r: _kv(status=_g(r, "versioningConfiguration", "status")),
    "aws:secretsmanager/secret:Secret": _secret,
    "awsx:ec2:Vpc": _vpc,
    "aws:rds/instance:Instance": _rds,
    "aws:ecs/taskDefinition:TaskDefinition": _task_definition,
    "aws:ecs/cluster:Cluster": _cluster,
    "aws:lb/loadBalancer:LoadBalancer": _lb,
    "aws:lb/listener:Listener": _listener,
    "aws:lambda/function:Function": _lambda,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:sagemaker/notebookInstance:NotebookInstance": _notebook,
    "aws:ec2/vpcEndpoint:VpcEndpoint": _endpoint,
    "aws:appautoscaling/target:Target": _scaling_target,
    "aws:appautoscaling/policy:Policy": _scaling_policy,
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": _ingress,
}


def key_settings(r: Any, recording: Recording) -> str:
    if r.type == "aws:ecs/service:Service":
        return _ecs_service(r, recording)
    try:
        return SUMMARIES.get(r.type, _generic)(r)
    except Exception as exc:  # noqa: BLE001 - a summary must never hide the rest of the plan
        return f"(summary failed: {exc})"


def short_type(token: str) -> str:
    """``aws:rds/instance:Instance`` → ``rds:Instance`` (the table is wide enough already)."""
    package, _, rest = token.partition(":")
    module, _, kind = rest.partition(":")
    module = module.split("/")[0]
    return f"{module}:{kind}" if package == "aws" else f"{package}:{module}:{kind}"


# --------------------------------------------------------------------------- the plan


@dataclass
class PlanRow:
    type: str
    name: str
    settings: str
    monthly: Optional[float]        # None: free (or priced through another resource)


@dataclass
class Plan:
    stack: str
    warnings: list[str]
    rows: list[PlanRow]
    policy: list[RuleResult]
    cost: costs.CostEstimate

    @property
    def policy_counts(self) -> dict[str, int]:
        return counts(self.policy)

    @property
    def exit_code(self) -> int:
        return 1 if self.policy_counts["fail"] else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "warnings": self.warnings,
            "resources": [row.__dict__ for row in self.rows],
            "policy": {"counts": self.policy_counts, "results": [r.to_dict() for r in self.policy]},
            "cost": self.cost.to_dict(),
        }


def stack_config(stack: str) -> StackConfig:
    return StackConfig.from_mapping(stack_config_values(stack), stack=stack)


def build_plan(recording: Recording, config: StackConfig) -> Plan:
    """Everything the plan shows, computed from one recorded program run."""
    ctx = context_for_recording(recording, config)
    estimate = costs.estimate(recording, config, ctx=ctx)
    cost_of = costs.monthly_cost_of(estimate)
    rows = [PlanRow(r.type, r.name, key_settings(r, recording), cost_of.get((r.type, r.name)))
            for r in sorted(recording.resources, key=lambda r: (short_type(r.type), r.name))
            if costs.is_billable_candidate(r.type)]
    # The harness's substitutions (a placeholder viewer build) are warnings too.
    return Plan(recording.stack, config.warnings() + list(recording.notes), rows, evaluate_context(ctx), estimate)


# --------------------------------------------------------------------------- rendering


def render(plan: Plan, console: Any) -> None:
    from rich.table import Table

    console.rule(f"[bold]dicom-annotate — offline plan for stack [cyan]{plan.stack}")
    if plan.warnings:
        for warning in plan.warnings:
            console.print(f"[yellow]warning[/]: {warning}")
    else:
        console.print("no configuration warnings")

    resources = Table(title=f"{len(plan.rows)} resources", show_lines=False, expand=True)
    resources.add_column("type", style="cyan", no_wrap=True)
    resources.add_column("name", overflow="fold")
    resources.add_column("key settings", overflow="fold")
    resources.add_column("$/month", justify="right", no_wrap=True)
    for row in plan.rows:
        resources.add_row(short_type(row.type), row.name, row.settings,
                          "" if row.monthly is None else f"{row.monthly:,.2f}")
    console.print(resources)

    tally = plan.policy_counts
    policy = Table(title=f"policy: {tally['pass']} pass, {tally['fail']} fail, {tally['n/a']} n/a", expand=True)
    policy.add_column("rule", no_wrap=True)
    policy.add_column("status", no_wrap=True)
    policy.add_column("control", overflow="fold")
    policy.add_column("violations", overflow="fold")
    style = {"pass": "green", "fail": "bold red", "n/a": "dim"}
    for result in plan.policy:
        policy.add_row(result.rule_id, f"[{style[result.status]}]{result.status}[/]", result.control,
                       "\n".join(result.violations))
    console.print(policy)

    estimate = plan.cost
    console.print(f"[bold]estimated monthly cost: ${estimate.total:,.2f}[/] "
                  f"(us-east-1 on-demand, prices as of {estimate.as_of}; components/checks/prices.yaml — "
                  f"{estimate.status})")
    if estimate.unpriced:
        console.print(f"[red]unpriced resources (add them to prices.yaml):[/] {', '.join(estimate.unpriced)}")
    if estimate.budget is not None:
        if estimate.over_budget:
            top = ", ".join(f"{line.resource} ${line.monthly:,.2f}" for line in estimate.dominant())
            console.print(f"[yellow]over the {plan.stack} budget of ${estimate.budget:,.0f}[/] by "
                          f"${estimate.total - estimate.budget:,.2f}; dominant items: {top}")
        else:
            console.print(f"within the {plan.stack} budget of ${estimate.budget:,.0f}")
    if tally["fail"]:
        console.print(f"[bold red]{tally['fail']} policy rule(s) failed[/]")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.checks.plan", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", default=os.environ.get("STACK", "dev"), help="stack name (Pulumi.<stack>.yaml)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = parser.parse_args(argv)
    try:
        config = stack_config(args.stack)
        recording = run_program(args.stack)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    plan = build_plan(recording, config)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=1, default=str))
    else:
        from rich.console import Console

        render(plan, Console(width=None if sys.stdout.isatty() else 160))
    return plan.exit_code


if __name__ == "__main__":
    sys.exit(main())
