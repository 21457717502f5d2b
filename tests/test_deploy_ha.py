"""deploy/components/ha, rendered by the real kustomize (`kubectl kustomize`) on top of deploy/: two
replicas spread over nodes with a rolling update, a PodDisruptionBudget, no SQLite volume, the
PostgreSQL password from the Secret, and a config pitcrew accepts with ha.enabled on PostgreSQL whose
Lease is the one the RBAC grants. (RBAC exactness: tests/test_zz_deploy_rbac.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.config import parse_config
from tests.support.deploy import only
from tests.test_zz_deploy_rbac import render_with_component


@pytest.fixture
def rendered(tmp_path: Path) -> list[dict[str, Any]]:
    return render_with_component(tmp_path, "ha")


def test_two_replicas_spread_over_nodes_with_a_disruption_budget(rendered: list[dict[str, Any]]) -> None:
    deployment = only(rendered, "Deployment", "pitcrew")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod_labels = spec["template"]["metadata"]["labels"]
    (spread,) = spec["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["maxSkew"] == 1
    assert spread["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    pdb = only(rendered, "PodDisruptionBudget", "pitcrew")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # The store is PostgreSQL: no ReadWriteOnce claim that could not follow two pods.
    assert [o for o in rendered if o["kind"] == "PersistentVolumeClaim"] == []
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert "persistentVolumeClaim" not in volumes["data"] and "emptyDir" in volumes["data"]


def test_config_is_ha_on_postgresql_with_the_password_from_the_secret(rendered: list[dict[str, Any]]) -> None:
    deployment = only(rendered, "Deployment", "pitcrew")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("valueFrom", {}) for e in container["env"]}
    assert env["PITCREW_PG_PASSWORD"] == {"secretKeyRef": {"name": "pitcrew", "key": "pg-password"}}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    (configmap,) = [
        o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("pitcrew-config")
    ]
    names = {
        v["configMap"]["name"] for v in deployment["spec"]["template"]["spec"]["volumes"] if "configMap" in v
    }
    assert configmap["metadata"]["name"] in names
    import yaml

    data = yaml.safe_load(configmap["data"]["config.yaml"])
    env_values = {
        "PITCREW_PG_PASSWORD": "pw",
        "PITCREW_WEBHOOK_TOKEN": "t" * 32,
        "SLACK_BOT_TOKEN": "x",
        "SLACK_SIGNING_SECRET": "y",
    }
    config = parse_config(data, env=env_values)
    assert config.ha.enabled and config.store.backend == "postgresql"
    assert config.store.url is not None and "@" in config.store.url and ":pw@" not in config.store.url
    role = only(rendered, "Role", "pitcrew-leader-election")
    assert role["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert [r.get("resourceNames") for r in role["rules"] if r.get("resourceNames")] == [
        [config.ha.lease_name]
    ]


def test_the_cloudnativepg_example_is_what_the_config_points_at(rendered: list[dict[str, Any]]) -> None:
    import urllib.parse

    import yaml

    example = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "deploy/components/ha/cloudnativepg.example.yaml").read_text()
    )
    assert (example["apiVersion"], example["kind"]) == ("postgresql.cnpg.io/v1", "Cluster")
    (configmap,) = [
        o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("pitcrew-config")
    ]
    url = urllib.parse.urlsplit(yaml.safe_load(configmap["data"]["config.yaml"])["store"]["url"])
    meta, initdb = example["metadata"], example["spec"]["bootstrap"]["initdb"]
    assert url.hostname == f"{meta['name']}-rw.{meta['namespace']}.svc"
    assert (url.username, url.path.strip("/")) == (initdb["owner"], initdb["database"])
