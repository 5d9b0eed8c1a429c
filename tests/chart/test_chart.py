"""helm/accesshub: lint, render, Kubernetes schema validation and the chart's promises."""
from __future__ import annotations

import base64
import copy
import json
import re
import shutil

import helm_python
import kubernetes_validate
import pytest
import yaml

from conftest import (BY_COMPONENT, CHART, NAMESPACE, RELEASE, SERVICES, VALUES_FILES, component,
                      load_values, objects, of_kind, render, with_required)

# Kubernetes version whose OpenAPI schemas the rendered objects are checked against.
KUBE_VERSION = "1.35.0"

# What every service container gets. ACCESSHUB_ADMIN_TOKEN is not in it: only accesshub-admin
# gets the bootstrap admin token (test_admin_token_only_in_the_admin_api).
ENV_CONTRACT = [
    "DATABASE_URL", "NATS_URL", "ACCESSHUB_ENCRYPTION_KEY",
    "ACCESSHUB_HTTP_ADDR", "ACCESSHUB_STREAM_REPLICAS", "ACCESSHUB_LOG_FORMAT", "RUST_LOG",
    "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
]
HOOK = "helm.sh/hook"
ADMIN = f"{RELEASE}-accesshub-admin"                      # the admin API's Deployment and Service
INGEST = f"{RELEASE}-accesshub-booking-ingest"


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
    expected = {component(svc) for key, svc in SERVICES.items()
                if values.get("services", {}).get(key, {}).get("enabled", True)}
    assert set(deployments) == expected
    assert "admin" in expected                      # every variant runs the admin API
    for comp, d in deployments.items():
        assert d["metadata"]["name"] == f"{RELEASE}-accesshub-{comp}"
        container = d["spec"]["template"]["spec"]["containers"][0]
        assert container["name"] == BY_COMPONENT[comp]
        assert container["command"] == [f"/usr/local/bin/{BY_COMPONENT[comp]}"]
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
    mode = values.get("nats", {}).get("auth", {}).get("mode", "userPassword")
    for d in of_kind(objs, "Deployment"):
        comp = d["metadata"]["labels"]["app.kubernetes.io/component"]
        c = d["spec"]["template"]["spec"]["containers"][0]
        env = env_names(c, objs)
        for name in ENV_CONTRACT:
            assert name in env, (comp, name)
        assert env["OTEL_SERVICE_NAME"] == BY_COMPONENT[comp]
        assert env["ACCESSHUB_HTTP_ADDR"] == "0.0.0.0:8080"
        assert env["ACCESSHUB_LOG_FORMAT"] == "json"
        assert "k8s.pod.name=$(POD_NAME)" in env["OTEL_RESOURCE_ATTRIBUTES"]
        names = [e["name"] for e in c["env"]]
        # $(VAR) references only resolve to variables defined earlier in the list.
        assert names.index("POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")
        for secret_var in ("DATABASE_URL", "ACCESSHUB_ENCRYPTION_KEY"):
            assert "secretKeyRef" in env[secret_var], secret_var
        assert ("ACCESSHUB_ADMIN_TOKEN" in env) == (comp == "admin"), comp
        if values.get("otel", {}).get("endpoint"):
            assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == values["otel"]["endpoint"]
        else:
            assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
        service = BY_COMPONENT[comp]
        if mode == "creds":
            assert env["NATS_CREDS"] == "/etc/accesshub/nats/nats.creds"
            mount = next(m for m in c["volumeMounts"] if m["name"] == "nats-creds")
            assert mount["mountPath"] == "/etc/accesshub/nats" and mount["readOnly"] is True
            vol = next(v for v in d["spec"]["template"]["spec"]["volumes"] if v["name"] == "nats-creds")
            assert vol["secret"]["items"] == [{"key": f"{service}.creds", "path": "nats.creds"}]
        else:
            assert "NATS_CREDS" not in env
        if mode == "userPassword":
            # Each service is the NATS user of its own name (deploy/nats/permissions.yaml).
            assert env["NATS_USER"] == service
            assert env["NATS_PASSWORD"]["secretKeyRef"]["key"] == service
        else:
            assert "NATS_USER" not in env and "NATS_PASSWORD" not in env
        if mode != "none":
            assert env["NATS_INBOX_PREFIX"] == f"_INBOX.{service}"


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
    hook_secrets = [s for s in of_kind(objs, "Secret") if HOOK in s["metadata"]["annotations"]
                    and s["metadata"]["name"] != f"{RELEASE}-accesshub-nats"]
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


def test_streams_are_applied_by_the_migrations_job_as_their_own_identity(variant, objs):
    """Issue 23: streams are created and changed in one place only, the migrations Job's init
    container `accessctl streams apply`, as NATS user accesshub-streams; no service pod holds
    that identity (services only check the streams)."""
    values = load_values(variant)
    mode = values.get("nats", {}).get("auth", {}).get("mode", "userPassword")
    job = of_kind(objs, "Job")[0]
    ann = job["metadata"]["annotations"]
    spec = job["spec"]["template"]["spec"]
    [init] = spec["initContainers"]
    assert init["command"] == ["/usr/local/bin/accessctl", "streams", "apply"]
    env = {e["name"]: e for e in init["env"]}
    # The services' stream settings (replicas) and NATS address, inline like the migrations'.
    assert "NATS_URL" in env and "ACCESSHUB_STREAM_REPLICAS" in env
    assert "envFrom" not in init
    nats_secret = values.get("nats", {}).get("auth", {}).get("existingSecret") or f"{RELEASE}-accesshub-nats"
    if mode == "userPassword":
        assert env["NATS_USER"]["value"] == "accesshub-streams"
        assert env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": nats_secret,
                                                                     "key": "accesshub-streams"}
    if mode == "creds":
        vol = next(v for v in spec["volumes"] if v["name"] == "nats-creds")
        assert vol["secret"]["items"] == [{"key": "accesshub-streams.creds", "path": "nats.creds"}]
    if mode != "none":
        assert env["NATS_INBOX_PREFIX"]["value"] == "_INBOX.accesshub-streams"
    if mode != "none" and not values.get("nats", {}).get("auth", {}).get("existingSecret"):
        # The chart's NATS Secret must exist before the Job on the first install: a hook of
        # lower weight, never deleted with the release.
        secret = next(s for s in of_kind(objs, "Secret") if s["metadata"]["name"] == nats_secret)
        s_ann = secret["metadata"]["annotations"]
        assert set(s_ann[HOOK].split(",")) == {"pre-install", "pre-upgrade"}
        assert int(s_ann["helm.sh/hook-weight"]) < int(ann["helm.sh/hook-weight"])
        assert s_ann["helm.sh/resource-policy"] == "keep"
        key = "accesshub-streams" if mode == "userPassword" else "accesshub-streams.creds"
        assert key in (secret.get("data") or {})
    # The migrate container itself needs no NATS identity.
    migrate = {e["name"] for e in spec["containers"][0]["env"]}
    assert not {"NATS_USER", "NATS_PASSWORD"} & migrate
    for d in of_kind(objs, "Deployment"):
        assert container_env(d).get("NATS_USER", {}).get("value") != "accesshub-streams"


def test_secrets_and_references(variant, objs):
    values = load_values(variant)
    existing = values.get("secrets", {}).get("existingSecret")
    nats_secret = f"{RELEASE}-accesshub-nats"
    release_secrets = [s for s in of_kind(objs, "Secret") if HOOK not in s["metadata"]["annotations"]
                       and s["metadata"]["name"] != nats_secret]
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
    assert kinds == {"ConfigMap", "Secret", "ServiceAccount", "Deployment", "Service", "Job",
                     "NetworkPolicy"}
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
    assert pdb[ADMIN]["minAvailable"] == 1
    assert {h["spec"]["scaleTargetRef"]["name"]: h["spec"]["maxReplicas"]
            for h in of_kind(objs, "HorizontalPodAutoscaler")}[ADMIN] == 3
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
    deployments = {d["metadata"]["name"] for d in of_kind(objs, "Deployment")}
    assert {"accesshub-booking-ingest", "accesshub-admin"} <= deployments
    assert "accesshub-admin" in {s["metadata"]["name"] for s in of_kind(objs, "Service")}
    reconciler = next(d for d in of_kind(objs, "Deployment") if d["metadata"]["name"] == "accesshub-reconciler")
    env = {e["name"]: e for e in reconciler["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ACCESSHUB_API_URL"]["value"] == "http://accesshub-admin:8080/admin/v1"


def test_notes_mention_every_enabled_service():
    notes = render()["accesshub/templates/NOTES.txt"]
    for svc in SERVICES.values():
        assert svc in notes
    assert "sync_interval: always" in notes
    # The admin API is announced at its own Service, not at booking-ingest.
    assert f"http://{ADMIN}:8080/admin/v1" in notes
    assert f"port-forward svc/{ADMIN} " in notes


# ---------------------------------------------------------------- admin API (accesshub-admin)


def deployment(objs: list[dict], name: str) -> dict:
    found = [d for d in of_kind(objs, "Deployment") if d["metadata"]["name"] == name]
    assert len(found) == 1, name
    return found[0]


def container_env(d: dict) -> dict[str, dict]:
    return {e["name"]: e for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_admin_deployment_and_cluster_internal_service(variant, objs):
    values = load_values(variant)
    port = values.get("adminService", {}).get("port", 8080)
    d = deployment(objs, ADMIN)
    assert d["metadata"]["labels"]["app.kubernetes.io/component"] == "admin"
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["/usr/local/bin/accesshub-admin"]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    env = env_names(c, objs)
    assert env["OTEL_SERVICE_NAME"] == "accesshub-admin"
    assert env["ACCESSHUB_HTTP_ADDR"] == "0.0.0.0:8080"       # /admin/v1, probes and /metrics
    if "autoscaling" not in values.get("services", {}).get("admin", {}):
        assert d["spec"]["replicas"] == 1

    services = {s["metadata"]["name"]: s for s in of_kind(objs, "Service")}
    svc = services[ADMIN]
    assert svc["spec"]["type"] == "ClusterIP"
    assert "clusterIP" not in svc["spec"]                      # a real virtual IP, not headless
    assert not {"externalIPs", "loadBalancerIP", "externalName"} & set(svc["spec"])
    assert svc["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http",
                                     "protocol": "TCP"}]
    # It selects the admin pods and nothing else (booking-ingest is not behind it).
    assert svc["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "admin"
    assert svc["metadata"]["labels"]["accesshub.io/metrics"] == "true"
    if values.get("adminService", {}).get("annotations"):
        assert svc["metadata"]["annotations"] == values["adminService"]["annotations"]


def test_admin_service_stays_cluster_ip_whatever_booking_ingest_uses():
    objs = objects(render({"service": {"type": "LoadBalancer"}, "adminService": {"port": 9443}}))
    services = {s["metadata"]["name"]: s["spec"] for s in of_kind(objs, "Service")}
    assert services[INGEST]["type"] == "LoadBalancer"
    assert services[ADMIN]["type"] == "ClusterIP"
    assert services[ADMIN]["ports"][0]["port"] == 9443
    env = container_env(deployment(objs, f"{RELEASE}-accesshub-reconciler"))
    assert env["ACCESSHUB_API_URL"]["value"] == f"http://{ADMIN}:9443/admin/v1"


def test_admin_token_only_in_the_admin_api(variant, objs):
    existing = load_values(variant).get("secrets", {}).get("existingSecret")
    secret = existing or f"{RELEASE}-accesshub"
    for d in of_kind(objs, "Deployment"):
        comp = d["metadata"]["labels"]["app.kubernetes.io/component"]
        c = d["spec"]["template"]["spec"]["containers"][0]
        env = env_names(c, objs)
        if comp == "admin":
            assert env["ACCESSHUB_ADMIN_TOKEN"] == {
                "secretKeyRef": {"name": secret, "key": "ACCESSHUB_ADMIN_TOKEN"}}
        else:
            assert "ACCESSHUB_ADMIN_TOKEN" not in env, comp
        # No container reads the token from anywhere but a Secret.
        for e in c["env"]:
            if e["name"] in ("ACCESSHUB_ADMIN_TOKEN", "ACCESSHUB_TOKEN"):
                assert "value" not in e and e["valueFrom"]["secretKeyRef"]["key"] == \
                    "ACCESSHUB_ADMIN_TOKEN", (comp, e)
    # booking-ingest faces the internet: it holds no admin credential at all.
    ingest = env_names(deployment(objs, INGEST)["spec"]["template"]["spec"]["containers"][0], objs)
    assert not {"ACCESSHUB_ADMIN_TOKEN", "ACCESSHUB_TOKEN", "ACCESSHUB_API_URL"} & set(ingest)
    for cm in of_kind(objs, "ConfigMap"):
        assert not {"ACCESSHUB_ADMIN_TOKEN", "ACCESSHUB_TOKEN"} & set(cm["data"])
    # Nor does the migrations Job.
    job = of_kind(objs, "Job")[0]
    assert "ACCESSHUB_ADMIN_TOKEN" not in {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_accessctl_pods_point_at_the_admin_service(variant, objs):
    existing = load_values(variant).get("secrets", {}).get("existingSecret")
    secret = existing or f"{RELEASE}-accesshub"
    port = load_values(variant).get("adminService", {}).get("port", 8080)
    for d in of_kind(objs, "Deployment"):
        comp = d["metadata"]["labels"]["app.kubernetes.io/component"]
        env = container_env(d)
        if comp in ("reconciler", "admin"):           # the runbooks' `kubectl exec` target, and admin
            assert env["ACCESSHUB_API_URL"] == {"name": "ACCESSHUB_API_URL",
                                                "value": f"http://{ADMIN}:{port}/admin/v1"}
            assert env["ACCESSHUB_TOKEN"]["valueFrom"] == {
                "secretKeyRef": {"name": secret, "key": "ACCESSHUB_ADMIN_TOKEN"}}
        else:
            assert "ACCESSHUB_API_URL" not in env and "ACCESSHUB_TOKEN" not in env, comp


def test_nothing_points_at_booking_ingest_for_the_admin_api(variant, rendered):
    # Every admin API URL the chart writes (env, NOTES) is the admin Service's.
    text = "\n".join(rendered.values())
    urls = re.findall(r"https?://[^\s/\"']+(?::\d+)?/admin/v1", text)
    assert urls
    for url in urls:
        host = url.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
        assert host in (ADMIN, "127.0.0.1"), url            # 127.0.0.1: NOTES' port-forward
    assert not re.search(r"booking-ingest[^\n]*/admin", text)


def test_accessctl_admin_api_pods_are_configurable():
    objs = objects(render({"accessctl": {"adminApiIn": ["cloudpassWorker"]}}))
    with_api = {d["metadata"]["labels"]["app.kubernetes.io/component"]
                for d in of_kind(objs, "Deployment") if "ACCESSHUB_TOKEN" in container_env(d)}
    assert with_api == {"cloudpass-worker"}
    # The admin API keeps its bootstrap token regardless.
    assert "ACCESSHUB_ADMIN_TOKEN" in container_env(deployment(objs, ADMIN))


def test_admin_disabled_leaves_no_admin_objects_or_urls():
    values = load_values("all-features")
    values["services"]["admin"]["enabled"] = False
    rendered = render(values)
    objs = objects(rendered)
    assert not [o for o in objs if o["metadata"]["name"].startswith(ADMIN)]
    for d in of_kind(objs, "Deployment"):
        env = container_env(d)
        assert not {"ACCESSHUB_API_URL", "ACCESSHUB_TOKEN", "ACCESSHUB_ADMIN_TOKEN"} & set(env)
    for np in of_kind(objs, "NetworkPolicy"):
        assert "admin" not in json.dumps(np["spec"]["egress"])
    assert "/admin/v1" not in rendered["accesshub/templates/NOTES.txt"]


def test_per_service_probe_timings():
    objs = objects(render(load_values("all-features")))
    admin = deployment(objs, ADMIN)["spec"]["template"]["spec"]["containers"][0]
    # Own values win, the rest comes from the global probes.
    assert admin["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": "http"},
                                      "initialDelaySeconds": 5, "periodSeconds": 20,
                                      "timeoutSeconds": 2, "failureThreshold": 3}
    assert admin["readinessProbe"] == {"httpGet": {"path": "/readyz", "port": "http"},
                                       "initialDelaySeconds": 2, "periodSeconds": 5,
                                       "timeoutSeconds": 2, "failureThreshold": 3}
    ingest = deployment(objs, INGEST)["spec"]["template"]["spec"]["containers"][0]
    assert ingest["livenessProbe"]["periodSeconds"] == 10
    assert ingest["livenessProbe"]["failureThreshold"] == 6
    # The values of one release are not modified by another's override (deepCopy, not merge in place).
    assert yaml.safe_load((CHART / "values.yaml").read_text())["probes"]["liveness"]["periodSeconds"] == 10


# ---------------------------------------------------------------- ingress: webhooks only


def test_ingress_routes_only_webhooks_to_booking_ingest(variant, objs):
    values = load_values(variant)
    ingresses = of_kind(objs, "Ingress")
    assert len(ingresses) == values.get("ingress", {}).get("enabled", False)
    for ing in ingresses:
        paths = [p for rule in ing["spec"]["rules"] for p in rule["http"]["paths"]]
        assert paths
        for p in paths:
            assert p["path"] == "/webhooks" or p["path"].startswith("/webhooks/"), p
            assert "admin" not in p["path"]
            assert p["backend"]["service"] == {"name": INGEST, "port": {"name": "http"}}
        assert "defaultBackend" not in ing["spec"]


def test_ingress_with_several_webhook_paths():
    values = load_values("all-features")
    values["ingress"]["hosts"] = [
        {"host": "hooks.example.com", "paths": [{"path": "/webhooks/bex"}, {"path": "/webhooks/clock/", "pathType": "Exact"}]},
        {"host": "hooks.example.net", "paths": [{"path": "/webhooks"}]},
    ]
    ing = of_kind(objects(render(values)), "Ingress")[0]
    got = [(r["host"], p["path"], p["pathType"]) for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
    assert got == [("hooks.example.com", "/webhooks/bex", "Prefix"),
                   ("hooks.example.com", "/webhooks/clock/", "Exact"),
                   ("hooks.example.net", "/webhooks", "Prefix")]


@pytest.mark.parametrize("path", ["/", "/admin", "/admin/v1", "/webhooksx", "/api/webhooks", "/webhook"])
def test_ingress_refuses_anything_but_webhooks(path):
    values = {"ingress": {"enabled": True, "hosts": [{"host": "h.example.com", "paths": [{"path": path}]}]}}
    with pytest.raises(helm_python.HelmValuesError, match="schema"):
        render(values)


def test_ingress_template_refuses_admin_paths_without_the_schema(tmp_path):
    # `helm install --skip-schema-validation` bypasses values.schema.json: the template itself
    # still refuses to route anything but webhooks.
    chart = tmp_path / "accesshub"
    shutil.copytree(CHART, chart)
    (chart / "values.schema.json").unlink()
    values = {"ingress": {"enabled": True, "hosts": [{"host": "h.example.com", "paths": [{"path": "/admin/v1"}]}]}}
    with helm_python.Chart.load(str(chart)) as c:
        with pytest.raises(helm_python.HelmError, match="routes webhooks only"):
            c.render(values=with_required(values), name=RELEASE, namespace=NAMESPACE, is_install=True)
        values["ingress"]["hosts"][0]["paths"][0]["path"] = "/webhooks"
        assert "ingress.yaml" in "".join(c.render(values=with_required(values), name=RELEASE, namespace=NAMESPACE, is_install=True))


# ---------------------------------------------------------------- network policies


def policies(objs: list[dict]) -> dict[str, dict]:
    return {np["metadata"]["labels"]["app.kubernetes.io/component"]: np["spec"]
            for np in of_kind(objs, "NetworkPolicy")}


def test_networkpolicy_admin_only_from_configured_peers():
    values = load_values("all-features")
    np = policies(objects(render(values)))["admin"]
    assert np["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "admin"
    release_pods = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "accesshub",
                                                    "app.kubernetes.io/instance": RELEASE}}}
    api_rule = {"ports": [{"port": "http", "protocol": "TCP"}],
                "from": [release_pods] + values["networkPolicy"]["adminFrom"]}
    metrics_rule = {"ports": [{"port": "http", "protocol": "TCP"}],
                    "from": values["networkPolicy"]["metricsFrom"]}
    assert np["ingress"] == [api_rule, metrics_rule]
    # booking-ingest's webhook peers (the ingress controller) do not reach the admin API.
    for peer in values["networkPolicy"]["ingressFrom"]:
        assert all(peer not in rule["from"] for rule in np["ingress"])


def test_networkpolicy_admin_defaults_to_the_release_namespace():
    # No peers configured anywhere: booking-ingest is open to every source (webhooks), the
    # admin API only to pods of the namespace, never to every source.
    pols = policies(objects(render({"networkPolicy": {"enabled": True}})))
    assert pols["admin"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}],
                                         "from": [{"podSelector": {}}]}]
    assert pols["booking-ingest"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    for comp, spec in pols.items():
        if comp == "admin":
            continue
        assert all("from" not in rule for rule in spec["ingress"]), comp
    # Only the metrics peers are added on top, as for the other services.
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    pols = policies(objects(render({"networkPolicy": {"enabled": True, "metricsFrom": monitoring}})))
    assert [r["from"] for r in pols["admin"]["ingress"]] == [[{"podSelector": {}}], monitoring]
    assert pols["cloudpass-worker"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}],
                                                    "from": monitoring}]


def test_networkpolicy_egress_lets_accessctl_reach_the_admin_api():
    pols = policies(objects(render(load_values("all-features"))))
    to_admin = {"to": [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "accesshub", "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "admin"}}}],
        "ports": [{"port": 8080, "protocol": "TCP"}]}
    for comp, spec in pols.items():
        assert (to_admin in spec["egress"]) == (comp in ("reconciler", "admin")), comp


@pytest.mark.parametrize("bad", [
    {"networkPolicy": {"adminFrom": [{}]}},                                 # an empty peer
    {"networkPolicy": {"adminFrom": [{"podSelector": {}, "ports": [80]}]}},  # not a peer
    {"accessctl": {"adminApiIn": ["bookingIngest"]}},                       # internet-facing pod
    {"accessctl": {"adminApiIn": ["billingWorker"]}},
    {"adminService": {"type": "LoadBalancer"}},                             # always ClusterIP
    {"services": {"admin": {"probes": {"liveness": {"path": "/"}}}}},        # paths are fixed
])
def test_schema_rejects_bad_admin_values(bad):
    with pytest.raises(helm_python.HelmValuesError, match="schema"):
        render(bad)


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
    # The NATS ingest switch is booking-ingest's alone (the schema refuses it elsewhere).
    del reference["natsIngest"]
    for key, block in defaults["services"].items():
        assert set(block) - ({"natsIngest"} if key == "bookingIngest" else set()) == set(reference), key


# ---------------------------------------------------------------- NATS identities (review H1)

NATS_USERS = sorted([*SERVICES.values(), "accessctl-dlq", "accesshub-streams"])


def generated_nats_users() -> list[str]:
    """Users of deploy/nats/values-nats.yaml, generated from deploy/nats/permissions.yaml."""
    from conftest import REPO
    v = yaml.safe_load((REPO / "deploy" / "nats" / "values-nats.yaml").read_text())
    return sorted(u["user"] for u in v["config"]["merge"]["accounts"]["ACCESSHUB"]["users"])


def test_default_render_has_nats_auth_per_service_users_and_network_policies():
    objs = objects(render())
    # The chart's users are exactly the identities the NATS server is configured with.
    assert generated_nats_users() == NATS_USERS
    secret = next(s for s in of_kind(objs, "Secret") if s["metadata"]["name"] == f"{RELEASE}-accesshub-nats")
    assert sorted(secret["data"]) == NATS_USERS
    for user, b64 in secret["data"].items():
        assert len(base64.b64decode(b64)) == 32, user   # generated when not given
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    users = set()
    for d in of_kind(objs, "Deployment"):
        env = container_env(d)
        user = env["NATS_USER"]["value"]
        assert env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-accesshub-nats",
                                                                     "key": user}
        users.add(user)
        # The DLQ role is nobody's by default.
        assert "ACCESSCTL_NATS_USER" not in env
    assert users == set(SERVICES.values())
    # NetworkPolicies on: one per service; the admin API is never open to any source.
    pols = {p["metadata"]["name"]: p["spec"] for p in of_kind(objs, "NetworkPolicy")}
    assert len(pols) == len(SERVICES)
    admin_rules = pols[ADMIN]["ingress"]
    assert all(r.get("from") for r in admin_rules), admin_rules
    assert pols[ADMIN]["ingress"][0]["from"] == [{"podSelector": {}}]
    ingest_rules = pols[INGEST]["ingress"]
    assert ingest_rules == [{"ports": [{"port": "http", "protocol": "TCP"}]}]


def test_nats_passwords_are_deterministic_when_given():
    pw = {u: f"pw-{u}" for u in NATS_USERS}
    objs = objects(render({"nats": {"auth": {"passwords": pw}}}))
    secret = next(s for s in of_kind(objs, "Secret") if s["metadata"]["name"] == f"{RELEASE}-accesshub-nats")
    assert {u: base64.b64decode(v).decode() for u, v in secret["data"].items()} == pw


def test_dlq_role_only_where_asked():
    objs = objects(render({"accessctl": {"dlqIn": ["reconciler"]}}))
    for d in of_kind(objs, "Deployment"):
        env = container_env(d)
        if d["metadata"]["name"].endswith("-reconciler"):
            assert env["ACCESSCTL_NATS_USER"]["value"] == "accessctl-dlq"
            assert env["ACCESSCTL_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "accessctl-dlq"
            assert env["NATS_USER"]["value"] == "reconciler"
        else:
            assert "ACCESSCTL_NATS_USER" not in env


def test_nats_auth_none_renders_no_nats_secret():
    objs = objects(render({"nats": {"auth": {"mode": "none"}}}))
    assert not [s for s in of_kind(objs, "Secret") if s["metadata"]["name"].endswith("-nats")]
    for d in of_kind(objs, "Deployment"):
        assert not {"NATS_USER", "NATS_PASSWORD", "NATS_INBOX_PREFIX"} & set(container_env(d))


def test_nats_tls_ca_and_client_certificate_reach_every_service():
    """nats.tls: the CA and client certificate Secrets are mounted read-only in every service
    pod and named by ACCESSHUB_NATS_CA / _CLIENT_CERT / _CLIENT_KEY (what accesshub-config
    reads); in the migrations Job only the init container that applies the streams (the
    migrate container never connects to NATS)."""
    tls_dir = "/etc/accesshub/nats-tls"
    objs = objects(render({"nats": {"url": "tls://nats.nats.svc:4222",
                                    "tls": {"caSecret": "nats-ca", "caKey": "ca.pem",
                                            "clientCertSecret": "accesshub-nats-client"}}}))
    deployments = of_kind(objs, "Deployment")
    assert len(deployments) == len(SERVICES)
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        env = container_env(d)
        assert env["ACCESSHUB_NATS_CA"]["value"] == f"{tls_dir}/ca.crt"
        assert env["ACCESSHUB_NATS_CLIENT_CERT"]["value"] == f"{tls_dir}/tls.crt"
        assert env["ACCESSHUB_NATS_CLIENT_KEY"]["value"] == f"{tls_dir}/tls.key"
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "nats-tls")
        assert mount == {"name": "nats-tls", "mountPath": tls_dir, "readOnly": True}
        vol = next(v for v in pod["volumes"] if v["name"] == "nats-tls")
        sources = [src["secret"] for src in vol["projected"]["sources"]]
        assert sources == [
            {"name": "nats-ca", "items": [{"key": "ca.pem", "path": "ca.crt"}]},
            {"name": "accesshub-nats-client", "items": [{"key": "tls.crt", "path": "tls.crt"},
                                                         {"key": "tls.key", "path": "tls.key"}]},
        ]
    job = of_kind(objs, "Job")[0]["spec"]["template"]["spec"]
    assert not {"ACCESSHUB_NATS_CA", "ACCESSHUB_NATS_CLIENT_CERT"} & {
        e["name"] for e in job["containers"][0]["env"]}
    streams = job["initContainers"][0]
    assert {e["name"]: e.get("value") for e in streams["env"]}["ACCESSHUB_NATS_CA"] == f"{tls_dir}/ca.crt"
    assert {"name": "nats-tls", "mountPath": tls_dir, "readOnly": True} in streams["volumeMounts"]
    assert any(v["name"] == "nats-tls" for v in job["volumes"])
    # Only a CA: no client certificate settings; by default: no TLS settings at all.
    ca_only = objects(render({"nats": {"tls": {"caSecret": "nats-ca"}}}))
    for d in of_kind(ca_only, "Deployment"):
        env = container_env(d)
        assert "ACCESSHUB_NATS_CA" in env and "ACCESSHUB_NATS_CLIENT_CERT" not in env
    for d in of_kind(objects(render()), "Deployment"):
        pod = d["spec"]["template"]["spec"]
        assert not [k for k in container_env(d)
                    if k.startswith("ACCESSHUB_NATS_") and k != "ACCESSHUB_NATS_INGEST"]
        assert not [v for v in pod["volumes"] if v["name"] == "nats-tls"]


def test_egress_allows_nats_and_postgres():
    objs = objects(render({"networkPolicy": {"egress": {"enabled": True}}}))
    for np in of_kind(objs, "NetworkPolicy"):
        egress = np["spec"]["egress"]
        assert {"ports": [{"port": 4222, "protocol": "TCP"}]} in egress
        assert {"ports": [{"port": 5432, "protocol": "TCP"}]} in egress
    objs = objects(render(load_values("all-features")))
    for np in of_kind(objs, "NetworkPolicy"):
        nats = next(r for r in np["spec"]["egress"] if r["ports"] == [{"port": 4222, "protocol": "TCP"}])
        assert nats["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "nats"}


# ---------------------------------------------------------------- retention (issue 23)


def test_retention_settings_reach_the_configmap():
    def config(values):
        cm = next(o for o in of_kind(objects(render(values)), "ConfigMap")
                  if "ACCESSHUB_RETENTION_DAYS" in (o.get("data") or {}))
        return cm["data"]
    d = config({})
    assert (d["ACCESSHUB_RETENTION_DAYS"], d["ACCESSHUB_AUDIT_RETENTION_DAYS"]) == ("30", "400")
    d = config({"config": {"retention": {"days": 0, "auditDays": 730}}})
    assert (d["ACCESSHUB_RETENTION_DAYS"], d["ACCESSHUB_AUDIT_RETENTION_DAYS"]) == ("0", "730")


@pytest.mark.parametrize("bad", [
    {"config": {"retention": {"days": -1}}},
    {"config": {"retention": {"days": "30d"}}},
    {"config": {"retention": {"auditdays": 10}}},
])
def test_schema_rejects_bad_retention(bad):
    with pytest.raises(helm_python.HelmValuesError, match="schema"):
        render(bad)


# ---------------------------------------------------------------- NATS ingest switch (issue 23)


def test_nats_ingest_is_off_by_default_and_set_on_booking_ingest_only():
    def envs(values):
        return {d["metadata"]["name"]: container_env(d)
                for d in of_kind(objects(render(values)), "Deployment")}
    ingest = INGEST
    by_name = envs({})
    # Explicit even when off: the service's own default would be on in dev mode.
    assert by_name[ingest]["ACCESSHUB_NATS_INGEST"] == {"name": "ACCESSHUB_NATS_INGEST", "value": "false"}
    assert [n for n, env in by_name.items() if "ACCESSHUB_NATS_INGEST" in env] == [ingest]
    on = envs({"services": {"bookingIngest": {"natsIngest": {"enabled": True}}}})
    assert on[ingest]["ACCESSHUB_NATS_INGEST"]["value"] == "true"


@pytest.mark.parametrize("bad", [
    {"services": {"bookingIngest": {"natsIngest": {"enabled": "yes"}}}},
    {"services": {"bookingIngest": {"natsIngest": True}}},
    # A switch no other service reads.
    {"services": {"reconciler": {"natsIngest": {"enabled": True}}}},
])
def test_schema_rejects_bad_nats_ingest(bad):
    with pytest.raises(helm_python.HelmValuesError, match="schema"):
        render(bad)
