"""The layering rules, checked on the source: core/ is usable without a UI or web framework; pages
and the API reach storage only through the ChatService facade; no module uses another's private names.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FACADE_ONLY = ("ui", "server")  # thin layers: read settings, call the facade, render
HIDDEN = re.compile(r"(?<!core)\.(persister|writers|runs|_catalog|_persister|conversation_lock)\b")


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders if (ROOT / folder).exists() for p in (ROOT / folder).rglob("*.py"))


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import statement of a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


@pytest.mark.parametrize("path", sources("core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_never_imports_a_ui_or_web_framework(path):
    banned = {module for module, _ in imports(path) if module.split(".")[0] in {"streamlit", "fastapi", "starlette"}}
    assert not banned, f"{path} imports {banned}"


@pytest.mark.parametrize("path", sources(*FACADE_ONLY), ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_and_the_api_use_only_the_facade(path):
    storage = [module for module, _ in imports(path) if module.startswith("core.storage")]
    assert not storage, f"{path} imports {storage}: use the ChatService facade (core/chat.py)"
    reached = HIDDEN.findall(path.read_text())
    assert not reached, f"{path} reaches the service's internals: {reached}"


@pytest.mark.parametrize("path", sources("core", *FACADE_ONLY, "bench"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_another_modules_private_names(path):
    private = [(module, name) for module, names in imports(path) if module.startswith(("core", "ui", "server"))
               for name in names if name.startswith("_") and not name.startswith("__")]
    assert not private, f"{path} imports private names {private}"


def test_outside_storage_only_the_package_front_is_imported():
    """Storage is one package: other code imports `core.storage`, not its modules (bench may read the schema)."""
    offenders = [(str(path.relative_to(ROOT)), module) for path in sources("core", *FACADE_ONLY)
                 if "storage" not in path.parts for module, _ in imports(path) if module.startswith("core.storage.")]
    assert offenders == []
