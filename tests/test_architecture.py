"""The import contracts (pyproject.toml `[tool.importlinter]`, explained in ARCHITECTURE.md) hold:
no import cycles between sibling modules, the layer order domain <- adapters <- services <-
wiring <- entry points, and one importer per SDK (its adapter). Checked by import-linter's
`lint-imports`, as CI runs it. And ARCHITECTURE.md names only paths that exist, and places
every module of the layers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports() -> str:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None, "lint-imports is not installed (pip install -e '.[test]')"
    return exe


def _run(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_lint_imports(), "--no-cache", "--no-logo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
    )


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def test_the_import_contracts_hold() -> None:
    proc = _run(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_every_module_of_bot_has_a_layer() -> None:
    # A module outside every layer would be unchecked: a new module must be placed in one.
    (layers,) = [c["layers"] for c in _contracts() if c["type"] == "layers"]
    assert isinstance(layers, list)
    placed = {name.strip() for layer in layers for name in layer.split(":")}
    modules = {
        f"bot.{p.stem if p.is_file() else p.name}"
        for p in (ROOT / "bot").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert modules - placed == set(), "add these to a layer in pyproject.toml"
    assert {m for m in placed if m.startswith("bot.")} - modules == set(), "layers name missing modules"
    assert "handlers" in placed


@pytest.mark.parametrize("broken", ["cycle", "upward", "sdk"])
def test_the_contracts_catch_a_cycle_an_upward_import_and_a_second_sdk_importer(
    tmp_path: Path, broken: str
) -> None:
    # The same contract types, on a tiny package that breaks one of them: lint-imports must fail.
    pkg = tmp_path / "demo"
    (pkg / "low").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("")
    (pkg / "high.py").write_text("from demo.low import a\n")
    (pkg / "low" / "a.py").write_text("")
    (pkg / "low" / "adapter.py").write_text("import yaml\n")  # yaml: an SDK whose adapter is demo.low
    if broken == "cycle":
        (pkg / "low" / "b.py").write_text("from demo.low import a\n")
        (pkg / "low" / "a.py").write_text("def f() -> None:\n    from demo.low import b\n")
    elif broken == "upward":
        (pkg / "low" / "a.py").write_text("from demo import high\n")
    else:
        (pkg / "high.py").write_text("import yaml\n\nfrom demo.low import a\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.importlinter]\nroot_packages = ["demo"]\ninclude_external_packages = true\n\n'
        '[[tool.importlinter.contracts]]\nname = "acyclic"\ntype = "acyclic_siblings"\n'
        'ancestors = ["demo"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "layers"\ntype = "layers"\n'
        'layers = ["demo.high", "demo.low"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "sdk"\ntype = "protected"\n'
        'protected_modules = ["yaml"]\nallowed_importers = ["demo.low"]\n'
    )
    proc = _run(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    expected = {"cycle": "acyclic", "upward": "layers", "sdk": "sdk"}[broken] + " BROKEN"
    assert expected in proc.stdout, proc.stdout


def test_architecture_md_names_only_paths_that_exist() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    # Every `path` it quotes that looks like a file or folder of the repository.
    paths = set(re.findall(r"`((?:bot|handlers|tests)/[\w/.]*)`", text))
    paths = {p for p in paths if "VERB" not in p and "AGGREGATE" not in p}
    assert len(paths) > 40, "the path of an alert and the rooms name the modules"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert missing == [], f"ARCHITECTURE.md names paths that do not exist: {missing}"


def test_architecture_md_places_every_layered_module() -> None:
    # The rooms table and the layers contract say the same: each module of a layer is named.
    text = (ROOT / "ARCHITECTURE.md").read_text()
    (layers,) = [c["layers"] for c in _contracts() if c["type"] == "layers"]
    assert isinstance(layers, list)
    modules = {name.strip() for layer in layers for name in layer.split(":")}
    unnamed = []
    for module in sorted(modules):
        path = module.replace(".", "/")
        if f"`{path}.py`" not in text and f"`{path}/`" not in text:
            unnamed.append(module)
    assert unnamed == [], f"ARCHITECTURE.md does not place: {unnamed}"
