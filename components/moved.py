"""Aliases for resources a refactoring moved to another parent, so ``pulumi up`` keeps them.

A resource's URN includes its parents' types: moving it under another component changes its URN,
and Pulumi would replace it (a new database, a new load balancer) unless it carries an alias to the
old URN - ``Alias(parent=<old parent>)`` for a re-parented resource
(https://www.pulumi.com/docs/iac/operations/stack-management/refactoring-with-aliases/,
https://www.pulumi.com/docs/iac/concepts/options/aliases/). Children of an aliased resource inherit
the alias. ``tools/mock_recording.py compare`` and tests/unit/test_moved_resources.py check that
every moved resource of dev and prod is reached by one. The aliases can go once every deployed
stack has run ``pulumi up`` with them (the state then holds the new URNs).
"""

from __future__ import annotations

import pulumi


def top_level_urn(type_token: str, name: str) -> str:
    """The URN of a component declared at the top of the program (parent: the stack).

    A plain string, not an Output: an Alias's ``parent`` must be a resource or a resolved URN.
    """
    return f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{type_token}::{name}"


def moved_from(parent_urn: str | None) -> list[pulumi.Alias] | None:
    """``aliases`` for a child whose parent used to be ``parent_urn`` (None: nothing moved)."""
    return [pulumi.Alias(parent=parent_urn)] if parent_urn else None
