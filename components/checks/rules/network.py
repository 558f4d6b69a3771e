"""Load balancers, security groups and VPCs.

Rules read resources through :mod:`components.checks.graph`; :data:`RULES` lists this module's.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from components.checks.graph import (
    Context, FLOW_LOGS, LISTENERS, LOAD_BALANCERS, Rule, SECURITY_GROUPS,
    SG_INGRESS_RULES, SG_RULES, VPCS, VPC_ENDPOINTS, as_int, as_list,
    get, present, prod_only, truthy,
)


def _lb_type(r: Any) -> str:
    return str(get(r, "loadBalancerType") or "application")


def _is_alb(r: Any, ctx: Context) -> bool:
    return _lb_type(r) == "application"


def _is_http_listener(r: Any, ctx: Context) -> bool:
    return str(get(r, "protocol") or "HTTP").upper() == "HTTP"


def _is_tls_listener(r: Any, ctx: Context) -> bool:
    return str(get(r, "protocol") or "").upper() in ("HTTPS", "TLS")


def check_alb_http_redirect(r: Any, ctx: Context) -> list[str]:
    """FSBP ELB.1: ALBs should redirect all HTTP requests to HTTPS.

    Dev may serve plain HTTP only with the explicit ``allowHttp: true`` (the plan warns about it).
    """
    if ctx.allow_http:
        return []
    actions = [a for a in as_list(get(r, "defaultActions")) if isinstance(a, Mapping)]
    if not actions:
        return [f"{r.name}: HTTP listener has no default action"]
    bad = [a.get("type") for a in actions
           if a.get("type") != "redirect"
           or str((a.get("redirect") or {}).get("protocol", "")).upper() != "HTTPS"]
    if bad:
        return [f"{r.name}: HTTP listener default action is {bad}, needs a redirect to HTTPS "
                f"(or allowHttp: true in dev)"]
    return []


# Modern ELB security policies: TLS 1.3 with TLS 1.2 (or 1.3 only), forward secrecy only.
# The Ext1/Ext2 variants re-admit CBC ciphers for old clients and are not accepted.
MODERN_TLS_POLICY = re.compile(r"^ELBSecurityPolicy-TLS13-1-[23]-(Res-)?(FIPS-|PQ-)?\d{4}-\d{2}$")


def check_alb_tls_policy(r: Any, ctx: Context) -> list[str]:
    """FSBP ELB.17: ALB/NLB listeners should use recommended security policies (TLS 1.3 family)."""
    problems = []
    policy = get(r, "sslPolicy")
    if not policy or not MODERN_TLS_POLICY.match(str(policy)):
        problems.append(f"{r.name}: sslPolicy {policy!r} is not a modern TLS 1.3 policy "
                        f"(e.g. ELBSecurityPolicy-TLS13-1-2-2021-06)")
    if not present(r, "certificateArn"):
        problems.append(f"{r.name}: TLS listener without certificateArn")
    return problems


def check_alb_drop_invalid_headers(r: Any, ctx: Context) -> list[str]:
    """FSBP ELB.4: Application Load Balancers should drop invalid HTTP headers."""
    if not truthy(get(r, "dropInvalidHeaderFields")):
        return [f"{r.name}: dropInvalidHeaderFields is not true"]
    return []


def check_alb_access_logs(r: Any, ctx: Context) -> list[str]:
    """FSBP ELB.5: Application and Classic Load Balancers logging should be enabled."""
    if not truthy(get(r, "accessLogs", "enabled")) or not present(r, "accessLogs", "bucket"):
        return [f"{r.name}: accessLogs not enabled with a bucket"]
    return []


def check_elb_deletion_protection(r: Any, ctx: Context) -> list[str]:
    """FSBP ELB.6: Application, Gateway and Network Load Balancers should have deletion protection (prod)."""
    if not truthy(get(r, "enableDeletionProtection")):
        return [f"{r.name}: enableDeletionProtection is not true in {ctx.environment}"]
    return []

@dataclass(frozen=True)
class Ingress:
    """One ingress permission, normalised from the three ways pulumi-aws can declare it."""

    declared_by: str
    from_port: Optional[int]
    to_port: Optional[int]
    protocol: str
    cidrs: tuple[str, ...]
    named_sources: tuple[str, ...]   # security groups, prefix lists, self


def _port(value: Any) -> Optional[int]:
    return as_int(value)


def ingress_of(r: Any) -> list[Ingress]:
    """Ingress permissions declared by a SecurityGroup (inline), SecurityGroupRule or IngressRule."""
    out: list[Ingress] = []
    if r.type in SECURITY_GROUPS:
        for rule in as_list(get(r, "ingress")):
            if not isinstance(rule, Mapping):
                continue
            named = [*as_list(rule.get("securityGroups")), *as_list(rule.get("prefixListIds"))]
            if truthy(rule.get("self")):
                named.append("self")
            out.append(Ingress(r.name, _port(rule.get("fromPort")), _port(rule.get("toPort")),
                               str(rule.get("protocol", "")),
                               tuple([*as_list(rule.get("cidrBlocks")), *as_list(rule.get("ipv6CidrBlocks"))]),
                               tuple(str(n) for n in named)))
    elif r.type in SG_RULES:
        if get(r, "type") == "ingress":
            named = [*as_list(get(r, "sourceSecurityGroupId")), *as_list(get(r, "prefixListIds"))]
            if truthy(get(r, "self")):
                named.append("self")
            out.append(Ingress(r.name, _port(get(r, "fromPort")), _port(get(r, "toPort")),
                               str(get(r, "protocol") or ""),
                               tuple([*as_list(get(r, "cidrBlocks")), *as_list(get(r, "ipv6CidrBlocks"))]),
                               tuple(str(n) for n in named)))
    elif r.type in SG_INGRESS_RULES:
        named = [*as_list(get(r, "referencedSecurityGroupId")), *as_list(get(r, "prefixListId"))]
        out.append(Ingress(r.name, _port(get(r, "fromPort")), _port(get(r, "toPort")),
                           str(get(r, "ipProtocol") or ""),
                           tuple([*as_list(get(r, "cidrIpv4")), *as_list(get(r, "cidrIpv6"))]),
                           tuple(str(n) for n in named)))
    return out


def _owning_groups(r: Any, ctx: Context) -> list[Any]:
    if r.type in SECURITY_GROUPS:
        return [r]
    return ctx.targets(r, "securityGroupId", SECURITY_GROUPS)


def _group_users(group: Any, ctx: Context) -> dict[str, list[Any]]:
    return {
        "alb": [lb for lb in ctx.referrers(group, LOAD_BALANCERS, "securityGroups") if _lb_type(lb) == "application"],
        "nlb": [lb for lb in ctx.referrers(group, LOAD_BALANCERS, "securityGroups") if _lb_type(lb) == "network"],
        "endpoint": ctx.referrers(group, VPC_ENDPOINTS, "securityGroupIds"),
    }


def _is_world(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def check_no_unrestricted_ingress(r: Any, ctx: Context) -> list[str]:
    """FSBP EC2.18/EC2.19 (AWSGuard ec2-security-group-no-public-ingress): no 0.0.0.0/0 or ::/0
    ingress, except on the internet-facing ALB's security group for TCP 80 and 443 exactly."""
    entries = ingress_of(r)
    world = [e for e in entries if any(_is_world(c) for c in e.cidrs)]
    if not world:
        return []
    groups = _owning_groups(r, ctx)
    if not groups:
        return [f"{r.name}: open-to-the-internet ingress on a security group not declared in this stack"]
    on_alb = any(_group_users(g, ctx)["alb"] for g in groups)
    problems = []
    for e in world:
        web_port = e.from_port == e.to_port and e.from_port in (80, 443)
        tcp = e.protocol.lower() in ("tcp", "6")
        if not (on_alb and web_port and tcp):
            problems.append(f"{r.name}: ingress {e.protocol}/{e.from_port}-{e.to_port} from "
                            f"{[c for c in e.cidrs if _is_world(c)]} (only the ALB on 80/443 may face the internet)")
    return problems


def check_ingress_named_source(r: Any, ctx: Context) -> list[str]:
    """docs/architecture.md floor: security groups name their source (ALB → service, service → DB 5432).

    CIDR sources are allowed only where no security group can name the caller: a load balancer's
    own group (clients are outside the VPC) and an interface endpoint's group (private CIDRs).
    Everything else must reference a security group, a prefix list or itself.
    """
    entries = [e for e in ingress_of(r) if e.cidrs]
    if not entries:
        return []
    groups = _owning_groups(r, ctx)
    users = {k: v for g in groups for k, v in _group_users(g, ctx).items() if v}
    if users.get("alb") or users.get("nlb"):
        return []
    problems = []
    for e in entries:
        if users.get("endpoint") and all(ipaddress.ip_network(c, strict=False).is_private for c in e.cidrs):
            continue
        problems.append(f"{r.name}: ingress {e.protocol}/{e.from_port}-{e.to_port} from CIDR "
                        f"{list(e.cidrs)}; reference the caller's security group instead")
    return problems

def check_vpc_flow_logs(vpc: Any, ctx: Context) -> list[str]:
    """FSBP EC2.6: VPC flow logging should be enabled in all VPCs."""
    if ctx.referrers(vpc, FLOW_LOGS, "vpcId"):
        return []
    return [f"{vpc.name}: no FlowLog refers to this VPC"]


RULES: tuple[Rule, ...] = (
    Rule("alb-http-to-https-redirection", "ALB HTTP listeners only redirect to HTTPS (unless allowHttp)",
         LISTENERS, check_alb_http_redirect, "FSBP ELB.1", selects=_is_http_listener),
    Rule("alb-https-tls-policy", "TLS listeners use a modern TLS 1.3 policy and a certificate",
         LISTENERS, check_alb_tls_policy, "FSBP ELB.17", selects=_is_tls_listener),
    Rule("alb-drop-invalid-headers", "ALB drops invalid HTTP headers",
         LOAD_BALANCERS, check_alb_drop_invalid_headers, "FSBP ELB.4", severity="medium", selects=_is_alb),
    Rule("alb-access-logs-enabled", "ALB access logs enabled",
         LOAD_BALANCERS, check_alb_access_logs, "FSBP ELB.5", severity="medium", selects=_is_alb),
    Rule("elb-deletion-protection", "Load balancer deletion protection on in prod",
         LOAD_BALANCERS, check_elb_deletion_protection, "FSBP ELB.6", severity="low", applies=prod_only),
    Rule("no-unrestricted-ingress", "No 0.0.0.0/0 or ::/0 ingress except the ALB on 80/443",
         SECURITY_GROUPS + SG_RULES + SG_INGRESS_RULES, check_no_unrestricted_ingress,
         "FSBP EC2.18 / EC2.19", scope="stack", severity="critical"),
    Rule("security-group-ingress-named-source", "Ingress names the source security group",
         SECURITY_GROUPS + SG_RULES + SG_INGRESS_RULES, check_ingress_named_source,
         "docs/architecture.md security posture", scope="stack"),
    Rule("vpc-flow-logs-enabled", "Every VPC has flow logs",
         VPCS, check_vpc_flow_logs, "FSBP EC2.6", scope="stack", severity="medium"),
)
