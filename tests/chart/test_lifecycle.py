"""Install, upgrade and rollback as the chart promises them (issue 24).

- Fail-fast: a default render without the settings the services cannot run without (database
  URL, encryption key, admin token) stops `helm install`/`helm template`, naming the value,
  unless an existing Secret provides them.
- Migrations only in the hook Job: it runs before the new pods on install and upgrade, with the
  new release's image; a rollback runs no migration (the previous release's binaries accept the
  newer schema: tests/e2e/tests/startup_gates.rs), and no service migrates.
"""
from __future__ import annotations

import helm_python
import pytest

from conftest import REQUIRED, objects, of_kind, render

HOOK = "helm.sh/hook"
WEIGHT = "helm.sh/hook-weight"


def hooks(objs: list[dict]) -> list[dict]:
    return [o for o in objs if HOOK in o["metadata"]["annotations"]]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("given, missing", [
    ({}, "database.url is required"),
    ({"database": REQUIRED["database"]}, "secrets.encryptionKey is required"),
    ({"database": REQUIRED["database"],
      "secrets": {"encryptionKey": REQUIRED["secrets"]["encryptionKey"]}},
     "secrets.adminToken is required"),
    # Empty counts as missing, as it does for the services.
    ({"database": {"url": ""}, "secrets": REQUIRED["secrets"]}, "database.url is required"),
])
def test_default_render_fails_naming_what_is_missing(given, missing):
    with pytest.raises(helm_python.HelmError, match=missing):
        render(given, bare=True)


def test_admin_token_is_required_only_with_the_admin_api():
    values = {"database": REQUIRED["database"],
              "secrets": {"encryptionKey": REQUIRED["secrets"]["encryptionKey"]},
              "services": {"admin": {"enabled": False}}}
    assert of_kind(objects(render(values, bare=True)), "Deployment")


def test_an_existing_secret_replaces_the_inline_values():
    objs = objects(render({"secrets": {"existingSecret": "accesshub-prod"},
                           "migrations": {"databaseUrlKey": "MIGRATIONS_DATABASE_URL"}},
                          bare=True))
    assert [s["metadata"]["name"] for s in of_kind(objs, "Secret")] == ["ah-accesshub-nats"]
    job = of_kind(objs, "Job")[0]
    ref = env_of(job["spec"]["template"]["spec"]["containers"][0])["DATABASE_URL"]
    assert ref["valueFrom"]["secretKeyRef"] == {"name": "accesshub-prod",
                                                "key": "MIGRATIONS_DATABASE_URL"}
    for d in of_kind(objs, "Deployment"):
        ref = env_of(d["spec"]["template"]["spec"]["containers"][0])["DATABASE_URL"]
        assert ref["valueFrom"]["secretKeyRef"] == {"name": "accesshub-prod", "key": "DATABASE_URL"}


def test_only_the_migrations_job_may_use_a_ddl_role():
    url = "postgres://accesshub_owner:pw@postgres.db:5432/accesshub"
    objs = objects(render({"database": {"migrationsUrl": url}}))
    hook_secret = [s for s in hooks(objs) if s["kind"] == "Secret"][0]
    assert hook_secret["stringData"]["MIGRATIONS_DATABASE_URL"] == url
    job = of_kind(objs, "Job")[0]
    ref = env_of(job["spec"]["template"]["spec"]["containers"][0])["DATABASE_URL"]
    assert ref["valueFrom"]["secretKeyRef"]["key"] == "MIGRATIONS_DATABASE_URL"
    for d in of_kind(objs, "Deployment"):
        ref = env_of(d["spec"]["template"]["spec"]["containers"][0])["DATABASE_URL"]
        assert ref["valueFrom"]["secretKeyRef"]["key"] == "DATABASE_URL"


@pytest.mark.parametrize("upgrade", [False, True])
def test_migrations_run_before_the_new_pods_with_the_new_image(upgrade):
    objs = objects(render({"image": {"tag": "0.2.0"}}, upgrade=upgrade,
                          revision=2 if upgrade else 1))
    phase = "pre-upgrade" if upgrade else "pre-install"
    hook_objs = hooks(objs)
    # Only the migration (and the Secrets it reads: DATABASE_URL, and the NATS identities for
    # its `streams apply` step) are hooks: Helm applies the release's Deployments after every
    # pre-* hook has succeeded, so new pods never meet an old schema or missing streams.
    assert sorted(o["kind"] for o in hook_objs) == ["Job", "Secret", "Secret"]
    for o in hook_objs:
        assert phase in o["metadata"]["annotations"][HOOK].split(",")
    by_kind = {o["kind"]: o for o in hook_objs}
    for secret in (o for o in hook_objs if o["kind"] == "Secret"):
        assert int(secret["metadata"]["annotations"][WEIGHT]) < int(
            by_kind["Job"]["metadata"]["annotations"][WEIGHT])
    job = by_kind["Job"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/usr/local/bin/accessctl", "migrate"]
    # A failed migration fails the install/upgrade (and leaves the old pods serving).
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert "before-hook-creation" in job["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    for d in of_kind(objs, "Deployment"):
        assert HOOK not in d["metadata"]["annotations"]
        assert d["spec"]["template"]["spec"]["containers"][0]["image"] == container["image"]
        assert container["image"].endswith(":0.2.0")


def test_a_rollback_runs_no_migration_and_no_service_migrates():
    # `helm rollback` re-applies the stored manifest of the target revision and runs only its
    # pre-/post-rollback hooks. There are none: the schema stays where the newer release left
    # it, and the previous release's binaries run on it (they tolerate migrations they do not
    # know; expand/contract).
    for upgrade in (False, True):
        for o in hooks(objects(render(upgrade=upgrade))):
            phases = set(o["metadata"]["annotations"][HOOK].split(","))
            assert not phases & {"pre-rollback", "post-rollback"}, o["metadata"]["name"]
    for d in of_kind(objects(render()), "Deployment"):
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert "migrate" not in " ".join(c["command"] + c.get("args", []))
        assert "ACCESSHUB_MIGRATE_ON_START" not in env_of(c)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf", "http/json"])
def test_otlp_protocol_reaches_every_service(protocol):
    objs = objects(render({"otel": {"endpoint": "http://otel:4317", "protocol": protocol}}))
    cm = of_kind(objs, "ConfigMap")[0]
    assert cm["data"]["OTEL_EXPORTER_OTLP_PROTOCOL"] == protocol
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" not in of_kind(objects(render()), "ConfigMap")[0]["data"]


def test_otlp_protocol_outside_the_spec_is_refused():
    with pytest.raises(helm_python.HelmValuesError, match="schema"):
        render({"otel": {"protocol": "http"}})
