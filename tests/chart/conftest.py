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

VALUES_FILES = {
    "defaults": None,
    "all-features": HERE / "values-all-features.yaml",
    "existing-secret": HERE / "values-existing-secret.yaml",
}


def load_values(variant: str) -> dict:
    path = VALUES_FILES[variant]
    if path is None:
        return {}
    return yaml.safe_load(path.read_text()) or {}


def render(values: dict | None = None, name: str = RELEASE) -> dict[str, str]:
    """Template path -> rendered text, like `helm template` (install semantics)."""
    with helm_python.Chart.load(str(CHART)) as chart:
        return chart.render(values=values or {}, name=name, namespace=NAMESPACE, is_install=True)


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
