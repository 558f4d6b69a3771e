"""ALB listener rules and Cognito (the portal's sign-in).

Rules read resources through :mod:`components.checks.graph`; :data:`RULES` lists this module's.
"""

from __future__ import annotations

from typing import Any, Mapping

from components.checks.graph import (
    Context, LISTENERS, LISTENER_RULES, Rule, USER_POOLS, as_int,
    as_list, get, prod_only, truthy,
)


AUTHENTICATE_ACTIONS = ("authenticate-cognito", "authenticate-oidc")


def _action_order(action: Mapping[str, Any], position: int) -> float:
    order = action.get("order")
    return float(order) if isinstance(order, (int, float)) and not isinstance(order, bool) else 1e6 + position


def _is_portal_rule(r: Any, ctx: Context) -> bool:
    for condition in as_list(get(r, "conditions")):
        values = (condition.get("pathPattern") or {}).get("values") if isinstance(condition, Mapping) else None
        if any(str(v).startswith("/portal") for v in as_list(values)):
            return True
    return any(isinstance(a, Mapping) and a.get("type") in AUTHENTICATE_ACTIONS for a in as_list(get(r, "actions")))


def check_listener_rule_authenticates(r: Any, ctx: Context) -> list[str]:
    """docs/architecture.md floor (portal behind ALB sign-in): a rule for ``/portal`` paths (or any rule with an
    authenticate action) authenticates before it forwards, refuses unauthenticated requests, and sits
    on an HTTPS listener (the only kind where AWS runs authenticate actions)."""
    actions = [(i, a) for i, a in enumerate(as_list(get(r, "actions"))) if isinstance(a, Mapping)]
    ordered = sorted(actions, key=lambda pa: _action_order(pa[1], pa[0]))
    types = [a.get("type") for _, a in ordered]
    problems = []
    auth = [a for _, a in ordered if a.get("type") in AUTHENTICATE_ACTIONS]
    if not auth:
        problems.append(f"{r.name}: no authenticate-cognito/oidc action before forwarding {types}")
    else:
        first_auth = types.index(auth[0].get("type"))
        forwards = [i for i, t in enumerate(types) if t == "forward"]
        if forwards and forwards[0] < first_auth:
            problems.append(f"{r.name}: actions run {types}; authenticate must come before forward")
        for action in auth:
            config = action.get("authenticateCognito") or action.get("authenticateOidc") or {}
            if isinstance(config, Mapping) and config.get("onUnauthenticatedRequest") == "allow":
                problems.append(f"{r.name}: onUnauthenticatedRequest is allow (anonymous requests pass)")
    for listener in ctx.targets(r, "listenerArn", LISTENERS):
        if str(get(listener, "protocol") or "").upper() != "HTTPS":
            problems.append(f"{r.name}: on {listener.name} ({get(listener, 'protocol')}); authenticate actions "
                            f"need an HTTPS listener")
    return problems


COGNITO_MIN_PASSWORD_LENGTH = 12


def check_cognito_password_policy(r: Any, ctx: Context) -> list[str]:
    """FSBP-style identity floor (CIS/NIST 800-63B lengths): at least 12 characters, all four
    character classes, temporary passwords valid at most 7 days."""
    policy = get(r, "passwordPolicy") or {}
    if not isinstance(policy, Mapping):
        return [f"{r.name}: no passwordPolicy"]
    problems = []
    length = as_int(policy.get("minimumLength"))
    if length is None or length < COGNITO_MIN_PASSWORD_LENGTH:
        problems.append(f"{r.name}: minimumLength {length!r} is below {COGNITO_MIN_PASSWORD_LENGTH}")
    missing = [k for k in ("requireLowercase", "requireUppercase", "requireNumbers", "requireSymbols")
               if not truthy(policy.get(k))]
    if missing:
        problems.append(f"{r.name}: password policy does not set {', '.join(missing)}")
    days = as_int(policy.get("temporaryPasswordValidityDays"))
    if days is None or days > 7:
        problems.append(f"{r.name}: temporaryPasswordValidityDays {days!r} exceeds 7")
    return problems


def check_cognito_admin_only_sign_up(r: Any, ctx: Context) -> list[str]:
    """docs/architecture.md floor: annotators are invited, never self-registered (AllowAdminCreateUserOnly)."""
    if not truthy(get(r, "adminCreateUserConfig", "allowAdminCreateUserOnly")):
        return [f"{r.name}: adminCreateUserConfig.allowAdminCreateUserOnly is not true (anyone could sign up)"]
    return []


def check_cognito_mfa_prod(r: Any, ctx: Context) -> list[str]:
    """FSBP/CIS identity floor: multi-factor authentication required in prod (TOTP enabled)."""
    problems = []
    if get(r, "mfaConfiguration") != "ON":
        problems.append(f"{r.name}: mfaConfiguration is {get(r, 'mfaConfiguration')!r}, needs ON in prod")
    if not truthy(get(r, "softwareTokenMfaConfiguration", "enabled")):
        problems.append(f"{r.name}: software-token (TOTP) MFA is not enabled")
    return problems


def check_cognito_threat_protection(r: Any, ctx: Context) -> list[str]:
    """FSBP Cognito.1: user pools should have threat protection in full-function enforcement mode."""
    if get(r, "userPoolAddOns", "advancedSecurityMode") != "ENFORCED":
        return [f"{r.name}: userPoolAddOns.advancedSecurityMode is "
                f"{get(r, 'userPoolAddOns', 'advancedSecurityMode')!r}, needs ENFORCED"]
    return []


RULES: tuple[Rule, ...] = (
    Rule("alb-listener-rule-authenticates", "Portal listener rules authenticate (Cognito/OIDC) before forwarding",
         LISTENER_RULES, check_listener_rule_authenticates, "docs/architecture.md security posture", scope="stack",
         severity="critical", selects=_is_portal_rule),
    Rule("cognito-password-policy", "Cognito passwords: 12+ characters, four classes, short-lived temporaries",
         USER_POOLS, check_cognito_password_policy, "CIS / NIST SP 800-63B password floor"),
    Rule("cognito-admin-only-sign-up", "Cognito users are created by an admin only (no self sign-up)",
         USER_POOLS, check_cognito_admin_only_sign_up, "docs/architecture.md security posture", severity="critical"),
    Rule("cognito-mfa-required", "Cognito requires MFA (TOTP) in prod",
         USER_POOLS, check_cognito_mfa_prod, "CIS identity floor (MFA)", applies=prod_only),
    Rule("cognito-threat-protection", "Cognito threat protection in enforced mode",
         USER_POOLS, check_cognito_threat_protection, "FSBP Cognito.1", severity="medium"),
)
