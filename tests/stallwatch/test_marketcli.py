"""``stallwatch market import`` and ``export``: round trip, refusals that change nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from marketdb.database import open_database, session_factory
from marketdb.marketfile import load_registry
from schemas.registry import load_market
from stallwatch.cli import main
from tests.conftest import REPO

XIAOHE = REPO / "examples" / "markets" / "xiaohe.toml"


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'market.db'}"


def stored_markets(database: str) -> list[str]:
    with session_factory(open_database(database))() as session:
        return [market.id for market in load_registry(session)]


def test_import_then_export_gives_the_same_market(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["market", "--database", database, "import", str(XIAOHE)]) == 0
    assert "imported market xiaohe: 41 products, 8 vendors, 19 devices" in capsys.readouterr().out
    out = tmp_path / "exported.toml"

    assert main(["market", "--database", database, "export", "xiaohe", "--out", str(out)]) == 0

    assert load_market(out).spec == load_market(XIAOHE).spec


def test_a_bad_file_names_its_key_and_imports_nothing(
    database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "bad.toml"
    text = XIAOHE.read_text(encoding="utf-8")
    bad.write_text(text.replace('\nunit = "kg"', '\nunit = "liang"', 1), encoding="utf-8")

    assert main(["market", "--database", database, "import", str(bad)]) == 2

    assert re.search(r"bad.toml: .*\nproducts\.\d+\.unit\n", caplog.text)
    assert stored_markets(database) == []


def test_a_second_import_is_refused_unless_it_replaces(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["market", "--database", database, "import", str(XIAOHE)]
    assert main(command) == 0
    assert main(command) == 2
    assert "market 'xiaohe' exists" in capsys.readouterr().err
    assert main([*command, "--replace"]) == 0
    assert stored_markets(database) == ["xiaohe"]


def test_a_seeding_import_leaves_a_market_managers_edited_as_it_is(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a deployment runs on every start: the file seeds the database once."""
    from marketdb.management import Management

    seed = ["market", "--database", database, "import", str(XIAOHE), "--if-absent"]
    assert main(seed) == 0
    management = Management(session_factory(open_database(database)))
    first = management.vendors("xiaohe")[0]
    renamed = first.vendor.model_copy(update={"name": "改过的名字"})
    management.update_vendor("xiaohe", renamed, if_version=first.version, actor="manager")
    capsys.readouterr()

    assert main(seed) == 0

    assert "left as it is" in capsys.readouterr().out
    assert management.vendors("xiaohe")[0].vendor.name == "改过的名字"


def test_exporting_an_unknown_market_fails_with_its_name(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["market", "--database", database, "export", "nowhere"]) == 2
    assert "no market 'nowhere'" in capsys.readouterr().err


def test_ingest_with_neither_market_files_nor_markets_in_the_database_says_how_to_add_one(
    database: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("STALLWATCH_MARKETS", raising=False)
    monkeypatch.setenv("STALLWATCH_MARKET_DATABASE", database)

    assert main(["ingest"]) == 2

    assert "import a market file into the market database" in caplog.text


def test_a_bad_import_names_the_line_of_the_key(
    database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "bad.toml"
    lines = XIAOHE.read_text(encoding="utf-8").splitlines(keepends=True)
    number = next(n for n, line in enumerate(lines) if line.startswith('stall = "XH02"'))
    lines[number] = 'stall = "XH 02"\n'
    bad.write_text("".join(lines), encoding="utf-8")

    assert main(["market", "--database", database, "import", str(bad)]) == 2

    assert f"bad.toml: line {number + 1}: " in caplog.text
    assert re.search(r"\nvendors\.1\.stall\n", caplog.text)
    assert stored_markets(database) == []
