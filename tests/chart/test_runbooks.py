"""The runbooks' `kubectl exec deploy/… -- accessctl …` commands work in a default install
(issue 24, item 6): the Deployment they name exists for the release they assume, and its pod
has what the command needs — the admin Service's URL and a token from the Secret for the admin
API commands, the database and NATS for the direct ones."""
from __future__ import annotations

import re

import pytest

from conftest import RELEASE, REPO, objects, of_kind, render

# accessctl commands that go through the admin API; the others talk to Postgres/NATS directly.
ADMIN_API = {"connections", "tenants", "lookup", "tokens", "audit"}
DIRECT = {"status", "dlq", "sync", "secrets", "migrate"}

EXEC = re.compile(
    r"kubectl(?P<opts>(?:\s+-\S+(?:\s+[a-z0-9-]+)?)*)\s+exec\s+(?:-\S+\s+)*deploy/(?P<deploy>\S+)\s+--\s+accessctl(?:\s+(?P<sub>[a-z-]+))?"
)


def documented_execs():
    out = []
    for f in sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")]):
        for n, line in enumerate(f.read_text().splitlines(), 1):
            for m in EXEC.finditer(line):
                out.append((f"{f.relative_to(REPO)}:{n}", m.group("deploy"), m.group("sub")))
    return out


def test_runbooks_have_exec_commands():
    assert len(documented_execs()) >= 3


@pytest.mark.parametrize("where,deploy,sub", documented_execs(), ids=lambda x: str(x))
def test_exec_target_exists_and_can_run_the_command(where, deploy, sub):
    # `<release>-accesshub-x` is written for any release name; `accesshub-x` assumes the
    # release is called accesshub (the chart then names objects accesshub-x).
    if deploy.startswith("<release>-accesshub-"):
        release, name = RELEASE, deploy.replace("<release>-accesshub-", f"{RELEASE}-accesshub-")
    else:
        release, name = "accesshub", deploy
    objs = objects(render({}, name=release))
    deployments = {d["metadata"]["name"]: d for d in of_kind(objs, "Deployment")}
    assert name in deployments, f"{where}: no Deployment {name} in a default install ({sorted(deployments)})"
    c = deployments[name]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c.get("env", [])}
    subs = {sub} if sub else (ADMIN_API | DIRECT)  # `accessctl "$@"`: any command
    if subs & ADMIN_API:
        admin = next(s["metadata"]["name"] for s in of_kind(objs, "Service") if s["metadata"]["name"].endswith("-admin"))
        assert re.fullmatch(rf"http://{admin}:\d+/admin/v1", env["ACCESSHUB_API_URL"]["value"]), where
        assert env["ACCESSHUB_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "ACCESSHUB_ADMIN_TOKEN", where
    if subs & DIRECT:
        assert "DATABASE_URL" in env and "NATS_URL" in {*env, *_config_keys(objs, c)}, where


def _config_keys(objs, container) -> set[str]:
    keys = set()
    for src in container.get("envFrom", []):
        ref = src.get("configMapRef")
        if ref:
            for cm in of_kind(objs, "ConfigMap"):
                if cm["metadata"]["name"] == ref["name"]:
                    keys |= set(cm.get("data", {}))
    return keys
