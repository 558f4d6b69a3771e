"""Checks over what the Pulumi program declares, with no AWS account and no Pulumi CLI.

- :mod:`~components.checks.offline`: runs ``__main__.py`` under ``pulumi.runtime.set_mocks`` and
  records every resource (type, name, inputs, parent, aliases);
- :mod:`~components.checks.graph`: the shapes the checks read and the links between resources;
- :mod:`~components.checks.rules`: the policy rules, one module per service (the tests, the plan
  and the CrossGuard pack in ``policy/`` run the same functions);
- :mod:`~components.checks.costs`: the monthly cost model over ``prices.yaml``;
- :mod:`~components.checks.plan`: the offline plan (``make plan STACK=dev``).

The program itself imports nothing from here (the deploy-time tag the cost model prices is
``components.names.DEPLOY_TIME_TAG``).
"""
