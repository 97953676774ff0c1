"""The two locks: the runtime one holds everything the site imports and no development tool."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV_TOOLS = {"ruff", "pytest", "pytest-django", "pytest-timeout", "playwright", "pip-audit"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "-r ")):
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned"
            pins[_normalise(name)] = version
    return pins


def _third_party_imports() -> set[str]:
    local = {"evalsite", "distillation", "annotations", "tests"}
    found = set()
    for app in ("evalsite", "distillation", "annotations"):
        for path in (ROOT / app).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name not in local}


def test_the_development_lock_includes_the_runtime_lock_and_pins_the_tools():
    runtime, dev = _pins(ROOT / "requirements.txt"), _pins(ROOT / "requirements-dev.txt")
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert not set(runtime) & set(dev), "a package is pinned twice"
    assert set(dev) >= DEV_TOOLS
    assert not DEV_TOOLS & set(runtime), "a deployment would install test tools"


def test_every_package_the_apps_import_is_in_the_runtime_lock():
    runtime = _pins(ROOT / "requirements.txt")
    distributions = importlib.metadata.packages_distributions()
    missing = {
        module: distributions.get(module)
        for module in _third_party_imports()
        if not any(_normalise(dist) in runtime for dist in distributions.get(module, []))
    }
    assert missing == {}
