"""Private files: written 0600 and atomically, read back as a model or a clear error."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import BaseModel

from storage.privatefiles import PRIVATE_MODE, PrivateFileError, read_private, write_private


class Secrets(BaseModel):
    names: list[str] = []


def test_a_written_file_is_the_owners_only_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "secrets.json"
    write_private(path, Secrets(names=["a"]).model_dump_json())
    assert stat.S_IMODE(path.stat().st_mode) == PRIVATE_MODE
    assert read_private(path, Secrets, "secrets file") == Secrets(names=["a"])
    assert [p.name for p in path.parent.iterdir()] == ["secrets.json"]  # no temporary left


def test_an_absent_file_is_none(tmp_path: Path) -> None:
    assert read_private(tmp_path / "missing.json", Secrets, "secrets file") is None


def test_a_damaged_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text('{"names": 3}')
    with pytest.raises(PrivateFileError, match=r"secrets\.json is not a valid secrets file"):
        read_private(path, Secrets, "secrets file")


def test_an_unreadable_path_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(PrivateFileError, match="cannot read secrets file"):
        read_private(tmp_path, Secrets, "secrets file")  # a directory
