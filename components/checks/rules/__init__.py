"""The policy rules, grouped by service (one module each), and how they run.

Each module's ``RULES`` names its rules; :data:`RULES` is all of them, in the order the plan
prints them. The functions here run rules over a :class:`~components.checks.graph.Context`.
"""

from __future__ import annotations

from typing import Any, Sequence

from components.checks.graph import Context, Rule, RuleResult, UnknownValue, context_for_recording
from components.checks.rules import rds, s3, network, ecs, encryption, iam, lambda_, sagemaker, cloudfront, cognito


RULES: tuple[Rule, ...] = (
    *rds.RULES,
    *s3.RULES,
    *network.RULES,
    *ecs.RULES,
    *encryption.RULES,
    *iam.RULES,
    *lambda_.RULES,
    *sagemaker.RULES,
    *cloudfront.RULES,
    *cognito.RULES,
)
RULES_BY_ID: dict[str, Rule] = {rule.id: rule for rule in RULES}
assert len(RULES_BY_ID) == len(RULES), "duplicate rule id"


def subjects(rule: Rule, ctx: Context) -> list[Any]:
    """The resources ``rule`` judges in this context (empty: not applicable)."""
    if not rule.applies(ctx):
        return []
    return [r for r in ctx.resources if r.type in rule.resource_types and rule.selects(r, ctx)]


def run_rule(rule: Rule, resource: Any, ctx: Context) -> list[str]:
    """Violations of ``rule`` by ``resource``; an unknown (preview) value is reported as one."""
    try:
        return list(rule.check(resource, ctx))
    except UnknownValue as exc:
        return [f"cannot evaluate: {exc}"]


def evaluate_context(ctx: Context, rules: Sequence[Rule] = RULES) -> list[RuleResult]:
    results = []
    for rule in rules:
        judged = subjects(rule, ctx)
        violations = [v for r in judged for v in run_rule(rule, r, ctx)]
        status = "n/a" if not judged else ("fail" if violations else "pass")
        results.append(RuleResult(rule.id, status, tuple(violations), len(judged),
                                  rule.description, rule.control))
    return results


def evaluate(recording: Any, config: Any = None, rules: Sequence[Rule] = RULES) -> list[RuleResult]:
    """Run every rule over a recorded stack; each result is pass, fail or n/a."""
    return evaluate_context(context_for_recording(recording, config), rules)


def counts(results: Sequence[RuleResult]) -> dict[str, int]:
    tally = {"pass": 0, "fail": 0, "n/a": 0}
    for result in results:
        tally[result.status] += 1
    return tally
