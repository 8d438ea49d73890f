"""Settings: environment, a TOML file and command-line overrides, in that order of weakness."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stallwatch.settings import Settings, StoreKind, load_settings


def test_no_secret_has_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MQTT_PASSWORD", "INFLUX_TOKEN", "INFLUX_PASSWORD", "API_TOKENS_FILE"):
        monkeypatch.delenv(f"STALLWATCH_{name}", raising=False)
    settings = load_settings()
    assert settings.mqtt_password is None
    assert settings.influx_token is None
    assert settings.influx_password is None
    assert settings.mqtt_password_value() is None


def test_flags_beat_environment_which_beats_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "stallwatch.toml"
    config.write_text(
        'influx_database = "from_file"\nmqtt_url = "mqtt://file:1884"\nstore = "influx"\n'
    )
    monkeypatch.setenv("STALLWATCH_MQTT_URL", "mqtt://env:1885")
    monkeypatch.setenv("STALLWATCH_MARKETS", "a.toml, b.toml")
    settings = load_settings(config, store="sqlite")
    assert settings.influx_database == "from_file"
    assert (settings.mqtt_host, settings.mqtt_port) == ("env", 1885)
    assert settings.store is StoreKind.SQLITE
    assert settings.markets == (Path("a.toml"), Path("b.toml"))
    assert type(settings) is Settings


def test_password_file_is_read_when_no_password_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("STALLWATCH_MQTT_PASSWORD_FILE", str(secret))
    monkeypatch.delenv("STALLWATCH_MQTT_PASSWORD", raising=False)
    assert load_settings().mqtt_password_value() == "s3cret"


@pytest.mark.parametrize(
    ("name", "value"),
    [("mqtt_url", "http://broker"), ("mqtt_receive_maximum", 0), ("store", "postgres")],
)
def test_bad_values_are_refused_with_the_field_named(name: str, value: object) -> None:
    with pytest.raises(ValidationError, match=name):
        load_settings(**{name: value})


def test_token_and_user_auth_for_influx_are_exclusive() -> None:
    with pytest.raises(ValidationError, match="not both"):
        load_settings(influx_token="t", influx_username="u")


def test_no_proxy_is_trusted_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STALLWATCH_TRUSTED_PROXIES", raising=False)
    assert load_settings().trusted_proxies == ()
    monkeypatch.setenv("STALLWATCH_TRUSTED_PROXIES", "10.0.0.2, 172.18.0.0/16")
    assert load_settings().trusted_proxies == ("10.0.0.2", "172.18.0.0/16")
    monkeypatch.setenv("STALLWATCH_TRUSTED_PROXIES", "*")
    with pytest.raises(ValidationError, match="trusted_proxies"):
        load_settings()
