"""Store specs: the one way every process names and opens its store."""

from __future__ import annotations

import pickle
from pathlib import Path
from uuid import uuid4

import pytest

from stallwatch.localservices import Influxd
from storage.influx.store import InfluxStore
from storage.spec import InfluxSpec, SQLiteSpec, open_store, parse_store_spec
from storage.sqlite import SQLiteStore


def test_parse_names_each_backend() -> None:
    assert parse_store_spec("sqlite:var/h.db") == SQLiteSpec(Path("var/h.db"))
    assert parse_store_spec("influx:http://db:8086/market/") == InfluxSpec(
        "http://db:8086", "market", create_database=True
    )


@pytest.mark.parametrize("text", ["postgres:x", "sqlite:", "influx:", "memory", "influx:market"])
def test_parse_refuses_what_it_cannot_open(text: str) -> None:
    with pytest.raises(ValueError, match="influx:http://host:8086/DATABASE"):
        parse_store_spec(text)


def test_secrets_stay_out_of_the_repr_but_cross_processes() -> None:
    spec = InfluxSpec("http://db:8086", "market", username="ingest", password="pw-s3cret")
    token_spec = InfluxSpec("http://db:8086", "market", token="tok-s3cret")
    assert "s3cret" not in repr(spec) + repr(token_spec)
    # The forwarder's child process gets the spec pickled: the secrets must survive that.
    assert pickle.loads(pickle.dumps(spec)) == spec  # noqa: S301 (bytes we just made)
    assert pickle.loads(pickle.dumps(token_spec)).token == "tok-s3cret"  # noqa: S301


def test_sqlite_spec_opens_a_file_in_a_new_directory(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "store.db"
    with open_store(SQLiteSpec(path)) as store:
        assert isinstance(store, SQLiteStore)
        assert store.latest_prices("nanmen") == []
    assert path.is_file()


@pytest.mark.influx
def test_influx_spec_opens_its_database(influx_server: Influxd) -> None:
    spec = InfluxSpec(
        influx_server.url, f"spec_{uuid4().hex[:12]}", create_database=True, batch_lines=7
    )
    with open_store(spec) as store:
        assert isinstance(store, InfluxStore)
        assert store.latest_prices("nanmen") == []
