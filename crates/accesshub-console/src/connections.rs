//! Tenants → Connections: every connection of the tenants in scope, secrets shown only as
//! set / not set, a Test connection button that asks the vendor through its worker (the same
//! look-ups as `GET /admin/v1/lookups/…`), enable/disable, delete with the offboarding choice,
//! and adding or editing a connection of every vendor: the CloudPass form here, with its
//! mappings (BEX administration → CloudPass site, default time restriction) in dropdowns
//! filled from live look-ups (the administration ids offered from the tenant's BEX,
//! [`ask_bex`]); dormakaba, iPassan and Tapkey in [`crate::account`] and [`crate::mappings`].

use std::collections::{BTreeMap, HashMap};

use accesshub_connections::{
    AccessChoice, CloudpassAdministration, CloudpassSettings, Connection, ConnectionError,
    OffboardIntent, Secret, Vendor, VendorSettings,
    lookup::{self, LookupItem, LookupRequest, LookupResponse},
    model::REDACTED,
    offboard,
};
use accesshub_upstreams::lookup::BexLookup;
use axum::{
    Extension, Form,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;

use crate::{
    ConsoleState, account, audit,
    error::ConsoleError,
    html::{self, csrf, field, page, url, verdict},
    session::{Role, Session},
};

/// `?tenant=` filter of the list.
#[derive(Debug, Deserialize, Default)]
pub struct TenantQuery {
    tenant: Option<String>,
    vendor: Option<String>,
}

fn vendor_of(v: &str) -> Result<Vendor, ConsoleError> {
    v.parse()
        .map_err(|e: String| ConsoleError::NotFound(format!("No such vendor: {e}")))
}

fn conn_path(c: &Connection) -> String {
    format!("/connections/{}/{}/{}", c.tenant, c.vendor(), c.name)
}

fn dom_id(c: &Connection) -> String {
    format!("{}-{}-{}", c.tenant, c.vendor(), c.name)
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
        .collect()
}

/// The tenants the session sees, with their display names.
pub(crate) async fn visible_tenants(
    state: &ConsoleState,
    s: &Session,
) -> Result<Vec<(String, String)>, ConsoleError> {
    Ok(state
        .tenants
        .list()
        .await?
        .into_iter()
        .filter(|t| s.sees(&t.id))
        .map(|t| (t.id, t.name))
        .collect())
}

/// `GET /console/connections`.
pub async fn list(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Query(q): Query<TenantQuery>,
) -> Result<Markup, ConsoleError> {
    if let Some(t) = &q.tenant {
        s.require_tenant(t)?;
    }
    let tenants = visible_tenants(&state, &s).await?;
    let conns: Vec<Connection> = state
        .connections
        .list_redacted(q.tenant.as_deref(), None)
        .await?
        .into_iter()
        .filter(|c| s.sees(&c.tenant))
        .collect();
    let shown: Vec<&(String, String)> = tenants
        .iter()
        .filter(|(id, _)| q.tenant.as_deref().is_none_or(|t| t == id))
        .collect();
    let body = html! {
        form.filters method="get" action=(url("/connections")) {
            label { "Tenant "
                select name="tenant" onchange="this.form.submit()" {
                    option value="" { "All tenants" }
                    @for (id, name) in &tenants {
                        option value=(id) selected[q.tenant.as_deref() == Some(id.as_str())] { (name) " (" (id) ")" }
                    }
                }
            }
            noscript { button type="submit" { "Show" } }
        }
        @if shown.is_empty() {
            p.empty { "No tenants yet. An administrator creates them with "
                code { "accessctl tenants create" } "." }
        }
        @for (tenant, name) in &shown {
            section.card.tenant data-tenant=(tenant) {
                h2 { (name) " " small.muted { (tenant) } }
                @let mine: Vec<&Connection> = conns.iter().filter(|c| &c.tenant == tenant).collect();
                @if mine.is_empty() {
                    p.empty { "No connections yet." }
                } @else {
                    div.table-wrap { table.connections {
                        thead { tr { th { "Vendor" } th { "Name" } th { "Status" } th { "Sites" } th { "Secrets" } th { "Actions" } } }
                        tbody {
                            @for c in &mine { (row(&s, c)) }
                        }
                    } }
                }
                @if s.can(Role::Operator) {
                    div.actions.add {
                        @for v in Vendor::ALL {
                            a.button.secondary href=(url(&format!("/connections/new?tenant={tenant}&vendor={v}"))) id=(format!("add-{v}")) { "Add " (lookup::vendor_name(v)) " connection" }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&s, "connections", "Tenants → Connections", body))
}

fn row(s: &Session, c: &Connection) -> Markup {
    let id = dom_id(c);
    let path = conn_path(c);
    html! {
        tr #(format!("conn-{id}")) data-vendor=(c.vendor().as_str()) {
            td data-label="Vendor" { (lookup::vendor_name(c.vendor())) }
            td data-label="Name" { (c.name) }
            td data-label="Status" {
                @if c.enabled { span.badge.ok { "enabled" } } @else { span.badge.off { "disabled" } }
            }
            td data-label="Sites" {
                @if c.sites.is_empty() { "every site" } @else { (c.sites.join(", ")) }
            }
            td data-label="Secrets" {
                @for (name, secret) in c.settings.secrets() {
                    span.secret { (name) ": " @if secret.is_empty() { strong.bad { "not set" } } @else { "set" } }
                }
            }
            td.actions data-label="Actions" {
                form method="post" action=(url(&format!("{path}/test")))
                    hx-post=(url(&format!("{path}/test"))) hx-target=(format!("#verdict-{id}")) hx-swap="innerHTML"
                    hx-indicator=(format!("#verdict-{id}")) {
                    (csrf(s))
                    button type="submit" data-test=(id) { "Test connection" }
                }
                a.button.secondary href=(url(&path)) {
                    @if s.can(Role::Operator) { "Edit / mappings" } @else { "View" }
                }
                @if s.can(Role::Operator) {
                    form method="post" action=(url(&format!("{path}/enabled"))) {
                        (csrf(s))
                        input type="hidden" name="enabled" value=(if c.enabled { "false" } else { "true" });
                        button.secondary type="submit" { @if c.enabled { "Disable" } @else { "Enable" } }
                    }
                    form method="post" action=(url(&format!("{path}/delete")))
                        onsubmit="return confirm('Delete this connection?')" {
                        (csrf(s))
                        button.danger type="submit" data-delete=(id) { "Delete" }
                    }
                }
                div.verdict-slot #(format!("verdict-{id}")) aria-live="polite" {}
            }
        }
    }
}

/// What Test connection asks each vendor: the cheapest call that needs valid credentials.
fn test_lookup(v: Vendor) -> &'static str {
    match v {
        Vendor::Cloudpass => "sites",
        Vendor::Dormakaba => "encoder-test",
        Vendor::Ipassan => "assets",
        Vendor::Tapkey => "locks",
    }
}

pub(crate) async fn ask(
    state: &ConsoleState,
    vendor: Vendor,
    tenant: &str,
    name: &str,
    what: &str,
    params: BTreeMap<String, String>,
) -> Result<Vec<LookupItem>, String> {
    let req = LookupRequest {
        tenant: tenant.to_owned(),
        connection: name.to_owned(),
        what: what.to_owned(),
        params,
    };
    match lookup::request(&state.bus, vendor, &req, state.config.lookup_timeout).await {
        Ok(LookupResponse::Items { items }) => Ok(items),
        Ok(LookupResponse::Error { error }) => Err(error.message),
        Err(e) => Err(e.to_string()),
    }
}

/// What a mapping form lists from the tenant's BEX.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BexList<'a> {
    /// The administrations of the tenant's organization.
    Administrations,
    /// The rentables of these administrations (of every listed one when empty).
    Rentables(&'a [String]),
}

/// Lists `what` from `tenant`'s BEX with its stored API key (the admin API's
/// `GET /lookups/bex/…`, same egress and organization checks), or says why not in words for
/// the form's hint: no credentials, base URL refused, BEX failing or not answering in time.
pub(crate) async fn ask_bex(
    state: &ConsoleState,
    tenant: &str,
    what: BexList<'_>,
) -> Result<Vec<LookupItem>, String> {
    let run = async {
        let bex = BexLookup::open(
            &state.upstreams,
            &state.tenants,
            state.connections.egress(),
            tenant,
        )
        .await?;
        match what {
            BexList::Administrations => bex.administrations().await,
            BexList::Rentables(administrations) => bex.rentables(administrations).await,
        }
    };
    let limit = state.config.upstream_lookup_timeout;
    match tokio::time::timeout(limit, run).await {
        Ok(Ok(items)) => Ok(items),
        Ok(Err(e)) => {
            tracing::warn!(%tenant, error = %e, "console: BEX look-up failed");
            Err(e.operator_message())
        }
        Err(_) => {
            tracing::warn!(%tenant, "console: BEX look-up timed out");
            Err(format!(
                "BEX did not answer within {} s",
                limit.as_secs_f32()
            ))
        }
    }
}

/// `POST /console/connections/{tenant}/{vendor}/{name}/test`: calls the vendor through its
/// worker and answers with a verdict (an htmx fragment, or a page without JavaScript).
pub async fn test(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Path((tenant, vendor, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    s.require_tenant(&tenant)?;
    let v = vendor_of(&vendor)?;
    let vendor_name = lookup::vendor_name(v);
    let out = match ask(&state, v, &tenant, &name, test_lookup(v), BTreeMap::new()).await {
        // dormakaba's answer is HelloWorldTest's, then the encoders.
        Ok(items) if v == Vendor::Dormakaba => {
            let (hello, encoders): (Vec<&LookupItem>, Vec<&LookupItem>) =
                items.iter().partition(|i| i.id == "HelloWorldTest");
            let hello = hello
                .first()
                .map(|h| format!("{}: {}", h.name, h.detail.as_deref().unwrap_or("reachable")))
                .unwrap_or_else(|| "reachable".to_owned());
            let encoders: Vec<String> = encoders
                .iter()
                .map(|e| match &e.detail {
                    Some(d) => format!("{} (ID {}, {d})", e.name, e.id),
                    None => format!("{} (ID {})", e.name, e.id),
                })
                .collect();
            verdict(
                true,
                &format!(
                    "Connected: HelloWorldTest answered ({hello}). Encoders: {}.",
                    if encoders.is_empty() {
                        "none yet, add them under Encoders".to_owned()
                    } else {
                        encoders.join(", ")
                    }
                ),
            )
        }
        Ok(items) => {
            let names: Vec<String> = items.iter().take(5).map(|i| i.name.clone()).collect();
            let what = match v {
                Vendor::Cloudpass => "sites",
                Vendor::Dormakaba => "encoders",
                Vendor::Ipassan => "assets",
                Vendor::Tapkey => "locks",
            };
            verdict(
                true,
                &format!(
                    "Connected: {vendor_name} accepted the credentials and lists {} {what}{}{}.",
                    items.len(),
                    if names.is_empty() { "" } else { ": " },
                    names.join(", ")
                ),
            )
        }
        Err(e) => verdict(false, &format!("Not working: {e}")),
    };
    if headers.contains_key("hx-request") {
        return Ok(out.into_response());
    }
    Ok(page(
        &s,
        "connections",
        &format!("Test connection {tenant}/{vendor}/{name}"),
        html! { (out) p { a href=(url("/connections")) { "Back to connections" } } },
    )
    .into_response())
}

/// One connection the session may see (secrets included: redact before showing).
pub(crate) async fn load(
    state: &ConsoleState,
    s: &Session,
    tenant: &str,
    vendor: &str,
    name: &str,
) -> Result<(Vendor, Connection), ConsoleError> {
    s.require_tenant(tenant)?;
    let v = vendor_of(vendor)?;
    let conn = state
        .connections
        .get(tenant, v, name)
        .await?
        .ok_or_else(|| {
            ConsoleError::NotFound(format!("No connection {tenant}/{vendor}/{name}."))
        })?;
    Ok((v, conn))
}

/// The enable/disable and delete forms; `access` once the operator chose what becomes of
/// the access bookings hold at the vendor through this connection.
#[derive(Debug, Deserialize)]
pub struct OffboardForm {
    #[serde(default)]
    enabled: Option<bool>,
    /// `remove` (offboard run first) or `keep` (leave it at the vendor, logged).
    #[serde(default)]
    access: Option<String>,
}

/// What switching off a connection does about live vendor access: asks when some booking
/// holds access through it (as the API answers 409 without `?access=`), removes it first with
/// an offboard run, or keeps it (the operator's deliberate, audited choice).
async fn switch_off(
    state: &ConsoleState,
    s: &Session,
    current: &Connection,
    intent: OffboardIntent,
    access: Option<&str>,
) -> Result<Response, ConsoleError> {
    let (tenant, v, name) = (&current.tenant, current.vendor(), &current.name);
    let choice = AccessChoice::parse(access.filter(|a| !a.is_empty()))
        .map_err(|e| ConsoleError::BadRequest(format!("Unknown access choice {e}.")))?;
    let siblings = state.connections.list_for(tenant, v).await?;
    let live = offboard::live_access(&state.pool, &siblings, current).await?;
    let verb = match intent {
        OffboardIntent::Delete => "delete",
        OffboardIntent::Disable => "disable",
    };
    let target = format!("{tenant}/{v}/{name}");
    match choice {
        AccessChoice::Refuse if live > 0 => {
            let path = conn_path(current);
            let action = match intent {
                OffboardIntent::Delete => format!("{path}/delete"),
                OffboardIntent::Disable => format!("{path}/enabled"),
            };
            let body = html! {
                p.notice #offboard-choice { (live) " booking(s) hold access at " (lookup::vendor_name(v))
                    " through " strong { (target) } ". What should happen to that access?" }
                div.actions {
                    @for (access, label, class) in [
                        ("remove", format!("Remove their access first, then {verb}"), "danger"),
                        ("keep", format!("{} now and leave the access at the vendor", if verb == "delete" { "Delete" } else { "Disable" }), "secondary"),
                    ] {
                        form method="post" action=(url(&action)) {
                            (csrf(s))
                            input type="hidden" name="enabled" value="false";
                            input type="hidden" name="access" value=(access);
                            button class=(class) type="submit" data-access=(access) { (label) }
                        }
                    }
                }
                p { a href=(url("/connections")) { "Cancel" } }
            };
            Ok((
                StatusCode::CONFLICT,
                page(
                    s,
                    "connections",
                    &format!(
                        "{} connection",
                        if verb == "delete" {
                            "Delete"
                        } else {
                            "Disable"
                        }
                    ),
                    body,
                ),
            )
                .into_response())
        }
        AccessChoice::Remove if live > 0 => {
            let audit = audit::begin(
                state,
                s,
                &format!("connection.offboard.{}", intent.as_str()),
                Some(tenant),
                &target,
                serde_json::to_value(current.redacted()).ok(),
            )
            .await?;
            offboard::begin(&state.pool, Some(&state.bus), tenant, v, name, intent).await?;
            let conn = accesshub_sync_runs::ConnectionRef::new(tenant.clone(), v, name.clone());
            let out = accesshub_sync_runs::store::request_run(
                &state.pool,
                &conn,
                accesshub_sync_runs::Scope::Offboard,
                accesshub_sync_runs::Trigger::Api,
                Some(&s.name),
            )
            .await?;
            let run = out.run().clone();
            audit.commit(None, serde_json::to_value(&run).ok()).await;
            Ok(Redirect::to(&url(&format!("/sync?queued={}", run.id))).into_response())
        }
        _ => {
            if live > 0 {
                tracing::warn!(connection = %target, by = %s.name, live, "connection switched off in the console, vendor access kept");
            }
            match intent {
                OffboardIntent::Disable => {
                    let mut next = current.clone();
                    next.enabled = false;
                    save_with_audit(state, s, Some(current), &next).await??;
                }
                OffboardIntent::Delete => {
                    let audit = audit::begin(
                        state,
                        s,
                        "connection.delete",
                        Some(tenant),
                        &target,
                        serde_json::to_value(current.redacted()).ok(),
                    )
                    .await?;
                    state.connections.delete(tenant, v, name).await?;
                    audit.commit(None, None).await;
                    offboard::finish_tenant(&state.pool, tenant).await?;
                }
            }
            Ok(Redirect::to(&url(&format!("/connections?tenant={tenant}"))).into_response())
        }
    }
}

/// `POST /console/connections/{tenant}/{vendor}/{name}/enabled`.
pub async fn set_enabled(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Path((tenant, vendor, name)): Path<(String, String, String)>,
    Form(f): Form<OffboardForm>,
) -> Result<Response, ConsoleError> {
    s.require(Role::Operator, "enabling or disabling a connection")?;
    let (_, current) = load(&state, &s, &tenant, &vendor, &name).await?;
    if f.enabled == Some(false) {
        return switch_off(
            &state,
            &s,
            &current,
            OffboardIntent::Disable,
            f.access.as_deref(),
        )
        .await;
    }
    let mut next = current.clone();
    next.enabled = true;
    save_with_audit(&state, &s, Some(&current), &next).await??;
    Ok(Redirect::to(&url(&format!("/connections?tenant={tenant}"))).into_response())
}

/// `POST /console/connections/{tenant}/{vendor}/{name}/delete`.
pub async fn delete(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Path((tenant, vendor, name)): Path<(String, String, String)>,
    Form(f): Form<OffboardForm>,
) -> Result<Response, ConsoleError> {
    s.require(Role::Operator, "deleting a connection")?;
    let (_, current) = load(&state, &s, &tenant, &vendor, &name).await?;
    switch_off(
        &state,
        &s,
        &current,
        OffboardIntent::Delete,
        f.access.as_deref(),
    )
    .await
}

/// Saves `conn` with its audit record. The outer error: the record could not be written and
/// nothing was saved (an error page); the inner one: the store refused it (shown at the form).
pub(crate) async fn save_with_audit(
    state: &ConsoleState,
    s: &Session,
    before: Option<&Connection>,
    conn: &Connection,
) -> Result<Result<Connection, ConnectionError>, ConsoleError> {
    let audit = audit::begin(
        state,
        s,
        "connection.apply",
        Some(&conn.tenant),
        &format!("{}/{}/{}", conn.tenant, conn.vendor(), conn.name),
        before.and_then(|b| serde_json::to_value(b.redacted()).ok()),
    )
    .await?;
    let out = match state.connections.apply(conn, false).await {
        Ok(out) => out,
        Err(e) => return Ok(Err(e)),
    };
    let after = out.connection.redacted();
    // Unchanged: the pending record is dropped (rolled back).
    if !out.changes.is_empty() || before.is_none() {
        audit.commit(None, serde_json::to_value(&after).ok()).await;
    } else {
        drop(audit);
    }
    if before.is_some_and(|b| out.connection.widens(b)) {
        queue_sync(state, s, &out.connection).await;
    }
    Ok(Ok(after))
}

/// Queues a full sync run of `conn` (unless one is active) when an edit switched access
/// control on for more than before — re-enabled, a site added, something mapped — as the
/// admin API does: its run re-admits the events ingest ignored meanwhile, so the operator
/// need not press Sync. The edit itself is saved already; a failure to queue is logged and
/// left to the next run.
async fn queue_sync(state: &ConsoleState, s: &Session, conn: &Connection) {
    let target = accesshub_sync_runs::ConnectionRef::from(conn);
    let audit = match audit::begin(
        state,
        s,
        "sync.request",
        Some(&conn.tenant),
        &target.to_string(),
        None,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(connection = %target, error = %e, "sync not queued after the connection was widened; the next run re-admits");
            return;
        }
    };
    match accesshub_sync_runs::store::request_run(
        &state.pool,
        &target,
        accesshub_sync_runs::Scope::Full,
        accesshub_sync_runs::Trigger::Api,
        Some(&s.name),
    )
    .await
    {
        Ok(accesshub_sync_runs::store::RequestOutcome::Queued(run)) => {
            audit.commit(None, serde_json::to_value(&run).ok()).await;
            tracing::info!(connection = %target, run_id = run.id, by = %s.name, "sync queued: the connection acts on more than before");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(connection = %target, error = %e, "sync not queued after the connection was widened; the next run re-admits")
        }
    }
}

/// The CloudPass form's values as typed (kept on validation errors).
#[derive(Debug, Clone, Default)]
struct CloudpassForm {
    tenant: String,
    name: String,
    base_url: String,
    client_id: String,
    client_secret: String,
    secret_set: bool,
    default_time_restriction_id: String,
    /// Bring existing bookings to the time restriction too (the API's re-apply switch).
    reapply_time_restriction: bool,
    window_before_minutes: String,
    window_after_minutes: String,
    sites: String,
    /// (administration id, site id, time restriction override)
    administrations: Vec<(String, String, String)>,
    version: i64,
    exists: bool,
}

impl CloudpassForm {
    fn from_conn(c: &Connection, s: &CloudpassSettings) -> Self {
        CloudpassForm {
            tenant: c.tenant.clone(),
            name: c.name.clone(),
            base_url: s.base_url.clone(),
            client_id: s.client_id.clone(),
            client_secret: String::new(),
            secret_set: !s.client_secret.is_empty(),
            default_time_restriction_id: s.default_time_restriction_id.clone(),
            reapply_time_restriction: s.reapply_time_restriction,
            window_before_minutes: s.window_before_minutes.to_string(),
            window_after_minutes: s.window_after_minutes.to_string(),
            sites: c.sites.join(", "),
            administrations: s
                .administrations
                .iter()
                .map(|(k, a)| {
                    (
                        k.clone(),
                        a.site_id.clone(),
                        a.time_restriction_id.clone().unwrap_or_default(),
                    )
                })
                .collect(),
            version: c.version,
            exists: true,
        }
    }

    fn from_pairs(pairs: &[(String, String)]) -> Self {
        let get = |k: &str| form_value(pairs, k);
        let mut rows: BTreeMap<usize, (String, String, String)> = BTreeMap::new();
        for (k, v) in pairs {
            let mut parts = k.splitn(3, '.');
            if let (Some("admin"), Some(i), Some(what)) = (parts.next(), parts.next(), parts.next())
                && let Ok(i) = i.parse::<usize>()
            {
                let r = rows.entry(i).or_default();
                match what {
                    "id" => r.0 = v.trim().to_owned(),
                    "site" => r.1 = v.trim().to_owned(),
                    "tr" => r.2 = v.trim().to_owned(),
                    _ => {}
                }
            }
        }
        CloudpassForm {
            tenant: get("tenant"),
            name: get("name"),
            base_url: get("base_url"),
            client_id: get("client_id"),
            client_secret: get("client_secret"),
            secret_set: false,
            default_time_restriction_id: get("default_time_restriction_id"),
            reapply_time_restriction: get("reapply_time_restriction") == "true",
            window_before_minutes: get("window_before_minutes"),
            window_after_minutes: get("window_after_minutes"),
            sites: get("sites"),
            administrations: rows
                .into_values()
                .filter(|r| !(r.0.is_empty() && r.1.is_empty() && r.2.is_empty()))
                .collect(),
            version: get("version").parse().unwrap_or(0),
            exists: get("exists") == "true",
        }
    }

    /// The connection, or the errors per form field.
    fn to_connection(&self) -> Result<Connection, HashMap<String, String>> {
        let mut errors = HashMap::new();
        let minutes = |field: &str, v: &str, errors: &mut HashMap<String, String>| {
            if v.is_empty() {
                return 30;
            }
            v.parse::<u32>().unwrap_or_else(|_| {
                errors.insert(
                    field.to_owned(),
                    "Enter a whole number of minutes, e.g. 30.".to_owned(),
                );
                0
            })
        };
        let before = minutes(
            "window_before_minutes",
            &self.window_before_minutes,
            &mut errors,
        );
        let after = minutes(
            "window_after_minutes",
            &self.window_after_minutes,
            &mut errors,
        );
        if self.tenant.is_empty() {
            errors.insert("tenant".into(), "Choose the tenant.".into());
        }
        let mut administrations = BTreeMap::new();
        for (id, site, tr) in &self.administrations {
            if id.is_empty() {
                errors.insert(
                    format!("administrations.{site}"),
                    "Enter the BEX administration id for this site, or clear the row.".into(),
                );
                continue;
            }
            if administrations.contains_key(id) {
                errors.insert(
                    format!("administrations.{id}.site_id"),
                    "This administration is mapped twice.".into(),
                );
            }
            administrations.insert(
                id.clone(),
                CloudpassAdministration {
                    site_id: site.clone(),
                    time_restriction_id: (!tr.is_empty()).then(|| tr.clone()),
                },
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let secret = if self.client_secret.is_empty() && self.exists {
            REDACTED.to_owned()
        } else {
            self.client_secret.clone()
        };
        Ok(Connection {
            tenant: self.tenant.clone(),
            name: name_or_default(&self.name),
            enabled: true,
            sites: sites_of(&self.sites),
            settings: VendorSettings::Cloudpass(CloudpassSettings {
                base_url: self.base_url.clone(),
                client_id: self.client_id.clone(),
                client_secret: Secret::new(secret),
                administrations,
                default_time_restriction_id: self.default_time_restriction_id.clone(),
                reapply_time_restriction: self.reapply_time_restriction,
                window_before_minutes: before,
                window_after_minutes: after,
            }),
            version: self.version,
        })
    }
}

/// Turns the store's field paths (`settings.client_id`) and words into the form's.
pub(crate) fn field_errors(e: &ConnectionError) -> Option<HashMap<String, String>> {
    let ConnectionError::Invalid(list) = e else {
        return None;
    };
    Some(
        list.iter()
            .map(|fe| {
                let f = fe.field.strip_prefix("settings.").unwrap_or(&fe.field);
                let msg = match fe.problem.as_str() {
                    "must not be empty" => "This field is required.".to_owned(),
                    p => {
                        let mut p = p.to_owned();
                        if let Some(c) = p.get(..1) {
                            p = c.to_uppercase() + &p[1..];
                        }
                        if p.ends_with('.') { p } else { p + "." }
                    }
                };
                (f.to_owned(), msg)
            })
            .collect(),
    )
}

/// Live dropdown entries for the CloudPass form (sites; time restrictions of the first mapped
/// site), or why they could not be listed.
struct Choices {
    sites: Result<Vec<LookupItem>, String>,
    time_restrictions: Result<Vec<LookupItem>, String>,
}

async fn choices(state: &ConsoleState, f: &CloudpassForm) -> Option<Choices> {
    if !f.exists {
        return None;
    }
    let name = if f.name.is_empty() {
        "default"
    } else {
        &f.name
    };
    let sites = ask(
        state,
        Vendor::Cloudpass,
        &f.tenant,
        name,
        "sites",
        BTreeMap::new(),
    )
    .await;
    let site = f
        .administrations
        .iter()
        .map(|a| a.1.clone())
        .find(|s| !s.is_empty())
        .or_else(|| {
            sites
                .as_ref()
                .ok()
                .and_then(|s| s.first())
                .map(|i| i.id.clone())
        });
    let time_restrictions = match site {
        Some(site) => {
            ask(
                state,
                Vendor::Cloudpass,
                &f.tenant,
                name,
                "time-restrictions",
                BTreeMap::from([("site".to_owned(), site)]),
            )
            .await
        }
        None => Err("map an administration to a site first".into()),
    };
    Some(Choices {
        sites,
        time_restrictions,
    })
}

fn select_or_input(
    name: &str,
    value: &str,
    items: Option<&Result<Vec<LookupItem>, String>>,
    empty_label: &str,
) -> Markup {
    match items {
        Some(Ok(items)) if !items.is_empty() => html! {
            select name=(name) {
                option value="" { (empty_label) }
                @for i in items {
                    option value=(i.id) selected[i.id == value] { (i.name) " (" (i.id) ")" }
                }
                @if !value.is_empty() && !items.iter().any(|i| i.id == value) {
                    option value=(value) selected { (value) " (not listed by CloudPass)" }
                }
            }
        },
        _ => html! { input name=(name) value=(value); },
    }
}

/// The BEX administrations offered on the CloudPass form's administration-id inputs, or why
/// they could not be listed; none before the tenant is known.
async fn bex_administrations(
    state: &ConsoleState,
    tenant: &str,
) -> Option<Result<Vec<LookupItem>, String>> {
    if tenant.is_empty() {
        return None;
    }
    Some(ask_bex(state, tenant, BexList::Administrations).await)
}

fn cloudpass_form(
    s: &Session,
    f: &CloudpassForm,
    errors: &HashMap<String, String>,
    choices: Option<&Choices>,
    bex: Option<&Result<Vec<LookupItem>, String>>,
    saved: Option<&str>,
) -> Markup {
    let err = |k: &str| errors.get(k).map(String::as_str);
    let admins = match bex {
        Some(Ok(items)) if !items.is_empty() => Some(items),
        _ => None,
    };
    let edit = s.can(Role::Operator);
    let action = if f.exists {
        format!("/connections/{}/cloudpass/{}", f.tenant, f.name)
    } else {
        "/connections/new".to_owned()
    };
    let mut rows = f.administrations.clone();
    rows.push(Default::default());
    html! {
        @if let Some(m) = saved { (verdict(true, m)) }
        @if !errors.is_empty() {
            p.error role="alert" #form-errors { "Please correct the fields marked below; nothing you typed was lost." }
        }
        form.card.connection-form method="post" action=(url(&action)) #cloudpass-form {
            (csrf(s))
            input type="hidden" name="version" value=(f.version);
            input type="hidden" name="exists" value=(f.exists);
            fieldset disabled[!edit] {
                legend { "CloudPass account" }
                (identity(f.exists, &f.tenant, &f.name, errors))
                (field("API base URL", "base_url", &f.base_url, err("base_url"), Some("e.g. https://api.cloudpass.example")))
                (field("Client ID", "client_id", &f.client_id, err("client_id"), Some("Of the API user under Settings → Website Users.")))
                (html::secret_field("Client secret", "client_secret", f.secret_set, f.exists, err("client_secret")))
                (field("Sites served (administration ids, comma separated)", "sites", &f.sites, err("sites"), Some("Empty: every administration of the tenant.")))
            }
            fieldset disabled[!edit] {
                legend { "Mappings: BEX administration → CloudPass site" }
                @if let Some(Choices { sites: Err(e), .. }) = choices {
                    p.hint { "The site list could not be loaded (" (e) "); type the site id." }
                }
                @if choices.is_none() {
                    p.hint { "Save the account first; then the sites appear in dropdowns." }
                }
                @if let Some(Err(e)) = bex {
                    p.hint #bex-hint { "The BEX administration list could not be loaded (" (e) "); type the ids." }
                }
                div.table-wrap { table.mappings {
                    thead { tr { th { "Administration id" } th { "CloudPass site" } th { "Time restriction (optional)" } } }
                    tbody {
                        @for (i, (id, site, tr)) in rows.iter().enumerate() {
                            tr {
                                td data-label="Administration id" {
                                    input name=(format!("admin.{i}.id")) value=(id) placeholder="e.g. 1001" list=[admins.map(|_| "bex-administrations")];
                                    @if let Some(a) = admins.and_then(|l| l.iter().find(|a| &a.id == id)) {
                                        small.muted data-bex-name=(a.id) { (a.name) }
                                    }
                                }
                                td data-label="CloudPass site" {
                                    (select_or_input(&format!("admin.{i}.site"), site, choices.map(|c| &c.sites), "Choose a site…"))
                                    @if let Some(e) = err(&format!("administrations.{id}.site_id")).or(err(&format!("administrations.{site}"))) {
                                        small.error data-field=(format!("admin.{i}.site")) { (e) }
                                    }
                                }
                                td data-label="Time restriction" {
                                    (select_or_input(&format!("admin.{i}.tr"), tr, choices.map(|c| &c.time_restrictions), "Connection default"))
                                }
                            }
                        }
                    }
                } }
                @if let Some(list) = admins {
                    datalist #bex-administrations {
                        @for a in list {
                            option value=(a.id) { (a.name) @if let Some(d) = &a.detail { " · " (d) } }
                        }
                    }
                }
                p.hint { "Clear a row's administration id to remove it; the empty row adds one." }
                label.field {
                    span { "Default time restriction" }
                    (select_or_input("default_time_restriction_id", &f.default_time_restriction_id, choices.map(|c| &c.time_restrictions), "Choose…"))
                    @if let Some(e) = err("default_time_restriction_id") { small.error data-field="default_time_restriction_id" { (e) } }
                }
                label.check {
                    input type="checkbox" name="reapply_time_restriction" value="true" checked[f.reapply_time_restriction];
                    span { "Also bring existing bookings to these time restrictions (new bookings always get them). Set it, sync, then clear it." }
                }
                div.row2 {
                    (field("Access starts minutes before check-in", "window_before_minutes", &f.window_before_minutes, err("window_before_minutes"), None))
                    (field("Access ends minutes after check-out", "window_after_minutes", &f.window_after_minutes, err("window_after_minutes"), None))
                }
            }
            @if edit {
                button type="submit" #save { "Save" }
            }
        }
    }
}

/// `GET /console/connections/new?tenant=&vendor=` (CloudPass when no vendor is given).
pub async fn new_form(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Query(q): Query<TenantQuery>,
) -> Result<Markup, ConsoleError> {
    s.require(Role::Operator, "adding a connection")?;
    if let Some(t) = &q.tenant {
        s.require_tenant(t)?;
    }
    let v = match q.vendor.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => vendor_of(v)?,
        None => Vendor::Cloudpass,
    };
    if account::handles(v) {
        let f = account::AccountForm::blank(v, q.tenant.unwrap_or_default());
        return Ok(page(
            &s,
            "connections",
            &format!("Add {} connection", lookup::vendor_name(v)),
            account::form(&s, v, &f, &HashMap::new()),
        ));
    }
    let f = CloudpassForm {
        tenant: q.tenant.unwrap_or_default(),
        window_before_minutes: "30".into(),
        window_after_minutes: "30".into(),
        ..Default::default()
    };
    let bex = bex_administrations(&state, &f.tenant).await;
    Ok(page(
        &s,
        "connections",
        "Add CloudPass connection",
        cloudpass_form(&s, &f, &HashMap::new(), None, bex.as_ref(), None),
    ))
}

async fn submit(
    state: &ConsoleState,
    s: &Session,
    f: CloudpassForm,
    title: &str,
) -> Result<Response, ConsoleError> {
    s.require(Role::Operator, "changing a connection")?;
    if !f.tenant.is_empty() {
        s.require_tenant(&f.tenant)?;
    }
    let f = &f;
    // The form again with the errors, the input as typed and the BEX administrations.
    let invalid = async |errors: HashMap<String, String>, choices: Option<Choices>| {
        let bex = bex_administrations(state, &f.tenant).await;
        (
            StatusCode::BAD_REQUEST,
            page(
                s,
                "connections",
                title,
                cloudpass_form(s, f, &errors, choices.as_ref(), bex.as_ref(), None),
            ),
        )
            .into_response()
    };
    let conn = match f.to_connection() {
        Ok(c) => c,
        Err(errors) => return Ok(invalid(errors, choices(state, f).await).await),
    };
    let before = if f.exists {
        state
            .connections
            .get(&conn.tenant, Vendor::Cloudpass, &conn.name)
            .await?
    } else {
        None
    };
    if !f.exists
        && state
            .connections
            .get(&conn.tenant, Vendor::Cloudpass, &conn.name)
            .await?
            .is_some()
    {
        let errors = HashMap::from([(
            "name".to_owned(),
            "This tenant already has a CloudPass connection of this name: edit it instead."
                .to_owned(),
        )]);
        return Ok(invalid(errors, None).await);
    }
    let mut conn = conn;
    if let Some(b) = &before {
        conn.enabled = b.enabled;
    }
    match save_with_audit(state, s, before.as_ref(), &conn).await? {
        Ok(saved) => Ok(Redirect::to(&url(&format!(
            "/connections/{}/cloudpass/{}?saved=1",
            saved.tenant, saved.name
        )))
        .into_response()),
        Err(e @ ConnectionError::Invalid(_)) => Ok(invalid(
            field_errors(&e).unwrap_or_default(),
            choices(state, f).await,
        )
        .await),
        Err(e) => Ok(invalid(store_refusal(e, "base_url")?, None).await),
    }
}

/// What the store refused besides invalid fields, at the form's field: an unknown tenant at
/// `tenant`, a concurrent change at `conflict_field`; anything else is an error page.
pub(crate) fn store_refusal(
    e: ConnectionError,
    conflict_field: &str,
) -> Result<HashMap<String, String>, ConsoleError> {
    match e {
        ConnectionError::UnknownTenant(t) => Ok(HashMap::from([(
            "tenant".to_owned(),
            format!("There is no tenant \"{t}\"."),
        )])),
        ConnectionError::Conflict { .. } => Ok(HashMap::from([(
            conflict_field.to_owned(),
            "Someone else changed this connection meanwhile: reload the page to see their change."
                .to_owned(),
        )])),
        e => Err(e.into()),
    }
}

/// Which connection a form is about: fixed when editing one, typed when adding one.
pub(crate) fn identity(
    exists: bool,
    tenant: &str,
    name: &str,
    errors: &HashMap<String, String>,
) -> Markup {
    let err = |k: &str| errors.get(k).map(String::as_str);
    html! {
        @if exists {
            input type="hidden" name="tenant" value=(tenant);
            input type="hidden" name="name" value=(name);
            p { "Tenant " strong { (tenant) } ", connection " strong { (name) } }
        } @else {
            (field("Tenant", "tenant", tenant, err("tenant"), None))
            (field("Connection name", "name", name, err("name"), Some("Leave empty for \"default\".")))
        }
    }
}

/// The first value of field `k` of a submitted form, trimmed (empty when absent).
pub(crate) fn form_value(pairs: &[(String, String)], k: &str) -> String {
    pairs
        .iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default()
}

/// The sites a connection serves, from the form's comma-separated list.
pub(crate) fn sites_of(typed: &str) -> Vec<String> {
    typed
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The connection name typed, `default` when left empty.
pub(crate) fn name_or_default(typed: &str) -> String {
    if typed.is_empty() {
        "default".to_owned()
    } else {
        typed.to_owned()
    }
}

/// `POST /console/connections/new`.
pub async fn create(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, ConsoleError> {
    let vendor = pairs
        .iter()
        .find(|(k, _)| k == "vendor")
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty());
    if let Some(v) = vendor.map(vendor_of).transpose()?
        && account::handles(v)
    {
        let mut f = account::AccountForm::from_pairs(v, &pairs);
        f.exists = false;
        return account::submit(&state, &s, v, f).await;
    }
    let mut f = CloudpassForm::from_pairs(&pairs);
    f.exists = false;
    submit(&state, &s, f, "Add CloudPass connection").await
}

/// `?saved=1` after a save.
#[derive(Debug, Deserialize)]
pub struct SavedQuery {
    saved: Option<String>,
}

/// `GET /console/connections/{tenant}/{vendor}/{name}`: the CloudPass form with mappings;
/// other vendors' account form and their mappings form.
pub async fn edit_form(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Path((tenant, vendor, name)): Path<(String, String, String)>,
    Query(q): Query<SavedQuery>,
) -> Result<Markup, ConsoleError> {
    let (v, conn) = load(&state, &s, &tenant, &vendor, &name).await?;
    let title = format!("{} connection {tenant}/{name}", lookup::vendor_name(v));
    let body = match &conn.settings {
        VendorSettings::Cloudpass(cp) => {
            let f = CloudpassForm::from_conn(&conn, cp);
            let c = choices(&state, &f).await;
            let bex = bex_administrations(&state, &f.tenant).await;
            cloudpass_form(
                &s,
                &f,
                &HashMap::new(),
                c.as_ref(),
                bex.as_ref(),
                q.saved
                    .is_some()
                    .then_some("Saved. The worker picks up the change at once."),
            )
        }
        _ => account::edit_page(&state, &s, &conn, q.saved.is_some()).await,
    };
    Ok(page(&s, "connections", &title, body))
}

/// `POST /console/connections/{tenant}/{vendor}/{name}`: the connection's account form.
pub async fn save(
    State(state): State<ConsoleState>,
    Extension(s): Extension<Session>,
    Path((tenant, vendor, name)): Path<(String, String, String)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, ConsoleError> {
    let v = vendor_of(&vendor)?;
    if account::handles(v) {
        let mut f = account::AccountForm::from_pairs(v, &pairs);
        f.tenant = tenant;
        f.name = name;
        f.exists = true;
        return account::submit(&state, &s, v, f).await;
    }
    let mut f = CloudpassForm::from_pairs(&pairs);
    f.tenant = tenant;
    f.name = name;
    f.exists = true;
    submit(&state, &s, f, "CloudPass connection").await
}

/// The tenant's connections (for the other screens' pickers).
pub(crate) async fn visible_connections(
    state: &ConsoleState,
    s: &Session,
) -> Result<Vec<Connection>, ConsoleError> {
    Ok(state
        .connections
        .list_redacted(None, None)
        .await?
        .into_iter()
        .filter(|c| s.sees(&c.tenant))
        .collect())
}

/// For `html::SCREENS` consumers: the path of a connection's page.
pub fn path_of(c: &Connection) -> String {
    html::url(&conn_path(c))
}
