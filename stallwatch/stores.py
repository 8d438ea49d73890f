"""The store the settings name, as a :mod:`storage.spec` spec: the root's half of opening one."""

from __future__ import annotations

from pydantic import SecretStr

from schemas.registry import Registry
from schemas.retention import RetentionPolicy
from stallwatch.settings import Settings, StoreKind
from storage import spec
from storage.base import Store
from storage.spec import InfluxSpec, SQLiteSpec, StoreSpec


def store_spec(settings: Settings) -> StoreSpec:
    if settings.store is StoreKind.INFLUX:
        return InfluxSpec(
            settings.influx_url,
            settings.influx_database,
            token=_secret(settings.influx_token),
            username=settings.influx_username,
            password=_secret(settings.influx_password),
            retention_policy=settings.influx_retention_policy,
            msg_id_retention_policy=settings.influx_msg_id_retention_policy,
            create_database=settings.influx_create_database,
            batch_lines=settings.batch_lines,
            retention=_routed_retention(settings),
            create_retention_policies=settings.influx_retention_by_kind,
        )
    return SQLiteSpec(settings.sqlite_path)


def _routed_retention(settings: Settings) -> tuple[tuple[str, RetentionPolicy], ...] | None:
    """The registry's retention policies, when InfluxDB keeps each kind in a policy of its own.

    Every process opening the store (ingest's forwarder child, the API, the
    dashboard, the CLI) must route alike, so it is part of the spec.
    """
    if not settings.influx_retention_by_kind:
        return None
    return tuple(sorted(Registry.load(settings.markets).retention().items()))


def open_store(settings: Settings) -> Store:
    return spec.open_store(store_spec(settings))


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()
