"""deploy/grafana/accesshub-dashboard.json uses exactly the metrics the services expose."""
from __future__ import annotations

import importlib.util
import json
import re

import yaml

from conftest import REPO

DASHBOARD = REPO / "deploy" / "grafana" / "accesshub-dashboard.json"
GENERATOR = REPO / "deploy" / "grafana" / "gen_dashboard.py"
NATS_VALUES = REPO / "deploy" / "nats" / "values-nats.yaml"

# The metrics contract (docs/deploy.md): name -> labels. Histograms are used through
# _bucket/_count/_sum.
METRICS = {
    "accesshub_http_requests_total": {"service", "route", "status"},
    "accesshub_http_request_duration_seconds": {"service"},
    "accesshub_ingest_accepted_total": {"source"},
    "accesshub_ingest_rejected_total": {"source", "reason"},
    "accesshub_outbox_published_total": set(),
    "accesshub_outbox_pending": set(),
    "accesshub_worker_messages_total": {"worker", "outcome"},
    "accesshub_worker_in_flight": {"worker"},
    "accesshub_vendor_request_duration_seconds": {"vendor", "operation"},
    "accesshub_vendor_errors_total": {"vendor", "class"},
    "accesshub_consumer_pending": {"worker"},
    "accesshub_dlq_depth": {"worker"},
    "accesshub_sync_runs_total": {"vendor", "status"},
    "accesshub_connection_breaker_open": {"tenant", "vendor", "connection"},
    "accesshub_connection_parked": {"tenant", "vendor", "connection"},
    "accesshub_edge_site_online": {"tenant", "site"},
}
HISTOGRAMS = {"accesshub_http_request_duration_seconds", "accesshub_vendor_request_duration_seconds"}
# Labels added by the scrape (ServiceMonitor / Prometheus), not by the services.
SCRAPE_LABELS = {"namespace", "le"}


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def exprs(dashboard: dict) -> list[str]:
    out = [p_t["expr"] for p in dashboard["panels"] for p_t in p.get("targets", [])]
    out += [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    return out


def base_name(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
            return name[: -len(suffix)]
    return name


def test_dashboard_is_generated_from_the_script():
    spec = importlib.util.spec_from_file_location("gen_dashboard", GENERATOR)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert load() == json.loads(json.dumps(mod.build())), "run deploy/grafana/gen_dashboard.py"


def test_dashboard_uses_only_and_all_contract_metrics():
    used = set()
    for expr in exprs(load()):
        for name in re.findall(r"\baccesshub_[a-z_]+", expr):
            used.add(base_name(name))
    assert used <= set(METRICS), used - set(METRICS)
    assert used == set(METRICS), set(METRICS) - used


def test_label_names_exist_on_their_metrics():
    for expr in exprs(load()):
        for name, sel in re.findall(r"\b(accesshub_[a-z_]+)\{([^}]*)\}", expr):
            labels = {m for m in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", sel)}
            assert labels <= METRICS[base_name(name)] | SCRAPE_LABELS, (name, labels)
        for by, rest in re.findall(r"by \(([^)]*)\)\s*\(([^\n]*)", expr):
            metric = base_name(re.search(r"accesshub_[a-z_]+", rest).group(0))
            labels = {b.strip() for b in by.split(",")}
            assert labels <= METRICS[metric] | SCRAPE_LABELS, (metric, labels)


# Gauges every replica reports identically (the same table or stream, read by each replica):
# summing them over replicas multiplies the figure by the replica count.
PER_REPLICA_GAUGES = {
    "accesshub_outbox_pending",
    "accesshub_consumer_pending",
    "accesshub_dlq_depth",
    "accesshub_connection_parked",
}


def test_per_replica_gauges_are_aggregated_with_max():
    seen = set()
    for expr in exprs(load()):
        for m in re.finditer(r"\b(accesshub_[a-z_]+)\{", expr):
            if m.group(1) not in PER_REPLICA_GAUGES:
                continue
            seen.add(m.group(1))
            # The aggregation right around the selector is max (over replicas).
            before = expr[: m.start()]
            assert re.search(r"max(?: by \([^)]*\))?\s*\($", before), (m.group(1), expr)
    assert seen == PER_REPLICA_GAUGES


def test_worker_outcomes_in_description():
    text = json.dumps(load())
    for outcome in ("applied", "skipped", "retried", "dead_lettered"):
        assert outcome in text


def test_dashboard_structure():
    d = load()
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    assert d["uid"] and d["title"] and d["schemaVersion"] >= 36
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}"
            assert p["targets"]


def test_nats_sample_values_are_durable():
    v = yaml.safe_load(NATS_VALUES.read_text())
    js = v["config"]["jetstream"]
    assert js["enabled"] is True
    assert js["fileStore"]["enabled"] is True and js["fileStore"]["pvc"]["enabled"] is True
    assert js["memoryStore"]["enabled"] is False
    assert js["merge"]["sync_interval"] == "always"
    assert v["config"]["cluster"]["enabled"] is True and v["config"]["cluster"]["replicas"] >= 3
