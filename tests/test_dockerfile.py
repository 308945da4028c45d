"""The operator image's Dockerfile, checked as text (no Docker engine is needed or used).

A small parser handles what the Dockerfile uses: comments, line continuations, stages,
exec-form (JSON) and shell-form instructions.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
LOCK = REPO_ROOT / "requirements.lock"
PYPROJECT = REPO_ROOT / "pyproject.toml"

PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")
BUILD_TOOLS = re.compile(
    r"\b(build-essential|gcc|g\+\+|clang|make|cmake|cc|libc6-dev|python3-dev|rustc|cargo)\b"
)


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> list[Stage]:
    logical: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by Docker
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        logical.append(buffer + line)
        buffer = ""
    assert not buffer, "Dockerfile ends inside a line continuation"

    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=words[0], name=name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, args))
    return stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def pip_commands(run: str) -> list[list[str]]:
    """Every pip / python -m pip invocation inside a shell-form RUN line."""
    found = []
    for part in re.split(r"&&|\|\||;", run):
        words = shlex.split(part)
        for i, word in enumerate(words):
            if Path(word).name in {"pip", "pip3"} or (
                Path(word).name.startswith("python") and words[i + 1 : i + 3] == ["-m", "pip"]
            ):
                found.append(words[i:])
                break
    return found


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_is_multi_stage(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    builder_names = {s.name for s in stages[:-1]}
    copies_from_builder = [
        c for c in stages[-1].all("COPY") if any(f"--from={n}" in c.args for n in builder_names if n)
    ]
    assert copies_from_builder, "the final stage must take its payload from a build stage"


def test_base_images_are_pinned(stages: list[Stage]) -> None:
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.image in names:
            continue  # FROM an earlier stage
        assert "latest" not in stage.image
        assert PINNED_PYTHON.match(stage.image), f"base image not pinned to an exact version: {stage.image}"


def test_builder_and_runtime_share_the_interpreter(stages: list[Stage]) -> None:
    """The venv copied across stages links to the builder's python: same image on both sides."""
    assert len({s.image for s in stages}) == 1


def test_final_stage_runs_as_numeric_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "final stage has no USER"
    user = users[-1].args
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER must be numeric (uid[:gid]) for runAsNonRoot: {user}"
    uid, _, gid = user.partition(":")
    assert int(uid) != 0
    assert not gid or int(gid) != 0
    # The user the Helm chart's values document (the chart pins no runAsUser, so this one applies).
    assert uid == "65532"


def test_final_stage_installs_no_build_tools(final: Stage) -> None:
    for run in final.all("RUN"):
        assert not BUILD_TOOLS.search(run.args), f"build tooling in the final stage: {run.args}"
        assert "apt-get install" not in run.args and "apk add" not in run.args


def test_no_stage_installs_a_compiler(stages: list[Stage]) -> None:
    """Every dependency comes as a wheel: the image needs no toolchain in any stage."""
    for stage in stages:
        for run in stage.all("RUN"):
            assert not BUILD_TOOLS.search(run.args), f"build tooling in stage {stage.name}: {run.args}"
            assert "apt-get install" not in run.args and "apk add" not in run.args


def _install_commands(stages: list[Stage]) -> list[list[str]]:
    return [cmd for s in stages for run in s.all("RUN") for cmd in pip_commands(run.args) if "install" in cmd]


def test_dependencies_come_from_the_hashed_lock_as_wheels(stages: list[Stage]) -> None:
    installs = _install_commands(stages)
    from_lock = [cmd for cmd in installs if "-r" in cmd and cmd[cmd.index("-r") + 1] == LOCK.name]
    assert from_lock, "no pip install -r requirements.lock"
    assert all("--require-hashes" in cmd and "--only-binary=:all:" in cmd for cmd in from_lock), from_lock
    copied = [w for s in stages for c in s.all("COPY") for w in c.args.split()[:-1]]
    assert LOCK.name in copied
    # Everything else pip installs (the project itself) brings nothing from outside the lock.
    for cmd in installs:
        if cmd not in from_lock:
            assert "--no-deps" in cmd and "--no-build-isolation" in cmd, " ".join(cmd)


def _lock_pins() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from requirements.lock; asserts every requirement is pinned and hashed."""
    pins: dict[str, tuple[str, list[str]]] = {}
    logical = re.sub(r"\\\n", " ", LOCK.read_text())
    for line in logical.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", words[0])
        assert match, f"not pinned with ==: {line}"
        hashes = [w.removeprefix("--hash=") for w in words[1:]]
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), f"unhashed: {line}"
        pins[canonicalize_name(match[1])] = (match[2], hashes)
    return pins


def test_lock_pins_every_dependency_of_the_project_and_its_build() -> None:
    pins = _lock_pins()
    project = tomllib.loads(PYPROJECT.read_text())
    wanted = [Requirement(r) for r in project["project"]["dependencies"] + project["build-system"]["requires"]]
    for req in wanted:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is not in {LOCK.name}: regenerate it (command in its header)"
        assert req.specifier.contains(pins[name][0], prereleases=True), f"{LOCK.name} pins {name}=={pins[name][0]}, "\
            f"outside {req}: regenerate it"


def test_pip_never_keeps_a_cache(stages: list[Stage]) -> None:
    commands = [cmd for s in stages for run in s.all("RUN") for cmd in pip_commands(run.args)]
    installs = [cmd for cmd in commands if "install" in cmd]
    assert installs, "no pip install found at all"
    for cmd in installs:
        assert "--no-cache-dir" in cmd, " ".join(cmd)


def test_final_stage_does_not_run_pip(final: Stage) -> None:
    assert not [cmd for run in final.all("RUN") for cmd in pip_commands(run.args)]


def test_project_is_installed_into_opt_venv(stages: list[Stage], final: Stage) -> None:
    build_runs = [r.args for s in stages[:-1] for r in s.all("RUN")]
    assert any("venv /opt/venv" in r for r in build_runs)
    installs = [cmd for r in build_runs for cmd in pip_commands(r) if "install" in cmd]
    assert any(cmd[-1] == "." for cmd in installs), "the project itself (pip install .) is not installed"
    assert any(c.args.split()[-2:] == ["/opt/venv", "/opt/venv"] for c in final.all("COPY"))
    env = " ".join(e.args for e in final.all("ENV"))
    assert "PATH=/opt/venv/bin:" in env


def test_entrypoint_and_cmd(final: Stage) -> None:
    assert exec_form(final.all("ENTRYPOINT")[-1].args) == ["trustwire"]
    cmd = exec_form(final.all("CMD")[-1].args)
    assert cmd[0] == "run"
    assert cmd == ["run", "--all-namespaces"]


def test_exposes_health_and_metrics_ports(final: Stage) -> None:
    exposed = {p for e in final.all("EXPOSE") for p in e.args.split()}
    assert {"8080", "9090"} <= exposed


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [
        ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "allow-list style: ignore everything, then re-include"
    included = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert included == {
        "requirements.lock", "pyproject.toml", "setup.py", "README.md", "LICENSE", "operator", "examples",
    }
    copied = {
        word.rstrip("/")
        for s in parse(DOCKERFILE.read_text())
        for c in s.all("COPY")
        if "--from=" not in c.args
        for word in c.args.split()[:-1]
    }
    assert copied <= included, f"COPY of files the .dockerignore leaves out: {copied - included}"


# --- the parser itself ---------------------------------------------------------------------------


def test_parser_sees_through_continuations_and_comments() -> None:
    stages = parse(
        "# c\nFROM python:3.11.14-slim-bookworm AS b\n"
        "RUN a \\\n  # inner\n  && pip install --no-cache-dir x\n"
        "FROM python:3.11.14-slim-bookworm\nUSER 1:1\n"
    )
    assert [(s.image, s.name) for s in stages] == [
        ("python:3.11.14-slim-bookworm", "b"),
        ("python:3.11.14-slim-bookworm", None),
    ]
    (run,) = stages[0].all("RUN")
    assert pip_commands(run.args) == [["pip", "install", "--no-cache-dir", "x"]]


@pytest.mark.parametrize(
    "image",
    ["python:3.11-slim", "python:latest", "python:3.11.14-slim", "python", "python:3.11.14-slim-bookworm@x"],
)
def test_pin_pattern_rejects_floating_tags(image: str) -> None:
    assert not PINNED_PYTHON.match(image)


def test_pip_detection_catches_a_cached_install() -> None:
    cmds = pip_commands("apt-get update && python -m pip install . && echo ok")
    assert cmds == [["python", "-m", "pip", "install", "."]]
    assert "--no-cache-dir" not in cmds[0]
