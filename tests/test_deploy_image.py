"""Dockerfile and .dockerignore: multi-stage, non-root, the base image pinnable by digest, the image runs
what deploy/deployment.yaml expects, and the build context (.dockerignore applied the way Docker applies it)
holds exactly what building the package needs: the package is built from that context here (no daemon)."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.support.deploy import DEPLOY_DIR, REPO_ROOT

DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
INSTRUCTIONS = [
    line
    for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def _stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for line in INSTRUCTIONS:
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def in_build_context(path: str, dockerignore: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matches a path or any of its parents."""
    rules = []
    for raw in dockerignore.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, _pattern_regex(line.lstrip("!").strip("/"))))
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for negated, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            included = negated
    return included


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("bot/cli/__init__.py", True),
        ("bot/slack/service.py", True),
        ("handlers/__init__.py", True),
        ("pyproject.toml", True),
        ("README.md", True),
        ("bot/__pycache__/cli.cpython-311.pyc", False),
        ("handlers/x.pyc", False),
        (".git/config", False),
        (".venv/bin/python", False),
        ("tests/test_deploy_image.py", False),
        ("pitcrew.db", False),
        ("deploy/config.yaml", False),
    ],
)
def test_build_context_is_the_allowlist(path: str, expected: bool) -> None:
    assert in_build_context(path, (REPO_ROOT / ".dockerignore").read_text()) is expected


def test_multi_stage_from_one_pinnable_base() -> None:
    stages = _stages()
    assert len(stages) >= 2
    (default,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", default)
    # Every stage starts from the same base (the venv links to the base's interpreter).
    assert {stage[0].split()[1] for stage in stages} == {"${PYTHON_IMAGE}"}
    # The digest pin is documented with the command that finds it.
    assert "--build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:" in DOCKERFILE
    assert "docker buildx imagetools inspect" in DOCKERFILE


def test_final_stage_runs_pitcrew_as_non_root_as_the_deployment_expects() -> None:
    final = _stages()[-1]
    (user,) = [line.split()[1] for line in final if line.startswith("USER ")]
    uid, gid = (int(x) for x in user.split(":"))
    assert uid > 0 and gid > 0
    (entrypoint,) = [line for line in final if line.startswith("ENTRYPOINT ")]
    assert entrypoint == 'ENTRYPOINT ["pitcrew"]'
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "pitcrew" in scripts
    deployment = yaml.safe_load((DEPLOY_DIR / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (cmd,) = [line for line in final if line.startswith("CMD ")]
    assert yaml.safe_load(cmd.removeprefix("CMD ")) == container["args"]
    (expose,) = [line for line in final if line.startswith("EXPOSE ")]
    assert int(expose.split()[1]) == container["ports"][0]["containerPort"]
    # Read-only root filesystem: nothing writes bytecode at run time, and HOME is on the /tmp emptyDir.
    env = " ".join(line for line in final if line.startswith("ENV "))
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "HOME=/tmp" in env
    # The final stage installs nothing: sources and build tools stay in the build stage.
    assert not [line for line in final if re.search(r"\bpip\b|apt-get", line)]


def _copy_sources() -> list[str]:
    sources: list[str] = []
    for line in INSTRUCTIONS:
        if line.startswith("COPY ") and "--from=" not in line:
            sources += line.split()[1:-1]
    return sources


def test_copied_sources_exist_and_are_in_the_context() -> None:
    dockerignore = (REPO_ROOT / ".dockerignore").read_text()
    sources = _copy_sources()
    assert set(sources) == {"pyproject.toml", "README.md", "bot", "handlers"}
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        assert in_build_context(source, dockerignore), source


def test_the_build_context_holds_the_whole_package(tmp_path: Path) -> None:
    # What `pip install .` in the build stage sees: the COPY'd files that .dockerignore lets through.
    # (Building the wheel here would need the network for the build backend; instead: the packages
    # pyproject.toml declares are all found in the context, and every module imports from it alone.)
    dockerignore = (REPO_ROOT / ".dockerignore").read_text()
    context = tmp_path / "context"
    for source in _copy_sources():
        origin = REPO_ROOT / source
        files = [origin] if origin.is_file() else [p for p in origin.rglob("*") if p.is_file()]
        for file in files:
            rel = file.relative_to(REPO_ROOT).as_posix()
            if in_build_context(rel, dockerignore):
                (context / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, context / rel)
    pyproject = tomllib.loads((context / "pyproject.toml").read_text())
    assert (context / pyproject["project"]["readme"]).is_file()
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    # setuptools' find_packages(include=...): directories with an __init__.py whose dotted name matches.
    found = {
        ".".join(p.parent.relative_to(context).parts)
        for p in context.rglob("__init__.py")
        if any(
            fnmatch.fnmatchcase(".".join(p.parent.relative_to(context).parts), pattern) for pattern in include
        )
    }
    in_repo = {
        ".".join(p.parent.relative_to(REPO_ROOT).parts)
        for top in ("bot", "handlers")
        for p in (REPO_ROOT / top).rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found == in_repo
    importer = (
        "import importlib, pkgutil, sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "import bot, handlers\n"
        "for pkg in (bot, handlers):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "files = [getattr(m, '__file__', None) or '' for m in list(sys.modules.values())]\n"
        # Only our packages count: the test's own virtual environment may live inside the repository.
        "ours = tuple(sys.argv[1] + top + '/' for top in ('bot', 'handlers'))\n"
        "assert not [f for f in files if f.startswith(ours)], 'imported from the repository'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", importer, str(REPO_ROOT) + "/", str(context)],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
