"""The offline plan (components/checks/plan.py): policy results, cost total, price table coverage."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest

from components.checks import costs
from components.checks.offline import Recording, RecordedResource
from tests.unit.programs import dev_https_values, program
from components.checks.plan import build_plan, main, stack_config

STACKS = ("dev", "prod")


@pytest.fixture(scope="module")
def plans(recordings):
    return {stack: build_plan(recordings[stack], stack_config(stack)) for stack in STACKS}


@pytest.mark.parametrize("stack", STACKS)
def test_at_least_25_rules_pass_and_none_fail(plans, stack):
    plan = plans[stack]
    tally = plan.policy_counts
    failed = {r.rule_id: r.violations for r in plan.policy if r.status == "fail"}
    assert failed == {}, failed
    assert tally["pass"] >= 25, tally
    assert plan.exit_code == 0


@pytest.mark.parametrize("stack", STACKS)
def test_cost_total_is_positive_and_every_resource_is_priced_or_free(plans, stack):
    estimate = plans[stack].cost
    assert estimate.total > 0
    assert estimate.unpriced == [], "add these types to components/checks/prices.yaml (priced or free)"
    assert all(line.monthly >= 0 for line in estimate.lines)


def test_dev_fits_the_budget(plans):
    estimate = plans["dev"].cost
    top = [(line.resource, line.monthly) for line in estimate.dominant()]
    assert estimate.budget == 120
    assert estimate.total <= estimate.budget, f"dev ${estimate.total} > ${estimate.budget}; dominant: {top}"


def test_dev_with_the_portal_fits_its_own_budget(plans):
    """A dev stack with a certificate runs the portal at its smallest size; the table's dev-portal goal."""
    from components.config import StackConfig

    values = dev_https_values()
    config = StackConfig.from_mapping(values, stack="dev")
    plan = build_plan(program("dev", config=values), config)
    estimate = plan.cost
    assert estimate.budget == costs.load_prices()["monthly_budget_usd"]["dev-portal"]
    portal = {line.resource: line for line in estimate.lines if line.resource.startswith("da-dev-portal")}
    assert "0.25 vCPU/0.5 GB" in portal["da-dev-portal-service"].basis
    assert plans["dev"].cost.total < estimate.total <= estimate.budget, estimate.total
    assert plan.policy_counts["fail"] == 0


def test_prod_costs_more_than_dev(plans):
    assert plans["prod"].cost.total > plans["dev"].cost.total


def test_price_table_is_dated_and_every_model_exists():
    data = costs.load_prices()
    as_of = data["as_of"]
    assert isinstance(as_of, dt.date) or dt.date.fromisoformat(str(as_of))
    assert "verify" in data["status"]
    assert data["prices"]["hours_per_month"] == 730
    assert set(data["priced"].values()) <= set(costs.MODELS), "a priced type names an unknown model"
    assert not set(data["priced"]) & set(data["free"]), "a type is both priced and free"
    for kind in STACKS:
        assert set(data["assumptions"][kind]) == set(data["assumptions"]["dev"]), kind


@pytest.mark.parametrize("stack", STACKS)
def test_every_recorded_type_is_priced_or_explicitly_free(recordings, stack):
    data = costs.load_prices()
    known = set(data["priced"]) | set(data["free"])
    types = {r.type for r in recordings[stack].resources if costs.is_billable_candidate(r.type)}
    assert types - known == set()


def test_a_new_resource_type_is_reported_unpriced_not_free(recordings):
    recording = copy.deepcopy(recordings["dev"])
    recording.resources.append(RecordedResource("aws:ec2/instance:Instance", "surprise", {"instanceType": "m7i.large"}))
    estimate = costs.estimate(recording, stack_config("dev"))
    assert estimate.unpriced == ["aws:ec2/instance:Instance surprise"]


def test_a_policy_failure_makes_the_plan_exit_nonzero(recordings):
    recording: Recording = copy.deepcopy(recordings["prod"])
    db = next(r for r in recording.resources if r.type == "aws:rds/instance:Instance")
    db.inputs["publiclyAccessible"] = True
    plan = build_plan(recording, stack_config("prod"))
    assert plan.exit_code == 1
    failed = [r for r in plan.policy if r.status == "fail"]
    assert [r.rule_id for r in failed] == ["rds-instance-public-access-check"]


def test_multi_az_database_costs_twice_the_instance_hours(recordings):
    recording = copy.deepcopy(recordings["dev"])
    db = next(r for r in recording.resources if r.type == "aws:rds/instance:Instance")
    single = costs.estimate(recording, stack_config("dev"))
    db.inputs["multiAz"] = True
    multi = costs.estimate(recording, stack_config("dev"))
    cost = {line.resource: line.monthly for line in single.lines}[db.name]
    cost_multi = {line.resource: line.monthly for line in multi.lines}[db.name]
    assert cost_multi > 1.9 * (cost - 0.40)  # the managed secret does not double


def test_json_output(capsys):
    code = main(["--stack", "dev", "--json"])
    document = json.loads(capsys.readouterr().out)
    assert document["stack"] == "dev"
    assert code == (1 if document["policy"]["counts"]["fail"] else 0)
    assert document["cost"]["total"] > 0 and document["cost"]["as_of"]
    assert any("allowHttp" in w for w in document["warnings"])
    assert {row["type"] for row in document["resources"]} >= {"aws:rds/instance:Instance", "aws:ecs/service:Service"}


def test_unknown_stack_is_a_clear_error(capsys):
    assert main(["--stack", "nope"]) == 2
    assert "Pulumi.nope.yaml" in capsys.readouterr().err
