"""The self-hosted labeling portal: the default labeling backend (docs/architecture.md, "Data flow").

Modules, one idea each:

* :mod:`.settings`  — typed settings from the ``PORTAL_*`` environment (same names locally and on ECS)
* :mod:`.models`    — SQLAlchemy 2 tables; :mod:`.db` engines, sessions and ``migrate`` (Alembic)
* :mod:`.security`  — argon2 passwords, signed session cookies, CSRF tokens, login rate limit
* :mod:`.oidc`      — verification of the ALB's ``x-amzn-oidc-data`` and Cognito access tokens
* :mod:`.jobs`      — jobs, assignment with leases, answers, consolidation, review, progress
* :mod:`.images`    — Orthanc fetch → de-identification → disk cache
* :mod:`.export`    — GT-format output manifest and DICOM SR write-back
* :mod:`.app`       — the FastAPI application (``create_app(settings)``), pages and JSON API
* :mod:`.cli`       — ``python -m labeling portal serve|migrate|user|job|export|sr``
* :mod:`.local`     — start/stop a portal next to the local stack (``make demo``)
"""
