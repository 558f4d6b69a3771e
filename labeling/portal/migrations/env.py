"""Alembic environment: runs on the connection :func:`labeling.portal.db.migrate` passes in."""

from alembic import context

from labeling.portal.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
