//! Dead letters: the same operations as `accessctl dlq` over the same library
//! (`accesshub-dlq`): list with filters (tenant, vendor, reason, age), detail with reason
//! and payload (personal data masked for the viewer role; an operator's unmasked view is
//! audited first, as `--show-pii`), replay of one entry or of a filter with a dry run
//! first, and purge with a preview and a confirmation. Which entries a session may see and
//! act on is decided by `accesshub_dlq::Scope`, as for the admin API's `/admin/v1/dlq`.

use std::collections::BTreeMap;

use accesshub_dlq::{Filter, NoProgress, ReplayOptions, ReplayStatus, ReplayTarget, Scope};
use axum::{
    Extension, Form,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::{Duration, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use crate::{
    ConsoleState, audit,
    connections::visible_tenants,
    error::ConsoleError,
    html::{csrf, page, trace_ref, url, verdict, when},
    session::{Role, Session},
};

/// Entries one listing shows.
const LIMIT: usize = 200;

/// The filters, as query string or form fields.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct DlqQuery {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    vendor: String,
    #[serde(default)]
    reason: String,
    /// `1h`, `24h`, `7d` or empty.
    #[serde(default)]
    age: String,
    #[serde(default)]
    booking: String,
}

fn nonempty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl ActionForm {
    fn seq(&self) -> Result<Option<u64>, ConsoleError> {
        match self.seq.trim() {
            "" => Ok(None),
            s => s
                .parse()
                .map(Some)
                .map_err(|_| ConsoleError::BadRequest(format!("\"{s}\" is not a dead letter id."))),
        }
    }
}

impl DlqQuery {
    /// The library filter, or the field at fault.
    fn filter(&self, s: &Session) -> Result<Filter, (&'static str, String)> {
        let since = match self.age.trim() {
            "" => None,
            "1h" => Some(Utc::now() - Duration::hours(1)),
            "24h" => Some(Utc::now() - Duration::hours(24)),
            "7d" => Some(Utc::now() - Duration::days(7)),
            other => {
                return Err((
                    "age",
                    format!("\"{other}\" is not one of the ages offered."),
                ));
            }
        };
        let tenant = nonempty(&self.tenant);
        if let Some(t) = &tenant
            && !s.sees(t)
        {
            return Err(("tenant", format!("Your token may not see tenant \"{t}\".")));
        }
        Ok(Filter {
            tenant,
            worker: nonempty(&self.vendor),
            booking: nonempty(&self.booking),
            reason_contains: nonempty(&self.reason),
            since,
            ..Filter::default()
        })
    }

    fn query_string(&self) -> String {
        serde_urlencoded::to_string([
            ("tenant", self.tenant.as_str()),
            ("vendor", self.vendor.as_str()),
            ("reason", self.reason.as_str()),
            ("age", self.age.as_str()),
            ("booking", self.booking.as_str()),
        ])
        .unwrap_or_default()
    }
}

/// The session's tenants, as the DLQ library takes them.
fn scope(s: &Session) -> Scope<'_> {
    Scope::new(s.tenants.as_ref())
}

fn filters_form(tenants: &[(String, String)], q: &DlqQuery, error: Option<(&str, &str)>) -> Markup {
    let err = |f: &str| error.filter(|(k, _)| *k == f).map(|(_, m)| m.to_owned());
    html! {
        form.filters method="get" action=(url("/dlq")) #dlq-filters {
            label { "Tenant "
                select name="tenant" {
                    option value="" { "All" }
                    @for (id, name) in tenants { option value=(id) selected[q.tenant == *id] { (name) } }
                }
                @if let Some(e) = err("tenant") { small.error data-field="tenant" { (e) } }
            }
            label { "Vendor "
                select name="vendor" {
                    option value="" { "All" }
                    @for v in ["cloudpass", "dormakaba", "ipassan", "tapkey"] { option value=(v) selected[q.vendor == v] { (v) } }
                }
            }
            label { "Reason contains " input name="reason" value=(q.reason); }
            label { "Age "
                select name="age" {
                    @for (v, l) in [("", "Any"), ("1h", "Last hour"), ("24h", "Last 24 hours"), ("7d", "Last 7 days")] {
                        option value=(v) selected[q.age == v] { (l) }
                    }
                }
                @if let Some(e) = err("age") { small.error data-field="age" { (e) } }
            }
            @if !q.booking.is_empty() { input type="hidden" name="booking" value=(q.booking); }
            button type="submit" { "Filter" }
        }
    }
}

fn hidden_filter(q: &DlqQuery) -> Markup {
    html! {
        input type="hidden" name="tenant" value=(q.tenant);
        input type="hidden" name="vendor" value=(q.vendor);
        input type="hidden" name="reason" value=(q.reason);
        input type="hidden" name="age" value=(q.age);
        input type="hidden" name="booking" value=(q.booking);
    }
}

/// `GET /console/dlq`.
pub async fn list(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Query(q): Query<DlqQuery>,
) -> Result<Response, ConsoleError> {
    let tenants = visible_tenants(&state, &s).await?;
    let filter = match q.filter(&s) {
        Ok(f) => f,
        Err((field, msg)) => {
            let body = filters_form(&tenants, &q, Some((field, &msg)));
            return Ok((
                StatusCode::BAD_REQUEST,
                page(&s, "dlq", "Dead letters", body),
            )
                .into_response());
        }
    };
    let mut entries = state.dlq.list_in(scope(&s), &filter, Some(LIMIT)).await?;
    for e in &mut entries {
        e.mask_pii();
    }
    let body = html! {
        (filters_form(&tenants, &q, None))
        p.muted #dlq-count { (entries.len()) " dead letter(s)" }
        @if entries.is_empty() { p.empty { "Nothing failed. Nothing to do here." } }
        @else {
            div.table-wrap { table.dlq {
                thead { tr { th { "Id" } th { "Failed" } th { "Tenant" } th { "Worker" } th { "Booking" } th { "Reason" } th { "Attempts" } th { "Replays" } } }
                tbody {
                    @for e in &entries {
                        tr data-seq=(e.seq) {
                            td data-label="Id" { a href=(url(&format!("/dlq/{}", e.seq))) { "#" (e.seq) } }
                            td data-label="Failed" { (when(e.failed_at)) }
                            td data-label="Tenant" { (e.tenant.as_deref().unwrap_or("?")) }
                            td data-label="Worker" { (e.worker) }
                            td data-label="Booking" { (e.kind.as_deref().unwrap_or("")) " " (e.booking_key.as_deref().unwrap_or("")) }
                            td.reason data-label="Reason" { span class=(format!("badge {}", if e.class == accesshub_domain::ErrorClass::Permanent { "bad" } else { "warn" })) { (e.class.to_string()) } " " (e.reason) }
                            td.num data-label="Attempts" { (e.attempts) }
                            td.num data-label="Replays" { (e.replays) }
                        }
                    }
                }
            } }
            @if s.can(Role::Operator) {
                div.actions {
                    form method="post" action=(url("/dlq/replay")) {
                        (csrf(&s)) (hidden_filter(&q))
                        button type="submit" #replay-filtered { "Replay these " (entries.len()) "… (dry run first)" }
                    }
                    form method="post" action=(url("/dlq/purge")) {
                        (csrf(&s)) (hidden_filter(&q))
                        button.danger type="submit" #purge-filtered { "Purge these…" }
                    }
                }
            }
        }
    };
    Ok(page(&s, "dlq", "Dead letters", body).into_response())
}

/// `GET /console/dlq/{seq}`: reason, headers and payload. The viewer sees personal data
/// masked; for an operator the unmasked view is recorded in the audit log first.
pub async fn detail(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Path(seq): Path<u64>,
) -> Result<Markup, ConsoleError> {
    let detail = state.dlq.show_in(scope(&s), seq).await?;
    let mut e = detail.entry;
    let masked = !s.can(Role::Operator);
    if masked {
        e.mask_pii();
    } else {
        audit::record(
            &state,
            &s,
            "dlq.show_pii",
            e.tenant.as_deref(),
            &format!("dlq/{seq}"),
            None,
            Some(serde_json::json!({ "seq": seq, "via": "console" })),
        )
        .await;
    }
    let payload = e
        .payload
        .as_deref()
        .map(|p| {
            serde_json::from_str::<serde_json::Value>(p)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| p.to_owned())
        })
        .unwrap_or_else(|| "(the original message is no longer available)".into());
    let body = html! {
        section.card {
            dl.facts {
                dt { "Reason" } dd.error #dlq-reason { (e.reason) }
                dt { "Class" } dd { (e.class.to_string()) }
                dt { "Tenant" } dd { (e.tenant.as_deref().unwrap_or("?")) }
                dt { "Worker" } dd { (e.worker) }
                dt { "Booking" } dd { (e.kind.as_deref().unwrap_or("")) " " (e.booking_key.as_deref().unwrap_or("")) }
                dt { "Failed at" } dd { (when(e.failed_at)) }
                dt { "Attempts" } dd { (e.attempts) }
                dt { "Trace id" } dd { (trace_ref(e.trace_id.as_deref(), state.config.trace_url.as_deref())) }
                dt { "Replayed" } dd { (e.replays) " time(s)" @if let Some(at) = e.last_replayed_at { ", last " (when(at)) } }
            }
            h3 { "Payload" @if masked { " (personal data masked)" } }
            pre.json #dlq-payload { (payload) }
            @if !detail.earlier_replays.is_empty() {
                h3 { "Earlier replays of this event" }
                ul { @for r in &detail.earlier_replays { li { (format!("{r:?}")) } } }
            }
        }
        @if s.can(Role::Operator) {
            div.actions {
                form method="post" action=(url("/dlq/replay")) {
                    (csrf(&s))
                    input type="hidden" name="seq" value=(seq);
                    button type="submit" #replay-one { "Replay… (dry run first)" }
                }
                form method="post" action=(url("/dlq/purge")) {
                    (csrf(&s))
                    input type="hidden" name="seq" value=(seq);
                    button.danger type="submit" #purge-one { "Purge…" }
                }
            }
        }
        p { a href=(url("/dlq")) { "Back to dead letters" } }
    };
    Ok(page(&s, "dlq", &format!("Dead letter #{seq}"), body))
}

/// Replay and purge forms: one entry (`seq`) or a filter; `confirm` after the preview.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    /// A string: numbers do not survive `serde(flatten)` in form bodies.
    #[serde(default)]
    seq: String,
    #[serde(flatten)]
    filter: DlqQuery,
    /// `yes` once the operator saw the dry run / preview.
    confirm: Option<String>,
    /// For a confirmed purge: exactly the previewed ids (comma separated).
    seqs: Option<String>,
}

/// The form's target, checked against the session's tenants.
async fn check_target(
    state: &ConsoleState,
    s: &Session,
    f: &ActionForm,
) -> Result<ReplayTarget, ConsoleError> {
    let target = match f.seq()? {
        Some(seq) => ReplayTarget::One(seq),
        None => ReplayTarget::Filter(
            f.filter
                .filter(s)
                .map_err(|(_, m)| ConsoleError::BadRequest(m))?,
        ),
    };
    state.dlq.check_target(scope(s), &target).await?;
    Ok(target)
}

fn describe(t: &ReplayTarget) -> String {
    match t {
        ReplayTarget::One(seq) => format!("dead letter #{seq}"),
        ReplayTarget::Filter(f) if f.is_empty() => "every dead letter".into(),
        ReplayTarget::Filter(_) => "the filtered dead letters".into(),
    }
}

fn target_doc(t: &ReplayTarget) -> serde_json::Value {
    match t {
        ReplayTarget::One(seq) => serde_json::json!({ "seq": seq }),
        ReplayTarget::Filter(f) => serde_json::to_value(f).unwrap_or_default(),
    }
}

fn audit_tenant(t: &ReplayTarget, f: &ActionForm) -> Option<String> {
    match t {
        ReplayTarget::One(_) => None,
        ReplayTarget::Filter(_) => nonempty(&f.filter.tenant),
    }
}

/// `POST /console/dlq/replay`: without `confirm` a dry run (nothing published) with a
/// button to replay for real; with `confirm=yes` the replay, then its report.
pub async fn replay(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Form(f): Form<ActionForm>,
) -> Result<Markup, ConsoleError> {
    s.require(Role::Operator, "replaying dead letters")?;
    let target = check_target(&state, &s, &f).await?;
    let real = f.confirm.as_deref() == Some("yes");
    let opts = ReplayOptions {
        dry_run: !real,
        replayed_by: s.name.clone(),
        ..ReplayOptions::default()
    };
    let report = state
        .dlq
        .replay_in(scope(&s), &target, &opts, &mut NoProgress)
        .await?;
    let tenant = match &target {
        ReplayTarget::One(seq) => state.dlq.get(*seq).await.ok().and_then(|e| e.tenant),
        ReplayTarget::Filter(_) => audit_tenant(&target, &f),
    };
    if real {
        audit::record(
            &state,
            &s,
            "dlq.replay",
            tenant.as_deref(),
            &describe(&target),
            None,
            Some(serde_json::json!({
                "target": target_doc(&target), "replayed": report.replayed,
                "skipped": report.skipped, "failed": report.failed,
            })),
        )
        .await;
    }
    let outcomes: BTreeMap<u64, &ReplayStatus> =
        report.outcomes.iter().map(|o| (o.seq, &o.status)).collect();
    let body = html! {
        @if real {
            (verdict(report.failed == 0, &format!(
                "Replayed {} of {} ({} skipped, {} failed). The worker processes them now; check Bookings.",
                report.replayed, report.selected, report.skipped, report.failed)))
        } @else {
            p #dry-run { "Dry run: nothing was published. " strong { (report.dry_run) } " of " (report.selected)
                " would be replayed, " (report.skipped) " skipped." }
        }
        div.table-wrap { table {
            thead { tr { th { "Id" } th { "Outcome" } } }
            tbody { @for (seq, st) in &outcomes {
                tr { td { "#" (seq) } td { (match st {
                    ReplayStatus::Replayed { .. } => "replayed".to_owned(),
                    ReplayStatus::DryRun => "would be replayed".to_owned(),
                    ReplayStatus::Skipped { reason } => format!("skipped: {reason}"),
                    ReplayStatus::Failed { error } => format!("failed: {error}"),
                }) } }
            } }
        } }
        @if !real && report.dry_run > 0 {
            form method="post" action=(url("/dlq/replay")) {
                (csrf(&s))
                @if let Ok(Some(seq)) = f.seq() { input type="hidden" name="seq" value=(seq); } @else { (hidden_filter(&f.filter)) }
                input type="hidden" name="confirm" value="yes";
                button type="submit" #replay-confirm { "Replay " (report.dry_run) " for real" }
            }
        }
        p { a href=(url(&format!("/dlq?{}", f.filter.query_string()))) { "Back to dead letters" } }
    };
    Ok(page(&s, "dlq", "Replay dead letters", body))
}

/// `POST /console/dlq/purge`: without `confirm` a preview of what would be deleted; with
/// `confirm=yes` deletes exactly the previewed entries.
pub async fn purge(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Form(f): Form<ActionForm>,
) -> Result<Markup, ConsoleError> {
    s.require(Role::Operator, "purging dead letters")?;
    let target = check_target(&state, &s, &f).await?;
    if f.confirm.as_deref() == Some("yes") {
        let seqs: Vec<u64> = f
            .seqs
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect();
        // Only what the preview showed, and only entries the session may touch.
        let (report, allowed) = state.dlq.delete_in(scope(&s), &seqs).await?;
        audit::record(
            &state,
            &s,
            "dlq.purge",
            audit_tenant(&target, &f).as_deref(),
            &describe(&target),
            None,
            Some(serde_json::json!({ "target": target_doc(&target), "seqs": allowed, "deleted": report.deleted })),
        )
        .await;
        return Ok(page(
            &s,
            "dlq",
            "Purge dead letters",
            html! {
                (verdict(true, &format!("Purged {} dead letter(s) ({} were already gone).", report.deleted, report.missing)))
                p { a href=(url("/dlq")) { "Back to dead letters" } }
            },
        ));
    }
    let preview = state.dlq.purge_preview_in(scope(&s), &target).await?;
    let ids: Vec<String> = preview.iter().map(|e| e.seq.to_string()).collect();
    let body = html! {
        p #purge-preview { "This deletes " strong { (preview.len()) } " dead letter(s) for good: "
            (ids.iter().map(|i| format!("#{i}")).collect::<Vec<_>>().join(", ")) ". They cannot be replayed afterwards." }
        form method="post" action=(url("/dlq/purge")) {
            (csrf(&s))
            @if let Ok(Some(seq)) = f.seq() { input type="hidden" name="seq" value=(seq); } @else { (hidden_filter(&f.filter)) }
            input type="hidden" name="seqs" value=(ids.join(","));
            input type="hidden" name="confirm" value="yes";
            button.danger type="submit" #purge-confirm disabled[preview.is_empty()] { "Yes, purge " (preview.len()) }
        }
        p { a href=(url("/dlq")) { "Cancel" } }
    };
    Ok(page(&s, "dlq", "Purge dead letters", body))
}
