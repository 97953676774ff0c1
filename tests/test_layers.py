"""The layers hold: the cores load neither Django nor torch, and distillation does not reach into annotations."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORES = ["distillation/ml", "annotations/analysis"]


def _modules_under(folder: str) -> list[str]:
    return sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / folder).rglob("*.py")
    )


def test_importing_every_core_module_loads_neither_django_nor_torch():
    modules = [name for folder in CORES for name in _modules_under(folder)]
    assert "distillation.ml.records" in modules and "annotations.analysis.report" in modules
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in ('django', 'torch', 'transformers') if m in sys.modules)))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # no DJANGO_SETTINGS_MODULE: nothing may need it
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"a core module loaded {result.stdout.strip()}"


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module an `import` or `from ... import` names in a file, wherever the statement stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_no_module_under_distillation_imports_annotations():
    offending = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted((ROOT / "distillation").rglob("*.py"))
        for line, module in _imported_modules(path)
        if module == "annotations" or module.startswith("annotations.")
    ]
    assert offending == []


def test_the_import_check_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from annotations.models import Study\n    import annotations.jobs\n")
    assert _imported_modules(sample) == [(2, "annotations.models"), (3, "annotations.jobs")]
