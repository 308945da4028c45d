"""The package installs anywhere: the built wheel, in a fresh virtualenv, runs ``trustwire demo``.

What this proves:

* the wheel carries what the installed program needs and the source tree is not on the path:
  ``trustwire demo`` runs from a directory outside the repository with only the wheel and
  its declared dependencies installed, and exits 0 (every proof of the demo holds);
* ``examples/`` is in the wheel exactly as in the repository (the build copies it), and so is
  the Apache-2.0 LICENSE;
* the image's way of installing works: ``requirements.lock`` (every pin hashed, wheels only)
  plus the wheel without dependencies is a complete, consistent set (``pip check``) that runs;
* no dependency needs a compiler: every requirement of the wheel resolves to a wheel
  (``pip download --only-binary=:all:``), as ``pipx install`` on a machine without one needs.

Building and installing takes a minute or two. The tests that need the package index skip,
saying so, when it cannot be reached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: one worker builds the wheel once per module run
pytestmark = pytest.mark.xdist_group("packaging")
EXAMPLES = ROOT / "examples"
LOCK = ROOT / "requirements.lock"


def _clean_env() -> dict[str, str]:
    """This environment without the checkout on PYTHONPATH or an active virtualenv or cluster."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "KUBECONFIG")}


def _pip(python: Path | str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    # Without PYTHONPATH: pip would take the checkout's trustwire for an installed one.
    return subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True, text=True, timeout=timeout, check=False, env=_clean_env(),
    )


@pytest.fixture(scope="module")
def index_reachable(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip unless pip can reach its package index (the build needs setuptools from it)."""
    probe = _pip(sys.executable, "download", "--no-deps", "--only-binary=:all:", "-d",
                 str(tmp_path_factory.mktemp("probe")), "attrs", timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"the package index is not reachable from here: {probe.stderr.strip()[-300:]}")


#: what a build never reads, and the build's own leftovers (a stale ``build/`` breaks the next build)
_NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "out", "*.egg-info", "__pycache__",
                                      ".*_cache", ".hypothesis")


@pytest.fixture(scope="module")
def wheel(index_reachable: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources: pip builds in the tree it is given."""
    source = tmp_path_factory.mktemp("source") / "trustwire"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCES)
    out = tmp_path_factory.mktemp("wheel")
    result = _pip(sys.executable, "wheel", str(source), "--no-deps", "-w", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("trustwire-*.whl")
    return built


def test_wheel_carries_the_examples_and_the_license(wheel: Path) -> None:
    prefix = "trustwire/demo/examples/"
    with zipfile.ZipFile(wheel) as zf:
        packaged = {n.removeprefix(prefix): zf.read(n) for n in zf.namelist() if n.startswith(prefix)}
        licenses = [n for n in zf.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert licenses and zf.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    in_repo = {p.relative_to(EXAMPLES).as_posix(): p.read_bytes() for p in EXAMPLES.rglob("*") if p.is_file()}
    assert packaged == in_repo
    assert "License-Expression: Apache-2.0" in metadata
    assert "pyjks" not in metadata.lower()


def test_installed_wheel_runs_the_demo_outside_the_repository(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    installed = _pip(python, "install", "--only-binary=:all:", str(wheel))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = _clean_env()
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = subprocess.run([str(python), "-c", "import trustwire; print(trustwire.__file__)"], cwd=workdir,
                           env=env, capture_output=True, text=True, timeout=60, check=True)
    assert where.stdout.startswith(str(env_dir)), where.stdout  # the installed copy, not the checkout
    demo = subprocess.run([str(env_dir / "bin" / "trustwire"), "demo"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]


def test_every_dependency_resolves_to_a_wheel(wheel: Path, tmp_path: Path) -> None:
    """No sdist anywhere in the dependency tree: installing needs no compiler."""
    result = _pip(sys.executable, "download", "--only-binary=:all:", "-d", str(tmp_path), str(wheel))
    assert result.returncode == 0, result.stdout + result.stderr
    downloaded = sorted(p.name for p in tmp_path.iterdir())
    assert downloaded and all(name.endswith(".whl") for name in downloaded), downloaded


def test_the_lock_and_the_wheel_install_as_the_image_does(wheel: Path, tmp_path: Path) -> None:
    """The Dockerfile's two pip steps, in a fresh venv: the lock is complete and consistent."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    steps = [
        ["install", "--require-hashes", "--only-binary=:all:", "-r", str(LOCK)],
        ["install", "--no-deps", str(wheel)],
        ["check"],
    ]
    for step in steps:
        result = _pip(python, *step)
        assert result.returncode == 0, " ".join(step) + "\n" + result.stdout[-4000:] + result.stderr[-4000:]
    helped = subprocess.run([str(env_dir / "bin" / "trustwire"), "--help"], cwd=tmp_path, env=_clean_env(),
                            capture_output=True, text=True, timeout=120, check=False)
    assert helped.returncode == 0, helped.stdout + helped.stderr
