"""Opens the store the settings name. The one place that knows every backend."""

from __future__ import annotations

from stallwatch.settings import Settings, StoreKind
from storage.base import Store


def open_store(settings: Settings) -> Store:
    if settings.store is StoreKind.INFLUX:
        from storage.influx.store import InfluxStore

        return InfluxStore(
            settings.influx_url,
            settings.influx_database,
            token=_secret(settings.influx_token),
            username=settings.influx_username,
            password=_secret(settings.influx_password),
            retention_policy=settings.influx_retention_policy,
            msg_id_retention_policy=settings.influx_msg_id_retention_policy,
            create_database=settings.influx_create_database,
            batch_lines=settings.batch_lines,
        )
    from storage.sqlite import SQLiteStore

    settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(settings.sqlite_path)


def _secret(value: object) -> str | None:
    from pydantic import SecretStr

    return value.get_secret_value() if isinstance(value, SecretStr) else None
