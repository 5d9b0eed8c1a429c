"""helm/accesshub: lint, render, Kubernetes schema validation and the chart's promises."""
from __future__ import annotations

import copy
import json

import helm_python
import kubernetes_validate
import pytest
import yaml

from conftest import (CHART, NAMESPACE, RELEASE, SERVICES, VALUES_FILES, load_values, objects,
                      of_kind, render)

# Kubernetes version whose OpenAPI schemas the rendered objects are checked against.
KUBE_VERSION = "1.35.0"

ENV_CONTRACT = [
    "DATABASE_URL", "NATS_URL", "ACCESSHUB_ENCRYPTION_KEY", "ACCESSHUB_ADMIN_TOKEN",
    "ACCESSHUB_HTTP_ADDR", "ACCESSHUB_STREAM_REPLICAS", "ACCESSHUB_LOG_FORMAT", "RUST_LOG",
    "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
]
HOOK = "helm.sh/hook"


# ---------------------------------------------------------------- lint


@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_lint_clean(name):
    report = helm_python.lint(str(CHART), load_values(name), strict=True, namespace=NAMESPACE,
                              kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


# ---------------------------------------------------------------- schema validation


def validate_structure(obj: dict) -> None:
    assert isinstance(obj.get("apiVersion"), str) and "/" in obj["apiVersion"], obj
    assert isinstance(obj.get("kind"), str) and obj["kind"], obj
    md = obj.get("metadata") or {}
    assert md.get("name") and len(md["name"]) <= 63, md
    assert md.get("namespace") == NAMESPACE, md
    assert isinstance(obj.get("spec"), dict) and obj["spec"], obj


def test_every_object_validates(objs):
    assert objs
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.utils.SchemaNotFoundError:
            # CRDs (ServiceMonitor) have no schema in kubernetes-validate: check the shape.
            assert obj["apiVersion"] == "monitoring.coreos.com/v1", obj["kind"]
            validate_structure(obj)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {e.message} at {list(e.path)}")


def test_common_labels_and_namespace(objs):
    for obj in objs:
        labels = obj["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/name") == "accesshub", obj["metadata"]
        assert labels.get("app.kubernetes.io/instance") == RELEASE
        assert labels.get("app.kubernetes.io/managed-by") == "Helm"
        assert labels.get("helm.sh/chart", "").startswith("accesshub-")
        assert obj["metadata"]["namespace"] == NAMESPACE


# ---------------------------------------------------------------- workloads


def pod_specs(objs):
    for o in of_kind(objs, "Deployment") + of_kind(objs, "Job"):
        yield o, o["spec"]["template"]["spec"]


def test_deployment_per_enabled_service(variant, objs):
    values = load_values(variant)
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d
                   for d in of_kind(objs, "Deployment")}
    expected = {svc for key, svc in SERVICES.items()
                if values.get("services", {}).get(key, {}).get("enabled", True)}
    assert set(deployments) == expected
    for comp, d in deployments.items():
        container = d["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == [f"/usr/local/bin/{comp}"]
        sel = d["spec"]["selector"]["matchLabels"]
        pod_labels = d["spec"]["template"]["metadata"]["labels"]
        assert sel.items() <= pod_labels.items()


def test_every_container_has_probes_on_8080(objs):
    for d in of_kind(objs, "Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in c["ports"]
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, c["name"]
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, c["name"]


def test_every_container_has_requests_and_limits(objs):
    for owner, spec in pod_specs(objs):
        for c in spec.get("initContainers", []) + spec["containers"]:
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind, {})), (owner["metadata"]["name"], res)


def test_every_pod_and_container_is_locked_down(objs):
    for owner, spec in pod_specs(objs):
        name = owner["metadata"]["name"]
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, name
            assert sc["runAsUser"] == 10001, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in sc["capabilities"], name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
            tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1, name
            vol = next(v for v in spec["volumes"] if v["name"] == tmp[0]["name"])
            assert "emptyDir" in vol, name


def env_names(container: dict, objs: list[dict]) -> dict[str, object]:
    """Environment a container sees: its ConfigMap envFrom plus env (env wins)."""
    env: dict[str, object] = {}
    configmaps = {o["metadata"]["name"]: o for o in of_kind(objs, "ConfigMap")}
    for src in container.get("envFrom", []):
        env.update(configmaps[src["configMapRef"]["name"]]["data"])
    for e in container.get("env", []):
        env[e["name"]] = e.get("value", e.get("valueFrom"))
    return env


def test_env_contract(variant, objs):
    values = load_values(variant)
    mode = values.get("nats", {}).get("auth", {}).get("mode", "none")
    for d in of_kind(objs, "Deployment"):
        comp = d["metadata"]["labels"]["app.kubernetes.io/component"]
        c = d["spec"]["template"]["spec"]["containers"][0]
        env = env_names(c, objs)
        for name in ENV_CONTRACT:
            assert name in env, (comp, name)
        assert env["OTEL_SERVICE_NAME"] == comp
        assert env["ACCESSHUB_HTTP_ADDR"] == "0.0.0.0:8080"
        assert env["ACCESSHUB_LOG_FORMAT"] == "json"
        assert "k8s.pod.name=$(POD_NAME)" in env["OTEL_RESOURCE_ATTRIBUTES"]
        names = [e["name"] for e in c["env"]]
        # $(VAR) references only resolve to variables defined earlier in the list.
        assert names.index("POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")
        for secret_var in ("DATABASE_URL", "ACCESSHUB_ENCRYPTION_KEY", "ACCESSHUB_ADMIN_TOKEN"):
            assert "secretKeyRef" in env[secret_var], secret_var
        if values.get("otel", {}).get("endpoint"):
            assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == values["otel"]["endpoint"]
        else:
            assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
        if mode == "creds":
            assert env["NATS_CREDS"] == "/etc/accesshub/nats/nats.creds"
            mount = next(m for m in c["volumeMounts"] if m["name"] == "nats-creds")
            assert mount["mountPath"] == "/etc/accesshub/nats" and mount["readOnly"] is True
        else:
            assert "NATS_CREDS" not in env
        if mode == "userPassword":
            assert "secretKeyRef" in env["NATS_USER"] and "secretKeyRef" in env["NATS_PASSWORD"]
        else:
            assert "NATS_USER" not in env and "NATS_PASSWORD" not in env


def test_migrations_job_is_a_hook(variant, objs):
    jobs = of_kind(objs, "Job")
    assert len(jobs) == 1
    job = jobs[0]
    ann = job["metadata"]["annotations"]
    assert set(ann[HOOK].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in ann["helm.sh/hook-delete-policy"]
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["/usr/local/bin/accessctl", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    env = {e["name"]: e for e in c["env"]}
    secret_ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    existing = load_values(variant).get("secrets", {}).get("existingSecret")
    hook_secrets = [s for s in of_kind(objs, "Secret") if HOOK in s["metadata"]["annotations"]]
    if existing:
        # The existing Secret is there before the release, so the hook can read it.
        assert secret_ref["name"] == existing and hook_secrets == []
    else:
        # The release's own Secret does not exist yet at pre-install: a hook Secret that is
        # created before the Job (lower weight) carries DATABASE_URL.
        assert [s["metadata"]["name"] for s in hook_secrets] == [secret_ref["name"]]
        s_ann = hook_secrets[0]["metadata"]["annotations"]
        assert int(s_ann["helm.sh/hook-weight"]) < int(ann["helm.sh/hook-weight"])
        assert set(s_ann[HOOK].split(",")) == {"pre-install", "pre-upgrade"}
    # A hook must not reference objects the release creates later (ConfigMap, ServiceAccount).
    assert "envFrom" not in c
    sa = job["spec"]["template"]["spec"].get("serviceAccountName")
    assert sa is None or sa not in {o["metadata"]["name"] for o in of_kind(objs, "ServiceAccount")}


def test_secrets_and_references(variant, objs):
    values = load_values(variant)
    existing = values.get("secrets", {}).get("existingSecret")
    release_secrets = [s for s in of_kind(objs, "Secret") if HOOK not in s["metadata"]["annotations"]]
    if existing:
        assert release_secrets == []
    else:
        assert len(release_secrets) == 1
        data = release_secrets[0]["stringData"]
        assert {"DATABASE_URL", "ACCESSHUB_ENCRYPTION_KEY", "ACCESSHUB_ADMIN_TOKEN"} <= set(data)
    secret_names = {s["metadata"]["name"] for s in of_kind(objs, "Secret")}
    nats_existing = values.get("nats", {}).get("auth", {}).get("existingSecret")
    for d in of_kind(objs, "Deployment"):
        spec = d["spec"]["template"]["spec"]
        for e in spec["containers"][0]["env"]:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                assert ref["name"] in secret_names | {existing, nats_existing} - {None}, ref
        # Config changes roll the pods.
        assert "checksum/config" in d["spec"]["template"]["metadata"]["annotations"]


def test_services_select_pods(objs):
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in of_kind(objs, "Deployment")]
    for svc in of_kind(objs, "Service"):
        sel = svc["spec"]["selector"]
        assert any(sel.items() <= p.items() for p in pods), svc["metadata"]["name"]
        assert svc["spec"]["ports"][0]["targetPort"] == "http"
    ingest = [s for s in of_kind(objs, "Service") if s["metadata"]["name"].endswith("booking-ingest")]
    assert len(ingest) == 1 and ingest[0]["spec"]["ports"][0]["name"] == "http"


# ---------------------------------------------------------------- optional features


def test_defaults_leave_optional_features_off():
    objs = objects(render())
    kinds = {o["kind"] for o in objs}
    assert kinds == {"ConfigMap", "Secret", "ServiceAccount", "Deployment", "Service", "Job"}
    assert all(d["spec"]["replicas"] >= 1 for d in of_kind(objs, "Deployment"))


def test_all_features_render_everything():
    values = load_values("all-features")
    objs = objects(render(values))
    n = len(SERVICES)
    assert len(of_kind(objs, "HorizontalPodAutoscaler")) == n
    assert len(of_kind(objs, "PodDisruptionBudget")) == n
    assert len(of_kind(objs, "NetworkPolicy")) == n
    assert len(of_kind(objs, "ServiceMonitor")) == 1
    assert len(of_kind(objs, "Ingress")) == 1
    # booking-ingest's Service + a headless metrics Service for every other component
    assert len(of_kind(objs, "Service")) == n
    # HPA owns the replica count
    for d in of_kind(objs, "Deployment"):
        assert "replicas" not in d["spec"]
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert c["image"].startswith("registry.example.com/accesshub/accesshub:0.1.0-")
        tsc = d["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
        assert tsc["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == \
            d["metadata"]["labels"]["app.kubernetes.io/component"]
    ingest = next(d for d in of_kind(objs, "Deployment") if d["metadata"]["name"].endswith("booking-ingest"))
    assert ingest["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.1.0-ingest-hotfix")
    for hpa in of_kind(objs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment"
        assert target["name"] in {d["metadata"]["name"] for d in of_kind(objs, "Deployment")}
    pdb = {p["metadata"]["name"]: p["spec"] for p in of_kind(objs, "PodDisruptionBudget")}
    assert pdb[f"{RELEASE}-accesshub-booking-ingest"]["minAvailable"] == 1
    assert pdb[f"{RELEASE}-accesshub-tapkey-worker"]["maxUnavailable"] == "50%"
    sm = of_kind(objs, "ServiceMonitor")[0]
    assert sm["spec"]["endpoints"][0]["port"] == "http"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    monitored = [s for s in of_kind(objs, "Service")
                 if sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert len(monitored) == n
    ing = of_kind(objs, "Ingress")[0]
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{RELEASE}-accesshub-booking-ingest", "port": {"name": "http"}}
    for np in of_kind(objs, "NetworkPolicy"):
        assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        # Prometheus can scrape every component, booking-ingest included.
        assert {"from": values["networkPolicy"]["metricsFrom"],
                "ports": [{"port": "http", "protocol": "TCP"}]} in np["spec"]["ingress"]
        dns = np["spec"]["egress"][0]["ports"]
        assert {"port": 53, "protocol": "UDP"} in dns


def test_disabled_service_renders_nothing():
    values = load_values("all-features")
    values["services"]["dormakabaWorker"]["enabled"] = False
    objs = objects(render(values))
    names = [o["metadata"]["name"] for o in objs]
    assert not [n for n in names if "dormakaba" in n]


def test_release_name_containing_chart_name():
    objs = objects(render({}, name="accesshub"))
    assert "accesshub-booking-ingest" in {d["metadata"]["name"] for d in of_kind(objs, "Deployment")}


def test_notes_mention_every_enabled_service():
    notes = render()["accesshub/templates/NOTES.txt"]
    for svc in SERVICES.values():
        assert svc in notes
    assert "sync_interval: always" in notes


# ---------------------------------------------------------------- values.schema.json


@pytest.mark.parametrize("bad", [
    {"replicaCount": 2},                                          # unknown top-level key
    {"services": {"bookingIngest": {"replica": 2}}},              # typo in a service block
    {"services": {"billingWorker": {"enabled": True}}},           # unknown service
    {"nats": {"auth": {"mode": "token"}}},                        # not an allowed mode
    {"nats": {"url": "http://nats:4222"}},                        # not a NATS URL
    {"ingress": {"enabled": "yes"}},                              # wrong type
    {"services": {"tapkeyWorker": {"autoscaling": {"maxReplica": 3}}}},
    {"monitoring": {"serviceMonitor": {"enable": True}}},
])
def test_schema_rejects_bad_values(bad):
    with pytest.raises(helm_python.HelmValuesError, match="schema"):
        render(bad)


def test_schema_is_strict_where_it_matters():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert schema["definitions"]["service"]["additionalProperties"] is False
    assert set(schema["properties"]["services"]["properties"]) == set(SERVICES)
    # defaults and the test values files satisfy it
    with helm_python.Chart.load(str(CHART)) as chart:
        for name in VALUES_FILES:
            chart.validate_schema(load_values(name))


def test_values_yaml_documents_every_service():
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(defaults["services"]) == set(SERVICES)
    reference = copy.deepcopy(defaults["services"]["bookingIngest"])
    for key, block in defaults["services"].items():
        assert set(block) == set(reference), key
