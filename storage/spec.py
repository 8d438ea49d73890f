"""Which store to open, as a value, and the one function that opens it.

The composition root builds a spec from its settings; the forwarder's child
process, the simulators, tests and benchmarks open stores through
:func:`open_store` too, so every backend is constructed in one place. A spec is
frozen and picklable (it crosses into the forwarder's child process), and keeps
passwords and tokens out of its repr, so logging a spec never logs a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from schemas.retention import RetentionPolicy
from storage.base import Store

#: What :func:`parse_store_spec` accepts.
SPEC_SYNTAX = "sqlite:PATH or influx:http://host:8086/DATABASE"


@dataclass(frozen=True, slots=True)
class SQLiteSpec:
    path: Path


@dataclass(frozen=True, slots=True)
class InfluxSpec:
    url: str
    database: str
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    retention_policy: str | None = None
    msg_id_retention_policy: str | None = None
    #: Issue CREATE DATABASE on opening (InfluxDB 1.x only).
    create_database: bool = False
    batch_lines: int = 5_000
    #: Each market's retention policy: a retention policy per (market, kind) is written
    #: to and read from (``storage.influx.routing``); ``None``: one policy for all.
    #: Pairs, not a mapping: a spec is frozen, hashable and picklable.
    retention: tuple[tuple[str, RetentionPolicy], ...] | None = None
    #: Create or ALTER those retention policies on opening (1.x; implied by create_database).
    create_retention_policies: bool = False


StoreSpec = SQLiteSpec | InfluxSpec


def open_store(spec: StoreSpec) -> Store:
    if isinstance(spec, InfluxSpec):
        # Imported here: a SQLite deployment never loads the InfluxDB client.
        from storage.influx.store import InfluxStore

        return InfluxStore(
            spec.url,
            spec.database,
            token=spec.token,
            username=spec.username,
            password=spec.password,
            retention_policy=spec.retention_policy,
            msg_id_retention_policy=spec.msg_id_retention_policy,
            create_database=spec.create_database,
            batch_lines=spec.batch_lines,
            retention=None if spec.retention is None else dict(spec.retention),
            create_retention_policies=spec.create_retention_policies,
        )
    from storage.sqlite import SQLiteStore

    spec.path.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(spec.path)


def parse_store_spec(text: str) -> StoreSpec:
    """``sqlite:PATH``, or ``influx:http://host:8086/DATABASE`` (the database created if missing).

    Raises :class:`ValueError` naming the accepted forms.
    """
    kind, _, rest = text.partition(":")
    if kind == "sqlite" and rest:
        return SQLiteSpec(Path(rest))
    if kind == "influx" and rest:
        url, _, database = rest.rstrip("/").rpartition("/")
        if not url or not database:
            raise ValueError("influx store must look like influx:http://host:8086/DATABASE")
        return InfluxSpec(url, database, create_database=True)
    raise ValueError(f"unknown store {text!r}: use {SPEC_SYNTAX}")
