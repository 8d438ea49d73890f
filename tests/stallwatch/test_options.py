"""The composition root turns ``Settings`` into each component's options."""

from __future__ import annotations

import pickle
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from schemas.registry import RegistryError
from schemas.retention import RetentionPolicy
from stallwatch.options import api_options, ingest_options, live_mqtt_options
from stallwatch.settings import Settings, StoreKind
from stallwatch.stores import store_spec
from storage.spec import InfluxSpec, SQLiteSpec
from tests.conftest import REPO

#: The small example market (without a [retention] table), keeping its heartbeats a week.
MARKET_FILE = REPO / "examples" / "markets" / "xiaohe.toml"
RETENTION = "\n[retention]\nheartbeats = 7\n"


def influx_settings(tmp_path: Path, *, retention: str = RETENTION) -> Settings:
    market = MARKET_FILE.read_text(encoding="utf-8") + retention
    (tmp_path / "m.toml").write_text(market, encoding="utf-8")
    return Settings(
        markets=(tmp_path / "m.toml",),
        mqtt_url="mqtt://broker:1884",
        mqtt_username="ingest",
        mqtt_password=SecretStr("mqtt-s3cret"),
        mqtt_client_id="ingest-2",
        spool_dir=tmp_path / "spool",
        batch_lines=250,
        max_age_s=3_600,
        store=StoreKind.INFLUX,
        influx_url="http://db:8086",
        influx_database="market",
        influx_username="writer",
        influx_password=SecretStr("influx-s3cret"),
        influx_retention_policy="two_years",
        influx_msg_id_retention_policy="forever",
        influx_create_database=True,
        api_tokens_file=tmp_path / "tokens.json",
    )


def test_store_spec_carries_every_store_setting(tmp_path: Path) -> None:
    assert store_spec(influx_settings(tmp_path)) == InfluxSpec(
        "http://db:8086",
        "market",
        username="writer",
        password="influx-s3cret",
        retention_policy="two_years",
        msg_id_retention_policy="forever",
        create_database=True,
        batch_lines=250,
    )
    sqlite = Settings(sqlite_path=tmp_path / "s.db")
    assert store_spec(sqlite) == SQLiteSpec(tmp_path / "s.db")


def test_an_influx_store_kept_by_kind_carries_the_registry_s_retention(tmp_path: Path) -> None:
    by_kind = influx_settings(tmp_path).model_copy(update={"influx_retention_by_kind": True})
    chosen = store_spec(by_kind)
    assert isinstance(chosen, InfluxSpec)
    assert chosen.retention == (("xiaohe", RetentionPolicy(heartbeats=7)),)
    assert chosen.create_retention_policies
    # The forwarder's child process opens its store from the pickled spec.
    options = ingest_options(by_kind)
    assert pickle.loads(pickle.dumps(options)).store == chosen  # noqa: S301 (bytes we just made)


def test_ingest_options_reach_the_forwarder_process_without_showing_secrets(
    tmp_path: Path,
) -> None:
    options = ingest_options(influx_settings(tmp_path))
    assert options.spool_file == tmp_path / "spool" / "ingest-2.spool.db"
    assert (options.mqtt.edge.host, options.mqtt.edge.port, options.mqtt.edge.password) == (
        "broker",
        1884,
        "mqtt-s3cret",
    )
    assert options.mqtt.edge.persistent
    assert options.mqtt.session_expiry == options.memory.redeliveries == timedelta(days=7)
    assert options.limits.max_age == options.memory.msg_ids == timedelta(hours=1)
    assert options.batch_lines == 250
    assert options.retention.policies == {"xiaohe": RetentionPolicy(heartbeats=7)}
    assert "s3cret" not in repr(options)
    # The forwarder's child process is spawned with a pickled copy.
    assert pickle.loads(pickle.dumps(options)) == options  # noqa: S301 (bytes we just made)


def test_retention_must_outlast_the_window_ingest_accepts(tmp_path: Path) -> None:
    settings = influx_settings(tmp_path, retention="\n[retention]\ngate_counts = 1\n")
    assert ingest_options(settings).retention.policies["xiaohe"].gate_counts == 1  # window: 1 h
    longer_window = settings.model_copy(update={"max_age_s": 2 * 86_400})
    with pytest.raises(RegistryError, match="must be kept longer than ingest accepts"):
        ingest_options(longer_window)


def test_api_and_live_view_options(tmp_path: Path) -> None:
    settings = influx_settings(tmp_path)
    api = api_options(settings)
    assert (api.spool_dir, api.tokens_file) == (tmp_path / "spool", tmp_path / "tokens.json")
    assert api.limits.max_age == timedelta(hours=1)
    live = live_mqtt_options(settings)
    assert (live.host, live.port, live.username, live.password) == (
        "broker",
        1884,
        "ingest",
        "mqtt-s3cret",
    )
    assert not live.persistent
    assert "s3cret" not in repr(live)
    # Each API process subscribes under a client id of its own.
    assert live.client_id != live_mqtt_options(settings).client_id
