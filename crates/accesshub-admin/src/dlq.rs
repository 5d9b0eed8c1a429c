//! Dead letters, bookings and the one-screen status on the admin API (issue 23): what
//! `accessctl dlq`, `accessctl status` and booking look-ups used to read straight from NATS and
//! Postgres with credentials of their own, now behind the same tokens, roles and tenant scopes
//! as every other route. The logic is the libraries' (`accesshub_dlq::Scope`,
//! `accesshub_connections::bookings`), shared with the console.
//!
//! Viewers read (personal data masked); operators replay (a dry run unless `dry_run: false`)
//! and purge (a preview unless `confirm: true`); only an admin sees personal data, with
//! `show_pii=true`, and that view is written to the audit log before anything is shown.

use std::collections::{BTreeSet, HashMap};

use accesshub_connections::bookings::{self, BookingQuery, BookingView};
use accesshub_dlq::{
    DlqEntry, DlqError, EntryDetail, Filter, NoProgress, ReplayOptions, ReplayReport, ReplayStatus,
    ReplayTarget, Scope, Status, ids_by_tenant,
};
use accesshub_domain::ErrorClass;
use axum::{
    Extension, Json,
    extract::{Path, Query, State},
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    AdminState,
    audit::{self, Actor, Change},
    auth::{Principal, Role, Tenants},
    error::{ApiError, parse_json},
};

impl From<DlqError> for ApiError {
    fn from(e: DlqError) -> Self {
        use accesshub_domain::Classify as _;
        match e {
            // Another tenant's entry is answered as a missing one: the answer does not tell
            // whether it exists.
            DlqError::NotFound(seq) | DlqError::OutOfScope(seq) => {
                ApiError::NotFound(format!("no DLQ entry with id {seq}"))
            }
            DlqError::Forbidden(m) => ApiError::Forbidden(m),
            DlqError::Invalid { field, message } => ApiError::field(field, message),
            DlqError::Db(e) => e.into(),
            e @ (DlqError::Refused { .. } | DlqError::Decode { .. }) => {
                ApiError::Conflict(e.to_string())
            }
            e if e.class() == ErrorClass::Transient => ApiError::Unavailable(e.to_string()),
            e => {
                tracing::error!(error = %e, "DLQ operation failed");
                ApiError::Internal
            }
        }
    }
}

/// The token's tenants as the DLQ library takes them.
fn scope_of(who: &Principal) -> Scope<'_> {
    match &who.tenants {
        Tenants::All => Scope::All,
        Tenants::Only(set) => Scope::Only(set),
    }
}

/// Which dead letters: every set field must match. Query parameters of `GET /dlq`, the
/// `filter` object of replay and purge.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DlqFilter {
    /// Tenant id (a token of some tenants sees only theirs).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Vendor (`tapkey`) or worker (`tapkey-worker`).
    #[serde(default)]
    pub vendor: Option<String>,
    /// Event kind (reservation, facility, pass, keyreq).
    #[serde(default)]
    pub kind: Option<String>,
    /// Booking key.
    #[serde(default)]
    pub booking: Option<String>,
    /// `transient` or `permanent`.
    #[serde(default)]
    pub class: Option<String>,
    /// Text contained in the reason (case-insensitive).
    #[serde(default)]
    pub reason: Option<String>,
    /// Failed at or after (RFC 3339).
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// Failed before (RFC 3339).
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
    /// Failed within this age: a number and `s`, `m`, `h` or `d` (`30m`, `24h`, `7d`); not
    /// together with `since`.
    #[serde(default)]
    pub age: Option<String>,
}

/// `30m` → 30 minutes; `None` for anything else.
fn parse_age(s: &str) -> Option<chrono::Duration> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()].trim().parse().ok()?;
    if !(0..=10 * 365 * 86_400).contains(&n) {
        return None;
    }
    match unit {
        's' => Some(chrono::Duration::seconds(n)),
        'm' => Some(chrono::Duration::minutes(n)),
        'h' => Some(chrono::Duration::hours(n)),
        'd' => Some(chrono::Duration::days(n)),
        _ => None,
    }
}

impl DlqFilter {
    /// The library filter, or 400 naming the parameter at fault.
    pub fn to_filter(&self) -> Result<Filter, ApiError> {
        let nonempty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let class = match nonempty(&self.class) {
            None => None,
            Some(c) => Some(
                c.parse::<ErrorClass>()
                    .map_err(|_| ApiError::field("class", "must be transient or permanent"))?,
            ),
        };
        let since = match (nonempty(&self.age), self.since) {
            (Some(_), Some(_)) => {
                return Err(ApiError::field("age", "give either age or since, not both"));
            }
            (Some(a), None) => Some(
                Utc::now()
                    - parse_age(&a).ok_or_else(|| {
                        ApiError::field("age", "must be a number and s, m, h or d, e.g. 24h")
                    })?,
            ),
            (None, s) => s,
        };
        Ok(Filter {
            tenant: nonempty(&self.tenant),
            worker: nonempty(&self.vendor),
            kind: nonempty(&self.kind),
            booking: nonempty(&self.booking),
            class,
            since,
            until: self.until,
            reason_contains: nonempty(&self.reason),
        })
    }
}

/// Query of `GET /dlq`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DlqListOptions {
    /// At most this many, newest first (default 50).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// Names, e-mails, phones and plates unmasked: admin tokens only, audited first.
    show_pii: Option<bool>,
}

/// Query of `GET /dlq/{seq}` and the bookings routes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PiiOption {
    /// Personal data unmasked: admin tokens only, audited first.
    show_pii: Option<bool>,
}

/// Masks personal data in `items` with `mask`, or, when an admin asked for it, records who saw
/// what first: `action` (`dlq.show_pii`, `bookings.show_pii`) once per tenant, with the ids or
/// keys `seen` lists (never payloads). If a record cannot be stored, nothing is shown.
async fn pii_gate<T>(
    s: &AdminState,
    who: &Principal,
    show_pii: bool,
    items: &mut [T],
    mask: fn(&mut T),
    action: &'static str,
    seen: impl FnOnce(&[T]) -> Vec<(Option<String>, serde_json::Value)>,
) -> Result<(), ApiError> {
    if !show_pii {
        items.iter_mut().for_each(mask);
        return Ok(());
    }
    who.require_role(Role::Admin, "show_pii=true")?;
    let target = action.split('.').next().unwrap_or(action);
    for (tenant, after) in seen(items) {
        let change = Change {
            action,
            tenant: tenant.as_deref(),
            target: target.into(),
            before: None,
            after: Some(after),
        };
        audit_first(s, who, change).await?;
    }
    Ok(())
}

/// [`pii_gate`] for dead letters: the entry ids per tenant.
async fn dlq_pii_gate(
    s: &AdminState,
    who: &Principal,
    show_pii: bool,
    entries: &mut [DlqEntry],
) -> Result<(), ApiError> {
    pii_gate(
        s,
        who,
        show_pii,
        entries,
        DlqEntry::mask_pii,
        "dlq.show_pii",
        |items| {
            ids_by_tenant(items.iter())
                .into_iter()
                .map(|(t, ids)| (t, serde_json::json!({ "entries": ids })))
                .collect()
        },
    )
    .await
}

/// Writes an audit record that must exist before the action; 503 when it cannot be stored.
async fn audit_first(s: &AdminState, who: &Principal, change: Change<'_>) -> Result<(), ApiError> {
    audit::try_record(s.connections.pool(), &Actor::from(who), change)
        .await
        .map_err(|_| {
            ApiError::Unavailable(
                "the audit record could not be stored, so nothing is shown; retry".into(),
            )
        })
}

/// `GET /dlq`.
#[utoipa::path(get, path = "/admin/v1/dlq", tag = "dlq", params(DlqFilter, DlqListOptions), responses((status = 200, description = "Entries, newest first, in the token's tenants; personal data masked unless show_pii", body = Vec<DlqEntry>), crate::openapi::Errors))]
pub(crate) async fn list_dlq(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    Query(f): Query<DlqFilter>,
    Query(o): Query<DlqListOptions>,
) -> Result<Json<Vec<DlqEntry>>, ApiError> {
    let filter = f.to_filter()?;
    let limit = o.limit.unwrap_or(50);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1..=10000"));
    }
    let mut entries = s.dlq.list_in(scope_of(&who), &filter, Some(limit)).await?;
    dlq_pii_gate(&s, &who, o.show_pii.unwrap_or(false), &mut entries).await?;
    Ok(Json(entries))
}

/// `GET /dlq/{seq}`.
#[utoipa::path(get, path = "/admin/v1/dlq/{seq}", tag = "dlq", params(("seq" = u64, Path, description = "Entry id (its DLQ stream sequence)"), PiiOption), responses((status = 200, description = "The entry with payload, headers and earlier replays; 404 also for another tenant's entry", body = EntryDetail), crate::openapi::Errors))]
pub(crate) async fn get_dlq(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    Path(seq): Path<u64>,
    Query(o): Query<PiiOption>,
) -> Result<Json<EntryDetail>, ApiError> {
    let mut detail = s.dlq.show_in(scope_of(&who), seq).await?;
    dlq_pii_gate(
        &s,
        &who,
        o.show_pii.unwrap_or(false),
        std::slice::from_mut(&mut detail.entry),
    )
    .await?;
    Ok(Json(detail))
}

/// Body of `POST /dlq/replay`: one entry (`seq`), or a `filter`, or `all`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// One entry id (replayed even if replayed before; the loop limit still applies).
    #[serde(default)]
    pub seq: Option<u64>,
    /// Entries matching this filter (entries replayed before skipped unless
    /// `include_replayed`).
    #[serde(default)]
    pub filter: Option<DlqFilter>,
    /// Every entry (tokens of every tenant only; others name a tenant in `filter`).
    #[serde(default)]
    pub all: bool,
    /// Publish nothing, report what would be replayed. The default: send `false` to replay.
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// Messages per second (default: as fast as JetStream acknowledges).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Delete each entry once its replay is acknowledged.
    #[serde(default)]
    pub delete_after: bool,
    /// Replay even events replayed `max_replays` times already.
    #[serde(default)]
    pub force: bool,
    /// Loop protection (default 5).
    #[serde(default)]
    pub max_replays: Option<u32>,
    /// With a filter: also replay entries replayed before.
    #[serde(default)]
    pub include_replayed: bool,
}

fn yes() -> bool {
    true
}

/// The target of a replay or purge request, or 400.
fn target_of(
    seq: Option<u64>,
    filter: Option<&DlqFilter>,
    all: bool,
) -> Result<ReplayTarget, ApiError> {
    let filter = filter.map(DlqFilter::to_filter).transpose()?;
    let has_filter = filter.as_ref().is_some_and(|f| !f.is_empty());
    match (seq, has_filter, all) {
        (Some(seq), false, false) => Ok(ReplayTarget::One(seq)),
        (Some(_), _, _) => Err(ApiError::field(
            "seq",
            "give either seq, or a filter / all, not both",
        )),
        (None, true, _) | (None, false, true) => {
            Ok(ReplayTarget::Filter(filter.unwrap_or_default()))
        }
        (None, false, false) => Err(ApiError::field(
            "filter",
            "name the entries: seq, a non-empty filter, or all: true",
        )),
    }
}

/// The selection as recorded in the audit log (ids and filter, never payloads).
fn selection_doc(t: &ReplayTarget) -> serde_json::Value {
    match t {
        ReplayTarget::One(seq) => serde_json::json!({ "seq": seq }),
        ReplayTarget::Filter(f) => serde_json::to_value(f).unwrap_or_default(),
    }
}

/// `POST /dlq/replay`.
#[utoipa::path(post, path = "/admin/v1/dlq/replay", tag = "dlq", request_body(content = ReplayRequest), responses((status = 200, description = "What was (or, in a dry run, would be) replayed", body = ReplayReport), crate::openapi::Errors))]
pub(crate) async fn replay_dlq(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<ReplayReport>, ApiError> {
    let r: ReplayRequest = parse_json(&body)?;
    if let Some(rate) = r.rate
        && !(rate > 0.0 && rate.is_finite())
    {
        return Err(ApiError::field("rate", "must be a positive number"));
    }
    let target = target_of(r.seq, r.filter.as_ref(), r.all)?;
    let scope = scope_of(&who);
    s.dlq.check_target(scope, &target).await?;
    // The entries' tenants, to file the audit records (a dry run changes nothing: no record).
    let tenants: HashMap<u64, Option<String>> = if r.dry_run {
        HashMap::new()
    } else {
        let entries = match &target {
            ReplayTarget::One(seq) => vec![s.dlq.get_in(scope, *seq).await?],
            ReplayTarget::Filter(f) => s.dlq.list_in(scope, f, None).await?,
        };
        entries.into_iter().map(|e| (e.seq, e.tenant)).collect()
    };
    let defaults = ReplayOptions::default();
    let opts = ReplayOptions {
        dry_run: r.dry_run,
        rate: r.rate,
        delete_after: r.delete_after,
        replayed_by: who.name.clone(),
        max_replays: r.max_replays.unwrap_or(defaults.max_replays),
        force: r.force,
        include_replayed: r.include_replayed,
        ..defaults
    };
    let report = s
        .dlq
        .replay_in(scope, &target, &opts, &mut NoProgress)
        .await?;
    let mut by_tenant = std::collections::BTreeMap::<Option<String>, Vec<u64>>::new();
    for o in &report.outcomes {
        if matches!(o.status, ReplayStatus::Replayed { .. }) {
            let tenant = tenants.get(&o.seq).cloned().flatten();
            by_tenant.entry(tenant).or_default().push(o.seq);
        }
    }
    let selection = selection_doc(&target);
    for (tenant, ids) in by_tenant {
        audit::record(
            s.connections.pool(),
            &Actor::from(&who),
            Change {
                action: "dlq.replay",
                tenant: tenant.as_deref(),
                target: "dlq".into(),
                before: None,
                after: Some(serde_json::json!({ "entries": ids, "selection": selection })),
            },
        )
        .await;
    }
    Ok(Json(report))
}

/// Body of `POST /dlq/purge`: one entry (`seq`), or a `filter`, or `all`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// One entry id.
    #[serde(default)]
    pub seq: Option<u64>,
    /// Entries matching this filter.
    #[serde(default)]
    pub filter: Option<DlqFilter>,
    /// Every entry (tokens of every tenant only; others name a tenant in `filter`).
    #[serde(default)]
    pub all: bool,
    /// `true` deletes; otherwise the answer is a preview of what would be deleted.
    #[serde(default)]
    pub confirm: bool,
    /// With `confirm`: delete only these ids of the selection (exactly what a preview showed).
    #[serde(default)]
    pub seqs: Option<Vec<u64>>,
}

/// Answer of `POST /dlq/purge`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PurgeResponse {
    /// Whether anything was deleted (`confirm: true`).
    pub confirmed: bool,
    /// Preview: the ids a confirmed purge deletes; confirmed: the ids deleted.
    pub seqs: Vec<u64>,
    /// Entries removed.
    pub deleted: u64,
    /// Entries already gone, or not in the selection (or the token's tenants).
    pub missing: u64,
}

/// `POST /dlq/purge`.
#[utoipa::path(post, path = "/admin/v1/dlq/purge", tag = "dlq", request_body(content = PurgeRequest), responses((status = 200, description = "A preview, or what was deleted with confirm: true", body = PurgeResponse), crate::openapi::Errors))]
pub(crate) async fn purge_dlq(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Json<PurgeResponse>, ApiError> {
    let r: PurgeRequest = parse_json(&body)?;
    let target = target_of(r.seq, r.filter.as_ref(), r.all)?;
    let scope = scope_of(&who);
    let preview = s.dlq.purge_preview_in(scope, &target).await?;
    if !r.confirm {
        return Ok(Json(PurgeResponse {
            seqs: preview.iter().map(|e| e.seq).collect(),
            ..PurgeResponse::default()
        }));
    }
    let chosen: Vec<&DlqEntry> = match &r.seqs {
        None => preview.iter().collect(),
        Some(ids) => {
            let ids: BTreeSet<u64> = ids.iter().copied().collect();
            preview.iter().filter(|e| ids.contains(&e.seq)).collect()
        }
    };
    let asked = r.seqs.as_ref().map_or(chosen.len(), Vec::len) as u64;
    let seqs: Vec<u64> = chosen.iter().map(|e| e.seq).collect();
    let (mut report, deleted) = s.dlq.delete_in(scope, &seqs).await?;
    report.missing += asked.saturating_sub(seqs.len() as u64);
    let selection = selection_doc(&target);
    let deleted_set: BTreeSet<u64> = deleted.iter().copied().collect();
    for (tenant, ids) in ids_by_tenant(chosen.into_iter().filter(|e| deleted_set.contains(&e.seq)))
    {
        audit::record(
            s.connections.pool(),
            &Actor::from(&who),
            Change {
                action: "dlq.purge",
                tenant: tenant.as_deref(),
                target: "dlq".into(),
                before: None,
                after: Some(serde_json::json!({ "entries": ids, "selection": selection })),
            },
        )
        .await;
    }
    Ok(Json(PurgeResponse {
        confirmed: true,
        seqs: deleted,
        deleted: report.deleted,
        missing: report.missing,
    }))
}

/// `GET /status`: streams, consumers, DLQ depth per worker, last sync runs, edge sites and
/// parked connections of the whole installation, so tokens of every tenant only.
#[utoipa::path(get, path = "/admin/v1/status", tag = "status", responses((status = 200, description = "The one-screen health view (`accessctl status`); what could not be collected is in problems", body = Status), crate::openapi::Errors))]
pub(crate) async fn status(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Status>, ApiError> {
    if who.tenants != Tenants::All {
        return Err(ApiError::Forbidden(format!(
            "token {:?} is scoped to some tenants; the status of the whole installation needs \
             a token of every tenant",
            who.name
        )));
    }
    Ok(Json(
        accesshub_dlq::collect_status(s.dlq.bus(), s.dlq.pool()).await,
    ))
}

// ---- bookings ----

/// Query of `GET /bookings`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct BookingSearch {
    /// Part of a guest's name, a plate, a room or a booking key (case-insensitive); empty:
    /// the latest bookings.
    q: Option<String>,
    /// Only this tenant.
    tenant: Option<String>,
    /// At most this many, newest first (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Personal data unmasked: admin tokens only, audited first.
    show_pii: Option<bool>,
}

/// [`pii_gate`] for bookings: `kind/key` per tenant.
async fn bookings_pii_gate(
    s: &AdminState,
    who: &Principal,
    show_pii: bool,
    found: &mut [BookingView],
) -> Result<(), ApiError> {
    pii_gate(
        s,
        who,
        show_pii,
        found,
        BookingView::mask_pii,
        "bookings.show_pii",
        |items| {
            let mut by_tenant = std::collections::BTreeMap::<&str, Vec<String>>::new();
            for b in items {
                by_tenant
                    .entry(&b.tenant)
                    .or_default()
                    .push(format!("{}/{}", b.kind, b.key));
            }
            by_tenant
                .into_iter()
                .map(|(t, keys)| (Some(t.to_owned()), serde_json::json!({ "bookings": keys })))
                .collect()
        },
    )
    .await
}

/// `GET /bookings`.
#[utoipa::path(get, path = "/admin/v1/bookings", tag = "bookings", params(BookingSearch), responses((status = 200, description = "Bookings in the token's tenants, newest first, with what each vendor applied; personal data masked unless show_pii", body = Vec<BookingView>), crate::openapi::Errors))]
pub(crate) async fn list_bookings(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<BookingSearch>,
) -> Result<Json<Vec<BookingView>>, ApiError> {
    let tenant = q.tenant.as_deref().filter(|t| !t.is_empty());
    if let Some(t) = tenant {
        who.require_tenant(t)?;
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "must be 1..=500"));
    }
    let mut found = bookings::search(
        s.connections.pool(),
        &BookingQuery {
            scope: who.tenants.as_filter(),
            tenant,
            text: q.q.as_deref().map(str::trim).unwrap_or_default(),
            limit,
            ..BookingQuery::default()
        },
    )
    .await?;
    bookings_pii_gate(&s, &who, q.show_pii.unwrap_or(false), &mut found).await?;
    Ok(Json(found))
}

/// Query of `GET /bookings/{tenant}/{key}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct BookingGet {
    /// Only this kind (a key may be used by more than one kind, e.g. a reservation and its
    /// key request).
    kind: Option<String>,
    /// Personal data unmasked: admin tokens only, audited first.
    show_pii: Option<bool>,
}

/// `GET /bookings/{tenant}/{key}`.
#[utoipa::path(get, path = "/admin/v1/bookings/{tenant}/{key}", tag = "bookings", params(("tenant" = String, Path, description = "Tenant id"), ("key" = String, Path, description = "Booking key"), BookingGet), responses((status = 200, description = "The booking (one per kind using the key): desired state and what each vendor applied", body = Vec<BookingView>), crate::openapi::Errors))]
pub(crate) async fn get_booking(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    Path((tenant, key)): Path<(String, String)>,
    Query(q): Query<BookingGet>,
) -> Result<Json<Vec<BookingView>>, ApiError> {
    who.require_tenant(&tenant)?;
    let mut found = bookings::search(
        s.connections.pool(),
        &BookingQuery {
            tenant: Some(&tenant),
            key: Some(&key),
            kind: q.kind.as_deref().filter(|k| !k.is_empty()),
            limit: 10,
            ..BookingQuery::default()
        },
    )
    .await?;
    if found.is_empty() {
        return Err(ApiError::NotFound(format!(
            "tenant {tenant:?} has no booking {key:?}"
        )));
    }
    bookings_pii_gate(&s, &who, q.show_pii.unwrap_or(false), &mut found).await?;
    Ok(Json(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_and_filters_check_their_fields() {
        assert_eq!(parse_age("30m"), Some(chrono::Duration::minutes(30)));
        assert_eq!(parse_age("7d"), Some(chrono::Duration::days(7)));
        assert_eq!(parse_age("7"), None);
        assert_eq!(parse_age("-1h"), None);
        assert_eq!(parse_age("h"), None);
        assert_eq!(parse_age("1é"), None);
        let bad = |f: DlqFilter| match f.to_filter() {
            Err(ApiError::Invalid(errs)) => Some(errs[0].field.clone()),
            other => panic!("{other:?}"),
        };
        let class = DlqFilter {
            class: Some("sometimes".into()),
            ..DlqFilter::default()
        };
        assert_eq!(bad(class).as_deref(), Some("class"));
        let both = DlqFilter {
            age: Some("1h".into()),
            since: Some(Utc::now()),
            ..DlqFilter::default()
        };
        assert_eq!(bad(both).as_deref(), Some("age"));
        let f = DlqFilter {
            vendor: Some("tapkey".into()),
            age: Some("1h".into()),
            tenant: Some(" ".into()),
            ..DlqFilter::default()
        }
        .to_filter()
        .unwrap();
        assert_eq!(f.worker.as_deref(), Some("tapkey"));
        assert!(f.tenant.is_none() && f.since.is_some());
        assert!(matches!(
            target_of(None, None, false),
            Err(ApiError::Invalid(_))
        ));
        assert!(matches!(
            target_of(Some(1), None, true),
            Err(ApiError::Invalid(_))
        ));
        assert!(matches!(
            target_of(Some(1), None, false),
            Ok(ReplayTarget::One(1))
        ));
    }
}
