"""The architecture as a machine checks it: import-linter's contracts in pyproject.toml
(floors that import only downward, no cycles, the view's style and the engine's plain
interpreter standing alone), and no module importing another's private name."""
from __future__ import annotations

import ast
import pathlib
import shutil
import subprocess

import pytest

from clirun import ROOT

PKG = pathlib.Path(ROOT) / "gradcalc"


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports") or pytest.skip("import-linter is not installed")
    p = subprocess.run([exe, "--config", str(pathlib.Path(ROOT) / "pyproject.toml")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "0 broken" in p.stdout


def test_no_module_imports_a_private_name_of_another():
    problems = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(
                    "gradcalc")):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        problems.append(f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}")
    assert not problems, problems


def test_every_module_opens_with_what_it_owns():
    """Each module says in its docstring what it owns (STYLE.md's habit)."""
    missing = [str(p.relative_to(ROOT)) for p in sorted(PKG.rglob("*.py"))
               if p.name != "__main__.py" and not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, missing


def test_the_engine_reads_in_one_sitting():
    """The plain forward and backward together stay under 200 lines (issue 9)."""
    tree = ast.parse((PKG / "engine" / "plain.py").read_text())
    sizes = {f.name: f.end_lineno - f.lineno + 1 for f in tree.body
             if isinstance(f, ast.FunctionDef)}
    assert sizes["forward"] + sizes["backward"] < 200, sizes
