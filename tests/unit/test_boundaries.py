"""One-way flow: pipelines imports neither Dagster nor the web stack; connectors and
dagster_project never import each other (the CLI, the composition root, is the exception)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _files("pipelines"), ids=lambda p: p.name)
def test_pipelines_is_framework_free(path: Path) -> None:
    forbidden = {"dagster", "aiohttp", "websockets", "connectors", "dagster_project"}
    assert not _imports(path) & forbidden


@pytest.mark.parametrize(
    "path",
    [p for p in _files("connectors") if "cli" not in p.parts],
    ids=lambda p: p.name,
)
def test_connectors_do_not_import_dagster(path: Path) -> None:
    assert not _imports(path) & {"dagster", "dagster_project"}


@pytest.mark.parametrize("path", _files("dagster_project"), ids=lambda p: p.name)
def test_dagster_project_does_not_import_connectors(path: Path) -> None:
    assert "connectors" not in _imports(path)
