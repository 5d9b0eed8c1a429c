//! Sync: "Sync (next 5 days)" and "Sync Now" per connection (queued for the reconciler
//! exactly as `POST /admin/v1/syncs` does), the runs' live progress and counts (the table
//! refreshes itself while a run is active) with what the pull from the booking system found
//! (fetched, new, changed, vanished; readmitted: ignored events brought back), the history
//! of runs with their failures, and a tab
//! listing the webhook events booking-ingest ignored (access control off there), as
//! `GET /admin/v1/tenants/{t}/ignored` does.

use accesshub_connections::IgnoredBooking;
use accesshub_sync_runs::{
    ConnectionRef, RunStatus, Scope, SyncRun, Trigger, model::PullCounts, store,
};
use axum::{
    Extension, Form,
    extract::{Query, State},
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use crate::{
    ConsoleState, audit,
    connections::{visible_connections, visible_tenants},
    error::ConsoleError,
    html::{csrf, page, url, verdict, when},
    session::{Role, Session},
};

/// Runs the history shows.
const HISTORY: usize = 30;

async fn runs(state: &ConsoleState, s: &Session) -> Result<Vec<SyncRun>, ConsoleError> {
    // Scoped tokens: read more and filter, so their own runs fill the table.
    let limit = if s.tenants.is_some() {
        500
    } else {
        HISTORY as i64
    };
    let mut runs = store::list_runs(&state.pool, None, None, limit).await?;
    runs.retain(|r| s.sees(&r.connection.tenant));
    runs.truncate(HISTORY);
    Ok(runs)
}

fn status_class(st: RunStatus) -> &'static str {
    match st {
        RunStatus::Succeeded => "badge ok",
        RunStatus::Failed => "badge bad",
        RunStatus::Partial => "badge warn",
        RunStatus::Queued | RunStatus::Running => "badge live",
    }
}

fn runs_table(runs: &[SyncRun]) -> Markup {
    let live = runs.iter().any(|r| !r.status.is_final());
    html! {
        div #runs hx-get=[live.then(|| url("/sync/runs"))] hx-trigger=[live.then_some("every 1s")] hx-swap="outerHTML" data-live=(live) {
            @if runs.is_empty() {
                p.empty { "No sync runs yet." }
            } @else {
                div.table-wrap { table.runs {
                    thead { tr {
                        th { "Run" } th { "Connection" } th { "Scope" } th { "Status" }
                        th { "Pulled" }
                        th { "Checked" } th { "In sync" } th { "Created" } th { "Updated" } th { "Removed" } th { "Failed" }
                        th { "Started" } th { "By" }
                    } }
                    tbody {
                        @for r in runs {
                            tr data-run=(r.id) data-status=(r.status.as_str()) {
                                td data-label="Run" { "#" (r.id) }
                                td data-label="Connection" { (r.connection.to_string()) }
                                td data-label="Scope" { (r.scope.to_string()) }
                                td data-label="Status" { span class=(status_class(r.status)) { (r.status.as_str()) } }
                                td.pull data-label="Pulled" { (pull_cell(r.pull.as_ref())) }
                                td.num data-label="Checked" data-count="checked" { (r.counts.checked) }
                                td.num data-label="In sync" data-count="in_sync" { (r.counts.in_sync) }
                                td.num data-label="Created" data-count="created" { (r.counts.created) }
                                td.num data-label="Updated" data-count="updated" { (r.counts.updated) }
                                td.num data-label="Removed" data-count="removed" { (r.counts.removed) }
                                td.num data-label="Failed" data-count="failed" { (r.counts.failed) }
                                td data-label="Started" { (when(r.started_at.unwrap_or(r.created_at))) }
                                td data-label="By" { (r.trigger.as_str()) @if let Some(b) = &r.requested_by { ": " (b) } }
                            }
                            @if r.error.is_some() || r.note.is_some() {
                                tr.detail { td colspan="13" {
                                    @if let Some(e) = &r.error { span.error { (e) } " " }
                                    @if let Some(n) = &r.note { span.muted { (n) } }
                                } }
                            }
                        }
                    }
                } }
            }
        }
    }
}

/// What the run's pull read from the booking system, or why there is nothing.
fn pull_cell(pull: Option<&PullCounts>) -> Markup {
    match pull {
        None => {
            html! { span.muted title="No upstream API credentials: the run compared stored bookings only." { "no pull" } }
        }
        Some(p) => html! {
            @for (key, n) in [("fetched", p.fetched), ("new", p.new), ("changed", p.changed), ("vanished", p.vanished), ("readmitted", p.readmitted)] {
                span.pull-count data-pull=(key) { (n) " " (key) } " "
            }
        },
    }
}

/// The Sync screen's tabs.
fn tabs(active: &str) -> Markup {
    html! {
        nav.tabs {
            @for (path, label) in [("/sync", "Runs"), ("/sync/ignored", "Ignored events")] {
                a href=(url(path)) class=[(path == active).then_some("active")] { (label) }
            }
        }
    }
}

/// `?queued=` after a request.
#[derive(Debug, Deserialize, Default)]
pub struct SyncPageQuery {
    queued: Option<i64>,
    already: Option<i64>,
}

/// `GET /console/sync`.
pub async fn render(
    state: &ConsoleState,
    s: &Session,
    q: &SyncPageQuery,
) -> Result<Markup, ConsoleError> {
    let conns = visible_connections(state, s).await?;
    let runs = runs(state, s).await?;
    let body = html! {
        (tabs("/sync"))
        @if let Some(id) = q.queued { (verdict(true, &format!("Run #{id} queued: the counts below update as it goes."))) }
        @if let Some(id) = q.already { (verdict(true, &format!("Run #{id} of this connection is already under way: following it below."))) }
        section.card {
            h2 { "Connections" }
            @if conns.is_empty() { p.empty { "No connections yet." } }
            div.table-wrap { table.sync-buttons {
                tbody {
                    @for c in &conns {
                        tr data-connection=(format!("{}/{}/{}", c.tenant, c.vendor(), c.name)) {
                            td { (c.tenant) "/" (c.vendor().as_str()) "/" (c.name) @if !c.enabled { " " span.badge.off { "disabled" } } }
                            td.actions {
                                @if s.can(Role::Operator) {
                                    @for (scope, label) in [("upcoming", "Sync (next 5 days)"), ("active", "Sync Now")] {
                                        form method="post" action=(url("/sync")) {
                                            (csrf(s))
                                            input type="hidden" name="tenant" value=(c.tenant);
                                            input type="hidden" name="vendor" value=(c.vendor().as_str());
                                            input type="hidden" name="name" value=(c.name);
                                            input type="hidden" name="scope" value=(scope);
                                            button type="submit" data-scope=(scope) { (label) }
                                        }
                                    }
                                } @else {
                                    span.muted { "Syncing needs the operator role." }
                                }
                            }
                        }
                    }
                }
            } }
        }
        section.card {
            h2 { "Runs" }
            (runs_table(&runs))
        }
    };
    Ok(page(s, "sync", "Sync", body))
}

/// `GET /console/sync`.
pub async fn show(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Query(q): Query<SyncPageQuery>,
) -> Result<Markup, ConsoleError> {
    render(&state, &s, &q).await
}

/// `GET /console/sync/runs`: the runs table alone (htmx polls it while a run is active).
pub async fn runs_fragment(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
) -> Result<Markup, ConsoleError> {
    Ok(runs_table(&runs(&state, &s).await?))
}

/// The Sync buttons' form.
#[derive(Debug, Deserialize)]
pub struct SyncForm {
    tenant: String,
    vendor: String,
    name: String,
    scope: String,
}

/// `POST /console/sync`: queues a run (one per connection at a time) and shows it.
pub async fn request(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Form(f): Form<SyncForm>,
) -> Result<Response, ConsoleError> {
    s.require(Role::Operator, "starting a sync")?;
    s.require_tenant(&f.tenant)?;
    let vendor: accesshub_connections::Vendor = f
        .vendor
        .parse()
        .map_err(|e: String| ConsoleError::BadRequest(e))?;
    let scope = match f.scope.as_str() {
        "upcoming" => Scope::Upcoming(Scope::DEFAULT_DAYS),
        "active" => Scope::Active,
        "full" => Scope::Full,
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "Unknown sync scope \"{other}\"."
            )));
        }
    };
    if state
        .connections
        .get(&f.tenant, vendor, &f.name)
        .await?
        .is_none()
    {
        return Err(ConsoleError::NotFound(format!(
            "Tenant \"{}\" has no {vendor} connection named \"{}\".",
            f.tenant, f.name
        )));
    }
    let conn = ConnectionRef::new(f.tenant.clone(), vendor, f.name.clone());
    let audit = audit::begin(
        &state,
        &s,
        "sync.request",
        Some(&conn.tenant),
        &conn.to_string(),
        None,
    )
    .await?;
    let out = store::request_run(&state.pool, &conn, scope, Trigger::Api, Some(&s.name)).await?;
    let run = out.run().clone();
    let queued = matches!(out, store::RequestOutcome::Queued(_));
    // Already active: nothing queued, the pending record is dropped.
    if queued {
        audit.commit(None, serde_json::to_value(&run).ok()).await;
    }
    let q = if queued { "queued" } else { "already" };
    Ok(Redirect::to(&url(&format!("/sync?{q}={}", run.id))).into_response())
}

/// Ignored events each tenant's list shows.
const IGNORED: i64 = 100;

/// `?tenant=` of the ignored events tab.
#[derive(Debug, Deserialize, Default)]
pub struct IgnoredQuery {
    tenant: Option<String>,
}

/// Why booking-ingest ignored a booking, in the operator's words.
fn ignored_reason(reason: &str) -> &str {
    match reason {
        "site_not_activated" => "No connection is activated for this site.",
        "connection_disabled" => "The connection for this site is disabled.",
        "unmapped_administration" => "The administration is not mapped to a vendor site.",
        "unmapped_facility" => "The facility is not mapped to an iPassan asset.",
        "unmapped_pass_type" => "The pass type is not mapped to Tapkey locks.",
        other => other,
    }
}

/// `GET /console/sync/ignored`: the webhook events booking-ingest ignored per tenant (the
/// latest first), so an operator sees why a booking got no access; mapping the site and the
/// booking's next change (or a Sync) brings it in.
pub async fn ignored(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Query(q): Query<IgnoredQuery>,
) -> Result<Markup, ConsoleError> {
    let only = q.tenant.as_deref().filter(|t| !t.is_empty());
    if let Some(t) = only {
        s.require_tenant(t)?;
    }
    let mut lists: Vec<(String, Vec<IgnoredBooking>)> = Vec::new();
    for (tenant, _) in visible_tenants(&state, &s).await? {
        if only.is_some_and(|t| t != tenant) {
            continue;
        }
        let list = state.tenants.ignored(&tenant, IGNORED).await?;
        lists.push((tenant, list));
    }
    let body = html! {
        (tabs("/sync/ignored"))
        p.hint { "Webhook events accepted but deliberately not turned into access: access control is off where they point. Map the site (Connections), then the booking's next change or a Sync brings it in." }
        @for (tenant, list) in &lists {
            section.card data-tenant=(tenant) {
                h2 { (tenant) " " small.muted { (list.len()) " ignored booking(s)" @if list.len() as i64 == IGNORED { " (latest " (IGNORED) ")" } } }
                @if list.is_empty() {
                    p.empty { "Nothing ignored." }
                } @else {
                    div.table-wrap { table.runs.ignored {
                        thead { tr { th { "Source" } th { "Booking" } th { "Site" } th { "Why" } th { "Deliveries" } th { "Last" } } }
                        tbody {
                            @for i in list {
                                tr data-ignored=(i.booking_key) data-reason=(i.reason) {
                                    td data-label="Source" { (i.source) }
                                    td data-label="Booking" { (i.kind) " " code { (i.booking_key) } }
                                    td data-label="Site" { (i.site) }
                                    td data-label="Why" { (ignored_reason(&i.reason)) " " small.muted { "(" (i.reason) ")" } }
                                    td.num data-label="Deliveries" { (i.deliveries) }
                                    td data-label="Last" { (when(i.last_at)) }
                                }
                            }
                        }
                    } }
                }
            }
        }
        @if lists.is_empty() { p.empty { "No tenants." } }
    };
    Ok(page(&s, "sync", "Sync · ignored events", body))
}
