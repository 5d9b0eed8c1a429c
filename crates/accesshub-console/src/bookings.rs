//! Bookings: search by guest, plate, room or booking key; per booking the desired state (the
//! stored event payload, personal data masked for the viewer role) and, per vendor, what the
//! worker applied (`bindings`: revision, vendor ids, status, last error with its time, and
//! the trace id of the attempt that applied it or failed).
//!
//! The search itself is `accesshub_connections::bookings`, shared with the admin API's
//! `GET /admin/v1/bookings`.

use accesshub_connections::bookings::{self, BookingQuery};
use axum::{
    Extension,
    extract::{Query, State},
};
use maud::{Markup, html};
use serde::Deserialize;

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

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
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
    let mut found = bookings::search(
        &state.pool,
        &BookingQuery {
            scope: s.tenant_filter(),
            tenant,
            text: q,
            limit: LIMIT,
            ..BookingQuery::default()
        },
    )
    .await?;
    let mask = !s.can(Role::Operator);
    if mask {
        found.iter_mut().for_each(bookings::BookingView::mask_pii);
    }
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
                            pre.json { (pretty(&b.payload)) }
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
                                @if let Some(e) = &a.last_error {
                                    p.error { "Last error" @if let Some(at) = a.last_error_at { " (" (when(at)) ")" } ": " (e) }
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
