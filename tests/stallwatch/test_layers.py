"""The layers below the composition root import nothing from it, nor each other's renderers.

``stallwatch/`` (the CLI, the web app, the demo) reads the settings and hands each
component its own options; a component that imported ``stallwatch`` would make the
root a dependency of the layers it wires.

The API and the dashboard render what the read core (``marketview/``) reads; neither
calls the other, and the read core knows neither.

The MQTT adapter (``mqttedge/``) sits below both of its users, ingest and the read
core, so it may import neither of them (nor anything that renders).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

#: Every package below the composition root.
LAYERS = (
    "api",
    "dashboard",
    "ingest",
    "marketdb",
    "marketview",
    "mqttedge",
    "schemas",
    "simulators",
    "storage",
    "webpage",
)
ROOT_PACKAGE = "stallwatch"


def imported_modules(source: Path) -> Iterator[str]:
    """Every module ``source`` imports, at the top or inside a function."""
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"), str(source))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def imports_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def imports_root(module: str) -> bool:
    return imports_package(module, ROOT_PACKAGE)


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


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("dashboard", ("api",)),
        ("api", ("dashboard",)),
        ("marketview", ("api", "dashboard")),
        ("webpage", ("api", "dashboard")),
        # The market database is below everything that manages or renders it.
        ("marketdb", ("api", "dashboard", "ingest", "marketview", "webpage")),
        ("mqttedge", ("ingest", "marketview", "api", "dashboard", "webpage", "simulators")),
    ],
)
def test_renderers_import_only_the_read_core(layer: str, forbidden: tuple[str, ...]) -> None:
    sources = sorted((REPO / layer).rglob("*.py"))
    assert sources, f"no sources found in {layer}/"
    offenders = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in sources
        for module in imported_modules(path)
        if any(imports_package(module, package) for package in forbidden)
    ]
    assert offenders == []
