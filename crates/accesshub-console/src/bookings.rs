//! Bookings: search by guest, plate, room or booking key; per booking the desired state (the
//! stored event payload, personal data masked for the viewer role) and, per vendor, what the
//! worker applied (`bindings`: revision, vendor ids, status, last error with its time, and
//! the trace id of the attempt that applied it or failed).
//!
//! Read-only over the tables booking-ingest and the workers own; no other crate had a search.

use accesshub_domain::pii;
use axum::{
    Extension,
    extract::{Query, State},
};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use sqlx::Row as _;

use crate::{
    ConsoleState,
    error::ConsoleError,
    html::{page, trace_ref, url, when},
    session::{Role, Session},
};

/// Most bookings one search shows.
const LIMIT: i64 = 50;

/// The search form.
#[derive(Debug, Deserialize, Default)]
pub struct SearchQuery {
    /// Guest name, plate, room, booking key (case-insensitive, part of).
    q: Option<String>,
    tenant: Option<String>,
}

/// One booking with what each vendor applied.
#[derive(Debug, Clone)]
pub struct BookingView {
    /// Tenant.
    pub tenant: String,
    /// reservation, facility, pass, keyreq.
    pub kind: String,
    /// Booking key.
    pub key: String,
    /// Upstream site (administration).
    pub site: String,
    /// Desired revision.
    pub revision: i64,
    /// Upstream source.
    pub source: String,
    /// Desired state (event payload).
    pub payload: String,
    /// Access window.
    pub starts_at: Option<DateTime<Utc>>,
    /// Access window.
    pub ends_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Per vendor.
    pub applied: Vec<Applied>,
}

/// What one vendor's worker applied.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Vendor.
    pub vendor: String,
    /// Revision applied.
    pub revision: i64,
    /// Vendor object ids.
    pub vendor_ids: serde_json::Value,
    /// Status (`applied`, `removed`, `dead_lettered`, …).
    pub status: String,
    /// Last error and when.
    pub last_error: Option<(String, Option<DateTime<Utc>>)>,
    /// Trace id of the worker's attempt that last wrote the binding: the one that applied
    /// what it records, or that failed with `last_error`.
    pub trace_id: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Bookings matching `q` in the tenants `scope` (`None`: all), newest first.
pub async fn search_bookings(
    state: &ConsoleState,
    scope: Option<Vec<String>>,
    tenant: Option<&str>,
    q: &str,
) -> Result<Vec<BookingView>, ConsoleError> {
    let pattern = format!(
        "%{}%",
        q.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let rows = sqlx::query(
        "SELECT tenant_id, kind, booking_key, site, revision, source, payload::text AS payload,
                starts_at, ends_at, updated_at
           FROM bookings
          WHERE ($1::text[] IS NULL OR tenant_id = ANY ($1))
            AND ($2::text IS NULL OR tenant_id = $2)
            AND (booking_key ILIKE $3 OR payload::text ILIKE $3)
          ORDER BY updated_at DESC
          LIMIT $4",
    )
    .bind(scope)
    .bind(tenant)
    .bind(&pattern)
    .bind(LIMIT)
    .fetch_all(&state.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut b = BookingView {
            tenant: r.try_get("tenant_id")?,
            kind: r.try_get("kind")?,
            key: r.try_get("booking_key")?,
            site: r.try_get("site")?,
            revision: r.try_get("revision")?,
            source: r.try_get("source")?,
            payload: r.try_get("payload")?,
            starts_at: r.try_get("starts_at")?,
            ends_at: r.try_get("ends_at")?,
            updated_at: r.try_get("updated_at")?,
            applied: vec![],
        };
        let bindings = sqlx::query(
            "SELECT vendor, applied_revision, vendor_ids, status, last_error, last_error_at, trace_id,
                    updated_at
               FROM bindings WHERE tenant_id = $1 AND kind = $2 AND booking_key = $3
              ORDER BY vendor",
        )
        .bind(&b.tenant)
        .bind(&b.kind)
        .bind(&b.key)
        .fetch_all(&state.pool)
        .await?;
        for x in bindings {
            let err: Option<String> = x.try_get("last_error")?;
            let err_at: Option<DateTime<Utc>> = x.try_get("last_error_at")?;
            b.applied.push(Applied {
                vendor: x.try_get("vendor")?,
                revision: x.try_get("applied_revision")?,
                vendor_ids: x.try_get("vendor_ids")?,
                status: x.try_get("status")?,
                last_error: err.map(|e| (e, err_at)),
                trace_id: x.try_get("trace_id")?,
                updated_at: x.try_get("updated_at")?,
            });
        }
        out.push(b);
    }
    Ok(out)
}

fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

/// `GET /console/bookings?q=`.
pub async fn search(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Query(sq): Query<SearchQuery>,
) -> Result<Markup, ConsoleError> {
    let tenant = sq.tenant.as_deref().filter(|t| !t.is_empty());
    if let Some(t) = tenant {
        s.require_tenant(t)?;
    }
    let q = sq.q.as_deref().map(str::trim).unwrap_or_default();
    let found = search_bookings(&state, s.tenant_filter(), tenant, q).await?;
    let mask = !s.can(Role::Operator);
    let body = html! {
        form.filters method="get" action=(url("/bookings")) role="search" {
            label.grow { "Guest, plate, room or booking key "
                input type="search" name="q" value=(q) placeholder="e.g. Jansen, AB-123-C, 101, bex-42" autofocus;
            }
            button type="submit" { "Search" }
        }
        p.muted #result-count { (found.len()) " booking(s)" @if found.len() as i64 == LIMIT { " (first " (LIMIT) ")" } }
        @for b in &found {
            section.card.booking data-booking=(b.key) {
                h2 { (b.kind) " " code { (b.key) } " " small.muted { (b.tenant) " · site " (b.site) " · " (b.source) } }
                div.grid2 {
                    div {
                        h3 { "Desired (revision " (b.revision) ")" }
                        p.muted {
                            @if let (Some(a), Some(z)) = (b.starts_at, b.ends_at) { "Access " (when(a)) " → " (when(z)) br; }
                            "Updated " (when(b.updated_at))
                        }
                        details {
                            summary { "Booking as received" @if mask { " (personal data masked)" } }
                            pre.json { (pretty(&if mask { pii::mask_json_text(&b.payload) } else { b.payload.clone() })) }
                        }
                    }
                    div {
                        h3 { "Applied per vendor" }
                        @if b.applied.is_empty() { p.empty { "No vendor has applied it yet." } }
                        @for a in &b.applied {
                            div.applied data-vendor=(a.vendor) {
                                strong { (a.vendor) } " "
                                span class=(format!("badge {}", if a.status == "dead_lettered" || a.last_error.is_some() { "bad" } else { "ok" })) { (a.status) }
                                " revision " (a.revision)
                                @if a.revision < b.revision { " " span.badge.off { "behind" } }
                                pre.ids { (serde_json::to_string_pretty(&a.vendor_ids).unwrap_or_default()) }
                                @if let Some((e, at)) = &a.last_error {
                                    p.error { "Last error" @if let Some(at) = at { " (" (when(*at)) ")" } ": " (if mask { pii::mask_emails_in(e) } else { e.clone() }) }
                                    p { a href=(url(&format!("/dlq?tenant={}&booking={}", b.tenant, b.key))) { "See its dead letters" } }
                                }
                                p.muted.trace-of {
                                    "Updated " (when(a.updated_at)) " · trace "
                                    (trace_ref(a.trace_id.as_deref(), state.config.trace_url.as_deref()))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&s, "bookings", "Bookings", body))
}
