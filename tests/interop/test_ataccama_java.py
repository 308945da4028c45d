"""The rendered examples/dpm-dpe-jwt properties, read by java.util.Properties.

``AtaccamaProperties.java`` (next to this file) is compiled with ``javac`` and loads each
module's rendered file the way the Ataccama product does; it checks the generator key
and every jwt-keys entry itself, and prints every property so that this test compares
each value with the expected one. Skipped only when ``javac``/``java`` are missing.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from tests.plan.test_ataccama_properties import EXPECTED, render

from .conftest import require_tool, run

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    javac, java = require_tool("javac"), require_tool("java")
    build = tmp_path_factory.mktemp("ataccama-java")
    shutil.copy(Path(__file__).with_name("AtaccamaProperties.java"), build / "AtaccamaProperties.java")
    result = run([javac, "-d", str(build), str(build / "AtaccamaProperties.java")], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return java, build


@pytest.mark.parametrize("module", ["dpm", "dpe"])
def test_java_properties_reads_every_value(checker: tuple[str, Path], module: str, tmp_path: Path) -> None:
    java, build = checker
    path = tmp_path / "application.properties"
    path.write_text(render(module), encoding="iso-8859-1")  # how Properties.load(InputStream) reads it
    result = run([java, "-cp", str(build), "AtaccamaProperties", str(path)], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    from_java = {base64.b64decode(k).decode(): base64.b64decode(v).decode()
                 for k, v in (line.split(" ") for line in result.stdout.splitlines())}
    assert from_java == EXPECTED[module]
