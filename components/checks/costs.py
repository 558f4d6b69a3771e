"""Estimated monthly cost of a recorded stack, from the dated price table ``components/checks/prices.yaml``.

Each priced resource type maps (in the YAML) to a pricing model here; the model multiplies the
resource's declared settings (instance class, task size, AZ count…) by the prices and by the
stack's usage assumptions, and says how in a one-line ``basis``. Types listed as ``free`` cost 0;
a type that is neither is reported as *unpriced* so the gap is visible, never silently 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import yaml

from components.checks.graph import Context, as_int, as_list, context_for_recording, get
from components.names import DEPLOY_TIME_TAG

PRICES_PATH = Path(__file__).with_name("prices.yaml")
LOCAL_COMPONENT_PREFIX = "dicom-annotate:"  # our ComponentResources: containers, not billed


@dataclass(frozen=True)
class CostLine:
    resource: str
    type: str
    monthly: float
    basis: str


@dataclass
class CostEstimate:
    stack: str
    as_of: str
    status: str
    lines: list[CostLine] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)   # "type name" of resources with no model
    budget: Optional[float] = None

    @property
    def total(self) -> float:
        return round(sum(line.monthly for line in self.lines), 2)

    @property
    def over_budget(self) -> bool:
        return self.budget is not None and self.total > self.budget

    def dominant(self, n: int = 5) -> list[CostLine]:
        return sorted(self.lines, key=lambda line: line.monthly, reverse=True)[:n]

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "as_of": self.as_of, "status": self.status, "total": self.total,
                "budget": self.budget, "over_budget": self.over_budget, "unpriced": self.unpriced,
                "lines": [line.__dict__ for line in self.lines],
                "dominant": [line.resource for line in self.dominant()]}


def load_prices(path: Path = PRICES_PATH) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    for key in ("as_of", "prices", "assumptions", "priced", "free"):
        if key not in data:
            raise ValueError(f"{path}: missing top-level key {key!r}")
    return data


def is_billable_candidate(resource_type: str) -> bool:
    """Our own ComponentResources are containers; everything else must be priced or free."""
    return not resource_type.startswith(LOCAL_COMPONENT_PREFIX)


@dataclass(frozen=True)
class Env:
    """What a pricing model may use: prices, this stack's assumptions, links, the config."""

    prices: Mapping[str, Any]
    usage: Mapping[str, Any]
    ctx: Context
    config: Any

    @property
    def hours(self) -> float:
        return float(self.prices["hours_per_month"])

    def count(self, *types: str) -> int:
        return sum(1 for r in self.ctx.resources if r.type in types)


Model = Callable[[Any, Env], tuple[float, str]]


def _money(x: float) -> str:
    return f"${x:,.2f}"


# --------------------------------------------------------------------------- network


def vpc_nat(r: Any, env: Env) -> tuple[float, str]:
    """awsx.ec2.Vpc: its NAT gateways (strategy × AZs), one EIP each, and the assumed data."""
    strategy = str(get(r, "natGateways", "strategy") or "OnePerAz")
    azs = as_int(get(r, "numberOfAvailabilityZones")) or len(as_list(get(r, "availabilityZoneNames"))) or 3
    nats = {"None": 0, "Single": 1, "OnePerAz": azs}.get(strategy, azs)
    if nats == 0:
        return 0.0, "no NAT gateway"
    p = env.prices
    hourly = nats * (p["nat_gateway_hour"] + p["public_ipv4_hour"]) * env.hours
    data = env.usage["nat_data_gb"] * p["nat_gateway_gb"]
    return hourly + data, (f"{nats} NAT ({strategy}) × {env.hours:.0f} h × ${p['nat_gateway_hour']} + EIP "
                           f"${p['public_ipv4_hour']}/h; {env.usage['nat_data_gb']} GB × ${p['nat_gateway_gb']}")


def nat_gateway(r: Any, env: Env) -> tuple[float, str]:
    p = env.prices
    cost = p["nat_gateway_hour"] * env.hours + env.usage["nat_data_gb"] * p["nat_gateway_gb"]
    return cost, f"{env.hours:.0f} h × ${p['nat_gateway_hour']} + {env.usage['nat_data_gb']} GB processed"


def public_ipv4(r: Any, env: Env) -> tuple[float, str]:
    return env.prices["public_ipv4_hour"] * env.hours, f"public IPv4 × {env.hours:.0f} h"


def load_balancer(r: Any, env: Env) -> tuple[float, str]:
    """ALB/NLB hours + assumed (N)LCUs + one public IPv4 per AZ when internet-facing."""
    p = env.prices
    network = get(r, "loadBalancerType") == "network"
    hour, unit_hour, units = ((p["nlb_hour"], p["nlb_nlcu_hour"], env.usage["nlb_nlcu"]) if network
                              else (p["alb_hour"], p["alb_lcu_hour"], env.usage["alb_lcu"]))
    azs = len(as_list(get(r, "subnets"))) or len(as_list(get(r, "subnetMappings"))) or 2
    ips = 0 if get(r, "internal") is True else azs
    cost = (hour + units * unit_hour + ips * p["public_ipv4_hour"]) * env.hours
    kind = "NLB" if network else "ALB"
    return cost, (f"{kind} {env.hours:.0f} h × ${hour} + {units} LCU × ${unit_hour}/h"
                  + (f" + {ips} public IPv4" if ips else ""))


def vpc_endpoint(r: Any, env: Env) -> tuple[float, str]:
    """Interface endpoints bill per AZ-hour and per GB; gateway endpoints (S3, DynamoDB) are free."""
    if str(get(r, "vpcEndpointType") or "Gateway") != "Interface":
        return 0.0, "gateway endpoint (free)"
    p = env.prices
    azs = len(as_list(get(r, "subnetIds"))) or 2
    interface = sum(1 for e in env.ctx.resources
                    if e.type == r.type and get(e, "vpcEndpointType") == "Interface") or 1
    data = env.usage["interface_endpoint_data_gb"] / interface
    cost = azs * p["interface_endpoint_az_hour"] * env.hours + data * p["interface_endpoint_gb"]
    return cost, f"{azs} AZ × {env.hours:.0f} h × ${p['interface_endpoint_az_hour']} + {data:.0f} GB"


def flow_log(r: Any, env: Env) -> tuple[float, str]:
    p = env.prices
    gb = env.usage["flow_log_gb"]
    return gb * p["vended_logs_ingest_gb"], f"{gb} GB vended-log ingest × ${p['vended_logs_ingest_gb']}"


# --------------------------------------------------------------------------- compute


def _task_count(service: Any, env: Env) -> tuple[int, str]:
    """Tasks the service runs at its autoscaling minimum (or desiredCount without autoscaling)."""
    name = str(get(service, "name") or service.name)
    minimums = [as_int(get(t, "minCapacity")) for t in env.ctx.resources
                if t.type == "aws:appautoscaling/target:Target"
                and str(get(t, "resourceId") or "").endswith(f"/{name}")]
    minimums = [m for m in minimums if m is not None]
    if minimums and env.usage.get("tasks_at", "min") == "min":
        return min(minimums), "autoscaling min"
    desired = as_int(get(service, "desiredCount"))
    return (desired if desired is not None else 1), "desiredCount"


def fargate_service(r: Any, env: Env) -> tuple[float, str]:
    """Fargate: tasks × (vCPU-h + GB-h) × hours, by the task definition's size and architecture."""
    p = env.prices
    tasks, why = _task_count(r, env)
    definitions = env.ctx.targets(r, "taskDefinition", ("aws:ecs/taskDefinition:TaskDefinition",))
    if definitions:
        td = definitions[0]
        cpu_units = as_int(get(td, "cpu")) or 256
        memory_mib = as_int(get(td, "memory")) or 512
        arch = str(get(td, "runtimePlatform", "cpuArchitecture") or "X86_64")
    else:  # not linked: fall back to the config's Orthanc size
        cpu_units, memory_mib, arch = env.config.orthanc_cpu, env.config.orthanc_memory, "X86_64"
    vcpu, gb = cpu_units / 1024, memory_mib / 1024
    hourly = vcpu * p["fargate_vcpu_hour"][arch] + gb * p["fargate_gb_hour"][arch]
    spot = any(isinstance(s, Mapping) and s.get("capacityProvider") == "FARGATE_SPOT"
               for s in as_list(get(r, "capacityProviderStrategies")))
    factor = p["fargate_spot_factor"] if spot else 1.0
    cost = tasks * hourly * env.hours * factor
    return cost, (f"{tasks} task(s) ({why}) × {vcpu:g} vCPU/{gb:g} GB {arch}"
                  f"{' SPOT' if spot else ''} × {env.hours:.0f} h")


def ecs_cluster(r: Any, env: Env) -> tuple[float, str]:
    """Container Insights: metrics per cluster and per service, plus performance log events."""
    enabled = any(isinstance(s, Mapping) and s.get("name") == "containerInsights"
                  and s.get("value") in ("enabled", "enhanced") for s in as_list(get(r, "settings")))
    if not enabled:
        return 0.0, "cluster (free); Container Insights off"
    p = env.prices
    metrics = env.usage["container_insights_metrics"]
    services = len(env.ctx.referrers(r, ("aws:ecs/service:Service",), "cluster")) or 1
    count = metrics["per_cluster"] + services * metrics["per_service"]
    logs = env.usage["container_insights_log_gb"] * p["logs_ingest_gb"]
    return count * p["cloudwatch_metric_month"] + logs, (
        f"Container Insights: {count} metrics × ${p['cloudwatch_metric_month']} + "
        f"{env.usage['container_insights_log_gb']} GB events")


def _deploy_time(r: Any) -> bool:
    return (get(r, "tags") or {}).get(DEPLOY_TIME_TAG[0]) == DEPLOY_TIME_TAG[1]


def lambda_function(r: Any, env: Env) -> tuple[float, str]:
    p = env.prices
    if _deploy_time(r):
        return 0.0, "invoked once per deployment (a fraction of a cent)"
    memory_gb = (as_int(get(r, "memorySize")) or 128) / 1024
    n = env.usage["lambda_invocations"]
    seconds = env.usage["lambda_avg_seconds"]
    cost = n * seconds * memory_gb * p["lambda_gb_second"] + n / 1e6 * p["lambda_per_million_requests"]
    return cost, f"{n:,} invocations × {seconds} s × {memory_gb:g} GB"


def notebook(r: Any, env: Env) -> tuple[float, str]:
    """Notebook hours (stopped when idle: hours/day × days) + its ML storage volume."""
    p = env.prices
    kind = str(get(r, "instanceType"))
    if kind not in p["sagemaker_notebook_hour"]:
        raise KeyError(f"{r.name}: no price for notebook instance type {kind!r} in prices.yaml")
    hours = env.usage["notebook_hours_per_day"] * env.usage["notebook_days_per_month"]
    volume = as_int(get(r, "volumeSize")) or 5
    cost = hours * p["sagemaker_notebook_hour"][kind] + volume * p["sagemaker_ml_storage_gb_month"]
    return cost, f"{kind} {hours} h (idle stop) × ${p['sagemaker_notebook_hour'][kind]} + {volume} GB"


# --------------------------------------------------------------------------- data


def rds_instance(r: Any, env: Env) -> tuple[float, str]:
    """Instance hours (×2 Multi-AZ) + storage (×2 Multi-AZ) + the managed master secret."""
    p = env.prices
    klass = str(get(r, "instanceClass"))
    if klass not in p["rds_instance_hour"]:
        raise KeyError(f"{r.name}: no price for RDS class {klass!r} in prices.yaml")
    multi = get(r, "multiAz") is True
    factor = p["rds_multi_az_factor"] if multi else 1
    storage_type = str(get(r, "storageType") or "gp3")
    gb = as_int(get(r, "allocatedStorage")) or 20
    instance = p["rds_instance_hour"][klass] * factor * env.hours
    storage = gb * p["rds_storage_gb_month"].get(storage_type, p["rds_storage_gb_month"]["gp3"]) * factor
    secret = p["secret_month"] if get(r, "manageMasterUserPassword") is True else 0.0
    return instance + storage + secret, (f"{klass}{' Multi-AZ' if multi else ''} × {env.hours:.0f} h + "
                                         f"{gb} GB {storage_type}" + (" + managed secret" if secret else ""))


def s3_bucket(r: Any, env: Env) -> tuple[float, str]:
    sizes: Mapping[str, Any] = env.usage["s3_bucket_gb"]
    gb = next((v for k, v in sizes.items() if k != "*" and k in r.name), sizes.get("*", 0))
    price = env.prices["s3_standard_gb_month"]
    return gb * price, f"{gb} GB Standard × ${price}"


def kms_key(r: Any, env: Env) -> tuple[float, str]:
    p = env.prices
    keys = env.count("aws:kms/key:Key") or 1
    requests = env.usage["kms_requests"] / keys
    return p["kms_key_month"] + requests / 1e4 * p["kms_per_10k_requests"], f"key + {requests:,.0f} requests"


def secret(r: Any, env: Env) -> tuple[float, str]:
    p = env.prices
    secrets = env.count("aws:secretsmanager/secret:Secret") or 1
    calls = env.usage["secret_api_calls"] / secrets
    return p["secret_month"] + calls / 1e4 * p["secret_per_10k_api_calls"], f"secret + {calls:,.0f} API calls"


def log_group(r: Any, env: Env) -> tuple[float, str]:
    """Ingest (unless a flow log delivers here: that ingest is on the FlowLog) + steady-state storage."""
    p = env.prices
    if _deploy_time(r):
        return 0.0, "a few lines per deployment"
    fed_by_flow_log = bool(env.ctx.referrers(r, ("aws:ec2/flowLog:FlowLog",), "logDestination"))
    gb = env.usage["flow_log_gb"] if fed_by_flow_log else env.usage["log_ingest_gb_per_group"]
    ingest = 0.0 if fed_by_flow_log else gb * p["logs_ingest_gb"]
    retention_months = min((as_int(get(r, "retentionInDays")) or 3650) / 30, 12)
    stored = gb * retention_months * p["logs_storage_gb_month"]
    return ingest + stored, (f"{gb} GB/month" + ("" if fed_by_flow_log else " ingested")
                             + f", {retention_months:.1f} months kept")


def scaling_policy(r: Any, env: Env) -> tuple[float, str]:
    if get(r, "policyType") == "TargetTrackingScaling":
        return 2 * env.prices["cloudwatch_alarm_month"], "target tracking: 2 CloudWatch alarms"
    return 0.0, "step scaling (alarms declared separately)"


def alarm(r: Any, env: Env) -> tuple[float, str]:
    return env.prices["cloudwatch_alarm_month"], "1 alarm"


def dns_namespace(r: Any, env: Env) -> tuple[float, str]:
    return env.prices["route53_hosted_zone_month"], "private hosted zone"


def discovery_service(r: Any, env: Env) -> tuple[float, str]:
    """Cloud Map: one registered instance per task of the services registered here."""
    services = env.ctx.referrers(r, ("aws:ecs/service:Service",), "serviceRegistries")
    tasks = sum(_task_count(s, env)[0] for s in services) or 1
    return tasks * env.prices["cloud_map_instance_month"], f"{tasks} registered instance(s)"


# --------------------------------------------------------------------------- edge, identity, images


def cloudfront_distribution(r: Any, env: Env) -> tuple[float, str]:
    """Data transfer out to viewers + HTTPS requests (the S3 origin fetch to CloudFront is free)."""
    p = env.prices
    gb, requests = env.usage["cloudfront_gb"], env.usage["cloudfront_requests"]
    cost = gb * p["cloudfront_gb_out"] + requests / 1e4 * p["cloudfront_per_10k_https_requests"]
    return cost, f"{gb} GB out × ${p['cloudfront_gb_out']} + {requests:,} HTTPS requests"


def cognito_user_pool(r: Any, env: Env) -> tuple[float, str]:
    """Monthly active users at the pool's feature tier (Essentials when not set)."""
    p = env.prices
    tier = str(get(r, "userPoolTier") or "ESSENTIALS")
    if tier not in p["cognito_mau"]:
        raise KeyError(f"{r.name}: no price for Cognito tier {tier!r} in prices.yaml")
    users = env.usage["cognito_mau"]
    return users * p["cognito_mau"][tier], f"{users} MAU × ${p['cognito_mau'][tier]} ({tier})"


def ecr_repository(r: Any, env: Env) -> tuple[float, str]:
    gb = env.usage["ecr_image_gb"]
    return gb * env.prices["ecr_storage_gb_month"], f"{gb} GB of images × ${env.prices['ecr_storage_gb_month']}"


MODELS: dict[str, Model] = {
    "vpc_nat": vpc_nat, "nat_gateway": nat_gateway, "public_ipv4": public_ipv4,
    "load_balancer": load_balancer, "vpc_endpoint": vpc_endpoint, "flow_log": flow_log,
    "fargate_service": fargate_service, "ecs_cluster": ecs_cluster, "lambda_function": lambda_function,
    "notebook": notebook, "rds_instance": rds_instance, "s3_bucket": s3_bucket, "kms_key": kms_key,
    "secret": secret, "log_group": log_group, "scaling_policy": scaling_policy, "alarm": alarm,
    "dns_namespace": dns_namespace, "discovery_service": discovery_service,
    "cloudfront_distribution": cloudfront_distribution, "cognito_user_pool": cognito_user_pool,
    "ecr_repository": ecr_repository,
}


def estimate(recording: Any, config: Any, prices: Optional[Mapping[str, Any]] = None,
             ctx: Optional[Context] = None) -> CostEstimate:
    """Monthly cost lines for every billable resource of ``recording``."""
    data = prices or load_prices()
    kind = config.environment
    usage = data["assumptions"][kind]
    ctx = ctx or context_for_recording(recording, config)
    env = Env(data["prices"], usage, ctx, config)
    budgets = data.get("monthly_budget_usd") or {}
    # A stack running the portal has its own goal when the table names one ("dev-portal").
    budget = budgets.get(f"{kind}-portal") if getattr(config, "portal_enabled", False) else None
    budget = budgets.get(kind) if budget is None else budget
    result = CostEstimate(recording.stack, str(data["as_of"]), str(data.get("status", "")),
                          budget=float(budget) if budget is not None else None)
    free = set(data["free"])
    for r in recording.resources:
        if not is_billable_candidate(r.type) or r.type in free:
            continue
        model_name = data["priced"].get(r.type)
        if model_name is None:
            result.unpriced.append(f"{r.type} {r.name}")
            continue
        cost, basis = MODELS[model_name](r, env)
        result.lines.append(CostLine(r.name, r.type, round(cost, 2), basis))
    return result


def monthly_cost_of(estimate_: CostEstimate) -> dict[tuple[str, str], float]:
    """(type, name) → monthly cost, for the plan's resource table."""
    return {(line.type, line.resource): line.monthly for line in estimate_.lines}
