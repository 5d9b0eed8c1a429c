"""The production topology (docs/deploy.md "Production topology", issue 25 item 5).

- deploy/nats/values-nats.yaml rendered with the **official NATS chart** (vendored unchanged in
  tests/chart/vendor/nats, nats-io/k8s chart 2.14.2, Apache-2.0): every object validates against
  the Kubernetes schemas, the server config is a 3-node cluster with JetStream on file storage
  (a PVC per node) and `sync_interval: always`.
- deploy/postgres/cnpg-cluster.yaml validated against **CloudNativePG's Cluster CRD** schema
  (vendored in tests/chart/vendor/cloudnative-pg, Apache-2.0), strictly: no key the CRD does not
  know, 3 instances, quorum synchronous replication, anti-affinity.
- helm/accesshub with tests/chart/values-production.yaml: every node in NATS_URL, R3 streams, the
  Secret holding DATABASE_URL, two replicas of every service.
"""
from __future__ import annotations

import re
from pathlib import Path

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import CHART, HERE, REPO, objects, of_kind

KUBE_VERSION = "1.35.0"
NATS_CHART = HERE / "vendor" / "nats"
NATS_VALUES = REPO / "deploy" / "nats" / "values-nats.yaml"
CNPG_CRD = HERE / "vendor" / "cloudnative-pg" / "postgresql.cnpg.io_clusters.yaml"
CNPG_CLUSTER = REPO / "deploy" / "postgres" / "cnpg-cluster.yaml"
PROD_VALUES = HERE / "values-production.yaml"


def render_chart(chart: Path, values: dict, name: str, namespace: str) -> list[dict]:
    with helm_python.Chart.load(str(chart)) as c:
        rendered = c.render(values=values, name=name, namespace=namespace, is_install=True)
    return objects(rendered)


@pytest.fixture(scope="module")
def nats_objs() -> list[dict]:
    return render_chart(NATS_CHART, yaml.safe_load(NATS_VALUES.read_text()), "nats", "nats")


@pytest.fixture(scope="module")
def nats_conf(nats_objs) -> str:
    cms = [o for o in of_kind(nats_objs, "ConfigMap") if "nats.conf" in (o.get("data") or {})]
    assert len(cms) == 1, [o["metadata"]["name"] for o in of_kind(nats_objs, "ConfigMap")]
    return cms[0]["data"]["nats.conf"]


def test_nats_chart_renders_valid_kubernetes_objects(nats_objs):
    kinds = {o["kind"] for o in nats_objs}
    assert {"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds, kinds
    for obj in nats_objs:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {e.message} at {list(e.path)}")


def test_nats_is_a_three_node_statefulset_with_a_volume_per_node(nats_objs):
    (sts,) = of_kind(nats_objs, "StatefulSet")
    assert sts["spec"]["replicas"] == 3
    claims = sts["spec"].get("volumeClaimTemplates") or []
    assert claims, "JetStream data on a PersistentVolumeClaim per node"
    assert claims[0]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    spread = sts["spec"]["template"]["spec"].get("topologySpreadConstraints") or []
    assert any(c["topologyKey"] == "kubernetes.io/hostname" for c in spread), spread
    (pdb,) = of_kind(nats_objs, "PodDisruptionBudget")
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable"), pdb


def block(conf: str, name: str) -> str:
    """The body of the top-level `"name": { ... }` block of the rendered server config."""
    m = re.search(r'"?' + name + r'"?\s*:?\s*\{([^{}]*)\}', conf)
    assert m, f"no {name} block in\n{conf}"
    return m.group(1)


def test_nats_config_clusters_three_routes_with_jetstream_on_fsynced_files(nats_conf):
    cluster = block(nats_conf, "cluster")
    routes = re.findall(r"nats://nats-[0-9]\.nats-headless:6222", cluster)
    assert len(routes) == 3, cluster
    js = block(nats_conf, "jetstream")
    assert re.search(r'"store_dir":\s*"/data"', js), js
    assert re.search(r'"sync_interval":\s*"always"', js), js
    assert re.search(r'"max_memory_store":\s*0\b', js), js


def cnpg_schema() -> dict:
    crd = yaml.safe_load(CNPG_CRD.read_text())
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return v1["schema"]["openAPIV3Schema"]


def unknown_keys(doc, schema: dict, path: str = "") -> list[str]:
    """Keys the CRD's schema does not declare (the API server would prune them silently)."""
    out = []
    if isinstance(doc, dict) and "properties" in schema:
        for k, v in doc.items():
            if k not in schema["properties"]:
                out.append(f"{path}.{k}")
            else:
                out += unknown_keys(v, schema["properties"][k], f"{path}.{k}")
    elif isinstance(doc, list) and "items" in schema:
        for i, v in enumerate(doc):
            out += unknown_keys(v, schema["items"], f"{path}[{i}]")
    return out


def test_cloudnative_pg_cluster_validates_against_the_crd():
    schema = cnpg_schema()
    doc = yaml.safe_load(CNPG_CLUSTER.read_text())
    assert doc["apiVersion"] == "postgresql.cnpg.io/v1" and doc["kind"] == "Cluster"
    jsonschema.validate(doc, schema)
    assert unknown_keys(doc, schema) == []
    # The strict check bites: a misspelt key is reported, a wrong enum value refused.
    assert unknown_keys({"spec": {"instance": 3}}, schema) == [".spec.instance"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**doc, "spec": {**doc["spec"], "postgresql": {
            "synchronous": {"method": "all", "number": 1}}}}, schema)


def test_cloudnative_pg_cluster_is_ha_with_synchronous_commits():
    spec = yaml.safe_load(CNPG_CLUSTER.read_text())["spec"]
    assert spec["instances"] >= 3
    sync = spec["postgresql"]["synchronous"]
    assert sync["method"] == "any" and sync["number"] >= 1
    assert sync["dataDurability"] == "required"
    assert spec["affinity"]["enablePodAntiAffinity"] is True
    assert spec["affinity"]["podAntiAffinityType"] == "required"
    assert spec["bootstrap"]["initdb"]["database"] == "accesshub"


@pytest.fixture(scope="module")
def prod_objs() -> list[dict]:
    with helm_python.Chart.load(str(CHART)) as c:
        rendered = c.render(values=yaml.safe_load(PROD_VALUES.read_text()), name="ah",
                            namespace="accesshub", is_install=True)
    return objects(rendered)


def env_of(dep: dict) -> dict:
    (c,) = [c for c in dep["spec"]["template"]["spec"]["containers"]]
    return {e["name"]: e for e in c.get("env", [])}


def test_accesshub_on_the_production_topology(prod_objs):
    deps = of_kind(prod_objs, "Deployment")
    assert len(deps) >= 6
    values = yaml.safe_load(PROD_VALUES.read_text())
    for obj in prod_objs:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.utils.SchemaNotFoundError:
            pass
    for dep in deps:
        name = dep["metadata"]["name"]
        if "admin" in name:
            continue
        assert dep["spec"]["replicas"] == 2, name
    configmaps = {k: v for cm in of_kind(prod_objs, "ConfigMap") for k, v in
                  (cm.get("data") or {}).items()}
    assert configmaps.get("NATS_URL") == values["nats"]["url"]
    assert len(configmaps["NATS_URL"].split(",")) == 3
    assert configmaps.get("ACCESSHUB_STREAM_REPLICAS") == "3"
    secret_refs = {e["valueFrom"]["secretKeyRef"]["name"]
                   for dep in deps for e in env_of(dep).values()
                   if e["name"] == "DATABASE_URL" and "valueFrom" in e}
    via_env_from = {s["secretRef"]["name"] for dep in deps
                    for c in dep["spec"]["template"]["spec"]["containers"]
                    for s in c.get("envFrom", []) if "secretRef" in s}
    assert "accesshub-prod" in secret_refs | via_env_from
