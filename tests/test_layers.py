"""The import contract is ``[tool.importlinter]`` in pyproject.toml, checked by ``lint-imports``
(``.ci/run`` runs it before the suite). This test proves each contract can fail: a contract
whose module list stopped matching the package would otherwise pass in silence. It copies
the package, plants one violating module and expects the named contract to break.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

#: (contract id, module of the copy, a line to add): each breaks exactly the named contract.
#: An existing module (or package) gets the line appended; a new one is created (and needs a layer).
VIOLATIONS = [
    ("layers", "plan/_violation.py", "from trustwire.controller import reconciler\n"),
    ("layers", "_stray.py", "STRAY = 1\n"),
    ("pure", "pki/_violation.py", "import kubernetes\n"),
    ("pure", "names.py", "import aiohttp\n"),
    ("pure", "render.py", "from trustwire.k8s import client\n"),
    ("no-demo", "controller/_violation.py", "def f() -> None:\n    from trustwire.demo import run\n"),
    ("k8s", "controller/_violation.py", "import httptools\n"),
    ("k8s-domain", "k8s/_violation.py", "from trustwire import model\n"),
    ("readers", "metrics.py", "from trustwire.k8s import client\n"),
]


def lint_imports(package_parent: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    args = [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(REPO / "pyproject.toml")]
    args += [f"--contract={c}" for c in contracts]
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=package_parent, timeout=120)


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e '.[test]')")
def test_the_package_keeps_every_contract() -> None:
    result = lint_imports(REPO / "operator")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e '.[test]')")
@pytest.mark.parametrize(("contract", "module", "source"), VIOLATIONS, ids=[f"{c}:{m}" for c, m, _ in VIOLATIONS])
def test_a_planted_violation_breaks_its_contract(tmp_path: Path, contract: str, module: str, source: str) -> None:
    shutil.copytree(REPO / "operator" / "trustwire", tmp_path / "trustwire",
                    ignore=shutil.ignore_patterns("__pycache__"))
    planted = tmp_path / "trustwire" / module
    if not planted.exists() and planted.with_suffix("").is_dir():  # a module that has become a package
        planted = planted.with_suffix("") / "__init__.py"
    planted.write_text((planted.read_text() if planted.exists() else "") + source)
    result = lint_imports(tmp_path, contract)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout and "0 broken" not in result.stdout, result.stdout
