"""The portal's page templates rendered alone (no server): what a first visit shows."""

from __future__ import annotations

from types import SimpleNamespace

from jinja2 import Environment, FileSystemLoader, select_autoescape

import labeling.portal.core as core


def _render(name: str, **context: object) -> str:
    env = Environment(loader=FileSystemLoader(core.HERE / "templates"), autoescape=select_autoescape(default=True))
    return env.get_template(name).render(root="/p", csrf="", local_auth=True, **context)


def test_an_empty_dashboard_shows_the_admin_where_to_start():
    """Task C trial: a fresh portal said only "No jobs yet." to the admin who has to make the first one."""
    admin = _render("dashboard.html", user=SimpleNamespace(name="admin", role="admin"), rows=[], queue=0)
    assert 'No jobs yet: <a href="/p/admin/jobs/new">create one</a>' in admin
    assert '<a href="/p/admin/users">Users</a>' in admin
    annotator = _render("dashboard.html", user=SimpleNamespace(name="ann", role="annotator"), rows=[], queue=0)
    assert "No jobs yet." in annotator and "create one" not in annotator
