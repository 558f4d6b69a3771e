"""The deploy-time portal DB role Lambda (lambda_src/portal_db_role) against the real PostgreSQL.

RDS's master user is not a superuser: it has CREATEROLE and CREATEDB (rds_superuser). The test makes
such a role on the session's server and runs the handler's SQL as it, then checks what the portal
role may and may not do - with real logins, not catalog reads alone.
"""

from __future__ import annotations

import json
import runpy
import secrets
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from psycopg import sql

from labeling.orthanc.local_stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]


def _handler() -> SimpleNamespace:
    """The Lambda's module namespace (lambda_src is not a package)."""
    return SimpleNamespace(**runpy.run_path(str(ROOT / "lambda_src" / "portal_db_role" / "handler.py")))


@pytest.fixture()
def server(local_stack: LocalStack):
    """(connect(user, password, dbname), names): an RDS-like master, a protected 'index' database."""
    info = local_stack.status()
    creds = json.loads(local_stack.credentials_file.read_text())
    suffix = secrets.token_hex(4)
    names = {"master": f"master_{suffix}", "master_pw": f"Mx{secrets.token_hex(12)}",
             "role": f"portal_app_{suffix}", "database": f"portal_{suffix}", "index": f"index_{suffix}"}

    def connect(user: str, password: str, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=info.postgres_port, user=user, password=password,
                               dbname=dbname, autocommit=True, connect_timeout=10)

    admin = connect(creds["postgres_username"], creds["postgres_password"])
    admin.execute(f"CREATE ROLE {names['master']} LOGIN CREATEROLE CREATEDB PASSWORD '{names['master_pw']}'")
    admin.execute(f"CREATE DATABASE {names['index']} OWNER {names['master']}")
    try:
        yield connect, names
    finally:
        for db in (names["database"], names["index"]):
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        for role in (names["role"], names["master"]):
            admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()


def test_portal_role_owns_its_database_and_cannot_open_the_orthanc_index(server):
    connect, n = server
    handler = _handler()
    password = f"Pw{secrets.token_hex(12)}"
    with connect(n["master"], n["master_pw"]) as master:
        result = handler.ensure_portal_role(master, role=n["role"], password=password, database=n["database"],
                                            protected_databases=[n["index"]])
    assert result["changes"][:2] == ["role created", "database created"]
    assert password not in json.dumps(result)

    with connect(n["role"], password, n["database"]) as portal:
        portal.execute("CREATE TABLE t (id serial PRIMARY KEY)")  # owns its database's public schema
        flags = portal.execute("SELECT rolcreatedb, rolcreaterole, rolsuper FROM pg_roles "
                               "WHERE rolname = current_user").fetchone()
        assert flags == (False, False, False)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        connect(n["role"], password, n["index"])
    # The master user keeps the index.
    with connect(n["master"], n["master_pw"], n["index"]) as master:
        assert master.execute("SELECT 1").fetchone() == (1,)


def test_rerun_rotates_the_password_and_hands_over_a_former_master_portal_database(server):
    connect, n = server
    handler = _handler()
    with connect(n["master"], n["master_pw"]) as master:  # the portal used to create it as master
        master.execute(f"CREATE DATABASE {n['database']}")
    with connect(n["master"], n["master_pw"], n["database"]) as master:
        master.execute("CREATE TABLE jobs (id bigserial PRIMARY KEY, name text)")

    first, second = f"Pa{secrets.token_hex(12)}", f"Pb{secrets.token_hex(12)}"
    for password in (first, second):
        with connect(n["master"], n["master_pw"]) as master:
            result = handler.ensure_portal_role(master, role=n["role"], password=password,
                                                database=n["database"], protected_databases=[n["index"]])
        with connect(n["master"], n["master_pw"], n["database"]) as master:
            handed = handler.hand_over_objects(master, role=n["role"])
        if password == first:
            assert f"database owner {n['master']} -> {n['role']}" in result["changes"] and handed == 1
        else:
            assert result["changes"][0] == "role updated" and handed == 0  # idempotent
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(n["role"], first, n["database"])
    with connect(n["role"], second, n["database"]) as portal:
        portal.execute("INSERT INTO jobs (name) VALUES ('x')")  # table and its sequence now the role's
        assert portal.execute("SELECT count(*) FROM jobs").fetchone() == (1,)


def test_hostile_names_are_quoted_by_the_server(server):
    connect, n = server
    handler = _handler()
    role = f'{n["role"]}"; DROP DATABASE {n["index"]}; --'
    with connect(n["master"], n["master_pw"]) as master:
        handler.ensure_portal_role(master, role=role, password="it's a 'quote'", database=n["database"],
                                   protected_databases=[n["index"]])
        assert master.execute("SELECT 1 FROM pg_database WHERE datname = %s", (n["index"],)).fetchone()
    with connect(role, "it's a 'quote'", n["database"]) as portal:
        assert portal.execute("SELECT current_user").fetchone() == (role,)
    with connect(n["master"], n["master_pw"]) as master:  # the fixture knows only the plain role name
        master.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(n["database"])))
        master.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
