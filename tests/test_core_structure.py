"""The core's shape: no import cycle through the registry, no reads of others' private state."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wsregistry

PACKAGE = Path(wsregistry.__file__).parent
CORE = sorted(
    [
        *(p for p in PACKAGE.glob("*.py") if p.name != "__init__.py"),
        PACKAGE / "backends" / "base.py",
        PACKAGE / "backends" / "memory.py",
    ]
)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_core_module_imports_the_registry(path: Path) -> None:
    if path.name == "registry.py":
        return
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            assert node.module.split(".")[-1] != "registry", f"{path.name} imports the registry"


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_core_module_reads_another_objects_private_attributes(path: Path) -> None:
    reaches = []
    for node in ast.walk(_tree(path)):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in {"self", "cls"}:
            continue
        if isinstance(owner, ast.Call) and getattr(owner.func, "id", None) == "super":
            continue  # its own inherited implementation
        reaches.append(f"line {node.lineno}: .{name}")
    assert reaches == [], f"{path.name} reaches into private state: {reaches}"
