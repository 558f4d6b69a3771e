"""``python -m labeling local up|down|status``: the command of the local stack
(:mod:`labeling.orthanc.local_stack`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from labeling.orthanc.local_stack import DEFAULT_WORKDIR, REPO_ROOT, LocalStack


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "local",
        description="Run Debian's Orthanc 1.10 with a PostgreSQL index on 127.0.0.1 and free ports, "
                    "configured by the project's Orthanc config generator.")
    actions = parser.add_subparsers(dest="local_command", metavar="ACTION", required=True)

    def add_workdir(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                         help=f"state directory (default: {DEFAULT_WORKDIR.relative_to(REPO_ROOT)} "
                              "under the repository)")

    up = actions.add_parser("up", help="start PostgreSQL and Orthanc (idempotent)",
                            description="Start PostgreSQL and Orthanc; writes WORKDIR/orthanc.env (0600) "
                                        "with ORTHANC_URL, ORTHANC_USERNAME, ORTHANC_PASSWORD.")
    add_workdir(up)
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for readiness (default 60)")
    up.set_defaults(func=_cmd_up)

    down = actions.add_parser("down", help="stop what `up` started in this work dir (--purge: and delete it)")
    add_workdir(down)
    down.add_argument("--purge", action="store_true",
                      help="also delete everything `up` made: Orthanc's storage and index, the "
                           "credentials, logs and state (and PostgreSQL's directory outside the work dir)")
    down.set_defaults(func=_cmd_down)

    status = actions.add_parser("status", help="show URL, ports, pids; exit 0 when running, 3 otherwise")
    add_workdir(status)
    status.add_argument("--json", action="store_true", help="print JSON (never contains the password)")
    status.set_defaults(func=_cmd_status)


def _cmd_up(args: argparse.Namespace) -> int:
    stack = LocalStack(args.workdir)
    info = stack.up(timeout=args.timeout)  # LocalStackError: the CLI's error line (exit 1), log tail included
    if info.already_running:
        print(f"already running: Orthanc {info.url} (pid {info.orthanc_pid}), "
              f"PostgreSQL 127.0.0.1:{info.postgres_port} (pid {info.postgres_pid})")
    else:
        print(f"Orthanc      {info.url}  (pid {info.orthanc_pid}, log {stack.orthanc_log})")
        print(f"PostgreSQL   127.0.0.1:{info.postgres_port}  (pid {info.postgres_pid}, log {stack.pg_log})")
        print(f"Explorer     {info.explorer_url}  (user {info.username})")
    print(f"credentials  source {info.env_file}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    stack = LocalStack(args.workdir)
    for line in (stack.purge() if args.purge else stack.down()):
        print(line)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    stack = LocalStack(args.workdir)
    info = stack.status()
    if args.json:
        print(json.dumps(info.to_json(), indent=2))
    else:
        def alive(flag: bool) -> str:
            return "alive" if flag else "dead"
        print(f"workdir      {info.workdir}")
        print(f"orthanc      {info.url or '-'}  pid {info.orthanc_pid or '-'}  {alive(info.orthanc_alive)}")
        print(f"postgresql   127.0.0.1:{info.postgres_port or '-'}  pid {info.postgres_pid or '-'}  "
              f"{alive(info.postgres_alive)}")
        print(f"env file     {info.env_file}")
    return 0 if info.running else 3
