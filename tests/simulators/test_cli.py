"""``stallwatch simulate`` as mounted by the main CLI."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.registry import Registry, load_market
from simulators.cli import build_parser, device_passwords, run
from stallwatch.brokerauth import load_device_passwords, write_broker_auth
from stallwatch.localservices import Mosquitto
from storage.sqlite import SQLiteStore
from tests.conftest import EXAMPLE_MARKET
from tests.simulators.conftest import XIAOHE


def _parse(*argv: str) -> argparse.Namespace:
    top = argparse.ArgumentParser(prog="stallwatch")
    build_parser(top.add_subparsers(dest="command", required=True))
    return top.parse_args(["simulate", *argv])


def test_live_options_parse() -> None:
    args = _parse(
        "--market",
        str(EXAMPLE_MARKET),
        "--broker",
        "mqtt://h:1884",
        "--speed",
        "max",
        "--date",
        "2026-11-21",
    )
    assert args.simulate_mode is None
    assert args.markets == [EXAMPLE_MARKET]
    assert args.speed == 0
    assert str(args.date) == "2026-11-21"


def test_shared_options_may_come_before_the_sub_command() -> None:
    args = _parse(
        "--market", str(XIAOHE), "--seed", "5", "history", "--days", "3", "--store", "memory"
    )
    assert (args.simulate_mode, args.markets, args.seed, args.days) == ("history", [XIAOHE], 5, 3)
    args = _parse("history", "--market", str(XIAOHE), "--store", "memory")
    assert (args.markets, args.seed) == ([XIAOHE], 1)


def test_history_into_a_sqlite_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    market_file = tmp_path / "scaled.toml"
    args = _parse(
        "history",
        "--market", str(XIAOHE),
        "--days", "1",
        "--start", "2026-11-21",
        "--vendors", "12",
        "--store", f"sqlite:{tmp_path / 'h.db'}",
        "--write-market", str(market_file),
    )  # fmt: skip
    assert run(args) == 0
    assert "xiaohe: 1 days from 2026-11-21" in capsys.readouterr().out
    assert len(load_market(market_file).spec.vendors) == 12
    assert (tmp_path / "h.db").stat().st_size > 0


def test_history_into_two_stores_at_once(tmp_path: Path) -> None:
    args = _parse(
        "history",
        "--market", str(XIAOHE),
        "--days", "1",
        "--start", "2026-11-21",
        "--store", f"sqlite:{tmp_path / 'a.db'}",
        "--store", f"sqlite:{tmp_path / 'b.db'}",
    )  # fmt: skip
    assert run(args) == 0
    start = datetime(2026, 11, 21, tzinfo=UTC)
    with SQLiteStore(tmp_path / "a.db") as a, SQLiteStore(tmp_path / "b.db") as b:
        sales = a.sales("xiaohe", start, start + timedelta(days=2))
        assert sales
        assert b.sales("xiaohe", start, start + timedelta(days=2)) == sales


def test_market_writes_a_scaled_market_file(tmp_path: Path) -> None:
    out = tmp_path / "big.toml"
    assert (
        run(
            _parse("market", "--market", str(EXAMPLE_MARKET), "--vendors", "300", "--out", str(out))
        )
        == 0
    )
    assert len(load_market(out).spec.vendors) == 300


def test_bad_input_is_reported_not_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(_parse("history", "--market", str(XIAOHE), "--store", "postgres:x")) == 2
    assert "unknown store" in capsys.readouterr().err
    assert run(_parse("history", "--store", "memory")) == 2
    assert (
        run(
            _parse(
                "market", "--market", str(tmp_path / "missing.toml"), "--vendors", "3", "--out", "x"
            )
        )
        == 2
    )


@pytest.mark.mosquitto
def test_load_and_live_against_a_broker(
    mosquitto_server: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    url = mosquitto_server.url
    assert run(_parse("--market", str(XIAOHE), "--broker", url, "load", "-n", "500")) == 0
    assert "500/500 acknowledged" in capsys.readouterr().out
    live = _parse(
        "--market", str(XIAOHE), "--broker", url, "--speed", "max", "--date", "2026-11-21"
    )
    assert run(live) == 0
    assert "acked" in capsys.readouterr().out


def test_configured_markets_are_the_default(tmp_path: Path) -> None:
    out = tmp_path / "small.toml"
    args = _parse("market", "--vendors", "2", "--out", str(out))
    assert run(args, default_markets=[XIAOHE]) == 0
    assert load_market(out).id == "xiaohe"


def test_password_file_may_be_broker_auth_credentials(tmp_path: Path) -> None:
    """``--password-file`` takes the ``credentials.json`` that ``stallwatch broker-auth`` writes."""
    files = write_broker_auth(Registry([load_market(XIAOHE)]), tmp_path / "auth")
    passwords = device_passwords(files.credentials)
    assert passwords == load_device_passwords(files.credentials)
    assert set(passwords) == set(load_market(XIAOHE).devices)
