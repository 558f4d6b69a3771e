"""``python -m labeling portal up|down|serve|migrate|user add|job create|job status|job close|export|sr``.

``portal up [--workdir DIR]`` is the one command to a running local portal (stack, ``portal.env``,
migration, first admin, server on loopback); ``portal down`` stops it. Every other command reads the portal settings from the environment (``PORTAL_*``, ``ORTHANC_*``; see
:mod:`labeling.portal.settings`). Next to the local stack, ``source <stack workdir>/portal.env``
(written by :func:`labeling.portal.local.write_portal_env`) sets them. Passwords come from a file
(``--password-file``) or an interactive prompt, never from the command line.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

from labeling.cli import BadInput, CommandError, Unavailable, positive_int
from labeling.portal import names as N


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "portal", help="the labeling portal: serve, migrate, users, jobs, export, SR",
        description="The self-hosted labeling portal (the default labeling backend). Settings come from "
                    "PORTAL_* and ORTHANC_* environment variables.")
    sub = parser.add_subparsers(dest="portal_command", metavar="COMMAND", required=True)
    _add_up_down(sub)
    _add_serve_migrate(sub)
    _add_users(sub)
    _add_jobs(sub)
    _add_stop(sub)


def _add_up_down(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="one command to a running local portal (stack, settings, admin, server)",
                        description="Reuse or start the local stack in WORKDIR, write WORKDIR/portal.env (0600), "
                                    "migrate the database, create the first admin (a generated password is shown "
                                    "once, or --admin-password-file) and serve on 127.0.0.1; prints the URL. "
                                    "A portal already running there is reused. `portal down` stops it.")
    _workdir(up)
    up.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: 8000, else a free one)")
    up.add_argument("--admin", default="admin", help="the first admin's user name (default: admin)")
    up.add_argument("--admin-password-file", type=Path,
                    help="file holding the first admin's password (default: generate one and show it once)")
    up.add_argument("--timeout", type=positive_int, default=60, help="seconds to wait for each service (default 60)")
    up.set_defaults(func=_up)

    down = sub.add_parser("down", help="stop the local portal and its local stack",
                          description="Stop the portal `portal up` started in WORKDIR (only its recorded pid) "
                                      "and the local stack there, unless --keep-stack; --purge also "
                                      "deletes what `portal up` made there.")
    _workdir(down)
    kept = down.add_mutually_exclusive_group()
    kept.add_argument("--keep-stack", action="store_true", help="leave Orthanc and PostgreSQL running")
    kept.add_argument("--purge", action="store_true",
                      help="also delete the stack's data (as `local down --purge`) and the portal's settings, "
                           "secrets, log and image cache in WORKDIR")
    down.set_defaults(func=_down)


def _add_serve_migrate(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the web service (uvicorn)",
                           description="Serve the portal on PORTAL_HOST:PORTAL_PORT (default 127.0.0.1:8000).")
    serve.add_argument("--host", help="bind address (default: $PORTAL_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: $PORTAL_PORT or 8000)")
    serve.add_argument("--workers", type=positive_int, default=int(os.environ.get(N.WORKERS, "1") or 1),
                       help="uvicorn worker processes (default: $PORTAL_WORKERS or 1)")
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser("migrate", help="create/upgrade the database schema (Alembic)",
                             description="Upgrade the portal database to the newest schema; with "
                                         "PORTAL_DB_CREATE=true create the database first when missing.")
    migrate.set_defaults(func=_migrate)


def _add_users(sub: argparse._SubParsersAction) -> None:
    user = sub.add_parser("user", help="manage local users").add_subparsers(
        dest="user_command", metavar="COMMAND", required=True)
    add = user.add_parser("add", help="add a user (argon2 password hash)",
                          description="Add a user. The password is read from --password-file or prompted.")
    add.add_argument("name", help="the login name: letters, digits and . _ @ + - (at most 128 characters)")
    add.add_argument("--role", required=True, choices=("admin", "annotator", "reviewer"),
                     help="what the user may do: admin (jobs, users, export), annotator (label), reviewer (resolve)")
    add.add_argument("--password-file", type=Path, help="file holding the password (else prompted)")
    add.set_defaults(func=_user_add)


def _add_jobs(sub: argparse._SubParsersAction) -> None:
    """``job create|status|close``, ``export`` and ``sr``: a job's life after the portal is up."""
    job = sub.add_parser("job", help="create and follow labeling jobs").add_subparsers(
        dest="job_command", metavar="COMMAND", required=True)
    create = job.add_parser("create", help="create a job from a manifest and a label schema",
                            description="Create a job: one item per manifest line (labeling/manifest/build.py "
                                        "format), labels from the schema (labeling/contracts/schema.py format). Every "
                                        "instance is checked in Orthanc and its geometry recorded; a manifest "
                                        "naming instances Orthanc lacks is refused, listing the first IDs.")
    create.add_argument("--name", required=True, help="job name (letters, digits, '-'; at most 63)")
    create.add_argument("--manifest", type=Path, required=True, help="manifest (JSON Lines)")
    create.add_argument("--schema", type=Path, required=True, help="label schema (YAML or JSON)")
    create.add_argument("--annotators-per-item", "-k", type=positive_int,
                        help="K answers per item (default: the schema's annotators_per_item)")
    create.add_argument("--lease-seconds", type=positive_int, help="item lease (default: $PORTAL_LEASE_SECONDS or 900)")
    create.add_argument("--agreement-threshold", type=float,
                        help="items below go to review (default: $PORTAL_AGREEMENT_THRESHOLD or 0.6)")
    create.add_argument("--label-attribute", help="output label attribute (default: the job name)")
    create.set_defaults(func=_job_create)
    status = job.add_parser("status", help="progress and agreement of a job")
    status.add_argument("job", help="job name or id")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=_job_status)
    close = job.add_parser("close", help="close a job and consolidate what is answered")
    close.add_argument("job", help="job name or id")
    close.set_defaults(func=_job_close)

    export = sub.add_parser("export", help="write the output manifest (GT format) locally or to S3",
                            description="Write the job's output manifest: input line + <attr> + "
                                        "<attr>-metadata per finished item.")
    export.add_argument("job", help="job name or id")
    export.add_argument("--out", required=True, help="local path or s3://bucket/key")
    export.add_argument("--include-review", action="store_true",
                        help="also write items still waiting for review (their consolidated label)")
    export.add_argument("--kms-key-id", help="KMS key for s3:// (default: $PORTAL_EXPORT_KMS_KEY_ID or the "
                                             "bucket's default key)")
    export.set_defaults(func=_export)

    sr = sub.add_parser("sr", help="store a DICOM SR (TID 1500) per finished item into Orthanc")
    sr.add_argument("job", help="job name or id")
    sr.set_defaults(func=_sr)


def _add_stop(sub: argparse._SubParsersAction) -> None:
    stop = sub.add_parser("stop", help="stop the local portal that `make demo` left running",
                          description="Stop the portal started beside the local stack in WORKDIR (its recorded "
                                      "pid, only while it is still that portal). `make demo-down` runs this.")
    _workdir(stop)
    stop.set_defaults(func=_stop)


# ----------------------------------------------------------------------------------- helpers

def _workdir(parser: argparse.ArgumentParser) -> None:
    from labeling.orthanc.local_stack import DEFAULT_WORKDIR, REPO_ROOT

    # the same default as `local` and `demo` (the repository's), whatever the current directory
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"the local stack's work directory (default: {DEFAULT_WORKDIR.relative_to(REPO_ROOT)} "
                             "in the repository, shared with `make demo`)")


PORTAL_DB_HINT = ("is the portal's database up? python -m labeling portal up (or local up), "
                  "then source WORKDIR/portal.env")


def _settings():
    from labeling.portal.settings import PortalSettings

    return PortalSettings.from_env()


def _factory(settings: Any):
    from labeling.portal.db import make_engine, session_factory

    engine = make_engine(settings, pool_size=2, max_overflow=0)
    return engine, session_factory(engine)


def _find_job(session: Any, ref: str):
    from sqlalchemy import select

    from labeling.portal.jobs import NotFound
    from labeling.portal.models import Job

    job = session.scalars(select(Job).where(Job.name == ref)).first()
    if job is None and ref.isdigit():
        job = session.get(Job, int(ref))
    if job is None:
        raise NotFound(f"job {ref!r}: no such job")
    return job


def _run(func) -> int:
    """Run ``func``; the portal's own errors become the CLI's error classes, reported as one line by
    ``run_command`` (exit 2 bad input, 3 database unreachable, 1 otherwise)."""
    from labeling.portal.db import DatabaseError
    from labeling.portal.jobs import Invalid, PortalError
    from labeling.portal.settings import SettingsError

    try:
        return func()
    except (SettingsError, Invalid) as exc:
        raise BadInput(str(exc)) from None
    except (PortalError, DatabaseError) as exc:
        raise CommandError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a driver error (database unreachable) as one line
        from sqlalchemy.exc import OperationalError

        if isinstance(exc, OperationalError):
            raise Unavailable(f"database unreachable: {' '.join(str(exc.orig).split())[:300]}",
                              PORTAL_DB_HINT) from None
        raise


# ---------------------------------------------------------------------------------- commands

def _serve(args: argparse.Namespace) -> int:
    def run() -> int:
        import uvicorn

        from labeling.portal.accesslog import AccessLog
        from labeling.portal.app import create_app

        settings = _settings()
        host = args.host or settings.host
        port = settings.port if args.port is None else args.port
        settings = settings.with_(host=host, port=port)  # re-validates the Secure-cookie rule
        # Keep-alive longer than the ALB's 60 s idle timeout (AWS: a target must not close a
        # connection the load balancer may still reuse, or clients see 502s). The access log is the
        # app's own (labeling/portal/accesslog.py: the same line, written off the event loop).
        options = dict(host=host, port=port, log_level="info", proxy_headers=False, server_header=False,
                       access_log=False, timeout_keep_alive=75)
        if args.workers > 1:
            os.environ.update({N.HOST: host, N.PORT: str(port)})
            uvicorn.run("labeling.portal.app:app_from_env", factory=True, workers=args.workers, **options)
        else:
            uvicorn.run(AccessLog(create_app(settings)), **options)
        return 0

    return _run(run)


def _migrate(args: argparse.Namespace) -> int:
    def run() -> int:
        from labeling.portal.db import migrate

        settings = _settings()
        revision = migrate(settings)
        print(f"portal database {settings.db_name} on {settings.db_host}:{settings.db_port} at revision {revision}")
        return 0

    return _run(run)


def _read_password(path: Optional[Path]) -> str:
    from labeling.orthanc.local_stack import LocalStackError
    from labeling.portal.jobs import Invalid
    from labeling.portal.local import read_password_file

    if path is not None:
        try:
            return read_password_file(path)
        except LocalStackError as exc:
            raise Invalid(str(exc)) from None
    if not sys.stdin.isatty():
        raise Invalid("no --password-file and no terminal to prompt on")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise Invalid("the passwords differ")
    return first


def _user_add(args: argparse.Namespace) -> int:
    def run() -> int:
        from labeling.portal import jobs
        from labeling.portal.db import transaction
        from labeling.portal.security import hash_password

        password = _read_password(args.password_file)
        try:
            hashed = hash_password(password)
        except ValueError as exc:
            raise jobs.Invalid(str(exc)) from None
        engine, factory = _factory(_settings())
        try:
            with transaction(factory) as session:
                user = jobs.add_user(session, args.name, args.role, hashed)
                print(f"user {user.name} ({user.role}) added")
        finally:
            engine.dispose()
        return 0

    return _run(run)


def _job_create(args: argparse.Namespace) -> int:
    def run() -> int:
        from labeling.manifest.build import ManifestError, read_manifest
        from labeling.portal import jobs
        from labeling.portal.db import transaction
        from labeling.contracts.schema import SchemaError, load_schema

        settings = _settings()
        try:
            schema = load_schema(args.schema)
            lines = read_manifest(args.manifest)
        except (SchemaError, ManifestError) as exc:
            raise jobs.Invalid(str(exc)) from None
        from rich.progress import Progress

        from labeling.portal.images import orthanc_client_for
        from labeling.portal.series import checked_line_geometry

        orthanc = orthanc_client_for(settings)
        try:
            with Progress(transient=True) as bar:
                task = bar.add_task("checking the instances in Orthanc", total=len(lines))
                geometry = checked_line_geometry(orthanc, lines,
                                                 lambda done, total: bar.update(task, completed=done))
        finally:
            orthanc.close()
        engine, factory = _factory(settings)
        try:
            with transaction(factory) as session:
                job = jobs.create_job(
                    session, name=args.name, schema=schema, lines=lines, geometry=geometry,
                    label_attribute=args.label_attribute,
                    annotators_per_item=args.annotators_per_item,
                    lease_seconds=args.lease_seconds or settings.lease_seconds,
                    agreement_threshold=(settings.agreement_threshold if args.agreement_threshold is None
                                         else args.agreement_threshold))
                print(f"job {job.name} (id {job.id}): {len(lines)} items, K={job.annotators_per_item}, "
                      f"label attribute {job.label_attribute!r}")
        finally:
            engine.dispose()
        return 0

    return _run(run)


def _job_status(args: argparse.Namespace) -> int:
    def run() -> int:
        from labeling.portal import jobs
        from labeling.portal.db import transaction

        engine, factory = _factory(_settings())
        try:
            with transaction(factory) as session:
                progress = jobs.job_progress(session, _find_job(session, args.job))
        finally:
            engine.dispose()
        if args.json:
            print(json.dumps(progress, indent=2))
            return 0
        from rich.console import Console
        from rich.table import Table

        console = Console()
        console.print(f"[bold]{progress['job']}[/] ({progress['state']}): {progress['items']} items, "
                      f"K={progress['annotators_per_item']}, answers {progress['answers']}/{progress['answers_needed']}, "
                      f"done {progress['done']}, review {progress['review']}, open {progress['open']}, "
                      f"leased {progress['leased']}", markup=True, highlight=False)
        console.print(f"agreement: {progress['agreement']}", markup=False, highlight=False)
        table = Table("annotator", "answers", "items/hour", "median s/item")
        for row in progress["annotators"]:
            table.add_row(row["annotator"], str(row["submitted"]), str(row["items_per_hour"]),
                          str(row["median_seconds"]))
        console.print(table)
        return 0

    return _run(run)


def _job_close(args: argparse.Namespace) -> int:
    def run() -> int:
        from labeling.portal import jobs
        from labeling.portal.db import transaction

        engine, factory = _factory(_settings())
        try:
            with transaction(factory) as session:
                job = _find_job(session, args.job)
                summary = jobs.close_job(session, job)
        finally:
            engine.dispose()
        print(f"job {args.job} closed: {summary['answered']}/{summary['items']} items answered, "
              f"{summary['consolidated_at_close']} consolidated at close, {len(summary['errors'])} errors")
        for error in summary["errors"]:
            print(f"  {error}", file=sys.stderr)
        return 0

    return _run(run)


def _export(args: argparse.Namespace) -> int:
    def run() -> int:
        from labeling.portal.db import transaction
        from labeling.portal.export import export_manifest

        settings = _settings()
        engine, factory = _factory(settings)
        try:
            with transaction(factory) as session:
                result = export_manifest(session, _find_job(session, args.job), args.out,
                                         include_review=args.include_review,
                                         kms_key_id=args.kms_key_id or settings.export_kms_key_id)
        finally:
            engine.dispose()
        print(f"wrote {result.written} lines to {result.destination} ({result.left_out_review} waiting for "
              f"review, {result.left_out_open} unfinished and {result.left_out_excluded} excluded items left out)")
        return 0

    return _run(run)


def _sr(args: argparse.Namespace) -> int:
    def run() -> int:
        from rich.progress import Progress

        from labeling.portal.db import transaction
        from labeling.portal.export import export_sr
        from labeling.portal.images import orthanc_client_for

        settings = _settings()
        engine, factory = _factory(settings)
        orthanc = orthanc_client_for(settings)
        try:
            with transaction(factory) as session, Progress(transient=True) as bar:
                task = bar.add_task("storing SR", total=None)
                result = export_sr(session, _find_job(session, args.job), orthanc,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))
        finally:
            engine.dispose()
            orthanc.close()
        print(f"stored {len(result.stored)} SR instance(s) in Orthanc; {len(result.errors)} error(s)")
        for error in result.errors:
            print(f"  {error}", file=sys.stderr)
        return 1 if result.errors else 0

    return _run(run)


def _up(args: argparse.Namespace) -> int:
    from labeling.orthanc.local_stack import LocalStackError
    from labeling.portal.local import portal_up

    def run() -> int:
        try:
            up = portal_up(args.workdir, port=args.port, admin_name=args.admin,
                           admin_password_file=args.admin_password_file, timeout=args.timeout)
        except LocalStackError as exc:
            raise CommandError(str(exc)) from None
        print(f"local stack  {'reused' if up.stack_already_running else 'started'} in {args.workdir}")
        print(f"settings     {up.env_file}  (0600; `source` it for the other portal commands)")
        if up.admin_password:
            print(f"admin        {up.admin_name}  password {up.admin_password}  (shown once: keep it now)")
        elif up.admin_created:
            print(f"admin        {up.admin_name}  (password from {args.admin_password_file})")
        else:
            print(f"admin        {up.admin_name}  exists already; its password is unchanged (lost it? another admin: "
                  f"`source {up.env_file}`, then `python -m labeling portal user add NAME --role admin`)")
        print(f"portal       {up.url}/  ({'already running' if up.already_running else 'started'}; "
              f"stop with `python -m labeling portal down --workdir {args.workdir}`)")
        print(f"orthanc      {_images_line(args.workdir)}")
        return 0

    return _run(run)


def _images_line(workdir: str) -> str:
    """Where a job's images come from, and how to add some while there are none (a new user's first
    query otherwise finds nothing, with no word of where images go)."""
    from labeling.orthanc.client import OrthancClient
    from labeling.orthanc.local_stack import LocalStack

    conn = LocalStack(Path(workdir)).connection()
    try:
        with OrthancClient.from_connection(conn, timeout=10) as client:
            count = int(client.statistics().get("CountInstances", 0))
    except Exception as exc:  # noqa: BLE001 - only a hint: the portal is up either way
        return f"{conn.url}/  (could not count its images: {exc})"
    if count:
        return f"{conn.url}/  ({count} instances; jobs are made from them)"
    return (f"{conn.url}/  (no images yet: `source {workdir}/orthanc.env`, then `python -m labeling upload "
            "FOLDER`; README \"Local data plane\")")


def _down(args: argparse.Namespace) -> int:
    from labeling.orthanc.local_stack import LocalStackError
    from labeling.portal.local import portal_down

    try:
        for line in portal_down(args.workdir, keep_stack=args.keep_stack, purge=args.purge):
            print(line)
    except (LocalStackError, OSError) as exc:
        raise CommandError(str(exc)) from None
    return 0


def _stop(args: argparse.Namespace) -> int:
    from labeling.portal.local import stop_portal_in

    stopped = stop_portal_in(args.workdir)
    print(f"portal in {args.workdir}: {'stopped' if stopped else 'not running'}")
    return 0
