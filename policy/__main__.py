"""dicom-annotate CrossGuard policy pack: ``pulumi preview --policy-pack policy``.

No rule logic lives here. Each rule of :mod:`components.checks.rules` becomes one policy with the
rule's id as its name:

* ``resource``-scope rules → a ``ResourceValidationPolicy`` that converts ``args.props`` into the
  ``.type`` / ``.name`` / ``.inputs`` shape the rules read;
* ``stack``-scope rules (relations such as "this bucket has an SSE configuration") → a
  ``StackValidationPolicy`` that converts every resource and links them by Pulumi's property
  dependencies (ids are unknown during a preview) and by matching ids/ARNs once known.

Stack settings (environment, ``allowHttp``) come from the stack's own configuration, which the
Pulumi engine hands to policy packs; if it cannot be read the pack assumes the strictest settings
(prod, no plain HTTP). Building the policies needs no engine (:func:`build_policies`); only
:func:`main` starts the analyzer server, and only when Pulumi runs this file as ``__main__``.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the pack shares components/checks/rules/ with the program

from pulumi_policy import (  # noqa: E402
    EnforcementLevel, Policy, PolicyPack, ReportViolation, ResourceValidationArgs,
    ResourceValidationPolicy, Secret, Severity, StackValidationArgs, StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError  # noqa: E402

from components.checks import graph, rules  # noqa: E402

PACK_NAME = "dicom-annotate-security"

SEVERITIES = {"low": Severity.LOW, "medium": Severity.MEDIUM, "high": Severity.HIGH,
              "critical": Severity.CRITICAL}


@dataclass
class PackResource:
    """A resource as the rules read it, converted from CrossGuard's props."""

    type: str
    name: str
    inputs: dict[str, Any]
    urn: str = ""
    deps: dict[str, list[Any]] = field(default_factory=dict)


def plain(value: Any) -> Any:
    """CrossGuard props (unknown-checking proxies, secrets, assets) → plain values.

    A value unknown during preview becomes :data:`components.checks.graph.UNKNOWN`; the rules
    treat it as present for presence checks and as undecidable otherwise.
    """
    if isinstance(value, Secret):
        return plain(value.value)
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in value:
            try:
                item = value[key]
            except UnknownValueError:
                item = graph.UNKNOWN
            out[str(key)] = plain(item)
        return out
    if isinstance(value, Sequence):
        items = []
        for i in range(len(value)):
            try:
                item = value[i]
            except UnknownValueError:
                item = graph.UNKNOWN
            items.append(plain(item))
        return items
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return f"<{type(value).__name__}>"  # assets and archives: rules never read their content


def resource_from_props(resource_type: str, name: str, props: Any, urn: str = "") -> PackResource:
    """The adapter: one CrossGuard resource → what :mod:`components.checks.rules` reads."""
    return PackResource(resource_type, name, plain(props), urn)


@dataclass(frozen=True)
class StackSettings:
    environment: str
    allow_http: bool
    stack: str


@functools.lru_cache(maxsize=1)
def stack_settings() -> StackSettings:
    """Environment and allowHttp from the stack's validated config; strictest if unreadable.

    Cached: one analyzer process serves one stack, and every policy call asks.
    """
    stack = os.environ.get("PULUMI_STACK", "")
    try:
        from components.config import load_stack_config

        config = load_stack_config()
        return StackSettings(config.environment, bool(config.allow_http), stack)
    except Exception:  # noqa: BLE001 - no engine, or config the program itself would reject
        return StackSettings("prod", False, stack)


def _context(resources: Sequence[PackResource], settings: StackSettings,
             dependencies: Optional[Mapping[int, Mapping[str, list[int]]]] = None) -> graph.Context:
    return graph.build_context(resources, environment=settings.environment, allow_http=settings.allow_http,
                               stack=settings.stack, identifiers=graph.identifiers_from_props,
                               dependencies=dependencies)


def _violations(rule: graph.Rule, resource: PackResource, ctx: graph.Context) -> list[str]:
    try:
        return list(rule.check(resource, ctx))
    except graph.UnknownValue as exc:
        # CrossGuard reports this as "can't run policy … during preview" (advisory), not a pass.
        raise UnknownValueError(UNKNOWN_STRING_VALUE, [exc.resource, exc.path]) from None


def resource_policy(rule: graph.Rule, settings: Callable[[], StackSettings] = stack_settings
                    ) -> ResourceValidationPolicy:
    """A resource-scope rule as a CrossGuard resource validation."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in rule.resource_types:
            return
        resource = resource_from_props(args.resource_type, args.name, args.props, args.urn)
        ctx = _context([resource], settings())
        if not rule.applies(ctx) or not rule.selects(resource, ctx):
            return
        for message in _violations(rule, resource, ctx):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=rule.id, description=f"{rule.description} ({rule.control})", validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY, severity=SEVERITIES[rule.severity])


def stack_resources(policy_resources: Sequence[Any]) -> tuple[list[PackResource], dict[int, dict[str, list[int]]]]:
    """All stack resources converted, plus property dependencies as positions."""
    converted = [resource_from_props(r.resource_type, r.name, r.props, r.urn) for r in policy_resources]
    position = {id(r): i for i, r in enumerate(policy_resources)}
    dependencies: dict[int, dict[str, list[int]]] = {}
    for i, r in enumerate(policy_resources):
        for key, deps in (getattr(r, "property_dependencies", None) or {}).items():
            targets = [position[id(d)] for d in deps if id(d) in position]
            if targets:
                dependencies.setdefault(i, {})[key] = targets
    return converted, dependencies


def stack_policy(rule: graph.Rule, settings: Callable[[], StackSettings] = stack_settings
                 ) -> StackValidationPolicy:
    """A stack-scope (relation) rule as a CrossGuard stack validation."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources, dependencies = stack_resources(args.resources)
        ctx = _context(resources, settings(), dependencies)
        for resource in rules.subjects(rule, ctx):
            for message in _violations(rule, resource, ctx):
                report_violation(message, resource.urn or None)

    return StackValidationPolicy(
        name=rule.id, description=f"{rule.description} ({rule.control})", validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY, severity=SEVERITIES[rule.severity])


def build_policies(settings: Callable[[], StackSettings] = stack_settings) -> list[Policy]:
    """One policy per rule, named by the rule id; no Pulumi engine needed."""
    return [stack_policy(rule, settings) if rule.scope == "stack" else resource_policy(rule, settings)
            for rule in rules.RULES]


def main() -> None:
    """Start the analyzer (blocks; Pulumi's policy host talks to it over gRPC)."""
    PolicyPack(name=PACK_NAME, policies=build_policies(), enforcement_level=EnforcementLevel.MANDATORY,
               description="dicom-annotate security floor: encryption, private networking, TLS, "
                           "least-privilege IAM, secrets only in Secrets Manager")


if __name__ == "__main__":
    main()
