"""The layers below the composition root import nothing from it.

``stallwatch/`` (the CLI, the web app, the demo) reads the settings and hands each
component its own options; a component that imported ``stallwatch`` would make the
root a dependency of the layers it wires.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO

#: Every package below the composition root.
LAYERS = ("api", "dashboard", "ingest", "schemas", "simulators", "storage")
ROOT_PACKAGE = "stallwatch"


def imported_modules(source: Path) -> Iterator[str]:
    """Every module ``source`` imports, at the top or inside a function."""
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"), str(source))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def imports_root(module: str) -> bool:
    return module == ROOT_PACKAGE or module.startswith(ROOT_PACKAGE + ".")


def test_no_layer_imports_the_composition_root() -> None:
    sources = [path for layer in LAYERS for path in sorted((REPO / layer).rglob("*.py"))]
    assert sources, "no sources found"
    offenders = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in sources
        for module in imported_modules(path)
        if imports_root(module)
    ]
    assert offenders == []
