"""Import contract (docs/design.md §6): pure layers never import kopf/kubernetes or the I/O layers.

Checked twice, because each check misses something the other sees:

* statically, from every module's AST — every ``import`` and ``from … import`` including
  function-local and relative ones and ``importlib.import_module("…")`` with a literal
  name, followed transitively through trustwire's own modules;
* dynamically, by importing each module in a fresh interpreter whose ``sys.modules``
  is poisoned (``None``) for the forbidden names, so any import at load time fails.

The self-tests at the end prove both checkers flag a synthetic violating module.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "operator" / "trustwire"

THIRD_PARTY_IO = ("kopf", "kubernetes", "aiohttp", "httptools", "kmock")
IO_LAYERS = (
    "trustwire.k8s",
    "trustwire.controller",
    "trustwire.handlers",
    "trustwire.runtime",
    "trustwire.cli",
    "trustwire.demo",
    "trustwire.emulator",
)

#: (description, which modules the rule covers, forbidden module prefixes)
PURE_PREFIXES = ("trustwire.pki", "trustwire.model", "trustwire.plan", "trustwire.render", "trustwire.names")
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "pure": (PURE_PREFIXES, THIRD_PARTY_IO + IO_LAYERS),
    "k8s": (
        ("trustwire.k8s",),
        (
            "kopf",
            "trustwire.controller",
            "trustwire.handlers",
            "trustwire.cli",
            "trustwire.runtime",
            "trustwire.demo",
        ),
    ),
    "controller": (
        ("trustwire.controller",),
        ("kopf", "trustwire.handlers", "trustwire.cli", "trustwire.runtime", "trustwire.demo"),
    ),
}


# ======================================================================================
# Static checker
# ======================================================================================
def discover(root: Path, package: str = "trustwire") -> dict[str, Path]:
    """Module name → file, for every ``.py`` file under ``root``."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join([package, *parts])] = path
    return modules


def _matches(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """Every module name ``source`` may import (``from a import b`` gives both ``a`` and ``a.b``)."""
    tree = ast.parse(source)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            func = node.func
            called = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            if called in ("import_module", "__import__"):
                names.add(node.args[0].value)
    return names


def direct_imports(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    return {
        name: imported_names(path.read_text(), name, path.name == "__init__.py")
        for name, path in modules.items()
    }


def _own_module(name: str, modules: Mapping[str, Path]) -> str | None:
    """The trustwire module an imported name refers to (longest known prefix)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def violations(
    modules: Mapping[str, Path],
    covered: Iterable[str],
    forbidden: Iterable[str],
    imports: Mapping[str, set[str]] | None = None,
) -> dict[str, list[str]]:
    """For each covered module: the forbidden imports of it and of every trustwire module it reaches."""
    covered, forbidden = tuple(covered), tuple(forbidden)
    imports = imports if imports is not None else direct_imports(modules)
    found: dict[str, list[str]] = {}
    for start in sorted(m for m in modules if _matches(m, covered)):
        seen, stack, bad = {start}, [start], []
        while stack:
            current = stack.pop()
            # importing a.b.c also runs a/__init__ and a/b/__init__
            parents = [".".join(current.split(".")[:i]) for i in range(1, current.count(".") + 1)]
            for name in sorted(imports.get(current, set())):
                if _matches(name, forbidden):
                    bad.append(
                        f"{current} imports {name}"
                        if current == start
                        else f"{start} → … → {current} imports {name}"
                    )
                target = _own_module(name, modules)
                if target is not None and target not in seen and not _matches(target, forbidden):
                    seen.add(target)
                    stack.append(target)
            for parent in parents:
                if parent in modules and parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        if bad:
            found[start] = sorted(set(bad))
    return found


# ======================================================================================
# Dynamic checker
# ======================================================================================
_PROBE = textwrap.dedent("""
    import importlib, json, sys
    forbidden, modules = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    for name in forbidden:
        sys.modules[name] = None  # "import name" now raises ImportError
    failures = {}
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            failures[module] = f"{type(exc).__name__}: {exc}"
    leaked = sorted(n for n in sys.modules if sys.modules[n] is not None
                    and any(n == f or n.startswith(f + ".") for f in forbidden))
    print(json.dumps({"failures": failures, "leaked": leaked}))
""")


def import_with_poison(
    modules: list[str], forbidden: Iterable[str], extra_path: Path | None = None
) -> dict[str, object]:
    env = dict(os.environ)
    paths = [str(PACKAGE_ROOT.parent)] + ([str(extra_path)] if extra_path else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(sorted(forbidden)), json.dumps(modules)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


# ======================================================================================
# The contract
# ======================================================================================
@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    found = discover(PACKAGE_ROOT)
    # sanity: the discovery sees the layers the rules talk about
    for expected in (
        "trustwire",
        "trustwire.model",
        "trustwire.pki.certs",
        "trustwire.plan.identity",
        "trustwire.render",
        "trustwire.names",
        "trustwire.k8s.client",
        "trustwire.controller.reconciler",
    ):
        assert expected in found
    return found


@pytest.mark.parametrize("rule", sorted(RULES))
def test_static_import_contract(modules: dict[str, Path], rule: str) -> None:
    covered, forbidden = RULES[rule]
    assert any(_matches(m, covered) for m in modules)
    assert violations(modules, covered, forbidden) == {}


def test_package_init_is_pure(modules: dict[str, Path]) -> None:
    """``trustwire/__init__.py`` runs whenever any pure module is imported."""
    imports = direct_imports({"trustwire": modules["trustwire"]})["trustwire"]
    assert not [n for n in imports if _matches(n, THIRD_PARTY_IO + IO_LAYERS)]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_dynamic_import_contract(modules: dict[str, Path], rule: str) -> None:
    covered, forbidden = RULES[rule]
    targets = sorted(m for m in modules if _matches(m, covered))
    report = import_with_poison(targets, forbidden)
    assert report == {"failures": {}, "leaked": []}


# ======================================================================================
# Self-tests: both checkers flag a synthetic violating module
# ======================================================================================
VIOLATING = textwrap.dedent("""
    from __future__ import annotations

    import importlib
    import json

    from .. import k8s
    from trustwire.controller.queue import WorkQueue


    def lazy():
        import kopf
        from kubernetes import client
        return importlib.import_module("aiohttp"), kopf, client

    class Later:
        def method(self):
            from ..handlers import build_registry
            return build_registry
""")


def test_static_checker_flags_every_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / "trustwire"
    (package / "plan").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plan" / "__init__.py").write_text("")
    (package / "plan" / "evil.py").write_text(VIOLATING)
    (package / "plan" / "clean.py").write_text("import json\nfrom trustwire import names\n")
    fake = discover(package)
    assert set(fake) == {"trustwire", "trustwire.plan", "trustwire.plan.evil", "trustwire.plan.clean"}
    covered, forbidden = RULES["pure"]
    found = violations(fake, covered, forbidden)
    assert set(found) == {"trustwire.plan.evil"}
    flagged = {line.rsplit(" imports ", 1)[1] for line in found["trustwire.plan.evil"]}
    assert {
        "trustwire.k8s",
        "trustwire.controller.queue",
        "kopf",
        "kubernetes",
        "aiohttp",
        "trustwire.handlers",
    } <= flagged


def test_static_checker_follows_imports_transitively(tmp_path: Path) -> None:
    package = tmp_path / "trustwire"
    (package / "plan").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plan" / "__init__.py").write_text("")
    (package / "plan" / "innocent.py").write_text("from trustwire import helpers\n")
    (package / "helpers.py").write_text("def f():\n    import kubernetes\n")  # not a pure module itself
    found = violations(discover(package), *RULES["pure"])
    assert found == {
        "trustwire.plan.innocent": ["trustwire.plan.innocent → … → trustwire.helpers imports kubernetes"]
    }


def test_static_checker_sees_a_dirty_package_init(tmp_path: Path) -> None:
    package = tmp_path / "trustwire"
    (package / "plan").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plan" / "__init__.py").write_text("import aiohttp\n")
    (package / "plan" / "leaf.py").write_text("import json\n")
    found = violations(discover(package), *RULES["pure"])
    assert "trustwire.plan.leaf" in found
    assert any("aiohttp" in line for line in found["trustwire.plan.leaf"])


@pytest.mark.parametrize(
    ("module", "is_package", "source", "expected"),
    [
        (
            "trustwire.plan.identity",
            False,
            "from ..k8s import client",
            {"trustwire.k8s", "trustwire.k8s.client"},
        ),
        ("trustwire.plan", True, "from . import identity", {"trustwire.plan", "trustwire.plan.identity"}),
        ("trustwire.plan", True, "from .. import cli", {"trustwire", "trustwire.cli"}),
        ("trustwire.x", False, "__import__('kopf')", {"kopf"}),
        ("trustwire.x", False, "import kubernetes.client as k", {"kubernetes.client"}),
    ],
)
def test_relative_and_dynamic_imports_are_resolved(
    module: str, is_package: bool, source: str, expected: set[str]
) -> None:
    assert imported_names(source, module, is_package) == expected


def test_dynamic_checker_flags_a_module_importing_kopf(tmp_path: Path) -> None:
    (tmp_path / "tw_probe_bad.py").write_text("import json\nimport kopf\n")
    (tmp_path / "tw_probe_good.py").write_text("import json\n")
    report = import_with_poison(["tw_probe_bad", "tw_probe_good"], RULES["pure"][1], extra_path=tmp_path)
    failures = report["failures"]
    assert isinstance(failures, dict)
    assert set(failures) == {"tw_probe_bad"}
    assert "kopf" in failures["tw_probe_bad"]


def test_dynamic_checker_flags_an_indirect_import(tmp_path: Path) -> None:
    (tmp_path / "tw_probe_indirect.py").write_text("import tw_probe_middle\n")
    (tmp_path / "tw_probe_middle.py").write_text("from trustwire.k8s import client\n")
    report = import_with_poison(["tw_probe_indirect"], RULES["pure"][1], extra_path=tmp_path)
    failures = report["failures"]
    assert isinstance(failures, dict)
    assert set(failures) == {"tw_probe_indirect"}


def test_only_the_static_checker_sees_function_local_imports(tmp_path: Path) -> None:
    """Why both checks exist: a lazy import passes at load time but is still a violation."""
    (tmp_path / "tw_probe_lazy.py").write_text("def f():\n    import kopf\n    return kopf\n")
    assert import_with_poison(["tw_probe_lazy"], RULES["pure"][1], extra_path=tmp_path) == {
        "failures": {},
        "leaked": [],
    }
    names = imported_names((tmp_path / "tw_probe_lazy.py").read_text(), "tw_probe_lazy", False)
    assert "kopf" in names
