"""helm/accesshub-edge: the hotel's edge (docs/deploy.md "On-premises lock servers").

Rendered with the real Helm engine like the main chart, every object validated against the
Kubernetes schemas, and the chart's promises checked: outbound only (no Service, no host port,
the leaf node's client port on the pod's loopback), the relay is `dormakaba-worker edge` of the
same image, the leaf configuration comes from a Secret, and missing settings fail the render.
"""
from __future__ import annotations

import helm_python
import kubernetes_validate
import pytest
import yaml

from conftest import NAMESPACE, REPO

EDGE_CHART = REPO / "helm" / "accesshub-edge"
KUBE_VERSION = "1.35.0"
VALUES = {
    "edge": {"tenant": "acme", "site": "amsterdam",
             "lockUrl": "http://10.0.0.5/MessengerPMSWS"},
    "leaf": {"existingSecret": "accesshub-edge"},
}


def render(values: dict) -> list[dict]:
    with helm_python.Chart.load(str(EDGE_CHART)) as chart:
        out = chart.render(values=values, name="edge", namespace=NAMESPACE, is_install=True)
    objs = []
    for path, text in sorted(out.items()):
        if path.endswith((".yaml", ".yml")):
            objs.extend(d for d in yaml.safe_load_all(text) if d)
    return objs


def test_lint_clean():
    report = helm_python.lint(str(EDGE_CHART), VALUES, strict=True, namespace=NAMESPACE,
                              kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_objects_validate_and_nothing_listens_outside():
    objs = render(VALUES)
    assert [o["kind"] for o in objs] == ["Deployment"], "no Service, no Ingress: outbound only"
    for o in objs:
        kubernetes_validate.validate(o, KUBE_VERSION, strict=True)
    pod = objs[0]["spec"]["template"]["spec"]
    assert not pod.get("hostNetwork")
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"nats-leaf", "relay"}
    for c in containers.values():
        assert all("hostPort" not in p for p in c.get("ports", []))
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    relay = containers["relay"]
    assert relay["command"] == ["dormakaba-worker"] and relay["args"] == ["edge"]
    env = {e["name"]: e.get("value") for e in relay["env"]}
    assert env["NATS_URL"] == "nats://127.0.0.1:4222"
    assert env["ACCESSHUB_EDGE_TENANT"] == "acme"
    assert env["ACCESSHUB_EDGE_SITE"] == "amsterdam"
    assert env["ACCESSHUB_EDGE_LOCK_URL"] == "http://10.0.0.5/MessengerPMSWS"
    assert "DATABASE_URL" not in env, "the edge has no database"
    assert relay["readinessProbe"]["httpGet"]["path"] == "/readyz"
    leaf = containers["nats-leaf"]
    assert leaf["args"] == ["-c", "/etc/nats/nats-server.conf"]
    secret = next(v for v in pod["volumes"] if v["name"] == "leaf")["secret"]
    assert secret["secretName"] == "accesshub-edge"
    assert objs[0]["spec"]["replicas"] == 1, "one relay per site"


@pytest.mark.parametrize("missing", ["tenant", "site", "lockUrl"])
def test_missing_edge_settings_fail(missing):
    values = {"edge": dict(VALUES["edge"]), "leaf": dict(VALUES["leaf"])}
    values["edge"][missing] = ""
    with pytest.raises(Exception):
        render(values)


def test_missing_leaf_secret_fails():
    with pytest.raises(Exception):
        render({"edge": VALUES["edge"], "leaf": {"existingSecret": ""}})


@pytest.mark.parametrize("bad", [
    {"edge": {"tenant": "acme", "site": "a.b", "lockUrl": "http://x"}},
    {"edge": {"tenant": "acme", "site": "a", "lockUrl": "ftp://x"}},
    {"unknown": 1},
])
def test_schema_rejects_bad_values(bad):
    values = {**VALUES, **bad}
    with pytest.raises(Exception):
        render(values)
