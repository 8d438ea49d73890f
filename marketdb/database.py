"""Opening the market database and bringing its schema up to date.

SQLite by default (a file next to the store's; nothing to install), PostgreSQL
for deployments with several ingest or web processes. The schema is Alembic's
(``marketdb/migrations``): :func:`open_database` migrates to the newest
revision, so a new file and an old one both end up current.
"""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from marketdb._exceptions import MarketDatabaseError, MarketDatabaseUnavailable

log = logging.getLogger(__name__)


def open_database(url: str, *, migrate: bool = True) -> Engine:
    """An engine for ``url`` (``sqlite:///PATH`` or ``postgresql+psycopg://…``), migrated.

    Raises :class:`MarketDatabaseError` for a URL of another kind and
    :class:`MarketDatabaseUnavailable` when the database cannot be reached.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise MarketDatabaseError(f"not a database URL: {url!r}") from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise MarketDatabaseError(
            f"the market database is SQLite or PostgreSQL, not {parsed.get_backend_name()!r}"
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)  # var/ of a fresh clone
    engine = create_engine(parsed, pool_pre_ping=True)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if migrate:
        upgrade(engine)
    return engine


def _sqlite_pragmas(connection: Any, _record: object) -> None:
    """Foreign keys are off in SQLite unless asked for, per connection; WAL lets the
    web app read while ingest's registry follower reads too."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA busy_timeout = 5000")
    cursor.close()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the schema to ``revision`` (the newest by default), in one transaction."""
    try:
        with engine.begin() as connection:
            before = MigrationContext.configure(connection).get_current_revision()
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            after = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise MarketDatabaseUnavailable(f"cannot migrate the market database: {exc}") from exc
    if after != before:
        log.info("market database migrated from %s to %s", before or "empty", after)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("marketdb") / "migrations"))
    return config


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded rows usable after commit (they are read, then shown)."""
    return sessionmaker(engine, expire_on_commit=False)
