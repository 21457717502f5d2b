"""README.md's Deploy section: its commands agree with the manifests, and the ones that can run here do."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.deploy import DEPLOY_DIR, REPO_ROOT, find, render


def _deploy_section() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index("\n## Deploy\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


README = _deploy_section()


def _code_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, re.S)


def test_secret_keys_in_the_commands_are_the_ones_the_deployment_reads() -> None:
    example = yaml.safe_load((DEPLOY_DIR / "secret.example.yaml").read_text())
    keys = set(re.findall(r"--from-literal=([a-z-]+)=", README))
    assert {"webhook-token", "slack-bot-token", "slack-signing-secret", "slack-app-token"} <= keys
    assert keys - {"webhook-token"} <= set(example["stringData"])
    # The Secret Alertmanager reads is the one the AlertmanagerConfig example names.
    cr = yaml.safe_load((DEPLOY_DIR / "alertmanager" / "alertmanagerconfig.yaml").read_text())
    creds = cr["spec"]["receivers"][0]["webhookConfigs"][0]["httpConfig"]["authorization"]["credentials"]
    assert f"create secret generic {creds['name']} --from-literal={creds['key']}=" in README


def test_the_check_config_command_passes() -> None:
    (line,) = [ln for block in _code_blocks() for ln in block.splitlines() if "pitcrew check-config" in ln]
    words = line.split()
    env = dict(w.split("=", 1) for w in words if re.fullmatch(r"[A-Z_]+=\S*", w))
    args = words[words.index("check-config") :]
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=REPO_ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO_ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "ok"), proc.stdout + proc.stderr


def test_the_files_and_objects_the_commands_name_exist() -> None:
    for path in set(re.findall(r"\b(deploy/[\w./-]+\.ya?ml)\b", README)):
        if "monitored-logging" not in path:
            assert (REPO_ROOT / path).is_file(), path
    objects = render()
    assert "kubectl apply -k deploy/" in README
    assert "kubectl apply -f deploy/namespace.yaml" in README
    assert "svc/pitcrew 8080:8080" in README
    assert "system:serviceaccount:pitcrew:pitcrew" in README
    assert [o["metadata"]["name"] for o in find(objects, "ServiceAccount")] == ["pitcrew"]


def test_the_more_namespaces_recipe_works(tmp_path: Path) -> None:
    (block,) = [b for b in _code_blocks() if "monitored-logging" in b]
    shutil.copytree(DEPLOY_DIR, tmp_path / "deploy")
    commands = "\n".join(ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#"))
    subprocess.run(["bash", "-euc", commands], cwd=tmp_path, check=True, timeout=30)
    # The two edits the recipe's comment asks for.
    kustomization = tmp_path / "deploy" / "kustomization.yaml"
    text = kustomization.read_text()
    kustomization.write_text(
        text.replace("  - monitored-namespace\n", "  - monitored-namespace\n  - monitored-logging\n")
    )
    objects = render(tmp_path / "deploy")
    assert {r["metadata"]["namespace"] for r in find(objects, "Role")} == {"monitoring", "logging"}
    assert {r["metadata"]["namespace"] for r in find(objects, "RoleBinding")} == {"monitoring", "logging"}
