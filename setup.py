"""Build hook: the wheel carries the repository's ``examples/`` as ``trustwire/demo/examples``.

``trustwire demo`` applies ``examples/quickstart``; an installed package has no checkout to
read it from. ``examples/`` at the top of the repository stays the one source (users and the
integration tests read it there); the build copies it into the package, so there is never a
second copy to keep in step by hand. All other configuration is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

EXAMPLES = Path(__file__).resolve().parent / "examples"


class BuildPyWithExamples(build_py):
    """``build_py`` that also copies ``examples/`` (YAML and READMEs) into the built package."""

    def run(self) -> None:
        super().run()
        if not EXAMPLES.is_dir():
            raise SystemExit(f"examples/ is missing next to setup.py ({EXAMPLES}); the demo needs it in the wheel")
        target = Path(self.build_lib) / "trustwire" / "demo" / "examples"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]"))


setup(cmdclass={"build_py": BuildPyWithExamples})
