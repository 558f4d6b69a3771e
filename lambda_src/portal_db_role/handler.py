"""Deploy-time Lambda: the labeling portal's own PostgreSQL role and database on the Orthanc server.

Invoked once by ``pulumi up`` (``aws.lambda_.Invocation`` in components/portal.py) from inside the
VPC, because the RDS instance is private. It connects as the master user (the Orthanc database
secret) and makes the state below true, idempotently - a re-run (new password, new deployment)
changes only what differs:

- role ``<username>`` (from the portal's own secret) with LOGIN and that password, no other
  attribute (not CREATEDB, not CREATEROLE, no membership of ``rds_superuser``);
- database ``<database>`` owned by that role, ``CONNECT`` revoked from ``PUBLIC``; tables and
  sequences a former master-user portal left in it are handed to the role;
- ``CONNECT`` revoked from ``PUBLIC`` on each protected database (the Orthanc index), so the portal
  role cannot even open it; the master user keeps its rights.

DDL takes no bind parameters, so names and the password are quoted by the server
(``format('%I' / '%L')``), never by string concatenation. No secret value is logged or returned.
Event: ``{"master_secret_arn", "role_secret_arn", "database", "protected_databases"}``; the
secrets hold ``username``/``password`` (the master one also ``host``/``port``/``dbname``).
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

SSLMODE = os.environ.get("PORTAL_DB_ROLE_SSLMODE", "require")  # the parameter group forces TLS


def _quoted(conn: Any, template: str, *values: str) -> str:
    """``format(template, values…)`` evaluated by PostgreSQL: %I identifiers, %L literals."""
    placeholders = ", ".join(["%s::text"] * len(values))
    return conn.execute(f"SELECT format(%s::text, {placeholders})", (template, *values)).fetchone()[0]


def ensure_portal_role(conn: Any, *, role: str, password: str, database: str,
                       protected_databases: Sequence[str]) -> dict[str, Any]:
    """Make the role, its database and the revocations true on ``conn`` (autocommit, master user)."""
    done: list[str] = []
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if exists:
        conn.execute(_quoted(conn, "ALTER ROLE %I WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD %L", role, password))
        done.append("role updated")
    else:
        conn.execute(_quoted(conn, "CREATE ROLE %I WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD %L", role, password))
        done.append("role created")
    # CREATE/ALTER DATABASE … OWNER needs the master to be able to SET ROLE to the owner
    # (PostgreSQL 16+: a CREATEROLE creator has ADMIN on the role but no membership by default).
    member = conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (role,)).fetchone()[0]
    if not member:
        conn.execute(_quoted(conn, "GRANT %I TO current_user", role))
    owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                         (database,)).fetchone()
    if owner is None:
        conn.execute(_quoted(conn, "CREATE DATABASE %I OWNER %I", database, role))
        done.append("database created")
    elif owner[0] != role:
        conn.execute(_quoted(conn, "ALTER DATABASE %I OWNER TO %I", database, role))
        done.append(f"database owner {owner[0]} -> {role}")
    conn.execute(_quoted(conn, "REVOKE ALL ON DATABASE %I FROM PUBLIC", database))
    conn.execute(_quoted(conn, "GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I", database, role))
    for other in protected_databases:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (other,)).fetchone():
            conn.execute(_quoted(conn, "REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC", other))
            done.append(f"{other}: CONNECT revoked from PUBLIC")
    return {"role": role, "database": database, "changes": done}


def hand_over_objects(conn: Any, *, role: str) -> int:
    """In the portal database: tables, then sequences still left (not linked to a table, which
    moved with it) that the master user owns - what a former master-user portal created - → role."""
    count = 0
    for query in (
        "SELECT format('ALTER TABLE %%I.%%I OWNER TO %%I', schemaname, tablename, %s::text) FROM pg_tables "
        "WHERE tableowner = current_user AND schemaname NOT IN ('pg_catalog', 'information_schema')",
        "SELECT format('ALTER SEQUENCE %%I.%%I OWNER TO %%I', schemaname, sequencename, %s::text) "
        "FROM pg_sequences WHERE sequenceowner = current_user "
        "AND schemaname NOT IN ('pg_catalog', 'information_schema')",
    ):
        for (statement,) in conn.execute(query, (role,)).fetchall():
            conn.execute(statement)
            count += 1
    return count


def _secret(client: Any, arn: str) -> dict[str, Any]:
    return json.loads(client.get_secret_value(SecretId=arn)["SecretString"])


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    import boto3
    import psycopg

    client = boto3.client("secretsmanager")
    master, portal = _secret(client, event["master_secret_arn"]), _secret(client, event["role_secret_arn"])
    database = event["database"]

    def connect(dbname: str):
        return psycopg.connect(host=master["host"], port=int(master.get("port", 5432)), dbname=dbname,
                               user=master["username"], password=master["password"], sslmode=SSLMODE,
                               autocommit=True, connect_timeout=10)

    with connect(master.get("dbname", "postgres")) as conn:
        result = ensure_portal_role(conn, role=portal["username"], password=portal["password"], database=database,
                                    protected_databases=list(event.get("protected_databases", ())))
    with connect(database) as conn:
        result["objects_handed_over"] = hand_over_objects(conn, role=portal["username"])
    print(json.dumps(result))  # names and counts only
    return result
