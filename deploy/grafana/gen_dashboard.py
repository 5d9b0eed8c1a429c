#!/usr/bin/env python3
"""Generates deploy/grafana/accesshub-dashboard.json (run it after editing; commit both).

    python3 deploy/grafana/gen_dashboard.py

Only the metrics the services expose are used (see docs/deploy.md, "Metrics");
tests/chart/test_dashboard.py checks that.
"""
from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("accesshub-dashboard.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'


class Layout:
    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0

    def add(self, panel: dict, w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        panel["datasource"] = DS
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def target(expr: str, legend: str = "", ref: str = "A") -> dict:
    return {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref,
            "range": True}


def timeseries(title: str, targets: list[dict], unit: str = "short", desc: str = "",
               stack: bool = False, min0: bool = True) -> dict:
    refs = "ABCDEFGH"
    for i, t in enumerate(targets):
        t["refId"] = refs[i]
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if not stack else 30,
              "showPoints": "never", "spanNulls": False,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    defaults = {"unit": unit, "custom": custom}
    if min0:
        defaults["min"] = 0
    return {"type": "timeseries", "title": title, "description": desc, "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom",
                                   "calcs": ["mean", "max", "lastNotNull"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title: str, expr: str, unit: str = "short", desc: str = "",
         thresholds: list[tuple[float | None, str]] | None = None) -> dict:
    steps = [{"color": c, "value": v} for v, c in (thresholds or [(None, "green")])]
    return {"type": "stat", "title": title, "description": desc, "targets": [target(expr, " ")],
            "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps},
                                         "color": {"mode": "thresholds"}}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "background", "graphMode": "area", "justifyMode": "auto",
                        "textMode": "value", "orientation": "auto"}}


def quantiles(metric: str, sel: str, by: str, legend: str) -> list[dict]:
    return [target(f'histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{sel}}}[$__rate_interval])))',
                   f"p{int(q * 100)} {legend}") for q in (0.5, 0.95, 0.99)]


def var(name: str, label: str, query: str) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
            "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1, "hide": 0, "options": [], "regex": ""}


def build() -> dict:
    L = Layout()
    svc = f'{NS}, service=~"$service"'
    wk = f'{NS}, worker=~"$worker"'
    vd = f'{NS}, vendor=~"$vendor"'

    L.row("Overview")
    L.add(stat("Webhooks accepted / s", f"sum(rate(accesshub_ingest_accepted_total{{{NS}}}[$__rate_interval]))",
               "reqps", "Bookings accepted by booking-ingest (committed to Postgres with their outbox row)."), 4, 4)
    L.add(stat("Rejected / s", f"sum(rate(accesshub_ingest_rejected_total{{{NS}}}[$__rate_interval]))", "reqps",
               "Webhooks and NATS ingest messages rejected (validation, signature, unknown source).",
               [(None, "green"), (0.01, "orange"), (1, "red")]), 4, 4)
    L.add(stat("HTTP 5xx ratio",
               f'sum(rate(accesshub_http_requests_total{{{NS}, status=~"5.."}}[$__rate_interval])) / '
               f"clamp_min(sum(rate(accesshub_http_requests_total{{{NS}}}[$__rate_interval])), 1e-9)",
               "percentunit", "Share of HTTP responses with a 5xx status, every service.",
               [(None, "green"), (0.01, "orange"), (0.05, "red")]), 4, 4)
    L.add(stat("Outbox pending", f"max(accesshub_outbox_pending{{{NS}}})", "short",
               "Outbox rows not yet published to JetStream (max over ingest replicas: each reports the same "
               "table). Growing: NATS unreachable or the relay stuck.",
               [(None, "green"), (100, "orange"), (1000, "red")]), 4, 4)
    L.add(stat("Consumer backlog", f"sum(max by (worker) (accesshub_consumer_pending{{{NS}}}))", "short",
               "Messages waiting for the workers' JetStream consumers (per worker the max over its replicas, "
               "which share one consumer; then summed over workers).",
               [(None, "green"), (1000, "orange"), (10000, "red")]), 4, 4)
    L.add(stat("DLQ depth", f"sum(max by (worker) (accesshub_dlq_depth{{{NS}}}))", "short",
               "Messages in the dead-letter stream: each needs an operator (accessctl dlq list/replay). "
               "Per worker the max over its replicas (each reports the same stream), summed over workers.",
               [(None, "green"), (1, "red")]), 4, 4)

    L.row("HTTP")
    L.add(timeseries("Requests / s by service and status", [
        target(f"sum by (service, status) (rate(accesshub_http_requests_total{{{svc}}}[$__rate_interval]))",
               "{{service}} {{status}}")], "reqps"), 12, 8)
    L.add(timeseries("Request latency (p50 / p95 / p99) by service",
                     quantiles("accesshub_http_request_duration_seconds", svc, "service", "{{service}}"), "s"), 12, 8)
    L.add(timeseries("Requests / s by route", [
        target(f"sum by (service, route) (rate(accesshub_http_requests_total{{{svc}}}[$__rate_interval]))",
               "{{service}} {{route}}")], "reqps"), 12, 8)
    L.add(timeseries("Error ratio (4xx / 5xx) by service", [
        target(f'sum by (service) (rate(accesshub_http_requests_total{{{svc}, status=~"5.."}}[$__rate_interval])) / '
               f"clamp_min(sum by (service) (rate(accesshub_http_requests_total{{{svc}}}[$__rate_interval])), 1e-9)",
               "5xx {{service}}"),
        target(f'sum by (service) (rate(accesshub_http_requests_total{{{svc}, status=~"4.."}}[$__rate_interval])) / '
               f"clamp_min(sum by (service) (rate(accesshub_http_requests_total{{{svc}}}[$__rate_interval])), 1e-9)",
               "4xx {{service}}")], "percentunit"), 12, 8)

    L.row("Ingest and outbox")
    L.add(timeseries("Accepted / s by source", [
        target(f"sum by (source) (rate(accesshub_ingest_accepted_total{{{NS}}}[$__rate_interval]))", "{{source}}")],
        "reqps", stack=True), 8, 8)
    L.add(timeseries("Rejected / s by source and reason", [
        target(f"sum by (source, reason) (rate(accesshub_ingest_rejected_total{{{NS}}}[$__rate_interval]))",
               "{{source}}: {{reason}}")], "reqps", stack=True), 8, 8)
    L.add(timeseries("Outbox: published / s and pending", [
        target(f"sum(rate(accesshub_outbox_published_total{{{NS}}}[$__rate_interval]))", "published / s"),
        target(f"max(accesshub_outbox_pending{{{NS}}})", "pending")], "short",
        "Published events per second (PubAck received) and rows still waiting for the relay."), 8, 8)

    L.row("Workers")
    L.add(timeseries("Messages / s by worker and outcome", [
        target(f"sum by (worker, outcome) (rate(accesshub_worker_messages_total{{{wk}}}[$__rate_interval]))",
               "{{worker}} {{outcome}}")], "short",
        "applied: vendor changed; skipped: revision not newer; retried: transient failure, NAK with delay; "
        "dead_lettered: permanent failure or retries exhausted.", stack=True), 12, 8)
    L.add(timeseries("Retried and dead-lettered / s", [
        target(f'sum by (worker, outcome) (rate(accesshub_worker_messages_total{{{wk}, outcome=~"retried|dead_lettered"}}[$__rate_interval]))',
               "{{worker}} {{outcome}}")], "short"), 12, 8)
    L.add(timeseries("In flight by worker", [
        target(f"sum by (worker) (accesshub_worker_in_flight{{{wk}}})", "{{worker}}")], "short"), 8, 8)
    L.add(timeseries("Consumer backlog by worker", [
        target(f"max by (worker) (accesshub_consumer_pending{{{wk}}})", "{{worker}}")], "short",
        "JetStream messages pending for the worker's durable consumer (max over replicas: they share it)."), 8, 8)
    L.add(timeseries("DLQ depth by worker", [
        target(f"max by (worker) (accesshub_dlq_depth{{{wk}}})", "{{worker}}")], "short"), 8, 8)

    L.row("Vendors")
    L.add(timeseries("Vendor call latency (p50 / p95 / p99) by vendor",
                     quantiles("accesshub_vendor_request_duration_seconds", vd, "vendor", "{{vendor}}"), "s"), 12, 8)
    L.add(timeseries("Vendor call p95 by operation", [
        target(f"histogram_quantile(0.95, sum by (vendor, operation, le) "
               f"(rate(accesshub_vendor_request_duration_seconds_bucket{{{vd}}}[$__rate_interval])))",
               "{{vendor}} {{operation}}")], "s"), 12, 8)
    L.add(timeseries("Vendor calls / s by operation", [
        target(f"sum by (vendor, operation) (rate(accesshub_vendor_request_duration_seconds_count{{{vd}}}[$__rate_interval]))",
               "{{vendor}} {{operation}}")], "reqps"), 12, 8)
    L.add(timeseries("Vendor errors / s by class", [
        target(f"sum by (vendor, class) (rate(accesshub_vendor_errors_total{{{vd}}}[$__rate_interval]))",
               "{{vendor}} {{class}}")], "short",
        "Classified errors: transient ones are retried, permanent ones go to the DLQ.", stack=True), 12, 8)

    L.row("Vendor outages and hotel sites")
    L.add(stat("Connections with an open breaker",
               f"sum(max by (tenant, vendor, connection) (accesshub_connection_breaker_open{{{vd}}}))", "short",
               "Connections whose vendor failed transiently too often in a row: their events are parked in "
               "Postgres (not retried, not dead-lettered) until a probe succeeds. Other tenants are not slowed. "
               "Runbook: docs/runbooks/vendor-outage.md.",
               [(None, "green"), (1, "orange")]), 6, 8)
    L.add(timeseries("Open breakers by connection", [
        target(f"max by (tenant, vendor, connection) (accesshub_connection_breaker_open{{{vd}}})",
               "{{tenant}} {{vendor}} {{connection}}")], "short",
        "1 while the connection's breaker is open or half-open in any replica of its worker."), 6, 8)
    L.add(timeseries("Parked events by connection", [
        target(f"max by (tenant, vendor, connection) (accesshub_connection_parked{{{vd}}})",
               "{{tenant}} {{vendor}} {{connection}}")], "short",
        "Events waiting in Postgres for their connection's vendor to answer again (max over replicas: "
        "each reads the same table). They apply in order once the breaker closes."), 6, 8)
    L.add(timeseries("dormakaba hotel sites online", [
        target(f"min by (tenant, site) (accesshub_edge_site_online{{{NS}}})", "{{tenant}} {{site}}")], "short",
        "1 while the site's edge relay answers over its NATS leaf link, 0 while the link is down (the "
        "site's reservations wait; key requests answer 'site offline' at once). Min over worker replicas."),
          6, 8)

    L.row("Reconciler")
    L.add(timeseries("Sync runs by vendor and status (per hour)", [
        target(f"sum by (vendor, status) (increase(accesshub_sync_runs_total{{{vd}}}[1h]))",
               "{{vendor}} {{status}}")], "short", stack=True), 12, 8)
    L.add(stat("Sync runs in range", f"sum(increase(accesshub_sync_runs_total{{{vd}}}[$__range]))", "short",
               "Sync runs (cron and on demand) in the dashboard's time range."), 6, 8)
    L.add(stat("Sync runs not succeeded in range",
               f'sum(increase(accesshub_sync_runs_total{{{vd}, status!~"succeeded|success|ok|completed"}}[$__range]))',
               "short", "Runs whose status is anything but success.",
               [(None, "green"), (1, "orange")]), 6, 8)

    return {
        "title": "accesshub",
        "uid": "accesshub-overview",
        "description": "accesshub: webhook ingest, outbox, vendor workers, DLQ and reconciler (Prometheus).",
        "tags": ["accesshub"],
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "schemaVersion": 39,
        "version": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1,
             "regex": ""},
            var("namespace", "Namespace", "label_values(accesshub_http_requests_total, namespace)"),
            var("service", "Service", 'label_values(accesshub_http_requests_total{namespace=~"$namespace"}, service)'),
            var("worker", "Worker", 'label_values(accesshub_worker_messages_total{namespace=~"$namespace"}, worker)'),
            var("vendor", "Vendor", 'label_values(accesshub_vendor_request_duration_seconds_count{namespace=~"$namespace"}, vendor)'),
        ]},
        "panels": L.panels,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {OUT}")
