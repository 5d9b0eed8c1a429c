"""Shared fixtures for the helm/accesshub chart tests.

The chart is rendered with the real Helm v4 engine (helm-python-sdk, offline: no cluster, no
helm binary) and every rendered object is parsed into a dict.
"""
from __future__ import annotations

from pathlib import Path

import helm_python
import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CHART = REPO / "helm" / "accesshub"
RELEASE = "ah"
NAMESPACE = "accesshub"

# values key -> service (= binary in /usr/local/bin, OTEL_SERVICE_NAME)
SERVICES = {
    "bookingIngest": "booking-ingest",
    "admin": "accesshub-admin",
    "cloudpassWorker": "cloudpass-worker",
    "dormakabaWorker": "dormakaba-worker",
    "ipassanWorker": "ipassan-worker",
    "tapkeyWorker": "tapkey-worker",
    "reconciler": "reconciler",
}



def component(service: str) -> str:
    """app.kubernetes.io/component label and object-name suffix of a service."""
    return service.removeprefix("accesshub-")


# component label -> service
BY_COMPONENT = {component(svc): svc for svc in SERVICES.values()}

# What an install must be given (issue 24, fail-fast): without these (or secrets.existingSecret)
# the render stops. Every render below gets them unless it asks for a bare render.
REQUIRED = {
    "database": {"url": "postgres://accesshub:pw@postgres.db:5432/accesshub"},
    "secrets": {"encryptionKey": "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
                "adminToken": "chart-test-admin-token"},
}


def with_required(values: dict) -> dict:
    """REQUIRED underneath `values` (values win; an existing Secret replaces the chart's)."""
    if (values.get("secrets") or {}).get("existingSecret"):
        return values
    out = {k: dict(v) for k, v in REQUIRED.items()}
    for k, v in values.items():
        out[k] = {**out.get(k, {}), **v} if isinstance(v, dict) and k in out else v
    return out


VALUES_FILES = {
    "defaults": None,
    "all-features": HERE / "values-all-features.yaml",
    "existing-secret": HERE / "values-existing-secret.yaml",
}


def load_values(variant: str) -> dict:
    """The variant's values, with REQUIRED underneath (what an install must be given)."""
    path = VALUES_FILES[variant]
    raw = {} if path is None else (yaml.safe_load(path.read_text()) or {})
    return with_required(raw)


def render(values: dict | None = None, name: str = RELEASE, *, bare: bool = False,
           upgrade: bool = False, revision: int | None = None) -> dict[str, str]:
    """Template path -> rendered text, like `helm template` (install semantics; `upgrade`:
    `helm upgrade`'s). `bare`: without the REQUIRED values."""
    values = values or {}
    if not bare:
        values = with_required(values)
    with helm_python.Chart.load(str(CHART)) as chart:
        return chart.render(values=values, name=name, namespace=NAMESPACE,
                            is_install=not upgrade, is_upgrade=upgrade, revision=revision)


def objects(rendered: dict[str, str]) -> list[dict]:
    out = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt") or not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                out.append(doc)
    return out


@pytest.fixture(scope="session", params=list(VALUES_FILES))
def variant(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def rendered_cache() -> dict:
    return {}


@pytest.fixture
def rendered(variant, rendered_cache) -> dict[str, str]:
    if variant not in rendered_cache:
        rendered_cache[variant] = render(load_values(variant))
    return rendered_cache[variant]


@pytest.fixture
def objs(rendered) -> list[dict]:
    return objects(rendered)


def of_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]
