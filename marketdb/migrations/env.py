"""Alembic's entry point for the market database (run by ``marketdb.database.migrate``).

The connection comes from the caller (``config.attributes["connection"]``), so
migrations run in the caller's transaction and no URL is read from a file.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from marketdb.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run the market database's migrations through marketdb.database.migrate")
_run(connection)
