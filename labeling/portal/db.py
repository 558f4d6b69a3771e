"""Database access: the SQLAlchemy engine for the settings, sessions, and ``migrate``.

``migrate`` (the container's first command, ``python -m labeling portal migrate``) optionally creates
the database (``PORTAL_DB_CREATE=true``: connects to the server's ``postgres`` database with the same
credentials — the RDS master user in the cloud — and runs ``CREATE DATABASE`` when missing), then
runs Alembic to head under a PostgreSQL advisory lock, so several tasks starting at once migrate once.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import psycopg
from sqlalchemy import URL, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from labeling.portal.names import DB_MAX_OVERFLOW
from labeling.portal.settings import PortalSettings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATE_LOCK_KEY = 0x706F7274  # "port": any constant shared by every portal task
# Connections a worker may open beyond PORTAL_DB_POOL_SIZE (components/portal.py budgets the same
# number per worker under RDS max_connections as PORTAL_MAX_OVERFLOW).
MAX_OVERFLOW = DB_MAX_OVERFLOW


class DatabaseError(RuntimeError):
    """The database is unreachable or could not be migrated; the message says which and why."""


def database_url(settings: PortalSettings, database: str | None = None) -> URL:
    """The psycopg 3 URL; ``URL.create`` quotes the password, which therefore needs no escaping."""
    return URL.create("postgresql+psycopg", username=settings.db_user, password=settings.db_password or None,
                      host=settings.db_host, port=settings.db_port, database=database or settings.db_name,
                      query={"sslmode": settings.db_sslmode, "application_name": "dicom-annotate-portal"})


def make_engine(settings: PortalSettings, database: str | None = None, **kwargs: object) -> Engine:
    """The pool pings nothing on checkout (a round trip per request, issue 12): a connection broken by a
    database restart fails its one request (503), and SQLAlchemy then replaces every pooled connection
    (it invalidates the pool on a disconnect error); ``pool_recycle`` retires connections before
    server or proxy idle timeouts do.

    Up to ``PORTAL_DB_POOL_SIZE`` + :data:`MAX_OVERFLOW` connections, all kept once opened: an
    overflow connection would be closed on its return whenever the pool is full, so a busy portal
    paid a new connection (a server process and a SCRAM exchange) every few requests."""
    options: dict[str, object] = dict(pool_pre_ping=False, pool_recycle=1800,
                                      pool_size=settings.db_pool_size + MAX_OVERFLOW, max_overflow=0,
                                      connect_args={"connect_timeout": 10})
    options.update(kwargs)
    return create_engine(database_url(settings, database), **options)  # type: ignore[arg-type]


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session:
        with session.begin():
            yield session


@contextmanager
def _driver_connection(engine: Engine, query: Optional[str] = None,
                       params: Optional[Mapping[str, Any]] = None) -> Iterator[psycopg.Connection]:
    """A pooled connection's psycopg connection, for the per-request statements, on which SQLAlchemy's
    Connection/Session would cost several times the statement's own CPU (issue 12).
    A driver error leaves as SQLAlchemy's (``OperationalError`` answers 503, ``.orig.sqlstate`` is
    kept); a lost connection renews the whole pool, as SQLAlchemy does after a database restart."""
    fairy = engine.raw_connection()
    try:
        yield fairy.driver_connection
    except psycopg.Error as exc:
        if engine.dialect.is_disconnect(exc, fairy, None):
            fairy.invalidate(exc)
            engine.dispose(close=False)
        raise DBAPIError.instance(query, dict(params or {}), exc, psycopg.Error, hide_parameters=True) from exc
    finally:
        fairy.close()  # back to the pool, which rolls back whatever is still open


def one_row(engine: Engine, query: str, params: Mapping[str, Any]) -> Optional[tuple[Any, ...]]:
    """The first row of ``query`` (psycopg ``%(name)s`` parameters, :func:`driver_sql`) in autocommit
    mode: no BEGIN/COMMIT round trips, and a single statement is its own transaction (its writes are
    committed together, or not at all when it raises)."""
    with _driver_connection(engine, query, params) as conn:
        conn.autocommit = True
        try:
            return conn.execute(query, params).fetchone()
        finally:
            conn.autocommit = False


@contextmanager
def driver_transaction(engine: Engine) -> Iterator[psycopg.Connection]:
    """One transaction on a pooled psycopg connection (:func:`_driver_connection`): committed when the
    block ends, rolled back when it raises."""
    with _driver_connection(engine) as conn:
        with conn.transaction():
            yield conn


def driver_connection_of(session: Session) -> psycopg.Connection:
    """The psycopg connection of ``session``'s transaction, for code written on :func:`driver_transaction`."""
    return session.connection().connection.driver_connection  # type: ignore[return-value]


def driver_sql(sql: str) -> str:
    """SQL written for ``text()`` (``:name`` parameters) in psycopg's form (``%(name)s``), so a fragment
    shared by both kinds of statement is written once. (No ``::`` casts or ``%`` in such SQL.)"""
    assert "::" not in sql and "%" not in sql, sql
    return re.sub(r":(\w+)", r"%(\1)s", sql)


def create_database_if_missing(settings: PortalSettings) -> bool:
    """``CREATE DATABASE`` when the portal database does not exist; True when it was created."""
    engine = make_engine(settings, "postgres", isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                  {"name": settings.db_name}).scalar()
            if exists:
                return False
            # The name is validated by PortalSettings (a plain identifier), so quoting it is enough.
            conn.execute(text(f'CREATE DATABASE "{settings.db_name}"'))
            return True
    except Exception as exc:  # noqa: BLE001 - report any driver error as one line
        raise DatabaseError(f"PostgreSQL {settings.db_host}:{settings.db_port}: cannot create database "
                            f"{settings.db_name!r}: {_short(exc)}") from None
    finally:
        engine.dispose()


def alembic_config(connection: object):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def migrate(settings: PortalSettings) -> str:
    """Create the database when asked and upgrade it to the newest revision; returns that revision."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    if settings.db_create:
        create_database_if_missing(settings)
    engine = make_engine(settings, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATE_LOCK_KEY})
            try:
                command.upgrade(alembic_config(conn), "head")
                conn.commit()
                revision = MigrationContext.configure(conn).get_current_revision()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATE_LOCK_KEY})
                conn.commit()
        return str(revision)
    except DatabaseError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DatabaseError(f"PostgreSQL {settings.db_host}:{settings.db_port}/{settings.db_name}: "
                            f"migration failed: {_short(exc)}") from None
    finally:
        engine.dispose()


def ping(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - health check: any failure is "not reachable"
        return False


def _short(exc: Exception) -> str:
    return " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
