"""Alembic's entry point: run the revisions on the connection :func:`storage.migrations.upgrade` hands over.

That connection is already inside the transaction that holds the migration lock,
so Alembic neither opens nor commits one of its own; no ``alembic.ini`` is read.
"""

from alembic import context

from storage.schema import metadata

context.configure(connection=context.config.attributes["connection"], target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
