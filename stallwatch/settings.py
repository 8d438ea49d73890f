"""Configuration: one ``Settings`` object, built once by the CLI and passed down.

Values come from (highest first) command-line overrides, environment variables
prefixed ``STALLWATCH_``, a TOML file named by ``STALLWATCH_CONFIG`` or
``--config``, and the defaults below. Nothing secret has a default: a password
or token is either configured or absent (and then no authentication is sent).
"""

from __future__ import annotations

import ipaddress
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class StoreKind(StrEnum):
    SQLITE = "sqlite"
    INFLUX = "influx"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STALLWATCH_", extra="forbid", frozen=True, env_nested_delimiter="__"
    )

    # -- registry --------------------------------------------------------------
    markets: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(), description="Market files (TOML); comma-separated in the environment."
    )

    # -- MQTT ------------------------------------------------------------------
    mqtt_url: str = Field(default="mqtt://127.0.0.1:1883", description="mqtt://host:port")
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_password_file: Path | None = Field(
        default=None, description="File holding the MQTT password (Docker secrets, 0600)."
    )
    mqtt_protocol: Literal["5", "3.1.1"] = Field(
        default="5", description="MQTT v5 unless the broker only speaks 3.1.1 (e.g. amqtt)."
    )
    mqtt_client_id: str = Field(
        default="stallwatch-ingest",
        description="Stable per ingest instance: the broker keeps its session under this id.",
    )
    mqtt_share_group: str | None = Field(
        default=None,
        description="Join $share/<group>/... so several ingest processes split the load.",
    )
    mqtt_session_expiry_s: int = Field(default=7 * 86_400, ge=0)
    mqtt_receive_maximum: int = Field(
        default=10_000,
        ge=1,
        le=65_535,
        description="Unacknowledged messages the broker may send us.",
    )

    # -- ingest ----------------------------------------------------------------
    spool_dir: Path = Path("var/spool")
    batch_lines: int = Field(default=5_000, ge=1, le=100_000)
    max_payload_bytes: int = Field(default=16_384, ge=256)
    max_future_skew_s: int = Field(
        default=300, ge=0, description="Reject device times further ahead."
    )
    max_age_s: int = Field(
        default=7 * 86_400, ge=60, description="Reject device times further back."
    )

    # -- market database -------------------------------------------------------
    market_database: str = Field(
        default="sqlite:///var/market.db",
        description="SQLAlchemy URL of the market database (markets, vendors, devices): "
        "sqlite:///PATH, or postgresql+psycopg://user@host/db for several processes.",
    )
    mqtt_command_password_file: Path | None = Field(
        default=None,
        description="Password file of the broker's stallwatch-command user (stallwatch "
        "broker-auth writes it): the web app locks a batch that failed its rapid test on its "
        "vendor's scales and screens as that user. Unset: with the MQTT credentials above.",
    )
    mqtt_admin_password_file: Path | None = Field(
        default=None,
        description="Password file of the broker's stallwatch-admin user (stallwatch "
        "broker-auth writes it). Set: devices added or disabled in the web app get or lose "
        "their broker user at once, through Mosquitto's dynamic-security plugin.",
    )

    # -- store -----------------------------------------------------------------
    store: StoreKind = StoreKind.SQLITE
    sqlite_path: Path = Path("var/stallwatch.db")
    influx_url: str = "http://127.0.0.1:8086"
    influx_database: str = "stallwatch"
    influx_retention_policy: str | None = None
    influx_msg_id_retention_policy: str | None = Field(
        default=None,
        description=(
            "Retention policy of the msg_id ledger, which must keep data forever (its points "
            "are timed by msg_id); created with the database when that is created. Default: "
            "the store's retention policy, fine while that keeps data forever."
        ),
    )
    influx_token: SecretStr | None = None
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_create_database: bool = Field(
        default=False, description="Issue CREATE DATABASE on start (InfluxDB 1.x only)."
    )
    influx_retention_by_kind: bool = Field(
        default=False,
        description=(
            "Keep each market's kinds of data in retention policies of their own "
            "(sw_<market>_<kind>, from the market files' [retention]); created or altered on "
            "start (1.x). Data written before stays in the base policy until "
            "'stallwatch store backfill --into-routed' copies it."
        ),
    )

    # -- HTTP API --------------------------------------------------------------
    api_host: str = Field(default="127.0.0.1", description="Address the HTTP API listens on.")
    api_port: int = Field(default=8000, ge=1, le=65_535)
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description=(
            "Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For and "
            "X-Forwarded-Proto are believed; comma-separated in the environment. Empty: "
            "the headers are ignored and the connecting address is the client's."
        ),
    )
    api_tokens_file: Path | None = Field(
        default=None,
        description=(
            "JSON file of hashed API tokens and their roles (`stallwatch api-token create`). "
            "Unset: every endpoint that needs a token answers 503; nothing is open by default."
        ),
    )

    # -- dashboard -------------------------------------------------------------
    dashboard_users_file: Path | None = Field(
        default=None,
        description=(
            "JSON file of dashboard users and their scrypt password hashes "
            "(`stallwatch dashboard-user add`). Unset: the dashboard opens without a login, "
            "which is allowed only while the API listens on a loopback address."
        ),
    )
    dashboard_session_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Key that signs dashboard login cookies. Unset: a random key per process, "
            "so logins end when the service restarts."
        ),
    )
    dashboard_secure_cookies: bool = Field(
        default=False,
        description="Send the login cookie over HTTPS only (set this behind a TLS proxy).",
    )

    @field_validator("markets", mode="before")
    @classmethod
    def _split_comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(Path(part.strip()) for part in value.split(",") if part.strip())
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for proxy in value:
            ipaddress.ip_network(proxy, strict=False)  # ValueError names the bad entry
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url_has_host(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"mqtt", "tcp"} or not parts.hostname:
            raise ValueError("mqtt_url must look like mqtt://host:1883")
        return value

    @model_validator(mode="after")
    def _one_influx_auth(self) -> Settings:
        if self.influx_token is not None and self.influx_username is not None:
            raise ValueError("set influx_token or influx_username/influx_password, not both")
        return self

    @property
    def mqtt_host(self) -> str:
        return urlsplit(self.mqtt_url).hostname or "127.0.0.1"

    @property
    def mqtt_port(self) -> int:
        return urlsplit(self.mqtt_url).port or 1883

    def mqtt_password_value(self) -> str | None:
        if self.mqtt_password is not None:
            return self.mqtt_password.get_secret_value()
        if self.mqtt_password_file is not None:
            return self.mqtt_password_file.read_text().strip()
        return None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the one Settings object; ``overrides`` are command-line values."""
    if config_file is None and os.environ.get("STALLWATCH_CONFIG"):
        config_file = Path(os.environ["STALLWATCH_CONFIG"])
    present = {key: value for key, value in overrides.items() if value is not None}
    if config_file is None:
        return Settings(**present)
    return _settings_with_file(config_file, present)


def _settings_with_file(config_file: Path, overrides: dict[str, Any]) -> Settings:
    class FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                init_settings,
                env_settings,
                TomlConfigSettingsSource(settings_cls, config_file),
            )

    # Re-validate as the plain class so callers never see the subclass.
    return Settings.model_validate(FileSettings(**overrides).model_dump())
